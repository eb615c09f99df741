"""Which configuration each condition group's search chose, and which one its replicate phase ran.

The choice is :func:`er_core.rules.best_by_group` over the search phase's learning curves (the rule
of the replicate phase, ``er-tune status`` and the progress line: metrics compared at the furthest
epoch any trial of the group reached), with the study's metric, mode and ordered-halving rungs
from ``plan.json``. What was replicated is read from ``best_configs.json``, which ``er-tune tune``
writes when the search ends (each group's chosen config, with its ``optuna_trial`` number): an
experiment run before the rule compared like with like may have replicated another trial, and the
search table says so (``replicated`` false).
"""
from __future__ import annotations

import os

from er_core.halving import Halving

from .discover import TrialData, trial_status
from .status import best_per_group, read_json_object, read_plan, trial_rows


def replicated_configs(exp_dir: str) -> dict | None:
    """``best_configs.json`` (``{group: config}``), or None when the experiment has none."""
    return read_json_object(exp_dir, "best_configs.json")


def _matches(trial: TrialData, config: dict) -> bool:
    params = trial.params or {}
    if params.get("optuna_trial") is not None and config.get("optuna_trial") is not None:
        return params["optuna_trial"] == config["optuna_trial"]
    return all(params.get(name) == config.get(name) for name in params.get("searched") or [])


def search_choices(exp_dir: str, trials: list[TrialData], rows) -> dict[str, dict]:
    """Per group of the search phase: the chosen trial (``trial``: its directory name), the epoch it
    was compared at (``epoch``), its metric there (``value``), the ``metric``, and ``replicated``
    (the chosen trial is the one whose configuration the replicate phase ran; None when unknown) with
    ``replicated_trial`` (that trial's directory name, None when unknown)."""
    searched = [trial for trial in trials if trial.phase == "search"]
    if not searched:
        return {}
    plan = read_plan(exp_dir) or {}
    metric, mode = plan.get("metric", "knn_top1"), plan.get("mode", "max")
    halving = Halving.from_dict(plan["halving"]) if plan.get("halving") else None
    statuses = {id(trial): trial_status(trial) for trial in searched}
    offsets = trial_rows(trials, rows, metric)
    best = best_per_group(searched, statuses, {id(t): offsets[id(t)] for t in searched}, metric, mode, halving)
    configs = replicated_configs(exp_dir)
    out = {}
    for group, choice in best.items():
        entry = {"trial": choice["trial"], "epoch": choice["epoch"], "value": choice["value"], "metric": metric,
                 "replicated": None, "replicated_trial": None}
        if configs is not None and group in configs:
            ran = [trial for trial in searched if (trial.params or {}).get("group") == group
                   and _matches(trial, configs[group])]
            entry["replicated_trial"] = os.path.basename(ran[0].trial_dir) if ran else None
            entry["replicated"] = entry["replicated_trial"] == choice["trial"]
        out[group] = entry
    return out
