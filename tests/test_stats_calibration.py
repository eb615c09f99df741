"""Calibration of every stability verdict (issues 10, 16): under no true difference the
false-positive rate is <= alpha (+ Monte-Carlo error) at n = 3, 5, 10 seeds per variant, and a
planted large difference fires. Exact where cheap (collapse counts: all (n+1)^2 tables), Monte
Carlo otherwise. The any-collapse families run the same tests as the complete-collapse ones on
other counts and times, so the checks below cover them; what is new is checked here too: Holm over
informative cells only (exact family-wise error), the sign-flip p on tied kNN differences (a
discrete null), and the log-rank under unequal follow-up and unequal arm sizes. The old verdicts
(percentile bootstrap, Wilson-interval overlap) are kept here, verbatim in substance, to show that
these checks fail them.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest
from scipy import stats as sps

from er_core import power
from reports import stats
from reports.calibration import (ALPHA, drop_arms, logrank_fpr, null_diffs, old_bootstrap_verdicts,
                                 rejection_prob, simulate_arm, table_pvalues, welch_contrast_pvalues)
from reports.robustness import drop_test
from reports.verdicts import FAMILY_BY_NAME
from reports.survival import logrank_test

P_GRID = np.linspace(0.0, 1.0, 41)


def fpr_bound(reps: int, alpha: float = ALPHA) -> float:
    """alpha plus 3 Monte-Carlo standard errors of a rejection rate measured over ``reps``."""
    return alpha + 3.0 * math.sqrt(alpha * (1 - alpha) / reps)


# ---- collapse counts (Boschloo) -----------------------------------------------------------------

@pytest.mark.parametrize("n", [3, 5, 10])
def test_collapse_exact_size_at_most_alpha(n):
    pv = table_pvalues(n)
    size = max(rejection_prob(pv <= ALPHA, n, p) for p in P_GRID)
    assert size <= ALPHA + 1e-12
    assert size > 0.25 * ALPHA  # not a test that never rejects


def informative_holm_fwer(n: int, m: int, p: float, alpha: float = ALPHA) -> float:
    """Exact family-wise error of Holm over the informative cells only (a cell counts when its
    collapse count varies: 0 < k_er + k_orig < 2n) among m null cells with collapse probability
    p: with k informative cells Holm fires iff the smallest of their p <= alpha/k, so
    FWER = sum_k C(m,k) q^k (1-q)^(m-k) [1 - (1 - r_k/q)^k], q = P(informative),
    r_k = P(p <= alpha/k) (an uninformative table has p = 1)."""
    weights = np.outer(*(2 * [sps.binom.pmf(np.arange(n + 1), n, p)]))
    total = np.add.outer(np.arange(n + 1), np.arange(n + 1))
    informative = (total > 0) & (total < 2 * n)
    q = weights[informative].sum()
    if q == 0:
        return 0.0
    fwer = 0.0
    for k in range(1, m + 1):
        r = weights[informative & (table_pvalues(n) <= alpha / k)].sum()
        fwer += math.comb(m, k) * q ** k * (1 - q) ** (m - k) * (1 - (1 - r / q) ** k)
    return fwer


@pytest.mark.parametrize("n,m", [(3, 4), (5, 2), (5, 8), (10, 2), (10, 4), (10, 8)])
def test_collapse_holm_over_informative_cells_familywise_error_exact(n, m):
    """Leaving cells where nothing varies out of m keeps the family-wise error <= alpha (max
    over the null collapse probability; 0.046 at n = 10, m = 4)."""
    assert max(informative_holm_fwer(n, m, p) for p in P_GRID) <= ALPHA + 1e-12


def test_informative_holm_gains_power_on_one_real_cell():
    """Issue 16: one 0 vs 0.8 cell among 8 at n = 5, the other 7 with no collapse at all:
    Holm over all 8 decides it 33% of the time, over the informative cells 74%."""
    n, pv = 5, table_pvalues(5)
    w = np.outer(sps.binom.pmf(np.arange(n + 1), n, 0.0), sps.binom.pmf(np.arange(n + 1), n, 0.8))
    assert float(w[pv <= ALPHA / 8].sum()) == pytest.approx(0.33, abs=0.01)
    assert float(w[pv <= ALPHA].sum()) == pytest.approx(0.74, abs=0.01)


@pytest.mark.parametrize("n,m", [(5, 4), (10, 4), (10, 8)])
def test_collapse_holm_familywise_error_exact(n, m):
    """Holm rejects something iff min p <= alpha/m: FWER = 1 - (1 - P(p <= alpha/m))^m."""
    pv = table_pvalues(n)
    fwer = max(1 - (1 - rejection_prob(pv <= ALPHA / m, n, p)) ** m for p in P_GRID)
    assert fwer <= ALPHA + 1e-12


def test_collapse_planted_difference_fires_and_matches_scipy():
    assert power.collapse_pvalue(0, 8, 8, 8) <= ALPHA  # 8/8 vs 0/8
    assert power.collapse_pvalue(0, 8, 6, 8) <= ALPHA  # 6/8 vs 0/8
    assert power.collapse_pvalue(0, 3, 3, 3) == pytest.approx(1 / 32)  # 2·(1/2)^6
    direct = sps.boschloo_exact([[1, 4], [5, 2]]).pvalue  # ER 1/6, original 4/6
    assert power.collapse_pvalue(1, 6, 4, 6) == pytest.approx(direct, rel=1e-12)
    assert power.collapse_pvalue(4, 6, 1, 6) == pytest.approx(direct, rel=1e-9)
    assert power.collapse_pvalue(0, 5, 0, 5) == 1.0 and power.collapse_pvalue(5, 5, 5, 5) == 1.0
    ct = stats.collapse_test(0, 8, 8, 8)
    assert ct.diff == -1.0 and ct.lo == pytest.approx(-1.0) and ct.hi == pytest.approx(-0.5412, abs=1e-4)
    assert stats.verdict(FAMILY_BY_NAME["collapse"].labels, ct.p, ct.diff < 0) == "er_more_stable"


def old_wilson_verdict(k_er, k_orig, n):
    """Schema-1 collapse verdict: Wilson 95% intervals must not overlap."""
    er, orig = stats.wilson(k_er, n), stats.wilson(k_orig, n)
    return "er_more_stable" if er[1] < orig[0] else "no_difference"


def test_old_wilson_overlap_never_fires_at_three_seeds():
    """3/3 vs 0/3 is the strongest evidence 3 seeds can give; the old rule could not see it."""
    assert old_wilson_verdict(0, 3, 3) == "no_difference"
    assert stats.verdict(FAMILY_BY_NAME["collapse"].labels, power.collapse_pvalue(0, 3, 3, 3), True) == "er_more_stable"


# ---- paired kNN difference (t) ------------------------------------------------------------------


@pytest.mark.parametrize("n", [3, 5, 10])
@pytest.mark.parametrize("kind", ["normal", "laplace", "collapse_mixture"])
def test_knn_t_null_fpr(n, kind):
    reps = 4000
    d = null_diffs(kind, reps, n, np.random.default_rng(n))
    fpr = float((stats.knn_test(d).p <= ALPHA).mean())
    assert fpr <= fpr_bound(reps)


@pytest.mark.parametrize("n", [3, 5, 10])
def test_knn_t_planted_shift_fires(n):
    d = np.random.default_rng(1).normal(0.05, 0.01, (500, n))  # +0.05, sd 0.01
    res = stats.knn_test(d)
    assert (res.p <= ALPHA).mean() >= 0.95
    assert ((res.lo <= 0.05) & (0.05 <= res.hi)).mean() >= 0.9  # the interval covers the truth


@pytest.mark.parametrize("n", [2, 3, 5])
def test_knn_discrete_null_fpr(n):
    """kNN accuracies are multiples of 1/n_eval, so paired differences tie: at 2 seeds 15% of
    null draws have equal differences, where the t-test gave p ~ 0 (the sign-flip p is 2/2^n)."""
    reps = 4000
    rng = np.random.default_rng(30 + n)
    arm = lambda: np.round(rng.normal(0.5, 0.02, (reps, n)) * 64) / 64  # noqa: E731
    d = arm() - arm()
    assert float((stats.knn_test(d).p <= ALPHA).mean()) <= fpr_bound(reps)


def test_old_bootstrap_verdict_fails_calibration():
    reps = 600
    for n in (3, 5):
        d = null_diffs("normal", reps, n, np.random.default_rng(10 + n))
        assert float(old_bootstrap_verdicts(d).mean()) > fpr_bound(reps)
        assert float((stats.knn_test(d).p <= ALPHA).mean()) <= fpr_bound(reps)


def test_knn_degenerate_and_scipy_reference():
    assert stats.knn_test(np.zeros(4)).p == 1.0
    one = stats.knn_test([0.2])
    assert one.n == 1 and math.isnan(one.p)
    d = np.array([0.3, 0.2, 0.3, 0.4])
    ref = sps.ttest_1samp(d, 0.0)
    res = stats.knn_test(d)
    assert res.p == pytest.approx(ref.pvalue) and res.lo == pytest.approx(
        ref.confidence_interval().low)


# ---- time to collapse (permutation log-rank) ----------------------------------------------------


@pytest.mark.parametrize("n,reps,kw", [(3, 600, {"n_resamples": 199}),
                                       (5, 300, {"n_resamples": 199}),
                                       (10, 200, {"n_resamples": 199})])
@pytest.mark.parametrize("p_collapse", [0.5, 0.8])
def test_logrank_permutation_null_fpr(n, reps, kw, p_collapse):
    assert logrank_fpr(n, reps, p_collapse, 30, seed=n, **kw) <= fpr_bound(reps)


def unequal_arm(rng, n, p_collapse, epochs, error_rate, error_by):
    """Collapse with probability p at a uniform epoch; a share ``error_rate`` of the trials
    errors out at a uniform epoch up to ``error_by`` (censored there unless it collapsed first)."""
    collapse = rng.integers(1, epochs + 1, n).astype(float)
    collapses = rng.random(n) < p_collapse
    stop = np.where(rng.random(n) < error_rate, rng.integers(1, error_by + 1, n), epochs)
    stop = stop.astype(float)
    return np.where(collapses, np.minimum(collapse, stop), stop), collapses & (collapse <= stop)


@pytest.mark.parametrize("n_er,n_orig,er_errors,orig_errors,p_collapse,error_by", [
    (4, 10, 0.0, 0.6, 0.3, 4),  # label permutation: 0.077 (1,500 reps)
    (10, 5, 0.6, 0.0, 0.3, 10)])  # label permutation: 0.066
def test_logrank_unequal_followup_and_arm_sizes_null_fpr(n_er, n_orig, er_errors, orig_errors,
                                                         p_collapse, error_by):
    reps, rng, cache, rejections = 300, np.random.default_rng(n_er + 7 * n_orig), {}, 0
    for _ in range(reps):
        er = unequal_arm(rng, n_er, p_collapse, 10, er_errors, error_by)
        orig = unequal_arm(rng, n_orig, p_collapse, 10, orig_errors, error_by)
        key = (tuple(zip(*er)), tuple(zip(*orig)))
        if key not in cache:
            cache[key] = logrank_test(*er, *orig, budget=10, n_resamples=199).p
        rejections += cache[key] <= ALPHA
    assert rejections / reps <= fpr_bound(reps)


@pytest.mark.parametrize("n_er,n_orig", [(1, 6), (4, 10)])
def test_logrank_exact_size_equal_followup_unequal_arms(n_er, n_orig):
    """Censoring only by the budget: the enumerated permutation test is exact, so its size is
    <= alpha at any arm sizes (one-trial arms included)."""
    reps, rng, cache, rejections = 400, np.random.default_rng(n_er * n_orig), {}, 0
    for _ in range(reps):
        er = unequal_arm(rng, n_er, 0.6, 8, 0.0, 8)
        orig = unequal_arm(rng, n_orig, 0.6, 8, 0.0, 8)
        key = (tuple(zip(*er)), tuple(zip(*orig)))
        if key not in cache:
            result = logrank_test(*er, *orig)
            assert result.method == "logrank_permutation"
            cache[key] = result.p
        rejections += cache[key] <= ALPHA
    assert rejections / reps <= fpr_bound(reps)


def test_imputation_logrank_planted_difference_fires():
    """Under unequal follow-up a large difference is still decided."""
    orig = (np.array([1, 2, 2, 3, 1, 2, 3, 2], float), np.ones(8, bool))
    er = (np.array([10, 10, 10, 10, 10, 10, 4, 3], float), np.zeros(8, bool))  # 2 errored early
    res = logrank_test(*er, *orig, budget=10)
    assert res.method == "logrank_imputation_permutation" and res.p <= ALPHA and res.u < 0


def test_asymptotic_logrank_fails_calibration_at_three_seeds():
    """Why the permutation version: scipy's chi-square log-rank over-rejects at 3 seeds."""
    rng = np.random.default_rng(3)
    reps, rej, cache = 2000, 0, {}
    for _ in range(reps):
        (ta, ea), (tb, eb) = simulate_arm(rng, 3, 0.8, 30), simulate_arm(rng, 3, 0.8, 30)
        key = (tuple(zip(ta, ea)), tuple(zip(tb, eb)))
        if key not in cache:
            if not (ea.any() or eb.any()):
                cache[key] = 1.0
            else:
                cache[key] = sps.logrank(sps.CensoredData(uncensored=ta[ea], right=ta[~ea]),
                                         sps.CensoredData(uncensored=tb[eb], right=tb[~eb])).pvalue
        rej += cache[key] <= ALPHA
    assert rej / reps > fpr_bound(reps)


