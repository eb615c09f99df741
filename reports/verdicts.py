"""The verdict registry: every ER-versus-original question of the stability table, declared once.

A :class:`VerdictFamily` names its columns, runs its test on one grid cell (:class:`CellData`),
says which cells count for Holm's m, what an undecided verdict could have detected, and how it is
rendered. reports/stability.py builds the table from ``FAMILIES`` and reports/render.py draws it
from ``FAMILIES`` and ``BLOCKS``; neither knows a family by name. Adding a family: declare it here
(and, if its test is new, write the test in stats.py or survival.py).

Families (``FAMILIES``, in table order):

* ``collapse`` — complete-collapse counts, Boschloo exact (Fisher above 30 seeds per variant);
  effect: risk difference ER − original, Newcombe 95%. Verdict column ``verdict``.
* ``any_collapse`` — complete-or-partial collapse counts, same test. ``any_collapse_verdict``.
* ``time`` — time to complete collapse, log-rank (survival.py). ``time_verdict``.
* ``any_time`` — time to any collapse (first collapse or partial event). ``any_time_verdict``.
* ``knn`` — final knn_top1, paired t over the seeds in both variants (exact sign-flip when every
  difference is equal). ``knn_verdict``.

Holm's m: the count families (``collapse``, ``any_collapse``) count only cells whose collapse count
varies (some but not all trials of the cell collapsed); the time families only cells with at least
one event. The others have p = 1 by construction, keep it, and their verdict is ``untested`` (never
``no_difference``: nothing was measured that could differ); so is a family whose trials were not
graded for what it counts (the any-collapse families on trials written before the partial-collapse
grade), whose figures are then null.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from er_core.config import VARIANTS
from er_core.power import (collapse_test_name, knn_min_detectable_effect,
                           logrank_min_pvalue, min_detectable_collapse, sign_flip_min_pvalue)

from . import stats
from .survival import logrank_test


@dataclass(frozen=True)
class VariantData:
    """One variant of one cell: counts over finished trials, survival data, final kNN by seed, and
    the trial records themselves (so a new family can read any trials-table column)."""

    n: int
    complete: int
    partial: int | None  # None: a trial of the variant was not graded for partial collapse
    times: dict  # endpoint -> (times, events); ``any`` only when every trial was graded
    knn_by_seed: pd.Series
    trials: pd.DataFrame


@dataclass(frozen=True)
class CellData:
    """What the families test: both variants of one cell and the epochs every trial was given."""

    variants: dict  # "original"/"er" -> VariantData
    budget: float | None

    @property
    def er(self) -> VariantData:
        return self.variants["er"]

    @property
    def original(self) -> VariantData:
        return self.variants["original"]


@dataclass(frozen=True)
class Outcome:
    """One family's raw result on one cell (before Holm)."""

    test: str
    p: float | None
    effects: dict = field(default_factory=dict)  # effect column -> value
    er_favoured: bool | None = None
    informative: bool = True
    power: dict = field(default_factory=dict)  # what the detectable figure needs


@dataclass(frozen=True)
class VerdictFamily:
    """A verdict family: its columns, its test, its power statement and its rendering."""

    name: str
    heading: str  # terminal column of the verdict mark
    question: str  # the legend's sentence ({tests} and {cells} filled in)
    labels: tuple[str, str]  # verdict when ER / the original is favoured
    test_column: str
    effect_columns: tuple[str, ...]
    p_column: str
    p_adj_column: str
    verdict_column: str
    detectable_column: str | None
    run: Callable[[CellData], Outcome]
    detectable: Callable[[Outcome, int, float], float | None]
    note: Callable[[dict, int], str]  # the undecided '=' note from a table row and m
    cells: tuple  # ((heading, row -> str), ...) drawn before p_adj and the mark
    tests: tuple[str, ...]  # the values ``test_column`` can take
    informative_rule: str  # which cells count in Holm's m (legend)
    # column -> (unit, one-line description): the Parquet field metadata of the family's columns
    # (reports/columns.py reads it through :func:`describe`)
    descriptions: dict = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        extra = (self.detectable_column,) if self.detectable_column else ()
        return ((self.test_column,) + self.effect_columns
                + (self.p_column, self.p_adj_column) + extra + (self.verdict_column,))


# ---- count families -------------------------------------------------------------------------------

