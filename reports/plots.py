"""PNG plots (matplotlib, Agg backend, ``DPI`` = 150).

- ``<method>_<axis>.png`` per grid axis: final knn_top1 (mean ± sd over seeds) and collapse rate
  (Wilson 95%) against the axis, original and ER side by side (dodged, so the error bars never
  overlap), with the kNN chance level 1/K of the dataset (and the majority-class rate of its test
  split where it is not 1/K, ``MAJORITY_RATE``).
- ``km_<method>.png``: Kaplan–Meier curves of epochs to first collapse from the ``survival`` table,
  one panel per endpoint when the table has an ``endpoint`` column (complete, any), one step curve
  per grid cell and variant (original solid, ER dashed, 95% log-log band shaded). Only cells where a
  collapse happened are drawn, the others are named in the panel; a method with no collapse at all
  gets no file (its curves would all be flat at 1).
- ``er_entropy.png``: one panel per method × grid cell (stability phase), er_entropy in nats over
  epochs, mean ± sd over the seeds of each variant.
"""
from __future__ import annotations

import math
import os
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402

from er_core.dataset_layout import NUM_CLASSES  # noqa: E402
from er_core.rules import REPLICATE  # noqa: E402

DPI = 150
DODGE = 0.12  # x offset of each variant from its category, in category widths
VARIANT_STYLE = {"original": ("original", "C0", "-", "o"), "er": ("ER", "C1", "--", "s")}
# Most frequent class of the full test split where the split is not balanced (SVHN: digit 1,
# 5,099 of 26,032; MNIST: digit 1, 1,135 of 10,000). The eval set is its first eval_size images.
MAJORITY_RATE = {"svhn": 5099 / 26032, "mnist": 1135 / 10000}
ENDPOINT_TITLE = {"complete": "complete collapse", "any": "any collapse (partial included)"}


def _save(fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_all(stability: pa.Table, epochs: pa.Table, axes: list[str], out_dir: str,
             trials: pa.Table | None = None, survival: pa.Table | None = None) -> list[str]:
    """Write the plots and return their paths."""
    paths = []
    if survival is not None and survival.num_rows:
        paths += plot_survival(survival, axes, out_dir)
    tr = trials.to_pandas() if trials is not None else None
    st = stability.to_pandas()
    for axis in axes:
        if axis not in st or st.empty:
            continue
        for method, sub in st.groupby("method"):
            paths.append(_plot_axis(method, sub, axis, _datasets(tr, method), out_dir))
    cols = [c for c in ("trial_id", "epoch", "er_entropy") if c in epochs.column_names]
    if len(cols) == 3 and epochs.num_rows:
        paths.append(plot_entropy(epochs, tr, axes, out_dir))
    return paths


def _datasets(trials: pd.DataFrame | None, method: str) -> list[str]:
    if trials is None or "dataset" not in trials:
        return []
    return sorted(str(d) for d in trials.loc[trials["method"] == method, "dataset"].dropna().unique())


def chance_levels(datasets: list[str]) -> list[tuple[float, str]]:
    """``[(level, label)]`` of the kNN chance lines for one dataset; none for several or unknown."""
    if len(datasets) != 1 or NUM_CLASSES.get(datasets[0]) is None:
        return []
    k = NUM_CLASSES[datasets[0]]
    lines = [(1.0 / k, f"chance 1/{k} = {1.0 / k:.3f}")]
    if datasets[0] in MAJORITY_RATE:
        rate = MAJORITY_RATE[datasets[0]]
        lines.append((rate, f"majority class ≈ {rate:.3f} (test split)"))
    return lines


def _plot_axis(method: str, sub: pd.DataFrame, axis: str, datasets: list[str], out_dir: str) -> str:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    g = sub.groupby(axis).mean(numeric_only=True).sort_index()
    x = np.arange(len(g.index))
    for i, (variant, pre) in enumerate((("original", "original_"), ("er", "er_"))):
        label, color, _, marker = VARIANT_STYLE[variant]
        xs = x + (i - 0.5) * 2 * DODGE
        a1.errorbar(xs, g[pre + "knn_mean"], yerr=g[pre + "knn_std"].fillna(0), label=label,
                    color=color, marker=marker, capsize=3, linestyle="none")
        lo = (g[pre + "collapse_rate"] - g[pre + "collapse_rate_lo"]).clip(lower=0)
        hi = (g[pre + "collapse_rate_hi"] - g[pre + "collapse_rate"]).clip(lower=0)
        a2.errorbar(xs, g[pre + "collapse_rate"], yerr=[lo.fillna(0), hi.fillna(0)], label=label,
                    color=color, marker=marker, capsize=3, linestyle="none")
    for level, text in chance_levels(datasets):
        style = ":" if text.startswith("majority") else "-."
        a1.axhline(level, color="0.4", linestyle=style, linewidth=1, label=text)
    ticks = [_value(v) for v in g.index]
    for ax in (a1, a2):
        ax.set_xticks(x, ticks)
        ax.set_xlim(-0.5, len(x) - 0.5)
    a1.set(xlabel=axis, ylabel="final knn_top1 (fraction)", ylim=(0, 1.02),
           title=f"{method}: knn_top1 (mean ± sd over seeds)")
    a2.set(xlabel=axis, ylabel="collapse rate (fraction of seeds)",
           title=f"{method}: collapse rate (Wilson 95%)", ylim=(-0.05, 1.05))
    a1.legend(fontsize=8), a2.legend(fontsize=8)
    return _save(fig, os.path.join(out_dir, f"{method}_{axis}.png"))


def _cells(df: pd.DataFrame, cell_cols: list[str]):
    """``(label, rows)`` per grid cell, sorted; the label names each axis value."""
    if not cell_cols:
        yield "", df
        return
    for key, cell in df.groupby(cell_cols, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        yield ",".join(f"{a}={_value(v)}" for a, v in zip(cell_cols, key)), cell


def _value(v) -> str:
    """An axis value as the study wrote it (32, not the 32.0 a null-holding column becomes)."""
    if isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return str(v)


def plot_survival(survival: pa.Table, axes: list[str], out_dir: str) -> list[str]:
    """One Kaplan–Meier PNG per method in which something collapsed; returns the paths."""
    paths = []
    sv = survival.to_pandas()
    cell_cols = [a for a in axes if a in sv.columns]
    has_endpoint = "endpoint" in sv.columns
    for method, sub in sv.groupby("method", observed=True):
        if not (sub["events"] > 0).any():
            continue
        endpoints = ([e for e in ("complete", "any") if e in set(sub["endpoint"])]
                     + sorted(set(sub["endpoint"].astype(str)) - {"complete", "any"})
                     if has_endpoint else [None])
        fig, panels = plt.subplots(1, len(endpoints), figsize=(7 * len(endpoints), 4.5),
                                   squeeze=False)
        for ax, endpoint in zip(panels[0], endpoints):
            rows = sub if endpoint is None else sub[sub["endpoint"] == endpoint]
            _km_panel(ax, rows, cell_cols)
            what = ("first collapse" if endpoint is None
                    else ENDPOINT_TITLE.get(endpoint, f"{endpoint} collapse"))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set(xlabel="epoch", ylabel="P(no collapse yet)", ylim=(-0.05, 1.05),
                   title=f"{method}: epochs to {what} (Kaplan–Meier, 95% log-log)")
        paths.append(_save(fig, os.path.join(out_dir, f"km_{method}.png")))
    return paths


def _km_panel(ax, rows: pd.DataFrame, cell_cols: list[str]) -> None:
    quiet = []
    for i, (label, cell) in enumerate(_cells(rows, cell_cols)):
        if not (cell["events"] > 0).any():
            quiet.append(label or "all trials")
            continue
        for variant in ("original", "er"):
            c = cell[cell["variant"] == variant].sort_values("epoch")
            if c.empty:
                continue
            name, _, style, _ = VARIANT_STYLE[variant]
            x = [0] + list(c["epoch"])
            ax.step(x, [1.0] + list(c["survival"]), where="post", linestyle=style,
                    color=f"C{i % 10}", label=f"{label} {name}".strip())
            ax.fill_between(x, [1.0] + list(c["ci_low"]), [1.0] + list(c["ci_high"]),
                            step="post", color=f"C{i % 10}", alpha=0.08)
    if quiet:
        text = "no collapse (S = 1 throughout): " + "; ".join(quiet)
        ax.text(0.02, 0.03, _wrap(text, 70), transform=ax.transAxes, fontsize=7, va="bottom",
                color="0.3", bbox={"facecolor": "white", "edgecolor": "0.8", "alpha": 0.9})
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width))


