"""TrialConfig / CollapseConfig: defaults, coercion from strings, and errors that name the key."""

import pytest

from er_core.config import CollapseConfig, ConfigError, TrialConfig


def test_defaults_round_trip_through_dict():
    config = TrialConfig(method="byol", variant="er", ema=0.9)
    again = TrialConfig.from_dict(config.to_dict())
    assert again == config
    assert again.objective == "byol_er"


def test_meta_keys_are_ignored():
    config = TrialConfig.from_dict({"method": "dino", "phase": "search", "group": "g", "seed": 3})
    assert config.method == "dino" and config.seed == 3


def test_overrides_coerce_strings():
    config = TrialConfig().with_overrides(["batch_size=64", "lr=0.5", "dino_centering=false",
                                           "collapse.stop_on_collapse=no", "ema=0"])
    assert config.batch_size == 64 and isinstance(config.batch_size, int)
    assert config.lr == 0.5 and config.ema == 0.0
    assert config.dino_centering is False
    assert config.collapse.stop_on_collapse is False


@pytest.mark.parametrize("pair, fragment", [
    ("batch_sise=64", "did you mean 'batch_size'"),
    ("batch_size=1", "batch_size=1 is out of range; allowed: >= 2"),
    ("batch_size=abc", "batch_size must be an integer"),
    ("ema=1.5", "allowed: 0 <= ema <= 1"),
    ("method=simclrr", "did you mean 'simclr'"),
    ("variant=both", "allowed: original, er"),
    ("lr=0", "lr=0.0 is out of range; allowed: > 0"),
    ("lr=nan", "lr must be finite"),
    ("collapse.patience=2", "allowed: collapse.stop_on_collapse"),
    ("dino_centering=maybe", "must be a boolean"),
    ("noequals", "expects key=value"),
])
def test_bad_overrides_name_key_and_allowed_values(pair, fragment):
    with pytest.raises(ConfigError) as error:
        TrialConfig().with_overrides([pair])
    assert fragment in str(error.value)


def test_batch_larger_than_dataset_rejected():
    with pytest.raises(ConfigError, match="exceeds train_size"):
        TrialConfig(train_size=100, batch_size=128)


def test_collapse_config_validates_fractions():
    with pytest.raises(ConfigError, match="collapse.cluster_threshold"):
        CollapseConfig(cluster_threshold=2.0)
    assert CollapseConfig().std_ratio_threshold == 0.05


def test_registry_names_match_the_registries():
    from er_core.config import BACKBONE_NAMES, DATASET_NAMES, NEEDS_ROOT
    from er_core.data import DATASETS
    from er_core.models import BACKBONES

    assert tuple(DATASETS) == DATASET_NAMES and tuple(BACKBONES) == BACKBONE_NAMES
    assert set(NEEDS_ROOT) < set(DATASET_NAMES) and "shapes" not in NEEDS_ROOT


def test_the_code_checks_its_torch_free_names_against_the_classes(monkeypatch):
    """The torch-free method names are checked against the objective classes by the package
    itself when it is imported, not only by this suite."""
    import er_core.config as config_module
    from er_core.objectives import OBJECTIVES, check_registry

    check_registry(OBJECTIVES)
    monkeypatch.setattr(config_module, "METHODS", config_module.METHODS + ("toy",))
    with pytest.raises(ImportError, match="toy"):
        check_registry(OBJECTIVES)
    monkeypatch.undo()
    renamed = {**OBJECTIVES, "simclr": OBJECTIVES["byol"]}
    with pytest.raises(ImportError, match="simclr: registered as byol/original"):
        check_registry(renamed)


def test_unknown_dataset_and_backbone_rejected_before_any_import():
    with pytest.raises(ConfigError, match="did you mean 'imagefolder'"):
        TrialConfig(dataset="imagenet")
    with pytest.raises(ConfigError, match="allowed: auto, convnet, resnet18_cifar"):
        TrialConfig(backbone="vit")


def test_data_root_problem(tmp_path):
    from er_core.config import data_root_problem

    assert data_root_problem("shapes", "") == ""
    assert "required" in data_root_problem("cifar10", "")
    assert "does not exist" in data_root_problem("stl10", str(tmp_path / "missing"))
    # An existing directory without the dataset's files fails too, naming the files it lacks.
    problem = data_root_problem("cifar10", str(tmp_path))
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_1") in problem and "test_batch" in problem
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(b"")
    assert data_root_problem("cifar10", str(tmp_path)) == ""
