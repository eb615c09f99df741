"""Cost of a trial: its instrumentation against a bare loop, and its start-up in a study.

Part 1 (always): ``run_trial`` against a bare training loop (goal >= 0.97).

Both sides train the same network, objective, augmentation and data for the same number of steps
in this one process. Printed ratios (ours / bare, higher is better):

- ``training``: images/s of the optimisation steps alone — the bare loop against ``run_trial``'s
  own ``images_per_s`` (which includes the finiteness checks of loss and gradients, the LR and EMA
  schedules, per-step TensorBoard scalars). This is the instrumentation cost the goal is about.
- ``end to end``: wall time of everything ``run_trial`` does per epoch — additionally the
  diagnostics on the fixed evaluation set (kNN, KDE entropy, reconstruction, RankMe), the collapse
  monitor, the checkpoint and ``result.json`` — against the bare loop's wall time.

Part 2 (``--study``): a demo-sized study run end to end with ``er-tune tune``'s own code
(embedded Ray, one slot per core; by default the demo's trial shape with BYOL and BYOL-ER and 4
seeds, ``--methods``/``--seeds`` change that). Printed per phase, from the trials' own files:

- ``slot efficiency``: sum of the trials' ``time_total_s`` over (slots x wall between the first
  trial's start and the last trial's end), start = end - ``time_total_s`` (goal >= 0.9 on 2 cores).
- ``start -> first step``: from the moment a trial's slot was free for it (its actor process's
  start for the first trial of a process; the end of the process's previous trial when the actor
  is reused) to its first training step (``startup.json``; goal <= 1 s warm).

``--reuse both`` runs the study twice, with and without actor reuse, side by side.
``--experiment DIR [--slots N]`` prints the same per-phase figures for an experiment that already
ran (e.g. the README demo's ``er_runs/demo``), without training anything.

Run: ``.venv/bin/python benchmarks/trial_overhead.py [--method byol] [--epochs 2]`` and
``.venv/bin/python benchmarks/trial_overhead.py --study [--reuse both]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from er_core.config import TrialConfig
from er_core.data.augment import make_augmenter
from er_core.models import EMATeacher, build_network, ema_momentum
from er_core.objectives import ObjectiveInputs, build_objective
from trainers.optim import build_optimizer
from trainers.reporters import LocalReporter
from er_core.rules import STARTUP_FILE
from trainers.trial_data import load_trial_data
from trainers.trial import run_trial


def bare_loop(config: TrialConfig, data) -> tuple[float, int]:
    """The same training, nothing else: returns (seconds, images)."""
    torch.manual_seed(config.seed)
    net = build_network(config)
    objective = build_objective(config.objective, config)
    teacher = EMATeacher(net) if objective.needs_teacher else None
    optimizer = build_optimizer([net, objective], config)
    augment = make_augmenter(objective.views, data.mean, data.std)
    generator = torch.Generator().manual_seed(config.seed)
    n = data.train_images.shape[0]
    steps = n // config.batch_size
    images = 0
    start = time.perf_counter()
    for epoch in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        for i in range(steps):
            batch = data.train_images[order[i * config.batch_size:(i + 1) * config.batch_size]]
            v1, v2 = augment(batch, generator)
            o1, o2 = net(v1), net(v2)
            inputs = ObjectiveInputs(z1=o1.z, z2=o2.z, p1=o1.p, p2=o2.p, s1=o1.scores, s2=o2.scores)
            if teacher is not None:
                with torch.no_grad():
                    t1, t2 = teacher(v1), teacher(v2)
                inputs.t1, inputs.t2, inputs.ts1, inputs.ts2 = t1.z, t2.z, t1.scores, t2.scores
            loss = objective(inputs).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if teacher is not None:
                teacher.update(net, ema_momentum(config.ema, epoch * steps + i, config.epochs * steps))
            images += batch.shape[0]
    return time.perf_counter() - start, images


def trial_records(phase_dir: Path) -> list[dict]:
    """Per trial of a phase directory: start, end, time_total_s and the start-up timings."""
    records = []
    for trial in sorted(p for p in phase_dir.iterdir() if (p / "result.json").exists()):
        lines = [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line]
        if not lines:
            continue
        total, end = float(lines[-1]["time_total_s"]), float(lines[-1]["timestamp"])
        record = {"trial": trial.name, "time_total_s": total, "start": end - total, "end": end}
        if (trial / STARTUP_FILE).exists():
            startup = json.loads((trial / STARTUP_FILE).read_text())
            record["startup_s"] = startup["first_step"] - startup["slot_free"]
            record["reused"] = bool(startup["reused"])
        records.append(record)
    return records


def slot_efficiency(records: list[dict], slots: int) -> float:
    """Sum of the trials' time_total_s over slots x (last end - first start); 0 without trials."""
    if not records:
        return 0.0
    wall = max(r["end"] for r in records) - min(r["start"] for r in records)
    return sum(r["time_total_s"] for r in records) / (slots * wall) if wall > 0 else 0.0


