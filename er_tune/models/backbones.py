"""Backbones: image batch [B, 3, H, W] -> feature vectors [B, feature_dim].

``convnet`` is small enough for CPU trials (4 conv blocks, 32/64 channels, ~66k parameters);
``resnet18_cifar`` is ResNet-18 with a 3x3 stride-1 stem and no max-pool (the usual CIFAR
variant); ``resnet18`` / ``resnet50`` are torchvision's (never pretrained: nothing is downloaded).
"""

from __future__ import annotations

from typing import Callable

import torch
import torchvision
from torch import nn

from er_tune.config import did_you_mean


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConvNet(nn.Module):
    """Four 3x3 conv-BN-ReLU blocks (32, 32, 64, 64 channels; stride 2 in blocks 2 and 4), GAP."""

    def __init__(self, image_size: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(_conv_block(3, 32, 1), _conv_block(32, 32, 2),
                                      _conv_block(32, 64, 1), _conv_block(64, 64, 2),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = 64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class TorchvisionBackbone(nn.Module):
    """A torchvision ResNet with its classifier removed (``fc = Identity``)."""

    def __init__(self, net: nn.Module, feature_dim: int) -> None:
        super().__init__()
        net.fc = nn.Identity()
        self.net = net
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _resnet18_cifar(image_size: int) -> nn.Module:
    net = torchvision.models.resnet18(weights=None)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return TorchvisionBackbone(net, 512)


BACKBONES: dict[str, Callable[[int], nn.Module]] = {
    "convnet": ConvNet,
    "resnet18_cifar": _resnet18_cifar,
    "resnet18": lambda image_size: TorchvisionBackbone(torchvision.models.resnet18(weights=None), 512),
    "resnet50": lambda image_size: TorchvisionBackbone(torchvision.models.resnet50(weights=None), 2048),
}


def build_backbone(name: str, image_size: int) -> nn.Module:
    """Instantiate a registered backbone; unknown names raise ValueError listing the known ones."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}'{did_you_mean(name, list(BACKBONES))}; "
                         f"known: {', '.join(BACKBONES)}")
    return BACKBONES[name](image_size)