def _count_outcome(k_er: int, n_er: int, k_orig: int, n_orig: int) -> Outcome:
    test = stats.collapse_test(k_er, n_er, k_orig, n_orig)
    varies = 0 < k_er + k_orig < n_er + n_orig
    return Outcome(collapse_test_name(n_er, n_orig), test.p,
                   {"diff": test.diff, "lo": test.lo, "hi": test.hi},
                   None if test.diff is None else test.diff < 0, varies,
                   {"n_er": n_er, "n_orig": n_orig})


def _count_detectable(outcome: Outcome, m: int, alpha: float) -> float | None:
    n_er, n_orig = outcome.power.get("n_er"), outcome.power.get("n_orig")
    if not n_er or not n_orig:
        return None
    found = min_detectable_collapse(n_er, n_orig, alpha, max(m, 1))
    return None if found is None else found[0] / n_orig


def _count_note(detectable_column: str):
    def note(row: dict, m: int) -> str:
        value = row.get(detectable_column)
        return "never" if value is None else f"≥{value:.2f}"
    return note


def _diff_cell(prefix: str):
    def cell(row: dict) -> str:
        return interval_text(row.get(prefix + "diff"), row.get(prefix + "diff_lo"),
                              row.get(prefix + "diff_hi"), 2)
    return cell


def interval_text(value, lo, hi, digits: int) -> str:
    if value is None:
        return "-"
    if lo is None or hi is None:  # one pair: a difference without an interval
        return f"{value:+.{digits}f}"
    return f"{value:+.{digits}f} [{lo:+.{digits}f},{hi:+.{digits}f}]"


def _count_descriptions(prefix: str, verdict_column: str, what: str) -> dict:
    return {prefix + "diff": ("1", f"ER − original {what} rate (risk difference)"),
            prefix + "diff_lo": ("1", f"{prefix}diff, Newcombe 95% lower bound"),
            prefix + "diff_hi": ("1", f"{prefix}diff, Newcombe 95% upper bound"),
            prefix + "test": ("", f"test behind {prefix}p (boschloo_exact or fisher_exact)"),
            prefix + "p": ("1", f"p-value of the {what} count test"),
            prefix + "p_adj": ("1", f"{prefix}p, Holm-adjusted over the informative cells"),
            prefix + "min_detectable": ("1", f"smallest {what} rate difference k/n vs 0/n "
                                             "these seeds decide at alpha / m, m = Holm's m of "
                                             "the family with this cell counted (null: none)"),
            verdict_column: ("", f"{what} counts: er_more_stable, original_more_stable, "
                                 "no_difference, untested (no informative cell: nothing "
                                 "collapsed in either variant or all did, p = 1 by "
                                 "construction; or trials not graded), not_replicated")}


def _time_descriptions(prefix: str, verdict_column: str, what: str) -> dict:
    return {prefix + "test": ("", f"test behind {prefix}p (exact permutation, imputation-"
                                  "permutation or asymptotic log-rank)"),
            prefix + "u": ("events", "log-rank score U = observed − expected ER events"),
            prefix + "p": ("1", f"p-value of the log-rank test on epochs to {what}"),
            prefix + "p_adj": ("1", f"{prefix}p, Holm-adjusted over the informative cells"),
            verdict_column: ("", f"time to {what}: same labels as the count verdicts "
                                 "(untested: no collapse in the cell, or trials not graded)")}


def _untested(test_column_value: str | None, effects: tuple[str, ...]) -> Outcome:
    """Nothing to test (the trials were not graded for what the family counts): every figure
    null, never a p of 1 or a count of 0 that was not measured."""
    return Outcome(test_column_value, None, {column: None for column in effects}, None, False)


def _count_family(name, heading, question, counts, prefix, verdict_column) -> VerdictFamily:
    def run(cell: CellData) -> Outcome:
        k_er, k_orig = counts(cell.er), counts(cell.original)
        if k_er is None or k_orig is None:
            return _untested(None, (prefix + "diff", prefix + "diff_lo", prefix + "diff_hi"))
        raw = _count_outcome(k_er, cell.er.n, k_orig, cell.original.n)
        return Outcome(raw.test, raw.p, {prefix + "diff": raw.effects["diff"],
                                         prefix + "diff_lo": raw.effects["lo"],
                                         prefix + "diff_hi": raw.effects["hi"]},
                       raw.er_favoured, raw.informative, raw.power)
    return VerdictFamily(
        name=name, heading=heading, question=question,
        labels=("er_more_stable", "original_more_stable"), test_column=prefix + "test",
        effect_columns=(prefix + "diff", prefix + "diff_lo", prefix + "diff_hi"),
        p_column=prefix + "p", p_adj_column=prefix + "p_adj", verdict_column=verdict_column,
        detectable_column=prefix + "min_detectable", run=run, detectable=_count_detectable,
        note=_count_note(prefix + "min_detectable"),
        cells=((f"Δ{heading} ER-orig [95%]", _diff_cell(prefix)),),
        tests=("boschloo_exact", "fisher_exact"),
        informative_rule="cells where some but not all trials collapsed",
        descriptions=_count_descriptions(prefix, verdict_column, "complete collapse"
                                         if name == "collapse" else "any collapse"))


