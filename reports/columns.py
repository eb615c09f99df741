"""The declared columns of every report table: name -> (unit, one-line description).

``reports.parquet_io`` writes each column's entry into its Parquet field metadata (keys ``unit`` and
``description``), so a reader finds the units in the file (``pq.read_schema(path).field(c).metadata``).
Units: ``""`` for labels and text, ``"1"`` for dimensionless numbers, otherwise the quantity
(``epochs``, ``s``, ``nats``, ``trials``, ...). Accuracies are fractions in [0, 1].

Besides the fixed names, three families are described by rule: a grid axis (a ``TrialConfig`` field
named as the column), ``hp_<field>`` (trials: the searched value) and ``best_hp_<field>`` (search),
with the field's unit from ``CONFIG_UNITS``. The stability table's verdict, effect, p-value,
per-variant and shared columns are described by the verdict registry (:func:`reports.verdicts.describe`),
nowhere else. ``tests/test_report_schema.py`` fails when a column of a report (or a
``TrialConfig`` field) has no entry here: a new column must be described.
"""
from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa

from . import robustness, verdicts  # a verdict family describes its own stability columns


class Column(NamedTuple):
    unit: str
    description: str


UNDESCRIBED = "(undescribed column)"

# Units of the TrialConfig fields, used when a field is a grid axis or a searched hyperparameter.
CONFIG_UNITS = {
    "method": "", "variant": "", "dataset": "", "data_root": "", "image_size": "px",
    "train_size": "images", "eval_size": "images", "data_seed": "1", "streaming": "",
    "loader_workers": "processes", "augment": "",
    "backbone": "", "projector_dim": "dims", "projector_hidden_dim": "dims",
    "num_prototypes": "prototypes", "epochs": "epochs", "batch_size": "images", "optimizer": "",
    "lr": "1", "weight_decay": "1", "momentum": "1", "warmup_epochs": "epochs", "ema": "1",
    "ema_schedule": "", "temperature": "1", "student_temperature": "1",
    "teacher_temperature": "1", "center_momentum": "1", "dino_centering": "",
    "sinkhorn_epsilon": "1", "sinkhorn_iterations": "iterations", "queue_length": "embeddings",
    "queue_start_epoch": "epochs", "freeze_prototypes_epochs": "epochs", "kappa": "1",
    "entropy_weight": "1", "kappa_eval": "1", "knn_k": "neighbours", "knn_temperature": "1",
    "knn_bank_size": "images", "linear_probe_every": "epochs", "final_eval_size": "images", "seed": "1",
    "device": "", "log_every_n_steps": "steps", "collapse": "", "world_size": "workers", "sync_batchnorm": "",
}

_ID = {
    "phase": Column("", "experiment phase: search, replicate (single: one `er-tune train` dir)"),
    "trial_id": Column("", "Ray Tune trial id (the trial dir name when Ray wrote none)"),
    "group": Column("", "condition group id: method/variant/grid cell"),
    "method": Column("", "SSL method (simclr, byol, dino, swav, deepcluster)"),
    "variant": Column("", "original objective or its ER variant (er)"),
}

