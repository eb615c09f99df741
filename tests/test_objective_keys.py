"""The declared map objective -> TrialConfig keys (er_core.config.OBJECTIVE_KEYS) is what the code reads.

Study validation trusts this map to reject searched keys an objective ignores, so it is checked
against behaviour: for every objective, a short training run (4 steps over 2 epochs, SwAV's queue
starting at once) changes when any declared key changes and stays bit-identical when every
undeclared objective-specific key changes at once.
"""

from dataclasses import fields

import pytest
import torch

from er_core.config import COMMON_KEYS, OBJECTIVE_KEYS, TrialConfig
from er_core.objectives import OBJECTIVES
from tests.test_trial import tiny
from trainers.state import build_state
from trainers.steps import TrainingStep
from trainers.trial_data import load_trial_data

SPECIFIC = sorted({key for keys in OBJECTIVE_KEYS.values() for key in keys})
# a second valid value for every objective-specific key (a new key must be added here)
PERTURBED = {"temperature": 0.25, "student_temperature": 0.2, "teacher_temperature": 0.07,
             "center_momentum": 0.5, "dino_centering": False, "sinkhorn_epsilon": 0.1, "sinkhorn_iterations": 6,
             "queue_length": 24, "queue_start_epoch": 1, "freeze_prototypes_epochs": 0, "kappa": 3.0,
             "entropy_weight": 0.5, "ema": 0.5, "ema_schedule": "constant", "num_prototypes": 6}
BASE = dict(image_size=8, train_size=16, batch_size=8, epochs=2, ema=0.9, queue_length=16, queue_start_epoch=0,
            freeze_prototypes_epochs=1)


class LossWriter:
    def __init__(self):
        self.losses = []

    def step_scalars(self, step, **values):
        self.losses.append(values["loss"])


@pytest.fixture(scope="module")
def data():
    return load_trial_data(tiny("simclr", **BASE))


def losses(config, data):
    """Per-step losses of two epochs (log_every_n_steps=1) plus a checksum of the final weights."""
    torch.set_num_threads(1)
    state = build_state(config, data)
    step, writer = TrainingStep(state, data), LossWriter()
    for epoch in (1, 2):
        step.run_epoch(epoch, writer)
    return writer.losses + [float(sum(p.detach().double().sum() for p in state.net.parameters()))]


def test_every_trial_config_field_is_declared_once():
    names = {f.name for f in fields(TrialConfig)}
    assert set(OBJECTIVE_KEYS) == set(OBJECTIVES)
    assert not set(COMMON_KEYS) & set(SPECIFIC)
    assert names == set(COMMON_KEYS) | set(SPECIFIC), names ^ (set(COMMON_KEYS) | set(SPECIFIC))
    assert set(PERTURBED) == set(SPECIFIC)


@pytest.mark.parametrize("objective", list(OBJECTIVE_KEYS))
def test_objective_reads_exactly_its_declared_keys(data, objective):
    method, _, er = objective.partition("_")
    config = tiny(method, "er" if er else "original", **BASE)
    reference = losses(config, data)
    assert len(reference) == 2 * (16 // 8) + 1
    for key in OBJECTIVE_KEYS[objective]:
        assert losses(config.replace(**{key: PERTURBED[key]}), data) != reference, f"{objective} ignores {key}"
    undeclared = {key: PERTURBED[key] for key in SPECIFIC if key not in OBJECTIVE_KEYS[objective]}
    assert losses(config.replace(**undeclared), data) == reference, f"{objective} reads one of {sorted(undeclared)}"
