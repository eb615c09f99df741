"""Estimators of the ER bound: vMF normaliser against mpmath, KDE entropy, reconstruction, discrete terms."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import special, stats

from er_core.estimators import (discrete_entropy, discrete_reconstruction, kde_entropy, kde_log_density,
                                log_bessel_iv, sphere_max_entropy, vmf_log_normalizer, vmf_reconstruction)

GRID_DIMS = [2, 3, 4, 16, 64, 65, 128, 256, 1024, 2048, 4095, 4096]
GRID_KAPPAS = [float(k) for k in np.logspace(-2, 4, 15)]


def _mp_log_normalizer(dim: int, kappa: float) -> float:
    with mpmath.workdps(40):
        nu = mpmath.mpf(dim) / 2 - 1
        k = mpmath.mpf(kappa)
        value = nu * mpmath.log(k) - mpmath.mpf(dim) / 2 * mpmath.log(2 * mpmath.pi) - mpmath.log(mpmath.besseli(nu, k))
        return float(value)


def _log_c3(kappa: float) -> float:
    """Closed form on S^2: C_3 = kappa / (4 pi sinh kappa), log sinh computed stably."""
    log_sinh = kappa + math.log1p(-math.exp(-2.0 * kappa)) - math.log(2.0)
    return math.log(kappa) - math.log(4.0 * math.pi) - log_sinh


def _uniform_sphere(n: int, d: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)


def _rotation(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


# ---------------------------------------------------------------- vMF normaliser


def test_vmf_log_normalizer_matches_mpmath_on_grid():
    worst = 0.0
    for dim in GRID_DIMS:
        for kappa in GRID_KAPPAS:
            reference = _mp_log_normalizer(dim, kappa)
            value = vmf_log_normalizer(dim, kappa)
            assert math.isfinite(value)
            worst = max(worst, abs(value - reference) / abs(reference))
    assert worst <= 1e-6, f"max relative error {worst:.3g}"


def test_grid_covers_where_scipy_iv_underflows_and_overflows():
    # The naive log(iv(...)) is unusable at these points; ours still matches mpmath there.
    assert special.iv(2047.0, 0.01) == 0.0
    assert special.iv(0.0, 1e4) == math.inf
    for dim, kappa in [(4096, 0.01), (4096, 100.0), (2048, 10.0), (2, 1e4), (3, 1e4)]:
        reference = _mp_log_normalizer(dim, kappa)
        assert abs(vmf_log_normalizer(dim, kappa) - reference) <= 1e-6 * abs(reference)


@pytest.mark.parametrize("nu,x", [(2047.0, 0.01), (500.0, 3.0),       # power series
                                  (2047.0, 100.0), (1500.0, 800.0),   # Debye expansion
                                  (0.0, 0.01), (31.0, 10.0), (0.5, 1e4)])  # scipy ive
def test_log_bessel_iv_each_branch_matches_mpmath(nu, x):
    with mpmath.workdps(40):
        reference = float(mpmath.log(mpmath.besseli(nu, x)))
    assert log_bessel_iv(nu, x) == pytest.approx(reference, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("kappa", [0.01, 0.7, 5.0, 80.0, 1e4])
def test_vmf_log_normalizer_closed_form_on_s2(kappa):
    assert vmf_log_normalizer(3, kappa) == pytest.approx(_log_c3(kappa), rel=1e-10)


@pytest.mark.parametrize("dim", [2, 3, 10, 512])
def test_small_kappa_tends_to_uniform_density(dim):
    assert vmf_log_normalizer(dim, 1e-9) == pytest.approx(-sphere_max_entropy(dim), abs=1e-8)


def test_sphere_max_entropy_closed_forms():
    assert sphere_max_entropy(2) == pytest.approx(math.log(2 * math.pi))
    assert sphere_max_entropy(3) == pytest.approx(math.log(4 * math.pi))
    assert sphere_max_entropy(4) == pytest.approx(math.log(2 * math.pi ** 2))


# ---------------------------------------------------------------- KDE entropy


def _loop_kde_entropy_s2(z: torch.Tensor, kappa: float, leave_one_out: bool) -> float:
    """Straightforward loop on S^2 with the closed-form constant."""
    c = math.exp(_log_c3(kappa))
    rows = z.tolist()
    total = 0.0
    for i, zi in enumerate(rows):
        others = [zj for j, zj in enumerate(rows) if not (leave_one_out and j == i)]
        density = sum(c * math.exp(kappa * sum(a * b for a, b in zip(zi, zj))) for zj in others) / len(others)
        total += math.log(density)
    return -total / len(rows)


@pytest.mark.parametrize("leave_one_out", [False, True])
@pytest.mark.parametrize("kappa", [0.5, 4.0, 30.0])
def test_kde_entropy_matches_loop_reference(kappa, leave_one_out):
    g = torch.Generator().manual_seed(1)
    z = F.normalize(torch.randn(12, 3, generator=g, dtype=torch.float64) + torch.tensor([1.5, 0, 0]), dim=1)
    expected = _loop_kde_entropy_s2(z, kappa, leave_one_out)
    assert float(-kde_log_density(z, kappa, leave_one_out=leave_one_out).mean()) == pytest.approx(expected, rel=1e-10)
    assert expected < math.log(4 * math.pi)  # so the clamp is inactive here
    assert float(kde_entropy(z, kappa, leave_one_out=leave_one_out)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("leave_one_out", [False, True])
@pytest.mark.parametrize("kappa", [0.5, 10.0])
def test_kde_log_density_gradient_matches_plain_autograd(kappa, leave_one_out):
    """The fused Gram-logsumexp backward equals autograd through logsumexp(kappa z z^T)."""
    g = torch.Generator().manual_seed(2)
    raw = torch.randn(9, 5, generator=g, dtype=torch.float64)
    weights = torch.randn(9, generator=g, dtype=torch.float64)
    z = F.normalize(raw, dim=1).requires_grad_(True)
    (kde_log_density(z, kappa, leave_one_out=leave_one_out) * weights).sum().backward()
    reference = F.normalize(raw, dim=1).requires_grad_(True)
    logits = kappa * reference @ reference.T
    if leave_one_out:
        logits = logits.masked_fill(torch.eye(9, dtype=torch.bool), float("-inf"))
    (torch.logsumexp(logits, dim=1) * weights).sum().backward()
    assert torch.allclose(z.grad, reference.grad, rtol=1e-12, atol=1e-12)
    unit = F.normalize(raw, dim=1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: kde_log_density(x, kappa, leave_one_out=leave_one_out), (unit,))


@pytest.mark.parametrize("dim", [3, 16])
def test_kde_entropy_of_uniform_points_with_small_kappa_approaches_uniform_entropy(dim):
    z = _uniform_sphere(2000, dim, seed=dim)
    # Entropy of the uniform density = log surface area, computed here independently.
    surface = 2 * math.pi ** (dim / 2) / math.gamma(dim / 2)
    value = float(kde_entropy(z, 0.1))
    assert value <= math.log(surface) + 1e-12
    assert value == pytest.approx(math.log(surface), abs=1e-2)


def test_kde_entropy_never_above_maximum():
    for seed, (n, dim) in enumerate([(2, 2), (5, 3), (64, 128), (256, 2048), (3, 4096)]):
        z = _uniform_sphere(n, dim, seed)
        for kappa in [1e-3, 0.1, 1.0, 10.0, 1000.0]:
            for loo in (False, True):
                assert float(kde_entropy(z, kappa, leave_one_out=loo)) <= sphere_max_entropy(dim) + 1e-9


def test_clamp_binds_on_antipodal_pair_with_leave_one_out():
    z = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]], dtype=torch.float64)
    kappa = 3.0
    unclamped = float(-kde_log_density(z, kappa, leave_one_out=True).mean())
    assert unclamped == pytest.approx(kappa - _log_c3(kappa), rel=1e-12)  # density C e^{-kappa}
    assert unclamped > math.log(4 * math.pi)
    assert float(kde_entropy(z, kappa, leave_one_out=True)) == pytest.approx(math.log(4 * math.pi))


def test_collapsed_batch_gives_closed_form_and_much_lower_entropy():
    dim, kappa = 8, 5.0
    collapsed = F.normalize(torch.ones(256, dim, dtype=torch.float64), dim=1)
    spread = _uniform_sphere(256, dim, seed=3)
    value = float(kde_entropy(collapsed, kappa))
    assert value == pytest.approx(-vmf_log_normalizer(dim, kappa) - kappa, rel=1e-12)
    # The resubstitution estimate spans at most log B above the collapsed value; uniform points use most of it.
    assert float(kde_entropy(spread, kappa)) - value > 0.6 * math.log(256)


def test_kde_entropy_permutation_and_rotation_invariant():
    z = _uniform_sphere(40, 8, seed=5)
    base = kde_entropy(z, 5.0)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(kde_entropy(z[perm], 5.0), base, rtol=0, atol=1e-12)
    rotated = z @ _rotation(8, seed=2).T
    assert torch.allclose(kde_entropy(rotated, 5.0), base, rtol=0, atol=1e-10)


def test_kde_entropy_float32_agrees_with_float64_and_has_gradients():
    z64 = _uniform_sphere(64, 32, seed=7)
    z32 = z64.float().requires_grad_(True)
    value32 = kde_entropy(z32, 10.0)
    assert value32.dtype == torch.float32
    assert float(value32.detach()) == pytest.approx(float(kde_entropy(z64, 10.0)), rel=1e-5)
    value32.backward()
    assert torch.isfinite(z32.grad).all() and z32.grad.abs().sum() > 0


def test_non_finite_input_propagates_instead_of_raising():
    z = _uniform_sphere(4, 3, seed=0).clone()
    z[1] = float("nan")
    assert math.isnan(float(kde_entropy(z, 1.0)))


# ---------------------------------------------------------------- reconstruction


def test_vmf_reconstruction_closed_form_symmetry_and_reference():
    dim, kappa = 16, 7.0
    z1, z2 = _uniform_sphere(10, dim, 0), _uniform_sphere(10, dim, 1)
    log_c = vmf_log_normalizer(dim, kappa)
    expected = -sum(log_c + kappa * float(a @ b) for a, b in zip(z1, z2)) / 10
    assert float(vmf_reconstruction(z1, z2, kappa)) == pytest.approx(expected, rel=1e-12)
    assert float(vmf_reconstruction(z2, z1, kappa)) == pytest.approx(expected, rel=1e-12)
    assert float(vmf_reconstruction(z1, z1, kappa)) == pytest.approx(-log_c - kappa, rel=1e-12)
    assert float(vmf_reconstruction(z1, -z1, kappa)) == pytest.approx(-log_c + kappa, rel=1e-12)


# ---------------------------------------------------------------- discrete support


def test_discrete_entropy_closed_forms():
    k = 6
    assert float(discrete_entropy(torch.eye(k, dtype=torch.float64))) == pytest.approx(math.log(k))
    assert float(discrete_entropy(torch.full((3, k), 1.0 / k))) == pytest.approx(math.log(k), rel=1e-6)
    one_hot = torch.zeros(5, k, dtype=torch.float64)
    one_hot[:, 2] = 1.0
    assert float(discrete_entropy(one_hot)) == 0.0


def test_discrete_entropy_matches_scipy_and_falls_as_assignments_collapse():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(20, 7, generator=g, dtype=torch.float64), dim=1)
    assert float(discrete_entropy(p)) == pytest.approx(stats.entropy(p.mean(0).numpy()), rel=1e-12)
    values = [float(discrete_entropy(torch.softmax(torch.randn(20, 7, generator=g) + s * torch.eye(7)[0], dim=1)))
              for s in (0.0, 3.0, 10.0)]
    assert values[0] > values[1] > values[2]


def test_discrete_reconstruction_closed_forms_and_reference():
    one_hot = torch.eye(4, dtype=torch.float64)
    assert float(discrete_reconstruction(one_hot, one_hot)) == 0.0
    g = torch.Generator().manual_seed(0)
    target = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1)
    p = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1)
    expected = -sum(float((t * p_.log()).sum()) for t, p_ in zip(target, p)) / 5
    assert float(discrete_reconstruction(target, p)) == pytest.approx(expected, rel=1e-12)
    uniform = torch.full((5, 4), 0.25, dtype=torch.float64)
    assert float(discrete_reconstruction(target, uniform)) == pytest.approx(math.log(4))


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("call,match", [
    (lambda: vmf_log_normalizer(1, 1.0), "dim must be an integer >= 2"),
    (lambda: vmf_log_normalizer(2.5, 1.0), "dim must be an integer >= 2"),
    (lambda: vmf_log_normalizer(3, 0.0), "kappa must be a finite number > 0"),
    (lambda: vmf_log_normalizer(3, -1.0), "kappa must be a finite number > 0"),
    (lambda: vmf_log_normalizer(3, float("nan")), "kappa must be a finite number > 0"),
    (lambda: sphere_max_entropy(1), "dim must be an integer >= 2"),
    (lambda: kde_entropy(torch.ones(3), 1.0), "2-D tensor"),
    (lambda: kde_entropy(torch.ones(3, 4), 1.0), "L2-normalised rows"),
    (lambda: kde_entropy(F.normalize(torch.ones(3, 4), dim=1), 0.0), "kappa must be"),
    (lambda: kde_entropy(F.normalize(torch.ones(1, 4), dim=1), 1.0, leave_one_out=True), "at least 2 row"),
    (lambda: vmf_reconstruction(F.normalize(torch.ones(3, 4), dim=1), F.normalize(torch.ones(2, 4), dim=1), 1.0),
     "same shape"),
    (lambda: vmf_reconstruction(torch.ones(3, 4), F.normalize(torch.ones(3, 4), dim=1), 1.0), "L2-normalised"),
    (lambda: discrete_entropy(torch.ones(3, 4)), "probability vectors"),
    (lambda: discrete_entropy(torch.ones(4)), "2-D tensor"),
    (lambda: discrete_reconstruction(torch.eye(3), torch.eye(4)[:3]), "same shape"),
    (lambda: log_bessel_iv(1.0, 0.0), "x > 0"),
])
def test_invalid_inputs_raise_value_error_saying_what_is_expected(call, match):
    with pytest.raises(ValueError, match=match):
        call()
