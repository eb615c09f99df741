"""Contract over the OBJECTIVES registry, the modules' compositions, and DINO's centre."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from er_core.config import METHODS, VARIANTS, TrialConfig

DISCRETE_METHODS, EMA_METHODS = ("dino", "swav", "deepcluster"), ("byol", "dino")  # DESIGN.md §2
from er_core.objectives import OBJECTIVES, ObjectiveInputs, build_objective
from er_core.objectives import functional as fn
from er_core.objectives.dino import DINO, Center

B, D, K = 8, 16, 10
VIEW_PAIRS = [("z1", "z2"), ("p1", "p2"), ("t1", "t2"), ("s1", "s2"), ("ts1", "ts2")]


def make_inputs(cls, batch=B, seed=0, dtype=torch.float32, grad=True) -> ObjectiveInputs:
    """What a trainer would pass to ``cls``, built from its class attributes."""
    g = torch.Generator().manual_seed(seed)

    def leaf(dim, trainable=True):
        return torch.randn(batch, dim, generator=g, dtype=torch.float64).to(dtype).requires_grad_(grad and trainable)

    values = {"z1": leaf(D), "z2": leaf(D)}
    if cls.needs_predictor:
        values.update(p1=leaf(D), p2=leaf(D))
    if cls.needs_teacher and cls.support == "sphere":
        values.update(t1=leaf(D, False), t2=leaf(D, False))
    if cls.needs_prototypes:
        values.update(s1=leaf(K), s2=leaf(K))
    if cls.needs_teacher and cls.support == "discrete":
        values.update(ts1=leaf(K, False), ts2=leaf(K, False))
    if cls.needs_targets:
        values["targets"] = torch.randint(0, K, (batch,), generator=g)
    return ObjectiveInputs(**values)


def make(name: str, **overrides):
    config = TrialConfig(num_prototypes=K, **overrides)
    return build_objective(name, config)


def trainable(inputs: ObjectiveInputs) -> list[torch.Tensor]:
    return [getattr(inputs, n) for n in inputs.names() if getattr(inputs, n).requires_grad]


def swap_views(inputs: ObjectiveInputs) -> ObjectiveInputs:
    changes = {}
    for a, b in VIEW_PAIRS:
        changes[a], changes[b] = getattr(inputs, b), getattr(inputs, a)
    return dataclasses.replace(inputs, **changes)


def permute(inputs: ObjectiveInputs, perm: torch.Tensor) -> ObjectiveInputs:
    return dataclasses.replace(inputs, **{n: getattr(inputs, n)[perm] for n in inputs.names()})


NAMES = sorted(OBJECTIVES)


# ---------------------------------------------------------------- registry


def test_registry_keys_and_class_attributes():
    assert set(OBJECTIVES) == {f"{m}{'' if v == 'original' else '_er'}" for m in METHODS for v in VARIANTS}
    for name, cls in OBJECTIVES.items():
        assert name == cls.method + ("_er" if cls.variant == "er" else "")
        assert cls.support == ("discrete" if cls.method in DISCRETE_METHODS else "sphere")
        assert cls.needs_teacher == (cls.method in EMA_METHODS)
        assert cls.needs_predictor == (cls.method == "byol")
        assert cls.needs_prototypes == (cls.method in DISCRETE_METHODS)
        assert cls.needs_targets == (cls.method == "deepcluster")


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="unknown objective 'simclr_ER'.*known: simclr, simclr_er, byol"):
        build_objective("simclr_ER", TrialConfig())


def test_build_objective_reads_config_fields():
    config = TrialConfig(num_prototypes=K, temperature=0.3, student_temperature=0.2, teacher_temperature=0.05,
                         center_momentum=0.5, dino_centering=False, sinkhorn_epsilon=0.1,
                         sinkhorn_iterations=5, kappa=7.0, entropy_weight=0.25)
    simclr = build_objective("simclr", config)
    assert simclr.temperature == 0.3
    assert build_objective("simclr_er", config).kappa == 7.0
    assert build_objective("byol_er", config).entropy_weight == 0.25
    dino = build_objective("dino", config)
    assert (dino.student_temperature, dino.teacher_temperature, dino.center.momentum, dino.centering) == (
        0.2, 0.05, 0.5, False)
    assert dino.center.center.shape == (1, K)
    swav = build_objective("swav", config)
    assert (swav.temperature, swav.epsilon, swav.iterations) == (0.3, 0.1, 5)
    assert build_objective("swav_er", config).sharpen_temperature == 0.05
    assert build_objective("dino_er", config).entropy_weight == 0.25
    assert build_objective("deepcluster_er", config).temperature == 0.3


# ---------------------------------------------------------------- contract over every objective


@pytest.mark.parametrize("name", NAMES)
def test_finite_loss_and_gradients(name):
    objective = make(name)
    inputs = make_inputs(type(objective))
    output = objective(inputs)
    assert output.loss.dim() == 0 and torch.isfinite(output.loss)
    output.loss.backward()
    grads = [t.grad for t in trainable(inputs) if t.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    for teacher in ("t1", "t2", "ts1", "ts2"):
        value = getattr(inputs, teacher)
        assert value is None or value.grad is None


@pytest.mark.parametrize("name", NAMES)
def test_batch_of_one_rejected(name):
    objective = make(name)
    with pytest.raises(ValueError, match="at least 2"):
        objective(make_inputs(type(objective), batch=1))


@pytest.mark.parametrize("name", NAMES)
def test_shape_mismatch_rejected(name):
    objective = make(name)
    inputs = make_inputs(type(objective))
    for field_name in inputs.names():
        value = getattr(inputs, field_name)
        shorter = dataclasses.replace(inputs, **{field_name: value[:-1]})
        with pytest.raises(ValueError):
            objective(shorter)
        if value.dim() == 2 and field_name.endswith("2"):
            narrower = dataclasses.replace(inputs, **{field_name: value[:, :-1]})
            with pytest.raises(ValueError, match="must match|same shape|expects"):
                objective(narrower)


@pytest.mark.parametrize("name", NAMES)
def test_loss_decreases_under_gradient_steps(name):
    objective = make(name).eval()  # eval: DINO's centre stays put, so losses are comparable
    inputs = make_inputs(type(objective), seed=1)
    params = trainable(inputs)
    optimizer = torch.optim.Adam(params, lr=0.05)
    first = objective(inputs).loss.item()
    for _ in range(25):
        optimizer.zero_grad()
        objective(inputs).loss.backward()
        optimizer.step()
    assert objective(inputs).loss.item() < first - 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_symmetric_in_views_and_permutation_invariant(name):
    objective = make(name).eval()
    inputs = make_inputs(type(objective), seed=2, dtype=torch.float64, grad=False)
    base = objective(inputs)
    swapped = objective(swap_views(inputs))
    perm = torch.randperm(B, generator=torch.Generator().manual_seed(0))
    permuted = objective(permute(inputs, perm))
    for other in (swapped, permuted):
        assert float(other.loss) == pytest.approx(float(base.loss), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_float32_agrees_with_float64(name):
    objective = make(name).eval()
    value64 = float(objective(make_inputs(type(objective), seed=3, dtype=torch.float64, grad=False)).loss)
    value32 = float(objective(make_inputs(type(objective), seed=3, dtype=torch.float32, grad=False)).loss)
    assert value32 == pytest.approx(value64, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_er_terms_reported_for_er_variants_only(name):
    objective = make(name, entropy_weight=0.7)
    output = objective(make_inputs(type(objective), seed=4))
    if objective.variant == "original":
        assert output.entropy is None and output.reconstruction is None
        return
    assert not output.entropy.requires_grad and not output.reconstruction.requires_grad
    expected = float(output.reconstruction) - 0.7 * float(output.entropy)
    assert float(output.loss.detach()) == pytest.approx(expected, rel=1e-6)
    terms = objective.terms(make_inputs(type(objective), seed=4))
    assert float(terms.entropy.detach()) == pytest.approx(float(output.entropy))
    if objective.support == "discrete":
        assert 0.0 <= float(output.entropy) <= math.log(K) + 1e-6


# ---------------------------------------------------------------- compositions


def test_simclr_and_byol_modules_compose_functional_losses():
    inputs = make_inputs(OBJECTIVES["byol"], seed=5, grad=False)
    assert float(make("simclr", temperature=0.2)(inputs).loss) == pytest.approx(
        float(fn.info_nce(inputs.z1, inputs.z2, 0.2)))
    expected = 0.5 * (fn.byol_loss(inputs.p1, inputs.t2) + fn.byol_loss(inputs.p2, inputs.t1))
    assert float(make("byol")(inputs).loss) == pytest.approx(float(expected))
    identical = dataclasses.replace(inputs, t1=inputs.p2.clone(), t2=inputs.p1.clone())
    assert float(make("byol")(identical).loss) == pytest.approx(0.0, abs=1e-6)


def test_simclr_er_collapsed_batch_has_low_entropy():
    objective = make("simclr_er", kappa=10.0)
    spread = objective(make_inputs(OBJECTIVES["simclr_er"], batch=64, seed=6, grad=False))
    ones = torch.ones(64, D)
    collapsed = objective(ObjectiveInputs(z1=ones, z2=ones))
    assert float(collapsed.entropy) < float(spread.entropy) - 1.0
    assert float(collapsed.reconstruction) < float(spread.reconstruction)


def reference_dino_step(center, student, teacher, student_temp, teacher_temp, momentum):
    """facebookresearch/dino DINOLoss.forward with two crops and no process group."""
    student_out = (student / student_temp).chunk(2)
    teacher_out = F.softmax((teacher - center) / teacher_temp, dim=-1).detach().chunk(2)
    total, terms = 0, 0
    for iq, q in enumerate(teacher_out):
        for v in range(len(student_out)):
            if v == iq:
                continue
            total += torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
            terms += 1
    batch_center = torch.sum(teacher, dim=0, keepdim=True) / len(teacher)
    return total / terms, center * momentum + batch_center * (1 - momentum)


def test_dino_matches_reference_over_steps_and_updates_centre_only_in_training():
    objective = DINO(K, 0.1, 0.04, center_momentum=0.8).double()
    center = torch.zeros(1, K, dtype=torch.float64)
    for step in range(3):
        inputs = make_inputs(DINO, seed=10 + step, dtype=torch.float64, grad=False)
        expected, center = reference_dino_step(center, torch.cat([inputs.s1, inputs.s2]),
                                               torch.cat([inputs.ts1, inputs.ts2]), 0.1, 0.04, 0.8)
        assert float(objective(inputs).loss) == pytest.approx(float(expected), rel=1e-12)
        assert torch.allclose(objective.center.center, center, atol=1e-14)
    assert "center.center" in objective.state_dict()
    objective.eval()
    before = objective.center.center.clone()
    objective(make_inputs(DINO, seed=20, dtype=torch.float64))
    assert torch.equal(objective.center.center, before)


def test_dino_without_centering_uses_zero_centre_and_never_updates():
    objective = make("dino", dino_centering=False)
    inputs = make_inputs(DINO, seed=21, grad=False)
    zero = torch.zeros(1, K)
    expected = 0.5 * (fn.dino_loss(inputs.s1, inputs.ts2, zero, 0.1, 0.04)
                      + fn.dino_loss(inputs.s2, inputs.ts1, zero, 0.1, 0.04))
    assert float(objective(inputs).loss) == pytest.approx(float(expected))
    assert torch.equal(objective.center.center, zero)
    er = make("dino_er")(inputs)
    assert float(er.reconstruction) == pytest.approx(float(expected))


def test_center_ema_and_validation():
    center = Center(3, momentum=0.5)
    center.update(torch.tensor([[2.0, 0.0, 4.0], [0.0, 2.0, 0.0]]))
    assert torch.allclose(center.center, torch.tensor([[0.5, 0.5, 1.0]]))
    with pytest.raises(ValueError, match="center_momentum must be in"):
        Center(3, momentum=1.5)
    with pytest.raises(ValueError, match="teacher_logits must be"):
        center.update(torch.zeros(2, 4))


def test_deepcluster_needs_integer_targets():
    objective = make("deepcluster")
    inputs = make_inputs(OBJECTIVES["deepcluster"])
    with pytest.raises(ValueError, match="targets"):
        objective(dataclasses.replace(inputs, targets=None))
    with pytest.raises(ValueError, match="integer tensor"):
        objective(dataclasses.replace(inputs, targets=inputs.targets.float()))


@pytest.mark.parametrize("name,kwargs,match", [
    ("simclr", {"temperature": 0.0}, "temperature"),
    ("simclr_er", {"kappa": -1.0}, "kappa"),
])
def test_constructor_validation(name, kwargs, match):
    cls = OBJECTIVES[name]
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)
    with pytest.raises(ValueError, match="entropy_weight"):
        OBJECTIVES["byol_er"](entropy_weight=-1.0)
