"""The not-learned grade and the functional gate of the structural partial criteria.

Synthetic per-query correctness (paired: the untrained and the trained network answer the same
queries) and synthetic metric sequences; no training.
"""

import json
import math

import pytest
import torch

from er_core.collapse import CollapseMonitor, mcnemar_greater_p
from er_core.config import CollapseConfig

QUERIES = 10_000  # FashionMNIST's whole test split


def paired(p_before: float, p_after: float, n: int, generator: torch.Generator, *, stay: float = 0.85):
    """Correctness before/after with marginal rates ``p_before``/``p_after``, positively correlated:
    a query the untrained network gets right stays right with probability ``stay`` (capped so that
    the marginal is reachable), the others become right at the rate that gives ``p_after``."""
    stay = min(stay, p_after / p_before)
    become = (p_after - p_before * stay) / (1.0 - p_before)
    before = torch.rand(n, generator=generator) < p_before
    draw = torch.rand(n, generator=generator)
    after = torch.where(before, draw < stay, draw < become)
    return after, before


def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_pairs():
    from scipy.stats import binomtest

    before = torch.tensor([True] * 50 + [False] * 50)
    after = torch.tensor([True] * 45 + [False] * 5 + [True] * 15 + [False] * 35)  # b = 15, c = 5
    assert mcnemar_greater_p(after, before) == pytest.approx(binomtest(15, 20, 0.5, alternative="greater").pvalue)
    assert mcnemar_greater_p(before, before) == 1.0  # no discordant query: nothing shows a gain
    assert mcnemar_greater_p(before, after) > 0.99  # worse is never "better"
    with pytest.raises(ValueError, match="one shape"):
        mcnemar_greater_p(after[:10], before)


def test_mcnemar_keeps_its_level_when_nothing_was_learned():
    generator = torch.Generator().manual_seed(0)
    trials = 400
    rejected = sum(mcnemar_greater_p(*paired(0.6, 0.6, 1000, generator)) <= 0.05 for _ in range(trials))
    # exact test: P(p <= .05) <= .05 under H0; 400 draws, binomial sd of the rate 0.011
    assert rejected / trials <= 0.05 + 2 * 0.011


def test_not_learned_false_positive_rate_on_healthy_trials():
    """Healthy = the gains measured on FashionMNIST (untrained kNN .59 / linear .74 on the 10,000
    test queries); even a gain of 1.5 points in kNN and 1 in the linear probe is graded learned in
    (nearly) every simulated trial, while a network that kept its untrained accuracy is graded
    not_learned in at least 90% (both tests must fail to reject)."""
    generator = torch.Generator().manual_seed(1)

    def graded(knn_gain, linear_gain, n=QUERIES, runs=100):
        count = 0
        for _ in range(runs):
            m = CollapseMonitor(CollapseConfig(), discrete=True, num_classes=10)
            knn_after, knn_before = paired(0.59, 0.59 + knn_gain, n, generator)
            linear_after, linear_before = paired(0.74, 0.74 + linear_gain, n, generator)
            m.calibrate({"knn_top1": 0.6}, final_knn_correct=knn_before, final_linear_correct=linear_before)
            count += bool(m.observe_final(knn_after, linear_after, epoch=12, step=192))
        return count / runs

    assert graded(0.015, 0.01) <= 0.02
    assert graded(0.10, 0.05) == 0.0
    assert graded(0.0, 0.0) >= 0.90


