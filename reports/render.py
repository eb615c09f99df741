"""Terminal (≤ 100 columns) and markdown renderings of the stability table.

Everything is drawn from the verdict registry (reports/verdicts.py): one block per ``BLOCKS``
entry (complete collapse, any collapse, knn_top1), each with a line per method/cell and its
figures on the next: one cell per variant (``2+1/6 0.10-0.70`` is complete+partial of n with the
Wilson 95% interval of the any-collapse rate), then per family its declared cells, the
Holm-adjusted p and the verdict mark. A family whose columns a table lacks (older reports) is not
drawn. The grid axes come from the table's ``grid_axes`` metadata, else they are the columns the
registry does not declare. An undecided ``=`` carries what the seeds could have detected:
``=≥0.75`` (smallest decidable collapse-rate difference against none), ``=|Δ|≥0.052`` (kNN
difference found with 80% power at the observed sd), ``=never`` (these seeds can never reach
alpha). A family a cell cannot inform (nothing collapsed in either variant: p = 1 by
construction) or whose trials were not graded is ``untested`` (``untested (≥0.50)``: what it could
have decided; in the terminal view that goes to the legend), never ``=``. A search-phase report
(no replicate phase) says it is not a replicated comparison and has no verdicts (``n/r``). Reports written before schema 2 (no p columns) render in the old layout.
"""
from __future__ import annotations

import json
import math
import textwrap

import pyarrow as pa

from .stats import ALPHA, NO_DIFFERENCE, NOT_REPLICATED, UNTESTED
from . import verdicts
from .verdicts import complete_counts, declared_columns, interval_text, knn_mean_text

SHORT = {"er_more_stable": "ER", "original_more_stable": "orig", NO_DIFFERENCE: "=",
         "er_better": "ER", "original_better": "orig", UNTESTED: UNTESTED, NOT_REPLICATED: "n/r"}
TEST_WORDS = {"boschloo_exact": "Boschloo exact test", "fisher_exact": "Fisher exact test",
              "logrank_permutation": "exact permutation log-rank",
              "logrank_imputation_permutation": "imputation-permutation log-rank "
                                                "(unequal follow-up)",
              "logrank_asymptotic": "chi-square log-rank", "paired_t": "paired t",
              "sign_flip_exact": "exact sign-flip"}
NOT_REPLICATED_NOTE = ("NOT a replicated comparison: no replicate phase, so these are search-phase "
                       "trials (TPE-chosen, ASHA-pruned, one seed per configuration; early-stopped "
                       "trials left out of the counts). Counts are descriptive; no verdicts (n/r).")


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _p(value) -> str:
    return "-" if value is None else ("<.001" if value < 0.001 else f"{value:.3f}")


def grid_axes(table: pa.Table) -> list[str]:
    """The grid axes of a stability table: its ``grid_axes`` metadata, else the columns other than
    ``method`` that the verdict registry does not declare."""
    meta = table.schema.metadata or {}
    if b"grid_axes" in meta:
        return list(json.loads(meta[b"grid_axes"]))
    declared = declared_columns()
    return [c for c in table.column_names if c != "method" and c not in declared]


def _cell(row: dict, axes: list[str]) -> str:
    return (f"{row['method']} " + ",".join(f"{a}={_fmt(row[a])}" for a in axes)).strip()


def _families(table: pa.Table):
    """The registered families whose columns this table has (older reports lack some)."""
    return [f for f in verdicts.FAMILIES if f.verdict_column in table.column_names]


def _block_families(table: pa.Table):
    """(block, its families present in ``table``) for every block with at least one."""
    present = {f.name: f for f in _families(table)}
    for block in verdicts.BLOCKS:
        families = [present[name] for name in block.families if name in present]
        if families:
            yield block, families


def holm_sizes(table: pa.Table) -> dict[str, int]:
    """Holm's m per family: the ``holm_m`` metadata, else (older reports) the cells with a p."""
    meta = table.schema.metadata or {}
    if b"holm_m" in meta:
        return {k: int(v) for k, v in json.loads(meta[b"holm_m"]).items()}
    rows = table.to_pylist()
    return {f.name: sum(r.get(f.p_column) is not None for r in rows) for f in _families(table)}


def _mark(verdict: str, note: str, compact: bool) -> str:
    """``ER`` / ``=≥0.75`` / ``untested`` (compact: its note goes to the legend, see
    :func:`_untested_notes`, to keep 100 columns) or ``er_better`` / ``no_difference (≥0.75)`` /
    ``untested (≥0.50)``."""
    if verdict == NO_DIFFERENCE:
        return ("=" + note) if compact else (verdict + (f" ({note})" if note else ""))
    if verdict == UNTESTED and not compact:
        return verdict + (f" ({note})" if note else "")
    return SHORT.get(verdict, verdict) if compact else verdict


