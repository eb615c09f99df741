"""What a lab running a shared cluster expects of ``er-tune tune``.

- Fail fast: an Optuna storage of an unknown kind, without its driver package or whose server does
  not answer, an MLflow server that is unreachable or refuses the credentials, credentials in the
  experiment URI, an unset ``${VAR}``: exit 2, one line naming the study key, nothing written.
- One driver per experiment: a live holder makes a second ``tune`` exit 2 naming it; a dead one's
  lock is taken over; ``status`` shows the holder.
- No secrets: a study with a password in its storage URL and a tracker token from the environment
  runs end to end, and neither appears in any file of the experiment (pickles included) or in
  the output. The same run lists the listening sockets of the embedded Ray: loopback only.
"""

from __future__ import annotations

import http.server
import json
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from er_tune import driver_lock
from er_tune.driver_lock import DriverLock, LockHeld, holder_status, is_live
from er_tune.redact import Secret, mask, protect, study_secrets
from search_spaces import load_study

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "studies" / "smoke.yaml"
ENV = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1",
           PYTHONPATH=str(ROOT))


def er_tune(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "er_tune", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or ENV, cwd=ROOT)


def tiny_study(tmp_path: Path, extra: str = "", search_extra: str = "") -> Path:
    """smoke.yaml cut to one group, one trial per phase, one epoch."""
    text = (SMOKE.read_text().replace("variants: [original, er]", "variants: [original]")
            .replace("  kappa: {loguniform: [2, 32], objectives: [simclr_er]}\n", "")
            .replace("seeds: [0, 1]", "seeds: [0]").replace("max_epochs: 2", "max_epochs: 1")
            .replace("search: {num_samples: 2, metric: knn_top1, seed: 0}",
                     "search: {num_samples: 1, metric: knn_top1, seed: 0" + search_extra + "}"))
    path = tmp_path / "study.yaml"
    path.write_text(text + extra)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- fail fast ---------------------------------------------------------------------------------
def test_unknown_database_kind_and_missing_driver_exit_2_naming_the_key(tmp_path):
    import importlib.util

    exp = tmp_path / "exp"
    study = tiny_study(tmp_path, search_extra=', storage: "postgress://ert:pw1234@127.0.0.1:1/optuna"')
    run = er_tune("tune", str(study), "--storage", str(exp))
    assert run.returncode == 2
    assert f"{study}: search.storage: unknown database kind 'postgress'" in run.stderr
    study = tiny_study(tmp_path, search_extra=f', storage: "postgresql://ert:pw1234@127.0.0.1:{free_port()}/optuna"')
    run = er_tune("tune", str(study), "--storage", str(exp))
    assert run.returncode == 2 and f"{study}: search.storage: " in run.stderr
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is None:
        assert "driver for postgresql is not installed" in run.stderr
    else:
        assert "cannot connect" in run.stderr
    assert "pw1234" not in run.stderr + run.stdout
    assert not exp.exists()


