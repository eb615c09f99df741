"""GroupedASHA and GroupedOptunaSearcher on synthetic results: no Ray cluster, no training."""

import math
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from search_spaces import load_study
from er_tune.grouped import GroupedASHA, GroupedOptunaSearcher, optuna_storage

SMOKE = Path(__file__).resolve().parents[1] / "search_spaces" / "studies" / "smoke.yaml"
CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def trial(trial_id: str, group: str):
    return SimpleNamespace(trial_id=trial_id, config={"group": group})


def result(iteration: int, value: float, **extra):
    return {"training_iteration": iteration, "knn_top1": value, **extra}


@pytest.fixture
def asha():
    return GroupedASHA(metric="knn_top1", mode="max", max_t=8, grace_period=1, reduction_factor=2)


def test_milestones_follow_grace_and_reduction_factor(asha):
    assert asha.milestones == [4, 2, 1]


def test_trials_compete_only_inside_their_group(asha):
    a1, a2, b1 = trial("a1", "A"), trial("a2", "A"), trial("b1", "B")
    assert asha.on_trial_result(None, a1, result(1, 0.9)) == CONTINUE
    assert asha.on_trial_result(None, a2, result(1, 0.5)) == STOP  # below group A's median
    assert asha.on_trial_result(None, b1, result(1, 0.2)) == CONTINUE  # worst overall, first in B
    assert asha.num_stopped == 1


def test_min_mode_inverts_the_cut(asha):
    low = GroupedASHA(metric="loss", mode="min", max_t=8, grace_period=1, reduction_factor=2)
    assert low.on_trial_result(None, trial("x", "G"), {"training_iteration": 1, "loss": 1.0}) == CONTINUE
    assert low.on_trial_result(None, trial("y", "G"), {"training_iteration": 1, "loss": 0.5}) == CONTINUE
    assert low.on_trial_result(None, trial("z", "G"), {"training_iteration": 1, "loss": 2.0}) == STOP


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None])
def test_non_finite_or_missing_metric_is_the_worst_value(asha, bad):
    asha.on_trial_result(None, trial("good", "G"), result(1, 0.3))
    payload = {"training_iteration": 1} if bad is None else result(1, bad)
    assert asha.on_trial_result(None, trial("bad", "G"), payload) == STOP
    # and it does not poison the rung: a later trial is compared with the finite values only
    assert asha.on_trial_result(None, trial("next", "G"), result(1, 0.31)) == CONTINUE


def test_nan_first_in_rung_does_not_block_finite_trials(asha):
    assert asha.on_trial_result(None, trial("nan", "G"), result(1, math.nan)) == CONTINUE
    assert asha.on_trial_result(None, trial("ok", "G"), result(1, 0.1)) == CONTINUE


def test_collapsed_trial_is_recorded_but_never_stopped_by_the_scheduler(asha):
    asha.on_trial_result(None, trial("best", "G"), result(1, 0.9))
    collapsed = result(1, 0.05, collapsed=True, stop_reason="collapsed")
    assert asha.on_trial_result(None, trial("col", "G"), collapsed) == CONTINUE
    assert asha.rungs["G"][1]["col"] == pytest.approx(0.05)


def test_state_round_trips(asha, tmp_path):
    asha.on_trial_result(None, trial("a1", "A"), result(1, 0.9))
    path = str(tmp_path / "asha.pkl")
    asha.save(path)
    restored = GroupedASHA(metric="knn_top1", mode="max", max_t=8, grace_period=1, reduction_factor=2)
    restored.restore(path)
    assert restored.on_trial_result(None, trial("a2", "A"), result(1, 0.5)) == STOP


@pytest.fixture
def searcher(tmp_path):
    return GroupedOptunaSearcher(load_study(str(SMOKE)), storage_dir=str(tmp_path / "optuna"))


def test_searcher_interleaves_groups_and_finishes(searcher):
    study = searcher.study
    configs = [searcher.suggest(f"t{i}") for i in range(4)]
    assert [c["group"] for c in configs] == ["simclr/original/batch_size=32", "simclr/er/batch_size=32"] * 2
    for config in configs:
        assert config["phase"] == "search" and config["seed"] == study.search.trial_seed
        assert config["seed"] not in study.seeds  # no replicate re-runs a search trial
        assert 0.05 <= config["lr"] <= 0.5
        # smoke.yaml: SimCLR searches its temperature, SimCLR-ER its kappa (each reads only its own)
        own = "temperature" if config["variant"] == "original" else "kappa"
        assert config["searched"] == sorted(["lr", own]) and own in config
        assert config["epochs"] == study.schedule.max_epochs
    assert searcher.suggest("t5") == Searcher.FINISHED