def test_logrank_planted_difference_fires():
    orig = (np.array([1, 2, 2, 3, 1, 2, 3, 2], float), np.ones(8, bool))
    er = (np.full(8, 30.0), np.zeros(8, bool))
    res = logrank_test(*er, *orig)
    assert res.p <= ALPHA and res.u < 0
    assert stats.verdict(FAMILY_BY_NAME["time"].labels, res.p, res.u < 0) == "er_more_stable"
    assert logrank_test([30.0] * 3, [False] * 3, [30.0] * 3, [False] * 3).p == 1.0


# ---- Holm across cells --------------------------------------------------------------------------

@pytest.mark.parametrize("n", [3, 5, 10])
def test_holm_adjusted_knn_verdicts_familywise(n):
    """Four null cells per report: P(any verdict fires) <= alpha after Holm (raw: ~1-(0.95)^4)."""
    reps, m = 2000, 4
    p = stats.knn_test(null_diffs("normal", reps * m, n, np.random.default_rng(20 + n))).p
    p = p.reshape(reps, m)
    fired = (stats.holm_array(p) <= ALPHA).any(axis=1)
    assert fired.mean() <= fpr_bound(reps)
    rows = [stats.holm(list(row)) for row in p[:200]]  # the per-report path agrees
    assert np.array_equal(np.array(rows, float), stats.holm_array(p[:200]))
    assert (p <= ALPHA).any(axis=1).mean() > fpr_bound(reps)  # unadjusted: it would fail


