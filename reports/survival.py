"""Collapse as a time-to-event: Kaplan–Meier curves, median time to collapse, log-rank test.

Two endpoints (``ENDPOINTS``): ``complete`` (time to complete collapse) and ``any`` (time to any
collapse, complete or partial; reports/grades.py). Event time: the epoch of the trial's first
event of that endpoint (its last epoch when none was recorded). Censored: every other trial that
ran (completed, early_stopped, errored) at ``epochs_completed`` — it had not collapsed by then, and
what came after is unknown. Running and pending trials are left out.

* Kaplan–Meier S(t) = Π_{t_j <= t} (1 − d_j / n_j) with its 95% pointwise interval by the
  log-log (exponential Greenwood) method: ``scipy.stats.ecdf(CensoredData(...)).sf`` and
  ``.confidence_interval(method="log-log")``. That interval is undefined where S = 1 (no event
  yet) or S = 0; there the bounds equal S (Greenwood's variance is 0 before the first event).
  n_j (at risk) counts trials with time >= t_j, d_j the collapses at t_j.
* Median time to collapse: the smallest epoch with S(t) <= 0.5; None when S never gets there.
* Log-rank statistic U = O_ER − E_ER = Σ_{i in ER} (δ_i − Λ(t_i)), Λ the pooled Nelson–Aalen
  cumulative hazard (the log-rank scores of Peto & Peto 1972; U / sqrt(V) is scipy's log-rank z).
  U > 0: ER collapses earlier/more often than expected. Its p, by the first that applies:

  1. no collapse at all, or every score equal -> p = 1 (``logrank_permutation``);
  2. 31 or more trials in each variant -> chi-square log-rank (``scipy.stats.logrank``,
     ``logrank_asymptotic``; valid under unequal censoring at that size);
  3. every censored trial ran its whole budget (equal follow-up: the only censoring is the
     budget, the same for both variants) -> exact permutation test (``logrank_permutation``):
     the variant labels are exchangeable, and the distribution of U over all C(n_ER + n_orig,
     n_ER) splits is enumerated exactly (subset sums of the tied scores, so a variant of one
     trial or 100 costs the same); two-sided p = P(|U − E U| >= |u − E U|);
  4. some trial censored before its budget (errored or stopped early; follow-up unequal) ->
     imputation-permutation log-rank (``logrank_imputation_permutation``) of Wang, Lagakos &
     Gray (Biostatistics 2010), the justification of Heinze, Gnant & Schemper's exact log-rank
     for unequal follow-up (Biometrics 2003): each collapsed trial gets a censoring time drawn
     from its own variant's censoring distribution (discrete reverse Kaplan–Meier, >= its
     collapse epoch, capped at the budget), each censored trial a collapse time drawn from the
     pooled Kaplan–Meier beyond its censoring (never, past the last collapse); then the collapse
     times are permuted across trials while each trial keeps its variant's censoring time, and
     p = (1 + #{|z*| >= |z|}) / (R + 1) over R seeded draws of the standardised log-rank z. The
     plain label permutation is not valid there: it moves censoring patterns between variants
     (false-positive rate 0.066–0.099 at 10 vs 5 and 4 vs 10 trials, measured; this test:
     0.021–0.031, tests/test_stats_calibration.py).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from er_core.power import BOSCHLOO_MAX_SEEDS, IMPUTATION_RESAMPLES

ENDPOINTS = ("complete", "any")
PERMUTATION_SEED = 0
# From this many trials in each variant on, the chi-square log-rank (scipy.stats.logrank) is used.
ASYMPTOTIC_MIN_SEEDS = BOSCHLOO_MAX_SEEDS + 1
_DECIMALS = 9  # scores are rounded to this many decimals when tied values are grouped


def _finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def event_times(event_epochs, epochs_completed) -> tuple[np.ndarray, np.ndarray]:
    """(times, events) of trials: event at ``event_epochs[i]`` when it is not None/nan, else
    censored at ``epochs_completed[i]`` (None/nan -> 0)."""
    times, events = [], []
    for event_epoch, completed in zip(event_epochs, epochs_completed):
        if _finite(event_epoch):
            times.append(float(event_epoch))
            events.append(True)
        else:
            times.append(float(completed) if _finite(completed) else 0.0)
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
    times = np.asarray(times, dtype=np.float64)
    events = np.asarray(events, dtype=bool)
    epoch = np.unique(times)
    at_risk = np.array([(times >= x).sum() for x in epoch], dtype=np.int64)
    n_events = np.array([(events & (times == x)).sum() for x in epoch], dtype=np.int64)
    n_censored = np.array([(~events & (times == x)).sum() for x in epoch], dtype=np.int64)
    if not events.any():
        one = np.ones(epoch.size)
        return KaplanMeier(epoch, at_risk, n_events, n_censored, one, one.copy(), one.copy())
    curve = sps.ecdf(sps.CensoredData(uncensored=times[events], right=times[~events])).sf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        interval = curve.confidence_interval(confidence_level=level, method="log-log")
        survival = curve.evaluate(epoch)
        low, high = interval.low.evaluate(epoch), interval.high.evaluate(epoch)
    low = np.where(np.isnan(low), survival, low)
    high = np.where(np.isnan(high), survival, high)
    return KaplanMeier(epoch, at_risk, n_events, n_censored, survival, low, high)


def logrank_scores(times, events) -> np.ndarray:
    """Log-rank scores δ_i − Λ(t_i), Λ the pooled Nelson–Aalen cumulative hazard."""
    times = np.asarray(times, dtype=np.float64)
    events = np.asarray(events, dtype=bool)
    event_epochs = np.unique(times[events])
    deaths = np.array([(events & (times == x)).sum() for x in event_epochs], dtype=np.float64)
    at_risk = np.array([(times >= x).sum() for x in event_epochs], dtype=np.float64)
    cumulative = np.cumsum(deaths / at_risk) if event_epochs.size else np.zeros(0)
    position = np.searchsorted(event_epochs, times, side="right") - 1
    hazard = (np.where(position >= 0, cumulative[np.clip(position, 0, None)], 0.0)
              if cumulative.size else np.zeros(times.size))
    return events.astype(np.float64) - hazard


def logrank_z(times, events, is_er) -> np.ndarray:
    """Standardised log-rank z = U / sqrt(V) for every row of ``times``/``events`` [R, N]
    (``is_er`` [N] marks the ER trials; V the hypergeometric variance; z = 0 where V = 0)."""
    times, events = np.atleast_2d(times), np.atleast_2d(events)
    grid = np.unique(times[events & np.isfinite(times)])
    if grid.size == 0:
        return np.zeros(times.shape[0])
    at_risk = times[:, :, None] >= grid
    failed = events[:, :, None] & (times[:, :, None] == grid)
    n_all, n_er = at_risk.sum(1).astype(float), at_risk[:, is_er, :].sum(1).astype(float)
    d_all, d_er = failed.sum(1).astype(float), failed[:, is_er, :].sum(1).astype(float)
    share = np.divide(n_er, n_all, out=np.zeros_like(n_er), where=n_all > 0)
    variance = np.divide(d_all * share * (1 - share) * (n_all - d_all), n_all - 1,
                         out=np.zeros_like(n_all), where=n_all > 1)
    u_stat, v_stat = (d_er - d_all * share).sum(1), variance.sum(1)
    return np.divide(u_stat, np.sqrt(v_stat), out=np.zeros_like(u_stat), where=v_stat > 0)


def subset_sum_distribution(scores, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact distribution of the sum of ``size`` of ``scores`` chosen without order: (sums,
    number of subsets giving each). Tied scores are grouped and equal partial sums merged, so the
    cost grows with the distinct sums, not with C(len(scores), size)."""
    values, multiplicity = np.unique(np.round(np.asarray(scores, float), _DECIMALS),
                                     return_counts=True)
    taken = np.zeros(1, dtype=np.int64)
    totals = np.zeros(1, dtype=np.float64)
    weights = np.ones(1, dtype=np.float64)  # exact integers up to 2^53
    for value, copies in zip(values, multiplicity):
        extra = np.arange(int(copies) + 1)
        ways = np.array([math.comb(int(copies), int(x)) for x in extra], dtype=np.float64)
        taken = (taken[:, None] + extra).ravel()
        totals = (totals[:, None] + extra * value).ravel()
        weights = (weights[:, None] * ways).ravel()
        keep = taken <= size
        taken, totals, weights = taken[keep], totals[keep], weights[keep]
        keys = np.stack([taken, np.round(totals * 10 ** _DECIMALS).astype(np.int64)])
        _, first, inverse = np.unique(keys, axis=1, return_index=True, return_inverse=True)
        weights = np.bincount(inverse.ravel(), weights=weights)
        taken, totals = taken[first], totals[first]
    chosen = taken == size
    return totals[chosen], weights[chosen]