# ---- time families --------------------------------------------------------------------------------

def _time_family(name, heading, question, endpoint, prefix, verdict_column,
                 median_column) -> VerdictFamily:
    def run(cell: CellData) -> Outcome:
        if endpoint not in cell.er.times or endpoint not in cell.original.times:
            return _untested(None, (prefix + "u",))
        er_times, orig_times = cell.er.times[endpoint], cell.original.times[endpoint]
        result = logrank_test(*er_times, *orig_times, budget=cell.budget)
        if result is None:
            return Outcome("logrank_permutation", None, {prefix + "u": None}, None, False)
        any_event = bool(er_times[1].any() or orig_times[1].any())
        return Outcome(result.method, result.p, {prefix + "u": result.u}, result.u < 0,
                       any_event, {"n_er": er_times[0].size, "n_orig": orig_times[0].size,
                                   "imputed": result.method == "logrank_imputation_permutation"})

    def note(row: dict, m: int) -> str:
        reach = logrank_min_pvalue(row.get("er_n_seeds") or 0, row.get("original_n_seeds") or 0,
                                   row.get(prefix + "test") == "logrank_imputation_permutation")
        return "never" if reach > row["alpha"] / max(m, 1) else ""

    def medians(row: dict) -> str:
        def fmt(v):
            return "-" if v is None else f"{v:g}"
        return f"{fmt(row.get('original_' + median_column))}/{fmt(row.get('er_' + median_column))}"
    return VerdictFamily(
        name=name, heading=heading, question=question,
        labels=("er_more_stable", "original_more_stable"), test_column=prefix + "test",
        effect_columns=(prefix + "u",), p_column=prefix + "p", p_adj_column=prefix + "p_adj",
        verdict_column=verdict_column, detectable_column=None, run=run,
        detectable=lambda outcome, m, alpha: None, note=note, cells=(("med o/E", medians),),
        tests=("logrank_permutation", "logrank_imputation_permutation", "logrank_asymptotic"),
        informative_rule="cells with a collapse",
        descriptions=_time_descriptions(prefix, verdict_column, "complete collapse"
                                        if endpoint == "complete" else "any collapse"))


# ---- kNN --------------------------------------------------------------------------------------------

def _knn_run(cell: CellData) -> Outcome:
    er, orig = cell.er.knn_by_seed, cell.original.knn_by_seed
    seeds = er.index.intersection(orig.index)
    result = stats.knn_test((er[seeds] - orig[seeds]).to_numpy(float))

    def opt(x):
        return None if x is None or not np.isfinite(x) else float(x)
    sign_flip = bool(np.any(result.sign_flip))
    mean = opt(result.mean)
    return Outcome("sign_flip_exact" if sign_flip else "paired_t", opt(result.p),
                   {"n_paired": len(seeds), "knn_diff": mean, "knn_diff_lo": opt(result.lo),
                    "knn_diff_hi": opt(result.hi)},
                   None if mean is None else mean > 0, True,
                   {"n": len(seeds), "sd": opt(result.sd), "sign_flip": sign_flip})


def _knn_detectable(outcome: Outcome, m: int, alpha: float) -> float | None:
    sd = outcome.power.get("sd")
    if outcome.power.get("sign_flip") or not sd:
        return None  # no spread observed: no effect size can be stated in its units
    effect = knn_min_detectable_effect(outcome.power["n"], alpha, max(m, 1))
    return None if effect is None else effect * sd


def _knn_note(row: dict, m: int) -> str:
    value = row.get("knn_min_detectable")
    if value is not None:
        return f"|Δ|≥{value:.3f}"
    n = row.get("n_paired") or 0
    if row.get("knn_test") == "sign_flip_exact" and sign_flip_min_pvalue(n) > row["alpha"] / max(m, 1):
        return "never"
    return ""


