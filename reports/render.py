"""Terminal (≤ 100 columns) and markdown renderings of the stability table."""
from __future__ import annotations

import math

import pyarrow as pa

SHORT = {"er_more_stable": "ER", "original_more_stable": "orig", "no_difference": "=",
         "er_better": "ER", "original_better": "orig"}


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _interval(r, pre: str, compact: bool = False) -> str:
    if r.get(pre + "collapse_rate") is None:
        return "-"
    lo, hi = r[pre + "collapse_rate_lo"], r[pre + "collapse_rate_hi"]
    frac = f"{r[pre + 'n_collapsed']}/{r[pre + 'n_seeds']}"
    if compact:
        return f"{frac} {lo:.2f}-{hi:.2f}"
    return f"{frac} [{lo:.2f},{hi:.2f}]"


def stability_rows(table: pa.Table, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and string cells: cell, collapse (orig/ER), knn mean±std, Δknn [CI], verdicts."""
    meta = {"method", "verdict", "knn_verdict", "n_paired"}
    axes = [c for c in table.column_names if c not in meta and not c.startswith(
        ("original_", "er_", "knn_diff", "collapse_diff"))]
    head = ["method/cell", "collapse orig", "collapse ER", "knn orig", "knn ER", "Δknn [95%]",
            "verdict"]
    out = []
    for r in table.to_pylist():
        cell = ",".join(f"{a}={_fmt(r[a])}" for a in axes)
        knn = ["-" if r[p + "knn_mean"] is None else
               f"{r[p + 'knn_mean']:.3f}±{_fmt(r[p + 'knn_std'])}" for p in ("original_", "er_")]
        diff = "-" if r["knn_diff"] is None else (
            f"{r['knn_diff']:+.3f} [{r['knn_diff_lo']:+.3f},{r['knn_diff_hi']:+.3f}]")
        verdict = (f"stab:{SHORT[r['verdict']]} knn:{SHORT[r['knn_verdict']]}" if compact
                   else f"{r['verdict']} / {r['knn_verdict']}")
        out.append([f"{r['method']} {cell}".strip(), _interval(r, "original_", compact),
                    _interval(r, "er_", compact), *knn, diff, verdict])
    return head, out


def terminal(table: pa.Table, width: int = 100) -> str:
    """Plain-text table: each method/cell on its own line, its figures on the next (≤ width).

    Verdicts are abbreviated: ``stab`` (collapse, Wilson intervals) and ``knn`` (bootstrap
    interval) each ``ER`` / ``orig`` / ``=`` (no difference).
    """
    head, rows = stability_rows(table, compact=True)
    if not rows:
        return "(stability table is empty)\n"
    body = [r[1:] for r in rows]
    widths = [max(len(x[i]) for x in [head[1:]] + body) for i in range(len(head) - 1)]
    def line(cells):
        return ("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths))).rstrip()[:width]
    lines = [head[0], line(head[1:]), "-" * min(width, len(line(head[1:])))]
    for r in rows:
        lines += [r[0][:width], line(r[1:])]
    return "\n".join(lines) + "\n"


def markdown(table: pa.Table) -> str:
    """GitHub markdown table of the stability rows."""
    head, rows = stability_rows(table)
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(md) + "\n"


def summary(name: str, table: pa.Table, limit: int = 20) -> str:
    """Short dump of any table (for ``er-tune show``)."""
    df = table.slice(0, limit).to_pandas()
    import pandas as pd
    with pd.option_context("display.width", 100, "display.max_columns", 12):
        return f"== {name} ({table.num_rows} rows) ==\n{df.to_string(max_colwidth=24)}\n"
