"""What every objective receives and returns, and the checks they all share."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn


@dataclass
class ObjectiveInputs:
    """Outputs of the networks on the two views of one batch (see docs/ARCHITECTURE.md).

    ``z*``: student projections; ``p*``: student predictions (BYOL); ``t*``: teacher projections;
    ``s*``: student prototype scores; ``ts*``: teacher prototype scores; ``targets``: k-means
    assignments (DeepCluster-v2). Teacher tensors are treated as constants (detached inside).
    """

    z1: torch.Tensor
    z2: torch.Tensor
    p1: torch.Tensor | None = None
    p2: torch.Tensor | None = None
    t1: torch.Tensor | None = None
    t2: torch.Tensor | None = None
    s1: torch.Tensor | None = None
    s2: torch.Tensor | None = None
    ts1: torch.Tensor | None = None
    ts2: torch.Tensor | None = None
    targets: torch.Tensor | None = None

    def require(self, *names: str) -> list[torch.Tensor]:
        """Return the named tensors after checking they exist and pair up (same shape, batch >= 2)."""
        tensors = []
        for name in names:
            value = getattr(self, name)
            if value is None:
                raise ValueError(f"this objective needs inputs.{name}; got None")
            tensors.append(value)
        first_name, first = names[0], tensors[0]
        for name, value in zip(names, tensors):
            if name == "targets":
                if value.shape != (first.shape[0],):
                    raise ValueError(f"inputs.targets must have shape ({first.shape[0]},), got {tuple(value.shape)}")
                continue
            if value.dim() != 2:
                raise ValueError(f"inputs.{name} must be 2-D [batch, dim], got shape {tuple(value.shape)}")
            if value.shape[0] < 2:
                raise ValueError(f"inputs.{name} needs a batch of at least 2 samples, got {value.shape[0]}")
            if value.shape != first.shape:
                raise ValueError(f"inputs.{name} has shape {tuple(value.shape)} but inputs.{first_name} "
                                 f"has {tuple(first.shape)}; the two views must match")
        return tensors

    def names(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


@dataclass
class ObjectiveOutput:
    """``loss`` to minimise; the ER terms (detached) for ER variants, ``None`` for originals."""

    loss: torch.Tensor
    entropy: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None


class Objective(nn.Module):
    """Base class: subclasses set the class attributes the trainer reads and define ``forward``."""

    method: str = ""
    variant: str = "original"
    support: str = "sphere"  # "sphere" or "discrete"
    needs_teacher: bool = False
    needs_predictor: bool = False
    needs_prototypes: bool = False
    needs_targets: bool = False

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:  # pragma: no cover - abstract
        raise NotImplementedError


def er_output(reconstruction: torch.Tensor, entropy: torch.Tensor, entropy_weight: float) -> ObjectiveOutput:
    """L_ER = R - lambda * H, keeping both terms (detached) for logging."""
    return ObjectiveOutput(loss=reconstruction - entropy_weight * entropy, entropy=entropy.detach(),
                           reconstruction=reconstruction.detach())
