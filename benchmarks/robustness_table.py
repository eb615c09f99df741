"""The robustness table of a report's committed trials table, for a reference cell given here.

A report dir (``results/fmnist_ema``) keeps ``trials.parquet`` (one row per trial, with its final
kNN and linear-probe top-1), not the trial directories ``er-tune report`` reads; this rebuilds the
robustness table from those rows exactly as the report does (reports.robustness.robustness_table,
the stability phase: replicate when there is one) and prints its terminal block (``--markdown``: the
markdown one). For an experiment directory use ``er-tune report EXP --reference ...`` instead.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/robustness_table.py results/fmnist_ema --reference ema=0.9``
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import pyarrow.parquet as pq

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from reports import robustness_view  # noqa: E402
from reports.robustness import ReferenceProblem, parse_reference, robustness_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report_dir")
    parser.add_argument("--reference", required=True, metavar="AXIS=VALUE,...")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    trials = pq.read_table(os.path.join(args.report_dir, "trials.parquet")).to_pandas()
    for column in trials.select_dtypes("category"):
        trials[column] = trials[column].astype(object)
    meta = pq.read_schema(os.path.join(args.report_dir, "stability.parquet")).metadata or {}
    axes = json.loads(meta.get(b"grid_axes", b"[]"))
    phase = "replicate" if (trials["phase"] == "replicate").any() else "search"
    try:
        table = robustness_table(trials, axes, parse_reference(args.reference), phase,
                                 alpha=args.alpha, replicated=phase == "replicate")
    except ReferenceProblem as error:
        print(f"error: --reference: {error}", file=sys.stderr)
        return 2
    print(f"{args.report_dir}: trials.parquet, phase {phase}, {len(trials)} trials")
    print((robustness_view.markdown if args.markdown else robustness_view.terminal)(table), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
