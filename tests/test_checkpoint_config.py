"""er-tune's Ray checkpoint settings (:func:`er_tune.launch.checkpoint_config`) keep resume exact.

A trial reports 3 epochs with a checkpoint each and raises once before epoch 3; Tune retries it
from its latest checkpoint. Its epochs and its iteration count (grouped ASHA's clock) must go on
from the checkpoint although the kept checkpoint entries store no metrics
(``TUNE_ONLY_STORE_CHECKPOINT_SCORE_ATTRIBUTE``, set by :func:`er_tune.launch._ray_environment`).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from er_tune.launch import CHECKPOINTS_KEPT, _ray_environment, checkpoint_config


def failing_once(config):
    from ray import tune

    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            start = json.loads(Path(folder, "state.json").read_text())["epoch"]
    marker = Path(config["marker"])
    for epoch in range(start + 1, 4):
        if epoch == 3 and not marker.exists():
            marker.write_text("failed once")
            raise RuntimeError("planted failure before epoch 3")
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "state.json").write_text(json.dumps({"epoch": epoch}))
            tune.report({"epoch": epoch, "score": float(epoch)}, checkpoint=tune.Checkpoint.from_directory(folder))


def test_a_retried_trial_goes_on_from_its_checkpoint_with_its_iteration_count(tmp_path, monkeypatch):
    import ray
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    monkeypatch.delenv("TUNE_ONLY_STORE_CHECKPOINT_SCORE_ATTRIBUTE", raising=False)
    _ray_environment()
    assert os.environ["TUNE_ONLY_STORE_CHECKPOINT_SCORE_ATTRIBUTE"] == "1"
    config = checkpoint_config()
    assert config.num_to_keep == CHECKPOINTS_KEPT
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        results = tune.Tuner(failing_once, param_space={"marker": str(tmp_path / "marker")},
                             run_config=tune.RunConfig(name="retry", storage_path=str(tmp_path), verbose=0,
                                                       checkpoint_config=config, callbacks=[JsonLoggerCallback()],
                                                       failure_config=tune.FailureConfig(max_failures=1))).fit()
    finally:
        ray.shutdown()
    assert (tmp_path / "marker").exists() and not results.errors
    lines = [json.loads(line) for line in Path(results[0].path, "result.json").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert [line["training_iteration"] for line in lines] == [1, 2, 3]
    assert [line["iterations_since_restore"] for line in lines] == [1, 2, 1]  # epoch 3 ran after the retry
