"""The views of a study agree: each rule of er_core/rules.py gives the same answer wherever it is shown.

A trial's status in the live progress line of ``er-tune tune`` (StudyProgress fed Ray-like
callbacks), in ``er-tune status`` and in the report's ``trials`` table; the best configuration
per group chosen for the replicate phase (``launch.best_by_group`` on Ray-like results), shown by
``er-tune status`` and by the progress line; and the small shared names (phases, checkpoint
prefix, objective names, the alpha range), all on the same synthetic trials.
"""

from __future__ import annotations

import io
import json
import os
from types import SimpleNamespace

import pandas as pd
import pytest

from er_core import rules
from er_core.config import METHODS, VARIANTS, TrialConfig, objective_name

EPOCHS = 4
# name: (group, rows as (knn_top1, stop_reason, collapsed) per epoch, errored, expected status)
TRIALS = {
    "done": ("simclr/er", [(0.2, "", False), (0.3, "", False), (0.4, "", False), (0.5, "completed", False)],
             False, "completed"),
    # stop_on_collapse: false -> trains to the end with stop_reason "completed", but it collapsed
    "collapsed_on": ("simclr/er", [(0.3, "", False), (0.9, "", True), (0.9, "", True), (0.9, "completed", True)],
                     False, "collapsed"),
    "asha": ("simclr/er", [(0.4, "", False), (0.6, "", False)], False, "early_stopped"),
    "boom": ("simclr/er", [(0.95, "", False)], True, "errored"),
    "coll": ("simclr/original", [(0.5, "", False), (0.8, "collapsed", True)], False, "collapsed"),
    "div": ("simclr/original", [(0.7, "diverged", True)], False, "diverged"),
    "noreason": ("byol/er", [(0.1, "", False), (0.2, "", False), (0.3, "", False), (0.3, "", False)],
                 False, "completed"),
}
# best per group: the collapsed trials' higher kNN ranks below any healthy trial; the errored
# trial is ignored; a group of collapsed trials only still has a best (the higher one)
BEST = {"simclr/er": "asha", "simclr/original": "coll", "byol/er": "noreason"}


def rows_of(name: str) -> list[dict]:
    _, rows, _, _ = TRIALS[name]
    return [{"epoch": epoch, "knn_top1": knn, "stop_reason": reason, "collapsed": collapsed, "trial_id": name,
             "timestamp": 1_800_000_000 + 10 * epoch, "time_total_s": 10.0 * epoch, "training_iteration": epoch}
            for epoch, (knn, reason, collapsed) in enumerate(rows, 1)]


def params_of(name: str) -> dict:
    group = TRIALS[name][0]
    method, variant = group.split("/")
    seed = list(TRIALS).index(name)  # no seed in both variants: the report pairs none
    return {**TrialConfig(method=method, variant=variant, epochs=EPOCHS, seed=seed).to_dict(), "study": "agree",
            "phase": "search", "group": group, "grid_axes": [], "searched": [], "trial": name}


@pytest.fixture()
def experiment(tmp_path):
    exp = tmp_path / "exp"
    search = exp / "search"
    for name, (_, _, errored, _) in TRIALS.items():
        trial_dir = search / name
        trial_dir.mkdir(parents=True)
        (trial_dir / "params.json").write_text(json.dumps(params_of(name)))
        (trial_dir / "result.json").write_text("".join(json.dumps(row) + "\n" for row in rows_of(name)))
        if errored:
            (trial_dir / "error.txt").write_text("RuntimeError: boom\n")
    (exp / "plan.json").write_text(json.dumps({
        "study": "agree", "metric": "knn_top1", "mode": "max", "groups": sorted(BEST),
        "phases": {"search": {"trials": len(TRIALS), "max_epochs": EPOCHS},
                   "replicate": {"trials": 0, "max_epochs": EPOCHS}}}))
    return exp


