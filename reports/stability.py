"""The ``stability`` and ``survival`` tables: one row per method × grid cell (ER vs original), and
the Kaplan–Meier curve of every cell × variant.

Input: the trial records of one phase (replicate; search when there is none). Per variant:
``n_seeds`` / ``n_collapsed`` count trials that finished (errored trials are left out of counts
and kNN, but enter the survival analysis as censored at their last epoch, see survival.py);
collapse rate with Wilson 95% interval; ``median_time_to_collapse`` (epochs, Kaplan–Meier; null
when not reached); final knn_top1 mean/std over seeds; ``entropy_drift`` = mean over seeds of
final − first-epoch er_entropy.

ER − original: ``collapse_diff`` [Newcombe 95%] with Boschloo ``collapse_p``; log-rank U and
``logrank_p``; ``knn_diff`` [t 95%] with paired-t ``knn_p`` over the ``n_paired`` seeds present
in both. ``*_p_adj``: Holm within the family over the cells of this table; verdicts from
adjusted p at ``alpha`` (stats.py). ``collapse_min_detectable``: smallest collapse-rate difference
(k/n vs 0/n) these seeds can decide at alpha after Holm over this table's collapse family (null:
none can); ``knn_min_detectable``: mean knn difference detected with 80% power, in knn units
using the observed sd of the paired differences (er_tune/power.py).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from er_tune.power import collapse_test_name, knn_min_detectable_effect, min_detectable_collapse

from . import stats
from .survival import event_times, kaplan_meier, logrank_test
from .tables import _array, _py

VARIANTS = (("original", "original_"), ("er", "er_"))
VAR_COLS = ["n_seeds", "n_collapsed", "collapse_rate", "collapse_rate_lo", "collapse_rate_hi",
            "median_time_to_collapse", "knn_mean", "knn_std", "entropy_drift", "linear_mean",
            "linear_std"]
PAIR_COLS = ["n_paired", "knn_diff", "knn_diff_lo", "knn_diff_hi", "knn_test", "knn_p",
             "knn_p_adj", "knn_min_detectable", "collapse_diff", "collapse_diff_lo",
             "collapse_diff_hi", "collapse_test", "collapse_p", "collapse_p_adj",
             "collapse_min_detectable", "logrank_test", "logrank_u", "logrank_p", "logrank_p_adj",
             "alpha", "verdict", "time_verdict", "knn_verdict"]
STRING_COLS = {"method", "knn_test", "collapse_test", "logrank_test", "verdict", "time_verdict",
               "knn_verdict"}
SURVIVAL_COLS = ["variant", "epoch", "at_risk", "events", "censored", "survival", "ci_low",
                 "ci_high"]


def _cells(df: pd.DataFrame, axes: list[str], phase: str):
    sub = df[(df["phase"] == phase) & df["method"].notna() & df["variant"].notna()]
    sub = sub[~sub["status"].isin(["running", "pending"])]
    keys = ["method"] + axes
    for key, cell in sub.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        yield {k: _py(v) for k, v in zip(keys, key)}, cell


def _times(v: pd.DataFrame):
    return event_times(v["status"], v["collapse_epoch"].astype(object).where(
        v["collapse_epoch"].notna(), None), v["epochs_completed"])


def _opt(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _cell_row(row: dict, cell: pd.DataFrame) -> tuple[dict, dict]:
    """Fill the per-variant and raw-test columns; returns the row and the seed-indexed knn."""
    finals, counts, times = {}, {}, {}
    for var, pre in VARIANTS:
        v = cell[cell["variant"] == var]
        done = v[v["status"] != "errored"]
        n = len(done)
        k = int(done["status"].isin(["collapsed", "diverged"]).sum())
        lo, hi = stats.wilson(k, n)
        knn = done["final_knn_top1"].dropna().to_numpy(float)
        linear = (done["final_linear_top1"].dropna().to_numpy(float) if "final_linear_top1" in done
                  else np.empty(0))
        drift = (done["final_er_entropy"] - done["first_er_entropy"]).dropna().to_numpy(float)
        times[var] = _times(v)
        km = kaplan_meier(*times[var]) if times[var][0].size else None
        row.update({pre + "n_seeds": n, pre + "n_collapsed": k,
                    pre + "collapse_rate": k / n if n else None,
                    pre + "collapse_rate_lo": lo if n else None,
                    pre + "collapse_rate_hi": hi if n else None,
                    pre + "median_time_to_collapse": km.median if km else None,
                    pre + "knn_mean": float(knn.mean()) if knn.size else None,
                    pre + "knn_std": float(knn.std(ddof=1)) if knn.size > 1 else None,
                    pre + "entropy_drift": float(drift.mean()) if drift.size else None,
                    pre + "linear_mean": float(linear.mean()) if linear.size else None,
                    pre + "linear_std": float(linear.std(ddof=1)) if linear.size > 1 else None})
        counts[var] = (k, n)
        finals[var] = done.drop_duplicates("seed").set_index("seed")["final_knn_top1"].dropna()
    ct = stats.collapse_test(*counts["er"], *counts["original"])
    lr = logrank_test(*times["er"], *times["original"])
    a, b = finals["er"], finals["original"]
    common = a.index.intersection(b.index)
    kt = stats.knn_test((a[common] - b[common]).to_numpy(float))
    row.update({"n_paired": len(common), "knn_diff": _opt(kt.mean), "knn_diff_lo": _opt(kt.lo),
                "knn_diff_hi": _opt(kt.hi), "knn_test": stats.TEST_NAMES["knn"],
                "knn_p": _opt(kt.p), "collapse_diff": ct.diff, "collapse_diff_lo": ct.lo,
                "collapse_diff_hi": ct.hi,
                "collapse_test": collapse_test_name(counts["er"][1], counts["original"][1]),
                "collapse_p": ct.p,
                "logrank_test": stats.TEST_NAMES["time"] if lr is None else lr.method,
                "logrank_u": None if lr is None else lr.u,
                "logrank_p": None if lr is None else lr.p})
    return row, {"knn_sd": _opt(kt.sd)}


def stability_table(df: pd.DataFrame, axes: list[str], phase: str,
                    alpha: float = stats.ALPHA) -> pa.Table:
    """One row per method × grid cell of ``phase``, original and ER side by side."""
    alpha = stats.check_alpha(alpha)
    rows, extra = [], []
    for key, cell in _cells(df, axes, phase):
        row, ex = _cell_row(dict(key), cell)
        rows.append(row)
        extra.append(ex)
    fam = {"collapse": "collapse_p", "time": "logrank_p", "knn": "knn_p"}
    adj = {f: stats.holm([r[c] for r in rows]) for f, c in fam.items()}
    m = {f: sum(p is not None for p in adj[f]) for f in fam}
    for i, (r, ex) in enumerate(zip(rows, extra)):
        r["collapse_p_adj"], r["logrank_p_adj"], r["knn_p_adj"] = (
            adj["collapse"][i], adj["time"][i], adj["knn"][i])
        r["alpha"] = alpha
        r["verdict"] = stats.verdict("collapse", r["collapse_p_adj"], None if r[
            "collapse_diff"] is None else r["collapse_diff"] < 0, alpha)
        r["time_verdict"] = stats.verdict("time", r["logrank_p_adj"], None if r[
            "logrank_u"] is None else r["logrank_u"] < 0, alpha)
        r["knn_verdict"] = stats.verdict("knn", r["knn_p_adj"], None if r[
            "knn_diff"] is None else r["knn_diff"] > 0, alpha)
        det = (min_detectable_collapse(r["er_n_seeds"], r["original_n_seeds"], alpha,
                                       max(m["collapse"], 1))
               if r["er_n_seeds"] and r["original_n_seeds"] else None)
        r["collapse_min_detectable"] = None if det is None else det[0] / r["original_n_seeds"]
        eff = knn_min_detectable_effect(r["n_paired"], alpha, max(m["knn"], 1))
        r["knn_min_detectable"] = (None if eff is None or ex["knn_sd"] is None
                                   else eff * ex["knn_sd"])
    keys = ["method"] + axes
    cols = keys + [p + c for _, p in VARIANTS for c in VAR_COLS] + PAIR_COLS
    arrays = []
    for c in cols:
        if c in axes:
            typ = None
        elif c in STRING_COLS:
            typ = pa.string()
        elif c.endswith(("n_seeds", "n_collapsed")) or c == "n_paired":
            typ = pa.int64()
        else:
            typ = pa.float64()
        arrays.append(_array([r.get(c) for r in rows], typ))
    return pa.table(arrays, names=cols)


def survival_table(df: pd.DataFrame, axes: list[str], phase: str) -> pa.Table:
    """Kaplan–Meier rows: method, grid cell, variant, epoch, at_risk, events, censored, survival,
    ci_low, ci_high (one row per distinct observed epoch of each cell × variant)."""
    rows = []
    for key, cell in _cells(df, axes, phase):
        for var, _ in VARIANTS:
            t, e = _times(cell[cell["variant"] == var])
            if not t.size:
                continue
            km = kaplan_meier(t, e)
            for j in range(km.epoch.size):
                rows.append({**key, "variant": var, "epoch": int(km.epoch[j]),
                             "at_risk": int(km.at_risk[j]), "events": int(km.events[j]),
                             "censored": int(km.censored[j]), "survival": float(km.survival[j]),
                             "ci_low": float(km.ci_low[j]), "ci_high": float(km.ci_high[j])})
    cols = ["method"] + axes + SURVIVAL_COLS
    types = {"method": pa.string(), "variant": pa.string(), "epoch": pa.int64(),
             "at_risk": pa.int64(), "events": pa.int64(), "censored": pa.int64(),
             "survival": pa.float64(), "ci_low": pa.float64(), "ci_high": pa.float64()}
    return pa.table([_array([r.get(c) for r in rows], types.get(c)) for c in cols], names=cols)
