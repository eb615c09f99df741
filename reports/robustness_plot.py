"""``robustness_<method>.png``: accuracy against each stressed axis, original and ER.

One panel per metric (rows: ``linear_top1``, ``knn_top1``) and stress (columns: each ``axis`` value
of the robustness table, e.g. ``ema``, ``batch_size``, ``ema,batch_size``). On a one-axis panel the
x axis is that axis's values (the other axes at the reference); a stress of several axes at once
is drawn against its cells' labels. Each variant is a line through the reference cell and the
stressed cells, with the t 95% interval of its mean (over the seeds in all four arms of each row);
the reference is marked (dotted line, star). Chance (1/K, and the majority class where the test
split is unbalanced) is drawn from the dataset (:func:`reports.plots.chance_levels`); the untrained
network where the trials table carries ``untrained_<metric>`` (mean over trials), else the panel
says it was not recorded (benchmarks/study_baselines.py measures it).
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from .plots import VARIANT_STYLE, _datasets, _save, chance_levels  # noqa: E402
from .robustness import METRICS  # noqa: E402


def _label(row: dict, axes: list[str]) -> str:
    return ",".join(f"{a}={_num(row[a])}" for a in axes)


def _num(v) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _points(rows: list[dict], stress: str) -> tuple[list, list[str], int]:
    """(x keys, tick labels, index of the reference) of one panel."""
    axes = stress.split(",")
    reference = dict(part.split("=", 1) for part in rows[0]["reference"].split(",") if part)
    if len(axes) == 1:
        values = sorted({float(r[axes[0]]) if isinstance(r[axes[0]], (int, float)) else r[axes[0]]
                         for r in rows} | {_cast(reference[axes[0]])}, key=_order)
        return values, [_num(v) for v in values], values.index(_cast(reference[axes[0]]))
    labels = ["reference"] + [_label(r, axes) for r in rows]
    return labels, labels, 0


def _cast(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _order(v):
    return (0, v, "") if isinstance(v, float) else (1, 0.0, str(v))


def plot_robustness(table: pa.Table, out_dir: str, trials: pa.Table | None = None) -> list[str]:
    """Write one PNG per method of the robustness table; returns the paths."""
    frame = trials.to_pandas() if trials is not None else None
    rows = table.to_pylist()
    paths = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        stresses = list(dict.fromkeys(r["axis"] for r in mine))
        metrics = [m for m in METRICS if any(r["metric"] == m and r["n_seeds"] for r in mine)]
        if not metrics:
            continue
        fig, grid = plt.subplots(len(metrics), len(stresses), squeeze=False,
                                 figsize=(4.8 * len(stresses), 3.8 * len(metrics)))
        for i, metric in enumerate(metrics):
            for j, stress in enumerate(stresses):
                panel = [r for r in mine if r["metric"] == metric and r["axis"] == stress]
                _panel(grid[i][j], panel, stress, metric, _datasets(frame, method), frame, method)
        fig.suptitle(f"{method}: accuracy at the reference and under stress (mean, t 95%)",
                     fontsize=10)
        paths.append(_save(fig, os.path.join(out_dir, f"robustness_{method}.png")))
    return paths


def _panel(ax, rows: list[dict], stress: str, metric: str, datasets, frame, method) -> None:
    keys, ticks, at_ref = _points(rows, stress)
    axes = stress.split(",")
    for k, variant in enumerate(("original", "er")):
        name, color, style, marker = VARIANT_STYLE[variant]
        mean, lo, hi = [np.nan] * len(keys), [np.nan] * len(keys), [np.nan] * len(keys)
        ref = max(rows, key=lambda r: r["n_seeds"])
        for index, where, row in [(at_ref, "ref", ref)] + [
                (keys.index(_key(r, axes)), "stress", r) for r in rows]:
            if row[f"{variant}_{where}_mean"] is not None:
                mean[index] = row[f"{variant}_{where}_mean"]
                lo[index] = row[f"{variant}_{where}_lo"] if row[f"{variant}_{where}_lo"] is not None else mean[index]
                hi[index] = row[f"{variant}_{where}_hi"] if row[f"{variant}_{where}_hi"] is not None else mean[index]
        x = np.arange(len(keys)) + (k - 0.5) * 0.08
        yerr = [np.subtract(mean, lo), np.subtract(hi, mean)]
        ax.errorbar(x, mean, yerr=yerr, color=color, linestyle=style, marker=marker, capsize=3,
                    label=name)
    ax.axvline(at_ref, color="0.5", linestyle=":", linewidth=1)
    ax.plot([at_ref], [ax.get_ylim()[1]], marker="*", color="0.3", markersize=10, clip_on=False,
            linestyle="none", label="reference")
    for level, text in chance_levels(datasets):
        ax.axhline(level, color="0.4", linestyle="-." if text.startswith("chance") else ":",
                   linewidth=1, label=text)
    untrained = f"untrained_{metric}"
    if frame is not None and untrained in frame and frame.loc[frame["method"] == method, untrained].notna().any():
        level = float(frame.loc[frame["method"] == method, untrained].mean())
        ax.axhline(level, color="C2", linestyle="--", linewidth=1, label=f"untrained network {level:.3f}")
    else:
        ax.text(0.02, 0.97, "untrained network: not recorded by these trials", fontsize=7,
                color="0.35", transform=ax.transAxes, va="top")
    ax.set_xticks(range(len(keys)), ticks)
    ax.set(xlabel=stress, ylabel=f"final {metric} (fraction)", title=f"{metric} vs {stress}")
    ax.legend(fontsize=7, loc="best")


def _key(row: dict, axes: list[str]):
    if len(axes) == 1:
        value = row[axes[0]]
        return float(value) if isinstance(value, (int, float)) else value
    return _label(row, axes)
