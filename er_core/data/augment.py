"""Two augmented views of a uint8 batch on its own device, with per-sample random parameters.

SimCLR/BYOL augmentations — random resized crop, horizontal flip, colour jitter (brightness,
contrast, saturation, hue), grayscale, Gaussian blur, solarisation — applied to the whole batch
in a few vectorised passes, each image with its *own* random parameters (calling torchvision's
transforms on a batch draws one set for all images, which is wrong for SSL). All randomness comes
from the ``torch.Generator`` passed in, on the images' device, so views are reproducible.

- crop + flip: one ``affine_grid`` / ``grid_sample`` call with a per-sample box;
- jitter: per-sample factors broadcast; hue as a rotation of the chroma plane in YIQ space;
- blur: per-sample separable Gaussian kernels applied as a grouped convolution.

Grayscale data (``bundle.grayscale``) gets the ``gray`` preset: the same views without saturation,
hue and random grayscale, which are identities on images whose three channels are equal (a grey
pixel has zero chroma, so scaling or rotating the chroma plane leaves it unchanged); brightness,
contrast, blur and solarisation stay. Disabled operations are skipped, not computed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from er_core.config import AUGMENTS

_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = torch.linalg.inv(_YIQ)
_GRAY = torch.tensor([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of one view's augmentation (torchvision's meanings)."""

    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0


_SYMMETRIC = AugmentConfig(blur_p=0.5)
_BYOL_1 = AugmentConfig(blur_p=1.0, solarize_p=0.0)
_BYOL_2 = AugmentConfig(blur_p=0.1, solarize_p=0.2)
# The view pair an objective declares (``Objective.views``): SimCLR's symmetric views (SimCLR, SwAV,
# DeepCluster-v2) or BYOL's asymmetric ones (BYOL, DINO: blur always in view 1, solarisation in view 2).
VIEW_PRESETS: dict[str, tuple[AugmentConfig, AugmentConfig]] = {
    "symmetric": (_SYMMETRIC, _SYMMETRIC),
    "asymmetric": (_BYOL_1, _BYOL_2),
}
AUGMENT_PRESETS = AUGMENTS  # values of TrialConfig.augment


def gray_view(config: AugmentConfig) -> AugmentConfig:
    """``config`` without the operations that do nothing on grey images (saturation, hue, grayscale)."""
    return dataclasses.replace(config, saturation=0.0, hue=0.0, grayscale_p=0.0)


GRAY_VIEW_PRESETS: dict[str, tuple[AugmentConfig, AugmentConfig]] = {
    name: (gray_view(view1), gray_view(view2)) for name, (view1, view2) in VIEW_PRESETS.items()
}


def use_gray_preset(augment: str, grayscale: bool) -> bool:
    """Resolve ``TrialConfig.augment``: "gray"/"color" force a preset, "auto" follows the data."""
    if augment not in AUGMENT_PRESETS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENT_PRESETS)}, got {augment!r}")
    return augment == "gray" or (augment == "auto" and grayscale)


