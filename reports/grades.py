"""A trial's collapse grade (none / partial / complete) from its stop reason and collapse events.

Contract with the trial-side detectors (``collapse_events.jsonl``, docs/ARCHITECTURE.md): every line
is ``{"detector", "kind", "severity", "epoch", "step", "value", "threshold", "message"}`` with
severity in ``warning | partial | collapse``. Partial events (severity ``partial``, kind in
``dimensional | prototype | functional | plateau``) do not stop a trial; an early warning is kind
``early_warning`` with severity ``warning``.

* grade ``complete``: the trial stopped as collapsed or diverged, its last line carries the
  ``collapsed`` flag (``stop_on_collapse: false``), or it has a ``collapse``-severity event;
* else ``partial``: it has a ``partial``-severity event;
* else ``none``.

Epochs: ``first_partial_epoch`` (first partial event), ``any_collapse_epoch`` (first collapse or
partial event; the complete-collapse epoch when only that is known: time to any collapse) and
``first_warning_epoch`` (first ``early_warning`` event). ``partial_kinds``: the distinct kinds of
the partial events, sorted, joined by ``,`` (null when none).
"""
from __future__ import annotations

from dataclasses import dataclass

from er_core.rules import EARLY_WARNING_KIND
from er_core.rules import collapse_grade as grade_of


@dataclass(frozen=True)
class CollapseGrade:
    """Grade of one trial and the epochs the report needs."""

    grade: str
    partial_kinds: str | None
    first_partial_epoch: int | None
    any_collapse_epoch: int | None
    first_warning_epoch: int | None


def _first_epoch(events: list[dict]) -> int | None:
    epochs = [e.get("epoch") for e in events if isinstance(e.get("epoch"), (int, float))]
    return int(min(epochs)) if epochs else None


def collapse_grade(status: str | None, events: list[dict],
                   collapse_epoch: int | None) -> CollapseGrade:
    """Grade a trial (module docstring). ``status``: the trial's status (reports/discover.py),
    ``collapsed``/``diverged`` for a complete collapse; ``collapse_epoch``: its complete-collapse
    epoch (first collapse event, else the epoch of the ``collapsed`` flag)."""
    grade = grade_of(status, events)
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
