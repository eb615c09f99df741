"""Projector / predictor MLPs, the prototype layer, and the student network that composes them."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from er_tune.config import TrialConfig
from er_tune.models.backbones import build_backbone


class MLP(nn.Sequential):
    """Linear-BN-ReLU-Linear (SimCLR's projector, BYOL's projector and predictor)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                         nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


class Prototypes(nn.Module):
    """K prototypes; scores are cosines ``normalize(z) @ normalize(W)^T`` in [-1, 1] (B x K).

    As SwAV's normalised prototypes and DINO's weight-normalised last layer with ``norm_last_layer``.
    DeepCluster-v2 overwrites the prototypes with the k-means centroids each epoch and never trains
    them (``trainable=False``: no gradient, so the optimiser holds no weight decay or momentum for
    them): between two k-means runs they stay exactly the centroids the targets were assigned to.

    Args:
        dim: projection dimension; num_prototypes: K; trainable: whether the weights get gradients.
    """

    def __init__(self, dim: int, num_prototypes: int, trainable: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_prototypes, dim) / dim ** 0.5, requires_grad=trainable)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=1) @ F.normalize(self.weight, dim=1).transpose(0, 1)

    @torch.no_grad()
    def normalize_(self) -> None:
        """Rescale each prototype to unit L2 norm in place (SwAV does so before every step)."""
        self.weight.copy_(F.normalize(self.weight, dim=1))

    @torch.no_grad()
    def set_weights(self, centroids: torch.Tensor) -> None:
        if centroids.shape != self.weight.shape:
            raise ValueError(f"centroids must have shape {tuple(self.weight.shape)}, got {tuple(centroids.shape)}")
        self.weight.copy_(centroids)


class NetworkOutput(NamedTuple):
    features: torch.Tensor
    z: torch.Tensor
    p: torch.Tensor | None
    scores: torch.Tensor | None


class SSLNetwork(nn.Module):
    """backbone -> projector (z) -> optional predictor (p) and prototypes (scores)."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, predictor: nn.Module | None = None,
                 prototypes: Prototypes | None = None) -> None:
        super().__init__()
        self.backbone, self.projector = backbone, projector
        self.predictor, self.prototypes = predictor, prototypes

    def forward(self, x: torch.Tensor) -> NetworkOutput:
        features = self.backbone(x)
        z = self.projector(features)
        p = self.predictor(z) if self.predictor is not None else None
        scores = self.prototypes(z) if self.prototypes is not None else None
        return NetworkOutput(features, z, p, scores)


def build_network(config: TrialConfig) -> SSLNetwork:
    """The student of ``config.method``: predictor for BYOL, prototypes for the discrete methods
    (frozen for DeepCluster-v2, whose trainer sets them to the k-means centroids each epoch)."""
    backbone = build_backbone(config.backbone_name, config.image_size)
    dim, hidden = config.projector_dim, config.projector_hidden_dim
    projector = MLP(backbone.feature_dim, hidden, dim)
    predictor = MLP(dim, hidden, dim) if config.method == "byol" else None
    # DeepCluster-v2's prototypes are the k-means centroids, never trained (both variants)
    prototypes = (Prototypes(dim, config.num_prototypes, trainable=config.method != "deepcluster")
                  if config.is_discrete else None)
    return SSLNetwork(backbone, projector, predictor, prototypes)
