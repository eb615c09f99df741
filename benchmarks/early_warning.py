"""Early warning of collapse: how many epochs before the kNN falls does a label-free signal fire?

Two phases, both in this script:

- ``build``: a corpus of short trials on the demo's data (procedural ``shapes``, 16 px, convnet,
  projector 64/256, 32 prototypes; smaller train/eval sets so a trial takes seconds) under
  conditions that collapse, completely or partially (DINO without centring, DINO at a constant
  EMA of 0, BYOL without EMA, SimCLR at an extreme temperature, SwAV and DeepCluster at a small
  batch, high learning rates), and under healthy ones, across seeds. Each trial is an ordinary
  :func:`trainers.trial.run_trial` with a :class:`~trainers.reporters.LocalReporter` (no Ray), with
  ``stop_on_collapse`` off so every trial runs all its epochs. Resumable: a trial whose
  ``result.json`` already has its last epoch is skipped; the untrained network's diagnostics (the
  monitor's calibration) are saved next to it as ``untrained.json``.
- ``analyse``: replays the trials' per-epoch metrics through a fresh
  :class:`~er_core.collapse.CollapseMonitor` (the very detector the trials run), one early-warning
  signal at a time and all together, at each candidate threshold.

Ground truth (labels, never seen by the warning): a trial *falls* at the first epoch ``e`` at
which ``knn_top1 < max(knn_top1 of epochs 1..e-1) - MARGIN`` (``--reference untrained``: of epochs
0..e-1, epoch 0 = the untrained network; not the default because on this small data the untrained
convnet's kNN, 0.152, is above what every objective reaches in 6 epochs, so every trial "falls" at
epoch 1 and no warning can precede it;
``--margin``, default 0.05, about 2.3 binomial standard errors of a kNN accuracy near 0.15 on 256
evaluation images), or diverges (non-finite loss). Trials that never fall are *healthy*.

Per signal, on each half (split by seed, so every condition is in both halves): the *lead time*
of a fallen trial is ``fall epoch - first warning epoch`` (positive: the warning came first;
a warning after the fall counts with a negative lead), reported as median and quartiles over the
warned fallen trials; *warned* is the fraction of fallen trials warned at all, *in time* the
fraction warned at or before the fall epoch; *false alarm* is the fraction of healthy trials
warned at any epoch. The threshold of each signal (a fraction of its running maximum) is the one
that maximises ``in time - false alarm`` on the *selection* half (seeds ``--select-seeds``; with
``--max-false-alarm F`` only among fractions whose false-alarm rate there is at most F); the
table is of the other, *held-out*, half. ``combined`` fires at the first epoch any signal fires,
each at its selected threshold.

Run (nice; the default 48 trials take ~5-10 s of CPU each, much longer on a shared machine):
``nice -n 10 .venv/bin/python benchmarks/early_warning.py build --out /work/ew_corpus``, then
``.venv/bin/python benchmarks/early_warning.py analyse --out /work/ew_corpus``.

``study``: the same analysis on the replicate trials of a study run by ``er-tune tune`` (readable
while it runs: unfinished trials are skipped), e.g. ``benchmarks/early_warning.py study
/work/studies/fmnist_dino_ema --select-seeds 1,3,5,7``. There a trial also *falls* at its
complete collapse (the study stops it there, ``stop_on_collapse``), the untrained network's
values come from the trial's latest checkpoint (the monitor's calibration; a study deletes an
ended trial's checkpoints, so then its untrained network is rebuilt from its seed as the trial
built it, checked against the final kNN the trial recorded for it, and saved next to it as
``untrained.json``), and the table adds
what a stop-on-warning rule would have saved on the held-out half: the trial-epochs after each
warning, and the healthy trials it would have stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import math
import os
import sys
import time

import numpy as np

from er_core.collapse import WARNING_SIGNALS, CollapseMonitor
from er_core.config import CollapseConfig, TrialConfig
from er_core.rules import UNTRAINED_FILE

# The demo's data and model (search_spaces/studies/demo.yaml), smaller sets: seconds per trial.
BASE = dict(dataset="shapes", image_size=16, train_size=256, eval_size=256, data_seed=0,
            backbone="convnet", projector_dim=64, projector_hidden_dim=256, num_prototypes=32,
            batch_size=32, epochs=6, warmup_epochs=1, knn_bank_size=256, ema_schedule="constant",
            log_every_n_steps=50)
# name -> overrides; "expect" is only a label for the table, the outcome decides the class.
CONDITIONS = {
    "dino_no_centering": dict(method="dino", dino_centering=False, ema=0.9, lr=0.3),
    "dino_ema0": dict(method="dino", ema=0.0, lr=0.3),
    "byol_ema0": dict(method="byol", ema=0.0, lr=0.3),
    "simclr_t5": dict(method="simclr", temperature=5.0, lr=0.3),
    "swav_batch16": dict(method="swav", batch_size=16, lr=0.3),
    "deepcluster_batch16": dict(method="deepcluster", batch_size=16, lr=0.3),
    "byol_lr4": dict(method="byol", ema=0.9, lr=4.0, warmup_epochs=2),
    "simclr_lr8": dict(method="simclr", lr=8.0, warmup_epochs=2),
    "simclr_healthy": dict(method="simclr", lr=0.3),
    "byol_healthy": dict(method="byol", ema=0.9, lr=0.3),
    "dino_healthy": dict(method="dino", ema=0.9, lr=0.3),
    "swav_healthy": dict(method="swav", batch_size=32, lr=0.3),
}
SEEDS = (0, 1, 2, 3)
SELECT_SEEDS = (0, 2)  # alternate seeds: the corpus is built seed-major, so both halves grow together
CANDIDATES = (0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8,
              0.85, 0.9)


def trial_config(name: str, seed: int) -> TrialConfig:
    values = {**BASE, **CONDITIONS[name], "seed": seed,
              "collapse": CollapseConfig(stop_on_collapse=False, warmup_epochs=2)}
    return TrialConfig(**values)


def _read_lines(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def build(out: str, names: list[str], seeds: list[int], shard: tuple[int, int] = (0, 1)) -> None:
    import torch

    from trainers.reporters import LocalReporter
    from trainers.trial_data import load_trial_data
    from trainers.trial import run_trial

    torch.set_num_threads(1)
    cache: dict = {}
    jobs = [(seed, name) for seed in seeds for name in names]  # seed-major: both halves grow together
    for index, (seed, name) in enumerate(jobs):
        if index % shard[1] != shard[0]:
            continue  # another worker's trial (--shard)
        config = trial_config(name, seed)
        trial_dir = os.path.join(out, f"{name}_s{seed}")
        lines = _read_lines(os.path.join(trial_dir, "result.json"))
        if lines and lines[-1].get("stop_reason") and os.path.exists(os.path.join(trial_dir, "untrained.json")):
            continue
        key = (config.train_size, config.eval_size, config.image_size, config.data_seed)
        if key not in cache:
            cache[key] = load_trial_data(config)
        start = time.perf_counter()
        summary = run_trial(config, cache[key], LocalReporter(trial_dir, config.to_dict()))
        state_files = sorted(glob.glob(os.path.join(trial_dir, "checkpoint_*", "trial_state.pt")))
        initial = torch.load(state_files[-1], weights_only=False)["monitor"]["initial"]
        with open(os.path.join(trial_dir, "untrained.json"), "w", encoding="utf-8") as handle:
            json.dump(initial, handle)
        print(f"[{index + 1}/{len(jobs)}] {name} seed {seed}: {summary.status}, grade {summary.grade}, "
              f"kNN {initial.get('knn_top1', math.nan):.3f} -> {summary.final_metrics['knn_top1']:.3f}, "
              f"{time.perf_counter() - start:.0f} s", flush=True)


def load_corpus(out: str) -> list[dict]:
    trials = []
    for trial_dir in sorted(glob.glob(os.path.join(out, "*_s*"))):
        untrained_path = os.path.join(trial_dir, "untrained.json")
        lines = _read_lines(os.path.join(trial_dir, "result.json"))
        if not lines or not lines[-1].get("stop_reason") or not os.path.exists(untrained_path):
            continue
        with open(untrained_path, encoding="utf-8") as handle:
            untrained = json.load(handle)
        with open(os.path.join(trial_dir, "params.json"), encoding="utf-8") as handle:
            params = json.load(handle)
        name, seed = os.path.basename(trial_dir).rsplit("_s", 1)
        trials.append({"name": name, "seed": int(seed), "untrained": untrained, "epochs": lines,
                       "discrete": params["method"] in ("dino", "swav", "deepcluster"),
                       "diverged": lines[-1].get("stop_reason") == "diverged"})
    return trials


REFERENCE = {"reference": "trained"}  # set by --reference


def untrained_diagnostics(params: dict, cache: dict) -> dict:
    """The untrained network's diagnostics of a trial, rebuilt as the trial built it (``build_state``
    seeds every RNG from the trial's seed), for trials whose checkpoints were deleted at the end of
    the study. Trials that differ only in settings the untrained network and its diagnostics do not
    read (the EMA, the learning rate, the schedule) share one rebuild. The first rebuild of each
    objective is checked against the ``untrained_final_knn_top1`` its trial recorded."""
    from trainers.diagnostics import Diagnostics
    from trainers.state import build_state
    from trainers.trial_data import dataset_key, load_trial_data

    recorded = params.pop("_untrained_final_knn_top1", None)
    config = TrialConfig.from_dict({**params, "device": "cpu"})
    key = dataset_key(config)
    if key not in cache:
        cache[key] = load_trial_data(config)
    network = (key, config.objective, config.seed, config.backbone, config.projector_dim,
               config.projector_hidden_dim, config.num_prototypes, config.knn_bank_size)
    if network in cache:
        return cache[network]
    state = build_state(config, cache[key])
    diagnostics = Diagnostics(config, cache[key], state.device)
    measured = cache[network] = diagnostics(state.net)
    checked = ("checked", config.objective)
    if recorded is not None and checked not in cache:
        cache[checked] = True
        rebuilt = diagnostics.final(state.net).knn_top1
        if abs(rebuilt - recorded) > 1e-9:
            raise RuntimeError(f"rebuilt untrained network differs from the trial's ({rebuilt} vs {recorded})")
    return measured


def load_study(exp_dir: str, cache: dict | None = None) -> list[dict]:
    """The finished replicate trials of an ``er-tune tune`` experiment, in :func:`load_corpus`'s shape
    (``cache``: data and rebuilt untrained networks shared between experiments)."""
    import torch

    trials, cache = [], {} if cache is None else cache
    for trial_dir in sorted(glob.glob(os.path.join(exp_dir, "replicate", "*", ""))):
        lines = _read_lines(os.path.join(trial_dir, "result.json"))
        states = sorted(glob.glob(os.path.join(trial_dir, "checkpoint_*", "trial_state.pt")))
        if not lines or not lines[-1].get("stop_reason"):
            continue
        with open(os.path.join(trial_dir, "params.json"), encoding="utf-8") as handle:
            params = json.load(handle)
        saved = os.path.join(trial_dir, UNTRAINED_FILE)  # written by the trial itself, or by us below
        if states:
            monitor = torch.load(states[-1], weights_only=False)["monitor"]
        elif os.path.exists(saved):
            with open(saved, encoding="utf-8") as handle:
                monitor = {"initial": json.load(handle)}
        else:  # an ended trial's checkpoints are deleted (er_tune.cleanup): rebuild its untrained network
            settings = {k: v for k, v in params.items() if k in {f.name for f in dataclasses.fields(TrialConfig)}}
            settings["_untrained_final_knn_top1"] = lines[-1].get("untrained_final_knn_top1")
            monitor = {"initial": untrained_diagnostics(settings, cache)}
            with open(saved, "w", encoding="utf-8") as handle:  # next analyses read it back
                json.dump(monitor["initial"], handle)
        collapses = [int(e["epoch"]) for e in _read_lines(os.path.join(trial_dir, "collapse_events.jsonl"))
                     if e.get("severity") == "collapse"]
        trials.append({"name": params["group"], "seed": int(params["seed"]), "untrained": monitor["initial"],
                       "epochs": lines, "discrete": params["method"] in ("dino", "swav", "deepcluster"),
                       "diverged": lines[-1].get("stop_reason") == "diverged",
                       "collapse_epoch": min(collapses) if collapses else None,
                       "num_prototypes": int(params.get("num_prototypes", BASE["num_prototypes"])),
                       "warmup": int((params.get("collapse") or {}).get("warmup_epochs", 2))})
    return trials


def fall_epoch(trial: dict, margin: float) -> int | None:
    """First epoch whose kNN is below the best of the earlier ones - margin, or that of a complete
    collapse (study trials stopped there), whichever comes first.

    ``--reference trained`` (default): the best of the trained epochs only (a fall needs >= 2 epochs);
    ``untrained``: the untrained network's kNN counts as epoch 0.
    """
    fell = _knn_fall(trial, margin)
    collapsed = trial.get("collapse_epoch")
    return collapsed if fell is None else (fell if collapsed is None else min(fell, collapsed))


def _knn_fall(trial: dict, margin: float) -> int | None:
    lines = trial["epochs"]
    if REFERENCE["reference"] == "untrained":
        best = trial["untrained"]["knn_top1"]
    else:
        best, lines = lines[0]["knn_top1"], lines[1:]
    for line in lines:
        if line["knn_top1"] < best - margin:
            return int(line["epoch"])
        best = max(best, line["knn_top1"])
    return int(trial["epochs"][-1]["epoch"]) if trial["diverged"] else None


def first_warning(trial: dict, fractions: dict[str, float]) -> int | None:
    """Replay the trial through a CollapseMonitor with these warning fractions; first warning epoch."""
    off = {field: 0.0 for field in WARNING_SIGNALS.values()}  # only the given signals, not the defaults
    config = CollapseConfig(stop_on_collapse=False, **{**off, **{WARNING_SIGNALS[s]: f for s, f in fractions.items()}})
    monitor = CollapseMonitor(config, discrete=trial["discrete"], num_classes=10)
    monitor.calibrate(trial["untrained"])
    for line in trial["epochs"]:
        events = monitor.observe(line, epoch=int(line["epoch"]), step=int(line["step"]))
        if any(e.kind == "early_warning" for e in events):
            return int(line["epoch"])
    return None


def evaluate(trials: list[dict], fractions: dict[str, float], margin: float) -> dict:
    leads, warned, in_time, fallen, alarms, healthy = [], 0, 0, 0, 0, 0
    for trial in trials:
        fall, warn = fall_epoch(trial, margin), first_warning(trial, fractions)
        if fall is None:
            healthy += 1
            alarms += warn is not None
        else:
            fallen += 1
            if warn is not None:
                warned += 1
                in_time += warn <= fall
                leads.append(fall - warn)
    quartiles = np.percentile(leads, [25, 50, 75]).tolist() if leads else [math.nan] * 3
    return {"fallen": fallen, "healthy": healthy, "warned": warned / fallen if fallen else math.nan,
            "in_time": in_time / fallen if fallen else math.nan,
            "false_alarm": alarms / healthy if healthy else math.nan, "lead_q": quartiles,
            "score": (in_time / fallen if fallen else 0.0) - (alarms / healthy if healthy else 0.0)}


def saved_by_stopping(trials: list[dict], fractions: dict[str, float], margin: float) -> dict:
    """What stopping each trial at its first warning would have saved: trial-epochs after the
    warning (of all trial-epochs run), and the healthy trials (never fell) it would have stopped."""
    total = saved = stopped_healthy = 0
    for trial in trials:
        last = int(trial["epochs"][-1]["epoch"])
        total += last
        warn = first_warning(trial, fractions)
        if warn is not None:
            saved += last - warn
            stopped_healthy += fall_epoch(trial, margin) is None
    return {"total": total, "saved": saved, "stopped_healthy": stopped_healthy}


def analyse(out: str, margin: float, select_seeds: tuple[int, ...], trials: list[dict] | None = None,
            max_false_alarm: float | None = None) -> None:
    study = trials is not None
    trials = load_corpus(out) if trials is None else trials
    for trial in trials:  # the grade the current CollapseMonitor gives (default thresholds), replayed
        prototypes = trial.get("num_prototypes", BASE["num_prototypes"])
        monitor = CollapseMonitor(CollapseConfig(warmup_epochs=trial.get("warmup", 2)), discrete=trial["discrete"],
                                  num_classes=10, loss_plateau=math.log(prototypes)
                                  if trial["name"].split("_")[0].split("/")[0] in ("dino", "swav") else None)
        monitor.calibrate(trial["untrained"])
        for line in trial["epochs"]:
            monitor.observe(line, epoch=int(line["epoch"]), step=int(line["step"]))
        trial["grade"] = monitor.grade + "".join(
            f" {e.kind}@{e.epoch}" for e in monitor.events if e.severity in ("partial", "collapse"))
    select = [t for t in trials if t["seed"] in select_seeds]
    held_out = [t for t in trials if t["seed"] not in select_seeds]
    print(f"corpus: {len(trials)} trials in {out} ({len(select)} selection, {len(held_out)} held out); "
          f"fall = kNN below its running best ({REFERENCE['reference']} reference) - {margin}")
    print("\ntrial outcomes (fall epoch, '-' = never fell; grade replayed with today's default thresholds):")
    for name in sorted({t["name"] for t in trials}) if study else CONDITIONS:
        row = [t for t in trials if t["name"] == name]
        if row:
            cells = "; ".join(f"s{t['seed']}: fall {fall_epoch(t, margin) or '-'}, final kNN "
                              f"{t['epochs'][-1]['knn_top1']:.3f}, grade {t['grade']}"
                              for t in sorted(row, key=lambda t: t["seed"]))
            print(f"  {name:<20} {cells}")
    chosen: dict[str, float] = {}
    rows = []
    for signal in WARNING_SIGNALS:
        scored = {f: evaluate(select, {signal: f}, margin) for f in CANDIDATES}
        allowed = [f for f in CANDIDATES if max_false_alarm is None or not scored[f]["false_alarm"] > max_false_alarm]
        best = max(allowed, key=lambda f: (scored[f]["score"], -f))  # 0 (off) always has no false alarm
        chosen[signal] = best
        rows.append((signal, best, evaluate(select, {signal: best}, margin), evaluate(held_out, {signal: best}, margin)))
    combined = {s: f for s, f in chosen.items() if f > 0}
    rows.append(("combined (any)", math.nan, evaluate(select, combined, margin), evaluate(held_out, combined, margin)))
    print("\nheld-out half (thresholds chosen on the selection half; lead = fall epoch - warning epoch):")
    print(f"{'signal':<18} {'fraction':>8} {'fallen':>6} {'warned':>7} {'in time':>7} {'lead q1/med/q3':>16} "
          f"{'false alarm':>11} | selection: in time, false alarm")
    for signal, fraction, sel, held in rows:
        q = "/".join("nan" if math.isnan(v) else f"{v:g}" for v in held["lead_q"])
        print(f"{signal:<18} {fraction:>8.2f} {held['fallen']:>6} {held['warned']:>7.2f} {held['in_time']:>7.2f} "
              f"{q:>16} {held['false_alarm']:>5.2f} of {held['healthy']:<3} | {sel['in_time']:.2f}, "
              f"{sel['false_alarm']:.2f} of {sel['healthy']}")
    print("\nchosen fractions (CollapseConfig): " + ", ".join(f"{WARNING_SIGNALS[s]}={f:g}" for s, f in chosen.items()))
    if study:
        singles = [(f"chosen {signal}", {signal: fraction}) for signal, fraction in chosen.items() if fraction > 0]
        for label, fractions in [("default", {s: float(getattr(CollapseConfig(), f)) for s, f in WARNING_SIGNALS.items()}),
                                 *singles, ("chosen (combined)", combined)]:
            fractions = {s: f for s, f in fractions.items() if f > 0}
            held, saved = evaluate(held_out, fractions, margin), saved_by_stopping(held_out, fractions, margin)
            q = "/".join("nan" if math.isnan(v) else f"{v:g}" for v in held["lead_q"])
            print(f"stop at the first warning, {label} fractions {fractions}, held-out half: saves "
                  f"{saved['saved']} of {saved['total']} trial-epochs; warned {held['warned']:.2f} of "
                  f"{held['fallen']} fallen (lead q1/med/q3 {q}); stops {saved['stopped_healthy']} of "
                  f"{held['healthy']} healthy trials")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=("build", "analyse", "study"))
    parser.add_argument("experiments", nargs="*", help="study: experiment folders of er-tune tune (pooled)")
    parser.add_argument("--out", default="/work/ew_corpus", help="corpus folder (outside the work tree)")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--select-seeds", default=",".join(map(str, SELECT_SEEDS)))
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--reference", choices=("trained", "untrained"), default="trained",
                        help="does the untrained network's kNN count as the best to fall from?")
    parser.add_argument("--max-false-alarm", type=float, default=None,
                        help="choose each signal's fraction only among those with at most this false-alarm "
                             "rate on the selection half (default: no cap, maximise in time - false alarm)")
    parser.add_argument("--shard", default="0/1", help="i/n: build only every n-th trial from the i-th")
    args = parser.parse_args()
    if args.phase == "build":
        index, count = (int(v) for v in args.shard.split("/"))
        build(args.out, args.conditions.split(","), [int(s) for s in args.seeds.split(",")], (index, count))
    else:
        REFERENCE["reference"] = args.reference
        if args.phase == "study" and not args.experiments:
            parser.error("study needs the experiment folder")
        cache: dict = {}
        trials = [t for folder in args.experiments for t in load_study(folder, cache)] if args.phase == "study" else None
        analyse(", ".join(args.experiments) or args.out, args.margin, tuple(int(s) for s in args.select_seeds.split(",")),
                trials, args.max_false_alarm)


if __name__ == "__main__":
    sys.exit(main())
