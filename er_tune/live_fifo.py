"""First in, first out over the live trials: Ray's FIFO choice without scanning every trial.

Ray Tune asks its scheduler at every step of the controller loop which trial to start next
(``choose_trial_to_run``). Ray's ``FIFOScheduler`` (and ``ASHAScheduler``, which inherits it) answers
by walking the list of *all* the experiment's trials, twice when none is waiting: O(n) per step,
O(n^2) per study. In a 10,000-trial study it was 35% of the driver's samples by 8,600 trials
(py-spy; README "The driver at scale"). In ray#15504 Ray's maintainers suspected the same loop and
were reluctant to query only the live trials, because a set of live trials has no FIFO order.

:class:`LiveFIFOScheduler` keeps that order itself: each ``on_trial_add`` (Ray calls it when a trial
joins the controller's list: created, restored, or moved to the end of the list to be retried)
numbers the trial, and the choice is the lowest-numbered PENDING trial, else PAUSED, among the
controller's live trials (not terminated: the running and waiting ones, a handful). That is the
trial Ray's scan returns, found in O(live) instead of O(n). A waiting trial this scheduler has not
numbered (not expected) falls back to Ray's scan.
"""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler


class LiveFIFOScheduler(FIFOScheduler):
    """:class:`ray.tune.schedulers.FIFOScheduler` choosing among live trials in the order added."""

    def __init__(self) -> None:
        super().__init__()
        self._added_order: dict[str, int] = {}  # trial_id -> position in the controller's list
        self._added_count = 0

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        self._added_order[trial.trial_id] = self._added_count
        self._added_count += 1

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        live = tune_controller.get_live_trials()
        for status in (Trial.PENDING, Trial.PAUSED):
            waiting = [trial for trial in live if trial.status == status]
            if not waiting:
                continue
            if any(trial.trial_id not in self._added_order for trial in waiting):
                return super().choose_trial_to_run(tune_controller)
            return min(waiting, key=lambda trial: self._added_order[trial.trial_id])
        return None

    def __setstate__(self, state: dict) -> None:
        # a scheduler pickled before these fields existed (an older experiment's tuner.pkl)
        state.setdefault("_added_order", {})
        state.setdefault("_added_count", 0)
        self.__dict__.update(state)
