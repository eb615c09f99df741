"""Ordered successive halving (er_core.halving, GroupedASHA mode ordered, the searcher's ordered
asks and tells) on synthetic result sequences: the decisions do not depend on the order results
arrive in. No Ray cluster, no training."""

import math
import random
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import yaml
from ray.tune.schedulers import TrialScheduler

from er_core.halving import UNDECIDED, Halving, milestones, ordered_stops, quantile
from er_tune.grouped import GroupedASHA, GroupedOptunaSearcher
from search_spaces import STUDIES_DIR, load_study

NAN, INF = math.nan, math.inf
# group G, max_t 8, grace 1, reduction 2: rungs at epochs 1, 2 and 4. In creation order:
CURVES = [
    [0.5, 0.6, 0.7, 0.75, 0.8, 0.8, 0.8, 0.8],   # first: nothing to compare with, never stopped
    [0.4, 0.9, 0.9],                              # 0.4 < 0.5 at rung 1
    [NAN, 0.9],                                   # NaN is the worst value at rung 1
    [0.6, 0.7, INF, 0.7, 0.9, 0.9],               # passes rungs 1 and 2; 0.7 < 0.725 at rung 4
    [0.55, 0.65, 0.7, 0.9, 0.9, 0.9, 0.9, 0.9],   # 0.65 ties rung 2's cutoff (continues), passes 4
]
FATES = [None, 1, 1, 4, None]


def trial(index: int):
    return SimpleNamespace(trial_id=f"t{index}", config={"group": "G", "optuna_trial": index})


def sequential():
    """Each trial runs alone, in creation order."""
    for index, curve in enumerate(CURVES):
        for epoch in range(1, len(curve) + 1):
            yield index, epoch


def reversed_round_robin():
    """All trials at once, the last created reporting first at every epoch."""
    for epoch in range(1, max(map(len, CURVES)) + 1):
        for index in reversed(range(len(CURVES))):
            if epoch <= len(CURVES[index]):
                yield index, epoch


def replay(scheduler: GroupedASHA, order) -> dict[str, int]:
    """Feed ``order``'s results; a STOP ends the trial. Returns the epoch each stopped trial got STOP."""
    stopped: dict[str, int] = {}
    for index in range(len(CURVES)):
        scheduler.on_trial_add(None, trial(index))
    for index, epoch in order:
        handle = trial(index)
        if handle.trial_id in stopped:
            continue
        last = epoch == len(CURVES[index])
        result = {"training_iteration": epoch, "epoch": epoch, "knn_top1": CURVES[index][epoch - 1],
                  **({"stop_reason": "completed"} if last else {})}
        if scheduler.on_trial_result(None, handle, result) == TrialScheduler.STOP:
            stopped[handle.trial_id] = epoch
            scheduler.on_trial_complete(None, handle, result)
        elif last:
            scheduler.on_trial_complete(None, handle, result)
    return stopped


def ordered() -> GroupedASHA:
    return GroupedASHA(metric="knn_top1", mode="max", max_t=8, grace_period=1, reduction_factor=2,
                       asha_mode="ordered")


def test_ordered_decisions_are_the_same_in_both_arrival_orders():
    first, second = ordered(), ordered()
    stopped_first = replay(first, sequential())
    stopped_second = replay(second, reversed_round_robin())
    halving = first.halving
    fates = [first.groups["G"].fates(halving)[i] for i in range(len(CURVES))]
    assert fates == FATES == [second.groups["G"].fates(halving)[i] for i in range(len(CURVES))]
    # run alone in creation order, each loser is stopped at the very rung that decided it
    assert stopped_first == {"t1": 1, "t2": 1, "t3": 4}
    # all at once, a loser may train past its rung while an earlier trial's result is missing, and
    # is stopped at its next result once the decision is made; the decision is the same
    assert set(stopped_second) <= {"t1", "t2", "t3"} and all(stopped_second[t] >= FATES[int(t[1:])]
                                                            for t in stopped_second)
    assert first.num_stopped == 3


def test_asynchronous_asha_decides_differently_in_the_two_orders():
    """The timing dependence the ordered mode removes (GroupedASHA's default, Ray's ASHA)."""
    def run(order):
        return replay(GroupedASHA(metric="knn_top1", mode="max", max_t=8, grace_period=1, reduction_factor=2), order)

    assert run(sequential()) != run(reversed_round_robin())


@pytest.mark.parametrize("seed", range(5))
def test_any_interleaving_gives_the_same_decisions(seed):
    """Random interleavings (each trial's epochs in order): the fates never change."""
    rng = random.Random(seed)
    queues = [[(index, epoch) for epoch in range(1, len(curve) + 1)] for index, curve in enumerate(CURVES)]
    events = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        events.append(queue.pop(0))
    scheduler = ordered()
    replay(scheduler, events)
    assert [scheduler.groups["G"].fates(scheduler.halving)[i] for i in range(len(CURVES))] == FATES


def test_a_decision_waits_for_an_earlier_trial_that_has_not_reported():
    halving = Halving((1, 2), 2, "max")
    # trial 0 has not reached rung 1 and runs on: trial 1's decision there waits
    assert ordered_stops([{}, {1: 0.1}], [False, False], halving) == [None, UNDECIDED]
    # trial 0 ended before rung 1 (collapsed at epoch 0): it is no rival, trial 1 is first there
    assert ordered_stops([{}, {1: 0.1}], [True, False], halving) == [None, None]
    # trial 0 reported at rung 1: trial 1 is compared with it
    assert ordered_stops([{1: 0.5}, {1: 0.1}], [False, False], halving) == [None, 1]
    # an undecided trial makes every later one at that rung wait too
    assert ordered_stops([{}, {1: 0.1}, {1: 0.9}], [False, False, False], halving) == [None, UNDECIDED, UNDECIDED]
    # all NaN at a rung: nothing to compare with, nobody stopped
    assert ordered_stops([{1: -INF}, {1: -INF}], [True, True], halving) == [None, None]


