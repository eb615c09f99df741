"""DINO (Caron et al. 2021) and its ER replacement (EMA teacher and sharpening kept).

Original: ``CE(softmax((t - c)/tau_t), softmax(s/tau_s))`` across views, with the centre ``c``
an EMA of the teacher's logits. ER: centering removed, the same CE as reconstruction, minus
lambda H(mean student assignment).
"""

from __future__ import annotations

import torch
from torch import nn

from er_tune.objectives import functional
from er_tune.objectives.base import Objective, ObjectiveInputs, ObjectiveOutput, er_output


class Center(nn.Module):
    """DINO's centre: ``c <- m c + (1 - m) mean(teacher logits)`` (a buffer, so it is checkpointed)."""

    def __init__(self, num_prototypes: int, momentum: float = 0.9) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("center", torch.zeros(1, num_prototypes))

    @torch.no_grad()
    def update(self, teacher_logits: torch.Tensor) -> None:
        batch_center = teacher_logits.detach().mean(dim=0, keepdim=True).to(self.center.dtype)
        self.center.mul_(self.momentum).add_(batch_center, alpha=1.0 - self.momentum)


class DINO(Objective):
    method, variant, support = "dino", "original", "discrete"
    needs_teacher = needs_prototypes = True

    def __init__(self, num_prototypes: int, student_temperature: float = 0.1,
                 teacher_temperature: float = 0.04, center_momentum: float = 0.9,
                 centering: bool = True) -> None:
        super().__init__()
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.centering = centering
        self.center = Center(num_prototypes, center_momentum)

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        s1, s2, ts1, ts2 = inputs.require("s1", "s2", "ts1", "ts2")
        center = self.center.center if self.centering else torch.zeros_like(self.center.center)
        loss = 0.5 * (functional.dino_loss(s1, ts2, center, self.student_temperature, self.teacher_temperature)
                      + functional.dino_loss(s2, ts1, center, self.student_temperature, self.teacher_temperature))
        if self.training and self.centering:
            self.center.update(torch.cat([ts1, ts2]))
        return ObjectiveOutput(loss=loss)


class DINOER(Objective):
    method, variant, support = "dino", "er", "discrete"
    needs_teacher = needs_prototypes = True

    def __init__(self, student_temperature: float = 0.1, teacher_temperature: float = 0.04,
                 entropy_weight: float = 1.0) -> None:
        super().__init__()
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.entropy_weight = entropy_weight

    def terms(self, inputs: ObjectiveInputs):
        s1, s2, ts1, ts2 = inputs.require("s1", "s2", "ts1", "ts2")
        return functional.dino_er(s1, s2, ts1, ts2, self.student_temperature, self.teacher_temperature)

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        reconstruction, entropy = self.terms(inputs)
        return er_output(reconstruction, entropy, self.entropy_weight)
