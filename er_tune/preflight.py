"""Fail fast: every service a study names is tried before Ray starts and before anything is written.

``er-tune tune`` opens the Optuna storage (``search.storage``), the MLflow tracking server
(``loggers.mlflow.tracking_uri`` or ``MLFLOW_TRACKING_URI``), the W&B server of an online
``loggers.wandb`` (its GraphQL API with the API key: ``viewer``) and the experiment storage
(``--storage``: a bucket must exist) once, all at the same time, with one deadline
(:data:`DEADLINE_S`). Each failure is one line naming the study key (or the option) and what failed:
an unknown database kind, a missing driver package, a server that refuses or does not answer, a
tracker that refuses the credentials, a bucket that does not exist. Credentials are masked in every
message (:func:`er_tune.redact.mask`).

A check that does not answer within the deadline is reported as such; its thread is a daemon and
dies with the process (exit code 2).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from er_tune.redact import mask, url_secrets

DEADLINE_S = 20.0
HTTP_TIMEOUT_S = 10.0
DRIVER_PACKAGES = {"postgresql": "psycopg2-binary (or psycopg)", "mysql": "PyMySQL or mysqlclient",
                   "mariadb": "PyMySQL or mariadb", "mssql": "pyodbc", "oracle": "oracledb"}


class PreflightError(Exception):
    """One service named by the study or the command cannot be used."""


def writable_parent(path: str) -> str | None:
    """The problem with creating ``path`` (a file or folder), or ``None``."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        return f"{probe} is not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


def check_database(url: str) -> None:
    """An SQLAlchemy URL: its dialect and driver package are installed and the server answers.
    SQLite is not opened (that would create the file): its folder must exist and be writable."""
    import sqlalchemy
    from sqlalchemy import exc

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except exc.ArgumentError:
        raise PreflightError("not a database URL (e.g. postgresql://USER:PASSWORD@HOST:5432/DB, "
                             "sqlite:////abs/path/file.db)") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            folder = os.path.dirname(os.path.abspath(database))
            if not os.path.isdir(folder):
                raise PreflightError(f"the SQLite file's folder {folder} does not exist")
            problem = writable_parent(database)
            if problem:
                raise PreflightError(problem)
        return
    try:
        engine = sqlalchemy.create_engine(parsed)
    except exc.NoSuchModuleError:
        raise PreflightError(f"unknown database kind {parsed.drivername!r}; allowed: postgresql, mysql, "
                             "sqlite (and the other SQLAlchemy dialects)") from None
    except ImportError as error:
        package = DRIVER_PACKAGES.get(backend, "its SQLAlchemy driver package")
        raise PreflightError(f"the database driver for {parsed.drivername} is not installed ({error}); "
                             f"install {package} in the environment that runs er-tune") from None
    try:
        with engine.connect():
            pass
    except exc.SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise PreflightError(f"cannot connect: {reason}") from None
    finally:
        engine.dispose()


def check_optuna_storage(url: str) -> None:
    if url.startswith("journal:"):
        problem = writable_parent(os.path.expanduser(url[len("journal:"):]))
        if problem:
            raise PreflightError(f"journal file cannot be created: {problem}")
        return
    check_database(url)


def check_http_tracking(uri: str, token: str | None) -> None:
    """An MLflow server answers its REST API (``experiments/search``) and accepts the credentials."""
    import base64
    import urllib.request

    parts = urlsplit(uri)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/experiments/search?max_results=1")
    if parts.username:
        pair = f"{parts.username}:{parts.password or ''}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
    elif token:
        request.add_header("Authorization", f"Bearer {token}")
    answers(request, refused="the tracking server refused the credentials",
            other="not an MLflow tracking server (HTTP {code} from its REST API)",
            unreachable="cannot reach the tracking server")