def test_holm_keeps_planted_cell_and_matches_statsmodels():
    raw = [power.collapse_pvalue(0, 8, 8, 8), 0.4, 0.9, None, 0.03]
    adj = stats.holm(raw)
    assert adj[3] is None
    assert adj[0] == pytest.approx(4 * raw[0]) and adj[0] <= ALPHA
    assert adj[4] == pytest.approx(min(1, 3 * 0.03)) and adj[4] > ALPHA
    assert adj[1] == pytest.approx(0.8) and adj[2] == pytest.approx(0.9)
    from statsmodels.stats.multitest import multipletests
    rng = np.random.default_rng(5)
    for m in (1, 2, 5, 9):
        p = rng.random(m) ** 3
        p[rng.random(m) < 0.3] = p[0]  # ties
        assert stats.holm_array(p) == pytest.approx(multipletests(p, method="holm")[1], abs=1e-15)


def test_large_samples_switch_to_fisher_and_chi_square_logrank():
    """Above 30 seeds per variant: Fisher (Boschloo's maximisation is slow) and the chi-square
    log-rank (accurate there); the report names the test used."""
    assert power.collapse_test_name(30, 30) == "boschloo_exact"
    assert power.collapse_test_name(31, 5) == "fisher_exact"
    fisher = sps.fisher_exact([[3, 12], [37, 28]]).pvalue
    assert power.collapse_pvalue(3, 40, 12, 40) == pytest.approx(fisher, rel=1e-12)
    rng = np.random.default_rng(0)
    t = np.full(40, 50.0)
    ea, eb = rng.random(40) < 0.3, rng.random(40) < 0.1
    res = logrank_test(t, ea, t, eb)
    ref = sps.logrank(sps.CensoredData(uncensored=t[ea], right=t[~ea]),
                      sps.CensoredData(uncensored=t[eb], right=t[~eb]))
    assert res.method == "logrank_asymptotic" and res.p == pytest.approx(ref.pvalue)
    assert logrank_test(t[:30], ea[:30], t[:30], eb[:30]).method == "logrank_permutation"


