"""The study service end to end on embedded Ray: both phases, trial files, resume after SIGKILL.

One small module-scoped experiment of ``smoke.yaml`` is shared by the assertions; the resume test
kills a second run's driver with SIGKILL mid-study and runs the same command again.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search_spaces import condition_groups, load_study

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "studies" / "smoke.yaml"
ENV = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")

pytestmark = pytest.mark.slow


def er_tune(*args, timeout=600, **kwargs):
    return subprocess.run([sys.executable, "-m", "er_tune.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=ENV, cwd=ROOT, **kwargs)


def trial_dirs(phase_dir: Path) -> list[Path]:
    return sorted(p for p in phase_dir.iterdir() if (p / "params.json").exists())


def results(trial_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]


@pytest.fixture(scope="module")
def smoke_experiment(tmp_path_factory):
    exp = tmp_path_factory.mktemp("smoke") / "exp"
    run = er_tune("tune", str(SMOKE), "--storage", str(exp))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return exp, run


def test_both_phases_write_complete_trial_directories(smoke_experiment):
    exp, run = smoke_experiment
    study = load_study(str(SMOKE))
    search, replicate = trial_dirs(exp / "search"), trial_dirs(exp / "replicate")
    groups = {g.name for g in condition_groups(study)}
    assert len(search) == len(groups) * study.search.num_samples
    assert len(replicate) == len(groups) * len(study.seeds)
    for trial in search + replicate:
        params = json.loads((trial / "params.json").read_text())
        assert params["group"] in groups
        assert params["phase"] == trial.parent.name
        assert (trial / "collapse_events.jsonl").exists()
        assert any(name.startswith("events.out.tfevents") for name in os.listdir(trial))
        lines = results(trial)
        assert lines and lines[-1]["epoch"] <= study.schedule.max_epochs
        assert {"knn_top1", "er_entropy", "rankme", "stop_reason"} <= set(lines[-1])
    seeds_by_group: dict = {}
    for trial in replicate:
        params = json.loads((trial / "params.json").read_text())
        seeds_by_group.setdefault(params["group"], []).append(params["seed"])
        assert results(trial)[-1]["stop_reason"] in ("completed", "collapsed", "diverged")
        assert params["epochs"] == study.schedule.max_epochs
    assert all(sorted(seeds) == sorted(study.seeds) for seeds in seeds_by_group.values())
    assert (exp / "best_configs.json").exists()
    # what the trials read and ran on, for the report's manifest (er_core/provenance.py)
    provenance = json.loads((exp / "provenance.json").read_text())
    assert len(provenance["data"]) == 1 and len(provenance["data"][0]["sha256"]) == 64
    assert provenance["versions"]["ray"] and provenance["cluster"]["CPU"] >= 1
    assert str(ROOT) not in json.dumps(provenance["data"])
    assert "[replicate]" in run.stdout and "ended" in run.stdout
    # the live progress line: running/pending counts, ETA and the best so far per group
    assert "| running " in run.stdout and "| pending " in run.stdout and "| ETA " in run.stdout
    assert f"best {study.search.metric} ({study.search.mode}) so far: " in run.stdout


def test_status_shows_the_configuration_the_replicate_phase_replicated(smoke_experiment):
    from reports.status import experiment_status

    exp, _ = smoke_experiment
    chosen = json.loads((exp / "best_configs.json").read_text())
    shown = experiment_status(str(exp))["best"]
    assert set(shown) == set(chosen)
    for group, best in shown.items():
        assert best["phase"] == "search" and best["hparams"]
        assert best["hparams"] == {name: chosen[group][name] for name in best["hparams"]}


def test_rerun_of_finished_experiment_runs_nothing_again(smoke_experiment):
    exp, _ = smoke_experiment
    before = {p: (p / "result.json").read_text() for p in trial_dirs(exp / "replicate")}
    run = er_tune("tune", str(SMOKE), "--storage", str(exp))
    assert run.returncode == 0, run.stderr[-3000:]
    after = {p: (p / "result.json").read_text() for p in trial_dirs(exp / "replicate")}
    assert before == after


def test_validation_errors_exit_2_before_ray_starts(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE.read_text().replace("methods:", "methodz:"))
    exp = tmp_path / "exp"
    run = er_tune("tune", str(bad), "--storage", str(exp), timeout=60)
    assert run.returncode == 2
    assert str(bad) in run.stderr and "methodz" in run.stderr
    assert not exp.exists()
    run = er_tune("tune", str(SMOKE), "--address", "127.0.0.1:1", timeout=60)
    assert run.returncode == 2 and "--storage" in run.stderr


@pytest.mark.e2e
def test_resume_after_driver_sigkill_finishes_every_trial_once(tmp_path):
    exp = tmp_path / "exp"
    driver = subprocess.Popen([sys.executable, "-m", "er_tune.cli", "tune", str(SMOKE), "--storage",
                               str(exp)], env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            phase = exp / "search"
            if phase.exists() and any((t / "result.json").exists() and results(t)
                                      for t in trial_dirs(phase)):
                break
            time.sleep(0.5)
        else:
            pytest.fail("no trial reported within 300 s")
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # Ray processes this driver started
        except ProcessLookupError:
            pass
    run = er_tune("tune", str(SMOKE), "--storage", str(exp))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "resuming" in run.stdout
    assert "taking over the lock of a driver that is gone: driver pid %d" % driver.pid in run.stderr
    assert not (exp / "driver.lock").exists()
    study = load_study(str(SMOKE))
    groups = condition_groups(study)
    for phase, expected in (("search", len(groups) * study.search.num_samples),
                            ("replicate", len(groups) * len(study.seeds))):
        dirs = trial_dirs(exp / phase)
        assert len(dirs) == expected, phase
        keys = [tuple(sorted((k, str(v)) for k, v in json.loads((d / "params.json").read_text()).items()))
                for d in dirs]
        if phase == "replicate":
            assert len(set(keys)) == expected  # no configuration ran twice
        for trial in dirs:
            epochs = [line["epoch"] for line in results(trial)]
            assert epochs and epochs[-1] == max(epochs)
            # a restored trial's iteration count comes back from its checkpoint (grouped ASHA's clock)
            assert [line["training_iteration"] for line in results(trial)] == epochs

    # A driver killed between Ray writing the phase's tuner.pkl and its first experiment snapshot
    # (simulated: the finished replicate phase's snapshot removed) leaves a folder Ray's
    # Tuner.restore cannot resume (it ran a one-trial plan): the phase starts afresh, its old trial
    # folders are set aside, the finished search phase is restored and runs nothing.
    search_before = {p.name: (p / "result.json").read_text() for p in trial_dirs(exp / "search")}
    old_replicate = {p.name for p in trial_dirs(exp / "replicate")}
    for pattern in ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl"):
        for snapshot in (exp / "replicate").glob(pattern):
            snapshot.unlink()
    assert (exp / "replicate" / "tuner.pkl").exists()
    run = er_tune("tune", str(SMOKE), "--storage", str(exp))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "[search] resuming" in run.stdout
    assert "has no experiment snapshot" in run.stdout and f"{len(old_replicate)} trial folder(s)" in run.stdout
    assert {p.name: (p / "result.json").read_text() for p in trial_dirs(exp / "search")} == search_before
    assert {p.name for p in trial_dirs(exp / "replicate" / ".abandoned")} == old_replicate
    fresh = trial_dirs(exp / "replicate")
    assert len(fresh) == len(old_replicate) and not {p.name for p in fresh} & old_replicate
    for trial in fresh:
        epochs = [line["epoch"] for line in results(trial)]
        assert epochs == list(range(1, len(epochs) + 1)) and results(trial)[-1]["stop_reason"]


# --- TensorBoard and Optuna read back with their own readers ---------------

def test_one_hparams_session_per_trial_and_no_ray_tags(smoke_experiment):
    from tensorboard_read import all_tags, hparams_sessions

    exp, run = smoke_experiment
    trials = trial_dirs(exp / "search") + trial_dirs(exp / "replicate")
    sessions = hparams_sessions(str(exp))
    expected = {f"{t.parent.name}/{t.name}/hparams" for t in trials}
    assert set(sessions) == expected  # one per trial, ASHA-stopped ones included
    for name, session in sessions.items():
        trial = exp / name.rsplit("/", 1)[0]
        params = json.loads((trial / "params.json").read_text())
        last = results(trial)[-1]
        assert session["metrics"]["final/knn_top1"] == pytest.approx(last["knn_top1"])
        assert session["hparams"]["method"] == params["method"] and session["hparams"]["seed"] == params["seed"]
        assert session["hparams"]["status"] == (last["stop_reason"] or "early_stopped")
        assert session["hparams"]["collapse_grade"] in ("none", "warning", "partial", "collapse")
        # the run name tells a person method, variant, cell and seed
        assert trial.name.startswith(f"{params['method']}_{params['variant']}_batch_size=32_seed{params['seed']}_")
    tags = all_tags(str(exp))
    assert not [t for names in tags.values() for t in names if t.startswith("ray/")]
    assert any("epoch/knn_top1" in names for names in tags.values())
    assert "To visualize your results with TensorBoard" not in run.stdout + run.stderr
    for trial in trials:  # Ray's JSON/CSV loggers are kept (the reports read them)
        assert (trial / "progress.csv").exists() and (trial / "result.json").exists()


def test_optuna_trials_have_curves_pruned_state_and_ray_links(smoke_experiment):
    import optuna
    import optuna_dashboard

    exp, _ = smoke_experiment
    from er_tune.grouped import optuna_storage

    journal = exp / "optuna" / "journal.log"  # the default storage; optuna-dashboard opens it by path
    assert not (exp / "optuna" / "optuna.db").exists()
    url = optuna_storage(f"journal:{journal}")
    summaries = optuna.get_all_study_summaries(url)
    assert {s.study_name for s in summaries} == {g.name for g in condition_groups(load_study(str(SMOKE)))}
    by_dir = {t.name: t for t in trial_dirs(exp / "search")}
    seen = set()
    for summary in summaries:
        for trial in optuna.load_study(study_name=summary.study_name, storage=url).trials:
            attrs = trial.user_attrs
            ray_dir = by_dir[attrs["ray_trial_name"]]
            seen.add(ray_dir.name)
            assert attrs["ray_trial_id"] == ray_dir.name.rsplit("_", 1)[1]
            assert attrs["ray_trial_dir"] == str(ray_dir)
            epochs = {line["epoch"]: line["knn_top1"] for line in results(ray_dir)}
            assert trial.intermediate_values == pytest.approx(epochs)  # every epoch, the last included
            stopped = not results(ray_dir)[-1]["stop_reason"]
            assert attrs["status"] == ("early_stopped" if stopped else results(ray_dir)[-1]["stop_reason"])
            assert (trial.state == optuna.trial.TrialState.PRUNED) == stopped
            assert attrs["collapse_grade"] in ("none", "warning", "partial", "collapse")
    assert seen == set(by_dir)
    from optuna_dashboard._storage_url import get_storage

    app = optuna_dashboard.wsgi(get_storage(str(journal)))  # the dashboard's own guess from the path
    from test_observe import dashboard_curves

    assert dashboard_curves(app) == [True] * len(summaries)
