"""What the driver records about each trial for the tools users already open.

- :func:`logger_callbacks`: Ray's JSON and CSV loggers (``result.json`` / ``progress.csv``, read by
  ``er-tune report``/``status``) and, per the study's ``loggers:`` key, Ray's own MLflow and W&B
  logger callbacks. Ray's automatic TensorBoard logger is turned off
  (:func:`disable_ray_tensorboard`): its ``ray/tune/*`` scalars duplicated ours, its HParams session
  was a second one per trial, and its banner pointed at Ray's staging directory.
- :class:`TrialSessions`: one TensorBoard HParams session per trial, written by the driver when the
  trial ends, so trials that ASHA stopped or that errored get one as well as completed, collapsed
  and diverged ones.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Mapping

from ray.tune import Callback

from er_core.outcome import collapse_grade, read_events
from er_core.rules import trial_status

AUTO_LOGGERS_ENV = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


def disable_ray_tensorboard() -> None:
    """Ray adds CSV, JSON and TensorBoard loggers unless this is set; er-tune passes the first two
    itself (:func:`logger_callbacks`), so only Ray's TensorBoard logger and its banner go away."""
    os.environ[AUTO_LOGGERS_ENV] = "1"


def logger_callbacks(loggers: Mapping[str, Mapping[str, Any]] | None, *, experiment: str,
                     exp_dir: str) -> list:
    """Ray's JSON/CSV loggers, then the trackers the study asked for (``loggers:``)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    callbacks: list = [JsonLoggerCallback(), CSVLoggerCallback()]
    for name, options in (loggers or {}).items():
        options = dict(options or {})
        if name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            options.setdefault("experiment_name", experiment)
            options.setdefault("tags", {"er_tune_experiment": exp_dir})
            callbacks.append(MLflowLoggerCallback(**options))
        elif name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            options.setdefault("project", experiment.replace("/", "-"))
            if "://" not in exp_dir:
                options.setdefault("dir", exp_dir)  # wandb's run folders (offline runs) go there
            callbacks.append(WandbLoggerCallback(**options))
        else:  # the study parser rejects other names; a programming error here
            raise ValueError(f"unknown logger {name!r}")
    return callbacks


def missing_logger_packages(loggers: Mapping[str, Any] | None) -> list[str]:
    """The ``pip install`` hints for trackers named in the study whose package is missing."""
    import importlib.util

    missing = []
    for name in loggers or {}:
        if importlib.util.find_spec(name) is None:
            missing.append(f"loggers: {name} needs `pip install er-tune[{name}]`")
    return missing


class TrialSessions(Callback):
    """Writes ``<trial dir>/hparams``: one HParams session per trial, when it ends.

    Columns: the trial's condition (method, variant, group, grid axes, seed, phase), the values it
    searched, ``status`` (completed, collapsed, diverged, early_stopped, errored) and
    ``collapse_grade`` (none, partial, complete); metrics: ``final/<metric>`` from its
    last result. Rewritten, never appended, when a resumed trial ends again (an errored trial
    resumed by ``Tuner.restore(resume_errored=True)``).
    """

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._write(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._write(trial, error=True)

    def _write(self, trial, *, error: bool) -> None:
        try:
            write_trial_session(trial, error=error)
        except Exception as exc:  # noqa: BLE001 - a TensorBoard file must never fail the study
            print(f"er-tune: no HParams session for {trial}: {exc}", flush=True)


def write_trial_session(trial, *, error: bool) -> None:
    from trainers.tensorboard import SESSION_RUN, session_hparams, write_session

    import pyarrow.fs

    storage = trial.storage
    filesystem = storage.storage_filesystem
    local = isinstance(filesystem, pyarrow.fs.LocalFileSystem)
    result = dict(trial.last_result or {})
    status = trial_status(result, errored=error, ended=True)
    grade = collapse_grade(result, read_events(trial.path, None if local else filesystem), error)
    hparams = session_hparams(trial.config or {}, status, collapse_grade=grade)
    target = f"{trial.path}/{SESSION_RUN}"
    if local:
        shutil.rmtree(target, ignore_errors=True)
        write_session(trial.path, hparams, result, failed=error)
        return
    with tempfile.TemporaryDirectory(prefix="er_tune_hparams_") as staging:
        write_session(staging, hparams, result, failed=error)
        filesystem.delete_dir_contents(target, missing_dir_ok=True)
        pyarrow.fs.copy_files(os.path.join(staging, SESSION_RUN), target,
                              destination_filesystem=filesystem)
