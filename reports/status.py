"""``er-tune status EXP``: where a running or finished study stands, from its directory alone.

Reads ``plan.json`` (written by ``er-tune tune`` before Ray starts: planned trials per phase,
``max_epochs``, the search metric), the trial directories (``result.json`` lines, events) and
Ray's ``experiment_state-*.json`` (running/pending trials) through :func:`reports.discover.discover`,
so it is safe while the study runs: a half-written last line is skipped, trial directories may
appear between two reads, nothing is written and no Ray process is contacted. Ray copies
``result.json`` and its state to the storage every ~10 s, so the view may lag by that much; a trial
directory without params/results is a trial that started since the last copy (running).

ETA: ``remaining / rate`` where ``rate = epochs done / seconds since the first trial started``
(the observed throughput of the whole experiment, trial start-up included) and ``remaining`` counts
``max_epochs`` for every running or not yet started trial minus the epochs it has done. Trials that
ASHA will stop early make this an upper bound.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import Counter

from .discover import NotAnExperiment, discover, trial_status

STATES = ("running", "pending", "completed", "early_stopped", "collapsed", "diverged", "errored")
ENDED = ("completed", "early_stopped", "collapsed", "diverged", "errored")
PHASES = ("search", "replicate")
STALE_S = 600  # no result for this long while trials are unfinished: say so next to the ETA


def read_plan(exp_dir: str) -> dict | None:
    try:
        with open(os.path.join(exp_dir, "plan.json"), encoding="utf-8") as handle:
            plan = json.load(handle)
        return plan if isinstance(plan, dict) else None
    except (OSError, ValueError):
        return None


def _metric_value(trial, metric: str) -> float | None:
    value = (trial.last or {}).get(metric)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _state(trial) -> str:
    """:func:`trial_status`, plus: a trial dir without params/results (empty, or only the trial's
    own events and TensorBoard files) belongs to a trial that started since Ray's last copy."""
    if trial.params is None and not trial.n_rows and trial.error is None:
        return "running"
    return trial_status(trial)


