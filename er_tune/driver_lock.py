"""One driver per experiment: ``<experiment>/driver.lock``.

Two drivers on one experiment (a double ``ray job submit``, a retry while the first still runs)
would train seeds twice and write two experiment and searcher states. ``er-tune tune`` therefore
takes the experiment's lock before Ray starts, renews it every :data:`RENEW_S` seconds from a
daemon thread while it runs, and removes it when it ends. The lock is a JSON file: ``host``,
``pid``, ``started`` (ISO time), ``process_start`` (the process's start time, so a reused pid is not
mistaken for the holder), ``renewed`` (epoch seconds), ``lease_s`` and a random ``token``.

A lock is *live*, and a second ``tune`` exits 2 naming its holder, when

- it was written on this host and its process (pid and creation time) still runs, or
- it was written on another host (shared disk, ``s3://``...) and renewed within ``lease_s``.

Otherwise its driver is dead (killed, node lost): the new driver takes the lock over and says so.
A local lock is created with ``O_EXCL``; an object store has no create-if-absent, so the writer
waits :data:`SETTLE_S` and reads the lock back: of two drivers that raced, only the one whose
token is in the lock goes on.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from er_core.outcome import storage_location

LOCK_FILE = "driver.lock"
LEASE_S = 90.0
RENEW_S = 20.0
SETTLE_S = 2.0
clock = time.time  # wall-clock seconds; the lease compares times written by different hosts


class LockHeld(RuntimeError):
    """Another live driver holds the experiment."""


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (Linux: clock ticks since boot, from ``/proc/<pid>/stat``; elsewhere
    0.0 while it exists), or ``None`` when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return float(handle.read().rsplit(")", 1)[1].split()[19])
    except FileNotFoundError:
        return None
    except (OSError, IndexError, ValueError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return 0.0
    return 0.0


def describe(holder: dict[str, Any]) -> str:
    return (f"driver pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
            f" (lock renewed {max(0.0, clock() - float(holder.get('renewed', 0))):.0f} s ago)")


def is_live(holder: dict[str, Any], *, now: float | None = None) -> bool:
    """Whether the driver that wrote ``holder`` still runs (see the module docstring)."""
    now = clock() if now is None else now
    if holder.get("host") == socket.gethostname():
        start = _process_start(int(holder.get("pid", -1)))
        return start is not None and start == holder.get("process_start")
    return now - float(holder.get("renewed", 0)) < float(holder.get("lease_s", LEASE_S))


def read_lock(exp_dir: str) -> dict[str, Any] | None:
    """The lock's content, or ``None`` when there is none (or it is unreadable)."""
    from er_tune.storage import read_text

    try:
        text = read_text(exp_dir, LOCK_FILE)
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


def holder_status(exp_dir: str) -> dict[str, Any] | None:
    """For ``er-tune status``: the lock's holder and whether it is live; ``None`` without a lock."""
    holder = read_lock(exp_dir)
    if holder is None:
        return None
    return {**{key: holder.get(key) for key in ("host", "pid", "started", "renewed", "lease_s")},
            "live": is_live(holder)}


@dataclass
class DriverLock:
    """The lock of one experiment held by this process (:meth:`acquire`, :meth:`release`)."""

    exp_dir: str
    lease_s: float = LEASE_S
    renew_s: float = RENEW_S
    settle_s: float = SETTLE_S

    def __post_init__(self) -> None:
        pid = os.getpid()
        self.record = {"host": socket.gethostname(), "pid": pid,
                       "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "process_start": _process_start(pid), "lease_s": self.lease_s,
                       "token": uuid.uuid4().hex, "renewed": clock()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, say=print) -> None:
        """Take the lock or raise :class:`LockHeld`; a dead driver's lock is taken over with a line
        through ``say``."""
        holder = read_lock(self.exp_dir)
        if holder is not None:
            if is_live(holder):
                raise LockHeld(f"{self.exp_dir} is being run by another {describe(holder)}; wait for it "
                               f"to end, or stop it (a dead driver's lock is taken over: on this host "
                               f"at once, from another host after {holder.get('lease_s', LEASE_S):.0f} s "
                               "without renewal)")
            say(f"taking over the lock of a driver that is gone: {describe(holder)}")
        filesystem, path = storage_location(self.exp_dir)
        if filesystem is None:
            self._acquire_local(path, replace=holder is not None)
        else:
            self._write()
            time.sleep(self.settle_s)
            current = read_lock(self.exp_dir)
            if not current or current.get("token") != self.record["token"]:
                raise LockHeld(f"{self.exp_dir}: another driver took the lock at the same time: "
                               f"{describe(current or {})}")
        self._thread = threading.Thread(target=self._renew, daemon=True, name="er-tune-driver-lock")
        self._thread.start()

    def _acquire_local(self, path: str, *, replace: bool) -> None:
        self._created = not os.path.exists(path)
        os.makedirs(path, exist_ok=True)
        target = os.path.join(path, LOCK_FILE)
        if replace:
            os.replace(self._tmp_file(path), target)
            return
        try:
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = read_lock(self.exp_dir) or {}
            raise LockHeld(f"{self.exp_dir} is being run by another {describe(holder)}") from None
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(self.record, handle)

    def _tmp_file(self, path: str) -> str:
        tmp = os.path.join(path, f"{LOCK_FILE}.{self.record['token']}")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.record, handle)
        return tmp

    def _write(self) -> None:
        from er_tune.storage import write_text

        write_text(self.exp_dir, LOCK_FILE, json.dumps(self.record))

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_s):
            current = read_lock(self.exp_dir)
            if current is not None and current.get("token") != self.record["token"]:
                print(f"er-tune tune: warning: the lock of {self.exp_dir} was taken over by another "
                      f"{describe(current)}", flush=True)
                return
            self.record["renewed"] = clock()
            try:
                self._write()
            except OSError:
                continue  # a storage hiccup: the lease allows several missed renewals

    def release(self) -> None:
        """Stop renewing and remove the lock if it is still this driver's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        current = read_lock(self.exp_dir)
        if current is None or current.get("token") != self.record["token"]:
            return
        filesystem, path = storage_location(self.exp_dir)
        try:
            if filesystem is None:
                os.remove(os.path.join(path, LOCK_FILE))
                if getattr(self, "_created", False) and not os.listdir(path):
                    os.rmdir(path)  # Ray did not start: no half-created experiment is left behind
            else:
                filesystem.delete_file(f"{path.rstrip('/')}/{LOCK_FILE}")
        except OSError:
            pass
