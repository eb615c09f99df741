"""Datasets read from a local ``root`` in their original formats; nothing is ever downloaded.

- ``cifar10``:  ``root/cifar-10-batches-py/{data_batch_1..5, test_batch}`` (python pickles)
- ``cifar100``: ``root/cifar-100-python/{train, test}`` (python pickles, fine labels)
- ``stl10``:    ``root/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin}``
- ``imagefolder``: ``root/train/<class>/*`` and ``root/test/<class>/*`` (or ``val``), or
  ``root/<class>/*`` split deterministically (every fifth image of each class to eval).
A missing root or file raises ``FileNotFoundError`` naming every expected path.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch

from er_tune.data.bundle import make_bundle

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".tif", ".tiff", ".webp")


def _require(root: str, dataset: str, relative: list[str]) -> list[str]:
    if not root:
        raise FileNotFoundError(f"dataset '{dataset}' needs a local root (data.root / data_root); "
                                f"expected files under it: {', '.join(relative)}")
    paths = [os.path.join(root, name) for name in relative]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"dataset '{dataset}' root {root!r} is missing {', '.join(missing)}; "
                                f"expected: {', '.join(relative)} (never downloaded at run time)")
    return paths


def _unpickle(path: str) -> dict:
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="bytes")


def _cifar_arrays(entries: list[dict], label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    data = np.concatenate([np.asarray(e[b"data"], dtype=np.uint8) for e in entries])
    labels = np.concatenate([np.asarray(e[label_key], dtype=np.int64) for e in entries])
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


def load_cifar10(*, root: str, image_size: int = 32, train_size: int = 50000, eval_size: int = 10000,
                 seed: int = 0):
    names = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)] + ["cifar-10-batches-py/test_batch"]
    paths = _require(root, "cifar10", names)
    train_x, train_y = _cifar_arrays([_unpickle(p) for p in paths[:5]], b"labels")
    eval_x, eval_y = _cifar_arrays([_unpickle(paths[5])], b"labels")
    return make_bundle("cifar10", 10, train_x, train_y, eval_x, eval_y, image_size=image_size,
                       train_size=train_size, eval_size=eval_size)


def load_cifar100(*, root: str, image_size: int = 32, train_size: int = 50000, eval_size: int = 10000,
                  seed: int = 0):
    paths = _require(root, "cifar100", ["cifar-100-python/train", "cifar-100-python/test"])
    train_x, train_y = _cifar_arrays([_unpickle(paths[0])], b"fine_labels")
    eval_x, eval_y = _cifar_arrays([_unpickle(paths[1])], b"fine_labels")
    return make_bundle("cifar100", 100, train_x, train_y, eval_x, eval_y, image_size=image_size,
                       train_size=train_size, eval_size=eval_size)


def _stl_images(path: str) -> torch.Tensor:
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 3, 96, 96)
    return torch.from_numpy(np.ascontiguousarray(raw.transpose(0, 1, 3, 2)))  # stored column-major


def load_stl10(*, root: str, image_size: int = 96, train_size: int = 5000, eval_size: int = 8000,
               seed: int = 0):
    names = ["stl10_binary/train_X.bin", "stl10_binary/train_y.bin", "stl10_binary/test_X.bin",
             "stl10_binary/test_y.bin"]
    paths = _require(root, "stl10", names)
    labels = [torch.from_numpy(np.fromfile(p, dtype=np.uint8).astype(np.int64) - 1) for p in (paths[1], paths[3])]
    return make_bundle("stl10", 10, _stl_images(paths[0]), labels[0], _stl_images(paths[2]), labels[1],
                       image_size=image_size, train_size=train_size, eval_size=eval_size)


def _folder_images(directory: str, classes: list[str], image_size: int):
    from PIL import Image

    images, labels = [], []
    for index, name in enumerate(classes):
        class_dir = os.path.join(directory, name)
        for file in sorted(os.listdir(class_dir)) if os.path.isdir(class_dir) else []:
            if file.lower().endswith(IMAGE_EXTENSIONS):
                with Image.open(os.path.join(class_dir, file)) as image:
                    rgb = image.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
                images.append(torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1))
                labels.append(index)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {directory}/<class>/")
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def load_imagefolder(*, root: str, image_size: int = 32, train_size: int = 10**9, eval_size: int = 10**9,
                     seed: int = 0):
    if not root or not os.path.isdir(root):
        raise FileNotFoundError(f"dataset 'imagefolder' root {root!r} does not exist; expected "
                                "root/train/<class>/*.png and root/test/<class>/*.png, or root/<class>/*.png")
    eval_dir = next((os.path.join(root, d) for d in ("test", "val") if os.path.isdir(os.path.join(root, d))), None)
    if os.path.isdir(os.path.join(root, "train")) and eval_dir:
        classes = sorted(d for d in os.listdir(os.path.join(root, "train"))
                         if os.path.isdir(os.path.join(root, "train", d)))
        train_x, train_y = _folder_images(os.path.join(root, "train"), classes, image_size)
        eval_x, eval_y = _folder_images(eval_dir, classes, image_size)
    else:
        classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        x, y = _folder_images(root, classes, image_size)
        rank = torch.zeros_like(y)
        for cls in range(len(classes)):
            rows = (y == cls).nonzero().flatten()
            rank[rows] = torch.arange(rows.numel())
        to_eval = rank % 5 == 4
        train_x, train_y, eval_x, eval_y = x[~to_eval], y[~to_eval], x[to_eval], y[to_eval]
    order = torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(seed))
    return make_bundle("imagefolder", len(classes), train_x[order], train_y[order], eval_x, eval_y,
                       image_size=image_size, train_size=train_size, eval_size=eval_size)
