"""Trackers, HParams sessions of errored trials, Optuna storages, RAY_ADDRESS.

One small Ray Tune run (a stand-in trainable, embedded Ray) drives er-tune's own callbacks:
Ray's MLflow logger against a real SQLite MLflow tracking store, Ray's W&B logger in offline
mode, and the driver-written HParams sessions, read back with TensorBoard's HParams plugin.
The smoke study's sessions and Optuna trials are checked in test_launch.py.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import pytest

from er_core.outcome import collapse_grade, reported_grade, trial_dirname
from er_core.rules import trial_status
from search_spaces import StudyError, load_study

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "studies" / "smoke.yaml"


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    import ray
    from ray import tune

    from er_tune.launch import trial_dirname as ray_trial_dirname
    from er_tune.observers import TrialSessions, disable_ray_tensorboard, logger_callbacks

    def stand_in(config):  # nested: Ray pickles it by value (workers cannot import tests/)
        """Two epochs of made-up metrics; ``fail`` raises after the first; writes a warning event."""
        from ray import tune

        from er_tune.tune_reporter import shared_trial_dir

        trial_dir = shared_trial_dir()
        for epoch in (1, 2):
            if config["fail"] and epoch == 2:
                raise RuntimeError("boom")
            if config["variant"] == "original" and epoch == 1:
                with open(os.path.join(trial_dir, "collapse_events.jsonl"), "a") as handle:
                    handle.write(json.dumps({"epoch": 1, "severity": "warning", "kind": "dimensional"}) + "\n")
            tune.report({"epoch": epoch, "knn_top1": 0.25 * epoch + 0.1 * (config["variant"] == "er"), "loss": 1.0 / epoch,
                         "stop_reason": "completed" if epoch == 2 else ""})

    root = tmp_path_factory.mktemp("tracked")
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    disable_ray_tensorboard()
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    loggers = {"mlflow": {"tracking_uri": tracking}, "wandb": {"project": "er-tune-test"}}
    callbacks = [*logger_callbacks(loggers, experiment="tracked", exp_dir=str(root / "exp")), TrialSessions()]
    for attempt in range(3):  # Ray gives a starting node 30 s: a loaded CI machine may need a retry
        try:
            ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
            break
        except Exception:  # noqa: BLE001 - "The current node timed out during startup"
            ray.shutdown()
            if attempt == 2:
                raise
    try:
        space = {"method": "simclr", "variant": tune.grid_search(["original", "er"]), "group": "g",
                 "grid_axes": ["batch_size"], "batch_size": 32, "phase": "search"}
        space["seed"] = 0  # concrete, as the study's searchers give it (a sample_from is unresolved in trial names)
        space["fail"] = tune.sample_from(lambda spec: spec.config["variant"] == "er")
        tuner = tune.Tuner(stand_in, param_space=space,
                           run_config=tune.RunConfig(name="search", storage_path=str(root / "exp"),
                                                     callbacks=callbacks, verbose=0),
                           tune_config=tune.TuneConfig(trial_dirname_creator=ray_trial_dirname,
                                                       trial_name_creator=ray_trial_dirname))
        results = tuner.fit()
    finally:
        ray.shutdown()
    return root, tracking, results


@pytest.mark.e2e
def test_mlflow_has_one_run_per_trial_with_params_and_metrics(tracked_run):
    import mlflow

    root, tracking, results = tracked_run
    client = mlflow.MlflowClient(tracking)
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    by_variant = {run.data.params["variant"]: run for run in runs}
    assert set(by_variant) == {"original", "er"}
    completed, errored = by_variant["original"], by_variant["er"]
    assert completed.info.status == "FINISHED" and errored.info.status == "FAILED"
    assert completed.info.run_name.startswith("simclr_original_batch_size=32_seed0_")
    history = client.get_metric_history(completed.info.run_id, "knn_top1")
    assert [(m.step, m.value) for m in history] == [(1, 0.25), (2, 0.5)]
    assert [m.value for m in client.get_metric_history(errored.info.run_id, "knn_top1")] == [0.35]
    assert completed.data.tags["er_tune_experiment"] == str(root / "exp")


@pytest.mark.e2e
def test_wandb_offline_runs_are_written_per_trial(tracked_run):
    root, _, _ = tracked_run
    runs = glob.glob(str(root / "exp" / "wandb" / "offline-run-*"))
    assert len(runs) == 2
    assert all(glob.glob(os.path.join(run, "*.wandb")) for run in runs)


@pytest.mark.e2e
def test_errored_trial_gets_an_hparams_session_too(tracked_run):
    from tensorboard_read import all_tags, hparams_sessions, scalars

    root, _, _ = tracked_run
    sessions = hparams_sessions(str(root / "exp"))
    assert len(sessions) == 2
    by_status = {s["hparams"]["status"]: s for s in sessions.values()}
    assert set(by_status) == {"completed", "errored"}
    assert by_status["completed"]["metrics"]["final/knn_top1"] == pytest.approx(0.5)
    assert by_status["errored"]["metrics"]["final/knn_top1"] == pytest.approx(0.35)
    assert by_status["errored"]["status"] == "STATUS_FAILURE"
    assert by_status["completed"]["hparams"]["collapse_grade"] == "none"  # a warning grades nothing
    assert by_status["errored"]["hparams"]["collapse_grade"] == "none"
    assert not [t for names in all_tags(str(root / "exp")).values() for t in names if t.startswith("ray/")]
    run = next(name for name, s in sessions.items() if s["hparams"]["status"] == "completed")
    assert scalars(str(root / "exp"), run, "final/epoch") == [(2, 2.0)]


def test_trial_writer_puts_collapse_events_on_the_epoch_axis_with_severity(tmp_path):
    from tensorboard_read import all_tags, scalars
    from trainers.tensorboard import TrialWriter

    writer = TrialWriter(str(tmp_path / "trial"))
    writer.collapse_event(3, "warning", "dimensional (rankme): rank fell")
    writer.collapse_event(5, "partial", "dimensional (rankme): rank fell further")
    writer.collapse_event(7, "collapse", "complete (std): std 0")
    writer.close()
    assert scalars(str(tmp_path), "trial", "collapse/severity") == [(3, 1.0), (5, 2.0), (7, 3.0)]
    texts = {f"collapse/{s}/text_summary" for s in ("warning", "partial", "collapse")}  # tensorboardX text tags
    assert texts <= all_tags(str(tmp_path))["trial"]


def test_status_grade_and_names():
    def ended(result, error=False):  # what the driver's searcher and TensorBoard writer ask
        return trial_status(result, errored=error, ended=True)
    assert ended({"stop_reason": ""}) == "early_stopped"
    assert ended({"stop_reason": "completed", "collapsed": True}) == "collapsed"
    assert ended({"stop_reason": "diverged"}) == "diverged"
    assert ended({"epoch": 1, "stop_reason": ""}, error=True) == "errored"
    # a trial that finished by itself keeps its status, as in the report (er_core.rules.trial_status)
    assert ended({"stop_reason": "completed"}, error=True) == "completed"
    assert ended(None) == "early_stopped"  # ended before its first result
    assert trial_status(None) == "pending" and trial_status(None, has_params=False) == "running"
    assert reported_grade({"collapse_grade": "partial"}) == "partial"
    assert reported_grade({"epoch": 3}) is None and reported_grade(None) is None
    assert collapse_grade({"stop_reason": "completed"}, []) == "none"
    assert collapse_grade({"stop_reason": ""}, [{"severity": "warning"}, {"severity": "partial"}]) == "partial"
    assert collapse_grade({"stop_reason": ""}, [{"severity": "collapse"}, {"severity": "warning"}]) == "complete"
    assert collapse_grade({"stop_reason": "completed", "collapsed": True}, []) == "complete"
    config = {"method": "byol", "variant": "er", "grid_axes": ["ema", "batch_size"], "ema": 0.99,
              "batch_size": 256, "seed": 3}
    assert trial_dirname(config, "ab12") == "byol_er_ema=0.99_batch_size=256_seed3_ab12"


# --- study keys ---------------------------------------------------------------------------------

def _study(tmp_path, extra: str):
    path = tmp_path / "study.yaml"
    path.write_text(SMOKE.read_text() + extra)
    return load_study(str(path))


def test_loggers_and_optuna_storage_keys(tmp_path):
    study = _study(tmp_path, "loggers: [mlflow, wandb]\n")
    assert dict(study.loggers) == {"mlflow": {}, "wandb": {}}
    study = _study(tmp_path, "loggers: {mlflow: {tracking_uri: 'sqlite:///m.db'}}\n")
    assert dict(study.loggers) == {"mlflow": {"tracking_uri": "sqlite:///m.db"}}
    assert load_study(str(SMOKE)).loggers == {} and load_study(str(SMOKE)).search.storage == ""
    with pytest.raises(StudyError, match="loggers: unknown logger 'tensorboard'"):
        _study(tmp_path, "loggers: [tensorboard]\n")
    with pytest.raises(StudyError, match="loggers.mlflow.uri: unknown option"):
        _study(tmp_path, "loggers: {mlflow: {uri: x}}\n")
    text = SMOKE.read_text().replace("search: {num_samples: 2,", "search: {storage: 'journal:/x/o.log', num_samples: 2,")
    (tmp_path / "j.yaml").write_text(text)
    assert load_study(str(tmp_path / "j.yaml")).search.storage == "journal:/x/o.log"
    (tmp_path / "bad.yaml").write_text(text.replace("journal:/x/o.log", "optuna.db"))
    with pytest.raises(StudyError, match="search.storage: not an Optuna storage"):
        load_study(str(tmp_path / "bad.yaml"))


def test_journal_storage_holds_intermediate_values_pruned_and_attrs(tmp_path):
    import optuna
    import optuna_dashboard

    from er_tune.grouped import GroupedOptunaSearcher
    from er_tune.grouped import optuna_storage

    journal = f"journal:{tmp_path / 'shared' / 'optuna.log'}"
    trials_dir = tmp_path / "exp" / "search"
    searcher = GroupedOptunaSearcher(load_study(str(SMOKE)), storage_dir=str(tmp_path / "unused"),
                                     storage=journal, trials_dir=str(trials_dir))
    configs = {tid: searcher.suggest(tid) for tid in ("a", "b")}
    stopped = trials_dir / trial_dirname(configs["b"], "b")  # never created: the grade is in the result
    searcher.on_trial_result("a", {"epoch": 1, "knn_top1": 0.2, "collapse_grade": "none"})
    searcher.on_trial_result("a", {"epoch": 1, "knn_top1": 0.2})  # a resumed trial re-reports
    searcher.on_trial_complete("a", {"epoch": 2, "knn_top1": 0.3, "stop_reason": "completed",
                                     "collapse_grade": "none"})
    searcher.on_trial_complete("b", {"epoch": 1, "knn_top1": 0.1, "stop_reason": "",  # ASHA stopped
                                     "collapse_grade": "partial"})
    assert not (tmp_path / "unused").exists()
    storage = optuna_storage(journal)
    summaries = optuna.get_all_study_summaries(storage)
    trials = {t.user_attrs["ray_trial_id"]: t
              for s in summaries for t in optuna.load_study(study_name=s.study_name, storage=storage).trials}
    assert trials["a"].state == optuna.trial.TrialState.COMPLETE and trials["a"].value == 0.3
    assert trials["a"].intermediate_values == {1: 0.2, 2: 0.3}
    assert trials["b"].state == optuna.trial.TrialState.PRUNED and trials["b"].intermediate_values == {1: 0.1}
    assert trials["b"].user_attrs["collapse_grade"] == "partial" and trials["a"].user_attrs["collapse_grade"] == "none"
    assert trials["b"].user_attrs["status"] == "early_stopped"
    assert trials["b"].user_attrs["ray_trial_dir"] == str(stopped)
    app = optuna_dashboard.wsgi(storage)
    assert dashboard_curves(app) == [True, True]


def dashboard_curves(app) -> list[bool]:
    """Per study, whether optuna-dashboard's API (its own WSGI app) has learning curves to draw."""
    import werkzeug.test
    from werkzeug.wrappers import Response

    client = werkzeug.test.Client(app, Response)
    response = client.get("/api/studies")
    assert response.status_code == 200
    curves = []
    for summary in json.loads(response.get_data())["study_summaries"]:
        detail = client.get(f"/api/studies/{summary['study_id']}")
        assert detail.status_code == 200
        curves.append(json.loads(detail.get_data())["has_intermediate_values"])
    return curves


