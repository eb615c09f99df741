"""CLI conventions: --version, python -m er_tune, status/show --json, -q/-v, --name with --storage,
study names '.'/'..', and the live progress line of ``er-tune tune`` (on a fake clock, no Ray run)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from er_tune import cli
from er_tune.cli import main
from reports.parquet_io import SCHEMA_VERSION
from reports.status import experiment_status
from search_spaces import STUDIES_DIR, StudyError, load_study
from synthetic_experiment import write_trial

ROOT = Path(__file__).resolve().parents[1]
SMOKE = Path(STUDIES_DIR) / "smoke.yaml"


def test_version_comes_from_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"er-tune {version('er-tune')}\n"


def test_python_dash_m_er_tune_is_the_same_entry_point():
    result = subprocess.run([sys.executable, "-m", "er_tune", "--version"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"er-tune {version('er-tune')}\n"
    result = subprocess.run([sys.executable, "-m", "er_tune", "frobnicate"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 2 and "invalid choice: 'frobnicate'" in result.stderr


def small_experiment(root: Path) -> Path:
    exp = root / "exp"
    for seed in range(3):
        for variant in ("original", "er"):
            write_trial(str(exp / "replicate"), f"{variant}{seed}", variant=variant, seed=seed,
                        stop_reason="collapsed" if (variant, seed) == ("original", 0) else "completed")
    (exp / "plan.json").write_text(json.dumps({
        "study": "syn", "metric": "knn_top1", "mode": "max",
        "phases": {"search": {"trials": 0, "max_epochs": 3}, "replicate": {"trials": 6, "max_epochs": 3}}}))
    return exp


def test_status_json_is_the_status_as_one_json_object(tmp_path, capsys):
    exp = small_experiment(tmp_path)
    assert main(["status", str(exp), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = json.loads(json.dumps(experiment_status(str(exp)))) | {"driver": None}  # no tune holds it
    for volatile in ("since_last_result_s",):
        printed.pop(volatile), expected.pop(volatile)
    assert printed == expected
    assert printed["phases"]["replicate"]["counts"] == {"completed": 5, "collapsed": 1, "pending": 0}
    assert printed["phase"] == "finished" and printed["collapse_trials"] == 1
    assert main(["status", str(tmp_path / "missing"), "--json"]) == 2


def test_show_json_prints_every_table_but_epochs_and_the_manifest(tmp_path, capsys):
    exp = small_experiment(tmp_path)
    assert main(["report", str(exp), "--no-plots"]) == 0
    capsys.readouterr()
    assert main(["show", str(exp / "report"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)  # strict JSON: NaN would not parse back as a number
    manifest = shown["manifest"]
    assert set(shown["tables"]) == {"trials", "collapse_events", "search", "stability", "survival"}
    assert "epochs" in shown["files"] and shown["schema_version"] == SCHEMA_VERSION
    for name, rows in shown["tables"].items():
        assert len(rows) == manifest["row_counts"][name]
    statuses = sorted(row["status"] for row in shown["tables"]["trials"])
    assert statuses == ["collapsed"] + ["completed"] * 5
    (cell,) = shown["tables"]["stability"]
    assert (cell["original_n_collapsed"], cell["er_n_collapsed"]) == (1, 0)
    assert main(["show", str(tmp_path), "--json"]) == 2


def test_quiet_prints_nothing_but_errors_and_default_prints_the_plan(tmp_path, capsys):
    assert main(["validate", str(SMOKE)]) == 0
    assert "condition groups" in capsys.readouterr().out
    assert main(["validate", "-q", str(SMOKE)]) == 0
    assert capsys.readouterr().out == ""
    exp = small_experiment(tmp_path)
    assert main(["report", "-q", str(exp), "--no-plots"]) == 0
    assert capsys.readouterr().out == "" and (exp / "report" / "stability.parquet").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmethods: [mocov3]\n")
    assert main(["validate", "-q", str(bad)]) == 2
    assert "methods[0]" in capsys.readouterr().err


def test_tune_passes_verbosity_and_quiet_silences_its_output(monkeypatch, capsys):
    seen = {}

    def fake_run_study(study, **kwargs):
        seen.update(kwargs)
        print("progress line", file=kwargs["stream"])
        return 0

    import er_tune.launch as launch

    monkeypatch.setattr(launch, "run_study", fake_run_study)
    assert main(["tune", str(SMOKE), "-v"]) == 0
    assert seen["verbosity"] == 1 and "progress line" in capsys.readouterr().out
    assert main(["tune", str(SMOKE)]) == 0
    assert seen["verbosity"] == 0 and "progress line" in capsys.readouterr().out
    assert main(["tune", "-q", str(SMOKE)]) == 0
    assert seen["verbosity"] == 0 and capsys.readouterr().out == ""


def test_name_with_storage_is_refused_not_ignored(tmp_path, capsys):
    storage = tmp_path / "runs" / "exp"
    assert main(["tune", str(SMOKE), "--storage", str(storage), "--name", "other"]) == 2
    err = capsys.readouterr().err
    assert "--name other with --storage" in err and f"--storage {storage}/other" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", [".", ".."])
def test_study_names_dot_and_dotdot_are_rejected_naming_file_and_key(tmp_path, capsys, name):
    study = yaml.safe_load(SMOKE.read_text())
    study["name"] = name
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    with pytest.raises(StudyError) as rejected:
        load_study(str(path))
    assert str(rejected.value).startswith(f"{path}: name: invalid name {name!r}; allowed: letters")
    assert main(["validate", str(path)]) == 2
    assert f"{path}: name: invalid name {name!r}" in capsys.readouterr().err
    assert main(["tune", str(path)]) == 2  # exits before Ray or any directory
    assert f"{path}: name: invalid name" in capsys.readouterr().err
    assert main(["tune", str(SMOKE), "--name", name]) == 2
    assert "--name: invalid name" in capsys.readouterr().err
    assert load_study(str(SMOKE)).name == "smoke"  # an ordinary name with a dot stays valid below
    study["name"] = "smoke.v2"
    path.write_text(yaml.safe_dump(study))
    assert load_study(str(path)).name == "smoke.v2"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_live_progress_line_counts_running_pending_eta_and_best_per_group():
    from er_tune.progress import StudyProgress

    clock, stream = FakeClock(), io.StringIO()
    progress = StudyProgress("search", 4, stream, metric="knn_top1", mode="max", max_epochs=4,
                             interval_s=1000, clock=clock)
    trial_a = SimpleNamespace(trial_id="a", config={"group": "simclr/er", "seed": 0, "epochs": 4}, last_result={})
    trial_b = SimpleNamespace(trial_id="b", config={"group": "simclr/original", "seed": 0, "epochs": 4},
                              last_result={})
    progress.on_trial_start(0, [], trial_a)
    progress.on_trial_start(0, [], trial_b)
    for epoch in range(1, 5):
        clock.now = 5.0 * epoch
        progress.on_trial_result(0, [], trial_a, {"epoch": epoch, "knn_top1": 0.1 * epoch,
                                                  "stop_reason": "completed" if epoch == 4 else ""})
    progress.on_trial_result(0, [], trial_b, {"epoch": 1, "knn_top1": 0.7, "stop_reason": ""})
    assert stream.getvalue() == ""  # results alone print only every interval_s
    clock.now = 30.0
    progress.on_trial_complete(0, [], trial_a)
    # 5 epochs in 30 s; left: b 3 epochs + 2 trials not yet created x 4 = 11 epochs -> 66 s
    snap = progress.snapshot()
    assert (snap["ended"], snap["running"], snap["pending"]) == (1, 1, 2)
    assert (snap["epochs_done"], snap["epochs_remaining"]) == (5, 11) and snap["eta_s"] == pytest.approx(66.0)
    assert snap["best"] == {"simclr/er": {"value": 0.4, "epoch": 4, "status": "completed", "trial": "a"},
                            "simclr/original": {"value": 0.7, "epoch": 1, "status": "running", "trial": "b"}}
    lines = stream.getvalue().splitlines()
    assert lines == ["[search] 1/4 ended | running 1 | pending 2 | completed 1 | 0m30s elapsed | ETA 1m06s"
                     "  <- simclr/er seed 0: completed",
                     "  best knn_top1 (max) so far: simclr/er 0.4000@4 | simclr/original 0.7000@1"]
    progress.on_trial_result(0, [], trial_b, {"epoch": 2, "knn_top1": 0.2, "stop_reason": "collapsed",
                                              "collapsed": True})
    clock.now = 40.0
    progress.on_trial_complete(0, [], trial_b)
    # collapsed at epoch 2: compared at its own furthest epoch (no healthy rival in the group)
    assert progress.snapshot()["best"]["simclr/original"] == {"value": 0.2, "epoch": 2, "status": "collapsed",
                                                              "trial": "b"}
    assert stream.getvalue().splitlines()[-1].endswith("simclr/original 0.2000@2 (collapsed)")
    assert "collapsed 1" in stream.getvalue().splitlines()[-2]


def test_verbose_progress_prints_at_every_result_and_interval_limits_the_default():
    from er_tune.progress import StudyProgress

    trial = SimpleNamespace(trial_id="a", config={"group": "g", "seed": 1, "epochs": 3}, last_result={})
    for verbosity, expected_lines in ((1, 3 * 2), (0, 2)):  # two lines per print (counts, best)
        clock, stream = FakeClock(), io.StringIO()
        progress = StudyProgress("replicate", 1, stream, max_epochs=3, verbosity=verbosity, interval_s=10.0,
                                 clock=clock)
        for epoch in (1, 2, 3):
            clock.now = 4.0 * epoch  # 4 s, 8 s, 12 s: only the third is past interval_s by default
            progress.on_trial_result(0, [], trial, {"epoch": epoch, "knn_top1": 0.5})
        assert len(stream.getvalue().splitlines()) == expected_lines


def test_cli_version_helper_falls_back_to_the_source_version(monkeypatch):
    import importlib.metadata as metadata

    from er_core import __version__

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    assert cli.package_version() == __version__


def test_progress_pickles_as_ray_stores_it_and_counts_trials_ended_before_a_resume(capsys):
    """Ray pickles the run's callbacks into tuner.pkl and resumes with the unpickled copy."""
    import ray.cloudpickle

    from er_tune.progress import StudyProgress

    quiet = StudyProgress("search", 3, cli.Discard(), max_epochs=2)
    ray.cloudpickle.loads(ray.cloudpickle.dumps(quiet))  # an open os.devnull would not pickle
    clock = FakeClock()
    clock.now = 500.0
    restored = ray.cloudpickle.loads(ray.cloudpickle.dumps(
        StudyProgress("search", 3, sys.stdout, max_epochs=2, clock=clock)))
    assert restored._started == 500.0 and restored.stream is sys.stdout
    ended = [SimpleNamespace(trial_id=name, status=ray_status, config={"group": "g", "epochs": 2, "seed": 0},
                             last_result={"epoch": epoch, "knn_top1": 0.5, "stop_reason": reason})
             for name, ray_status, epoch, reason in (("a", "TERMINATED", 2, "completed"),
                                                     ("b", "ERROR", 1, ""))]
    running = SimpleNamespace(trial_id="c", status="RUNNING", config={"group": "g", "epochs": 2, "seed": 1},
                              last_result={})
    restored.on_trial_start(0, ended + [running], running)
    assert dict(restored.counts) == {"completed": 1, "errored": 1} and restored.running == {"c"}
    assert capsys.readouterr().out == ""  # caught up silently
    running.status = "TERMINATED"
    restored.on_trial_result(0, ended + [running], running, {"epoch": 2, "knn_top1": 0.6,
                                                             "stop_reason": "completed"})
    restored.on_trial_complete(0, ended + [running], running)
    assert dict(restored.counts) == {"completed": 2, "errored": 1}
    assert capsys.readouterr().out.startswith("[search] 3/3 ended | running 0 | pending 0")
