"""scripts/check_extra.py: the test extra's distributions come from the package metadata, nested extras included."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_extra.py"
spec = importlib.util.spec_from_file_location("check_extra", SCRIPT)
check_extra = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_extra)


def test_nested_extras_are_followed_once_and_other_extras_ignored():
    requires = ['ray[default]>=2.40; extra == "cluster"', 'wandb>=0.16; extra == "wandb"',
                'pytest>=7.4; extra == "test"', 'moto[server]>=5.0; extra == "test"',
                'er-tune[cluster,test]; extra == "test"', 'torch<=2.14.1', 'mlflow-skinny; extra == "mlflow"']
    assert check_extra.distributions_of("test", requires) == {"pytest", "moto", "ray"}
    assert check_extra.distributions_of("cluster", requires) == {"ray"}
    assert check_extra.distributions_of("nope", requires) == set()


def test_the_installed_test_extra_is_complete_and_names_the_nested_trackers(capsys):
    import importlib.metadata as metadata

    wanted = check_extra.distributions_of("test", metadata.requires("er-tune"))
    assert {"pytest", "moto", "tensorboard", "optuna-dashboard", "ray", "mlflow-skinny", "wandb"} <= wanted
    assert check_extra.main("test") == 0 and capsys.readouterr().err == ""