class _Refusing(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(401)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_unreachable_or_refusing_tracking_server_exits_2(tmp_path):
    exp = tmp_path / "exp"
    port = free_port()
    study = tiny_study(tmp_path, f'loggers: {{mlflow: {{tracking_uri: "http://ert:tok5678@127.0.0.1:{port}"}}}}\n')
    run = er_tune("tune", str(study), "--storage", str(exp))
    assert run.returncode == 2
    assert f"{study}: loggers.mlflow.tracking_uri: cannot reach the tracking server" in run.stderr
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        study = tiny_study(tmp_path, "loggers: {mlflow: {tracking_uri: \"http://127.0.0.1:%d\", "
                                     "tracking_token: \"${ER_TEST_TOKEN}\"}}\n" % server.server_port)
        run = er_tune("tune", str(study), "--storage", str(exp), env=dict(ENV, ER_TEST_TOKEN="tok5678"))
    finally:
        server.shutdown()
    assert run.returncode == 2
    assert "loggers.mlflow.tracking_uri: the tracking server refused the credentials (HTTP 401)" in run.stderr
    assert "tok5678" not in run.stderr + run.stdout
    assert not exp.exists()


class _WandbGraphQL(http.server.BaseHTTPRequestHandler):
    """A W&B server's /graphql: 200 for the API key ``good-key-123`` (basic auth ``api:<key>``), 401 otherwise."""

    seen: list[str] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        import base64

        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        auth = self.headers.get("Authorization", "")
        user_key = base64.b64decode(auth.split(" ", 1)[1]).decode() if auth.startswith("Basic ") else ""
        type(self).seen.append(f"{self.path} {user_key} {json.loads(body)['query']}")
        self.send_response(200 if user_key == "api:good-key-123" else 401)
        self.end_headers()
        self.wfile.write(b'{"data": {"viewer": {"id": "x"}}}')

    def log_message(self, *args):
        pass


def test_online_wandb_unreachable_refusing_or_keyless_exits_2_and_offline_is_not_checked(tmp_path, monkeypatch):
    from er_tune.preflight import check_wandb

    exp = tmp_path / "exp"
    study = tiny_study(tmp_path, "loggers: {wandb: {project: er}}\n")
    base = dict(ENV, WANDB_MODE="online")
    base.pop("WANDB_API_KEY", None)
    port = free_port()
    start = time.monotonic()
    run = er_tune("tune", str(study), "--storage", str(exp),
                  env=dict(base, WANDB_BASE_URL=f"http://127.0.0.1:{port}", WANDB_API_KEY="bad-key-456"))
    assert run.returncode == 2 and time.monotonic() - start < 30
    assert f"{study}: loggers.wandb (WANDB_BASE_URL): cannot reach the W&B server http://127.0.0.1:{port}" in run.stderr
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WandbGraphQL)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        refused = er_tune("tune", str(study), "--storage", str(exp),
                          env=dict(base, WANDB_BASE_URL=url, WANDB_API_KEY="bad-key-456"))
        keyless = er_tune("tune", str(study), "--storage", str(exp), env=dict(base, WANDB_BASE_URL=url))
        monkeypatch.setenv("WANDB_BASE_URL", url)
        monkeypatch.setenv("WANDB_MODE", "online")
        key, accepted = check_wandb({"project": "er", "api_key": "good-key-123"})
        accepted()  # no exception: the server took the key
    finally:
        server.shutdown()
    assert refused.returncode == 2
    assert "loggers.wandb (WANDB_BASE_URL): the W&B server refused the API key (HTTP 401)" in refused.stderr
    assert "bad-key-456" not in refused.stderr + refused.stdout + run.stderr + run.stdout
    assert any(line.startswith("/graphql api:bad-key-456 query { viewer") for line in _WandbGraphQL.seen)
    assert keyless.returncode == 2 and "online W&B needs an API key" in keyless.stderr
    assert key == "loggers.wandb (WANDB_BASE_URL)"
    assert check_wandb({"mode": "offline"}) is None and check_wandb({"mode": "disabled"}) is None
    assert not exp.exists()


def test_unset_variable_and_credentials_in_the_experiment_uri_exit_2(tmp_path):
    study = tiny_study(tmp_path, search_extra=', storage: "postgresql://ert:${ER_UNSET_PW}@db/optuna"')
    env = {key: value for key, value in ENV.items() if key != "ER_UNSET_PW"}
    run = er_tune("tune", str(study), "--storage", str(tmp_path / "exp"), env=env)
    assert run.returncode == 2
    assert "search.storage: environment variable ER_UNSET_PW (named as ${ER_UNSET_PW}) is not set" in run.stderr
    run = er_tune("tune", str(tiny_study(tmp_path)), "--storage", "s3://AKIA:hunter2secret@bucket/exp")
    assert run.returncode == 2 and "credentials in the storage URI" in run.stderr
    assert "hunter2secret" not in run.stderr and "s3://AKIA:***@bucket/exp" in run.stderr


# --- secrets -----------------------------------------------------------------------------------
def test_secrets_pickle_as_their_masked_form_and_come_back_in_the_driver(tmp_path, monkeypatch):
    monkeypatch.setenv("ER_TEST_TOKEN", "tokenvalue42")
    study = load_study(str(tiny_study(
        tmp_path, 'loggers: {mlflow: {tracking_uri: "https://u:uripass9@mlflow.lab", '
                  'tracking_token: "${ER_TEST_TOKEN}"}}\n',
        search_extra=', storage: "postgresql://ert:dbpass7@db.lab/optuna?sslpassword=sslpw3"')))
    assert study_secrets(study) == ["tokenvalue42", "uripass9", "dbpass7", "sslpw3"]
    protected = protect(study)
    assert "dbpass7" not in protected.raw and "postgresql://ert:***@db.lab/optuna" in protected.raw
    assert "${ER_TEST_TOKEN}" in protected.raw and protected.search.storage == study.search.storage
    blob = pickle.dumps(protected)
    for secret in ("tokenvalue42", "uripass9", "dbpass7", "sslpw3"):
        assert secret.encode() not in blob
    assert pickle.loads(blob).search.storage == study.search.storage  # the registry of this driver
    alone = subprocess.run([sys.executable, "-c", "import pickle, sys; print(pickle.loads(sys.stdin.buffer.read())"
                            ".search.storage)"], input=blob, capture_output=True, cwd=ROOT, env=ENV)
    assert alone.stdout.decode().strip() == "postgresql://ert:***@db.lab/optuna?sslpassword=***"
    assert repr(Secret("x-secret-value", "***")) == "'***'"
    assert mask("a dbpass7 b", ["dbpass7"]) == "a *** b"


