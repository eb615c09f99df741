"""TensorBoard output of one trial (tensorboardX).

Tags: ``epoch/<metric>`` for every per-epoch metric (x axis = epoch), ``train/loss`` and
``train/lr`` every ``log_every_n_steps`` optimiser steps (x axis = global step), collapse events on
the epoch axis (a ``collapse/severity`` scalar: 1 warning, 2 partial, 3 collapse, and the message
as text under ``collapse/<severity>``), and one HParams session (:func:`write_session`) with the
trial's hyperparameters, status and final metrics: written by the trial itself under
``er-tune train``, and by the driver (:mod:`er_tune.observers`) under Ray Tune, so that
trials ASHA stopped or that errored get one too. A resumed trial opens the writer with ``purge_step`` so that TensorBoard drops
the steps logged after the checkpoint it resumed from instead of drawing them twice.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

from tensorboardX import SummaryWriter

HPARAM_KEYS = ("method", "variant", "dataset", "backbone", "batch_size", "ema", "ema_schedule", "lr", "optimizer",
               "weight_decay", "temperature", "kappa", "entropy_weight", "seed", "epochs",
               "image_size", "projector_dim", "num_prototypes")
FINAL_METRIC_KEYS = ("knn_top1", "linear_top1", "er_entropy", "er_reconstruction", "er_bound", "rankme", "std_ratio")


SEVERITY_LEVELS = {"warning": 1, "partial": 2, "collapse": 3}
SESSION_RUN = "hparams"  # the HParams session of a trial is the run ``<trial dir>/hparams``


def session_hparams(config: Mapping[str, Any], status: str, **extra: Any) -> dict[str, Any]:
    """A trial's HParams columns: its condition (method, variant, group, grid axes, seed), the
    values it searched, the known trial settings, its status and any ``extra`` (collapse grade)."""
    keys = list(HPARAM_KEYS) + ["group", "phase"] + list(config.get("grid_axes") or ())
    keys += list(config.get("searched") or ())
    hparams: dict[str, Any] = {}
    for key in keys:
        value = config.get(key)
        if isinstance(value, (str, bool, int, float)) and key not in hparams:
            hparams[key] = value
    hparams["status"] = status
    hparams.update(extra)
    return hparams


@dataclass(frozen=True)
class SessionSummaries:
    """One HParams session's summaries: ``start`` (hparams and metric names), ``scalars``
    (``final/<metric>`` -> value) at ``step`` (the last epoch), ``end`` (success or failure)."""

    start: Any
    scalars: dict[str, float]
    step: int
    end: Any


def session_summaries(hparams: Mapping[str, Any], final_metrics: Mapping[str, Any], *,
                      failed: bool) -> SessionSummaries:
    """The summaries of a trial's HParams session: start info, a ``final/<metric>`` scalar per
    finite final metric (``FINAL_METRIC_KEYS`` and ``epoch``), end info. No
    ``_hparams_/experiment`` summary: TensorBoard builds the columns from the union of all sessions
    (trials of different methods search different keys)."""
    from tensorboardX.proto.api_pb2 import Status
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboardX.summary import hparams as hparams_summaries

    metrics = {}
    for key in FINAL_METRIC_KEYS + ("epoch",):
        try:
            value = float(final_metrics[key])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(value):
            metrics[f"final/{key}"] = value
    _, start, _ = hparams_summaries(dict(hparams), metrics)
    end = HParamsPluginData(version=0, session_end_info=SessionEndInfo(
        status=Status.Value("STATUS_FAILURE" if failed else "STATUS_SUCCESS")))
    end_summary = Summary(value=[Summary.Value(tag="_hparams_/session_end_info", metadata=SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(plugin_name="hparams", content=end.SerializeToString())))])
    return SessionSummaries(start, metrics, int(final_metrics.get("epoch", 0) or 0), end_summary)


def write_session(trial_logdir: str, hparams: Mapping[str, Any], final_metrics: Mapping[str, Any],
                  *, failed: bool) -> str:
    """Write one HParams session (:func:`session_summaries`) into ``<trial_logdir>/hparams``;
    returns the session's directory.

    The records are those a ``SummaryWriter`` writes (a ``brain.Event:2`` version record, then one
    ``Event`` per summary, framed by tensorboardX's ``RecordWriter``, the file named as its
    ``EventsWriter`` names it), written without one: the Tune driver writes one session per trial,
    and a ``SummaryWriter``'s queue, writer thread and ``fsync`` on close cost more than the three
    records (``benchmarks/hparams_session.py``). Without the ``fsync`` a killed driver still loses
    nothing (the file is closed); an operating-system crash can lose the last sessions, as it can
    Ray's own result files, and the report does not read them."""
    import socket
    import time

    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import RecordWriter
    from tensorboardX.summary import scalar

    summaries = session_summaries(hparams, final_metrics, failed=failed)
    logdir = os.path.join(trial_logdir, SESSION_RUN)
    os.makedirs(logdir, exist_ok=True)
    now = time.time()
    events = [Event(wall_time=now, file_version="brain.Event:2"), Event(wall_time=now, summary=summaries.start),
              *(Event(wall_time=now, step=summaries.step, summary=scalar(key, value))
                for key, value in summaries.scalars.items()),
              Event(wall_time=now, summary=summaries.end)]
    writer = RecordWriter(os.path.join(logdir, f"events.out.tfevents.{str(now)[:10]}.{socket.gethostname()}.hparams"))
    try:
        for event in events:
            writer.write(event.SerializeToString())
    finally:
        writer.close()
    return logdir


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

    def collapse_event(self, epoch: int, severity: str, text: str) -> None:
        """One collapse event on the epoch axis, with its severity (warning, partial, collapse)."""
        self._writer.add_scalar("collapse/severity", float(SEVERITY_LEVELS.get(severity, 1)), epoch)
        self._writer.add_text(f"collapse/{severity}", text, epoch)

    def hparams(self, config: Mapping[str, Any], final_metrics: Mapping[str, Any], status: str) -> None:
        write_session(self._writer.logdir, session_hparams(config, status), final_metrics, failed=False)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
