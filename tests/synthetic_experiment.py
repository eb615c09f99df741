"""Build synthetic experiment directories in the on-disk format of docs/ARCHITECTURE.md."""
from __future__ import annotations

import json
import os


def write_trial(phase_dir: str, name: str, *, method="simclr", variant="original", seed=0,
                epochs=3, n_lines=None, stop_reason="completed", knn=None, entropy=None,
                grid=None, searched=None, events=(), error=None, params=True, study="syn",
                group=None, dataset="shapes", graded=True) -> str:
    """Write one trial dir; ``knn``/``entropy`` are per-epoch lists (defaults derived).
    ``graded``: its lines carry the partial-collapse criteria's inputs (er_core.rules.GRADE_METRICS);
    False writes a trial from before they existed."""
    d = os.path.join(phase_dir, name)
    os.makedirs(d, exist_ok=True)
    grid = dict(grid or {})
    searched = dict(searched or {})
    n = epochs if n_lines is None else n_lines
    knn = knn or [0.1 + 0.1 * e for e in range(n)]
    entropy = entropy or [2.0 + 0.5 * e for e in range(n)]
    if params:
        p = {"method": method, "variant": variant, "seed": seed, "epochs": epochs, "study": study,
             "dataset": dataset,
             "phase": os.path.basename(phase_dir),
             "group": group or f"{method}/{variant}/"
             + ",".join(f"{k}={v}" for k, v in grid.items()),
             "grid_axes": list(grid), "searched": list(searched), **grid, **searched}
        with open(os.path.join(d, "params.json"), "w") as f:
            json.dump(p, f)
    with open(os.path.join(d, "result.json"), "w") as f:
        for e in range(n):
            last = e == n - 1
            row = {"epoch": e + 1, "step": 10 * (e + 1), "loss": 1.0 / (e + 1),
                   "er_entropy": entropy[e], "knn_top1": knn[e], "rankme": 5.0 + e,
                   "collapsed": bool(last and stop_reason in ("collapsed", "diverged")),
                   "stop_reason": stop_reason if last and stop_reason else "",
                   "trial_id": name, "training_iteration": e + 1, "time_total_s": 2.0 * (e + 1),
                   "done": False}
            if graded:
                row.update({"rankme_projection": 4.0 + e, "knn_chance_p": 1e-6})
            f.write(json.dumps(row) + "\n")
    if events:
        with open(os.path.join(d, "collapse_events.jsonl"), "w") as f:
            for ev in events:
                f.write(json.dumps(ev) + "\n")
    if error is not None:
        with open(os.path.join(d, "error.txt"), "w") as f:
            f.write(error)
    return d


def event(kind="complete", severity="collapse", epoch=2, value=0.01, threshold=0.05) -> dict:
    return {"detector": kind, "kind": kind, "severity": severity, "epoch": epoch,
            "step": 10 * epoch, "value": value, "threshold": threshold, "message": kind}


def small_replicate(root: str) -> str:
    """Hand-computable case: simclr, grid batch_size=64, 4 seeds per variant.

    original: seeds 0..3, collapsed = seeds 0,1,2 (3/4), final knn 0.2, 0.3, 0.4, 0.5
    er:       seeds 0..3, collapsed = none (0/4),      final knn 0.5, 0.5, 0.7, 0.9
    paired diffs ER−orig = 0.3, 0.2, 0.3, 0.4 (mean 0.3).
    """
    ph = os.path.join(root, "replicate")
    ok = {"original": [0.2, 0.3, 0.4, 0.5], "er": [0.5, 0.5, 0.7, 0.9]}
    for var, finals in ok.items():
        for s, k in enumerate(finals):
            coll = var == "original" and s < 3
            write_trial(ph, f"t_{var}_{s}", variant=var, seed=s, epochs=3,
                        stop_reason="collapsed" if coll else "completed",
                        knn=[0.1, 0.1, k], entropy=[2.0, 2.5, 3.0 if var == "er" else 1.0],
                        grid={"batch_size": 64},
                        events=[event(epoch=3)] if coll else ())
    return root
