"""Find phases and trial directories of an experiment and read trial files robustly.

Layout (docs/ARCHITECTURE.md, "On-disk format of an experiment"): ``<exp>/search/`` and
``<exp>/replicate/`` are Ray experiment dirs whose subdirectories are trial dirs. Also accepted:
an experiment dir that is itself one Ray experiment (trial dirs directly inside, phase taken from
``params.json`` or "search"), and a single trial dir from ``er-tune train --out DIR`` (phase
"single"). A trial dir is any subdirectory holding params.json, result.json or error.txt; an empty
subdirectory of a phase dir is reported as unreadable ("empty trial directory").

Status rule: ``stop_reason`` on the last line -> that status (completed/collapsed/diverged);
``error.txt`` -> errored (unless Ray's state says TERMINATED: a retried trial that finished keeps
the error.txt of its failed attempt); ``epoch == epochs`` -> completed; Ray's ``experiment_state-*.json`` says
RUNNING/PENDING -> running/pending; no result lines and no state -> pending; else early_stopped.
Rows of epochs a resumed trial reported again are dropped (the re-run's rows are kept), so every
trial has each epoch once (``results_io.drop_superseded``). Ray's ``done`` key is not used (function trainables write done=false on the last line too).
Nothing here raises on bad files: every problem becomes a ``(trial, reason)`` entry.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field

from .results_io import drop_superseded, first_last, json_objects, read_many

TRIAL_FILES = ("params.json", "result.json", "error.txt")
PHASES = ("search", "replicate")


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


def _is_trial_dir(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in TRIAL_FILES)


def find_phases(path: str) -> list[tuple[str, str, list[str]]]:
    """Return ``[(phase, phase_dir, [subdirs])]``; raise NotAnExperiment for anything else."""
    if not os.path.isdir(path):
        raise NotAnExperiment(f"experiment path {path!r} is not a directory")
    if _is_trial_dir(path):
        return [("single", os.path.dirname(os.path.abspath(path)), [os.path.abspath(path)])]
    found = []
    for ph in PHASES:
        d = os.path.join(path, ph)
        if os.path.isdir(d):
            found.append((ph, d, _subdirs(d)))
    if found:
        return found
    subs = _subdirs(path)
    state = glob.glob(os.path.join(path, "experiment_state-*.json"))
    if any(_is_trial_dir(s) for s in subs) or state:
        return [("", path, subs)]
    raise NotAnExperiment(
        f"{path!r} is not an experiment: expected search/ or replicate/ phase dirs, trial dirs "
        "(with params.json/result.json/error.txt) or a trial dir itself")


def _subdirs(d: str) -> list[str]:
    return sorted(os.path.join(d, n) for n in os.listdir(d)
                  if os.path.isdir(os.path.join(d, n)) and not n.startswith("."))


def ray_statuses(phase_dir: str) -> dict[str, str]:
    """Map trial_id or dir name -> Ray status from ``experiment_state-*.json`` (best effort)."""
    out: dict[str, str] = {}
    try:
        files = sorted(glob.glob(os.path.join(phase_dir, "experiment_state-*.json")))
        if not files:
            return out
        with open(files[-1]) as f:
            state = json.load(f)
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
    with open(path, "rb") as f:
        return json_objects(f.read(), os.path.basename(path))


def unique_events(events: list[dict]) -> list[dict]:
    """One event per (detector, kind, severity, epoch, step): a re-run epoch re-emits its events."""
    seen, out = set(), []
    for event in events:
        key = tuple(str(event.get(k)) for k in ("detector", "kind", "severity", "epoch", "step"))
        if key not in seen:
            seen.add(key)
            out.append(event)
    return out


def read_trial(phase: str, trial_dir: str, states: dict[str, str]) -> TrialData:
    """Read one trial dir; never raises."""
    t = TrialData(phase=phase, trial_dir=trial_dir)
    if not _is_trial_dir(trial_dir):
        t.problems.append("empty trial directory")
        return t
    p = os.path.join(trial_dir, "params.json")
    try:
        with open(p) as f:
            t.params = json.load(f)
        if not isinstance(t.params, dict):
            raise ValueError("not an object")
    except FileNotFoundError:
        t.params = None
        t.problems.append("missing params.json")
    except (ValueError, OSError) as exc:
        t.params = None
        t.problems.append(f"unreadable params.json ({type(exc).__name__})")
    r = os.path.join(trial_dir, "result.json")
    if os.path.isfile(r):
        try:
            with open(r, "rb") as f:
                t.raw = f.read()
        except OSError as exc:
            t.problems.append(f"unreadable result.json ({exc})")
    e = os.path.join(trial_dir, "collapse_events.jsonl")
    if os.path.isfile(e):
        try:
            t.events, probs = read_jsonl(e)
            t.events = unique_events(t.events)
            t.problems.extend(probs)
        except OSError as exc:
            t.problems.append(f"unreadable collapse_events.jsonl ({exc})")
    err = os.path.join(trial_dir, "error.txt")
    if os.path.isfile(err):
        try:
            with open(err, errors="replace") as f:
                lines = [ln.rstrip() for ln in f.read().splitlines() if ln.strip()]
            t.error = "\n".join(lines[:3]) if lines else "error.txt (empty)"
        except OSError as exc:
            t.error = f"error.txt unreadable ({exc})"
    return t


def trial_status(t: TrialData) -> str:
    """Status per the rule in the module docstring."""
    last = t.last or {}
    reason = last.get("stop_reason") or ""
    if reason == "completed" and last.get("collapsed"):
        return "collapsed"  # collapsed with stop_on_collapse off: it trained on, it still collapsed
    if reason in ("completed", "collapsed", "diverged"):
        return reason
    if t.error is not None and t.ray_status != "TERMINATED":
        return "errored"  # (error.txt of a trial Ray retried and then finished is history)
    epochs = (t.params or {}).get("epochs")
    if last and epochs is not None and last.get("epoch") == epochs:
        return "completed"
    if t.ray_status in ("RUNNING", "PENDING"):
        return t.ray_status.lower()
    if not t.n_rows:
        return "pending"
    return "early_stopped"


def discover(path: str):
    """Read every trial of the experiment at ``path`` (raises NotAnExperiment).

    Returns ``(trials, epochs)``: the TrialData list and one Arrow table of all result.json rows
    in trial order (``TrialData.n_rows`` rows each).
    """
    out = []
    for phase, phase_dir, subs in find_phases(path):
        states = ray_statuses(phase_dir)
        for s in subs:
            t = read_trial(phase, s, states)
            if not t.phase:
                t.phase = str((t.params or {}).get("phase") or "search")
            out.append((t, states))
    table, counts, problems = read_many([t.raw for t, _ in out])
    table, counts, superseded = drop_superseded(table, counts)
    firsts, lasts, best = first_last(table, counts)
    trials = []
    for (t, states), n, probs, fi, la, b, d in zip(out, counts, problems, firsts, lasts, best,
                                                   superseded):
        t.raw, t.n_rows, t.first, t.last, t.best_knn = b"", n, fi, la, float(b)
        t.problems.extend(probs)
        t.superseded_rows = d
        tid = str(la.get("trial_id")) if la and la.get("trial_id") is not None else None
        t.ray_status = states.get(tid or "") or states.get(os.path.basename(t.trial_dir))
        trials.append(t)
    return trials, table
