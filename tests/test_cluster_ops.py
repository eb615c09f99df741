"""Cluster operations without a cluster: checkpoint pruning, re-reported epochs, GPU/checkpoint keys."""

import json
from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs
import pytest

from er_tune.cleanup import PruneEndedCheckpoints, prune_checkpoints
from reports.discover import discover
from reports.results_io import drop_superseded, read_many
from search_spaces import StudyError, load_study
from synthetic_experiment import event, write_trial

SMOKE = Path(__file__).resolve().parents[1] / "search_spaces" / "studies" / "smoke.yaml"


def make_trial_with_checkpoints(path: Path, n: int) -> Path:
    for i in range(n):
        (path / f"checkpoint_{i:06d}").mkdir(parents=True)
        (path / f"checkpoint_{i:06d}" / "trial_state.pt").write_bytes(b"x" * 1000)
    (path / "result.json").write_text("{}\n")
    (path / "checkpoint_notes.txt").write_text("a file, not a checkpoint dir")
    return path


@pytest.mark.parametrize("keep_final, left", [(False, []), (True, ["checkpoint_000002"])])
def test_prune_checkpoints_keeps_logs_and_at_most_the_final_one(tmp_path, keep_final, left):
    trial = make_trial_with_checkpoints(tmp_path / "t", 3)
    deleted = prune_checkpoints(pyarrow.fs.LocalFileSystem(), str(trial), keep_final=keep_final)
    assert len(deleted) == 3 - len(left)
    assert sorted(p.name for p in trial.glob("checkpoint_*") if p.is_dir()) == left
    assert (trial / "result.json").exists() and (trial / "checkpoint_notes.txt").exists()
    assert prune_checkpoints(pyarrow.fs.LocalFileSystem(), str(tmp_path / "gone"), keep_final=False) == []


def test_callback_prunes_complete_trials_when_the_phase_ends(tmp_path):
    fs = SimpleNamespace(storage_filesystem=pyarrow.fs.LocalFileSystem())
    done_dir, failed_dir = (make_trial_with_checkpoints(tmp_path / name, 2) for name in ("done", "failed"))
    done = SimpleNamespace(trial_id="done", storage=fs, path=str(done_dir))
    failed = SimpleNamespace(trial_id="failed", storage=fs, path=str(failed_dir))
    left = lambda d: len([p for p in d.glob("checkpoint_*") if p.is_dir()])  # noqa: E731
    callback = PruneEndedCheckpoints()
    callback.on_trial_complete(iteration=1, trials=[done], trial=done)
    callback.on_trial_complete(iteration=1, trials=[failed], trial=failed)
    callback.on_trial_error(iteration=2, trials=[failed], trial=failed)  # retried, then errored: resumable
    # a driver killed now resumes from the snapshot's checkpoint: nothing may be gone yet
    assert left(done_dir) == 2 and left(failed_dir) == 2
    callback.on_experiment_end(trials=[done, failed])
    assert left(done_dir) == 0 and left(failed_dir) == 2


def blob(epochs):
    return b"".join(json.dumps({"epoch": e, "knn_top1": e / 10 + 0.01 * i}).encode() + b"\n"
                    for i, e in enumerate(epochs))


def test_drop_superseded_keeps_the_rerun_rows():
    table, counts, _ = read_many([blob([1, 2, 3, 2, 3, 4]), blob([1, 2]), blob([1, 2, 3, 2])])
    table, counts, dropped = drop_superseded(table, counts)
    assert counts == [4, 2, 2] and dropped == [2, 0, 2]
    assert table["epoch"].to_pylist() == [1, 2, 3, 4, 1, 2, 1, 2]
    # the re-run's epoch 2 and 3 (rows 4 and 5 of the first blob) are the ones kept
    assert table["knn_top1"].to_pylist()[:4] == pytest.approx([0.1, 0.23, 0.34, 0.45])


