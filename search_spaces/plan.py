"""The plan of a study: condition groups, the flat trial configs of both phases, and its printout.

A condition group is (method, variant, grid cell). Grid axes that do not apply to a method (the
EMA coefficient for SimCLR, SwAV, DeepCluster-v2) are dropped from its cells instead of
multiplying identical groups. Search trials all use ``search.trial_seed`` (by default one more
than the largest replicate seed); replicate trials use every seed of ``seeds:``; both phases use ``schedule.max_epochs``, so both variants of a method get the same budget.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping

from er_core.config import TrialConfig, default_backbone
from er_core.halving import Halving, milestones
from er_core.rules import ALPHA, EXIT_USAGE, REPLICATE, check_alpha
from search_spaces.parse import load_study
from search_spaces.study import ConditionGroup, Study, StudyError, condition_groups, stressed_cells

__all__ = ["ConditionGroup", "condition_groups", "searched_params", "trial_config", "search_trial_count", "halving_of",
           "replicate_configs", "data_configs", "describe", "describe_power", "describe_robustness",
           "validate_command"]


def searched_params(study: Study, group: ConditionGroup) -> list:
    return [d for d in study.tune or () if d.used_by(group.method, group.variant)]


def trial_config(study: Study, group: ConditionGroup, *, phase: str, seed: int,
                 hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The flat Ray config / params.json of one trial: TrialConfig fields + META_KEYS."""
    hparams = dict(hparams or {})
    config = TrialConfig.from_dict({**study.base, **group.settings, **hparams, "seed": seed}).resolved()
    return {**config.to_dict(), "study": study.name, "phase": phase, "group": group.name,
            "grid_axes": sorted(group.cell), "searched": sorted(d.name for d in searched_params(study, group))}


def _backbone_line(study: Study) -> str:
    named = study.base.get("backbone", "auto")
    if named != "auto":
        return named
    return f"{default_backbone(study.base.get('dataset', 'shapes'))} (backbone: auto)"


def halving_of(study: Study) -> Halving | None:
    """The rungs of ordered successive halving when the study's ASHA runs in ``ordered`` mode
    (:mod:`er_core.halving`), else ``None`` (asynchronous ASHA)."""
    schedule = study.schedule
    if schedule.asha_mode != "ordered":
        return None
    return Halving(milestones(schedule.max_epochs, schedule.grace_period, schedule.reduction_factor),
                   schedule.reduction_factor, study.search.mode)


def search_trial_count(study: Study) -> int:
    return 0 if study.tune is None else len(condition_groups(study)) * study.search.num_samples


