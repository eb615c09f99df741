"""Linear probe of frozen features: L2-regularised multinomial logistic regression (pure torch).

The standard linear evaluation of self-supervised representations (SimCLR, BYOL, DINO), run on
precomputed features instead of by training a layer through the frozen network:

1. features are standardised, ``x' = (x - mean) / std`` with the statistics of the training rows
   (``std`` floored at ``STD_FLOOR``, so a constant feature becomes 0 instead of inf);
2. the regularisation strength λ is chosen on a held-out split of the labelled bank: for each λ of
   ``l2_grid`` (strongest first, each fit warm-started from the previous one) minimise

       L(W, b) = 1/N Σ_i CE(softmax(W x_i + b), y_i) + λ/2 ||W||²   (bias not penalised)

   with full-batch L-BFGS (strong-Wolfe line search) from zero weights, and keep the λ with the
   best held-out top-1 (ties: the stronger λ);
3. the classifier is refitted with that λ on the whole bank and scored on the queries.

Everything is deterministic: a fixed split permutation (``seed``), zero initialisation and
full-batch L-BFGS, computed in float64 on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

L2_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
HOLDOUT_FRACTION = 0.2
MAX_ITER = 100
STD_FLOOR = 1e-6


@dataclass(frozen=True)
class LinearProbeResult:
    """``top1`` on the queries, the chosen ``l2``, and the held-out top-1 of every λ tried."""

    top1: float
    l2: float
    holdout_top1: dict[float, float]


def standardize(train: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(x - mean) / std`` with the statistics of ``train`` applied to it and to ``others``."""
    mean = train.mean(dim=0, keepdim=True)
    std = train.std(dim=0, keepdim=True, unbiased=False).clamp_min(STD_FLOOR)
    return tuple((x - mean) / std for x in (train, *others))


def fit_logistic_regression(features: torch.Tensor, labels: torch.Tensor, *, num_classes: int, l2: float,
                            max_iter: int = MAX_ITER,
                            init: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise mean cross-entropy + l2/2 ||W||² with full-batch L-BFGS; returns ``(W [C, D], b [C])``."""
    dim = features.shape[1]
    if init is None:
        weight = torch.zeros(num_classes, dim, dtype=features.dtype)
        bias = torch.zeros(num_classes, dtype=features.dtype)
    else:
        weight, bias = init[0].clone(), init[1].clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight.T + bias, labels) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def _accuracy(weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> float:
    return float(((features @ weight.T + bias).argmax(dim=1) == labels).double().mean())


@dataclass(frozen=True)
class LinearClassifier:
    """A fitted probe: standardisation statistics of the bank, ``(W, b)`` and the chosen λ."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    l2: float
    holdout_top1: dict[float, float]

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Predicted class [Q] of ``features`` [Q, D] (non-finite values read as 0)."""
        x = torch.nan_to_num(features.detach().double().cpu(), nan=0.0, posinf=0.0, neginf=0.0)
        return (((x - self.mean) / self.std) @ self.weight.T + self.bias).argmax(dim=1)


@torch.no_grad()
def fit_linear_probe(bank_features: torch.Tensor, bank_labels: torch.Tensor, *, num_classes: int,
                     l2_grid: tuple[float, ...] = L2_GRID, holdout_fraction: float = HOLDOUT_FRACTION,
                     max_iter: int = MAX_ITER, seed: int = 0) -> LinearClassifier:
    """Steps 1-3 of the module docstring on the labelled bank; score any queries with ``predict``."""
    if bank_features.shape[0] != bank_labels.shape[0]:
        raise ValueError("features and labels must have the same number of rows")
    if bank_features.shape[0] < 2:
        raise ValueError(f"the linear probe needs at least 2 labelled rows, got {bank_features.shape[0]}")
    if not l2_grid or any(not value > 0 for value in l2_grid):
        raise ValueError(f"l2_grid must be non-empty and positive, got {l2_grid}")
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    bank = torch.nan_to_num(bank_features.detach().double().cpu(), nan=0.0, posinf=0.0, neginf=0.0)
    bank_y = bank_labels.detach().long().cpu()
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(bank.shape[0], generator=generator)
    held = min(max(1, round(holdout_fraction * bank.shape[0])), bank.shape[0] - 1)
    fit_index, held_index = order[held:], order[:held]
    fit_x, held_x = standardize(bank[fit_index], bank[held_index])
    scores: dict[float, float] = {}
    params = None
    grid = sorted(l2_grid, reverse=True)
    for l2 in grid:
        params = fit_logistic_regression(fit_x, bank_y[fit_index], num_classes=num_classes, l2=l2,
                                         max_iter=max_iter, init=params)
        scores[l2] = _accuracy(*params, held_x, bank_y[held_index])
    best = max(grid, key=lambda l2: (scores[l2], l2))
    mean = bank.mean(dim=0, keepdim=True)
    std = bank.std(dim=0, keepdim=True, unbiased=False).clamp_min(STD_FLOOR)
    weight, bias = fit_logistic_regression((bank - mean) / std, bank_y, num_classes=num_classes, l2=best,
                                           max_iter=max_iter)
    return LinearClassifier(mean, std, weight, bias, best, scores)


@torch.no_grad()
def linear_probe(bank_features: torch.Tensor, bank_labels: torch.Tensor, query_features: torch.Tensor,
                 query_labels: torch.Tensor, *, num_classes: int, l2_grid: tuple[float, ...] = L2_GRID,
                 holdout_fraction: float = HOLDOUT_FRACTION, max_iter: int = MAX_ITER,
                 seed: int = 0) -> LinearProbeResult:
    """Linear-probe top-1 of ``query_features`` with λ chosen on a held-out part of the bank.

    Args:
        bank_features: labelled features [N, D] (N >= 2); ``bank_labels`` [N] in ``[0, num_classes)``.
        query_features: evaluation features [Q, D]; ``query_labels`` [Q].
        l2_grid: candidate λ values (positive); tried strongest first with warm starts.
        holdout_fraction: share of the bank held out to choose λ (at least one row each side).
        seed: seed of the split permutation.

    Non-finite features are replaced by 0 (a diverged network then scores about chance, never NaN).
    """
    if query_features.shape[0] != query_labels.shape[0]:
        raise ValueError("features and labels must have the same number of rows")
    probe = fit_linear_probe(bank_features, bank_labels, num_classes=num_classes, l2_grid=l2_grid,
                             holdout_fraction=holdout_fraction, max_iter=max_iter, seed=seed)
    correct = probe.predict(query_features) == query_labels.detach().long().cpu()
    return LinearProbeResult(top1=float(correct.double().mean()), l2=probe.l2, holdout_top1=probe.holdout_top1)


def linear_top1(bank_features: torch.Tensor, bank_labels: torch.Tensor, query_features: torch.Tensor,
                query_labels: torch.Tensor, *, num_classes: int, **kwargs) -> float:
    """Top-1 accuracy of :func:`linear_probe` (same arguments)."""
    return linear_probe(bank_features, bank_labels, query_features, query_labels, num_classes=num_classes,
                        **kwargs).top1