def _uniform(generator, n, low, high, device):
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _bernoulli(generator, n, p, device):
    return torch.rand(n, generator=generator, device=device) < p


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (x * _GRAY.to(x.device, x.dtype).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


class BatchAugmenter:
    """``(view1, view2) = augmenter(images_uint8, generator)``, both float32 and normalised."""

    def __init__(self, view1: AugmentConfig, view2: AugmentConfig, mean, std) -> None:
        self.view1, self.view2 = view1, view2
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, H, W] -> normalised float32 (evaluation: no augmentation)."""
        x = images.float().div_(255.0)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [B, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        x = images.float().div_(255.0)
        return self._view(x, self.view1, generator), self._view(x, self.view2, generator)

    def _view(self, x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
        x = crop_and_flip(x, config, generator)
        x = color_jitter(x, config, generator)
        if config.grayscale_p > 0:
            gray = _bernoulli(generator, x.shape[0], config.grayscale_p, x.device).view(-1, 1, 1, 1)
            x = torch.where(gray, _gray(x).expand_as(x), x)
        if config.blur_p > 0:
            x = gaussian_blur(x, config, generator)
        if config.solarize_p > 0:
            solarize = _bernoulli(generator, x.shape[0], config.solarize_p, x.device).view(-1, 1, 1, 1)
            x = torch.where(solarize & (x >= 0.5), 1.0 - x, x)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


def crop_boxes(n: int, config: AugmentConfig, generator: torch.Generator, device) -> tuple[torch.Tensor, ...]:
    """Per-sample crop (width, height, centre x, centre y) as fractions of the image, in [-1, 1] coords."""
    area = _uniform(generator, n, config.crop_scale[0], config.crop_scale[1], device)
    log_ratio = _uniform(generator, n, math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1]), device)
    ratio = torch.exp(log_ratio)
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (torch.rand(n, generator=generator, device=device) * 2 - 1) * (1 - width)
    cy = (torch.rand(n, generator=generator, device=device) * 2 - 1) * (1 - height)
    return width, height, cx, cy


def crop_and_flip(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random resized crop (bilinear) and horizontal flip in one ``grid_sample``."""
    n = x.shape[0]
    width, height, cx, cy = crop_boxes(n, config, generator, x.device)
    flip = torch.where(_bernoulli(generator, n, config.flip_p, x.device), -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = width * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = height, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def color_jitter(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation, hue with per-sample factors, applied with prob ``jitter_p``.

    Brightness y = b x; contrast y = c (y - m) + m with m the image's mean luma; saturation
    y = s (y - g) + g with g the pixel's luma; hue rotates the YIQ chroma plane by 2 pi h. With
    ``saturation == hue == 0`` (the gray preset) only brightness and contrast are drawn and applied.
    """
    n, device = x.shape[0], x.device
    apply = _bernoulli(generator, n, config.jitter_p, device).view(-1, 1, 1, 1)
    b = _uniform(generator, n, 1 - config.brightness, 1 + config.brightness, device).view(-1, 1, 1, 1)
    c = _uniform(generator, n, 1 - config.contrast, 1 + config.contrast, device).view(-1, 1, 1, 1)
    y = (x * b).clamp(0, 1)
    mean_gray = _gray(y).mean(dim=(2, 3), keepdim=True)
    y = ((y - mean_gray) * c + mean_gray).clamp(0, 1)
    if config.saturation == 0 and config.hue == 0:
        return torch.where(apply, y, x)
    s = _uniform(generator, n, 1 - config.saturation, 1 + config.saturation, device).view(-1, 1, 1, 1)
    h = _uniform(generator, n, -config.hue, config.hue, device)
    gray = _gray(y)
    y = ((y - gray) * s + gray).clamp(0, 1)
    # Hue: per-sample 3x3 matrix YIQ^-1 @ R(2*pi*h) @ YIQ (rotation of the I/Q chroma plane), one bmm.
    angle = 2 * math.pi * h
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(n, 3, 3, device=device)
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    matrix = _YIQ_INV.to(device) @ rotation @ _YIQ.to(device)
    y = torch.bmm(matrix, y.reshape(n, 3, -1)).view_as(y).clamp(0, 1)
    return torch.where(apply, y, x)


def gaussian_blur(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur, kernel ~10% of the image side, per-sample sigma, prob ``blur_p``."""
    n, channels, height, width = x.shape
    device = x.device
    size = max(3, int(0.1 * min(height, width)) // 2 * 2 + 1)
    sigma = _uniform(generator, n, config.blur_sigma[0], config.blur_sigma[1], device)
    apply = _bernoulli(generator, n, config.blur_p, device)
    offsets = torch.arange(size, device=device, dtype=x.dtype) - size // 2
    kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = (offsets == 0).to(x.dtype).expand(n, -1)
    kernel = torch.where(apply.view(-1, 1), kernel, identity)
    kernel = kernel.repeat_interleave(channels, dim=0)  # (n*c) x size
    flat = x.reshape(1, n * channels, height, width)
    pad = size // 2
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect"), kernel.view(-1, 1, 1, size), groups=n * channels)
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="reflect"), kernel.view(-1, 1, size, 1), groups=n * channels)
    return flat.view(n, channels, height, width)


def make_augmenter(views: str, mean, std, *, grayscale: bool = False) -> BatchAugmenter:
    """The view pair ``views`` of :data:`VIEW_PRESETS` (an objective's declared ``views``).

    ``grayscale=True`` selects the gray preset (:data:`GRAY_VIEW_PRESETS`); see
    :func:`use_gray_preset` for how a trial's ``augment`` key and the bundle decide it.
    """
    if views not in VIEW_PRESETS:
        raise ValueError(f"no augmentation preset '{views}'; known: {', '.join(VIEW_PRESETS)}")
    view1, view2 = (GRAY_VIEW_PRESETS if grayscale else VIEW_PRESETS)[views]
    return BatchAugmenter(view1, view2, mean, std)
