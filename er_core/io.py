"""Small file helpers shared by trials, the study service and reports: atomic writes, pickled state.

Every atomic write in er-tune goes through :func:`atomic_path`: the content is written to a
temporary path in the target's directory and moved into place with ``os.replace`` (atomic on
POSIX): a reader sees the old file (or directory) or the new one, never a partial one, and a
failed write leaves no temporary behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
from typing import Any, Iterator

TMP_MARK = ".tmp"  # in the name of every temporary (``<target>.tmp-<pid>``): listings skip it


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path beside ``path`` to write a file or directory to; moved onto ``path`` when
    the block ends without an exception (an existing directory at ``path`` must be removed first),
    removed otherwise."""
    tmp = f"{path}{TMP_MARK}-{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.remove(tmp)


def is_temporary(name: str) -> bool:
    """Whether a file name is an :func:`atomic_path` temporary (or an older ``<name>.tmp``)."""
    return TMP_MARK in name


def write_bytes_atomic(path: str, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically; ``fsync`` forces it to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())


def write_text_atomic(path: str, text: str, *, fsync: bool = True) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (:func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def write_json_atomic(path: str, payload: Any) -> None:
    """Write ``payload`` as indented, key-sorted JSON to ``path`` atomically (values JSON lacks: str)."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str))


def dump_state(path: str, state: dict[str, Any]) -> None:
    """Pickle a searcher's or scheduler's state dict (Ray Tune's save/restore interface)."""
    with open(path, "wb") as handle:
        pickle.dump(state, handle)


def load_state(path: str) -> dict[str, Any]:
    with open(path, "rb") as handle:
        return pickle.load(handle)
