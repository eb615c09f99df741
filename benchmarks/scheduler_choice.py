"""The cost of one ``choose_trial_to_run`` call against the number of trials an experiment holds.

Ray Tune calls its scheduler's ``choose_trial_to_run`` at every step of the controller loop. Ray's
``FIFOScheduler`` (which ``ASHAScheduler`` inherits) walks the list of all trials, twice when none is
waiting; er-tune's :class:`er_tune.live_fifo.LiveFIFOScheduler` (inherited by ``GroupedASHA``)
looks only at the live trials. Side by side in one run, on a controller holding ``n`` ended trials,
8 running and 2 pending (as the driver-scale study does at 8 trials in flight): microseconds per
call for both, and their ratio. The two return the same trial (checked at every size).

Run: ``.venv/bin/python benchmarks/scheduler_choice.py``
"""

from __future__ import annotations

import time

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

from er_tune.live_fifo import LiveFIFOScheduler

SIZES = (100, 1_000, 10_000)
CALLS = 2_000


class _Trial:
    def __init__(self, index: int) -> None:
        self.trial_id, self.status = f"t{index:06d}", Trial.PENDING


class _Controller:
    """A TuneController's trial list and live set, built as a study fills them: each trial is
    added, runs and ends (leaving the live set) before the next ones; the last 10 are live."""

    def __init__(self, scheduler: LiveFIFOScheduler, ended: int) -> None:
        self.trials, self.live = [], set()
        for index in range(ended + 10):
            trial = _Trial(index)
            self.trials.append(trial)
            self.live.add(trial)
            scheduler.on_trial_add(self, trial)
            if index < ended:
                trial.status = Trial.TERMINATED
                self.live.discard(trial)
            elif index < ended + 8:
                trial.status = Trial.RUNNING

    def get_trials(self):
        return self.trials

    def get_live_trials(self):
        return self.live


def per_call_us(scheduler, controller) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        scheduler.choose_trial_to_run(controller)
    return (time.perf_counter() - start) / CALLS * 1e6


def main() -> None:
    print("| ended trials | Ray FIFOScheduler us/call | LiveFIFOScheduler us/call | ratio |")
    print("|---:|---:|---:|---:|")
    for size in SIZES:
        live = LiveFIFOScheduler()
        controller = _Controller(live, size)
        ray_fifo = FIFOScheduler()
        assert live.choose_trial_to_run(controller) is ray_fifo.choose_trial_to_run(controller)
        theirs, ours = per_call_us(ray_fifo, controller), per_call_us(live, controller)
        print(f"| {size:,} | {theirs:.1f} | {ours:.1f} | {theirs / ours:.1f}x |")


if __name__ == "__main__":
    main()
