"""kNN evaluation of frozen features (pure torch).

Weighted kNN as in Wu et al. 2018 (InstDisc) and DINO's ``eval_knn``: cosine similarity between
L2-normalised features, the k most similar bank samples vote for their label with weight
``exp(sim / T)``, and the class with the largest total wins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

QUERY_CHUNK = 1024


@torch.no_grad()
def knn_predict(bank_features: torch.Tensor, bank_labels: torch.Tensor, query_features: torch.Tensor, *,
                k: int = 20, temperature: float = 0.07, num_classes: int) -> torch.Tensor:
    """Predicted class of every query [Q] (k is capped at the bank size)."""
    if bank_features.shape[0] != bank_labels.shape[0]:
        raise ValueError("bank_features and bank_labels must have the same number of rows")
    if k < 1 or temperature <= 0:
        raise ValueError(f"knn needs k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    bank = F.normalize(bank_features.float(), dim=1)
    labels = bank_labels.to(bank.device).long()
    k = min(k, bank.shape[0])
    predictions = []
    for chunk in query_features.float().split(QUERY_CHUNK):
        similarity = F.normalize(chunk.to(bank.device), dim=1) @ bank.T
        top_sim, top_index = similarity.topk(k, dim=1)
        votes = torch.zeros(chunk.shape[0], num_classes, device=bank.device)
        votes.scatter_add_(1, labels[top_index], torch.exp(top_sim / temperature))
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


@torch.no_grad()
def knn_top1(bank_features: torch.Tensor, bank_labels: torch.Tensor, query_features: torch.Tensor,
             query_labels: torch.Tensor, *, k: int = 20, temperature: float = 0.07, num_classes: int) -> float:
    """Top-1 accuracy of :func:`knn_predict` on the labelled queries."""
    predicted = knn_predict(bank_features, bank_labels, query_features, k=k, temperature=temperature,
                            num_classes=num_classes)
    return float((predicted == query_labels.to(predicted.device)).float().mean())

