"""How the study driver grows with the number of trials, side by side with plain Ray Tune.

Both sides run the same trial function, which trains nothing: it reports ``EPOCHS`` synthetic
epochs at once (a metric that depends on the trial's ``lr``, a small checkpoint each epoch) so that
what is measured is the driver: searcher, scheduler, callbacks, experiment snapshots.

- ``er-tune``: the real study service (:class:`er_tune.launch.StudyRunner`: grouped Optuna searcher,
  grouped ASHA, progress line, JSON/CSV loggers, HParams sessions, checkpoint pruning, the Optuna
  journal file in the experiment) on a study of ``GROUPS`` condition groups (2 variants x 50 batch
  sizes), search phase only; only the trainable is replaced, by :func:`synthetic_trial` (test
  support, in this file only).
- ``ray-tune``: ``tune.Tuner`` with ``OptunaSearch`` (one TPE study over ``lr`` and the group) and
  ``ASHAScheduler`` with the same grace period, reduction factor, epochs, concurrency, actor reuse,
  checkpoint settings (:func:`er_tune.launch.checkpoint_config` and the same Ray environment
  variables) and JSON/CSV loggers.

Each (side, trial count) runs in a fresh process (embedded Ray) and prints: wall seconds, driver
CPU seconds per trial (user+system time of the driver process, less sensitive to a loaded machine
than wall time), results per wall second, the driver's peak RSS, bytes written to the experiment,
the worker processes Ray started and the processes the trials ran in (Ray's worker starts vary from
run to run and cost the driver about 0.2 s each: compare runs at similar counts), and, over the
sizes, the growth exponent of driver CPU seconds (slope of log cost on log trials) and the driver
CPU of each additional trial between two sizes (what a driver pays once left out).
``--report`` also times ``er-tune report --no-plots`` on the largest er-tune experiment.

``--storages`` benchmarks the Optuna storages themselves (no Ray): ``P`` processes each asking and
telling ``T`` TPE trials of their own study in one shared storage (SQLite file, journal file, and
PostgreSQL when ``--postgres URL`` is given), as several drivers sharing a storage would.

A size that does not fit one sitting (10^4 trials takes hours on 2 cores) is resumable: each
(side, size) keeps ``segments.json`` in its folder, one entry per driver process that worked on it
(driver CPU, wall time and peak RSS, rewritten every ``HEARTBEAT_S`` seconds so a killed driver
loses at most that much of its accounting), and ``--resume`` continues an unfinished experiment
(er-tune: its own resume; plain Ray Tune: ``Tuner.restore``) and skips finished ones. The figures of
a resumed run are the sums over its segments (peak RSS: the largest), so they include the cost of
restoring, the same for both sides; the table says how many segments a row took.

``--trial-seconds S`` spreads each trial's epochs over S seconds (default 0: reported at once), so
that the slots stay busy as in a real study instead of one worker running trial after trial.

Run: ``nice -n 10 .venv/bin/python benchmarks/driver_scale.py --trials 100 1000 --out /tmp/ds``
(add ``--resume`` to continue after an interruption)
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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4
GROUPS = 100
BATCH_SIZES = list(range(16, 66))  # 50 grid cells x 2 variants = 100 condition groups
CPU_PER_TRIAL = 0.25
HEARTBEAT_S = 20.0
TRIAL_SECONDS_ENV = "ER_TUNE_BENCH_TRIAL_S"  # --trial-seconds, read by the trial in Ray's workers


def synthetic_trial(config) -> None:
    """Reports EPOCHS epochs (at once, or one every ``TRIAL_SECONDS_ENV`` / EPOCHS seconds); the
    metric peaks at lr = 0.1 (no training, no data)."""
    import tempfile

    from ray import tune

    lr = float(config.get("lr", 0.1))
    quality = math.exp(-(math.log10(lr) + 1.0) ** 2)
    pause = float(os.environ.get(TRIAL_SECONDS_ENV, "0") or 0) / EPOCHS
    for epoch in range(1, EPOCHS + 1):
        time.sleep(pause)
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
    """The search phase of the study service (which resumes an interrupted experiment itself)."""
    import io

    from er_tune.launch import StudyRunner
    from search_spaces import load_study

    class SyntheticRunner(StudyRunner):
        """The study service with the synthetic trainable (benchmark support, not a product path)."""

        def _trainable(self):
            from ray import tune

            self.data_records = []  # provenance: no dataset is read
            return tune.with_resources(synthetic_trial, {"cpu": CPU_PER_TRIAL})

    study_file = out / "study.yaml"
    if not study_file.exists():
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

    from er_tune.launch import _ray_environment, checkpoint_config, init_ray

    _ray_environment()
    init_ray(ray, None)
    groups = [f"simclr/{variant}/batch_size={size}" for variant in ("original", "er") for size in BATCH_SIZES]
    path = out / "exp" / "search"
    try:
        start = time.time()
        if tune.Tuner.can_restore(str(path)):
            tuner = tune.Tuner.restore(str(path), trainable=tune.with_resources(synthetic_trial, {"cpu": CPU_PER_TRIAL}),
                                       resume_errored=True)
            results = tuner.fit()
            return {"exit": 0 if not results.errors else 1, "wall_s": time.time() - start,
                    "exp": str(out / "exp"), "trials": len(results)}
        tuner = tune.Tuner(
            tune.with_resources(synthetic_trial, {"cpu": CPU_PER_TRIAL}),
            param_space={"lr": tune.loguniform(0.001, 1.0), "group": tune.choice(groups)},
            tune_config=tune.TuneConfig(
                search_alg=OptunaSearch(metric="knn_top1", mode="max", seed=0),
                scheduler=ASHAScheduler(metric="knn_top1", mode="max", time_attr="training_iteration",
                                        max_t=EPOCHS, grace_period=1, reduction_factor=2),
                num_samples=trials, max_concurrent_trials=slots(), reuse_actors=True),
            run_config=tune.RunConfig(name="search", storage_path=str(out / "exp"), verbose=0,
                                      checkpoint_config=checkpoint_config(),
                                      callbacks=[JsonLoggerCallback(), CSVLoggerCallback()]))
        results = tuner.fit()
        wall = time.time() - start
    finally:
        ray.shutdown()
    return {"exit": 0 if not results.errors else 1, "wall_s": wall, "exp": str(out / "exp"), "trials": len(results)}


def slots() -> int:
    return int((os.cpu_count() or 1) // CPU_PER_TRIAL)


def _cpu_seconds(usage) -> float:
    return usage.ru_utime + usage.ru_stime


class Segments:
    """``segments.json`` of one (side, size): one entry per driver process that worked on it.

    The current process's entry is rewritten (atomically) every ``HEARTBEAT_S`` seconds and at the
    end, so a killed driver loses at most that much of its driver CPU and wall time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "segments.json"
        self.entries: list[dict] = json.loads(self.path.read_text()) if self.path.exists() else []
        self.entries = [entry for entry in self.entries if entry.get("wall_s", 0) > 0]
        self.current = {"started": time.time(), "driver_cpu_s": 0.0, "wall_s": 0.0, "peak_rss_mb": 0.0}
        self.entries.append(self.current)
        self._cpu0 = _cpu_seconds(resource.getrusage(resource.RUSAGE_SELF))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    @staticmethod
    def partial(folder: Path) -> dict | None:
        """An unfinished run's figures so far: driver CPU per trial started, over its segments."""
        path = folder / "segments.json"
        entries = json.loads(path.read_text()) if path.exists() else []
        if not entries:
            return None
        cpu = sum(entry["driver_cpu_s"] for entry in entries)
        started = entries[-1].get("trials_started", 0)
        return {"segments": len(entries), "wall_s": round(sum(entry["wall_s"] for entry in entries)),
                "driver_cpu_s": round(cpu, 1), "trials_started": started,
                "driver_cpu_s_per_trial_started": round(cpu / started, 3) if started else None}

    @staticmethod
    def finished_row(folder: Path) -> dict | None:
        """The figures of a (side, size) that finished in an earlier run, else None."""
        path = folder / "segments.json"
        entries = json.loads(path.read_text()) if path.exists() else []
        return next((entry["row"] for entry in entries if "row" in entry), None)

    def __enter__(self) -> "Segments":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.update()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.update()

    def update(self, row: dict | None = None) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.current.update(driver_cpu_s=_cpu_seconds(usage) - self._cpu0, wall_s=time.time() - self.current["started"],
                            peak_rss_mb=usage.ru_maxrss / 1024,
                            trials_started=sum(1 for _ in self.folder.glob("exp/search/*/params.json")))
        if row is not None:
            self.current["row"] = row
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.entries, indent=1))
        os.replace(temporary, self.path)

    def totals(self) -> dict:
        return {"driver_cpu_s": sum(entry["driver_cpu_s"] for entry in self.entries),
                "wall_s": sum(entry["wall_s"] for entry in self.entries),
                "peak_rss_mb": max(entry["peak_rss_mb"] for entry in self.entries),
                "workers": sum(entry.get("workers", 0) for entry in self.entries),
                "segments": len(self.entries)}


