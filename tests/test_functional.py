"""Raw loss functions against independent re-implementations (loops and the reference repos' code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from er_core.estimators import kde_entropy, vmf_log_normalizer, vmf_reconstruction
from er_core.objectives import functional as fn
from er_core.objectives.deepcluster import assign_clusters, kmeans


def _randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------- references


def lightly_ntxent(out0, out1, temperature):
    """lightly.loss.NTXentLoss without memory bank or distributed gather."""
    out0, out1 = F.normalize(out0, dim=1), F.normalize(out1, dim=1)
    batch = out0.shape[0]
    diag = torch.eye(batch, dtype=torch.bool)
    l00, l01 = out0 @ out0.T / temperature, out0 @ out1.T / temperature
    l10, l11 = out1 @ out0.T / temperature, out1 @ out1.T / temperature
    l00, l11 = l00[~diag].view(batch, -1), l11[~diag].view(batch, -1)
    logits = torch.cat([torch.cat([l01, l00], dim=1), torch.cat([l10, l11], dim=1)], dim=0)
    return F.cross_entropy(logits, torch.arange(batch).repeat(2))


def loop_ntxent(z1, z2, temperature):
    z = [v / v.norm() for v in torch.cat([z1, z2])]
    n, batch = len(z), z1.shape[0]
    total = 0.0
    for i in range(n):
        positive = (i + batch) % n
        sims = {j: float(z[i] @ z[j]) / temperature for j in range(n) if j != i}
        total += -sims[positive] + math.log(sum(math.exp(s) for s in sims.values()))
    return total / n


def reference_sinkhorn(out, epsilon, iterations):
    """facebookresearch/swav distributed_sinkhorn with world_size 1."""
    q = torch.exp(out / epsilon).t()
    batch, prototypes = q.shape[1], q.shape[0]
    q /= torch.sum(q)
    for _ in range(iterations):
        q /= torch.sum(q, dim=1, keepdim=True)
        q /= prototypes
        q /= torch.sum(q, dim=0, keepdim=True)
        q /= batch
    q *= batch
    return q.t()


def reference_swav(output, batch, temperature, epsilon, iterations):
    """facebookresearch/swav main_swav.py loss with two crops, both used for assignment."""
    loss = 0
    for crop_id in (0, 1):
        out = output[batch * crop_id: batch * (crop_id + 1)].detach()
        q = reference_sinkhorn(out, epsilon, iterations)
        subloss = 0
        for v in np.delete(np.arange(2), crop_id):
            x = output[batch * v: batch * (v + 1)] / temperature
            subloss -= torch.mean(torch.sum(q * F.log_softmax(x, dim=1), dim=1))
        loss += subloss / 1
    return loss / 2


# ---------------------------------------------------------------- NT-Xent


@pytest.mark.parametrize("temperature", [0.07, 0.5, 1.0])
def test_info_nce_matches_lightly_and_loop(temperature):
    z1, z2 = _randn(6, 5, seed=1), _randn(6, 5, seed=2)
    value = float(fn.info_nce(z1, z2, temperature))
    assert value == pytest.approx(float(lightly_ntxent(z1, z2, temperature)), rel=1e-12)
    assert value == pytest.approx(loop_ntxent(z1, z2, temperature), rel=1e-10)


def test_info_nce_closed_form_when_all_views_coincide():
    z = torch.ones(8, 4, dtype=torch.float64)
    assert float(fn.info_nce(z, 3 * z, 0.1)) == pytest.approx(math.log(2 * 8 - 1), rel=1e-12)


def test_info_nce_symmetric_permutation_and_scale_invariant():
    z1, z2 = _randn(10, 7, seed=3), _randn(10, 7, seed=4)
    base = fn.info_nce(z1, z2, 0.2)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(fn.info_nce(z2, z1, 0.2), base, atol=1e-12)
    assert torch.allclose(fn.info_nce(z1[perm], z2[perm], 0.2), base, atol=1e-12)
    assert torch.allclose(fn.info_nce(5 * z1, 0.1 * z2, 0.2), base, atol=1e-12)
    assert float(fn.info_nce(z1.float(), z2.float(), 0.2)) == pytest.approx(float(base), rel=1e-5)


# ---------------------------------------------------------------- BYOL


def test_byol_loss_closed_forms_reference_and_stop_gradient():
    p, z = _randn(9, 6, seed=5), _randn(9, 6, seed=6)
    assert float(fn.byol_loss(p, 2 * p)) == pytest.approx(0.0, abs=1e-12)
    assert float(fn.byol_loss(p, -p)) == pytest.approx(4.0)
    expected = float((2 - 2 * (F.normalize(p, dim=-1) * F.normalize(z, dim=-1)).sum(-1)).mean())
    assert float(fn.byol_loss(p, z)) == pytest.approx(expected, rel=1e-12)
    p.requires_grad_(True)
    z.requires_grad_(True)
    fn.byol_loss(p, z).backward()
    assert z.grad is None and p.grad.abs().sum() > 0


# ---------------------------------------------------------------- DINO


def test_dino_loss_matches_direct_formula_and_closed_form():
    s, t, c = _randn(7, 10, seed=7), _randn(7, 10, seed=8), _randn(1, 10, seed=9)
    q = F.softmax((t - c) / 0.04, dim=-1)
    expected = float(torch.sum(-q * F.log_softmax(s / 0.1, dim=-1), dim=-1).mean())
    assert float(fn.dino_loss(s, t, c, 0.1, 0.04)) == pytest.approx(expected, rel=1e-12)
    # Equal sharpened distributions: the CE equals the teacher's mean entropy; uniform gives log K.
    t_entropy = float(-(q * q.log()).sum(-1).mean())
    assert float(fn.dino_loss((t - c) * (0.1 / 0.04), t, c, 0.1, 0.04)) == pytest.approx(t_entropy, rel=1e-9)
    zeros = torch.zeros(7, 10, dtype=torch.float64)
    assert float(fn.dino_loss(zeros, zeros, torch.zeros(10, dtype=torch.float64), 0.1, 0.04)) == pytest.approx(
        math.log(10))


def test_dino_loss_detaches_teacher():
    s, t = _randn(4, 5, seed=1).requires_grad_(True), _randn(4, 5, seed=2).requires_grad_(True)
    fn.dino_loss(s, t, torch.zeros(1, 5, dtype=torch.float64), 0.1, 0.04).backward()
    assert t.grad is None and s.grad.abs().sum() > 0


# ---------------------------------------------------------------- Sinkhorn and SwAV


@pytest.mark.parametrize("epsilon,iterations", [(0.05, 3), (0.5, 1), (0.1, 10)])
def test_sinkhorn_matches_reference(epsilon, iterations):
    scores = F.normalize(_randn(16, 8, seed=10), dim=1) @ F.normalize(_randn(5, 8, seed=11), dim=1).T
    codes = fn.sinkhorn(scores, epsilon, iterations)
    assert torch.allclose(codes, reference_sinkhorn(scores.clone(), epsilon, iterations), rtol=1e-10, atol=1e-14)
    assert torch.allclose(codes.sum(dim=1), torch.ones(16, dtype=torch.float64))


def test_sinkhorn_codes_equipartition_and_permutation_equivariance():
    scores = _randn(30, 6, seed=12) * 0.3
    codes = fn.sinkhorn(scores, 0.2, 200)
    assert torch.allclose(codes.sum(dim=0), torch.full((6,), 30 / 6, dtype=torch.float64), rtol=1e-6)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(fn.sinkhorn(scores[perm], 0.2, 200), codes[perm], atol=1e-12)
    # Large scores: the reference's float32 exp overflows (NaN codes); ours stays finite.
    big = (scores * 100).float()
    assert torch.isnan(reference_sinkhorn(big.clone(), 0.05, 3)).any()
    codes_big = fn.sinkhorn(big, 0.05, 3)
    assert torch.isfinite(codes_big).all() and codes_big.dtype == torch.float32
    assert torch.allclose(codes_big.sum(dim=1), torch.ones(30))


def test_swav_loss_matches_reference_and_is_symmetric():
    s1, s2 = _randn(12, 7, seed=13) * 0.5, _randn(12, 7, seed=14) * 0.5
    expected = reference_swav(torch.cat([s1, s2]), 12, 0.1, 0.05, 3)
    assert float(fn.swav_loss(s1, s2, 0.1, 0.05, 3)) == pytest.approx(float(expected), rel=1e-10)
    assert float(fn.swav_loss(s2, s1, 0.1, 0.05, 3)) == pytest.approx(float(expected), rel=1e-10)
    assert float(fn.swav_loss(s1.float(), s2.float(), 0.1, 0.05, 3)) == pytest.approx(float(expected), rel=1e-5)


# ---------------------------------------------------------------- DeepCluster-v2


def test_deepcluster_loss_matches_reference():
    s1, s2 = _randn(8, 5, seed=15), _randn(8, 5, seed=16)
    targets = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    # main_deepclusterv2.py: CE of all crops' scores / tau against the repeated assignments.
    expected = F.cross_entropy(torch.cat([s1, s2]) / 0.1, targets.repeat(2))
    value = 0.5 * (fn.deepcluster_loss(s1, targets, 0.1) + fn.deepcluster_loss(s2, targets, 0.1))
    assert float(value) == pytest.approx(float(expected), rel=1e-12)
    manual = -sum(float(F.log_softmax(s1[i] / 0.1, dim=0)[targets[i]]) for i in range(8)) / 8
    assert float(fn.deepcluster_loss(s1, targets, 0.1)) == pytest.approx(manual, rel=1e-12)


def _clustered(seed: int, per: int = 20, k: int = 4, d: int = 6):
    g = torch.Generator().manual_seed(seed)
    centers = F.normalize(torch.randn(k, d, generator=g), dim=1) * 10
    x = torch.cat([centers[i] + 0.3 * torch.randn(per, d, generator=g) for i in range(k)])
    return x, torch.arange(k).repeat_interleave(per)


def test_assign_clusters_matches_brute_force_in_chunks(monkeypatch):
    from er_core.objectives import deepcluster
    x, c = _randn(50, 4, seed=17), _randn(6, 4, seed=18)
    expected = torch.tensor([int(np.argmax([float(F.normalize(r, dim=0) @ F.normalize(cc, dim=0)) for cc in c]))
                             for r in x])
    monkeypatch.setattr(deepcluster, "ASSIGN_CHUNK", 7)
    assignments = assign_clusters(x, c)
    assert assignments.dtype == torch.long and torch.equal(assignments, expected)


def test_kmeans_recovers_separated_clusters_and_is_deterministic():
    x, labels = _clustered(0)
    centroids, assignments = kmeans(x, 4, 10, generator=torch.Generator().manual_seed(3))
    again = kmeans(x, 4, 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(again[0], centroids) and torch.equal(again[1], assignments)
    assert torch.allclose(centroids.norm(dim=1), torch.ones(4))
    assert torch.equal(assignments, assign_clusters(x, centroids))
    # Each true cluster maps to exactly one k-means cluster (a relabelling).
    pairs = {(int(a), int(b)) for a, b in zip(labels, assignments)}
    assert len(pairs) == 4 and len({b for _, b in pairs}) == 4


def test_kmeans_reseeds_empty_clusters():
    base = F.normalize(_randn(3, 5, seed=19).float(), dim=1)
    x = base.repeat(10, 1)  # only 3 distinct points: the initial duplicates leave clusters empty
    centroids, assignments = kmeans(x, 5, 3, generator=torch.Generator().manual_seed(0))
    assert centroids.shape == (5, 5) and torch.isfinite(centroids).all()
    assert torch.allclose(centroids.norm(dim=1), torch.ones(5))
    # Every centroid sits on one of the three distinct points (an empty one was re-seeded with a row).
    distances = (centroids[:, None, :] - base[None, :, :]).norm(dim=2)
    assert torch.all(distances.min(dim=1).values < 1e-5)
    assert torch.all((x - centroids[assignments]).norm(dim=1) < 1e-5)  # each row sits on its centroid


# ---------------------------------------------------------------- ER terms


def test_simclr_er_terms_equal_estimators_on_normalised_views():
    z1, z2 = _randn(10, 8, seed=20), _randn(10, 8, seed=21)
    r, h = fn.simclr_er(3 * z1, z2, 5.0)
    n1, n2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    assert float(r) == pytest.approx(float(vmf_reconstruction(n1, n2, 5.0)), rel=1e-12)
    per_view = 0.5 * (kde_entropy(n1, 5.0) + kde_entropy(n2, 5.0))  # not H(z1 u z2)
    assert float(h) == pytest.approx(float(per_view), rel=1e-12)
    assert float(h) != pytest.approx(float(kde_entropy(torch.cat([n1, n2]), 5.0)), rel=1e-3)
    r_same, _ = fn.simclr_er(z1, z1, 5.0)
    assert float(r_same) == pytest.approx(-vmf_log_normalizer(8, 5.0) - 5.0, rel=1e-12)


def test_byol_er_terms_and_stop_gradient():
    z1, z2 = _randn(6, 4, seed=26).requires_grad_(True), _randn(6, 4, seed=27).requires_grad_(True)
    p1, p2 = _randn(6, 4, seed=22).requires_grad_(True), _randn(6, 4, seed=23).requires_grad_(True)
    t1, t2 = _randn(6, 4, seed=24).requires_grad_(True), _randn(6, 4, seed=25).requires_grad_(True)
    r, h = fn.byol_er(z1, z2, p1, p2, t1, t2, 2.0)
    n = lambda v: F.normalize(v.detach(), dim=1)  # noqa: E731
    expected_r = 0.5 * (vmf_reconstruction(n(p1), n(t2), 2.0) + vmf_reconstruction(n(p2), n(t1), 2.0))
    # the entropy of each view's online projection (the variable the bound names), not of pred(z)
    expected_h = 0.5 * (kde_entropy(n(z1), 2.0) + kde_entropy(n(z2), 2.0))
    assert float(r.detach()) == pytest.approx(float(expected_r))
    assert float(h.detach()) == pytest.approx(float(expected_h))
    (r - h).backward()
    assert t1.grad is None and t2.grad is None and p1.grad.abs().sum() > 0 and z1.grad.abs().sum() > 0
    p1.grad = None
    _, h_only = fn.byol_er(z1, z2, p1, p2, t1, t2, 2.0)
    h_only.backward()
    assert p1.grad is None  # Ĥ does not depend on the predictor outputs


def _pull_cancelled(entropy, n1, n2, kappa):
    """Share of the reconstruction's pull of each view towards its positive that the entropy
    term's gradient (descent on -H) undoes, along the tangent from n1_i to n2_i (and back)."""
    n1, n2 = n1.clone().requires_grad_(True), n2.clone().requires_grad_(True)
    g_r = torch.autograd.grad(vmf_reconstruction(n1, n2, kappa), (n1, n2))
    g_h = torch.autograd.grad(entropy(n1, n2), (n1, n2))

    def towards(a, b):
        return F.normalize(b - (a * b).sum(1, keepdim=True) * a, dim=1)

    directions = (towards(n1.detach(), n2.detach()), towards(n2.detach(), n1.detach()))
    pull = sum((-g * u).sum() for g, u in zip(g_r, directions))
    push = sum((g * u).sum() for g, u in zip(g_h, directions))
    return float(-push / pull)