# --- one driver per experiment -----------------------------------------------------------------
def test_a_live_local_holder_stops_a_second_driver_and_status_names_it(tmp_path, capsys):
    from er_tune.cli import main

    exp = tmp_path / "exp"
    lock = DriverLock(str(exp))
    lock.acquire()
    try:
        with pytest.raises(LockHeld, match=f"pid {os.getpid()} on host {socket.gethostname()}"):
            DriverLock(str(exp)).acquire()
        run = er_tune("tune", str(tiny_study(tmp_path)), "--storage", str(exp))
        assert run.returncode == 2
        assert f"driver pid {os.getpid()} on host {socket.gethostname()}, started {lock.record['started']}" in run.stderr
        assert sorted(os.listdir(exp)) == ["driver.lock"]  # nothing else written
        holder = holder_status(str(exp))
        assert holder["pid"] == os.getpid() and holder["live"] is True
    finally:
        lock.release()
    assert not exp.exists()  # the lock created the folder and nothing else was written
    assert holder_status(str(exp)) is None


def test_a_dead_drivers_lock_is_taken_over(tmp_path):
    exp = tmp_path / "exp"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = DriverLock(str(exp))
    dead.record.update(pid=int(gone.stdout), process_start=123.0)
    dead._acquire_local(str(exp), replace=False)
    assert not is_live(json.loads((exp / "driver.lock").read_text()))
    said = []
    lock = DriverLock(str(exp))
    lock.acquire(say=said.append)
    try:
        assert said and said[0].startswith(f"taking over the lock of a driver that is gone: driver pid {gone.stdout.strip()}")
        assert json.loads((exp / "driver.lock").read_text())["token"] == lock.record["token"]
    finally:
        lock.release()


def test_another_hosts_lock_is_live_until_its_lease_runs_out(tmp_path):
    record = {"host": "node-7", "pid": 1, "started": "2026-01-01T00:00:00+00:00", "lease_s": 90.0,
              "renewed": 1000.0, "token": "t"}
    assert is_live(record, now=1089.0) and not is_live(record, now=1091.0)


def test_the_lease_is_renewed_while_the_driver_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(driver_lock.socket, "gethostname", lambda: "this-host")
    lock = DriverLock(str(tmp_path / "exp"), renew_s=0.05)
    lock.acquire()
    try:
        first = lock.record["renewed"]
        deadline = time.time() + 10
        while json.loads((tmp_path / "exp" / "driver.lock").read_text())["renewed"] == first:
            assert time.time() < deadline, "lease not renewed"
            time.sleep(0.05)
    finally:
        lock.release()


# --- a real embedded run: planted secrets, listening sockets -----------------------------------
def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    children.setdefault(int(handle.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    found, todo = {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _listening(pids: set[int]) -> set[tuple[str, int]]:
    """``(address, port)`` of the TCP sockets that ``pids`` listen on (``/proc/net/tcp{,6}``)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    address, port = fields[1].split(":")
                    found.add((address, int(port, 16)))
    return found


LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's /proc")
def test_planted_secrets_reach_no_file_and_no_output_and_ray_listens_on_loopback(tmp_path):
    pytest.importorskip("mlflow")
    exp = tmp_path / "exp"
    study = tiny_study(
        tmp_path, f'loggers: {{mlflow: {{tracking_uri: "sqlite:///{tmp_path}/mlflow.db", '
                  'tracking_token: "${ER_TEST_TOKEN}"}}\n',
        search_extra=f', storage: "sqlite:///{tmp_path}/optuna.db?password=PlantedStoragePw"')
    env = dict(ENV, ER_TEST_TOKEN="PlantedTrackerToken")
    env.pop("RAY_ADDRESS", None)
    driver = subprocess.Popen([sys.executable, "-m", "er_tune", "tune", str(study), "--storage", str(exp)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT,
                              start_new_session=True)
    output: list[bytes] = []
    readers = [threading.Thread(target=lambda s=s: output.append(s.read())) for s in (driver.stdout, driver.stderr)]
    for reader in readers:
        reader.start()
    sockets: set[tuple[str, int]] = set()
    try:
        while driver.poll() is None:
            sockets |= _listening(_descendants(driver.pid))
            time.sleep(0.5)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, 9)
    for reader in readers:
        reader.join()
    printed = b"".join(output)
    assert driver.returncode == 0, printed.decode()[-3000:]
    assert len(sockets) >= 3, sockets  # the GCS, the raylet, the driver's own servers at least
    assert {address for address, _ in sockets} <= LOOPBACK, sockets
    files = [path for path in exp.rglob("*") if path.is_file()]
    assert any(path.name == "tuner.pkl" for path in files) and (exp / "study.yaml").exists()
    for secret in (b"PlantedStoragePw", b"PlantedTrackerToken"):
        assert secret not in printed
        leaked = [str(path) for path in files if secret in path.read_bytes()]
        assert not leaked, (secret, leaked)
    assert "password=***" in (exp / "study.yaml").read_text()
    assert not (exp / "driver.lock").exists()
