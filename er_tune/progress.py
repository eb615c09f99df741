"""Terminal progress of a study during ``er-tune tune``: a live line per phase.

Ray's own reporter shows RUNNING/TERMINATED/ERROR; what a stability study needs is whether a trial
*completed*, was *early_stopped* by ASHA, *collapsed*, *diverged* or *errored*, how many are
running and waiting, when the phase will end and the best configuration of each group so far.
Each status comes from :func:`er_core.rules.trial_status` and each group's best from
:func:`er_core.rules.best_by_group` (metric and epoch at which it was compared), the rules ``er-tune status`` and the report use, so the three
views agree (``tests/test_rules_agree.py``).

A line is printed each time a trial ends, and at most every ``interval_s`` seconds while results
arrive (with ``verbosity >= 1``, every result)::

    [search] 7/16 ended | running 2 | pending 7 | completed 4 | collapsed 1 | ... | ETA 3m10s
      best knn_top1 (max) so far: byol/er 0.6120@3 | byol/original 0.5530@2 (collapsed)

Ray pickles a run's callbacks with the experiment (``tuner.pkl``) and uses the pickled copy when
``er-tune tune`` resumes it, so the callback pickles (its stream must be picklable: stdout, or
``er_tune.cli.Discard`` for ``-q``), restarts its clock when unpickled, and counts the
trials that ended before the resume, silently, at its first call.

ETA: the epochs still to run (``epochs`` of every trial not yet ended, minus those it has done)
divided by the phase's observed rate (epochs reported / seconds since the phase started); an upper
bound when ASHA stops trials early.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, TextIO

from ray.tune import Callback

from er_core.halving import Halving
from er_core.rules import COLLAPSE_STATUSES, ENDED_STATUSES, Candidate, best_by_group, trial_status
from reports.status import duration

_STDOUT = "<stdout>"


class StudyProgress(Callback):
    """Tune callback printing the live progress line of one phase (see the module docstring).

    Args:
        phase: ``search`` or ``replicate``.
        total: trials planned in the phase.
        stream: where the lines go.
        metric, mode: the study's search metric, for the best so far per group.
        max_epochs: epochs of a trial not yet created (for the ETA).
        verbosity: 0 a line per ended trial plus one every ``interval_s``; 1 a line per result too.
        interval_s: the least time between two lines not caused by a trial ending.
        clock: time source (tests pass a fake one).
    """

    def __init__(self, phase: str, total: int, stream: TextIO = sys.stdout, *, metric: str = "knn_top1",
                 mode: str = "max", max_epochs: int = 0, verbosity: int = 0, interval_s: float = 30.0,
                 clock=time.time, halving: Halving | None = None) -> None:
        self.phase = phase
        self.total = total
        self.stream = stream
        self.metric = metric
        self.mode = mode
        self.max_epochs = max_epochs
        self.verbosity = verbosity
        self.interval_s = interval_s
        self.clock = clock
        self.halving = halving
        self.counts: Counter[str] = Counter()
        self.running: set[str] = set()
        self._last: dict[str, dict[str, Any]] = {}
        self._rows: dict[str, list[dict[str, Any]]] = {}  # per trial: epoch and metric of each result
        self._config: dict[str, dict[str, Any]] = {}
        self._status: dict[str, str] = {}  # ended trials
        self._order: list[str] = []
        self._rebuild()
        self._started = clock()
        self._printed = self._started
        self._caught_up = False

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self.stream is sys.stdout or self.stream is sys.__stdout__:
            state["stream"] = _STDOUT  # whatever sys.stdout is in the process that resumes
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled by Ray for a resumed run: the phase's clock starts again."""
        if state.get("stream") == _STDOUT:
            state = {**state, "stream": sys.stdout}
        state.setdefault("_rows", {})  # a callback pickled by an experiment that predates a field gets its default
        state.setdefault("halving", None)
        self.__dict__.update(state)
        if "_index" not in state:  # pickled before the running sums existed
            self._rebuild()
        self._started = self._printed = self.clock()
        self._caught_up = False

    def _rebuild(self) -> None:
        """The running sums behind :meth:`snapshot`, from the per-trial records.

        A line is printed at every trial end, so a snapshot must not visit every trial seen: it
        keeps the epochs done so far, the trials not yet ended, and each group's best, recomputed
        (``best_by_group`` over that group's trials only: the rule is per group) only for the
        groups that had a result, a start or an end since the last snapshot."""
        self._index = {trial_id: index for index, trial_id in enumerate(self._order)}
        self._epochs = {trial_id: int((self._last.get(trial_id) or {}).get("epoch") or 0) for trial_id in self._order}
        self._done = sum(self._epochs.values())
        self._unended = {trial_id for trial_id in self._order if trial_id not in self._status}
        self._members: dict[Any, list[str]] = {}
        for trial_id in self._order:
            self._members.setdefault(self._config[trial_id].get("group"), []).append(trial_id)
        self._best: dict[Any, Any] = {}
        self._dirty = set(self._members)

    def _touch(self, trial_id: str) -> None:
        self._dirty.add(self._config[trial_id].get("group"))

    # ------------------------------------------------------------------ Ray Tune callback hooks
    def on_trial_start(self, iteration, trials, trial, **info):
        self._catch_up(trials, trial)
        self._see(trial)
        self.running.add(trial.trial_id)
        self._touch(trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._catch_up(trials, trial)
        self._see(trial)
        self.running.add(trial.trial_id)
        self._last[trial.trial_id] = result
        self._remember(trial.trial_id, result)
        if self.verbosity >= 1 or self.clock() - self._printed >= self.interval_s:
            self.emit()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._catch_up(trials, trial)
        self._end(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._catch_up(trials, trial)
        self._end(trial, errored=True)

    # ------------------------------------------------------------------ bookkeeping
    def _catch_up(self, trials, current) -> None:
        """Once: record the trials a resumed run found already ended (Ray restores them TERMINATED
        or ERROR and sends them no callback), so the counts are the phase's, not this run's."""
        if self._caught_up:
            return
        self._caught_up = True
        for trial in trials or ():
            if trial is current or trial.trial_id in self._status or trial.status not in ("TERMINATED", "ERROR"):
                continue
            self._see(trial)
            if trial.last_result:
                self._last[trial.trial_id] = trial.last_result
                self._remember(trial.trial_id, trial.last_result)
            self._record_end(trial, errored=trial.status == "ERROR")

    def _remember(self, trial_id: str, result: dict[str, Any]) -> None:
        self._rows.setdefault(trial_id, []).append(
            {key: result.get(key) for key in ("epoch", "training_iteration", self.metric)})
        epoch = int(result.get("epoch") or 0)
        self._done += epoch - self._epochs.get(trial_id, 0)
        self._epochs[trial_id] = epoch
        self._touch(trial_id)

    def _see(self, trial) -> None:
        if trial.trial_id not in self._config:
            self._index[trial.trial_id] = len(self._order)
            self._order.append(trial.trial_id)
            self._config[trial.trial_id] = dict(trial.config or {})
            self._members.setdefault(self._config[trial.trial_id].get("group"), []).append(trial.trial_id)
            self._unended.add(trial.trial_id)
            self._touch(trial.trial_id)

    def _record_end(self, trial, *, errored: bool) -> str:
        trial_id = trial.trial_id
        last = self._last.get(trial_id) or trial.last_result or None
        status = trial_status(last, epochs=self._config[trial_id].get("epochs"), errored=errored,
                              ray_status="ERROR" if errored else "TERMINATED")
        self._status[trial_id] = status
        self.running.discard(trial_id)
        self._unended.discard(trial_id)
        self._touch(trial_id)
        self.counts[status] += 1
        return status

    def _end(self, trial, *, errored: bool) -> None:
        self._see(trial)
        status = self._record_end(trial, errored=errored)
        config = self._config[trial.trial_id]
        self.emit(f"  <- {config.get('group', trial.trial_id)} seed {config.get('seed', '?')}: {status}")

    def status_of(self, trial_id: str) -> str:
        """The trial's status now (``running`` until it ends)."""
        if trial_id in self._status:
            return self._status[trial_id]
        return trial_status(self._last.get(trial_id), epochs=self._config.get(trial_id, {}).get("epochs"),
                            ray_status="RUNNING" if trial_id in self.running else "PENDING")

    def snapshot(self) -> dict[str, Any]:
        """Counts, ETA and best so far per group, as printed."""
        ended = sum(self.counts[name] for name in ENDED_STATUSES)
        running = len(self.running)
        pending = max(0, self.total - ended - running)
        done, remaining = self._done, 0
        for trial_id in self._unended:
            target = int(self._config[trial_id].get("epochs") or self.max_epochs)
            remaining += max(0, target - self._epochs.get(trial_id, 0))
        remaining += max(0, self.total - len(self._order)) * self.max_epochs
        elapsed = self.clock() - self._started
        rate = done / elapsed if elapsed > 0 and done else 0.0
        eta = remaining / rate if rate > 0 else (0.0 if not remaining else None)
        for group in self._dirty:
            candidates = [Candidate(group, self.status_of(trial_id),
                                    self._rows.get(trial_id) or [self._last.get(trial_id) or {}], trial_id,
                                    int(self._config[trial_id].get("optuna_trial") or 0))
                          for trial_id in self._members.get(group, ())]
            self._best.pop(group, None)
            self._best.update(best_by_group(candidates, self.metric, self.mode, self.halving))
        self._dirty.clear()
        best = {group: {"value": choice.value, "epoch": choice.epoch, "status": choice.status,
                        "trial": choice.item}
                for group, choice in sorted(self._best.items(), key=lambda entry: str(entry[0]))}
        return {"ended": ended, "running": running, "pending": pending, "counts": dict(self.counts),
                "epochs_done": done, "epochs_remaining": remaining, "eta_s": eta, "best": best}

    def render(self, suffix: str = "") -> str:
        snap = self.snapshot()
        parts = [f"[{self.phase}] {snap['ended']}/{self.total} ended", f"running {snap['running']}",
                 f"pending {snap['pending']}"]
        parts += [f"{name} {self.counts[name]}" for name in ENDED_STATUSES if self.counts[name]]
        parts.append(f"{duration(self.clock() - self._started)} elapsed")
        parts.append(f"ETA {duration(snap['eta_s'])}")
        lines = [" | ".join(parts) + suffix]
        if snap["best"]:
            groups = " | ".join(
                f"{group} {best['value']:.4f}@{best['epoch']}" + (f" ({best['status']})" if best["status"] in COLLAPSE_STATUSES
                                                  else "")
                for group, best in snap["best"].items())
            lines.append(f"  best {self.metric} ({self.mode}) so far: {groups}")
        return "\n".join(lines)

    def emit(self, suffix: str = "") -> None:
        self._printed = self.clock()
        print(self.render(suffix), file=self.stream, flush=True)
