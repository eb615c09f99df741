"""SwAV (Caron et al. 2020) and its ER replacement (prototypes kept), with SwAV's training recipe.

Original: swapped prediction against Sinkhorn-Knopp codes, computed over SwAV's queue of past
embeddings once it is full (small-batch recipe, see :mod:`er_core.objectives.memory`). ER: the
Sinkhorn targets are replaced by the other view's sharpened softmax under stop-gradient, minus
lambda H(p_bar); with no Sinkhorn codes there is nothing for the queue to serve, so the ER variant
has none. The prototypes and their optimisation are the same for both
(:class:`SwAVPrototypeRecipe`, facebookresearch/swav ``main_swav.py``): renormalised in place before
each step, and frozen (no gradient, so no weight decay and no momentum) for the first
``freeze_prototypes_epochs`` epochs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from er_core.config import TrialConfig
from er_core.objectives import functional
from er_core.objectives.base import (Objective, ObjectiveInputs, ObjectiveOutput, TrainingContext,
                                     check_iterations, check_positive)
from er_core.objectives.er import ERObjective, ERTerms
from er_core.objectives.memory import EmbeddingQueue, effective_queue_length


def _check_epochs(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value}")
    return int(value)


class SwAVPrototypeRecipe(Objective):
    """SwAV's prototype recipe, both variants: unit rows before every step, no gradient while frozen.

    Subclasses set ``freeze_prototypes_epochs`` (>= 0) in their constructor.
    """

    freeze_prototypes_epochs: int = 0

    def before_forward(self, trainer: TrainingContext) -> None:
        trainer.net.prototypes.normalize_()

    def after_backward(self, trainer: TrainingContext, outputs: tuple[Any, Any], batch_indices: torch.Tensor) -> None:
        if trainer.step < trainer.steps_per_epoch * self.freeze_prototypes_epochs:
            trainer.net.prototypes.weight.grad = None


def _create_queue_to_load(module: "SwAV", state_dict: dict, prefix: str, *_: Any) -> None:
    """load_state_dict pre-hook: a checkpoint taken after the queue started holds it; build it first."""
    saved = state_dict.get(prefix + "queue.embeddings")
    if saved is not None and module.queue is None:
        views, length, dim = saved.shape
        module.queue = EmbeddingQueue(length, dim, views).to(saved.device)


class SwAV(SwAVPrototypeRecipe):
    """Swapped prediction (:func:`functional.swav_loss`), with SwAV's queue.

    Args:
        temperature: tau of the predicted softmax; epsilon: Sinkhorn regularisation;
        iterations: Sinkhorn-Knopp iterations.
        freeze_prototypes_epochs: epochs without gradient for the prototypes (>= 0).
        queue_length: rows per view of the queue, a multiple of the batch size (0: no queue;
            :meth:`from_config` rounds ``TrialConfig.queue_length`` down as SwAV does).
        queue_start_epoch: completed epochs before the queue is created.
    """

    method, variant, support = "swav", "original", "discrete"
    needs_prototypes = True
    loss_is_cross_entropy_over_prototypes = True

    def __init__(self, temperature: float = 0.1, epsilon: float = 0.05, iterations: int = 3, *,
                 freeze_prototypes_epochs: int = 1, queue_length: int = 0, queue_start_epoch: int = 15) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.epsilon = check_positive("epsilon", epsilon)
        self.iterations = check_iterations("iterations", iterations)
        self.freeze_prototypes_epochs = _check_epochs("freeze_prototypes_epochs", freeze_prototypes_epochs)
        self.queue_length = _check_epochs("queue_length", queue_length)
        self.queue_start_epoch = _check_epochs("queue_start_epoch", queue_start_epoch)
        self.queue: EmbeddingQueue | None
        self.register_module("queue", None)  # created when it starts; None before
        self.register_load_state_dict_pre_hook(_create_queue_to_load)

    @classmethod
    def from_config(cls, config: TrialConfig) -> "SwAV":
        return cls(config.temperature, config.sinkhorn_epsilon, config.sinkhorn_iterations,
                   freeze_prototypes_epochs=config.freeze_prototypes_epochs,
                   queue_length=effective_queue_length(config.queue_length, config.batch_size),
                   queue_start_epoch=config.queue_start_epoch)

    def on_epoch_start(self, trainer: TrainingContext, epoch: int) -> None:
        if self.queue_length and self.queue is None and epoch - 1 >= self.queue_start_epoch:
            self.queue = EmbeddingQueue(self.queue_length, trainer.config.projector_dim).to(trainer.device)

    def add_inputs(self, trainer: TrainingContext, inputs: ObjectiveInputs, batch_indices: torch.Tensor) -> None:
        if self.queue is not None:
            inputs.queue1 = self.queue.scores(0, trainer.net.prototypes)
            inputs.queue2 = self.queue.scores(1, trainer.net.prototypes)

    def after_backward(self, trainer: TrainingContext, outputs: tuple[Any, Any], batch_indices: torch.Tensor) -> None:
        super().after_backward(trainer, outputs, batch_indices)
        if self.queue is not None:  # the batch joins the queue after its own codes were computed
            out1, out2 = outputs
            self.queue.push(F.normalize(out1.z.detach().float(), dim=1), F.normalize(out2.z.detach().float(), dim=1))

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        s1, s2 = inputs.require("s1", "s2")
        return ObjectiveOutput(loss=functional.swav_loss(s1, s2, self.temperature, self.epsilon, self.iterations,
                                                         inputs.queue1, inputs.queue2))


class SwAVER(SwAVPrototypeRecipe, ERObjective):
    """ER replacement of SwAV (:func:`functional.swav_er`); SwAV's prototype recipe, no queue.

    Args:
        temperature: tau of the student softmax (prediction and H(p_bar)).
        sharpen_temperature: lower tau of the target softmax (the config's teacher_temperature).
        entropy_weight: lambda >= 0.
        freeze_prototypes_epochs: epochs without gradient for the prototypes (>= 0).
    """

    method, support = "swav", "discrete"
    needs_prototypes = True

    def __init__(self, temperature: float = 0.1, sharpen_temperature: float = 0.04,
                 entropy_weight: float = 1.0, *, freeze_prototypes_epochs: int = 1) -> None:
        super().__init__(entropy_weight)
        self.temperature = check_positive("temperature", temperature)
        self.sharpen_temperature = check_positive("sharpen_temperature", sharpen_temperature)
        self.freeze_prototypes_epochs = _check_epochs("freeze_prototypes_epochs", freeze_prototypes_epochs)

    @classmethod
    def from_config(cls, config: TrialConfig) -> "SwAVER":
        return cls(config.temperature, config.teacher_temperature, config.entropy_weight,
                   freeze_prototypes_epochs=config.freeze_prototypes_epochs)

    def terms(self, inputs: ObjectiveInputs) -> ERTerms:
        s1, s2 = inputs.require("s1", "s2")
        return ERTerms(*functional.swav_er(s1, s2, self.temperature, self.sharpen_temperature))