def test_logrank_u_matches_scipy_statistic():
    """U / sqrt(V) (V the hypergeometric variance) is scipy's log-rank z statistic."""
    rng = np.random.default_rng(2)
    for _ in range(5):
        ta, tb = rng.integers(1, 8, 6).astype(float), rng.integers(1, 8, 5).astype(float)
        ea, eb = rng.random(6) < 0.6, rng.random(5) < 0.4
        t, e = np.concatenate([ta, tb]), np.concatenate([ea, eb])
        v = 0.0
        for x in np.unique(t[e]):
            n, n1 = (t >= x).sum(), (ta >= x).sum()
            d = (e & (t == x)).sum()
            if n > 1:
                v += d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1)
        z = sps.logrank(sps.CensoredData(uncensored=ta[ea], right=ta[~ea]),
                        sps.CensoredData(uncensored=tb[eb], right=tb[~eb])).statistic
        assert logrank_test(ta, ea, tb, eb).u / math.sqrt(v) == pytest.approx(z, rel=1e-9)


# ---- difference of accuracy drops (robustness table) ----------------------------------------------

@pytest.mark.parametrize("n", [3, 5, 8])
@pytest.mark.parametrize("kind", ["equal", "unequal", "dominant", "floor"])
def test_drop_contrast_null_fpr(n, kind):
    """Equal drops (original and ER lose the same expected accuracy): the seed-contrast t rejects
    at most alpha, with a 12:1 range of arm sds and with the stressed original piled at chance."""
    reps = 20_000
    arms = drop_arms(kind, reps, n, np.random.default_rng(40 + n))
    fpr = float((drop_test(*arms).p <= ALPHA).mean())
    print(f"delta_drop null ({kind}, {n} seeds): false-positive rate {fpr:.4f}")
    assert fpr <= fpr_bound(reps)


