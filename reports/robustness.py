"""The ``robustness`` table: accuracy lost from a reference cell to each stressed cell, ER against the
original (the layout of the ER paper's Table 2: accuracy at the usual setting, then the drop at a
smaller batch or a lower EMA coefficient).

One row per (method, stressed cell, metric), metric in :data:`METRICS` (``linear_top1`` first: the
headline, as in the paper). The study's ``reference:`` (one value per grid axis) names the reference
cell; a method whose cells drop an axis (no teacher: no ``ema``) has a reference without it; every
other cell of the method is a stressed cell, ``axis`` naming the axes that differ.

Which trials count: those of the stability phase that ran to their own end (completed, collapsed,
diverged: the statuses :data:`er_core.rules.STOP_REASONS` names) with a finite final value of the metric. A
trial that collapsed keeps the accuracy it ended with (the collapse *is* the accuracy it lost);
errored and early-stopped trials do not count. A row uses the seeds with such a trial in all four
arms (original and ER, at the reference and at the stressed cell): means, drops and delta_drop are
over those ``n_seeds`` seeds, so ``delta_drop = original_drop − er_drop`` exactly; ``n_excluded``
counts the trials left out because their seed is missing from another arm.

The test (``seed_contrast_t``): the four arms are independent sets of trials, so the per-seed
contrasts d_s = (o_ref,s − o_stress,s) − (e_ref,s − e_stress,s) are independent draws with mean
delta_drop and variance σ²_o,ref + σ²_o,stress + σ²_e,ref + σ²_e,stress, whatever the four
variances are; a one-sample t on them (df n − 1; :func:`reports.stats.knn_test`) is exact for
normal arms of any variances (Scheffé's 1943 pairing solution of the Behrens–Fisher problem; a
Welch-Satterthwaite test of the four means rejects 6.6% of equal drops at 3 seeds when one arm's
variance dominates). Arms run with the same seed share the initialisation and data order, so the
pairing also removes what they share. Where every contrast is equal (sd 0) the exact sign-flip p
2/2^n is used (``sign_flip_exact``). Calibration: tests/test_stats_calibration.py,
benchmarks/verdict_calibration.py. Intervals: t 95% of each arm's mean, of each variant's paired
drop, of delta_drop. Holm over the rows of one metric; ``min_detectable``: the delta_drop found with
80% power at the observed contrast sd (:func:`er_core.power.knn_min_detectable_effect` × sd).
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from er_core.power import knn_min_detectable_effect
from er_core.rules import STOP_REASONS

from . import stats
from .tables import _array, _py

METRICS = {"linear_top1": "final_linear_top1", "knn_top1": "final_knn_top1"}  # headline first
LABELS = ("er_more_robust", "original_more_robust")  # ER / the original lost less accuracy
VERDICTS = LABELS + (stats.NO_DIFFERENCE, stats.UNTESTED, stats.NOT_REPLICATED)
TESTS = ("seed_contrast_t", "sign_flip_exact")
ARMS = (("original", "ref"), ("original", "stress"), ("er", "ref"), ("er", "stress"))
ARM_COLUMNS = tuple(f"{variant}_{where}_{stat}" for variant, where in ARMS
                    for stat in ("mean", "lo", "hi"))
DROP_COLUMNS = tuple(f"{name}{suffix}" for name in ("original_drop", "er_drop", "delta_drop")
                     for suffix in ("", "_lo", "_hi"))
NO_REFERENCE = "no robustness table: no reference: in the study (e.g. {ema: 0.99, batch_size: 256})"


_WHERE = {"ref": "at the reference cell", "stress": "at the stressed cell"}
_VARIANT = {"original": "original", "er": "ER"}
COUNTED = ("finished trials (completed, collapsed, diverged) with a finite final value, over the "
           "seeds present in all four arms; a collapsed trial keeps the accuracy it ended with, "
           "errored and early-stopped trials do not count")
# column -> (unit, description): the Parquet field metadata (reports/columns.py reads it)
DESCRIPTIONS = {
    "method": ("", "SSL method (simclr, byol, dino, swav, deepcluster)"),
    "axis": ("", "grid axes whose value differs from the reference (the stress), comma-separated"),
    "reference": ("", "the method's reference cell (axis=value, comma-separated; axes it does not "
                      "read left out)"),
    "metric": ("", "accuracy compared: linear_top1 (linear probe, the headline) or knn_top1"),
    "n_seeds": ("seeds", "seeds with a counted trial in all four arms (original/ER at the "
                         "reference and at the stressed cell)"),
    "n_excluded": ("trials", "counted trials left out because their seed is missing from another "
                             "arm"),
    **{f"{v}_{w}_mean": ("1", f"{_VARIANT[v]}: mean final accuracy {_WHERE[w]} over the n_seeds "
                              f"seeds (fraction; {COUNTED})") for v, w in ARMS},
    **{f"{v}_{w}_lo": ("1", f"{v}_{w}_mean, t 95% lower bound") for v, w in ARMS},
    **{f"{v}_{w}_hi": ("1", f"{v}_{w}_mean, t 95% upper bound") for v, w in ARMS},
    **{f"{v}_drop": ("1", f"{_VARIANT[v]}: accuracy at the reference − at the stressed cell, mean "
                          "over seeds (positive = accuracy lost)") for v in ("original", "er")},
    **{f"{v}_drop_lo": ("1", f"{v}_drop, paired t 95% lower bound") for v in ("original", "er")},
    **{f"{v}_drop_hi": ("1", f"{v}_drop, paired t 95% upper bound") for v in ("original", "er")},
    "delta_drop": ("1", "original_drop − er_drop (positive: ER lost less accuracy)"),
    "delta_drop_lo": ("1", "delta_drop, t 95% lower bound over the per-seed contrasts"),
    "delta_drop_hi": ("1", "delta_drop, t 95% upper bound over the per-seed contrasts"),
    "test": ("", "test behind p: seed_contrast_t (one-sample t of the per-seed contrasts "
                 "(o_ref − o_stress) − (e_ref − e_stress)) or sign_flip_exact (every contrast "
                 "equal)"),
    "p": ("1", "two-sided p-value of delta_drop = 0"),
    "p_adj": ("1", "p, Holm-adjusted over the rows of the same metric"),
    "alpha": ("1", "level at which p_adj gives a verdict"),
    "min_detectable": ("1", "|delta_drop| found with 80% power at the observed contrast sd "
                            "(null: no spread observed or fewer than 2 seeds)"),
    "verdict": ("", "er_more_robust (ER lost less), original_more_robust, no_difference, "
                    "untested (fewer than 2 seeds in all four arms), not_replicated (no replicate "
                    "phase)"),
}


class ReferenceProblem(ValueError):
    """A reference that does not name one of the experiment's cells."""


