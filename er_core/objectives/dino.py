"""DINO (Caron et al. 2021) and its ER replacement (EMA teacher and sharpening kept).

Original: ``CE(softmax((t - c)/tau_t), softmax(s/tau_s))`` across views, with the centre ``c``
an EMA of the teacher's logits (:class:`Center`). ER: centering removed, the same CE as the
reconstruction, minus lambda H(mean student assignment). Both declare an EMA teacher (built and
updated by the trainer), prototypes on student and teacher, and BYOL's asymmetric views; the
teacher temperature is the constant ``teacher_temperature`` (no warm-up schedule).
"""

from __future__ import annotations

import torch
from torch import nn

from er_core.config import TrialConfig
from er_core.objectives import functional
from er_core.objectives.base import (Objective, ObjectiveInputs, ObjectiveOutput, check_fraction,
                                     check_positive)
from er_core.objectives.er import ERObjective, ERTerms


class Center(nn.Module):
    """DINO's centre ``c <- m c + (1 - m) mean_i t_i`` over the teacher logits of a batch.

    A buffer [1, K] initialised to zeros, so ``state_dict()`` checkpoints it.

    Args:
        num_prototypes: K; momentum: m in [0, 1] (0.9 in DINO).
    """

    def __init__(self, num_prototypes: int, momentum: float = 0.9) -> None:
        super().__init__()
        if isinstance(num_prototypes, bool) or int(num_prototypes) != num_prototypes or num_prototypes < 1:
            raise ValueError(f"num_prototypes must be an integer >= 1, got {num_prototypes}")
        self.momentum = check_fraction("center_momentum", momentum)
        self.register_buffer("center", torch.zeros(1, int(num_prototypes)))

    @torch.no_grad()
    def update(self, teacher_logits: torch.Tensor) -> None:
        """One EMA step towards the batch mean of ``teacher_logits`` [N, K]."""
        if teacher_logits.dim() != 2 or teacher_logits.shape[1] != self.center.shape[1]:
            raise ValueError(f"teacher_logits must be [N, {self.center.shape[1]}], got {tuple(teacher_logits.shape)}")
        batch_center = teacher_logits.detach().mean(dim=0, keepdim=True).to(self.center.dtype)
        self.center.mul_(self.momentum).add_(batch_center, alpha=1.0 - self.momentum)


class DINO(Objective):
    """``0.5 * (dino_loss(s1, ts2, c) + dino_loss(s2, ts1, c))``; in training mode the centre then
    moves towards the teacher logits of both views (as DINOLoss, after the loss is computed).

    Args:
        num_prototypes: K, the output dimension; student_temperature, teacher_temperature: tau_s, tau_t;
        center_momentum: m of the centre EMA; centering: False disables the centre (zeros, never
            updated), which provokes collapse.
    """

    method, variant, support = "dino", "original", "discrete"
    needs_teacher = needs_prototypes = True
    views = "asymmetric"
    loss_is_cross_entropy_over_prototypes = True

    def __init__(self, num_prototypes: int, student_temperature: float = 0.1,
                 teacher_temperature: float = 0.04, center_momentum: float = 0.9,
                 centering: bool = True) -> None:
        super().__init__()
        self.student_temperature = check_positive("student_temperature", student_temperature)
        self.teacher_temperature = check_positive("teacher_temperature", teacher_temperature)
        self.centering = bool(centering)
        self.center = Center(num_prototypes, center_momentum)

    @classmethod
    def from_config(cls, config: TrialConfig) -> "DINO":
        return cls(config.num_prototypes, config.student_temperature, config.teacher_temperature,
                   config.center_momentum, centering=config.dino_centering)

    @classmethod
    def assignment_temperature(cls, config: TrialConfig) -> float:
        return config.student_temperature

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        s1, s2, ts1, ts2 = inputs.require("s1", "s2", "ts1", "ts2")
        if ts1.shape != s1.shape or s1.shape[1] != self.center.center.shape[1]:
            raise ValueError(f"DINO expects student and teacher logits [B, {self.center.center.shape[1]}], "
                             f"got {tuple(s1.shape)} and {tuple(ts1.shape)}")
        center = self.center.center if self.centering else torch.zeros_like(self.center.center)
        center = center.to(ts1.dtype)
        loss = 0.5 * (functional.dino_loss(s1, ts2, center, self.student_temperature, self.teacher_temperature)
                      + functional.dino_loss(s2, ts1, center, self.student_temperature, self.teacher_temperature))
        if self.training and self.centering:
            self.center.update(torch.cat([ts1, ts2]))
        return ObjectiveOutput(loss=loss)


class DINOER(ERObjective):
    """ER replacement of DINO (:func:`functional.dino_er`): no centre, teacher sharpening kept.

    Args:
        student_temperature, teacher_temperature: tau_s, tau_t; entropy_weight: lambda >= 0.
    """

    method, support = "dino", "discrete"
    needs_teacher = needs_prototypes = True
    views = "asymmetric"

    def __init__(self, student_temperature: float = 0.1, teacher_temperature: float = 0.04,
                 entropy_weight: float = 1.0) -> None:
        super().__init__(entropy_weight)
        self.student_temperature = check_positive("student_temperature", student_temperature)
        self.teacher_temperature = check_positive("teacher_temperature", teacher_temperature)

    @classmethod
    def from_config(cls, config: TrialConfig) -> "DINOER":
        return cls(config.student_temperature, config.teacher_temperature, config.entropy_weight)

    @classmethod
    def assignment_temperature(cls, config: TrialConfig) -> float:
        return config.student_temperature

    def terms(self, inputs: ObjectiveInputs) -> ERTerms:
        s1, s2, ts1, ts2 = inputs.require("s1", "s2", "ts1", "ts2")
        if ts1.shape != s1.shape:
            raise ValueError(f"DINO-ER expects student and teacher logits of one shape, "
                             f"got {tuple(s1.shape)} and {tuple(ts1.shape)}")
        return ERTerms(*functional.dino_er(s1, s2, ts1, ts2, self.student_temperature, self.teacher_temperature))
