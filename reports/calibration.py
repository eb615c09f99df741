"""Simulated data for measuring the stability verdicts' calibration: false-positive rates under no
difference, and power under a planted one.

Shared by ``tests/test_stats_calibration.py`` (which keeps every verdict within alpha at 3, 5 and
10 seeds) and ``benchmarks/verdict_calibration.py`` (which prints the rates); nothing in the
report imports it. ``old_bootstrap_verdicts`` is the uncalibrated kNN verdict of schema 1, kept to
show that the calibration checks fail it.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import stats as sps

from er_core import power
from er_core.rules import ALPHA

from .survival import logrank_test


def rejection_prob(reject: np.ndarray, n_seeds: int, p_collapse: float) -> float:
    """Exact P(reject) when both arms are Binomial(n_seeds, p_collapse): a sum over the tables.

    ``reject``: boolean ``[n_seeds+1, n_seeds+1]``, whether the table (k_er, k_orig) rejects."""
    weights = sps.binom.pmf(np.arange(n_seeds + 1), n_seeds, p_collapse)
    return float(np.outer(weights, weights)[reject].sum())


@lru_cache(maxsize=None)
def table_pvalues(n_seeds: int) -> np.ndarray:
    """Collapse-count p-values of every table (k_er, k_orig) with ``n_seeds`` per variant."""
    counts = range(n_seeds + 1)
    return np.array([[power.collapse_pvalue(k_er, n_seeds, k_orig, n_seeds) for k_orig in counts]
                     for k_er in counts])


def null_diffs(kind: str, reps: int, n_seeds: int, rng: np.random.Generator) -> np.ndarray:
    """``[reps, n_seeds]`` paired kNN differences (ER - original) with no true difference.

    ``kind``: ``normal`` (sd 0.01), ``laplace`` (scale 0.01) or ``collapse_mixture`` (each
    variant collapses to chance on 30% of the seeds, else learns)."""
    if kind == "normal":
        return rng.normal(0.0, 0.01, (reps, n_seeds))
    if kind == "laplace":
        return rng.laplace(0.0, 0.01, (reps, n_seeds))

    def arm():
        collapsed = rng.random((reps, n_seeds)) < 0.3
        return np.where(collapsed, 0.1 + 0.005 * rng.normal(size=(reps, n_seeds)),
                        0.6 + 0.02 * rng.normal(size=(reps, n_seeds)))
    return arm() - arm()


# Seed sds of the four arms (original at the reference, original stressed, ER at the reference,
# ER stressed) in the unequal-variance null: a 12:1 range, the stressed original the widest.
UNEQUAL_SDS = (0.005, 0.06, 0.01, 0.03)
DOMINANT_SDS = (0.02, 0.002, 0.002, 0.002)  # one sd 10x the others (Welch's worst case found)
CHANCE = 0.1


def floored_mean(mu: float, sd: float, floor: float = CHANCE) -> float:
    """E[max(floor, X)], X ~ N(mu, sd): floor·Φ(a) + mu·(1 − Φ(a)) + sd·φ(a), a = (floor − mu)/sd."""
    a = (floor - mu) / sd
    return float(floor * sps.norm.cdf(a) + mu * sps.norm.sf(a) + sd * sps.norm.pdf(a))


def drop_arms(kind: str, reps: int, n_seeds: int, rng: np.random.Generator, gap: float = 0.0,
              sd: float = 0.02) -> tuple[np.ndarray, ...]:
    """Four ``[reps, n_seeds]`` arms (original ref, original stressed, ER ref, ER stressed) whose
    expected drops differ by ``gap`` (original_drop − er_drop; 0: the null of equal drops).

    ``kind``: ``equal`` (normal, seed sd ``sd`` in every arm), ``unequal`` (sds
    :data:`UNEQUAL_SDS`), ``dominant`` (sds :data:`DOMINANT_SDS`: one arm's variance dominates,
    where Welch-Satterthwaite on the four means is liberal at 3 seeds), ``floor`` (the stressed original collapsed to chance: max(0.1, N(0.1,
    sd)), half its seeds exactly at chance; the others normal with sd ``sd``), ``floor_dominant``
    (the same floored arm with sd 0.03 next to arms of sd 0.002: a 15:1 spread, where no test of
    means holds at these seed counts; the benchmark prints it)."""
    def normal(mean, spread):
        return rng.normal(mean, spread, (reps, n_seeds))
    if kind in ("equal", "unequal", "dominant"):
        sds = {"equal": (sd,) * 4, "unequal": UNEQUAL_SDS, "dominant": DOMINANT_SDS}[kind]
        return (normal(0.70, sds[0]), normal(0.45, sds[1]), normal(0.68, sds[2]),
                normal(0.43 + gap, sds[3]))
    if kind in ("floor", "floor_dominant"):
        floor_sd, other = (sd, sd) if kind == "floor" else (0.03, 0.002)
        stressed = np.maximum(CHANCE, normal(CHANCE, floor_sd))
        mean = floored_mean(CHANCE, floor_sd)  # the expected accuracy of the floored arm
        return (normal(0.70, other), stressed, normal(0.68, other),
                normal(0.68 - (0.70 - mean) + gap, other))
    raise ValueError(f"unknown kind {kind!r}; allowed: equal, unequal, dominant, floor, "
                     "floor_dominant")


def welch_contrast_pvalues(arms, weights=(1.0, -1.0, -1.0, 1.0)) -> np.ndarray:
    """Two-sided p of Σ w_i·mean_i = 0 by the Welch-Satterthwaite t over independent arms
    ``[reps, n_i]``: t = Σ w_i x̄_i / sqrt(Σ w_i² s_i²/n_i), df = (Σ v_i)² / Σ v_i²/(n_i − 1),
    v_i = w_i² s_i²/n_i. Not the report's test: kept to show that with one dominant variance it
    rejects more than alpha of equal drops at 3 seeds (the seed-contrast t is exact there)."""
    w = np.asarray(weights, float)
    means = np.stack([a.mean(-1) for a in arms], -1)
    v = np.stack([a.var(-1, ddof=1) / a.shape[-1] for a in arms], -1) * w ** 2
    dof = v.sum(-1) ** 2 / (v ** 2 / np.array([a.shape[-1] - 1 for a in arms], float)).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (means * w).sum(-1) / np.sqrt(v.sum(-1))
        p = 2 * sps.t.sf(np.abs(t), dof)
    return np.where(np.isnan(p), 1.0, p)


def simulate_arm(rng: np.random.Generator, n_seeds: int, p_collapse: float,
                 epochs: int) -> tuple[np.ndarray, np.ndarray]:
    """``(times, events)`` of ``n_seeds`` seeds: collapse with probability p at a uniform epoch, else run to
    the budget; 10% of the others error out early (censored)."""
    times = rng.integers(1, epochs + 1, n_seeds).astype(float)
    events = rng.random(n_seeds) < p_collapse
    errored = ~events & (rng.random(n_seeds) < 0.1)
    times = np.where(events | errored, times, float(epochs))
    return times, events


def logrank_fpr(n_seeds: int, reps: int, p_collapse: float, epochs: int, seed: int, *, alpha: float = ALPHA,
                **logrank_options) -> float:
    """Monte-Carlo rejection rate of the permutation log-rank when both arms share ``p_collapse``."""
    rng = np.random.default_rng(seed)
    cache, rejections = {}, 0
    for _ in range(reps):
        arm_a = simulate_arm(rng, n_seeds, p_collapse, epochs)
        arm_b = simulate_arm(rng, n_seeds, p_collapse, epochs)
        key = (tuple(zip(*arm_a)), tuple(zip(*arm_b)))
        if key not in cache:
            cache[key] = logrank_test(*arm_a, *arm_b, **logrank_options).p
        rejections += cache[key] <= alpha
    return rejections / reps


def old_bootstrap_verdicts(diffs: np.ndarray, n_resamples: int = 10_000) -> np.ndarray:
    """Schema-1 kNN verdict for every row of ``diffs`` ``[reps, n]``: the percentile bootstrap
    (seed 0) interval of the mean excludes 0."""
    n_seeds = diffs.shape[1]
    resample = np.random.default_rng(0).integers(0, n_seeds, size=(n_resamples, n_seeds))
    fired = []
    for chunk in np.array_split(diffs, max(1, len(diffs) // 50)):
        means = chunk[:, resample].mean(axis=2)
        low, high = np.quantile(means, [0.025, 0.975], axis=1)
        fired.append((low > 0) | (high < 0))
    return np.concatenate(fired)
