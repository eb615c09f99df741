"""Where a trial's per-epoch results and checkpoints go.

A reporter has three members, used by :func:`trainers.trial.run_trial`:

- ``trial_dir``: the directory for the trial's own files (TensorBoard, ``collapse_events.jsonl``);
- ``report(metrics, checkpoint_dir)``: record one epoch and, optionally, the checkpoint directory
  written for it (the reporter takes ownership of it);
- ``latest_checkpoint()``: a context manager yielding the newest checkpoint directory or ``None``;

and optionally ``truncate_after(epoch)`` (:class:`LocalReporter` only), called as the trial starts,
after any checkpoint is restored, to drop result lines of epochs the resumed trial reports again
(Ray's ``result.json`` keeps them; readers drop them with ``reports.results_io.drop_superseded``).

:class:`LocalReporter` reproduces Ray Tune's on-disk format (``params.json``, ``result.json`` lines)
without Ray; :class:`TuneReporter` forwards to ``ray.tune.report`` / ``ray.tune.get_checkpoint``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import uuid
from typing import Any, Iterator, Mapping

from er_tune.io import write_json_atomic
from er_tune.rules import CHECKPOINT_PREFIX


class LocalReporter:
    """Ray-compatible result files in ``trial_dir`` without Ray (used by ``er-tune train``).

    ``result.json`` gets one JSON object per epoch with Ray's bookkeeping keys
    (``training_iteration``, ``trial_id``, ``time_total_s``, ``timestamp``, ``done``); each line is
    flushed and fsynced so a killed process never loses a finished epoch. Checkpoints are copied to
    ``checkpoint_<iteration>`` via a temporary directory and a rename; the newest ``keep`` are kept.
    The trial writes its own HParams session (there is no driver).
    """

    writes_hparams = True

    def __init__(self, trial_dir: str, params: Mapping[str, Any], *, keep: int = 2,
                 trial_id: str | None = None) -> None:
        self.trial_dir = os.path.abspath(trial_dir)
        self.keep = keep
        os.makedirs(self.trial_dir, exist_ok=True)
        params_path = os.path.join(self.trial_dir, "params.json")
        write_json_atomic(params_path, dict(params))
        self.trial_id = trial_id or uuid.uuid4().hex[:8]
        self._start = time.time()
        self._iteration = self._count_results()
        self._time_offset = self._last_time_total()

    def _result_lines(self) -> list[dict]:
        path = os.path.join(self.trial_dir, "result.json")
        if not os.path.exists(path):
            return []
        lines = []
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        return lines

    def _count_results(self) -> int:
        return len(self._result_lines())

    def _last_time_total(self) -> float:
        lines = self._result_lines()
        return float(lines[-1].get("time_total_s", 0.0)) if lines else 0.0

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: str | None = None) -> None:
        self._iteration += 1
        if checkpoint_dir is not None:
            self._store_checkpoint(checkpoint_dir)
        line = dict(metrics)
        line.update(training_iteration=self._iteration, trial_id=self.trial_id,
                    time_total_s=self._time_offset + time.time() - self._start,
                    timestamp=int(time.time()), hostname=socket.gethostname(), pid=os.getpid(),
                    done=bool(metrics.get("stop_reason")))
        with open(os.path.join(self.trial_dir, "result.json"), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def truncate_after(self, epoch: int) -> None:
        """Drop result lines of epochs after ``epoch``: a resumed trial reports them again."""
        lines = [line for line in self._result_lines() if int(line.get("epoch", 0)) <= epoch]
        path = os.path.join(self.trial_dir, "result.json")
        if os.path.exists(path):
            with open(path + ".tmp", "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(line, sort_keys=True) + "\n" for line in lines)
            os.replace(path + ".tmp", path)
        self._iteration = len(lines)
        self._time_offset = float(lines[-1].get("time_total_s", 0.0)) if lines else 0.0

    def _store_checkpoint(self, checkpoint_dir: str) -> None:
        target = os.path.join(self.trial_dir, f"{CHECKPOINT_PREFIX}{self._iteration:06d}")
        tmp = target + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(checkpoint_dir, tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        for old in self._checkpoints()[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    def _checkpoints(self) -> list[str]:
        names = sorted(n for n in os.listdir(self.trial_dir)
                       if n.startswith(CHECKPOINT_PREFIX) and not n.endswith(".tmp"))
        return [os.path.join(self.trial_dir, n) for n in names]

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[str | None]:
        found = self._checkpoints()
        yield found[-1] if found else None


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
    from ray.train._internal.session import get_storage

    try:
        storage = get_storage()
        if not isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
            return None
        return storage.trial_fs_path
    except Exception:  # noqa: BLE001 - a developer API: fall back to Ray's staging directory
        return None


def artifact_dir() -> str | None:
    """For URI storage: the trial's working directory, which Ray uploads to the storage trial dir
    at every checkpoint when the run has ``SyncConfig(sync_artifacts=True)`` (set by er-tune)."""
    from ray.train._internal.session import get_storage

    try:
        return get_storage().trial_working_directory
    except Exception:  # noqa: BLE001 - developer API
        return None


def copy_if_missing(fs, remote_path: str, local_path: str) -> bool:
    """Download ``remote_path`` from the pyarrow filesystem ``fs`` unless ``local_path`` exists."""
    import pyarrow.fs

    if os.path.exists(local_path) or fs.get_file_info(remote_path).type != pyarrow.fs.FileType.File:
        return False
    with fs.open_input_stream(remote_path) as source, open(local_path + ".tmp", "wb") as target:
        target.write(source.read())
    os.replace(local_path + ".tmp", local_path)
    return True


def restore_trial_files(local_dir: str) -> None:
    """A trial retried on another node starts with an empty working directory: fetch its
    ``collapse_events.jsonl`` from the storage first, so the upload does not drop earlier events."""
    from ray.train._internal.session import get_storage

    try:
        storage = get_storage()
        copy_if_missing(storage.storage_filesystem, f"{storage.trial_fs_path}/collapse_events.jsonl",
                        os.path.join(local_dir, "collapse_events.jsonl"))
    except Exception:  # noqa: BLE001 - a missing history must not fail the trial
        return


class TuneReporter:
    """Forwards to Ray Tune from inside a function trainable (Ray 2.60 ``ray.tune`` API).

    The trial's HParams session is written by the driver when the trial ends
    (:class:`er_tune.service.observers.TrialSessions`), so that a trial stopped by ASHA or one that
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
        checkpoint = None
        if checkpoint_dir is not None:
            checkpoint = self._tune.Checkpoint.from_directory(checkpoint_dir)
        self._tune.report(dict(metrics), checkpoint=checkpoint)
        if checkpoint_dir is not None:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[str | None]:
        checkpoint = self._tune.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as directory:
            yield directory
