"""The Ray Tune function trainable: one Tune trial = one :func:`trainers.trial.run_trial` call.

The study service wraps :func:`tune_trial` with ``tune.with_parameters(tune_trial, datasets=...)``
so every dataset of a study is put into Ray's object store once and fetched once per node,
instead of being regenerated or pickled per trial. The service also runs its Tuners with
``reuse_actors=True``: a finished (or ASHA-stopped) trial's actor process is handed the next
trial's configuration (Ray's ``FunctionTrainable.reset_config``), so torch, Ray and er-tune are
imported once per slot instead of once per trial. Everything a trial depends on is built and
seeded inside :func:`~trainers.trial.run_trial`, so a reused process trains exactly as a fresh one.

Each trial writes ``startup.json`` to its directory: when its slot became free for it (the
actor's process start for the first trial of a process, else the end of the process's previous
trial), when :func:`tune_trial` was entered, and when the first training step began (wall-clock
seconds since the epoch). ``benchmarks/trial_overhead.py --study`` reads them.
"""

from __future__ import annotations

import os
import time
from typing import Any, Mapping

from er_core.config import TrialConfig
from er_core.data import DatasetBundle
from er_core.rules import STARTUP_FILE
from er_tune.ray_storage import quiet_checkpoint_logs
from er_tune.tune_reporter import TuneReporter
from trainers.trial import run_trial
from trainers.trial_data import dataset_key, load_trial_data

__all__ = ["STARTUP_FILE", "dataset_key", "load_trial_data", "tune_trial"]
_previous_trial_end: float | None = None  # in this process: the end of the last tune_trial call


def process_start_time() -> float:
    """Wall-clock start of this process (``psutil``, a Ray dependency); now if unavailable."""
    try:
        import psutil

        return float(psutil.Process(os.getpid()).create_time())
    except Exception:  # noqa: BLE001 - a timing aid must never fail a trial
        return time.time()


def tune_trial(config: Mapping[str, Any], datasets: Mapping[str, DatasetBundle] | None = None) -> None:
    """Ray Tune function trainable; ``config`` is the flat trial config (``params.json``)."""
    global _previous_trial_end
    entered = time.time()
    slot_free = _previous_trial_end if _previous_trial_end is not None else process_start_time()
    try:
        quiet_checkpoint_logs()
        trial_config = TrialConfig.from_dict(config)
        key = dataset_key(trial_config)
        data = datasets[key] if datasets and key in datasets else load_trial_data(trial_config)
        startup = {"slot_free": slot_free, "entered": entered, "reused": _previous_trial_end is not None,
                   "pid": os.getpid()}
        run_trial(trial_config, data, TuneReporter(), startup=startup)
    finally:
        # also on ASHA's stop (SystemExit in the training thread) and on errors
        _previous_trial_end = time.time()
