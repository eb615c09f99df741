"""Rules that several views of a study share, each written once.

A trial's status is shown by the live progress line of ``er-tune tune``
(``er_tune.progress``), by ``er-tune status`` (``reports.status``) and in the report's
``trials`` table (``reports.discover``); the best configuration of a condition group is chosen by
the replicate phase (``er_tune.launch``) and shown by ``er-tune status``. When two views
decide the same thing with two copies of a rule the copies drift, so every view imports the rule
from here, and ``tests/test_rules_agree.py`` checks that the views give the same answers on
synthetic trials.

Standard library only: no torch, no Ray, nothing of er-tune (anything may import this module).
"""

from __future__ import annotations

import math
from typing import Any, Hashable, Iterable, Mapping, TypeVar

# A study's Ray Tune experiments, in the order they run: ``<experiment>/<phase>/``.
SEARCH, REPLICATE = PHASES = ("search", "replicate")
ALL_PHASES = "all"  # ``er-tune tune --phase``: one phase or both in order
PHASE_CHOICES = (*PHASES, ALL_PHASES)
# Ray Tune (and ``trainers.reporters.LocalReporter``) name a trial's checkpoints ``checkpoint_<n>``.
CHECKPOINT_PREFIX = "checkpoint_"
# The files of a trial directory: Ray Tune's (and LocalReporter's) configuration, one JSON result
# line per epoch and the error of a failed attempt; the trial's own collapse events (one JSON line
# per event) and start-up timings.
PARAMS_FILE, RESULT_FILE, ERROR_FILE = "params.json", "result.json", "error.txt"
EVENTS_FILE, STARTUP_FILE = "collapse_events.jsonl", "startup.json"

# ``stop_reason`` on a trial's last result line when the trial stopped by itself (ran to its own end).
STOP_REASONS = ("completed", "collapsed", "diverged")
# Statuses of a trial that has ended, in display order.
ENDED_STATUSES = ("completed", "early_stopped", "collapsed", "diverged", "errored")
# Statuses of a trial still in flight.
IN_FLIGHT_STATUSES = ("running", "pending")
# Every status, a trial still in flight included.
STATUSES = (*IN_FLIGHT_STATUSES, *ENDED_STATUSES)
# Statuses that rank a trial below every healthy one when choosing a group's best configuration.
COLLAPSE_STATUSES = ("collapsed", "diverged")

# A collapse event (one ``collapse_events.jsonl`` line): its severity and kind. Partial kinds never
# stop a trial; the early warning is a ``warning`` of kind ``early_warning``.
SEVERITIES = ("warning", "partial", "collapse")
PARTIAL_KINDS = ("dimensional", "prototype", "functional", "plateau")
EARLY_WARNING_KIND = "early_warning"
EVENT_KINDS = ("complete", "dimensional", "cluster", "uniform", "diverged", "knn_chance",
               "prototype", "functional", "plateau", EARLY_WARNING_KIND)

# Default level of every verdict and power statement (``--alpha`` of ``validate`` and ``report``).
ALPHA = 0.05
# Exit status of a command refused for bad input (a study, an option, a path), as argparse's own.
EXIT_USAGE = 2

# A trial's collapse grade, from least to most severe (partial is never folded into complete).
GRADES = ("none", "partial", "complete")
# The result key under which a trial reports its grade so far (every epoch's result line).
GRADE_KEY = "collapse_grade"

_T = TypeVar("_T")


def collapse_grade(status: str | None, events: Iterable[Mapping[str, Any]]) -> str:
    """``complete``, ``partial`` or ``none``: the one grading rule of the monitor, the driver and the report.

    ``complete`` when the trial's status is in :data:`COLLAPSE_STATUSES` (stopped as collapsed or
    diverged, or flagged collapsed with ``stop_on_collapse: false``) or any event has severity
    ``collapse``; else ``partial`` when any event has severity ``partial``; else ``none``. Warnings
    (early warning, RankMe, kNN at chance) never grade a trial.
    """
    severities = {str(event.get("severity", "")) for event in events}
    if status in COLLAPSE_STATUSES or "collapse" in severities:
        return "complete"
    return "partial" if "partial" in severities else "none"


