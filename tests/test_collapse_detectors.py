"""Collapse detectors at their anchors, and the monitor on synthetic metric sequences."""

import json
import math

import pytest
import torch

from er_core.collapse import CollapseMonitor, assignment_entropies, grad_is_finite, is_finite, rankme, std_ratio
from er_core.config import CollapseConfig


def isotropic(n=4096, d=32, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_std_ratio_anchors():
    assert std_ratio(isotropic()) == pytest.approx(1.0, abs=0.02)  # uniform on the sphere: var 1/d per coordinate
    collapsed = torch.ones(64, 16) * torch.randn(1, 16)
    assert std_ratio(collapsed) == pytest.approx(0.0, abs=1e-9)
    # identity rows: each coordinate is 1 once and 0 otherwise -> std = sqrt(1/d (1 - 1/d) d/(d-1)) = 1/sqrt(d)
    d = 16
    assert std_ratio(torch.eye(d)) == pytest.approx(math.sqrt(d) * math.sqrt(1.0 / d), rel=1e-9)


def test_rankme_anchors():
    assert rankme(torch.ones(50, 8)) == pytest.approx(1.0, abs=1e-4)  # rank one
    assert rankme(torch.eye(8)) == pytest.approx(8.0, rel=1e-4)  # equal singular values
    r = rankme(isotropic(2000, 16))
    assert 14.0 < r <= 16.0
    assert math.isnan(rankme(torch.full((4, 4), float("nan"))))


def test_detectors_decrease_as_a_batch_collapses():
    z = isotropic(1024, 16)
    point = torch.randn(1, 16, dtype=torch.float64)
    ratios, ranks = [], []
    for t in (0.0, 0.5, 0.9, 0.99, 1.0):
        mixed = (1 - t) * z + t * point
        ratios.append(std_ratio(mixed))
        ranks.append(rankme(mixed))
    assert ratios == sorted(ratios, reverse=True) and ratios[-1] < 1e-9
    assert ranks == sorted(ranks, reverse=True) and ranks[-1] == pytest.approx(1.0, abs=1e-3)


def test_assignment_entropy_anchors():
    k = 8
    one_prototype = torch.zeros(32, k)
    one_prototype[:, 3] = 1.0
    assert assignment_entropies(one_prototype) == pytest.approx((0.0, 0.0), abs=1e-12)
    uniform = torch.full((32, k), 1.0 / k)
    assert assignment_entropies(uniform) == pytest.approx((1.0, 1.0))
    spread_one_hot = torch.eye(k).repeat(4, 1)  # confident and balanced: the healthy case
    assert assignment_entropies(spread_one_hot) == pytest.approx((1.0, 0.0), abs=1e-12)


def test_finiteness_checks():
    assert is_finite(1.0, torch.ones(3)) and not is_finite(float("nan")) and not is_finite(torch.tensor([1.0, math.inf]))
    layer = torch.nn.Linear(3, 2)
    layer(torch.randn(4, 3)).sum().backward()
    assert grad_is_finite(layer)
    layer.weight.grad[0, 0] = float("nan")
    assert not grad_is_finite(layer)


def healthy(epoch, **overrides):
    metrics = {"std_ratio": 0.8, "rankme": 20.0, "knn_top1": 0.5, "loss": 1.0,
               "assign_entropy": 0.9, "assign_sample_entropy": 0.3}
    metrics.update(overrides)
    return metrics


def monitor(**config):
    return CollapseMonitor(CollapseConfig(**config), discrete=True, num_classes=10)


def test_no_event_on_a_healthy_sequence():
    m = monitor()
    for epoch in range(1, 11):
        assert m.observe(healthy(epoch), epoch=epoch, step=epoch * 10) == []
    assert not m.collapsed and m.stop_reason == ""


def test_complete_collapse_needs_patience():
    m = monitor(std_ratio_patience=2)
    assert m.observe(healthy(1, std_ratio=0.01), epoch=1, step=10) == []
    assert m.observe(healthy(2, std_ratio=0.5), epoch=2, step=20) == []  # streak broken
    assert m.observe(healthy(3, std_ratio=0.01), epoch=3, step=30) == []
    events = m.observe(healthy(4, std_ratio=0.02), epoch=4, step=40)
    assert [(e.kind, e.severity, e.epoch, e.step) for e in events] == [("complete", "collapse", 4, 40)]
    assert events[0].value == pytest.approx(0.02) and events[0].threshold == 0.05
    assert m.collapsed and m.stop_reason == "collapsed"


def test_dimensional_warning_once_then_collapse():
    m = monitor(warmup_epochs=1, warning_rankme_fraction=0.0)
    m.observe(healthy(1, rankme=20.0), epoch=1, step=1)
    first = m.observe(healthy(2, rankme=4.0), epoch=2, step=2)
    assert [(e.kind, e.severity) for e in first] == [("dimensional", "warning")]
    # same episode: no repeated warning; two evaluations below 25% of the max are a partial collapse
    assert [(e.kind, e.severity) for e in m.observe(healthy(3, rankme=3.5), epoch=3, step=3)] == [
        ("dimensional", "partial")]
    last = m.observe(healthy(4, rankme=1.01), epoch=4, step=4)
    assert [(e.kind, e.severity) for e in last] == [("dimensional", "collapse")]


def test_cluster_and_uniform_collapse_for_discrete_methods():
    m = monitor(assignment_patience=2)
    m.observe(healthy(1, assign_entropy=0.01), epoch=1, step=1)
    events = m.observe(healthy(2, assign_entropy=0.02), epoch=2, step=2)
    assert [(e.kind, e.detector) for e in events] == [("cluster", "assign_entropy")]
    u = monitor(assignment_patience=1)
    events = u.observe(healthy(1, assign_entropy=0.999, assign_sample_entropy=0.995), epoch=1, step=1)
    assert [e.kind for e in events] == ["uniform"]
    # mean entropy high but confident samples: healthy, not uniform
    assert monitor(assignment_patience=1).observe(healthy(1, assign_entropy=0.999, assign_sample_entropy=0.2),
                                                  epoch=1, step=1) == []


def test_sphere_methods_ignore_assignment_detectors():
    m = CollapseMonitor(CollapseConfig(assignment_patience=1), discrete=False, num_classes=10)
    assert m.observe(healthy(1, assign_entropy=0.0), epoch=1, step=1) == []


def test_knn_chance_is_a_warning_after_warmup_only():
    m = monitor(warmup_epochs=2)
    assert m.observe(healthy(1, knn_top1=0.1), epoch=1, step=1) == []
    assert m.observe(healthy(2, knn_top1=0.1), epoch=2, step=2) == []
    events = m.observe(healthy(3, knn_top1=0.1), epoch=3, step=3)
    assert [(e.kind, e.severity) for e in events] == [("knn_chance", "warning")]
    assert not m.collapsed


def test_divergence_and_non_finite_metrics():
    m = monitor()
    events = m.observe(healthy(1, loss=float("nan")), epoch=1, step=5)
    assert [(e.kind, e.severity) for e in events] == [("diverged", "collapse")]
    assert m.stop_reason == "diverged"
    assert events[0].to_dict()["value"] is None  # JSON has no NaN
    json.dumps(events[0].to_dict())
    m2 = monitor()
    assert [e.kind for e in m2.observe_divergence(float("inf"), epoch=2, step=7)] == ["diverged"]
    state = json.dumps(m.state_dict(), allow_nan=False)  # strict JSON even after a NaN divergence
    restored = monitor()
    restored.load_state_dict(json.loads(state))
    assert restored.stop_reason == "diverged" and math.isnan(restored.events[0].value)
    m3 = monitor()
    assert [e.kind for e in m3.observe(healthy(1, std_ratio=float("nan")), epoch=1, step=1)] == ["diverged"]


def test_state_round_trip_gives_the_same_events_as_never_interrupted():
    sequence = [healthy(1), healthy(2, std_ratio=0.01, rankme=3.0), healthy(3, std_ratio=0.01, rankme=2.0),
                healthy(4, assign_entropy=0.01), healthy(5, assign_entropy=0.01, knn_top1=0.05)]
    straight = monitor(warmup_epochs=1)
    expected = [e for epoch, metrics in enumerate(sequence, 1) for e in straight.observe(metrics, epoch=epoch, step=epoch)]
    first = monitor(warmup_epochs=1)
    got = [e for epoch, metrics in enumerate(sequence[:2], 1) for e in first.observe(metrics, epoch=epoch, step=epoch)]
    resumed = monitor(warmup_epochs=1)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    got += [e for epoch, metrics in enumerate(sequence[2:], 3) for e in resumed.observe(metrics, epoch=epoch, step=epoch)]
    assert got == expected and len(expected) >= 3
    assert resumed.events == straight.events


# Calibration against the untrained network. Values are those measured on
# untrained networks: convnet's projections have std ratio 0.020 (below the absolute 0.05).
UNTRAINED_CONVNET = {"std_ratio": 0.020, "rankme": 51.0, "knn_top1": 0.17, "loss": 4.0,
                     "assign_entropy": 0.93, "assign_sample_entropy": 0.93}


def test_calibrated_monitor_never_fires_on_the_untrained_network():
    for untrained in (UNTRAINED_CONVNET, {**UNTRAINED_CONVNET, "std_ratio": 0.0, "rankme": 1.0,
                                          "assign_entropy": 0.999, "assign_sample_entropy": 0.998}):
        m = monitor(std_ratio_patience=1, assignment_patience=1)
        m.calibrate(untrained)
        for epoch in (1, 2, 3):  # still untrained after each epoch (knn_chance is gated by warm-up)
            assert m.observe(untrained, epoch=epoch, step=epoch) == []
    uncalibrated = monitor(std_ratio_patience=1)  # the absolute threshold alone fires at once
    assert [e.kind for e in uncalibrated.observe(UNTRAINED_CONVNET, epoch=1, step=1)] == ["complete"]


def test_calibrated_monitor_still_detects_collapse():
    m = monitor()
    m.calibrate(UNTRAINED_CONVNET)
    collapsed = std_ratio(torch.ones(64, 16) * torch.randn(1, 16))  # constant projections: 0
    assert m.observe(healthy(1, std_ratio=collapsed), epoch=1, step=1) == []
    events = m.observe(healthy(2, std_ratio=collapsed), epoch=2, step=2)
    assert [(e.kind, e.severity) for e in events] == [("complete", "collapse")]
    assert events[0].value == 0.0 and events[0].threshold == pytest.approx(0.5 * 0.020)
    # measured convnet trajectory of SimCLR-ER without its entropy term (std ratio per epoch):
    # the running best (0.038) sets the bound min(0.05, 0.5 * 0.038) = 0.019
    m = monitor()
    m.calibrate(UNTRAINED_CONVNET)
    fired = [e for epoch, value in enumerate((0.0377, 0.0187, 0.0129, 0.0116), 1)
             for e in m.observe(healthy(epoch, std_ratio=value), epoch=epoch, step=epoch)]
    assert [(e.kind, e.epoch, e.threshold) for e in fired] == [("complete", 3, pytest.approx(0.5 * 0.0377))]
    # a healthy start keeps the absolute thresholds
    h = monitor(assignment_patience=1)
    h.calibrate(healthy(0))
    assert h.low_threshold("std_ratio", 0.05) == 0.05 and h.low_threshold("assign_entropy", 0.05) == 0.05
    assert [e.kind for e in h.observe(healthy(1, assign_entropy=0.01), epoch=1, step=1)] == ["cluster"]
    u = monitor(assignment_patience=1)
    u.calibrate(UNTRAINED_CONVNET)
    events = u.observe(healthy(1, assign_entropy=0.999, assign_sample_entropy=0.995), epoch=1, step=1)
    assert [(e.kind, e.threshold) for e in events] == [("uniform", 0.99)]


def test_calibration_survives_a_checkpoint_round_trip():
    m = monitor()
    m.calibrate(UNTRAINED_CONVNET)
    m.observe(healthy(1, std_ratio=0.04), epoch=1, step=1)
    restored = monitor()
    restored.load_state_dict(json.loads(json.dumps(m.state_dict(), allow_nan=False)))
    assert restored.calibrated and restored.initial == m.initial and restored.highest["std_ratio"] == 0.04
    assert restored.low_threshold("std_ratio", 0.05) == pytest.approx(0.02)
    old = m.state_dict()
    for key in ("calibrated", "initial", "highest", "lowest"):
        old.pop(key)
    legacy = monitor()
    legacy.load_state_dict(old)  # a checkpoint written before calibration existed
    assert not legacy.calibrated and legacy.low_threshold("std_ratio", 0.05) == 0.05


# Partial collapse: severity "partial", never a stop, calibrated at init.
# kNN 0.5, that of healthy(): the sequences below have the functional loss (kNN not above the
# untrained network's) that the structural partial criteria need (tests/test_learned_grade.py)
UNTRAINED_DISCRETE = {**UNTRAINED_CONVNET, "rankme_projection": 30.0, "effective_prototypes": 16.0,
                      "knn_chance_p": 1e-6, "loss": math.log(32), "knn_top1": 0.5}


def discrete_monitor(**config):
    m = CollapseMonitor(CollapseConfig(**config), discrete=True, num_classes=10, loss_plateau=math.log(32))
    m.calibrate(UNTRAINED_DISCRETE)
    return m


def partial_kinds(events):
    return [(e.kind, e.epoch) for e in events if e.severity == "partial"]


def replay(m, sequence):
    return [e for epoch, metrics in enumerate(sequence, 1) for e in m.observe(metrics, epoch=epoch, step=epoch)]


def test_untrained_or_non_training_network_never_trips_a_partial_criterion():
    for untrained in (UNTRAINED_DISCRETE, {**UNTRAINED_DISCRETE, "loss": 1.0},
                      {**UNTRAINED_DISCRETE, "knn_chance_p": 0.9, "effective_prototypes": 1.2,
                       "rankme": 1.6, "rankme_projection": 1.6}):
        m = CollapseMonitor(CollapseConfig(), discrete=True, num_classes=10, loss_plateau=math.log(32))
        m.calibrate(untrained)
        # a network that does not train: its own values, with evaluation noise, at every epoch
        noisy = [{**untrained, "rankme": untrained["rankme"] * (1 - 0.01 * e), "loss": untrained["loss"] * (1 + 0.01 * (-1) ** e)}
                 for e in range(1, 9)]
        assert replay(m, noisy) == [] and m.grade == "none", untrained


def test_dimensional_partial_needs_features_and_projections_for_two_evaluations():
    m = discrete_monitor()
    # features fall below 25% of their max (51 at init) but projections do not: no partial
    assert partial_kinds(replay(m, [healthy(e, rankme=10.0, rankme_projection=20.0) for e in (1, 2, 3)])) == []
    m = discrete_monitor()
    found = replay(m, [healthy(1, rankme=10.0, rankme_projection=5.0), healthy(2, rankme=20.0, rankme_projection=20.0),
                       healthy(3, rankme=10.0, rankme_projection=5.0), healthy(4, rankme=9.0, rankme_projection=4.0),
                       healthy(5, rankme=8.0, rankme_projection=4.0)])
    assert partial_kinds(found) == [("dimensional", 4)]  # one evaluation is not enough; once per trial
    event = next(e for e in found if e.severity == "partial")
    assert event.value == 9.0 and event.threshold == pytest.approx(0.25 * 51.0)
    assert m.grade == "partial" and not m.collapsed and m.stop_reason == ""  # partial never stops


def test_prototype_partial_is_below_the_classes_and_far_below_init():
    m = discrete_monitor()  # 16 prototypes in use at init: bound min(10, 0.25 * 16) = 4
    assert partial_kinds(replay(m, [healthy(e, effective_prototypes=8.0) for e in (1, 2, 3)])) == []
    m = discrete_monitor()
    found = replay(m, [healthy(e, effective_prototypes=1.9) for e in (1, 2)])
    assert partial_kinds(found) == [("prototype", 2)] and found[0].threshold == pytest.approx(4.0)
    sphere = CollapseMonitor(CollapseConfig(), discrete=False, num_classes=10)
    sphere.calibrate(UNTRAINED_DISCRETE)
    assert partial_kinds(replay(sphere, [healthy(e, effective_prototypes=1.0) for e in (1, 2)])) == []


def test_functional_partial_counts_only_if_the_untrained_network_passed():
    m = discrete_monitor()  # warm-up (3 epochs): the transient of early training does not count
    assert partial_kinds(replay(m, [healthy(1, knn_chance_p=0.2), healthy(2, knn_chance_p=0.3),
                                    healthy(3, knn_chance_p=0.2), healthy(4, knn_chance_p=0.01),
                                    healthy(5, knn_chance_p=0.2), healthy(6, knn_chance_p=0.4)])) == [("functional", 6)]
    failed_at_init = CollapseMonitor(CollapseConfig(), discrete=True, num_classes=10)
    failed_at_init.calibrate({**UNTRAINED_DISCRETE, "knn_chance_p": 0.3})
    assert partial_kinds(replay(failed_at_init, [healthy(e, knn_chance_p=0.9) for e in (1, 2, 3)])) == []


def test_knn_chance_p_is_the_exact_binomial_test_against_the_majority_class():
    from scipy.stats import binomtest

    from er_core.collapse import effective_prototypes, knn_chance_p

    labels = torch.tensor([0] * 40 + [1] * 30 + [2] * 30)  # majority rate 0.4, not 1/3
    assert knn_chance_p(0.40, labels, 3) == pytest.approx(binomtest(40, 100, 0.4, alternative="greater").pvalue)
    assert knn_chance_p(0.55, labels, 3) < 0.01 < knn_chance_p(0.45, labels, 3)
    assert knn_chance_p(float("nan"), labels, 3) == 1.0
    assert effective_prototypes(0.0, 32) == pytest.approx(1.0) and effective_prototypes(1.0, 32) == pytest.approx(32.0)


def test_plateau_needs_the_loss_to_have_left_ln_k_first():
    log_k = math.log(32)
    m = discrete_monitor()  # untrained loss at ln K: staying there is not a plateau
    assert partial_kinds(replay(m, [healthy(e, loss=log_k * 0.995) for e in (1, 2, 3)])) == []
    m = discrete_monitor()
    found = replay(m, [healthy(1, loss=1.0), healthy(2, loss=log_k * 0.99), healthy(3, loss=log_k * 1.01)])
    assert partial_kinds(found) == [("plateau", 3)]
    no_level = CollapseMonitor(CollapseConfig(), discrete=True, num_classes=10)  # e.g. BYOL: no ln K
    no_level.calibrate(UNTRAINED_DISCRETE)
    assert partial_kinds(replay(no_level, [healthy(1, loss=1.0)] + [healthy(e, loss=log_k) for e in (2, 3)])) == []


def test_complete_collapse_outranks_partial_in_the_grade():
    m = discrete_monitor(assignment_patience=1)
    replay(m, [healthy(e, effective_prototypes=1.5) for e in (1, 2)])
    assert m.grade == "partial"
    m.observe(healthy(3, assign_entropy=0.01), epoch=3, step=3)
    assert m.grade == "complete" and m.stop_reason == "collapsed"


def test_early_warning_fires_once_on_its_signal():
    m = discrete_monitor(warning_rankme_fraction=0.5)
    found = [e for e in replay(m, [healthy(1, rankme=40.0), healthy(2, rankme=20.0), healthy(3, rankme=15.0)])
             if e.kind == "early_warning"]
    assert [(e.detector, e.severity, e.epoch) for e in found] == [("rankme", "warning", 2)]
    assert found[0].threshold == pytest.approx(0.5 * 51.0) and m.grade == "none"
    assert CollapseConfig().warning_rankme_fraction == 0.3  # the benchmark's choice; the others 0
    quiet = discrete_monitor(warning_rankme_fraction=0.0)  # every warning fraction 0: disabled
    assert [e for e in replay(quiet, [healthy(e, rankme=2.0) for e in (1, 2)]) if e.kind == "early_warning"] == []


def test_partial_state_survives_a_checkpoint_round_trip():
    sequence = [healthy(1, loss=1.0, effective_prototypes=1.5), healthy(2, loss=math.log(32)),
                healthy(3, loss=math.log(32), effective_prototypes=1.5), healthy(4, loss=math.log(32))]
    straight = discrete_monitor()
    replay(straight, sequence)
    first = discrete_monitor()
    replay(first, sequence[:2])
    resumed = CollapseMonitor(CollapseConfig(), discrete=True, num_classes=10, loss_plateau=math.log(32))
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict(), allow_nan=False)))
    for epoch, metrics in enumerate(sequence[2:], 3):
        resumed.observe(metrics, epoch=epoch, step=epoch)
    assert resumed.events == straight.events and partial_kinds(straight.events) == [("plateau", 3)]


def test_collapse_grade_metrics_of_one_evaluation():
    from trainers.diagnostics import collapse_grade_metrics

    torch.manual_seed(0)
    labels = torch.arange(100) % 10  # majority rate 0.1
    z = torch.randn(100, 1) * torch.randn(1, 16)  # rank-one projections
    sphere = collapse_grade_metrics(z, {"knn_top1": 0.1}, labels, 10, num_prototypes=None)
    assert set(sphere) == {"rankme_projection", "knn_chance_p"}
    assert sphere["rankme_projection"] < 1.01 and sphere["knn_chance_p"] > 0.5
    discrete = collapse_grade_metrics(torch.randn(100, 16), {"knn_top1": 0.3, "assign_entropy": 0.5}, labels, 10,
                                      num_prototypes=32)
    assert discrete["effective_prototypes"] == pytest.approx(math.sqrt(32))
    assert discrete["knn_chance_p"] < 1e-6 and discrete["rankme_projection"] > 10
