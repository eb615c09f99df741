"""Find phases and trial directories of an experiment and read trial files robustly.

Layout (docs/ARCHITECTURE.md, "On-disk format of an experiment"): ``<exp>/search/`` and
``<exp>/replicate/`` are Ray experiment dirs whose subdirectories are trial dirs. Also accepted:
an experiment dir that is itself one Ray experiment (trial dirs directly inside, phase taken from
``params.json`` or "search"), and a single trial dir from ``er-tune train --out DIR`` (phase
"single"). A trial dir is any subdirectory holding params.json, result.json or error.txt; an empty
subdirectory of a phase dir is reported as unreadable ("empty trial directory").

Status: :func:`er_core.rules.trial_status` (the one rule the live progress line, ``er-tune status``
and the report share) on the last line, ``params.json``'s ``epochs``, ``error.txt`` and Ray's
``experiment_state-*.json`` status.
Rows of epochs a resumed trial reported again are dropped (the re-run's rows are kept), so every
trial has each epoch once (``results_io.drop_superseded``). Ray's ``done`` key is not used (function trainables write done=false on the last line too).
Nothing here raises on bad files: every problem becomes a ``(trial, reason)`` entry.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field

from er_core import rules
from er_core.rules import ERROR_FILE, EVENTS_FILE, PARAMS_FILE, PHASES, RESULT_FILE, SEARCH

from .results_io import drop_superseded, first_last, json_objects, read_many

TRIAL_FILES = (PARAMS_FILE, RESULT_FILE, ERROR_FILE)


class NotAnExperiment(ValueError):
    """The path holds no phase, no trial dirs and is not a trial dir."""


@dataclass
class TrialData:
    """Everything read from one trial dir."""

    phase: str
    trial_dir: str
    params: dict | None = None
    raw: bytes = b""
    n_rows: int = 0
    first: dict | None = None
    last: dict | None = None
    best_knn: float = float("nan")
    events: list = field(default_factory=list)
    error: str | None = None
    ray_status: str | None = None
    problems: list = field(default_factory=list)
    superseded_rows: int = 0  # result.json rows re-reported after a resume (dropped, see drop_superseded)
    untrained: dict | None = None  # the untrained network's evaluation (untrained.json), if written


def _is_trial_dir(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, name)) for name in TRIAL_FILES)


def find_phases(path: str) -> list[tuple[str, str, list[str]]]:
    """Return ``[(phase, phase_dir, [subdirs])]``; raise NotAnExperiment for anything else."""
    if not os.path.isdir(path):
        raise NotAnExperiment(f"experiment path {path!r} is not a directory")
    if _is_trial_dir(path):
        return [("single", os.path.dirname(os.path.abspath(path)), [os.path.abspath(path)])]
    found = []
    for phase in PHASES:
        phase_dir = os.path.join(path, phase)
        if os.path.isdir(phase_dir):
            found.append((phase, phase_dir, _subdirs(phase_dir)))
    if found:
        return found
    subdirs = _subdirs(path)
    state = glob.glob(os.path.join(path, rules.EXPERIMENT_STATE_GLOB))
    if any(_is_trial_dir(subdir) for subdir in subdirs) or state:
        return [("", path, subdirs)]
    raise NotAnExperiment(
        f"{path!r} is not an experiment: expected search/ or replicate/ phase dirs, trial dirs "
        "(with params.json/result.json/error.txt) or a trial dir itself")


def _subdirs(directory: str) -> list[str]:
    return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                  if os.path.isdir(os.path.join(directory, name)) and not name.startswith("."))


def ray_statuses(phase_dir: str) -> dict[str, str]:
    """Map trial_id or dir name -> Ray status from ``experiment_state-*.json`` (best effort)."""
    out: dict[str, str] = {}
    try:
        files = sorted(glob.glob(os.path.join(phase_dir, rules.EXPERIMENT_STATE_GLOB)))
        if not files:
            return out
        with open(files[-1]) as handle:
            state = json.load(handle)
        for entry in state.get("trial_data", []) or []:
            try:
                item = entry[0] if isinstance(entry, (list, tuple)) else entry
                item = json.loads(item) if isinstance(item, str) else item
                status = str(item.get("status", "")).upper()
                for key in ("trial_id", "relative_logdir", "trial_dirname", "dirname"):
                    if item.get(key):
                        out[os.path.basename(str(item[key]))] = status
            except Exception:  # noqa: BLE001 - state format varies across Ray versions
                continue
    except Exception:  # noqa: BLE001
        return {}
    return out


def read_jsonl(path: str) -> tuple[list[dict], list[str]]:
    """Parse a small JSON-lines file (collapse_events.jsonl); bad lines are skipped and named."""
    with open(path, "rb") as handle:
        return json_objects(handle.read(), os.path.basename(path))


def unique_events(events: list[dict]) -> list[dict]:
    """One event per (detector, kind, severity, epoch, step): a re-run epoch re-emits its events."""
    seen, out = set(), []
    for event in events:
        key = tuple(str(event.get(name)) for name in ("detector", "kind", "severity", "epoch", "step"))
        if key not in seen:
            seen.add(key)
            out.append(event)
    return out


def read_trial(phase: str, trial_dir: str, states: dict[str, str]) -> TrialData:
    """Read one trial dir; never raises."""
    trial = TrialData(phase=phase, trial_dir=trial_dir)
    if not _is_trial_dir(trial_dir):
        trial.problems.append("empty trial directory")
        return trial
    params_path = os.path.join(trial_dir, PARAMS_FILE)
    try:
        with open(params_path) as handle:
            trial.params = json.load(handle)
        if not isinstance(trial.params, dict):
            raise ValueError("not an object")
    except FileNotFoundError:
        trial.params = None
        trial.problems.append(f"missing {PARAMS_FILE}")
    except (ValueError, OSError) as exc:
        trial.params = None
        trial.problems.append(f"unreadable {PARAMS_FILE} ({type(exc).__name__})")
    result_path = os.path.join(trial_dir, RESULT_FILE)
    if os.path.isfile(result_path):
        try:
            with open(result_path, "rb") as handle:
                trial.raw = handle.read()
        except OSError as exc:
            trial.problems.append(f"unreadable {RESULT_FILE} ({exc})")
    events_path = os.path.join(trial_dir, EVENTS_FILE)
    if os.path.isfile(events_path):
        try:
            events, problems = read_jsonl(events_path)
            trial.events = unique_events(events)
            trial.problems.extend(problems)
        except OSError as exc:
            trial.problems.append(f"unreadable {EVENTS_FILE} ({exc})")
    untrained_path = os.path.join(trial_dir, rules.UNTRAINED_FILE)
    if os.path.isfile(untrained_path):
        try:
            with open(untrained_path) as handle:
                trial.untrained = json.load(handle)
            if not isinstance(trial.untrained, dict):
                raise ValueError("not an object")
        except (ValueError, OSError) as exc:
            trial.untrained = None
            trial.problems.append(f"unreadable {rules.UNTRAINED_FILE} ({type(exc).__name__})")
    error_path = os.path.join(trial_dir, ERROR_FILE)
    if os.path.isfile(error_path):
        try:
            with open(error_path, errors="replace") as handle:
                lines = [line.rstrip() for line in handle.read().splitlines() if line.strip()]
            trial.error = "\n".join(lines[:3]) if lines else "error.txt (empty)"
        except OSError as exc:
            trial.error = f"{ERROR_FILE} unreadable ({exc})"
    return trial


def trial_status(trial: TrialData) -> str:
    """The trial's status by :func:`er_core.rules.trial_status`, the rule every view shares."""
    return rules.trial_status(trial.last, epochs=(trial.params or {}).get("epochs"),
                              errored=trial.error is not None, ray_status=trial.ray_status,
                              has_params=trial.params is not None)


