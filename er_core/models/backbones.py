"""Backbones: image batch [B, 3, H, W] -> feature vectors [B, feature_dim].

``convnet`` is small enough for CPU trials (works at 16x16: larger inputs are average-pooled down
first; 5 conv blocks of 32-128 channels, ~278k parameters);
``resnet_small`` is a small ResNet (learned stride-2 stem, 32-64-512 channels) for the native 28-32 px;
``resnet18_cifar`` is ResNet-18 with a 3x3 stride-1 stem and no max-pool (the usual CIFAR
variant); ``resnet18`` / ``resnet50`` are torchvision's (never pretrained: nothing is downloaded).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from er_core.config import BACKBONE_NAMES, did_you_mean


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConvNet(nn.Module):
    """The CPU backbone: it works at 16x16 whatever the input size. Inputs larger than 16 px are
    area-downsampled (2x2 average pooling, repeated) to at most 16x16, then five 3x3 conv-BN-ReLU
    blocks (32, 64, 64, 128, 128 channels; stride 2 in the first, third and fifth) and global
    average pooling give 128 features.

    Why: at 16x16 the last block's receptive field (27 px) covers the whole object, the cost does
    not grow with ``image_size`` (about 2,200 images/s forward+backward at batch 64 on 2 CPU
    threads), and augmentations still run at full resolution before the anti-aliased reduction.
    Measured on shapes (kNN top-1): with the previous layout (four blocks of 32/64 channels,
    stride-1 stem, receptive field 19 px) BYOL and DINO stayed at 0.15-0.21 (30 epochs at 32x32
    with EMA 0.99; 10 epochs at 16x16 with EMA 0.9). At 32x32 (batch 64, EMA 0.9, 10 epochs),
    learnable stride-2 convolutions in place of the pooling learned SimCLR slightly faster (0.55
    against 0.50) but made DINO unstable (RankMe falling to 5-12, then uniform assignments;
    0.14-0.30 across five variants) where this layout reaches 0.39.
    """

    WORKING_SIZE = 16
    BLOCKS = ((32, 2), (64, 1), (64, 2), (128, 1), (128, 2))  # (out channels, stride)

    def __init__(self, image_size: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size = image_size
        while size > self.WORKING_SIZE:
            layers.append(nn.AvgPool2d(2, ceil_mode=True))
            size = (size + 1) // 2
        channels = 3
        for out_channels, stride in self.BLOCKS:
            layers.append(_conv_block(channels, out_channels, stride))
            channels = out_channels
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class BasicBlock(nn.Module):
    """He et al. 2016 basic block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)), shortcut a
    strided 1x1 conv + BN when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """The CPU backbone for real images at their native 28-32 px.

    A learned 3x3 stride-2 conv stem (32 channels; it sees every input pixel, where ``convnet``
    averages 2x2 blocks away before its first filter), then three stages of ``BLOCKS_PER_STAGE``
    basic blocks with 32, 64, 512 channels (strides 1, 2, 2: 32 px -> 16 -> 16 -> 8 -> 4), global
    average pooling -> 512 features (about 2.8 M parameters, 2.7 M of them in the last stage, which
    runs at 4x4 px).

    Measured on FashionMNIST at 28 px (10,000 training images, SimCLR, batch 64, lr 0.3,
    temperature 0.2, one thread of a loaded 2-core machine): a stride-1 stem (stages at 14, 7, 4 px
    after a full-size 32-channel layer) reached the same kNN top-1 (0.789 against 0.788) at 0.6x the
    speed. The width of the last stage is the width of the features the linear probe sees (raw
    pixels give it 784); after one epoch, linear top-1 0.827 / 0.842 / 0.849 with 128 / 256 / 512
    channels (kNN 0.796 / 0.793 / 0.806) at 160 / 130 / 77 images/s, and 0.856 with 512 after two
    epochs against 0.855 with 256 after three, where 128 channels gained about 0.003 per epoch
    (0.842 after six).
    """

    WIDTHS = (32, 64, 512)
    STRIDES = (1, 2, 2)
    BLOCKS_PER_STAGE = 1

    def __init__(self, image_size: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_block(3, self.WIDTHS[0], 2)]
        channels = self.WIDTHS[0]
        for width, stride in zip(self.WIDTHS, self.STRIDES):
            for index in range(self.BLOCKS_PER_STAGE):
                layers.append(BasicBlock(channels, width, stride if index == 0 else 1))
                channels = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = channels

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


def _torchvision_resnet(name: str) -> nn.Module:
    """torchvision's ResNet ``name`` (random weights). torchvision is imported here, not at module
    load: its import costs ~4.6 s of CPU on a 2-core machine, paid by every trial process."""
    import torchvision.models

    return getattr(torchvision.models, name)(weights=None)


def _resnet18_cifar(image_size: int) -> nn.Module:
    net = _torchvision_resnet("resnet18")
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return TorchvisionBackbone(net, 512)


BACKBONES: dict[str, Callable[[int], nn.Module]] = {
    "convnet": ConvNet,
    "resnet18_cifar": _resnet18_cifar,
    "resnet18": lambda image_size: TorchvisionBackbone(_torchvision_resnet("resnet18"), 512),
    "resnet50": lambda image_size: TorchvisionBackbone(_torchvision_resnet("resnet50"), 2048),
    "resnet_small": SmallResNet,
}
if tuple(BACKBONES) != BACKBONE_NAMES:  # the torch-free names configs are checked against
    raise ImportError(f"er_core.models.BACKBONES {tuple(BACKBONES)} differs from "
                      f"er_core.config.BACKBONE_NAMES {BACKBONE_NAMES}")


def build_backbone(name: str, image_size: int) -> nn.Module:
    """Instantiate a registered backbone; unknown names raise ValueError listing the known ones."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}'{did_you_mean(name, list(BACKBONES))}; "
                         f"known: {', '.join(BACKBONES)}")
    return BACKBONES[name](image_size)
