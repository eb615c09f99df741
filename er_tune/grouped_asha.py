"""GroupedASHA: successive halving with rungs per condition group, behind Ray Tune's scheduler interface.

Two modes (``schedule: {asha: {mode: ...}}``):

- ``async`` (default): asynchronous successive halving (Li et al. 2020, one bracket, as Ray's
  ``ASHAScheduler`` does by default): a trial reaching a rung is compared with the values recorded
  there so far, i.e. with whichever rivals of its group reported first.
- ``ordered``: the decision :mod:`er_core.halving` makes as if the group's trials had reported in
  the order they were created (``trial.config['optuna_trial']``): a trial is compared with its
  predecessors' values at the rung, and waits (training on) while a predecessor has neither
  reported there nor ended; once decided, a STOP is returned at its next result. The decisions are
  a function of the learning curves alone, so the same study on the same machine keeps the same
  trials whatever the timing.

In both, a NaN/Inf/missing metric counts as the worst value, and a collapsed trial is not stopped
by the scheduler (it stops itself); its value simply counts in the rung. No trial is paused: a
paused trial would keep its place under the searcher's concurrency limit and could wait forever
for a rival that limit keeps from starting.
"""

from __future__ import annotations

import math

from ray.tune.schedulers import TrialScheduler

from er_core.halving import MODES, UNDECIDED, GroupCurves, Halving, milestones, stops_below_cutoff
from er_core.io import dump_state, load_state
from er_core.rules import metric_value
from er_tune.live_fifo import LiveFIFOScheduler
from search_spaces.study import Study


class GroupedASHA(LiveFIFOScheduler):
    """Successive halving with rungs per condition group (``trial.config['group']``); the next trial
    to start is chosen as Ray's FIFO scheduler would, among live trials only (:mod:`er_tune.live_fifo`)."""

    def __init__(self, *, metric: str, mode: str, max_t: int, grace_period: int, reduction_factor: int,
                 time_attr: str = "training_iteration", asha_mode: str = "async") -> None:
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if asha_mode not in MODES:
            raise ValueError(f"asha_mode: {asha_mode!r} is not allowed; allowed: {', '.join(MODES)}")
        self._metric, self._mode, self.time_attr = metric, mode, time_attr
        self.max_t, self.reduction_factor = max_t, reduction_factor
        self.sign = 1.0 if mode == "max" else -1.0
        rungs = milestones(max_t, grace_period, reduction_factor)
        self.milestones = sorted(rungs, reverse=True)
        self.halving = Halving(rungs, reduction_factor, mode) if asha_mode == "ordered" else None
        self.rungs: dict[str, dict[int, dict[str, float]]] = {}
        self.groups: dict[str, GroupCurves] = {}  # ordered mode: curves by creation order
        self.num_stopped = 0

    @classmethod
    def from_study(cls, study: Study) -> "GroupedASHA":
        return cls(metric=study.search.metric, mode=study.search.mode, max_t=study.schedule.max_epochs,
                   grace_period=study.schedule.grace_period, reduction_factor=study.schedule.reduction_factor,
                   asha_mode=study.schedule.asha_mode)

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def score(self, result: dict) -> float:
        """Signed metric, higher is better; NaN/Inf/missing is the worst possible value."""
        value = metric_value(result, self._metric)
        return -math.inf if value is None else self.sign * value

    # ------------------------------------------------------------------ asynchronous
    def _record(self, trial, result: dict) -> str:
        if self.time_attr not in result:
            return TrialScheduler.CONTINUE
        group = (trial.config or {}).get("group", "")
        rungs = self.rungs.setdefault(group, {m: {} for m in self.milestones})
        now, score = result[self.time_attr], self.score(result)
        for milestone in self.milestones:
            recorded = rungs[milestone]
            if now < milestone or trial.trial_id in recorded:
                continue
            stop = stops_below_cutoff(score, list(recorded.values()), self.reduction_factor)
            recorded[trial.trial_id] = score
            return TrialScheduler.STOP if stop else TrialScheduler.CONTINUE
        return TrialScheduler.CONTINUE

    # ------------------------------------------------------------------ ordered
    @staticmethod
    def _place(trial) -> tuple[str, int]:
        config = trial.config or {}
        return config.get("group", ""), int(config.get("optuna_trial") or 0)

    def _ordered(self, trial, result: dict | None, *, ended: bool) -> str:
        group, order = self._place(trial)
        curves = self.groups.setdefault(group, GroupCurves())
        epoch = (result or {}).get("epoch", (result or {}).get(self.time_attr))
        if epoch is not None:
            curves.report(order, int(epoch), self.score(result))
        if ended:
            curves.end(order)
            return TrialScheduler.CONTINUE
        fate = curves.fates(self.halving).get(order)
        return TrialScheduler.STOP if fate not in (None, UNDECIDED) else TrialScheduler.CONTINUE

    # ------------------------------------------------------------------ Ray Tune hooks
    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        if self.halving is not None:
            group, order = self._place(trial)
            self.groups.setdefault(group, GroupCurves()).add(order)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        ends = bool(result.get("stop_reason"))  # completed, collapsed, diverged: it ends by itself
        if self.halving is not None:
            action = self._ordered(trial, result, ended=ends)
        else:
            action = self._record(trial, result)
        if ends:
            return TrialScheduler.CONTINUE
        if action == TrialScheduler.STOP:
            self.num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if self.halving is not None:
            self._ordered(trial, result, ended=True)
        elif result:
            self._record(trial, result)

    def on_trial_error(self, tune_controller, trial) -> None:
        # Ray also calls this for a trial it is about to retry from its checkpoint; only a trial it
        # gives up on has ended (and later trials stop waiting for its results).
        if self.halving is not None and not _will_retry(trial):
            self._ordered(trial, None, ended=True)

    def on_trial_remove(self, tune_controller, trial) -> None:
        if self.halving is not None:
            self._ordered(trial, None, ended=True)

    def debug_string(self) -> str:
        return (f"GroupedASHA ({'ordered' if self.halving else 'async'}): {max(len(self.rungs), len(self.groups))} "
                f"groups, milestones {self.milestones}, stopped {self.num_stopped}")

    def save(self, checkpoint_path: str) -> None:
        dump_state(checkpoint_path, {"rungs": self.rungs, "num_stopped": self.num_stopped,
                                     "groups": {name: (curves.curves, sorted(curves.ended))
                                                for name, curves in self.groups.items()}})

    def restore(self, checkpoint_path: str) -> None:
        state = load_state(checkpoint_path)
        self.rungs, self.num_stopped = state["rungs"], state["num_stopped"]
        self.groups = {}
        for name, (curves, ended) in state.get("groups", {}).items():
            self.groups[name] = GroupCurves()
            self.groups[name].curves, self.groups[name].ended = curves, set(ended)

    def __setstate__(self, state: dict) -> None:
        state.setdefault("groups", {})  # a scheduler pickled by an experiment that predates a field gets its default
        state.setdefault("halving", None)
        super().__setstate__(state)


def _will_retry(trial) -> bool:
    try:
        return bool(trial.should_recover())
    except Exception:  # noqa: BLE001 - a Ray-internal method: when unsure, keep waiting for the trial
        return True
