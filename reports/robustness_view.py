"""Terminal and markdown renderings of the robustness table, in the layout of the ER paper's Table 2.

One block per metric (``linear_top1`` first, the headline): per method two lines, original and ER,
with the accuracy at the reference (mean ± t 95% half-width over the seeds in all four arms) and the
drop to each stressed cell (reference − stressed: + = accuracy lost, ± its paired t 95% half-width);
then a verdict line per method: ``ER`` (er_more_robust: ER's drop is smaller), ``orig``
(original_more_robust), ``=`` with what the seeds could have detected (``=|Δ|≥0.031``: the
delta_drop found with 80% power at the observed sd), ``n/a`` (untested), ``n/r`` (no replicate
phase), each with its Holm-adjusted p. A column is a stress: the axes that differ from the reference
and their values (``Δema=0.8``), shared by methods whose cells drop an axis the reference names.
"""
from __future__ import annotations

import json
import textwrap

import pyarrow as pa

from .stats import NO_DIFFERENCE, NOT_REPLICATED, UNTESTED
from .robustness import METRICS, NO_REFERENCE

MARK = {"er_more_robust": "ER", "original_more_robust": "orig", NO_DIFFERENCE: "=",
        UNTESTED: "n/a", NOT_REPLICATED: "n/r"}
VARIANT_NAME = {"original": "", "er": " + ER"}


def _axes(table: pa.Table) -> list[str]:
    return list(json.loads((table.schema.metadata or {}).get(b"grid_axes", b"[]")))


def _value(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def stress_label(row: dict) -> str:
    """``Δema=0.8``: the stressed axes and their values."""
    return "Δ" + ",".join(f"{axis}={_value(row[axis])}" for axis in row["axis"].split(","))


def _pm(mean, lo, hi, sign: bool = False) -> str:
    if mean is None:
        return "-"
    text = f"{mean:+.3f}" if sign else f"{mean:.3f}"
    return text if hi is None or lo is None else f"{text}±{(hi - lo) / 2:.3f}"


def _p(value) -> str:
    return "" if value is None else (" p<.001" if value < 0.001 else f" p={value:.3f}")


def verdict_text(row: dict) -> str:
    """``ER p=0.004``, ``=|Δ|≥0.031 p=0.41``, ``n/a``."""
    mark = MARK.get(row["verdict"], row["verdict"])
    if row["verdict"] == NO_DIFFERENCE:
        detect = row.get("min_detectable")
        mark += f"|Δ|≥{detect:.3f}" if detect is not None else ""
    return mark + _p(row.get("p_adj"))


def metric_rows(table: pa.Table, metric: str) -> tuple[list[str], list[list[str]]]:
    """Header and string rows of one metric's block: per method original, ER and verdict."""
    rows = [r for r in table.to_pylist() if r["metric"] == metric]
    stresses = list(dict.fromkeys(stress_label(r) for r in rows))
    head = ["model", "acc@ref"] + stresses
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = {stress_label(r): r for r in rows if r["method"] == method}
        best = max(mine.values(), key=lambda r: r["n_seeds"])
        for variant in ("original", "er"):
            line = [method + VARIANT_NAME[variant],
                    _pm(best[f"{variant}_ref_mean"], best[f"{variant}_ref_lo"], best[f"{variant}_ref_hi"])]
            for stress in stresses:
                r = mine.get(stress)
                line.append("" if r is None else _pm(r[f"{variant}_drop"], r[f"{variant}_drop_lo"],
                                                      r[f"{variant}_drop_hi"], sign=True))
            out.append(line)
        out.append(["  verdict", f"n={best['n_seeds']}"]
                   + [verdict_text(mine[s]) if s in mine else "" for s in stresses])
    return head, out


def _legend(table: pa.Table, width: int) -> list[str]:
    meta = table.schema.metadata or {}
    holm = json.loads(meta.get(b"holm_m", b"{}"))
    alpha = next((r["alpha"] for r in table.to_pylist() if r.get("alpha") is not None), 0.05)
    reference = json.loads(meta.get(b"reference", b"{}"))
    text = ("acc@ref: mean ± t 95% half-width at the reference ("
            + ", ".join(f"{axis}={_value(value)}" for axis, value in reference.items())
            + "); Δ: reference − stressed (+ = accuracy "
            "lost), paired t 95%, over the seeds in all four arms; collapsed trials keep the accuracy "
            "they ended with, errored ones do not count. verdict: seed-contrast t on delta_drop = "
            "original drop − ER drop, Holm over the rows of each metric ("
            + ", ".join(f"{k}: m = {v}" for k, v in holm.items())
            + f"), p on the verdict line = Holm-adjusted p, verdict when <= {alpha:g}: ER = ER lost less (er_more_robust), orig = the original lost "
              "less; '=|Δ|≥d': d is the delta_drop found with 80% power at the observed sd; n/a: "
              "fewer than 2 seeds in all four arms.")
    if meta.get(b"comparison") == NOT_REPLICATED.encode():
        text = ("NOT a replicated comparison (no replicate phase): drops are descriptive, no "
                "verdicts (n/r). ") + text
    return textwrap.wrap(text, width)


def terminal(table: pa.Table | None, width: int = 100) -> str:
    """The robustness block printed after the stability table (one line without a reference)."""
    if table is None:
        return NO_REFERENCE + "\n"
    if table.num_rows == 0:
        return "robustness: no stressed cell with trials (every method's trials are at its reference)\n"
    lines = ["robustness: accuracy at the reference and lost at each stressed cell, ER against the "
             "original"[:width]]
    for metric in METRICS:
        head, rows = metric_rows(table, metric)
        if not rows:
            continue
        if all(cell in ("-", "") for row in rows if not row[0].startswith("  ") for cell in row[1:]):
            lines.append(f"{metric}: no trial reported it")
            continue
        widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
        lines.append(f"{metric}" + (" (headline)" if metric == next(iter(METRICS)) else ""))
        for i, row in enumerate([head] + rows):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()[:width])
            if i == 0:
                lines.append("-" * min(width, len(lines[-1])))
    return "\n".join(lines + _legend(table, width)) + "\n"


def markdown(table: pa.Table | None) -> str:
    """GitHub markdown of each metric's block (the paper's Table 2 layout)."""
    if table is None:
        return NO_REFERENCE + "\n"
    out = []
    for metric in METRICS:
        head, rows = metric_rows(table, metric)
        if not rows:
            continue
        out += [f"**{metric}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        out.append("")
    return "\n".join(out + [" ".join(_legend(table, 10_000))]) + "\n"
