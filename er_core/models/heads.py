"""Projector / predictor MLPs, the prototype layer, and the student network that composes them."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from er_core.config import TrialConfig
from er_core.models.backbones import build_backbone
from er_core.objectives import objective_class


class MLP(nn.Sequential):
    """Linear-BN-ReLU-Linear (SimCLR's projector, BYOL's projector and predictor)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                         nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


class Prototypes(nn.Module):
    """K prototypes; scores are cosines ``normalize(z) @ normalize(W)^T`` in [-1, 1] (B x K).

    As SwAV's normalised prototypes and DINO's weight-normalised last layer with ``norm_last_layer``.
    An objective whose recipe sets the prototypes itself declares ``trainable_prototypes = False``
    (DeepCluster-v2 overwrites them with the k-means centroids each epoch): no gradient, so the
    optimiser holds no weight decay or momentum for them, and between two k-means runs they stay
    exactly the centroids the targets were assigned to.

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
    """The student that ``config.objective`` declares: a predictor if it ``needs_predictor``, prototypes
    if it ``needs_prototypes`` (frozen unless ``trainable_prototypes``)."""
    needs = objective_class(config.objective)
    backbone = build_backbone(config.backbone_name, config.image_size)
    dim, hidden = config.projector_dim, config.projector_hidden_dim
    projector = MLP(backbone.feature_dim, hidden, dim)
    predictor = MLP(dim, hidden, dim) if needs.needs_predictor else None
    prototypes = (Prototypes(dim, config.num_prototypes, trainable=needs.trainable_prototypes)
                  if needs.needs_prototypes else None)
    return SSLNetwork(backbone, projector, predictor, prototypes)
