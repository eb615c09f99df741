"""``er-tune report`` and ``er-tune show`` (called by ``er_tune.cli``).

Exit codes: 0 on success (also with warnings about unreadable trials), 2 when the path is not an
experiment / not a report dir. Problems are listed in manifest.json and on stderr by trial dir.
"""
from __future__ import annotations

import glob
import json
import math
import os
import sys

import pandas as pd
import pyarrow.parquet as pq

from er_core import __version__
from er_core.io import write_json_atomic
from er_core.provenance import code_version, package_versions
from er_core.rules import EXIT_USAGE, REPLICATE, SEARCH, check_alpha

from . import render, robustness_view
from .discover import NotAnExperiment, discover
from .parquet_io import SCHEMA_VERSION, write_table_atomic
from .robustness import NO_REFERENCE, ReferenceProblem, read_reference, robustness_table
from .stability import stability_table, survival_table
from .stats import ALPHA
from .choices import search_choices
from .tables import (epochs_table, events_table, relative_dir, search_table, trial_records,
                     trials_table)
from .verdicts import tests_by_family

TABLES = ("trials", "epochs", "collapse_events", "search", "stability", "survival")  # what a report writes
OPTIONAL_TABLES = ("robustness",)  # written when the study names a reference cell
MULTIPLICITY = ("holm within each verdict family across the stability cells that can inform it (a "
                "collapse count that varies, a collapse for the time families); the others are "
                "untested")


PROVENANCE_FILE = "provenance.json"  # written by er-tune tune (er_core/provenance.py)


def run_provenance(experiment: str) -> tuple[dict | None, list[str]]:
    """The experiment's ``provenance.json`` (code, packages, device, data fingerprints of the run
    that produced its trials) and the notes to add when it is missing or unreadable."""
    path = os.path.join(experiment, PROVENANCE_FILE)
    if not os.path.isfile(path):
        return None, [f"no {PROVENANCE_FILE} in the experiment (written before er-tune recorded "
                      "it, or not an er-tune tune experiment): the code version, device and data "
                      "fingerprint of its trials are unknown"]
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle), []
    except (OSError, ValueError) as exc:
        return None, [f"{PROVENANCE_FILE} unreadable ({type(exc).__name__}): the run's code, "
                      "device and data are unknown"]


def report_manifest(experiment: str, out_dir: str, **fields) -> dict:
    """manifest.json: ``experiment`` is the experiment folder's name and ``report_dir`` the report
    folder relative to it (no absolute path of the machine); ``versions``/``code``: the report's
    own package versions and code; ``run``: the experiment's provenance.json (null when absent)."""
    run, notes = run_provenance(experiment)
    return {"experiment": os.path.basename(os.path.abspath(experiment)),
            "report_dir": relative_dir(out_dir, experiment),
            "versions": {"er_tune": __version__, **package_versions()}, "code": code_version(),
            "run": run, **fields, "notes": list(fields.get("notes", [])) + notes}


