"""How often the not-learned grade fires, by simulation: per-query correctness of an untrained and a
trained network on the same queries, paired, with the trained one better by a given number of points.

The trained network keeps a query the untrained one got right with probability 0.85 (the pairs are
positively correlated, as two networks' answers on one test set are) and gets the others right at
the rate that gives its accuracy; untrained accuracies are FashionMNIST's measured ones (kNN 0.59,
linear probe 0.74 on the 10,000 test images). Each row: the share of simulated trials that
:meth:`er_core.collapse.CollapseMonitor.observe_final` grades ``not_learned`` (both one-sided exact
McNemar tests at ``learned_alpha`` fail to show a gain): at gain 0 the grade's intended rate, above
it its false-positive rate on trials that did learn, at 10,000 queries (the whole test split) and at
1,000 (an eval-set-sized final evaluation).

Run: ``nice -n 10 .venv/bin/python benchmarks/not_learned_rates.py [--runs 400]``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from er_core.collapse import CollapseMonitor
from er_core.config import CollapseConfig

STAY = 0.85
UNTRAINED = {"knn": 0.59, "linear": 0.74}
GAINS = ((0.0, 0.0), (0.005, 0.005), (0.01, 0.005), (0.015, 0.01), (0.03, 0.02), (0.11, 0.05))


def paired(p_before: float, p_after: float, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(after, before) correctness [n] with marginal rates p_after, p_before (see the module docstring)."""
    stay = min(STAY, p_after / p_before)
    become = (p_after - p_before * stay) / (1.0 - p_before)
    before = torch.rand(n, generator=generator) < p_before
    draw = torch.rand(n, generator=generator)
    return torch.where(before, draw < stay, draw < become), before


def graded_share(knn_gain: float, linear_gain: float, queries: int, runs: int, generator: torch.Generator) -> float:
    count = 0
    for _ in range(runs):
        knn_after, knn_before = paired(UNTRAINED["knn"], UNTRAINED["knn"] + knn_gain, queries, generator)
        linear_after, linear_before = paired(UNTRAINED["linear"], UNTRAINED["linear"] + linear_gain, queries, generator)
        monitor = CollapseMonitor(CollapseConfig(), discrete=True, num_classes=10)
        monitor.calibrate({}, final_knn_correct=knn_before, final_linear_correct=linear_before)
        count += bool(monitor.observe_final(knn_after, linear_after, epoch=1, step=1))
    return count / runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(args.seed)
    print(f"share of {args.runs} simulated trials graded not_learned (learned_alpha "
          f"{CollapseConfig().learned_alpha}; untrained kNN {UNTRAINED['knn']}, linear {UNTRAINED['linear']})")
    print(f"{'kNN gain':>9} {'linear gain':>11} {'10,000 queries':>15} {'1,000 queries':>14}")
    for knn_gain, linear_gain in GAINS:
        shares = [graded_share(knn_gain, linear_gain, n, args.runs, generator) for n in (10_000, 1_000)]
        print(f"{knn_gain:>+9.3f} {linear_gain:>+11.3f} {shares[0]:>15.3f} {shares[1]:>14.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
