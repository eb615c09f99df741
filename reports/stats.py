"""Interval statistics for the stability table.

* Wilson 95% interval for a collapse rate k/n: ``scipy.stats.binomtest(k, n).proportion_ci(
  confidence_level=0.95, method="wilson")``,
  i.e. (p̂ + z²/2n ± z·sqrt(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n).
* Paired bootstrap of mean(ER − original) over seeds present in both variants: resample the
  paired differences with replacement (numpy Generator, fixed seed, 10,000 resamples) and take the
  2.5 / 97.5 percentiles of the resampled means.
* Verdicts use the intervals only: collapse verdict ``er_more_stable`` when the ER Wilson interval
  lies entirely below the original's, ``original_more_stable`` when entirely above, otherwise
  ``no_difference``; knn verdict ``er_better`` / ``original_better`` when the bootstrap interval of
  ER − original excludes 0 on the positive / negative side, otherwise ``no_difference``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

N_RESAMPLES = 10_000
BOOT_SEED = 0


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (nan, nan) when n == 0."""
    if n == 0:
        return math.nan, math.nan
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def paired_bootstrap(diffs, n_resamples: int = N_RESAMPLES, seed: int = BOOT_SEED,
                     level: float = 0.95) -> tuple[float, float, float]:
    """Mean of paired differences and its percentile bootstrap interval (nan when empty)."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(n_resamples, d.size))
    means = d[idx].mean(axis=1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    return float(d.mean()), float(lo), float(hi)


def collapse_verdict(er: tuple[float, float], orig: tuple[float, float]) -> str:
    """Compare two Wilson intervals (lo, hi); overlap or missing -> no_difference."""
    if any(math.isnan(x) for x in (*er, *orig)):
        return "no_difference"
    if er[1] < orig[0]:
        return "er_more_stable"
    if er[0] > orig[1]:
        return "original_more_stable"
    return "no_difference"


def knn_verdict(lo: float, hi: float) -> str:
    """Verdict from the bootstrap interval of ER − original knn_top1."""
    if math.isnan(lo) or math.isnan(hi):
        return "no_difference"
    if lo > 0:
        return "er_better"
    if hi < 0:
        return "original_better"
    return "no_difference"
