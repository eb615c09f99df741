"""Bounded disk: an ended trial's checkpoints are deleted, so an experiment's size is its logs.

A trial checkpoints every epoch (Ray keeps the newest two, ``CheckpointConfig(num_to_keep=2)``)
so that a retried or resumed trial continues where it was. Once Ray reports the trial *complete*
(it finished, was early-stopped by ASHA, or collapsed/diverged) nothing will resume it, and its
``checkpoint_*`` directories are removed; a study that wants the trained weights sets
``checkpoints: {keep_final: true}`` and keeps the newest one. Errored trials (``on_trial_error``)
and trials of an interrupted study keep their checkpoints: running the command again resumes them.
Works on any storage Ray writes to (local path or URI) through the storage's pyarrow filesystem.
"""

from __future__ import annotations

import logging

import pyarrow.fs
from ray.tune import Callback

CHECKPOINT_PREFIX = "checkpoint_"
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
    """Tune callback: prune the checkpoints of each trial that completes (see module docstring)."""

    def __init__(self, *, keep_final: bool = False) -> None:
        self.keep_final = keep_final

    def on_trial_complete(self, iteration, trials, trial, **info):
        prune_checkpoints(trial.storage.storage_filesystem, trial.path, keep_final=self.keep_final)
