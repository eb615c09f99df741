"""Rules that several views of a study share, each written once.

A trial's status is shown by the live progress line of ``er-tune tune``
(``er_tune.progress``), by ``er-tune status`` (``reports.status``) and in the report's
``trials`` table (``reports.discover``); the best configuration of a condition group is chosen by
the replicate phase (``er_tune.launch``) and shown by ``er-tune status``. When two views
decide the same thing with two copies of a rule the copies drift, so every view imports the rule
from here, and ``tests/test_rules_agree.py`` checks that the views give the same answers on
synthetic trials.

Standard library and :mod:`er_core.halving` only: no torch, no Ray (anything may import this module).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Mapping, NamedTuple, Sequence

from er_core.halving import UNDECIDED, Halving, epoch_of, finite_float, ordered_stops, score_curve

# A study's Ray Tune experiments, in the order they run: ``<experiment>/<phase>/``.
SEARCH, REPLICATE = PHASES = ("search", "replicate")
ALL_PHASES = "all"  # ``er-tune tune --phase``: one phase or both in order
PHASE_CHOICES = (*PHASES, ALL_PHASES)
# Ray Tune (and ``trainers.reporters.LocalReporter``) name a trial's checkpoints ``checkpoint_<n>``.
CHECKPOINT_PREFIX = "checkpoint_"
# Ray Tune's snapshot of a phase (one per driver start), which the report reads trial statuses from
# and ``er-tune tune`` requires before it resumes a phase; and where a phase resumed without one keeps
# the trial folders no snapshot named (a hidden folder: the report never reads it).
EXPERIMENT_STATE_GLOB = "experiment_state-*.json"
ABANDONED_DIR = ".abandoned"
# In a data-parallel trial's results: the id (hex) of the Ray placement group holding its Train
# workers, which the driver removes when the trial ends (er_tune.data_parallel); not a metric.
PLACEMENT_GROUP_KEY = "train_placement_group"
# The files of a trial directory: Ray Tune's (and LocalReporter's) configuration, one JSON result
# line per epoch and the error of a failed attempt; the trial's own collapse events (one JSON line
# per event) and start-up timings.
PARAMS_FILE, RESULT_FILE, ERROR_FILE = "params.json", "result.json", "error.txt"
EVENTS_FILE, STARTUP_FILE = "collapse_events.jsonl", "startup.json"
# The untrained network's evaluation (knn_top1 and the collapse diagnostics, measured once before the
# first step), written by ``trainers.trial.run_trial`` into the trial dir, read by the report.
UNTRAINED_FILE = "untrained.json"

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
# stop a trial; the early warning is a ``warning`` of kind ``early_warning`` (a ``collapse`` with
# ``collapse.stop_on_warning``); ``not_learned`` (the trial ended no better than its untrained
# network) is counted within partial.
SEVERITIES = ("warning", "partial", "collapse")
NOT_LEARNED_KIND = "not_learned"
PARTIAL_KINDS = ("dimensional", "prototype", "functional", "plateau", NOT_LEARNED_KIND)
EARLY_WARNING_KIND = "early_warning"
EVENT_KINDS = ("complete", "dimensional", "cluster", "uniform", "diverged", "knn_chance",
               "prototype", "functional", "plateau", NOT_LEARNED_KIND, EARLY_WARNING_KIND)

# Default level of every verdict and power statement (``--alpha`` of ``validate`` and ``report``).
ALPHA = 0.05
# Exit status of a command refused for bad input (a study, an option, a path), as argparse's own.
EXIT_USAGE = 2

# A trial's collapse grade, from least to most severe (partial is never folded into complete).
GRADES = ("none", "partial", "complete")
# Metrics every evaluation of every objective reports for the partial-collapse criteria (and the
# early warning); a result line without them comes from a trial that was never graded for partial
# collapse (reports/grades.py leaves its grade null).
GRADE_METRICS = ("rankme_projection", "knn_chance_p")
# The result key under which a trial reports its grade so far (every epoch's result line).
GRADE_KEY = "collapse_grade"

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
    return finite_float((metrics or {}).get(metric))


class Candidate(NamedTuple):
    """One trial competing for its group's best configuration.

    ``rows``: the trial's result lines in order (each with ``epoch`` and the metric); ``order``: its
    creation order within the group (the Optuna trial number), used by ordered successive halving
    and to break ties.
    """

    group: Hashable
    status: str
    rows: Sequence[Mapping[str, Any]]
    item: Any
    order: int = 0


@dataclass(frozen=True)
class Choice:
    """A group's best configuration: the trial (``item``), the epoch at which it was compared with
    its rivals, its metric there and its status (``early_stopped`` for a trial that ordered halving
    stopped at a rung it trained past)."""

    item: Any
    epoch: int
    value: float
    status: str


def metric_curve(rows: Iterable[Mapping[str, Any]], metric: str) -> dict[int, float]:
    """``{epoch: metric}`` over a trial's result lines, finite values only (later lines win)."""
    curve: dict[int, float] = {}
    for row in rows:
        epoch = epoch_of(row)
        if epoch is None:
            continue
        value = metric_value(row, metric)
        if value is None:
            curve.pop(int(epoch), None)
        else:
            curve[int(epoch)] = value
    return curve


