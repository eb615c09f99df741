"""Per-epoch diagnostics of a trial on the fixed evaluation set (DESIGN.md §2, §6).

Every objective, original or ER, is measured the same way so values compare across methods and
batch sizes:

- two augmented views of every evaluation image, drawn once with a fixed seed (identical at
  every epoch and in every trial), give the projections Z1, Z2 (L2-normalised), on which
- ``er_entropy`` = Ĥ = ½ (Ĥ(Z1) + Ĥ(Z2)), the leave-one-out vMF KDE entropy (κ = ``kappa_eval``)
  of each view's projections, averaged (:func:`diagnostic_er_terms`);
- ``er_reconstruction`` = R̂, the vMF reconstruction NLL between the paired projections of Z1 and Z2;
- ``er_bound`` = Ĥ − R̂ = ½ [(Ĥ(Z2) − R̂) + (Ĥ(Z1) − R̂)], the mean of the ER lower bounds
  ``I(Z1; Z2) >= H(Z2) + E log q(Z2|Z1)`` and its mirror (R̂ is symmetric), so an estimate of the
  bound of the very pair (Z1, Z2) it reconstructs;
- ``rankme`` of the backbone features, ``std_ratio`` of the normalised projections;
- ``assign_entropy`` = H(p̄)/log K and ``assign_sample_entropy`` = mean_i H(p_i)/log K of the
  prototype assignments (discrete methods only);
- ``rankme_projection``: RankMe of the clean-image projections (the dimensional partial-collapse
  criterion reads both RankMe's; :func:`collapse_grade_metrics`);
- ``effective_prototypes`` = exp H(p̄) (discrete methods only), the number of prototypes in use;
- ``knn_chance_p``: one-sided exact binomial p-value of ``knn_top1`` being above the majority-class
  rate of the evaluation labels (the best constant predictor), the functional criterion;
- ``knn_top1``: cosine kNN (k, temperature-weighted votes) of backbone features, the first
  ``knn_bank_size`` training images as the labelled bank and the evaluation images as queries.
- ``linear_top1`` (only from :meth:`Diagnostics.linear_top1`, on the features of the latest call):
  linear probe (:mod:`trainers.linear_probe`) with the same bank and queries as the kNN.
- the final evaluation (:meth:`Diagnostics.final`, at a trial's last epoch and once on the untrained
  network): kNN and linear probe with the same bank, on ``final_eval_size`` queries of the whole
  test split (:attr:`~er_core.data.DatasetBundle.final_images`), with the per-query correctness the
  monitor's paired test reads (:meth:`~er_core.collapse.CollapseMonitor.observe_final`).

Why Ĥ on the views, not on the clean images: the bound is a statement about one pair of random
variables; an entropy of clean-image projections next to a reconstruction of augmented ones mixes
two distributions and is the bound of neither (clean projections are also less spread than
augmented ones, so the old mix misstated both terms).

Why leave-one-out (the training objectives keep the paper's resubstitution estimator): with the
self term, each point's density contains ``C_d(κ) e^κ / N`` from itself, so the estimate can never
exceed ``log N - log C_d(κ) - κ`` and a complete collapse (``-log C_d(κ) - κ``) sits only ``log N``
below that ceiling (7.6 nats for 2,000 images); once the points are farther apart than ~1/√κ the
self term dominates and every spread sample reads the same. At κ = 30, d = 64, N = 512 it puts a
uniform sample only 0.7 nats above ten tight clusters (leave-one-out: 17.4 nats), and at d = 128,
N = 2000 0.2 nats (17.3). Leave-one-out ranges from the collapse value up to the entropy of the
uniform density on the sphere, the maximum (``sphere_max_entropy``).

Values are returned as computed, non-finite ones included: the trial loop shows them to the
collapse monitor first and only then replaces them, so nothing NaN is ever reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from er_core import estimators
from er_core.collapse import assignment_entropies, effective_prototypes, knn_chance_p, rankme, std_ratio
from er_core.config import TrialConfig
from er_core.data import DatasetBundle
from er_core.data.augment import make_augmenter, use_gray_preset
from er_core.models import SSLNetwork
from er_core.objectives import objective_class
from trainers.evaluation import knn_predict
from trainers.linear_probe import fit_linear_probe

def diagnostic_entropy(z: torch.Tensor, kappa: float) -> torch.Tensor:
    """Leave-one-out vMF KDE entropy of unit rows ``z`` [N, d] (see the module docstring for why)."""
    return estimators.kde_entropy(z, kappa, leave_one_out=True)


def diagnostic_er_terms(z1: torch.Tensor, z2: torch.Tensor, kappa: float) -> tuple[float, float]:
    """``(Ĥ, R̂)`` of one pair of views: ``½ (Ĥ_loo(z1) + Ĥ_loo(z2))`` and ``vmf_reconstruction(z1, z2)``.

    Args:
        z1, z2: projections of the two views [N, d], row i of each from the same image
            (normalised here, in float64).
        kappa: the fixed diagnostic concentration ``kappa_eval``.
    """
    z1n, z2n = F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)
    entropy = 0.5 * (diagnostic_entropy(z1n, kappa) + diagnostic_entropy(z2n, kappa))
    return float(entropy), float(estimators.vmf_reconstruction(z1n, z2n, kappa))


EVAL_VIEW_SEED = 20230723  # fixed: the same two views of the eval set in every epoch and trial
EVAL_CHUNK = 512


@dataclass(frozen=True)
class FinalEvaluation:
    """Per-query correctness [Q] (bool, CPU) of the final kNN and linear probe, and the eval set's probe."""

    knn_correct: torch.Tensor
    linear_correct: torch.Tensor
    eval_linear_top1: float

    @property
    def queries(self) -> int:
        return int(self.knn_correct.numel())

    @property
    def knn_top1(self) -> float:
        return float(self.knn_correct.double().mean())

    @property
    def linear_top1(self) -> float:
        return float(self.linear_correct.double().mean())


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
        self._augment = make_augmenter("symmetric", data.mean, data.std,
                                       grayscale=use_gray_preset(config.augment, data.grayscale))
        bank = min(config.knn_bank_size, data.train_images.shape[0])
        self._bank_images = data.train_images[:bank]
        self._bank_labels = data.train_labels[:bank]
        objective = objective_class(config.objective)  # assign_* of the objectives on prototypes
        self._assignment_temperature = (objective.assignment_temperature(config)
                                        if objective.support == "discrete" else None)
        self._views: tuple[torch.Tensor, torch.Tensor] | None = None
        self._features: tuple[torch.Tensor, torch.Tensor] | None = None  # (bank, eval) of the last call
        self.knn_correct: torch.Tensor | None = None  # per-query kNN correctness of the last call (CPU)
        final = data.final_images if config.final_eval_size == 0 else data.final_images[:config.final_eval_size]
        self._final_images = final
        self._final_labels = data.final_labels[:final.shape[0]]

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
        probe = self._fit_probe(bank_features)
        return float((probe.predict(features) == self.data.eval_labels.long().cpu()).double().mean())

    def _fit_probe(self, bank_features: torch.Tensor):
        return fit_linear_probe(bank_features, self._bank_labels, num_classes=self.data.num_classes,
                                seed=self.config.seed)

    @torch.no_grad()
    def final(self, net: SSLNetwork) -> FinalEvaluation:
        """kNN and linear probe of ``net`` on the final queries, with the bank of the latest call.

        Call right after :meth:`__call__` on the same network (its bank features are reused); one
        probe is fitted and scores both the final queries and the eval set (``eval_linear_top1``).
        """
        if self._features is None:
            raise RuntimeError("call the diagnostics on a network before its final evaluation")
        was_training = net.training
        net.eval()
        try:
            features, _, _ = _forward_chunks(net, self._final_images, self._clean, self.device, self.autocast)
        finally:
            net.train(was_training)
        bank_features, eval_features = self._features
        labels = self._final_labels.long().cpu()
        knn = knn_predict(bank_features, self._bank_labels.to(self.device), features, k=self.config.knn_k,
                          temperature=self.config.knn_temperature, num_classes=self.data.num_classes).cpu()
        probe = self._fit_probe(bank_features)
        eval_top1 = float((probe.predict(eval_features) == self.data.eval_labels.long().cpu()).double().mean())
        return FinalEvaluation(knn == labels, probe.predict(features) == labels, eval_top1)

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
        entropy, reconstruction = diagnostic_er_terms(z1, z2, config.kappa_eval)
        predicted = knn_predict(bank_features, self._bank_labels.to(self.device), features, k=config.knn_k,
                                temperature=config.knn_temperature, num_classes=self.data.num_classes)
        self.knn_correct = (predicted.cpu() == self.data.eval_labels.long().cpu())
        metrics = {
            "er_entropy": entropy,
            "er_reconstruction": reconstruction,
            "er_bound": entropy - reconstruction,
            "knn_top1": float(self.knn_correct.float().mean()),
            "rankme": float(rankme(features)),
            "std_ratio": float(std_ratio(z)),
        }
        if self._assignment_temperature is not None and scores is not None:
            probabilities = torch.softmax(scores.double() / self._assignment_temperature, dim=1)
            mean_entropy, sample_entropy = assignment_entropies(probabilities)
            metrics["assign_entropy"] = float(mean_entropy)
            metrics["assign_sample_entropy"] = float(sample_entropy)
        metrics.update(collapse_grade_metrics(z, metrics, self.data.eval_labels, self.data.num_classes,
                                              num_prototypes=None if scores is None else scores.shape[1]))
        return metrics


def collapse_grade_metrics(z: torch.Tensor, metrics: dict[str, float], eval_labels: torch.Tensor,
                           num_classes: int, *, num_prototypes: int | None) -> dict[str, float]:
    """The partial-collapse diagnostics (:class:`~er_core.collapse.CollapseMonitor`) of one evaluation.

    Args:
        z: projections of the clean evaluation images [N, d].
        metrics: the evaluation's other metrics (reads ``knn_top1`` and, if present, ``assign_entropy``).
        eval_labels: the evaluation labels [N] (their majority-class rate is the kNN's chance level).
        num_classes: number of classes.
        num_prototypes: K when ``assign_entropy`` is H(p̄)/log K, else None.
    """
    extra = {"rankme_projection": float(rankme(z)),
             "knn_chance_p": knn_chance_p(metrics["knn_top1"], eval_labels, num_classes)}
    if num_prototypes is not None and "assign_entropy" in metrics:
        extra["effective_prototypes"] = effective_prototypes(metrics["assign_entropy"], num_prototypes)
    return extra
