"""The cost of one trial's HParams session file, as the Tune driver writes one per trial.

Side by side in one run, the same session (start info, the ``final/*`` scalars, end info) written
``SESSIONS`` times into fresh folders:

- ``SummaryWriter``: what :func:`trainers.tensorboard.write_session` did before (the summaries of
  :func:`trainers.tensorboard.session_summaries` through a tensorboardX ``SummaryWriter`` per
  session: an ``EventFileWriter`` with a ``multiprocessing.Queue`` and a writer thread, started and
  stopped for three records); :func:`summary_writer_session` here;
- ``RecordWriter``: :func:`trainers.tensorboard.write_session` (the same records framed by
  tensorboardX's ``RecordWriter`` in one open file, no thread, no ``fsync``;
  ``tests/test_tensorboard_session.py`` checks the two files are equal record for record).

Prints CPU and wall milliseconds per session for each, over ``ROUNDS`` interleaved rounds, and the
ratios of the medians.

Run: ``.venv/bin/python benchmarks/hparams_session.py``
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time

from trainers.tensorboard import SESSION_RUN, session_hparams, session_summaries, write_session

SESSIONS = 200
ROUNDS = 5
HPARAMS = session_hparams({"method": "simclr", "variant": "er", "batch_size": 64, "lr": 0.03, "group": "g",
                           "phase": "search", "searched": ["lr"]}, "completed", collapse_grade="none")
FINAL = {"knn_top1": 0.41, "er_entropy": 2.5, "rankme": float("nan"), "linear_top1": None, "epoch": 7}


def summary_writer_session(trial_logdir: str, hparams, final_metrics, *, failed: bool) -> str:
    """The baseline: the same session summaries written through a ``SummaryWriter`` (as
    ``write_session`` wrote them before)."""
    from tensorboardX import SummaryWriter

    summaries = session_summaries(hparams, final_metrics, failed=failed)
    logdir = os.path.join(trial_logdir, SESSION_RUN)
    with SummaryWriter(logdir=logdir, filename_suffix=".hparams") as writer:
        writer.file_writer.add_summary(summaries.start)
        for key, value in summaries.scalars.items():
            writer.add_scalar(key, value, summaries.step)
        writer.file_writer.add_summary(summaries.end)
    return logdir


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    sides = {"SummaryWriter": summary_writer_session, "RecordWriter": write_session}
    cpu_ms = {name: [] for name in sides}
    wall_ms = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as folder:
        for name, write in sides.items():  # warm-up: imports, first file
            write(os.path.join(folder, "warm", name), HPARAMS, FINAL, failed=False)
        for round_index in range(ROUNDS):
            for name, write in sides.items():
                cpu0, wall0 = _cpu(), time.perf_counter()
                for index in range(SESSIONS):
                    write(os.path.join(folder, f"{name}-{round_index}", str(index)), HPARAMS, FINAL, failed=False)
                cpu_ms[name].append((_cpu() - cpu0) / SESSIONS * 1e3)
                wall_ms[name].append((time.perf_counter() - wall0) / SESSIONS * 1e3)
    print(f"HParams session files, {SESSIONS} per round, {ROUNDS} interleaved rounds (median, min-max):")
    for name in sides:
        print(f"  {name:<14} CPU {statistics.median(cpu_ms[name]):6.2f} ms ({min(cpu_ms[name]):.2f}-"
              f"{max(cpu_ms[name]):.2f})   wall {statistics.median(wall_ms[name]):6.2f} ms "
              f"({min(wall_ms[name]):.2f}-{max(wall_ms[name]):.2f}) per session")
    for label, values in (("CPU", cpu_ms), ("wall", wall_ms)):
        ratio = statistics.median(values["SummaryWriter"]) / statistics.median(values["RecordWriter"])
        print(f"  SummaryWriter / RecordWriter, {label}: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
