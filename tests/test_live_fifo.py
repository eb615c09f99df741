"""LiveFIFOScheduler (er_tune/live_fifo.py) chooses the trial Ray's FIFOScheduler chooses, without
walking every trial of the experiment. No Ray cluster: a controller that keeps its trial list and
live set as Ray's TuneController does (add, status changes, stop, retry moving a trial to the end)."""

import pickle
import random

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

from er_tune.grouped import GroupedASHA
from er_tune.live_fifo import LiveFIFOScheduler

class Controller:
    """The parts of ray.tune.execution.tune_controller.TuneController a scheduler sees, with the
    same bookkeeping: ``add_trial`` appends and adds to the live set unless terminated, ``stop``
    discards from it, ``recover`` moves the trial to the end of the list and re-adds it."""

    def __init__(self, schedulers) -> None:
        self.trials: list = []
        self.live: set = set()
        self.schedulers = schedulers
        self.full_scans = 0

    def get_trials(self):
        self.full_scans += 1
        return self.trials

    def get_live_trials(self):
        return self.live

    def add_trial(self, trial) -> None:
        self.trials.append(trial)
        if trial.status != Trial.TERMINATED:
            self.live.add(trial)
        for scheduler in self.schedulers:
            scheduler.on_trial_add(self, trial)

    def stop(self, trial, status: str) -> None:
        trial.status = status
        self.live.discard(trial)

    def recover(self, trial) -> None:
        self.trials.remove(trial)
        self.trials.append(trial)
        trial.status = Trial.PENDING
        self.live.add(trial)
        for scheduler in self.schedulers:
            scheduler.on_trial_add(self, trial)


class FakeTrial:
    """What the schedulers read of a trial; hashed by identity, as Ray's Trial."""

    def __init__(self, index: int, status: str) -> None:
        self.trial_id, self.status = f"t{index:05d}", status
        self.config = {"group": "G", "optuna_trial": index}


def new_trial(index: int, status: str = Trial.PENDING) -> FakeTrial:
    return FakeTrial(index, status)


def test_the_choice_equals_rays_fifo_scan_over_random_histories():
    rng = random.Random(0)
    for history in range(20):
        ours = LiveFIFOScheduler()
        controller = Controller([ours])
        count = 0
        for _ in range(400):
            move = rng.random()
            live = list(controller.live)
            if move < 0.35 or not live:
                controller.add_trial(new_trial(count, rng.choice([Trial.PENDING, Trial.PENDING, Trial.PAUSED])))
                count += 1
            elif move < 0.65:
                rng.choice(live).status = rng.choice([Trial.RUNNING, Trial.PAUSED, Trial.PENDING])
            elif move < 0.9:
                controller.stop(rng.choice(live), rng.choice([Trial.TERMINATED, Trial.ERROR]))
            else:
                ended = [trial for trial in controller.trials if trial not in controller.live]
                if ended:
                    controller.recover(rng.choice(ended))
            expected = FIFOScheduler().choose_trial_to_run(controller)
            assert ours.choose_trial_to_run(controller) is expected, f"history {history}"


def test_pending_before_paused_and_in_the_order_trials_joined_the_list():
    ours = LiveFIFOScheduler()
    controller = Controller([ours])
    first, second, third = (new_trial(index, Trial.PAUSED) for index in range(3))
    for trial in (first, second, third):
        controller.add_trial(trial)
    assert ours.choose_trial_to_run(controller) is first
    third.status = Trial.PENDING
    assert ours.choose_trial_to_run(controller) is third  # a pending trial goes before paused ones
    controller.stop(first, Trial.ERROR)
    controller.recover(first)  # a retried trial moves to the end of Ray's list
    second.status = Trial.PENDING
    assert ours.choose_trial_to_run(controller) is second
    assert FIFOScheduler().choose_trial_to_run(controller) is second
    for trial in (first, second, third):
        controller.stop(trial, Trial.TERMINATED)
    assert ours.choose_trial_to_run(controller) is None


def test_a_choice_does_not_walk_the_ended_trials():
    ours = LiveFIFOScheduler()
    controller = Controller([ours])
    for index in range(5000):
        trial = new_trial(index, Trial.RUNNING)
        controller.add_trial(trial)
        controller.stop(trial, Trial.TERMINATED)
    waiting = new_trial(5000)
    controller.add_trial(waiting)
    controller.full_scans = 0
    assert ours.choose_trial_to_run(controller) is waiting
    assert controller.full_scans == 0
    assert FIFOScheduler().choose_trial_to_run(controller) is waiting
    assert controller.full_scans == 1  # Ray's: the list of all 5,001 trials


def test_a_waiting_trial_it_never_numbered_falls_back_to_rays_scan():
    ours = LiveFIFOScheduler()
    controller = Controller([])  # the scheduler is not told of the trials
    first, second = new_trial(0), new_trial(1)
    controller.add_trial(first)
    controller.add_trial(second)
    assert ours.choose_trial_to_run(controller) is first
    assert controller.full_scans == 1


def test_grouped_asha_chooses_the_same_way_and_unpickles_from_before_the_order_existed():
    asha = GroupedASHA(metric="knn_top1", mode="max", max_t=4, grace_period=1, reduction_factor=2,
                       asha_mode="ordered")
    controller = Controller([asha])
    trials = [new_trial(index) for index in range(3)]
    for trial in trials:
        controller.add_trial(trial)
    controller.full_scans = 0
    assert asha.choose_trial_to_run(controller) is trials[0]
    assert controller.full_scans == 0
    assert sorted(asha.groups["G"].curves) == [0, 1, 2]  # its own on_trial_add still ran
    old = GroupedASHA(metric="knn_top1", mode="max", max_t=4, grace_period=1, reduction_factor=2)
    del old.__dict__["_added_order"], old.__dict__["_added_count"]  # as pickled by an older version
    restored = pickle.loads(pickle.dumps(old))
    restored.on_trial_add(controller, trials[0])
    assert restored._added_order == {trials[0].trial_id: 0}