def replicate_configs(study: Study, best_by_group: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Best search configuration of each group (defaults without one) × every seed."""
    configs = []
    for group in condition_groups(study):
        best = best_by_group.get(group.name, {})
        hparams = {d.name: best[d.name] for d in searched_params(study, group) if d.name in best}
        for seed in study.seeds:
            configs.append(trial_config(study, group, phase=REPLICATE, seed=seed, hparams=hparams))
    return configs


def data_configs(study: Study) -> list[dict[str, Any]]:
    """One representative trial config per group (data settings never depend on searched values)."""
    return [trial_config(study, g, phase=REPLICATE, seed=study.seeds[0]) for g in condition_groups(study)]


def describe(study: Study) -> str:
    """Human-readable plan: groups, trials per phase, epoch budget."""
    groups = condition_groups(study)
    n_search = search_trial_count(study)
    n_replicate = len(groups) * len(study.seeds)
    epochs = study.schedule.max_epochs
    lines = [f"study {study.name} ({study.source_path})",
             f"  data: {study.base.get('dataset', 'shapes')}, model: {_backbone_line(study)}, "
             f"methods: {', '.join(study.methods)} x variants: {', '.join(study.variants)}",
             f"  grid: " + (", ".join(f"{a}={list(v)}" for a, v in study.grid) or "none")
             + f"; seeds: {list(study.seeds)}",
             f"  condition groups: {len(groups)}"]
    for group in groups:
        params = ", ".join(d.name for d in searched_params(study, group)) or "-"
        lines.append(f"    {group.name:<42} searched: {params}")
    if study.tune is None:
        lines.append("  phase search: skipped (no tune: section; replicate uses the defaults)")
    else:
        schedule = study.schedule
        lines.append(f"  phase search: {n_search} trials ({study.search.num_samples} per group, Optuna TPE seed "
                     f"{study.search.seed}, metric {study.search.metric} {study.search.mode}), {schedule.asha_mode} "
                     f"ASHA per group (grace {schedule.grace_period}, reduction {schedule.reduction_factor}), "
                     f"at most {n_search * epochs} epochs; training seed {study.search.trial_seed}"
                     + (" (also a replicate seed)" if study.search.trial_seed in study.seeds else ""))
    lines.append(f"  phase replicate: {n_replicate} trials (best config per group x {len(study.seeds)} seeds), "
                 f"{n_replicate * epochs} epochs; training seeds {list(study.seeds)}")
    lines.append(f"  epoch budget: at most {(n_search + n_replicate) * epochs} trial-epochs; resources per trial: "
                 f"workers={study.resources.workers} x (cpu={study.resources.cpu}, gpu={study.resources.gpu})")
    lines += _cost_lines(study, (n_search + n_replicate) * epochs)
    return "\n".join(lines)


def _cost_lines(study: Study, trial_epochs: int) -> list[str]:
    """Device-hours of the epoch budget at the study's ``resources.images_per_s`` (if given).

    ``hours = trial_epochs x train_size / images_per_s / 3600`` per trial, times the trial's GPUs
    (``workers x gpu``) for GPU-hours. The figure is whatever the study file says: the printout calls
    it an assumption, since nothing here measured it (``benchmarks/data_parallel.py`` does).
    """
    resources = study.resources
    if resources.images_per_s <= 0:
        return []
    train_size = int(study.base.get("train_size", TrialConfig().train_size))
    trial_hours = trial_epochs * train_size / resources.images_per_s / 3600.0
    unit = f"{resources.trial_gpu:g} GPU(s)" if resources.trial_gpu > 0 else f"{resources.trial_cpu:g} CPU(s)"
    device_hours = trial_hours * (resources.trial_gpu if resources.trial_gpu > 0 else resources.trial_cpu)
    kind = "GPU" if resources.trial_gpu > 0 else "CPU"
    return [f"  cost at most: {trial_hours:,.0f} trial-hours x {unit} per trial = {device_hours:,.0f} {kind}-hours "
            f"({trial_epochs} trial-epochs x {train_size:,} images at {resources.images_per_s:,.0f} images/s per "
            f"trial: an ASSUMED throughput from the study file, not measured; measure it with "
            f"benchmarks/data_parallel.py and set resources.images_per_s)"]


def describe_power(study: Study, alpha: float = ALPHA) -> tuple[list[str], list[str]]:
    """What the study's seeds can decide (er_core/power.py): lines and warnings.

    The cells are the (method, grid cell) pairs compared ER against original; Holm adjusts over
    all of them, so a difference in a single cell must reach alpha / cells.
    """
    from er_core.power import power_lines

    if not {"original", "er"} <= set(study.variants):
        return ["  verdict power: no ER-vs-original comparison (variants must list both)"], []
    cells = sum(1 for g in condition_groups(study) if g.variant == "original")
    n = len(study.seeds)
    lines, warns = power_lines(n, n, cells, alpha)
    out = [f"  verdict power ({n} seeds per variant, {cells} compared cells):"]
    out += [f"    {line}" for line in lines]
    return out, [f"  warning: {w}" for w in warns]


def _cell_text(cell) -> str:
    return ",".join(f"{axis}={value}" for axis, value in cell.items()) or "(no grid axis)"


def describe_robustness(study: Study, alpha: float = ALPHA) -> tuple[list[str], list[str]]:
    """Which cells are stressed against which reference, and what the seeds can detect of a
    difference of drops (:func:`er_core.power.drop_min_detectable`, Holm over the rows of one
    metric: every stressed cell of every method)."""
    from er_core.power import ASSUMED_ARM_SD, drop_min_detectable, knn_min_detectable_effect

    if study.reference is None:
        return ["  robustness: no reference: in the study, so the report will have no robustness "
                "table (accuracy drops from a reference cell)"], []
    rows = stressed_cells(study)
    out = [f"  robustness: accuracy drop = reference - stressed cell, ER against the original "
           f"(reference: {_cell_text(dict(study.reference))})"]
    for method in study.methods:
        mine = [row for row in rows if row.method == method]
        reference = next((row.reference for row in mine), None)
        if reference is None:
            out.append(f"    {method}: no stressed cell (its cells are the reference alone)")
            continue
        dropped = [axis for axis, _ in study.reference if axis not in reference]
        note = f" (reads no {', '.join(dropped)})" if dropped else ""
        out.append(f"    {method}: reference {_cell_text(reference)}{note}; stressed: "
                   + "; ".join(f"{_cell_text(row.cell)} [{','.join(row.axes)}]" for row in mine))
    warns = []
    if not {"original", "er"} <= set(study.variants):
        warns.append("  warning: robustness needs both variants (original and er): no delta_drop")
    elif rows:
        n, m = len(study.seeds), len(rows)
        effect = knn_min_detectable_effect(n, alpha, m)
        found = drop_min_detectable(n, alpha, m)
        if found is None:
            warns.append("  warning: fewer than 2 seeds: no robustness verdict possible")
        else:
            out.append(f"    delta_drop (seed-contrast t, alpha {alpha:g}, Holm over {m} row(s) per "
                       f"metric, {n} seeds): |original_drop - er_drop| >= {found:.3f} found with 80% "
                       f"power, assuming a seed sd of {ASSUMED_ARM_SD:g} in each of the four arms "
                       f"({effect:.2f} sd of the per-seed contrast, whose sd is 2 x the arm sd)")
    return out, warns


def validate_command(path: str, stream=None, alpha: float = ALPHA) -> int:
    """``er-tune validate``: print the plan and what its seeds can decide (exit 0; a warning, not
    a failure, when they cannot decide something) or the error (stderr, exit 2)."""
    try:
        alpha = check_alpha(alpha)
    except ValueError as error:
        print(f"er-tune validate: --{error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        study = load_study(path)
    except StudyError as error:
        print(f"er-tune validate: {error}", file=sys.stderr)
        return EXIT_USAGE
    lines, warns = describe_power(study, alpha)
    robust_lines, robust_warns = describe_robustness(study, alpha)
    print("\n".join([describe(study)] + lines + warns + robust_lines + robust_warns),
          file=stream or sys.stdout)
    return 0
