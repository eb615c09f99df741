"""Representation-collapse detectors and the per-trial collapse monitor (DESIGN.md §6).

Detectors are pure functions with documented anchors:

- ``std_ratio(z)``: mean per-dimension standard deviation of L2-normalised embeddings times √d.
  Isotropic embeddings give ≈ 1 (each coordinate of a uniform unit vector has variance 1/d);
  a collapsed batch (all rows equal) gives 0.
- ``rankme(features)``: RankMe (Garrido et al., ICML 2023), ``exp(-Σ p_k log p_k)`` with
  ``p_k = σ_k / Σσ + ε`` the normalised singular values; 1 ≤ RankMe ≤ min(N, D); ≈1 for rank one.
- ``assignment_entropies(p)``: ``H(p̄)/log K`` (0 when every sample picks one prototype, 1 when
  the batch spreads uniformly) and ``mean_i H(p_i)/log K`` (1 when each assignment is uniform).
- ``effective_prototypes(h, K)``: exp H(p̄), the number of prototypes in use (1 … K).
- ``knn_chance_p(knn, labels, C)``: one-sided exact binomial p-value of a kNN accuracy being above
  the majority-class rate of ``labels`` (the best constant predictor, not 1/C).
- ``mcnemar_greater_p(after, before)``: exact one-sided McNemar p-value of per-query correctness
  ``after`` being better than ``before`` on the same queries (did the network learn?).
- ``is_finite`` / ``grad_is_finite``: divergence.

:class:`CollapseMonitor` turns per-evaluation metrics into :class:`CollapseEvent` records with
patience, three severities (``warning``, ``partial``: recorded, the trial goes on; ``collapse``:
the trial stops), a per-trial grade (none / partial / complete), and checkpointable state.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from er_core.config import CollapseConfig
from er_core.rules import EARLY_WARNING_KIND, NOT_LEARNED_KIND, PARTIAL_KINDS, collapse_grade

# Partial criteria that count only at an evaluation whose kNN is not above the untrained network's
# (a structural sign alone, e.g. few prototypes in use, also marks healthy training).
GATED_KINDS = ("dimensional", "prototype", "plateau")
# Statistics whose collapse thresholds are calibrated against the untrained network (CollapseMonitor).
CALIBRATED = ("std_ratio", "rankme", "assign_entropy", "assign_sample_entropy")
# Statistics whose running extrema (untrained network included) the partial and early-warning rules read.
TRACKED = CALIBRATED + ("rankme_projection", "effective_prototypes", "er_entropy")
# The label-free signals of the early warning, each a fall of its statistic below a fraction of its
# running maximum (untrained network included), and the CollapseConfig field holding that fraction.
WARNING_SIGNALS = {"rankme": "warning_rankme_fraction",
                   "rankme_projection": "warning_rankme_projection_fraction",
                   "std_ratio": "warning_std_ratio_fraction",
                   "effective_prototypes": "warning_prototype_fraction"}


def std_ratio(z: torch.Tensor) -> float:
    """√d · mean_j std_i(normalize(z)_ij); ≈1 isotropic, 0 collapsed; non-finite input gives NaN."""
    if z.dim() != 2 or z.shape[0] < 2:
        raise ValueError(f"std_ratio needs [N>=2, d] embeddings, got shape {tuple(z.shape)}")
    normalised = F.normalize(z.double(), dim=1)
    return float(normalised.std(dim=0, unbiased=True).mean() * math.sqrt(z.shape[1]))


def rankme(features: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe effective rank of a feature matrix [N, D]: exp of the entropy of σ / ‖σ‖₁."""
    if features.dim() != 2:
        raise ValueError(f"rankme needs a [N, D] matrix, got shape {tuple(features.shape)}")
    features = features.double()
    if not torch.isfinite(features).all():
        return float("nan")
    singular = torch.linalg.svdvals(features)
    total = singular.sum()
    if total <= 0:
        return 1.0
    p = singular / total + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))


def assignment_entropies(p: torch.Tensor) -> tuple[float, float]:
    """(H(p̄)/log K, mean_i H(p_i)/log K) of assignment probabilities p [N, K]."""
    if p.dim() != 2 or p.shape[1] < 2:
        raise ValueError(f"assignment_entropies needs [N, K>=2] probabilities, got shape {tuple(p.shape)}")
    p = p.double()
    log_k = math.log(p.shape[1])
    mean = p.mean(dim=0)
    mean_entropy = -torch.special.xlogy(mean, mean).sum() / log_k
    sample_entropy = (-torch.special.xlogy(p, p).sum(dim=1)).mean() / log_k
    return float(mean_entropy), float(sample_entropy)


