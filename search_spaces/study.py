"""What a study is: the typed, frozen :class:`Study`, its condition groups, and the checks its parser uses.

Study files are read by :mod:`search_spaces.parse` (YAML -> :class:`Study`, every mistake caught
before Ray starts) and planned by :mod:`search_spaces.plan`. Imports go one way:
``study`` <- ``parse`` <- ``plan``; this module imports neither.

Each error is a :class:`StudyError` whose message reads ``<file>: <key.path>: <problem>; allowed:
<...>``.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from er_core.config import (METHODS, VARIANTS, CollapseConfig,
                            ConfigError, TrialConfig, data_root_problem, did_you_mean, objective_name,
                            reads_key)

METRICS = {"knn_top1": "max", "er_bound": "max", "er_entropy": "max", "rankme": "max", "loss": "min"}
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
NAME_RULE = "letters, digits, '_', '.', '-' (not '.' or '..', which name directories)"

DATA_KEYS = {"dataset": "dataset", "root": "data_root", "image_size": "image_size",
             "train_size": "train_size", "eval_size": "eval_size", "seed": "data_seed",
             "streaming": "streaming", "loader_workers": "loader_workers"}
MODEL_KEYS = ("backbone", "projector_dim", "projector_hidden_dim", "num_prototypes")
SEARCH_KEYS = ("num_samples", "metric", "mode", "seed", "trial_seed", "share_replicate_seed", "storage")
SCHEDULE_KEYS = ("max_epochs", "asha")
ASHA_KEYS = ("grace_period", "reduction_factor", "mode")
RESOURCE_KEYS = ("workers", "cpu", "gpu", "max_concurrent_trials", "images_per_s")
CHECKPOINT_KEYS = ("keep_final",)
# Keys a study sets through its own sections, not through ``trial:`` / ``grid:`` / ``tune:``.
RESERVED = ("method", "variant", "seed", "epochs", "collapse", "world_size", *DATA_KEYS.values())
TRIAL_FIELDS = tuple(f.name for f in fields(TrialConfig))


class StudyError(ValueError):
    """A study file problem: ``<file>: <key path>: <problem>; allowed: <...>``."""

    def __init__(self, path: str, key: str, problem: str, allowed: str = "") -> None:
        message = f"{path}: {key}: {problem}" + (f"; allowed: {allowed}" if allowed else "")
        super().__init__(message)
        self.path, self.key = path, key


def valid_name(name: object) -> bool:
    """A study or experiment name is one path component: ``er_runs/<name>`` stays inside ``er_runs``."""
    return isinstance(name, str) and bool(NAME_PATTERN.match(name)) and name not in (".", "..")


def applies(param: str, method: str, variant: str) -> bool:
    """Whether trial setting ``param`` influences ``method``/``variant``: the declared map
    :data:`er_core.config.OBJECTIVE_KEYS` (DESIGN.md §2 table), tested against the objectives."""
    return reads_key(param, method, variant)


@dataclass(frozen=True)
class Distribution:
    """One searched hyperparameter: ``kind`` in DISTRIBUTIONS, ``values`` its bounds or choices."""

    name: str
    kind: str
    values: tuple
    methods: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    objectives: tuple[str, ...] = ()

    def in_scope(self, method: str, variant: str) -> bool:
        """Whether the entry's ``methods:`` / ``variants:`` / ``objectives:`` restrictions admit the pair."""
        return ((not self.methods or method in self.methods) and (not self.variants or variant in self.variants)
                and (not self.objectives or objective_name(method, variant) in self.objectives))

    def used_by(self, method: str, variant: str) -> bool:
        return applies(self.name, method, variant) and self.in_scope(method, variant)


@dataclass(frozen=True)
class SearchSettings:
    num_samples: int = 8
    metric: str = "knn_top1"
    mode: str = "max"
    seed: int = 0  # Optuna's sampler (TPE) seed
    trial_seed: int = 1  # the training seed of every search trial (disjoint from ``seeds:`` by default)
    storage: str = ""  # Optuna storage URL or journal:PATH; "" = SQLite in the experiment folder


@dataclass(frozen=True)
class ScheduleSettings:
    max_epochs: int = 30
    grace_period: int = 3
    reduction_factor: int = 3
    asha_mode: str = "async"  # er_core.halving.MODES: async (Ray's ASHA) or ordered (timing-independent)


@dataclass(frozen=True)
class Resources:
    """Per trial: ``workers`` data-parallel workers (``world_size``), each with ``cpu`` and ``gpu``."""

    cpu: float = 1.0
    gpu: float = 0.0
    max_concurrent_trials: int = 0  # 0: as many as the cluster's resources allow
    workers: int = 1
    images_per_s: float = 0.0  # training images/s of one whole trial, for the cost estimate (0: none)

    @property
    def trial_cpu(self) -> float:
        return self.cpu * self.workers

    @property
    def trial_gpu(self) -> float:
        return self.gpu * self.workers


@dataclass(frozen=True)
class Study:
    """A validated study; ``base`` holds every TrialConfig field shared by all trials."""

    name: str
    source_path: str
    raw: str
    methods: tuple[str, ...]
    variants: tuple[str, ...]
    grid: tuple[tuple[str, tuple], ...]
    seeds: tuple[int, ...]
    tune: tuple[Distribution, ...] | None
    search: SearchSettings
    schedule: ScheduleSettings
    resources: Resources
    base: Mapping[str, Any] = field(default_factory=dict)
    keep_final_checkpoint: bool = False  # checkpoints: {keep_final: true} keeps an ended trial's last one
    loggers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # loggers: [mlflow, wandb]
    # reference: {axis: value}: the usual setting each stressed cell's accuracy drop is measured from
    reference: tuple[tuple[str, Any], ...] | None = None

    @property
    def grid_axes(self) -> tuple[str, ...]:
        return tuple(axis for axis, _ in self.grid)

    @functools.cached_property
    def groups(self) -> tuple["ConditionGroup", ...]:
        """Every (method, variant, grid cell), computed once per study: :func:`condition_groups`."""
        return tuple(_condition_groups(self))


