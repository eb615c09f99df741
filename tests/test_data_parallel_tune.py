"""Data-parallel trials on Ray: a study of two 2-worker trials end to end, and a killed worker.

The study runs through ``er-tune tune`` and ``er-tune report`` on the 2 cores (each worker gets
0.49 CPU). The fault test runs one 2-worker trial inside Tune whose worker 1 kills itself
(SIGKILL) in epoch 2 before reporting it, once (a marker file): Ray Train restarts the workers
from the epoch-1 checkpoint, and every epoch is reported exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
STUDY = """\
name: dp_smoke
data: {dataset: shapes, image_size: 16, train_size: 32, eval_size: 16, seed: 0}
model: {backbone: convnet, projector_dim: 16, projector_hidden_dim: 32}
methods: [simclr]
variants: [er]
grid: {batch_size: [16]}
seeds: [0, 1]
schedule: {max_epochs: 2, asha: {grace_period: 1, reduction_factor: 2}}
resources: {workers: 2, cpu: 0.49, gpu: 0}
trial: {knn_bank_size: 16, knn_k: 5, warmup_epochs: 1}
"""

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def er_tune(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "er_tune.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=ROOT)


def result_lines(trial_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]


def test_a_study_of_two_data_parallel_trials_runs_and_reports(tmp_path):
    study = tmp_path / "dp.yaml"
    study.write_text(STUDY)
    exp = tmp_path / "exp"
    run = er_tune("tune", str(study), "--storage", str(exp))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    trials = sorted(p for p in (exp / "replicate").iterdir() if (p / "params.json").exists())
    assert len(trials) == 2
    for trial in trials:
        assert json.loads((trial / "params.json").read_text())["world_size"] == 2
        lines = result_lines(trial)
        assert [line["epoch"] for line in lines] == [1, 2]
        assert all(line["world_size"] == 2 for line in lines)
        assert lines[-1]["stop_reason"] in ("completed", "collapsed")
        assert (trial / "collapse_events.jsonl").exists()
        assert any(name.startswith("events.out.tfevents") for name in os.listdir(trial))
    report = er_tune("report", str(exp), "--no-plots")
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]


def killed_once_worker(loop_config):
    """:func:`er_tune.data_parallel.train_worker` whose worker 1 dies in epoch 2, the first time."""
    import ray.train

    from er_tune import data_parallel

    rank = ray.train.get_context().get_world_rank()
    marker = os.path.join(loop_config["trial_dir"], "killed_once")
    report = data_parallel.TrainWorkerReporter.report

    def report_or_die(self, metrics, checkpoint_dir=None):
        if rank == 1 and metrics["epoch"] == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        report(self, metrics, checkpoint_dir)

    data_parallel.TrainWorkerReporter.report = report_or_die
    data_parallel.train_worker(loop_config)


def killing_trial(config):
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from er_core.config import TrialConfig
    from er_tune.data_parallel import torch_trainer

    trial_dir = tune.get_context().get_trial_dir()
    torch_trainer(TrialConfig.from_dict(config), cpu=0.49, gpu=0.0, trial_dir=trial_dir, storage_path=trial_dir,
                  max_failures=1, callbacks=[TuneReportCallback()], train_fn=killed_once_worker).fit()


def test_a_killed_worker_costs_the_epoch_in_progress_and_nothing_is_counted_twice(tmp_path):
    import ray
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from er_core.config import TrialConfig

    config = TrialConfig(method="simclr", variant="er", image_size=16, train_size=32, eval_size=16, batch_size=16,
                         epochs=3, warmup_epochs=1, backbone="convnet", projector_dim=16, projector_hidden_dim=32,
                         knn_bank_size=16, knn_k=5, world_size=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # the trial and worker functions live in this test module, which Ray's workers cannot import
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        # the result.json logger named, not left to Ray's defaults (which an environment variable turns off)
        tuner = tune.Tuner(tune.with_resources(killing_trial, {"cpu": 0.01}), param_space=config.to_dict(),
                           run_config=tune.RunConfig(name="faults", storage_path=str(tmp_path), verbose=0,
                                                     callbacks=[JsonLoggerCallback()]))
        results = tuner.fit()
    finally:
        ray.shutdown()
    assert not results.errors, results.errors
    trial_dir = Path(results[0].path)
    assert (trial_dir / "killed_once").exists()  # the worker did die in epoch 2
    lines = result_lines(trial_dir)
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert [line["step"] for line in lines] == [2, 4, 6]
    assert lines[-1]["stop_reason"] == "completed"
