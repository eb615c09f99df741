"""Typed, frozen configuration for one trial and for its collapse detectors.

A trial is fully described by a :class:`TrialConfig`. The study service builds one per Ray Tune
trial (its flat ``dict`` form is the Ray ``config`` and the trial's ``params.json``); ``er-tune
train`` builds one from ``--set key=value`` pairs. Every user-facing value is validated here and a
bad one raises :class:`ConfigError` (a ``ValueError``) naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from er_core.dataset_layout import (DATASET_NAMES, DATASETS, NEEDS_ROOT,  # noqa: F401 (re-exported)
                                    STREAMING_DATASETS, root_problem)

# The method names, torch-free so configs and study files are checked without importing torch.
# Everything else about a method is its objective class (er_core.objectives.OBJECTIVES), which
# checks these names and OBJECTIVE_KEYS against its classes when it is imported.
METHODS = ("simclr", "byol", "dino", "swav", "deepcluster")
VARIANTS = ("original", "er")
OPTIMIZERS = ("sgd", "lars")
EMA_SCHEDULES = ("cosine", "constant")
# Augmentation preset: "auto" picks "gray" for grayscale bundles (no saturation/hue/grayscale ops).
AUGMENTS = ("auto", "color", "gray")
# er_core.models.BACKBONES checks its keys against these names when it is imported.
BACKBONE_NAMES = ("convnet", "resnet18_cifar", "resnet18", "resnet50", "resnet_small")
# ``backbone: auto`` (the default): the backbone measured to learn on a CPU at each kind of data.
# Generated/bundled data (shapes, digits) keep ``convnet``, built for their 16 px objects; every
# dataset read from disk gets ``resnet_small``, which learns at native 28-32 px where ``convnet``
# (which averages inputs down to 16 px) stays at its untrained kNN (README, "Does it learn on real
# data?"). GPU studies name their backbone (resnet18_cifar).
BACKBONE_CHOICES = ("auto",) + BACKBONE_NAMES
GENERATED_BACKBONE, REAL_DATA_BACKBONE = "convnet", "resnet_small"
DEVICES = ("auto", "cpu", "cuda")

# Keys the study service adds to a trial's Ray config next to the TrialConfig fields.
META_KEYS = ("study", "phase", "group", "grid_axes", "searched", "optuna_trial")


# Which TrialConfig keys each objective reads (DESIGN.md §2 table). A key listed for no objective is
# read by every trial and must be in COMMON_KEYS; tests/test_objective_keys.py checks that every field
# is declared, that a short training run of each objective changes when a declared key changes and is
# bit-identical when any undeclared key changes. Study validation (search_spaces) rejects searching a
# key for a method/variant whose objective does not read it.
COMMON_KEYS = ("method", "variant", "dataset", "data_root", "image_size", "train_size", "eval_size", "data_seed",
               "streaming", "loader_workers", "augment", "backbone", "projector_dim", "projector_hidden_dim", "epochs",
               "batch_size", "optimizer", "lr", "weight_decay", "momentum", "warmup_epochs", "kappa_eval", "knn_k",
               "knn_temperature", "knn_bank_size", "linear_probe_every", "final_eval_size", "seed", "device",
               "log_every_n_steps", "collapse", "world_size", "sync_batchnorm")
_DINO_KEYS = ("ema", "ema_schedule", "num_prototypes", "student_temperature", "teacher_temperature")
_SWAV_KEYS = ("num_prototypes", "temperature", "freeze_prototypes_epochs")
OBJECTIVE_KEYS: dict[str, tuple[str, ...]] = {
    "simclr": ("temperature",),
    "simclr_er": ("kappa", "entropy_weight"),
    "byol": ("ema", "ema_schedule"),
    "byol_er": ("ema", "ema_schedule", "kappa", "entropy_weight"),
    "dino": (*_DINO_KEYS, "center_momentum", "dino_centering"),
    "dino_er": (*_DINO_KEYS, "entropy_weight"),
    # the queue belongs to the Sinkhorn codes, which only the original computes
    "swav": (*_SWAV_KEYS, "sinkhorn_epsilon", "sinkhorn_iterations", "queue_length", "queue_start_epoch"),
    "swav_er": (*_SWAV_KEYS, "teacher_temperature", "entropy_weight"),
    "deepcluster": ("num_prototypes", "temperature"),
    "deepcluster_er": ("num_prototypes", "temperature", "entropy_weight"),
}


def objective_name(method: str, variant: str) -> str:
    """Registry key of the objective of ``method``/``variant``: ``method`` or ``method_er``."""
    return method if variant == "original" else f"{method}_er"


def reads_key(key: str, method: str, variant: str) -> bool:
    """Whether a trial of ``method``/``variant`` reads TrialConfig ``key`` (see OBJECTIVE_KEYS)."""
    return key in COMMON_KEYS or key in OBJECTIVE_KEYS[objective_name(method, variant)]


def keys_read_by(method: str, variant: str) -> tuple[str, ...]:
    """Every TrialConfig key a trial of ``method``/``variant`` reads: COMMON_KEYS + its objective's."""
    return COMMON_KEYS + OBJECTIVE_KEYS[objective_name(method, variant)]


