"""``er-tune tune``: run a study's two phases on Ray Tune, embedded or on a cluster, resumably.

Phase ``search``: one Tuner runs every condition group at once, with a grouped Optuna searcher
(one TPE study per group) and a grouped ASHA (rungs per group). Phase ``replicate``: the best
configuration of each group × every seed, full budget, FIFO. Each phase is a Ray Tune experiment
in ``<experiment>/<phase>``; running the same command again restores it with
``Tuner.restore(..., resume_errored=True)``, so finished trials are neither re-run nor duplicated.
Everything the user can get wrong is checked before Ray starts (exit 2, nothing written).

On a cluster (``pip install er-tune[cluster]`` on every node) the driver may run anywhere that
reaches the head, or as a Ray job on the head::

    ray job submit --address http://HEAD:8265 -- er-tune tune STUDY.yaml \
        --storage /mnt/shared/er_runs/NAME

Like Ray's own tools, ``tune`` connects to the cluster named by ``--address`` or, without it, by
the ``RAY_ADDRESS`` environment variable (which ``ray job submit`` sets for its entrypoint), and
then never passes local resources (``num_cpus``) to ``ray.init``. ``--storage`` must be visible to
every node: a mounted path or a pyarrow filesystem URI (``s3://``, ``gs://``...). A trial whose node is lost is retried from its last
checkpoint on a surviving node (``FailureConfig(max_failures=MAX_FAILURES)``); a lost head or
driver is survived by submitting the same command again (``Tuner.restore``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from er_tune.legacy import install_legacy_modules
from er_core.io import write_json_atomic
from er_core.rules import Candidate, Choice
from er_core.rules import best_by_group as _best_by_group
from er_core.rules import ALL_PHASES, EXIT_USAGE, PHASE_CHOICES, REPLICATE, SEARCH, trial_status

MAX_FAILURES = 2  # retries per trial (exceptions, lost nodes), each from the last checkpoint
EMBEDDED_START_TRIES = 3  # an embedded Ray that does not register in 30 s is started again
# A trial's actor process is handed the next trial (FunctionTrainable.reset_config) instead of a
# new process being started per trial: no re-import of torch/Ray (several seconds a trial on 2
# cores). run_trial builds and seeds everything per trial, so results do not depend on reuse.
REUSE_ACTORS = True
DATA_PARALLEL_DRIVER_CPU = 0.01  # Ray needs a non-empty bundle for the Tune actor of a TorchTrainer trial
URI_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "abfs://", "az://", "file://", "memory://")


class LaunchError(ValueError):
    """A problem with the command's arguments or the experiment directory (exit code 2)."""


def experiment_dir(study_name: str, storage: str | None, name: str | None) -> str:
    """``--storage`` is the experiment directory itself; the default is ``./er_runs/<name>``."""
    if storage:
        return storage if storage.startswith(URI_SCHEMES) else os.path.abspath(storage)
    return os.path.abspath(os.path.join("er_runs", name or study_name))


def check_arguments(address: str | None, storage: str | None, phase: str) -> None:
    if phase not in PHASE_CHOICES:
        raise LaunchError(f"--phase={phase} is not allowed; allowed: {', '.join(PHASE_CHOICES)}")
    if address is not None and not storage:
        raise LaunchError(
            "--address connects to a Ray cluster, whose trials may run on other nodes: pass "
            "--storage with shared storage (a path mounted at the same place on every node, e.g. "
            "/mnt/shared/er_runs/NAME, or a URI such as s3://bucket/er_runs/NAME)")


def check_experiment(exp_dir: str, study_text: str) -> None:
    """An existing experiment must come from the same study file, else results would mix."""
    from er_tune.storage import read_text

    recorded = read_text(exp_dir, "study.yaml")
    if recorded is not None and recorded != study_text:
        raise LaunchError(
            f"{exp_dir} holds an experiment of a different study file ({exp_dir.rstrip('/')}/study.yaml); "
            "resume it with its own study, or choose another --name/--storage")


def check_loggers(study) -> None:
    """A tracker named in ``loggers:`` needs its package (an extra), checked before Ray starts."""
    from er_tune.observers import missing_logger_packages

    missing = missing_logger_packages(getattr(study, "loggers", None))
    if missing:
        raise LaunchError("; ".join(missing))


