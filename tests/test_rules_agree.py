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
# best per group: compared at the furthest epoch a trial of the group reached, so ASHA's stopped
# trial (0.6 at epoch 2) does not beat the completed one (0.5 at epoch 4); the collapsed trials'
# higher kNN ranks below any healthy trial; the errored trial is ignored; a group of collapsed
# trials only still has a best (the better one at their furthest epoch)
BEST = {"simclr/er": "done", "simclr/original": "coll", "byol/er": "noreason"}
BEST_AT = {"simclr/er": (4, 0.5), "simclr/original": (2, 0.8), "byol/er": (4, 0.3)}


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

    results = [ray_result(name, rows_of(name), params_of(name), errored) for name, (_, _, errored, _) in TRIALS.items()]
    chosen = best_by_group(results, "knn_top1", "max")
    assert {group: choice.item["trial"] for group, choice in chosen.items()} == BEST
    assert {group: (choice.epoch, choice.value) for group, choice in chosen.items()} == BEST_AT

    shown = experiment_status(str(experiment), now=1_800_000_100)["best"]
    assert {group: best["trial"] for group, best in shown.items()} == BEST
    assert {group: (best["epoch"], best["value"]) for group, best in shown.items()} == BEST_AT
    assert shown["simclr/original"]["status"] == "collapsed"

    live = live_progress().snapshot()["best"]
    assert {group: best["trial"] for group, best in live.items()} == BEST
    assert {group: (best["epoch"], best["value"]) for group, best in live.items()} == BEST_AT


def ray_result(name: str, rows: list[dict], config: dict, errored: bool = False) -> SimpleNamespace:
    """What Ray's ResultGrid gives the replicate phase for one trial."""
    return SimpleNamespace(config=config, metrics=rows[-1], metrics_dataframe=pd.DataFrame(rows),
                           error=RuntimeError("boom") if errored else None)


def test_minimising_ranks_the_other_way_and_collapse_still_ranks_last():
    def line(loss):
        return [{"epoch": 1, "loss": loss}]

    candidates = [("g", "completed", line(2.0), "high"), ("g", "completed", line(1.0), "low"),
                  ("g", "collapsed", line(0.1), "collapsed"), ("g", "errored", line(0.0), "errored"),
                  ("g", "completed", line(float("nan")), "nan"), ("h", "completed", line(3.0), "first"),
                  ("h", "completed", line(3.0), "tie")]
    items = lambda chosen: {group: choice.item for group, choice in chosen.items()}  # noqa: E731
    assert items(rules.best_by_group(candidates, "loss", "min")) == {"g": "low", "h": "first"}
    assert items(rules.best_by_group(candidates, "loss", "max")) == {"g": "high", "h": "first"}


def test_shared_names_come_from_one_place():
    import trainers.reporters
    from er_tune import cleanup
    from reports import discover, stats, status

    assert discover.PHASES is rules.PHASES and status.PHASES is rules.PHASES
    assert cleanup.CHECKPOINT_PREFIX is rules.CHECKPOINT_PREFIX
    assert trainers.reporters.CHECKPOINT_PREFIX is rules.CHECKPOINT_PREFIX
    assert stats.check_alpha is rules.check_alpha
    from er_tune import storage

    assert storage.ABANDONED_DIR is rules.ABANDONED_DIR and storage.EXPERIMENT_STATE_GLOB is rules.EXPERIMENT_STATE_GLOB
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


# A hidden synthetic search phase: group swav/er, 4 epochs, ASHA rungs at epochs 1 and 2. Two
# trials completed; ASHA stopped two others whose early kNN (0.60 at epoch 1, 0.70 at epoch 2)
# beats every completed trial's final kNN (0.50, 0.55). Compared at the same epoch, the best is the
# better completed trial at epoch 4; ranking each trial by its last metric picks "stop2".
SEARCH = {"full_a": [0.30, 0.40, 0.45, 0.50], "full_b": [0.20, 0.42, 0.50, 0.55],
          "stop1": [0.60], "stop2": [0.35, 0.70]}


