"""How the study driver grows with the number of trials, side by side with plain Ray Tune.

Both sides run the same trial function, which trains nothing: it reports ``EPOCHS`` synthetic
epochs at once (a metric that depends on the trial's ``lr``, a small checkpoint each epoch) so that
what is measured is the driver: searcher, scheduler, callbacks, experiment snapshots.

- ``er-tune``: the real study service (:class:`er_tune.launch.StudyRunner`: grouped Optuna searcher,
  grouped ASHA, progress line, JSON/CSV loggers, HParams sessions, checkpoint pruning, the Optuna
  SQLite file in the experiment) on a study of ``GROUPS`` condition groups (2 variants x 50 batch
  sizes), search phase only; only the trainable is replaced, by :func:`synthetic_trial` (test
  support, in this file only).
- ``ray-tune``: ``tune.Tuner`` with ``OptunaSearch`` (one TPE study over ``lr`` and the group) and
  ``ASHAScheduler`` with the same grace period, reduction factor, epochs, concurrency, actor reuse,
  checkpoint settings and JSON/CSV loggers.

Each (side, trial count) runs in a fresh process (embedded Ray) and prints: wall seconds, driver
CPU seconds per trial (user+system time of the driver process, less sensitive to a loaded machine
than wall time), results per wall second, the driver's peak RSS, bytes written to the experiment,
and, over the sizes, the growth exponent of driver CPU seconds (slope of log cost on log trials).
``--report`` also times ``er-tune report --no-plots`` on the largest er-tune experiment.

``--storages`` benchmarks the Optuna storages themselves (no Ray): ``P`` processes each asking and
telling ``T`` TPE trials of their own study in one shared storage (SQLite file, journal file, and
PostgreSQL when ``--postgres URL`` is given), as several drivers sharing a storage would.

Run: ``nice -n 10 .venv/bin/python benchmarks/driver_scale.py --trials 100 1000 --out /tmp/ds``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4
GROUPS = 100
BATCH_SIZES = list(range(16, 66))  # 50 grid cells x 2 variants = 100 condition groups
CPU_PER_TRIAL = 0.25


def synthetic_trial(config) -> None:
    """Reports EPOCHS epochs at once; the metric peaks at lr = 0.1 (no training, no data)."""
    import tempfile

    from ray import tune

    lr = float(config.get("lr", 0.1))
    quality = math.exp(-(math.log10(lr) + 1.0) ** 2)
    for epoch in range(1, EPOCHS + 1):
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "state.json").write_text(json.dumps({"epoch": epoch}))
            tune.report({"epoch": epoch, "knn_top1": 0.3 + 0.5 * quality * (1 - 0.5 ** epoch),
                         "stop_reason": "completed" if epoch == EPOCHS else ""},
                        checkpoint=tune.Checkpoint.from_directory(folder))


def study_text(trials: int, storage: str = "") -> str:
    samples = max(1, trials // GROUPS)
    extra = f", storage: {json.dumps(storage)}" if storage else ""
    return f"""name: driver_scale
data: {{dataset: shapes, image_size: 16, train_size: 128, eval_size: 32, seed: 0}}
model: {{backbone: convnet, projector_dim: 16, projector_hidden_dim: 32}}
methods: [simclr]
variants: [original, er]
grid: {{batch_size: {BATCH_SIZES}}}
seeds: [0]
tune:
  lr: {{loguniform: [0.001, 1.0]}}
