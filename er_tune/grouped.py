"""A grouped Optuna searcher and a grouped ASHA scheduler behind Ray Tune's interfaces.

One Tuner runs every condition group at once so a cluster stays full, yet trials only compete
inside their group: a collapsing condition must not starve its rivals of epochs, and TPE must not
learn one group's landscape from another's trials.

- :class:`GroupedOptunaSearcher` keeps one Optuna study (TPE, seeded per group) per condition
  group in one Optuna storage (default: a SQLite file in the experiment folder; any Optuna RDB URL
  or a journal file on shared disk with ``search: {storage: ...}``), hands out trials round-robin
  over the groups that still have budget, reports every epoch's metric as an intermediate value
  (optuna-dashboard's learning curves), and tells each study how its trials ended: COMPLETE with
  the final metric, PRUNED for a trial ASHA stopped, FAIL for an errored or non-finite one. User
  attributes link each Optuna trial to its Ray trial (``ray_trial_id``, ``ray_trial_name``,
  ``ray_trial_dir``) and record its ``status`` and ``collapse_grade`` (the grade the trial reports
  in its last result, :func:`er_core.outcome.reported_grade`).
- :class:`GroupedASHA` applies asynchronous successive halving (Li et al. 2020, one bracket, as
  Ray's ``ASHAScheduler`` does by default) with rungs recorded per group. A NaN/Inf/missing metric
  counts as the worst value; a collapsed trial is not stopped by the scheduler (it stops itself),
  its finite value simply counts in the rung.
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import Any

import numpy as np
import optuna
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from er_core.io import dump_state, load_state
from er_core.outcome import reported_grade, trial_dirname
from er_core.rules import SEARCH, metric_value, trial_status
from search_spaces.plan import condition_groups, searched_params, trial_config
from search_spaces.study import Study


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
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = os.path.abspath(os.path.expanduser(url[len(JOURNAL_PREFIX):]))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    return url


class GroupedOptunaSearcher(Searcher):
    """One Optuna TPE study per condition group; ``num_samples`` trials each.

    Args:
        study: the validated study.
        storage_dir: the folder of the default SQLite storage (``<experiment>/optuna``).
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

    @property
    def storage_url(self) -> str:
        """The storage as given to ``optuna-dashboard`` / ``optuna.load_study``."""
        return self.storage or f"sqlite:///{os.path.join(self.storage_dir, 'optuna.db')}"

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
                                                 n_startup_trials=max(2, min(10, self.study.search.num_samples // 2)))
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

    def next_group(self) -> str | None:
        """The group with the fewest suggestions that still has budget (ties: study order)."""
        open_groups = [g for g in self.groups if self.suggested[g] < self.study.search.num_samples]
        return min(open_groups, key=lambda g: self.suggested[g]) if open_groups else None

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        group_name = self.next_group()
        if group_name is None:
            return Searcher.FINISHED
        group = self.groups[group_name]
        distributions = {d.name: _distribution(d) for d in searched_params(self.study, group)}
        trial = self.optuna_study(group_name).ask(distributions)
        self.suggested[group_name] += 1
        self.live[trial_id] = (group_name, trial.number)
        config = trial_config(self.study, group, phase=SEARCH, seed=self.study.seeds[0], hparams=trial.params)
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

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.live:
            return
        group, number = self.live[trial_id]
        study = self.optuna_study(group)
        told = study.get_trials(deepcopy=False)
        if number < len(told) and told[number].state.is_finished():
            # restored from an experiment snapshot older than the Optuna storage (a killed
            # driver): the trial was already told; Optuna refuses a second tell
            self._forget(trial_id)
            return
        if result:
            # the result on which ASHA stopped the trial reaches only on_trial_complete
            self.on_trial_result(trial_id, result)
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
        self._forget(trial_id)

    def _forget(self, trial_id: str) -> None:
        self.live.pop(trial_id, None)
        self.names.pop(trial_id, None)
        self._trials.pop(trial_id, None)
        self._reported.pop(trial_id, None)

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
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        dump_state(checkpoint_path, {"suggested": self.suggested, "live": self.live, "names": self.names})

    def restore(self, checkpoint_path: str) -> None:
        state = load_state(checkpoint_path)
        self.suggested.update(state["suggested"])
        self.live = dict(state["live"])
        self.names = dict(state.get("names", {}))


class GroupedASHA(FIFOScheduler):
    """Asynchronous successive halving with rungs per condition group (``trial.config['group']``)."""

    def __init__(self, *, metric: str, mode: str, max_t: int, grace_period: int, reduction_factor: int,
                 time_attr: str = "training_iteration") -> None:
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if not 1 <= grace_period <= max_t or reduction_factor < 2:
            raise ValueError("need 1 <= grace_period <= max_t and reduction_factor >= 2")
        self._metric, self._mode, self.time_attr = metric, mode, time_attr
        self.max_t, self.reduction_factor = max_t, reduction_factor
        self.sign = 1.0 if mode == "max" else -1.0
        count = int(math.log(max_t / grace_period, reduction_factor)) + 1 if max_t > grace_period else 0
        self.milestones = sorted({grace_period * reduction_factor ** k for k in range(count)
                                  if grace_period * reduction_factor ** k < max_t}, reverse=True)
        self.rungs: dict[str, dict[int, dict[str, float]]] = {}
        self.num_stopped = 0

    @classmethod
    def from_study(cls, study: Study) -> "GroupedASHA":
        return cls(metric=study.search.metric, mode=study.search.mode, max_t=study.schedule.max_epochs,
                   grace_period=study.schedule.grace_period, reduction_factor=study.schedule.reduction_factor)

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def score(self, result: dict) -> float:
        """Signed metric, higher is better; NaN/Inf/missing is the worst possible value."""
        value = metric_value(result, self._metric)
        return -math.inf if value is None else self.sign * value

    def _record(self, trial, result: dict) -> str:
        if self.time_attr not in result:
            return TrialScheduler.CONTINUE
        group = (trial.config or {}).get("group", "")
        rungs = self.rungs.setdefault(group, {m: {} for m in self.milestones})
        now, score = result[self.time_attr], self.score(result)
        for milestone in self.milestones:
            recorded = rungs[milestone]
            if now < milestone or trial.trial_id in recorded:
                continue
            finite = [v for v in recorded.values() if math.isfinite(v)]
            action = TrialScheduler.CONTINUE
            if finite:
                # -inf (NaN/Inf/missing) ranks below every finite value without breaking percentiles
                values = [v if math.isfinite(v) else min(finite) - 1.0 for v in recorded.values()]
                cutoff = float(np.percentile(values, (1 - 1 / self.reduction_factor) * 100))
                if score < cutoff:
                    action = TrialScheduler.STOP
            recorded[trial.trial_id] = score
            return action
        return TrialScheduler.CONTINUE

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = self._record(trial, result)
        if result.get("stop_reason"):
            return TrialScheduler.CONTINUE  # the trial ends by itself (completed, collapsed, diverged)
        if action == TrialScheduler.STOP:
            self.num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if result:
            self._record(trial, result)

    def debug_string(self) -> str:
        return (f"GroupedASHA: {len(self.rungs)} groups, milestones {self.milestones}, "
                f"stopped {self.num_stopped}")

    def save(self, checkpoint_path: str) -> None:
        dump_state(checkpoint_path, {"rungs": self.rungs, "num_stopped": self.num_stopped})

    def restore(self, checkpoint_path: str) -> None:
        state = load_state(checkpoint_path)
        self.rungs, self.num_stopped = state["rungs"], state["num_stopped"]