def knn_mean_text(row: dict, variant: str) -> str:
    mean, sd = row.get(variant + "_knn_mean"), row.get(variant + "_knn_std")
    return "-" if mean is None else f"{mean:.3f}±{'-' if sd is None else f'{sd:.3f}'}"


KNN = VerdictFamily(
    name="knn", heading="knn",
    question="paired t on final knn_top1 over seeds ({cells}; exact sign-flip where every "
             "difference is equal), t 95%",
    labels=("er_better", "original_better"), test_column="knn_test",
    effect_columns=("n_paired", "knn_diff", "knn_diff_lo", "knn_diff_hi"), p_column="knn_p",
    p_adj_column="knn_p_adj", verdict_column="knn_verdict", detectable_column="knn_min_detectable",
    run=_knn_run, detectable=_knn_detectable, note=_knn_note,
    cells=(("Δknn [95%]", lambda row: interval_text(row.get("knn_diff"), row.get("knn_diff_lo"),
                                                        row.get("knn_diff_hi"), 3)),),
    tests=("paired_t", "sign_flip_exact"), informative_rule="cells with 2 or more pairs",
    descriptions={
        "knn_test": ("", "test behind knn_p (paired_t; sign_flip_exact where every paired "
                         "difference is equal)"),
        "n_paired": ("seeds", "seeds present in both variants (paired kNN test)"),
        "knn_diff": ("1", "mean paired ER − original final kNN top-1"),
        "knn_diff_lo": ("1", "knn_diff, t 95% lower bound"),
        "knn_diff_hi": ("1", "knn_diff, t 95% upper bound"),
        "knn_p": ("1", "p-value of the kNN test"),
        "knn_p_adj": ("1", "knn_p, Holm-adjusted over the informative cells"),
        "knn_min_detectable": ("1", "kNN difference found with 80% power at the observed sd"),
        "knn_verdict": ("", "kNN: er_better, original_better, no_difference, untested, "
                            "not_replicated")})

FAMILIES: tuple[VerdictFamily, ...] = (
    _count_family("collapse", "stab",
                  "{tests} on complete-collapse counts ({cells}), Δ = ER−orig rate, Newcombe 95%",
                  lambda v: v.complete, "collapse_", "verdict"),
    _time_family("time", "time",
                 "{tests} on epochs to complete collapse ({cells}); med o/E: Kaplan–Meier median "
                 "epochs, - not reached", "complete", "logrank_", "time_verdict",
                 "median_time_to_collapse"),
    _count_family("any_collapse", "any",
                  "{tests} on any-collapse counts, complete or partial ({cells})",
                  lambda v: None if v.partial is None else v.complete + v.partial,
                  "any_collapse_", "any_collapse_verdict"),
    _time_family("any_time", "t_any", "{tests} on epochs to any collapse ({cells})", "any",
                 "any_logrank_", "any_time_verdict", "median_time_to_any_collapse"),
    KNN,
)
FAMILY_BY_NAME = {family.name: family for family in FAMILIES}


# ---- per-variant columns and blocks -----------------------------------------------------------------

# Each variant's columns (``original_<name>``, ``er_<name>``) in table order: (unit, description
# with ``{v}`` for the variant).
VARIANT_COLUMNS: dict[str, tuple[str, str]] = {
    "n_seeds": ("trials", "{v}: trials that ran to their own end (errored and early-stopped left out)"),
    "n_collapsed": ("trials", "{v}: trials graded complete collapse (collapsed, diverged)"),
    "n_partial": ("trials", "{v}: trials graded partial collapse (null: a trial of the variant "
                            "was not graded)"),
    "n_any_collapsed": ("trials", "{v}: n_collapsed + n_partial (null: not graded)"),
    "collapse_rate": ("1", "{v}: n_collapsed / n_seeds"),
    "collapse_rate_lo": ("1", "{v}: collapse rate, Wilson 95% lower bound"),
    "collapse_rate_hi": ("1", "{v}: collapse rate, Wilson 95% upper bound"),
    "partial_rate": ("1", "{v}: n_partial / n_seeds"),
    "partial_rate_lo": ("1", "{v}: partial rate, Wilson 95% lower bound"),
    "partial_rate_hi": ("1", "{v}: partial rate, Wilson 95% upper bound"),
    "any_collapse_rate": ("1", "{v}: n_any_collapsed / n_seeds"),
    "any_collapse_rate_lo": ("1", "{v}: any-collapse rate, Wilson 95% lower bound"),
    "any_collapse_rate_hi": ("1", "{v}: any-collapse rate, Wilson 95% upper bound"),
    "median_time_to_collapse": ("epochs", "{v}: Kaplan–Meier median epochs to first collapse "
                                          "(null: not reached)"),
    "median_time_to_any_collapse": ("epochs", "{v}: Kaplan–Meier median epochs to any collapse "
                                              "(null: not reached)"),
    "knn_mean": ("1", "{v}: mean final kNN top-1 over seeds (fraction)"),
    "knn_std": ("1", "{v}: sd (ddof 1) of final kNN top-1 over seeds"),
    "entropy_drift": ("nats", "{v}: mean over seeds of final − first-epoch er_entropy"),
    "linear_mean": ("1", "{v}: mean final linear-probe top-1 over seeds (fraction)"),
    "linear_std": ("1", "{v}: sd (ddof 1) of final linear-probe top-1 over seeds"),
}
VARIANT_WORDS = dict(zip(VARIANTS, ("original", "ER")))  # ``{v}`` in a variant column's description
INT_COLUMNS = {"n_seeds", "n_collapsed", "n_partial", "n_any_collapsed", "n_paired"}
SHARED_COLUMNS: dict[str, tuple[str, str]] = {
    "alpha": ("1", "level at which the adjusted p-values give a verdict"),
}


