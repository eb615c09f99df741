"""Bounded disk: an ended trial's checkpoints are deleted, so an experiment's size is its logs.

A trial checkpoints every epoch (Ray keeps the newest five, :func:`er_tune.launch.checkpoint_config`)
so that a retried or resumed trial continues where it was. When a phase's Tuner finishes
(``on_experiment_end``), the ``checkpoint_*`` directories of every trial that ended *complete* (it
finished, was early-stopped by ASHA, or collapsed/diverged) are removed; a study that wants the
trained weights sets ``checkpoints: {keep_final: true}`` and keeps the newest one. Errored trials and
every trial of an interrupted study keep their checkpoints: running the command again resumes them,
and the resumed phase prunes them when it finishes.

Why not at ``on_trial_complete``: until Ray's next experiment snapshot records the trial as
terminated, the snapshot still points at one of its checkpoints; a driver killed in that window
resumes the trial from that checkpoint, and deleting it made the resumed trial error ("Could not
recover from checkpoint as it does not exist on storage anymore", found by
``tests/test_launch.py::test_resume_after_driver_sigkill_finishes_every_trial_once``).
Works on any storage Ray writes to (local path or URI) through the storage's pyarrow filesystem.
"""

from __future__ import annotations

import logging

import pyarrow.fs
from ray.tune import Callback

from er_core.rules import CHECKPOINT_PREFIX

logger = logging.getLogger(__name__)


def checkpoint_dirs(fs: pyarrow.fs.FileSystem, trial_path: str) -> list[str]:
    """``checkpoint_*`` directories of a trial, oldest first (Ray numbers them 000000, 000001...)."""
    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(trial_path, allow_not_found=True))
    except OSError:
        return []
    return sorted(info.path for info in infos if info.type == pyarrow.fs.FileType.Directory
                  and info.base_name.startswith(CHECKPOINT_PREFIX))


def prune_checkpoints(fs: pyarrow.fs.FileSystem, trial_path: str, *, keep_final: bool) -> list[str]:
    """Delete a trial's checkpoints (all of them, or all but the newest); returns what was deleted."""
    found = checkpoint_dirs(fs, trial_path)
    doomed = found[:-1] if keep_final else found
    for path in doomed:
        try:
            fs.delete_dir(path)
        except OSError as error:  # disk is only an optimisation: never fail the study for it
            logger.warning("could not delete checkpoint %s: %s", path, error)
    return doomed


class PruneEndedCheckpoints(Callback):
    """Tune callback: when the phase ends, prune the checkpoints of its complete trials (see above)."""

    def __init__(self, *, keep_final: bool = False) -> None:
        self.keep_final = keep_final
        self.completed: dict[str, object] = {}

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.completed[trial.trial_id] = trial

    def on_trial_error(self, iteration, trials, trial, **info):
        self.completed.pop(trial.trial_id, None)  # resumable: keep its checkpoints

    def on_experiment_end(self, trials, **info):
        for trial in self.completed.values():
            prune_checkpoints(trial.storage.storage_filesystem, trial.path, keep_final=self.keep_final)
        self.completed.clear()