def test_report_of_a_resumed_trial_has_each_epoch_and_event_once(tmp_path):
    d = Path(write_trial(str(tmp_path / "exp" / "replicate"), "t0", epochs=4, n_lines=4,
                         events=[event(epoch=2), event(epoch=2)]))
    lines = (d / "result.json").read_text().splitlines()
    (d / "result.json").write_text("\n".join(lines[:3] + lines[1:]) + "\n")  # epochs 1,2,3,2,3,4
    trials, table = discover(str(tmp_path / "exp"))
    assert table["epoch"].to_pylist() == [1, 2, 3, 4]
    assert trials[0].n_rows == 4 and trials[0].superseded_rows == 2 and trials[0].last["epoch"] == 4
    assert len(trials[0].events) == 1


def study_with(tmp_path, replace: str, by: str) -> str:
    path = tmp_path / "study.yaml"
    text = SMOKE.read_text()
    assert replace in text
    path.write_text(text.replace(replace, by))
    return str(path)


@pytest.mark.parametrize("gpu", [0.25, 0.5, 1, 2, 0])
def test_fractional_or_whole_gpus_are_accepted(tmp_path, gpu):
    study = load_study(study_with(tmp_path, "resources: {cpu: 1, gpu: 0}", f"resources: {{cpu: 1, gpu: {gpu}}}"))
    assert study.resources.gpu == gpu


@pytest.mark.parametrize("gpu", [1.5, -0.25, "half"])
def test_gpu_neither_fraction_nor_whole_is_rejected_naming_file_and_key(tmp_path, gpu):
    path = study_with(tmp_path, "resources: {cpu: 1, gpu: 0}", f"resources: {{cpu: 1, gpu: {gpu}}}")
    with pytest.raises(StudyError) as error:
        load_study(path)
    assert str(error.value).startswith(f"{path}: resources.gpu: ")


def test_checkpoints_keep_final_key(tmp_path):
    assert load_study(str(SMOKE)).keep_final_checkpoint is False
    path = study_with(tmp_path, "resources:", "checkpoints: {keep_final: true}\nresources:")
    assert load_study(path).keep_final_checkpoint is True
    for bad, key in (("{keep_final: yes please}", "checkpoints.keep_final"), ("{keep: true}", "checkpoints.keep")):
        path = study_with(tmp_path, "resources:", f"checkpoints: {bad}\nresources:")
        with pytest.raises(StudyError) as error:
            load_study(path)
        assert str(error.value).startswith(f"{path}: {key}: ") and "keep_final" in str(error.value)


def test_retried_trial_fetches_its_events_from_uri_storage_first(tmp_path):
    from er_tune.tune_reporter import copy_if_missing

    remote = tmp_path / "storage" / "trial"
    remote.mkdir(parents=True)
    (remote / "collapse_events.jsonl").write_text(json.dumps(event(epoch=1)) + "\n")
    local = tmp_path / "node_b_working_dir"
    local.mkdir()
    fs = pyarrow.fs.LocalFileSystem()
    assert copy_if_missing(fs, str(remote / "collapse_events.jsonl"), str(local / "collapse_events.jsonl"))
    assert json.loads((local / "collapse_events.jsonl").read_text())["epoch"] == 1
    (local / "collapse_events.jsonl").write_text("")  # a local file wins: never overwritten
    assert not copy_if_missing(fs, str(remote / "collapse_events.jsonl"), str(local / "collapse_events.jsonl"))
    assert not copy_if_missing(fs, str(remote / "missing.jsonl"), str(local / "missing.jsonl"))


def test_a_retried_trial_that_finished_is_not_errored(tmp_path):
    from reports.discover import trial_status

    phase = tmp_path / "exp" / "search"
    write_trial(str(phase), "t0", epochs=6, n_lines=2, stop_reason="", error="RayActorError: node died")
    trials, _ = discover(str(tmp_path / "exp"))
    assert trial_status(trials[0]) == "errored"  # no state: the error may be the last word
    (phase / "experiment_state-x.json").write_text(json.dumps(
        {"trial_data": [[json.dumps({"trial_id": "t0", "status": "TERMINATED"}), "{}"]]}))
    trials, _ = discover(str(tmp_path / "exp"))
    assert trial_status(trials[0]) == "early_stopped"  # retried, then stopped by ASHA at epoch 2