def read_reference(experiment: str) -> dict | None:
    """The ``reference:`` of the experiment's ``study.yaml`` (None without one or without the file)."""
    path = os.path.join(experiment, "study.yaml")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}
    reference = document.get("reference") if isinstance(document, dict) else None
    return dict(reference) if isinstance(reference, dict) else None


def parse_reference(text: str) -> dict:
    """``ema=0.99,batch_size=256`` -> ``{"ema": 0.99, "batch_size": 256}`` (values read as YAML
    scalars); raises :class:`ReferenceProblem` on anything else."""
    reference = {}
    for part in text.split(","):
        axis, sep, value = part.partition("=")
        if not sep or not axis.strip() or not value.strip():
            raise ReferenceProblem(f"{part!r} is not axis=value; allowed: AXIS=VALUE[,AXIS=VALUE...], "
                                   "e.g. ema=0.99,batch_size=256")
        reference[axis.strip()] = yaml.safe_load(value.strip())
    return reference


def _same(a, b) -> bool:
    if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return str(a) == str(b)


def check_reference(reference: dict, axes: list[str], frame: pd.DataFrame) -> None:
    """Raise :class:`ReferenceProblem` unless ``reference`` names one value of every grid axis."""
    unknown = [axis for axis in reference if axis not in axes]
    missing = [axis for axis in axes if axis not in reference]
    if unknown or missing:
        raise ReferenceProblem(f"reference: {'unknown axis ' + unknown[0] if unknown else 'missing axis ' + missing[0]}"
                               f"; allowed: one value per grid axis ({', '.join(axes) or 'none'})")
    for axis, value in reference.items():
        values = [_py(v) for v in frame[axis].dropna().unique()] if axis in frame else []
        if not any(_same(value, v) for v in values):
            raise ReferenceProblem(f"reference.{axis}: {value!r} is not a value of the experiment's "
                                   f"{axis}; allowed: {', '.join(map(repr, sorted(values)))}")


def _arm(cell: pd.DataFrame, variant: str, column: str) -> pd.Series:
    """Final ``column`` by seed over the finished trials of ``variant`` with a finite value."""
    rows = cell[(cell["variant"] == variant) & cell["status"].isin(STOP_REASONS)]
    if column not in rows:
        return pd.Series(dtype=float)
    values = pd.to_numeric(rows[column], errors="coerce")
    keep = np.isfinite(values.to_numpy(float)) & rows["seed"].notna().to_numpy()
    return pd.Series(values[keep].to_numpy(float), index=rows.loc[keep, "seed"].astype(int)
                     ).groupby(level=0).first()


