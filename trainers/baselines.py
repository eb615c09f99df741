"""Reference points for a trial's ``knn_top1`` and ``linear_top1``: raw pixels and the untrained network.

All use exactly the final evaluation of the trial (cosine kNN with ``knn_k`` neighbours and
temperature-weighted votes; the linear probe of :mod:`trainers.linear_probe`; the first
``knn_bank_size`` training images as the labelled bank and the final queries as queries: the first
``final_eval_size`` images of the whole test split, all of them by default, or the eval set of a
generated dataset), so a trained model's ``final_knn_top1``/``final_linear_top1`` is compared like
with like.
"""

from __future__ import annotations

import torch

from er_core.config import TrialConfig
from er_core.data import DatasetBundle
from er_core.data.augment import make_augmenter
from er_core.models import build_network
from trainers.diagnostics import Diagnostics
from trainers.evaluation import knn_top1
from trainers.linear_probe import linear_top1


def final_queries(config: TrialConfig, data: DatasetBundle) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of the trial's final evaluation (as :class:`~trainers.diagnostics.Diagnostics`)."""
    images = data.final_images if config.final_eval_size == 0 else data.final_images[:config.final_eval_size]
    return images, data.final_labels[:images.shape[0]]


def raw_pixel_knn(config: TrialConfig, data: DatasetBundle) -> float:
    """kNN top-1 on the normalised pixel vectors of the bank and the final queries."""
    normalize = make_augmenter("symmetric", data.mean, data.std).normalize
    bank = min(config.knn_bank_size, data.train_images.shape[0])
    images, labels = final_queries(config, data)
    return knn_top1(normalize(data.train_images[:bank]).flatten(1), data.train_labels[:bank],
                    normalize(images).flatten(1), labels, k=config.knn_k,
                    temperature=config.knn_temperature, num_classes=data.num_classes)


def _raw_pixels(config: TrialConfig, data: DatasetBundle) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised pixel vectors of the bank and the final queries (grey images: one channel,
    since their three channels are copies)."""
    normalize = make_augmenter("symmetric", data.mean, data.std).normalize
    bank = min(config.knn_bank_size, data.train_images.shape[0])
    channels = 1 if bool((data.train_images[:bank] == data.train_images[:bank, :1]).all()) else 3
    return (normalize(data.train_images[:bank])[:, :channels].flatten(1),
            normalize(final_queries(config, data)[0])[:, :channels].flatten(1))


def raw_pixel_linear(config: TrialConfig, data: DatasetBundle) -> float:
    """Linear-probe top-1 on the normalised pixel vectors (the probe standardises each pixel)."""
    bank_features, eval_features = _raw_pixels(config, data)
    return linear_top1(bank_features, data.train_labels[:bank_features.shape[0]], eval_features,
                       final_queries(config, data)[1], num_classes=data.num_classes, seed=config.seed)


def random_network(config: TrialConfig, data: DatasetBundle) -> tuple[float, float]:
    """The trial's own final kNN and linear probe on the untrained network of ``config`` (seeded
    by ``config.seed``): what every trial records as ``untrained_final_knn_top1``/``..._linear_top1``."""
    torch.manual_seed(config.seed)
    net = build_network(config)
    diagnostics = Diagnostics(config, data, torch.device("cpu"))
    diagnostics(net)
    final = diagnostics.final(net)
    return final.knn_top1, final.linear_top1


def random_network_knn(config: TrialConfig, data: DatasetBundle) -> float:
    """The trial's per-epoch kNN diagnostic (eval set) on the untrained network of ``config``."""
    torch.manual_seed(config.seed)
    net = build_network(config)
    return Diagnostics(config, data, torch.device("cpu"))(net)["knn_top1"]


def random_network_linear(config: TrialConfig, data: DatasetBundle) -> float:
    """The trial's eval-set linear probe on the untrained network of ``config``."""
    torch.manual_seed(config.seed)
    net = build_network(config)
    diagnostics = Diagnostics(config, data, torch.device("cpu"))
    diagnostics(net)
    return diagnostics.linear_top1()
