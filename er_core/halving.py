"""Successive-halving decisions that do not depend on which trial reports first.

Asynchronous successive halving (ASHA, Li et al. 2020) records a trial at rung ``m`` (its metric
at the first epoch >= ``m``) and stops it when its value falls below the ``1 - 1/eta`` quantile of
the values recorded at ``m`` *before it arrived*. Which rivals were there before it depends on the
machine's timing, so two runs of one study can keep different trials.

*Ordered* successive halving (``schedule: {asha: {mode: ordered}}``) makes the same decision as
if the trials of a condition group had arrived in the order they were created (their Optuna trial
number): trial ``k`` at rung ``m`` is compared with the values at ``m`` of trials ``0..k-1`` of its
group that reached ``m`` without being stopped at an earlier rung. When one of those has neither
reported at ``m`` nor ended, trial ``k``'s decision waits (it keeps training; the scheduler stops
it at its next result once the decision is STOP). The decisions are therefore a function of the
trials' learning curves alone. A trial that trained past a rung before its decision came (it
outran a slower predecessor) is treated, by every view that chooses a group's best configuration
(:func:`er_core.rules.best_by_group`), as if it had stopped at that rung.

Cutoff: ``q``-quantile with linear interpolation (numpy's default ``percentile``) of the recorded
values, ``q = 1 - 1/eta``; a NaN/Inf/missing metric is the worst value: it is replaced by
``min(finite) - 1`` so quantiles stay finite, and when no finite value is recorded nothing is
stopped. Ties (a value equal to the cutoff) continue.

Standard library only (floor 0): the scheduler (``er_tune.grouped``), the searcher and the rule
that chooses a group's best configuration all import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

MODES = ("async", "ordered")
# The decision of a trial at a rung cannot be made yet: an earlier trial of its group has not
# reported there nor ended.
UNDECIDED = -1


@dataclass(frozen=True)
class Halving:
    """What ordered successive halving needs to recompute its decisions from learning curves."""

    milestones: tuple[int, ...]  # ascending epochs of the rungs (the last epoch is not a rung)
    reduction_factor: int
    mode: str = "max"  # of the metric: max or min

    def sign(self) -> float:
        return 1.0 if self.mode == "max" else -1.0

    def to_dict(self) -> dict:
        return {"milestones": list(self.milestones), "reduction_factor": self.reduction_factor, "mode": self.mode}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Halving":
        return cls(tuple(int(m) for m in data["milestones"]), int(data["reduction_factor"]), str(data["mode"]))


def milestones(max_t: int, grace_period: int, reduction_factor: int) -> tuple[int, ...]:
    """Rung epochs ``grace * eta**k < max_t``, ascending (one bracket, as Ray's ``ASHAScheduler``)."""
    if not 1 <= grace_period <= max_t or reduction_factor < 2:
        raise ValueError("need 1 <= grace_period <= max_t and reduction_factor >= 2")
    out, rung = [], grace_period
    while rung < max_t:
        out.append(rung)
        rung *= reduction_factor
    return tuple(out)


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (``numpy.percentile(values, 100 q)``) of a non-empty list."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def stops_below_cutoff(score: float, recorded: Sequence[float], reduction_factor: int) -> bool:
    """ASHA's test: ``score`` (signed, higher is better, ``-inf`` for NaN/Inf/missing) is below the
    ``1 - 1/eta`` quantile of the ``recorded`` rivals; never when no rival has a finite value."""
    finite = [value for value in recorded if math.isfinite(value)]
    if not finite:
        return False
    floor = min(finite) - 1.0
    cutoff = quantile([value if math.isfinite(value) else floor for value in recorded], 1 - 1 / reduction_factor)
    return score < cutoff


def finite_float(value) -> float | None:
    """``value`` as a finite float, else ``None`` (missing, bool, non-numeric, NaN, Inf).

    The one parse of a reported number: :func:`epoch_of` here and ``er_core.rules.metric_value``."""
    if isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def epoch_of(row: Mapping) -> int | None:
    """A result line's ``epoch`` (else ``training_iteration``) as an int; None when missing or not a
    finite number (a pandas row of a line without it holds NaN)."""
    epoch = finite_float(row.get("epoch", row.get("training_iteration")))
    return None if epoch is None else int(epoch)


def score_curve(rows: Sequence[Mapping], metric: str, sign: float) -> dict[int, float]:
    """``{epoch: signed metric}`` of a trial's result lines, ``-inf`` where the metric is not a finite
    number (a later line of the same epoch, from a resumed trial, wins)."""
    curve: dict[int, float] = {}
    for row in rows:
        epoch = epoch_of(row)
        if epoch is None:
            continue
        value = row.get(metric)
        try:
            value = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            value = math.nan
        curve[int(epoch)] = sign * value if math.isfinite(value) else -math.inf
    return curve


def _at(curve: Mapping[int, float], rung: int) -> float | None:
    reached = [epoch for epoch in curve if epoch >= rung]
    return curve[min(reached)] if reached else None


def ordered_stops(curves: Sequence[Mapping[int, float]], ended: Sequence[bool], halving: Halving) -> list[int | None]:
    """Ordered successive halving over one group's trials, given in creation order.

    Args:
        curves: per trial ``{epoch: signed score}`` (:func:`score_curve`).
        ended: per trial, whether it will report nothing more.
        halving: the rungs and reduction factor.

    Returns, per trial, the rung at which it is stopped, ``None`` when it is not stopped at any rung
    it reached, or :data:`UNDECIDED` when an earlier trial's result at a rung it reached is still
    missing.
    """
    fate: list[int | None] = [None] * len(curves)
    for rung in halving.milestones:
        blocked = False  # an earlier trial may still report at this rung
        recorded: list[float] = []
        for index, curve in enumerate(curves):
            if fate[index] is not None:
                blocked = blocked or fate[index] == UNDECIDED
                continue
            score = _at(curve, rung)
            if score is None:
                blocked = blocked or not ended[index]
                continue
            if blocked:
                fate[index] = UNDECIDED
            elif stops_below_cutoff(score, recorded, halving.reduction_factor):
                fate[index] = rung
            recorded.append(score)
    return fate


class GroupCurves:
    """One condition group's learning curves by creation order, and which trials have ended: the
    bookkeeping the scheduler and the searcher each keep to apply :func:`ordered_stops` live."""

    def __init__(self) -> None:
        self.curves: dict[int, dict[int, float]] = {}
        self.ended: set[int] = set()

    def add(self, order: int) -> None:
        """A trial was created (it may still report at any rung)."""
        self.curves.setdefault(order, {})

    def report(self, order: int, epoch: int, score: float) -> None:
        self.curves.setdefault(order, {})[int(epoch)] = score

    def end(self, order: int) -> None:
        self.curves.setdefault(order, {})
        self.ended.add(order)

    def fates(self, halving: Halving) -> dict[int, int | None]:
        """``{order: rung it is stopped at, None, or UNDECIDED}`` (:func:`ordered_stops`)."""
        orders = sorted(self.curves)
        stops = ordered_stops([self.curves[order] for order in orders], [order in self.ended for order in orders],
                              halving)
        return dict(zip(orders, stops))