def demo_sized_study(source: str, methods: list[str], seeds: int, directory: str) -> str:
    """``source`` with only ``methods`` and the first ``seeds`` seeds, written to ``directory``."""
    import yaml

    from search_spaces.parse import with_methods

    with open(source, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    raw = with_methods(raw, methods)
    raw["seeds"] = list(range(seeds))
    raw["name"] = f"{raw['name']}_overhead"
    path = os.path.join(directory, "study.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(raw, handle, sort_keys=False)
    return path


def run_study_once(study_path: str, storage: str, reuse: bool) -> tuple[float, int]:
    """Run both phases with er-tune's own launcher; returns (driver wall seconds, slots)."""
    from er_tune import launch

    launch.REUSE_ACTORS = reuse
    start = time.perf_counter()
    code = launch.run_study(study_path, storage=storage, stream=io.StringIO())
    if code != 0:
        raise SystemExit(f"study failed with exit code {code}: {storage}")
    return time.perf_counter() - start, os.cpu_count() or 1


def study_report(label: str, storage: str, slots: int, wall: float | None) -> None:
    print(f"study ({label}): " + (f"{wall:.0f} s driver wall, " if wall is not None else "") + f"{slots} slots")
    for phase in ("search", "replicate"):
        phase_dir = Path(storage) / phase
        if not phase_dir.exists():
            continue
        records = trial_records(phase_dir)
        trained = sum(r["time_total_s"] for r in records)
        span = max(r["end"] for r in records) - min(r["start"] for r in records) if records else 0.0
        print(f"  {phase:<9}: {len(records):3d} trials, {trained:6.0f} s trained in {span:4.0f} s, "
              f"slot efficiency {slot_efficiency(records, slots):.3f} (goal >= 0.9)")
        for reused, name in ((False, "cold"), (True, "warm")):
            times = [r["startup_s"] for r in records if r.get("reused") is reused]
            if times:
                print(f"    start -> first step, {name} ({len(times):2d}): median {statistics.median(times):5.2f} s, "
                      f"max {max(times):5.2f} s" + ("   (goal <= 1 s)" if reused else ""))


def study_benchmark(args) -> None:
    modes = {"both": [False, True], "on": [True], "off": [False]}[args.reuse]
    with tempfile.TemporaryDirectory() as directory:
        study_path = demo_sized_study(args.study_file, args.methods.split(","), args.seeds, directory)
        for reuse in modes:
            storage = os.path.join(directory, "reuse" if reuse else "fresh")
            wall, slots = run_study_once(study_path, storage, reuse)
            study_report(f"reuse_actors={reuse}", storage, slots, wall)


def loop_benchmark(args) -> None:
    config = TrialConfig(method=args.method, variant=args.variant, epochs=args.epochs,
                         image_size=args.image_size, train_size=args.train_size,
                         eval_size=args.eval_size, knn_bank_size=args.eval_size, batch_size=256)
    data = load_trial_data(config)
    bare_loop(config.replace(epochs=1), data)  # warm-up: thread pools, allocator, first-call costs
    bare_seconds, bare_images = bare_loop(config, data)
    with tempfile.TemporaryDirectory() as trial_dir:
        start, entered = time.perf_counter(), time.time()
        run_trial(config, data, LocalReporter(trial_dir, config.to_dict()),
                  startup={"slot_free": entered, "entered": entered, "reused": True})
        ours_seconds = time.perf_counter() - start
        with open(os.path.join(trial_dir, STARTUP_FILE)) as handle:
            warm_startup = json.load(handle)["first_step"] - entered
        with open(os.path.join(trial_dir, "result.json")) as handle:
            lines = [json.loads(line) for line in handle]
    ours_train = sum(line["images_per_s"] for line in lines) / len(lines)
    bare_rate = bare_images / bare_seconds
    print(f"threads={torch.get_num_threads()} {config.objective} {config.backbone}@{config.image_size}px "
          f"B={config.batch_size} train={config.train_size} eval={config.eval_size} epochs={config.epochs}")
    print(f"bare loop            : {bare_rate:8.1f} img/s ({bare_seconds:.1f} s)")
    print(f"run_trial training   : {ours_train:8.1f} img/s   ratio {ours_train / bare_rate:.3f} (goal >= 0.97)")
    ours_end_to_end = bare_images / ours_seconds
    print(f"run_trial end to end : {ours_end_to_end:8.1f} img/s ({ours_seconds:.1f} s)   "
          f"ratio {ours_end_to_end / bare_rate:.3f} (includes per-epoch diagnostics + checkpoint)")
    print(f"run_trial start-up   : {warm_startup:8.2f} s from entry to the first step in a warm process "
          f"(model, optimiser, untrained-network diagnostics; goal <= 1 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", default="byol")
    parser.add_argument("--variant", default="original")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train-size", type=int, default=4096)
    parser.add_argument("--eval-size", type=int, default=1000)
    parser.add_argument("--study", action="store_true", help="also run a demo-sized study (part 2)")
    parser.add_argument("--study-only", action="store_true", help="only part 2")
    parser.add_argument("--study-file", default=str(Path(__file__).resolve().parents[1] / "search_spaces"
                                                    / "studies" / "demo.yaml"))
    parser.add_argument("--methods", default="byol", help="comma-separated methods of the study")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--reuse", choices=("both", "on", "off"), default="on")
    parser.add_argument("--experiment", default=None, help="only report an existing experiment directory")
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1, help="with --experiment: its slots")
    args = parser.parse_args()
    if args.experiment is not None:
        if not (Path(args.experiment) / "search").is_dir() and not (Path(args.experiment) / "replicate").is_dir():
            parser.error(f"--experiment {args.experiment}: no search/ or replicate/ phase directory in it")
        study_report(f"experiment {args.experiment}", args.experiment, args.slots, wall=None)
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not args.study_only:
        loop_benchmark(args)
    if args.study or args.study_only:
        study_benchmark(args)


if __name__ == "__main__":
    main()
