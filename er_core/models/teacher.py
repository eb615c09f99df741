"""EMA teacher with its coefficient schedule (BYOL's cosine, or constant)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from er_core.config import EMA_SCHEDULES
from er_core.models.heads import NetworkOutput, SSLNetwork


def ema_momentum(base: float, step: int, total_steps: int, schedule: str = "cosine") -> float:
    """The teacher's EMA coefficient at ``step`` of ``total_steps``.

    ``cosine`` (BYOL): ``m = 1 - (1 - base) (cos(pi step / total) + 1) / 2``, from ``base`` at step 0
    to 1 at ``total``. ``constant``: ``m = base`` at every step, so ``base = 0`` keeps the teacher
    equal to the current student for the whole trial. A stability axis over the coefficient needs
    ``constant``: under ``cosine`` a base of 0 is 0.15, 0.5, 0.85 and 0.98 at 25, 50, 75 and 90% of
    training, so the condition would not be the coefficient it is labelled with.

    Raises:
        ValueError: ``base`` outside [0, 1] or an unknown ``schedule``.
    """
    if not 0.0 <= base <= 1.0:
        raise ValueError(f"EMA base coefficient must be in [0, 1], got {base}")
    if schedule not in EMA_SCHEDULES:
        raise ValueError(f"unknown EMA schedule {schedule!r}; allowed: {', '.join(EMA_SCHEDULES)}")
    if schedule == "constant" or total_steps <= 0:
        return base
    progress = min(max(step / total_steps, 0.0), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class EMATeacher(nn.Module):
    """A frozen copy of the student without its predictor, updated as ``t <- m t + (1 - m) s``.

    ``m = 0`` makes the teacher the current student under stop-gradient; ``m = 1`` freezes it.
    BatchNorm running statistics are copied from the student.
    """

    def __init__(self, student: SSLNetwork) -> None:
        super().__init__()
        self.network = SSLNetwork(copy.deepcopy(student.backbone), copy.deepcopy(student.projector),
                                  None, copy.deepcopy(student.prototypes))
        for param in self.network.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: SSLNetwork, momentum: float) -> None:
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
        pairs = [(self.network.backbone, student.backbone), (self.network.projector, student.projector)]
        if self.network.prototypes is not None:
            pairs.append((self.network.prototypes, student.prototypes))
        for teacher_part, student_part in pairs:
            for t, s in zip(teacher_part.parameters(), student_part.parameters()):
                t.lerp_(s.detach(), 1.0 - momentum)
            for t, s in zip(teacher_part.buffers(), student_part.buffers()):
                t.copy_(s)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> NetworkOutput:
        return self.network(x)

