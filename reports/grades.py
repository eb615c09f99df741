"""A trial's collapse grade (none / partial / complete) from its stop reason and collapse events.

Contract with the trial-side detectors (``collapse_events.jsonl``, docs/ARCHITECTURE.md): every line
is ``{"detector", "kind", "severity", "epoch", "step", "value", "threshold", "message"}`` with
severity in ``warning | partial | collapse``. Partial events (severity ``partial``, kind in
``dimensional | prototype | functional | plateau | not_learned``) do not stop a trial; an early warning is kind
``early_warning`` with severity ``warning``.

* grade ``complete``: the trial stopped as collapsed or diverged, its last line carries the
  ``collapsed`` flag (``stop_on_collapse: false``), or it has a ``collapse``-severity event;
* else ``partial``: it has a ``partial``-severity event;
* else ``none``.

Epochs: ``first_partial_epoch`` (first partial event), ``any_collapse_epoch`` (first collapse or
partial event; the complete-collapse epoch when only that is known: time to any collapse) and
``first_warning_epoch`` (first ``early_warning`` event). ``partial_kinds``: the distinct kinds of
the partial events, sorted, joined by ``,`` (null when none).

Ungraded trials: the partial criteria and the early warning read diagnostics every evaluation has
reported since they exist (:data:`er_core.rules.GRADE_METRICS`, trainers/diagnostics.py
``collapse_grade_metrics``). A trial whose last result line lacks them (written before the
criteria existed) was never tested for partial collapse: its grade is unknown, not ``none``.
:func:`collapse_grade` then leaves every field null, except that a complete collapse (its stop
reason, its ``collapsed`` flag or a collapse event) is known without them and still grades
``complete`` (with the partial fields, and the any-collapse epoch they could move earlier, null).
"""
from __future__ import annotations

from dataclasses import dataclass

from er_core.rules import EARLY_WARNING_KIND, GRADE_KEY, GRADE_METRICS
from er_core.rules import collapse_grade as grade_of


def has_grade_inputs(last: dict | None, events: list[dict], n_rows: int) -> bool:
    """Whether a trial was graded for partial collapse: its last result line reports its grade
    (``GRADE_KEY``) or holds a value of every ``GRADE_METRICS`` metric, it has a partial event
    (only the criteria emit one), or it reported nothing (no epoch, nothing to grade: ``none``)."""
    if n_rows == 0 or (last is not None and last.get(GRADE_KEY) is not None):
        return True
    if any(e.get("severity") == "partial" for e in events):
        return True
    # a result table read across trials has every trial's keys: an absent metric is None there
    return last is not None and all(last.get(key) is not None for key in GRADE_METRICS)


@dataclass(frozen=True)
class CollapseGrade:
    """Grade of one trial and the epochs the report needs."""

    grade: str | None  # None: not graded (module docstring)
    partial_kinds: str | None
    first_partial_epoch: int | None
    any_collapse_epoch: int | None
    first_warning_epoch: int | None


def _first_epoch(events: list[dict]) -> int | None:
    epochs = [e.get("epoch") for e in events if isinstance(e.get("epoch"), (int, float))]
    return int(min(epochs)) if epochs else None


def collapse_grade(status: str | None, events: list[dict],
                   collapse_epoch: int | None, graded: bool = True) -> CollapseGrade:
    """Grade a trial (module docstring). ``status``: the trial's status (reports/discover.py),
    ``collapsed``/``diverged`` for a complete collapse; ``collapse_epoch``: its complete-collapse
    epoch (first collapse event, else the epoch of the ``collapsed`` flag); ``graded``: whether
    the partial criteria ran (:func:`has_grade_inputs`)."""
    grade = grade_of(status, events)
    if not graded:
        return CollapseGrade("complete" if grade == "complete" else None, None, None, None, None)
    partial = [e for e in events if e.get("severity") == "partial"]
    complete = grade == "complete"
    first_partial = _first_epoch(partial)
    candidates = [x for x in (first_partial, collapse_epoch if complete else None) if x is not None]
    kinds = sorted({str(e.get("kind")) for e in partial if e.get("kind") is not None})
    return CollapseGrade(
        grade=grade,
        partial_kinds=",".join(kinds) or None,
        first_partial_epoch=first_partial,
        any_collapse_epoch=int(min(candidates)) if candidates else None,
        first_warning_epoch=_first_epoch([e for e in events
                                          if e.get("kind") == EARLY_WARNING_KIND]))