@dataclass(frozen=True)
class ConditionGroup:
    """One (method, variant, grid cell) of a study: its trials are compared with each other."""

    method: str
    variant: str
    cell: Mapping[str, Any]

    @property
    def name(self) -> str:
        """Stable id, e.g. ``byol/er/batch_size=64,ema=0.9`` (:func:`group_key`)."""
        return group_key(self.method, self.variant, self.cell)

    @property
    def settings(self) -> dict[str, Any]:
        return {"method": self.method, "variant": self.variant, **self.cell}


def group_key(method: str, variant: str, cell: Mapping[str, Any] | None = None) -> str:
    """A condition group's id: ``<method>/<variant>[/<axis>=<value>,...]`` (axes sorted)."""
    suffix = ",".join(f"{axis}={cell[axis]}" for axis in sorted(cell or {}))
    return f"{method}/{variant}" + (f"/{suffix}" if suffix else "")


def condition_groups(study: Study) -> tuple[ConditionGroup, ...]:
    """Every (method, variant, grid cell) of ``study`` (:attr:`Study.groups`, computed once)."""
    return study.groups


def _condition_groups(study: Study) -> list[ConditionGroup]:
    """An axis a (method, variant) pair does not read is dropped from that pair's cells (no
    duplicate groups)."""
    groups = []
    for method in study.methods:
        for variant in study.variants:
            axes = [(axis, values) for axis, values in study.grid if applies(axis, method, variant)]
            for combo in itertools.product(*(values for _, values in axes)):
                groups.append(ConditionGroup(method, variant, dict(zip((axis for axis, _ in axes), combo))))
    return groups


@dataclass(frozen=True)
class StressedCell:
    """One cell of a method stressed against its reference cell (the robustness table's row key).

    ``axes``: the grid axes that differ from the reference (the stress); both cells hold only the
    axes the method reads (no teacher, no ``ema``)."""

    method: str
    reference: Mapping[str, Any]
    cell: Mapping[str, Any]
    axes: tuple[str, ...]


def same_value(a: Any, b: Any) -> bool:
    """Equality of two axis values as a study and a Parquet column write them (256 == 256.0)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


def stressed_cells(study: Study) -> list[StressedCell]:
    """Every non-reference cell of each method, against the method's reference (the study's
    ``reference:`` restricted to the axes the method reads); empty without ``reference:``."""
    if study.reference is None:
        return []
    reference = dict(study.reference)
    out = []
    for method in study.methods:
        cells = {}
        for group in condition_groups(study):
            if group.method == method:
                cells.setdefault(tuple(sorted((axis, repr(v)) for axis, v in group.cell.items())),
                                 dict(group.cell))
        own = {axis: reference[axis] for axis in next(iter(cells.values()), {})}
        mine = []
        for cell in cells.values():
            axes = tuple(axis for axis in cell if not same_value(cell[axis], own[axis]))
            if axes:
                mine.append(StressedCell(method, own, cell, axes))
        order = list(own)  # one-axis stresses first, each in the grid's axis order
        out += sorted(mine, key=lambda row: (len(row.axes), [order.index(a) for a in row.axes]))
    return out


def _mapping(path: str, key: str, value: Any, allowed: tuple[str, ...]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise StudyError(path, key, f"must be a mapping, got {type(value).__name__}", ", ".join(allowed))
    for sub in value:
        if sub not in allowed:
            raise StudyError(path, f"{key}.{sub}" if key else str(sub),
                             f"unknown key{did_you_mean(str(sub), allowed)}", ", ".join(allowed))
    return dict(value)


def _nonempty_list(path: str, key: str, value: Any) -> list:
    if not isinstance(value, list) or not value:
        raise StudyError(path, key, f"must be a non-empty list, got {value!r}")
    if len(set(map(repr, value))) != len(value):
        raise StudyError(path, key, f"has duplicate entries: {value!r}")
    return value


def _number(path: str, key: str, value: Any, *, integer: bool = False, minimum: float | None = None) -> Any:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok or isinstance(value, bool) or (not integer and not math.isfinite(value)):
        raise StudyError(path, key, f"must be {'an integer' if integer else 'a finite number'}, got {value!r}")
    if minimum is not None and value < minimum:
        raise StudyError(path, key, f"{value} is out of range", f">= {minimum}")
    return value


def _trial_config(path: str, key: str, values: Mapping[str, Any]) -> TrialConfig:
    try:
        return TrialConfig.from_dict(values)
    except ConfigError as error:
        raise StudyError(path, key, str(error)) from None


def collapse_config(path: str, value: Any) -> CollapseConfig:
    allowed = tuple(f.name for f in fields(CollapseConfig))
    values = _mapping(path, "collapse", value, allowed)
    try:
        return TrialConfig.from_dict({"collapse": values}).collapse
    except ConfigError as error:
        raise StudyError(path, "collapse", str(error)) from None


def check_root(path: str, dataset: str, root: str) -> None:
    problem = data_root_problem(dataset, root)
    if problem:
        raise StudyError(path, "data.root", problem, "a directory holding the dataset's files")


__all__ = ["Study", "StudyError", "StressedCell", "stressed_cells", "same_value", "Distribution",
           "SearchSettings", "ScheduleSettings", "Resources", "ConditionGroup", "condition_groups",
           "group_key", "applies", "valid_name", "METHODS", "VARIANTS"]
