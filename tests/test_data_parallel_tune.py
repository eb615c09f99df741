"""Data-parallel trials on Ray: a study of two 2-worker trials end to end, ``er-tune train
--workers 2``, and faults.

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


def test_er_tune_train_with_workers_runs_one_data_parallel_trial_into_out(tmp_path):
    out = tmp_path / "trial"
    settings = ["image_size=16", "train_size=32", "eval_size=16", "batch_size=16", "backbone=convnet",
                "knn_bank_size=16", "knn_k=5"]
    run = er_tune("train", "--method", "simclr", "--variant", "er", "--epochs", "2", "--workers", "2",
                  *[arg for setting in settings for arg in ("--set", setting)], "--out", str(out))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert json.loads((out / "params.json").read_text())["world_size"] == 2
    lines = result_lines(out)
    assert [line["epoch"] for line in lines] == [1, 2]
    assert all(line["world_size"] == 2 for line in lines)
    assert "on 2 workers" in run.stdout
    printed = (run.stdout + run.stderr).splitlines()
    for epoch in (1, 2):  # worker 0 prints each epoch once (Train's patched print showed it twice)
        assert sum(f"epoch {epoch:>3} | loss" in line for line in printed) == 1, run.stdout[-3000:]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(out))


def faulty_worker(loop_config):
    """:func:`er_tune.data_parallel.train_worker` that, in the trial of seed 0, fails twice, once each
    way (marker files): worker 1 dies (SIGKILL) in epoch 2, which Ray Train survives by restarting its
    workers from its epoch-1 checkpoint; worker 0 raises in epoch 3, which exhausts the Train run's
    one restart, so the Tune trial fails and Tune restarts it from its own epoch-2 checkpoint. Worker
    0 writes, at each start, where it resumes from (``starts``: none, train or tune). Every worker
    writes its pid (``pid_rank<r>``); the trial of seed 1 fails nowhere (the scheduler stops it)."""
    import ray.train

    from er_tune import data_parallel

    rank = ray.train.get_context().get_world_rank()
    trial_dir = loop_config["trial_dir"]
    with open(os.path.join(trial_dir, f"pid_rank{rank}"), "w") as handle:
        handle.write(str(os.getpid()))
    if loop_config["config"]["seed"] != 0:
        return data_parallel.train_worker(loop_config)
    if rank == 0:
        source = "train" if ray.train.get_checkpoint() else "tune" if loop_config.get("resume") else "none"
        with open(os.path.join(trial_dir, "starts"), "a") as handle:
            handle.write(source + "\n")
    report = data_parallel.TrainWorkerReporter.report

    def report_or_fail(self, metrics, checkpoint_dir=None):
        killed, raised = os.path.join(trial_dir, "killed_once"), os.path.join(trial_dir, "raised_once")
        if rank == 1 and metrics["epoch"] == 2 and not os.path.exists(killed):
            wait_for_tune_checkpoint(trial_dir, epoch=1)
            open(killed, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        if rank == 0 and metrics["epoch"] == 3 and not os.path.exists(raised):
            wait_for_tune_checkpoint(trial_dir, epoch=2)
            open(raised, "w").close()
            raise RuntimeError("worker 0 fails in epoch 3, once")
        report(self, metrics, checkpoint_dir)

    data_parallel.TrainWorkerReporter.report = report_or_fail
    data_parallel.train_worker(loop_config)


def wait_for_tune_checkpoint(trial_dir: str, epoch: int, timeout: float = 300) -> None:
    """Wait until Tune holds the checkpoint of ``epoch``. Ray Train registers an epoch's checkpoint
    once its controller has collected every worker's report of it, then hands it to Tune; a worker
    killed before that (a controller slowed by a loaded machine) costs that epoch too, and the
    test's order of starts would depend on the machine's speed."""
    import time

    path = os.path.join(trial_dir, f"checkpoint_{epoch - 1:06d}")
    deadline = time.monotonic() + timeout
    while not os.path.isdir(path) and time.monotonic() < deadline:
        time.sleep(0.2)


def faulty_trial(config):
    from er_tune.data_parallel import data_parallel_trial

    data_parallel_trial(config, cpu=0.49, gpu=0.0, max_failures=1, train_fn=faulty_worker)


def stop_seed_1_after_epoch_1(trial_id, result):
    return result["config"]["seed"] == 1 and result["epoch"] >= 1


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_failed_worker_or_trial_costs_the_epoch_in_progress_and_a_stopped_trial_stops_every_rank(tmp_path):
    """Two trials in one Tuner: seed 0 fails twice (see :func:`faulty_worker`), seed 1 is stopped
    by Tune (a stopper, as ASHA stops a trial) after epoch 1 of 3."""
    import time

    import ray
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from er_core.config import TrialConfig
    from er_tune.data_parallel import ReleaseTrainPlacementGroups

    config = TrialConfig(method="simclr", variant="er", image_size=16, train_size=32, eval_size=16, batch_size=16,
                         epochs=3, warmup_epochs=1, backbone="convnet", projector_dim=16, projector_hidden_dim=32,
                         knn_bank_size=16, knn_k=5, world_size=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # the trial and worker functions live in this test module, which Ray's workers cannot import
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        # the result.json logger named, not left to Ray's defaults (which an environment variable turns off)
        tuner = tune.Tuner(tune.with_resources(faulty_trial, {"cpu": 0.01}),
                           param_space={**config.to_dict(), "seed": tune.grid_search([0, 1])},
                           run_config=tune.RunConfig(name="faults", storage_path=str(tmp_path), verbose=0,
                                                     stop=stop_seed_1_after_epoch_1,
                                                     callbacks=[JsonLoggerCallback(), ReleaseTrainPlacementGroups()],
                                                     failure_config=tune.FailureConfig(max_failures=1)))
        results = tuner.fit()
        # every placement group released (the stopped trial's Train controller was killed with its
        # Tune actor, so Ray Train could not remove its workers' group itself on this embedded Ray)
        deadline = time.monotonic() + 30
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        cpus_free_after_fit = ray.available_resources().get("CPU", 0)
        trial_dirs = {result.config["seed"]: Path(result.path) for result in results}
        stopped = trial_dirs[1]
        pids = [int((stopped / f"pid_rank{rank}").read_text()) for rank in (0, 1)]
        deadline = time.monotonic() + 60
        while any(map(process_alive, pids)) and time.monotonic() < deadline:
            time.sleep(0.5)
        alive_after_stop = [pid for pid in pids if process_alive(pid)]
    finally:
        ray.shutdown()
    assert not results.errors, results.errors
    assert cpus_free_after_fit == 2
    # the stopped trial: both of its workers ended, and nothing was reported after the stop
    assert alive_after_stop == []
    assert [line["epoch"] for line in result_lines(stopped)] == [1]
    # the failing trial
    trial_dir = trial_dirs[0]
    assert (trial_dir / "killed_once").exists() and (trial_dir / "raised_once").exists()  # both faults happened
    # the Train run restarted its workers from its checkpoint, then the Tune trial restarted from Tune's
    assert (trial_dir / "starts").read_text().split() == ["none", "train", "tune"]
    # Every epoch reported at most once, each line's Tune iteration equal to its epoch (Tune restored
    # its count with its checkpoint), the last one complete. At most: in one CI run the line of epoch
    # 2 was missing ([1, 3]) though Tune had persisted its checkpoint and resumed from it (the Train
    # run failed right after that report; Ray Tune then did not log the result), so the line of an
    # epoch whose checkpoint Tune holds is not asserted.
    lines = result_lines(trial_dir)
    epochs = [line["epoch"] for line in lines]
    assert epochs == sorted(set(epochs)) and epochs[0] == 1 and epochs[-1] == 3
    assert [line["step"] for line in lines] == [2 * epoch for epoch in epochs]
    assert [line["training_iteration"] for line in lines] == epochs
    assert lines[-1]["stop_reason"] == "completed"
