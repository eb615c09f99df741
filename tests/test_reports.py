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


def test_bootstrap_reproducible_and_matches_scipy():
    d = [0.3, 0.2, 0.3, 0.4, 0.1, 0.5]
    a, b = stats.paired_bootstrap(d), stats.paired_bootstrap(d)
    assert a == b and a[0] == pytest.approx(0.3)
    ref = sps.bootstrap((np.array(d),), np.mean, n_resamples=10000, method="percentile",
                        random_state=1).confidence_interval
    assert a[1] == pytest.approx(ref.low, abs=0.02) and a[2] == pytest.approx(ref.high, abs=0.02)
    e = [0.31, 0.17, 0.29, 0.43, 0.05, 0.52, 0.11]  # continuous: another seed moves the bounds
    assert stats.paired_bootstrap(e, seed=1)[1:] != stats.paired_bootstrap(e)[1:]


def test_verdict_rules():
    assert stats.collapse_verdict((0.0, 0.2), (0.3, 0.9)) == "er_more_stable"
    assert stats.collapse_verdict((0.5, 0.9), (0.0, 0.4)) == "original_more_stable"
    assert stats.collapse_verdict((0.0, 0.5), (0.3, 0.9)) == "no_difference"
    assert stats.knn_verdict(0.01, 0.2) == "er_better"
    assert stats.knn_verdict(-0.2, -0.01) == "original_better"
    assert stats.knn_verdict(-0.1, 0.1) == "no_difference"


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
    lo, hi = stats.paired_bootstrap([0.3, 0.2, 0.3, 0.4])[1:]
    assert (r["knn_diff_lo"], r["knn_diff_hi"]) == (lo, hi)
    assert 0.2 <= lo < 0.3 < hi <= 0.4
    assert r["collapse_diff"] == pytest.approx(-0.75)
    assert r["verdict"] == "no_difference"  # Wilson intervals overlap (0.30 < 0.49)
    assert r["knn_verdict"] == "er_better"
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
    assert schema.metadata[b"schema_version"] == b"1"
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
    assert text.startswith("| method/cell") and "er_better" in text
    pngs = sorted(p.name for p in out_dir.glob("*.png"))
    assert pngs == ["er_entropy.png", "simclr_batch_size.png"]
    assert (out_dir / "er_entropy.png").read_bytes()[:4] == b"\x89PNG"
    s = io.StringIO()
    assert show_command(str(out_dir), stream=s) == 0
    assert "simclr" in s.getvalue() and "trials (8 rows)" in s.getvalue()
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