@pytest.mark.parametrize("n", [3, 5, 8])
def test_drop_contrast_power_matches_noncentral_t(n):
    """Power at a planted gap of 0.05 (sd 0.02 in each arm, so the contrast sd is 0.04) is what the
    noncentral t predicts (er_core.power.knn_power at effect 0.05/0.04): 0.25, 0.57, 0.86."""
    reps = 4000
    result = drop_test(*drop_arms("equal", reps, n, np.random.default_rng(50 + n), gap=0.05))
    rate = float((result.p <= ALPHA).mean())
    predicted = power.knn_power(0.05 / 0.04, n)
    print(f"delta_drop power at gap 0.05, arm sd 0.02, {n} seeds: {rate:.3f} "
          f"(noncentral t {predicted:.3f})")
    assert abs(rate - predicted) <= 3 * math.sqrt(predicted * (1 - predicted) / reps)
    wrong = float(((result.p <= ALPHA) & (result.mean < 0)).mean())  # ER called less robust
    assert wrong <= ALPHA / 2
    if n == 8:
        assert rate >= 0.8


def test_welch_of_four_means_fails_calibration_where_the_seed_contrast_holds():
    """Why not Welch-Satterthwaite on the four means: with one arm's variance dominating (sd 0.02
    against 0.002), at 3 seeds it rejects more than alpha of equal drops; the seed-contrast t holds."""
    reps = 20_000
    arms = drop_arms("dominant", reps, 3, np.random.default_rng(60))
    assert float((welch_contrast_pvalues(arms) <= ALPHA).mean()) > fpr_bound(reps)
    assert float((drop_test(*arms).p <= ALPHA).mean()) <= fpr_bound(reps)
