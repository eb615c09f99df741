"""Collapse as a time-to-event: Kaplan–Meier curves, median time to collapse, log-rank test.

Event time: the epoch of a trial's first collapse-severity event (``collapse_epoch``; its last
epoch when none was recorded) for ``collapsed`` and ``diverged`` trials. Censored: ``completed``,
``early_stopped`` (ASHA) and ``errored`` trials at ``epochs_completed`` — they had not collapsed
by then, and what came after is unknown. Running and pending trials are left out.

* Kaplan–Meier S(t) = Π_{t_j <= t} (1 − d_j / n_j) with its 95% pointwise interval by the
  log-log (exponential Greenwood) method: ``scipy.stats.ecdf(CensoredData(...)).sf`` and
  ``.confidence_interval(method="log-log")``. That interval is undefined where S = 1 (no event
  yet) or S = 0; there the bounds equal S (Greenwood's variance is 0 before the first event).
  n_j (at risk) counts trials with time >= t_j, d_j the collapses at t_j.
* Median time to collapse: the smallest epoch with S(t) <= 0.5; None when S never gets there.
* Log-rank, as an exact permutation test (the asymptotic chi-square log-rank of
  ``scipy.stats.logrank`` fires 10% of the time under no difference at 3 seeds per variant,
  measured): the statistic is U = O_ER − E_ER = Σ_{i in ER} (δ_i − Λ(t_i)) with Λ the pooled
  Nelson–Aalen cumulative hazard Σ_{t_j <= t} d_j / n_j (the log-rank scores of Peto & Peto
  1972, the linear-rank form used by R's ``coin::logrank_test``; tests check U / sqrt(V) against
  ``scipy.stats.logrank``). Under "no difference" the variant labels are exchangeable given the
  pooled data, so ``scipy.stats.permutation_test`` over label splits gives an exact two-sided p:
  every split enumerated when there are at most 9,999 (up to 7 + 7 seeds), otherwise 9,999
  random splits with a fixed seed (p = (b + 1) / (9,999 + 1), still valid). From 31 trials in
  each variant on, the chi-square log-rank of ``scipy.stats.logrank`` (``logrank_asymptotic``;
  accurate at that size, and 9,999 permutations of 200 trials cost 0.25 s per cell). U > 0: ER
  collapses earlier/more often than expected. No collapse at all -> p = 1; an empty variant ->
  no test.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from er_tune.power import BOSCHLOO_MAX_SEEDS, PERMUTATION_RESAMPLES

COLLAPSE_STATUSES = ("collapsed", "diverged")
CENSORED_STATUSES = ("completed", "early_stopped", "errored")
PERMUTATION_SEED = 0
# Above this many trials in each variant the chi-square log-rank (scipy.stats.logrank) is used:
# its approximation is good there, and 9,999 permutations cost 0.25 s per cell at 100 + 100.
ASYMPTOTIC_MIN_SEEDS = BOSCHLOO_MAX_SEEDS + 1


def event_times(statuses, collapse_epochs, epochs_completed) -> tuple[np.ndarray, np.ndarray]:
    """(times, events) of the trials that can be placed in time (see module docstring)."""
    times, events = [], []
    for st, ce, ec in zip(statuses, collapse_epochs, epochs_completed):
        ec = 0 if ec is None or (isinstance(ec, float) and math.isnan(ec)) else ec
        if st in COLLAPSE_STATUSES:
            ok = ce is not None and not (isinstance(ce, float) and math.isnan(ce))
            times.append(float(ce) if ok else float(ec))
            events.append(True)
        elif st in CENSORED_STATUSES:
            times.append(float(ec))
            events.append(False)
    return np.asarray(times, dtype=np.float64), np.asarray(events, dtype=bool)


@dataclass(frozen=True)
class KaplanMeier:
    """Kaplan–Meier estimate at every distinct observed time (events and censorings)."""

    epoch: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    censored: np.ndarray
    survival: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray

    @property
    def median(self) -> float | None:
        hit = np.nonzero(self.survival <= 0.5)[0]
        return float(self.epoch[hit[0]]) if hit.size else None


def kaplan_meier(times, events, level: float = 0.95) -> KaplanMeier:
    """Kaplan–Meier curve of ``times`` (``events`` True = collapse) with log-log intervals."""
    t = np.asarray(times, dtype=np.float64)
    e = np.asarray(events, dtype=bool)
    epoch = np.unique(t)
    at_risk = np.array([(t >= x).sum() for x in epoch], dtype=np.int64)
    ev = np.array([(e & (t == x)).sum() for x in epoch], dtype=np.int64)
    cens = np.array([(~e & (t == x)).sum() for x in epoch], dtype=np.int64)
    if not e.any():
        one = np.ones(epoch.size)
        return KaplanMeier(epoch, at_risk, ev, cens, one, one.copy(), one.copy())
    sf = sps.ecdf(sps.CensoredData(uncensored=t[e], right=t[~e])).sf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = sf.confidence_interval(confidence_level=level, method="log-log")
        surv, lo, hi = sf.evaluate(epoch), ci.low.evaluate(epoch), ci.high.evaluate(epoch)
    lo = np.where(np.isnan(lo), surv, lo)
    hi = np.where(np.isnan(hi), surv, hi)
    return KaplanMeier(epoch, at_risk, ev, cens, surv, lo, hi)


def logrank_scores(times, events) -> np.ndarray:
    """Log-rank scores δ_i − Λ(t_i), Λ the pooled Nelson–Aalen cumulative hazard."""
    t = np.asarray(times, dtype=np.float64)
    e = np.asarray(events, dtype=bool)
    ev_times = np.unique(t[e])
    d = np.array([(e & (t == x)).sum() for x in ev_times], dtype=np.float64)
    n = np.array([(t >= x).sum() for x in ev_times], dtype=np.float64)
    cum = np.cumsum(d / n) if ev_times.size else np.zeros(0)
    idx = np.searchsorted(ev_times, t, side="right") - 1
    lam = np.where(idx >= 0, cum[np.clip(idx, 0, None)] if cum.size else 0.0, 0.0)
    return e.astype(np.float64) - lam


@dataclass(frozen=True)
class LogRank:
    """Log-rank: p (two-sided), U = O_ER − E_ER, O_ER, E_ER and the test used."""

    p: float
    u: float
    observed: float
    expected: float
    method: str = "logrank_permutation"


def _sum_first(x, y, axis=-1):
    return np.sum(x, axis=axis)


def logrank_test(t_er, e_er, t_orig, e_orig, n_resamples: int = PERMUTATION_RESAMPLES,
                 seed: int = PERMUTATION_SEED) -> LogRank | None:
    """Exact (or seeded Monte-Carlo) permutation log-rank of ER against original.

    None when a variant has no trial; p = 1 when there is no collapse at all.
    """
    t_er, t_orig = np.asarray(t_er, float), np.asarray(t_orig, float)
    e_er, e_orig = np.asarray(e_er, bool), np.asarray(e_orig, bool)
    if t_er.size == 0 or t_orig.size == 0:
        return None
    scores = logrank_scores(np.concatenate([t_er, t_orig]), np.concatenate([e_er, e_orig]))
    s_er, s_orig = scores[:t_er.size], scores[t_er.size:]
    u = float(s_er.sum())
    observed = float(e_er.sum())
    if not (e_er.any() or e_orig.any()) or np.allclose(scores, scores[0]):
        return LogRank(1.0, u, observed, observed - u)
    if min(t_er.size, t_orig.size) >= ASYMPTOTIC_MIN_SEEDS:
        res = sps.logrank(sps.CensoredData(uncensored=t_er[e_er], right=t_er[~e_er]),
                          sps.CensoredData(uncensored=t_orig[e_orig], right=t_orig[~e_orig]))
        p = float(res.pvalue) if np.isfinite(res.pvalue) else 1.0
        return LogRank(p, u, observed, observed - u, "logrank_asymptotic")
    res = sps.permutation_test((s_er, s_orig), _sum_first, permutation_type="independent",
                               vectorized=True, n_resamples=n_resamples,
                               alternative="two-sided", rng=np.random.default_rng(seed))
    return LogRank(float(min(1.0, res.pvalue)), u, observed, observed - u)
