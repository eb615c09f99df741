"""Linear probe: separable features, random labels, determinism, a case where it must beat kNN."""

import math

import pytest
import torch

from trainers.evaluation import knn_top1
from trainers.linear_probe import fit_logistic_regression, linear_probe, linear_top1, standardize


def blobs(n: int, num_classes: int, dim: int, separation: float, seed: int, noise_seed: int = 0):
    """Unit-variance Gaussian blobs around class centres drawn from ``seed``."""
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(seed)) * separation
    labels = torch.arange(n) % num_classes
    noise = torch.randn(n, dim, generator=torch.Generator().manual_seed(1000 + noise_seed))
    return centres[labels] + noise, labels


def test_linearly_separable_features_are_classified_perfectly():
    bank, bank_y = blobs(200, 4, 8, separation=6.0, seed=0)
    query, query_y = blobs(200, 4, 8, separation=6.0, seed=0, noise_seed=1)
    result = linear_probe(bank, bank_y, query, query_y, num_classes=4)
    assert result.top1 == pytest.approx(1.0, abs=0.01)
    assert result.l2 in result.holdout_top1 and max(result.holdout_top1.values()) >= 0.99


def test_random_labels_give_chance():
    generator = torch.Generator().manual_seed(0)
    bank, query = torch.randn(1000, 32, generator=generator), torch.randn(2000, 32, generator=generator)
    bank_y = torch.randint(0, 5, (1000,), generator=generator)
    query_y = torch.randint(0, 5, (2000,), generator=generator)
    top1 = linear_top1(bank, bank_y, query, query_y, num_classes=5)
    assert abs(top1 - 0.2) < 0.04  # chance 0.2; the std of the accuracy of 2000 guesses is 0.009


def test_is_deterministic_and_ignores_the_order_of_calls():
    bank, bank_y = blobs(300, 3, 8, separation=0.5, seed=3)
    query, query_y = blobs(150, 3, 8, separation=0.5, seed=3, noise_seed=1)
    first = linear_probe(bank, bank_y, query, query_y, num_classes=3)
    torch.randn(100)  # the global RNG is not used
    second = linear_probe(bank, bank_y, query, query_y, num_classes=3)
    assert first == second
    assert 0.4 < first.top1 < 1.0  # overlapping classes: informative, not trivial


def test_beats_knn_when_the_class_lives_in_one_low_variance_direction():
    """Class = sign of feature 0 (scale 1); 31 other features are noise with std 10. Cosine kNN sees
    mostly noise; the standardised linear probe finds the one useful direction."""
    generator = torch.Generator().manual_seed(0)

    def make(n):
        labels = torch.randint(0, 2, (n,), generator=generator)
        x = torch.randn(n, 32, generator=generator) * 10.0
        x[:, 0] = (labels * 2 - 1).float() + 0.3 * torch.randn(n, generator=generator)
        return x, labels

    (bank, bank_y), (query, query_y) = make(1000), make(1000)
    knn = knn_top1(bank, bank_y, query, query_y, k=20, temperature=0.07, num_classes=2)
    linear = linear_top1(bank, bank_y, query, query_y, num_classes=2)
    assert knn < 0.65 and linear > 0.98, (knn, linear)


def test_logistic_regression_solves_the_regularised_problem():
    """At the optimum the gradient of mean CE + l2/2 ||W||² vanishes (checked in float64)."""
    bank, labels = blobs(200, 3, 5, separation=1.0, seed=5)
    x = standardize(bank.double())[0]
    weight, bias = fit_logistic_regression(x, labels, num_classes=3, l2=1e-2)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(x @ weight.T + bias, labels) + 0.005 * weight.pow(2).sum()
    grads = torch.autograd.grad(loss, (weight, bias))
    assert max(float(g.abs().max()) for g in grads) < 1e-5


def test_degenerate_and_bad_input():
    constant = torch.ones(50, 4)
    labels = torch.arange(50) % 2
    assert linear_top1(constant, labels, constant[:20], labels[:20], num_classes=2) == pytest.approx(0.5)
    nan = torch.full((50, 4), math.nan)
    assert linear_top1(nan, labels, nan[:20], labels[:20], num_classes=2) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same number of rows"):
        linear_top1(constant, labels[:10], constant, labels, num_classes=2)
    with pytest.raises(ValueError, match="l2_grid"):
        linear_top1(constant, labels, constant, labels, num_classes=2, l2_grid=(0.0,))
