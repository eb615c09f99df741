"""The robustness table (accuracy lost from the study's reference cell, ER against the original) on
synthetic experiments written as er-tune writes them: a planted drop is found where it was planted and
nowhere else, a null experiment calls nothing, and the numbers are the ones computed by hand."""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from er_tune.cli import main
from reports.columns import UNDESCRIBED
from reports.commands import report_command
from reports.robustness import NO_REFERENCE, VERDICTS
from tests.synthetic_experiment import robustness_experiment, write_trial


def _report(root, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    code = report_command(str(root), plots=kwargs.pop("plots", False), stream=out, err=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


def _rows(root):
    return pq.read_table(os.path.join(root, "report", "robustness.parquet")).to_pylist()


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = robustness_experiment(str(tmp_path_factory.mktemp("planted")), planted=0.2)
    code, out, err = _report(root)
    assert code == 0, err
    return root, out


def test_planted_drop_is_er_more_robust_on_its_row_only(planted):
    root, _ = planted
    rows = _rows(root)
    # byol: ema / batch_size / both stressed; simclr (no teacher, no ema): batch_size; x 2 metrics
    assert len(rows) == 8 and {r["metric"] for r in rows} == {"linear_top1", "knn_top1"}
    for row in rows:
        is_planted = (row["method"], row["ema"], row["batch_size"]) == ("byol", 0.8, 256)
        assert row["verdict"] == ("er_more_robust" if is_planted else "no_difference"), row
        assert row["verdict"] in VERDICTS
    row = next(r for r in rows if r["method"] == "byol" and r["axis"] == "ema" and r["metric"] == "knn_top1")
    assert row["reference"] == "ema=0.99,batch_size=256" and row["n_seeds"] == 6 and row["n_excluded"] == 0
    assert row["original_drop"] == pytest.approx(0.25, abs=0.02) and row["er_drop"] == pytest.approx(0.05, abs=0.02)
    assert row["delta_drop"] == pytest.approx(row["original_drop"] - row["er_drop"], abs=1e-12)
    assert row["delta_drop_lo"] > 0.15 and row["p_adj"] <= 0.05 and row["test"] == "seed_contrast_t"
    simclr = [r for r in rows if r["method"] == "simclr"]
    assert {r["reference"] for r in simclr} == {"batch_size=256"} and all(r["ema"] is None for r in simclr)


def test_null_experiment_calls_nothing(tmp_path):
    root = robustness_experiment(str(tmp_path), planted=0.0)
    assert _report(root)[0] == 0
    rows = _rows(root)
    assert len(rows) == 8 and {r["verdict"] for r in rows} == {"no_difference"}
    assert all(r["min_detectable"] is not None and 0 < r["min_detectable"] < 0.1 for r in rows)


def test_numbers_match_a_hand_computation_and_which_trials_count(tmp_path):
    """Seeds 0-2; seed 2's stressed ER trial errored (left out with its seed: n_excluded 3), seed
    1's stressed original collapsed at 0.10 (it keeps that accuracy)."""
    phase = str(tmp_path / "replicate")
    values = {("original", 0.99): [0.70, 0.72, 0.71], ("original", 0.8): [0.60, 0.10, 0.62],
              ("er", 0.99): [0.69, 0.70, 0.68], ("er", 0.8): [0.64, 0.66, None]}
    for (variant, ema), finals in values.items():
        for seed, value in enumerate(finals):
            write_trial(phase, f"byol_{variant}_{ema}_{seed}", method="byol", variant=variant, seed=seed,
                        grid={"ema": ema}, knn=[0.1, 0.2, value if value is not None else 0.5],
                        stop_reason="collapsed" if value == 0.10 else "" if value is None else "completed",
                        error="boom" if value is None else None, n_lines=2 if value is None else None)
    (tmp_path / "study.yaml").write_text("name: syn\nmethods: [byol]\ngrid: {ema: [0.8, 0.99]}\n"
                                         "reference: {ema: 0.99}\n")
    assert _report(tmp_path)[0] == 0
    row = next(r for r in _rows(tmp_path) if r["metric"] == "knn_top1")
    assert row["n_seeds"] == 2 and row["n_excluded"] == 3
    assert row["original_ref_mean"] == pytest.approx(0.71) and row["original_stress_mean"] == pytest.approx(0.35)
    assert row["original_drop"] == pytest.approx(0.36) and row["er_drop"] == pytest.approx(0.045)
    contrasts = np.array([(0.70 - 0.60) - (0.69 - 0.64), (0.72 - 0.10) - (0.70 - 0.66)])
    from scipy import stats as sps
    assert row["delta_drop"] == pytest.approx(contrasts.mean())
    assert row["p"] == pytest.approx(sps.ttest_1samp(contrasts, 0.0).pvalue)
    linear = next(r for r in _rows(tmp_path) if r["metric"] == "linear_top1")
    assert linear["n_seeds"] == 0 and linear["verdict"] == "untested" and linear["p"] is None


def test_every_column_is_described_and_the_report_prints_the_table(planted):
    root, out = planted
    schema = pq.read_schema(os.path.join(root, "report", "robustness.parquet"))
    for field in schema:
        assert field.metadata[b"description"].decode() != UNDESCRIBED, field.name
    assert "collapsed trial keeps the accuracy" in schema.field("original_ref_mean").metadata[b"description"].decode()
    meta = schema.metadata
    assert json.loads(meta[b"reference"]) == {"ema": 0.99, "batch_size": 256}
    assert json.loads(meta[b"holm_m"]) == {"linear_top1": 4, "knn_top1": 4}
    block = out[out.index("robustness: accuracy at the reference"):]
    assert block.index("linear_top1 (headline)") < block.index("knn_top1")
    lines = block.splitlines()
    head = next(line for line in lines if line.startswith("model"))
    assert head.split() == ["model", "acc@ref", "Δema=0.8", "Δbatch_size=32", "Δema=0.8,batch_size=32"]
    byol = next(line for line in lines if line.startswith("byol "))
    assert byol.split()[1].startswith("0.75")  # linear top-1 at the reference: 0.70 + 0.05
    verdict = next(line for line in lines if line.startswith("  verdict"))
    assert verdict.split()[2] == "ER" and "=|Δ|≥" in verdict


def test_plot_one_png_per_method_with_chance_and_the_untrained_network(planted, tmp_path, monkeypatch):
    from reports import robustness_plot

    root, _ = planted
    figures = {}
    save = robustness_plot._save
    monkeypatch.setattr(robustness_plot, "_save", lambda fig, path: figures.setdefault(
        os.path.basename(path), [line.get_label() for ax in fig.axes for line in ax.get_lines()]) and save(fig, path))
    rows = [r for r in _rows(root) if r["method"] == "simclr"]
    trials = pq.read_table(os.path.join(root, "report", "trials.parquet"))
    paths = robustness_plot.plot_robustness(pa.Table.from_pylist(rows), str(tmp_path), trials=trials)
    assert paths == [str(tmp_path / "robustness_simclr.png")] and os.path.getsize(paths[0]) > 10_000
    labels = figures["robustness_simclr.png"]  # two panels: linear_top1, knn_top1 vs batch_size
    assert labels.count("chance 1/10 = 0.100") == 2 and labels.count("reference") == 2
    # untrained.json holds the kNN only: drawn on the knn panel (mean of 0.30..0.35), not the linear one
    assert [label for label in labels if label.startswith("untrained")] == ["untrained network 0.325"]


def test_show_prints_it_again_and_json_carries_it(planted, capsys):
    root, out = planted
    report_dir = os.path.join(root, "report")
    assert main(["show", report_dir]) == 0
    shown = capsys.readouterr().out
    block = out[out.index("robustness: accuracy at the reference"):out.index("report written")]
    assert block in shown
    assert main(["show", report_dir, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    rows = document["tables"]["robustness"]
    assert len(rows) == 8 and sum(r["verdict"] == "er_more_robust" for r in rows) == 2
    assert document["manifest"]["robustness"]["reference"] == {"ema": 0.99, "batch_size": 256}


def test_without_reference_one_line_and_no_table(tmp_path):
    root = robustness_experiment(str(tmp_path), planted=0.2, reference=None)
    os.makedirs(tmp_path / "report")
    (tmp_path / "report" / "robustness.parquet").write_text("stale")
    code, out, _ = _report(root)
    assert code == 0 and out.count(NO_REFERENCE) == 1
    assert not os.path.exists(tmp_path / "report" / "robustness.parquet")
    manifest = json.loads((tmp_path / "report" / "manifest.json").read_text())
    assert manifest["robustness"]["note"] == NO_REFERENCE and "robustness" not in manifest["row_counts"]


def test_reference_option_overrides_and_bad_reference_exits_2(tmp_path, capsys):
    root = robustness_experiment(str(tmp_path), planted=0.2, reference=None)
    assert main(["report", root, "--no-plots", "--reference", "ema=0.8,batch_size=256"]) == 0
    rows = _rows(root)
    # from ema 0.8 the planted cell is the reference: ema=0.99 is now the stress, and the original
    # gains (a negative drop) 0.2 more than ER there
    row = next(r for r in rows if r["method"] == "byol" and r["axis"] == "ema" and r["metric"] == "knn_top1")
    assert row["ema"] == 0.99 and row["verdict"] == "original_more_robust" and row["delta_drop"] < -0.15
    capsys.readouterr()
    assert main(["report", root, "--no-plots", "--reference", "ema=0.5,batch_size=256"]) == 2
    assert "reference.ema: 0.5 is not a value of the experiment's ema; allowed: 0.8, 0.99" in capsys.readouterr().err
    assert main(["report", root, "--no-plots", "--reference", "ema"]) == 2
    assert "--reference: 'ema' is not axis=value" in capsys.readouterr().err