def live_progress() -> "StudyProgress":  # noqa: F821
    """StudyProgress fed the callbacks Ray Tune would send for TRIALS."""
    from er_tune.progress import StudyProgress

    progress = StudyProgress("search", len(TRIALS), io.StringIO(), metric="knn_top1", mode="max",
                             max_epochs=EPOCHS, clock=lambda: 100.0)
    for name, (_, _, errored, _) in TRIALS.items():
        trial = SimpleNamespace(trial_id=name, config=params_of(name), last_result={})
        progress.on_trial_start(0, [], trial)
        for row in rows_of(name):
            progress.on_trial_result(0, [], trial, row)
            trial.last_result = row
        (progress.on_trial_error if errored else progress.on_trial_complete)(0, [], trial)
    return progress


def test_trial_status_is_the_same_live_in_status_and_in_the_report(experiment, tmp_path):
    from reports.commands import report_command
    from reports.discover import discover, trial_status
    from reports.status import experiment_status

    expected = {name: spec[3] for name, spec in TRIALS.items()}
    trials, _ = discover(str(experiment))
    assert {os.path.basename(t.trial_dir): trial_status(t) for t in trials} == expected

    assert report_command(str(experiment), out=str(tmp_path / "report"), plots=False,
                          stream=io.StringIO(), err=io.StringIO()) == 0
    table = pd.read_parquet(tmp_path / "report" / "trials.parquet").set_index("trial_id")
    assert table["status"].to_dict() == expected

    progress = live_progress()
    assert {name: progress.status_of(name) for name in TRIALS} == expected
    assert dict(progress.counts) == dict(pd.Series(expected).value_counts())

    counts = experiment_status(str(experiment), now=1_800_000_100)["phases"]["search"]["counts"]
    assert {state: n for state, n in counts.items() if n} == dict(pd.Series(expected).value_counts())
    assert "collapsed 2" in progress.render() and "completed 2" in progress.render()


def test_the_old_live_rule_called_a_collapse_with_stop_on_collapse_off_completed():
    last = rows_of("collapsed_on")[-1]
    assert last["stop_reason"] == "completed" and last["collapsed"]
    assert rules.trial_status(last, epochs=EPOCHS, ray_status="TERMINATED") == "collapsed"


def test_best_configuration_per_group_is_the_same_for_replicate_status_and_live(experiment):
    from er_tune.launch import best_by_group
    from reports.status import experiment_status

    results = [SimpleNamespace(config=params_of(name), metrics=rows_of(name)[-1],
                               error=RuntimeError("boom") if errored else None)
               for name, (_, _, errored, _) in TRIALS.items()]
    chosen = {group: config["trial"] for group, config in best_by_group(results, "knn_top1", "max").items()}
    assert chosen == BEST

    shown = experiment_status(str(experiment), now=1_800_000_100)["best"]
    assert {group: best["trial"] for group, best in shown.items()} == BEST
    assert shown["simclr/original"]["status"] == "collapsed" and shown["simclr/er"]["value"] == 0.6

    live = live_progress().snapshot()["best"]
    assert {group: best["trial"] for group, best in live.items()} == BEST
    assert {group: best["value"] for group, best in live.items()} == {g: b["value"] for g, b in shown.items()}


def test_minimising_ranks_the_other_way_and_collapse_still_ranks_last():
    candidates = [("g", "completed", {"loss": 2.0}, "high"), ("g", "completed", {"loss": 1.0}, "low"),
                  ("g", "collapsed", {"loss": 0.1}, "collapsed"), ("g", "errored", {"loss": 0.0}, "errored"),
                  ("g", "completed", {"loss": float("nan")}, "nan"), ("h", "completed", {"loss": 3.0}, "first"),
                  ("h", "completed", {"loss": 3.0}, "tie")]
    assert rules.best_by_group(candidates, "loss", "min") == {"g": "low", "h": "first"}
    assert rules.best_by_group(candidates, "loss", "max") == {"g": "high", "h": "first"}