def report_command(experiment: str, out: str | None = None, markdown: str | None = None,
                   plots: bool = True, stream=None, err=None,
                   alpha: float = ALPHA, reference: dict | None = None) -> int:
    """Build every table of the report for ``experiment``; return the exit code.

    ``alpha``: the level of the Holm-adjusted verdicts (0 < alpha < 1, else exit 2). ``stream``,
    ``err``: where the tables and the warnings go (default: the current stdout, stderr).
    ``reference``: the reference cell of the robustness table ({axis: value}, one per grid axis;
    exit 2 when it names no cell of the experiment); default: the ``reference:`` of the
    experiment's study.yaml, and no robustness table without one.
    """
    stream, err = stream or sys.stdout, err or sys.stderr
    try:
        alpha = check_alpha(alpha)
    except ValueError as exc:
        print(f"error: --{exc}", file=err)
        return EXIT_USAGE
    try:
        trials, rows = discover(experiment)
    except (NotAnExperiment, OSError) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    for trial in trials:
        for problem in trial.problems:
            print(f"warning: {trial.trial_dir}: {problem}", file=err)
    unreadable = [{"trial_dir": relative_dir(trial.trial_dir, experiment), "reason": problem}
                  for trial in trials for problem in trial.problems]
    records, axes, hparams = trial_records(trials, root=experiment)
    frame = pd.DataFrame(records)
    phases = sorted(set(frame["phase"])) if len(frame) else []
    stability_phase = REPLICATE if REPLICATE in phases else (
        SEARCH if SEARCH in phases else (phases[0] if phases else REPLICATE))
    notes = []
    replicated = stability_phase == REPLICATE
    if not replicated:
        notes.append(f"no replicate phase: stability computed from the {stability_phase!r} phase, which is "
                     "not a replicated comparison (no verdicts; counts are descriptive)")
    tables = {"trials": trials_table(records, axes, hparams), "epochs": epochs_table(trials, rows),
              "collapse_events": events_table(trials), "search": search_table(frame, hparams, search_choices(experiment, trials, rows))
              if len(frame) else search_table(pd.DataFrame(columns=["phase"]), hparams),
              "stability": None, "survival": None}
    if not len(frame):
        frame = pd.DataFrame(columns=["phase", "method", "variant", "status", "seed",
                                   "collapse_epoch", "epochs_completed", "final_knn_top1",
                                   "final_er_entropy", "first_er_entropy"])
    tables["stability"] = stability_table(frame, axes, stability_phase, alpha=alpha, replicated=replicated)
    tables["survival"] = survival_table(frame, axes, stability_phase)
    given = reference is not None
    reference = reference if given else read_reference(experiment)
    robustness, robustness_note = None, NO_REFERENCE
    if reference is not None:
        try:
            robustness = robustness_table(frame, axes, reference, stability_phase, alpha=alpha,
                                          replicated=replicated)
            robustness_note = None
        except ReferenceProblem as exc:
            where = "--reference" if given else f"{os.path.join(experiment, 'study.yaml')}"
            print(f"{'error' if given else 'warning'}: {where}: {exc}", file=err)
            if given:
                return 2
            robustness_note = f"no robustness table: {exc}"
    tables["robustness"] = robustness
    out_dir = out or os.path.join(experiment, "report")
    os.makedirs(out_dir, exist_ok=True)
    stale = os.path.join(out_dir, "robustness.parquet")
    if robustness is None and os.path.exists(stale):
        os.remove(stale)  # an earlier report's table would outlive the reference it came from
    for name, table in tables.items():
        if table is not None:
            write_table_atomic(table, os.path.join(out_dir, f"{name}.parquet"))
    study = next((trial.params.get("study") for trial in trials
                  if trial.params and trial.params.get("study")), None)
    manifest = report_manifest(
        experiment, out_dir, schema_version=SCHEMA_VERSION, study=study,
        row_counts={name: table.num_rows for name, table in tables.items() if table is not None},
        robustness={"reference": reference, "note": robustness_note,
                    "test": "seed_contrast_t (sign_flip_exact where every contrast is equal)",
                    "multiplicity": "holm over the rows of each metric"},
        stability_phase=stability_phase, replicated=replicated, alpha=alpha,
        tests=tests_by_family(), multiplicity=MULTIPLICITY, notes=notes, unreadable=unreadable,
        status_counts=frame["status"].value_counts().to_dict() if len(frame) else {})
    write_json_atomic(os.path.join(out_dir, "manifest.json"), manifest)
    for note in manifest["notes"]:
        print(f"note: {note}", file=err)
    stream.write(render.terminal(tables["stability"]))
    stream.write(robustness_view.terminal(robustness) if robustness_note is None
                 else robustness_note + "\n")
    if markdown:
        with open(markdown, "w") as handle:
            handle.write(render.markdown(tables["stability"]))
            handle.write("\n" + (robustness_view.markdown(robustness) if robustness_note is None
                                  else robustness_note + "\n"))
    if plots:
        from .plots import plot_all
        from .robustness_plot import plot_robustness
        plot_all(tables["stability"], tables["epochs"], axes, out_dir, trials=tables.get("trials"),
                 survival=tables["survival"])
        if robustness is not None:
            plot_robustness(robustness, out_dir, trials=tables["trials"])
    print(f"report written to {out_dir} ({len(unreadable)} warning(s))", file=stream)
    return 0


def _json_value(value):
    """A table cell as JSON: NaN/Inf become null (strict JSON), timestamps ISO strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def report_json(report_dir: str, files: dict[str, str]) -> dict:
    """The tables of a report dir as ``{name: [row objects]}``, with the schema version, the manifest
    and every table's file. The per-epoch table (one row per trial-epoch, millions in a large study)
    is only named under ``files``: read ``epochs.parquet`` with pyarrow/pandas/duckdb instead."""
    tables = {name: _json_value(pq.read_table(path).to_pylist())
              for name, path in sorted(files.items()) if name != "epochs"}
    schema = pq.read_schema(files["stability"]).metadata or {}
    out = {"report_dir": os.path.abspath(report_dir),
           "schema_version": schema.get(b"schema_version", b"").decode() or None,
           "files": {name: os.path.abspath(path) for name, path in sorted(files.items())}, "tables": tables}
    manifest_path = os.path.join(report_dir, "manifest.json")
    if os.path.isfile(manifest_path):
        with open(manifest_path) as handle:
            out["manifest"] = _json_value(json.load(handle))
    return out


def show_command(report_dir: str, stream=None, *, as_json: bool = False) -> int:
    """Print the tables of a report dir again from Parquet (exit 2 if none).

    ``as_json``: one JSON object (:func:`report_json`) instead of the terminal tables."""
    stream = stream or sys.stdout
    files = {os.path.basename(path)[:-len(".parquet")]: path
             for path in glob.glob(os.path.join(report_dir, "*.parquet"))}
    if "stability" not in files:
        print(f"error: {report_dir!r} holds no stability.parquet (not a report dir)",
              file=sys.stderr)
        return EXIT_USAGE
    if as_json:
        stream.write(json.dumps(report_json(report_dir, files), indent=1, allow_nan=False) + "\n")
        return 0
    stream.write(render.terminal(pq.read_table(files["stability"])))
    stream.write(robustness_view.terminal(pq.read_table(files["robustness"])
                                          if "robustness" in files else None))
    for name in ("trials", "search", "survival"):
        if name in files:
            stream.write(render.summary(name, pq.read_table(files[name])))
    manifest_path = os.path.join(report_dir, "manifest.json")
    if os.path.isfile(manifest_path):
        with open(manifest_path) as handle:
            manifest = json.load(handle)
        stream.write(f"rows: {manifest.get('row_counts')}\nunreadable: {len(manifest.get('unreadable', []))}\n")
    return 0
