"""Build the report tables (DESIGN.md §7) as pyarrow Tables from discovered trials.

``trials``: one row per trial (readable or not; unreadable fields are null). Grid cell columns
come from the union of params.json ``grid_axes`` (null in a trial whose cell lacks the axis: its
method/variant does not read it); ``hp_<name>`` columns from the union of
``searched``, null in a trial whose group did not search that key (params.json holds every
TrialConfig default, which was never a choice of that group). ``trial_dir`` is relative to the
experiment directory. ``epochs`` keeps the reported metrics, not Ray's bookkeeping (``RAY_KEYS``);
Ray's ``time_total_s`` becomes ``wall_time_s``. Units and descriptions: reports/columns.py.
``collapse_epoch``/``collapse_kind`` are from the first collapse-severity event (else from the
last line's ``collapsed`` flag); ``collapse_grade`` (none/partial/complete), ``partial_kinds``,
``first_partial_epoch``, ``any_collapse_epoch`` and ``first_warning_epoch`` from grades.py;
``partial_graded`` false for a trial never graded for partial collapse, whose grade columns are
then null (a complete collapse excepted: ``collapse_grade`` is still ``complete``).
``stability`` and ``survival``: see stability.py
(per variant also ``*_linear_mean``/``*_linear_std`` of ``final_linear_top1``, the linear probe run at
every trial's end).
``search`` groups by ``group``: the configuration chosen by er_core.rules.best_by_group (metrics
compared at the furthest epoch any trial of the group reached: ``compared_epoch``,
``compared_metric``) and whether the replicate phase ran it (``replicated``), counts, and
``collapse_fraction`` = n_collapsed / n_trials (the share of sampled points of the searched space
that collapsed).
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa

from er_core.config import objective_name
from er_core.rules import COLLAPSE_STATUSES, PLACEMENT_GROUP_KEY, SEARCH

from .discover import TrialData, trial_status
from .grades import collapse_grade, has_grade_inputs

META_COLS = ["phase", "trial_id", "group", "method", "variant", "objective", "dataset"]
# What Ray Tune adds to every result (ray.tune.result.AUTO_RESULT_KEYS and friends): not metrics.
RAY_KEYS = {"config", "hostname", "node_ip", "pid", "date", "experiment_tag", "experiment_id",
            "done", "should_checkpoint", "training_iteration", "timestamp", "time_this_iter_s",
            "time_since_restore", "timesteps_since_restore", "iterations_since_restore",
            "timesteps_total", "timesteps_this_iter", "episodes_total", "episodes_this_iter",
            "checkpoint_dir_name", "trial_info", PLACEMENT_GROUP_KEY}
EPOCH_RENAME = {"time_total_s": "wall_time_s"}
EVENT_COLS = {"trial_id": pa.string(), "epoch": pa.int64(), "step": pa.int64(),
              "detector": pa.string(), "kind": pa.string(), "severity": pa.string(),
              "value": pa.float64(), "threshold": pa.float64(), "message": pa.string()}


def _trial_id(t: TrialData) -> str:
    if t.last and t.last.get("trial_id") is not None:
        return str(t.last["trial_id"])
    return os.path.basename(t.trial_dir)


def _f(x):
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None


def relative_dir(trial_dir: str, root: str | None) -> str:
    """``trial_dir`` relative to the experiment ``root`` (POSIX separators); as given without root."""
    if root is None:
        return trial_dir
    rel = os.path.relpath(os.path.abspath(trial_dir), os.path.abspath(root))
    return rel.replace(os.sep, "/")


def _final_evaluation(params: dict, last: dict, untrained: dict | None = None) -> dict:
    """Final kNN / linear probe of a trial and how many test queries each used: the whole-split
    evaluation (``final_*`` keys of the last line) when the trial ran one, else the last epoch's
    eval-set figures on ``eval_size`` queries (trials written before the final evaluation existed).
    The untrained network's figures are on the same queries: from the last line, else its eval-set
    kNN (``untrained``: the trial's untrained.json)."""
    if last.get("final_knn_top1") is not None:
        queries = last.get("final_queries")
        return {"final_knn_top1": _f(last.get("final_knn_top1")), "final_linear_top1": _f(last.get("final_linear_top1")),
                "final_knn_queries": queries, "linear_queries": queries,
                "untrained_knn_top1": _f(last.get("untrained_final_knn_top1")),
                "untrained_linear_top1": _f(last.get("untrained_final_linear_top1")),
                "learned_knn_p": _f(last.get("learned_knn_p")), "learned_linear_p": _f(last.get("learned_linear_p"))}
    queries = params.get("eval_size") if last.get("knn_top1") is not None else None
    return {"final_knn_top1": _f(last.get("knn_top1")), "final_linear_top1": _f(last.get("linear_top1")),
            "final_knn_queries": queries, "linear_queries": queries if last.get("linear_top1") is not None else None,
            "untrained_knn_top1": _f((untrained or {}).get("knn_top1")), "untrained_linear_top1": None,
            "learned_knn_p": None, "learned_linear_p": None}


def trial_records(trials: list[TrialData], root: str | None = None
                  ) -> tuple[list[dict], list[str], list[str]]:
    """One dict per trial plus the grid axis and searched hp names; ``root``: the experiment
    directory ``trial_dir`` is made relative to."""
    axes, hps = [], []
    for t in trials:
        p = t.params or {}
        for a in p.get("grid_axes") or []:
            if a not in axes:
                axes.append(a)
        for h in p.get("searched") or []:
            if h not in hps:
                hps.append(h)
    recs = []
    for t in trials:
        p, first, last = t.params or {}, t.first or {}, t.last or {}
        method, variant = p.get("method"), p.get("variant")
        objective = None if method is None else objective_name(method, variant)
        first_c = next((e for e in t.events if e.get("severity") == "collapse"), None)
        rec = {"phase": t.phase, "trial_id": _trial_id(t), "group": p.get("group"),
               "method": method, "variant": variant, "objective": objective,
               "dataset": p.get("dataset"), "seed": p.get("seed"), "status": trial_status(t),
               "stop_reason": last.get("stop_reason") or None,
               "epochs_completed": last.get("epoch") or 0,
               "max_epochs": p.get("epochs"),
               "best_knn_top1": None if np.isnan(t.best_knn) else t.best_knn,
               **_final_evaluation(p, last, t.untrained), "final_rankme": _f(last.get("rankme")),
               "final_er_entropy": _f(last.get("er_entropy")),
               "first_er_entropy": _f(first.get("er_entropy")),
               "collapse_kind": first_c.get("kind") if first_c else None,
               "collapse_epoch": first_c.get("epoch") if first_c else None,
               "wall_time_s": _f(last.get("time_total_s")), "error": t.error,
               "trial_dir": relative_dir(t.trial_dir, root)}
        if first_c is None and last.get("collapsed"):
            rec["collapse_kind"] = "diverged" if rec["stop_reason"] == "diverged" else "unknown"
            rec["collapse_epoch"] = last.get("epoch")
        graded = has_grade_inputs(t.last, t.events, t.n_rows)
        grade = collapse_grade(rec["status"], t.events, rec["collapse_epoch"], graded=graded)
        rec.update({"partial_graded": graded, "collapse_grade": grade.grade,
                    "partial_kinds": grade.partial_kinds,
                    "first_partial_epoch": grade.first_partial_epoch,
                    "any_collapse_epoch": grade.any_collapse_epoch,
                    "first_warning_epoch": grade.first_warning_epoch})
        cell = set(p.get("grid_axes") or [])
        for a in axes:  # an axis the pair does not read is not in its cell (nor its default)
            rec[a] = p.get(a) if a in cell else None
        searched = set(p.get("searched") or [])
        for h in hps:
            rec[f"hp_{h}"] = p.get(h) if h in searched else None
        recs.append(rec)
    return recs, axes, hps


INT_COLS = {"seed", "epochs_completed", "max_epochs", "collapse_epoch", "first_partial_epoch",
            "any_collapse_epoch", "first_warning_epoch", "final_knn_queries", "linear_queries"}
FLOAT_COLS = {"best_knn_top1", "final_knn_top1", "final_rankme", "final_er_entropy",
              "wall_time_s", "final_linear_top1", "untrained_knn_top1", "untrained_linear_top1",
              "learned_knn_p", "learned_linear_p"}


def trials_table(recs: list[dict], axes: list[str], hps: list[str]) -> pa.Table:
    cols = (META_COLS + axes + ["seed"] + [f"hp_{h}" for h in hps] +
            ["status", "stop_reason", "epochs_completed", "max_epochs", "best_knn_top1",
             "final_knn_top1", "final_linear_top1", "final_knn_queries", "linear_queries",
             "untrained_knn_top1", "untrained_linear_top1", "learned_knn_p", "learned_linear_p",
             "final_rankme", "final_er_entropy", "collapse_kind",
             "collapse_epoch", "partial_graded", "collapse_grade", "partial_kinds",
             "first_partial_epoch", "any_collapse_epoch", "first_warning_epoch", "wall_time_s", "error", "trial_dir"])
    arrays = []
    for c in cols:
        vals = [r.get(c) for r in recs]
        typ = (pa.int64() if c in INT_COLS else pa.float64() if c in FLOAT_COLS
               else pa.bool_() if c == "partial_graded" else None)
        if typ is None and c not in axes and not c.startswith("hp_"):
            typ = pa.string()
        arrays.append(_array(vals, typ))
    return pa.table(arrays, names=cols)


def _array(vals, typ):
    try:
        return pa.array(vals, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        if all(v is None or isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            return pa.array([None if v is None else float(v) for v in vals], type=pa.float64())
        return pa.array([None if v is None else str(v) for v in vals], type=pa.string())


def epochs_table(trials: list[TrialData], rows: pa.Table) -> pa.Table:
    """trial_id, phase, epoch and every reported scalar metric (typed columns from Arrow); Ray's
    bookkeeping keys are left out and ``time_total_s`` is named ``wall_time_s``."""
    counts = np.array([t.n_rows for t in trials], dtype=np.int64)
    ids = pa.array([_trial_id(t) for t in trials], pa.string())
    phases = pa.array([t.phase for t in trials], pa.string())
    idx = pa.array(np.repeat(np.arange(len(trials)), counts))
    skip = RAY_KEYS | {"trial_id", "phase"}
    skip |= {c for c, new in EPOCH_RENAME.items() if new in rows.column_names}  # reported itself
    keep = [c for c in rows.column_names if c not in skip]
    names = {c: EPOCH_RENAME.get(c, c) for c in keep}
    order = (["epoch"] if "epoch" in keep else []) + sorted(
        (c for c in keep if c != "epoch"), key=lambda c: names[c])
    cols = [ids.take(idx), phases.take(idx)] + [rows[c] for c in order]
    return pa.table(cols, names=["trial_id", "phase"] + [names[c] for c in order])


def events_table(trials: list[TrialData]) -> pa.Table:
    data = {k: [] for k in EVENT_COLS}
    for t in trials:
        tid = _trial_id(t)
        for e in t.events:
            data["trial_id"].append(tid)
            for k in list(EVENT_COLS)[1:]:
                v = e.get(k)
                data[k].append(_f(v) if EVENT_COLS[k] == pa.float64() else v)
    return pa.table({k: _array(v, EVENT_COLS[k]) for k, v in data.items()})


def search_table(df: pd.DataFrame, hps: list[str], choices: dict[str, dict] | None = None) -> pa.Table:
    """Per condition group: the chosen configuration (``choices``, :func:`reports.choices.search_choices`:
    ``best_trial_id``, ``best_hp_*``, ``compared_epoch``, ``compared_metric``, ``replicated``,
    ``replicated_trial_id``), n_trials, n_early_stopped, n_collapsed, collapse_fraction and the
    highest ``best_knn_top1`` any of its trials reached at any epoch."""
    choices = choices or {}
    out = []
    for g, sub in df[df["phase"] == SEARCH].groupby("group", dropna=True, sort=True):
        ncol = int(sub["status"].isin(COLLAPSE_STATUSES).sum())
        choice = choices.get(g) or {}
        by_dir = sub[sub["trial_dir"].map(os.path.basename) == choice.get("trial")]
        best = by_dir.iloc[0] if len(by_dir) else None
        replicated = sub[sub["trial_dir"].map(os.path.basename) == choice.get("replicated_trial")]
        row = {"group": g, "method": sub["method"].iloc[0], "variant": sub["variant"].iloc[0],
               "n_trials": len(sub),
               "n_early_stopped": int((sub["status"] == "early_stopped").sum()),
               "n_collapsed": ncol, "collapse_fraction": ncol / len(sub),
               "best_knn_top1": _py(sub["best_knn_top1"].max()) if sub["best_knn_top1"].notna().any() else None,
               "best_trial_id": None if best is None else best["trial_id"],
               "compared_epoch": choice.get("epoch"), "compared_metric": choice.get("value"),
               "replicated": choice.get("replicated"),
               "replicated_trial_id": replicated["trial_id"].iloc[0] if len(replicated) else None}
        for h in hps:
            row[f"best_hp_{h}"] = None if best is None else _py(best.get(f"hp_{h}"))
        out.append(row)
    cols = ["group", "method", "variant", "n_trials", "n_early_stopped", "n_collapsed",
            "collapse_fraction", "best_knn_top1", "best_trial_id", "compared_epoch", "compared_metric",
            "replicated", "replicated_trial_id"] + [f"best_hp_{h}" for h in hps]
    types = {"n_trials": pa.int64(), "n_early_stopped": pa.int64(), "n_collapsed": pa.int64(),
             "collapse_fraction": pa.float64(), "best_knn_top1": pa.float64(), "compared_epoch": pa.int64(),
             "compared_metric": pa.float64(), "replicated": pa.bool_()}
    return pa.table([_array([r[c] for r in out], types.get(c, pa.string() if c in
                     ("group", "method", "variant", "best_trial_id", "replicated_trial_id") else None))
                     for c in cols], names=cols)


def _py(v):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v


# stability_table and survival_table live in stability.py (tests, Holm, survival analysis).
