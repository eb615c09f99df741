"""The ``stability`` and ``survival`` tables: one row per method × grid cell (ER vs original), and
the Kaplan–Meier curves of every cell × variant × endpoint.

Input: the trial records of one phase (replicate; search when there is none, then
``replicated=False``). Per variant: ``n_seeds`` counts the trials that ran to their own end
(completed, collapsed, diverged): errored and early-stopped (ASHA) trials are left out of counts
and kNN, since whether they would have collapsed is unknown, but enter the survival analysis as
censored at their last epoch (survival.py). ``n_collapsed`` (grade complete), ``n_partial``
(grade partial), ``n_any_collapsed`` (either; reports/grades.py), each rate with its Wilson 95%
interval; ``median_time_to_collapse`` / ``median_time_to_any_collapse`` (epochs, Kaplan–Meier; null
when not reached); final knn_top1 mean/std over seeds; ``entropy_drift`` = mean over seeds of
final − first-epoch er_entropy; linear probe mean/std.

ER − original: one group of columns per verdict family of reports/verdicts.py (``FAMILIES``):
test name, effect, raw p, Holm-adjusted p (within the family over this table's informative cells),
what the seeds could detect, verdict at ``alpha``. Without a replicate phase every verdict is
``not_replicated`` and no p is given: search-phase trials (TPE-chosen, ASHA-pruned, one seed per
configuration) are not replicates of one configuration. The table's schema metadata records
``grid_axes`` (JSON list), ``holm_m`` (JSON: Holm's m per family) and ``comparison`` (``replicated`` / ``not_replicated``).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa

from er_core.rules import COLLAPSE_STATUSES, IN_FLIGHT_STATUSES, STOP_REASONS

from . import stats
from .survival import ENDPOINTS, event_times, kaplan_meier
from .tables import _array, _py
from . import verdicts
from .verdicts import (INT_COLUMNS, SHARED_COLUMNS, VARIANT_COLUMNS, VARIANTS, CellData,
                       VariantData)

SURVIVAL_COLS = ["endpoint", "variant", "epoch", "at_risk", "events", "censored", "survival",
                 "ci_low", "ci_high"]
# trials-table column holding each endpoint's event epoch
ENDPOINT_EPOCH = {"complete": "collapse_epoch", "any": "any_collapse_epoch"}
ENDPOINT_GRADES = {"complete": ("complete",), "any": ("partial", "complete")}


def _cells(df: pd.DataFrame, axes: list[str], phase: str):
    sub = df[(df["phase"] == phase) & df["method"].notna() & df["variant"].notna()]
    sub = sub[~sub["status"].isin(IN_FLIGHT_STATUSES)]
    keys = ["method"] + axes
    for key, cell in sub.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        yield {k: _py(v) for k, v in zip(keys, key)}, cell


def _grades(trials: pd.DataFrame) -> pd.Series:
    """Each trial's grade; null where it is unknown (not graded, or a table older than grades)."""
    if "collapse_grade" in trials:
        return trials["collapse_grade"]
    return trials["status"].map(lambda s: "complete" if s in COLLAPSE_STATUSES else None)


def graded(trials: pd.DataFrame) -> bool:
    """Whether every trial of ``trials`` was graded for partial collapse (``partial_graded``; a
    table older than that column: whether it has grades at all). Without it the partial and
    any-collapse figures are unknown, not zero."""
    if "partial_graded" in trials:
        return bool(trials["partial_graded"].fillna(False).astype(bool).all())
    return "collapse_grade" in trials


def endpoint_times(trials: pd.DataFrame, endpoint: str) -> tuple[np.ndarray, np.ndarray]:
    """(times, events) of ``trials`` for ``endpoint``: the endpoint's event epoch (the last epoch
    when none was recorded) for trials of a matching grade, else censored at the last epoch."""
    column = ENDPOINT_EPOCH[endpoint]
    hit = _grades(trials).isin(ENDPOINT_GRADES[endpoint]).to_numpy()
    epochs = (trials[column] if column in trials else pd.Series(np.nan, index=trials.index))
    epochs = epochs.astype(float).where(~epochs.isna(), trials["epochs_completed"].astype(float))
    event_epochs = [e if h else None for e, h in zip(epochs, hit)]
    return event_times(event_epochs, trials["epochs_completed"])


