"""What grouped ASHA saves: epochs spent and kNN lost against training every configuration fully.

For each Optuna seed, two search arms over the same study (same search space, same seed):

- ``asha``: er-tune's :class:`~er_tune.grouped.GroupedOptunaSearcher` with
  :class:`~er_tune.grouped.GroupedASHA`, as ``er-tune tune`` runs the search phase;
- ``full``: the same searcher without early stopping (every configuration to ``max_epochs``).

Each arm's best configuration per condition group (``best_by_group``, the rule of the search
phase) is then replicated over the study's seeds at the full budget, as the replicate phase does.
Printed per Optuna seed: epochs of each arm and their ratio (goal <= 1/3), whether the arms chose
the same configuration, and the replicated kNN lost by ASHA's choice (full - asha, averaged over
groups; goal <= 0.01).

How it is measured: trials are deterministic in their configuration (resume is exact, see
``tests/test_trial.py``), and ASHA only decides *when* a trial stops, so every configuration is
trained once, fully, with :func:`~trainers.trial.run_trial` (cached by configuration) and both
arms replay the real searcher and scheduler on those per-epoch results. The replay runs
``--slots`` trials at a time with equal epoch durations (the interleaving of a study whose trials
share one shape); Optuna is told each trial's last result, as in a Tune run. No Ray is started.

Defaults: the demo study's trial shape and search space (SwAV and SwAV-ER) in its batch-32 cell,
8 Optuna trials per group, Optuna seeds 0-2, 3 replicate seeds, the study's own ASHA setting.
``--asha 2:2 1:3`` compares ASHA settings (grace period : reduction factor) on the same cached
curves; the full-budget arm is run once per Optuna seed and shared by every setting.

Run (CPU-bound; 15-30 minutes on 2 cores): ``.venv/bin/python benchmarks/asha_savings.py [--asha 2:2 1:3]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from types import SimpleNamespace
from typing import Any

import pandas as pd
import torch
import yaml

from er_core.config import TrialConfig
from er_tune.launch import best_by_group
from search_spaces import condition_groups, halving_of, load_study, replicate_configs
from er_tune.grouped import GroupedASHA, GroupedOptunaSearcher
from search_spaces.parse import with_methods
from search_spaces.plan import searched_params
from trainers.reporters import LocalReporter
from trainers.trial_data import dataset_key, load_trial_data
from trainers.trial import run_trial

STUDY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "search_spaces", "studies",
                     "demo.yaml")


class Curves:
    """Per-epoch results of fully trained configurations, trained on first use and cached."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.cache: dict[str, list[dict[str, Any]]] = {}
        self.data: dict[str, Any] = {}
        self.trained = 0

    def __call__(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        trial_config = TrialConfig.from_dict(config)
        key = json.dumps(trial_config.to_dict(), sort_keys=True, default=str)
        if key not in self.cache:
            data_key = dataset_key(trial_config)
            if data_key not in self.data:
                self.data[data_key] = load_trial_data(trial_config)
            trial_dir = os.path.join(self.directory, f"trial_{len(self.cache):04d}")
            run_trial(trial_config, self.data[data_key], LocalReporter(trial_dir, config))
            with open(os.path.join(trial_dir, "result.json"), encoding="utf-8") as handle:
                self.cache[key] = [json.loads(line) for line in handle if line.strip()]
            self.trained += 1
        return self.cache[key]


def search_arm(study, curves: Curves, storage: str, *, early_stopping: bool, slots: int):
    """Replay one search phase; returns (epochs spent, best configuration per group, trials)."""
    searcher = GroupedOptunaSearcher(study, storage_dir=storage)
    scheduler = GroupedASHA.from_study(study) if early_stopping else None
    running: list[dict[str, Any]] = []
    finished, epochs, counter = [], 0, 0

    def launch() -> bool:
        nonlocal counter
        trial_id = f"t{counter:05d}"
        config = searcher.suggest(trial_id)
        if not isinstance(config, dict):
            return False
        counter += 1
        running.append({"id": trial_id, "config": config, "curve": curves(config), "epoch": 0})
        return True

    while len(running) < slots and launch():
        pass
    while running:
        for trial in list(running):  # every running trial finishes one epoch per tick
            result = trial["curve"][trial["epoch"]]
            trial["epoch"] += 1
            epochs += 1
            stop = bool(result.get("stop_reason")) or trial["epoch"] >= len(trial["curve"])
            if scheduler is not None and not stop:
                handle = SimpleNamespace(trial_id=trial["id"], config=trial["config"])
                stop = scheduler.on_trial_result(None, handle, result) == GroupedASHA.STOP
            if stop:
                running.remove(trial)
                searcher.on_trial_complete(trial["id"], result)
                finished.append(SimpleNamespace(config=trial["config"], metrics=result, error=None,
                                                metrics_dataframe=pd.DataFrame(trial["curve"][:trial["epoch"]])))
                if len(running) < slots:
                    launch()
    choices = best_by_group(finished, study.search.metric, study.search.mode, halving_of(study))
    return epochs, {group: choice.item for group, choice in choices.items()}, finished


def replicated_knn(study, best: dict[str, dict[str, Any]], curves: Curves) -> dict[str, float]:
    """Mean final ``knn_top1`` over the study's seeds of each group's chosen configuration."""
    values: dict[str, list[float]] = {}
    for config in replicate_configs(study, best):
        values.setdefault(config["group"], []).append(float(curves(config)[-1]["knn_top1"]))
    return {group: statistics.fmean(v) for group, v in values.items()}


def same_choice(study, first: dict[str, Any], second: dict[str, Any], group) -> bool:
    names = [d.name for d in searched_params(study, group)]
    return all(first.get(name) == second.get(name) for name in names)


def derived_study(args, seed: int, directory: str, asha: tuple[int, int] | None = None):
    """The study with the benchmark's methods/grid/samples, Optuna seed ``seed`` and, if given, ASHA
    ``(grace_period, reduction_factor)`` instead of the study's."""
    with open(args.study, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    if args.methods:
        raw = with_methods(raw, args.methods.split(","))
    if args.grid:
        raw["grid"] = json.loads(args.grid)
    raw["search"]["num_samples"] = args.num_samples
    raw["search"]["seed"] = seed
    raw["seeds"] = list(range(args.replicate_seeds))
    if asha is not None:
        raw["schedule"]["asha"] = {"grace_period": asha[0], "reduction_factor": asha[1]}
    for key in ("train_size", "eval_size", "image_size"):
        if getattr(args, key) is not None:
            raw["data"][key] = getattr(args, key)
    tag = f"_g{asha[0]}r{asha[1]}" if asha is not None else ""
    path = os.path.join(directory, f"study_{seed}{tag}.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(raw, handle, sort_keys=False)
    return load_study(path)


def asha_setting(text: str) -> tuple[int, int]:
    """``GRACE:RF`` -> (grace_period, reduction_factor)."""
    try:
        grace, factor = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected GRACE:RF, e.g. 2:2") from None
    if grace < 1 or factor < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: grace >= 1 and reduction factor >= 2")
    return grace, factor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default=STUDY)
    parser.add_argument("--methods", default="", help="comma-separated; empty keeps the study's")
    parser.add_argument("--grid", default='{"batch_size": [32]}', help="JSON grid replacing the study's; "
                        "empty keeps the study's")
    parser.add_argument("--num-samples", type=int, default=8, help="Optuna trials per group")
    parser.add_argument("--asha", type=asha_setting, nargs="+", default=None,
                        help="GRACE:RF settings to compare (default: the study's own)")
    parser.add_argument("--optuna-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--replicate-seeds", type=int, default=3)
    parser.add_argument("--slots", type=int, default=2, help="concurrent trials in the replay")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--eval-size", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        curves = Curves(os.path.join(directory, "trials"))
        for seed in args.optuna_seeds:
            full_study = derived_study(args, seed, directory)
            settings = args.asha or [(full_study.schedule.grace_period, full_study.schedule.reduction_factor)]
            full = search_arm(full_study, curves, os.path.join(directory, f"optuna_{seed}_full"),
                              early_stopping=False, slots=args.slots)
            knn_full = replicated_knn(full_study, full[1], curves)
            for grace, factor in settings:
                study = derived_study(args, seed, directory, (grace, factor))
                asha = search_arm(study, curves, os.path.join(directory, f"optuna_{seed}_g{grace}r{factor}"),
                                  early_stopping=True, slots=args.slots)
                knn_asha = replicated_knn(study, asha[1], curves)
                groups = sorted(knn_full)
                same = sum(same_choice(study, asha[1][g.name], full[1][g.name], g) for g in condition_groups(study))
                lost = statistics.fmean(knn_full[g] - knn_asha[g] for g in groups)
                rows.append({"asha": f"{grace}:{factor}", "seed": seed, "epochs_asha": asha[0], "epochs_full": full[0],
                             "same": same, "groups": len(groups), "lost": lost,
                             "knn_asha": statistics.fmean(knn_asha.values()),
                             "knn_full": statistics.fmean(knn_full.values())})
                print(f"ASHA {grace}:{factor} optuna seed {seed}: epochs {asha[0]} / full {full[0]} "
                      f"= {asha[0] / full[0]:.3f}; same choice in {same}/{len(groups)} groups; replicated kNN "
                      f"full {rows[-1]['knn_full']:.4f} asha {rows[-1]['knn_asha']:.4f} (lost {lost:+.4f})",
                      flush=True)
        groups = condition_groups(full_study)
        print(f"\n{full_study.name}: {len(groups)} groups ({', '.join(g.name for g in groups)}) "
              f"x {args.num_samples} Optuna trials, max_epochs {full_study.schedule.max_epochs}, "
              f"{args.replicate_seeds} replicate seeds; {curves.trained} distinct trials trained")
        print(f"{'ASHA g:rf':>9} {'optuna seed':>11} {'epochs ASHA':>11} {'epochs full':>11} {'ratio':>6} {'same':>5} "
              f"{'kNN full':>9} {'kNN ASHA':>9} {'kNN lost':>9}")
        for setting in dict.fromkeys(row["asha"] for row in rows):
            mine = [row for row in rows if row["asha"] == setting]
            for row in mine:
                print(f"{setting:>9} {row['seed']:>11} {row['epochs_asha']:>11} {row['epochs_full']:>11} "
                      f"{row['epochs_asha'] / row['epochs_full']:>6.3f} {row['same']:>2}/{row['groups']:<2} "
                      f"{row['knn_full']:>9.4f} {row['knn_asha']:>9.4f} {row['lost']:>+9.4f}")
            spent, full_epochs = sum(r["epochs_asha"] for r in mine), sum(r["epochs_full"] for r in mine)
            print(f"{setting:>9} {'all':>11} {spent:>11} {full_epochs:>11} {spent / full_epochs:>6.3f} {'':>5} "
                  f"{'':>9} {'':>9} {statistics.fmean(r['lost'] for r in mine):>+9.4f}"
                  f"   (goals: ratio <= 0.333, kNN lost <= 0.01)")


if __name__ == "__main__":
    main()
