"""Reference points for a trial's ``knn_top1``: raw pixels and the untrained network.

Both use exactly the kNN of the per-epoch diagnostics (cosine, ``knn_k`` neighbours,
temperature-weighted votes, the first ``knn_bank_size`` training images as the labelled bank and
the evaluation images as queries), so a trained model is compared like with like.
"""

from __future__ import annotations

import torch

from er_tune.config import TrialConfig
from er_tune.data import DatasetBundle
from er_tune.data.augment import make_augmenter
from er_tune.models import build_network
from trainers.diagnostics import Diagnostics
from trainers.evaluation import knn_top1


def raw_pixel_knn(config: TrialConfig, data: DatasetBundle) -> float:
    """kNN top-1 on the normalised pixel vectors of the bank and evaluation images."""
    normalize = make_augmenter("simclr", data.mean, data.std).normalize
    bank = min(config.knn_bank_size, data.train_images.shape[0])
    return knn_top1(normalize(data.train_images[:bank]).flatten(1), data.train_labels[:bank],
                    normalize(data.eval_images).flatten(1), data.eval_labels, k=config.knn_k,
                    temperature=config.knn_temperature, num_classes=data.num_classes)


def random_network_knn(config: TrialConfig, data: DatasetBundle) -> float:
    """The trial's own kNN diagnostic on the untrained network of ``config`` (seeded by ``config.seed``)."""
    torch.manual_seed(config.seed)
    net = build_network(config)
    return Diagnostics(config, data, torch.device("cpu"))(net)["knn_top1"]
