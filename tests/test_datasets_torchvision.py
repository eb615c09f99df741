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

from er_core.config import ConfigError, TrialConfig, data_root_problem
from er_core.data import load_dataset
from er_core.dataset_layout import MNIST_FILES


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
    # the static table augment: auto reads before loading agrees with the loaded images
    assert TrialConfig(dataset=dataset, data_root="/x").resolved().augment == "gray"
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


def test_mnist_root_pointing_at_the_class_folder(tmp_path):
    images, _ = _write_mnist(tmp_path / "MNIST" / "raw", gz=True)
    bundle = load_dataset("mnist", root=str(tmp_path / "MNIST"), image_size=28, train_size=4, eval_size=2)
    assert torch.equal(bundle.train_images[:, 2], torch.from_numpy(images["train"][:4]))


def test_mnist_missing_files_named_before_loading(tmp_path):
    _write_mnist(tmp_path / "MNIST" / "raw", gz=False)
    os.remove(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte")
    problem = data_root_problem("mnist", str(tmp_path))
    for name in MNIST_FILES:
        assert os.path.join(str(tmp_path), "MNIST", "raw", name) in problem
    assert "FashionMNIST/raw/train-images-idx3-ubyte" in data_root_problem("fashion_mnist", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", root=str(tmp_path))


def _pickle(path, value):
    with open(path, "wb") as handle:
        pickle.dump(value, handle, protocol=2)


def test_cifar10_python_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    rows = {}
    for index, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (3, 3072), dtype=np.uint8)  # row = R plane, G plane, B plane (32x32 each)
        rows[name] = data
        _pickle(folder / name, {"batch_label": name, "labels": [index, 9, 0], "data": data,
                                "filenames": [f"{name}_{k}.png" for k in range(3)]})
    _pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072})
    bundle = load_dataset("cifar10", root=str(tmp_path), image_size=32, train_size=100, eval_size=100)
    assert bundle.train_images.shape == (15, 3, 32, 32) and bundle.eval_images.shape == (3, 3, 32, 32)
    assert bundle.train_labels.tolist()[:6] == [0, 9, 0, 1, 9, 0] and bundle.eval_labels.tolist() == [5, 9, 0]
    # Pixel (row 4, column 11) of channel G of the second image of data_batch_2: byte 1024 + 4*32 + 11.
    assert int(bundle.train_images[4, 1, 4, 11]) == int(rows["data_batch_2"][1, 1024 + 4 * 32 + 11])
    assert not bundle.grayscale and bundle.channels_in == 3


def test_cifar100_fine_labels_resized(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 4), ("test", 2)):
        data = np.zeros((n, 3072), np.uint8)
        data[:, :1024] = 200  # red plane
        _pickle(folder / name, {"data": data, "fine_labels": [99 - i for i in range(n)], "coarse_labels": [1] * n})
    bundle = load_dataset("cifar100", root=str(tmp_path), image_size=8, train_size=10, eval_size=10)
    assert bundle.num_classes == 100 and bundle.train_labels.tolist() == [99, 98, 97, 96]
    assert bundle.train_images.shape == (4, 3, 8, 8) and bundle.eval_labels.tolist() == [99, 98]
    assert bundle.train_images[:, 0].eq(200).all() and bundle.train_images[:, 1:].eq(0).all()


