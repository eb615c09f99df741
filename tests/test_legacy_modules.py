"""Experiments written before the folder move still resume: old pickled module paths resolve."""

import pickle
import subprocess
import sys
from pathlib import Path

from er_core.config import CollapseConfig

ROOT = Path(__file__).resolve().parents[1]


def old_pickle(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n.".encode()  # protocol 0 GLOBAL: a class by its module path


def test_old_module_paths_unpickle_to_the_classes_they_became():
    code = (
        "import pickle, sys\n"
        "from er_tune.legacy import install_legacy_modules\n"
        "install_legacy_modules(); install_legacy_modules()\n"
        "import er_core.config, er_tune.grouped, er_tune.progress\n"
        f"assert pickle.loads({old_pickle('er_tune.config', 'CollapseConfig')!r}) is er_core.config.CollapseConfig\n"
        f"assert pickle.loads({old_pickle('search_spaces.grouped', 'GroupedASHA')!r}) is er_tune.grouped.GroupedASHA\n"
        f"assert pickle.loads({old_pickle('er_tune.service.progress', 'StudyProgress')!r}) "
        "is er_tune.progress.StudyProgress\n"
        f"assert pickle.loads({old_pickle('er_tune.objectives.dino', 'DINO')!r}).__module__ == 'er_core.objectives.dino'\n"
        "assert not hasattr(er_core.config, '__path__')  # a module alias stays a module\n"
        "print('ok')\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


def test_a_collapse_config_pickled_under_the_old_path_loads_equal():
    from er_tune.legacy import install_legacy_modules

    install_legacy_modules()
    config = CollapseConfig(stop_on_collapse=False)
    blob = pickle.dumps(config, protocol=4).replace(b"er_core.config", b"er_tune.config")  # same length
    assert b"er_tune.config" in blob
    assert pickle.loads(blob) == config
