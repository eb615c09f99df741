"""``er-tune report`` and ``er-tune show`` (the lead wires them into the CLI).

Exit codes: 0 on success (also with warnings about unreadable trials), 2 when the path is not an
experiment / not a report dir. Problems are listed in manifest.json and on stderr by trial dir.
"""
from __future__ import annotations

import glob
import importlib.metadata as md
import json
import os
import sys

import pandas as pd
import pyarrow.parquet as pq

from er_tune import __version__

from . import render
from .discover import NotAnExperiment, discover
from er_tune.io import write_json_atomic

from .parquet_io import SCHEMA_VERSION, write_table_atomic
from .stability import stability_table, survival_table
from .stats import ALPHA, check_alpha
from .tables import (epochs_table, events_table, relative_dir, search_table, trial_records,
                     trials_table)
from .verdicts import tests_by_family

TABLES = ("trials", "epochs", "collapse_events", "search", "stability", "survival")


def _versions() -> dict:
    out = {"er_tune": __version__}
    for pkg in ("pyarrow", "numpy", "scipy", "pandas", "ray", "torch"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def report_command(experiment: str, out: str | None = None, markdown: str | None = None,
                   plots: bool = True, stream=sys.stdout, err=sys.stderr,
                   alpha: float = ALPHA) -> int:
    """Build every table of the report for ``experiment``; return the exit code.

    ``alpha``: the level of the Holm-adjusted verdicts (0 < alpha < 1, else exit 2).
    """
    try:
        alpha = check_alpha(alpha)
    except ValueError as exc:
        print(f"error: --{exc}", file=err)
        return 2
    try:
        trials, rows = discover(experiment)
    except (NotAnExperiment, OSError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    for t in trials:
        for p in t.problems:
            print(f"warning: {t.trial_dir}: {p}", file=err)
    unreadable = [{"trial_dir": relative_dir(t.trial_dir, experiment), "reason": p}
                  for t in trials for p in t.problems]
    recs, axes, hps = trial_records(trials, root=experiment)
    df = pd.DataFrame(recs)
    phases = sorted(set(df["phase"])) if len(df) else []
    st_phase = "replicate" if "replicate" in phases else ("search" if "search" in phases else
                                                          (phases[0] if phases else "replicate"))
    notes = []
    replicated = st_phase == "replicate"
    if not replicated:
        notes.append(f"no replicate phase: stability computed from the {st_phase!r} phase, which is "
                     "not a replicated comparison (no verdicts; counts are descriptive)")
    tables = {"trials": trials_table(recs, axes, hps), "epochs": epochs_table(trials, rows),
              "collapse_events": events_table(trials), "search": search_table(df, hps)
              if len(df) else search_table(pd.DataFrame(columns=["phase"]), hps),
              "stability": None, "survival": None}
    if not len(df):
        df = pd.DataFrame(columns=["phase", "method", "variant", "status", "seed",
                                   "collapse_epoch", "epochs_completed", "final_knn_top1",
                                   "final_er_entropy", "first_er_entropy"])
    tables["stability"] = stability_table(df, axes, st_phase, alpha=alpha, replicated=replicated)
    tables["survival"] = survival_table(df, axes, st_phase)
    out_dir = out or os.path.join(experiment, "report")
    os.makedirs(out_dir, exist_ok=True)
    for name, tab in tables.items():
        write_table_atomic(tab, os.path.join(out_dir, f"{name}.parquet"))
    study = next((t.params.get("study") for t in trials if t.params and t.params.get("study")),
                 None)
    manifest = {"schema_version": SCHEMA_VERSION, "study": study,
                "experiment": os.path.abspath(experiment), "versions": _versions(),
                "row_counts": {k: v.num_rows for k, v in tables.items()},
                "stability_phase": st_phase, "replicated": replicated, "alpha": alpha,
                "tests": tests_by_family(),
                "multiplicity": "holm within each verdict family across the stability cells "
                                "that can inform it (a collapse count that varies, a collapse "
                                "for the time families)",
                "notes": notes, "unreadable": unreadable,
                "status_counts": df["status"].value_counts().to_dict() if len(df) else {}}
    write_json_atomic(os.path.join(out_dir, "manifest.json"), manifest)
    for n in notes:
        print(f"note: {n}", file=err)
    stream.write(render.terminal(tables["stability"]))
    if markdown:
        with open(markdown, "w") as f:
            f.write(render.markdown(tables["stability"]))
    if plots:
        from .plots import plot_all
        plot_all(tables["stability"], tables["epochs"], axes, out_dir, trials=tables.get("trials"),
                 survival=tables["survival"])
    print(f"report written to {out_dir} ({len(unreadable)} warning(s))", file=stream)
    return 0


def show_command(report_dir: str, stream=sys.stdout) -> int:
    """Print the tables of a report dir again from Parquet (exit 2 if none)."""
    files = {os.path.basename(p)[:-8]: p for p in glob.glob(os.path.join(report_dir, "*.parquet"))}
    if "stability" not in files:
        print(f"error: {report_dir!r} holds no stability.parquet (not a report dir)",
              file=sys.stderr)
        return 2
    stream.write(render.terminal(pq.read_table(files["stability"])))
    for name in ("trials", "search", "survival"):
        if name in files:
            stream.write(render.summary(name, pq.read_table(files[name])))
    mpath = os.path.join(report_dir, "manifest.json")
    if os.path.isfile(mpath):
        with open(mpath) as f:
            m = json.load(f)
        stream.write(f"rows: {m.get('row_counts')}\nunreadable: {len(m.get('unreadable', []))}\n")
    return 0