def test_min_mode_and_ties():
    low = GroupedASHA(metric="loss", mode="min", max_t=4, grace_period=1, reduction_factor=2, asha_mode="ordered")
    for index, loss in enumerate([1.0, 1.0, 2.0]):
        handle = SimpleNamespace(trial_id=f"x{index}", config={"group": "G", "optuna_trial": index})
        low.on_trial_add(None, handle)
        decision = low.on_trial_result(None, handle, {"training_iteration": 1, "epoch": 1, "loss": loss})
        assert decision == (TrialScheduler.STOP if loss == 2.0 else TrialScheduler.CONTINUE)


def test_quantile_is_numpys_linear_percentile():
    rng = random.Random(0)
    for _ in range(50):
        values = [rng.uniform(-1, 1) for _ in range(rng.randint(1, 9))]
        q = rng.random()
        assert quantile(values, q) == pytest.approx(float(np.percentile(values, 100 * q)))
    assert milestones(7, 2, 2) == (2, 4) and milestones(8, 1, 2) == (1, 2, 4) and milestones(3, 3, 2) == ()


def test_ordered_state_round_trips(tmp_path):
    scheduler = ordered()
    replay(scheduler, list(sequential())[:5])
    path = str(tmp_path / "asha.pkl")
    scheduler.save(path)
    restored = ordered()
    restored.restore(path)
    assert restored.groups["G"].curves == scheduler.groups["G"].curves


def ordered_study(tmp_path, num_samples: int):
    with open(f"{STUDIES_DIR}/smoke.yaml", encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    raw["search"]["num_samples"] = num_samples
    raw["schedule"] = {"max_epochs": 4, "asha": {"grace_period": 1, "reduction_factor": 2, "mode": "ordered"}}
    path = tmp_path / "ordered.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_study(str(path))


def test_ordered_searcher_asks_after_tpe_start_up_only_once_earlier_trials_are_told(tmp_path):
    study = ordered_study(tmp_path, num_samples=3)  # TPE start-up: 2 trials per group
    searcher = GroupedOptunaSearcher(study, storage_dir=str(tmp_path / "optuna"))
    configs = {f"t{i}": searcher.suggest(f"t{i}") for i in range(4)}  # start-up trials of both groups
    assert searcher.suggest("t4") is None  # trial 2 of each group waits for trials 0 and 1
    group = configs["t2"]["group"]
    assert configs["t0"]["group"] == group  # round robin: t0 and t2 are trials 0 and 1 of one group
    # trial 1 of the group ends (stopped at rung 1, 0.2) before trial 0 reached rung 1: its tell waits
    searcher.on_trial_result("t2", {"epoch": 1, "knn_top1": 0.2})
    searcher.on_trial_complete("t2", {"epoch": 1, "knn_top1": 0.2})
    assert searcher.deferred and searcher.suggest("t4") is None
    # trial 0 reports 0.5 at rung 1 and trains on: trial 1's fate (stopped at 1) is decided and told
    searcher.on_trial_result("t0", {"epoch": 1, "knn_top1": 0.5})
    assert not searcher.deferred
    told = searcher.optuna_study(group).trials
    assert told[1].state == optuna.trial.TrialState.PRUNED and told[1].intermediate_values == {1: 0.2}
    searcher.on_trial_result("t0", {"epoch": 2, "knn_top1": 0.6})
    searcher.on_trial_complete("t0", {"epoch": 4, "knn_top1": 0.7, "stop_reason": "completed"})
    assert searcher.optuna_study(group).trials[0].value == 0.7
    assert searcher.suggest("t4")["group"] == group and searcher.suggest("t5") is None


def test_ordered_searcher_drops_the_epochs_a_stopped_trial_trained_past_its_rung(tmp_path):
    study = ordered_study(tmp_path, num_samples=2)
    searcher = GroupedOptunaSearcher(study, storage_dir=str(tmp_path / "optuna"))
    first, _, second = (searcher.suggest(f"t{i}") for i in range(3))
    assert first["group"] == second["group"]
    for epoch, value in enumerate([0.1, 0.9, 0.9, 0.95], 1):  # trial 1 runs ahead of trial 0
        searcher.on_trial_result("t2", {"epoch": epoch, "knn_top1": value})
    searcher.on_trial_complete("t2", {"epoch": 4, "knn_top1": 0.95, "stop_reason": "completed"})
    searcher.on_trial_result("t0", {"epoch": 1, "knn_top1": 0.5})  # rung 1: 0.1 < 0.5, stopped there
    outran = searcher.optuna_study(first["group"]).trials[1]
    assert outran.state == optuna.trial.TrialState.PRUNED and outran.intermediate_values == {1: 0.1}
    assert outran.user_attrs["status"] == "early_stopped"


def test_result_lines_without_a_usable_epoch_are_skipped():
    from er_core.halving import score_curve
    from er_core.rules import metric_curve

    rows = [{"epoch": 1.0, "m": 0.5}, {"epoch": NAN, "m": 0.9}, {"m": 0.8}, {"epoch": "x", "m": 0.7},
            {"epoch": 2, "m": NAN}, {"training_iteration": 3, "m": 0.6}]
    assert metric_curve(rows, "m") == {1: 0.5, 3: 0.6}
    assert score_curve(rows, "m", -1.0) == {1: -0.5, 2: -INF, 3: -0.6}