def effective_prototypes(normalised_entropy: float, num_prototypes: int) -> float:
    """exp H(p̄) from ``H(p̄)/log K``: 1 when one prototype takes every sample, K when all are used."""
    return float(math.exp(float(normalised_entropy) * math.log(num_prototypes)))


def knn_chance_p(knn: float, labels: torch.Tensor, num_classes: int) -> float:
    """P(X >= correct) for X ~ Binomial(n, majority-class rate): is the kNN above a constant predictor?

    ``correct = round(knn × n)`` with ``n = len(labels)``; the rate is that of the most frequent label
    (exact one-sided binomial test). 1.0 for a non-finite ``knn``.
    """
    from scipy.stats import binom

    n = int(labels.numel())
    if n == 0 or not math.isfinite(float(knn)):
        return 1.0
    counts = torch.bincount(labels.reshape(-1).long().cpu(), minlength=num_classes)
    rate = float(counts.max()) / n
    correct = int(round(float(knn) * n))
    return float(binom.sf(correct - 1, n, rate))


def mcnemar_greater_p(after: torch.Tensor, before: torch.Tensor) -> float:
    """Exact one-sided McNemar p-value of ``after`` being more often correct than ``before``.

    ``after`` and ``before`` are per-query correctness [Q] (bool) of two classifiers on the same
    queries. With ``b`` = queries only ``after`` gets right and ``c`` = queries only ``before`` gets
    right, under H0 (equal accuracy) ``b ~ Binomial(b + c, 1/2)`` given ``b + c``, and
    ``p = P(X >= b)`` (1.0 when ``b + c = 0``). Exact, so ``P(p <= alpha) <= alpha`` under H0.
    """
    from scipy.stats import binom

    if after.shape != before.shape:
        raise ValueError(f"paired correctness must have one shape, got {tuple(after.shape)} and {tuple(before.shape)}")
    after, before = after.reshape(-1).bool().cpu(), before.reshape(-1).bool().cpu()
    b = int((after & ~before).sum())
    c = int((before & ~after).sum())
    if b + c == 0:
        return 1.0
    return float(binom.sf(b - 1, b + c, 0.5))


def pack_bits(correct: torch.Tensor) -> str:
    """Per-query correctness [Q] as a '0'/'1' string (checkpointable JSON)."""
    return "".join("1" if value else "0" for value in correct.reshape(-1).bool().tolist())


def unpack_bits(bits: str) -> torch.Tensor:
    return torch.tensor([char == "1" for char in bits], dtype=torch.bool)


def is_finite(*values: Any) -> bool:
    """True when every given float or tensor is finite."""
    for value in values:
        if isinstance(value, torch.Tensor):
            if not bool(torch.isfinite(value).all()):
                return False
        elif not math.isfinite(float(value)):
            return False
    return True