def test_searcher_tells_optuna_values_and_failures(searcher):
    ids = [f"t{i}" for i in range(4)]
    configs = [searcher.suggest(i) for i in ids]
    searcher.on_trial_complete("t0", result(2, 0.42, stop_reason="completed"))
    searcher.on_trial_complete("t1", result(2, math.nan, stop_reason="completed"))
    searcher.on_trial_complete("t2", None, error=True)
    searcher.on_trial_complete("t3", result(2, 0.1, collapsed=True, stop_reason="collapsed"))
    original = searcher.optuna_study(configs[0]["group"])
    er = searcher.optuna_study(configs[1]["group"])
    assert [(t.state, t.value) for t in original.trials] == [
        (optuna.trial.TrialState.COMPLETE, 0.42), (optuna.trial.TrialState.FAIL, None)]
    assert [(t.state, t.value) for t in er.trials] == [
        (optuna.trial.TrialState.FAIL, None), (optuna.trial.TrialState.COMPLETE, 0.1)]
    assert searcher.storage_url == f"journal:{searcher.storage_dir}/journal.log"  # the default
    names = {s.study_name for s in optuna.get_all_study_summaries(optuna_storage(searcher.storage_url))}
    assert names == {"simclr/original/batch_size=32", "simclr/er/batch_size=32"}


def test_searcher_state_round_trips(searcher, tmp_path):
    searcher.suggest("t0")
    searcher.suggest("t1")
    path = str(tmp_path / "searcher.pkl")
    searcher.save(path)
    restored = GroupedOptunaSearcher(searcher.study, storage_dir=searcher.storage_dir)
    restored.restore(path)
    assert restored.suggested == searcher.suggested
    restored.on_trial_complete("t0", result(2, 0.3, stop_reason="completed"))  # suggested before the restore
    assert restored.optuna_study("simclr/original/batch_size=32").trials[0].value == 0.3
    # a snapshot older than the Optuna storage: the same trial completes again after a second restore
    again = GroupedOptunaSearcher(searcher.study, storage_dir=searcher.storage_dir)
    again.restore(path)
    again.on_trial_complete("t0", result(2, 0.9, stop_reason="completed"))  # already told: neither raises nor changes the value
    assert again.optuna_study("simclr/original/batch_size=32").trials[0].value == 0.3
    assert restored.suggest("t2")["group"] == "simclr/original/batch_size=32"
    assert restored.suggest("t3")["group"] == "simclr/er/batch_size=32"
    assert restored.suggest("t4") == Searcher.FINISHED


def test_per_group_samplers_are_seeded_and_reproducible(tmp_path):
    study = load_study(str(SMOKE))
    first = GroupedOptunaSearcher(study, storage_dir=str(tmp_path / "a")).suggest("t0")["lr"]
    second = GroupedOptunaSearcher(study, storage_dir=str(tmp_path / "b")).suggest("t0")["lr"]
    assert first == second


def test_an_experiment_begun_on_sqlite_keeps_its_sqlite_file(tmp_path):
    """The default storage became a journal file; an experiment whose ``optuna/optuna.db`` exists
    (begun before) is resumed on that file, its TPE history intact."""
    study = load_study(str(SMOKE))
    storage_dir = tmp_path / "optuna"
    storage_dir.mkdir()
    legacy = f"sqlite:///{storage_dir / 'optuna.db'}"
    group = "simclr/original/batch_size=32"
    old = optuna.create_study(study_name=group, storage=legacy, direction="maximize")
    old.add_trial(optuna.trial.create_trial(params={"lr": 0.1, "temperature": 0.1}, value=0.5, distributions={
        "lr": optuna.distributions.FloatDistribution(0.05, 0.5, log=True),
        "temperature": optuna.distributions.FloatDistribution(0.05, 0.5, log=True)}))
    searcher = GroupedOptunaSearcher(study, storage_dir=str(storage_dir))
    assert searcher.storage_url == legacy
    config = searcher.suggest("t0")
    assert config["group"] == group and config["optuna_trial"] == 1  # numbered after the old trial
    assert not (storage_dir / "journal.log").exists()
