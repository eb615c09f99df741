"""``linear_top1`` of each trial's last line reaches the trials table and the stability table."""

import io
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from reports.commands import report_command
from tests.synthetic_experiment import write_trial


def add_final_linear(trial_dir: str, value: float) -> None:
    """Put ``linear_top1`` on the last result line, as run_trial does at a trial's end."""
    path = os.path.join(trial_dir, "result.json")
    with open(path) as handle:
        lines = [json.loads(line) for line in handle]
    lines[-1]["linear_top1"] = value
    with open(path, "w") as handle:
        handle.writelines(json.dumps(line) + "\n" for line in lines)


def test_final_linear_top1_in_trials_and_per_variant_mean_std_in_stability(tmp_path):
    phase = os.path.join(tmp_path, "replicate")
    linear = {"original": [0.70, 0.74, 0.78], "er": [0.80, 0.82, None]}  # None: no probe (e.g. ASHA)
    for variant, values in linear.items():
        for seed, value in enumerate(values):
            trial = write_trial(phase, f"t_{variant}_{seed}", variant=variant, seed=seed, epochs=2,
                                grid={"batch_size": 64})
            if value is not None:
                add_final_linear(trial, value)
    code = report_command(str(tmp_path), stream=io.StringIO(), err=io.StringIO(), plots=False)
    assert code == 0
    trials = {r["trial_id"]: r for r in pq.read_table(tmp_path / "report" / "trials.parquet").to_pylist()}
    assert trials["t_original_1"]["final_linear_top1"] == pytest.approx(0.74)
    assert trials["t_er_2"]["final_linear_top1"] is None
    (row,) = pq.read_table(tmp_path / "report" / "stability.parquet").to_pylist()
    assert row["original_linear_mean"] == pytest.approx(0.74)
    assert row["original_linear_std"] == pytest.approx(np.std([0.70, 0.74, 0.78], ddof=1))
    assert row["er_linear_mean"] == pytest.approx(0.81)
    assert row["er_linear_std"] == pytest.approx(np.std([0.80, 0.82], ddof=1))
