"""Study files: YAML -> a validated :class:`~search_spaces.study.Study`, every mistake caught before Ray starts.

Beyond the schema (unknown keys with a did-you-mean, types, ranges, empty lists), the loader builds
the :class:`~er_core.config.TrialConfig` of every condition group at both ends of every searched
range, so any value a trial would reject is rejected here, naming the study key.

How it reads: :func:`parse_document` checks the top level, then runs the parser of each section of
:data:`SECTIONS` in order; each parser reads its section and adds what it produces to ``parsed``
(the :class:`Study` fields, and ``base``: the TrialConfig fields every trial shares), so a later
section may use an earlier one's result (``grid`` reads ``methods``; ``tune`` reads ``grid``).
**To add a top-level key**: write ``_parse_<key>(path, value, parsed)``, add a row to
:data:`SECTIONS` (:data:`TOP_KEYS`, the allowed top-level keys, are its keys) and the field it fills to :class:`~search_spaces.study.Study`. A key inside a
section goes into that section's ``*_KEYS`` tuple in ``study.py`` and its parser here.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import yaml

from er_core.config import (BACKBONE_CHOICES, DATASET_NAMES, METHODS, VARIANTS, ConfigError, TrialConfig,
                            did_you_mean, keys_read_by, objective_name)
from er_core.halving import MODES as HALVING_MODES
from search_spaces.observe_keys import parse_loggers, parse_optuna_storage
from search_spaces.study import (ASHA_KEYS, CHECKPOINT_KEYS, DATA_KEYS, DISTRIBUTIONS, METRICS, MODEL_KEYS,
                                 NAME_RULE, RESERVED, RESOURCE_KEYS, SCHEDULE_KEYS, SEARCH_KEYS,
                                 TRIAL_FIELDS, Distribution, Resources, ScheduleSettings, SearchSettings, Study,
                                 StudyError, _mapping, _nonempty_list, _number, _trial_config, applies, check_root,
                                 collapse_config, condition_groups, same_value, valid_name)


def load_study(path: str) -> Study:
    """Read and validate a study file; raises :class:`StudyError` (nothing is written)."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = handle.read()
    except OSError as error:
        raise StudyError(path, "<file>", f"cannot be read ({error.strerror})") from None
    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise StudyError(path, "<yaml>", f"unparseable YAML at {where}: {getattr(error, 'problem', error)}") from None
    return parse_study(document, path=path, raw=raw)


def with_methods(document: dict, methods: list[str]) -> dict:
    """A copy of a study document narrowed to ``methods``: ``tune`` keeps only the entries whose
    ``methods:``/``objectives:`` restriction names one of them (an entry searched for another
    method's objective only would otherwise be a dead dimension). Benchmarks use it to run a
    shipped study's trial shape with other methods."""
    objectives = {objective_name(method, variant) for method in methods for variant in VARIANTS}
    narrowed = dict(document, methods=list(methods))
    narrowed["tune"] = {key: spec for key, spec in (document.get("tune") or {}).items()
                        if set(spec.get("objectives", objectives)) & objectives
                        and set(spec.get("methods", methods)) & set(methods)}
    return narrowed


def parse_study(document: Any, *, path: str, raw: str = "") -> Study:
    """Validate an already loaded YAML document (``path`` names it in errors)."""
    return parse_document(document, path=path, raw=raw)


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


Parsed = dict  # what the sections produced so far: Study fields, plus "base" and "grid_raw"


def parse_document(document: Any, *, path: str, raw: str) -> Study:
    """A validated :class:`Study` from a loaded YAML document (see the module docstring)."""
    top = _mapping(path, "", document, TOP_KEYS) if document is not None else {}
    if not top:
        raise StudyError(path, "<file>", "is empty", "a mapping with " + ", ".join(TOP_KEYS))
    for required in ("name", "methods"):
        if required not in top:
            raise StudyError(path, required, "is required")
    parsed: Parsed = {"base": {}}
    for key, parse_section, default in SECTIONS:
        parse_section(path, top.get(key, default), parsed)
    parsed.pop("grid_raw")
    study = Study(source_path=path, raw=raw, **parsed)
    _check_every_trial(study)
    return study


def _parse_name(path: str, name: Any, parsed: Parsed) -> None:
    if not valid_name(name):
        raise StudyError(path, "name", f"invalid name {name!r}", NAME_RULE)
    parsed["name"] = name


def _parse_methods(path: str, value: Any, parsed: Parsed) -> None:
    parsed["methods"] = _names(path, "methods", value, METHODS)


def _parse_variants(path: str, value: Any, parsed: Parsed) -> None:
    parsed["variants"] = _names(path, "variants", value, VARIANTS)


