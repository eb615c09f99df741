"""Datasets (registry ``DATASETS``) and the bundle every trial of a study shares."""

from __future__ import annotations

from typing import Callable

from er_core.config import DATASET_NAMES, NEEDS_ROOT, did_you_mean
from er_core.data.bundle import DatasetBundle
from er_core.data.digits import load_digits
from er_core.data.files import (load_cifar10, load_cifar100, load_fashion_mnist, load_imagefolder, load_mnist,
                                load_stl10, load_svhn)
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


if tuple(DATASETS) != DATASET_NAMES:  # the torch-free table configs are checked against
    raise ImportError(f"er_core.data.DATASETS {tuple(DATASETS)} differs from "
                      f"er_core.dataset_layout.DATASETS {DATASET_NAMES}")


def load_dataset(name: str, *, root: str = "", image_size: int = 32, train_size: int = 8000,
                 eval_size: int = 2000, seed: int = 0) -> DatasetBundle:
    """Build dataset ``name``; unknown names raise ValueError listing the known ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'{did_you_mean(name, list(DATASETS))}; "
                         f"known: {', '.join(DATASETS)}")
    return DATASETS[name](root=root, image_size=image_size, train_size=train_size, eval_size=eval_size,
                          seed=seed)


__all__ = ["DATASETS", "NEEDS_ROOT", "DatasetBundle", "load_dataset"]