def test_simclr_er_entropy_per_view_does_not_cancel_the_reconstruction_pull():
    g = torch.Generator().manual_seed(0)
    z1 = F.normalize(torch.randn(256, 128, generator=g, dtype=torch.float64), dim=1)
    z2 = F.normalize(z1 + 0.04 * torch.randn(256, 128, generator=g, dtype=torch.float64), dim=1)
    assert float((z1 * z2).sum(1).mean()) == pytest.approx(0.91, abs=0.01)
    pooled = _pull_cancelled(lambda a, b: kde_entropy(torch.cat([a, b]), 10.0), z1, z2, 10.0)
    per_view = _pull_cancelled(lambda a, b: fn.simclr_er(a, b, 10.0)[1], z1, z2, 10.0)
    assert pooled == pytest.approx(0.28, abs=0.03)  # the old pooled H(z1 u z2)
    assert abs(per_view) < 0.01


def test_dino_er_reconstruction_is_uncentred_dino_loss_and_entropy_of_student_mean():
    s1, s2, t1, t2 = (_randn(8, 6, seed=s) for s in (26, 27, 28, 29))
    r, h = fn.dino_er(s1, s2, t1, t2, 0.1, 0.04)
    zero = torch.zeros(1, 6, dtype=torch.float64)
    expected = 0.5 * (fn.dino_loss(s1, t2, zero, 0.1, 0.04) + fn.dino_loss(s2, t1, zero, 0.1, 0.04))
    assert float(r) == pytest.approx(float(expected), rel=1e-12)
    mean = lambda s: F.softmax(s / 0.1, dim=1).mean(0)  # noqa: E731
    expected_h = 0.5 * sum(float(-(m * m.log()).sum()) for m in (mean(s1), mean(s2)))
    assert float(h) == pytest.approx(expected_h, rel=1e-12)


