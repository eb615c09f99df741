"""What every objective receives and returns, the base class, and the checks they all share."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import nn


@dataclass
class ObjectiveInputs:
    """Outputs of the networks on the two views of one batch (see docs/ARCHITECTURE.md).

    ``z*``: student projections [B, d] (not normalised); ``p*``: student predictions (BYOL) [B, d];
    ``t*``: teacher projections [B, d]; ``s*``: student prototype scores / logits [B, K];
    ``ts*``: teacher prototype scores [B, K]; ``targets``: k-means assignments [B] (DeepCluster-v2,
    the same for both views); ``queue*``: scores [L, K] of SwAV's queued embeddings of each view
    under the current prototypes (any L, not checked against B). Teacher tensors and queue scores
    are treated as constants (detached inside).
    """

    z1: torch.Tensor
    z2: torch.Tensor
    p1: torch.Tensor | None = None
    t1: torch.Tensor | None = None
    t2: torch.Tensor | None = None
    s1: torch.Tensor | None = None
    s2: torch.Tensor | None = None
    ts1: torch.Tensor | None = None
    ts2: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    p2: torch.Tensor | None = None
    queue1: torch.Tensor | None = None
    queue2: torch.Tensor | None = None

    def require(self, *names: str) -> list[torch.Tensor]:
        """Return the named tensors after checking that they exist and pair up.

        ``z1`` and ``z2`` are always checked too. Every checked tensor must be 2-D with a batch of
        at least 2, the same batch as ``z1``, and the shape of its other view (``x2`` as ``x1``);
        ``targets`` must be an integer tensor of shape [B].

        Raises:
            ValueError: a tensor is missing, has a batch of one, or its shape does not match.
        """
        checked: dict[str, torch.Tensor] = {}
        for name in ("z1", "z2", *names):
            value = getattr(self, name)
            if value is None:
                raise ValueError(f"this objective needs inputs.{name}; got None")
            checked[name] = value
        batch = checked["z1"].shape[0] if checked["z1"].dim() >= 1 else 0
        for name, value in checked.items():
            if name == "targets":
                if value.shape != (batch,) or value.is_floating_point():
                    raise ValueError(f"inputs.targets must be an integer tensor of shape ({batch},), "
                                     f"got {value.dtype} {tuple(value.shape)}")
                continue
            if value.dim() != 2:
                raise ValueError(f"inputs.{name} must be 2-D [batch, dim], got shape {tuple(value.shape)}")
            if value.shape[0] < 2:
                raise ValueError(f"inputs.{name} needs a batch of at least 2 samples, got {value.shape[0]}")
            if value.shape[0] != batch:
                raise ValueError(f"inputs.{name} has batch {value.shape[0]} but inputs.z1 has {batch}")
            reference = name[:-1] + "1"
            if name.endswith("2") and reference in checked and value.shape != checked[reference].shape:
                raise ValueError(f"inputs.{name} has shape {tuple(value.shape)} but inputs.{reference} "
                                 f"has {tuple(checked[reference].shape)}; the two views must match")
        return [checked[name] for name in names]

    def names(self) -> list[str]:
        """Names of the fields that are set."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


@dataclass
class ObjectiveOutput:
    """``loss`` to minimise; the ER terms Ĥ and R̂ (detached) for ER variants, ``None`` for originals."""

    loss: torch.Tensor
    entropy: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None


class Objective(nn.Module):
    """Base class: subclasses set the class attributes the trainer reads and define ``forward``.

    Attributes:
        method: one of ``er_tune.config.METHODS``.
        variant: ``"original"`` or ``"er"``.
        support: ``"sphere"`` (projections) or ``"discrete"`` (prototype assignments).
        needs_teacher: reads ``t1, t2`` (sphere) or ``ts1, ts2`` (discrete) from an EMA teacher.
        needs_predictor: reads the predictions ``p1, p2``.
        needs_prototypes: reads the prototype scores ``s1, s2``.
        needs_targets: reads the k-means ``targets``.
        loss_is_cross_entropy_over_prototypes: the loss is a cross-entropy against a softmax over
            the K prototypes, so it equals ln K when the predictions are uniform (the collapse
            monitor's plateau criterion).
    """

    method: str = ""
    variant: str = "original"
    support: str = "sphere"
    needs_teacher: bool = False
    needs_predictor: bool = False
    needs_prototypes: bool = False
    needs_targets: bool = False
    loss_is_cross_entropy_over_prototypes: bool = False

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:  # pragma: no cover - abstract
        raise NotImplementedError


def check_positive(name: str, value: float) -> float:
    """``float(value)`` if finite and > 0, else ValueError naming the argument."""
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def check_fraction(name: str, value: float) -> float:
    """``float(value)`` if in [0, 1], else ValueError naming the argument."""
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def check_iterations(name: str, value: int) -> int:
    """``value`` if an integer >= 1, else ValueError naming the argument."""
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")
    return int(value)
