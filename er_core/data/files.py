"""Datasets read from a local ``root`` through ``torchvision.datasets`` (``download=False``, never a download).

Layouts are torchvision's and listed in :mod:`er_core.dataset_layout`; a missing root or file
raises ``FileNotFoundError`` naming every expected path (the same text study validation and
``er-tune train`` print before anything trains). Whole arrays are converted at once
(``dataset.data``); only ImageFolder decodes files one by one, or streams them (:func:`stream_imagefolder`).

Integrity: torchvision's CIFAR/STL-10/SVHN classes MD5-hash every file before loading (STL-10 even
its 2.7 GB ``unlabeled_X.bin``, which we never read) and reject re-packed subsets; here the files
each loader reads are checked for presence and the parsers reject malformed content.

Grayscale (MNIST, FashionMNIST; ImageFolder/SVHN-style inputs whose channels are identical) is
replicated to three channels and recorded as ``bundle.grayscale``. MNIST-style 28 px digits are
zero-padded (their background) to ``image_size`` when 28 < image_size <= 32 (LeNet-5's 32x32 frame,
every native pixel kept, no interpolation blur) and resized otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import shutil
import tempfile
from dataclasses import dataclass

import torch

from er_core.data.bundle import make_bundle
from er_core.data.stream import ImageFiles, decode_files, decode_image
from er_core.dataset_layout import IMAGE_EXTENSIONS, MNIST_FILES, MNIST_FOLDERS, find_mnist_files, root_problem

MNIST_SIZE = 28
MAX_PAD_SIZE = 32


def _require(dataset: str, root: str) -> None:
    problem = root_problem(dataset, root)
    if problem:
        raise FileNotFoundError(problem + " (never downloaded at run time)")


def _datasets():
    """``torchvision.datasets``, imported when a file dataset is read: importing torchvision costs
    ~4.6 s of CPU on a 2-core machine (it imports ``torch._dynamo``), paid by every Ray worker and
    driver that only ever trains on generated data otherwise."""
    from torchvision import datasets

    return datasets


@functools.cache
def _presence_checked(name: str) -> type:
    """torchvision's dataset class ``name`` without its MD5 pass and class-name metadata read (see
    the module docstring)."""
    cls = getattr(_datasets(), name)
    return type(f"Local{cls.__name__}", (cls,), {"_check_integrity": lambda self: True,
                                                 "_load_meta": lambda self: None})


def _nhwc(array) -> torch.Tensor:
    """numpy uint8 [N, H, W, C] -> a [N, C, H, W] view (no copy; make_bundle slices before copying)."""
    return torch.from_numpy(array).permute(0, 3, 1, 2)


def _labels(values) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.int64)


def load_cifar10(*, root: str, image_size: int = 32, train_size: int = 50000, eval_size: int = 10000,
                 seed: int = 0):
    _require("cifar10", root)
    cifar10 = _presence_checked("CIFAR10")
    train, test = cifar10(root, train=True), cifar10(root, train=False)
    return make_bundle("cifar10", 10, _nhwc(train.data), _labels(train.targets), _nhwc(test.data),
                       _labels(test.targets), image_size=image_size, train_size=train_size, eval_size=eval_size)


def load_cifar100(*, root: str, image_size: int = 32, train_size: int = 50000, eval_size: int = 10000,
                  seed: int = 0):
    _require("cifar100", root)
    cifar100 = _presence_checked("CIFAR100")
    train, test = cifar100(root, train=True), cifar100(root, train=False)  # fine labels
    return make_bundle("cifar100", 100, _nhwc(train.data), _labels(train.targets), _nhwc(test.data),
                       _labels(test.targets), image_size=image_size, train_size=train_size, eval_size=eval_size)


def load_stl10(*, root: str, image_size: int = 96, train_size: int = 5000, eval_size: int = 8000,
               seed: int = 0):
    _require("stl10", root)
    stl10 = _presence_checked("STL10")
    train, test = stl10(root, split="train"), stl10(root, split="test")  # data already [N, 3, H, W]
    return make_bundle("stl10", 10, torch.from_numpy(train.data), _labels(train.labels),
                       torch.from_numpy(test.data), _labels(test.labels), image_size=image_size,
                       train_size=train_size, eval_size=eval_size)


def load_svhn(*, root: str, image_size: int = 32, train_size: int = 73257, eval_size: int = 26032,
              seed: int = 0):
    """SVHN cropped digits (``train`` and ``test``; the 531k ``extra`` split is not read); label 10 -> 0."""
    _require("svhn", root)
    svhn = _presence_checked("SVHN")
    train, test = svhn(root, split="train"), svhn(root, split="test")
    return make_bundle("svhn", 10, torch.from_numpy(train.data), _labels(train.labels),
                       torch.from_numpy(test.data), _labels(test.labels), image_size=image_size,
                       train_size=train_size, eval_size=eval_size)


def _staged_mnist_root(files: dict[str, str], folder: str, staging: str) -> str:
    """Lay the idx files out as torchvision expects (``staging/<folder>/raw``), gunzipping ``.gz`` ones.

    Plain files are symlinked; the user's root is never written to.
    """
    raw = os.path.join(staging, folder, "raw")
    os.makedirs(raw)
    for name, path in files.items():
        target = os.path.join(raw, name)
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink, length=1 << 20)
        else:
            os.symlink(os.path.abspath(path), target)
    return staging


def _mnist_like(dataset: str, root: str, image_size: int, train_size: int, eval_size: int):
    _require(dataset, root)
    folder = MNIST_FOLDERS[dataset]
    cls = _datasets().MNIST if dataset == "mnist" else _datasets().FashionMNIST
    files = find_mnist_files(root, dataset)
    expected = {name: os.path.join(root, folder, "raw", name) for name in MNIST_FILES}
    if files == expected:  # torchvision's own layout, uncompressed: read in place
        train, test = cls(root, train=True), cls(root, train=False)
    else:
        with tempfile.TemporaryDirectory(prefix=f"er_tune_{dataset}_") as staging:
            _staged_mnist_root(files, folder, staging)
            train, test = cls(staging, train=True), cls(staging, train=False)
    fit = "pad" if MNIST_SIZE < image_size <= MAX_PAD_SIZE else "resize"
    return make_bundle(dataset, 10, train.data.unsqueeze(1), train.targets, test.data.unsqueeze(1),
                       test.targets, image_size=image_size, train_size=train_size, eval_size=eval_size, fit=fit)


def load_mnist(*, root: str, image_size: int = 32, train_size: int = 60000, eval_size: int = 10000,
               seed: int = 0):
    return _mnist_like("mnist", root, image_size, train_size, eval_size)


def load_fashion_mnist(*, root: str, image_size: int = 32, train_size: int = 60000, eval_size: int = 10000,
                       seed: int = 0):
    return _mnist_like("fashion_mnist", root, image_size, train_size, eval_size)


def _classes_of(directory: str, classes: list[str]):
    """An ImageFolder over ``directory`` with the class list of another folder (the train split)."""

    class ClassesOf(_datasets().ImageFolder):
        def find_classes(self, directory):
            return classes, {name: index for index, name in enumerate(classes)}

    return ClassesOf(directory, is_valid_file=_is_image, allow_empty=True)


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _decode(samples: list[tuple[str, int]], image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every ``(path, class)`` sample (:func:`~er_core.data.stream.decode_image`) in order."""
    images = torch.empty(len(samples), 3, image_size, image_size, dtype=torch.uint8)
    for row, (path, _) in enumerate(samples):
        images[row] = decode_image(path, image_size)
    return images, _labels([label for _, label in samples])


