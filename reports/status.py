"""``er-tune status EXP``: where a running or finished study stands, from its directory alone.

Reads ``plan.json`` (written by ``er-tune tune`` before Ray starts: planned trials per phase,
``max_epochs``, the search metric), the trial directories (``result.json`` lines, events) and
Ray's ``experiment_state-*.json`` (running/pending trials) through :func:`reports.discover.discover`,
so it is safe while the study runs: a half-written last line is skipped, trial directories may
appear between two reads, nothing is written and no Ray process is contacted. Ray copies
``result.json`` and its state to the storage every ~10 s, so the view may lag by that much; a trial
directory without params/results is a trial that started since the last copy (running).

Each trial's state is :func:`er_core.rules.trial_status` and each group's best configuration
:func:`er_core.rules.best_by_group` over the search phase (metrics compared at the furthest epoch
any trial of the group reached; the JSON gives that ``epoch`` and the ``value`` there): the rules the live progress line of
``er-tune tune``, the report and the replicate phase use (``tests/test_rules_agree.py``).
``er-tune status --json`` prints :func:`experiment_status`'s dict as one JSON object.

ETA: ``remaining / rate`` where ``rate = epochs done / seconds since the first trial started``
(the observed throughput of the whole experiment, trial start-up included) and ``remaining`` counts
``max_epochs`` for every running or not yet started trial minus the epochs it has done. Trials that
ASHA will stop early make this an upper bound.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter

from er_core.halving import Halving
from er_core.rules import (COLLAPSE_STATUSES, ENDED_STATUSES, EXIT_USAGE, PHASES, SEARCH, STATUSES, Candidate,
                            best_by_group)

from .discover import NotAnExperiment, discover, trial_status

STALE_S = 600  # no result for this long while trials are unfinished: say so next to the ETA


def read_json_object(exp_dir: str, name: str) -> dict | None:
    """``<exp_dir>/<name>`` as a JSON object, or None when missing, unreadable or not an object."""
    try:
        with open(os.path.join(exp_dir, name), encoding="utf-8") as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def read_plan(exp_dir: str) -> dict | None:
    return read_json_object(exp_dir, "plan.json")


def trial_rows(trials, table, metric: str) -> dict[int, list[dict]]:
    """Each trial's result lines (``epoch`` and ``metric`` only), keyed by ``id(trial)``: slices of
    :func:`reports.discover.discover`'s table, which holds ``n_rows`` rows per trial in trial order."""
    columns = [name for name in ("epoch", "training_iteration", metric) if name in table.column_names]
    data = table.select(columns).to_pylist() if columns else [{} for _ in range(table.num_rows)]
    out, start = {}, 0
    for trial in trials:
        out[id(trial)] = data[start:start + trial.n_rows]
        start += trial.n_rows
    return out


def best_per_group(trials, statuses: dict[int, str], rows: dict[int, list[dict]], metric: str, mode: str,
                   halving: Halving | None = None) -> dict[str, dict]:
    """The configuration the replicate phase uses per group (:func:`er_core.rules.best_by_group`:
    metrics compared at the furthest epoch any trial of the group reached) among the search phase's
    trials, or among all trials of a study without a search phase.

    While the search runs this is the best so far; trials still running take part with the epochs
    they have reported. ``epoch`` and ``value``: where the choice was compared, and its metric there."""
    searched = [trial for trial in trials if trial.phase == SEARCH]
    candidates = []
    for trial in searched or trials:
        params = trial.params or {}
        candidates.append(Candidate(params.get("group"), statuses[id(trial)], rows[id(trial)], trial,
                                    int(params.get("optuna_trial") or 0)))
    best = {}
    for group, choice in best_by_group(candidates, metric, mode, halving).items():
        trial = choice.item
        params = trial.params or {}
        best[group] = {"value": choice.value, "epoch": choice.epoch, "phase": trial.phase,
                       "status": choice.status, "trial": os.path.basename(trial.trial_dir),
                       "optuna_trial": params.get("optuna_trial"),
                       "hparams": {name: params.get(name) for name in params.get("searched", [])}}
    return best