def exact_permutation_pvalue(scores_er, scores_orig) -> float:
    """Two-sided exact permutation p of sum(scores_er) over every split of the pooled scores."""
    pooled = np.concatenate([scores_er, scores_orig])
    sums, weight = subset_sum_distribution(pooled, len(scores_er))
    centre = float((sums * weight).sum() / weight.sum())
    observed = abs(float(np.sum(scores_er)) - centre)
    # the distribution's sums are built from scores rounded to _DECIMALS: compare at a tolerance well
    # above that rounding (1e-9 made every split "less extreme" than itself: p = 0 for one event)
    extreme = np.abs(sums - centre) >= observed - 1e-6
    return float(min(1.0, weight[extreme].sum() / weight.sum()))


def _discrete_hazard(times, flagged, epochs) -> np.ndarray:
    at_risk = (times[None, :] >= epochs[:, None]).sum(1)
    hits = (flagged[None, :] & (times[None, :] == epochs[:, None])).sum(1)
    return np.divide(hits, at_risk, out=np.zeros(epochs.size), where=at_risk > 0)


def imputation_permutation_pvalue(times, events, is_er, budget: float, n_resamples: int,
                                  seed: int) -> float:
    """Imputation-permutation log-rank p (module docstring, rule 4)."""
    rng = np.random.default_rng(seed)
    n_trials = times.size
    # the hazards are 0 between observed times: the grid of observed times and the budget is enough
    epochs = np.unique(np.append(times, max(budget, float(times.max()))))
    collapse_hazard = _discrete_hazard(times, events, epochs)
    censor_hazard = {arm: _discrete_hazard(times[mask], ~events[mask], epochs)
                     for arm, mask in (("er", is_er), ("original", ~is_er))}
    for hazard in censor_hazard.values():
        hazard[-1] = 1.0  # the budget ends every trial
    draws = rng.random((n_resamples, n_trials, epochs.size))
    collapse_at = np.empty((n_resamples, n_trials))
    censor_at = np.empty((n_resamples, n_trials))
    for i in range(n_trials):
        if events[i]:  # observed collapse: impute when its variant would have censored it
            hazard = censor_hazard["er" if is_er[i] else "original"]
            hit = (draws[:, i, :] < hazard) & (epochs >= times[i])
            collapse_at[:, i], censor_at[:, i] = times[i], epochs[hit.argmax(1)]
        else:  # censored: impute a collapse beyond its censoring time (or none)
            hit = (draws[:, i, :] < collapse_hazard) & (epochs > times[i])
            collapse_at[:, i] = np.where(hit.any(1), epochs[hit.argmax(1)], np.inf)
            censor_at[:, i] = times[i]
    order = np.argsort(rng.random((n_resamples, n_trials)), axis=1)
    permuted = np.take_along_axis(collapse_at, order, axis=1)
    z_null = logrank_z(np.minimum(permuted, censor_at), permuted <= censor_at, is_er)
    z_observed = logrank_z(times[None], events[None], is_er)[0]
    exceed = int((np.abs(z_null) >= abs(z_observed) - 1e-9).sum())
    return (1 + exceed) / (n_resamples + 1)