def run_study(study_path: str, *, address: str | None = None, storage: str | None = None,
              name: str | None = None, phase: str = "all", stream=sys.stdout, verbosity: int = 0) -> int:
    """Validate, then run the requested phases; returns the process exit code.

    ``verbosity``: 1 prints the live progress line at every result (``er-tune tune -v``)."""
    from er_tune.driver_lock import DriverLock, LockHeld
    from er_tune.redact import protect
    from search_spaces import StudyError, load_study

    if cluster_address(address) is None:
        embedded_on_loopback()
    try:
        check_arguments(address, storage, phase)
        study = protect(load_study(study_path))  # credentials: masked in study.yaml and pickles
        exp_dir = experiment_dir(study.name, storage, name)
        check_services(study_path, study, exp_dir)
        check_experiment(exp_dir, study.raw)
        check_loggers(study)
        if phase == REPLICATE and study.tune is not None and not _search_finished(exp_dir):
            raise LaunchError(f"--phase replicate needs a finished search phase in {exp_dir}/search; "
                              "run --phase search (or all) first")
        lock = DriverLock(exp_dir)
        lock.acquire(say=lambda line: print(f"er-tune tune: {line}", file=sys.stderr, flush=True))
    except (StudyError, LaunchError, LockHeld) as error:
        print(f"er-tune tune: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return StudyRunner(study, exp_dir, address=address, stream=stream, verbosity=verbosity).run(phase)
    finally:
        lock.release()


def embedded_on_loopback() -> None:
    """An embedded Ray listens on 127.0.0.1 only: with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` Ray
    takes the loopback address as the node's address (as it does on macOS and Windows), and its GCS,
    raylet, agents and workers bind to it instead of every interface. Read by Ray when it is
    imported, so this runs before the first ``import ray``; the user's own setting wins."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


ENV_SECRETS = ("WANDB_API_KEY", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY")


def check_services(study_path: str, study, exp_dir: str) -> None:
    """Fail fast (:mod:`er_tune.preflight`): the storages and trackers the study names answer."""
    from er_tune.preflight import run_checks, storage_problem, study_checks
    from er_tune.redact import mask, study_secrets, url_secrets

    shown = mask(exp_dir, url_secrets(exp_dir))
    problem = storage_problem(exp_dir)
    if problem:
        raise LaunchError(f"--storage {shown}: {problem}")
    secrets = study_secrets(study) + [os.environ[name] for name in ENV_SECRETS if os.environ.get(name)]
    problems = run_checks(study_checks(study, exp_dir), secrets)
    if problems:
        raise LaunchError("\n".join(line.replace("--storage", f"--storage {shown}", 1) if line.startswith("--storage")
                                    else f"{study_path}: {line}" for line in problems))


def study_plan(study) -> dict[str, Any]:
    """What the study will run, written to ``<exp>/plan.json`` for ``er-tune status``."""
    from search_spaces import condition_groups, halving_of, search_trial_count

    groups = condition_groups(study)
    epochs = study.schedule.max_epochs
    halving = halving_of(study)
    return {"study": study.name, "metric": study.search.metric, "mode": study.search.mode,
            "halving": halving.to_dict() if halving else None,
            "groups": [group.name for group in groups],
            "phases": {SEARCH: {"trials": search_trial_count(study) if study.tune else 0,
                                "max_epochs": epochs},
                       REPLICATE: {"trials": len(groups) * len(study.seeds), "max_epochs": epochs}}}


def _search_finished(exp_dir: str) -> bool:
    from er_tune.storage import read_text

    return read_text(exp_dir, "best_configs.json") is not None


def cluster_address(address: str | None) -> str | None:
    """The Ray cluster to connect to, as Ray's own tools choose it: ``--address``, else the
    ``RAY_ADDRESS`` environment variable (set by ``ray job submit`` for its entrypoint); ``None``
    (or ``local``) starts a private embedded Ray."""
    chosen = address or os.environ.get("RAY_ADDRESS") or None
    return None if chosen == "local" else chosen


def driver_cpu(resources) -> float:
    """CPU of a trial's Tune actor: its own share for a single-process trial (``resources.cpu``
    covers it), a token share for a data-parallel trial's driver, which only waits on its workers."""
    return DATA_PARALLEL_DRIVER_CPU if resources.workers > 1 else 0.0


