"""Benchmark: `er-tune report` on a synthetic 10,000-trial × 100-epoch experiment (1 M epoch rows).

Usage: python benchmarks/report_scale.py [--trials 10000] [--epochs 100] [--dir DIR]
Generates the experiment (replicate phase: 5 methods × 2 variants × 10 grid cells × 100 seeds),
then runs ``reports.commands.report_command`` in a subprocess and prints wall seconds and the
subprocess's peak RSS (resource.getrusage(RUSAGE_CHILDREN).ru_maxrss). Goal: ≤ 10 s, ≤ 1.5 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

METHODS = ("simclr", "byol", "dino", "swav", "deepcluster")


def generate(root: str, n_trials: int, epochs: int) -> None:
    ph = os.path.join(root, "replicate")
    os.makedirs(ph, exist_ok=True)
    for i in range(n_trials):
        method, variant = METHODS[i % 5], ("original", "er")[(i // 5) % 2]
        bs, seed = 32 * (1 + (i // 10) % 10), i // 100
        d = os.path.join(ph, f"trial_{i:05d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "params.json"), "w") as f:
            json.dump({"method": method, "variant": variant, "seed": seed, "epochs": epochs,
                       "batch_size": bs, "grid_axes": ["batch_size"], "searched": [],
                       "study": "bench", "phase": "replicate",
                       "group": f"{method}/{variant}/batch_size={bs}"}, f)
        collapsed = (i * 7919) % 13 == 0
        lines = []
        for e in range(1, epochs + 1):
            last = e == epochs
            lines.append(json.dumps({
                "epoch": e, "step": 10 * e, "loss": 1.0 / e, "er_entropy": 3.0 + 0.01 * e,
                "er_reconstruction": -1.0, "er_bound": 2.0, "knn_top1": 0.1 + 0.005 * e + 1e-5 * i,
                "rankme": 20.0, "std_ratio": 0.9, "lr": 0.1, "ema": 0.99, "images_per_s": 1000.0,
                "collapsed": bool(last and collapsed),
                "stop_reason": ("collapsed" if collapsed else "completed") if last else "",
                "training_iteration": e, "trial_id": f"t{i:05d}", "time_total_s": 1.5 * e,
                "done": False, "timestamp": 1700000000 + e}))
        with open(os.path.join(d, "result.json"), "w") as f:
            f.write("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    root = a.dir or tempfile.mkdtemp(prefix="er_tune_report_bench_")
    if not os.path.isdir(os.path.join(root, "replicate")):
        t0 = time.perf_counter()
        generate(root, a.trials, a.epochs)
        print(f"generated {a.trials} trials x {a.epochs} epochs in {time.perf_counter() - t0:.1f} s"
              f" under {root}")
    code = ("import sys; from reports.commands import report_command; "
            f"sys.exit(report_command({root!r}, plots=False, stream=open('/dev/null','w')))")
    t0 = time.perf_counter()
    rc = subprocess.run([sys.executable, "-c", code], check=False).returncode
    dt = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"report: exit {rc}, {dt:.2f} s, peak RSS {peak_mb:.0f} MB (goal <= 10 s, <= 1536 MB)")


if __name__ == "__main__":
    main()
