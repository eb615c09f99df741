"""Terminal progress of a study: trials by er-tune status, per phase, as they finish.

Ray's own reporter shows RUNNING/TERMINATED/ERROR; what a stability study needs is whether a trial
*completed*, was *early_stopped* by ASHA, *collapsed*, *diverged* or *errored*. The status comes
from the trial's last reported ``stop_reason`` (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, TextIO

from ray.tune import Callback

STATUSES = ("completed", "early_stopped", "collapsed", "diverged", "errored")


def status_of(last_result: dict[str, Any] | None, *, errored: bool = False) -> str:
    """er-tune status of a finished trial from its last reported result."""
    if errored:
        return "errored"
    reason = (last_result or {}).get("stop_reason", "")
    if reason in ("completed", "collapsed", "diverged"):
        return reason
    return "early_stopped"


class StudyProgress(Callback):
    """Prints one line each time a trial ends: ``[search] 7/16 ended | completed 4 | ...``."""

    def __init__(self, phase: str, total: int, stream: TextIO = sys.stdout) -> None:
        self.phase = phase
        self.total = total
        self.stream = stream
        self.counts: Counter[str] = Counter()
        self._last: dict[str, dict[str, Any]] = {}
        self._started = time.time()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._last[trial.trial_id] = result

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._record(trial, status_of(self._last.get(trial.trial_id) or trial.last_result))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._record(trial, "errored")

    def _record(self, trial, status: str) -> None:
        self.counts[status] += 1
        ended = sum(self.counts.values())
        config = trial.config or {}
        parts = " | ".join(f"{name} {self.counts[name]}" for name in STATUSES if self.counts[name])
        print(f"[{self.phase}] {ended}/{self.total} ended ({time.time() - self._started:.0f}s) | {parts}"
              f"  <- {config.get('group', trial.trial_id)} seed {config.get('seed', '?')}: {status}",
              file=self.stream, flush=True)
