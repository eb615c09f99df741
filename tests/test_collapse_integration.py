"""Collapse is a result: DINO without centering at ema=0 collapses, its ER twin does not; and no
detector fires on an untrained network of any backbone (the detectors are calibrated at init).

Same configuration and seed for both: the original DINO objective, with its centering removed and
the teacher equal to the student (ema = 0), sends every sample to one prototype (cluster collapse)
within two epochs and stops as ``collapsed``; DINO-ER, whose objective keeps the entropy term
H(p̄), keeps its assignments spread and completes without a collapse event.
"""

import json

import pytest

from er_core.collapse import CollapseMonitor
from er_core.config import CollapseConfig, TrialConfig
from er_core.models import BACKBONES, build_network
from trainers.diagnostics import Diagnostics
from trainers.reporters import LocalReporter
from trainers.trial_data import load_trial_data
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


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_no_detector_fires_on_an_untrained_network_of_any_backbone(backbone):
    """Every registered backbone, untrained (small inputs: a calibration test, not a benchmark)."""
    import torch

    cfg = TrialConfig(method="dino", backbone=backbone, image_size=16, train_size=64, eval_size=32,
                      knn_bank_size=32, knn_k=5, batch_size=32, projector_dim=32, projector_hidden_dim=64,
                      num_prototypes=16, collapse=CollapseConfig(std_ratio_patience=1, assignment_patience=1))
    torch.manual_seed(0)
    net = build_network(cfg)
    untrained = Diagnostics(cfg, load_trial_data(cfg), torch.device("cpu"))(net)
    monitor = CollapseMonitor(cfg.collapse, discrete=True, num_classes=10)
    monitor.calibrate(untrained)
    for epoch in range(1, cfg.collapse.warmup_epochs + 1):
        assert monitor.observe(untrained, epoch=epoch, step=epoch) == [], (backbone, untrained)
    # the same network with constant projections is still a complete collapse
    events = monitor.observe({**untrained, "std_ratio": 0.0}, epoch=9, step=9)
    assert [e.kind for e in events if e.severity == "collapse"] == ["complete"]


def test_trial_calibrates_on_the_untrained_network_before_the_first_step(tmp_path):
    """A barely trained convnet trial: std ratio ~0.03 < 0.05, which the absolute threshold called a collapse."""
    cfg = TrialConfig(method="simclr", image_size=16, train_size=96, eval_size=48, knn_bank_size=48, knn_k=5,
                      batch_size=32, projector_dim=16, projector_hidden_dim=32, lr=1e-6, epochs=2,
                      warmup_epochs=0, collapse=CollapseConfig(std_ratio_patience=1))
    lines: list[str] = []
    summary = run_trial(cfg, load_trial_data(cfg), LocalReporter(str(tmp_path), cfg.to_dict()), log=lines.append)
    results = [json.loads(line) for line in (tmp_path / "result.json").read_text().splitlines()]
    assert all(r["std_ratio"] < cfg.collapse.std_ratio_threshold for r in results)  # below the absolute bound
    # no detector fires on it; the only grade is the one a network that did not learn should get
    assert summary.status == "completed"
    assert [(e["kind"], e["severity"]) for e in events(tmp_path)] == [("not_learned", "partial")]
    assert lines[0].startswith("  untrained network: std_ratio")


@pytest.mark.parametrize("method", ["simclr", "byol", "dino", "swav", "deepcluster"])
def test_a_network_that_does_not_train_is_graded_not_learned_and_nothing_else(tmp_path, method):
    """lr ~ 0: no objective, original or ER, trips a collapse detector or a partial criterion of a
    fall; its only possible grade is not_learned (it did not learn), never complete."""
    for variant in ("original", "er"):
        cfg = TrialConfig(method=method, variant=variant, image_size=16, train_size=96, eval_size=96,
                          knn_bank_size=96, knn_k=5, batch_size=32, projector_dim=16, projector_hidden_dim=32,
                          num_prototypes=8, lr=1e-6, epochs=3, warmup_epochs=0, ema_schedule="constant",
                          collapse=CollapseConfig(stop_on_collapse=False, warmup_epochs=0))
        trial_dir = tmp_path / variant
        summary = run_trial(cfg, load_trial_data(cfg), LocalReporter(str(trial_dir), cfg.to_dict()))
        assert summary.epochs_completed == 3
        graded = [e["kind"] for e in events(trial_dir) if e["severity"] in ("partial", "collapse")]
        assert set(graded) <= {"not_learned"}, (variant, summary.events)
        assert summary.grade == ("partial" if graded else "none"), variant