def test_swav_er_targets_are_other_views_sharpened_softmax_under_stop_gradient():
    s1, s2 = _randn(8, 6, seed=30).requires_grad_(True), _randn(8, 6, seed=31)
    r, h = fn.swav_er(s1, s2, 0.1, 0.05)
    q1, q2 = F.softmax(s1.detach() / 0.05, dim=1), F.softmax(s2 / 0.05, dim=1)
    ce = lambda q, s: float(-(q * F.log_softmax(s / 0.1, dim=1)).sum(1).mean())  # noqa: E731
    assert float(r.detach()) == pytest.approx(0.5 * (ce(q1, s2) + ce(q2, s1.detach())), rel=1e-12)
    # Identical views with no sharpening: the reconstruction is the mean per-sample entropy.
    r_same, _ = fn.swav_er(s2, s2, 0.1, 0.1)
    p = F.softmax(s2 / 0.1, dim=1)
    assert float(r_same) == pytest.approx(float(-(p * p.log()).sum(1).mean()), rel=1e-12)


def test_deepcluster_er_terms():
    s1, s2 = _randn(8, 5, seed=32), _randn(8, 5, seed=33)
    targets = torch.arange(8) % 5
    r, h = fn.deepcluster_er(s1, s2, targets, 0.2)
    expected_r = 0.5 * (fn.deepcluster_loss(s1, targets, 0.2) + fn.deepcluster_loss(s2, targets, 0.2))
    assert float(r) == pytest.approx(float(expected_r), rel=1e-12)
    assert float(h) <= math.log(5) and float(h) > 0


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("call,match", [
    (lambda: fn.info_nce(torch.ones(4, 3), torch.ones(4, 3), 0.0), "temperature must be"),
    (lambda: fn.info_nce(torch.ones(4, 3), torch.ones(3, 3), 0.1), "same shape"),
    (lambda: fn.byol_loss(torch.ones(4, 3), torch.ones(4, 2)), "same shape"),
    (lambda: fn.dino_loss(torch.ones(4, 3), torch.ones(4, 3), torch.zeros(1, 2), 0.1, 0.04), "center must"),
    (lambda: fn.dino_loss(torch.ones(4, 3), torch.ones(4, 3), torch.zeros(1, 3), 0.1, -1.0), "teacher_temp"),
    (lambda: fn.sinkhorn(torch.ones(4, 3), 0.0, 3), "epsilon must be"),
    (lambda: fn.sinkhorn(torch.ones(4, 3), 0.05, 0), "iterations must be"),
    (lambda: fn.deepcluster_loss(torch.ones(4, 3), torch.zeros(3, dtype=torch.long), 0.1), "targets"),
    (lambda: kmeans(torch.ones(4, 3), 5, 3), "k must be"),
    (lambda: assign_clusters(torch.ones(4, 3), torch.ones(2, 4)), "centroids must be"),
])
def test_invalid_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
