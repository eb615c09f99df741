"""How a Ray Tune trial ended, as the driver sees it: status, collapse grade, run name.

Shared by the TensorBoard HParams writer and the Optuna searcher (both run in the driver), so the
two tools and ``er-tune status`` use the same words:

- status: :func:`er_core.rules.trial_status` with ``ended=True`` (``completed``, ``collapsed``,
  ``diverged``, ``early_stopped`` or ``errored``);
- collapse grade: ``none`` / ``partial`` / ``complete`` (:func:`er_core.rules.collapse_grade`, the
  rule the report and the trial's own monitor apply). Every result line a trial reports carries its
  grade so far (``collapse_grade``, :func:`reported_grade`), so the driver needs no trial file.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping

from er_core import rules


def collapse_grade(result: Mapping[str, Any] | None, events: Iterable[Mapping[str, Any]],
                   error: bool = False) -> str:
    """The grade (:func:`er_core.rules.collapse_grade`) of an ended trial from its last result and events."""
    return rules.collapse_grade(rules.trial_status(result, errored=error, ended=True), events)


def reported_grade(result: Mapping[str, Any] | None) -> str | None:
    """The ``collapse_grade`` a trial reported in ``result`` (its grade up to that epoch), or
    ``None`` when the result carries none (no result, or a trial written before results had it)."""
    grade = (result or {}).get(rules.GRADE_KEY)
    return grade if grade in rules.GRADES else None


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
    path = f"{trial_path.rstrip('/')}/{rules.EVENTS_FILE}"
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
