"""Terminal (≤ 100 columns) and markdown renderings of the stability table.

The terminal view has two blocks, each with a line per method/cell and its figures on the next:
``collapse`` (counts with Wilson 95%, ER − original risk difference [Newcombe 95%], Holm-adjusted
Boschloo p and verdict ``stab``; median epochs to collapse orig/ER, adjusted permutation log-rank
p and verdict ``time``) and ``knn_top1`` (mean ± sd, paired difference [t 95%], adjusted paired-t p,
verdict ``knn``), then a legend naming the tests. An undecided ``=`` carries what the seeds could
have detected: ``=≥0.75`` (smallest decidable collapse-rate difference against none),
``=|Δ|≥0.052`` (kNN difference found with 80% power at the observed sd), ``=never`` (these seeds
can never reach alpha). Reports written before schema 2 (no p columns) render in the old layout.
"""
from __future__ import annotations

import math
import textwrap

import pyarrow as pa

from er_tune.power import logrank_min_pvalue

SHORT = {"er_more_stable": "ER", "original_more_stable": "orig", "no_difference": "=",
         "er_better": "ER", "original_better": "orig", "untested": "n/a"}
TEST_WORDS = {"boschloo_exact": "Boschloo exact test", "fisher_exact": "Fisher exact test",
              "logrank_permutation": "exact permutation log-rank",
              "logrank_asymptotic": "chi-square log-rank"}


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _p(v) -> str:
    return "-" if v is None else ("<.001" if v < 0.001 else f"{v:.3f}")


def _epochs(v) -> str:
    return "-" if v is None else f"{v:g}"


def _interval(r, pre: str, compact: bool = False) -> str:
    if r.get(pre + "collapse_rate") is None:
        return "-"
    lo, hi = r[pre + "collapse_rate_lo"], r[pre + "collapse_rate_hi"]
    frac = f"{r[pre + 'n_collapsed']}/{r[pre + 'n_seeds']}"
    if compact:
        return f"{frac} {lo:.2f}-{hi:.2f}"
    return f"{frac} [{lo:.2f},{hi:.2f}]"


def _axes(table: pa.Table) -> list[str]:
    meta = {"method", "verdict", "knn_verdict", "time_verdict", "n_paired", "alpha"}
    return [c for c in table.column_names if c not in meta and not c.startswith(
        ("original_", "er_", "knn_", "collapse_", "logrank_"))]


def _cell(r, axes) -> str:
    return f"{r['method']} " + ",".join(f"{a}={_fmt(r[a])}" for a in axes)


def _knn(r, pre: str) -> str:
    m = r.get(pre + "knn_mean")
    return "-" if m is None else f"{m:.3f}±{_fmt(r.get(pre + 'knn_std'))}"


def _diff(v, lo, hi, digits: int = 3) -> str:
    if v is None:
        return "-"
    return f"{v:+.{digits}f} [{lo:+.{digits}f},{hi:+.{digits}f}]"


def _mark(verdict: str, note: str, compact: bool) -> str:
    """``ER`` / ``=≥0.75`` (compact) or ``er_better`` / ``no_difference (≥0.75)``."""
    if SHORT[verdict] != "=":
        return SHORT[verdict] if compact else verdict
    return ("=" + note) if compact else (verdict + (f" ({note})" if note else ""))


def _stab_mark(r, compact: bool = True) -> str:
    d = r.get("collapse_min_detectable")
    return _mark(r["verdict"], "never" if d is None else f"≥{d:.2f}", compact)


def _time_mark(r, m: int, compact: bool = True) -> str:
    reach = logrank_min_pvalue(r["er_n_seeds"] or 0, r["original_n_seeds"] or 0)
    return _mark(r["time_verdict"], "never" if reach > r["alpha"] / max(m, 1) else "", compact)


def _knn_mark(r, compact: bool = True) -> str:
    d = r.get("knn_min_detectable")
    return _mark(r["knn_verdict"], "" if d is None else f"|Δ|≥{d:.3f}", compact)


def stability_rows(table: pa.Table, compact: bool = False) -> dict[str, tuple[list, list]]:
    """Header and string cells of the two blocks, keyed ``collapse`` and ``knn``; each row
    starts with the method/cell label."""
    axes, rows = _axes(table), table.to_pylist()
    m_time = sum(r["logrank_p"] is not None for r in rows)
    ch = ["method/cell", "orig", "ER", "ΔER-orig [95%]", "p_adj", "stab", "med o/E", "p_adj",
          "time"]
    kh = ["method/cell", "knn orig", "knn ER", "Δknn [95%]", "p_adj", "knn"]
    crow, krow = [], []
    for r in rows:
        cell = _cell(r, axes).strip()
        crow.append([cell, _interval(r, "original_", compact), _interval(r, "er_", compact),
                     _diff(r["collapse_diff"], r["collapse_diff_lo"], r["collapse_diff_hi"], 2),
                     _p(r["collapse_p_adj"]), _stab_mark(r, compact),
                     f"{_epochs(r['original_median_time_to_collapse'])}/"
                     f"{_epochs(r['er_median_time_to_collapse'])}",
                     _p(r["logrank_p_adj"]), _time_mark(r, m_time, compact)])
        krow.append([cell, _knn(r, "original_"), _knn(r, "er_"),
                     _diff(r["knn_diff"], r["knn_diff_lo"], r["knn_diff_hi"]),
                     _p(r["knn_p_adj"]), _knn_mark(r, compact)])
    return {"collapse": (ch, crow), "knn": (kh, krow)}