class ConfigError(ValueError):
    """A configuration value is unknown or out of range; the message names key and allowed values."""


def did_you_mean(name: str, known: "list[str] | tuple[str, ...]") -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest known name, or an empty string."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True)
class CollapseConfig:
    """Thresholds of the collapse detectors (DESIGN.md §6); the study's ``collapse:`` section.

    Attributes:
        stop_on_collapse: end the trial with status ``collapsed`` at the first collapse event.
        std_ratio_threshold: complete collapse when std ratio of normalised projections is below it.
        std_ratio_patience: ... for this many consecutive evaluations.
        rankme_warning_fraction: dimensional warning when RankMe < fraction x its running max.
        rankme_collapse: dimensional collapse when RankMe falls to this value or below (≈1).
        cluster_threshold: cluster collapse when H(p̄)/log K is below it (discrete methods).
        uniform_threshold: uniform collapse when both mean and per-sample entropy / log K exceed it.
        assignment_patience: consecutive evaluations for the cluster and uniform detectors.
        knn_chance_margin: knn_chance warning when knn_top1 < (1 + margin) / num_classes ...
        warmup_epochs: ... after this many epochs (also delays the dimensional warning).
        reference_fraction: calibration of the collapse detectors (complete, dimensional collapse,
            cluster, uniform) against the untrained network. Once the monitor is calibrated with the
            diagnostics measured before the first step (every trial does this), a detector fires only
            when its statistic is past its absolute threshold *and* has fallen below this fraction of
            the best value seen so far, the untrained network's included (for the uniform detector:
            its distance from 1 below this fraction of the largest distance seen). Why: an untrained
            network of some backbones is already past an absolute threshold (convnet's projections
            have std ratio 0.020 at initialisation, below 0.05); a collapse is a fall from what the
            network had, so no detector can fire on the untrained network itself, for any backbone.
        partial_patience: consecutive evaluations each partial-collapse criterion must hold
            (:class:`~er_core.collapse.CollapseMonitor`; partial collapse never stops a trial).
        partial_rankme_fraction: dimensional partial collapse when RankMe of the features and of the
            projections are both below this fraction of their running maxima (untrained included).
        partial_prototype_fraction: prototype partial collapse when exp H(p̄) is below the number of
            classes and below this fraction of the untrained network's value.
        partial_knn_alpha: functional partial collapse when the exact binomial test of kNN top-1
            against the majority-class rate has p above this (and the untrained network's had not).
        plateau_tolerance: plateau partial collapse when a DINO/SwAV loss is within this fraction of
            ln K ...
        plateau_departure: ... after having been below (1 - this) × ln K at an earlier evaluation.
        learned_alpha: level of the exact one-sided McNemar test of a network's per-query kNN (and
            linear-probe) correctness against its untrained network's on the same queries. Every
            partial criterion but the functional one counts only at evaluations whose kNN is not
            above the untrained network's by this test (a functional loss); a trial whose final
            kNN *and* linear probe are both not above its untrained network's is graded partial,
            kind ``not_learned`` (:meth:`~er_core.collapse.CollapseMonitor.observe_final`).
        warning_rankme_fraction, warning_rankme_projection_fraction, warning_std_ratio_fraction,
            warning_prototype_fraction: the early warning (an ``early_warning`` event, once per
            trial) fires when a statistic falls below this fraction of its running maximum; 0
            disables that signal. Default: RankMe of the features at 0.3 (chosen on the selection
            half of ``benchmarks/early_warning.py``'s corpus; the other signals, 0, gave more false
            alarms on the held-out half). The corpus is small: see the README's held-out table.
        stop_on_warning: a stopping rule (off by default): the early warning is recorded with
            severity ``collapse`` instead of ``warning``, so a warned trial stops there (with
            ``stop_on_collapse``) and counts as completely collapsed at the warning's epoch
            (``collapse_kind`` ``early_warning``). Measured on results/fmnist_dino_ema by
            ``benchmarks/early_warning.py study`` (README).
    """

    stop_on_collapse: bool = True
    std_ratio_threshold: float = 0.05
    std_ratio_patience: int = 2
    rankme_warning_fraction: float = 0.25
    rankme_collapse: float = 1.5
    cluster_threshold: float = 0.05
    uniform_threshold: float = 0.99
    assignment_patience: int = 2
    knn_chance_margin: float = 0.5
    warmup_epochs: int = 3
    reference_fraction: float = 0.5
    partial_patience: int = 2
    partial_rankme_fraction: float = 0.25
    partial_prototype_fraction: float = 0.25
    partial_knn_alpha: float = 0.05
    plateau_tolerance: float = 0.02
    plateau_departure: float = 0.1
    learned_alpha: float = 0.05
    warning_rankme_fraction: float = 0.3
    warning_rankme_projection_fraction: float = 0.0
    warning_std_ratio_fraction: float = 0.0
    warning_prototype_fraction: float = 0.0
    stop_on_warning: bool = False

    def __post_init__(self) -> None:
        _check_fraction("collapse.std_ratio_threshold", self.std_ratio_threshold)
        _check_fraction("collapse.rankme_warning_fraction", self.rankme_warning_fraction)
        _check_fraction("collapse.cluster_threshold", self.cluster_threshold)
        _check_fraction("collapse.uniform_threshold", self.uniform_threshold)
        _check_min("collapse.std_ratio_patience", self.std_ratio_patience, 1)
        _check_min("collapse.assignment_patience", self.assignment_patience, 1)
        _check_min("collapse.warmup_epochs", self.warmup_epochs, 0)
        _check_min("collapse.rankme_collapse", self.rankme_collapse, 1.0)
        _check_min("collapse.knn_chance_margin", self.knn_chance_margin, 0.0)
        _check_fraction("collapse.reference_fraction", self.reference_fraction)
        _check_positive("collapse.reference_fraction", self.reference_fraction)
        _check_min("collapse.partial_patience", self.partial_patience, 1)
        for key in ("partial_rankme_fraction", "partial_prototype_fraction", "partial_knn_alpha",
                    "plateau_tolerance", "plateau_departure", "learned_alpha", "warning_rankme_fraction",
                    "warning_rankme_projection_fraction", "warning_std_ratio_fraction",
                    "warning_prototype_fraction"):
            _check_fraction(f"collapse.{key}", getattr(self, key))


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs; defaults are the CPU-friendly embedded setting.

    Learning rate: ``lr`` is the base rate for batch size 256; the loop uses
    ``lr * batch_size / 256`` with linear warm-up then cosine decay. ``ema`` is the base EMA
    coefficient of the teacher (BYOL and DINO only); ``ema_schedule`` says how it moves: ``cosine``
    (BYOL's schedule from ``ema`` to 1 at the last step, the default for ordinary training) or
    ``constant`` (``ema`` at every step). A stability axis over ``ema`` needs ``constant``: with
    ``cosine`` a base of 0 is 0.5 at mid-training and 0.98 at 90%, not "teacher = student". The
    default ``ema``, 0.9, suits CPU budgets of a few thousand steps: with 0.99 the schedule's
    target barely moves in that time and BYOL and DINO stay near the random-network kNN baseline
    (BYOL's 0.996 is meant for hundreds of thousands of steps); studies set their own.
    ``kappa`` and ``entropy_weight`` (λ) parameterise the ER objectives, ``kappa_eval`` the
    fixed diagnostic estimators computed for every objective.
    ``augment`` picks the augmentation preset: ``auto`` uses the gray preset (no saturation, hue or
    random grayscale) on grayscale data and the colour preset otherwise; ``color``/``gray`` force one.

    SwAV's small-batch recipe (facebookresearch/swav ``main_swav.py``; its README trains at batch
    256 = 8 x 32 with ``--queue_length 3840 --epoch_queue_starts 15 --freeze_prototypes_niters 5005``,
    5005 iterations being one ImageNet epoch at that batch): the Sinkhorn codes of the original
    objective are computed on ``[queue; batch]``, with a queue of the last ``queue_length``
    normalised student projections per view (rounded down to a multiple of ``batch_size`` as SwAV
    does; 0 = off), started after ``queue_start_epoch`` completed epochs (SwAV's
    ``epoch_queue_starts``). The defaults, 3840 and 15, are that recipe: every batch size we train
    with in our studies (16 to 256) is "small", so the original gets its published small-batch recipe unless a
    study says otherwise; trials of 15 epochs or fewer (the CPU demo and smoke studies) never start
    the queue. The queue serves the Sinkhorn codes, so only ``swav`` (the original) reads it. Both
    ``swav`` and ``swav_er`` keep the prototypes frozen (no gradient, no weight decay, no momentum)
    for the first ``freeze_prototypes_epochs`` epochs and renormalise them in place before each step.

    Data parallelism: ``world_size`` workers train one trial together (``trainers.distributed``);
    ``batch_size`` is the *global* batch (``batch_size / world_size`` images per worker), and every
    quantity computed over the batch uses all workers' samples, so a trial means the same at any
    ``world_size``. ``sync_batchnorm`` normalises with the global batch's statistics (with one
    worker it changes nothing).

    ``linear_probe_every``: a linear probe (``linear_top1``) runs at the end of every trial, however it
    ends, and also every that many epochs when > 0.

    ``final_eval_size``: queries of the final kNN and linear probe (``final_knn_top1``,
    ``final_linear_top1``, and the untrained network's on the same queries): the first that many
    images of the whole test split, 0 for all of it (the default; generated datasets have no split
    beyond the eval set, so theirs is the eval set). The per-epoch kNN keeps ``eval_size`` queries.

    ``streaming`` (only for ``imagefolder``; default false: the training split is decoded into
    memory once): the training split stays on the disk and each step's images are decoded from
    their files (:mod:`er_core.data.stream`), the same images in the same order as in memory, so a
    trial trains identically either way. What stays in memory is bounded by the configuration: the
    kNN bank (the first ``knn_bank_size`` training images, also the source of the channel mean/std,
    which equal the whole split's when ``knn_bank_size >= train_size``) and the test split.
    ``loader_workers``: processes decoding a streamed split, per training worker (0: decode in the
    training process; read only when streaming). A training worker holds at most ``loader_workers
    x 2`` decoded local batches ahead.
    """

    method: str = "simclr"
    variant: str = "original"
    # data
    dataset: str = "shapes"
    data_root: str = ""
    image_size: int = 32
    train_size: int = 8000
    eval_size: int = 2000
    data_seed: int = 0
    streaming: bool = False
    loader_workers: int = 2
    augment: str = "auto"
    # model
    backbone: str = "auto"
    projector_dim: int = 128
    projector_hidden_dim: int = 512
    num_prototypes: int = 64
    # optimisation
    epochs: int = 20
    batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: int = 2
    ema: float = 0.9
    ema_schedule: str = "cosine"
    # objectives
    temperature: float = 0.1
    student_temperature: float = 0.1
    teacher_temperature: float = 0.04
    center_momentum: float = 0.9
    dino_centering: bool = True
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iterations: int = 3
    queue_length: int = 3840
    queue_start_epoch: int = 15
    freeze_prototypes_epochs: int = 1
    kappa: float = 10.0
    entropy_weight: float = 1.0
    # evaluation
    kappa_eval: float = 10.0
    knn_k: int = 20
    knn_temperature: float = 0.07
    knn_bank_size: int = 4000
    linear_probe_every: int = 0
    final_eval_size: int = 0
    # run
    seed: int = 0
    device: str = "auto"
    log_every_n_steps: int = 10
    world_size: int = 1
    sync_batchnorm: bool = True
    collapse: CollapseConfig = field(default_factory=CollapseConfig)

    def __post_init__(self) -> None:
        _check_choice("method", self.method, METHODS)
        _check_choice("variant", self.variant, VARIANTS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("dataset", self.dataset, DATASET_NAMES)
        _check_choice("backbone", self.backbone, BACKBONE_CHOICES)
        _check_choice("device", self.device, DEVICES)
        _check_choice("augment", self.augment, AUGMENTS)
        _check_choice("ema_schedule", self.ema_schedule, EMA_SCHEDULES)
        _check_min("image_size", self.image_size, 8)
        _check_min("train_size", self.train_size, 2)
        _check_min("loader_workers", self.loader_workers, 0)
        if self.streaming and self.dataset not in STREAMING_DATASETS:
            raise ConfigError(f"streaming=True is not available for dataset '{self.dataset}' (it loads into "
                              f"memory); allowed: streaming true for {', '.join(STREAMING_DATASETS)}, else false")
        _check_min("eval_size", self.eval_size, 2)
        _check_min("projector_dim", self.projector_dim, 2)
        _check_min("projector_hidden_dim", self.projector_hidden_dim, 2)
        _check_min("num_prototypes", self.num_prototypes, 2)
        _check_min("epochs", self.epochs, 1)
        _check_min("batch_size", self.batch_size, 2)
        _check_min("warmup_epochs", self.warmup_epochs, 0)
        _check_min("sinkhorn_iterations", self.sinkhorn_iterations, 1)
        _check_min("queue_length", self.queue_length, 0)
        _check_min("queue_start_epoch", self.queue_start_epoch, 0)
        _check_min("freeze_prototypes_epochs", self.freeze_prototypes_epochs, 0)
        _check_min("knn_k", self.knn_k, 1)
        _check_min("knn_bank_size", self.knn_bank_size, 1)
        _check_min("linear_probe_every", self.linear_probe_every, 0)
        _check_min("final_eval_size", self.final_eval_size, 0)
        _check_min("log_every_n_steps", self.log_every_n_steps, 1)
        _check_min("weight_decay", self.weight_decay, 0.0)
        _check_min("entropy_weight", self.entropy_weight, 0.0)
        _check_fraction("ema", self.ema)
        _check_fraction("momentum", self.momentum)
        _check_fraction("center_momentum", self.center_momentum)
        for key in ("lr", "temperature", "student_temperature", "teacher_temperature",
                    "sinkhorn_epsilon", "kappa", "kappa_eval", "knn_temperature"):
            _check_positive(key, getattr(self, key))
        _check_min("world_size", self.world_size, 1)
        if self.batch_size % self.world_size or self.batch_size // self.world_size < 2:
            raise ConfigError(f"batch_size={self.batch_size} is the global batch and must split into equal shards "
                              f"of at least 2 over world_size={self.world_size} workers; allowed: batch_size a "
                              f"multiple of world_size, at least 2 x world_size")
        if self.batch_size > self.train_size:
            raise ConfigError(f"batch_size={self.batch_size} exceeds train_size={self.train_size}; "
                              "allowed: 2 <= batch_size <= train_size")

    @property
    def objective(self) -> str:
        """Registry key of the objective: ``method`` or ``method_er``."""
        return objective_name(self.method, self.variant)

    @property
    def backbone_name(self) -> str:
        """The backbone a trial builds: ``backbone``, or for ``auto`` the one for its dataset."""
        return default_backbone(self.dataset) if self.backbone == "auto" else self.backbone

    def resolved(self, grayscale: bool | None = None) -> "TrialConfig":
        """A copy with ``backbone: auto`` and ``augment: auto`` made concrete, as recorded in params.json.

        ``augment: auto`` becomes ``gray`` or ``color`` when the images' colour is known: from
        ``grayscale`` (the loaded bundle's flag) or, before loading, from the dataset
        (:data:`er_core.dataset_layout.DATASETS`; imagefolder stays ``auto`` until its images are read).
        Training is identical before and after: the trial resolves ``auto`` the same way.
        """
        augment = self.augment
        if augment == "auto":
            if grayscale is None:
                grayscale = DATASETS[self.dataset].grayscale
            if grayscale is not None:
                augment = "gray" if grayscale else "color"
        return self.replace(backbone=self.backbone_name, augment=augment)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict (``collapse`` nested) that :meth:`from_dict` inverts."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrialConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, ignore: tuple[str, ...] = META_KEYS) -> "TrialConfig":
        """Build from a mapping, coercing types; unknown keys raise with the allowed keys."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key in ignore:
                continue
            if key not in known:
                raise ConfigError(f"unknown trial key '{key}'{did_you_mean(key, list(known))}; "
                                  f"allowed: {', '.join(sorted(known))}")
            if key == "collapse":
                kwargs[key] = value if isinstance(value, CollapseConfig) else _collapse_from(value)
            else:
                kwargs[key] = coerce(key, value, type(getattr(cls(), key)))
        return cls(**kwargs)

    def with_overrides(self, pairs: "list[str]") -> "TrialConfig":
        """Apply ``key=value`` strings (``collapse.stop_on_collapse=false`` for nested keys)."""
        values = self.to_dict()
        for pair in pairs:
            if "=" not in pair:
                raise ConfigError(f"--set expects key=value, got '{pair}'")
            key, raw = (s.strip() for s in pair.split("=", 1))
            if key.startswith("collapse."):
                sub = key.split(".", 1)[1]
                allowed = [f.name for f in fields(CollapseConfig)]
                if sub not in allowed:
                    raise ConfigError(f"unknown key '{key}'{did_you_mean(sub, allowed)}; allowed: "
                                      + ", ".join(f"collapse.{a}" for a in allowed))
                values["collapse"][sub] = raw
            else:
                values[key] = raw
        return TrialConfig.from_dict(values)


def default_backbone(dataset: str) -> str:
    """``backbone: auto`` for ``dataset``: convnet on generated/bundled data, resnet_small on files."""
    return REAL_DATA_BACKBONE if dataset in NEEDS_ROOT else GENERATED_BACKBONE


def data_root_problem(dataset: str, root: str) -> str:
    """Why ``root`` cannot serve ``dataset`` ("" when it can), naming the paths it expects.

    Checks the files each local dataset reads (see :mod:`er_core.dataset_layout`), not only the
    directory, so a wrong root fails at study validation / ``er-tune train``, before any training.
    """
    if dataset not in NEEDS_ROOT:
        return ""
    return root_problem(dataset, root)


def _collapse_from(values: Any) -> CollapseConfig:
    if not isinstance(values, Mapping):
        raise ConfigError(f"collapse must be a mapping, got {type(values).__name__}")
    known = {f.name for f in fields(CollapseConfig)}
    defaults = CollapseConfig()
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown key 'collapse.{key}'{did_you_mean(key, list(known))}; "
                              f"allowed: {', '.join(sorted(known))}")
        kwargs[key] = coerce(f"collapse.{key}", value, type(getattr(defaults, key)))
    return CollapseConfig(**kwargs)


def coerce(key: str, value: Any, kind: type) -> Any:
    """Convert ``value`` (possibly a string from the command line) to ``kind`` or raise."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{key} must be a boolean (true/false), got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key} must be finite, got {value!r}")
        return number
    if kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    return value


def _check_choice(key: str, value: str, allowed: "tuple[str, ...]") -> None:
    if value not in allowed:
        raise ConfigError(f"{key}='{value}' is not allowed{did_you_mean(str(value), allowed)}; "
                          f"allowed: {', '.join(allowed)}")


def _check_min(key: str, value: float, minimum: float) -> None:
    if value < minimum:
        raise ConfigError(f"{key}={value} is out of range; allowed: >= {minimum}")


def _check_positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{key}={value} is out of range; allowed: > 0")


def _check_fraction(key: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key}={value} is out of range; allowed: 0 <= {key} <= 1")
