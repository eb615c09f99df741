"""Driver CPU per trial of the grouped searcher's Optuna calls, by storage, side by side in one run.

What er-tune's driver does with Optuna for each trial (:class:`er_tune.grouped.GroupedOptunaSearcher`):
``ask`` with two float distributions (TPE: it reads the group's whole history), three user
attributes, one intermediate value per epoch, two more user attributes and ``tell``. Here that
sequence runs for ``--trials`` trials per group over ``--groups`` groups (round-robin, as the
searcher hands them out), one seeded TPE study per group, on:

- ``memory``: Optuna's InMemoryStorage, what Ray Tune's own ``OptunaSearch`` uses (the baseline);
- ``journal``: Optuna's journal file as er-tune opens it (:func:`er_tune.grouped.optuna_storage`,
  ``journal:PATH``: appends not fsynced, :class:`er_tune.grouped.UnsyncedJournalFile`), the default of
  er-tune experiments; reads are served from the log replayed in memory;
- ``journal-fsync``: the same file through Optuna's own ``JournalFileBackend``, which fsyncs after
  every append (what er-tune used before);
- ``sqlite``: the SQLite file with ``synchronous=OFF`` (:func:`er_tune.grouped.sqlite_storage`), the
  default before; reads go through SQLAlchemy and Optuna's cache of finished trials.

Each storage runs in its own fresh process (nothing cached between them); the figure is the
process's CPU time (user + system) over the trial loop divided by the number of trials, and the
ratio is to ``memory``; the wall time of the loop per trial is printed too (a wait for the disk
costs wall time in the driver's loop, little CPU). Run: ``.venv/bin/python benchmarks/optuna_storage_cost.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STORAGES = ("memory", "journal", "journal-fsync", "sqlite")


def run_one(kind: str, groups: int, trials: int, epochs: int) -> dict:
    """In this process: the grouped searcher's Optuna calls on storage ``kind``."""
    sys.path.insert(0, str(ROOT))
    import optuna

    from er_tune.grouped import group_seed, optuna_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = tempfile.mkdtemp(prefix="er_tune_optuna_cost_")
    if kind == "memory":
        storage = optuna.storages.InMemoryStorage()
    elif kind == "journal-fsync":
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(f"{folder}/journal.log"))
    else:
        url = f"journal:{folder}/journal.log" if kind == "journal" else f"sqlite:///{folder}/optuna.db"
        storage = optuna.storages.get_storage(optuna_storage(url))
    distributions = {"lr": optuna.distributions.FloatDistribution(0.01, 1.0, log=True),
                     "temperature": optuna.distributions.FloatDistribution(0.05, 0.5, log=True)}
    studies = {}
    start, wall_start = time.process_time(), time.perf_counter()
    for number in range(trials):
        for group in range(groups):
            if group not in studies:
                sampler = optuna.samplers.TPESampler(seed=group_seed(0, str(group)), n_startup_trials=5)
                studies[group] = optuna.create_study(study_name=f"group{group}", storage=storage, sampler=sampler,
                                                     direction="maximize", load_if_exists=True)
            study = studies[group]
            trial = study.ask(distributions)
            for key in ("ray_trial_id", "ray_trial_name", "ray_trial_dir"):
                trial.set_user_attr(key, f"{key}-{group}-{number}")
            for epoch in range(1, epochs + 1):
                trial.report(trial.params["lr"] * epoch / epochs, epoch)
            trial.set_user_attr("status", "completed")
            trial.set_user_attr("epochs", epochs)
            study.tell(trial.number, trial.params["lr"])
    cpu, wall = time.process_time() - start, time.perf_counter() - wall_start
    return {"storage": kind, "trials": groups * trials, "cpu_s": cpu, "cpu_ms_per_trial": 1000 * cpu / (groups * trials),
            "wall_ms_per_trial": 1000 * wall / (groups * trials)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=30, help="condition groups (one Optuna study each)")
    parser.add_argument("--trials", type=int, default=12, help="trials per group")
    parser.add_argument("--epochs", type=int, default=2, help="intermediate values per trial")
    parser.add_argument("--one", choices=STORAGES, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.groups, args.trials, args.epochs)))
        return 0
    rows = []
    for kind in STORAGES:
        out = subprocess.run([sys.executable, __file__, "--one", kind, "--groups", str(args.groups), "--trials",
                              str(args.trials), "--epochs", str(args.epochs)], capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]["cpu_ms_per_trial"]
    print(f"{args.groups} groups x {args.trials} trials, {args.epochs} intermediate values each; "
          f"driver CPU per trial, ratio to Optuna in memory (Ray Tune's OptunaSearch)")
    print(f"{'storage':<14} {'trials':>7} {'CPU ms/trial':>13} {'ratio':>7} {'wall ms/trial':>14}")
    for row in rows:
        print(f"{row['storage']:<14} {row['trials']:>7} {row['cpu_ms_per_trial']:>13.1f} "
              f"{row['cpu_ms_per_trial'] / base:>7.1f} {row['wall_ms_per_trial']:>14.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
