"""The cost of reading one trial's result lines when the search phase picks each group's best.

At the end of a search phase :func:`er_tune.launch.best_by_group` reads every trial's lines from
Ray's result grid (``Result.metrics_dataframe``). Side by side in one run, on ``TRIALS`` frames
shaped like a driver-scale trial's (4 lines; 34 float, 32 int, 18 string, 7 bool and 2 object
columns, as Ray's flattened results of ``benchmarks/driver_scale.py`` hold):

- ``DataFrame.to_dict("records")``: what ``result_rows`` called before (pandas boxes value by value);
- :func:`er_tune.launch.result_rows`: the same rows through one object array.

The two return the same rows (checked here on every frame; ``tests/test_rules_agree.py`` checks
types and NaN too). Prints milliseconds of CPU per trial for both over ``ROUNDS`` interleaved rounds
and the ratio of the medians.

Run: ``.venv/bin/python benchmarks/result_rows.py``
"""

from __future__ import annotations

import random
import statistics
import time
from types import SimpleNamespace

import pandas as pd

from er_tune.launch import result_rows

TRIALS = 300
ROUNDS = 5
LINES = 4
COLUMNS = {"float": 34, "int": 32, "str": 18, "bool": 7, "object": 2}


def trial_frame(rng: random.Random) -> pd.DataFrame:
    lines = []
    for epoch in range(1, LINES + 1):
        line = {"epoch": epoch}
        line.update({f"f{i}": rng.random() for i in range(COLUMNS["float"])})
        line.update({f"i{i}": rng.randrange(10**6) for i in range(COLUMNS["int"] - 1)})
        line.update({f"s{i}": rng.choice(["", "completed", "simclr/er/batch_size=16"]) for i in range(COLUMNS["str"])})
        line.update({f"b{i}": rng.random() < 0.5 for i in range(COLUMNS["bool"])})
        line.update({f"o{i}": None if epoch < LINES else "x" for i in range(COLUMNS["object"])})
        lines.append(line)
    return pd.DataFrame(lines)


def main() -> int:
    rng = random.Random(0)
    frames = [trial_frame(rng) for _ in range(TRIALS)]
    results = [SimpleNamespace(metrics_dataframe=frame, metrics={}) for frame in frames]
    assert all(result_rows(result) == frame.to_dict("records") for result, frame in zip(results, frames))
    sides = {"DataFrame.to_dict": lambda: [frame.to_dict("records") for frame in frames],
             "result_rows": lambda: [result_rows(result) for result in results]}
    cpu_ms = {name: [] for name in sides}
    for _ in range(ROUNDS):
        for name, read in sides.items():
            start = time.process_time()
            read()
            cpu_ms[name].append((time.process_time() - start) / TRIALS * 1e3)
    print(f"Reading a trial's {LINES} result lines ({sum(COLUMNS.values())} columns), {TRIALS} trials, "
          f"{ROUNDS} interleaved rounds (median, min-max):")
    for name, values in cpu_ms.items():
        print(f"  {name:<18} CPU {statistics.median(values):6.2f} ms per trial ({min(values):.2f}-{max(values):.2f})")
    ratio = statistics.median(cpu_ms["DataFrame.to_dict"]) / statistics.median(cpu_ms["result_rows"])
    print(f"  DataFrame.to_dict / result_rows: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