def test_observe_final_grades_not_learned_only_when_neither_probe_is_above():
    generator = torch.Generator().manual_seed(2)
    knn_after, knn_before = paired(0.59, 0.59, QUERIES, generator)
    linear_after, linear_before = paired(0.74, 0.80, QUERIES, generator)
    m = CollapseMonitor(CollapseConfig(), discrete=True, num_classes=10)
    m.calibrate({"knn_top1": 0.6}, final_knn_correct=knn_before, final_linear_correct=linear_before)
    assert m.observe_final(knn_after, linear_after, epoch=12, step=1) == []  # the probe learned
    assert m.learned_p["linear"] < 1e-6 and m.grade == "none"
    m = CollapseMonitor(CollapseConfig(), discrete=True, num_classes=10)
    m.calibrate({"knn_top1": 0.6}, final_knn_correct=knn_before, final_linear_correct=linear_before)
    found = m.observe_final(knn_after, linear_before, epoch=12, step=1)
    assert [(e.kind, e.severity, e.epoch) for e in found] == [("not_learned", "partial", 12)]
    assert m.grade == "partial" and m.stop_reason == ""  # a partial grade: counted, never a stop
    resumed = CollapseMonitor(CollapseConfig(), discrete=True, num_classes=10)
    resumed.load_state_dict(json.loads(json.dumps(m.state_dict(), allow_nan=False)))
    assert torch.equal(resumed.untrained_correct["final_knn"], knn_before) and resumed.events == m.events
    bare = CollapseMonitor(CollapseConfig(), discrete=True, num_classes=10)  # no untrained reference
    bare.calibrate({"knn_top1": 0.6})
    assert bare.observe_final(knn_after, linear_before, epoch=12, step=1) == []


def dino_monitor(untrained_knn):
    """A calibrated DINO-like monitor: 41.9 of 64 prototypes in use at init (measured on FashionMNIST)."""
    m = CollapseMonitor(CollapseConfig(warmup_epochs=1), discrete=True, num_classes=10, loss_plateau=math.log(64))
    m.calibrate({"std_ratio": 0.13, "rankme": 42.0, "assign_entropy": 0.9, "assign_sample_entropy": 0.9,
                 "rankme_projection": 7.9, "effective_prototypes": 41.9, "knn_top1": 0.60, "knn_chance_p": 1e-200,
                 "loss": math.log(64)}, knn_correct=untrained_knn)
    return m


def epoch_metrics(**overrides):
    return {"std_ratio": 0.2, "rankme": 30.0, "assign_entropy": 0.4, "assign_sample_entropy": 0.3,
            "rankme_projection": 5.0, "effective_prototypes": 4.7, "knn_top1": 0.7, "knn_chance_p": 1e-200,
            "loss": 2.0, **overrides}


def test_prototype_disuse_alone_does_not_grade_a_network_that_learns():
    """DINO at EMA 0.9 on FashionMNIST: 4.7 of 64 prototypes in use (below min(10, 25% of 41.9))
    while its kNN is well above the untrained network's: not partial. The same disuse with a kNN
    no better than the untrained network's is."""
    generator = torch.Generator().manual_seed(3)
    learned, untrained = paired(0.60, 0.71, 1000, generator)
    m = dino_monitor(untrained)
    for epoch in range(1, 6):
        assert m.observe(epoch_metrics(), epoch=epoch, step=epoch, knn_correct=learned) == []
    assert m.grade == "none"
    same, untrained = paired(0.60, 0.60, 1000, generator)
    m = dino_monitor(untrained)
    found = [e for epoch in (1, 2) for e in m.observe(epoch_metrics(knn_top1=0.6), epoch=epoch, step=epoch,
                                                      knn_correct=same)]
    assert [(e.kind, e.epoch) for e in found if e.severity == "partial"] == [("prototype", 2)]
    assert "McNemar" in found[0].message


@pytest.mark.parametrize("kind, overrides", [
    ("dimensional", {"rankme": 5.0, "rankme_projection": 1.5}),
    ("plateau", {"loss": math.log(64)}),
])
def test_every_structural_partial_needs_a_functional_loss(kind, overrides):
    generator = torch.Generator().manual_seed(4)
    learned, untrained = paired(0.60, 0.71, 1000, generator)
    sequence = [epoch_metrics(loss=1.0, effective_prototypes=30.0)] + [
        epoch_metrics(effective_prototypes=30.0, **overrides) for _ in range(3)]
    m = dino_monitor(untrained)
    for epoch, metrics in enumerate(sequence, 1):
        m.observe(metrics, epoch=epoch, step=epoch, knn_correct=learned)
    assert m.grade == "none"
    m = dino_monitor(untrained)
    for epoch, metrics in enumerate(sequence, 1):
        m.observe(metrics, epoch=epoch, step=epoch, knn_correct=untrained)
    assert [e.kind for e in m.events if e.severity == "partial"] == [kind]


