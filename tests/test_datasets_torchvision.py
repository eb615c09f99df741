"""Local datasets through torchvision: tiny files in each real on-disk format, loaded via the registry.

Formats written here byte for byte as the originals: MNIST idx (plain and .gz), CIFAR python
pickles, STL-10 column-major binaries, SVHN .mat (scipy.io.savemat), ImageFolder PNGs.
"""
import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from er_tune.config import ConfigError, TrialConfig, data_root_problem
from er_tune.data import load_dataset
from er_tune.dataset_layout import MNIST_FILES


def _idx_bytes(array: np.ndarray) -> bytes:
    """IDX format: magic 0x0000 08 <ndim> (uint8 data), big-endian int32 dims, then the raw bytes."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _mnist_arrays(n_train=12, n_test=5):
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "t10k": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)}
    images["train"][0, 3, 7] = 201  # a known pixel: row 3, column 7 of the first training image
    labels = {"train": np.arange(n_train, dtype=np.uint8) % 10, "t10k": (9 - np.arange(n_test)).astype(np.uint8)}
    return images, labels


def _write_mnist(directory, *, gz: bool, n_train=12, n_test=5):
    os.makedirs(directory, exist_ok=True)
    images, labels = _mnist_arrays(n_train, n_test)
    for split in ("train", "t10k"):
        for kind, array in (("images-idx3-ubyte", images[split]), ("labels-idx1-ubyte", labels[split])):
            data = _idx_bytes(array)
            path = os.path.join(directory, f"{split}-{kind}")
            if gz:
                with gzip.open(path + ".gz", "wb") as handle:
                    handle.write(data)
            else:
                with open(path, "wb") as handle:
                    handle.write(data)
    return images, labels


@pytest.mark.parametrize("dataset,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_torchvision_layout_padded_to_32(tmp_path, dataset, folder):
    images, labels = _write_mnist(tmp_path / folder / "raw", gz=False)
    bundle = load_dataset(dataset, root=str(tmp_path), image_size=32, train_size=100, eval_size=100)
    assert bundle.name == dataset and bundle.num_classes == 10
    assert bundle.train_images.shape == (12, 3, 32, 32) and bundle.eval_images.shape == (5, 3, 32, 32)
    assert bundle.grayscale and bundle.channels_in == 1
    assert bundle.train_labels.tolist() == labels["train"].tolist()
    assert bundle.eval_labels.tolist() == [9, 8, 7, 6, 5]
    # 28 -> 32 is a 2-pixel zero frame: native pixels unchanged, channels replicated.
    assert torch.equal(bundle.train_images[:, 0, 2:30, 2:30], torch.from_numpy(images["train"]))
    assert bundle.train_images[0, :, 3 + 2, 7 + 2].tolist() == [201, 201, 201]
    assert bundle.train_images[:, :, :2].eq(0).all() and bundle.train_images[:, :, :, 30:].eq(0).all()
    assert torch.equal(bundle.train_images[:, 0], bundle.train_images[:, 2])


def test_mnist_gz_files_directly_in_root_resize_and_root_untouched(tmp_path):
    images, labels = _write_mnist(tmp_path, gz=True)
    before = sorted(os.listdir(tmp_path))
    native = load_dataset("fashion_mnist", root=str(tmp_path), image_size=28, train_size=10, eval_size=3)
    assert native.train_images.shape == (10, 3, 28, 28) and native.eval_labels.tolist() == [9, 8, 7]
    assert torch.equal(native.train_images[:, 1], torch.from_numpy(images["train"][:10]))
    resized = load_dataset("fashion_mnist", root=str(tmp_path), image_size=16, train_size=10, eval_size=3)
    assert resized.train_images.shape == (10, 3, 16, 16) and resized.grayscale
    assert sorted(os.listdir(tmp_path)) == before  # decompressed elsewhere, nothing written into the root


def test_mnist_missing_files_named_before_loading(tmp_path):
    _write_mnist(tmp_path / "MNIST" / "raw", gz=False)
    os.remove(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte")
    problem = data_root_problem("mnist", str(tmp_path))
    for name in MNIST_FILES:
        assert os.path.join(str(tmp_path), "MNIST", "raw", name) in problem
    assert "FashionMNIST/raw/train-images-idx3-ubyte" in data_root_problem("fashion_mnist", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", root=str(tmp_path))
