"""A trial's process is reused for the next trial (``reuse_actors=True``): nothing carries over.

The study service hands a finished trial's actor process the next trial's configuration, so a
trial must train exactly the same whether it is the first of its process or follows others; and
``tune_trial`` records when its slot was free and when its first step began (``startup.json``).
"""

import json
import os

import pytest

import er_tune.trainable as trainable
from er_core.config import TrialConfig
from trainers.reporters import LocalReporter
from er_tune.trainable import STARTUP_FILE, load_trial_data, tune_trial
from trainers.trial import run_trial

TIMING_KEYS = {"images_per_s", "time_total_s", "timestamp", "pid", "hostname", "trial_id", "done",
               "training_iteration"}


def tiny(method: str, **overrides) -> TrialConfig:
    values = dict(method=method, image_size=16, train_size=96, eval_size=48, batch_size=32, epochs=2,
                  warmup_epochs=1, knn_bank_size=64, knn_k=5, projector_dim=16, projector_hidden_dim=32,
                  num_prototypes=8, lr=0.1)
    values.update(overrides)
    return TrialConfig(**values)


def metrics(trial_dir) -> list[dict]:
    with open(os.path.join(trial_dir, "result.json")) as handle:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in handle]


@pytest.fixture(scope="module")
def data():
    return load_trial_data(tiny("byol"))


def test_a_trial_after_other_trials_in_the_same_process_trains_identically(tmp_path, data):
    byol = tiny("byol", ema=0.9)
    run_trial(byol, data, LocalReporter(str(tmp_path / "first"), byol.to_dict()))
    other = tiny("dino", variant="er", seed=7, lr=0.3)  # different objective, RNG stream, modules
    run_trial(other, data, LocalReporter(str(tmp_path / "other"), other.to_dict()))
    run_trial(byol, data, LocalReporter(str(tmp_path / "again"), byol.to_dict()))
    first, again = metrics(tmp_path / "first"), metrics(tmp_path / "again")
    assert len(first) == 2
    assert first == again


class KilledAfterFirstEpoch(LocalReporter):
    """The trial's process 'dies' right after its first epoch is reported (and checkpointed)."""

    def report(self, metrics, checkpoint_dir=None):
        super().report(metrics, checkpoint_dir)
        if metrics["epoch"] == 1:
            raise KeyboardInterrupt("simulated kill")


def test_startup_file_is_written_only_when_asked_and_records_the_first_epoch(tmp_path, data):
    config = tiny("simclr", epochs=2)
    run_trial(config.replace(epochs=1), data, LocalReporter(str(tmp_path / "plain"), config.to_dict()))
    assert not (tmp_path / "plain" / STARTUP_FILE).exists()

    reporter_dir = tmp_path / "timed"
    with pytest.raises(KeyboardInterrupt):
        run_trial(config, data, KilledAfterFirstEpoch(str(reporter_dir), config.to_dict()),
                  startup={"slot_free": 100.0, "entered": 101.0, "reused": False})
    startup = json.loads((reporter_dir / STARTUP_FILE).read_text())
    assert startup["slot_free"] == 100.0 and startup["entered"] == 101.0 and startup["reused"] is False
    assert startup["first_epoch"] == 1 and startup["first_step"] > 101.0
    # the same trial resumed from the checkpoint of epoch 1 starts at epoch 2
    run_trial(config, data, LocalReporter(str(reporter_dir), config.to_dict()),
              startup={"slot_free": 200.0, "entered": 201.0, "reused": True})
    assert json.loads((reporter_dir / STARTUP_FILE).read_text())["first_epoch"] == 2


def test_tune_trial_counts_a_reused_process_from_the_end_of_its_previous_trial(tmp_path, data, monkeypatch):
    directories = iter([tmp_path / "a", tmp_path / "b"])

    class Reporter(LocalReporter):  # stands in for TuneReporter, which needs a Tune session
        def __init__(self):
            super().__init__(str(next(directories)), {})

    monkeypatch.setattr(trainable, "TuneReporter", Reporter)
    monkeypatch.setattr(trainable, "_previous_trial_end", None)
    config = tiny("simclr", epochs=1)
    datasets = {trainable.dataset_key(config): data}
    tune_trial(config.to_dict(), datasets=datasets)
    first_end = trainable._previous_trial_end
    tune_trial(config.to_dict(), datasets=datasets)
    first = json.loads((tmp_path / "a" / STARTUP_FILE).read_text())
    second = json.loads((tmp_path / "b" / STARTUP_FILE).read_text())
    assert first["reused"] is False and first["slot_free"] == pytest.approx(trainable.process_start_time())
    assert second["reused"] is True and second["slot_free"] == first_end
    assert first["first_step"] <= first_end <= second["entered"] <= second["first_step"]
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
