"""PNG plots (matplotlib, Agg backend): knn_top1 and collapse rate against each grid axis,
original vs ER per method with intervals (knn: ±std over seeds, collapse: Wilson 95%), and
er_entropy curves over epochs (mean over trials per objective); per method, Kaplan–Meier curves
of epochs to first collapse (``km_<method>.png``: one step curve per grid cell, original solid,
ER dashed, 95% log-log band shaded) from the ``survival`` table."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyarrow as pa  # noqa: E402


def plot_all(stability: pa.Table, epochs: pa.Table, axes: list[str], out_dir: str,
             trials: pa.Table | None = None, survival: pa.Table | None = None) -> list[str]:
    """Write the plots and return their paths."""
    paths = []
    if survival is not None and survival.num_rows:
        paths += plot_survival(survival, axes, out_dir)
    st = stability.to_pandas()
    for axis in axes:
        if axis not in st or st.empty:
            continue
        for method, sub in st.groupby("method"):
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
            for pre, lab in (("original_", "original"), ("er_", "ER")):
                g = sub.groupby(axis).mean(numeric_only=True).sort_index()
                x = [str(v) for v in g.index]
                a1.errorbar(x, g[pre + "knn_mean"], yerr=g[pre + "knn_std"].fillna(0),
                            label=lab, marker="o", capsize=3)
                lo = (g[pre + "collapse_rate"] - g[pre + "collapse_rate_lo"]).clip(lower=0)
                hi = (g[pre + "collapse_rate_hi"] - g[pre + "collapse_rate"]).clip(lower=0)
                a2.errorbar(x, g[pre + "collapse_rate"], yerr=[lo.fillna(0), hi.fillna(0)],
                            label=lab, marker="o", capsize=3)
            a1.set(xlabel=axis, ylabel="final knn_top1", title=f"{method}: knn_top1")
            a2.set(xlabel=axis, ylabel="collapse rate", title=f"{method}: collapse (Wilson 95%)",
                   ylim=(-0.05, 1.05))
            a1.legend(), a2.legend()
            p = os.path.join(out_dir, f"{method}_{axis}.png")
            fig.tight_layout(), fig.savefig(p, dpi=80), plt.close(fig)
            paths.append(p)
    cols = [c for c in ("trial_id", "epoch", "er_entropy") if c in epochs.column_names]
    if len(cols) == 3 and epochs.num_rows:
        ep = epochs.select(cols).to_pandas()
        fig, ax = plt.subplots(figsize=(7, 4))
        if trials is not None and {"trial_id", "objective", "phase"} <= set(trials.column_names):
            meta = trials.select(["trial_id", "objective", "phase"]).to_pandas()
            phase = "replicate" if (meta["phase"] == "replicate").any() else None
            if phase:
                meta = meta[meta["phase"] == phase]
            ep = ep.merge(meta, on="trial_id")
            for objective, sub in ep.groupby("objective"):
                curve = sub.groupby("epoch")["er_entropy"]
                mean, std = curve.mean(), curve.std().fillna(0)
                ax.plot(mean.index, mean.values, marker=".", label=objective,
                        linestyle="--" if str(objective).endswith("_er") else "-")
                ax.fill_between(mean.index, mean - std, mean + std, alpha=0.15)
        else:
            ep.groupby("epoch")["er_entropy"].mean().plot(ax=ax, label="mean over trials")
        ax.set(xlabel="epoch", ylabel="er_entropy (fixed eval set, κ_eval)",
               title="ER entropy over training (mean ± std over trials)")
        ax.legend(fontsize=8)
        p = os.path.join(out_dir, "er_entropy.png")
        fig.tight_layout(), fig.savefig(p, dpi=80), plt.close(fig)
        paths.append(p)
    return paths


def plot_survival(survival: pa.Table, axes: list[str], out_dir: str) -> list[str]:
    """One Kaplan–Meier PNG per method; returns the paths."""
    paths = []
    sv = survival.to_pandas()
    if "endpoint" in sv:  # schema 3: complete-collapse curves here (per-endpoint plots: plots' owner)
        sv = sv[sv["endpoint"] == "complete"]
    cell_cols = [a for a in axes if a in sv.columns]
    for method, sub in sv.groupby("method"):
        fig, ax = plt.subplots(figsize=(7, 4))
        groups = sub.groupby(cell_cols, dropna=False, sort=True) if cell_cols else [((), sub)]
        for i, (key, cell) in enumerate(groups):
            key = key if isinstance(key, tuple) else (key,)
            label = ",".join(f"{a}={v}" for a, v in zip(cell_cols, key)) or method
            for variant, style in (("original", "-"), ("er", "--")):
                c = cell[cell["variant"] == variant].sort_values("epoch")
                if c.empty:
                    continue
                x = [0] + list(c["epoch"])
                ax.step(x, [1.0] + list(c["survival"]), where="post", linestyle=style,
                        color=f"C{i % 10}", label=f"{label} {variant}")
                ax.fill_between(x, [1.0] + list(c["ci_low"]), [1.0] + list(c["ci_high"]),
                                step="post", color=f"C{i % 10}", alpha=0.08)
        ax.set(xlabel="epoch", ylabel="P(not collapsed)", ylim=(-0.05, 1.05),
               title=f"{method}: time to first collapse (Kaplan–Meier, 95% log-log)")
        ax.legend(fontsize=7)
        p = os.path.join(out_dir, f"km_{method}.png")
        fig.tight_layout(), fig.savefig(p, dpi=80), plt.close(fig)
        paths.append(p)
    return paths
