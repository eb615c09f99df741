"""One trial end to end on tiny generated data: metrics, files, divergence, exact resume."""

import json
import math
import os

import pytest
import torch

from er_core.config import TrialConfig
from er_core.objectives import OBJECTIVES
from er_core.rules import GRADES
from trainers.reporters import LocalReporter
from trainers.trial_data import load_trial_data
from trainers.trial import DISCRETE_METRICS, EPOCH_METRICS, FINAL_METRICS, GRADE_METRICS, run_trial

TIMING_KEYS = {"images_per_s", "time_total_s", "timestamp", "pid", "hostname", "trial_id", "done",
               "training_iteration"}


def tiny(method: str, variant: str = "original", **overrides) -> TrialConfig:
    values = dict(method=method, variant=variant, image_size=16, train_size=96, eval_size=48,
                  batch_size=32, epochs=3, warmup_epochs=1, knn_bank_size=64, knn_k=5,
                  projector_dim=16, projector_hidden_dim=32, num_prototypes=8, lr=0.1,
                  log_every_n_steps=1)
    values.update(overrides)
    return TrialConfig(**values)


def read_results(trial_dir):
    with open(os.path.join(trial_dir, "result.json")) as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def tiny_data():
    return load_trial_data(tiny("simclr"))


@pytest.mark.parametrize("method", ["simclr", "byol", "dino", "swav", "deepcluster"])
@pytest.mark.parametrize("variant", ["original", "er"])
def test_every_objective_reports_finite_metrics_each_epoch(tmp_path, tiny_data, method, variant):
    config = tiny(method, variant, epochs=2)
    summary = run_trial(config, tiny_data, LocalReporter(str(tmp_path), config.to_dict()))
    lines = read_results(tmp_path)
    assert [line["epoch"] for line in lines] == list(range(1, len(lines) + 1))
    discrete = OBJECTIVES[config.objective].support == "discrete"
    expected = set(EPOCH_METRICS) | set(GRADE_METRICS) | (set(DISCRETE_METRICS) if discrete else set())
    for line in lines:
        assert expected <= set(line)
        assert line["collapse_grade"] in GRADES
        if not discrete:
            assert not set(DISCRETE_METRICS) & set(line)
        for key in expected - {"stop_reason", "collapsed", "collapse_grade"}:
            assert math.isfinite(line[key]), (key, line[key])
        assert 0.0 <= line["knn_top1"] <= 1.0
        assert line["er_bound"] == pytest.approx(line["er_entropy"] - line["er_reconstruction"])
    assert lines[-1]["stop_reason"] in ("completed", "collapsed")
    assert summary.status == lines[-1]["stop_reason"]
    assert lines[-1]["step"] == len(lines) * (96 // 32)
    # the final evaluation: generated data has no split beyond the eval set, so it uses those queries
    assert set(FINAL_METRICS) <= set(lines[-1]) and not any(set(FINAL_METRICS) & set(line) for line in lines[:-1])
    assert lines[-1]["final_queries"] == tiny_data.eval_labels.shape[0]
    assert lines[-1]["final_knn_top1"] == pytest.approx(lines[-1]["knn_top1"])  # same bank, same queries
    assert 0.0 <= lines[-1]["learned_knn_p"] <= 1.0 and 0.0 <= lines[-1]["learned_linear_p"] <= 1.0


class CrashAfter(LocalReporter):
    """A reporter whose process 'dies' right after the given number of reports."""

    def __init__(self, *args, crash_after: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.crash_after = crash_after

    def report(self, metrics, checkpoint_dir=None):
        super().report(metrics, checkpoint_dir)
        if metrics["epoch"] == self.crash_after:
            raise KeyboardInterrupt("simulated kill")


@pytest.mark.parametrize("method", ["byol", "dino", "deepcluster", "simclr", "swav"])
def test_resumed_trial_reproduces_uninterrupted_metrics(tmp_path, tiny_data, method):
    # swav: the queue (2 batches) starts at once and is full and in use when the trial is killed
    swav_queue = dict(queue_length=64, queue_start_epoch=0) if method == "swav" else {}
    config = tiny(method, "er" if method == "simclr" else "original", ema=0.9, **swav_queue)
    straight = tmp_path / "straight"
    run_trial(config, tiny_data, LocalReporter(str(straight), config.to_dict()))
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_trial(config, tiny_data, CrashAfter(str(resumed), config.to_dict(), crash_after=1))
    assert len(read_results(resumed)) == 1
    torch.manual_seed(12345)  # a restarted process has a different global RNG state
    run_trial(config, tiny_data, LocalReporter(str(resumed), config.to_dict()))
    a, b = read_results(straight), read_results(resumed)
    assert len(a) == len(b) == config.epochs
    for line_a, line_b in zip(a, b):
        for key in set(line_a) - TIMING_KEYS:
            if isinstance(line_a[key], float):
                assert line_b[key] == pytest.approx(line_a[key], rel=1e-5, abs=1e-6), key
            else:
                assert line_b[key] == line_a[key], key


def test_finished_trial_is_not_rerun(tmp_path, tiny_data):
    config = tiny("simclr", epochs=1)
    run_trial(config, tiny_data, LocalReporter(str(tmp_path), config.to_dict()))
    summary = run_trial(config, tiny_data, LocalReporter(str(tmp_path), config.to_dict()))
    assert summary.status == "completed" and len(read_results(tmp_path)) == 1


def test_linear_probe_runs_at_the_end_and_every_n_epochs(tmp_path, tiny_data):
    config = tiny("simclr", epochs=3, linear_probe_every=2)
    summary = run_trial(config, tiny_data, LocalReporter(str(tmp_path), config.to_dict()))
    lines = read_results(tmp_path)
    assert ["linear_top1" in line for line in lines] == [False, True, True]
    assert all(0.0 <= line["linear_top1"] <= 1.0 for line in lines[1:])
    assert summary.final_metrics["linear_top1"] == lines[-1]["linear_top1"]
    assert math.isfinite(summary.final_metrics["linear_top1"])
    # the untrained network's evaluation, measured before the first step, for the report
    with open(os.path.join(tmp_path, "untrained.json")) as handle:
        untrained = json.load(handle)
    assert 0.0 <= untrained["knn_top1"] <= 1.0 and untrained["std_ratio"] > 0


def test_non_finite_loss_ends_trial_as_diverged(tmp_path, tiny_data, monkeypatch):
    config = tiny("simclr", epochs=3)
    from er_core.objectives import build_objective as real_build
    import trainers.state as state_module

    def poisoned(name, cfg):
        objective = real_build(name, cfg)
        forward = objective.forward
        calls = {"n": 0}

        def nan_after_four(inputs):
            calls["n"] += 1
            output = forward(inputs)
            if calls["n"] > 4:
                output.loss = output.loss * float("nan")
            return output

        objective.forward = nan_after_four
        return objective

    monkeypatch.setattr(state_module, "build_objective", poisoned)
    summary = run_trial(config, tiny_data, LocalReporter(str(tmp_path), config.to_dict()))
    lines = read_results(tmp_path)
    assert summary.status == "diverged"
    assert [line["stop_reason"] for line in lines] == ["", "diverged"]
    assert "linear_top1" not in lines[0] and 0.0 <= lines[-1]["linear_top1"] <= 1.0  # probed at the stop
    assert all(math.isfinite(v) for line in lines for v in line.values() if isinstance(v, float))
    with open(tmp_path / "collapse_events.jsonl") as handle:
        events = [json.loads(line) for line in handle]
    assert [(e["kind"], e["severity"], e["epoch"]) for e in events if e["kind"] == "diverged"] == \
        [("diverged", "collapse", 2)]


def test_tensorboard_has_epoch_metrics_step_loss_and_hparams(tmp_path, tiny_data):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny("byol", epochs=2)
    run_trial(config, tiny_data, LocalReporter(str(tmp_path), config.to_dict()))
    accumulator = EventAccumulator(str(tmp_path))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    for key in ("loss", "knn_top1", "er_entropy", "er_reconstruction", "er_bound", "rankme",
                "std_ratio", "lr", "ema", "images_per_s"):
        assert f"epoch/{key}" in tags
    assert [e.step for e in accumulator.Scalars("epoch/knn_top1")] == [1, 2]
    assert len(accumulator.Scalars("train/loss")) == 2 * (96 // 32)
    assert os.path.isdir(tmp_path / "hparams")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CPU path covered above)")
@pytest.mark.parametrize("method", ["byol", "dino"])
def test_cuda_trial_uses_bf16_autocast_and_matches_cpu_contract(tmp_path, tiny_data, method):
    config = tiny(method, "er", epochs=2, device="cuda")
    summary = run_trial(config, tiny_data, LocalReporter(str(tmp_path), config.to_dict()))
    lines = read_results(tmp_path)
    assert summary.status in ("completed", "collapsed") and len(lines) >= 1
    for line in lines:
        assert all(math.isfinite(v) for v in line.values() if isinstance(v, float))
        assert 0.0 <= line["knn_top1"] <= 1.0
