"""Calibrated tests and intervals for the stability table (one row per method x grid cell).

Per variant
  * collapse rate k/n with its Wilson 95% interval (``scipy.stats.binomtest(k, n).proportion_ci(
    method="wilson")``: (p̂ + z²/2n ± z·sqrt(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n)).

ER versus original (the verdict families are declared in reports/verdicts.py; their tests live
here and in survival.py)
  * collapse counts (complete, and complete-or-partial): Boschloo's exact unconditional test on
    the 2x2 collapse table, two-sided (``scipy.stats.boschloo_exact``, via
    :func:`er_core.power.collapse_pvalue`); it is uniformly more powerful than Fisher's (3/3 vs
    0/3: p = 0.031 against Fisher's 0.10). Above 30 seeds per variant Fisher's exact test is used
    instead (Boschloo's nuisance maximisation costs ~1 s per table at 100 seeds; the tests
    converge). Effect: the risk difference ER − original with Newcombe's hybrid score interval
    (method 10 of Newcombe 1998; ``statsmodels confint_proportions_2indep(method="newcomb")``).
  * time to collapse: log-rank (reports/survival.py).
  * ``knn``: paired t-test of the mean over seeds of final knn_top1 ER − original (seeds present
    in both variants), with its t interval (``scipy.stats.ttest_1samp(...).confidence_interval()``).
    Why t and not the exact sign-flip test: the sign-flip's smallest two-sided p is 2/2^n, so it
    can never reach 0.05 below 6 seeds, which is where our studies live; the t-test is exact for
    normal differences, and under "no difference" the paired differences are symmetric (the two
    variants of a seed are exchangeable), where the t-test is known to be conservative (the
    calibration tests measure it, heavy tails and collapse mixtures included). Where every
    difference is the same number (kNN accuracies are discrete, so this happens) the t statistic
    is undefined and the exact sign-flip p is used instead. The old percentile bootstrap of 3
    differences called a winner 26% of the time under the null and is gone.

Multiplicity: Holm's step-down adjustment (:func:`holm_array`, checked against ``statsmodels
multipletests(method="holm")``) within each family across the cells of one report that can
inform it (:func:`holm`'s ``informative``); cells without a p (one variant missing, fewer than 2
pairs) are left out of the family. A verdict fires when the adjusted p <= alpha (default 0.05);
its direction is the sign of the effect. Raw and adjusted p are both kept.

Degenerate input never gives NaN verdicts: no collapse at all (or all collapsed) -> p = 1;
identical paired differences of 0 -> p = 1, of d != 0 -> 2/2^n; nothing to compare -> p None,
verdict ``untested``. A cell that cannot inform a family (p = 1 by construction) is also
``untested`` (stability.py), never ``no_difference``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps
from statsmodels.stats.proportion import confint_proportions_2indep

from er_core.power import collapse_pvalue
from er_core.rules import ALPHA, check_alpha  # noqa: F401 (the one level and its check, for stability.py)

LEVEL = 0.95
UNTESTED = "untested"
NO_DIFFERENCE = "no_difference"
NOT_REPLICATED = "not_replicated"  # search-phase fallback: no replicated comparison, no verdict


def wilson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (nan, nan) when n == 0."""
    if n == 0:
        return math.nan, math.nan
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class CollapseTest:
    """Boschloo p and the ER − original risk difference with its Newcombe interval."""

    p: float | None
    diff: float | None
    lo: float | None
    hi: float | None


def collapse_test(k_er: int, n_er: int, k_orig: int, n_orig: int,
                  level: float = LEVEL) -> CollapseTest:
    """Exact two-sided test of equal collapse probabilities; all None when a variant is empty."""
    if n_er == 0 or n_orig == 0:
        return CollapseTest(None, None, None, None)
    p = collapse_pvalue(k_er, n_er, k_orig, n_orig)
    lo, hi = confint_proportions_2indep(k_er, n_er, k_orig, n_orig, method="newcomb",
                                       compare="diff", alpha=1 - level)
    return CollapseTest(p, k_er / n_er - k_orig / n_orig, float(lo), float(hi))