@dataclass(frozen=True)
class LogRank:
    """Log-rank: p (two-sided), U = O_ER − E_ER, O_ER, E_ER and the test used."""

    p: float
    u: float
    observed: float
    expected: float
    method: str = "logrank_permutation"


def logrank_test(t_er, e_er, t_orig, e_orig, n_resamples: int = IMPUTATION_RESAMPLES,
                 seed: int = PERMUTATION_SEED, budget: float | None = None) -> LogRank | None:
    """Log-rank of ER against original (module docstring for which p); None when a variant has no
    trial. ``budget``: the epochs every trial was given (default: the longest observed time); a
    censored trial below it makes the follow-up unequal. ``n_resamples``/``seed``: draws of the
    imputation-permutation test (the exact test enumerates)."""
    t_er, t_orig = np.asarray(t_er, float), np.asarray(t_orig, float)
    e_er, e_orig = np.asarray(e_er, bool), np.asarray(e_orig, bool)
    if t_er.size == 0 or t_orig.size == 0:
        return None
    times, events = np.concatenate([t_er, t_orig]), np.concatenate([e_er, e_orig])
    is_er = np.arange(times.size) < t_er.size
    scores = logrank_scores(times, events)
    u_stat = float(scores[is_er].sum())
    observed = float(e_er.sum())
    expected = observed - u_stat
    if not events.any() or np.allclose(scores, scores[0]):
        return LogRank(1.0, u_stat, observed, expected)
    if min(t_er.size, t_orig.size) >= ASYMPTOTIC_MIN_SEEDS:
        res = sps.logrank(sps.CensoredData(uncensored=t_er[e_er], right=t_er[~e_er]),
                          sps.CensoredData(uncensored=t_orig[e_orig], right=t_orig[~e_orig]))
        p = float(res.pvalue) if np.isfinite(res.pvalue) else 1.0
        return LogRank(p, u_stat, observed, expected, "logrank_asymptotic")
    budget = float(times.max()) if budget is None else float(budget)
    if np.all(events | (times >= budget)):
        p = exact_permutation_pvalue(scores[is_er], scores[~is_er])
        return LogRank(p, u_stat, observed, expected)
    p = imputation_permutation_pvalue(times, events, is_er, budget, n_resamples, seed)
    return LogRank(p, u_stat, observed, expected, "logrank_imputation_permutation")