# --- RAY_ADDRESS --------------------------------------------------------------------------------

class FakeRay:
    def __init__(self, fail: bool = False) -> None:
        self.calls, self.fail = [], fail

    def init(self, **kwargs):
        self.calls.append(kwargs)
        if self.fail:
            raise ConnectionError("no cluster at 10.0.0.1:6379")


def test_ray_address_is_honoured_like_ray_tools_do(monkeypatch):
    from er_tune.launch import cluster_address, init_ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster_address(None) is None and cluster_address("auto") == "auto"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # what `ray job submit` sets
    assert cluster_address(None) == "10.0.0.1:6379"
    assert cluster_address("auto") == "auto"  # --address wins
    fake = FakeRay()
    assert init_ray(fake, cluster_address(None)) is False
    assert fake.calls == [{"address": "10.0.0.1:6379", "logging_level": "WARNING"}]  # no num_cpus
    monkeypatch.setenv("RAY_ADDRESS", "local")
    fake = FakeRay()
    assert init_ray(fake, cluster_address(None)) is True
    assert fake.calls[0]["address"] == "local" and fake.calls[0]["num_cpus"] == os.cpu_count()


def test_unreachable_cluster_leaves_no_experiment_files(monkeypatch, tmp_path):
    import io

    import ray

    from er_tune.launch import StudyRunner

    fake = FakeRay(fail=True)
    monkeypatch.setattr(ray, "init", fake.init)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    runner = StudyRunner(load_study(str(SMOKE)), str(tmp_path / "exp"), address=None, stream=io.StringIO())
    with pytest.raises(ConnectionError):
        runner.run("all")
    assert fake.calls and "num_cpus" not in fake.calls[0]
    assert not (tmp_path / "exp" / "plan.json").exists() and not (tmp_path / "exp" / "study.yaml").exists()
