"""Measure the stability verdicts: false-positive rates under no difference, and power.

    PYTHONPATH=. python benchmarks/verdict_calibration.py [--reps 4000]

Prints, for n = 3, 5, 8, 10 seeds per variant: the exact size of the Boschloo collapse test (max
over the null collapse probability), the Monte-Carlo FPR of the paired t (normal, Laplace and
collapse-mixture nulls), of the permutation log-rank, of the old percentile bootstrap, and of the
Holm-adjusted family over 4 cells; then what each seed count can detect (Holm over m cells); then
the robustness table's test of a difference of accuracy drops (seed-contrast t) next to a
Welch-Satterthwaite t of the four means: false-positive rates under equal drops (equal sds, a 12:1
range of sds, one sd 10 times the others, the stressed original piled at chance, and that floored
arm dominating 15:1, where neither holds) and power at gaps of 0.03, 0.05 and 0.08 with sd 0.02 in every arm.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from er_core import power  # noqa: E402
from reports import stats  # noqa: E402
from reports.calibration import (drop_arms, logrank_fpr, null_diffs,  # noqa: E402
                                 old_bootstrap_verdicts, rejection_prob, table_pvalues,
                                 welch_contrast_pvalues)
from reports.robustness import drop_test  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=4000)
    args = ap.parse_args()
    reps = args.reps
    grid = np.linspace(0, 1, 101)
    print(f"false-positive rates at alpha 0.05 (Monte Carlo over {reps} reps unless exact)")
    print("n   boschloo(exact)  t:normal  t:laplace  t:mixture  logrank(p=.5/.8)  "
          "old-bootstrap  holm-4-cells(t)")
    for n in (3, 5, 8, 10):
        pv = table_pvalues(n)
        size = max(rejection_prob(pv <= 0.05, n, p) for p in grid)
        rng = np.random.default_rng(n)
        t = [(stats.knn_test(null_diffs(k, reps, n, rng)).p <= 0.05).mean()
             for k in ("normal", "laplace", "collapse_mixture")]
        lr_reps = max(200, reps // (4 if n <= 5 else 10))
        kw = {} if n <= 5 else {"n_resamples": 999}
        lr = [logrank_fpr(n, lr_reps, pc, 30, seed=100 + n, **kw) for pc in (0.5, 0.8)]
        boot = old_bootstrap_verdicts(null_diffs("normal", min(reps, 1000), n, rng)).mean()
        p4 = stats.knn_test(null_diffs("normal", reps * 4, n, rng)).p.reshape(reps, 4)
        fwer = (stats.holm_array(p4) <= 0.05).any(axis=1).mean()
        print(f"{n:<3} {size:<16.4f} {t[0]:<9.4f} {t[1]:<10.4f} {t[2]:<10.4f} "
              f"{lr[0]:.4f}/{lr[1]:.4f} ({lr_reps})  {boot:<14.4f} {fwer:.4f}")
    print("\nwhat n seeds per variant can decide (alpha 0.05, Holm over m cells, single difference)")
    print("m   n   collapse: smallest k/n vs 0/n   P(reject | 0.0 vs 0.8)  log-rank min p   "
          "knn 80%-power effect (sd units)")
    for m in (1, 4, 8, 25):
        for n in (3, 4, 5, 6, 8, 10, 12, 16):
            det = power.min_detectable_collapse(n, n, 0.05, m)
            pw = power.collapse_power(0.0, 0.8, n, 0.05, m)
            eff = power.knn_min_detectable_effect(n, 0.05, m)
            print(f"{m:<3} {n:<3} {'none' if det is None else f'{det[0]}/{n}':<32} {pw:<23.3f} "
                  f"{power.logrank_min_pvalue(n, n):<16.4g} {eff:.2f}")
        print(f"    min seeds: collapse {power.min_seeds_collapse(0.05, m)}, "
              f"log-rank {power.min_seeds_logrank(0.05, m)}")

    drops(reps * 5)


def drops(reps: int) -> None:
    """The robustness table's delta_drop test against Welch on the four means."""
    kinds = ("equal", "unequal", "dominant", "floor", "floor_dominant")
    print(f"\ndelta_drop = original_drop - er_drop = 0 (equal drops): false-positive rates at alpha "
          f"0.05, {reps} reps; seed-contrast t / Welch-Satterthwaite of the four means")
    print("n   " + "  ".join(f"{kind:<16}" for kind in kinds))
    for n in (3, 5, 8):
        cells = []
        for kind in kinds:
            arms = drop_arms(kind, reps, n, np.random.default_rng(200 + n))
            cells.append(f"{(drop_test(*arms).p <= 0.05).mean():.4f}/"
                         f"{(welch_contrast_pvalues(arms) <= 0.05).mean():.4f}")
        print(f"{n:<3} " + "  ".join(f"{c:<16}" for c in cells))
    print("power (sd 0.02 in each arm; seed-contrast t / Welch), gap = delta_drop")
    for n in (3, 5, 8):
        cells = []
        for gap in (0.03, 0.05, 0.08):
            arms = drop_arms("equal", reps, n, np.random.default_rng(300 + n), gap=gap)
            cells.append(f"gap {gap:.2f}: {(drop_test(*arms).p <= 0.05).mean():.3f}/"
                         f"{(welch_contrast_pvalues(arms) <= 0.05).mean():.3f}")
        print(f"{n:<3} " + "   ".join(cells))


if __name__ == "__main__":
    main()