def _t(values: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """Mean and t 95% interval (None where undefined)."""
    if not values.size:
        return None, None, None
    result = stats.knn_test(values)
    return tuple(None if not np.isfinite(x) else float(x)
                 for x in (result.mean, result.lo, result.hi))


def drop_test(original_ref, original_stress, er_ref, er_stress) -> stats.KnnTest:
    """The seed-contrast t of delta_drop = 0 along the last axis (vectorised: arrays [..., n], one
    seed per position): :func:`reports.stats.knn_test` of (o_ref − o_stress) − (e_ref − e_stress)."""
    contrast = (np.asarray(original_ref, float) - np.asarray(original_stress, float)
                - np.asarray(er_ref, float) + np.asarray(er_stress, float))
    return stats.knn_test(contrast)


def _row(arms: dict) -> dict:
    seeds = sorted(set.intersection(*(set(series.index) for series in arms.values())))
    row = {"n_seeds": len(seeds),
           "n_excluded": sum(len(series) for series in arms.values()) - 4 * len(seeds)}
    values = {key: series.loc[seeds].to_numpy(float) for key, series in arms.items()}
    for (variant, where), x in values.items():
        row.update(zip((f"{variant}_{where}_{s}" for s in ("mean", "lo", "hi")), _t(x)))
    for variant in ("original", "er"):
        drop = values[(variant, "ref")] - values[(variant, "stress")]
        row.update(zip((f"{variant}_drop{s}" for s in ("", "_lo", "_hi")), _t(drop)))
    result = drop_test(*(values[arm] for arm in ARMS)) if seeds else None
    row.update(zip(("delta_drop", "delta_drop_lo", "delta_drop_hi"),
                   _t(values[ARMS[0]] - values[ARMS[1]] - values[ARMS[2]] + values[ARMS[3]])))
    sign_flip = bool(result is not None and np.any(result.sign_flip))
    row["test"] = "sign_flip_exact" if sign_flip else "seed_contrast_t"
    p = None if result is None or not np.isfinite(result.p) else float(result.p)
    row["p"] = p
    row["_sd"] = None if sign_flip or result is None or not np.isfinite(result.sd) else float(result.sd)
    row["_er_favoured"] = None if p is None else row["delta_drop"] > 0
    return row


def robustness_table(frame: pd.DataFrame, axes: list[str], reference: dict, phase: str,
                     alpha: float = stats.ALPHA, replicated: bool = True) -> pa.Table:
    """One row per method × stressed cell × metric (see the module docstring)."""
    alpha = stats.check_alpha(alpha)
    check_reference(reference, axes, frame)
    sub = frame[(frame["phase"] == phase) & frame["method"].notna() & frame["variant"].notna()]
    rows = []
    for method, trials in sub.groupby("method", sort=True):
        own = [a for a in axes if a in trials and trials[a].notna().any()]
        ref = {a: reference[a] for a in own}
        at_ref = np.ones(len(trials), bool)
        for a in own:
            at_ref &= trials[a].map(lambda v, r=ref[a]: v is not None and _same(v, r)).to_numpy()
        ref_trials = trials[at_ref]
        others = trials[~at_ref]
        cells = others.groupby(own, sort=True, dropna=False) if own else []
        for key, cell in cells:
            key = key if isinstance(key, tuple) else (key,)
            stressed = dict(zip(own, (_py(v) for v in key)))
            differ = [a for a in reference if a in own and not _same(stressed[a], ref[a])]
            for metric, column in METRICS.items():
                arms = {(variant, where): _arm(ref_trials if where == "ref" else cell, variant, column)
                        for variant, where in ARMS}
                row = {"method": method, **{a: stressed.get(a) for a in axes},
                       "axis": ",".join(differ),
                       "reference": ",".join(f"{a}={_text(ref[a])}" for a in reference if a in ref),
                       "metric": metric, **_row(arms)}
                rows.append(row)
    order = list(reference)  # one-axis stresses first, in the reference's (the study's) axis order
    rows.sort(key=lambda r: (r["method"], len(r["axis"].split(",")),
                             [order.index(a) for a in r["axis"].split(",")],
                             list(METRICS).index(r["metric"])))
    holm_m = {}
    for metric in METRICS:
        mine = [r for r in rows if r["metric"] == metric]
        adjusted = stats.holm([r["p"] if replicated else None for r in mine])
        m = sum(p is not None for p in adjusted)
        holm_m[metric] = m
        for row, p_adj in zip(mine, adjusted):
            row["p_adj"] = p_adj
            row["alpha"] = alpha
            effect = knn_min_detectable_effect(row["n_seeds"], alpha, max(m, 1))
            row["min_detectable"] = (effect * row["_sd"] if replicated and effect is not None
                                     and row["_sd"] else None)
            row["verdict"] = (stats.verdict(LABELS, p_adj, row["_er_favoured"], alpha)
                              if replicated else stats.NOT_REPLICATED)
    columns = (["method"] + axes + ["axis", "reference", "metric", "n_seeds", "n_excluded"]
               + list(ARM_COLUMNS) + list(DROP_COLUMNS)
               + ["test", "p", "p_adj", "alpha", "min_detectable", "verdict"])
    strings = {"method", "axis", "reference", "metric", "test", "verdict"}
    arrays = [_array([r.get(c) for r in rows], None if c in axes else pa.string() if c in strings
                     else pa.int64() if c in ("n_seeds", "n_excluded") else pa.float64())
              for c in columns]
    table = pa.table(arrays, names=columns)
    return table.replace_schema_metadata({
        b"grid_axes": json.dumps(axes).encode(), b"holm_m": json.dumps(holm_m).encode(),
        b"reference": json.dumps(reference, default=str).encode(),
        b"comparison": b"replicated" if replicated else b"not_replicated"})


def _text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