def trial_status(last: Mapping[str, Any] | None, *, epochs: Any = None, errored: bool = False,
                 ray_status: str | None = None, has_params: bool = True, ended: bool = False) -> str:
    """er-tune status of a trial from its last result line and what else is known about it.

    Args:
        last: the trial's last ``result.json`` line (``None`` when it reported nothing).
        epochs: the epochs the trial was configured to run (``params.json``'s ``epochs``).
        errored: Ray gave up on the trial (``error.txt`` exists, or ``on_trial_error`` fired).
        ray_status: Ray's own status if known (``RUNNING``, ``PENDING``, ``TERMINATED``, ``ERROR``).
        has_params: whether the trial's ``params.json`` was written.
        ended: the caller knows the trial has ended (Ray called ``on_trial_complete``/``on_trial_error``).

    The rule, first match wins:

    1. ``stop_reason == "completed"`` with ``collapsed`` set -> ``collapsed`` (with
       ``collapse.stop_on_collapse: false`` the trial trains on after a collapse; it still collapsed);
    2. ``stop_reason`` in :data:`STOP_REASONS` -> that reason;
    3. errored, unless Ray says ``TERMINATED`` -> ``errored`` (a retried trial that then finished
       keeps the error.txt of its failed attempt);
    4. the last line's ``epoch`` equals ``epochs`` -> ``completed``;
    5. Ray says ``RUNNING`` or ``PENDING`` -> ``running`` / ``pending``;
    6. nothing written at all (no params, no result) -> ``running``: the trial started since Ray's
       last copy of its directory to the storage;
    7. no result line -> ``pending``, or ``early_stopped`` when the trial is known to have ended
       (stopped before its first result);
    8. otherwise -> ``early_stopped`` (ASHA stopped it).
    """
    row = last or {}
    reason = row.get("stop_reason") or ""
    if reason == "completed" and row.get("collapsed"):
        return "collapsed"
    if reason in STOP_REASONS:
        return reason
    if errored and ray_status != "TERMINATED":
        return "errored"
    if row and epochs is not None and row.get("epoch") == epochs:
        return "completed"
    if ray_status in ("RUNNING", "PENDING"):
        return ray_status.lower()
    if not ended and not row and not has_params and not errored:
        return "running"
    if not row and not ended:
        return "pending"
    return "early_stopped"


def metric_value(metrics: Mapping[str, Any] | None, metric: str) -> float | None:
    """``metrics[metric]`` as a finite float, else ``None`` (missing, non-numeric, NaN, Inf)."""
    value = (metrics or {}).get(metric)
    if isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def rank_key(status: str, value: float, mode: str) -> tuple[bool, float]:
    """Sort key of a candidate for a group's best configuration: larger is better.

    A collapsed or diverged trial ranks below every other, whatever its metric; then the metric,
    maximised or minimised per ``mode``.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode: {mode!r} is not allowed; allowed: max, min")
    return (status not in COLLAPSE_STATUSES, value if mode == "max" else -value)


def best_by_group(candidates: Iterable[tuple[Hashable, str, Mapping[str, Any] | None, _T]],
                  metric: str, mode: str) -> dict[Hashable, _T]:
    """Best candidate per condition group, the choice the replicate phase replicates.

    ``candidates``: ``(group, status, metrics, item)`` in trial order, ``status`` from
    :func:`trial_status` and ``metrics`` the trial's last result. Errored trials and trials without
    a finite ``metrics[metric]`` are ignored; the rest are ranked by :func:`rank_key`; ties keep
    the earlier trial. Returns ``{group: item}`` sorted by group.
    """
    best: dict[Hashable, tuple[tuple[bool, float], _T]] = {}
    for group, status, metrics, item in candidates:
        value = metric_value(metrics, metric)
        if status == "errored" or value is None or group is None:
            continue
        key = rank_key(status, value, mode)
        if group not in best or key > best[group][0]:
            best[group] = (key, item)
    return {group: item for group, (_, item) in sorted(best.items(), key=lambda entry: str(entry[0]))}


def check_alpha(alpha: Any) -> float:
    """A significance level given by the user: ``0 < alpha < 1``, else ``ValueError``."""
    if isinstance(alpha, bool) or not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"alpha: {alpha!r} is out of range; allowed: 0 < alpha < 1")
    return float(alpha)