def _halved(candidates: list[Candidate], metric: str, halving: Halving) -> list[tuple[str, dict[int, float]]]:
    """Each candidate's (status, curve) as ordered halving lets it stand: a trial that trained past
    the rung where it is stopped keeps only the epochs up to that rung and is ``early_stopped``."""
    ranked = sorted(range(len(candidates)), key=lambda i: (candidates[i].order, i))
    scores = [score_curve(candidates[i].rows, metric, halving.sign()) for i in ranked]
    ended = [candidates[i].status in ENDED_STATUSES for i in ranked]
    out: list[tuple[str, dict[int, float]]] = [("", {})] * len(candidates)
    for index, stop in zip(ranked, ordered_stops(scores, ended, halving)):
        status, curve = candidates[index].status, metric_curve(candidates[index].rows, metric)
        if stop is not None and stop != UNDECIDED and any(epoch > stop for epoch in scores[ranked.index(index)]):
            status, curve = "early_stopped", {e: v for e, v in curve.items() if e <= stop}
        out[index] = (status, curve)
    return out


def best_by_group(candidates: Iterable[Candidate | tuple], metric: str, mode: str,
                  halving: Halving | None = None) -> dict[Hashable, Choice]:
    """Best candidate per condition group: the configuration the replicate phase replicates.

    The rule: a trial's metric is compared only with its rivals' metric at the same epoch, at the
    furthest epoch any of them reached (ASHA's top rung), never an earlier epoch's metric with a
    later one's.

    1. Errored trials are ignored; a trial's epochs are those with a finite ``metric``.
    2. The pool is the group's healthy trials (not :data:`COLLAPSE_STATUSES`) that have a finite
       metric at some epoch; when there are none, its collapsed and diverged ones: a collapsed or
       diverged trial never beats a healthy one.
    3. The comparison epoch is the furthest epoch with a finite metric of any trial in the pool;
       the best is the trial of the pool with the best metric at that epoch (``mode`` max or
       min); ties go to the earlier trial (``order``, then the order given).

    With ``halving`` (ordered successive halving, :mod:`er_core.halving`), each trial's epochs
    beyond the rung at which it is stopped are dropped first, so a trial that outran its rung's
    decision competes as if it had stopped there.

    ``candidates``: :class:`Candidate` or ``(group, status, rows, item[, order])`` in trial order,
    ``status`` from :func:`trial_status`. Returns ``{group: Choice}`` sorted by group.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode: {mode!r} is not allowed; allowed: max, min")
    groups: dict[Hashable, list[Candidate]] = {}
    for candidate in candidates:
        candidate = Candidate(*candidate)
        if candidate.group is not None and candidate.status != "errored":
            groups.setdefault(candidate.group, []).append(candidate)
    sign = 1.0 if mode == "max" else -1.0
    chosen: dict[Hashable, Choice] = {}
    for group, members in groups.items():
        if halving is not None:
            standing = _halved(members, metric, halving)
        else:
            standing = [(member.status, metric_curve(member.rows, metric)) for member in members]
        healthy = [i for i, (status, curve) in enumerate(standing) if curve and status not in COLLAPSE_STATUSES]
        pool = healthy or [i for i, (_, curve) in enumerate(standing) if curve]
        if not pool:
            continue
        epoch = max(max(standing[i][1]) for i in pool)
        at_epoch = [i for i in pool if epoch in standing[i][1]]
        best = min(at_epoch, key=lambda i: (-sign * standing[i][1][epoch], members[i].order, i))
        chosen[group] = Choice(members[best].item, epoch, standing[best][1][epoch], standing[best][0])
    return {group: chosen[group] for group in sorted(chosen, key=str)}


def check_alpha(alpha: Any) -> float:
    """A significance level given by the user: ``0 < alpha < 1``, else ``ValueError``."""
    if isinstance(alpha, bool) or not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"alpha: {alpha!r} is out of range; allowed: 0 < alpha < 1")
    return float(alpha)