def discover(path: str):
    """Read every trial of the experiment at ``path`` (raises NotAnExperiment).

    Returns ``(trials, epochs)``: the TrialData list and one Arrow table of all result.json rows
    in trial order (``TrialData.n_rows`` rows each).
    """
    read = []
    for phase, phase_dir, subdirs in find_phases(path):
        states = ray_statuses(phase_dir)
        for subdir in subdirs:
            trial = read_trial(phase, subdir, states)
            if not trial.phase:
                trial.phase = str((trial.params or {}).get("phase") or SEARCH)
            read.append((trial, states))
    table, counts, problems = read_many([trial.raw for trial, _ in read])
    table, counts, superseded = drop_superseded(table, counts)
    firsts, lasts, best = first_last(table, counts)
    trials = []
    for (trial, states), n_rows, row_problems, first, last, best_knn, dropped in zip(
            read, counts, problems, firsts, lasts, best, superseded):
        trial.raw, trial.n_rows, trial.first, trial.last = b"", n_rows, first, last
        trial.best_knn = float(best_knn)
        trial.problems.extend(row_problems)
        trial.superseded_rows = dropped
        trial_id = str(last.get("trial_id")) if last and last.get("trial_id") is not None else None
        trial.ray_status = states.get(trial_id or "") or states.get(os.path.basename(trial.trial_dir))
        trials.append(trial)
    return trials, table
