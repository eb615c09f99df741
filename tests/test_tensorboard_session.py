"""A trial's HParams session file holds what a ``SummaryWriter`` would have written, record by record.

:func:`trainers.tensorboard.write_session` frames the records with tensorboardX's ``RecordWriter``
in one open file, without ``fsync`` (the driver writes one session per trial, and a
``SummaryWriter``'s queue, thread and ``fsync`` cost more than the records). The reference writes
the same summaries (``session_summaries``) through a ``SummaryWriter``, as ``write_session`` did
before; it is the baseline of ``benchmarks/hparams_session.py``. Both files are read back with
TensorBoard's own record reader and compared without wall times; the dashboard test checks what
the summaries hold.
"""

from __future__ import annotations

import glob
import os

import pytest

from benchmarks.hparams_session import FINAL, HPARAMS, summary_writer_session
from trainers.tensorboard import SESSION_RUN, write_session


def records(logdir: str) -> list[bytes]:
    """Every record of the session's one event file, wall times cleared (TensorBoard's reader)."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboardX.proto.event_pb2 import Event

    files = glob.glob(os.path.join(logdir, SESSION_RUN, "events.out.tfevents.*.hparams"))
    assert len(files) == 1, files
    out = []
    for raw in RawEventFileLoader(files[0]).Load():
        event = Event.FromString(raw)
        assert event.wall_time > 0
        event.wall_time = 0
        out.append(event.SerializeToString())
    return out


@pytest.mark.parametrize("failed", [False, True])
def test_the_session_file_matches_a_summary_writers_record_for_record(tmp_path, failed):
    summary_writer_session(str(tmp_path / "reference"), HPARAMS, FINAL, failed=failed)
    logdir = write_session(str(tmp_path / "ours"), HPARAMS, FINAL, failed=failed)
    assert logdir == str(tmp_path / "ours" / SESSION_RUN)
    ours, theirs = records(str(tmp_path / "ours")), records(str(tmp_path / "reference"))
    assert len(ours) == 1 + 1 + 3 + 1  # version, start, final/knn_top1, final/er_entropy, final/epoch, end
    assert ours == theirs


def test_the_session_reads_back_in_tensorboards_hparams_dashboard(tmp_path):
    from tensorboard_read import hparams_sessions, scalars

    write_session(str(tmp_path / "trial"), HPARAMS, FINAL, failed=True)
    sessions = hparams_sessions(str(tmp_path))
    assert list(sessions) == [f"trial/{SESSION_RUN}"]
    session = sessions[f"trial/{SESSION_RUN}"]
    assert session["status"] == "STATUS_FAILURE"
    assert session["hparams"]["variant"] == "er" and session["hparams"]["batch_size"] == 64
    assert session["metrics"]["final/knn_top1"] == pytest.approx(0.41)
    assert scalars(str(tmp_path), f"trial/{SESSION_RUN}", "final/er_entropy") == [(7, pytest.approx(2.5))]


def test_writing_a_session_waits_for_no_disk_flush(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    write_session(str(tmp_path / "ours"), HPARAMS, FINAL, failed=False)
    assert synced == []
    summary_writer_session(str(tmp_path / "reference"), HPARAMS, FINAL, failed=False)
    assert len(synced) >= 1  # the check sees a flush where one happens
