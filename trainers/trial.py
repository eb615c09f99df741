"""One trial: train one objective under one condition, measure it every epoch, stop on collapse.

:func:`run_trial` is the single entry point, used unchanged by ``er-tune train`` (with a
:class:`~trainers.reporters.LocalReporter`) and by the Ray Tune function trainable (with a
:class:`~er_tune.tune_reporter.TuneReporter`). Per epoch it reports exactly the metrics of
:data:`EPOCH_METRICS` (plus the two ``assign_*`` for discrete methods, and ``linear_top1`` at the
last epoch and every ``linear_probe_every`` epochs), all finite, and writes a checkpoint; a
collapse is a result (status ``collapsed`` or ``diverged``), never an exception.
Before the first step it measures the untrained network once, to calibrate the collapse detectors
(:meth:`~er_core.collapse.CollapseMonitor.calibrate`; the calibration is part of the checkpoint).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable


from er_core.collapse import CALIBRATED, CollapseEvent
from er_core.config import TrialConfig
from er_core.data import DatasetBundle
from er_core.io import write_json_atomic, write_text_atomic
from er_core.rules import EVENTS_FILE, GRADE_KEY, STARTUP_FILE, UNTRAINED_FILE, trial_status
from er_core.rules import GRADE_METRICS  # noqa: F401 (every objective reports them; tests read it here)
from trainers.diagnostics import Diagnostics
from trainers.distributed import MainRankDiagnostics, World
from trainers.state import TrialState, build_state
from trainers.steps import TrainingStep
from trainers.tensorboard import TrialWriter

EPOCH_METRICS = ("epoch", "step", "loss", "er_entropy", "er_reconstruction", "er_bound", "knn_top1",
                 "rankme", "std_ratio", "lr", "ema", "images_per_s", "collapsed", "stop_reason", GRADE_KEY,
                 "world_size")
DISCRETE_METRICS = ("assign_entropy", "assign_sample_entropy", "effective_prototypes")
PROBE_METRICS = ("linear_top1",)  # in the final epoch's metrics, and every linear_probe_every epochs
# In the last epoch's metrics only: the final evaluation on final_eval_size queries of the test split
# (Diagnostics.final), the untrained network's on the same queries, and the not-learned test's p-values.
FINAL_METRICS = ("final_knn_top1", "final_linear_top1", "final_queries", "untrained_final_knn_top1",
                 "untrained_final_linear_top1", "learned_knn_p", "learned_linear_p")


@dataclass
class TrialSummary:
    """How a trial ended: ``status`` is ``completed``, ``collapsed`` or ``diverged``."""

    status: str
    epochs_completed: int
    final_metrics: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    grade: str = "none"  # collapse grade: none, partial or complete (CollapseMonitor.grade)


def _finite(value: float, fallback: float = 0.0) -> float:
    return value if math.isfinite(value) else fallback


class EventLog:
    """Append-only ``collapse_events.jsonl``: one flushed, fsynced JSON object per event."""

    def __init__(self, trial_dir: str) -> None:
        self.path = os.path.join(trial_dir, EVENTS_FILE)
        open(self.path, "a", encoding="utf-8").close()  # present (maybe empty) in every trial dir

    def truncate_after(self, epoch: int) -> None:
        """Drop events of epochs after ``epoch`` (a resumed trial re-runs those epochs)."""
        if not os.path.exists(self.path):
            return
        kept = []
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    if json.loads(line)["epoch"] <= epoch:
                        kept.append(line if line.endswith("\n") else line + "\n")
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
        write_text_atomic(self.path, "".join(kept))

    def append(self, events: list[CollapseEvent]) -> None:
        if not events:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            for event in events:
                handle.write(json.dumps(event.to_dict(), sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def run_trial(config: TrialConfig, data: DatasetBundle, reporter: Any, *,
              log: Callable[[str], None] | None = None,
              startup: dict[str, Any] | None = None) -> TrialSummary:
    """Train ``config`` on ``data``, reporting each epoch to ``reporter``; resume if it has a checkpoint.

    Args:
        config: the trial's complete configuration.
        data: the dataset bundle (uint8 tensors on the CPU), shared by every trial of a study.
        reporter: :class:`~trainers.reporters.LocalReporter` or :class:`~er_tune.tune_reporter.TuneReporter`.
        log: optional callable receiving one human-readable line per epoch and per event.
        startup: optional start-up timings of the caller (wall-clock seconds); when given, the
            time the first training step begins is added as ``first_step`` and the dict is written
            to ``startup.json`` in the trial directory (see :mod:`er_tune.trainable`).
    """
    world = World.current()  # the trial's workers (a process group set up by the caller), or one
    state = build_state(config, data, world)
    if state.objective.loss_is_cross_entropy_over_prototypes:  # plateau criterion (CollapseMonitor)
        state.monitor.loss_plateau = math.log(config.num_prototypes)
    with reporter.latest_checkpoint() as directory:
        if directory is not None:
            state.restore(directory)
    if hasattr(reporter, "truncate_after"):
        reporter.truncate_after(state.epoch)
    events = EventLog(reporter.trial_dir)
    events.truncate_after(state.epoch)
    if state.last_metrics.get("stop_reason"):
        return _summary(state)

    writer = TrialWriter(reporter.trial_dir, purge_step=state.step if state.step else None)
    step_fn = TrainingStep(state, data)
    diagnostics = Diagnostics(config, data, state.device, channels_last=state.channels_last,
                              autocast=step_fn.autocast)
    if world.distributed:
        diagnostics = MainRankDiagnostics(diagnostics, world)
    if not state.monitor.calibrated:
        # the untrained network's diagnostics calibrate the collapse detectors (CollapseMonitor),
        # and its final evaluation is the not-learned test's reference on the same queries
        untrained = diagnostics(state.net)
        final = diagnostics.final(state.net)
        state.monitor.calibrate({**untrained, "final_knn_top1": final.knn_top1,
                                 "final_linear_top1": final.linear_top1},
                                knn_correct=diagnostics.knn_correct, final_knn_correct=final.knn_correct,
                                final_linear_correct=final.linear_correct)
        # the report draws the untrained network next to the trained one (robustness plots)
        write_json_atomic(os.path.join(reporter.trial_dir, UNTRAINED_FILE), state.monitor.initial)
        if log is not None:
            shown = CALIBRATED + ("rankme_projection", "effective_prototypes", "knn_top1", "knn_chance_p",
                                  "final_knn_top1", "final_linear_top1")
            log("  untrained network: " + ", ".join(f"{k} {state.monitor.initial[k]:.4g}" for k in shown
                                                    if k in state.monitor.initial)
                + f" ({final.queries} final queries)")
    if startup is not None:
        write_json_atomic(os.path.join(reporter.trial_dir, STARTUP_FILE),
                          {**startup, "first_step": time.time(), "first_epoch": state.epoch + 1})
    try:
        while state.epoch < config.epochs:
            metrics = _run_epoch(state, step_fn, diagnostics, writer, events, log)
            checkpoint_dir = tempfile.mkdtemp(prefix="er_tune_ckpt_")
            state.save(checkpoint_dir)
            reporter.report(metrics, checkpoint_dir)
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
            if log is not None:
                log(format_epoch(metrics))
            if metrics["stop_reason"]:
                break
        summary = _summary(state)
        if getattr(reporter, "writes_hparams", True):  # under Ray Tune the driver writes it
            writer.hparams(config.to_dict(), summary.final_metrics, summary.status)
        return summary
    finally:
        writer.close()
        step_fn.close()


def _run_epoch(state: TrialState, step_fn: "TrainingStep", diagnostics: Diagnostics,
               writer: TrialWriter, events: EventLog, log) -> dict[str, Any]:
    config = state.config
    epoch = state.epoch + 1
    start = time.perf_counter()
    outcome = step_fn.run_epoch(epoch, writer)
    train_seconds = time.perf_counter() - start
    measured = diagnostics(state.net)
    found: list[CollapseEvent] = []
    if outcome.diverged:
        found += state.monitor.observe_divergence(outcome.divergence_value, epoch=epoch, step=state.step)
    found += state.monitor.observe({**measured, "loss": outcome.mean_loss}, epoch=epoch, step=state.step,
                                   knn_correct=diagnostics.knn_correct)
    state.epoch = epoch
    stop_reason = state.monitor.stop_reason if config.collapse.stop_on_collapse else ""
    if outcome.diverged:
        stop_reason = "diverged"  # weights would be non-finite from here on: always stop
    if not stop_reason and epoch >= config.epochs:
        stop_reason = "completed"
    probe = (config.linear_probe_every > 0 and epoch % config.linear_probe_every == 0) and not stop_reason
    metrics: dict[str, Any] = {
        "epoch": epoch,
        "step": state.step,
        "loss": _finite(outcome.mean_loss, state.last_metrics.get("loss", 0.0)),
        **{key: _finite(value) for key, value in measured.items()},
        "lr": outcome.lr,
        "ema": outcome.ema,
        "images_per_s": outcome.images / train_seconds if train_seconds > 0 else 0.0,
        "collapsed": bool(state.monitor.collapsed),
        "stop_reason": stop_reason,
        GRADE_KEY: state.monitor.grade,  # how the driver's searcher learns the grade (no file read)
        "world_size": config.world_size,
    }
    if stop_reason:  # every trial's last epoch (completed, collapsed or diverged)
        metrics.update(_final_metrics(state, diagnostics, found, epoch))
        metrics["collapsed"] = bool(state.monitor.collapsed)
        metrics[GRADE_KEY] = state.monitor.grade  # the not-learned test may have graded it
    elif probe:  # every N epochs
        metrics["linear_top1"] = _finite(diagnostics.linear_top1())
    state.last_metrics = metrics
    events.append(found)
    writer.epoch_metrics(epoch, metrics)
    for event in found:
        writer.collapse_event(epoch, event.severity, f"{event.kind} ({event.detector}): {event.message}")
        if log is not None:
            log(f"  [{event.severity}] {event.kind} ({event.detector}) epoch {event.epoch}: {event.message}")
    writer.flush()
    return metrics


def _final_metrics(state: TrialState, diagnostics: Diagnostics, found: list[CollapseEvent],
                   epoch: int) -> dict[str, Any]:
    """The last epoch's final evaluation and not-learned test (appends its event to ``found``)."""
    final = diagnostics.final(state.net)
    found += state.monitor.observe_final(final.knn_correct, final.linear_correct, epoch=epoch, step=state.step)
    initial, learned = state.monitor.initial, state.monitor.learned_p
    metrics: dict[str, Any] = {"linear_top1": _finite(final.eval_linear_top1),
                               "final_knn_top1": final.knn_top1, "final_linear_top1": final.linear_top1,
                               "final_queries": final.queries}
    for key, value in (("untrained_final_knn_top1", initial.get("final_knn_top1")),
                       ("untrained_final_linear_top1", initial.get("final_linear_top1")),
                       ("learned_knn_p", learned.get("knn")), ("learned_linear_p", learned.get("linear"))):
        if value is not None:
            metrics[key] = float(value)
    return metrics


