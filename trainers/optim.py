"""Optimisers and the learning-rate schedule of a trial.

The schedule is the SSL standard (SimCLR, BYOL): the base rate is scaled linearly with the batch
size, ``lr = base_lr * batch_size / 256`` (Goyal et al. 2017), warmed up linearly for
``warmup_steps`` and then decayed with a half cosine to zero.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from er_core.config import TrialConfig


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """Linear scaling rule: ``base_lr * batch_size / 256``."""
    return base_lr * batch_size / 256.0


def learning_rate(step: int, total_steps: int, warmup_steps: int, peak_lr: float) -> float:
    """Linear warm-up to ``peak_lr`` over ``warmup_steps`` then cosine decay to 0 at ``total_steps``.

    ``lr(s) = peak * (s + 1) / warmup`` for ``s < warmup``, else
    ``peak * 0.5 * (1 + cos(pi * (s - warmup) / (total - warmup)))``.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017) around SGD with momentum.

    For each parameter tensor w with gradient g (weight decay ``wd`` folded in), the update uses
    ``trust = eta * ||w|| / (||g + wd * w||)`` when both norms are positive, else 1; biases and
    normalisation parameters (``ndim <= 1``) are excluded from adaptation and weight decay, as in
    BYOL and SimCLR.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.001) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer interface
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if p.ndim > 1:
                    grad = grad.add(p, alpha=group["weight_decay"])
                    w_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(grad)
                    trust = torch.where((w_norm > 0) & (g_norm > 0),
                                        group["eta"] * w_norm / g_norm, torch.ones_like(w_norm))
                    grad = grad.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(grad).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def build_optimizer(modules: "list[nn.Module]", config: TrialConfig) -> torch.optim.Optimizer:
    """SGD (weight decay on weights only) or LARS over the trainable parameters of ``modules``."""
    decay, no_decay = [], []
    for module in modules:
        for param in module.parameters():
            if param.requires_grad:
                (decay if param.ndim > 1 else no_decay).append(param)
    lr = scaled_lr(config.lr, config.batch_size)
    if config.optimizer == "lars":
        return LARS([{"params": decay}, {"params": no_decay}], lr=lr, momentum=config.momentum,
                    weight_decay=config.weight_decay)
    return torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}],
                           lr=lr, momentum=config.momentum)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
