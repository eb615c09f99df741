"""kNN evaluator: hand-computable votes and feature extraction mode handling."""
import torch
from torch import nn

from trainers.evaluation import knn_predict, knn_top1


def test_separated_clusters_score_one():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4) * 10
    bank_labels = torch.arange(4).repeat(25)
    bank = centres[bank_labels] + 0.1 * torch.randn(100, 4, generator=g)
    query_labels = torch.arange(4).repeat(5)
    query = centres[query_labels] + 0.1 * torch.randn(20, 4, generator=g)
    assert knn_top1(bank, bank_labels, query, query_labels, k=5, num_classes=4) == 1.0


def test_temperature_weighting_overrides_majority():
    # One bank point of class 0 is identical to the query (sim 1); two of class 1 have sim 0.6.
    bank = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, 0.8]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.0]])
    # exp(1/0.07) > 2 exp(0.6/0.07): the single closest neighbour wins.
    assert knn_predict(bank, labels, query, k=3, temperature=0.07, num_classes=2).tolist() == [0]
    # With a large temperature weights are ~equal: 1 * e^(1/10) < 2 * e^(0.06): majority wins.
    assert knn_predict(bank, labels, query, k=3, temperature=10.0, num_classes=2).tolist() == [1]


def test_k_larger_than_bank_and_accuracy_fraction():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    query = torch.tensor([[1.0, 0.1], [0.1, 1.0], [1.0, 0.2]])
    query_labels = torch.tensor([0, 1, 1])
    assert abs(knn_top1(bank, labels, query, query_labels, k=50, num_classes=2) - 2 / 3) < 1e-6