def write_phase(exp, curves: dict[str, list[float]], group: str, halving: dict | None = None) -> list:
    """A search phase of ``curves`` (trial name -> kNN per epoch, creation order) on disk; returns
    the Ray-like results the replicate phase would get for it."""
    results = []
    for number, (name, knns) in enumerate(curves.items()):
        method, variant = group.split("/")
        params = {**TrialConfig(method=method, variant=variant, epochs=EPOCHS, seed=9).to_dict(), "study": "s",
                  "phase": "search", "group": group, "grid_axes": [], "searched": [], "trial": name,
                  "optuna_trial": number}
        rows = [{"epoch": epoch, "training_iteration": epoch, "knn_top1": knn, "trial_id": name,
                 "stop_reason": "completed" if epoch == EPOCHS else "", "collapsed": False,
                 "timestamp": 1_800_000_000 + 10 * epoch, "time_total_s": 10.0 * epoch}
                for epoch, knn in enumerate(knns, 1)]
        trial_dir = exp / "search" / name
        trial_dir.mkdir(parents=True)
        (trial_dir / "params.json").write_text(json.dumps(params))
        (trial_dir / "result.json").write_text("".join(json.dumps(row) + "\n" for row in rows))
        results.append(ray_result(name, rows, params))
    (exp / "plan.json").write_text(json.dumps({
        "study": "s", "metric": "knn_top1", "mode": "max", "groups": [group], "halving": halving,
        "phases": {"search": {"trials": len(curves), "max_epochs": EPOCHS}}}))
    return results


def three_views(exp, results, halving=None) -> dict[str, tuple[str, int, float, str]]:
    """(trial, epoch, value, status) of the group's choice in the replicate phase, ``er-tune status
    --json`` and the live progress line fed the same results."""
    from er_tune.launch import best_by_group
    from er_tune.progress import StudyProgress
    from reports.status import status_command

    views = {}
    chosen = best_by_group(results, "knn_top1", "max", halving)
    views["replicate"] = [(c.item["trial"], c.epoch, c.value, c.status) for c in chosen.values()]
    out = io.StringIO()
    assert status_command(str(exp), stream=out, as_json=True) == 0
    views["status"] = [(b["trial"], b["epoch"], b["value"], b["status"]) for b in json.loads(out.getvalue())["best"].values()]
    live = StudyProgress("search", len(results), io.StringIO(), metric="knn_top1", mode="max",
                         max_epochs=EPOCHS, clock=lambda: 100.0, halving=halving)
    for result in results:
        trial = SimpleNamespace(trial_id=result.config["trial"], config=result.config, last_result={})
        live.on_trial_start(0, [], trial)
        for row in result.metrics_dataframe.to_dict("records"):
            live.on_trial_result(0, [], trial, row)
        live.on_trial_complete(0, [], trial)
    views["live"] = [(b["trial"], b["epoch"], b["value"], b["status"]) for b in live.snapshot()["best"].values()]
    return views


def test_a_stopped_trials_early_metric_never_beats_a_completed_trials_final_one(tmp_path):
    results = write_phase(tmp_path / "exp", SEARCH, "swav/er")
    views = three_views(tmp_path / "exp", results)
    assert views == {view: [("full_b", 4, 0.55, "completed")] for view in ("replicate", "status", "live")}


def test_with_ordered_halving_a_trial_that_outran_its_rung_competes_as_stopped_there(tmp_path):
    from er_core.halving import Halving

    # ordered halving at rung 1 compares trial 1 (0.4) with trial 0 (0.5) and stops it; it trained
    # on to epoch 4 (0.99) before the decision came, and must not win with those epochs
    curves = {"first": [0.5, 0.6, 0.7, 0.8], "outran": [0.4, 0.9, 0.95, 0.99]}
    halving = Halving((1, 2), 2, "max")
    results = write_phase(tmp_path / "exp", curves, "swav/er", halving.to_dict())
    views = three_views(tmp_path / "exp", results, halving)
    assert views == {view: [("first", 4, 0.8, "completed")] for view in ("replicate", "status", "live")}
    from er_core import rules

    unhalved = rules.best_by_group([("g", "completed", r.metrics_dataframe.to_dict("records"), r.config["trial"])
                                    for r in results], "knn_top1", "max")
    assert unhalved["g"].item == "outran" and unhalved["g"].epoch == 4


