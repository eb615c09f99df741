"""The experiment folder as a local path or a pyarrow filesystem URI (``s3://``, ``gs://``...).

Ray Tune writes trials to either; the files er-tune itself writes (``study.yaml``, ``plan.json``,
``best_configs.json``, the Optuna journal file) go through these helpers so that a URI experiment
is a folder in the bucket like a local one. ``er-tune status``/``report`` read a URI experiment
through :func:`local_mirror`, a local copy of everything but checkpoints.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os

from er_core.io import write_bytes_atomic, write_text_atomic
from er_core.outcome import storage_location
from er_core.rules import ABANDONED_DIR, CHECKPOINT_PREFIX, EXPERIMENT_STATE_GLOB

OPTUNA_JOURNAL = "journal.log"  # the default Optuna storage: Optuna's journal file
OPTUNA_DB = "optuna.db"  # the default of experiments begun before the journal file (still resumed)
OPTUNA_FILES = (OPTUNA_JOURNAL, OPTUNA_DB)


def is_uri(exp_dir: str) -> bool:
    return "://" in exp_dir


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def read_text(exp_dir: str, name: str) -> str | None:
    """``<exp_dir>/<name>`` as text, or ``None`` when it does not exist."""
    filesystem, path = storage_location(exp_dir)
    if filesystem is None:
        target = os.path.join(path, name)
        if not os.path.exists(target):
            return None
        with open(target, encoding="utf-8") as handle:
            return handle.read()
    import pyarrow.fs

    target = _join(path, name)
    if filesystem.get_file_info(target).type != pyarrow.fs.FileType.File:
        return None
    with filesystem.open_input_stream(target) as stream:
        return stream.read().decode("utf-8")


def write_text(exp_dir: str, name: str, text: str, *, overwrite: bool = True) -> None:
    """Write ``<exp_dir>/<name>`` (atomically on a local disk); keep it if ``overwrite`` is off."""
    if not overwrite and read_text(exp_dir, name) is not None:
        return
    filesystem, path = storage_location(exp_dir)
    if filesystem is None:
        os.makedirs(path, exist_ok=True)
        write_text_atomic(os.path.join(path, name), text, fsync=False)
        return
    with filesystem.open_output_stream(_join(path, name)) as stream:
        stream.write(text.encode("utf-8"))


def cache_dir(exp_dir: str, purpose: str) -> str:
    """A local folder for a URI experiment: ``$ER_TUNE_CACHE`` or ``~/.cache/er-tune``."""
    root = os.environ.get("ER_TUNE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "er-tune")
    digest = hashlib.sha256(exp_dir.encode()).hexdigest()[:12]
    name = exp_dir.rstrip("/").rsplit("/", 1)[-1] or "experiment"
    return os.path.join(root, f"{name}-{digest}", purpose)


def optuna_dir(exp_dir: str) -> str:
    """The folder of the default Optuna storage file: ``<exp>/optuna`` on a local disk; for a URI
    experiment a local folder holding a copy of ``<exp>/optuna/journal.log`` (or an older
    experiment's ``optuna.db``: neither file can be appended to in an object store), uploaded again
    by :func:`upload_optuna` when the search phase ends."""
    filesystem, path = storage_location(exp_dir)
    if filesystem is None:
        return os.path.join(path, "optuna")
    local = cache_dir(exp_dir, "optuna")
    os.makedirs(local, exist_ok=True)
    import pyarrow.fs

    for name in OPTUNA_FILES:
        remote = _join(path, f"optuna/{name}")
        if filesystem.get_file_info(remote).type == pyarrow.fs.FileType.File:
            with filesystem.open_input_stream(remote) as source, open(os.path.join(local, name), "wb") as target:
                target.write(source.read())
    return local


def upload_optuna(exp_dir: str, local_dir: str) -> None:
    """Copy the local Optuna storage file of a URI experiment to ``<exp>/optuna/``."""
    filesystem, path = storage_location(exp_dir)
    if filesystem is None:
        return
    for name in OPTUNA_FILES:
        source = os.path.join(local_dir, name)
        if os.path.exists(source):
            with open(source, "rb") as handle, filesystem.open_output_stream(_join(path, f"optuna/{name}")) as stream:
                stream.write(handle.read())


def local_mirror(exp_dir: str) -> str:
    """A local folder with the experiment's files minus checkpoints: ``exp_dir`` itself when it is
    a local path, else a copy under the cache refreshed from the URI (for ``status``/``report``)."""
    filesystem, path = storage_location(exp_dir)
    if filesystem is None:
        return path
    import pyarrow.fs

    local = cache_dir(exp_dir, "mirror")
    selector = pyarrow.fs.FileSelector(path, recursive=True, allow_not_found=False)
    for info in filesystem.get_file_info(selector):
        relative = info.path[len(path.rstrip("/")) + 1:]
        if info.type != pyarrow.fs.FileType.File or f"/{CHECKPOINT_PREFIX}" in f"/{relative}":
            continue
        target = os.path.join(local, relative)
        if os.path.exists(target) and os.path.getsize(target) == info.size and "tfevents" in relative:
            continue  # an event file already copied (written once, by a trial that has ended)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with filesystem.open_input_stream(info.path) as source:
            write_bytes_atomic(target, source.read(), fsync=False)
    return local




def has_experiment_state(phase_dir: str) -> bool:
    """Whether Ray Tune saved a snapshot of the phase (``experiment_state-*.json``).

    ``Tuner.can_restore`` only looks for ``tuner.pkl``, which the Tuner writes before its first
    snapshot: a driver killed in between leaves a folder that ``Tuner.restore`` cannot resume (it
    logs "Failed to restore the run state" and goes on with a one-trial plan).
    """
    return any(fnmatch.fnmatchcase(name, EXPERIMENT_STATE_GLOB) for name in _names(phase_dir))


def set_aside_unsnapshotted_trials(phase_dir: str) -> list[str]:
    """Move the trial folders of a phase without a snapshot into ``<phase>/.abandoned/``.

    No snapshot names them, so a fresh start would run their configurations again under new
    folders and the report would count both; set aside, they are kept but no longer read. Returns
    the names moved.
    """
    filesystem, path = storage_location(phase_dir)
    moved = []
    for name in _names(phase_dir):
        if name == ABANDONED_DIR or read_text(_join(phase_dir, name), "params.json") is None:
            continue
        if filesystem is None:
            os.makedirs(os.path.join(path, ABANDONED_DIR), exist_ok=True)
            os.replace(os.path.join(path, name), os.path.join(path, ABANDONED_DIR, name))
        else:
            _move_tree(filesystem, _join(path, name), _join(path, f"{ABANDONED_DIR}/{name}"))
        moved.append(name)
    return moved


def _names(folder: str) -> list[str]:
    """The entries directly inside a local folder or a URI prefix (none if it does not exist)."""
    filesystem, path = storage_location(folder)
    if filesystem is None:
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    import pyarrow.fs

    infos = filesystem.get_file_info(pyarrow.fs.FileSelector(path, recursive=False, allow_not_found=True))
    return sorted(info.base_name for info in infos)


def _move_tree(filesystem, source: str, target: str) -> None:
    """Copy every file under ``source`` to ``target`` then delete ``source`` (object stores have
    no directory rename)."""
    import pyarrow.fs

    for info in filesystem.get_file_info(pyarrow.fs.FileSelector(source, recursive=True)):
        if info.type == pyarrow.fs.FileType.File:
            filesystem.copy_file(info.path, target + info.path[len(source):])
    filesystem.delete_dir(source)