def test_stl10_binary_column_major(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    images = np.zeros((2, 3, 96, 96), np.uint8)
    images[1, 2, 5, 10] = 255  # second image, blue, row 5, column 10 of the true image
    for split in ("train", "test"):
        images.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")  # STL-10 stores each plane column-major
        np.array([1, 10], np.uint8).tofile(folder / f"{split}_y.bin")  # labels 1..10 on disk
    bundle = load_dataset("stl10", root=str(tmp_path), image_size=96, train_size=5, eval_size=5)
    assert bundle.train_images.shape == (2, 3, 96, 96) and bundle.train_labels.tolist() == [0, 9]
    assert bundle.train_images[1, 2, 5, 10] == 255 and bundle.train_images[1, 2, 10, 5] == 0
    assert load_dataset("stl10", root=str(tmp_path), image_size=32, train_size=1).train_images.shape == (1, 3, 32, 32)


def test_svhn_mat_files(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    stored = {}
    for split, n in (("train", 6), ("test", 3)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # SVHN's X is [H, W, C, N]
        y = np.array([[10], [1], [2], [3], [4], [5]][:n], dtype=np.uint8)  # digit 0 is stored as 10
        stored[split] = x
        savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
    bundle = load_dataset("svhn", root=str(tmp_path), image_size=32, train_size=10, eval_size=10)
    assert bundle.train_images.shape == (6, 3, 32, 32) and bundle.eval_images.shape == (3, 3, 32, 32)
    assert bundle.train_labels.tolist() == [0, 1, 2, 3, 4, 5] and bundle.eval_labels.tolist() == [0, 1, 2]
    assert int(bundle.train_images[4, 2, 7, 19]) == int(stored["train"][7, 19, 2, 4])
    assert not bundle.grayscale


def test_imagefolder_train_test_grey_pngs(tmp_path):
    from PIL import Image

    for split, count in (("train", 3), ("test", 2)):
        for index, name in enumerate(("cat", "dog", "eel")):
            if split == "test" and name == "dog":
                continue  # a class absent from test keeps its index (1) from train
            os.makedirs(tmp_path / split / name)
            for k in range(count):
                Image.new("L", (6, 6), 40 * index + k).save(tmp_path / split / name / f"{k}.png")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    bundle = load_dataset("imagefolder", root=str(tmp_path), image_size=6, seed=0)
    assert bundle.num_classes == 3 and bundle.grayscale
    assert bundle.train_images.shape == (9, 3, 6, 6)
    assert sorted(bundle.train_labels.tolist()) == [0] * 3 + [1] * 3 + [2] * 3
    assert bundle.eval_labels.tolist() == [0, 0, 2, 2]
    assert bundle.eval_images[2, :, 0, 0].tolist() == [80, 80, 80]  # eel/0.png
    for image, label in zip(bundle.train_images, bundle.train_labels):
        assert int(image[0, 3, 3]) - 40 * int(label) in (0, 1, 2)  # pixel value encodes the class


@pytest.mark.parametrize("dataset,expected", [
    ("cifar10", "cifar-10-batches-py/data_batch_1"), ("cifar100", "cifar-100-python/train"),
    ("stl10", "stl10_binary/train_X.bin"), ("svhn", "train_32x32.mat"),
    ("mnist", "MNIST/raw/train-images-idx3-ubyte"), ("fashion_mnist", "FashionMNIST/raw/t10k-labels-idx1-ubyte"),
    ("imagefolder", "no class folder with images")])
def test_wrong_root_fails_before_training_naming_expected_paths(tmp_path, dataset, expected):
    assert expected in data_root_problem(dataset, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=expected.replace("/", ".")):
        load_dataset(dataset, root=str(tmp_path))
    missing = str(tmp_path / "nowhere")
    problem = data_root_problem(dataset, missing)
    assert "does not exist" in problem and (expected in problem or dataset == "imagefolder")
    assert "required" in data_root_problem(dataset, "")


def test_cli_train_rejects_wrong_root_before_training(tmp_path, capsys):
    from er_tune.cli import main

    out = tmp_path / "trial"
    code = main(["train", "--method", "simclr", "--dataset", "fashion_mnist", "--set", f"data_root={tmp_path}",
                 "--out", str(out)])
    assert code == 2 and not out.exists()
    assert os.path.join(str(tmp_path), "FashionMNIST", "raw", "train-images-idx3-ubyte") in capsys.readouterr().err


def test_augment_key_in_trial_config():
    assert TrialConfig().augment == "auto" and TrialConfig.from_dict({"augment": "gray"}).augment == "gray"
    with pytest.raises(ConfigError, match="allowed: auto, color, gray"):
        TrialConfig().with_overrides(["augment=colour"])


def test_imagefolder_train_without_test_is_rejected(tmp_path):
    os.makedirs(tmp_path / "train" / "a")
    assert "neither" in data_root_problem("imagefolder", str(tmp_path))