TRIALS = {
    **_ID,
    "objective": Column("", "objective registry name (method, or method_er)"),
    "dataset": Column("", "dataset the trial trained on (TrialConfig.dataset)"),
    "seed": Column("1", "trial seed (TrialConfig.seed)"),
    "status": Column("", "completed, early_stopped, collapsed, diverged, errored, running or "
                         "pending (reports.discover)"),
    "stop_reason": Column("", "stop_reason of the last result line (null while it goes on or when "
                              "stopped by the scheduler)"),
    "epochs_completed": Column("epochs", "epoch of the last result line (0: none)"),
    "max_epochs": Column("epochs", "epochs the trial was configured to run (TrialConfig.epochs)"),
    "best_knn_top1": Column("1", "highest kNN top-1 accuracy over its epochs (fraction)"),
    "final_knn_top1": Column("1", "kNN top-1 accuracy at the last epoch on final_knn_queries test "
                                  "queries (fraction; the whole test split for datasets read from disk)"),
    "final_knn_queries": Column("queries", "test queries of final_knn_top1 (final_eval_size, or eval_size "
                                           "for trials that ran no final evaluation)"),
    "linear_queries": Column("queries", "test queries of final_linear_top1 (as final_knn_queries)"),
    "untrained_knn_top1": Column("1", "kNN top-1 of the trial's untrained network, measured before the "
                                      "first step, on the same queries as final_knn_top1 (trials without a "
                                      "final evaluation: its eval-set kNN from untrained.json; null when "
                                      "the trial wrote neither)"),
    "untrained_linear_top1": Column("1", "linear-probe top-1 of the trial's untrained network on the "
                                         "same final queries (null: not measured)"),
    "learned_knn_p": Column("1", "exact one-sided McNemar p of final kNN correctness above the "
                                 "untrained network's, per query (the not_learned grade)"),
    "learned_linear_p": Column("1", "the same test for the linear probe"),
    "final_linear_top1": Column("1", "linear-probe top-1 accuracy at the last epoch on linear_queries test queries (fraction; "
                                     "null when no probe ran)"),
    "final_rankme": Column("1", "RankMe effective rank of the backbone features, last epoch"),
    "final_er_entropy": Column("nats", "er_entropy (leave-one-out vMF KDE entropy, eval set) at "
                                       "the last epoch"),
    "collapse_kind": Column("", "kind of the first collapse-severity event (null: none)"),
    "collapse_epoch": Column("epochs", "epoch of the first collapse-severity event (null: none)"),
    "wall_time_s": Column("s", "trial wall time at its last epoch (Ray's time_total_s)"),
    "error": Column("", "error.txt of an errored trial (null otherwise)"),
    "trial_dir": Column("", "trial directory relative to the experiment directory (POSIX)"),
    # the trial's collapse grade and what it rests on (reports.grades)
    "partial_graded": Column("", "whether the partial-collapse criteria ran (false: the trial "
                                 "predates them or its results lack their inputs; its grade "
                                 "columns are then null)"),
    "collapse_grade": Column("", "graded collapse outcome of the trial (none, partial, complete; "
                                 "null: not graded, partial_graded false)"),
    "partial_kinds": Column("", "kinds of partial collapse the trial showed (null: none, or not "
                                "graded)"),
    "first_warning_epoch": Column("epochs", "epoch of the first early_warning event "
                                            "(null: none, or not graded)"),
    "first_partial_epoch": Column("epochs", "epoch of the first partial-collapse event "
                                            "(null: none, or not graded)"),
    "any_collapse_epoch": Column("epochs", "epoch of the first collapse or partial event "
                                           "(time to any collapse; null: none, or not graded)"),
}

