"""``s3://`` experiment storage end to end against a real S3-compatible server (moto, started here).

``er-tune tune --storage s3://bucket/exp`` runs a one-trial-per-phase study whose every file
(Ray's trial files, TensorBoard events and HParams sessions, collapse events, study.yaml,
plan.json, best_configs.json, the Optuna SQLite file) must land in the bucket and nothing under
the working directory; ``status`` and ``report`` then read the experiment from the bucket.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "studies" / "smoke.yaml"
BUCKET = "er-tune-test"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    pytest.importorskip("moto.server")
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1",
               AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
               ER_TUNE_CACHE=str(tmp_path_factory.mktemp("cache")))
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
    yield env
    server.stop()


def er_tune(env, cwd, *args):
    return subprocess.run([sys.executable, "-m", "er_tune", *args], capture_output=True, text=True,
                          timeout=900, env=env, cwd=cwd)


def bucket_files(env) -> dict[str, int]:
    import pyarrow.fs

    filesystem = pyarrow.fs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], access_key="testing",
                                         secret_key="testing", region="us-east-1")
    infos = filesystem.get_file_info(pyarrow.fs.FileSelector(f"{BUCKET}/exp", recursive=True))
    return {info.path[len(BUCKET) + 5:]: info.size for info in infos if info.type == pyarrow.fs.FileType.File}


@pytest.fixture(scope="module")
def s3_experiment(s3, tmp_path_factory):
    work = tmp_path_factory.mktemp("cwd")
    text = (SMOKE.read_text().replace("variants: [original, er]", "variants: [original]")
            .replace("  kappa: {loguniform: [2, 32], objectives: [simclr_er]}\n", "")
            .replace("seeds: [0, 1]", "seeds: [0]").replace("num_samples: 2", "num_samples: 1")
            .replace("max_epochs: 2", "max_epochs: 1").replace("name: smoke", "name: smoke_s3"))
    (work / "study.yaml").write_text(text)
    run = er_tune(s3, work, "tune", "study.yaml", "--storage", f"s3://{BUCKET}/exp")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return s3, work, run


@pytest.mark.e2e
def test_tune_writes_every_file_to_the_bucket_and_none_locally(s3_experiment):
    env, work, _ = s3_experiment
    files = bucket_files(env)
    for name in ("study.yaml", "plan.json", "best_configs.json", "optuna/journal.log"):
        assert files.get(name, 0) > 0, name
    for phase in ("search", "replicate"):
        trials = {path.split("/")[1] for path in files if path.startswith(f"{phase}/") and path.endswith("/params.json")}
        assert len(trials) == 1, files
        trial = f"{phase}/{trials.pop()}"
        for name in ("result.json", "progress.csv", "collapse_events.jsonl"):
            assert f"{trial}/{name}" in files, (trial, name)
        assert any(p.startswith(f"{trial}/events.out.tfevents") for p in files)
        assert any(p.startswith(f"{trial}/hparams/events.out.tfevents") for p in files)
    assert sorted(os.listdir(work)) == ["study.yaml"]  # no ./s3:/..., no ./er_runs


@pytest.mark.e2e
def test_optuna_storage_of_a_uri_experiment_is_uploaded(s3_experiment, tmp_path):
    import optuna
    import pyarrow.fs

    env, _, _ = s3_experiment
    filesystem = pyarrow.fs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], access_key="testing",
                                         secret_key="testing", region="us-east-1")
    from er_tune.grouped import optuna_storage

    with filesystem.open_input_stream(f"{BUCKET}/exp/optuna/journal.log") as source:
        (tmp_path / "journal.log").write_bytes(source.read())
    storage = optuna_storage(f"journal:{tmp_path / 'journal.log'}")
    (summary,) = optuna.get_all_study_summaries(storage)
    (trial,) = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.intermediate_values
    assert trial.user_attrs["ray_trial_dir"].startswith(f"s3://{BUCKET}/exp/search/simclr_original_")


@pytest.mark.e2e
def test_status_and_report_read_the_bucket(s3_experiment, tmp_path):
    env, work, _ = s3_experiment
    status = er_tune(env, work, "status", f"s3://{BUCKET}/exp")
    assert status.returncode == 0, status.stdout[-2000:] + status.stderr[-2000:]
    assert "is not a directory" not in status.stdout + status.stderr
    report = er_tune(env, work, "report", f"s3://{BUCKET}/exp", "--out", str(tmp_path / "report"), "--no-plots")
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr[-2000:]
    import pyarrow.parquet as pq

    trials = pq.read_table(tmp_path / "report" / "trials.parquet").to_pylist()
    assert sorted(t["phase"] for t in trials) == ["replicate", "search"]
    assert all(t["status"] in ("completed", "collapsed", "diverged") for t in trials)
    plan = json.loads((Path(env["ER_TUNE_CACHE"]).glob("*/mirror/plan.json").__next__()).read_text())
    assert plan["study"] == "smoke_s3"


def test_a_bucket_that_does_not_exist_fails_fast(s3, tmp_path):
    run = er_tune(s3, tmp_path, "tune", str(SMOKE), "--storage", "s3://no-such-bucket/exp")
    assert run.returncode == 2
    assert "--storage s3://no-such-bucket/exp: the bucket 'no-such-bucket' does not exist" in run.stderr


def test_the_driver_lock_in_the_bucket(s3, monkeypatch):
    """On an object store the lock is live while renewed: a second driver exits, a lock whose lease
    ran out (its driver on another host died) is taken over; ``status`` shows the holder."""
    from er_tune import driver_lock
    from er_tune.driver_lock import DriverLock, LockHeld, holder_status, read_lock

    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.setenv(key, s3[key])
    exp = f"s3://{BUCKET}/locked"
    first = DriverLock(exp, settle_s=0.1)
    first.acquire()
    try:
        with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
            DriverLock(exp, settle_s=0.1).acquire()
        assert holder_status(exp)["live"] is True
    finally:
        first._stop.set()  # dies without releasing: its lease runs out
    monkeypatch.setattr(driver_lock.socket, "gethostname", lambda: "another-node")
    lease = read_lock(exp)
    assert lease["token"] == first.record["token"]
    with pytest.raises(LockHeld):
        DriverLock(exp, settle_s=0.1).acquire()  # seen from another host: renewed within its lease
    monkeypatch.setattr(driver_lock, "clock", lambda: lease["renewed"] + lease["lease_s"] + 1)
    said = []
    second = DriverLock(exp, settle_s=0.1)
    second.acquire(say=said.append)
    second.release()
    assert said and "taking over the lock of a driver that is gone" in said[0]
    assert read_lock(exp) is None


def test_a_phase_without_snapshot_is_detected_and_its_trials_set_aside_in_the_bucket(s3, monkeypatch):
    """The object-store side of :func:`er_tune.storage.set_aside_unsnapshotted_trials` (the local
    side runs end to end in tests/test_launch.py)."""
    from er_tune.storage import has_experiment_state, read_text, set_aside_unsnapshotted_trials, write_text

    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.setenv(key, s3[key])
    phase = f"s3://{BUCKET}/unsnapshotted/replicate"
    write_text(phase, "tuner.pkl", "not a real tuner")
    write_text(phase, "trial_a/params.json", '{"seed": 0}')
    write_text(phase, "trial_a/checkpoint_000000/state.pt", "weights")
    write_text(phase, "not_a_trial/notes.txt", "kept in place")
    assert not has_experiment_state(phase)
    assert set_aside_unsnapshotted_trials(phase) == ["trial_a"]
    assert read_text(phase, "trial_a/params.json") is None
    assert read_text(phase, ".abandoned/trial_a/params.json") == '{"seed": 0}'
    assert read_text(phase, ".abandoned/trial_a/checkpoint_000000/state.pt") == "weights"
    assert read_text(phase, "not_a_trial/notes.txt") == "kept in place"
    write_text(phase, "experiment_state-2026-12-07_12-00-00.json", "{}")
    assert has_experiment_state(phase)