@dataclass(frozen=True)
class FolderSplit:
    """An ImageFolder's files before decoding: ``train`` in training order (shuffled by the seed),
    ``test`` in file order, each a list of torchvision ``(path, class_index)`` samples."""

    num_classes: int
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]


def imagefolder_split(root: str, seed: int = 0) -> FolderSplit:
    """``root/train`` + ``root/test`` (or ``val``) class folders, or ``root/<class>`` with every fifth
    image of each class (in file-name order) held out for evaluation; train order shuffled by ``seed``
    (``torch.randperm`` over the whole training split, before any ``train_size`` cap)."""
    _require("imagefolder", root)
    eval_dir = next((os.path.join(root, d) for d in ("test", "val") if os.path.isdir(os.path.join(root, d))), None)
    if os.path.isdir(os.path.join(root, "train")) and eval_dir:
        train_folder = _datasets().ImageFolder(os.path.join(root, "train"), is_valid_file=_is_image)
        classes = train_folder.classes
        train, test = list(train_folder.samples), list(_classes_of(eval_dir, classes).samples)
    else:
        folder = _datasets().ImageFolder(root, is_valid_file=_is_image, allow_empty=True)
        classes = folder.classes
        seen: dict[int, int] = {}
        train, test = [], []
        for sample in folder.samples:  # grouped by class, file names sorted within each
            rank = seen.get(sample[1], 0)
            seen[sample[1]] = rank + 1
            (test if rank % 5 == 4 else train).append(sample)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return FolderSplit(len(classes), [train[i] for i in order.tolist()], test)


def load_imagefolder(*, root: str, image_size: int = 32, train_size: int = 10**9, eval_size: int = 10**9,
                     seed: int = 0):
    """The split of :func:`imagefolder_split`, decoded into memory (the first ``train_size`` training images)."""
    split = imagefolder_split(root, seed)
    train_x, train_y = _decode(split.train[:train_size], image_size)
    eval_x, eval_y = _decode(split.test, image_size)
    return make_bundle("imagefolder", split.num_classes, train_x, train_y, eval_x, eval_y,
                       image_size=image_size, train_size=train_size, eval_size=eval_size)


def stream_imagefolder(*, root: str, image_size: int = 32, train_size: int = 10**9, eval_size: int = 10**9,
                       seed: int = 0, bank_size: int = 4000, loader_workers: int = 0):
    """The split of :func:`imagefolder_split` with its training images left on the disk.

    The bundle's ``train_files`` are the first ``train_size`` training files, in training order;
    only their first ``bank_size`` images (the kNN bank, from which the channel statistics are
    computed) and the whole test split are decoded, by ``loader_workers`` processes. The images a
    trial streams are those :func:`load_imagefolder` would have decoded, bit for bit.
    """
    split = imagefolder_split(root, seed)
    files = ImageFiles.from_samples(root, split.train[:train_size], image_size)
    test = ImageFiles.from_samples(root, split.test, image_size)
    bank = decode_files(files, bank_size, workers=loader_workers)
    bundle = make_bundle("imagefolder", split.num_classes, bank, files.labels[:bank.shape[0]].clone(),
                         decode_files(test, workers=loader_workers), test.labels, image_size=image_size,
                         train_size=len(files), eval_size=eval_size)
    return dataclasses.replace(bundle, train_files=files)
