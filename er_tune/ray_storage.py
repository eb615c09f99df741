"""The one place where a trial reaches past Ray Tune's stable API: its storage context.

A trial needs the experiment storage's pyarrow filesystem and its own folder there
(:mod:`er_tune.tune_reporter`), which Ray exposes only as a developer API:
``ray.tune.get_context().get_storage()`` returns a ``StorageContext`` whose interface "may change
without notice between minor versions". Everything er-tune reads from it is here, by name
(:data:`STORAGE_ATTRIBUTES`), and ``tests/test_ray_storage.py`` fails loudly, naming what moved, when
an installed Ray no longer has it. The per-checkpoint log lines come from Ray's storage modules,
whose logger names are listed in :data:`CHECKPOINT_LOGGERS` and checked by the same test.
"""

from __future__ import annotations

import logging
from typing import Any

STORAGE_ATTRIBUTES = ("storage_filesystem", "trial_fs_path", "trial_working_directory")
CHECKPOINT_LOGGERS = ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage")


def trial_storage() -> Any | None:
    """This trial's Ray storage context (attributes :data:`STORAGE_ATTRIBUTES`), or ``None``
    outside a Tune trial or where Ray no longer offers it."""
    from ray import tune

    try:
        return tune.get_context().get_storage()
    except Exception:  # noqa: BLE001 - a developer API: callers fall back to the staging dir
        return None


def quiet_checkpoint_logs() -> None:
    """Ray logs one "checkpoint created" line per epoch at INFO; keep its warnings."""
    for name in CHECKPOINT_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def missing_apis() -> list[str]:
    """What of the above the installed Ray lacks (empty when everything is where er-tune expects)."""
    import importlib
    import importlib.util

    from ray import tune

    missing = []
    context = type(tune.get_context()) if callable(getattr(tune, "get_context", None)) else None
    if context is None or not callable(getattr(context, "get_storage", None)):
        missing.append("ray.tune.get_context().get_storage()")
    try:
        storage_class = importlib.import_module(CHECKPOINT_LOGGERS[0]).StorageContext
    except (ImportError, AttributeError):
        missing.append(f"{CHECKPOINT_LOGGERS[0]}.StorageContext")
        storage_class = None
    if storage_class is not None:
        import inspect

        source = inspect.getsource(storage_class)
        missing += [f"StorageContext.{name}" for name in STORAGE_ATTRIBUTES
                    if not hasattr(storage_class, name) and f"self.{name}" not in source]
    missing += [f"logger module {name}" for name in CHECKPOINT_LOGGERS if importlib.util.find_spec(name) is None]
    return missing
