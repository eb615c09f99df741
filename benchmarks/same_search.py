"""Compare the search phases of two runs of one study: same trials, same curves, same choices?

    python benchmarks/same_search.py EXP_A EXP_B

Pairs the search trials of the two experiments by (condition group, Optuna trial number) and prints,
per pair, whether the searched values are equal, the epochs each run trained, the largest absolute
difference of the search metric over their common epochs, and each run's status; then per group the
configuration each run chose (er_core.rules.best_by_group via reports.choices, from each
experiment's own plan.json) and whether ``best_configs.json`` (what the replicate phase runs) is
the same. Exit 0 when every choice and every replicated configuration agree, else 1. Reads files
only; works on a search that is still running (its unfinished trials show as such).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from er_core.rules import metric_curve  # noqa: E402
from reports.choices import replicated_configs, search_choices  # noqa: E402
from reports.discover import discover, trial_status  # noqa: E402
from reports.status import read_plan, trial_rows  # noqa: E402


def search_trials(exp: str, metric: str) -> tuple[dict, dict]:
    trials, table = discover(exp)
    rows = trial_rows(trials, table, metric)
    out = {}
    for trial in trials:
        params = trial.params or {}
        if trial.phase != "search" or params.get("optuna_trial") is None:
            continue
        out[(params["group"], int(params["optuna_trial"]))] = {
            "hparams": {name: params.get(name) for name in params.get("searched") or []},
            "curve": metric_curve(rows[id(trial)], metric), "status": trial_status(trial),
            "dir": os.path.basename(trial.trial_dir)}
    return out, search_choices(exp, trials, table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    args = parser.parse_args(argv)
    metric = (read_plan(args.first) or {}).get("metric", "knn_top1")
    (first, chosen_a), (second, chosen_b) = search_trials(args.first, metric), search_trials(args.second, metric)
    print(f"{'group':<30} {'#':>2} {'same hp':>7} {'epochs A/B':>10} {'max |Δ' + metric + '|':>16}  status A / B")
    for key in sorted(set(first) | set(second)):
        a, b = first.get(key), second.get(key)
        if a is None or b is None:
            print(f"{key[0]:<30} {key[1]:>2}  only in {'A' if b is None else 'B'}")
            continue
        common = sorted(set(a["curve"]) & set(b["curve"]))
        diff = max((abs(a["curve"][e] - b["curve"][e]) for e in common), default=float("nan"))
        epochs = f"{max(a['curve'], default=0)}/{max(b['curve'], default=0)}"
        print(f"{key[0]:<30} {key[1]:>2} {str(a['hparams'] == b['hparams']):>7} {epochs:>10} {diff:>16.3g}  "
              f"{a['status']} / {b['status']}")
    agree = True
    print(f"\n{'group':<30} choice A (trial #, epoch, {metric})   choice B                      same")
    for group in sorted(set(chosen_a) | set(chosen_b)):
        a, b = chosen_a.get(group), chosen_b.get(group)

        def show(choice, trials):
            if choice is None:
                return "-"
            number = next((k[1] for k, t in trials.items() if k[0] == group and t["dir"] == choice["trial"]), "?")
            return f"#{number} @{choice['epoch']} {choice['value']:.4f}"

        same = a is not None and b is not None and show(a, first) == show(b, second)
        agree = agree and same
        print(f"{group:<30} {show(a, first):<34} {show(b, second):<29} {same}")
    configs_a, configs_b = replicated_configs(args.first), replicated_configs(args.second)
    if configs_a is None or configs_b is None:
        print("\nbest_configs.json: missing in " + " and ".join(
            name for name, configs in (("A", configs_a), ("B", configs_b)) if configs is None))
        return 1
    same_configs = json.dumps(configs_a, sort_keys=True) == json.dumps(configs_b, sort_keys=True)
    print(f"\nbest_configs.json identical (what the replicate phase runs): {same_configs}")
    return 0 if agree and same_configs else 1


if __name__ == "__main__":
    raise SystemExit(main())
