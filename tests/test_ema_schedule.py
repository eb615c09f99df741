"""``ema_schedule``: ``constant`` keeps the EMA coefficient the condition is labelled with.

With BYOL's ``cosine`` schedule a base of 0 drifts to 0.98 by 90% of training, so "EMA 0" did not
mean "teacher = current student". These tests pin the two schedules, check that ``constant`` with
base 0 really keeps the teacher equal to the student after every optimiser step of a trial, and that
the setting is a validated, recorded, grid-able and searchable TrialConfig field.
"""

import copy
import math
from pathlib import Path

import pytest
import yaml

from er_core.config import ConfigError, TrialConfig
from er_core.models import ema_momentum
from search_spaces import condition_groups, load_study, parse_study, trial_config
from trainers.state import build_state
from trainers.steps import TrainingStep
from trainers.tensorboard import HPARAM_KEYS
from trainers.trial_data import load_trial_data

STUDIES = Path(__file__).resolve().parents[1] / "search_spaces" / "studies"


def test_constant_schedule_keeps_the_base_and_cosine_is_byols():
    for base in (0.0, 0.5, 0.99):
        assert [ema_momentum(base, s, 100, "constant") for s in range(0, 101, 10)] == [base] * 11
    # cosine from base 0: the values the issue quotes at 0, 25, 50, 75, 90 % of training
    cosine = [ema_momentum(0.0, s, 100, "cosine") for s in (0, 25, 50, 75, 90)]
    assert cosine == pytest.approx([0.0, 0.1464, 0.5, 0.8536, 0.9755], abs=1e-4)
    assert ema_momentum(0.0, 50, 100) == ema_momentum(0.0, 50, 100, "cosine")  # default unchanged
    with pytest.raises(ValueError, match="allowed: cosine, constant"):
        ema_momentum(0.5, 0, 10, "linear")


def test_config_field_default_validation_and_round_trip():
    assert TrialConfig().ema_schedule == "cosine"
    config = TrialConfig().with_overrides(["ema_schedule=constant"])
    assert config.ema_schedule == "constant"
    assert TrialConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="ema_schedule='linear'.*allowed: cosine, constant"):
        TrialConfig(ema_schedule="linear")
    assert "ema_schedule" in HPARAM_KEYS  # TensorBoard's HParams dashboard shows it


class _Writer:
    def step_scalars(self, step, **values):
        pass


def _teacher_student_distances(schedule: str) -> list[float]:
    """L2 distance between teacher and student parameters after each optimiser step of one epoch."""
    config = TrialConfig(method="byol", ema=0.0, ema_schedule=schedule, image_size=16, train_size=128,
                         eval_size=32, batch_size=32, epochs=2, warmup_epochs=0, lr=0.5,
                         projector_dim=16, projector_hidden_dim=32, knn_bank_size=32)
    data = load_trial_data(config)
    state = build_state(config, data)
    step_fn = TrainingStep(state, data)
    distances = []
    update = state.teacher.update

    def update_and_measure(student, momentum):
        update(student, momentum)
        pairs = [(state.teacher.network.backbone, student.backbone),
                 (state.teacher.network.projector, student.projector)]
        squared = sum(float((t - s.detach()).pow(2).sum()) for tp, sp in pairs
                      for t, s in zip(tp.parameters(), sp.parameters()))
        distances.append(math.sqrt(squared))

    state.teacher.update = update_and_measure
    for epoch in (1, 2):
        step_fn.run_epoch(epoch, _Writer())
    return distances


def test_ema_zero_constant_teacher_equals_student_after_every_step():
    constant = _teacher_student_distances("constant")
    assert len(constant) == 2 * (128 // 32)
    assert constant == [0.0] * len(constant)
    cosine = _teacher_student_distances("cosine")  # the old behaviour: the teacher lags behind
    assert cosine[0] == 0.0 and all(d > 0.0 for d in cosine[1:])


def test_studies_grid_and_search_the_schedule():
    # the EMA reference study (BYOL and DINO, EMA grid) on generated data, so no root is needed
    document = yaml.safe_load((STUDIES / "fmnist_ema.yaml").read_text())
    document["data"] = {"dataset": "shapes", "image_size": 16, "train_size": 256, "eval_size": 64}
    grid = copy.deepcopy(document)
    grid["grid"] = {"ema": [0.0], "ema_schedule": ["constant", "cosine"]}
    study = parse_study(grid, path="grid.yaml")
    names = [g.name for g in condition_groups(study)]
    assert "byol/original/ema=0.0,ema_schedule=constant" in names and len(names) == 8
    config = trial_config(study, condition_groups(study)[0], phase="search", seed=0,
                          hparams={"lr": 0.2})
    assert config["ema_schedule"] == "constant" and "ema_schedule" in config["grid_axes"]
    assert TrialConfig.from_dict(config).ema_schedule == "constant"

    searched = copy.deepcopy(document)
    searched["tune"]["ema_schedule"] = {"choice": ["constant", "cosine"]}
    study = parse_study(searched, path="search.yaml")
    assert any(d.name == "ema_schedule" and d.kind == "choice" for d in study.tune)

    bad = copy.deepcopy(document)
    bad["grid"] = {"ema": [0.0], "ema_schedule": ["linear"]}
    with pytest.raises(ValueError, match="ema_schedule.*allowed: cosine, constant"):
        parse_study(bad, path="bad.yaml")
    assert load_study(str(STUDIES / "demo.yaml"))  # shipped studies still load
    assert parse_study(document, path="fmnist_ema.yaml").grid == (("ema", (0.0, 0.9)),)
