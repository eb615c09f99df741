"""The dataset bundle handed to every trial of a study (uint8 tensors, shippable via Ray)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class DatasetBundle:
    """Images as uint8 [N, 3, H, W] with int64 labels; ``mean``/``std`` are per-channel in [0, 1].

    SSL trains on ``train_images`` (labels unused); the kNN evaluation uses the training images
    as its labelled bank and ``eval_images`` as queries; the diagnostics use ``eval_images``.
    """

    name: str
    num_classes: int
    train_images: torch.Tensor
    train_labels: torch.Tensor
    eval_images: torch.Tensor
    eval_labels: torch.Tensor
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        for split in ("train", "eval"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(f"{split}_images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
            if labels.shape != (images.shape[0],):
                raise ValueError(f"{split}_labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units (std floored at 1e-3)."""
    x = images.float().div_(255.0).transpose(0, 1).reshape(3, -1)
    mean = x.mean(dim=1)
    std = x.std(dim=1).clamp_min(1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 [N, 3, H, W] to size x size (bilinear, antialiased), in chunks."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images.contiguous()
    out = []
    for chunk in images.split(2048):
        resized = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True,
                                align_corners=False)
        out.append(resized.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def make_bundle(name: str, num_classes: int, train_images, train_labels, eval_images, eval_labels,
                *, image_size: int, train_size: int, eval_size: int) -> DatasetBundle:
    """Cap both splits at the requested sizes (keeping the given order), resize, compute stats."""
    train_images, train_labels = train_images[:train_size], train_labels[:train_size]
    eval_images, eval_labels = eval_images[:eval_size], eval_labels[:eval_size]
    train_images = resize_uint8(train_images, image_size)
    eval_images = resize_uint8(eval_images, image_size)
    mean, std = channel_stats(train_images)
    return DatasetBundle(name, num_classes, train_images, train_labels.long(), eval_images,
                         eval_labels.long(), mean, std)
