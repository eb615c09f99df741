"""The progress line keeps running sums instead of visiting every trial at every trial end (a
10^4-trial study prints 10^4 lines); its snapshot must equal the rule applied to all trials."""

import io
import random
from types import SimpleNamespace

from er_core.rules import Candidate, best_by_group
from er_tune.progress import StudyProgress


def test_running_best_and_epochs_equal_the_rule_over_every_trial():
    rng = random.Random(3)
    progress = StudyProgress("search", 60, io.StringIO(), metric="knn_top1", mode="max", max_epochs=4)
    trials = [SimpleNamespace(trial_id=f"t{i:02d}", config={"group": f"g{i % 5}", "epochs": 4},
                              last_result=None, status="RUNNING") for i in range(60)]
    for trial in trials:
        progress.on_trial_start(0, trials, trial)
    live = list(trials)
    while live:
        trial = rng.choice(live)
        epoch = int((trial.last_result or {}).get("epoch", 0)) + 1
        value = rng.choice([0.5, 0.6, 0.6, float("nan")])  # ties and non-finite values
        reason = rng.choice(["", "", "collapsed"]) if epoch < 4 else "completed"
        trial.last_result = {"epoch": epoch, "knn_top1": value, "stop_reason": reason}
        progress.on_trial_result(0, trials, trial, trial.last_result)
        if reason or rng.random() < 0.1:
            (progress.on_trial_error if rng.random() < 0.1 else progress.on_trial_complete)(0, trials, trial)
            live.remove(trial)
        snap = progress.snapshot()
        everyone = [Candidate(progress._config[t.trial_id]["group"], progress.status_of(t.trial_id),
                              progress._rows.get(t.trial_id) or [progress._last.get(t.trial_id) or {}], t.trial_id, 0)
                    for t in trials]
        expected = {group: choice.item for group, choice in best_by_group(everyone, "knn_top1", "max").items()}
        assert {group: best["trial"] for group, best in snap["best"].items()} == expected
        assert list(snap["best"]) == sorted(expected)
        assert snap["epochs_done"] == sum(int((t.last_result or {}).get("epoch", 0)) for t in trials)
        assert snap["epochs_remaining"] == sum(4 - int((t.last_result or {}).get("epoch", 0)) for t in live)
