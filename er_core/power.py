"""What a stability verdict can detect with a given number of seeds (power, before and after a run).

Shared by ``er-tune validate`` (search_spaces, before anything runs) and the report (reports/, next
to each undecided verdict); plain numpy/scipy, no Ray, no torch.

The three verdict families of the report (reports/stats.py) and what each can detect:

* **collapse counts** — Boschloo's exact unconditional test on the 2x2 table (collapsed / not, ER /
  original), two-sided (``scipy.stats.boschloo_exact``). With n seeds per variant the most extreme
  table n/n vs 0/n has p = 2·(1/2)^(2n) (1/32 at n = 3), so the smallest decidable difference is the
  smallest k with p(k/n vs 0/n) <= alpha / m: :func:`min_detectable_collapse`.
* **time to collapse** — exact permutation log-rank (reports/survival.py). Its smallest attainable
  two-sided p is 2 / C(n_er + n_orig, n_er) (0.1 at 3 + 3 seeds): :func:`logrank_min_pvalue`;
  1 / (R + 1) for the imputation-permutation version used under unequal follow-up.
* **kNN accuracy** — paired t-test on ER − original over seeds. The smallest mean difference found
  with probability ``power`` is δ·sd, δ solving P(|T| > t_{1-a/2, n-1}) = power with T noncentral
  t (df n − 1, noncentrality δ·sqrt(n)) (``scipy.stats.nct``): :func:`knn_min_detectable_effect`.
  Where every paired difference is the same number (sd 0) the t-test is undefined and the exact
  sign-flip test is used; its smallest two-sided p is 2 / 2^n: :func:`sign_flip_min_pvalue`.

* **accuracy drop under stress** (the robustness table) — the four arms original/ER at the
  reference and at a stressed cell, compared through the per-seed contrast d_s = (o_ref − o_stress)
  − (e_ref − e_stress) with a one-sample t over the seeds in all four arms, the same t as kNN: with
  four independent arms of sd σ, sd(d) = 2σ, so the smallest delta_drop found with probability
  ``power`` is δ·2σ: :func:`drop_min_detectable`.

``m`` is the number of cells Holm adjusts over (Holm's first step compares the smallest p with
alpha / m, so a difference present in a single cell must reach alpha / m: the figures are for that
worst case; with differences in several cells Holm is less strict). The report counts in m only
the cells that can inform a family (for the collapse counts: some but not all trials collapsed),
so after a run m is known: the report states what each cell could have decided at the m it would
have had with that cell counted (``collapse_min_detectable``; reports/stability.py
``holm_m_with``). Before a run :func:`power_lines` prints the collapse figure at both ends: m = 1
(the only cell with a collapse) and m = every compared cell.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import optimize
from scipy import stats as sps

from er_core.rules import ALPHA

# Draws of the imputation-permutation log-rank (unequal follow-up, reports/survival.py); the
# permutation log-rank under equal follow-up enumerates every split exactly.
IMPUTATION_RESAMPLES = 1_999
# Boschloo maximises over the nuisance collapse probability: 0.4-1.2 s per table at 100 seeds per
# variant. Above this many seeds in a variant Fisher's exact test (also exact, slightly
# conservative; the two converge as n grows) is used, and named in the report's collapse_test.
BOSCHLOO_MAX_SEEDS = 30


def collapse_test_name(n_er: int, n_orig: int) -> str:
    """``boschloo_exact`` up to BOSCHLOO_MAX_SEEDS seeds per variant, else ``fisher_exact``."""
    return "boschloo_exact" if max(n_er, n_orig) <= BOSCHLOO_MAX_SEEDS else "fisher_exact"


@lru_cache(maxsize=None)
def _boschloo(a: int, n1: int, b: int, n2: int) -> float:
    if n1 == 0 or n2 == 0 or a + b in (0, n1 + n2):
        return 1.0  # nothing varies: no evidence either way
    table = [[a, b], [n1 - a, n2 - b]]
    if collapse_test_name(n1, n2) == "fisher_exact":
        return float(sps.fisher_exact(table, alternative="two-sided").pvalue)
    result = sps.boschloo_exact(table, alternative="two-sided")
    return float(min(1.0, result.pvalue))


def collapse_pvalue(k_er: int, n_er: int, k_orig: int, n_orig: int) -> float:
    """Two-sided Boschloo exact p of k_er/n_er (ER) vs k_orig/n_orig (original) collapses
    (Fisher's exact test above BOSCHLOO_MAX_SEEDS seeds per variant).

    Cached per distinct table, canonicalised by the test's symmetries (swapping the samples,
    swapping collapsed/not), so enumerating every table of a study costs each p once.
    """
    candidates = [(k_er, n_er, k_orig, n_orig), (k_orig, n_orig, k_er, n_er),
             (n_er - k_er, n_er, n_orig - k_orig, n_orig),
             (n_orig - k_orig, n_orig, n_er - k_er, n_er)]
    return _boschloo(*min(candidates))


def min_detectable_collapse(n_er: int, n_orig: int, alpha: float = ALPHA,
                            m: int = 1) -> tuple[int, float] | None:
    """Smallest k such that 0/n_er vs k/n_orig collapses rejects at alpha/m, and its p.

    None when even 0/n_er vs n_orig/n_orig cannot (too few seeds for any collapse verdict).
    """
    for k in range(1, n_orig + 1):
        p = collapse_pvalue(0, n_er, k, n_orig)
        if p <= alpha / max(m, 1):
            return k, p
    return None


def min_seeds_collapse(alpha: float = ALPHA, m: int = 1, n_max: int = 64) -> int | None:
    """Smallest n (seeds per variant) at which n/n vs 0/n can reject at alpha/m."""
    for n in range(1, n_max + 1):
        if collapse_pvalue(0, n, n, n) <= alpha / max(m, 1):
            return n
    return None


def collapse_power(p_er: float, p_orig: float, n: int, alpha: float = ALPHA, m: int = 1) -> float:
    """Exact probability that the collapse test rejects at alpha/m with n seeds per variant when
    the true collapse probabilities are p_er and p_orig: the sum of Binomial(n, p_er) x
    Binomial(n, p_orig) over the (n + 1)^2 tables whose p-value is <= alpha/m."""
    counts = np.arange(n + 1)
    table_prob = np.outer(sps.binom.pmf(counts, n, p_er), sps.binom.pmf(counts, n, p_orig))
    rejects = np.array([[collapse_pvalue(k_er, n, k_orig, n) <= alpha / max(m, 1)
                         for k_orig in counts] for k_er in counts])
    return float((table_prob * rejects).sum())


def logrank_min_pvalue(n_er: int, n_orig: int, imputed: bool = False,
                       n_resamples: int = IMPUTATION_RESAMPLES) -> float:
    """Smallest two-sided p the permutation log-rank can give: 2/C(n_er+n_orig, n_er) (every
    split enumerated); ``imputed`` (unequal follow-up): 1/(n_resamples+1)."""
    if n_er == 0 or n_orig == 0:
        return 1.0
    if imputed:
        return 1.0 / (n_resamples + 1)
    return min(1.0, 2.0 / math.comb(n_er + n_orig, n_er))


def sign_flip_min_pvalue(n: int) -> float:
    """Smallest two-sided p of the exact sign-flip test on n paired differences: 2/2^n."""
    return 1.0 if n < 1 else min(1.0, 2.0 / 2.0 ** n)


def min_seeds_logrank(alpha: float = ALPHA, m: int = 1, n_max: int = 64) -> int | None:
    """Smallest n (seeds per variant) at which the permutation log-rank can reject at alpha/m."""
    for n in range(1, n_max + 1):
        if logrank_min_pvalue(n, n) <= alpha / max(m, 1):
            return n
    return None


def knn_power(effect: float, n: int, alpha: float = ALPHA, m: int = 1) -> float:
    """Power of the two-sided paired t-test at alpha/m for a mean difference of ``effect`` paired
    sds with n pairs: P(|T| > t_crit), T ~ noncentral t(n − 1, effect·sqrt(n))."""
    if n < 2:
        return 0.0
    dof, level = n - 1, alpha / max(m, 1)
    critical = sps.t.ppf(1 - level / 2, dof)
    noncentrality = effect * math.sqrt(n)
    # scipy's nct returns nan for some far tails (e.g. cdf(-5, 4, 30)); those tails are ~0
    upper, lower = np.nan_to_num([sps.nct.sf(critical, dof, noncentrality),
                                  sps.nct.cdf(-critical, dof, noncentrality)])
    return float(min(1.0, upper + lower))


def knn_min_detectable_effect(n: int, alpha: float = ALPHA, m: int = 1,
                              power: float = 0.8) -> float | None:
    """Smallest |mean(ER − original)| in units of the paired-difference sd that the paired t-test
    (alpha/m, two-sided) detects with probability ``power``; None when n < 2."""
    if n < 2:
        return None
    upper = 1.0
    while knn_power(upper, n, alpha, m) < power:
        upper *= 2.0
    return float(optimize.brentq(lambda effect: knn_power(effect, n, alpha, m) - power, 0.0,
                                 upper, xtol=1e-10))


# Seed sd of one arm's final accuracy assumed by ``er-tune validate`` before anything ran: the
# committed results/fmnist_ema has 0.005-0.026 (median about 0.011) for final kNN and linear top-1.
ASSUMED_ARM_SD = 0.01


def drop_min_detectable(n: int, alpha: float = ALPHA, m: int = 1, arm_sd: float = ASSUMED_ARM_SD,
                        power: float = 0.8) -> float | None:
    """Smallest |delta_drop| (accuracy, fraction) that the seed-contrast t (alpha/m, two-sided)
    detects with probability ``power`` when each of the four arms has seed sd ``arm_sd``:
    :func:`knn_min_detectable_effect` × 2·arm_sd (sd of (o_ref − o_s) − (e_ref − e_s) for
    independent arms). None when n < 2."""
    effect = knn_min_detectable_effect(n, alpha, m, power)
    return None if effect is None else effect * 2.0 * arm_sd


def power_lines(n_er: int, n_orig: int, m: int, alpha: float = ALPHA) -> tuple[list[str], list[str]]:
    """Printable statements (and warnings) of what n_er / n_orig seeds can decide over m cells."""
    lines, warns = [], []
    level = alpha / max(m, 1)
    seeds = (f"{n_er} seeds per variant" if n_er == n_orig
             else f"{n_er} ER / {n_orig} original seeds")
    head = f"alpha {alpha:g}, Holm over {m} cell(s): a single difference needs p <= {level:.3g}"
    lines.append(head)
    detectable = min_detectable_collapse(n_er, n_orig, alpha, m)
    need = min_seeds_collapse(alpha, m)
    best_p = collapse_pvalue(0, n_er, n_orig, n_orig)
    test = {"boschloo_exact": "Boschloo exact", "fisher_exact": "Fisher exact"}[
        collapse_test_name(n_er, n_orig)]
    if detectable is None:
        lines.append(f"collapse counts ({test}): cannot decide: even {n_orig}/{n_orig} vs "
                     f"0/{n_er} gives p = {best_p:.3g}; needs >= {need} seeds per variant")
        warns.append(f"{seeds} cannot give any collapse-count verdict "
                     f"(needs >= {need} per variant)")
    else:
        k, p = detectable
        alone = min_detectable_collapse(n_er, n_orig, alpha, 1)
        lines.append(f"collapse counts ({test}): detects {k}/{n_orig} vs 0/{n_er} "
                     f"(rate difference >= {k / n_orig:.2f}, p = {p:.3g}) when all {m} cell(s) "
                     f"have collapses, {alone[0]}/{n_orig} (>= {alone[0] / n_orig:.2f}, p = "
                     f"{alone[1]:.3g}) in the only cell with any (Holm's m counts the cells "
                     "where some but not all trials collapsed; the report's "
                     "collapse_min_detectable is this figure at its m); "
                     f"{need} seeds per variant decide only n/n vs 0/n")
    smallest_p = logrank_min_pvalue(n_er, n_orig)
    need_logrank = min_seeds_logrank(alpha, m)
    if smallest_p > level:
        lines.append(f"time to collapse (permutation log-rank): cannot decide: smallest p "
                     f"{smallest_p:.3g}; needs >= {need_logrank} seeds per variant")
        warns.append(f"{seeds} cannot give any time-to-collapse verdict "
                     f"(needs >= {need_logrank} per variant)")
    else:
        lines.append(f"time to collapse (permutation log-rank): smallest p {smallest_p:.3g} (can decide; "
                     f"needs >= {need_logrank} seeds per variant)")
    n = min(n_er, n_orig)
    effect = knn_min_detectable_effect(n, alpha, m)
    if effect is None:
        lines.append("kNN (paired t): cannot decide with fewer than 2 seeds")
        warns.append("fewer than 2 paired seeds: no kNN verdict possible")
    else:
        lines.append(f"kNN (paired t, 80% power): |mean ER - original| >= {effect:.2f} sd of the "
                     f"paired differences")
    return lines, warns