def _variant(trials: pd.DataFrame, variant: str, prefix: str) -> tuple[dict, VariantData]:
    finished = trials[trials["status"].isin(STOP_REASONS)]
    grades = _grades(finished)
    n = len(finished)
    complete, partial = int((grades == "complete").sum()), int((grades == "partial").sum())
    known = graded(trials)  # partial counts and the any-collapse endpoint need every grade
    knn = finished["final_knn_top1"].dropna().to_numpy(float)
    linear = (finished["final_linear_top1"].dropna().to_numpy(float)
              if "final_linear_top1" in finished else np.empty(0))
    drift = (finished["final_er_entropy"] - finished["first_er_entropy"]).dropna().to_numpy(float)
    times = {endpoint: endpoint_times(trials, endpoint) for endpoint in endpoints(trials)}
    medians = {endpoint: kaplan_meier(*times[endpoint]).median if endpoint in times
               and times[endpoint][0].size else None for endpoint in ENDPOINTS}
    row = {"n_seeds": n, "n_collapsed": complete, "n_partial": partial if known else None,
           "n_any_collapsed": complete + partial if known else None,
           "median_time_to_collapse": medians["complete"],
           "median_time_to_any_collapse": medians["any"],
           "knn_mean": float(knn.mean()) if knn.size else None,
           "knn_std": float(knn.std(ddof=1)) if knn.size > 1 else None,
           "entropy_drift": float(drift.mean()) if drift.size else None,
           "linear_mean": float(linear.mean()) if linear.size else None,
           "linear_std": float(linear.std(ddof=1)) if linear.size > 1 else None}
    for name, count in (("collapse_rate", complete), ("partial_rate", partial if known else None),
                        ("any_collapse_rate", complete + partial if known else None)):
        lo, hi = stats.wilson(count, n) if n and count is not None else (None, None)
        row.update({name: count / n if n and count is not None else None, name + "_lo": lo,
                    name + "_hi": hi})
    knn_by_seed = finished.drop_duplicates("seed").set_index("seed")["final_knn_top1"].dropna()
    data = VariantData(n, complete, partial if known else None, times, knn_by_seed, trials)
    return {prefix + k: v for k, v in row.items()}, data


def endpoints(trials: pd.DataFrame) -> tuple[str, ...]:
    """The endpoints ``trials`` can be analysed for: ``any`` only when every trial was graded."""
    return ENDPOINTS if graded(trials) else tuple(e for e in ENDPOINTS if e != "any")


def _budget(cell: pd.DataFrame) -> float | None:
    if "max_epochs" not in cell or cell["max_epochs"].isna().all():
        return None
    return float(cell["max_epochs"].max())


def holm_m_with(m: int, informative: bool) -> int:
    """Holm's m had this cell been informative: the family's m, plus this cell when it is not
    among them. What a cell could have decided (``*_min_detectable``, the undecided notes) is
    stated at alpha / this m; ``er-tune validate`` prints it for m = 1 (no other cell informative)
    and for every compared cell (er_core/power.py)."""
    return max(1, m if informative else m + 1)


