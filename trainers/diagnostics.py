"""Per-epoch diagnostics of a trial on the fixed evaluation set (DESIGN.md §2, §6).

Every objective, original or ER, is measured the same way so values compare across methods and
batch sizes:

- ``er_entropy`` = Ĥ, the vMF KDE entropy (κ = ``kappa_eval``) of the L2-normalised projections z of
  the clean evaluation images;
- ``er_reconstruction`` = R̂, the vMF reconstruction NLL between the projections of two augmented
  views of the same images (views drawn with a fixed seed, so identical at every epoch and in
  every trial);
- ``er_bound`` = Ĥ − R̂, the ER lower bound on I(Z1; Z2);
- ``rankme`` of the backbone features, ``std_ratio`` of the normalised projections;
- ``assign_entropy`` = H(p̄)/log K and ``assign_sample_entropy`` = mean_i H(p_i)/log K of the
  prototype assignments (discrete methods only);
- ``knn_top1``: cosine kNN (k, temperature-weighted votes) of backbone features, the first
  ``knn_bank_size`` training images as the labelled bank and the evaluation images as queries.
- ``linear_top1`` (only from :meth:`Diagnostics.linear_top1`, on the features of the latest call):
  linear probe (:mod:`trainers.linear_probe`) with the same bank and queries as the kNN.

Values are returned as computed, non-finite ones included: the trial loop shows them to the
collapse monitor first and only then replaces them, so nothing NaN is ever reported.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from er_tune import estimators
from er_tune.collapse import assignment_entropies, rankme, std_ratio
from er_tune.config import TrialConfig
from er_tune.data import DatasetBundle
from er_tune.data.augment import make_augmenter, use_gray_preset
from er_tune.models import SSLNetwork
from trainers.evaluation import knn_top1
from trainers.linear_probe import linear_top1

EVAL_VIEW_SEED = 20230723  # fixed: the same two views of the eval set in every epoch and trial
EVAL_CHUNK = 512


@torch.no_grad()
def _forward_chunks(net: SSLNetwork, images: torch.Tensor, prepare: Callable[[torch.Tensor], torch.Tensor],
                    device: torch.device, autocast: bool):
    features, projections, scores = [], [], []
    for start in range(0, images.shape[0], EVAL_CHUNK):
        batch = prepare(images[start:start + EVAL_CHUNK].to(device, non_blocking=True))
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
            out = net(batch)
        features.append(out.features.float())
        projections.append(out.z.float())
        if out.scores is not None:
            scores.append(out.scores.float())
    return (torch.cat(features), torch.cat(projections), torch.cat(scores) if scores else None)


class Diagnostics:
    """Computes the per-epoch diagnostic metrics of one trial (see module docstring)."""

    def __init__(self, config: TrialConfig, data: DatasetBundle, device: torch.device,
                 *, channels_last: bool = False, autocast: bool = False) -> None:
        self.config = config
        self.data = data
        self.device = device
        self.autocast = autocast
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._augment = make_augmenter("simclr", data.mean, data.std,
                                       grayscale=use_gray_preset(config.augment, data.grayscale))
        bank = min(config.knn_bank_size, data.train_images.shape[0])
        self._bank_images = data.train_images[:bank]
        self._bank_labels = data.train_labels[:bank]
        self._views: tuple[torch.Tensor, torch.Tensor] | None = None
        self._features: tuple[torch.Tensor, torch.Tensor] | None = None  # (bank, eval) of the last call

    def _clean(self, images: torch.Tensor) -> torch.Tensor:
        return self._augment.normalize(images).contiguous(memory_format=self._memory_format)

    def _eval_views(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The two fixed-seed augmented views of the eval set, drawn once and reused every epoch."""
        if self._views is None:
            self._views = self._draw_eval_views()
        return self._views

    def _draw_eval_views(self) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(EVAL_VIEW_SEED)
        views1, views2 = [], []
        images = self.data.eval_images
        for start in range(0, images.shape[0], EVAL_CHUNK):
            v1, v2 = self._augment(images[start:start + EVAL_CHUNK].to(self.device), generator)
            views1.append(v1)
            views2.append(v2)
        return torch.cat(views1), torch.cat(views2)

    @torch.no_grad()
    def __call__(self, net: SSLNetwork) -> dict[str, float]:
        was_training = net.training
        net.eval()
        try:
            return self._measure(net)
        finally:
            net.train(was_training)

    def linear_top1(self) -> float:
        """Linear-probe top-1 of the backbone features measured by the latest call."""
        if self._features is None:
            raise RuntimeError("call the diagnostics on a network before its linear probe")
        bank_features, features = self._features
        return linear_top1(bank_features, self._bank_labels, features, self.data.eval_labels,
                           num_classes=self.data.num_classes, seed=self.config.seed)

    def _measure(self, net: SSLNetwork) -> dict[str, float]:
        config = self.config
        identity = lambda x: x.contiguous(memory_format=self._memory_format)  # noqa: E731
        features, z, scores = _forward_chunks(net, self.data.eval_images, self._clean, self.device,
                                              self.autocast)
        v1, v2 = self._eval_views()
        _, z1, _ = _forward_chunks(net, v1, identity, self.device, self.autocast)
        _, z2, _ = _forward_chunks(net, v2, identity, self.device, self.autocast)
        bank_features, _, _ = _forward_chunks(net, self._bank_images, self._clean, self.device,
                                              self.autocast)
        self._features = (bank_features, features)
        zn, z1n, z2n = (F.normalize(t.double(), dim=1) for t in (z, z1, z2))
        entropy = float(estimators.kde_entropy(zn, config.kappa_eval))
        reconstruction = float(estimators.vmf_reconstruction(z1n, z2n, config.kappa_eval))
        metrics = {
            "er_entropy": entropy,
            "er_reconstruction": reconstruction,
            "er_bound": entropy - reconstruction,
            "knn_top1": float(knn_top1(bank_features, self._bank_labels.to(self.device), features,
                                       self.data.eval_labels.to(self.device), k=config.knn_k,
                                       temperature=config.knn_temperature,
                                       num_classes=self.data.num_classes)),
            "rankme": float(rankme(features)),
            "std_ratio": float(std_ratio(z)),
        }
        if config.is_discrete and scores is not None:
            temperature = (config.student_temperature if config.method == "dino"
                           else config.temperature)
            probabilities = torch.softmax(scores.double() / temperature, dim=1)
            mean_entropy, sample_entropy = assignment_entropies(probabilities)
            metrics["assign_entropy"] = float(mean_entropy)
            metrics["assign_sample_entropy"] = float(sample_entropy)
        return metrics