def _parse_data(path: str, value: Any, parsed: Parsed) -> None:
    base = parsed["base"]
    data = _mapping(path, "data", value, tuple(DATA_KEYS))
    for key, field_name in DATA_KEYS.items():
        if key in data:
            base[field_name] = data[key]
    dataset = base.get("dataset", "shapes")
    if dataset not in DATASET_NAMES:
        raise StudyError(path, "data.dataset", f"unknown dataset {dataset!r}{did_you_mean(str(dataset), DATASET_NAMES)}",
                         ", ".join(DATASET_NAMES))
    check_root(path, dataset, str(base.get("data_root", "") or ""))


def _parse_model(path: str, value: Any, parsed: Parsed) -> None:
    model = _mapping(path, "model", value, MODEL_KEYS)
    if "backbone" in model and model["backbone"] not in BACKBONE_CHOICES:
        raise StudyError(path, "model.backbone", f"unknown backbone {model['backbone']!r}"
                         f"{did_you_mean(str(model['backbone']), BACKBONE_CHOICES)}", ", ".join(BACKBONE_CHOICES))
    parsed["base"].update(model)


def _parse_trial(path: str, value: Any, parsed: Parsed) -> None:
    trial = value or {}
    if not isinstance(trial, dict):
        raise StudyError(path, "trial", f"must be a mapping, got {type(trial).__name__}")
    for key, setting in trial.items():
        parsed["base"][_setting_key(path, f"trial.{key}", key, section="trial:")] = setting


def _parse_schedule(path: str, value: Any, parsed: Parsed) -> None:
    schedule_raw = _mapping(path, "schedule", value, SCHEDULE_KEYS)
    asha = _mapping(path, "schedule.asha", schedule_raw.get("asha"), ASHA_KEYS)
    schedule = ScheduleSettings(
        max_epochs=_number(path, "schedule.max_epochs", schedule_raw.get("max_epochs", 30), integer=True, minimum=1),
        grace_period=_number(path, "schedule.asha.grace_period", asha.get("grace_period", 3), integer=True, minimum=1),
        reduction_factor=_number(path, "schedule.asha.reduction_factor", asha.get("reduction_factor", 3),
                                 integer=True, minimum=2),
        asha_mode=_asha_mode(path, asha.get("mode", "async")))
    if schedule.grace_period > schedule.max_epochs:
        raise StudyError(path, "schedule.asha.grace_period",
                         f"{schedule.grace_period} exceeds schedule.max_epochs={schedule.max_epochs}",
                         f"1 <= grace_period <= {schedule.max_epochs}")
    parsed["schedule"] = schedule
    parsed["base"]["epochs"] = schedule.max_epochs


def _asha_mode(path: str, mode: Any) -> str:
    if mode not in HALVING_MODES:
        raise StudyError(path, "schedule.asha.mode", f"unknown mode {mode!r}",
                         "async (Ray's asynchronous ASHA: decisions follow the order trials report in), "
                         "ordered (decisions as if a group's trials reported in the order they were "
                         "created: the same choices whatever the timing)")
    return mode


def _parse_collapse(path: str, value: Any, parsed: Parsed) -> None:
    parsed["base"]["collapse"] = collapse_config(path, value)


def _parse_seeds(path: str, value: Any, parsed: Parsed) -> None:
    seeds = _nonempty_list(path, "seeds", value)
    parsed["seeds"] = tuple(_number(path, f"seeds[{index}]", seed, integer=True, minimum=0)
                            for index, seed in enumerate(seeds))


def _parse_grid(path: str, value: Any, parsed: Parsed) -> None:
    grid_raw = value or {}
    if not isinstance(grid_raw, dict):
        raise StudyError(path, "grid", f"must be a mapping of axis: [values], got {type(grid_raw).__name__}")
    methods, variants = parsed["methods"], parsed["variants"]
    grid = []
    for axis, values in grid_raw.items():
        _setting_key(path, f"grid.{axis}", axis, section="grid:")
        values = _nonempty_list(path, f"grid.{axis}", values)
        if not any(applies(axis, method, variant) for method in methods for variant in variants):
            users = [method for method in METHODS if any(applies(axis, method, variant) for variant in VARIANTS)]
            raise StudyError(path, f"grid.{axis}", f"applies to none of the listed methods {list(methods)}",
                             f"methods that use {axis}: {', '.join(users)}")
        grid.append((axis, tuple(values)))
    parsed["grid"], parsed["grid_raw"] = tuple(grid), grid_raw