def experiment_status(exp_dir: str, *, now: float | None = None) -> dict:
    """Everything ``er-tune status`` prints, as a dict (raises NotAnExperiment for a non-experiment)."""
    now = time.time() if now is None else now
    plan = read_plan(exp_dir)
    if not os.path.isdir(exp_dir):
        raise NotAnExperiment(f"experiment path {exp_dir!r} is not a directory")
    try:
        trials, table = discover(exp_dir)
    except NotAnExperiment:
        if plan is None:
            raise
        trials, table = [], None  # the driver wrote plan.json, Ray has not created a phase yet
    metric = (plan or {}).get("metric", "knn_top1")
    mode = (plan or {}).get("mode", "max")
    phases: dict[str, dict] = {}
    done_epochs, remaining, starts, last_timestamp, unreadable = 0, 0, [], 0.0, 0
    collapses = Counter()
    statuses = {id(trial): trial_status(trial) for trial in trials}
    for phase in PHASES:
        planned = ((plan or {}).get("phases") or {}).get(phase, {})
        in_phase = [trial for trial in trials if trial.phase == phase]
        max_epochs = int(planned.get("max_epochs") or 0)
        counts = Counter()
        for trial in in_phase:
            state = statuses[id(trial)]
            if state == "running" and not trial.n_rows:
                trial.problems = [problem for problem in trial.problems if problem != "empty trial directory"]
            counts[state] += 1
            epochs = int((trial.last or {}).get("epoch") or 0)
            done_epochs += epochs
            target = int((trial.params or {}).get("epochs") or max_epochs)
            if state not in ENDED_STATUSES:
                remaining += max(0, target - epochs)
            if trial.first is not None:
                starts.append(float(trial.first.get("timestamp", 0))
                              - float(trial.first.get("time_total_s", 0)))
                last_timestamp = max(last_timestamp, float((trial.last or {}).get("timestamp", 0)))
            unreadable += len(trial.problems)
            collapses["trials"] += state in COLLAPSE_STATUSES
            for event in trial.events:
                collapses[event.get("severity", "collapse")] += 1
        missing = max(0, int(planned.get("trials") or 0) - len(in_phase))
        counts["pending"] += missing
        remaining += missing * max_epochs
        total = max(int(planned.get("trials") or 0), len(in_phase))
        if total or in_phase:
            ended = sum(counts[name] for name in ENDED_STATUSES)
            phases[phase] = {"planned": total, "ended": ended, "counts": dict(counts),
                             "state": "finished" if total and ended >= total else
                             ("not started" if not in_phase else "running")}
    start = min(starts) if starts else None
    unfinished = any(summary["state"] != "finished" for summary in phases.values())
    elapsed = ((now if unfinished else last_timestamp) - start) if start is not None else 0.0
    rate = done_epochs / elapsed if elapsed > 0 and done_epochs else 0.0
    current = next((name for name, summary in phases.items() if summary["state"] != "finished"), None)
    return {
        "experiment": os.path.abspath(exp_dir), "study": (plan or {}).get("study"),
        "phase": current or ("finished" if phases else "starting"), "phases": phases,
        "collapse_trials": collapses["trials"], "collapse_events": collapses["collapse"],
        "warning_events": collapses["warning"], "metric": metric, "mode": mode,
        "best": best_per_group(trials, statuses, trial_rows(trials, table, metric) if trials else {}, metric, mode,
                               Halving.from_dict(plan["halving"]) if (plan or {}).get("halving") else None),
        "epochs_done": done_epochs, "epochs_remaining": remaining, "epochs_per_s": rate,
        "eta_s": remaining / rate if rate > 0 and unfinished else (0.0 if not unfinished else None),
        "elapsed_s": elapsed, "since_last_result_s": now - last_timestamp if last_timestamp else None,
        "unreadable": unreadable, "has_plan": plan is not None,
    }


