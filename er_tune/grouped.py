"""A grouped Optuna searcher and a grouped ASHA scheduler behind Ray Tune's interfaces.

One Tuner runs every condition group at once so a cluster stays full, yet trials only compete
inside their group: a collapsing condition must not starve its rivals of epochs, and TPE must not
learn one group's landscape from another's trials.

- :class:`GroupedOptunaSearcher` keeps one Optuna study (TPE, seeded per group) per condition
  group in one Optuna storage (default: Optuna's journal file in the experiment folder, whose reads
  are served from memory: TPE reads a group's whole history at every ask; appended without an fsync
  per append, :class:`UnsyncedJournalFile`; through SQLite the driver spent 83.0 ms of CPU per trial
  on Optuna, through the journal 6.8 ms, in memory 2.1 ms,
  ``benchmarks/optuna_storage_cost.py``; any Optuna RDB URL or a
  journal file on a shared disk with ``search: {storage: ...}``), hands out trials round-robin
  over the groups that still have budget, reports every epoch's metric as an intermediate value
  (optuna-dashboard's learning curves), and tells each study how its trials ended: COMPLETE with
  the final metric, PRUNED for a trial ASHA stopped, FAIL for an errored or non-finite one. User
  attributes link each Optuna trial to its Ray trial (``ray_trial_id``, ``ray_trial_name``,
  ``ray_trial_dir``) and record its ``status`` and ``collapse_grade`` (the grade the trial reports
  in its last result, :func:`er_core.outcome.reported_grade`).
- :class:`~er_tune.grouped_asha.GroupedASHA` (re-exported here) applies successive halving with
  rungs per group, asynchronous or ordered (:mod:`er_core.halving`).

With ``schedule: {asha: {mode: ordered}}`` the searcher's choices do not depend on timing either:
TPE's first ``n_startup_trials`` trials of a group are drawn from its seeded random sampler in ask
order, and trial ``k`` after those is asked only once trials ``0..k-1`` of its group have been told,
so each ask sees the same history; a trial is told when ordered halving has decided its fate, with
its intermediate values up to the rung that stopped it (PRUNED) or all of them (COMPLETE), never the
epochs it trained past that rung while the decision waited.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from ray.tune.search import Searcher

from er_core.halving import UNDECIDED, GroupCurves, score_curve
from er_core.io import dump_state, load_state
from er_core.outcome import reported_grade, trial_dirname
from er_core.rules import GRADE_KEY, SEARCH, metric_value, trial_status
from er_tune.grouped_asha import GroupedASHA
from search_spaces.plan import condition_groups, halving_of, searched_params, trial_config
from search_spaces.study import Study


__all__ = ["GroupedASHA", "GroupedOptunaSearcher", "group_seed", "optuna_storage"]
# What a deferred tell keeps of a trial's last result (ordered mode)
_KEPT_KEYS = ("epoch", "training_iteration", "stop_reason", "collapsed", GRADE_KEY)


def _distribution(dist) -> optuna.distributions.BaseDistribution:
    if dist.kind == "loguniform":
        return optuna.distributions.FloatDistribution(float(dist.values[0]), float(dist.values[1]), log=True)
    if dist.kind == "uniform":
        return optuna.distributions.FloatDistribution(float(dist.values[0]), float(dist.values[1]))
    if dist.kind == "int":
        return optuna.distributions.IntDistribution(int(dist.values[0]), int(dist.values[1]))
    return optuna.distributions.CategoricalDistribution(list(dist.values))


def group_seed(base_seed: int, group: str) -> int:
    """A stable per-group sampler seed (independent of Python's hash randomisation)."""
    digest = hashlib.sha256(f"{base_seed}:{group}".encode()).hexdigest()
    return int(digest[:8], 16)


JOURNAL_PREFIX = "journal:"


def optuna_storage(url: str):
    """An Optuna storage for ``url``: an RDB URL (``sqlite:///...``, ``postgresql://...``) as is, or
    ``journal:PATH``: Optuna's JournalStorage on a file (a shared disk every node mounts)."""
    if url.startswith(JOURNAL_PREFIX):
        path = os.path.abspath(os.path.expanduser(url[len(JOURNAL_PREFIX):]))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return journal_storage(path)
    if url.startswith("sqlite:"):
        return sqlite_storage(url)
    return url


def journal_storage(path: str) -> optuna.storages.JournalStorage:
    """Optuna's JournalStorage on the file ``path``, appended without an fsync per append
    (:class:`UnsyncedJournalFile`)."""
    return optuna.storages.JournalStorage(UnsyncedJournalFile(path))


class UnsyncedJournalFile(JournalFileBackend):
    """Optuna's journal file, each append written under Optuna's lock file but not fsynced.

    Optuna's ``JournalFileBackend`` fsyncs the file after every append, and the grouped searcher
    appends about 11 times per trial (the trial, its parameter, five user attributes, each
    intermediate value, its end), each in the driver's loop: a wait for the disk per append
    (``benchmarks/optuna_storage_cost.py``: 15.5 ms of wall time per trial with the fsync, 6.8 ms
    without, 2.1 ms for Ray Tune's in-memory ``OptunaSearch``).
    Without the fsync, as for :func:`sqlite_storage`: a killed or crashed driver loses nothing (an
    appended line is in the operating system's cache, where every process reads it, and the file
    is closed after each append, which also hands it to an NFS server); only an operating-system
    crash or power loss can lose the last appends, as it can lose Ray's own experiment snapshot,
    which is not synced either. Lines are written as Optuna writes them (one JSON object per line)
    and read by Optuna's own reader, so ``optuna-dashboard`` and Optuna's ``JournalFileBackend``
    open the file as before, and drivers sharing it still never interleave (the lock file).
    """

    def __init__(self, path: str) -> None:
        self._append_lock = JournalFileSymlinkLock(path)
        self._append_path = path
        super().__init__(path, lock_obj=self._append_lock)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        self._append_lock.acquire()
        try:
            with open(self._append_path, "ab") as handle:
                handle.write(text.encode("utf-8"))
        finally:
            self._append_lock.release()


def sqlite_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on a SQLite file, without an fsync per write (``synchronous=OFF``).

    Optuna commits every ask, intermediate value, user attribute and tell: about 25 commits per
    trial. With SQLite's default each commit waits for the disk (fsync), which on a busy machine
    made the driver wait seconds per trial (``benchmarks/driver_scale.py --storages``). Without
    the fsync a crashed driver still leaves a consistent file (SQLite's journal is written in
    order); only an operating-system crash or power loss in the middle of a write can lose the
    last writes, as it can lose Ray's own experiment snapshot, which is not synced either.
    """
    import sqlalchemy

    storage = optuna.storages.RDBStorage(url)

    def no_fsync(connection, _record) -> None:
        connection.execute("PRAGMA synchronous=OFF")

    sqlalchemy.event.listen(storage.engine, "connect", no_fsync)
    storage.engine.dispose()  # connections opened while creating the schema are replaced
    return storage


class GroupedOptunaSearcher(Searcher):
    """One Optuna TPE study per condition group; ``num_samples`` trials each.

    Args:
        study: the validated study.
        storage_dir: the folder of the default journal file (``<experiment>/optuna``).
        storage: an Optuna storage URL or ``journal:PATH`` instead of the default.
        trials_dir: the phase folder holding the Ray trial directories (a path or a pyarrow URI),
            recorded in each Optuna trial's ``ray_trial_dir`` attribute (never read).
    """

    def __init__(self, study: Study, storage_dir: str, *, storage: str | None = None,
                 trials_dir: str | None = None) -> None:
        super().__init__(metric=study.search.metric, mode=study.search.mode)
        self.study = study
        self.storage_dir = os.path.abspath(storage_dir)
        self.storage = storage or None
        self.trials_dir = trials_dir
        self.groups = {group.name: group for group in condition_groups(study)}
        self.suggested = {name: 0 for name in self.groups}
        self.live: dict[str, tuple[str, int]] = {}  # Ray trial id -> (group, Optuna trial number)
        self.names: dict[str, str] = {}  # Ray trial id -> trial directory name
        self._studies: dict[str, optuna.Study] = {}
        self._backend: optuna.storages.BaseStorage | None = None
        self._trials: dict[str, optuna.Trial] = {}
        self._reported: dict[str, set[int]] = {}
        self.halving = halving_of(study)  # ordered mode: asks and tells independent of timing
        self.curves: dict[str, GroupCurves] = {}  # ordered mode: signed scores by creation order
        self.values: dict[str, dict[int, float]] = {}  # ordered mode: Ray trial id -> {epoch: metric}
        self.told: dict[str, set[int]] = {name: set() for name in self.groups}
        self.deferred: dict[str, tuple[dict, bool]] = {}  # Ray trial id -> (kept result, error)

    @property
    def n_startup_trials(self) -> int:
        """TPE's random start-up trials per group."""
        return max(2, min(10, self.study.search.num_samples // 2))

    @property
    def storage_url(self) -> str:
        """The storage as :func:`optuna_storage` opens it: the study's ``search.storage``, else the
        default journal file ``<experiment>/optuna/journal.log`` (``optuna-dashboard PATH``), or
        for an experiment begun before that default, its SQLite file ``optuna/optuna.db``."""
        from er_tune.storage import OPTUNA_DB, OPTUNA_JOURNAL

        if self.storage:
            return self.storage
        legacy = os.path.join(self.storage_dir, OPTUNA_DB)
        if os.path.exists(legacy):
            return f"sqlite:///{legacy}"
        return f"{JOURNAL_PREFIX}{os.path.join(self.storage_dir, OPTUNA_JOURNAL)}"

    def storage_backend(self) -> optuna.storages.BaseStorage:
        """The one storage object every group's study shares (opened on first use)."""
        if self._backend is None:
            if self.storage is None:
                os.makedirs(self.storage_dir, exist_ok=True)
            self._backend = optuna.storages.get_storage(optuna_storage(self.storage_url))
        return self._backend

    def optuna_study(self, group: str) -> optuna.Study:
        if group not in self._studies:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            sampler = optuna.samplers.TPESampler(seed=group_seed(self.study.search.seed, group),
                                                 n_startup_trials=self.n_startup_trials)
            self._studies[group] = optuna.create_study(
                study_name=group, storage=self.storage_backend(), sampler=sampler,
                load_if_exists=True, direction="maximize" if self.study.search.mode == "max" else "minimize")
        return self._studies[group]

    def _optuna_trial(self, trial_id: str) -> optuna.Trial:
        if trial_id not in self._trials:
            group, number = self.live[trial_id]
            study = self.optuna_study(group)
            storage = self.storage_backend()
            storage_id = storage.get_trial_id_from_study_id_trial_number(
                storage.get_study_id_from_name(group), number)
            self._trials[trial_id] = optuna.Trial(study, storage_id)
        return self._trials[trial_id]

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def ready(self, group: str) -> bool:
        """Whether the group's next trial may be asked now: always in async mode; in ordered mode
        during TPE's start-up, else once every earlier trial of the group has been told."""
        number = self.suggested[group]
        if self.halving is None or number < self.n_startup_trials:
            return True
        return all(earlier in self.told.get(group, ()) for earlier in range(number))

    def next_group(self) -> str | None:
        """The ready group with the fewest suggestions that still has budget (ties: study order)."""
        open_groups = [g for g in self.groups if self.suggested[g] < self.study.search.num_samples and self.ready(g)]
        return min(open_groups, key=lambda g: self.suggested[g]) if open_groups else None

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        group_name = self.next_group()
        if group_name is None:
            if all(self.suggested[g] >= self.study.search.num_samples for g in self.groups):
                return Searcher.FINISHED
            return None  # ordered mode: the next trial waits for its group's earlier ones to be told
        group = self.groups[group_name]
        distributions = {d.name: _distribution(d) for d in searched_params(self.study, group)}
        trial = self.optuna_study(group_name).ask(distributions)
        self.suggested[group_name] += 1
        self.live[trial_id] = (group_name, trial.number)
        if self.halving is not None:
            self.curves.setdefault(group_name, GroupCurves()).add(trial.number)
        config = trial_config(self.study, group, phase=SEARCH, seed=self.study.search.trial_seed,
                              hparams=trial.params)
        config["optuna_trial"] = trial.number
        name = trial_dirname(config, trial_id)
        self.names[trial_id] = name
        self._trials[trial_id] = trial
        trial.set_user_attr("ray_trial_id", trial_id)
        trial.set_user_attr("ray_trial_name", name)
        if self.trials_dir:
            trial.set_user_attr("ray_trial_dir", f"{self.trials_dir.rstrip('/')}/{name}")
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Each epoch's metric becomes an Optuna intermediate value (ASHA, not Optuna, prunes)."""
        if trial_id not in self.live:
            return
        if self.halving is not None:
            self._remember(trial_id, result)
            self._flush(self.live[trial_id][0])
            return
        self._report(trial_id, result)

    def _report(self, trial_id: str, result: dict) -> None:
        value = metric_value(result, self.study.search.metric)
        step = result.get("epoch", result.get("training_iteration"))
        reported = self._reported.setdefault(trial_id, set())
        if value is None or step is None or int(step) in reported:
            return
        reported.add(int(step))
        try:
            self._optuna_trial(trial_id).report(value, int(step))
        except (RuntimeError, ValueError, KeyError):
            return  # already finished in the storage (a restore from an older snapshot)

    def _remember(self, trial_id: str, result: dict | None) -> None:
        """Ordered mode: the trial's score and metric at this result's epoch."""
        group, number = self.live[trial_id]
        sign = 1.0 if self.study.search.mode == "max" else -1.0
        for epoch, score in score_curve([result or {}], self.study.search.metric, sign).items():
            self.curves.setdefault(group, GroupCurves()).report(number, epoch, score)
            self.values.setdefault(trial_id, {})[epoch] = score * sign

    def _flush(self, group: str) -> None:
        """Ordered mode: tell every ended trial of ``group`` whose fate ordered halving has decided."""
        waiting = [trial_id for trial_id in self.deferred if self.live.get(trial_id, ("",))[0] == group]
        if not waiting:
            return
        fates = self.curves[group].fates(self.halving)
        for trial_id in sorted(waiting, key=lambda t: self.live[t][1]):
            fate = fates.get(self.live[trial_id][1])
            if fate == UNDECIDED:
                continue
            result, error = self.deferred.pop(trial_id)
            values = self.values.get(trial_id, {})
            stopped = fate is not None and any(epoch > fate for epoch in values)
            for epoch in sorted(values):
                if fate is None or epoch <= fate:
                    self._report(trial_id, {"epoch": epoch, self.study.search.metric: values[epoch]})
            if stopped:
                result = {"epoch": fate, self.study.search.metric: values.get(fate)}
            self._tell(trial_id, result, error)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.live:
            return
        if self.halving is not None:
            group, number = self.live[trial_id]
            self._remember(trial_id, result)
            self.curves.setdefault(group, GroupCurves()).end(number)
            self.deferred[trial_id] = ({key: (result or {}).get(key) for key in
                                        (*_KEPT_KEYS, self.study.search.metric) if key in (result or {})}, error)
            self._flush(group)
            return
        self._tell(trial_id, result, error)

    def _tell(self, trial_id: str, result: dict | None, error: bool) -> None:
        group, number = self.live[trial_id]
        study = self.optuna_study(group)
        try:
            self._tell_optuna(trial_id, study, number, result, error)
        except optuna.exceptions.UpdateFinishedTrialError:
            # restored from an experiment snapshot older than the Optuna storage (a killed
            # driver): the trial was already told; Optuna refuses a second tell
            pass
        self.told.setdefault(group, set()).add(number)
        self._forget(trial_id)

    def _tell_optuna(self, trial_id: str, study: optuna.Study, number: int, result: dict | None,
                     error: bool) -> None:
        # one trial looked up, not the group's whole history: this runs once per trial
        if result and self.halving is None:
            # the result on which ASHA stopped the trial reaches only on_trial_complete
            self._report(trial_id, result)
        status = trial_status(result, errored=error, ended=True)
        trial = self._optuna_trial(trial_id)
        trial.set_user_attr("status", status)
        grade = reported_grade(result)
        if grade is not None:
            trial.set_user_attr("collapse_grade", grade)
        if result and "epoch" in result:
            trial.set_user_attr("epochs", int(result["epoch"]))
        value = None if error else metric_value(result, self.study.search.metric)
        if status == "early_stopped":
            study.tell(number, state=optuna.trial.TrialState.PRUNED)
        elif value is None:
            study.tell(number, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(number, value)

    def _forget(self, trial_id: str) -> None:
        self.live.pop(trial_id, None)
        self.names.pop(trial_id, None)
        self._trials.pop(trial_id, None)
        self._reported.pop(trial_id, None)
        self.values.pop(trial_id, None)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_studies"], state["_trials"], state["_backend"] = {}, {}, None  # reopened lazily
        return state

    def __setstate__(self, state: dict) -> None:
        # a searcher pickled by an experiment that predates a field gets its default
        state.setdefault("storage", None)
        state.setdefault("_backend", None)
        state.setdefault("trials_dir", None)
        state.setdefault("names", {})
        state.setdefault("_trials", {})
        state.setdefault("_reported", {})
        state.setdefault("halving", None)
        state.setdefault("curves", {})
        state.setdefault("values", {})
        state.setdefault("told", {})
        state.setdefault("deferred", {})
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        dump_state(checkpoint_path, {"suggested": self.suggested, "live": self.live, "names": self.names,
                                     "curves": {g: (c.curves, sorted(c.ended)) for g, c in self.curves.items()},
                                     "values": self.values, "told": {g: sorted(n) for g, n in self.told.items()},
                                     "deferred": self.deferred})

    def restore(self, checkpoint_path: str) -> None:
        state = load_state(checkpoint_path)
        self.suggested.update(state["suggested"])
        self.live = dict(state["live"])
        self.names = dict(state.get("names", {}))
        for group, (curves, ended) in state.get("curves", {}).items():
            self.curves[group] = GroupCurves()
            self.curves[group].curves, self.curves[group].ended = curves, set(ended)
        self.values = dict(state.get("values", {}))
        self.told.update({group: set(numbers) for group, numbers in state.get("told", {}).items()})
        self.deferred = dict(state.get("deferred", {}))
