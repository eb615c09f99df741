"""Datasets (registry ``DATASETS``) and the bundle every trial of a study shares."""

from __future__ import annotations

from typing import Callable

from er_core.config import DATASET_NAMES, NEEDS_ROOT, STREAMING_DATASETS, did_you_mean
from er_core.data.bundle import DatasetBundle
from er_core.data.digits import load_digits
from er_core.data.files import (load_cifar10, load_cifar100, load_fashion_mnist, load_imagefolder, load_mnist,
                                load_stl10, load_svhn, stream_imagefolder)
from er_core.data.shapes import load_shapes

DATASETS: dict[str, Callable[..., DatasetBundle]] = {
    "shapes": load_shapes,
    "digits": load_digits,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "stl10": load_stl10,
    "imagefolder": load_imagefolder,
    "svhn": load_svhn,
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
}

# Datasets whose training split can be streamed from its files (``streaming: true``).
STREAMING_LOADERS: dict[str, Callable[..., DatasetBundle]] = {
    "imagefolder": stream_imagefolder,
}


if tuple(DATASETS) != DATASET_NAMES or tuple(STREAMING_LOADERS) != STREAMING_DATASETS:  # the torch-free table configs are checked against
    raise ImportError(f"er_core.data.DATASETS {tuple(DATASETS)} / STREAMING_LOADERS {tuple(STREAMING_LOADERS)} "
                      f"differ from er_core.dataset_layout.DATASETS {DATASET_NAMES} / streams {STREAMING_DATASETS}")


def load_dataset(name: str, *, root: str = "", image_size: int = 32, train_size: int = 8000,
                 eval_size: int = 2000, seed: int = 0, streaming: bool = False, bank_size: int = 4000,
                 loader_workers: int = 0) -> DatasetBundle:
    """Build dataset ``name``; unknown names raise ValueError listing the known ones.

    ``streaming``: leave the training split on the disk (``bundle.train_files``) and decode only its
    first ``bank_size`` images, with ``loader_workers`` processes (:mod:`er_core.data.stream`);
    only for :data:`STREAMING_LOADERS`.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'{did_you_mean(name, list(DATASETS))}; "
                         f"known: {', '.join(DATASETS)}")
    sizes = dict(root=root, image_size=image_size, train_size=train_size, eval_size=eval_size, seed=seed)
    if not streaming:
        return DATASETS[name](**sizes)
    if name not in STREAMING_LOADERS:
        raise ValueError(f"dataset '{name}' cannot be streamed; streaming: {', '.join(STREAMING_LOADERS)}")
    return STREAMING_LOADERS[name](**sizes, bank_size=bank_size, loader_workers=loader_workers)


__all__ = ["DATASETS", "NEEDS_ROOT", "STREAMING_LOADERS", "DatasetBundle", "load_dataset"]