search: {{num_samples: {samples}, metric: knn_top1, seed: 0{extra}}}
schedule: {{max_epochs: {EPOCHS}, asha: {{grace_period: 1, reduction_factor: 2}}}}
resources: {{cpu: {CPU_PER_TRIAL}, gpu: 0}}
"""


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_er_tune(trials: int, out: Path, storage: str) -> dict:
    import io

    from er_tune.launch import StudyRunner
    from search_spaces import load_study

    class SyntheticRunner(StudyRunner):
        """The study service with the synthetic trainable (benchmark support, not a product path)."""

        def _trainable(self):
            from ray import tune

            return tune.with_resources(synthetic_trial, {"cpu": CPU_PER_TRIAL})

    study_file = out / "study.yaml"
    study_file.write_text(study_text(trials, storage))
    study = load_study(str(study_file))
    exp = out / "exp"
    runner = SyntheticRunner(study, str(exp), address=None, stream=io.StringIO())
    start = time.time()
    code = runner.run("search")
    wall = time.time() - start
    return {"exit": code, "wall_s": wall, "exp": str(exp), "trials": len(list((exp / "search").glob("*/params.json")))}


def run_ray_tune(trials: int, out: Path) -> dict:
    import ray
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from er_tune.launch import _ray_environment, init_ray

    _ray_environment()
    init_ray(ray, None)
    groups = [f"simclr/{variant}/batch_size={size}" for variant in ("original", "er") for size in BATCH_SIZES]
    try:
        start = time.time()
        tuner = tune.Tuner(
            tune.with_resources(synthetic_trial, {"cpu": CPU_PER_TRIAL}),
            param_space={"lr": tune.loguniform(0.001, 1.0), "group": tune.choice(groups)},
            tune_config=tune.TuneConfig(
                search_alg=OptunaSearch(metric="knn_top1", mode="max", seed=0),
                scheduler=ASHAScheduler(metric="knn_top1", mode="max", time_attr="training_iteration",
                                        max_t=EPOCHS, grace_period=1, reduction_factor=2),
                num_samples=trials, max_concurrent_trials=slots(), reuse_actors=True),
            run_config=tune.RunConfig(name="search", storage_path=str(out / "exp"), verbose=0,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                                      callbacks=[JsonLoggerCallback(), CSVLoggerCallback()]))
        results = tuner.fit()
        wall = time.time() - start
    finally:
        ray.shutdown()
    return {"exit": 0 if not results.errors else 1, "wall_s": wall, "exp": str(out / "exp"), "trials": len(results)}


def slots() -> int:
    return int((os.cpu_count() or 1) // CPU_PER_TRIAL)


def one(side: str, trials: int, out: Path, storage: str) -> dict:
    """One side at one size, in this process; the figures as a dict."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    before = resource.getrusage(resource.RUSAGE_SELF)
    figures = run_er_tune(trials, out, storage) if side == "er-tune" else run_ray_tune(trials, out)
    after = resource.getrusage(resource.RUSAGE_SELF)
    exp = Path(figures["exp"])
    results = sum(len((p.parent / "result.json").read_text().splitlines())
                  for p in exp.glob("search/*/params.json") if (p.parent / "result.json").exists())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return figures | {"side": side, "planned": trials, "driver_cpu_s": cpu, "results": results,
                      "peak_rss_mb": after.ru_maxrss / 1024, "bytes": folder_bytes(exp)}


def exponent(rows: list[dict], key: str) -> float | None:
    points = [(math.log(r["planned"]), math.log(r[key])) for r in rows if r[key] > 0]
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def table(rows: list[dict]) -> str:
    head = ("| side | trials | wall s | driver CPU s/trial | results/s | peak RSS MB | MB written |\n"
            "|---|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['side']} | {r['trials']} | {r['wall_s']:.0f} | {r['driver_cpu_s'] / r['trials']:.3f} | "
                     f"{r['results'] / r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['bytes'] / 1e6:.1f} |")
    for side in dict.fromkeys(r["side"] for r in rows):
        mine = [r for r in rows if r["side"] == side]
        cpu, wall = exponent(mine, "driver_cpu_s"), exponent(mine, "wall_s")
        if cpu is not None:
            lines.append(f"\n{side}: growth exponent of driver CPU {cpu:.2f}, of wall time {wall:.2f}")
    sizes = sorted({r["planned"] for r in rows})
    for size in sizes:
        pair = {r["side"]: r for r in rows if r["planned"] == size}
        if {"er-tune", "ray-tune"} <= set(pair):
            ours, theirs = pair["er-tune"], pair["ray-tune"]
            lines.append(f"{size} trials: er-tune / ray-tune driver CPU per trial "
                         f"{(ours['driver_cpu_s'] / ours['trials']) / (theirs['driver_cpu_s'] / theirs['trials']):.2f}, "
                         f"wall {ours['wall_s'] / theirs['wall_s']:.2f}")
    return "\n".join(lines)


