"""er-tune on a Ray cluster: job submission, a lost worker node, a lost head + resubmission.

One loopback cluster is shared by the module: a head (2 CPUs, dashboard for the jobs API) and a
worker node (1 CPU), each a ``ray start --block`` process in its own session with its own temp
dir, stopped by PID (never ``ray stop``, which would kill every Ray process on the machine). The
storage is a local directory both nodes see: the shared-storage case of a real cluster.

1. A study derived from ``smoke.yaml`` is submitted with ``ray job submit ... -- er-tune tune STUDY
   --phase search --address auto --storage ...`` (one phase keeps the suite short); as soon as a trial *running on the worker
   node* has checkpointed an epoch, every process of that node is SIGKILLed. The job must still
   succeed, the killed trial must continue on the head from its checkpoint, and every trial must
   end once with each epoch reported once.
2. The head node and the driver are SIGKILLed mid-study (a replicate-only study); a fresh head is
   started and the same command resumes the study to the end.

The GCS health check is tightened (``RAY_health_check_*``) only so that the lost node is noticed
in seconds rather than ~30 s; the behaviour under test is the default one.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from reports.discover import discover

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "studies" / "smoke.yaml"
BIN = Path(sys.executable).parent
ENV = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1",
           PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
           RAY_health_check_period_ms="500", RAY_health_check_timeout_ms="1000",
           RAY_health_check_failure_threshold="4", RAY_health_check_initial_delay_ms="0")

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session_pids(leader: int) -> list[int]:
    """Every process of a node: ``ray start`` runs in its own session (the raylet gives worker
    processes their own process groups, but they stay in the session)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == leader:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILL every process of ``process``'s session at once (a node or a driver dies)."""
    for pid in session_pids(process.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=30)


def stop_session(process: subprocess.Popen) -> None:
    """SIGTERM (``ray start --block`` then stops its node), SIGKILL whatever is left after 30 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    kill_session(process)


class LoopbackCluster:
    """Ray nodes started by this test, on 127.0.0.1, each in its own process group."""

    def __init__(self) -> None:
        self.temp_root = tempfile.mkdtemp(prefix="ert", dir="/tmp")  # AF_UNIX paths < 108 bytes
        self.processes: list[subprocess.Popen] = []
        self.address = self.dashboard = ""

    def _start(self, args) -> subprocess.Popen:
        # Each node's dashboard agent gets its own port: the default (52365) is one per machine,
        # and another Ray on it (another node, another user's test) would leave no agent for jobs.
        args = [*args, f"--dashboard-agent-listen-port={free_port()}"]
        with open(f"{self.temp_root}/{len(self.processes)}.log", "w") as log:
            process = subprocess.Popen([str(BIN / "ray"), "start", "--block", *args], env=ENV,
                                       stdout=log, stderr=log, start_new_session=True)
        self.processes.append(process)
        return process

    def start_head(self, *, cpus: int, dashboard: bool) -> subprocess.Popen:
        port, dash = free_port(), free_port()
        self.address, self.dashboard = f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}"
        return self._start(["--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                            f"--num-cpus={cpus}", f"--temp-dir={self.temp_root}/h{len(self.processes)}",
                            f"--include-dashboard={'true' if dashboard else 'false'}",
                            "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                            f"--ray-client-server-port={free_port()}"])

    def start_worker(self, *, cpus: int) -> subprocess.Popen:
        return self._start([f"--address={self.address}", "--node-ip-address=127.0.0.1",
                            f"--num-cpus={cpus}", f"--temp-dir={self.temp_root}/w{len(self.processes)}"])

    def wait_until_started(self, timeout: float = 120) -> None:
        """The newest node's ``ray start`` printed "Ray runtime started." (its raylet registered)."""
        deadline, log = time.time() + timeout, Path(f"{self.temp_root}/{len(self.processes) - 1}.log")
        while time.time() < deadline:
            if "Ray runtime started" in log.read_text():
                return
            assert self.processes[-1].poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        raise AssertionError("the Ray node did not start in time")

    def close(self) -> None:
        for process in reversed(self.processes):
            stop_session(process)
        shutil.rmtree(self.temp_root, ignore_errors=True)


def write_study(path: Path, *, name: str, epochs: int, search: bool, seeds=(0, 1),
                variants=("original", "er"), grace_period: int = 2) -> Path:
    """smoke.yaml with more epochs (a window to kill a node in) and, optionally, no search phase
    (``grace_period=epochs``: ASHA stops no trial, so the one on the node to kill runs long enough)."""
    study = yaml.safe_load(SMOKE.read_text())
    study.update(name=name, seeds=list(seeds), variants=list(variants))
    study["data"]["train_size"] = 256
    study["schedule"] = {"max_epochs": epochs, "asha": {"grace_period": grace_period, "reduction_factor": 2}}
    if not search:
        study.pop("tune", None)
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def trial_dirs(phase_dir: Path) -> list[Path]:
    return sorted(p for p in phase_dir.iterdir() if (p / "params.json").exists()) if phase_dir.exists() else []