def one(side: str, trials: int, folder: Path, storage: str) -> dict:
    """One side at one size, in this process (continuing its earlier segments); the figures as a dict."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    with Segments(folder) as segments:
        figures = run_er_tune(trials, folder, storage) if side == "er-tune" else run_ray_tune(trials, folder)
        segments.current["workers"] = workers_started()
        segments.update()
        exp = Path(figures["exp"])
        lines = [json.loads(line) for p in exp.glob("search/*/params.json") if (p.parent / "result.json").exists()
                 for line in (p.parent / "result.json").read_text().splitlines()]
        # Ray's worker processes the trials ran in (a reused actor keeps its process), against the
        # worker processes its sessions started (``workers``, per segment)
        row = figures | {"side": side, "planned": trials, "results": len(lines), "bytes": folder_bytes(exp),
                         "trial_seconds": float(os.environ.get(TRIAL_SECONDS_ENV, "0") or 0),
                         "trial_processes": len({line.get("pid") for line in lines}), **segments.totals()}
        segments.update(row)
    return row


def workers_started(session: Path = Path("/tmp/ray/session_latest")) -> int:
    """Python worker processes the last embedded Ray session started (one core-worker log each).

    Ray writes one ``python-core-worker-<id>_<pid>.log`` per worker process into the session's
    ``logs`` folder (Ray's default temporary folder, which ``er_tune.launch.init_ray`` keeps). Every
    actor Tune creates for a trial starts one (a process start, its imports, and driver work), as
    does each idle worker Ray keeps ready; with actor reuse the trials themselves may run in fewer
    (the row's ``trial_processes``)."""
    logs = session / "logs"
    return sum(1 for name in os.listdir(logs) if name.startswith("python-core-worker")) if logs.is_dir() else 0


def exponent(rows: list[dict], key: str) -> float | None:
    points = [(math.log(r["planned"]), math.log(r[key])) for r in rows if r[key] > 0]
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def table(rows: list[dict]) -> str:
    head = ("| side | trials | wall s | driver CPU s/trial | results/s | peak RSS MB | MB written | workers started "
            "| trial processes | segments |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['side']} | {r['trials']} | {r['wall_s']:.0f} | {r['driver_cpu_s'] / r['trials']:.3f} | "
                     f"{r['results'] / r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['bytes'] / 1e6:.1f} | "
                     f"{r.get('workers', '-')} | {r.get('trial_processes', '-')} | {r.get('segments', 1)} |")
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
    for small, large in zip(sizes, sizes[1:]):
        # each additional trial's driver CPU: the slope between two sizes, which leaves out what a
        # driver pays once (imports, starting Ray, the study's setup), larger for er-tune
        slopes = {}
        for side in ("er-tune", "ray-tune"):
            pair = {r["planned"]: r for r in rows if r["side"] == side}
            if small in pair and large in pair:
                slopes[side] = ((pair[large]["driver_cpu_s"] - pair[small]["driver_cpu_s"])
                                / (pair[large]["trials"] - pair[small]["trials"]))
        if len(slopes) == 2:
            lines.append(f"{small} -> {large} trials: driver CPU per additional trial er-tune "
                         f"{slopes['er-tune']:.3f} s, ray-tune {slopes['ray-tune']:.3f} s, "
                         f"ratio {slopes['er-tune'] / slopes['ray-tune']:.2f}")
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
    parser.add_argument("--storage", default="", help="search.storage of the er-tune side (default: the experiment's journal file)")
    parser.add_argument("--report", action="store_true", help="time er-tune report on the largest experiment")
    parser.add_argument("--show", action="store_true",
                        help="with --resume: print the finished rows and unfinished runs' progress; run nothing")
    parser.add_argument("--resume", action="store_true",
                        help="continue unfinished (side, size) runs in --out and reuse finished ones")
    parser.add_argument("--storages", type=int, default=0, metavar="T",
                        help="instead: Optuna storages with T trials per driver")
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 4])
    parser.add_argument("--postgres", default="", help="a PostgreSQL URL for --storages")
    parser.add_argument("--trial-seconds", type=float, default=0.0,
                        help="how long each synthetic trial takes (its epochs spread over it); 0: reports at once")
    parser.add_argument("--one", nargs=2, metavar=("SIDE", "TRIALS"), help=argparse.SUPPRESS)
    parser.add_argument("--storage-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    os.environ[TRIAL_SECONDS_ENV] = str(args.trial_seconds)  # embedded Ray's workers inherit it
    if args.storage_worker:
        storage_worker(args.storage_worker[0], args.storage_worker[1], int(args.storage_worker[2]))
        return 0
    if args.one:
        side, trials = args.one[0], int(args.one[1])
        folder = out / f"{side}-{trials}"
        if not args.resume:
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
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
            done = Segments.finished_row(out / f"{side}-{trials}") if args.resume else None
            if done is not None:
                rows.append(done)
                print(json.dumps(done) + "  (finished earlier)", flush=True)
                continue
            if args.show:
                partial = Segments.partial(out / f"{side}-{trials}")
                if partial:
                    print(f"{side} at {trials} trials, unfinished: {json.dumps(partial)}", flush=True)
                continue
            run = subprocess.run([sys.executable, __file__, "--one", side, str(trials), "--out", str(out),
                                  "--storage", args.storage, "--trial-seconds", str(args.trial_seconds)]
                                 + (["--resume"] if args.resume else []),
                                 capture_output=True, text=True, env=worker_env())
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
