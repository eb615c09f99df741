"""Every dataset er-tune knows (:data:`DATASETS`) and where each local one's files live under its
``data_root`` (pure ``os``; no torch import, so configs and study files are checked before any
heavy import). ``er_core.data.DATASETS`` holds the loaders and checks its keys against this table
when it is imported.

The layouts are torchvision's (``torchvision.datasets.X(root, download=False)``), so a root that
torchvision's own ``download=True`` filled works as is:

- ``cifar10``:  ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch}``
- ``cifar100``: ``<root>/cifar-100-python/{train, test}``
- ``stl10``:    ``<root>/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin}``
- ``svhn``:     ``<root>/{train_32x32.mat, test_32x32.mat}``
- ``mnist`` / ``fashion_mnist``: ``<root>/MNIST/raw/`` / ``<root>/FashionMNIST/raw/`` holding
  ``train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte``;
  each file may also be gzipped (``.gz``), and the four files may sit in ``<root>/raw`` or directly in ``<root>`` (the
  Debian package ``dataset-fashion-mnist`` installs them as ``/usr/share/datasets/fashion-mnist/*.gz``).
- ``imagefolder``: ``<root>/train/<class>/*`` with ``<root>/test/<class>/*`` (or ``val``), or
  ``<root>/<class>/*`` (split deterministically by the loader).

:func:`root_problem` is what study validation and ``er-tune train`` call before anything trains.
"""

from __future__ import annotations

import os
from typing import NamedTuple


class Dataset(NamedTuple):
    """What a dataset is before it is loaded."""

    needs_root: bool  # read from files under ``data_root`` (else generated or bundled)
    grayscale: bool | None  # images are grey whatever the files hold (None: decided from the images)
    num_classes: int | None  # None: however many class folders (imagefolder)
    # its training split can be read from the files each epoch instead of decoded into memory
    # (``streaming: true``; er_core.data.stream); every other dataset loads into memory
    streams: bool = False


DATASETS = {
    "shapes": Dataset(False, False, 10),
    "digits": Dataset(False, True, 10),
    "cifar10": Dataset(True, False, 10),
    "cifar100": Dataset(True, False, 100),
    "stl10": Dataset(True, False, 10),
    "imagefolder": Dataset(True, None, None, streams=True),
    "svhn": Dataset(True, False, 10),
    "mnist": Dataset(True, True, 10),
    "fashion_mnist": Dataset(True, True, 10),
}
DATASET_NAMES = tuple(DATASETS)
NEEDS_ROOT = tuple(name for name, info in DATASETS.items() if info.needs_root)
GRAYSCALE_DATASETS = tuple(name for name, info in DATASETS.items() if info.grayscale)
NUM_CLASSES = {name: info.num_classes for name, info in DATASETS.items()}
STREAMING_DATASETS = tuple(name for name, info in DATASETS.items() if info.streams)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
# torchvision's class name = the folder under <root> (``MNIST.raw_folder`` is <root>/<class name>/raw).
MNIST_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
FIXED_FILES = {
    "cifar10": tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)) + ("cifar-10-batches-py/test_batch",),
    "cifar100": ("cifar-100-python/train", "cifar-100-python/test"),
    "stl10": ("stl10_binary/train_X.bin", "stl10_binary/train_y.bin", "stl10_binary/test_X.bin",
              "stl10_binary/test_y.bin"),
    "svhn": ("train_32x32.mat", "test_32x32.mat"),
}


if set(NEEDS_ROOT) != set(FIXED_FILES) | set(MNIST_FOLDERS) | {"imagefolder"}:
    raise ImportError("er_core.dataset_layout: every dataset read from a data root needs a file "
                      f"layout here, and only those: {sorted(NEEDS_ROOT)}")


def expected_layout(dataset: str) -> str:
    """Human-readable list of the paths ``dataset`` reads, relative to ``<root>``."""
    if dataset in FIXED_FILES:
        return ", ".join(f"<root>/{name}" for name in FIXED_FILES[dataset])
    if dataset in MNIST_FOLDERS:
        folder = MNIST_FOLDERS[dataset]
        return (", ".join(f"<root>/{folder}/raw/{name}" for name in MNIST_FILES)
                + " (each optionally .gz; or the four files in <root>/raw or directly in <root>)")
    if dataset == "imagefolder":
        return "<root>/train/<class>/*.png with <root>/test/<class>/*.png (or val/), or <root>/<class>/*.png"
    return ""


def find_mnist_files(root: str, dataset: str) -> dict[str, str] | None:
    """Path of each of the four idx files (plain preferred over ``.gz``), or None if one is missing.

    Looked up in torchvision's ``<root>/<Folder>/raw``, then ``<root>/raw`` (a root pointing at the
    ``<Folder>`` itself) and ``<root>``.
    """
    directories = (os.path.join(root, MNIST_FOLDERS[dataset], "raw"), os.path.join(root, "raw"), root)
    found = {}
    for name in MNIST_FILES:
        candidates = [os.path.join(d, name + suffix) for d in directories for suffix in ("", ".gz")]
        path = next((p for p in candidates if os.path.isfile(p)), None)
        if path is None:
            return None
        found[name] = path
    return found


def _has_image(directory: str) -> bool:
    with os.scandir(directory) as entries:
        return any(e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS) for e in entries)


def _class_dirs(directory: str) -> list[str]:
    with os.scandir(directory) as entries:
        return sorted(e.path for e in entries if e.is_dir())


def _imagefolder_problem(root: str) -> str:
    train = os.path.join(root, "train")
    if os.path.isdir(train):
        if not any(os.path.isdir(os.path.join(root, d)) for d in ("test", "val")):
            return f"{train!r} exists but neither {os.path.join(root, 'test')!r} nor {os.path.join(root, 'val')!r} does"
        search = [train]
    else:
        search = [root]
    for directory in search:
        if not any(_has_image(d) for d in _class_dirs(directory)):
            return (f"no class folder with images ({', '.join(IMAGE_EXTENSIONS)}) under {directory!r}")
    return ""


def root_problem(dataset: str, root: str) -> str:
    """Why ``root`` cannot serve ``dataset`` ("" when it can), naming every expected path."""
    expected = expected_layout(dataset)
    if not root:
        return f"dataset '{dataset}' is read from a local directory; a data root is required (expects {expected})"
    if not os.path.isdir(root):
        return f"directory {root!r} does not exist (dataset '{dataset}' expects {expected})"
    if dataset in FIXED_FILES:
        missing = [os.path.join(root, name) for name in FIXED_FILES[dataset]
                   if not os.path.isfile(os.path.join(root, name))]
        if missing:
            return f"dataset '{dataset}' root {root!r} lacks {', '.join(missing)}"
    elif dataset in MNIST_FOLDERS and find_mnist_files(root, dataset) is None:
        raw = os.path.join(root, MNIST_FOLDERS[dataset], "raw")
        return (f"dataset '{dataset}' root {root!r} lacks the idx files: expected "
                + ", ".join(os.path.join(raw, n) for n in MNIST_FILES)
                + f" (each optionally .gz), or the same four files in {os.path.join(root, 'raw')!r} or {root!r}")
    elif dataset == "imagefolder":
        problem = _imagefolder_problem(root)
        if problem:
            return f"dataset 'imagefolder' root {root!r}: {problem} (expects {expected})"
    return ""