def grad_is_finite(module: nn.Module) -> bool:
    """True when every existing gradient of ``module`` is finite (one device sync)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return True
    # one fused multi-tensor norm: a NaN or Inf anywhere makes its tensor's norm non-finite
    return bool(torch.stack(torch._foreach_norm(grads)).isfinite().all())


@dataclass(frozen=True)
class CollapseEvent:
    """One detection: which detector fired, how bad, when, and on what value."""

    detector: str
    kind: str
    severity: str
    epoch: int
    step: int
    value: float
    threshold: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["value"] = self.value if math.isfinite(self.value) else None
        return payload


class CollapseMonitor:
    """Fed once per evaluation; emits events, remembers streaks, decides ``stop_reason``.

    Calibration (:meth:`calibrate`, called by every trial with the diagnostics of the untrained
    network, before the first step): from then on each collapse detector's threshold is bounded by
    the best value seen so far, the untrained network's included. With ``f = reference_fraction``
    and ``best`` the running maximum of a statistic, a low-side detector (std ratio, RankMe,
    H(p̄)/log K) uses ``min(absolute threshold, f × best)``; the uniform detector, for each of its
    two entropies with ``lowest`` their running minimum, uses ``max(uniform_threshold,
    1 - f × (1 - lowest))``. So a detector fires only on a fall from what the network had: never on
    the untrained network (``value < f × value`` is false), whatever its backbone — convnet's
    projections start at std ratio 0.020, below the absolute 0.05 — while a collapse from a
    healthy start keeps the absolute threshold (``f × best`` is above it) and a constant output
    (std ratio 0) still fires. Why the running best and not the initial value alone: convnet's
    untrained projections are already nearly collinear, and SimCLR-ER without its entropy term
    goes 0.020 (init) -> 0.038 -> 0.019 -> 0.013 -> 0.011, a collapse that never falls below
    half the initial value but does fall below half the best. Why include the initial value: a
    network that collapses within its first epoch is measured first after the fall. Without
    calibration (unit tests, old checkpoints) the absolute thresholds apply alone.

    Detectors (absolute thresholds from :class:`~er_core.config.CollapseConfig`):

    - complete: ``std_ratio < std_ratio_threshold`` for ``std_ratio_patience`` evaluations → collapse;
    - dimensional: ``rankme <= rankme_collapse`` → collapse; ``rankme < rankme_warning_fraction ×
      running max`` after warm-up → warning (once per episode: re-armed when RankMe recovers);
    - cluster (discrete): ``assign_entropy < cluster_threshold`` for ``assignment_patience`` → collapse;
    - uniform (discrete): ``assign_entropy`` and ``assign_sample_entropy`` both ``> uniform_threshold``
      for ``assignment_patience`` → collapse;
    - knn_chance: after warm-up, ``knn_top1 < (1 + knn_chance_margin) / num_classes`` → warning
      (once per episode);
    - diverged: :meth:`observe_divergence`, or a non-finite loss → collapse at once.

    A non-finite ``std_ratio`` or ``rankme`` (NaN features) counts as divergence.

    Partial collapse (severity ``partial``: recorded once per kind, the trial goes on; each criterion
    must hold on ``partial_patience`` consecutive evaluations, and each is calibrated so that the
    untrained network, or one that does not train, can never meet it). The structural criteria
    (:data:`GATED_KINDS`: dimensional, prototype, plateau) count only at evaluations with a
    functional loss: kNN top-1 not above the untrained network's on the same queries by the exact
    one-sided McNemar test at ``learned_alpha`` (:func:`mcnemar_greater_p`; without the untrained
    network's per-query correctness, kNN top-1 <= its kNN top-1; uncalibrated: no gate). Why: a
    structural sign alone also marks healthy training — DINO at EMA 0.9 on FashionMNIST learns
    (kNN 0.71-0.73 against the untrained network's 0.63) with 4.7 of 64 prototypes in use, while
    DINO-ER maximises the prototypes' entropy, so an ungated prototype criterion fires on the
    healthy original and never on the ER twin.

    - dimensional (Garrido et al. 2023; Jing et al. 2022): RankMe of the backbone features *and* of
      the projections below ``partial_rankme_fraction`` × their running maxima, the untrained
      network's values included (a constant network stays at its maximum);
    - prototype (discrete methods; DINO's teacher-entropy monitoring): the effective number of
      prototypes exp H(p̄) below the number of classes *and* below ``partial_prototype_fraction`` ×
      the untrained network's value (needs calibration);
    - functional: kNN top-1 not above the majority-class rate by a one-sided exact binomial test at
      ``partial_knn_alpha`` (``knn_chance_p`` > alpha) after ``warmup_epochs``, counted only when
      the untrained network passed that test (needs calibration);
    - plateau (objectives whose loss is a cross-entropy over K prototypes, ``loss_plateau = ln K``:
      DINO, SwAV): the training loss within ``plateau_tolerance`` × ln K of ln K after it had been
      below ``(1 - plateau_departure)`` × ln K at an earlier evaluation (a loss that never left ln K,
      an untrained or non-training network's, never counts);
    - not_learned (:meth:`observe_final`, at the trial's last evaluation): the final kNN *and* linear
      probe are both not above the untrained network's on the same queries (exact one-sided
      McNemar, each at ``learned_alpha``): the network did not learn. Counted as a partial kind.

    Early warning (severity ``warning``, kind ``early_warning``, once per trial): the first
    evaluation at which any label-free statistic of :data:`WARNING_SIGNALS` falls below its
    ``warning_*_fraction`` × its running maximum (untrained network included; 0 disables a
    signal). The fractions are chosen, and their lead time before the kNN falls measured on a
    held-out corpus, by ``benchmarks/early_warning.py``. With ``stop_on_warning`` the early warning
    has severity ``collapse``: a stopping rule, the trial stops there and counts as collapsed.
    """

    def __init__(self, config: CollapseConfig, *, discrete: bool, num_classes: int,
                 loss_plateau: float | None = None) -> None:
        self.config, self.discrete, self.num_classes = config, discrete, num_classes
        self.loss_plateau = loss_plateau  # ln K for a cross-entropy over K prototypes, else None
        self.partial_streaks = {kind: 0 for kind in PARTIAL_KINDS}
        self.loss_departed = False  # the loss was once clearly below loss_plateau (plateau criterion)
        self.streaks = {"complete": 0, "cluster": 0, "uniform": 0}
        self.rankme_max = 0.0
        self.warned = {"dimensional": False, "knn_chance": False}
        self.events: list[CollapseEvent] = []
        self.calibrated = False
        self.initial: dict[str, float] = {}  # the untrained network's values (calibrate)
        self.highest: dict[str, float] = {}  # running maxima, initial values included
        self.lowest: dict[str, float] = {}   # running minima (uniform detector)
        # the untrained network's per-query correctness: eval-set kNN, final kNN, final linear probe
        self.untrained_correct: dict[str, torch.Tensor] = {}
        self.learned_p: dict[str, float] = {}  # observe_final's McNemar p-values

    def calibrate(self, metrics: Mapping[str, float], *, knn_correct: torch.Tensor | None = None,
                  final_knn_correct: torch.Tensor | None = None,
                  final_linear_correct: torch.Tensor | None = None) -> None:
        """Record the untrained network's diagnostics; switches the relative bounds on.

        Keeps every finite numeric metric (the complete-collapse detectors read ``std_ratio``,
        ``rankme``, ``assign_entropy``, ``assign_sample_entropy``; the partial criteria also
        ``rankme_projection``, ``effective_prototypes``, ``knn_chance_p``, ``knn_top1``); non-finite
        values are ignored. ``knn_correct``: per-query kNN correctness on the eval set (the partial
        criteria's functional gate); ``final_*``: on the final queries (:meth:`observe_final`).
        """
        self.initial = {key: float(value) for key, value in metrics.items()
                        if isinstance(value, (int, float)) and not isinstance(value, bool)
                        and math.isfinite(float(value))}
        for key, value in (("knn", knn_correct), ("final_knn", final_knn_correct),
                           ("final_linear", final_linear_correct)):
            if value is not None:
                self.untrained_correct[key] = value.reshape(-1).bool().cpu()
        self.calibrated = True
        self._track(self.initial)

    def _track(self, metrics: Mapping[str, float]) -> None:
        for key in TRACKED:
            if key in metrics and math.isfinite(float(metrics[key])):
                value = float(metrics[key])
                self.highest[key] = max(self.highest.get(key, value), value)
                self.lowest[key] = min(self.lowest.get(key, value), value)

    def low_threshold(self, key: str, absolute: float) -> float:
        """Threshold of a low-side detector on ``key``: ``min(absolute, f × running max)`` once calibrated."""
        if not self.calibrated or key not in self.highest:
            return absolute
        return min(absolute, self.config.reference_fraction * self.highest[key])

    def high_threshold(self, key: str, absolute: float) -> float:
        """Threshold of the uniform detector on ``key`` in [0, 1]: ``max(absolute, 1 - f (1 - running min))``."""
        if not self.calibrated or key not in self.lowest:
            return absolute
        return max(absolute, 1.0 - self.config.reference_fraction * (1.0 - self.lowest[key]))

    @property
    def collapsed(self) -> bool:
        return any(event.severity == "collapse" for event in self.events)

    @property
    def first_collapse(self) -> CollapseEvent | None:
        return next((event for event in self.events if event.severity == "collapse"), None)

    @property
    def grade(self) -> str:
        """``complete`` (any collapse-severity event, divergence included), ``partial``, or ``none``
        (:func:`er_core.rules.collapse_grade`, the rule the report and the driver apply)."""
        return collapse_grade(self.stop_reason or None, [event.to_dict() for event in self.events])

    @property
    def stop_reason(self) -> str:
        first = self.first_collapse
        if first is None:
            return ""
        return "diverged" if first.kind == "diverged" else "collapsed"

    def _emit(self, found: list, detector: str, kind: str, severity: str, epoch: int, step: int,
              value: float, threshold: float, message: str) -> None:
        event = CollapseEvent(detector, kind, severity, epoch, step, float(value), float(threshold), message)
        self.events.append(event)
        found.append(event)

    def observe_divergence(self, value: float, *, epoch: int, step: int) -> list[CollapseEvent]:
        found: list[CollapseEvent] = []
        self._emit(found, "non_finite", "diverged", "collapse", epoch, step, value, 0.0,
                   f"non-finite loss or gradient ({value}) at step {step}")
        return found

    def functional_loss(self, metrics: Mapping[str, float],
                        knn_correct: torch.Tensor | None = None) -> tuple[bool, str]:
        """Is this evaluation's kNN not above the untrained network's? (the gate of :data:`GATED_KINDS`)"""
        before = self.untrained_correct.get("knn")
        if knn_correct is not None and before is not None and before.shape == knn_correct.reshape(-1).shape:
            p = mcnemar_greater_p(knn_correct, before)
            return p > self.config.learned_alpha, f"kNN not above the untrained network's (McNemar p = {p:.3g})"
        initial, knn = self.initial.get("knn_top1"), metrics.get("knn_top1")
        if initial is not None and knn is not None:
            return float(knn) <= initial, f"kNN {float(knn):.3f} <= untrained {initial:.3f}"
        return True, "uncalibrated"

    def observe_final(self, knn_correct: torch.Tensor, linear_correct: torch.Tensor, *, epoch: int,
                      step: int) -> list[CollapseEvent]:
        """The not-learned test at the last evaluation (class docstring); p-values in ``learned_p``.

        Needs the untrained network's correctness on the same final queries (``calibrate``);
        without it nothing is tested and nothing is emitted.
        """
        found: list[CollapseEvent] = []
        before_knn, before_linear = self.untrained_correct.get("final_knn"), self.untrained_correct.get("final_linear")
        if before_knn is None or before_linear is None:
            return found
        p_knn, p_linear = mcnemar_greater_p(knn_correct, before_knn), mcnemar_greater_p(linear_correct, before_linear)
        self.learned_p = {"knn": p_knn, "linear": p_linear}
        alpha = self.config.learned_alpha
        if min(p_knn, p_linear) > alpha and not any(e.kind == NOT_LEARNED_KIND for e in self.events):
            knn, linear = float(knn_correct.double().mean()), float(linear_correct.double().mean())
            self._emit(found, "mcnemar", NOT_LEARNED_KIND, "partial", epoch, step, min(p_knn, p_linear), alpha,
                       f"did not learn: final kNN {knn:.4f} (untrained {float(before_knn.double().mean()):.4f}, "
                       f"McNemar p = {p_knn:.3g}) and linear probe {linear:.4f} (untrained "
                       f"{float(before_linear.double().mean()):.4f}, p = {p_linear:.3g}) not above the "
                       f"untrained network's at alpha {alpha} on {knn_correct.numel()} queries")
        return found

    def observe(self, metrics: Mapping[str, float], *, epoch: int, step: int,
                knn_correct: torch.Tensor | None = None) -> list[CollapseEvent]:
        """Check one evaluation's metrics; returns the new events (also kept in ``events``).

        ``knn_correct``: this evaluation's per-query kNN correctness on the eval set (the partial
        criteria's functional gate, :meth:`functional_loss`)."""
        c, found = self.config, []
        loss = float(metrics.get("loss", 0.0))
        ratio, rank = float(metrics["std_ratio"]), float(metrics["rankme"])
        if not math.isfinite(loss) or not math.isfinite(ratio) or not math.isfinite(rank):
            if not any(e.kind == "diverged" for e in self.events):
                bad = loss if not math.isfinite(loss) else (ratio if not math.isfinite(ratio) else rank)
                self._emit(found, "non_finite", "diverged", "collapse", epoch, step, bad, 0.0,
                           "non-finite loss or embeddings")
            return found
        self._track(metrics)
        ratio_threshold = self.low_threshold("std_ratio", c.std_ratio_threshold)
        self._streak(found, "complete", "std_ratio", ratio < ratio_threshold, c.std_ratio_patience,
                     epoch, step, ratio, ratio_threshold,
                     f"std ratio {ratio:.4f} < {ratio_threshold:.4g} for {c.std_ratio_patience} evaluations")
        self.rankme_max = max(self.rankme_max, rank)
        rank_threshold = self.low_threshold("rankme", c.rankme_collapse)
        if rank <= rank_threshold:
            if not any(e.kind == "dimensional" and e.severity == "collapse" for e in self.events):
                self._emit(found, "rankme", "dimensional", "collapse", epoch, step, rank, rank_threshold,
                           f"RankMe {rank:.3f} <= {rank_threshold:.4g}: features span one direction")
        elif epoch > c.warmup_epochs and rank < c.rankme_warning_fraction * self.rankme_max:
            self._warn_once(found, "dimensional", "rankme", epoch, step, rank,
                            c.rankme_warning_fraction * self.rankme_max,
                            f"RankMe {rank:.2f} fell below {c.rankme_warning_fraction:.0%} of its max "
                            f"{self.rankme_max:.2f}")
        else:
            self.warned["dimensional"] = False
        if self.discrete and "assign_entropy" in metrics:
            mean_h, sample_h = float(metrics["assign_entropy"]), float(metrics["assign_sample_entropy"])
            cluster_threshold = self.low_threshold("assign_entropy", c.cluster_threshold)
            self._streak(found, "cluster", "assign_entropy", mean_h < cluster_threshold,
                         c.assignment_patience, epoch, step, mean_h, cluster_threshold,
                         f"H(p̄)/log K = {mean_h:.4f} < {cluster_threshold:.4g}: one prototype takes the batch")
            mean_uniform = self.high_threshold("assign_entropy", c.uniform_threshold)
            sample_uniform = self.high_threshold("assign_sample_entropy", c.uniform_threshold)
            self._streak(found, "uniform", "assign_sample_entropy",
                         mean_h > mean_uniform and sample_h > sample_uniform,
                         c.assignment_patience, epoch, step, sample_h, sample_uniform,
                         f"assignments uniform (H(p̄)/log K = {mean_h:.4f} > {mean_uniform:.4g}, "
                         f"mean H(p_i)/log K = {sample_h:.4f} > {sample_uniform:.4g})")
        knn = metrics.get("knn_top1")
        if knn is not None and self.num_classes > 1:
            chance = (1.0 + c.knn_chance_margin) / self.num_classes
            if epoch > c.warmup_epochs and float(knn) < chance:
                self._warn_once(found, "knn_chance", "knn_top1", epoch, step, float(knn), chance,
                                f"kNN top-1 {float(knn):.3f} near chance ({1.0 / self.num_classes:.3f})")
            else:
                self.warned["knn_chance"] = False
        self._observe_partial(found, metrics, loss, epoch, step, knn_correct)
        self._observe_early_warning(found, metrics, epoch, step)
        return found

    def _observe_partial(self, found, metrics, loss, epoch, step, knn_correct=None) -> None:
        c, conditions = self.config, {}
        gate, gate_detail = self.functional_loss(metrics, knn_correct)
        rank, highest = float(metrics["rankme"]), self.highest
        rank_bound = c.partial_rankme_fraction * highest.get("rankme", rank)
        dimensional = rank < rank_bound
        detail = f"RankMe {rank:.2f} < {rank_bound:.2f} ({c.partial_rankme_fraction:.0%} of its max)"
        if "rankme_projection" in metrics:
            projected = float(metrics["rankme_projection"])
            projected_bound = c.partial_rankme_fraction * highest.get("rankme_projection", projected)
            dimensional = dimensional and projected < projected_bound
            detail += f", projections' RankMe {projected:.2f} < {projected_bound:.2f}"
        conditions["dimensional"] = (dimensional, "rankme", rank, rank_bound, detail)
        initial_prototypes = self.initial.get("effective_prototypes")
        if self.discrete and "effective_prototypes" in metrics and initial_prototypes is not None:
            used = float(metrics["effective_prototypes"])
            bound = min(float(self.num_classes), c.partial_prototype_fraction * initial_prototypes)
            conditions["prototype"] = (used < bound, "effective_prototypes", used, bound,
                                       f"{used:.2f} prototypes in use (exp H(p̄)) < {bound:.2f} = min(classes "
                                       f"{self.num_classes}, {c.partial_prototype_fraction:.0%} of untrained "
                                       f"{initial_prototypes:.2f})")
        initial_p = self.initial.get("knn_chance_p")
        if "knn_chance_p" in metrics and initial_p is not None and initial_p <= c.partial_knn_alpha:
            p = float(metrics["knn_chance_p"])
            # after warm-up only: early training transiently loses the random features' kNN (measured:
            # healthy SimCLR and SwAV at chance for their first 2 epochs, then above it)
            conditions["functional"] = (epoch > c.warmup_epochs and p > c.partial_knn_alpha, "knn_chance_p", p, c.partial_knn_alpha,
                                        f"kNN top-1 {float(metrics.get('knn_top1', math.nan)):.3f} not above the "
                                        f"majority-class rate (exact binomial p = {p:.3g} > {c.partial_knn_alpha})")
        if self.loss_plateau is not None and math.isfinite(loss):
            level = self.loss_plateau
            conditions["plateau"] = (self.loss_departed and abs(loss - level) <= c.plateau_tolerance * level,
                                     "loss", loss, level,
                                     f"loss {loss:.4f} back at ln K = {level:.4f} (±{c.plateau_tolerance:.0%})")
            if loss <= (1.0 - c.plateau_departure) * level:
                self.loss_departed = True
        for kind in PARTIAL_KINDS:
            if kind not in conditions:
                self.partial_streaks[kind] = 0
                continue
            holds, detector, value, threshold, message = conditions[kind]
            if kind in GATED_KINDS:
                holds, message = holds and gate, f"{message}, {gate_detail}"
            self.partial_streaks[kind] = self.partial_streaks[kind] + 1 if holds else 0
            fired = any(e.kind == kind and e.severity == "partial" for e in self.events)
            if self.partial_streaks[kind] >= c.partial_patience and not fired:
                self._emit(found, detector, kind, "partial", epoch, step, value, threshold,
                           f"partial collapse: {message} for {c.partial_patience} evaluations")

    def _observe_early_warning(self, found, metrics, epoch, step) -> None:
        if any(e.kind == EARLY_WARNING_KIND for e in self.events):
            return
        for signal, field in WARNING_SIGNALS.items():
            fraction = float(getattr(self.config, field))
            if fraction <= 0 or signal not in metrics or signal not in self.highest:
                continue
            value, best = float(metrics[signal]), self.highest[signal]
            if value < fraction * best:
                severity = "collapse" if self.config.stop_on_warning else "warning"
                self._emit(found, signal, EARLY_WARNING_KIND, severity, epoch, step, value, fraction * best,
                           f"early warning: {signal} {value:.4g} < {fraction:.0%} of its max {best:.4g}"
                           + (" (stop_on_warning: counted as collapsed)" if self.config.stop_on_warning else ""))
                return

    def _streak(self, found, kind, detector, condition, patience, epoch, step, value, threshold, message):
        self.streaks[kind] = self.streaks[kind] + 1 if condition else 0
        if self.streaks[kind] == patience:
            self._emit(found, detector, kind, "collapse", epoch, step, value, threshold, message)

    def _warn_once(self, found, kind, detector, epoch, step, value, threshold, message):
        if not self.warned[kind]:
            self.warned[kind] = True
            self._emit(found, detector, kind, "warning", epoch, step, value, threshold, message)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (streaks, running max, warnings, events)."""
        return {"streaks": dict(self.streaks), "rankme_max": self.rankme_max, "warned": dict(self.warned),
                "events": [event.to_dict() for event in self.events],  # NaN -> None: strict JSON
                "calibrated": self.calibrated, "initial": dict(self.initial),
                "highest": dict(self.highest), "lowest": dict(self.lowest),
                "partial_streaks": dict(self.partial_streaks), "loss_departed": self.loss_departed,
                "untrained_correct": {key: pack_bits(value) for key, value in self.untrained_correct.items()},
                "learned_p": dict(self.learned_p)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.streaks = dict(state["streaks"])
        self.rankme_max = float(state["rankme_max"])
        self.warned = dict(state["warned"])
        self.events = [CollapseEvent(**{**event, "value": math.nan if event["value"] is None else event["value"]})
                       for event in state["events"]]
        self.calibrated = bool(state.get("calibrated", False))  # absent from older checkpoints
        self.initial = dict(state.get("initial", {}))
        self.highest = dict(state.get("highest", {}))
        self.lowest = dict(state.get("lowest", {}))
        self.partial_streaks = {kind: 0 for kind in PARTIAL_KINDS}
        self.partial_streaks.update(state.get("partial_streaks", {}))
        self.loss_departed = bool(state.get("loss_departed", False))
        self.untrained_correct = {key: unpack_bits(bits) for key, bits in state.get("untrained_correct", {}).items()}
        self.learned_p = dict(state.get("learned_p", {}))