def test_without_per_query_correctness_the_gate_compares_the_point_estimates():
    m = dino_monitor(None)
    for epoch in (1, 2):
        m.observe(epoch_metrics(knn_top1=0.7), epoch=epoch, step=epoch)
    assert m.grade == "none"
    for epoch in (3, 4):
        m.observe(epoch_metrics(knn_top1=0.59), epoch=epoch, step=epoch)
    assert [(e.kind, e.epoch) for e in m.events if e.severity == "partial"] == [("prototype", 4)]


def test_make_bundle_keeps_the_whole_test_split_for_the_final_evaluation():
    from er_core.data.bundle import make_bundle

    generator = torch.Generator().manual_seed(5)
    train = torch.randint(0, 256, (20, 1, 12, 12), generator=generator, dtype=torch.uint8)
    test = torch.randint(0, 256, (30, 1, 12, 12), generator=generator, dtype=torch.uint8)
    labels = torch.arange(30) % 10
    bundle = make_bundle("x", 10, train, torch.arange(20) % 10, test, labels, image_size=12,
                         train_size=16, eval_size=8)
    assert bundle.eval_images.shape[0] == 8 and bundle.final_images.shape[0] == 30
    assert torch.equal(bundle.final_images[:8], bundle.eval_images) and torch.equal(bundle.final_labels, labels)
    small = make_bundle("x", 10, train, torch.arange(20) % 10, test, labels, image_size=12,
                        train_size=16, eval_size=30)
    assert small.test_images is None and small.final_images is small.eval_images


def test_trials_table_reads_the_final_evaluation_and_says_how_many_queries_it_used():
    from reports.tables import _final_evaluation

    final = _final_evaluation({"eval_size": 1000}, {"knn_top1": 0.61, "linear_top1": 0.74, "final_knn_top1": 0.6,
                                                    "final_linear_top1": 0.73, "final_queries": 10000,
                                                    "untrained_final_knn_top1": 0.59, "learned_knn_p": 0.04})
    assert (final["final_knn_top1"], final["final_linear_top1"], final["final_knn_queries"],
            final["linear_queries"], final["untrained_knn_top1"], final["learned_knn_p"]) == (
        0.6, 0.73, 10000, 10000, 0.59, 0.04)
    older = _final_evaluation({"eval_size": 1000}, {"knn_top1": 0.61, "linear_top1": 0.74})
    assert (older["final_knn_top1"], older["final_knn_queries"], older["linear_queries"],
            older["untrained_knn_top1"]) == (0.61, 1000, 1000, None)
    no_probe = _final_evaluation({"eval_size": 1000}, {"knn_top1": 0.61})  # stopped by ASHA
    assert no_probe["final_knn_queries"] == 1000 and no_probe["linear_queries"] is None


def test_stop_on_warning_turns_the_early_warning_into_a_collapse_at_its_epoch():
    sequence = [epoch_metrics(rankme_projection=7.0, effective_prototypes=30.0),
                epoch_metrics(rankme_projection=2.0, effective_prototypes=30.0)]  # < 0.3 x max 7.9
    for stop, severity, reason, grade in ((False, "warning", "", "none"), (True, "collapse", "collapsed", "complete")):
        m = CollapseMonitor(CollapseConfig(warmup_epochs=1, warning_rankme_fraction=0.0,
                                           warning_rankme_projection_fraction=0.3, stop_on_warning=stop),
                            discrete=True, num_classes=10)
        m.calibrate({"rankme": 42.0, "rankme_projection": 7.9, "std_ratio": 0.13, "knn_top1": 0.6})
        found = [e for epoch, metrics in enumerate(sequence, 1) for e in m.observe(metrics, epoch=epoch, step=epoch)]
        assert [(e.kind, e.severity, e.epoch) for e in found] == [("early_warning", severity, 2)]
        assert (m.stop_reason, m.grade) == (reason, grade)