def init_ray(ray, address: str | None) -> bool:
    """Start an embedded Ray (all local CPUs) or connect to ``address``; True when embedded.

    An existing cluster is never given ``num_cpus``/``num_gpus`` (Ray refuses them); ``address``
    is passed explicitly so ``RAY_ADDRESS`` cannot turn the embedded call into a connection.
    """
    if address is None:
        # a private, local-only Ray: no token file in the user's home directory
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        for attempt in range(EMBEDDED_START_TRIES):
            try:
                ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                         logging_level="WARNING")
                return True
            except Exception:  # noqa: BLE001 - Ray gives a new node 30 s to register (hard-coded)
                ray.shutdown()  # "timed out during startup" on a loaded machine: start afresh
                if attempt == EMBEDDED_START_TRIES - 1:
                    raise
        return True
    ray.init(address=address, logging_level="WARNING")
    return False


def _ray_environment() -> None:
    """Defaults for a machine without network; the user's own settings win."""
    from er_tune.observers import disable_ray_tensorboard

    disable_ray_tensorboard()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Forced experiment snapshots (checkpoint_config) are what makes resume exact; Ray warns about
    # them when they are frequent, so silence the warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # The kept checkpoints' entries in a trial's state hold no metrics (the latest one keeps its
    # whole result, which is what a restored trial reads back): ~0.2 kB instead of ~5 kB (the
    # config included) per checkpoint and trial in every experiment snapshot (checkpoint_config).
    os.environ.setdefault("TUNE_ONLY_STORE_CHECKPOINT_SCORE_ATTRIBUTE", "1")


CHECKPOINTS_KEPT = 5


def checkpoint_config():
    """Ray keeps each running trial's newest ``CHECKPOINTS_KEPT`` checkpoints (the rest go when its
    phase ends: :mod:`er_tune.cleanup`).

    Why 5 and not 2: Ray forces a full experiment snapshot whenever one trial has made
    ``num_to_keep`` checkpoints since the last snapshot (so that no snapshot points at a checkpoint
    it has deleted), and every snapshot writes the state of *every* trial of the phase. With one
    checkpoint per epoch and ``num_to_keep=2`` that is a snapshot every other epoch of any trial,
    each one larger as trials accumulate: the driver's cost per trial grew with the number of
    trials (``benchmarks/driver_scale.py``: 0.17 s of driver CPU per trial over the first 272
    trials of a 10,000-trial search, 0.69 s per trial from there to 2,452, where it was stopped;
    the experiment state file was 77 MB). With 5, trials of up to 4 epochs between two periodic
    snapshots never force one, longer trials force one every 5 epochs instead of every 2, and the
    periodic snapshots (Ray's ``auto`` period: at most ~5% of the driver's time) carry the rest.
    """
    from ray import tune

    return tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT)


def trial_dirname(trial) -> str:
    """``<method>_<variant>_<axis>=<value>_seed<seed>_<id>`` (:func:`er_core.outcome.trial_dirname`)."""
    from er_core.outcome import trial_dirname as name

    return name(trial.config or {}, trial.trial_id)


def result_rows(result) -> list[dict[str, Any]]:
    """A Ray ``Result``'s reported lines in order (its ``metrics_dataframe``), else its last one.

    The rows ``frame.to_dict("records")`` gives (Python scalars, NaN where a line lacks a key), read
    through one object array: ``to_dict`` boxes value by value (8.9 against 1.4 ms of CPU for a
    trial's 4 lines of 93 columns, ``benchmarks/result_rows.py``), paid for every trial of a search
    phase when it picks each group's best."""
    frame = getattr(result, "metrics_dataframe", None)
    if frame is not None and len(frame):
        names = list(frame.columns)
        return [dict(zip(names, values)) for values in frame.to_numpy(dtype=object).tolist()]
    return [dict(result.metrics or {})]


