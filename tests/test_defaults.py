"""``backbone: auto`` and ``augment: auto``: the defaults that learn, and what params.json records.

Data read from disk gets ``resnet_small`` (convnet stays at its untrained kNN on real 28 px images:
README, "Does it learn on real data?"); generated data keeps ``convnet``. Whatever ``auto`` chose is
written down: in a study's trial configs (params.json) and in ``er-tune train``'s summary line.
"""

import json
import os

import pytest

from er_core.config import NEEDS_ROOT, ConfigError, TrialConfig, default_backbone
from er_core.models import build_network
from er_tune.cli import main


@pytest.mark.parametrize("dataset", NEEDS_ROOT)
def test_data_read_from_disk_defaults_to_resnet_small(dataset):
    config = TrialConfig(dataset=dataset, data_root="/nowhere")
    assert config.backbone == "auto" and config.backbone_name == "resnet_small"
    assert config.resolved().backbone == "resnet_small"


@pytest.mark.parametrize("dataset", ["shapes", "digits"])
def test_generated_data_keeps_convnet(dataset):
    assert TrialConfig(dataset=dataset).backbone_name == "convnet" == default_backbone(dataset)


def test_a_named_backbone_wins_and_unknown_names_list_auto():
    assert TrialConfig(dataset="cifar10", backbone="convnet").resolved().backbone == "convnet"
    with pytest.raises(ConfigError, match="allowed: auto, convnet"):
        TrialConfig(backbone="vit")


def test_the_network_is_built_with_the_chosen_backbone():
    net = build_network(TrialConfig(dataset="fashion_mnist", data_root="/x", image_size=28, projector_dim=8,
                                    projector_hidden_dim=16))
    assert type(net.backbone).__name__ == "SmallResNet" and net.backbone.feature_dim == 512


@pytest.mark.parametrize("dataset", ["shapes", "digits"])
def test_the_static_colour_table_agrees_with_the_generated_images(dataset):
    """``augment: auto`` resolved before loading (GRAYSCALE_DATASETS) equals what the bundle says
    (mnist/fashion_mnist: tests/test_datasets_torchvision.py)."""
    from er_core.data import load_dataset

    bundle = load_dataset(dataset, image_size=16, train_size=64, eval_size=16, seed=0)
    config = TrialConfig(dataset=dataset)
    assert config.resolved().augment == config.resolved(bundle.grayscale).augment == (
        "gray" if bundle.grayscale else "color")


@pytest.mark.parametrize("dataset,grayscale,expected", [
    ("fashion_mnist", None, "gray"), ("mnist", None, "gray"), ("cifar10", None, "color"),
    ("shapes", None, "color"), ("imagefolder", None, "auto"), ("imagefolder", True, "gray"),
    ("imagefolder", False, "color")])
def test_augment_auto_resolves_when_the_colour_is_known(dataset, grayscale, expected):
    config = TrialConfig(dataset=dataset, data_root="/x")
    assert config.resolved(grayscale).augment == expected
    assert TrialConfig(dataset=dataset, data_root="/x", augment="color").resolved(grayscale).augment == "color"


def test_study_trial_configs_record_the_chosen_backbone_and_preset(tmp_path):
    from search_spaces import condition_groups, load_study
    from search_spaces.plan import describe, trial_config

    root = tmp_path / "fmnist"
    root.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (root / name).write_bytes(b"")
    study_file = tmp_path / "study.yaml"
    study_file.write_text(f"name: s\ndata: {{dataset: fashion_mnist, root: {root}, image_size: 28}}\n"
                          "methods: [simclr]\nvariants: [original]\nseeds: [0]\n")
    study = load_study(str(study_file))
    params = trial_config(study, condition_groups(study)[0], phase="replicate", seed=0)
    assert params["backbone"] == "resnet_small" and params["augment"] == "gray"
    assert "resnet_small (backbone: auto)" in describe(study)


def test_train_summary_and_params_name_what_auto_chose(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "photos"
    for split, count in (("train", 8), ("test", 4)):
        for label in range(2):
            os.makedirs(root / split / str(label))
            for k in range(count):
                Image.new("L", (12, 12), 60 * label + 5 * k).save(root / split / str(label) / f"{k}.png")
    out = tmp_path / "run"
    code = main(["train", "--method", "simclr", "--variant", "original", "--dataset", "imagefolder",
                 "--epochs", "1", "--out", str(out), "--set", f"data_root={root}", "--set", "image_size=12",
                 "--set", "batch_size=4", "--set", "knn_bank_size=16", "--set", "knn_k=3",
                 "--set", "projector_dim=8", "--set", "projector_hidden_dim=16"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "backbone resnet_small (auto: data read from disk)" in printed
    assert "augment gray (auto: grey images)" in printed
    params = json.loads((out / "params.json").read_text())
    assert params["backbone"] == "resnet_small" and params["augment"] == "gray"
