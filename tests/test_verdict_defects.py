"""Statistical defects a report must not have, each checked on a synthetic experiment or on the
test itself."""
from __future__ import annotations

import io
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from er_core import power
from reports import render, stats
from reports.commands import report_command
from reports.survival import logrank_test
from tests.synthetic_experiment import event, write_trial


def run(exp, **kw):
    out, err = io.StringIO(), io.StringIO()
    code = report_command(str(exp), stream=out, err=err, plots=False, **kw)
    return code, out.getvalue(), err.getvalue()


def stability_rows(exp):
    return pq.read_table(os.path.join(exp, "report", "stability.parquet")).to_pylist()


def trial(phase_dir, name, variant, seed, *, collapse_at=None, epochs=4, knn=0.5, grid=None,
          partial_at=None, method="byol"):
    """A trial that collapses completely at ``collapse_at`` (stops there), partially at
    ``partial_at`` (runs on), or neither; final knn ``knn``."""
    events = []
    if partial_at is not None:
        events.append(event(kind="dimensional", severity="partial", epoch=partial_at))
    if collapse_at is not None:
        events.append(event(epoch=collapse_at))
    lines = epochs if collapse_at is None else collapse_at
    write_trial(phase_dir, name, method=method, variant=variant, seed=seed, epochs=epochs,
                n_lines=lines, stop_reason="collapsed" if collapse_at else "completed",
                knn=[0.1] * (lines - 1) + [knn], grid=grid or {"ema": 0.0}, events=events)


def test_one_trial_arm_with_a_collapse_gets_an_exact_logrank(tmp_path):
    """scipy's permutation_test needs two observations per sample: the report crashed."""
    ph = str(tmp_path / "replicate")
    trial(ph, "er0", "er", 0, collapse_at=2)
    for s in range(3):
        trial(ph, f"orig{s}", "original", s)
    code, out, err = run(tmp_path)
    assert code == 0, err
    row = stability_rows(tmp_path)[0]
    # pooled times 2 (event), 4, 4, 4: Λ(2) = 1/4, ER score 3/4, the others -1/4; the single ER
    # slot takes the event in 1 of the 4 splits: two-sided p = 1/4
    assert row["logrank_u"] == pytest.approx(0.75) and row["logrank_p"] == pytest.approx(0.25)
    assert row["logrank_test"] == "logrank_permutation"
    assert logrank_test([2.0], [True], [4.0] * 3, [False] * 3).p == pytest.approx(0.25)
    assert row["knn_verdict"] == "untested"  # one pair: no kNN test


@pytest.mark.parametrize("n,p", [(2, 0.5), (3, 0.25), (6, 1 / 32)])
def test_equal_paired_differences_get_the_exact_sign_flip_p(n, p):
    res = stats.knn_test(np.full(n, 0.05))
    assert res.p == pytest.approx(p)  # 2 / 2^n, not the t-test's 0
    assert bool(res.sign_flip) and res.lo == pytest.approx(0.05) and res.hi == pytest.approx(0.05)
    assert stats.knn_test(np.zeros(n)).p == 1.0


def test_equal_differences_report_no_winner_and_no_zero_detectable(tmp_path):
    ph = str(tmp_path / "replicate")
    for s in range(2):  # ER − original = +0.05 on both seeds
        trial(ph, f"o{s}", "original", s, knn=0.4 + 0.1 * s)
        trial(ph, f"e{s}", "er", s, knn=0.45 + 0.1 * s)
    code, out, err = run(tmp_path)
    assert code == 0, err
    row = stability_rows(tmp_path)[0]
    assert row["knn_test"] == "sign_flip_exact" and row["knn_p"] == pytest.approx(0.5)
    assert row["knn_verdict"] == "no_difference" and row["knn_min_detectable"] is None
    assert "|Δ|≥0" not in out and "=never" in out  # 2 seeds: the sign-flip cannot reach 0.05


def logrank_unequal_followup_fpr(n_big, n_small, reps, seed, n_resamples=199):
    """Both arms collapse with probability 0.3 at a uniform epoch of 10; the larger arm loses 60%
    of its trials to errors in epochs 1-4 (censored), the smaller none."""
    rng = np.random.default_rng(seed)

    def arm(n, error_rate):
        collapse = rng.integers(1, 11, n).astype(float)
        collapses = rng.random(n) < 0.3
        stop = np.where(rng.random(n) < error_rate, rng.integers(1, 5, n), 10).astype(float)
        return np.where(collapses, np.minimum(collapse, stop), stop), collapses & (collapse <= stop)
    rejections, cache = 0, {}
    for _ in range(reps):
        big, small = arm(n_big, 0.6), arm(n_small, 0.0)
        key = (tuple(zip(*big)), tuple(zip(*small)))
        if key not in cache:
            cache[key] = logrank_test(*big, *small, n_resamples=n_resamples).p
        rejections += cache[key] <= 0.05
    return rejections / reps