def _counts_with_interval(row: dict, variant: str, compact: bool, count: str, rate: str) -> str:
    """``count`` (e.g. ``2/6``) with the Wilson interval of the ``rate`` column, or ``-`` without seeds."""
    lo, hi = row[f"{variant}_{rate}_lo"], row[f"{variant}_{rate}_hi"]
    return f"{count} {lo:.2f}-{hi:.2f}" if compact else f"{count} [{lo:.2f},{hi:.2f}]"


def complete_counts(row: dict, variant: str, compact: bool) -> str:
    """``complete/n`` with the Wilson interval of the complete-collapse rate."""
    n = row.get(variant + "_n_seeds")
    if not n:
        return "-"
    return _counts_with_interval(row, variant, compact, f"{row[variant + '_n_collapsed']}/{n}", "collapse_rate")


def any_counts(row: dict, variant: str, compact: bool) -> str:
    """``complete+partial/n`` with the Wilson interval of the any-collapse rate."""
    n = row.get(variant + "_n_seeds")
    if not n:
        return "-"
    partial = row.get(variant + "_n_partial")
    if partial is None:  # not graded for partial collapse: unknown, not 0
        return f"{row[variant + '_n_collapsed']}+?/{n}"  # the legend says what ? means
    count = f"{row[variant + '_n_collapsed']}+{partial}/{n}"
    return _counts_with_interval(row, variant, compact, count, "any_collapse_rate")


@dataclass(frozen=True)
class Block:
    """A block of the rendered table: a title, one cell per variant, then its families."""

    title: str
    variant_heading: str
    variant_cell: Callable[[dict, str, bool], str]
    families: tuple[str, ...]


BLOCKS = (
    Block("complete collapse", "", complete_counts, ("collapse", "time")),
    Block("any collapse (complete+partial)", "", any_counts, ("any_collapse", "any_time")),
    Block("knn_top1", "knn ", lambda row, variant, compact: knn_mean_text(row, variant), ("knn",)),
)


def declared_columns() -> set[str]:  # reads FAMILIES when called (a test may register more)
    """Every stability column the registry declares (everything else is a key: method, axes)."""
    out = {variant + "_" + column for variant in VARIANTS for column in VARIANT_COLUMNS}
    out.update(SHARED_COLUMNS)
    for family in FAMILIES:
        out.update(family.columns)
    return out


def describe(column: str) -> tuple[str, str] | None:
    """``(unit, description)`` of a stability column the registry declares, else ``None``: the
    Parquet field metadata of every verdict, effect, p-value, per-variant and shared column."""
    if column in SHARED_COLUMNS:
        return SHARED_COLUMNS[column]
    for family in FAMILIES:
        if column in family.descriptions:
            return family.descriptions[column]
    for variant, word in VARIANT_WORDS.items():
        base = column[len(variant) + 1:]
        if column.startswith(variant + "_") and base in VARIANT_COLUMNS:
            unit, text = VARIANT_COLUMNS[base]
            return unit, text.format(v=word)
    return None


def tests_by_family() -> dict[str, list[str]]:
    """The tests each family may use (for manifest.json)."""
    return {family.name: list(family.tests) for family in FAMILIES}