def _parse_reference(path: str, value: Any, parsed: Parsed) -> None:
    """``reference: {axis: value, ...}``: one value per grid axis, each one of that axis's values.

    The cell every other cell's accuracy drop is measured from (the report's robustness table); a
    method whose cells drop an axis (no teacher: no ``ema``) has a reference without it."""
    parsed["reference"] = None
    if value is None:
        return
    grid = dict(parsed["grid"])
    if not grid:
        raise StudyError(path, "reference", "needs a grid: a reference is one of the grid's cells",
                         "a grid: section with the axes the reference names")
    reference = _mapping(path, "reference", value, tuple(grid))
    missing = [axis for axis in grid if axis not in reference]
    if missing:
        raise StudyError(path, f"reference.{missing[0]}", "is missing: the reference names one value "
                         "per grid axis", ", ".join(f"{axis}: one of {list(values)}"
                                                    for axis, values in grid.items()))
    for axis, values in grid.items():
        if not any(same_value(reference[axis], v) for v in values):
            raise StudyError(path, f"reference.{axis}", f"{reference[axis]!r} is not a value of "
                             f"grid.{axis}", ", ".join(repr(v) for v in values))
    parsed["reference"] = tuple((axis, reference[axis]) for axis in grid)


def _parse_search(path: str, value: Any, parsed: Parsed) -> None:
    search_raw = _mapping(path, "search", value, SEARCH_KEYS)
    metric = search_raw.get("metric", "knn_top1")
    if metric not in METRICS:
        raise StudyError(path, "search.metric", f"unknown metric {metric!r}{did_you_mean(str(metric), tuple(METRICS))}",
                         ", ".join(METRICS))
    mode = search_raw.get("mode", METRICS[metric])
    if mode not in ("max", "min"):
        raise StudyError(path, "search.mode", f"unknown mode {mode!r}", "max, min")
    parsed["search"] = SearchSettings(
        num_samples=_number(path, "search.num_samples", search_raw.get("num_samples", 8), integer=True, minimum=1),
        metric=metric, mode=mode, seed=_number(path, "search.seed", search_raw.get("seed", 0), integer=True, minimum=0),
        trial_seed=_search_trial_seed(path, search_raw, parsed["seeds"]),
        storage=parse_optuna_storage(path, search_raw.get("storage")))


def _search_trial_seed(path: str, search_raw: Mapping[str, Any], seeds: tuple[int, ...]) -> int:
    """The training seed of the search trials: ``search.trial_seed``, by default one more than the
    largest replicate seed, so no replicate re-runs a search trial (the winner's curse: a replicate
    on the search seed re-measures the very run that won the search). Sharing a replicate seed needs
    ``share_replicate_seed: true``."""
    share = search_raw.get("share_replicate_seed", False)
    if not isinstance(share, bool):
        raise StudyError(path, "search.share_replicate_seed", f"must be true or false, got {share!r}",
                         "true (the search may use a replicate seed), false (default)")
    seed = _number(path, "search.trial_seed", search_raw.get("trial_seed", max(seeds) + 1), integer=True, minimum=0)
    if seed in seeds and not share:
        raise StudyError(path, "search.trial_seed",
                         f"{seed} is also a replicate seed (seeds: {list(seeds)}): that replicate would re-run "
                         "the winning search trial instead of measuring it afresh",
                         f"a seed not in {list(seeds)}, or share_replicate_seed: true to allow it")
    return seed


def _parse_tune(path: str, tune_raw: Any, parsed: Parsed) -> None:
    parsed["tune"] = None
    if tune_raw is None:
        return
    if not isinstance(tune_raw, dict) or not tune_raw:
        raise StudyError(path, "tune", "must be a non-empty mapping of parameter: distribution")
    methods, variants = parsed["methods"], parsed["variants"]
    pairs = [(method, variant) for method in methods for variant in variants]
    distributions = []
    for param, spec in tune_raw.items():
        _setting_key(path, f"tune.{param}", param, section="tune:")
        if param in parsed["grid_raw"]:
            raise StudyError(path, f"tune.{param}", f"'{param}' is also a grid axis; a setting is either "
                             "a stability axis or searched, not both")
        dist = _distribution(path, param, spec, methods, variants)
        if not any(dist.used_by(method, variant) for method, variant in pairs):
            raise StudyError(path, f"tune.{param}", "is used by none of the listed method/variant pairs "
                             f"({', '.join(f'{method}/{variant}' for method, variant in pairs)})")
        _check_no_dead_dimension(path, dist, methods, variants)
        distributions.append(dist)
    parsed["tune"] = tuple(distributions)


