"""Small file helpers shared by trials, the study service and reports: atomic JSON, pickled state.

Atomic writes go to a temporary file in the target's directory and are moved into place with
``os.replace`` (atomic on POSIX): a reader sees the old file or the new one, never a partial one,
and a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import json
import os
import pickle
from typing import Any


def write_json_atomic(path: str, payload: Any) -> None:
    """Write ``payload`` as indented, key-sorted JSON to ``path`` atomically (values JSON lacks: str)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def dump_state(path: str, state: dict[str, Any]) -> None:
    """Pickle a searcher's or scheduler's state dict (Ray Tune's save/restore interface)."""
    with open(path, "wb") as handle:
        pickle.dump(state, handle)


def load_state(path: str) -> dict[str, Any]:
    with open(path, "rb") as handle:
        return pickle.load(handle)
