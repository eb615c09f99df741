"""The dataset bundle handed to every trial of a study (uint8 tensors, shippable via Ray)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from er_core.data.stream import ImageFiles


@dataclass(frozen=True)
class DatasetBundle:
    """Images as uint8 [N, 3, H, W] with int64 labels; ``mean``/``std`` are per-channel in [0, 1].

    SSL trains on ``train_images`` (labels unused); the kNN evaluation uses the training images
    as its labelled bank and ``eval_images`` as queries; the diagnostics use ``eval_images``.
    ``grayscale`` is True when the source images have one channel (replicated to three here, so
    every backbone sees [N, 3, H, W]); the augmenter then skips colour operations.
    ``test_images``/``test_labels``: the whole test split (fitted like ``eval_images``, which are
    its first rows) for datasets read from disk, used by the final kNN and linear probe of every
    trial; ``None`` for generated datasets, whose final evaluation uses ``eval_images``
    (:attr:`final_images`).

    ``train_files``: set when the training split is streamed (``streaming: true``,
    :mod:`er_core.data.stream`): the split's :class:`~er_core.data.stream.ImageFiles` in training
    order, read from the disk every epoch. ``train_images``/``train_labels`` then hold only the first
    rows of that order (the kNN bank, ``knn_bank_size`` images), ``mean``/``std`` are those rows'
    statistics (equal to the whole split's when the bank is the whole split), and
    :attr:`num_train` counts the files. Either way ``train_images[i]`` is training image ``i``.
    """

    name: str
    num_classes: int
    train_images: torch.Tensor
    train_labels: torch.Tensor
    eval_images: torch.Tensor
    eval_labels: torch.Tensor
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    grayscale: bool = False
    test_images: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    train_files: "ImageFiles | None" = None

    @property
    def streaming(self) -> bool:
        """Whether the training split is read from its files each epoch (:attr:`train_files`)."""
        return self.train_files is not None

    @property
    def num_train(self) -> int:
        """Images in the training split: the files when streamed, else the rows of ``train_images``."""
        return len(self.train_files) if self.train_files is not None else int(self.train_images.shape[0])

    @property
    def final_images(self) -> torch.Tensor:
        """Queries of the final evaluation: the whole test split when known, else the eval set."""
        return self.eval_images if self.test_images is None else self.test_images

    @property
    def final_labels(self) -> torch.Tensor:
        return self.eval_labels if self.test_labels is None else self.test_labels

    @property
    def channels_in(self) -> int:
        """Channels of the source images (1 for grayscale, replicated to 3 in the tensors)."""
        return 1 if self.grayscale else 3

    def fingerprint(self) -> str:
        """SHA-256 of the tensors a trial reads: for train images, train labels, eval images and
        eval labels in that order, the shape then the raw bytes (C order, as stored: uint8
        images, int64 labels). Equal fingerprints mean bit-identical training and evaluation
        data, whatever the files or the generator that produced them.

        A streamed bundle's tensors are its kNN bank and eval set; the digest then goes on with
        ``b"train_files"`` and :meth:`~er_core.data.stream.ImageFiles.digest` of the training files
        (relative paths, byte sizes, labels, image size: the files are not read), so it names the
        file list rather than every pixel of the split."""
        digest = hashlib.sha256()
        for tensor in (self.train_images, self.train_labels, self.eval_images, self.eval_labels):
            digest.update(repr(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        if self.train_files is not None:
            digest.update(b"train_files")
            digest.update(self.train_files.digest())
        return digest.hexdigest()

    def __post_init__(self) -> None:
        for split in ("train", "eval", "test"):
            if split == "test" and self.test_images is None:
                continue
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(f"{split}_images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
            if labels.shape != (images.shape[0],):
                raise ValueError(f"{split}_labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        files = self.train_files
        if files is not None:
            head = self.train_images.shape[0]
            if head > len(files) or not torch.equal(files.labels[:head], self.train_labels):
                raise ValueError(f"train_images ({head} rows) must be the first rows of the {len(files)} "
                                 "train_files, with their labels in order")
            if files.image_size != self.train_images.shape[-1]:
                raise ValueError(f"train_files decode at {files.image_size} px, train_images are {self.train_images.shape[-1]} px")


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and (unbiased) std of uint8 images, in [0, 1] units (std floored at 1e-3).

    From each channel's 256-bin histogram h (exact, and ~10x faster than float reductions on 60k
    images): n = sum h, mean = sum v h(v) / n, var = (sum v^2 h(v) - n mean^2) / (n - 1).
    """
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).double()
        n = float(counts.sum())
        mean = float((values * counts).sum()) / n
        var = (float((values * values * counts).sum()) - n * mean * mean) / max(n - 1.0, 1.0)
        means.append(mean / 255.0)
        stds.append(max(math.sqrt(max(var, 0.0)) / 255.0, 1e-3))
    return tuple(means), tuple(stds)


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 [N, C, H, W] to size x size (bilinear, antialiased), in chunks."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images.contiguous()
    out = []
    for chunk in images.split(2048):
        resized = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True,
                                align_corners=False)
        out.append(resized.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def pad_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre uint8 [N, C, H, W] (H, W <= size) in a size x size frame of zeros (extra pixel right/bottom)."""
    height, width = images.shape[-2:]
    if height > size or width > size:
        raise ValueError(f"cannot pad {height}x{width} images to {size}x{size}")
    top, left = (size - height) // 2, (size - width) // 2
    return F.pad(images, (left, size - width - left, top, size - height - top), value=0).contiguous()


def is_grayscale(images: torch.Tensor) -> bool:
    """True when every image of uint8 [N, C, H, W] has one channel or three identical ones."""
    if images.shape[1] == 1:
        return True
    return bool(torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2]))


def make_bundle(name: str, num_classes: int, train_images, train_labels, eval_images, eval_labels,
                *, image_size: int, train_size: int, eval_size: int, fit: str = "resize") -> DatasetBundle:
    """Cap both splits at the requested sizes (keeping the given order), fit to ``image_size``, compute stats.

    Images come as uint8 [N, 1 or 3, H, W] (any strides); one channel is replicated to three after
    fitting. ``fit="resize"`` resizes bilinearly; ``fit="pad"`` centres the images in a zero frame
    (for MNIST-style digits on a black background; see :func:`pad_uint8`). ``grayscale`` on the
    bundle is True for one-channel input or three identical channels. The whole evaluation split
    (uncapped) becomes ``test_images`` when it is larger than ``eval_size`` (else the two share
    one tensor through :attr:`DatasetBundle.final_images`).
    """
    if fit not in ("resize", "pad"):
        raise ValueError(f"fit must be 'resize' or 'pad', got {fit!r}")
    fit_to = pad_uint8 if fit == "pad" else resize_uint8
    train_images, train_labels = train_images[:train_size], train_labels[:train_size]
    whole = eval_images.shape[0] > eval_size
    test_images, test_labels = eval_images, eval_labels
    eval_images, eval_labels = eval_images[:eval_size], eval_labels[:eval_size]
    grayscale = is_grayscale(train_images) and is_grayscale(test_images if whole else eval_images)
    train_images = _three_channels(fit_to(train_images, image_size))
    if whole:  # fit the whole split once; the eval set is its first eval_size rows
        test_images = _three_channels(fit_to(test_images, image_size))
        eval_images = test_images[:eval_size].contiguous()
    else:
        eval_images = _three_channels(fit_to(eval_images, image_size))
    mean, std = channel_stats(train_images)
    return DatasetBundle(name, num_classes, train_images, train_labels.long(), eval_images,
                         eval_labels.long(), mean, std, grayscale=grayscale,
                         test_images=test_images if whole else None,
                         test_labels=test_labels.long() if whole else None)


def _three_channels(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {tuple(images.shape)}")
    return images.expand(-1, 3, -1, -1).contiguous() if images.shape[1] == 1 else images.contiguous()