def _parse_resources(path: str, value: Any, parsed: Parsed) -> None:
    resources_raw = _mapping(path, "resources", value, RESOURCE_KEYS)
    resources = Resources(
        cpu=_number(path, "resources.cpu", resources_raw.get("cpu", 1), minimum=0),
        gpu=_number(path, "resources.gpu", resources_raw.get("gpu", 0), minimum=0),
        max_concurrent_trials=_number(path, "resources.max_concurrent_trials",
                                      resources_raw.get("max_concurrent_trials", 0), integer=True, minimum=0),
        workers=_number(path, "resources.workers", resources_raw.get("workers", 1), integer=True, minimum=1),
        images_per_s=_number(path, "resources.images_per_s", resources_raw.get("images_per_s", 0), minimum=0))
    if resources.cpu == 0 and resources.gpu == 0:
        raise StudyError(path, "resources", "a trial needs some cpu or gpu", "cpu > 0 or gpu > 0")
    _check_gpu(path, resources.gpu)
    if resources.workers > 1 and 0 < resources.gpu < 1:
        raise StudyError(path, "resources.gpu", f"{resources.gpu} of a GPU per worker with workers: "
                         f"{resources.workers}; NCCL cannot put two workers of one trial on one GPU",
                         "0 (CPU workers, Gloo) or an integer >= 1 per worker when workers > 1")
    parsed["resources"] = resources
    parsed["base"]["world_size"] = resources.workers  # batch_size is the global batch of the workers


def _parse_checkpoints(path: str, value: Any, parsed: Parsed) -> None:
    keep_final = _mapping(path, "checkpoints", value, CHECKPOINT_KEYS).get("keep_final", False)
    if not isinstance(keep_final, bool):
        raise StudyError(path, "checkpoints.keep_final", f"must be true or false, got {keep_final!r}",
                         "true (keep each ended trial's last checkpoint), false (delete them; default)")
    parsed["keep_final_checkpoint"] = keep_final


def _parse_loggers(path: str, value: Any, parsed: Parsed) -> None:
    parsed["loggers"] = parse_loggers(path, value)


# The top-level sections in the order they are parsed (a parser may read what an earlier one put
# in ``parsed``): (key, parser, value when the key is absent). A new key: a row here, its parser
# above.
SECTIONS: tuple[tuple[str, Callable[[str, Any, Parsed], None], Any], ...] = (
    ("name", _parse_name, None),
    ("methods", _parse_methods, None),
    ("variants", _parse_variants, list(VARIANTS)),
    ("data", _parse_data, None),
    ("model", _parse_model, None),
    ("trial", _parse_trial, None),
    ("schedule", _parse_schedule, None),
    ("collapse", _parse_collapse, None),
    ("seeds", _parse_seeds, [0]),
    ("grid", _parse_grid, None),
    ("reference", _parse_reference, None),
    ("search", _parse_search, None),
    ("tune", _parse_tune, None),
    ("resources", _parse_resources, None),
    ("checkpoints", _parse_checkpoints, None),
    ("loggers", _parse_loggers, None),
)
TOP_KEYS = tuple(key for key, _, _ in SECTIONS)


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
    """Build each group's TrialConfig, then again with every searched range at both ends.

    A group's own settings that a trial rejects are reported under the study key that set them: the
    grid axis named in the problem, else the section holding the offending key (:func:`_section_of`).
    """
    path = study.source_path
    for group in condition_groups(study):
        values = {**study.base, **group.settings, "seed": study.seeds[0]}
        problem = _problem(values)
        if problem:
            named = [axis for axis in group.cell if axis in problem]
            raise StudyError(path, f"grid.{named[0]}" if named else _section_of(values, problem), problem)
        for dist in study.tune or ():
            if not dist.used_by(group.method, group.variant):
                continue
            ends = dist.values if dist.kind == "choice" else (dist.values[0], dist.values[-1])
            for end in ends:
                _trial_config(path, f"tune.{dist.name}", {**values, dist.name: end})


def _problem(values: dict) -> str:
    """What TrialConfig says about ``values`` ("" when it accepts them)."""
    try:
        TrialConfig.from_dict(values)
    except ConfigError as error:
        return str(error)
    return ""


def _section_of(values: dict, problem: str) -> str:
    """Which study section holds the key ``problem`` (TrialConfig's message) is about."""
    for key in values:
        if problem.startswith(f"{key}=") or problem.startswith(f"{key} "):
            for section, keys in (("data", DATA_KEYS.values()), ("model", MODEL_KEYS)):
                if key in keys:
                    return f"{section}.{next((k for k, f in DATA_KEYS.items() if f == key), key)}"
            return "schedule.max_epochs" if key == "epochs" else f"trial.{key}"
    return "trial"
