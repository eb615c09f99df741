"""The Ray Tune side of a trial's reporter (see :mod:`trainers.reporters` for the contract).

:class:`TuneReporter` forwards a trial's epochs and checkpoints to ``ray.tune.report`` /
``ray.tune.get_checkpoint`` and finds the trial's directory in the experiment storage.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any, Iterator, Mapping

from er_core.io import write_bytes_atomic
from er_core.rules import EVENTS_FILE
from er_tune.ray_storage import trial_storage


def shared_trial_dir() -> str | None:
    """The trial's directory in the experiment storage, when that storage is a mounted path.

    ``tune.get_context().get_trial_dir()`` is a staging directory on the node the trial runs on;
    Ray copies the *driver* node's staging directory to the storage, but never a worker node's.
    A trial on a worker node would lose its ``collapse_events.jsonl`` and TensorBoard files, and a
    trial retried on another node would not find its earlier events. With a filesystem path as
    storage (the cluster requirement: mounted at the same place on every node) the trial writes
    straight into ``<storage>/<phase>/<trial_dir>``, where every node and the report see it at once.
    Returns ``None`` for URI storage (``s3://``...), where Ray syncs the staging directory instead.
    """
    import pyarrow.fs

    storage = trial_storage()
    try:
        if not isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
            return None
        return storage.trial_fs_path
    except Exception:  # noqa: BLE001 - no storage context: fall back to Ray's staging directory
        return None


def artifact_dir() -> str | None:
    """For URI storage: the trial's working directory, which Ray uploads to the storage trial dir
    at every checkpoint when the run has ``SyncConfig(sync_artifacts=True)`` (set by er-tune)."""
    try:
        return trial_storage().trial_working_directory
    except Exception:  # noqa: BLE001 - no storage context
        return None


def copy_if_missing(fs, remote_path: str, local_path: str) -> bool:
    """Download ``remote_path`` from the pyarrow filesystem ``fs`` unless ``local_path`` exists."""
    import pyarrow.fs

    if os.path.exists(local_path) or fs.get_file_info(remote_path).type != pyarrow.fs.FileType.File:
        return False
    with fs.open_input_stream(remote_path) as source:
        write_bytes_atomic(local_path, source.read())
    return True


def restore_trial_files(local_dir: str) -> None:
    """A trial retried on another node starts with an empty working directory: fetch its
    ``collapse_events.jsonl`` from the storage first, so the upload does not drop earlier events."""
    storage = trial_storage()
    try:
        copy_if_missing(storage.storage_filesystem, f"{storage.trial_fs_path}/{EVENTS_FILE}",
                        os.path.join(local_dir, EVENTS_FILE))
    except Exception:  # noqa: BLE001 - a missing history must not fail the trial
        return


def report_epoch(api: Any, metrics: Mapping[str, Any], checkpoint_dir: str | None, *, attach: bool = True) -> None:
    """``api.report(metrics, checkpoint=...)`` for ``api`` = ``ray.tune`` or ``ray.train``, with the
    epoch's checkpoint directory attached when ``attach``; the directory is removed afterwards."""
    checkpoint = api.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir is not None and attach else None
    api.report(dict(metrics), checkpoint=checkpoint)
    if checkpoint_dir is not None:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)


@contextlib.contextmanager
def checkpoint_directory(checkpoint: Any) -> Iterator[str | None]:
    """The local directory of a Ray ``Checkpoint`` while the context lasts (None without one)."""
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as directory:
        yield directory


class TuneReporter:
    """Forwards to Ray Tune from inside a function trainable (Ray 2.60 ``ray.tune`` API).

    The trial's HParams session is written by the driver when the trial ends
    (:class:`er_tune.observers.TrialSessions`), so that a trial stopped by ASHA or one that
    errored gets one too; the trial itself only writes its scalars.
    """

    writes_hparams = False

    def __init__(self) -> None:
        from ray import tune

        self._tune = tune
        shared = shared_trial_dir()
        self.trial_dir = shared or artifact_dir() or tune.get_context().get_trial_dir()
        os.makedirs(self.trial_dir, exist_ok=True)
        if shared is None:
            restore_trial_files(self.trial_dir)

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: str | None = None) -> None:
        report_epoch(self._tune, metrics, checkpoint_dir)

    def latest_checkpoint(self):
        return checkpoint_directory(self._tune.get_checkpoint())
