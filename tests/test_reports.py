"""Tests of the reports package on synthetic experiment directories (no training)."""
from __future__ import annotations

import io
import json
import math
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats as sps

from reports import parquet_io, stats
from reports.verdicts import FAMILY_BY_NAME
from reports.commands import report_command, show_command
from tests.synthetic_experiment import event, small_replicate, write_trial


def run(exp, **kw):
    out, err = io.StringIO(), io.StringIO()
    code = report_command(str(exp), stream=out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()


def wilson_closed(k, n, z=1.959963984540054):
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return c - h, c + h


@pytest.mark.parametrize("k,n", [(3, 4), (0, 4), (4, 4), (7, 20)])
def test_wilson_matches_closed_form(k, n):
    assert stats.wilson(k, n) == pytest.approx(wilson_closed(k, n), abs=1e-9)


def test_verdict_rules():
    assert stats.verdict(FAMILY_BY_NAME["collapse"].labels, 0.01, True) == "er_more_stable"
    assert stats.verdict(FAMILY_BY_NAME["collapse"].labels, 0.01, False) == "original_more_stable"
    assert stats.verdict(FAMILY_BY_NAME["time"].labels, 0.05, False) == "original_more_stable"  # p_adj <= alpha fires
    assert stats.verdict(FAMILY_BY_NAME["collapse"].labels, 0.0501, True) == "no_difference"
    assert stats.verdict(FAMILY_BY_NAME["knn"].labels, 0.001, True) == "er_better"
    assert stats.verdict(FAMILY_BY_NAME["knn"].labels, 0.001, False, alpha=0.0005) == "no_difference"
    assert stats.verdict(FAMILY_BY_NAME["knn"].labels, None, None) == "untested"
    with pytest.raises(ValueError, match="alpha"):
        stats.check_alpha(1.5)


def test_stability_hand_computed(tmp_path):
    small_replicate(tmp_path)
    code, out, err = run(tmp_path, plots=False)
    assert code == 0, err
    st = pq.read_table(tmp_path / "report" / "stability.parquet").to_pylist()
    assert len(st) == 1
    r = st[0]
    assert r["method"] == "simclr" and r["batch_size"] == 64
    assert (r["original_n_seeds"], r["original_n_collapsed"]) == (4, 3)
    assert r["original_collapse_rate"] == 0.75 and r["er_collapse_rate"] == 0.0
    assert (r["original_collapse_rate_lo"], r["original_collapse_rate_hi"]) == pytest.approx(
        (0.300642, 0.954414), abs=1e-5)
    assert (r["er_collapse_rate_lo"], r["er_collapse_rate_hi"]) == pytest.approx(
        (0.0, 0.489891), abs=1e-5)
    assert r["original_knn_mean"] == pytest.approx(0.35)
    assert r["original_knn_std"] == pytest.approx(np.std([.2, .3, .4, .5], ddof=1))
    assert r["er_knn_mean"] == pytest.approx(0.65)
    assert r["original_entropy_drift"] == pytest.approx(-1.0)
    assert r["er_entropy_drift"] == pytest.approx(1.0)
    assert r["n_paired"] == 4 and r["knn_diff"] == pytest.approx(0.3)
    t = sps.ttest_1samp([0.3, 0.2, 0.3, 0.4], 0.0)
    ci = t.confidence_interval()
    assert (r["knn_diff_lo"], r["knn_diff_hi"]) == pytest.approx((ci.low, ci.high))
    assert r["knn_p"] == pytest.approx(t.pvalue) and r["knn_test"] == "paired_t"
    assert r["knn_p_adj"] == r["knn_p"]  # one cell: Holm leaves it alone
    assert r["knn_verdict"] == "er_better"
    # knn difference found with 80% power at the observed sd (0.0816) of the 4 differences
    assert r["knn_min_detectable"] == pytest.approx(2.12795 * np.std([.3, .2, .3, .4], ddof=1),
                                                    rel=1e-4)
    assert r["collapse_diff"] == pytest.approx(-0.75) and r["collapse_test"] == "boschloo_exact"
    assert r["collapse_p"] == pytest.approx(sps.boschloo_exact([[0, 3], [4, 1]]).pvalue)
    assert (r["collapse_diff_lo"], r["collapse_diff_hi"]) == pytest.approx(
        (-0.954413, -0.085233), abs=1e-5)  # Newcombe hybrid score
    assert r["verdict"] == "no_difference" and r["collapse_p"] > 0.05  # 3/4 vs 0/4: p = 0.070
    assert r["collapse_min_detectable"] == 1.0  # only 4/4 vs 0/4 (p = 0.0078) decides
    # time to collapse: original 3 collapses at epoch 3 + 1 censored at 3; ER 4 censored at 3.
    # Scores δ − Λ(3) with Λ(3) = 3/8: U = k − 1.5 for k events among the 4 ER slots; k is
    # hypergeometric over the C(8,4) = 70 splits, P(k = 0) = C(5,4)/70, two-sided p = 2·5/70.
    assert r["logrank_u"] == pytest.approx(-1.5) and r["logrank_p"] == pytest.approx(10 / 70)
    assert r["original_median_time_to_collapse"] == 3.0
    assert r["er_median_time_to_collapse"] is None
    assert r["time_verdict"] == "no_difference" and r["alpha"] == 0.05
    sv = pq.read_table(tmp_path / "report" / "survival.parquet").to_pylist()
    # no partial collapse here: the 'any' endpoint repeats the 'complete' one
    assert [(x["endpoint"], x["variant"], x["epoch"], x["at_risk"], x["events"], x["censored"])
            for x in sv] == [("complete", "original", 3, 4, 3, 1), ("complete", "er", 3, 4, 0, 4),
                             ("any", "original", 3, 4, 3, 1), ("any", "er", 3, 4, 0, 4)]
    assert sv[0]["survival"] == pytest.approx(0.25) and sv[1]["survival"] == 1.0
    assert sv[0]["ci_low"] < 0.25 < sv[0]["ci_high"] and sv[0]["batch_size"] == 64
    table_lines = out.splitlines()[:-1]  # the last line names the output dir
    assert "simclr" in out and all(len(ln) <= 100 for ln in table_lines)
    # re-running gives bit-identical statistics
    run(tmp_path, plots=False)
    assert pq.read_table(tmp_path / "report" / "stability.parquet").to_pylist() == st


def build_statuses(root):
    ph = os.path.join(root, "search")
    sr = {"lr": 0.1}
    write_trial(ph, "done", epochs=3, searched=sr, grid={"ema": 0.9})
    write_trial(ph, "early", epochs=5, n_lines=2, stop_reason="", searched={"lr": 0.5},
                grid={"ema": 0.9})
    write_trial(ph, "coll", epochs=5, n_lines=2, stop_reason="collapsed", grid={"ema": 0.9},
                searched={"lr": 0.9}, events=[event(severity="warning", epoch=1),
                                              event(kind="dimensional", epoch=2)])
    write_trial(ph, "div", epochs=5, n_lines=1, stop_reason="diverged", grid={"ema": 0.9},
                searched={"lr": 2.0})
    write_trial(ph, "err", epochs=5, n_lines=1, stop_reason="", error="RuntimeError: boom\nx\n",
                grid={"ema": 0.9}, searched={"lr": 0.3})
    write_trial(ph, "run", epochs=5, n_lines=2, stop_reason="", grid={"ema": 0.9},
                searched={"lr": 0.2})
    write_trial(ph, "noreason", epochs=3, stop_reason="", grid={"ema": 0.9}, searched={"lr": 0.4})
    write_trial(ph, "pend", epochs=3, n_lines=0, grid={"ema": 0.9}, searched={"lr": 0.6})
    state = {"trial_data": [[json.dumps({"trial_id": "run", "status": "RUNNING"}), "{}"]]}
    with open(os.path.join(ph, "experiment_state-2026.json"), "w") as f:
        json.dump(state, f)
    return ph


def test_every_status_and_columns(tmp_path):
    build_statuses(tmp_path)
    code, _, err = run(tmp_path, plots=False)
    assert code == 0, err
    tr = pd.read_parquet(tmp_path / "report" / "trials.parquet").set_index("trial_id")
    assert tr["status"].to_dict() == {
        "done": "completed", "early": "early_stopped", "coll": "collapsed", "div": "diverged",
        "err": "errored", "run": "running", "noreason": "completed", "pend": "pending"}
    c = tr.loc["coll"]
    assert c["collapse_kind"] == "dimensional" and c["collapse_epoch"] == 2
    assert c["epochs_completed"] == 2 and c["max_epochs"] == 5
    assert c["best_knn_top1"] == pytest.approx(0.2) and c["final_rankme"] == 6.0
    assert c["wall_time_s"] == 4.0 and c["objective"] == "simclr" and c["hp_lr"] == 0.9
    assert tr.loc["err", "error"].startswith("RuntimeError: boom")
    assert tr.loc["div", "collapse_kind"] == "diverged"
    assert pd.isna(tr.loc["done", "collapse_kind"])
    schema = pq.read_schema(tmp_path / "report" / "trials.parquet")
    assert schema.field("ema").type == pa.float64() and schema.field("seed").type == pa.int64()
    assert schema.field("final_knn_top1").type == pa.float64()
    assert schema.metadata[b"schema_version"] == parquet_io.SCHEMA_VERSION.encode()
    se = pq.read_table(tmp_path / "report" / "search.parquet").to_pylist()
    assert len(se) == 1
    s = se[0]
    assert (s["n_trials"], s["n_early_stopped"], s["n_collapsed"]) == (8, 1, 2)
    assert s["collapse_fraction"] == pytest.approx(2 / 8)
    assert s["best_hp_lr"] in (0.1, 0.4)  # both reach knn 0.3 over 3 epochs
    ev = pd.read_parquet(tmp_path / "report" / "collapse_events.parquet")
    assert list(ev["severity"]) == ["warning", "collapse"] and set(ev["trial_id"]) == {"coll"}
    ep = pd.read_parquet(tmp_path / "report" / "epochs.parquet")
    assert len(ep) == 3 + 2 + 2 + 1 + 1 + 2 + 3
    assert ep["epoch"].dtype == np.int64 and ep["knn_top1"].dtype == np.float64
    m = json.loads((tmp_path / "report" / "manifest.json").read_text())
    assert m["row_counts"]["trials"] == 8 and m["stability_phase"] == "search"
    assert m["notes"] and m["versions"]["pyarrow"] == pa.__version__


def test_corrupt_inputs_reported_and_report_written(tmp_path):
    small_replicate(tmp_path)
    ph = tmp_path / "replicate"
    bad = write_trial(str(ph), "trunc", epochs=3)
    with open(os.path.join(bad, "result.json"), "a") as f:
        f.write('{"epoch": 4, "knn_to')
    write_trial(str(ph), "noparams", params=False)
    os.makedirs(ph / "empty")
    code, out, err = run(tmp_path, plots=False)
    assert code == 0
    m = json.loads((tmp_path / "report" / "manifest.json").read_text())
    reasons = {os.path.basename(u["trial_dir"]): u["reason"] for u in m["unreadable"]}
    assert reasons == {"trunc": "result.json line 4 unreadable (JSONDecodeError)",
                       "noparams": "missing params.json", "empty": "empty trial directory"}
    for name in reasons:
        assert name in err
    tr = pd.read_parquet(tmp_path / "report" / "trials.parquet").set_index("trial_id")
    assert tr.loc["trunc", "epochs_completed"] == 3 and tr.loc["trunc", "status"] == "completed"
    # trunc has no grid axes -> its own cell; noparams has no method -> left out
    assert m["row_counts"]["stability"] == 2


def test_not_an_experiment_and_single_trial(tmp_path):
    (tmp_path / "x").mkdir()
    code, _, err = run(tmp_path / "x")
    assert code == 2 and "not an experiment" in err
    assert run(tmp_path / "missing")[0] == 2
    d = write_trial(str(tmp_path / "train_out"), "t", epochs=2)
    code, _, _ = run(d, plots=False)
    assert code == 0
    tr = pd.read_parquet(os.path.join(d, "report", "trials.parquet"))
    assert list(tr["phase"]) == ["single"] and list(tr["status"]) == ["completed"]


def test_views_markdown_plots_show(tmp_path):
    small_replicate(tmp_path)
    md = tmp_path / "st.md"
    out_dir = tmp_path / "rep"
    code, _, _ = run(tmp_path, out=str(out_dir), markdown=str(md))
    assert code == 0
    text = md.read_text()
    assert text.startswith("| method/cell") and "| er_better |" in text
    assert "| no_difference (≥1.00) |" in text and "boschloo" in text.lower()
    pngs = sorted(p.name for p in out_dir.glob("*.png"))
    assert pngs == ["er_entropy.png", "km_simclr.png", "simclr_batch_size.png"]
    assert (out_dir / "km_simclr.png").read_bytes()[:4] == b"\x89PNG"
    assert (out_dir / "er_entropy.png").read_bytes()[:4] == b"\x89PNG"
    s = io.StringIO()
    assert show_command(str(out_dir), stream=s) == 0
    assert "simclr" in s.getvalue() and "trials (8 rows)" in s.getvalue()
    assert "survival (4 rows)" in s.getvalue() and "=≥1.00" in s.getvalue()
    assert show_command(str(tmp_path / "nothing")) == 2


def test_atomic_write_keeps_previous_file(tmp_path, monkeypatch):
    path = str(tmp_path / "t.parquet")
    parquet_io.write_table_atomic(pa.table({"a": [1, 2]}), path)

    def broken(table, where, **kw):
        with open(where, "wb") as f:
            f.write(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(parquet_io.pq, "write_table", broken)
    with pytest.raises(OSError):
        parquet_io.write_table_atomic(pa.table({"a": [9]}), path)
    assert os.listdir(tmp_path) == ["t.parquet"]
    assert pq.read_table(path).column("a").to_pylist() == [1, 2]


def test_epochs_match_per_line_json_and_type_clash(tmp_path):
    """The chunked Arrow reader agrees with json.loads, also when a file's types differ."""
    from reports.results_io import read_many
    a = b'{"epoch": 1, "knn_top1": 0.5, "stop_reason": ""}\n{"epoch": 2, "knn_top1": 0.7}\n'
    b = b'{"epoch": 1, "knn_top1": 1, "stop_reason": "completed", "cfg": {"x": 1}}'
    c = b'{"epoch": 1, "knn_top1": 0.25}\n{"epoch": 2, "knn_to'
    table, counts, problems = read_many([a, b"", b, c])
    assert counts == [2, 0, 1, 1]
    assert problems == [[], [], [], ["result.json line 2 unreadable (JSONDecodeError)"]]
    assert table["knn_top1"].type == pa.float64() and "cfg" not in table.column_names
    assert table["knn_top1"].to_pylist() == [0.5, 0.7, 1.0, 0.25]
    assert table["epoch"].to_pylist() == [1, 2, 1, 1]


def old_schema_stability() -> pa.Table:
    """A stability table as schema 1 wrote it (Wilson/bootstrap verdicts, no p columns)."""
    row = {"method": "simclr", "batch_size": 64, "original_n_seeds": 4, "original_n_collapsed": 3,
           "original_collapse_rate": 0.75, "original_collapse_rate_lo": 0.3006,
           "original_collapse_rate_hi": 0.9544, "original_knn_mean": 0.35,
           "original_knn_std": 0.129, "original_entropy_drift": -1.0, "er_n_seeds": 4,
           "er_n_collapsed": 0, "er_collapse_rate": 0.0, "er_collapse_rate_lo": 0.0,
           "er_collapse_rate_hi": 0.4899, "er_knn_mean": 0.65, "er_knn_std": 0.191,
           "er_entropy_drift": 1.0, "n_paired": 4, "knn_diff": 0.3, "knn_diff_lo": 0.225,
           "knn_diff_hi": 0.375, "collapse_diff": -0.75, "verdict": "no_difference",
           "knn_verdict": "er_better"}
    return pa.Table.from_pylist([row]).replace_schema_metadata({b"schema_version": b"1"})


def test_show_reads_schema_1_report(tmp_path):
    pq.write_table(old_schema_stability(), tmp_path / "stability.parquet")
    s = io.StringIO()
    assert show_command(str(tmp_path), stream=s) == 0
    out = s.getvalue()
    assert "3/4 0.30-0.95" in out and "stab:= knn:ER" in out and "schema 1" in out
    assert all(len(line) <= 100 for line in out.splitlines())
    from reports import render
    assert "| no_difference / er_better |" in render.markdown(old_schema_stability())


def planted(root, n=8, ma=None):
    """Cell ema=0.0: original collapses on every seed at epoch 2, ER never, knn +0.05 (sd 0.01);
    cell ema=0.9: no difference at all (both collapse on seeds 0 and 1 at epoch 3)."""
    ph = os.path.join(root, "replicate")
    rng = np.random.default_rng(0)
    for s in range(n):
        base = 0.5 + 0.02 * rng.normal()
        for var in ("original", "er"):
            coll = var == "original"
            knn = base + (0.05 + 0.01 * rng.normal() if var == "er" else 0.0)
            write_trial(ph, f"a_{var}_{s}", variant=var, seed=s, epochs=6, method="byol",
                        n_lines=2 if coll else 6, stop_reason="collapsed" if coll else "completed",
                        knn=[0.1] * 5 + [knn], grid={"ema": 0.0},
                        events=[event(epoch=2)] if coll else ())
            coll = s < 2
            write_trial(ph, f"b_{var}_{s}", variant=var, seed=s, epochs=6, method="byol",
                        n_lines=3 if coll else 6, stop_reason="collapsed" if coll else "completed",
                        knn=[0.1] * 5 + [base + 0.01 * rng.normal()], grid={"ema": 0.9},
                        events=[event(epoch=3)] if coll else ())
    return root


def test_planted_difference_decided_and_null_cell_undecided(tmp_path):
    planted(tmp_path)
    code, out, err = run(tmp_path, plots=False)
    assert code == 0, err
    st = {r["ema"]: r for r in pq.read_table(tmp_path / "report" / "stability.parquet").to_pylist()}
    a, b = st[0.0], st[0.9]
    assert (a["original_n_collapsed"], a["er_n_collapsed"]) == (8, 0)
    assert a["collapse_p_adj"] == pytest.approx(2 * a["collapse_p"])  # Holm over 2 cells
    assert a["verdict"] == "er_more_stable" and a["time_verdict"] == "er_more_stable"
    assert a["knn_verdict"] == "er_better" and a["knn_p_adj"] <= 0.05
    assert a["original_median_time_to_collapse"] == 2.0 and a["er_median_time_to_collapse"] is None
    assert (b["verdict"], b["time_verdict"]) == ("no_difference", "no_difference")
    assert b["collapse_p"] == 1.0 and b["logrank_p"] == 1.0
    # 8 seeds, Holm over 2 cells (p <= 0.025): 4/8 vs 0/8 gives p = 0.028, 5/8 vs 0/8 p = 0.008
    assert b["collapse_min_detectable"] == 0.625
    assert "=≥0.62" in out and all(len(line) <= 100 for line in out.splitlines()[:-1])
    sv = pd.read_parquet(tmp_path / "report" / "survival.parquet")
    assert set(sv["ema"]) == {0.0, 0.9} and len(sv[(sv["ema"] == 0.0)]) == 2 * 2  # 2 endpoints
    # a stricter alpha turns the collapse verdict off (8/8 vs 0/8: p_adj = 2 x 3.05e-5)
    code, out, _ = run(tmp_path, plots=False, alpha=1e-5)
    st = pq.read_table(tmp_path / "report" / "stability.parquet").to_pylist()
    assert code == 0 and {r["verdict"] for r in st} == {"no_difference"}
    assert st[0]["alpha"] == 1e-5 and "=never" in out
    assert run(tmp_path, plots=False, alpha=0.0)[0] == 2


def test_cli_report_alpha(tmp_path, capsys):
    from er_tune.cli import main
    small_replicate(tmp_path)
    assert main(["report", str(tmp_path), "--no-plots", "--alpha", "0.001"]) == 0
    r = pq.read_table(tmp_path / "report" / "stability.parquet").to_pylist()[0]
    assert r["alpha"] == 0.001 and r["knn_p"] == pytest.approx(0.005208, abs=1e-6)
    assert r["knn_verdict"] == "no_difference"  # er_better at the default 0.05
    from reports import render
    st = pq.read_table(tmp_path / "report" / "stability.parquet")
    assert "verdict when p_adj <= 0.001" in render.legend(st)
    assert main(["report", str(tmp_path), "--no-plots", "--alpha", "0"]) == 2
