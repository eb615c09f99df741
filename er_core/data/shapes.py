"""``shapes``: a procedural 10-class image dataset, generated deterministically from a seed.

The class is the *shape* (circle, square, triangle, five-point star, cross, ring, crescent, heart,
half-disk, L). Everything else is a nuisance drawn independently per image: foreground and
background colours (kept apart in luminance or hue so the shape is visible), position, scale,
full 360° rotation, a colour gradient over the background, and pixel noise. Colour carries no
class information, so raw pixels are a poor representation (kNN on pixels stays low) while the
shape is plain to see: learning the class needs the invariances the augmentations teach.

Shapes are rendered as signed masks on a 2x super-sampled grid (anti-aliased by average pooling),
fully vectorised over the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CLASSES = ("circle", "square", "triangle", "star", "cross", "ring", "crescent", "heart", "half_disk", "ell")
SUPERSAMPLE = 2
CHUNK = 2048


def _polar(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.sqrt(u * u + v * v), torch.atan2(v, u)


def _triangle(u, v):
    rho, theta = _polar(u, v)
    sector = 2 * math.pi / 3
    return rho * torch.cos(torch.remainder(theta + math.pi / 2, sector) - sector / 2) <= 0.5


def _star(u, v):
    rho, theta = _polar(u, v)
    return rho <= 0.5 + 0.42 * torch.cos(5 * theta).clamp_min(0) ** 0.7


def _heart(u, v):
    x, y = u * 1.1, -(v * 1.1) - 0.25
    return (x * x + y * y - 0.7) ** 3 - x * x * y ** 3 <= 0


def _radius(u, v):
    return torch.sqrt(u * u + v * v)


# Inside-tests at canonical coordinates u, v in [-1, 1], one per class (index = label).
SHAPE_TESTS = (
    lambda u, v: _radius(u, v) <= 0.9,                                                  # circle
    lambda u, v: torch.maximum(u.abs(), v.abs()) <= 0.72,                               # square
    _triangle,
    _star,
    lambda u, v: ((u.abs() <= 0.28) & (v.abs() <= 0.9)) | ((v.abs() <= 0.28) & (u.abs() <= 0.9)),  # cross
    lambda u, v: (_radius(u, v) <= 0.92) & (_radius(u, v) >= 0.55),                    # ring
    lambda u, v: (_radius(u, v) <= 0.9) & (_radius(u - 0.45, v) >= 0.75),               # crescent
    _heart,
    lambda u, v: (_radius(u, v) <= 0.9) & (v >= -0.1),                                  # half disk
    lambda u, v: ((u.abs() <= 0.8) & (v >= 0.35) & (v <= 0.85))
    | ((u >= -0.8) & (u <= -0.3) & (v.abs() <= 0.85)),                                  # L
)


def _masks(label: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Inside-mask (float) of each image's shape; each class's test runs only on its own images."""
    mask = torch.zeros(u.shape)
    for cls, inside in enumerate(SHAPE_TESTS):
        rows = (label == cls).nonzero().flatten()
        if rows.numel():
            mask[rows] = inside(u[rows], v[rows]).float()
    return mask


def _colours(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground/background RGB in [0, 1] whose luminance differs by at least 0.25."""
    fg = torch.rand(count, 3, generator=generator)
    bg = torch.rand(count, 3, generator=generator)
    weights = torch.tensor([0.299, 0.587, 0.114])
    for _ in range(8):
        close = ((fg @ weights) - (bg @ weights)).abs() < 0.25
        if not close.any():
            break
        bg[close] = torch.rand(int(close.sum()), 3, generator=generator)
    close = ((fg @ weights) - (bg @ weights)).abs() < 0.25
    bg[close] = 1.0 - fg[close]  # still too close: use the complement
    return fg, bg


def render_shapes(labels: torch.Tensor, image_size: int, generator: torch.Generator) -> torch.Tensor:
    """Render uint8 [N, 3, S, S] images of the given class labels (nuisances from ``generator``)."""
    out = []
    for chunk in labels.split(CHUNK):
        n, size = chunk.shape[0], image_size * SUPERSAMPLE
        scale = 0.6 + 0.3 * torch.rand(n, generator=generator)
        angle = 2 * math.pi * torch.rand(n, generator=generator)
        shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (1 - scale.unsqueeze(1)) * 0.6
        fg, bg = _colours(n, generator)
        gradient = (torch.rand(n, 3, generator=generator) - 0.5) * 0.4
        noise_level = 0.01 + 0.04 * torch.rand(n, generator=generator)
        axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
        y, x = torch.meshgrid(axis, axis, indexing="ij")
        x, y = x.expand(n, -1, -1), y.expand(n, -1, -1)
        dx, dy = x - shift[:, 0, None, None], y - shift[:, 1, None, None]
        cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
        u = (cos * dx + sin * dy) / scale[:, None, None]
        v = (-sin * dx + cos * dy) / scale[:, None, None]
        mask = F.avg_pool2d(_masks(chunk, u, v).unsqueeze(1), SUPERSAMPLE)  # n x 1 x S x S
        ramp = F.avg_pool2d(x.unsqueeze(1), SUPERSAMPLE)
        background = (bg[:, :, None, None] + gradient[:, :, None, None] * ramp).clamp(0, 1)
        image = mask * fg[:, :, None, None] + (1 - mask) * background
        image = image + noise_level[:, None, None, None] * torch.randn(image.shape, generator=generator)
        out.append((image.clamp(0, 1) * 255).round().to(torch.uint8))
    return torch.cat(out)


def generate_shapes(count: int, image_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` balanced, shuffled images and labels, deterministic in ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % len(CLASSES)
    labels = labels[torch.randperm(count, generator=generator)]
    return render_shapes(labels, image_size, generator), labels


def load_shapes(*, root: str = "", image_size: int = 32, train_size: int = 8000, eval_size: int = 2000,
                seed: int = 0):
    """Train and eval splits drawn from independent streams of the same seed."""
    from er_core.data.bundle import make_bundle

    train_x, train_y = generate_shapes(train_size, image_size, seed * 2 + 1)
    eval_x, eval_y = generate_shapes(eval_size, image_size, seed * 2 + 2)
    return make_bundle("shapes", len(CLASSES), train_x, train_y, eval_x, eval_y, image_size=image_size,
                       train_size=train_size, eval_size=eval_size)
