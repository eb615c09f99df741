"""Every GPU figure of the README in one command, printed as one table (run it on a GPU machine).

Three parts, each in its own subprocess so one failing does not hide the others:

1. ``pytest -m gpu``: the CUDA tests (passed / failed / skipped counts).
2. ``benchmarks/gpu_packing.py``: images/s per GPU with 1, 2, 4 and 8 trials per GPU and the ratio
   to one trial per GPU (goal >= 3x at 4).
3. A few minutes of a GPU study's search phase (``er-tune tune --phase search``), interrupted
   with SIGINT after ``--minutes`` (Tune saves the experiment, so it can be resumed): trials
   started, epochs done, median images/s of a trial, slot efficiency and start-up to first step
   (the same measures as ``benchmarks/trial_overhead.py --study``), collapses. The study is
   ``--study``, else the first ``search_spaces/studies/*gpu*.yaml`` (the GPU reference study,
   ``cifar10_reference_gpu.yaml``), else ``ema_stability.yaml``.
   When the study's dataset root is missing (CIFAR-10 is never downloaded) the run uses the same
   study on the procedural ``shapes`` dataset at the study's resolution, and the table says so.

Without a CUDA device it prints why and exits 0 without measuring anything.

Run: ``.venv/bin/python benchmarks/gpu_figures.py [--minutes 5] [--packing-seconds 30] [--out DIR]``
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def run(command: list[str], timeout: float, log: Path) -> tuple[int, str]:
    """Run ``command`` from the repository root, output to ``log``; returns (exit code, output)."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    with open(log, "w", encoding="utf-8") as handle:
        try:
            code = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = 124
    return code, log.read_text(encoding="utf-8", errors="replace")


def cuda_tests(out: Path, rows: list) -> None:
    code, text = run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests"], 900, out / "pytest_gpu.log")
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", text)}
    rows.append(("CUDA tests (pytest -m gpu)",
                 f"{counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed, "
                 f"{counts.get('skipped', 0)} skipped" + (f" (exit {code})" if code else ""), "all pass"))


def gpu_packing(out: Path, seconds: float, rows: list) -> None:
    code, text = run([sys.executable, "benchmarks/gpu_packing.py", "--seconds", str(seconds)],
                     seconds * 4 * 3 + 300, out / "gpu_packing.log")
    found = re.findall(r"^\s*(\d+)\s+(\d+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s*$", text, flags=re.M)
    if not found:
        rows.append(("gpu_packing.py", f"no figures (exit {code}; see {out / 'gpu_packing.log'})", ""))
    for per_gpu, per_gpu_rate, ratio, per_trial, peak in found:
        rows.append((f"images/s per GPU, {per_gpu} trial(s)/GPU",
                     f"{int(per_gpu_rate):,} ({float(ratio):.2f}x of 1; {int(per_trial):,}/trial, {peak} MiB)",
                     ">= 3x at 4" if per_gpu == "4" else ""))


def pick_study(requested: str | None) -> Path:
    if requested:
        return Path(requested).resolve()
    candidates = sorted(glob.glob(str(ROOT / "search_spaces" / "studies" / "*gpu*.yaml")))
    return Path(candidates[0]) if candidates else ROOT / "search_spaces" / "studies" / "ema_stability.yaml"


def runnable_study(path: Path, directory: str) -> tuple[Path, str]:
    """The study, or a copy on ``shapes`` when its dataset root is missing here; and a note."""
    import yaml

    from er_core.config import NEEDS_ROOT
    from er_core.dataset_layout import root_problem

    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    data = raw.get("data", {})
    dataset, root = data.get("dataset", "shapes"), data.get("root", "")
    if dataset not in NEEDS_ROOT:
        return path, ""
    problem = root_problem(dataset, str(ROOT / root) if root and not os.path.isabs(root) else root)
    if not problem:
        return path, ""
    raw["data"] = {"dataset": "shapes", "image_size": data.get("image_size", 32),
                   "train_size": min(int(data.get("train_size", 8000)), 20000),
                   "eval_size": min(int(data.get("eval_size", 2000)), 5000), "seed": 0}
    trial = raw.setdefault("trial", {})
    if "knn_bank_size" in trial:
        trial["knn_bank_size"] = min(int(trial["knn_bank_size"]), raw["data"]["train_size"])
    raw["name"] = f"{raw['name']}_shapes"
    copy = Path(directory) / f"{raw['name']}.yaml"
    copy.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return copy, f"on shapes: no {dataset} under {root or 'its root'}"