def duration(seconds: float | None) -> str:
    """``1h05m``, ``3m10s`` (``unknown`` for None): how status and the live progress line print times."""
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
        counts = " | ".join(f"{state} {phase['counts'][state]}" for state in STATUSES
                            if phase["counts"].get(state))
        lines.append(f"  {name:<9} {phase['state']:<11} {phase['ended']}/{phase['planned']} ended | {counts}")
    lines.append(f"collapses so far: {status['collapse_trials']} trial(s) collapsed or diverged, "
                 f"{status['collapse_events']} collapse event(s), {status['warning_events']} warning(s)")
    if status["best"]:
        lines.append(f"best {status['metric']} ({status['mode']}) per group:")
        width = max(len(group) for group in status["best"])
        for group, best in status["best"].items():
            hparams = ", ".join(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
                                for name, value in best["hparams"].items())
            flag = f" ({best['status']})" if best["status"] in COLLAPSE_STATUSES else ""
            lines.append(f"  {group:<{width}}  {best['value']:.4f} at epoch {best['epoch']}{flag}  "
                         f"[{best['phase']}] {best['trial']}"
                         + (f"  {hparams}" if hparams else ""))
    total = status["epochs_done"] + status["epochs_remaining"]
    progress = (f"epochs: {status['epochs_done']}/{total} done"
                f" ({100.0 * status['epochs_done'] / total:.0f}%)" if total else "epochs: none planned yet")
    if status["phase"] == "finished":
        lines.append(f"{progress}; finished in {duration(status['elapsed_s'])}")
    else:
        rate = status["epochs_per_s"]
        eta = (f"ETA {duration(status['eta_s'])} (at most; ASHA may stop trials earlier)"
               if status["eta_s"] is not None else "ETA unknown (no epoch finished yet)")
        lines.append(f"{progress}; {rate * 60:.1f} epochs/min observed; {eta}")
        since = status["since_last_result_s"]
        if since is not None and since > STALE_S:
            lines.append(f"no new result for {duration(since)}: is the study still running? "
                         "(run the same er-tune tune command again to resume it)")
    if not status["has_plan"]:
        lines.append("note: no plan.json (experiment from an older er-tune): pending trials unknown")
    if status["unreadable"]:
        lines.append(f"note: {status['unreadable']} unreadable line(s)/file(s) skipped "
                     "(a file being written, or see er-tune report)")
    return "\n".join(lines) + "\n"


def status_command(experiment: str, stream=None, err=None, *, as_json: bool = False,
                   driver: dict | None = None) -> int:
    """Print the status of ``experiment`` (``as_json``: :func:`experiment_status`'s dict as one JSON
    object); exit 2 when it is not an experiment directory. ``driver``: the holder of the
    experiment's driver lock (host, pid, started, live), shown as its own line / ``"driver"`` key."""
    stream, err = stream or sys.stdout, err or sys.stderr
    try:
        status = experiment_status(experiment)
    except (NotAnExperiment, OSError) as exc:
        print(f"er-tune status: {exc}", file=err)
        return EXIT_USAGE
    status["driver"] = driver
    if as_json:
        stream.write(json.dumps(status, indent=2, sort_keys=True, allow_nan=False) + "\n")
    else:
        stream.write(render_status(status) + render_driver(driver))
    return 0


def render_driver(driver: dict | None) -> str:
    """One line: who holds the experiment's driver lock, and whether that driver still runs."""
    if not driver:
        return "driver: none (no er-tune tune holds this experiment)\n"
    state = "running" if driver.get("live") else "gone (its lock is taken over by the next tune)"
    return (f"driver: pid {driver.get('pid')} on host {driver.get('host')}, started {driver.get('started')}"
            f" - {state}\n")