EPOCHS = {
    "trial_id": _ID["trial_id"],
    "phase": _ID["phase"],
    "epoch": Column("epochs", "training epoch just finished (1-based)"),
    "step": Column("steps", "optimiser steps since the trial started"),
    "loss": Column("1", "mean training loss over the epoch (objective units)"),
    "er_entropy": Column("nats", "Ĥ: leave-one-out vMF KDE entropy of two augmented eval views "
                                 "(mean of the two, kappa_eval)"),
    "er_reconstruction": Column("nats", "R̂: vMF negative log-likelihood of view 2 given view 1 "
                                        "(eval set, kappa_eval)"),
    "er_bound": Column("nats", "er_entropy − er_reconstruction (ER bound of the eval pair)"),
    "knn_top1": Column("1", "kNN top-1 accuracy of the backbone features (fraction)"),
    "linear_top1": Column("1", "linear-probe top-1 accuracy (fraction; only on probed epochs)"),
    "rankme": Column("1", "RankMe effective rank of the backbone features"),
    "rankme_projection": Column("1", "RankMe effective rank of the clean-image projections (dimensional partial collapse)"),
    "effective_prototypes": Column("prototypes", "exp H(mean assignment): prototypes in use (discrete methods only)"),
    "knn_chance_p": Column("1", "one-sided exact binomial p of knn_top1 above the majority-class rate (functional partial collapse)"),
    "std_ratio": Column("1", "√d × mean per-dimension sd of the L2-normalised projections "
                             "(≈1 isotropic, 0 collapsed)"),
    "assign_entropy": Column("1", "entropy of the mean prototype assignment / log K (discrete "
                                  "methods)"),
    "assign_sample_entropy": Column("1", "mean per-sample assignment entropy / log K (discrete "
                                         "methods)"),
    "lr": Column("1", "learning rate at the end of the epoch"),
    "ema": Column("1", "teacher EMA coefficient at the end of the epoch (0 without a teacher)"),
    "images_per_s": Column("images/s", "training throughput over the epoch"),
    "world_size": Column("workers", "data-parallel workers the trial trained on (1: one process; batch_size is the global batch)"),
    "collapsed": Column("", "a collapse-severity event has fired (bool)"),
    "stop_reason": Column("", "'' while running; completed, collapsed or diverged on the last "
                              "line"),
    "collapse_grade": Column("", "collapse grade of the trial up to this epoch (none, partial, "
                                 "complete; er_core.rules.collapse_grade)"),
    "wall_time_s": Column("s", "seconds since the trial started (Ray's time_total_s)"),
    "final_knn_top1": Column("1", "last line only: kNN top-1 on final_queries test queries (the whole "
                                  "test split of a dataset read from disk)"),
    "final_linear_top1": Column("1", "last line only: linear-probe top-1 on final_queries test queries"),
    "final_queries": Column("queries", "last line only: queries of the final evaluation"),
    "untrained_final_knn_top1": Column("1", "last line only: the untrained network's final_knn_top1"),
    "untrained_final_linear_top1": Column("1", "last line only: the untrained network's final_linear_top1"),
    "learned_knn_p": Column("1", "last line only: exact one-sided McNemar p of the final kNN above the "
                                 "untrained network's (not_learned grade)"),
    "learned_linear_p": Column("1", "last line only: the same test for the linear probe"),
}

EVENTS = {
    "trial_id": _ID["trial_id"],
    "epoch": Column("epochs", "epoch at which the detector fired"),
    "step": Column("steps", "optimiser step at which the detector fired"),
    "detector": Column("", "detector that fired (er_core.collapse)"),
    "kind": Column("", "collapse: complete, dimensional, cluster, uniform, diverged (early_warning with stop_on_warning); partial: dimensional, prototype, functional, plateau, not_learned; warning: knn_chance, early_warning"),
    "severity": Column("", "warning, partial or collapse"),
    "value": Column("1", "observed value of the detector's metric"),
    "threshold": Column("1", "threshold it crossed (same unit as value)"),
    "message": Column("", "human-readable description of the event"),
}

SEARCH = {
    "group": _ID["group"], "method": _ID["method"], "variant": _ID["variant"],
    "n_trials": Column("trials", "search trials of the group"),
    "n_early_stopped": Column("trials", "trials the scheduler (ASHA) stopped early"),
    "n_collapsed": Column("trials", "trials that collapsed or diverged"),
    "collapse_fraction": Column("1", "n_collapsed / n_trials: share of sampled points that "
                                     "collapsed"),
    "best_knn_top1": Column("1", "highest kNN top-1 any search trial of the group reached at any epoch "
                                 "(fraction); not how the best configuration is chosen (compared_epoch)"),
    "best_trial_id": Column("", "the group's best configuration: the trial with the best search metric at "
                                "compared_epoch (er_core.rules.best_by_group; collapsed/diverged trials only "
                                "when no healthy trial has a finite metric)"),
    "compared_epoch": Column("epochs", "epoch at which the group's trials were compared: the furthest epoch "
                                       "any of them reached with a finite search metric (ASHA's top rung)"),
    "compared_metric": Column("1", "the best trial's search metric (plan.json's metric, knn_top1 unless "
                                   "the study says otherwise) at compared_epoch"),
    "replicated": Column("", "true when the replicate phase ran best_trial_id's configuration "
                             "(best_configs.json), false when it ran another search trial's, null when "
                             "the experiment has no best_configs.json"),
    "replicated_trial_id": Column("", "the search trial whose configuration the replicate phase ran "
                                      "(null when unknown)"),
}

