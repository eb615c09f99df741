"""Turns a loaded YAML document into a validated :class:`~search_spaces.study.Study`."""

from __future__ import annotations

from typing import Any

from er_tune.config import (BACKBONE_CHOICES, DATASET_NAMES, METHODS, VARIANTS, did_you_mean, keys_read_by,
                            objective_name)
from search_spaces.study import (ASHA_KEYS, DATA_KEYS, DISTRIBUTIONS, METRICS,
                                 MODEL_KEYS, NAME_PATTERN, RESERVED, RESOURCE_KEYS, SCHEDULE_KEYS, SEARCH_KEYS,
                                 TOP_KEYS, TRIAL_FIELDS, Distribution, Resources, ScheduleSettings,
                                 SearchSettings, Study, StudyError, _mapping, _nonempty_list, _number,
                                 _trial_config, applies, check_root, collapse_config)
from search_spaces.study import CHECKPOINT_KEYS
from search_spaces.observe_keys import parse_loggers, parse_optuna_storage


def _names(path: str, key: str, value: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    items = _nonempty_list(path, key, value)
    for index, item in enumerate(items):
        if item not in allowed:
            raise StudyError(path, f"{key}[{index}]", f"unknown value {item!r}{did_you_mean(str(item), allowed)}",
                             ", ".join(allowed))
    return tuple(items)


def _setting_key(path: str, key: str, name: Any, *, section: str) -> str:
    if name not in TRIAL_FIELDS or name in RESERVED:
        allowed = [f for f in TRIAL_FIELDS if f not in RESERVED]
        hint = ""
        if name in RESERVED:
            hint = f" ('{name}' is set by the study's own sections, not by {section})"
        raise StudyError(path, key, f"unknown trial setting{did_you_mean(str(name), allowed)}{hint}",
                         ", ".join(allowed))
    return name


def _distribution(path: str, name: str, spec: Any, methods, variants) -> Distribution:
    key = f"tune.{name}"
    allowed = DISTRIBUTIONS + ("methods", "variants", "objectives")
    spec = _mapping(path, key, spec, allowed)
    kinds = [k for k in spec if k in DISTRIBUTIONS]
    if len(kinds) != 1:
        raise StudyError(path, key, f"needs exactly one distribution, got {kinds or 'none'}",
                         "loguniform: [lo, hi] | uniform: [lo, hi] | int: [lo, hi] | choice: [...]")
    kind = kinds[0]
    values = _nonempty_list(path, f"{key}.{kind}", spec[kind])
    if kind != "choice":
        if len(values) != 2:
            raise StudyError(path, f"{key}.{kind}", f"needs [low, high], got {values!r}")
        low = _number(path, f"{key}.{kind}[0]", values[0], integer=kind == "int")
        high = _number(path, f"{key}.{kind}[1]", values[1], integer=kind == "int")
        if not low < high:
            raise StudyError(path, f"{key}.{kind}", f"low {low} must be below high {high}")
        if kind == "loguniform" and low <= 0:
            raise StudyError(path, f"{key}.{kind}", f"loguniform needs low > 0, got {low}")
    only_methods = _names(path, f"{key}.methods", spec["methods"], methods) if "methods" in spec else ()
    only_variants = _names(path, f"{key}.variants", spec["variants"], variants) if "variants" in spec else ()
    only_objectives: tuple[str, ...] = ()
    if "objectives" in spec:
        if only_methods or only_variants:
            raise StudyError(path, f"{key}.objectives", "cannot be combined with methods: / variants:",
                             "either objectives: [...] or methods: / variants:")
        listed = tuple(objective_name(m, v) for m in methods for v in variants)
        only_objectives = _names(path, f"{key}.objectives", spec["objectives"], listed)
    return Distribution(name, kind, tuple(values), only_methods, only_variants, only_objectives)


def _check_no_dead_dimension(path: str, dist: Distribution, methods, variants) -> None:
    """A searched key must be read by every method/variant its entry applies to (its ``methods:``,
    ``variants:`` or ``objectives:`` restriction, else every listed pair): searching a key an
    objective ignores (``kappa`` for DINO-ER) spends that group's trials on a dimension that cannot
    matter, and makes the two variants' searches incomparable in size."""
    scope = [(m, v) for m in methods for v in variants if dist.in_scope(m, v)]
    readers = [f"{m}/{v}" for m, v in scope if applies(dist.name, m, v)]
    for method, variant in scope:
        if applies(dist.name, method, variant):
            continue
        allowed = [k for k in keys_read_by(method, variant) if k not in RESERVED]
        raise StudyError(path, f"tune.{dist.name}",
                         f"is not read by {method}/{variant} (objective "
                         f"{objective_name(method, variant)}), so searching it there is a "
                         f"dead dimension; restrict the entry with 'methods: [...]', 'variants: [...]' or "
                         f"'objectives: [...]' to the pairs that read it ({', '.join(readers)})",
                         f"keys {method}/{variant} reads: {', '.join(allowed)}")


def parse_document(document: Any, *, path: str, raw: str) -> Study:
    top = _mapping(path, "", document, TOP_KEYS) if document is not None else {}
    if not top:
        raise StudyError(path, "<file>", "is empty", "a mapping with " + ", ".join(TOP_KEYS))
    for required in ("name", "methods"):
        if required not in top:
            raise StudyError(path, required, "is required")
    name = top["name"]
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise StudyError(path, "name", f"invalid name {name!r}", "letters, digits, '_', '.', '-'")
    methods = _names(path, "methods", top["methods"], METHODS)
    variants = _names(path, "variants", top.get("variants", list(VARIANTS)), VARIANTS)

    base: dict[str, Any] = {}
    data = _mapping(path, "data", top.get("data"), tuple(DATA_KEYS))
    for key, field_name in DATA_KEYS.items():
        if key in data:
            base[field_name] = data[key]
    dataset = base.get("dataset", "shapes")
    if dataset not in DATASET_NAMES:
        raise StudyError(path, "data.dataset", f"unknown dataset {dataset!r}{did_you_mean(str(dataset), DATASET_NAMES)}",
                         ", ".join(DATASET_NAMES))
    check_root(path, dataset, str(base.get("data_root", "") or ""))
    model = _mapping(path, "model", top.get("model"), MODEL_KEYS)
    if "backbone" in model and model["backbone"] not in BACKBONE_CHOICES:
        raise StudyError(path, "model.backbone", f"unknown backbone {model['backbone']!r}"
                         f"{did_you_mean(str(model['backbone']), BACKBONE_CHOICES)}", ", ".join(BACKBONE_CHOICES))
    base.update(model)
    trial = top.get("trial") or {}
    if not isinstance(trial, dict):
        raise StudyError(path, "trial", f"must be a mapping, got {type(trial).__name__}")
    for key, value in trial.items():
        base[_setting_key(path, f"trial.{key}", key, section="trial:")] = value

    schedule_raw = _mapping(path, "schedule", top.get("schedule"), SCHEDULE_KEYS)
    asha = _mapping(path, "schedule.asha", schedule_raw.get("asha"), ASHA_KEYS)
    schedule = ScheduleSettings(
        max_epochs=_number(path, "schedule.max_epochs", schedule_raw.get("max_epochs", 30), integer=True, minimum=1),
        grace_period=_number(path, "schedule.asha.grace_period", asha.get("grace_period", 3), integer=True, minimum=1),
        reduction_factor=_number(path, "schedule.asha.reduction_factor", asha.get("reduction_factor", 3),
                                 integer=True, minimum=2))
    if schedule.grace_period > schedule.max_epochs:
        raise StudyError(path, "schedule.asha.grace_period",
                         f"{schedule.grace_period} exceeds schedule.max_epochs={schedule.max_epochs}",
                         f"1 <= grace_period <= {schedule.max_epochs}")
    base["epochs"] = schedule.max_epochs
    base["collapse"] = collapse_config(path, top.get("collapse"))

    seeds = tuple(_number(path, f"seeds[{i}]", s, integer=True, minimum=0)
                  for i, s in enumerate(_nonempty_list(path, "seeds", top.get("seeds", [0]))))

    grid_raw = top.get("grid") or {}
    if not isinstance(grid_raw, dict):
        raise StudyError(path, "grid", f"must be a mapping of axis: [values], got {type(grid_raw).__name__}")
    grid = []
    for axis, values in grid_raw.items():
        _setting_key(path, f"grid.{axis}", axis, section="grid:")
        values = _nonempty_list(path, f"grid.{axis}", values)
        if not any(applies(axis, m, v) for m in methods for v in variants):
            users = [m for m in METHODS if any(applies(axis, m, v) for v in VARIANTS)]
            raise StudyError(path, f"grid.{axis}", f"applies to none of the listed methods {list(methods)}",
                             f"methods that use {axis}: {', '.join(users)}")
        grid.append((axis, tuple(values)))

    search_raw = _mapping(path, "search", top.get("search"), SEARCH_KEYS)
    metric = search_raw.get("metric", "knn_top1")
    if metric not in METRICS:
        raise StudyError(path, "search.metric", f"unknown metric {metric!r}{did_you_mean(str(metric), tuple(METRICS))}",
                         ", ".join(METRICS))
    mode = search_raw.get("mode", METRICS[metric])
    if mode not in ("max", "min"):
        raise StudyError(path, "search.mode", f"unknown mode {mode!r}", "max, min")
    search = SearchSettings(
        num_samples=_number(path, "search.num_samples", search_raw.get("num_samples", 8), integer=True, minimum=1),
        metric=metric, mode=mode, seed=_number(path, "search.seed", search_raw.get("seed", 0), integer=True, minimum=0),
        storage=parse_optuna_storage(path, search_raw.get("storage")))

    tune = None
    if top.get("tune") is not None:
        tune_raw = top["tune"]
        if not isinstance(tune_raw, dict) or not tune_raw:
            raise StudyError(path, "tune", "must be a non-empty mapping of parameter: distribution")
        distributions = []
        for param, spec in tune_raw.items():
            _setting_key(path, f"tune.{param}", param, section="tune:")
            if param in grid_raw:
                raise StudyError(path, f"tune.{param}", f"'{param}' is also a grid axis; a setting is either "
                                 "a stability axis or searched, not both")
            dist = _distribution(path, param, spec, methods, variants)
            if not any(dist.used_by(m, v) for m in methods for v in variants):
                raise StudyError(path, f"tune.{param}", "is used by none of the listed method/variant pairs "
                                 f"({', '.join(f'{m}/{v}' for m in methods for v in variants)})")
            _check_no_dead_dimension(path, dist, methods, variants)
            distributions.append(dist)
        tune = tuple(distributions)

    resources_raw = _mapping(path, "resources", top.get("resources"), RESOURCE_KEYS)
    resources = Resources(
        cpu=_number(path, "resources.cpu", resources_raw.get("cpu", 1), minimum=0),
        gpu=_number(path, "resources.gpu", resources_raw.get("gpu", 0), minimum=0),
        max_concurrent_trials=_number(path, "resources.max_concurrent_trials",
                                      resources_raw.get("max_concurrent_trials", 0), integer=True, minimum=0))
    if resources.cpu == 0 and resources.gpu == 0:
        raise StudyError(path, "resources", "a trial needs some cpu or gpu", "cpu > 0 or gpu > 0")
    _check_gpu(path, resources.gpu)
    keep_final = _mapping(path, "checkpoints", top.get("checkpoints"), CHECKPOINT_KEYS).get("keep_final", False)
    if not isinstance(keep_final, bool):
        raise StudyError(path, "checkpoints.keep_final", f"must be true or false, got {keep_final!r}",
                         "true (keep each ended trial's last checkpoint), false (delete them; default)")

    study = Study(name=name, source_path=path, raw=raw, methods=methods, variants=variants, grid=tuple(grid),
                  seeds=seeds, tune=tune, search=search, schedule=schedule, resources=resources, base=base,
                  keep_final_checkpoint=keep_final, loggers=parse_loggers(path, top.get("loggers")))
    _check_every_trial(study)
    return study


def _check_gpu(path: str, gpu: float) -> None:
    """GPUs per trial: a fraction of one GPU (trials packed on it) or whole GPUs, never 1.5.

    Ray schedules ``gpu: 0.25`` as four trials sharing one device; a fraction above one would
    need a trial to span devices partially, which Ray rejects at run time.
    """
    if gpu == 0 or 0 < gpu <= 1 or float(gpu).is_integer():
        return
    raise StudyError(path, "resources.gpu", f"{gpu} is neither a fraction of one GPU nor a whole number of GPUs",
                     "0 (CPU only), 0 < gpu <= 1 (e.g. 0.25: four trials share one GPU), or an integer >= 1")


def _check_every_trial(study: Study) -> None:
    """Build each group's TrialConfig with every searched range at both ends."""
    from search_spaces.plan import condition_groups

    path = study.source_path
    for group in condition_groups(study):
        values = {**study.base, **group.settings, "seed": study.seeds[0]}
        named = [axis for axis in group.cell if axis in _problem(values)]
        _trial_config(path, f"grid.{named[0]}" if named else _section_of(study, values), values)
        for dist in study.tune or ():
            if not dist.used_by(group.method, group.variant):
                continue
            ends = dist.values if dist.kind == "choice" else (dist.values[0], dist.values[-1])
            for end in ends:
                _trial_config(path, f"tune.{dist.name}", {**values, dist.name: end})


def _problem(values: dict) -> str:
    from er_tune.config import ConfigError, TrialConfig

    try:
        TrialConfig.from_dict(values)
    except ConfigError as error:
        return str(error)
    return ""


def _section_of(study: Study, values: dict) -> str:
    """Which study section holds the offending key (for the error's key path)."""
    problem = _problem(values)
    for key in values:
        if problem.startswith(f"{key}=") or problem.startswith(f"{key} "):
            for section, keys in (("data", DATA_KEYS.values()), ("model", MODEL_KEYS)):
                if key in keys:
                    return f"{section}.{next((k for k, f in DATA_KEYS.items() if f == key), key)}"
            return "schedule.max_epochs" if key == "epochs" else f"trial.{key}"
    return "trial"
