"""How a Ray Tune trial ended, as the driver sees it: status, collapse grade, run name.

Shared by the TensorBoard HParams writer and the Optuna searcher (both run in the driver), so the
two tools and ``er-tune status`` use the same words:

- status: ``completed``, ``collapsed``, ``diverged`` (the trial stopped itself, ``stop_reason``),
  ``early_stopped`` (ended without a ``stop_reason``: ASHA stopped it) or ``errored``;
- collapse grade: the most severe event in ``collapse_events.jsonl`` (``none`` < ``warning`` <
  ``partial`` < ``collapse``).
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping

GRADES = ("none", "warning", "partial", "collapse")
STATUSES = ("completed", "collapsed", "diverged", "early_stopped", "errored")
EVENTS_FILE = "collapse_events.jsonl"


def trial_status(result: Mapping[str, Any] | None, error: bool = False) -> str:
    if error:
        return "errored"
    reason = (result or {}).get("stop_reason") or ""
    if reason in ("completed", "collapsed", "diverged"):
        if reason == "completed" and (result or {}).get("collapsed"):
            return "collapsed"  # stop_on_collapse off: trained to the end, still a collapse
        return reason
    return "early_stopped"


def collapse_grade(events: Iterable[Mapping[str, Any]]) -> str:
    """The most severe grade among ``events``; an unknown severity counts as a warning."""
    rank = 0
    for event in events:
        severity = str(event.get("severity", ""))
        rank = max(rank, GRADES.index(severity) if severity in GRADES else 1)
    return GRADES[rank]


def parse_events(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def read_events(trial_path: str, filesystem=None) -> list[dict[str, Any]]:
    """The collapse events of a trial directory: a local path, or a path on a pyarrow filesystem."""
    path = f"{trial_path.rstrip('/')}/{EVENTS_FILE}"
    try:
        if filesystem is None:
            with open(path, encoding="utf-8") as handle:
                return parse_events(handle.read())
        with filesystem.open_input_stream(path) as stream:
            return parse_events(stream.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError):
        return []


def trial_dirname(config: Mapping[str, Any], trial_id: str) -> str:
    """``<method>_<variant>[_<axis>=<value>...]_seed<seed>_<trial id>``: a TensorBoard run, an
    MLflow/W&B run and an Optuna user attribute a person can tell apart at a glance."""
    parts = [str(config.get("method", "trial")), str(config.get("variant", ""))]
    for axis in config.get("grid_axes") or ():
        parts.append(f"{axis}={config.get(axis)}")
    if "seed" in config:
        parts.append(f"seed{config['seed']}")
    parts.append(trial_id)
    return "_".join(part.replace("/", "-").replace(" ", "") for part in parts if part != "")


def storage_location(uri_or_path: str):
    """``(pyarrow filesystem or None, path)`` for a local path or a pyarrow filesystem URI."""
    if "://" not in uri_or_path:
        return None, os.path.abspath(uri_or_path)
    import pyarrow.fs

    filesystem, path = pyarrow.fs.FileSystem.from_uri(uri_or_path)
    if isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        return None, path
    return filesystem, path