def rows(trial: Path) -> list[dict]:
    path = trial / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def node_trials(node: subprocess.Popen) -> set[str]:
    """Trial dir names whose actors run on ``node`` (Ray chdirs them to ``.../working_dirs/<trial_dir>``)."""
    names = set()
    for pid in session_pids(node.pid):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if "/working_dirs/" in cwd:
            names.add(os.path.basename(cwd))
    return names


def checkpointed(exp: Path, name: str) -> int:
    """Epochs a trial has checkpointed so far (Ray numbers checkpoints 000000, 000001, ...)."""
    found = [int(p.name.split("_")[1]) + 1 for phase in (exp / "search", exp / "replicate")
             for p in (phase / name).glob("checkpoint_*") if p.name.split("_")[1].isdigit()]
    return max(found, default=0)


def wait_for_checkpointed_trial(exp: Path, node: subprocess.Popen, driver: subprocess.Popen,
                                minimum: int = 1, timeout: float = 300) -> tuple[str, int]:
    """A trial running on ``node`` that has at least ``minimum`` checkpoints in the storage."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for name in node_trials(node):
            count = checkpointed(exp, name)
            if count >= minimum:
                return name, count
        assert driver.poll() is None, "the study ended before any trial on the node checkpointed"
        time.sleep(0.1)
    raise AssertionError("no trial on the node checkpointed in time")


def wait_for_recorded_checkpoint(phase_dir: Path, driver: subprocess.Popen, timeout: float = 300) -> None:
    """Until the experiment snapshot in the storage records a result (and so a checkpoint) of a
    trial that is still running: what a resubmitted study can resume from. Ray snapshots every
    ~10 s, and at once when a trial has checkpointed ``num_to_keep`` (2) times since the last one."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for state in sorted(phase_dir.glob("experiment_state-*.json"))[-1:]:
            try:
                entries = json.loads(state.read_text())["trial_data"]
            except (ValueError, KeyError, OSError):
                continue
            for meta, run in entries:
                epoch = (json.loads(run).get("last_result") or {}).get("epoch", 0)
                if json.loads(meta)["status"] == "RUNNING" and 1 <= epoch < 6:
                    return
        assert driver.poll() is None, "the study ended before a snapshot recorded a running trial"
        time.sleep(0.1)
    raise AssertionError("no experiment snapshot recorded a running trial in time")


def assert_every_trial_ended_once(exp: Path, expected: dict[str, int], interrupted: str = "") -> dict[str, list[dict]]:
    """Trial count per phase, one final row per replicate trial, each epoch once in the report.

    ``interrupted`` (a trial dir name) may miss the row of the epoch during which its node died:
    the trial wrote that epoch's checkpoint and resumed from it, but Ray can lose the report.
    """
    by_trial = {}
    for phase, count in expected.items():
        dirs = trial_dirs(exp / phase)
        assert len(dirs) == count, (phase, [d.name for d in dirs])
        for trial in dirs:
            lines = rows(trial)
            assert lines, trial
            finals = [line for line in lines if line["stop_reason"]]
            if phase == "replicate":
                assert len(finals) == 1 and finals[0] is lines[-1], trial
            assert (trial / "collapse_events.jsonl").exists(), f"{trial}: the trial's own files are missing"
            assert (trial / "hparams").is_dir() or lines[-1]["stop_reason"] == "", trial
            by_trial[trial.name] = lines
    trials, table = discover(str(exp))
    assert not [p for t in trials for p in t.problems]
    pairs = list(zip(table["trial_id"].to_pylist(), table["epoch"].to_pylist()))
    assert len(pairs) == len(set(pairs)), "an epoch row is duplicated in the report"
    for t in trials:
        epochs = [e for tid, e in pairs if tid == t.last["trial_id"]]
        assert epochs == sorted(set(epochs)) and epochs[0] == 1, (t.trial_dir, epochs)
        if os.path.basename(t.trial_dir) != interrupted:
            assert epochs == list(range(1, len(epochs) + 1)), (t.trial_dir, epochs)
        else:
            assert len(epochs) >= epochs[-1] - 1, (t.trial_dir, epochs)  # at most one row lost
        keys = [(e["kind"], e["severity"], e["epoch"]) for e in t.events]
        assert len(keys) == len(set(keys)), "a collapse event is duplicated in the report"
    return by_trial


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    nodes = LoopbackCluster()
    try:
        nodes.start_head(cpus=2, dashboard=True)
        nodes.wait_until_started()
        nodes.worker = nodes.start_worker(cpus=1)
        nodes.wait_until_started()
        yield nodes
    finally:
        nodes.close()


