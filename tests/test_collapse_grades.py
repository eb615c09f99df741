"""Collapse grades (none / partial / complete) in the report: trials table, counts rendered as
complete+partial/n, the any-collapse verdict families and the survival endpoints."""
from __future__ import annotations

import io
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from er_core import power
from reports import render
from reports.commands import report_command, show_command
from reports.grades import collapse_grade
from tests.synthetic_experiment import event, write_trial


def partial(kind, epoch):
    return event(kind=kind, severity="partial", epoch=epoch)


def warning(epoch):
    return event(kind="early_warning", severity="warning", epoch=epoch)


def test_grade_rule():
    assert collapse_grade("completed", [], None).grade == "none"
    assert collapse_grade("completed", [warning(2)], None).grade == "none"
    g = collapse_grade("completed", [partial("prototype", 4), partial("dimensional", 3),
                                     partial("prototype", 5), warning(2)], None)
    assert (g.grade, g.partial_kinds, g.first_partial_epoch, g.any_collapse_epoch,
            g.first_warning_epoch) == ("partial", "dimensional,prototype", 3, 3, 2)
    g = collapse_grade("collapsed", [partial("plateau", 2), event(epoch=4)], 4)
    assert (g.grade, g.any_collapse_epoch, g.first_partial_epoch) == ("complete", 2, 2)
    # a collapse event grades complete whatever the stop reason; so does the stop reason alone
    assert collapse_grade("errored", [event(epoch=3)], 3).grade == "complete"
    assert collapse_grade("diverged", [], 5).any_collapse_epoch == 5


def graded_experiment(root):
    """Cell ema=0.0, 6 seeds per variant:
    original: seeds 0,1 complete (epoch 3; seed 0 partial first at 2), seeds 2,3,4 partial
              (epoch 4, 5, 5), seed 5 none      -> 2+3/6, any 5/6
    er:       seed 0 partial (epoch 6), the rest none (seed 1 warned at 2) -> 0+1/6, any 1/6
    """
    ph = os.path.join(root, "replicate")
    for s in range(6):
        if s < 2:
            events = [partial("dimensional", 2)] if s == 0 else []
            write_trial(ph, f"o{s}", method="dino", variant="original", seed=s, epochs=6,
                        n_lines=3, stop_reason="collapsed", knn=[0.1, 0.1, 0.1],
                        grid={"ema": 0.0}, events=events + [event(epoch=3)])
        else:
            events = [partial("prototype", (4, 5, 5)[s - 2])] if s < 5 else []
            write_trial(ph, f"o{s}", method="dino", variant="original", seed=s, epochs=6,
                        knn=[0.1] * 5 + [0.12], grid={"ema": 0.0}, events=events)
        events = ([partial("functional", 6)] if s == 0 else [warning(2)] if s == 1 else [])
        write_trial(ph, f"e{s}", method="dino", variant="er", seed=s, epochs=6,
                    knn=[0.1] * 5 + [0.3], grid={"ema": 0.0}, events=events)
    return root


