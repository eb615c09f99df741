"""Where a trial's per-epoch results and checkpoints go.

A reporter has three members, used by :func:`trainers.trial.run_trial`:

- ``trial_dir``: the directory for the trial's own files (TensorBoard, ``collapse_events.jsonl``);
- ``report(metrics, checkpoint_dir)``: record one epoch and, optionally, the checkpoint directory
  written for it (the reporter takes ownership of it);
- ``latest_checkpoint()``: a context manager yielding the newest checkpoint directory or ``None``;

and optionally ``truncate_after(epoch)`` (:class:`LocalReporter` only), called as the trial starts,
after any checkpoint is restored, to drop result lines of epochs the resumed trial reports again
(Ray's ``result.json`` keeps them; readers drop them with ``reports.results_io.drop_superseded``).

:class:`LocalReporter` reproduces Ray Tune's on-disk format (``params.json``, ``result.json`` lines)
without Ray; the service's :class:`er_tune.tune_reporter.TuneReporter` forwards to ``ray.tune.report``
/ ``ray.tune.get_checkpoint`` (Ray lives on the service floor only).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import uuid
from typing import Any, Iterator, Mapping

from er_core.io import atomic_path, is_temporary, write_json_atomic, write_text_atomic
from er_core.rules import CHECKPOINT_PREFIX, PARAMS_FILE, RESULT_FILE


class LocalReporter:
    """Ray-compatible result files in ``trial_dir`` without Ray (used by ``er-tune train``).

    ``result.json`` gets one JSON object per epoch with Ray's bookkeeping keys
    (``training_iteration``, ``trial_id``, ``time_total_s``, ``timestamp``, ``done``); each line is
    flushed and fsynced so a killed process never loses a finished epoch. Checkpoints are copied to
    ``checkpoint_<iteration>`` via a temporary directory and a rename; the newest ``keep`` are kept.
    The trial writes its own HParams session (there is no driver).
    """

    writes_hparams = True

    def __init__(self, trial_dir: str, params: Mapping[str, Any], *, keep: int = 2,
                 trial_id: str | None = None) -> None:
        self.trial_dir = os.path.abspath(trial_dir)
        self.keep = keep
        os.makedirs(self.trial_dir, exist_ok=True)
        params_path = os.path.join(self.trial_dir, PARAMS_FILE)
        write_json_atomic(params_path, dict(params))
        self.trial_id = trial_id or uuid.uuid4().hex[:8]
        self._start = time.time()
        self._iteration = self._count_results()
        self._time_offset = self._last_time_total()

    def _result_lines(self) -> list[dict]:
        path = os.path.join(self.trial_dir, RESULT_FILE)
        if not os.path.exists(path):
            return []
        lines = []
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        return lines

    def _count_results(self) -> int:
        return len(self._result_lines())

    def _last_time_total(self) -> float:
        lines = self._result_lines()
        return float(lines[-1].get("time_total_s", 0.0)) if lines else 0.0

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: str | None = None) -> None:
        self._iteration += 1
        if checkpoint_dir is not None:
            self._store_checkpoint(checkpoint_dir)
        line = dict(metrics)
        line.update(training_iteration=self._iteration, trial_id=self.trial_id,
                    time_total_s=self._time_offset + time.time() - self._start,
                    timestamp=int(time.time()), hostname=socket.gethostname(), pid=os.getpid(),
                    done=bool(metrics.get("stop_reason")))
        with open(os.path.join(self.trial_dir, RESULT_FILE), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def truncate_after(self, epoch: int) -> None:
        """Drop result lines of epochs after ``epoch``: a resumed trial reports them again."""
        lines = [line for line in self._result_lines() if int(line.get("epoch", 0)) <= epoch]
        path = os.path.join(self.trial_dir, RESULT_FILE)
        if os.path.exists(path):
            write_text_atomic(path, "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))
        self._iteration = len(lines)
        self._time_offset = float(lines[-1].get("time_total_s", 0.0)) if lines else 0.0

    def _store_checkpoint(self, checkpoint_dir: str) -> None:
        target = os.path.join(self.trial_dir, f"{CHECKPOINT_PREFIX}{self._iteration:06d}")
        with atomic_path(target) as tmp:
            shutil.copytree(checkpoint_dir, tmp)
            shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        for old in self._checkpoints()[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    def _checkpoints(self) -> list[str]:
        names = sorted(n for n in os.listdir(self.trial_dir)
                       if n.startswith(CHECKPOINT_PREFIX) and not is_temporary(n))
        return [os.path.join(self.trial_dir, n) for n in names]

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[str | None]:
        found = self._checkpoints()
        yield found[-1] if found else None