def worker_env() -> dict:
    """This tree first on the path, then whatever the caller added (e.g. a database driver)."""
    extra = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), extra])))


def storage_worker(url: str, study_name: str, trials: int) -> None:
    import optuna

    from er_tune.grouped import optuna_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=study_name, storage=optuna_storage(url), load_if_exists=True,
                                direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    distributions = {"lr": optuna.distributions.FloatDistribution(0.001, 1.0, log=True)}
    for _ in range(trials):
        trial = study.ask(distributions)
        for epoch in range(1, EPOCHS + 1):
            trial.report(0.3 + 0.1 * epoch * trial.params["lr"], epoch)
        study.tell(trial, 0.3 + 0.4 * trial.params["lr"])


def storages(urls: dict[str, str], trials: int, processes: list[int]) -> str:
    lines = ["| storage | drivers | trials each | wall s | trials/s (all drivers) |", "|---|---:|---:|---:|---:|"]
    for name, url in urls.items():
        for count in processes:
            start = time.time()
            workers = [subprocess.Popen([sys.executable, __file__, "--storage-worker", url, f"s{index}",
                                         str(trials)], env=worker_env())
                       for index in range(count)]
            codes = [worker.wait() for worker in workers]
            wall = time.time() - start
            state = "" if not any(codes) else f" (exit codes {codes})"
            lines.append(f"| {name} | {count} | {trials} | {wall:.1f} | {count * trials / wall:.1f}{state} |")
            print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--sides", nargs="*", default=["er-tune", "ray-tune"])
    parser.add_argument("--out", default="/tmp/driver_scale")
    parser.add_argument("--storage", default="", help="search.storage of the er-tune side (default SQLite)")
    parser.add_argument("--report", action="store_true", help="time er-tune report on the largest experiment")
    parser.add_argument("--storages", type=int, default=0, metavar="T",
                        help="instead: Optuna storages with T trials per driver")
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 4])
    parser.add_argument("--postgres", default="", help="a PostgreSQL URL for --storages")
    parser.add_argument("--one", nargs=2, metavar=("SIDE", "TRIALS"), help=argparse.SUPPRESS)
    parser.add_argument("--storage-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    if args.storage_worker:
        storage_worker(args.storage_worker[0], args.storage_worker[1], int(args.storage_worker[2]))
        return 0
    if args.one:
        side, trials = args.one[0], int(args.one[1])
        folder = out / f"{side}-{trials}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        print("RESULT " + json.dumps(one(side, trials, folder, args.storage)), flush=True)
        return 0
    if args.storages:
        out.mkdir(parents=True, exist_ok=True)
        urls = {"sqlite": f"sqlite:///{out / 'bench.db'}", "journal": f"journal:{out / 'bench.journal'}"}
        if args.postgres:
            urls["postgresql"] = args.postgres
        for path in (out / "bench.db", out / "bench.journal", out / "bench.journal.lock"):
            path.unlink(missing_ok=True)
        if args.postgres:  # a fresh schema: drop the studies of an earlier run
            import optuna

            for summary in optuna.get_all_study_summaries(args.postgres):
                optuna.delete_study(study_name=summary.study_name, storage=args.postgres)
        print(storages(urls, args.storages, args.processes), flush=True)
        return 0
    rows = []
    for trials in args.trials:
        for side in args.sides:
            run = subprocess.run([sys.executable, __file__, "--one", side, str(trials), "--out", str(out),
                                  "--storage", args.storage], capture_output=True, text=True,
                                 env=worker_env())
            found = [line[7:] for line in run.stdout.splitlines() if line.startswith("RESULT ")]
            if not found:
                print(f"{side} at {trials} trials failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}", flush=True)
                continue
            rows.append(json.loads(found[0]))
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows), flush=True)
    if args.report and rows:
        largest = max((r for r in rows if r["side"] == "er-tune"), key=lambda r: r["planned"])
        start = time.time()
        run = subprocess.run([sys.executable, "-m", "er_tune", "report", largest["exp"], "--no-plots", "-q",
                              "--out", str(out / "report")], capture_output=True, text=True,
                             env=worker_env())
        print(f"er-tune report of {largest['trials']} trials: {time.time() - start:.1f} s (exit {run.returncode})",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