def plot_entropy(epochs: pa.Table, trials: pd.DataFrame | None, axes: list[str],
                 out_dir: str) -> str:
    """``er_entropy.png``: one panel per method × grid cell, mean ± sd over seeds per variant."""
    ep = epochs.select(["trial_id", "phase", "epoch", "er_entropy"] if "phase" in
                       epochs.column_names else ["trial_id", "epoch", "er_entropy"]).to_pandas()
    panels = []
    if trials is not None and {"trial_id", "method", "variant", "phase"} <= set(trials.columns):
        cell_cols = [a for a in axes if a in trials.columns]
        meta = trials[["trial_id", "phase", "method", "variant"] + cell_cols]
        on = ["trial_id", "phase"] if "phase" in ep.columns else ["trial_id"]
        merged = ep.merge(meta.astype({c: object for c in on}), on=on,
                          suffixes=("_epoch", ""))
        if (merged["phase"] == REPLICATE).any():  # the phase the stability table reads
            merged = merged[merged["phase"] == REPLICATE]
        for method, sub in merged.groupby("method", sort=True):
            for label, cell in _cells(sub, cell_cols):
                panels.append((f"{method} {label}".strip(), cell))
    if not panels:
        panels = [("all trials", ep.assign(variant=None))]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.4 * nrows), squeeze=False)
    for ax, (title, cell) in zip(grid.flat, panels):
        order = {"original": 0, "er": 1}
        groups = sorted(cell.groupby("variant", dropna=False, sort=False),
                        key=lambda kv: order.get(kv[0], 2))
        for variant, rows in groups:
            name, color, style, _ = VARIANT_STYLE.get(variant, ("mean", "C2", "-", "."))
            curve = rows.groupby("epoch")["er_entropy"]
            mean, sd, n = curve.mean(), curve.std().fillna(0), curve.size()
            ax.plot(mean.index, mean.values, marker=".", color=color, linestyle=style,
                    label=f"{name} (n={n.max()})")
            ax.fill_between(mean.index, mean - sd, mean + sd, color=color, alpha=0.15)
        ax.set_title(title, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("er_entropy (nats)")
        ax.legend(fontsize=7)
    for ax in list(grid.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(_wrap("ER entropy Ĥ on the fixed eval set (leave-one-out vMF KDE, κ_eval), "
                       "mean ± sd over seeds", 55 * ncols), fontsize=9)
    return _save(fig, os.path.join(out_dir, "er_entropy.png"))
