"""Data-parallel trials: one Tune trial = one Ray Train ``TorchTrainer`` of ``world_size`` workers.

Ray's Train-in-Tune pattern (Train V2, Ray 2.60): the Tune trial is a light driver function
(:func:`data_parallel_trial`) that builds a ``TorchTrainer`` and calls ``fit()``; the workers run
:func:`trainers.trial.run_trial` unchanged, DDP over NCCL on GPUs and Gloo on CPUs (Ray Train
creates the process group; :mod:`trainers.distributed` gives the global-batch semantics). Every
worker calls ``ray.train.report`` each epoch (a collective in Train V2); worker 0 attaches the
checkpoint. :class:`ForwardToTune` (a Train callback) hands worker 0's metrics *and* that checkpoint
to the Tune function, which reports both with ``ray.tune.report``, so grouped ASHA, the grouped
Optuna searcher, the progress line and the report see one result per epoch as from a
single-process trial, and Tune holds a checkpoint of the trial as it does of a single-process one.
Worker 0 alone writes the trial's files (TensorBoard, ``collapse_events.jsonl``) into the Tune
trial's directory; the others write into a private temporary directory.

Stopping: a collapse is decided identically on every worker (the diagnostics are measured on
worker 0 and broadcast), so all leave the epoch loop together; when ASHA stops the trial, Tune ends
the driver's actor and the Train controller and workers it owns end with it.

Faults, two levels:

- a worker killed mid-epoch: the Train run keeps its checkpoints under ``<trial dir>/data_parallel``
  and restarts its workers from the latest one (``ray.train.FailureConfig``), so it costs the epoch
  in progress; an epoch is reported once it is complete and checkpointed, so none is reported twice.
- the Tune trial restarted (a Tune-level retry once the Train run has used up its restarts, or
  ``er-tune tune`` resuming after its driver died): Tune's own checkpoint of the trial is the truth,
  as for a single-process trial. The function discards the previous Train run folder (whose
  snapshot Train V2 would otherwise restore, from an epoch Tune may not have recorded) and starts a
  fresh Train run whose workers resume from Tune's checkpoint. Without this a resumed trial was
  started from scratch by Tune (its ``result.json`` emptied) while Train resumed from its own
  snapshot: the results before the kill were lost, and a trial whose Train run had finished ended
  with none.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any, Mapping

import ray.train
from ray import tune

from er_core.config import TrialConfig
from er_core.data import DatasetBundle
from er_core.rules import PLACEMENT_GROUP_KEY
from er_tune.tune_reporter import checkpoint_directory, report_epoch
from trainers.reporters import LocalReporter
from trainers.trial import run_trial
from trainers.trial_data import dataset_key, load_trial_data

TRAIN_RUN_NAME = "data_parallel"  # the Train run's folder inside the Tune trial's directory
CHECKPOINTS_TO_KEEP = 2


class TrainWorkerReporter:
    """The reporter of one Train worker (see :mod:`trainers.reporters` for the contract).

    All workers report every epoch (Train V2's ``report`` is a collective); only worker 0 attaches
    its checkpoint, and only worker 0's ``trial_dir`` is the trial's directory.
    """

    writes_hparams = False  # the Tune driver's observer writes the HParams session

    def __init__(self, trial_dir: str, rank: int, resume: Any = None) -> None:
        self.rank = rank
        self.resume = resume  # Tune's checkpoint of the trial when the Tune trial was restarted
        self.trial_dir = trial_dir if rank == 0 else tempfile.mkdtemp(prefix=f"er_tune_worker{rank}_")
        os.makedirs(self.trial_dir, exist_ok=True)

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: str | None = None) -> None:
        if self.rank == 0:
            metrics = {**metrics, PLACEMENT_GROUP_KEY: current_placement_group()}
        report_epoch(ray.train, metrics, checkpoint_dir, attach=self.rank == 0)

    def latest_checkpoint(self):
        """This Train run's latest checkpoint (a restarted worker group), else Tune's (a restarted
        Tune trial: a fresh Train run), else None."""
        return checkpoint_directory(ray.train.get_checkpoint() or self.resume)


def current_placement_group() -> str | None:
    """The id (hex) of the placement group this Train worker runs in (None outside one)."""
    from ray.util import get_current_placement_group

    group = get_current_placement_group()
    return None if group is None else group.id.hex()


class LocalWorkerReporter:
    """``er-tune train --workers N``: worker 0 writes ``--out`` as a single-process trial's
    :class:`~trainers.reporters.LocalReporter` does; every worker restores from its checkpoints."""

    def __init__(self, out: str, params: Mapping[str, Any], rank: int) -> None:
        self.rank = rank
        self._local = LocalReporter(out, params)  # params.json written atomically, the same by all
        self.writes_hparams = rank == 0
        self.trial_dir = self._local.trial_dir if rank == 0 else tempfile.mkdtemp(prefix=f"er_tune_worker{rank}_")

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: str | None = None) -> None:
        if self.rank == 0:
            self._local.report(metrics, checkpoint_dir)
        elif checkpoint_dir is not None:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)

    def truncate_after(self, epoch: int) -> None:
        if self.rank == 0:
            self._local.truncate_after(epoch)

    def latest_checkpoint(self):
        return self._local.latest_checkpoint()


def _reporter(loop_config: Mapping[str, Any], rank: int):
    if loop_config.get("local_params") is not None:
        return LocalWorkerReporter(loop_config["trial_dir"], loop_config["local_params"], rank)
    return TrainWorkerReporter(loop_config["trial_dir"], rank, loop_config.get("resume"))


def _print_line(line: str) -> None:
    """Worker 0's epoch line, written once to its stdout (which Ray forwards to the driver).

    Train V2 replaces ``print`` in its workers by a call to the root logger, whose console handler
    writes the line and which also tees it to ``sys.stdout`` when Ray has wrapped that stream: each
    epoch line of ``er-tune train --workers N`` showed twice."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def train_worker(loop_config: Mapping[str, Any]) -> None:
    """The function every Train worker runs: one :func:`run_trial` over the process group."""
    import ray
    import ray.train.torch
    import torch

    config = TrialConfig.from_dict(loop_config["config"])
    context = ray.train.get_context()
    if torch.cuda.is_available() and config.device != "cpu":
        torch.cuda.set_device(ray.train.torch.get_device())  # "cuda" is then this worker's GPU
    data_ref = loop_config.get("data")
    data = ray.get(data_ref) if data_ref is not None else load_trial_data(config)
    rank = context.get_world_rank()
    log = _print_line if rank == 0 and loop_config.get("log") else None
    run_trial(config, data, _reporter(loop_config, rank), log=log)


def torch_trainer(config: TrialConfig, *, cpu: float, gpu: float, trial_dir: str, storage_path: str,
                  data: Any = None, max_failures: int = 2, callbacks: list | None = None,
                  local_params: Mapping[str, Any] | None = None, log: bool = False, resume: Any = None,
                  train_fn=train_worker):
    """The ``TorchTrainer`` of one data-parallel trial (``config.world_size`` workers).

    Args:
        config: the trial's configuration (``world_size`` >= 1).
        cpu, gpu: resources of each worker (a GPU worker uses NCCL, a CPU worker Gloo).
        trial_dir: where worker 0 writes the trial's files.
        storage_path: where the Train run keeps its checkpoints (``<storage_path>/data_parallel``).
        data: an object reference to the trial's :class:`DatasetBundle` (None: each worker loads it).
        max_failures: restarts of the worker group, each from the latest checkpoint.
        callbacks: Train callbacks (:class:`ForwardToTune` inside a Tune trial).
        local_params: outside Tune (``er-tune train``): the trial's ``params.json``; worker 0 then
            writes ``trial_dir`` as a local trial (:class:`LocalWorkerReporter`).
        log: worker 0 prints one line per epoch.
        resume: a checkpoint the workers start from when this Train run has none of its own (Tune's
            checkpoint of a restarted Tune trial).
        train_fn: the workers' function (:func:`train_worker`; tests wrap it to inject faults).
    """
    from ray.train.torch import TorchConfig, TorchTrainer

    use_gpu = gpu > 0
    resources = {"CPU": cpu, **({"GPU": gpu} if use_gpu else {})}
    return TorchTrainer(
        train_fn,
        train_loop_config={"config": config.to_dict(), "trial_dir": trial_dir, "data": data,
                           "local_params": dict(local_params) if local_params is not None else None, "log": log,
                           "resume": resume},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=config.world_size, use_gpu=use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=TRAIN_RUN_NAME, storage_path=storage_path, callbacks=callbacks or [],
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=CHECKPOINTS_TO_KEEP)),
    )


