"""The default Optuna storage: Optuna's journal file, appended without an fsync per append.

What must hold (er_tune.grouped.UnsyncedJournalFile): Optuna's own reader finds in the file exactly
what an fsynced journal holds; no append waits for the disk; a driver killed right after its
appends loses none of them; drivers appending to one file at once never interleave a line.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from er_tune.grouped import UnsyncedJournalFile, optuna_storage

ROOT = Path(__file__).resolve().parents[1]


def _run_trials(storage, name: str, count: int) -> None:
    """A grouped searcher's writes: ask, a parameter, user attributes, intermediate values, tell."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                sampler=optuna.samplers.RandomSampler(seed=3), direction="maximize")
    for number in range(count):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
        trial.set_user_attr("ray_trial_id", f"t{number}")
        trial.set_user_attr("status", "completed")
        for step in (1, 2):
            trial.report(lr * step, step)
        study.tell(trial, lr * 2)


def _content(path: Path) -> list[tuple]:
    """Every study's trials as Optuna's own JournalFileBackend reads them (no datetimes)."""
    storage = JournalStorage(JournalFileBackend(str(path)))
    found = []
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for trial in study.get_trials(deepcopy=False):
            found.append((summary.study_name, trial.number, trial.state.name, trial.params, trial.value,
                          dict(trial.intermediate_values), dict(trial.user_attrs)))
    return sorted(found, key=lambda item: (item[0], item[1]))


def test_optunas_reader_finds_what_an_fsynced_journal_holds(tmp_path):
    ours, optunas = tmp_path / "ours.log", tmp_path / "optunas.log"
    _run_trials(optuna_storage(f"journal:{ours}"), "group-a", 6)
    _run_trials(JournalStorage(JournalFileBackend(str(optunas))), "group-a", 6)
    assert isinstance(optuna_storage(f"journal:{ours}")._backend, UnsyncedJournalFile)
    content = _content(ours)
    assert len(content) == 6 and {row[2] for row in content} == {"COMPLETE"}
    assert content == _content(optunas)
    # the same operations, line for line (only the datetimes differ)
    ops = [json.loads(line)["op_code"] for line in ours.read_text().splitlines()]
    assert ops == [json.loads(line)["op_code"] for line in optunas.read_text().splitlines()]


def test_no_append_waits_for_the_disk(tmp_path, monkeypatch):
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
    _run_trials(JournalStorage(JournalFileBackend(str(tmp_path / "optunas.log"))), "g", 2)
    assert len(calls) >= 10  # Optuna's backend: one fsync per append
    calls.clear()
    _run_trials(optuna_storage(f"journal:{tmp_path / 'ours.log'}"), "g", 2)
    assert calls == []
    assert len(_content(tmp_path / "ours.log")) == 2


def test_a_driver_killed_after_its_appends_loses_none_of_them(tmp_path):
    path = tmp_path / "journal.log"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_journal_storage import _run_trials
        from er_tune.grouped import optuna_storage
        _run_trials(optuna_storage("journal:{path}"), "killed", 5)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    content = _content(path)
    assert [row[1] for row in content] == [0, 1, 2, 3, 4]
    assert all(row[2] == "COMPLETE" and row[5] == {1: row[3]["lr"], 2: row[3]["lr"] * 2} for row in content)


def test_drivers_sharing_the_file_never_interleave_a_line(tmp_path):
    drivers = 3
    path = tmp_path / "journal.log"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_journal_storage import _run_trials
        from er_tune.grouped import optuna_storage
        _run_trials(optuna_storage("journal:{path}"), sys.argv[1], 15)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, f"driver{k}"], stderr=subprocess.PIPE, text=True)
             for k in range(drivers)]
    for proc in procs:
        assert proc.wait(timeout=180) == 0, proc.stderr.read()
    lines = path.read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)  # every line whole
    content = _content(path)
    assert len(content) == drivers * 15
    assert {row[0] for row in content} == {f"driver{k}" for k in range(drivers)}
    assert {row[2] for row in content} == {"COMPLETE"}
