"""What every objective receives and returns, the base class, and the checks they all share.

An objective is the one description of its method: its class attributes declare what the network,
the teacher, the augmentation and the diagnostics must provide, and its hooks carry the method's
training recipe (SwAV's prototype freezing and queue, DeepCluster-v2's k-means). The trainer
(``trainers/steps.py``, ``trainers/state.py``), the models (``build_network``) and the diagnostics
read these and never a method's name; docs/ARCHITECTURE.md has the checklist for adding a method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Iterator, Protocol

import torch
from torch import nn

from er_core.config import TrialConfig


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


class TrainingContext(Protocol):
    """What a recipe hook may read from the trainer (``trainers.steps.TrainingStep`` provides it).

    ``net`` is the student (``er_core.models.SSLNetwork``: ``backbone``, ``projector``, ``predictor``,
    ``prototypes``); ``step`` counts the optimiser steps taken so far in the trial.
    """

    config: TrialConfig
    net: nn.Module
    device: torch.device
    step: int
    steps_per_epoch: int
    num_train: int

    def embed_training_set(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(indices, z1, z2)`` chunks covering every training image: the student's float32
        projections (not normalised) of two augmented views, in eval mode, without gradients."""
        ...


class Objective(nn.Module):
    """Base class: subclasses declare their needs as class attributes, build themselves from a
    TrialConfig (:meth:`from_config`), define ``forward`` and override the recipe hooks they use.

    Declared needs (read by the trainer, ``build_network``, the augmentation and the diagnostics):

    Attributes:
        method: the method's name (``er_core.config.METHODS``); only the registry and reports use it.
        variant: ``"original"`` or ``"er"``.
        support: ``"sphere"`` (projections) or ``"discrete"`` (prototype assignments: the collapse
            monitor watches the assignment entropy, the diagnostics report ``assign_*``).
        needs_teacher: an EMA teacher is built and updated after every step; the objective reads
            ``t1, t2`` (sphere) or ``ts1, ts2`` (discrete).
        needs_predictor: the student has a predictor MLP; reads ``p1, p2``.
        needs_prototypes: the student has a prototype layer; reads ``s1, s2``.
        trainable_prototypes: whether the prototypes get gradients (False: the recipe sets them).
        needs_targets: reads ``targets`` (which its own :meth:`add_inputs` provides).
        views: augmentation preset of the two views (``er_core.data.augment.VIEW_PRESETS``).
        loss_is_cross_entropy_over_prototypes: the loss is a cross-entropy against a softmax over
            the K prototypes, so it equals ln K when the predictions are uniform (the collapse
            monitor's plateau criterion).

    Recipe hooks, called by the trainer in this order (each a no-op here): :meth:`setup` once when
    the trial is built (before a checkpoint is restored); per epoch :meth:`on_epoch_start`; per step
    :meth:`before_forward`, :meth:`add_inputs`, ``forward``, then :meth:`after_backward` when the
    loss is finite. State a recipe keeps (a queue, a memory bank, targets) is sub-modules or buffers
    of the objective, so the trial checkpoint (``objective.state_dict()``) holds it.
    """

    method: str = ""
    variant: str = "original"
    support: str = "sphere"
    needs_teacher: bool = False
    needs_predictor: bool = False
    needs_prototypes: bool = False
    trainable_prototypes: bool = True
    needs_targets: bool = False
    views: str = "symmetric"
    loss_is_cross_entropy_over_prototypes: bool = False

    @classmethod
    def from_config(cls, config: TrialConfig) -> "Objective":  # pragma: no cover - abstract
        """Construct with the hyperparameters of ``config`` (the keys ``config.OBJECTIVE_KEYS`` declares)."""
        raise NotImplementedError

    @classmethod
    def assignment_temperature(cls, config: TrialConfig) -> float:
        """Temperature of the student's assignment softmax, for the diagnostics' ``assign_*`` entropies."""
        return config.temperature

    def setup(self, config: TrialConfig, num_train: int) -> None:
        """Allocate the recipe's per-trial state (``num_train``: training images); called before the
        objective is moved to the trial's device."""

    def on_epoch_start(self, trainer: TrainingContext, epoch: int) -> None:
        """Before the first step of ``epoch`` (1-based), in training mode."""

    def before_forward(self, trainer: TrainingContext) -> None:
        """Before the student's forward pass of a step (gradients already zeroed)."""

    def add_inputs(self, trainer: TrainingContext, inputs: "ObjectiveInputs", batch_indices: torch.Tensor) -> None:
        """Fill the fields of ``inputs`` that the recipe provides (``batch_indices`` on the device)."""

    def after_backward(self, trainer: TrainingContext, outputs: tuple[Any, Any], batch_indices: torch.Tensor) -> None:
        """After ``loss.backward()`` and before the optimiser step; ``outputs``: the student's
        ``NetworkOutput`` of each view (``batch_indices`` on the device)."""

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
