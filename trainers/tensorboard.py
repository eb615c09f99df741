"""TensorBoard output of one trial (tensorboardX).

Tags: ``epoch/<metric>`` for every per-epoch metric (x axis = epoch), ``train/loss`` and
``train/lr`` every ``log_every_n_steps`` optimiser steps (x axis = global step), collapse events as
text under ``collapse/events``, and the trial's hyperparameters with its final metrics in the
HParams dashboard. A resumed trial opens the writer with ``purge_step`` so that TensorBoard drops
the steps logged after the checkpoint it resumed from instead of drawing them twice.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from tensorboardX import SummaryWriter

HPARAM_KEYS = ("method", "variant", "dataset", "backbone", "batch_size", "ema", "ema_schedule", "lr", "optimizer",
               "weight_decay", "temperature", "kappa", "entropy_weight", "seed", "epochs",
               "image_size", "projector_dim", "num_prototypes")
FINAL_METRIC_KEYS = ("knn_top1", "linear_top1", "er_entropy", "er_reconstruction", "er_bound", "rankme", "std_ratio")


class TrialWriter:
    """Thin wrapper over :class:`tensorboardX.SummaryWriter` with er-tune's tag layout."""

    def __init__(self, logdir: str, *, purge_step: int | None = None) -> None:
        # The suffix keeps this file's name distinct from the events file Ray's own logger writes
        # into the same trial dir in the same second (Ray copies its file over a same-named one).
        self._writer = SummaryWriter(logdir=logdir, purge_step=purge_step, flush_secs=10,
                                     filename_suffix=".trial")

    def step_scalars(self, step: int, **values: float) -> None:
        for key, value in values.items():
            self._writer.add_scalar(f"train/{key}", float(value), step)

    def epoch_metrics(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        for key, value in metrics.items():
            if key == "epoch" or isinstance(value, str):
                continue
            number = float(value)
            if math.isfinite(number):
                self._writer.add_scalar(f"epoch/{key}", number, epoch)

    def collapse_event(self, step: int, text: str) -> None:
        self._writer.add_text("collapse/events", text, step)

    def hparams(self, config: Mapping[str, Any], final_metrics: Mapping[str, Any], status: str) -> None:
        hparams = {k: config[k] for k in HPARAM_KEYS if k in config}
        hparams["status"] = status
        metrics = {f"final/{k}": float(final_metrics[k]) for k in FINAL_METRIC_KEYS
                   if k in final_metrics and math.isfinite(float(final_metrics[k]))}
        self._writer.add_hparams(hparams, metrics, name="hparams")

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
