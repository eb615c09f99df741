"""The data a trial trains on: loaded once per study and shared by the trials that read the same data.

:func:`dataset_key` names the data a trial configuration reads (trials with equal keys share one
bundle, which the service puts into Ray's object store once); :func:`load_trial_data` builds it.
"""

from __future__ import annotations

from er_core.config import TrialConfig
from er_core.data import DatasetBundle, load_dataset

__all__ = ["dataset_key", "load_trial_data"]


def dataset_key(config: TrialConfig) -> str:
    """Identity of the data a trial trains on; trials with equal keys share one bundle.

    A streamed bundle holds the first ``knn_bank_size`` training images (its bank and the source of
    its channel statistics), so its key ends with ``|stream|<knn_bank_size>``; ``loader_workers``
    changes how the files are read, not the data, and is not part of it.
    """
    key = "|".join(str(v) for v in (config.dataset, config.data_root, config.image_size,
                                     config.train_size, config.eval_size, config.data_seed))
    return f"{key}|stream|{config.knn_bank_size}" if config.streaming else key


def load_trial_data(config: TrialConfig) -> DatasetBundle:
    return load_dataset(config.dataset, root=config.data_root, image_size=config.image_size,
                        train_size=config.train_size, eval_size=config.eval_size,
                        seed=config.data_seed, streaming=config.streaming, bank_size=config.knn_bank_size,
                        loader_workers=config.loader_workers)