def _note(family, row: dict, m: int) -> str:
    """What the seeds could have decided in an undecided cell: ``no_difference`` at Holm's m; a
    cell that informs no family (``untested`` with a p, 1 by construction) at m with this cell
    counted (stability.holm_m_with); nothing for a family without data (no p)."""
    verdict = row[family.verdict_column]
    if verdict == NO_DIFFERENCE:
        return family.note(row, m)
    if verdict == UNTESTED and row.get(family.p_column) is not None:
        return family.note(row, m + 1)
    return ""


def _verdict_mark(family, row: dict, m: int, compact: bool) -> str:
    return _mark(row[family.verdict_column], _note(family, row, m), compact)


def _untested_notes(table: pa.Table) -> str:
    """The legend's sentence for the compact view: what the untested cells could have decided."""
    sizes, found = holm_sizes(table), []
    for family in _families(table):
        notes = sorted({_note(family, row, sizes.get(family.name, 0)) for row in table.to_pylist()
                        if row.get(family.verdict_column) == UNTESTED} - {""})
        if notes:
            found.append(f"{family.heading} {', '.join(notes)}")
    return ("Untested cells could have decided (at Holm's m with the cell counted): "
            + "; ".join(found) + ".") if found else ""


def stability_rows(table: pa.Table, compact: bool = False) -> dict[str, tuple[list, list]]:
    """Header and string cells of every drawn block, keyed by block title; each row starts with
    the method/cell label."""
    axes, rows, sizes = grid_axes(table), table.to_pylist(), holm_sizes(table)
    out = {}
    for block, families in _block_families(table):
        header = ["method/cell", block.variant_heading + "orig", block.variant_heading + "ER"]
        for family in families:
            header += [heading for heading, _ in family.cells] + ["p_adj", family.heading]
        cells = []
        for row in rows:
            line = [_cell(row, axes), block.variant_cell(row, "original", compact),
                    block.variant_cell(row, "er", compact)]
            for family in families:
                line += [draw(row) for _, draw in family.cells]
                line += [_p(row.get(family.p_adj_column)),
                         _verdict_mark(family, row, sizes.get(family.name, 0), compact)]
            cells.append(line)
        out[block.title] = (header, cells)
    return out


def _block(title: str, head: list[str], rows: list[list[str]], width: int) -> list[str]:
    """A title, the header, a rule, then per row its label line and its figures line."""
    body = [row[1:] for row in rows]
    widths = [max(len(line[col]) for line in [head[1:]] + body) for col in range(len(head) - 1)]

    def line(cells):
        return ("  " + "  ".join(text.ljust(size) for text, size in zip(cells, widths))
                ).rstrip()[:width]
    out = [title[:width], line(head[1:]), "-" * min(width, len(line(head[1:])))]
    for row in rows:
        out += [row[0][:width], line(row[1:])]
    return out


def _not_replicated(table: pa.Table) -> bool:
    meta = table.schema.metadata or {}
    if meta.get(b"comparison") == NOT_REPLICATED.encode():
        return True
    return any(r.get(f.verdict_column) == NOT_REPLICATED for r in table.to_pylist()
               for f in _families(table))


def legend(table: pa.Table, width: int = 100) -> str:
    """The tests behind the verdicts, Holm's m per family and how to read an undecided ``=``."""
    rows = table.to_pylist()
    alpha = rows[0]["alpha"] if rows else ALPHA
    sizes = holm_sizes(table)
    parts = [f"p_adj: Holm within each family over its informative cells; verdict when p_adj "
             f"<= {alpha:g}. 'untested': the cell cannot inform the family (its p is 1 by "
             f"construction, e.g. 0/8 vs 0/8) or its trials were not graded for it (no p); "
             f"untested is not a measured no-difference."]
    for family in _families(table):
        used = sorted({r[family.test_column] for r in rows if r.get(family.test_column)})
        tests = " / ".join(TEST_WORDS.get(t, t) for t in used) or "no test"
        m = sizes.get(family.name, 0)
        cells = f"m = {m}: {family.informative_rule}"
        parts.append(f"{family.heading}: " + family.question.format(tests=tests, cells=cells)
                     + ".")
    parts.append("Undecided: '=≥r' (or 'untested (≥r)'): r is the smallest collapse-rate gap (vs "
                 "none) these seeds could have decided in that cell, at alpha over Holm's m with "
                 "the cell counted; '=|Δ|≥d': d is the knn gap found with 80% power at the "
                 "observed sd; 'never' cannot reach alpha.")
    if _untested_notes(table):
        parts.append(_untested_notes(table))
    if any(row.get(variant + "_n_seeds") and row.get(variant + "_n_partial") is None
           for row in rows for variant in verdicts.VARIANTS):
        parts.append("'k+?/n': the trials were not graded for partial collapse (written before "
                     "its criteria existed): the partial count is unknown, not 0.")
    if _not_replicated(table):
        parts.insert(0, NOT_REPLICATED_NOTE)
    return "\n".join(textwrap.wrap(" ".join(parts), width)) + "\n"


