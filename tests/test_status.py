"""``er-tune status`` on synthetic experiment directories, including one caught mid-write."""

import json
import os

from er_tune.cli import main
from reports.status import experiment_status, render_status
from synthetic_experiment import event

T0 = 1_800_000_000.0  # the experiment's first trial starts here


def trial(phase_dir, name, *, group, epochs_done, epochs=4, stop_reason="", knn=0.5, start=T0,
          lr=0.1, events=(), partial_line=False):
    """A trial dir whose epoch e ends at start + 10 * e seconds (Ray's timestamp/time_total_s)."""
    d = os.path.join(phase_dir, name)
    os.makedirs(d, exist_ok=True)
    method, variant = group.split("/")[:2]
    with open(os.path.join(d, "params.json"), "w") as f:
        json.dump({"method": method, "variant": variant, "group": group, "epochs": epochs, "seed": 0,
                   "phase": os.path.basename(phase_dir), "grid_axes": [], "searched": ["lr"], "lr": lr}, f)
    with open(os.path.join(d, "result.json"), "w") as f:
        for e in range(1, epochs_done + 1):
            last = e == epochs_done
            f.write(json.dumps({"epoch": e, "knn_top1": knn if last else knn / 2, "trial_id": name,
                                "stop_reason": stop_reason if last else "",
                                "collapsed": last and stop_reason == "collapsed",
                                "timestamp": int(start + 10 * e), "time_total_s": 10.0 * e}) + "\n")
        if partial_line:
            f.write('{"epoch": %d, "knn_top1": 0.9, "trial_' % (epochs_done + 1))  # being written
    with open(os.path.join(d, "collapse_events.jsonl"), "w") as f:
        f.writelines(json.dumps(ev) + "\n" for ev in events)
    return d


def running_state(phase_dir, running):
    """Ray's experiment_state-*.json (the fields discover reads)."""
    data = [[json.dumps({"trial_id": name, "status": "RUNNING"}), "{}"] for name in running]
    with open(os.path.join(phase_dir, "experiment_state-2026.json"), "w") as f:
        json.dump({"trial_data": data}, f)


def build(tmp_path):
    exp = tmp_path / "exp"
    search = exp / "search"
    search.mkdir(parents=True)
    (exp / "plan.json").write_text(json.dumps({
        "study": "syn", "metric": "knn_top1", "mode": "max", "groups": ["byol/er/", "byol/original/"],
        "phases": {"search": {"trials": 6, "max_epochs": 4}, "replicate": {"trials": 4, "max_epochs": 4}}}))
    trial(search, "a", group="byol/er/", epochs_done=4, stop_reason="completed", knn=0.6, lr=0.2)
    trial(search, "b", group="byol/er/", epochs_done=2, knn=0.3)  # ASHA stopped it
    trial(search, "c", group="byol/original/", epochs_done=2, stop_reason="collapsed", knn=0.1,
          events=[event(epoch=2), event(kind="dimensional", severity="warning", epoch=1)])
    trial(search, "d", group="byol/original/", epochs_done=1, knn=0.4, start=T0 + 40, partial_line=True)
    os.makedirs(search / "e")  # Ray created the directory, nothing written yet
    (search / "e" / "params.json").write_text(json.dumps({"group": "byol/original/", "epochs": 4}))
    running_state(str(search), ["d", "e"])
    os.makedirs(search / "f")  # started since Ray's last copy: only the trial's own files yet
    (search / "f" / "collapse_events.jsonl").write_text("")
    return exp


def test_status_counts_trials_by_state_and_pending_ones_from_the_plan(tmp_path):
    status = experiment_status(str(build(tmp_path)), now=T0 + 60)
    search = status["phases"]["search"]
    assert search["counts"] == {"completed": 1, "early_stopped": 1, "collapsed": 1, "running": 3,
                                "pending": 0}  # 6 planned, 6 dirs
    assert search["ended"] == 3 and search["planned"] == 6 and search["state"] == "running"
    assert status["phases"]["replicate"] == {"planned": 4, "ended": 0, "counts": {"pending": 4},
                                             "state": "not started"}
    assert status["phase"] == "search"
    assert (status["collapse_trials"], status["collapse_events"], status["warning_events"]) == (1, 1, 1)


def test_status_best_per_group_and_eta_from_the_observed_epoch_rate(tmp_path):
    status = experiment_status(str(build(tmp_path)), now=T0 + 60)
    assert status["best"]["byol/er/"]["value"] == 0.6 and status["best"]["byol/er/"]["trial"] == "a"
    assert status["best"]["byol/er/"]["hparams"] == {"lr": 0.2}
    assert status["best"]["byol/original/"]["value"] == 0.4  # the collapsed trial's 0.1 is lower
    trial(tmp_path / "exp" / "search", "c", group="byol/original/", epochs_done=2, stop_reason="collapsed",
          knn=0.9)  # higher, but collapsed: still ranked below the healthy trial
    again = experiment_status(str(tmp_path / "exp"), now=T0 + 60)["best"]["byol/original/"]
    assert again["value"] == 0.4 and again["status"] == "running"
    # done: 4 + 2 + 2 + 1 = 9 epochs in 60 s -> 0.15 epochs/s.
    # remaining: d 3, e 4, f 4, replicate 4 x 4 = 16 -> 27 epochs -> 180 s.
    assert status["epochs_done"] == 9 and status["epochs_remaining"] == 27
    assert abs(status["epochs_per_s"] - 0.15) < 1e-9
    assert abs(status["eta_s"] - 180.0) < 1e-6
    assert status["unreadable"] == 1  # the half-written line is skipped, and counted
    text = render_status(status)
    assert "search    running" in text and "ETA 3m00s" in text and "9/36 done" in text


def test_status_of_a_finished_experiment_and_cli_exit_codes(tmp_path, capsys):
    exp = tmp_path / "done"
    for phase, n in (("search", 2), ("replicate", 2)):
        for i in range(n):
            trial(str(exp / phase), f"{phase}{i}", group="simclr/er/", epochs_done=4, stop_reason="completed")
    (exp / "plan.json").write_text(json.dumps({"phases": {"search": {"trials": 2, "max_epochs": 4},
                                                          "replicate": {"trials": 2, "max_epochs": 4}}}))
    status = experiment_status(str(exp), now=T0 + 10_000)
    assert status["phase"] == "finished" and status["eta_s"] == 0.0
    assert status["elapsed_s"] == 40.0  # first start to last result, not to "now"
    assert main(["status", str(exp)]) == 0
    assert "finished in 0m40s" in capsys.readouterr().out
    assert main(["status", str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["status", str(tmp_path / "empty")]) == 2
    assert "not an experiment" in capsys.readouterr().err


def test_status_before_ray_created_any_trial(tmp_path):
    exp = tmp_path / "new"
    exp.mkdir()
    (exp / "plan.json").write_text(json.dumps({"phases": {"search": {"trials": 3, "max_epochs": 5},
                                                          "replicate": {"trials": 2, "max_epochs": 5}}}))
    status = experiment_status(str(exp), now=T0)
    assert status["phases"]["search"]["counts"] == {"pending": 3}
    assert status["epochs_remaining"] == 25 and status["eta_s"] is None
    assert "ETA unknown" in render_status(status)
