"""Module names of experiments written before the folders became floors, so that they still resume.

Tune's saved state (``tuner.pkl``, the searcher's and scheduler's state) pickles classes by their
module path. Until the science core moved to ``er_core`` and the Ray adapters up to the service,
those paths were ``er_tune.config``, ``er_tune.service.*``, ``search_spaces.grouped`` and so on.
:func:`install_legacy_modules` makes each old name import the module it became (a meta-path finder
consulted before the others), so ``Tuner.restore`` and the searcher's ``restore`` unpickle them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

_CORE = ("collapse", "config", "dataset_layout", "estimators", "io", "outcome", "power", "rules",
         "data", "models", "objectives")
_SERVICE = ("cleanup", "cli", "launch", "observers", "progress", "storage")
LEGACY_MODULES: dict[str, str] = {
    **{f"er_tune.{name}": f"er_core.{name}" for name in _CORE},
    "er_tune.service": "er_tune",
    **{f"er_tune.service.{name}": f"er_tune.{name}" for name in _SERVICE},
    "search_spaces.grouped": "er_tune.grouped",
    "search_spaces.fixed_searcher": "er_tune.fixed_searcher",
    "trainers.trainable": "er_tune.trainable",
}


def current_name(name: str) -> str | None:
    """The module an old module path became (submodules of a moved package included), or None."""
    for old, new in LEGACY_MODULES.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old):]
    return None


class _LegacyFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        new = current_name(fullname)
        if new is None or new == fullname:
            return None
        module = importlib.import_module(new)
        return importlib.machinery.ModuleSpec(fullname, self, is_package=hasattr(module, "__path__"))

    def create_module(self, spec):
        return importlib.import_module(current_name(spec.name))

    def exec_module(self, module):  # the module it became is already executed
        return None


_FINDER = _LegacyFinder()


def install_legacy_modules() -> None:
    """Idempotent; called by the launcher before it restores a Tune experiment."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