class ForwardToTune(ray.train.UserCallback):
    """Train callback: hands each report's metrics (worker 0's) and checkpoint to the Tune function.

    Ray's ``TuneReportCallback`` forwards the metrics only (the checkpoint as a ``checkpoint_path``
    metric), which leaves Tune without a checkpoint of the trial: a restarted Tune trial then starts
    from scratch. The queue holds one item, as Ray's callback's does: a report waits there until Tune
    has taken the one before, so the Train run is never more than one report ahead of Tune.
    """

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def after_report(self, run_context: Any, metrics: list, checkpoint: Any) -> None:
        self.queue.put((dict(metrics[0]), checkpoint))


class ReleaseTrainPlacementGroups(tune.Callback):
    """Tune driver callback: removes the placement groups of a data-parallel trial's Train runs when
    the trial ends (completed, stopped by ASHA or a stopper, errored) or is about to be retried.

    Ray Train V2 reserves each worker group's resources in a placement group that its controller
    creates. A controller that ends normally removes it; one that is killed (Tune ends a stopped
    trial's actor, which owns the controller) leaves the removal to Train's ``PlacementGroupCleaner``,
    which asks Ray's State API whether the controller is alive: without a dashboard (er-tune's
    embedded Ray) or with two Ray instances on one machine, it cannot ask, and the group keeps its
    resources until the driver ends (measured: a 2-worker trial stopped after epoch 1 left 0.98 of 2
    CPUs reserved for the 40 s they were watched; ``results/data_parallel_by_hand/``). A study
    whose ASHA stops trials then runs out of resources and waits forever.
    Worker 0 reports the group's id with every result (:data:`PLACEMENT_GROUP_KEY`); removing a
    group already removed is harmless.
    """

    def __init__(self) -> None:
        self.groups: dict[str, set[str]] = {}  # trial id -> ids of its Train runs' groups

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        group = result.get(PLACEMENT_GROUP_KEY)
        if group:
            self.groups.setdefault(trial.trial_id, set()).add(group)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.release(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.release(trial)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.release(trial)  # the groups so far are the failed attempt's

    def release(self, trial) -> None:
        for group in self.groups.pop(trial.trial_id, ()):
            remove_placement_group(group)


def remove_placement_group(group_hex: str) -> bool:
    """Remove the placement group of this id (hex); False if Ray refused (e.g. already gone)."""
    import ray
    from ray.util.placement_group import PlacementGroup
    from ray.util.placement_group import remove_placement_group as remove

    try:
        remove(PlacementGroup(ray.PlacementGroupID.from_hex(group_hex)))
    except Exception:  # noqa: BLE001 - a group already removed, or a cluster going down
        return False
    return True


def tune_checkpoint(checkpoint: Any) -> Any:
    """A Train checkpoint as the ``ray.tune.Checkpoint`` that ``ray.tune.report`` persists (copies)."""
    return None if checkpoint is None else tune.Checkpoint(checkpoint.path, filesystem=checkpoint.filesystem)


def fit_reporting_to_tune(trainer_for: Any) -> None:
    """Run ``trainer_for(callback).fit()`` in a thread and report what it forwards to Tune, here.

    ``ray.tune.report`` is called from the Tune function's thread with the epoch's metrics and a
    copy of its checkpoint; an exception of ``fit()`` is raised here once its reports are taken.
    """
    import threading

    from ray.util.queue import Queue

    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    trainer = trainer_for(ForwardToTune(queue))
    outcome: dict[str, BaseException] = {}

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as error:  # noqa: BLE001 - raised again in the Tune function's thread
            outcome["error"] = error
        finally:
            queue.put(None)

    thread = threading.Thread(target=fit, name="er-tune-train-fit", daemon=True)
    thread.start()
    while (item := queue.get()) is not None:
        metrics, checkpoint = item
        tune.report(metrics, checkpoint=tune_checkpoint(checkpoint))
    thread.join()
    if "error" in outcome:
        raise outcome["error"]


def data_parallel_trial(config: Mapping[str, Any], datasets: Mapping[str, DatasetBundle] | None = None,
                        cpu: float = 1.0, gpu: float = 0.0, max_failures: int = 2, train_fn=train_worker) -> None:
    """Ray Tune function trainable of a data-parallel trial: runs its ``TorchTrainer`` to the end.

    ``config`` is the flat trial config (``params.json``, ``world_size`` included); ``cpu``/``gpu``
    are per worker; ``train_fn`` is the workers' function (tests wrap it to inject faults). Each
    start (first, Tune retry, resumed experiment) is a fresh Train run that resumes from Tune's
    checkpoint of the trial, if any (see the module docstring).
    """
    import ray

    from er_tune.tune_reporter import artifact_dir, shared_trial_dir

    trial_config = TrialConfig.from_dict(config)
    key = dataset_key(trial_config)
    data = ray.put(datasets[key]) if datasets and key in datasets else None
    trial_dir = shared_trial_dir() or artifact_dir() or tune.get_context().get_trial_dir()
    os.makedirs(trial_dir, exist_ok=True)
    # an earlier start's Train run: Tune's checkpoint, not that run's snapshot, says where to resume
    shutil.rmtree(os.path.join(trial_dir, TRAIN_RUN_NAME), ignore_errors=True)
    resume = tune.get_checkpoint()
    fit_reporting_to_tune(lambda callback: torch_trainer(
        trial_config, cpu=cpu, gpu=gpu, trial_dir=trial_dir, storage_path=trial_dir, data=data,
        max_failures=max_failures, callbacks=[callback], resume=resume, train_fn=train_fn))


def train_locally(config: TrialConfig, data: DatasetBundle, out: str, params: Mapping[str, Any], *,
                  log: bool = True) -> dict[str, Any]:
    """``er-tune train --workers N``: one data-parallel trial on an embedded Ray, files in ``out``.

    Each worker gets one GPU when the trial runs on CUDA, else an equal share of the local CPUs
    (at most one each). Returns the last result line (``{}`` if no epoch finished).
    """
    import json

    import ray
    import torch

    use_gpu = config.device != "cpu" and torch.cuda.is_available()
    cpus = os.cpu_count() or 1
    cpu = min(1.0, cpus / config.world_size) * 0.99  # a whole trial fits the machine
    out = os.path.abspath(out)
    embedded = not ray.is_initialized()
    if embedded:
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=log)
    try:
        trainer = torch_trainer(config, cpu=cpu, gpu=1.0 if use_gpu else 0.0, trial_dir=out,
                                storage_path=out, data=ray.put(data), local_params=params, log=log)
        trainer.fit()
    finally:
        if embedded:
            ray.shutdown()
    path = os.path.join(out, "result.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle if line.strip()]
    return lines[-1] if lines else {}
