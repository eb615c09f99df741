"""Datasets: registry, shapes determinism, digits, and the local file formats on tiny fixtures."""
import os
import pickle

import numpy as np
import pytest
import torch

from er_core.data import DATASETS, load_dataset


def test_registry_and_unknown_name():
    assert set(DATASETS) == {"shapes", "digits", "cifar10", "cifar100", "stl10", "imagefolder", "svhn", "mnist",
                             "fashion_mnist"}
    with pytest.raises(ValueError, match="known: shapes"):
        load_dataset("imagenet")


def test_shapes_deterministic_balanced_and_sized():
    a = load_dataset("shapes", image_size=16, train_size=200, eval_size=50, seed=3)
    b = load_dataset("shapes", image_size=16, train_size=200, eval_size=50, seed=3)
    c = load_dataset("shapes", image_size=16, train_size=200, eval_size=50, seed=4)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.eval_labels, b.eval_labels)
    assert not torch.equal(a.train_images, c.train_images)
    assert a.train_images.shape == (200, 3, 16, 16) and a.train_images.dtype == torch.uint8
    assert a.num_classes == 10 and torch.bincount(a.train_labels, minlength=10).tolist() == [20] * 10
    assert not torch.equal(a.train_images[:50], a.eval_images)
    x = a.train_images.float().div(255).transpose(0, 1).reshape(3, -1)
    assert np.allclose(a.mean, x.mean(1).tolist(), atol=1e-5)


def test_digits_three_channels_resized():
    d = load_dataset("digits", image_size=16, train_size=100, eval_size=40)
    assert d.train_images.shape == (100, 3, 16, 16) and d.eval_images.shape == (40, 3, 16, 16)
    assert torch.equal(d.train_images[:, 0], d.train_images[:, 1])
    assert set(d.train_labels.tolist()) <= set(range(10)) and d.train_images.max() > 200


def _write_cifar10(root, per_batch=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        batches[name] = data
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": list(range(per_batch))}, f)
    return batches


def test_cifar10_reads_pickles_in_order(tmp_path):
    batches = _write_cifar10(tmp_path)
    bundle = load_dataset("cifar10", root=str(tmp_path), train_size=20, eval_size=4)
    expected = np.concatenate([batches[f"data_batch_{i}"] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    assert torch.equal(bundle.train_images, torch.from_numpy(expected))
    assert bundle.eval_images.shape == (4, 3, 32, 32) and bundle.train_labels.tolist() == [0, 1, 2, 3] * 5


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 6), ("test", 3)):
        with open(folder / name, "wb") as f:
            pickle.dump({"data": np.zeros((n, 3072), np.uint8), "fine_labels": [99 - i for i in range(n)],
                         "coarse_labels": [0] * n}, f)
    bundle = load_dataset("cifar100", root=str(tmp_path), image_size=8, train_size=6, eval_size=3)
    assert bundle.num_classes == 100 and bundle.train_labels.tolist() == [99, 98, 97, 96, 95, 94]
    assert bundle.train_images.shape == (6, 3, 8, 8)


def test_stl10_binary_column_major(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    image = np.zeros((3, 96, 96), np.uint8)
    image[0, 5, 10] = 255  # row 5, column 10 in the true image
    for split in ("train", "test"):
        image.transpose(0, 2, 1).tofile(folder / f"{split}_X.bin")  # STL stores column-major
        np.array([3], np.uint8).tofile(folder / f"{split}_y.bin")
    bundle = load_dataset("stl10", root=str(tmp_path), image_size=96, train_size=1, eval_size=1)
    assert bundle.train_images[0, 0, 5, 10] == 255 and bundle.train_labels.tolist() == [2]


def test_missing_root_names_expected_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        load_dataset("cifar10", root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="root"):
        load_dataset("cifar100", root="")


def test_imagefolder_flat_split(tmp_path):
    from PIL import Image

    for c, colour in (("blue", (0, 0, 255)), ("red", (255, 0, 0))):
        os.makedirs(tmp_path / c)
        for i in range(5):
            Image.new("RGB", (10, 10), colour).save(tmp_path / c / f"{i}.png")
    bundle = load_dataset("imagefolder", root=str(tmp_path), image_size=8)
    assert bundle.num_classes == 2
    assert bundle.train_images.shape[0] + bundle.eval_images.shape[0] == 10
    assert bundle.eval_images.shape[0] == 2
    red = bundle.train_images[bundle.train_labels == 1]
    assert (red[:, 0] == 255).all() and (red[:, 2] == 0).all()