STABILITY = {"method": _ID["method"]}  # the other columns: reports.verdicts.describe

SURVIVAL = {
    "method": _ID["method"],
    "variant": _ID["variant"],
    "endpoint": Column("", "collapse endpoint of the curve: complete, or any (partial included)"),
    "epoch": Column("epochs", "distinct observed epoch (event or censoring)"),
    "at_risk": Column("trials", "trials not collapsed nor censored before this epoch"),
    "events": Column("trials", "first collapses at this epoch"),
    "censored": Column("trials", "trials censored at this epoch"),
    "survival": Column("1", "Kaplan–Meier probability of no collapse up to this epoch"),
    "ci_low": Column("1", "survival, log-log 95% lower bound"),
    "ci_high": Column("1", "survival, log-log 95% upper bound"),
}

ROBUSTNESS = {name: Column(*entry) for name, entry in robustness.DESCRIPTIONS.items()}

TABLES: dict[str, dict[str, Column]] = {
    "trials": TRIALS, "epochs": EPOCHS, "collapse_events": EVENTS, "search": SEARCH,
    "stability": STABILITY, "survival": SURVIVAL, "robustness": ROBUSTNESS,
}

# Strings kept plain (free text, or one value per row); every other string column is
# dictionary-encoded (pandas reads it as a categorical).
FREE_TEXT = {"error", "message", "trial_dir"}


def describe(table: str, name: str) -> Column | None:
    """The declared entry of column ``name`` of report table ``table``; None when undeclared."""
    fixed = TABLES.get(table, {})
    if name in fixed:
        return fixed[name]
    registered = verdicts.describe(name) if table == "stability" else None
    if registered is not None:
        return Column(*registered)
    for prefix, text in (("best_hp_", "searched {f} of the group's best trial (TrialConfig.{f})"),
                         ("hp_", "searched {f} of this trial (TrialConfig.{f}); null when its "
                                 "group did not search it")):
        field = name[len(prefix):]
        if name.startswith(prefix) and field in CONFIG_UNITS:
            return Column(CONFIG_UNITS[field], text.format(f=field))
    if name in CONFIG_UNITS:
        cell = "the stressed cell's" if table == "robustness" else "the cell's"
        return Column(CONFIG_UNITS[name], f"grid axis: {cell} TrialConfig.{name}"
                      + (" (null: the method does not read it)" if table == "robustness" else ""))
    return None


def annotate(table_name: str, table: pa.Table) -> pa.Table:
    """``table`` with each field's ``unit``/``description`` metadata and its string columns
    (outside ``FREE_TEXT``) dictionary-encoded. Undeclared columns get ``UNDESCRIBED``."""
    fields, arrays = [], []
    for field, column in zip(table.schema, table.columns):
        entry = describe(table_name, field.name) or Column("", UNDESCRIBED)
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            if field.name not in FREE_TEXT:
                column = column.cast(pa.string()).dictionary_encode()
        meta = dict(field.metadata or {})
        meta.update({b"unit": entry.unit.encode(), b"description": entry.description.encode()})
        fields.append(pa.field(field.name, column.type, field.nullable, meta))
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, table.schema.metadata))