@dataclass(frozen=True)
class KnnTest:
    """Paired test on differences; fields are arrays shaped like ``diffs`` without its last axis.
    ``sign_flip`` marks where the exact sign-flip p replaced the t-test's (sd 0)."""

    n: int
    mean: np.ndarray
    sd: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    p: np.ndarray
    sign_flip: np.ndarray


def knn_test(diffs, level: float = LEVEL) -> KnnTest:
    """Two-sided one-sample t-test of mean(diffs) = 0 along the last axis, with its t interval
    mean ± t_{(1+level)/2, n-1}·sd/sqrt(n). Vectorised: ``diffs`` may be [..., n].

    n < 2 gives nan everywhere (no test). Where every difference is the same number (sd 0) the
    t statistic is undefined (scipy gives p ~ 0 for a non-zero mean, which would call a winner
    from two equal differences): there p is the exact sign-flip p, 2/2^n for a non-zero mean
    (1 for a zero mean), and the interval is the point.
    """
    diffs = np.asarray(diffs, dtype=np.float64)
    n = diffs.shape[-1]
    mean = diffs.mean(axis=-1) if n else np.full(diffs.shape[:-1], np.nan)
    if n < 2:
        nan = np.full(np.shape(mean), np.nan)
        return KnnTest(n, mean, nan, nan, nan, nan, np.zeros(np.shape(mean), bool))
    sd = diffs.std(axis=-1, ddof=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sps.ttest_1samp(diffs, 0.0, axis=-1)
        interval = res.confidence_interval(confidence_level=level)
    constant = sd <= 1e-12 * np.maximum(1.0, np.abs(mean))
    p = np.where(np.isnan(res.pvalue), 1.0, res.pvalue)
    if np.any(constant):
        # all n differences equal d != 0: only all-plus and all-minus reach |sum| = n|d|
        exact = np.where(np.abs(mean) > 0, min(1.0, 2.0 / 2.0 ** n), 1.0)
        p = np.where(constant, exact, p)
    lo = np.where(constant | np.isnan(interval.low), mean, interval.low)
    hi = np.where(constant | np.isnan(interval.high), mean, interval.high)
    return KnnTest(n, mean, sd, lo, hi, p, constant)


def holm_array(p) -> np.ndarray:
    """Holm step-down adjustment along the last axis: with p sorted ascending, p_adj_(i) =
    min(1, max_{j <= i} (m − j + 1)·p_(j)) (Holm 1979), returned in the input order. Equals
    ``statsmodels multipletests(method="holm")`` (tested); vectorised because that function
    runs ``gc.collect()`` on every call (0.1 s each, too slow for calibration studies)."""
    p = np.asarray(p, dtype=np.float64)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1) * np.arange(m, 0, -1)
    adj_sorted = np.minimum(1.0, np.maximum.accumulate(ranked, axis=-1))
    out = np.empty_like(adj_sorted)
    np.put_along_axis(out, order, adj_sorted, axis=-1)
    return out


def holm(pvalues, informative=None) -> list[float | None]:
    """Holm-adjusted p-values of one family; None/nan entries are not tested and stay None.

    ``informative`` (optional, one bool per p): only those cells count in m; the others keep
    their raw p (a cell where nothing collapsed has p = 1 by construction and can never fire,
    so counting it in m only costs the other cells power)."""
    if informative is None:
        informative = [True] * len(pvalues)
    tested = [i for i, (p, keep) in enumerate(zip(pvalues, informative))
              if keep and p is not None and not math.isnan(p)]
    out: list[float | None] = [None if p is None or math.isnan(p) else float(p) for p in pvalues]
    if tested:
        for i, adjusted in zip(tested, holm_array([pvalues[i] for i in tested])):
            out[i] = float(adjusted)
    return out


def verdict(labels: tuple[str, str], p_adj: float | None, er_favoured: bool | None,
            alpha: float = ALPHA) -> str:
    """Verdict of one family: ``labels[0]`` (ER favoured) or ``labels[1]`` when p_adj <= alpha,
    else ``no_difference``; ``untested`` when there is no p."""
    if p_adj is None or er_favoured is None:
        return UNTESTED
    if p_adj > alpha:
        return NO_DIFFERENCE
    return labels[0] if er_favoured else labels[1]