def test_trials_table_and_counts(tmp_path):
    graded_experiment(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    assert report_command(str(tmp_path), stream=out, err=err, plots=False) == 0, err.getvalue()
    tr = pd.read_parquet(tmp_path / "report" / "trials.parquet").set_index("trial_id")
    assert tr["collapse_grade"].to_dict() == {
        "o0": "complete", "o1": "complete", "o2": "partial", "o3": "partial", "o4": "partial",
        "o5": "none", "e0": "partial", "e1": "none", "e2": "none", "e3": "none", "e4": "none",
        "e5": "none"}
    assert tr.loc["o2", "partial_kinds"] == "prototype" and pd.isna(tr.loc["o5", "partial_kinds"])
    assert tr.loc["o0", "any_collapse_epoch"] == 2 and tr.loc["o1", "any_collapse_epoch"] == 3
    assert tr.loc["e1", "first_warning_epoch"] == 2 and pd.isna(tr.loc["e0", "first_warning_epoch"])
    row = pq.read_table(tmp_path / "report" / "stability.parquet").to_pylist()[0]
    assert (row["original_n_collapsed"], row["original_n_partial"],
            row["original_n_any_collapsed"]) == (2, 3, 5)
    assert (row["er_n_collapsed"], row["er_n_partial"], row["er_n_any_collapsed"]) == (0, 1, 1)
    assert row["original_collapse_rate"] == pytest.approx(2 / 6)  # partial never folded in
    assert row["original_partial_rate"] == pytest.approx(3 / 6)
    assert row["original_any_collapse_rate"] == pytest.approx(5 / 6)
    # complete family: 0/6 vs 2/6; any family: 1/6 vs 5/6, each with its own test and Holm
    assert row["collapse_p"] == pytest.approx(power.collapse_pvalue(0, 6, 2, 6))
    assert row["any_collapse_p"] == pytest.approx(power.collapse_pvalue(1, 6, 5, 6))
    assert row["any_collapse_diff"] == pytest.approx(1 / 6 - 5 / 6)
    assert row["verdict"] == "no_difference"
    assert row["any_collapse_verdict"] == ("er_more_stable" if row["any_collapse_p"] <= 0.05
                                           else "no_difference")
    assert row["original_median_time_to_collapse"] is None  # 2 of 6 collapsed completely
    assert row["original_median_time_to_any_collapse"] == 4.0  # S(any) = 5/6, 4/6, 3/6 at 2,3,4
    text = out.getvalue()
    assert "2+3/6" in text and "0+1/6" in text and "any collapse (complete+partial)" in text
    assert all(len(line) <= 100 for line in text.splitlines()[:-1])


def test_survival_has_both_endpoints(tmp_path):
    graded_experiment(tmp_path)
    assert report_command(str(tmp_path), stream=io.StringIO(), err=io.StringIO(),
                          plots=True) == 0
    sv = pd.read_parquet(tmp_path / "report" / "survival.parquet")
    assert set(sv["endpoint"]) == {"complete", "any"}
    orig_any = sv[(sv["endpoint"] == "any") & (sv["variant"] == "original")]
    assert list(orig_any["epoch"]) == [2, 3, 4, 5, 6]
    assert list(orig_any["events"]) == [1, 1, 1, 2, 0]
    assert list(orig_any["survival"]) == pytest.approx([5 / 6, 4 / 6, 3 / 6, 1 / 6, 1 / 6])
    orig_complete = sv[(sv["endpoint"] == "complete") & (sv["variant"] == "original")]
    assert list(orig_complete["events"]) == [2, 0] and list(orig_complete["epoch"]) == [3, 6]
    assert (tmp_path / "report" / "km_dino.png").is_file()


def test_show_reads_a_schema_2_report(tmp_path):
    """A stability table written before grades (no any-collapse columns) still renders."""
    graded_experiment(tmp_path)
    report_command(str(tmp_path), stream=io.StringIO(), err=io.StringIO(), plots=False)
    table = pq.read_table(tmp_path / "report" / "stability.parquet")
    old = [c for c in table.column_names if "any_" not in c and "partial" not in c]
    old_table = table.select(old).replace_schema_metadata({b"schema_version": b"2"})
    os.makedirs(tmp_path / "old")
    pq.write_table(old_table, tmp_path / "old" / "stability.parquet")
    s = io.StringIO()
    assert show_command(str(tmp_path / "old"), stream=s) == 0
    text = s.getvalue()
    assert "complete collapse" in text and "2/6" in text and "any collapse" not in text
    assert render.grid_axes(old_table) == ["ema"]


def test_ungraded_trials_leave_the_grade_unknown_not_zero(tmp_path):
    """Trials written before the partial-collapse criteria (no GRADE_METRICS in their lines): their
    grade columns are null, not 'none'/0, the partial and any-collapse figures of their variants
    are null, and the any-collapse families say untested; the complete family, known from the
    stop reason, is still tested. A cell where nothing collapsed is untested there too."""
    ph = os.path.join(tmp_path, "replicate")
    for s in range(6):
        collapsed = s < 4
        write_trial(ph, f"o{s}", method="dino", variant="original", seed=s, epochs=4,
                    n_lines=2 if collapsed else 4, stop_reason="collapsed" if collapsed
                    else "completed", grid={"ema": 0.0}, graded=False,
                    events=[event(epoch=2)] if collapsed else ())
        write_trial(ph, f"e{s}", method="dino", variant="er", seed=s, epochs=4,
                    grid={"ema": 0.0}, graded=False)
        for variant in ("original", "er"):  # graded, nothing collapsed
            write_trial(ph, f"q_{variant}{s}", method="dino", variant=variant, seed=s, epochs=4,
                        grid={"ema": 0.9})
    out, err = io.StringIO(), io.StringIO()
    assert report_command(str(tmp_path), stream=out, err=err, plots=False) == 0, err.getvalue()
    tr = pd.read_parquet(tmp_path / "report" / "trials.parquet").set_index("trial_id")
    ungraded = tr.loc[[f"e{s}" for s in range(6)] + ["o4", "o5"]]
    assert not ungraded["partial_graded"].any()
    for column in ("collapse_grade", "partial_kinds", "first_partial_epoch", "any_collapse_epoch",
                   "first_warning_epoch"):
        assert ungraded[column].isna().all(), column
    assert set(tr.loc[["o0", "o3"], "collapse_grade"]) == {"complete"}  # known without them
    assert tr.loc["q_er0", "partial_graded"] and tr.loc["q_er0", "collapse_grade"] == "none"
    rows = {r["ema"]: r for r in pq.read_table(tmp_path / "report" /
                                                "stability.parquet").to_pylist()}
    old, new = rows[0.0], rows[0.9]
    for variant in ("original", "er"):
        for column in ("n_partial", "n_any_collapsed", "partial_rate", "partial_rate_hi",
                       "any_collapse_rate", "any_collapse_rate_lo", "median_time_to_any_collapse"):
            assert old[f"{variant}_{column}"] is None, (variant, column)
    for family in ("any_collapse", "any_logrank"):
        assert old[f"{family}_p"] is None and old[f"{family}_p_adj"] is None
    assert (old["any_collapse_verdict"], old["any_time_verdict"]) == ("untested", "untested")
    assert old["any_collapse_diff"] is None and old["any_collapse_min_detectable"] is None
    assert (old["original_n_collapsed"], old["er_n_collapsed"]) == (4, 0)
    assert old["collapse_p"] == pytest.approx(power.collapse_pvalue(0, 6, 4, 6))
    assert old["verdict"] in ("er_more_stable", "no_difference")
    # the graded cell where nothing collapsed: measured zeros, but nothing the families can test
    assert (new["original_n_partial"], new["er_n_any_collapsed"]) == (0, 0)
    assert {new[c] for c in ("verdict", "time_verdict", "any_collapse_verdict",
                             "any_time_verdict")} == {"untested"}
    sv = pd.read_parquet(tmp_path / "report" / "survival.parquet")
    assert set(sv[sv["ema"] == 0.0]["endpoint"]) == {"complete"}  # no 'any' curve without grades
    assert set(sv[sv["ema"] == 0.9]["endpoint"]) == {"complete", "any"}
    text = out.getvalue()
    assert "4+?/6" in text and "0+0/6" in text and "+0/6 0.00" not in text.split("ema=0.9")[0]
    legend = " ".join(text.split("p_adj: Holm")[1].split())
    assert "partial count is unknown, not 0" in legend
    k, _ = power.min_detectable_collapse(6, 6, 0.05, 2)  # complete family: m = 1, + this cell
    assert f"stab ≥{k / 6:.2f}" in legend and "=≥" not in text.split("p_adj: Holm")[0]
    assert all(len(line) <= 100 for line in text.splitlines()[:-1])


def test_rereport_from_parquet_matches_a_report_from_the_trial_dirs(tmp_path):
    """A report written before the partial-collapse grade (grades 'none', no partial_graded, no
    untested) is rewritten from its own Parquet tables into what a report of its trial dirs gives
    today: the trial dirs are gone in the committed studies, the Parquet tables are not."""
    import json
    import shutil

    from reports.rereport import rereport

    ph = os.path.join(tmp_path, "exp", "replicate")
    for s in range(4):
        for variant in ("original", "er"):
            write_trial(ph, f"{variant}{s}", method="dino", variant=variant, seed=s, epochs=3,
                        knn=[0.1, 0.2, 0.3 + 0.01 * s + (0.05 if variant == "er" else 0)],
                        grid={"ema": 0.0}, graded=False)
    exp, fresh = os.path.join(tmp_path, "exp"), os.path.join(tmp_path, "fresh")
    assert report_command(exp, out=fresh, stream=io.StringIO(), err=io.StringIO(),
                          plots=False) == 0
    old = os.path.join(tmp_path, "old")
    shutil.copytree(fresh, old)
    trials = pq.read_table(os.path.join(old, "trials.parquet")).to_pandas()
    trials = trials.drop(columns="partial_graded").assign(collapse_grade="none")
    pq.write_table(pa.Table.from_pandas(trials, preserve_index=False),
                   os.path.join(old, "trials.parquet"))
    stale = pq.read_table(os.path.join(old, "stability.parquet")).to_pandas()
    stale = stale.assign(original_n_partial=0, er_n_partial=0, any_collapse_verdict="no_difference")
    pq.write_table(pa.Table.from_pandas(stale, preserve_index=False).replace_schema_metadata(
        pq.read_schema(os.path.join(fresh, "stability.parquet")).metadata),
        os.path.join(old, "stability.parquet"))
    with open(os.path.join(old, "manifest.json")) as handle:
        manifest = json.load(handle)
    with open(os.path.join(old, "manifest.json"), "w") as handle:
        json.dump({**manifest, "experiment": "/some/machine/exp"}, handle)
    out = rereport(old)
    for name in ("trials", "stability", "survival"):
        assert (pq.read_table(os.path.join(old, f"{name}.parquet")).to_pylist()
                == pq.read_table(os.path.join(fresh, f"{name}.parquet")).to_pylist()), name
    assert out["experiment"] == "exp" and out["run"] is None
    assert any("re-reported from its own Parquet" in note for note in out["notes"])