def stability_table(df: pd.DataFrame, axes: list[str], phase: str,
                    alpha: float = stats.ALPHA, replicated: bool = True) -> pa.Table:
    """One row per method × grid cell of ``phase``, original and ER side by side."""
    alpha = stats.check_alpha(alpha)
    rows, outcomes = [], []
    for key, cell in _cells(df, axes, phase):
        row, variants = dict(key), {}
        for variant in VARIANTS:
            columns, variants[variant] = _variant(cell[cell["variant"] == variant], variant,
                                                  variant + "_")
            row.update(columns)
        data = CellData(variants, _budget(cell))
        outcome = {family.name: family.run(data) for family in verdicts.FAMILIES}
        for family in verdicts.FAMILIES:
            result = outcome[family.name]
            row.update(result.effects)
            row[family.test_column] = result.test
            row[family.p_column] = result.p if replicated else None
        row["alpha"] = alpha
        rows.append(row)
        outcomes.append(outcome)
    holm_sizes = {}
    for family in verdicts.FAMILIES:
        informative = [o[family.name].informative for o in outcomes]
        adjusted = stats.holm([r[family.p_column] for r in rows], informative)
        m = sum(keep and r[family.p_column] is not None for keep, r in zip(informative, rows))
        holm_sizes[family.name] = m
        for row, outcome, p_adj in zip(rows, outcomes, adjusted):
            result = outcome[family.name]
            row[family.p_adj_column] = p_adj
            if family.detectable_column:
                row[family.detectable_column] = (
                    family.detectable(result, holm_m_with(m, result.informative), alpha)
                    if replicated else None)
            if not replicated:
                row[family.verdict_column] = stats.NOT_REPLICATED
            elif not result.informative:
                row[family.verdict_column] = stats.UNTESTED  # p = 1 by construction, or no data
            else:
                row[family.verdict_column] = stats.verdict(family.labels, p_adj,
                                                           result.er_favoured, alpha)
    keys = ["method"] + axes
    columns = (keys + [v + "_" + c for v in VARIANTS for c in VARIANT_COLUMNS]
               + list(SHARED_COLUMNS)
               + [c for family in verdicts.FAMILIES for c in family.columns])
    string_columns = {"method"} | {c for family in verdicts.FAMILIES
                                   for c in (family.test_column, family.verdict_column)}
    int_columns = INT_COLUMNS | {v + "_" + c for v in VARIANTS for c in VARIANT_COLUMNS
                                 if c in INT_COLUMNS}
    arrays = []
    for column in columns:
        if column in axes:
            kind = None
        elif column in string_columns:
            kind = pa.string()
        elif column in int_columns:
            kind = pa.int64()
        else:
            kind = pa.float64()
        arrays.append(_array([r.get(column) for r in rows], kind))
    table = pa.table(arrays, names=columns)
    return table.replace_schema_metadata({
        b"grid_axes": json.dumps(axes).encode(), b"holm_m": json.dumps(holm_sizes).encode(),
        b"comparison": b"replicated" if replicated else b"not_replicated"})


def survival_table(df: pd.DataFrame, axes: list[str], phase: str) -> pa.Table:
    """Kaplan–Meier rows: method, grid cell, endpoint (``complete``/``any``), variant, epoch,
    at_risk, events, censored, survival, ci_low, ci_high (one row per distinct observed epoch of
    each cell × variant × endpoint)."""
    rows = []
    for key, cell in _cells(df, axes, phase):
        for endpoint in ENDPOINTS:
            for variant in VARIANTS:
                trials = cell[cell["variant"] == variant]
                if endpoint not in endpoints(trials):
                    continue  # not graded: no curve rather than one without events
                times, events = endpoint_times(trials, endpoint)
                if not times.size:
                    continue
                km = kaplan_meier(times, events)
                for j in range(km.epoch.size):
                    rows.append({**key, "endpoint": endpoint, "variant": variant,
                                 "epoch": int(km.epoch[j]), "at_risk": int(km.at_risk[j]),
                                 "events": int(km.events[j]), "censored": int(km.censored[j]),
                                 "survival": float(km.survival[j]),
                                 "ci_low": float(km.ci_low[j]), "ci_high": float(km.ci_high[j])})
    columns = ["method"] + axes + SURVIVAL_COLS
    types = {"method": pa.string(), "endpoint": pa.string(), "variant": pa.string(),
             "epoch": pa.int64(), "at_risk": pa.int64(), "events": pa.int64(),
             "censored": pa.int64(), "survival": pa.float64(), "ci_low": pa.float64(),
             "ci_high": pa.float64()}
    return pa.table([_array([r.get(c) for r in rows], types.get(c)) for c in columns],
                    names=columns)