def answers(request, *, refused: str, other: str, unreachable: str) -> None:
    """Send ``request``; HTTP 401/403 -> ``refused``, another HTTP error -> ``other`` (``{code}``
    filled in), no connection -> ``unreachable``, each a :class:`PreflightError`."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S):
            return
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise PreflightError(f"{refused} (HTTP {error.code})") from None
        raise PreflightError(other.format(code=error.code)) from None
    except (urllib.error.URLError, OSError) as error:
        raise PreflightError(f"{unreachable}: {getattr(error, 'reason', error)}") from None


def check_mlflow(options: dict) -> tuple[str, Callable[[], None]] | None:
    uri = options.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or ""
    key = "loggers.mlflow.tracking_uri" if options.get("tracking_uri") else "MLFLOW_TRACKING_URI"
    token = options.get("tracking_token") or os.environ.get("MLFLOW_TRACKING_TOKEN")
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in ("http", "https"):
        return key, lambda: check_http_tracking(uri, token)
    if scheme and scheme.split("+")[0] in ("sqlite", "postgresql", "mysql", "mssql"):
        return key, lambda: check_database(uri)
    if uri and scheme in ("", "file"):
        folder = uri[len("file://"):] if scheme else uri
        return key, lambda: _raise_if(writable_parent(folder))
    return None  # mlruns in the working folder, databricks, ...: MLflow's own errors


WANDB_DEFAULT_HOST = "https://api.wandb.ai"
WANDB_OFFLINE = ("offline", "disabled", "dryrun")


def wandb_mode(options: dict) -> str:
    return str(options.get("mode") or os.environ.get("WANDB_MODE") or "online").lower()


def wandb_api_key(options: dict) -> str:
    key = options.get("api_key") or os.environ.get("WANDB_API_KEY") or ""
    key_file = options.get("api_key_file")
    if not key and key_file and os.path.isfile(str(key_file)):
        with open(str(key_file), encoding="utf-8") as handle:
            key = handle.read().strip()
    return str(key)


def check_wandb_server(host: str, api_key: str) -> None:
    """A W&B server answers its GraphQL API (``viewer``) and accepts the API key (HTTP basic auth
    ``api:<key>``, what the ``wandb`` client sends)."""
    import base64
    import json
    import urllib.request

    if not api_key:
        raise PreflightError("online W&B needs an API key (WANDB_API_KEY, or loggers.wandb.api_key_file); "
                             "or set mode: offline")
    request = urllib.request.Request(f"{host.rstrip('/')}/graphql", method="POST",
                                     data=json.dumps({"query": "query { viewer { id } }"}).encode(),
                                     headers={"Content-Type": "application/json"})
    request.add_header("Authorization", "Basic " + base64.b64encode(f"api:{api_key}".encode()).decode())
    answers(request, refused="the W&B server refused the API key",
            other=f"not a W&B server (HTTP {{code}} from {host.rstrip('/')}/graphql)",
            unreachable=f"cannot reach the W&B server {host}")


def check_wandb(options: dict) -> tuple[str, Callable[[], None]] | None:
    """Online runs only: offline/disabled runs write files under the experiment and reach nothing."""
    if wandb_mode(options) in WANDB_OFFLINE:
        return None
    host = os.environ.get("WANDB_BASE_URL") or WANDB_DEFAULT_HOST
    key = "loggers.wandb (WANDB_BASE_URL)" if os.environ.get("WANDB_BASE_URL") else "loggers.wandb"
    api_key = wandb_api_key(options)
    return key, lambda: check_wandb_server(host, api_key)


def _raise_if(problem: str | None) -> None:
    if problem:
        raise PreflightError(problem)


def check_bucket(exp_dir: str) -> None:
    """A URI experiment: the filesystem opens and its bucket (first path component) exists."""
    import pyarrow.fs

    from er_core.outcome import storage_location

    try:
        filesystem, path = storage_location(exp_dir)
    except (OSError, ValueError) as error:
        raise PreflightError(f"cannot open the storage: {error}") from None
    if filesystem is None:
        return
    bucket = path.strip("/").split("/", 1)[0]
    try:
        info = filesystem.get_file_info(bucket)
    except OSError as error:
        raise PreflightError(f"cannot reach the storage: {str(error).splitlines()[0]}") from None
    if info.type == pyarrow.fs.FileType.NotFound:
        raise PreflightError(f"the bucket {bucket!r} does not exist (create it first)")


def storage_problem(exp_dir: str) -> str | None:
    """Credentials written into the experiment URI would be written by Ray into the experiment."""
    if "://" in exp_dir and url_secrets(exp_dir):
        return ("credentials in the storage URI are written by Ray into the experiment state; give them "
                "in the environment instead (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "GOOGLE_APPLICATION_CREDENTIALS, ...)")
    if "://" not in exp_dir:
        return writable_parent(exp_dir)
    return None


def study_checks(study, exp_dir: str) -> list[tuple[str, Callable[[], None]]]:
    """``(key, check)`` for every service the study and the command name."""
    checks: list[tuple[str, Callable[[], None]]] = []
    storage = getattr(study.search, "storage", "") or ""
    if storage:
        checks.append(("search.storage", lambda: check_optuna_storage(storage)))
    mlflow = (getattr(study, "loggers", None) or {}).get("mlflow")
    if mlflow is not None:
        found = check_mlflow(dict(mlflow))
        if found:
            checks.append(found)
    wandb = (getattr(study, "loggers", None) or {}).get("wandb")
    if wandb is not None:
        found = check_wandb(dict(wandb))
        if found:
            checks.append(found)
    if "://" in exp_dir:
        checks.append(("--storage", lambda: check_bucket(exp_dir)))
    return checks


def run_checks(checks: list[tuple[str, Callable[[], None]]], secrets: list[str],
               deadline_s: float = DEADLINE_S) -> list[str]:
    """Run the checks at once; one masked line per failure or per check without an answer."""
    outcomes: dict[int, str | None] = {}

    def run(index: int, check: Callable[[], None]) -> None:
        try:
            check()
            outcomes[index] = None
        except PreflightError as error:
            outcomes[index] = str(error)
        except Exception as error:  # noqa: BLE001 - anything a client library raises is a failure
            outcomes[index] = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"

    threads = [threading.Thread(target=run, args=(index, check), daemon=True, name=f"preflight-{key}")
               for index, (key, check) in enumerate(checks)]
    for thread in threads:
        thread.start()
    end = time.monotonic() + deadline_s
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    problems = []
    for index, (key, _) in enumerate(checks):
        if index not in outcomes:
            problems.append(f"{key}: no answer within {deadline_s:.0f} s")
        elif outcomes[index]:
            problems.append(f"{key}: {outcomes[index]}")
    return [mask(problem, secrets) for problem in problems]
