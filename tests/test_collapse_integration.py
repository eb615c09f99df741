"""Collapse is a result: DINO without centering at ema=0 collapses, its ER twin does not.

Same configuration and seed for both: the original DINO objective, with its centering removed and
the teacher equal to the student (ema = 0), sends every sample to one prototype (cluster collapse)
within two epochs and stops as ``collapsed``; DINO-ER, whose objective keeps the entropy term
H(p̄), keeps its assignments spread and completes without a collapse event.
"""

import json

import pytest

from er_tune.config import TrialConfig
from trainers.reporters import LocalReporter
from trainers.trainable import load_trial_data
from trainers.trial import run_trial

pytestmark = pytest.mark.slow


def config(variant: str) -> TrialConfig:
    return TrialConfig(method="dino", variant=variant, ema=0.0, dino_centering=False, image_size=16,
                       train_size=512, eval_size=256, knn_bank_size=256, batch_size=64, projector_dim=32,
                       projector_hidden_dim=64, num_prototypes=16, warmup_epochs=1, epochs=4, seed=0)


def events(trial_dir):
    return [json.loads(line) for line in (trial_dir / "collapse_events.jsonl").read_text().splitlines()]


def test_dino_without_centering_collapses_and_its_er_twin_survives(tmp_path):
    data = load_trial_data(config("original"))
    original_dir, er_dir = tmp_path / "original", tmp_path / "er"
    original = run_trial(config("original"), data, LocalReporter(str(original_dir), config("original").to_dict()))
    er = run_trial(config("er"), data, LocalReporter(str(er_dir), config("er").to_dict()))

    assert original.status == "collapsed"
    assert original.epochs_completed < 4  # stop_on_collapse ended it early
    collapse = [e for e in events(original_dir) if e["severity"] == "collapse"]
    assert collapse and collapse[0]["kind"] == "cluster" and collapse[0]["value"] < collapse[0]["threshold"]
    last = json.loads((original_dir / "result.json").read_text().splitlines()[-1])
    assert last["collapsed"] is True and last["stop_reason"] == "collapsed"
    assert 0.0 <= last["linear_top1"] <= 1.0  # a trial stopped by collapse is still linear-probed

    assert er.status == "completed" and er.epochs_completed == 4
    assert not [e for e in events(er_dir) if e["severity"] == "collapse"]
    assert er.final_metrics["assign_entropy"] > 0.5


def test_without_stop_on_collapse_the_trial_records_and_keeps_training(tmp_path):
    cfg = config("original").replace(collapse=config("original").collapse.__class__(stop_on_collapse=False))
    summary = run_trial(cfg, load_trial_data(cfg), LocalReporter(str(tmp_path), cfg.to_dict()))
    lines = [json.loads(line) for line in (tmp_path / "result.json").read_text().splitlines()]
    assert len(lines) == 4 and lines[-1]["stop_reason"] == "completed"
    assert lines[-1]["collapsed"] is True  # the event is recorded, training went on
    assert any(e["severity"] == "collapse" for e in events(tmp_path))
    assert summary.status == "collapsed"