def _block(title: str, head: list[str], rows: list[list[str]], width: int) -> list[str]:
    body = [r[1:] for r in rows]
    widths = [max(len(x[i]) for x in [head[1:]] + body) for i in range(len(head) - 1)]

    def line(cells):
        return ("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths))).rstrip()[:width]
    out = [title[:width], line(head[1:]), "-" * min(width, len(line(head[1:])))]
    for r in rows:
        out += [r[0][:width], line(r[1:])]
    return out


def legend(table: pa.Table, width: int = 100) -> str:
    """The tests behind the verdicts and how to read an undecided ``=``."""
    rows = table.to_pylist()
    alpha = rows[0]["alpha"] if rows else 0.05
    m = {c: sum(r[c] is not None for r in rows) for c in ("collapse_p", "logrank_p", "knn_p")}
    cells = {k: f"{v} cell" + ("" if v == 1 else "s") for k, v in m.items()}
    used = {c: " / ".join(TEST_WORDS.get(x, x) for x in sorted({r[c] for r in rows if r[c]}))
            for c in ("collapse_test", "logrank_test")}
    text = (f"p_adj: Holm within each family; verdict when p_adj <= {alpha:g}. "
            f"stab: {used['collapse_test']} on collapse counts ({cells['collapse_p']}), Δ = "
            f"ER−orig rate, Newcombe 95%. time: {used['logrank_test']} on epochs to first collapse"
            f" ({cells['logrank_p']}); med o/E: Kaplan–Meier median epochs, - not reached. knn: "
            f"paired t on final knn_top1 over seeds ({cells['knn_p']}), t 95%. Undecided: "
            f"'=≥r': r is the smallest collapse-rate gap (vs none) these seeds can decide; "
            f"'=|Δ|≥d': d is the "
            f"knn gap found with 80% power at the observed sd; '=never' cannot reach alpha.")
    return "\n".join(textwrap.wrap(text, width)) + "\n"


def terminal(table: pa.Table, width: int = 100) -> str:
    """Plain-text stability view, every line at most ``width`` columns."""
    if table.num_rows == 0:
        return "(stability table is empty)\n"
    if "collapse_p_adj" not in table.column_names:
        return _terminal_v1(table, width)
    blocks = stability_rows(table, compact=True)
    lines = _block("collapse", *blocks["collapse"], width)
    lines += _block("knn_top1", *blocks["knn"], width)
    return "\n".join(lines) + "\n" + legend(table, width)


def markdown(table: pa.Table) -> str:
    """GitHub markdown table of the stability rows (one row per method/cell)."""
    if "collapse_p_adj" not in table.column_names:
        head, rows = _rows_v1(table)
    else:
        blocks = stability_rows(table)
        ch, cr = blocks["collapse"]
        kh, kr = blocks["knn"]
        head = ch[:4] + ["p", "p_adj (stab)", "stab", "median epochs orig/ER", "log-rank p",
                         "p_adj (time)", "time"] + kh[1:4] + ["p", "p_adj (knn)", "knn"]
        rows = []
        for r, c, k in zip(table.to_pylist(), cr, kr):
            rows.append(c[:4] + [_p(r["collapse_p"]), c[4], c[5], c[6], _p(r["logrank_p"]),
                                 c[7], c[8]] + k[1:4] + [_p(r["knn_p"]), k[4], k[5]])
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    out = "\n".join(md) + "\n"
    if "collapse_p_adj" in table.column_names and table.num_rows:
        out += "\n" + " ".join(legend(table, 10_000).split("\n")).strip() + "\n"
    return out


def _rows_v1(table: pa.Table, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Schema-1 rows: cell, collapse (orig/ER), knn mean±std, Δknn [CI], verdicts."""
    axes = [c for c in table.column_names if c not in {"method", "verdict", "knn_verdict",
            "n_paired"} and not c.startswith(("original_", "er_", "knn_diff", "collapse_diff"))]
    head = ["method/cell", "collapse orig", "collapse ER", "knn orig", "knn ER", "Δknn [95%]",
            "verdict"]
    out = []
    for r in table.to_pylist():
        diff = _diff(r["knn_diff"], r["knn_diff_lo"], r["knn_diff_hi"])
        verdict = (f"stab:{SHORT[r['verdict']]} knn:{SHORT[r['knn_verdict']]}" if compact
                   else f"{r['verdict']} / {r['knn_verdict']}")
        out.append([_cell(r, axes).strip(), _interval(r, "original_", compact),
                    _interval(r, "er_", compact), _knn(r, "original_"), _knn(r, "er_"), diff,
                    verdict])
    return head, out


def _terminal_v1(table: pa.Table, width: int) -> str:
    head, rows = _rows_v1(table, compact=True)
    note = "(report schema 1: bootstrap/Wilson-overlap verdicts, not calibrated; re-run report)"
    return "\n".join(_block("method/cell", head, rows, width) + [note[:width]]) + "\n"


def summary(name: str, table: pa.Table, limit: int = 20) -> str:
    """Short dump of any table (for ``er-tune show``)."""
    df = table.slice(0, limit).to_pandas()
    import pandas as pd
    with pd.option_context("display.width", 100, "display.max_columns", 12):
        return f"== {name} ({table.num_rows} rows) ==\n{df.to_string(max_colwidth=24)}\n"
