"""``er-tune tune --address``: a separate local Ray head plus one worker node on loopback.

Both nodes are ``ray start --block`` processes with their own temp dirs, stopped by PID (never
``ray stop``, which would kill every Ray process on the machine). Storage is a local directory,
which both nodes see: the shared-storage case of a real cluster.
"""

import json
import shutil
import tempfile
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "studies" / "smoke.yaml"
RAY = str(Path(sys.executable).with_name("ray"))

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_node(args, env, log):
    return subprocess.Popen([RAY, "start", "--block", *args], env=env, stdout=log, stderr=log,
                            start_new_session=True)


def stop(process):
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for_nodes(address: str, count: int, env, timeout: float = 120) -> None:
    probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
             "print(sum(1 for n in ray.nodes() if n['Alive']))")
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run([sys.executable, "-c", probe, address], env=env, capture_output=True,
                             text=True, timeout=120)
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(2)
    raise AssertionError(f"cluster at {address} did not reach {count} nodes")


def test_smoke_study_runs_on_a_two_node_cluster(tmp_path):
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    port = free_port()
    address = f"127.0.0.1:{port}"
    log = open(tmp_path / "ray.log", "w")
    temp_root = tempfile.mkdtemp(prefix="ert", dir="/tmp")  # AF_UNIX socket paths must stay < 108 bytes
    head = start_node(["--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                       "--include-dashboard=false", f"--temp-dir={temp_root}/h",
                       f"--ray-client-server-port={free_port()}"], env, log)
    worker = None
    try:
        time.sleep(3)
        worker = start_node([f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                             f"--temp-dir={temp_root}/w"], env, log)
        wait_for_nodes(address, 2, env)
        storage = tmp_path / "shared" / "smoke"
        run = subprocess.run([sys.executable, "-m", "er_tune.cli", "tune", str(SMOKE), "--address",
                              address, "--storage", str(storage)], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        replicate = [p for p in (storage / "replicate").iterdir() if (p / "params.json").exists()]
        assert replicate
        for trial in replicate:
            lines = (trial / "result.json").read_text().splitlines()
            assert json.loads(lines[-1])["stop_reason"] in ("completed", "collapsed", "diverged")
    finally:
        for process in (worker, head):
            if process is not None:
                stop(process)
        log.close()
        shutil.rmtree(temp_root, ignore_errors=True)