def gpu_study(out: Path, requested: str | None, minutes: float, rows: list) -> None:
    from trial_overhead import slot_efficiency, trial_records

    import yaml

    with tempfile.TemporaryDirectory() as directory:
        study, note = runnable_study(pick_study(requested), directory)
        storage = out / "gpu_study"
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        with open(out / "gpu_study.log", "w", encoding="utf-8") as log:
            process = subprocess.Popen([sys.executable, "-m", "er_tune", "tune", str(study), "--phase", "search",
                                        "--storage", str(storage)], cwd=ROOT, env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
            try:
                process.wait(timeout=minutes * 60)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGINT)  # Tune saves the experiment state and stops
                try:
                    process.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        raw = yaml.safe_load(study.read_text(encoding="utf-8"))
    resources = raw.get("resources", {})
    import torch

    gpus = torch.cuda.device_count()
    per_trial_gpu = float(resources.get("gpu", 1)) or 1.0
    slots = max(1, int(gpus / per_trial_gpu))
    if resources.get("max_concurrent_trials"):
        slots = min(slots, int(resources["max_concurrent_trials"]))
    name = f"{study.stem}" + (f" ({note})" if note else "")
    phase = storage / "search"
    records = trial_records(phase) if phase.exists() else []
    if not records:
        rows.append((f"GPU study {name}", f"no trial reported within {minutes:g} min (see {out / 'gpu_study.log'})", ""))
        return
    epochs, rates, collapsed = 0, [], 0
    for trial in sorted(p for p in phase.iterdir() if (p / "result.json").exists()):
        lines = [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line]
        epochs += len(lines)
        rates += [line["images_per_s"] for line in lines if line.get("images_per_s")]
        collapsed += any(line.get("stop_reason") in ("collapsed", "diverged") for line in lines)
    rates.sort()
    warm = sorted(r["startup_s"] for r in records if r.get("reused"))
    cold = sorted(r["startup_s"] for r in records if r.get("reused") is False)
    rows += [(f"GPU study {name}", f"{minutes:g} min of the search phase, {gpus} GPU(s), {slots} slot(s)", ""),
             ("  trials reporting / epochs done", f"{len(records)} / {epochs}", ""),
             ("  images/s of a trial (median epoch)", f"{rates[len(rates) // 2]:,.0f}" if rates else "-", ""),
             ("  slot efficiency", f"{slot_efficiency(records, slots):.3f}", ">= 0.9"),
             ("  start -> first step, cold / warm (median)",
              f"{cold[len(cold) // 2]:.1f} s / " + (f"{warm[len(warm) // 2]:.2f} s" if warm else "-") if cold else "-",
              "<= 1 s warm"),
             ("  trials collapsed or diverged", str(collapsed), "")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="of the GPU study's search phase")
    parser.add_argument("--packing-seconds", type=float, default=30.0, help="window per packing setting")
    parser.add_argument("--study", default=None, help="GPU study YAML (default: see the module docstring)")
    parser.add_argument("--out", default=None, help="logs and the study's experiment (default: a temp dir)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("tests", "packing", "study"))
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_figures: no CUDA device visible (torch.cuda.is_available() is False): nothing measured. "
              "Run this on a machine with a GPU; benchmarks/gpu_packing.py --dry-run checks the packing "
              "path on the CPU.")
        return 0
    out = Path(args.out or tempfile.mkdtemp(prefix="gpu_figures_")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str]] = [("device", f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, "
                                                   f"torch {torch.__version__}", "")]
    start = time.time()
    if "tests" not in args.skip:
        cuda_tests(out, rows)
    if "packing" not in args.skip:
        gpu_packing(out, args.packing_seconds, rows)
    if "study" not in args.skip:
        gpu_study(out, args.study, args.minutes, rows)
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"\n{'figure':<{width}}  {'value':<{value_width}}  goal")
    print("-" * (width + value_width + 14))
    for figure, value, goal in rows:
        print(f"{figure:<{width}}  {value:<{value_width}}  {goal}")
    print(f"\n{time.time() - start:.0f} s in all; logs and the study's experiment under {out}")
    (out / "figures.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
