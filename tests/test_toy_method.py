"""A method is one objective class: a sixth one, defined in this file alone, trains through the
unchanged trainer (the checklist is in docs/ARCHITECTURE.md, "Adding a method").

The toy has an EMA teacher and prototypes (as DINO), BYOL's asymmetric views, and a recipe of its
own: it renormalises the prototypes before every step and counts its epochs and steps in buffers.
It is registered only where the checklist says (``OBJECTIVES``, and ``METHODS`` / ``OBJECTIVE_KEYS``
in the torch-free config): its support and teacher are read from the class alone.
"""

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import er_core.config as config_module
from er_core.config import METHODS
from er_core.data.augment import VIEW_PRESETS
from er_core.models import build_network, ema_momentum
from er_core.objectives import OBJECTIVES, Objective, ObjectiveInputs, ObjectiveOutput, functional
from tests.test_trial import read_results, tiny
from trainers.reporters import LocalReporter
from trainers.state import build_state
from trainers.steps import TrainingStep
from trainers.trial_data import load_trial_data
from trainers.trial import DISCRETE_METRICS, run_trial

ROOT = Path(__file__).resolve().parents[1]


class ToyTeacherPrototypes(Objective):
    """Each view's student assignment predicts the teacher's sharpened assignment of the other view."""

    method, variant, support = "toy", "original", "discrete"
    needs_teacher = needs_prototypes = True
    views = "asymmetric"
    SHARPEN = 0.05

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature
        self.register_buffer("epochs_started", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.inputs_seen: list[str] = []
        self.prototype_norms: list[torch.Tensor] = []

    @classmethod
    def from_config(cls, config):
        return cls(config.temperature)

    def on_epoch_start(self, trainer, epoch):
        assert epoch == int(self.epochs_started) + 1
        self.epochs_started += 1

    def before_forward(self, trainer):
        trainer.net.prototypes.normalize_()
        self.prototype_norms.append(trainer.net.prototypes.weight.detach().norm(dim=1))

    def after_backward(self, trainer, outputs, batch_indices):
        assert trainer.net.prototypes.weight.grad is not None
        self.steps_done += 1

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        s1, s2, ts1, ts2 = inputs.require("s1", "s2", "ts1", "ts2")
        self.inputs_seen = inputs.names()
        q1, q2 = F.softmax(ts1 / self.SHARPEN, dim=1), F.softmax(ts2 / self.SHARPEN, dim=1)
        return ObjectiveOutput(loss=0.5 * (functional.soft_cross_entropy(q2, s1, self.temperature)
                                           + functional.soft_cross_entropy(q1, s2, self.temperature)))


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(OBJECTIVES, "toy", ToyTeacherPrototypes)
    monkeypatch.setattr(config_module, "METHODS", METHODS + ("toy",))
    monkeypatch.setitem(config_module.OBJECTIVE_KEYS, "toy", ("ema", "ema_schedule", "num_prototypes", "temperature"))
    return ToyTeacherPrototypes


@pytest.fixture(scope="module")
def tiny_data():
    return load_trial_data(tiny("simclr"))


class NullWriter:
    def step_scalars(self, step, **values):
        pass


def test_a_sixth_method_defined_here_trains_for_an_epoch(toy, tiny_data, tmp_path):
    config = tiny("toy", epochs=1, ema=0.5, ema_schedule="constant", num_prototypes=6)
    state = build_state(config, tiny_data)
    objective, net = state.objective, state.net
    assert isinstance(objective, toy)
    assert net.predictor is None and net.prototypes.weight.shape == (6, config.projector_dim)
    assert net.prototypes.weight.requires_grad and state.teacher is not None
    assert state.teacher.network.prototypes is not None and state.monitor.discrete
    step = TrainingStep(state, tiny_data)
    assert (step.augment.view1, step.augment.view2) == VIEW_PRESETS["asymmetric"]
    teacher_before = state.teacher.network.prototypes.weight.clone()
    student_before = net.prototypes.weight.detach().clone()

    outcome = step.run_epoch(1, NullWriter())

    assert not outcome.diverged and math.isfinite(outcome.mean_loss) and outcome.mean_loss > 0
    assert outcome.ema == ema_momentum(0.5, 3, 3, "constant") == 0.5
    assert state.step == step.steps_per_epoch == 96 // 32
    assert (int(objective.epochs_started), int(objective.steps_done)) == (1, 3)
    assert sorted(objective.inputs_seen) == ["s1", "s2", "t1", "t2", "ts1", "ts2", "z1", "z2"]
    assert len(objective.prototype_norms) == 3
    assert all(torch.allclose(norms, torch.ones(6), atol=1e-6) for norms in objective.prototype_norms)
    assert not torch.allclose(net.prototypes.weight, student_before)  # trained
    teacher_after = state.teacher.network.prototypes.weight
    assert not torch.allclose(teacher_after, teacher_before)  # EMA-updated after every step ...
    assert not torch.allclose(teacher_after, net.prototypes.weight)  # ... with coefficient 0.5, not 0
    saved = state.state_dict()["objective"]
    assert int(saved["steps_done"]) == 3  # its recipe state is in the trial checkpoint

    summary = run_trial(config, tiny_data, LocalReporter(str(tmp_path), config.to_dict()))
    (line,) = read_results(tmp_path)
    assert summary.epochs_completed == 1 and line["stop_reason"] in ("completed", "collapsed")
    for key in DISCRETE_METRICS:  # the diagnostics follow the declared support, not the config's sets
        # normalised entropies lie in [0, 1]; exp H(p̄) counts prototypes in use, between 1 and K = 6
        low, high = (1.0, 6.0) if key == "effective_prototypes" else (0.0, 1.0)
        assert low - 1e-6 <= line[key] <= high + 1e-6, key
    assert 0.0 <= line["knn_top1"] <= 1.0 and math.isfinite(line["er_entropy"])


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_objective_gets_the_network_and_teacher_it_declares(name, tiny_data):
    cls = OBJECTIVES[name]
    method, _, er = name.partition("_")
    config = tiny(method, "er" if er else "original")
    net = build_network(config)
    assert (net.predictor is not None) == cls.needs_predictor
    assert (net.prototypes is not None) == cls.needs_prototypes
    if cls.needs_prototypes:
        assert net.prototypes.weight.requires_grad == cls.trainable_prototypes
    assert cls.views in VIEW_PRESETS
    assert cls.support in ("sphere", "discrete") and (cls.support == "discrete") == cls.needs_prototypes
    assert (build_state(config, tiny_data).teacher is not None) == cls.needs_teacher


def test_nothing_outside_the_objectives_branches_on_a_method_name():
    names = "|".join(METHODS)
    # a quoted method or objective name, a comparison of .method, or the config's name-derived sets
    pattern = re.compile(rf"""["']({names})(_er)?["']|\.method\s*(==|!=|\bin\b)|\bmethod\s+(==|!=|in)\s"""
                         r"|\.is_discrete\b|\.uses_ema\b")
    files = [*sorted((ROOT / "trainers").glob("*.py")), *sorted((ROOT / "er_core" / "models").glob("*.py")),
             ROOT / "er_core" / "data" / "augment.py"]
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in files
             for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert len(files) > 10 and found == []