def test_logrank_keeps_its_size_under_unequal_followup():
    """The label permutation fired 0.099 here (1,500 reps; 0.066 at 10 vs 5 with errors
    anywhere, 0.077 at 4 vs 10), above 0.05 + 3 Monte Carlo se."""
    reps = 600
    assert logrank_unequal_followup_fpr(10, 5, reps, seed=0) <= 0.05 + 3 * np.sqrt(
        0.05 * 0.95 / reps)


def null_cells(root, n_empty, planted=(0, 4)):
    """One cell with ER collapsing on planted[0] and the original on planted[1] of 5 seeds, and
    ``n_empty`` cells where nothing collapses."""
    ph = str(root / "replicate")
    for s in range(5):
        for variant, k in (("er", planted[0]), ("original", planted[1])):
            trial(ph, f"real_{variant}_{s}", variant, s, collapse_at=2 if s < k else None,
                  grid={"ema": 0.0})
            for c in range(n_empty):
                trial(ph, f"null{c}_{variant}_{s}", variant, s, grid={"ema": 0.1 * (c + 1)})


def test_holm_counts_only_cells_that_can_inform_the_collapse_families(tmp_path):
    """0/5 vs 4/5 (Boschloo p = 0.0215) among 7 cells where nothing collapsed: Holm over all 8
    gave p_adj 0.17 and no verdict."""
    null_cells(tmp_path, 7)
    code, out, err = run(tmp_path)
    assert code == 0, err
    rows = {r["ema"]: r for r in stability_rows(tmp_path)}
    real = rows[0.0]
    assert real["collapse_p"] == pytest.approx(power.collapse_pvalue(0, 5, 4, 5))
    assert real["collapse_p_adj"] == pytest.approx(real["collapse_p"])  # m = 1
    assert real["verdict"] == "er_more_stable"
    # 0/5 vs 0/5 cannot inform the family (p = 1 by construction): untested, not no_difference,
    # and what it could have decided is stated at Holm's m with the cell counted (1 + 1)
    k, _ = power.min_detectable_collapse(5, 5, 0.05, 2)
    assert all(rows[e]["collapse_p_adj"] == 1.0 and rows[e]["verdict"] == "untested"
               and rows[e]["time_verdict"] == "untested"
               and rows[e]["collapse_min_detectable"] == pytest.approx(k / 5)
               for e in rows if e != 0.0)
    table_lines, legend = out.split("p_adj: Holm")
    assert "untested" in table_lines and "=≥" not in table_lines
    assert f"stab ≥{k / 5:.2f}" in " ".join(legend.split())
    table = pq.read_table(tmp_path / "report" / "stability.parquet")
    assert render.holm_sizes(table)["collapse"] == 1 and render.holm_sizes(table)["knn"] == 8
    assert "m = 1: cells where some but not all trials collapsed" in " ".join(out.split())


def test_search_phase_fallback_is_not_a_replicated_comparison(tmp_path):
    ph = str(tmp_path / "search")
    for s in range(5):  # would be a decided 0/5 vs 5/5 if these were replicates
        trial(ph, f"o{s}", "original", 0, collapse_at=2)
        trial(ph, f"e{s}", "er", 0)
    write_trial(ph, "asha", variant="er", seed=0, epochs=4, n_lines=1, stop_reason="",
                grid={"ema": 0.0}, method="byol")  # early-stopped by ASHA
    code, out, err = run(tmp_path)
    assert code == 0, err
    row = stability_rows(tmp_path)[0]
    verdicts = [row[c] for c in ("verdict", "time_verdict", "any_collapse_verdict",
                                 "any_time_verdict", "knn_verdict")]
    assert verdicts == ["not_replicated"] * 5
    assert row["collapse_p"] is None and row["collapse_p_adj"] is None
    assert row["er_n_seeds"] == 5  # the ASHA-stopped trial is not counted as "not collapsed"
    assert "NOT a replicated comparison" in out and "n/r" in out
    assert "not a replicated comparison" in err


def test_one_or_two_events_among_twelve_full_budget_trials_are_never_significant():
    """Regression: the exact log-rank compared rounded subset sums at a 1e-9 tolerance and gave p = 0
    for one collapse among 6 vs 6 (the demo printed p_adj < .001). One event: every split is as
    extreme, p = 1; two events in one arm of 6 vs 6: p = 2 * C(6,2) / C(12,2) = 30/66."""
    from reports.survival import logrank_test

    one = logrank_test([5] * 6, [False] * 6, [2] + [5] * 5, [True] + [False] * 5, budget=5)
    assert one.p == pytest.approx(1.0)
    two = logrank_test([5] * 6, [False] * 6, [2, 3] + [5] * 4, [True, True] + [False] * 4, budget=5)
    assert 0.3 < two.p < 1.0