def _summary(state: TrialState) -> TrialSummary:
    status = trial_status(state.last_metrics, epochs=state.epoch, ended=True)
    return TrialSummary(status=status, epochs_completed=state.epoch,
                        final_metrics=dict(state.last_metrics),
                        events=[event.to_dict() for event in state.monitor.events],
                        grade=state.monitor.grade)


def format_epoch(metrics: dict[str, Any]) -> str:
    """One terminal line per epoch."""
    parts = [f"epoch {metrics['epoch']:>3}", f"loss {metrics['loss']:.4f}",
             f"knn {metrics['knn_top1']:.3f}", f"H {metrics['er_entropy']:.2f}",
             f"R {metrics['er_reconstruction']:.2f}", f"rankme {metrics['rankme']:.1f}",
             f"std {metrics['std_ratio']:.3f}"]
    if "linear_top1" in metrics:
        parts.append(f"linear {metrics['linear_top1']:.3f}")
    if "assign_entropy" in metrics:
        parts.append(f"H(p̄) {metrics['assign_entropy']:.3f}")
    parts += [f"lr {metrics['lr']:.4f}", f"{metrics['images_per_s']:.0f} img/s"]
    if metrics["stop_reason"]:
        parts.append(f"-> {metrics['stop_reason']}")
    return " | ".join(parts)