@pytest.fixture(scope="module")
def job_with_node_loss(cluster, tmp_path_factory):
    """Submit a study as a Ray job; SIGKILL the worker node while one of its trials runs."""
    from ray.job_submission import JobSubmissionClient, JobStatus

    client = JobSubmissionClient(cluster.dashboard)
    deadline = time.time() + 120
    while True:  # the head accepts jobs once its dashboard agent is up, a few seconds after start
        try:
            client.submit_job(entrypoint="true", submission_id="ready")
            break
        except RuntimeError as error:
            if "No available agent" not in str(error) or time.time() > deadline:
                raise
            time.sleep(1)
    root = tmp_path_factory.mktemp("job")
    study = write_study(root / "nodeloss.yaml", name="nodeloss", epochs=8, search=True, grace_period=8)
    exp = root / "shared" / "nodeloss"
    submit = subprocess.Popen(
        [str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard, "--submission-id", "nodeloss",
         "--", "er-tune", "tune", str(study), "--phase", "search", "--address", "auto", "--storage", str(exp)],
        env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        try:
            # 3 epochs checkpointed: the driver has taken epoch 2's report (a reporting trial waits
            # for it), so it knows a checkpoint to resume from
            killed, checkpoints = wait_for_checkpointed_trial(exp, cluster.worker, submit, minimum=3)
        except AssertionError as error:
            out = submit.communicate(timeout=60)[0] if submit.poll() is not None else ""
            raise AssertionError(f"{error}\n{out[-5000:]}") from None
        kill_session(cluster.worker)  # raylet, object store, the trial's worker process: the node is gone
        out, _ = submit.communicate(timeout=600)
    finally:
        if submit.poll() is None:
            kill_session(submit)
    status = client.get_job_status("nodeloss")
    logs = client.get_job_logs("nodeloss")
    assert status == JobStatus.SUCCEEDED, out[-3000:] + logs[-3000:]
    return {"exp": exp, "killed": killed, "checkpoints": checkpoints, "logs": logs, "study": study}


def test_study_submitted_as_a_ray_job_runs_its_search_phase(job_with_node_loss):
    logs = job_with_node_loss["logs"]
    assert "[search] 4/4 ended" in logs and "[replicate]" not in logs
    assert "experiment: " + str(job_with_node_loss["exp"]) in logs
    assert (job_with_node_loss["exp"] / "best_configs.json").exists()


def test_trial_of_a_lost_worker_node_resumes_from_its_checkpoint_on_the_head(job_with_node_loss):
    exp, killed = job_with_node_loss["exp"], job_with_node_loss["killed"]
    lines = assert_every_trial_ended_once(exp, {"search": 4}, interrupted=killed)[killed]
    pids = list(dict.fromkeys(line["pid"] for line in lines))
    assert len(pids) == 2, f"{killed} should have run in two processes (worker node, then head): {pids}"
    resumed = [line["epoch"] for line in lines if line["pid"] == pids[1]]
    # it had checkpointed `checkpoints` epochs when its node died; the driver had taken at least
    # `checkpoints - 1` of them: the retry continues from there, not from scratch
    assert resumed[0] in (job_with_node_loss["checkpoints"], job_with_node_loss["checkpoints"] + 1), resumed
    assert lines[-1]["epoch"] == 8 and lines[-1]["stop_reason"] in ("completed", "collapsed", "diverged")


def test_status_of_the_finished_job(job_with_node_loss):
    from reports.status import experiment_status, render_status

    status = experiment_status(str(job_with_node_loss["exp"]))
    assert status["phase"] == "replicate"  # run with --phase search: the next phase is still to run
    assert status["phases"]["search"] == {"planned": 4, "ended": 4, "state": "finished",
                                          "counts": status["phases"]["search"]["counts"]}
    counts = status["phases"]["search"]["counts"]
    assert sum(counts.values()) == 4 and not counts.get("errored"), counts  # the retry succeeded
    assert status["phases"]["replicate"]["counts"] == {"pending": 4}
    assert "replicate not started" in render_status(status)


def test_head_and_driver_killed_then_resubmitted_resumes(cluster, tmp_path):
    study = write_study(tmp_path / "headloss.yaml", name="headloss", epochs=8, search=False,
                        variants=("original",))
    exp = tmp_path / "shared" / "headloss"
    driver = subprocess.Popen([sys.executable, "-m", "er_tune.cli", "tune", str(study), "--address",
                               cluster.address, "--storage", str(exp)], env=ENV, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_recorded_checkpoint(exp / "replicate", driver)
    finally:
        kill_session(driver)
        for node in cluster.processes:  # the whole cluster is lost with its head
            kill_session(node)
    cluster.start_head(cpus=2, dashboard=False)
    cluster.wait_until_started()
    run = subprocess.run([sys.executable, "-m", "er_tune.cli", "tune", str(study), "--address",
                          cluster.address, "--storage", str(exp)], env=ENV, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "resuming" in run.stdout
    by_trial = assert_every_trial_ended_once(exp, {"replicate": 2})
    resumed = [lines for lines in by_trial.values() if len({line["pid"] for line in lines}) == 2]
    assert resumed, "no trial was interrupted and resumed"
    for lines in resumed:
        before = [line["epoch"] for line in lines if line["pid"] == lines[0]["pid"]]
        after = [line["epoch"] for line in lines if line["pid"] != lines[0]["pid"]]
        # from the checkpoint the snapshot recorded, not from scratch; that may be older than the
        # last synced row, whose epoch is then reported again (the report keeps the re-run's row)
        assert 2 <= after[0] <= before[-1] + 1, (before, after)