def experiment_status(exp_dir: str, *, now: float | None = None) -> dict:
    """Everything ``er-tune status`` prints, as a dict (raises NotAnExperiment for a non-experiment)."""
    now = time.time() if now is None else now
    plan = read_plan(exp_dir)
    if not os.path.isdir(exp_dir):
        raise NotAnExperiment(f"experiment path {exp_dir!r} is not a directory")
    try:
        trials, _ = discover(exp_dir)
    except NotAnExperiment:
        if plan is None:
            raise
        trials = []  # the driver wrote plan.json, Ray has not created a phase yet
    metric = (plan or {}).get("metric", "knn_top1")
    mode = (plan or {}).get("mode", "max")
    phases: dict[str, dict] = {}
    done_epochs, remaining, starts, last_ts, unreadable = 0, 0, [], 0.0, 0
    collapses = Counter()
    best: dict[str, dict] = {}
    for phase in PHASES:
        planned = ((plan or {}).get("phases") or {}).get(phase, {})
        mine = [t for t in trials if t.phase == phase]
        max_epochs = int(planned.get("max_epochs") or 0)
        counts = Counter()
        for t in mine:
            state = _state(t)
            if state == "running" and not t.n_rows:
                t.problems = [p for p in t.problems if p != "empty trial directory"]
            counts[state] += 1
            epochs = int((t.last or {}).get("epoch") or 0)
            done_epochs += epochs
            target = int((t.params or {}).get("epochs") or max_epochs)
            if state not in ENDED:
                remaining += max(0, target - epochs)
            if t.first is not None:
                starts.append(float(t.first.get("timestamp", 0)) - float(t.first.get("time_total_s", 0)))
                last_ts = max(last_ts, float((t.last or {}).get("timestamp", 0)))
            unreadable += len(t.problems)
            collapses["trials"] += state in ("collapsed", "diverged")
            for event in t.events:
                collapses[event.get("severity", "collapse")] += 1
            value = _metric_value(t, metric)
            group = (t.params or {}).get("group")
            if value is not None and group:
                # as the replicate phase chooses: a collapsed/diverged trial ranks below every other
                key = (state not in ("collapsed", "diverged"), value if mode == "max" else -value)
                if group not in best or key > best[group]["key"]:
                    best[group] = {"key": key, "value": value, "phase": phase, "status": state,
                                   "trial": os.path.basename(t.trial_dir),
                                   "hparams": {h: t.params.get(h) for h in t.params.get("searched", [])}}
        missing = max(0, int(planned.get("trials") or 0) - len(mine))
        counts["pending"] += missing
        remaining += missing * max_epochs
        total = max(int(planned.get("trials") or 0), len(mine))
        if total or mine:
            ended = sum(counts[s] for s in ENDED)
            phases[phase] = {"planned": total, "ended": ended, "counts": dict(counts),
                             "state": "finished" if total and ended >= total else
                             ("not started" if not mine else "running")}
    start = min(starts) if starts else None
    unfinished = any(p["state"] != "finished" for p in phases.values())
    elapsed = ((now if unfinished else last_ts) - start) if start is not None else 0.0
    rate = done_epochs / elapsed if elapsed > 0 and done_epochs else 0.0
    current = next((name for name, p in phases.items() if p["state"] != "finished"), None)
    return {
        "experiment": os.path.abspath(exp_dir), "study": (plan or {}).get("study"),
        "phase": current or ("finished" if phases else "starting"), "phases": phases,
        "collapse_trials": collapses["trials"], "collapse_events": collapses["collapse"],
        "warning_events": collapses["warning"], "metric": metric, "mode": mode,
        "best": {g: {k: v for k, v in b.items() if k != "key"} for g, b in sorted(best.items())},
        "epochs_done": done_epochs, "epochs_remaining": remaining, "epochs_per_s": rate,
        "eta_s": remaining / rate if rate > 0 and unfinished else (0.0 if not unfinished else None),
        "elapsed_s": elapsed, "since_last_result_s": now - last_ts if last_ts else None,
        "unreadable": unreadable, "has_plan": plan is not None,
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s")


def render_status(status: dict) -> str:
    """The terminal view of :func:`experiment_status`."""
    lines = [f"experiment {status['experiment']}" + (f" (study {status['study']})" if status["study"] else ""),
             f"phase: {status['phase']}"]
    for name, phase in status["phases"].items():
        counts = " | ".join(f"{s} {phase['counts'].get(s, 0)}" for s in STATES if phase["counts"].get(s))
        lines.append(f"  {name:<9} {phase['state']:<11} {phase['ended']}/{phase['planned']} ended | {counts}")
    lines.append(f"collapses so far: {status['collapse_trials']} trial(s) collapsed or diverged, "
                 f"{status['collapse_events']} collapse event(s), {status['warning_events']} warning(s)")
    if status["best"]:
        lines.append(f"best {status['metric']} ({status['mode']}) per group:")
        width = max(len(g) for g in status["best"])
        for group, b in status["best"].items():
            hp = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in b["hparams"].items())
            flag = f" ({b['status']})" if b["status"] in ("collapsed", "diverged") else ""
            lines.append(f"  {group:<{width}}  {b['value']:.4f}{flag}  [{b['phase']}] {b['trial']}"
                         + (f"  {hp}" if hp else ""))
    total = status["epochs_done"] + status["epochs_remaining"]
    progress = (f"epochs: {status['epochs_done']}/{total} done"
                f" ({100.0 * status['epochs_done'] / total:.0f}%)" if total else "epochs: none planned yet")
    if status["phase"] == "finished":
        lines.append(f"{progress}; finished in {_duration(status['elapsed_s'])}")
    else:
        rate = status["epochs_per_s"]
        eta = (f"ETA {_duration(status['eta_s'])} (at most; ASHA may stop trials earlier)"
               if status["eta_s"] is not None else "ETA unknown (no epoch finished yet)")
        lines.append(f"{progress}; {rate * 60:.1f} epochs/min observed; {eta}")
        since = status["since_last_result_s"]
        if since is not None and since > STALE_S:
            lines.append(f"no new result for {_duration(since)}: is the study still running? "
                         "(run the same er-tune tune command again to resume it)")
    if not status["has_plan"]:
        lines.append("note: no plan.json (experiment from an older er-tune): pending trials unknown")
    if status["unreadable"]:
        lines.append(f"note: {status['unreadable']} unreadable line(s)/file(s) skipped "
                     "(a file being written, or see er-tune report)")
    return "\n".join(lines) + "\n"


def status_command(experiment: str, stream=None, err=None) -> int:
    """Print the status of ``experiment``; exit 2 when it is not an experiment directory."""
    stream, err = stream or sys.stdout, err or sys.stderr
    try:
        status = experiment_status(experiment)
    except (NotAnExperiment, OSError) as exc:
        print(f"er-tune status: {exc}", file=err)
        return 2
    stream.write(render_status(status))
    return 0
