"""Rewrite a report from its own Parquet tables when the trial directories are gone.

``python -m reports.rereport REPORT_DIR [--alpha A]`` reads ``trials.parquet``, ``epochs.parquet``
and ``collapse_events.parquet`` of a report, decides for each trial whether it was graded for
partial collapse exactly as a report from the trial directories would (reports/grades.py
``has_grade_inputs`` on its last epoch row and its events), nulls the grade columns of the trials
that were not, and rebuilds ``trials``, ``stability`` and ``survival`` with the current code
(stability.py; the grid axes from the old stability table's ``grid_axes`` metadata, the phase and
alpha from manifest.json). ``epochs``, ``collapse_events`` and ``search`` are kept as they are.
The manifest records the experiment by name, the code and packages that rewrote it, ``run: null``
(the trials' code, device and data fingerprint were never recorded) and a note saying so.

What it cannot do: anything that needs the trials themselves (re-evaluating a kNN, a linear probe
or a collapse criterion on the network: no checkpoints are kept).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from er_core import __version__
from er_core.io import write_json_atomic
from er_core.provenance import code_version, package_versions

from .commands import MULTIPLICITY
from .grades import has_grade_inputs
from .parquet_io import SCHEMA_VERSION, write_table_atomic
from .render import grid_axes
from .stability import stability_table, survival_table
from .tables import trials_table

UNGRADED_NULLS = ("partial_kinds", "first_partial_epoch", "any_collapse_epoch",
                  "first_warning_epoch")
NOTE = ("re-reported from its own Parquet tables (python -m reports.rereport): the trial "
        "directories were not kept, so the run's code commit, device and data fingerprint are "
        "unknown, and no figure could be re-measured")


def _frame(path: str) -> pd.DataFrame:
    """A Parquet table as pandas with plain strings (dictionary labels group as categoricals)."""
    table = pq.read_table(path)
    columns = [column.cast(field.type.value_type) if pa.types.is_dictionary(field.type) else column
               for field, column in zip(table.schema, table.columns)]
    return pa.table(columns, names=table.column_names).to_pandas()


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{key: (None if isinstance(value, float) and np.isnan(value) else
                   value.item() if hasattr(value, "item") else value)
             for key, value in row.items()} for row in frame.to_dict("records")]


def graded_trials(trials: pd.DataFrame, epochs: pd.DataFrame, events: pd.DataFrame) -> list[bool]:
    """Per trial row: was it graded (its last epoch row holds the grade's inputs, or it has a
    partial event, or it reported nothing)?"""
    last = (epochs.sort_values("epoch").groupby(["phase", "trial_id"], sort=False).tail(1)
            .set_index(["phase", "trial_id"]))
    counts = epochs.groupby(["phase", "trial_id"]).size()
    out = []
    for phase, trial_id in zip(trials["phase"], trials["trial_id"]):
        key = (phase, trial_id)
        row = _records(last.loc[[key]])[0] if key in last.index else None
        own = _records(events[events["trial_id"] == trial_id]) if len(events) else []
        out.append(has_grade_inputs(row, own, int(counts.get(key, 0))))
    return out


def rereport(report_dir: str, alpha: float | None = None) -> dict:
    """Rewrite ``trials``/``stability``/``survival`` and manifest.json of ``report_dir``; return
    the manifest."""
    path = lambda name: os.path.join(report_dir, name)  # noqa: E731
    code = code_version()  # before this writes anything (a committed report dirties the tree)
    with open(path("manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    old = pq.read_table(path("stability.parquet"))
    axes = grid_axes(old)
    trials, epochs = _frame(path("trials.parquet")), _frame(path("epochs.parquet"))
    graded = graded_trials(trials, epochs, _frame(path("collapse_events.parquet")))
    # the stability table's entropy drift reads the first result line's er_entropy
    first = (epochs.sort_values("epoch").groupby(["phase", "trial_id"], sort=False).head(1)
             .set_index(["phase", "trial_id"])["er_entropy"])
    trials["first_er_entropy"] = [first.get((p, t)) for p, t in zip(trials["phase"],
                                                                    trials["trial_id"])]
    trials["partial_graded"] = graded
    keep = np.array(graded) | (trials["collapse_grade"] == "complete").to_numpy()
    trials["collapse_grade"] = trials["collapse_grade"].where(keep, None)
    for column in UNGRADED_NULLS:
        trials[column] = trials[column].astype(object).where(np.array(graded), None)
    hps = [c[len("hp_"):] for c in trials.columns if c.startswith("hp_")]
    alpha = manifest.get("alpha", 0.05) if alpha is None else alpha
    phase = manifest.get("stability_phase", "replicate")
    replicated = manifest.get("replicated", True)
    tables = {"trials": trials_table(_records(trials), axes, hps),
              "stability": stability_table(trials, axes, phase, alpha=alpha, replicated=replicated),
              "survival": survival_table(trials, axes, phase)}
    for name, table in tables.items():
        write_table_atomic(table, path(f"{name}.parquet"))
    experiment = manifest.get("experiment")
    manifest.update({
        "schema_version": SCHEMA_VERSION, "alpha": alpha, "multiplicity": MULTIPLICITY,
        "experiment": os.path.basename(str(experiment).rstrip("/")) if experiment else None,
        "versions": {"er_tune": __version__, **package_versions()}, "code": code,
        "run": None, "original_report_versions": manifest.get("original_report_versions",
                                                               manifest.get("versions")),
        "row_counts": {**manifest.get("row_counts", {}),
                       **{name: table.num_rows for name, table in tables.items()}},
        "notes": [n for n in manifest.get("notes", []) if n != NOTE] + [NOTE]})
    write_json_atomic(path("manifest.json"), manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report_dir")
    parser.add_argument("--alpha", type=float, default=None)
    args = parser.parse_args(argv)
    try:
        manifest = rereport(args.report_dir, args.alpha)
    except (OSError, KeyError, ValueError) as exc:
        print(f"error: {args.report_dir}: {exc}", file=sys.stderr)
        return 2
    from .render import terminal

    print(terminal(pq.read_table(os.path.join(args.report_dir, "stability.parquet"))), end="")
    print(f"rewrote {args.report_dir} (schema {manifest['schema_version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