def test_shared_names_come_from_one_place():
    import trainers.reporters
    from er_tune import cleanup
    from reports import discover, stats, status

    assert discover.PHASES is rules.PHASES and status.PHASES is rules.PHASES
    assert cleanup.CHECKPOINT_PREFIX is rules.CHECKPOINT_PREFIX
    assert trainers.reporters.CHECKPOINT_PREFIX is rules.CHECKPOINT_PREFIX
    assert stats.check_alpha is rules.check_alpha
    for method in METHODS:
        for variant in VARIANTS:
            name = objective_name(method, variant)
            assert TrialConfig(method=method, variant=variant).objective == name
            assert name == (method if variant == "original" else f"{method}_er")


def test_the_report_names_objectives_as_the_config_does(experiment, tmp_path):
    from reports.commands import report_command

    report_command(str(experiment), out=str(tmp_path / "r"), plots=False, stream=io.StringIO(), err=io.StringIO())
    table = pd.read_parquet(tmp_path / "r" / "trials.parquet")
    assert sorted(set(table["objective"])) == ["byol_er", "simclr", "simclr_er"]


@pytest.mark.parametrize("alpha", [0, 1, 1.5, -0.1, True, "0.05"])
def test_validate_and_report_reject_the_same_alphas_with_the_same_words(alpha, experiment, capsys):
    from reports.commands import report_command
    from search_spaces import STUDIES_DIR, validate_command

    with pytest.raises(ValueError) as rejected:
        rules.check_alpha(alpha)
    assert validate_command(os.path.join(STUDIES_DIR, "smoke.yaml"), alpha=alpha) == 2
    from_validate = capsys.readouterr().err
    err = io.StringIO()
    assert report_command(str(experiment), plots=False, alpha=alpha, stream=io.StringIO(), err=err) == 2
    message = str(rejected.value)
    assert message in from_validate and message in err.getvalue()
    assert "allowed: 0 < alpha < 1" in message


def test_valid_alphas_pass_unchanged():
    assert rules.check_alpha(0.05) == 0.05 and rules.check_alpha(0.5) == 0.5


GRADE_CASES = [  # (last result line, events' (kind, severity)) -> expected grade
    ({"epoch": 3, "stop_reason": "completed"}, [], "none"),
    ({"epoch": 3, "stop_reason": "completed"}, [("early_warning", "warning"), ("knn_chance", "warning")], "none"),
    ({"epoch": 3, "stop_reason": "completed"}, [("prototype", "partial")], "partial"),
    ({"epoch": 2, "stop_reason": ""}, [("dimensional", "partial"), ("functional", "partial")], "partial"),
    ({"epoch": 2, "stop_reason": "collapsed"}, [("prototype", "partial"), ("complete", "collapse")], "complete"),
    ({"epoch": 1, "stop_reason": "diverged"}, [("diverged", "collapse")], "complete"),
]


@pytest.mark.parametrize("last,kinds,expected", GRADE_CASES)
def test_monitor_driver_and_report_grade_a_trial_alike(last, kinds, expected):
    """The trial's own CollapseMonitor, the driver (HParams session, Optuna user attribute) and the
    report's trials table give one grade: er_core.rules.collapse_grade."""
    from er_core.collapse import CollapseEvent, CollapseMonitor
    from er_core.config import CollapseConfig
    from er_core.outcome import collapse_grade as driver_grade
    from reports.grades import collapse_grade as report_grade

    events = [CollapseEvent("d", kind, severity, 1, 1, 0.0, 0.0, "") for kind, severity in kinds]
    monitor = CollapseMonitor(CollapseConfig(), discrete=False, num_classes=10)
    monitor.events.extend(events)
    dicts = [event.to_dict() for event in events]
    status = rules.trial_status(last, epochs=3)
    assert monitor.grade == expected
    assert driver_grade(last, dicts) == expected
    assert report_grade(status, dicts, None).grade == expected
