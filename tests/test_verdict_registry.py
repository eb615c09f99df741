"""The verdict registry: a family declared in one place is computed, Holm-adjusted,
stored and rendered without touching stability.py or render.py, and never mistaken for a grid
axis."""
from __future__ import annotations

import io
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from reports import render, stats, verdicts
from reports.commands import report_command
from tests.synthetic_experiment import write_trial


def _double_run(cell: verdicts.CellData) -> verdicts.Outcome:
    """A toy family: paired t on twice the final knn over seeds (read from the trial records)."""
    def by_seed(variant):
        return variant.trials.set_index("seed")["final_knn_top1"] * 2.0
    er, orig = by_seed(cell.er), by_seed(cell.original)
    seeds = er.index.intersection(orig.index)
    result = stats.knn_test((er[seeds] - orig[seeds]).to_numpy(float))
    mean = float(result.mean)
    return verdicts.Outcome("paired_t", float(result.p), {"double_diff": mean},
                            mean > 0, True, {})


DOUBLE = verdicts.VerdictFamily(
    name="double", heading="dbl", question="{tests} on twice the knn ({cells})",
    labels=("er_better", "original_better"), test_column="double_test",
    effect_columns=("double_diff",), p_column="double_p", p_adj_column="double_p_adj",
    verdict_column="double_verdict", detectable_column=None, run=_double_run,
    detectable=lambda outcome, m, alpha: None, note=lambda row, m: "",
    cells=(("Δ2knn", lambda row: f"{row['double_diff']:+.3f}"),), tests=("paired_t",),
    informative_rule="every cell")


def experiment(root):
    ph = os.path.join(root, "replicate")
    rng = np.random.default_rng(0)
    for ema in (0.0, 0.9):
        for s in range(4):
            base = 0.4 + 0.02 * rng.normal()
            for variant, shift in (("original", 0.0), ("er", 0.05)):
                write_trial(ph, f"{variant}_{ema}_{s}", method="byol", variant=variant, seed=s,
                            epochs=3, knn=[0.1, 0.1, base + shift + 0.005 * rng.normal()],
                            grid={"ema": ema})
    return root


def test_a_family_declared_in_the_registry_alone_is_computed_and_drawn(tmp_path, monkeypatch):
    monkeypatch.setattr(verdicts, "FAMILIES", verdicts.FAMILIES + (DOUBLE,))
    monkeypatch.setattr(verdicts, "BLOCKS", verdicts.BLOCKS + (verdicts.Block(
        "twice knn", "", lambda row, variant, compact: "-", ("double",)),))
    experiment(tmp_path)
    out = io.StringIO()
    assert report_command(str(tmp_path), stream=out, err=io.StringIO(), plots=False) == 0
    table = pq.read_table(tmp_path / "report" / "stability.parquet")
    rows = {r["ema"]: r for r in table.to_pylist()}
    for row in rows.values():
        assert row["double_diff"] == pytest.approx(2 * row["knn_diff"])
        assert row["double_p"] == pytest.approx(row["knn_p"])  # a scaled t statistic
    raw = [rows[e]["double_p"] for e in (0.0, 0.9)]
    assert [rows[e]["double_p_adj"] for e in (0.0, 0.9)] == pytest.approx(stats.holm_array(raw))
    assert render.grid_axes(table) == ["ema"]
    # without the metadata, the declared columns are still not taken for axes
    assert render.grid_axes(table.replace_schema_metadata({})) == ["ema"]
    text = out.getvalue()
    assert "twice knn" in text and "dbl" in text and "m = 2: every cell" in " ".join(text.split())
    md = render.markdown(table)
    assert "| Δ2knn (dbl) |" in md and "| p_adj (dbl) |" in md


def test_every_declared_column_is_written_once():
    columns = [c for family in verdicts.FAMILIES for c in family.columns]
    assert len(columns) == len(set(columns))
    assert {f.verdict_column for f in verdicts.FAMILIES} == {
        "verdict", "time_verdict", "any_collapse_verdict", "any_time_verdict", "knn_verdict"}
    assert all(name in verdicts.FAMILY_BY_NAME for block in verdicts.BLOCKS
               for name in block.families)
