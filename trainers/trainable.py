"""The Ray Tune function trainable: one Tune trial = one :func:`trainers.trial.run_trial` call.

The study service wraps :func:`tune_trial` with ``tune.with_parameters(tune_trial, datasets=...)``
so every dataset of a study is put into Ray's object store once and fetched once per node,
instead of being regenerated or pickled per trial.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from er_tune.config import TrialConfig
from er_tune.data import DatasetBundle, load_dataset
from trainers.reporters import TuneReporter
from trainers.trial import run_trial


def dataset_key(config: TrialConfig) -> str:
    """Identity of the data a trial trains on; trials with equal keys share one bundle."""
    return "|".join(str(v) for v in (config.dataset, config.data_root, config.image_size,
                                      config.train_size, config.eval_size, config.data_seed))


def load_trial_data(config: TrialConfig) -> DatasetBundle:
    return load_dataset(config.dataset, root=config.data_root, image_size=config.image_size,
                        train_size=config.train_size, eval_size=config.eval_size,
                        seed=config.data_seed)


def tune_trial(config: Mapping[str, Any], datasets: Mapping[str, DatasetBundle] | None = None) -> None:
    """Ray Tune function trainable; ``config`` is the flat trial config (``params.json``)."""
    for name in ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage"):
        logging.getLogger(name).setLevel(logging.WARNING)  # one "checkpoint created" line per epoch
    trial_config = TrialConfig.from_dict(config)
    key = dataset_key(trial_config)
    data = datasets[key] if datasets and key in datasets else load_trial_data(trial_config)
    run_trial(trial_config, data, TuneReporter())