def best_by_group(results, metric: str, mode: str, halving=None) -> dict[str, Choice]:
    """Best configuration per condition group from a finished search phase
    (:func:`er_core.rules.best_by_group`, the rule ``er-tune status`` and the progress line show):
    each trial's metric compared with its rivals' at the furthest epoch any of them reached.
    ``Choice.item`` is the trial's config."""
    candidates = []
    for result in results:
        config, metrics = result.config or {}, result.metrics or {}
        status = trial_status(metrics, epochs=config.get("epochs"), errored=result.error is not None,
                              ray_status="ERROR" if result.error is not None else "TERMINATED")
        candidates.append(Candidate(config.get("group"), status, result_rows(result), dict(config),
                                    int(config.get("optuna_trial", 0) or 0)))
    return _best_by_group(candidates, metric, mode, halving)


class StudyRunner:
    """Runs the phases of one validated study into one experiment directory."""

    def __init__(self, study, exp_dir: str, *, address: str | None, stream, verbosity: int = 0) -> None:
        self.verbosity = verbosity
        self.study = study
        self.exp_dir = exp_dir
        self.address = cluster_address(address)
        self.stream = stream

    def say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def run(self, phase: str) -> int:
        _ray_environment()
        import ray

        # Ray first: a cluster that cannot be reached leaves no half-created experiment behind
        embedded = init_ray(ray, self.address)
        try:
            self._record_study()
            self.max_concurrent = self.study.resources.max_concurrent_trials or self._slots(ray)
            trainable = self._trainable()
            self._record_provenance(ray)
            errors = 0
            best: dict[str, dict[str, Any]] = {}
            if self.study.tune is not None and phase in (SEARCH, ALL_PHASES):
                best, errors = self._search(trainable)
            elif self.study.tune is not None:
                best = self._load_best()
            if phase in (REPLICATE, ALL_PHASES):
                errors += self._replicate(trainable, best)
        finally:
            if embedded:
                ray.shutdown()
        self.say(f"experiment: {self.exp_dir}\n  tensorboard --logdir {self.exp_dir}\n"
                 f"  er-tune report {self.exp_dir}")
        if errors:
            self.say(f"{errors} trial(s) errored after retries; run the same command again to resume them")
            return 1
        return 0

    def _record_study(self) -> None:
        """``study.yaml`` (kept from the first run) and ``plan.json`` in the experiment folder."""
        from er_tune.storage import write_text

        write_text(self.exp_dir, "study.yaml", self.study.raw, overwrite=False)
        write_text(self.exp_dir, "plan.json", json.dumps(study_plan(self.study), indent=2, sort_keys=True))

    def _record_provenance(self, ray) -> None:
        """``provenance.json``: code, packages, device, cluster and data fingerprints of this run
        (er_core/provenance.py; the report copies it into its manifest). Rewritten by every run
        of the experiment, so a resumed one records what it read."""
        from er_core.provenance import run_provenance
        from er_tune.storage import write_text

        total = ray.cluster_resources()
        cluster = {"nodes": len([n for n in ray.nodes() if n.get("Alive")]),
                   "CPU": total.get("CPU"), "GPU": total.get("GPU"),
                   "accelerator_types": sorted(k.split(":", 1)[1] for k in total
                                               if k.startswith("accelerator_type:"))}
        write_text(self.exp_dir, "provenance.json",
                   json.dumps(run_provenance(self.data_records, cluster), indent=2, sort_keys=True))

    def _slots(self, ray) -> int:
        """How many trials the cluster's CPUs/GPUs fit at once (the default concurrency).

        Ray Tune lets a custom searcher have one pending trial at a time unless a concurrency limit
        is given; an explicit limit equal to the cluster's capacity keeps every slot busy.
        """
        total = ray.cluster_resources()
        resources = self.study.resources
        fits = []
        if resources.cpu > 0:
            fits.append(int(total.get("CPU", 0) // (resources.trial_cpu + driver_cpu(resources))))
        if resources.gpu > 0:
            fits.append(int(total.get("GPU", 0) // resources.trial_gpu))
        return max(1, min(fits)) if fits else 1

    def _trainable(self):
        from ray import tune

        from er_core.config import TrialConfig
        from search_spaces import data_configs
        from er_tune.trainable import tune_trial
        from trainers.trial_data import dataset_key, load_trial_data

        datasets = {}
        self.data_records = []
        for values in data_configs(self.study):
            config = TrialConfig.from_dict(values)
            key = dataset_key(config)
            if key not in datasets:
                datasets[key] = load_trial_data(config)
                bundle = datasets[key]
                train_shape = [bundle.num_train, *bundle.train_images.shape[1:]]
                streamed = (f" streamed from its files by {config.loader_workers} loader processes per worker "
                            f"(kNN bank {tuple(bundle.train_images.shape)} in memory)" if bundle.streaming else "")
                self.say(f"data: {config.dataset} {tuple(train_shape)} train{streamed}, "
                         f"{tuple(bundle.eval_images.shape)} eval (shipped once via the object store)")
                # what the trials read, identified without the machine's path (data_root)
                self.data_records.append({
                    "dataset": config.dataset, "image_size": config.image_size,
                    "train_size": config.train_size, "eval_size": config.eval_size,
                    "data_seed": config.data_seed, "train_shape": train_shape,
                    "eval_shape": list(bundle.eval_images.shape), "sha256": bundle.fingerprint(),
                    **({"streaming": True, "bank_shape": list(bundle.train_images.shape)} if bundle.streaming else {})})
        resources = self.study.resources
        if resources.workers > 1:  # a Ray Train TorchTrainer per trial, its workers scheduled by Train
            from er_tune.data_parallel import data_parallel_trial

            return tune.with_resources(
                tune.with_parameters(data_parallel_trial, datasets=datasets, cpu=resources.cpu,
                                     gpu=resources.gpu, max_failures=MAX_FAILURES),
                {"cpu": driver_cpu(resources)})
        return tune.with_resources(tune.with_parameters(tune_trial, datasets=datasets),
                                   {"cpu": resources.cpu, "gpu": resources.gpu})

    def _reuse_actors(self) -> bool:
        """A data-parallel trial's driver is not reused: ending its actor ends the Train run it owns."""
        return REUSE_ACTORS and self.study.resources.workers == 1

    def _run_config(self, phase: str, total: int):
        from ray import tune

        from er_tune.cleanup import PruneEndedCheckpoints
        from er_tune.progress import StudyProgress
        from search_spaces import halving_of

        # max_failures also covers a lost node: the trial's actor dies with it and the trial is
        # retried from its last checkpoint (in the shared storage) on a node that is still alive.
        return tune.RunConfig(
            name=phase, storage_path=self.exp_dir,
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            checkpoint_config=checkpoint_config(),
            # URI storage: trials write their own files to their working dir, which Ray uploads
            # (er_tune.tune_reporter.artifact_dir); a path is written directly by every node.
            sync_config=tune.SyncConfig(sync_artifacts=True) if "://" in self.exp_dir else None,
            callbacks=[StudyProgress(phase, total, self.stream, metric=self.study.search.metric,
                                     mode=self.study.search.mode, max_epochs=self.study.schedule.max_epochs,
                                     verbosity=self.verbosity,
                                     halving=halving_of(self.study) if phase == "search" else None),
                       PruneEndedCheckpoints(keep_final=self.study.keep_final_checkpoint),
                       *self._data_parallel_callbacks(),
                       *self._observers()],
            verbose=0)

    def _data_parallel_callbacks(self) -> list:
        """Data-parallel trials: the Train runs' placement groups released when a trial ends."""
        if self.study.resources.workers == 1:
            return []
        from er_tune.data_parallel import ReleaseTrainPlacementGroups

        return [ReleaseTrainPlacementGroups()]

    def _observers(self) -> list:
        """Ray's JSON/CSV loggers, the study's trackers (``loggers:``) and the HParams sessions."""
        from er_tune.observers import TrialSessions, logger_callbacks

        return [*logger_callbacks(getattr(self.study, "loggers", None), experiment=self.study.name,
                                  exp_dir=self.exp_dir), TrialSessions()]

    def _searcher(self):
        from er_tune.grouped import GroupedOptunaSearcher

        return GroupedOptunaSearcher(self.study, storage_dir=self._optuna_dir(),
                                     storage=getattr(self.study.search, "storage", None) or None,
                                     trials_dir=f"{self.exp_dir.rstrip('/')}/search")

    def _optuna_dir(self) -> str:
        """Local folder of the default Optuna journal file (a downloaded copy for URI experiments)."""
        from er_tune.storage import optuna_dir

        if getattr(self, "_optuna_local", None) is None:
            self._optuna_local = optuna_dir(self.exp_dir)
        return self._optuna_local

    def _fit(self, phase: str, trainable, make_tuner) -> Any:
        from ray import tune

        from er_tune.storage import has_experiment_state, set_aside_unsnapshotted_trials

        path = os.path.join(self.exp_dir, phase)
        restorable = tune.Tuner.can_restore(path)
        if restorable and not has_experiment_state(path):
            # the last driver stopped between writing tuner.pkl and Ray's first snapshot
            moved = set_aside_unsnapshotted_trials(path)
            self.say(f"[{phase}] {path} has no experiment snapshot (its driver stopped before the first one): "
                     f"starting the phase afresh" + (f"; {len(moved)} trial folder(s) no snapshot names moved "
                                                    f"to {phase}/.abandoned" if moved else ""))
            restorable = False
        if restorable:
            install_legacy_modules()  # state pickled before the folders became floors
            self.say(f"[{phase}] resuming {path} (finished trials are kept, errored ones resumed)")
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
        else:
            tuner = make_tuner()
        return tuner.fit()

    def _search(self, trainable) -> tuple[dict[str, dict[str, Any]], int]:
        from ray import tune

        from er_tune.grouped import GroupedASHA
        from search_spaces import condition_groups, search_trial_count

        study = self.study
        total = search_trial_count(study)
        self.say(f"[search] {total} trials over {len(condition_groups(study))} condition groups")

        def make_tuner():
            searcher = self._searcher()
            scheduler = GroupedASHA.from_study(study)
            return tune.Tuner(trainable, tune_config=tune.TuneConfig(
                search_alg=searcher, scheduler=scheduler, num_samples=total,
                max_concurrent_trials=self.max_concurrent,
                trial_dirname_creator=trial_dirname, trial_name_creator=trial_dirname,
                reuse_actors=self._reuse_actors()),
                run_config=self._run_config(SEARCH, total))

        results = self._fit(SEARCH, trainable, make_tuner)
        from search_spaces import halving_of

        choices = best_by_group(results, study.search.metric, study.search.mode, halving_of(study))
        best = {group: choice.item for group, choice in choices.items()}
        self._save_best(best)
        return best, len(results.errors)

    def _save_best(self, best: dict[str, dict[str, Any]]) -> None:
        from er_tune.storage import is_uri, upload_optuna, write_text

        if is_uri(self.exp_dir):
            write_text(self.exp_dir, "best_configs.json", json.dumps(best, indent=2, sort_keys=True))
            upload_optuna(self.exp_dir, self._optuna_dir())
        else:
            write_json_atomic(os.path.join(self.exp_dir, "best_configs.json"), best)

    def _load_best(self) -> dict[str, dict[str, Any]]:
        from er_tune.storage import read_text

        return json.loads(read_text(self.exp_dir, "best_configs.json") or "{}")

    def _replicate(self, trainable, best: dict[str, dict[str, Any]]) -> int:
        from ray import tune

        from search_spaces import replicate_configs
        from er_tune.fixed_searcher import FixedConfigSearcher
        from er_tune.live_fifo import LiveFIFOScheduler

        configs = replicate_configs(self.study, best)
        self.say(f"[replicate] {len(configs)} trials: best configuration per group x "
                 f"{len(self.study.seeds)} seeds, full budget")

        def make_tuner():
            return tune.Tuner(trainable, tune_config=tune.TuneConfig(
                search_alg=FixedConfigSearcher(configs), scheduler=LiveFIFOScheduler(),
                num_samples=len(configs),
                max_concurrent_trials=self.max_concurrent,
                trial_dirname_creator=trial_dirname, trial_name_creator=trial_dirname,
                reuse_actors=self._reuse_actors()),
                run_config=self._run_config(REPLICATE, len(configs)))

        results = self._fit(REPLICATE, trainable, make_tuner)
        return len(results.errors)