def terminal(table: pa.Table, width: int = 100) -> str:
    """Plain-text stability view, every line at most ``width`` columns."""
    if table.num_rows == 0:
        return "(stability table is empty)\n"
    if "collapse_p_adj" not in table.column_names:
        return _terminal_v1(table, width)
    lines = []
    if _not_replicated(table):
        lines += textwrap.wrap(NOT_REPLICATED_NOTE, width)
    for title, (head, rows) in stability_rows(table, compact=True).items():
        lines += _block(title, head, rows, width)
    return "\n".join(lines) + "\n" + legend(table, width)


def _markdown_columns(table: pa.Table):
    """(heading, row -> str) for every markdown column, from the registry."""
    axes, sizes = grid_axes(table), holm_sizes(table)
    columns = [("method/cell", lambda row: _cell(row, axes))]
    for block, families in _block_families(table):
        columns += [(f"{block.title}: orig",
                     lambda row, b=block: b.variant_cell(row, "original", False)),
                    (f"{block.title}: ER", lambda row, b=block: b.variant_cell(row, "er", False))]
        for family in families:
            columns += [(f"{heading} ({family.heading})", draw) for heading, draw in family.cells]
            columns += [(f"p ({family.heading})", lambda row, f=family: _p(row.get(f.p_column))),
                        (f"p_adj ({family.heading})",
                         lambda row, f=family: _p(row.get(f.p_adj_column))),
                        (family.heading, lambda row, f=family: _verdict_mark(
                            f, row, sizes.get(f.name, 0), False))]
    return columns


def markdown(table: pa.Table) -> str:
    """GitHub markdown table of the stability rows (one row per method/cell), then the legend."""
    if "collapse_p_adj" not in table.column_names:
        head, rows = _rows_v1(table)
    else:
        columns = _markdown_columns(table)
        head = [heading for heading, _ in columns]
        rows = [[draw(row) for _, draw in columns] for row in table.to_pylist()]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    out = "\n".join(md) + "\n"
    if "collapse_p_adj" in table.column_names and table.num_rows:
        out += "\n" + " ".join(legend(table, 10_000).split("\n")).strip() + "\n"
    return out


def _rows_v1(table: pa.Table, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Schema-1 rows: cell, collapse (orig/ER), knn mean±std, Δknn [CI], verdicts."""
    axes = grid_axes(table)
    head = ["method/cell", "collapse orig", "collapse ER", "knn orig", "knn ER", "Δknn [95%]",
            "verdict"]
    out = []
    for row in table.to_pylist():
        diff = interval_text(row["knn_diff"], row["knn_diff_lo"], row["knn_diff_hi"], 3)
        verdict = (f"stab:{SHORT[row['verdict']]} knn:{SHORT[row['knn_verdict']]}" if compact
                   else f"{row['verdict']} / {row['knn_verdict']}")
        out.append([_cell(row, axes), complete_counts(row, "original", compact),
                    complete_counts(row, "er", compact), knn_mean_text(row, "original"),
                    knn_mean_text(row, "er"), diff, verdict])
    return head, out


def _terminal_v1(table: pa.Table, width: int) -> str:
    head, rows = _rows_v1(table, compact=True)
    note = "(report schema 1: bootstrap/Wilson-overlap verdicts, not calibrated; re-run report)"
    return "\n".join(_block("method/cell", head, rows, width) + [note[:width]]) + "\n"


def summary(name: str, table: pa.Table, limit: int = 20) -> str:
    """Short dump of any table (for ``er-tune show``)."""
    frame = table.slice(0, limit).to_pandas()
    import pandas as pd
    with pd.option_context("display.width", 100, "display.max_columns", 12):
        return f"== {name} ({table.num_rows} rows) ==\n{frame.to_string(max_colwidth=24)}\n"