def test_the_search_table_shows_the_choice_and_what_was_replicated(tmp_path):
    from reports.commands import report_command

    exp = tmp_path / "exp"
    results = write_phase(exp, SEARCH, "swav/er")

    def search_row(name):
        assert report_command(str(exp), out=str(tmp_path / name), plots=False, stream=io.StringIO(),
                              err=io.StringIO()) == 0
        return pd.read_parquet(tmp_path / name / "search.parquet").iloc[0]

    row = search_row("before")  # no best_configs.json: what was replicated is unknown
    assert (row["best_trial_id"], row["compared_epoch"], row["compared_metric"]) == ("full_b", 4, 0.55)
    assert row["replicated"] is None and pd.isna(row["replicated_trial_id"])
    assert row["best_knn_top1"] == 0.7  # the highest kNN at any epoch: stop2's, not the choice

    configs = {result.config["trial"]: result.config for result in results}
    (exp / "best_configs.json").write_text(json.dumps({"swav/er": configs["stop2"]}))  # last-metric rule's pick
    row = search_row("old_rule")
    assert not row["replicated"] and row["replicated_trial_id"] == "stop2"
    (exp / "best_configs.json").write_text(json.dumps({"swav/er": configs["full_b"]}))
    row = search_row("same_rule")
    assert row["replicated"] and row["replicated_trial_id"] == "full_b"


def test_what_resume_sets_aside_the_report_does_not_read_and_both_name_the_snapshot_alike(tmp_path):
    """``er-tune tune`` resumes a phase only with a Ray snapshot (``experiment_state-*.json``, the
    file the report reads statuses from) and otherwise sets the phase's trial folders aside; the
    report then reads only the trials of the fresh start."""
    from er_tune.storage import has_experiment_state, set_aside_unsnapshotted_trials
    from reports.discover import discover

    phase = tmp_path / "exp" / "replicate"

    def trial(name: str, epochs: int) -> None:
        (phase / name).mkdir(parents=True)
        (phase / name / "params.json").write_text(json.dumps({"phase": "replicate", "group": "g", "seed": 0}))
        (phase / name / "result.json").write_text("".join(
            json.dumps({"epoch": e, "knn_top1": 0.1 * e, "stop_reason": "completed" if e == epochs else ""}) + "\n"
            for e in range(1, epochs + 1)))

    (phase).mkdir(parents=True)
    (phase / "tuner.pkl").write_bytes(b"")
    trial("old_a", 1)
    trial("old_b", 2)
    assert not has_experiment_state(str(phase))
    assert set_aside_unsnapshotted_trials(str(phase)) == ["old_a", "old_b"]
    assert sorted(p.name for p in (phase / rules.ABANDONED_DIR).iterdir()) == ["old_a", "old_b"]
    trial("fresh", 3)
    (phase / rules.EXPERIMENT_STATE_GLOB.replace("*", "2026-12-07_12-00-00")).write_text('{"trial_data": []}')
    assert has_experiment_state(str(phase))
    trials, table = discover(str(tmp_path / "exp"))
    assert [os.path.basename(t.trial_dir) for t in trials] == ["fresh"]
    assert table.num_rows == 3


def test_result_rows_are_the_rows_to_dict_gives_value_for_value_and_type_for_type():
    """``launch.result_rows`` reads a trial's lines through one object array; what it returns must be
    what ``DataFrame.to_dict("records")`` returns: Python scalars, NaN where a line lacks a key."""
    from er_tune.launch import result_rows

    lines = [{"epoch": 1, "knn_top1": 0.25, "collapsed": False, "stop_reason": "", "config/lr": 0.1,
              "note": None, "rankme": float("nan")},
             {"epoch": 2, "knn_top1": 0.5, "collapsed": True, "stop_reason": "collapse", "config/lr": 0.1,
              "note": "x", "late_only": 7},
             {"epoch": 3, "knn_top1": float("inf"), "collapsed": False, "stop_reason": "completed",
              "config/lr": 0.1, "note": None, "late_only": 8}]
    frame = pd.DataFrame(lines)
    ours, pandas_rows = result_rows(SimpleNamespace(metrics_dataframe=frame, metrics=lines[-1])), frame.to_dict("records")
    assert len(ours) == 3 and [list(row) for row in ours] == [list(row) for row in pandas_rows]
    for mine, theirs in zip(ours, pandas_rows):
        for key, value in theirs.items():
            assert type(mine[key]) is type(value), key
            assert mine[key] == value or (value != value and mine[key] != mine[key]), key
    assert type(ours[0]["epoch"]) is int and type(ours[1]["collapsed"]) is bool
    assert ours[0]["late_only"] != ours[0]["late_only"] and ours[2]["late_only"] == 8.0  # NaN, as pandas fills it
    assert result_rows(SimpleNamespace(metrics_dataframe=pd.DataFrame(), metrics={"epoch": 4})) == [{"epoch": 4}]
