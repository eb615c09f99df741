"""Build synthetic experiment directories in the on-disk format of docs/ARCHITECTURE.md."""
from __future__ import annotations

import json
import os


def write_trial(phase_dir: str, name: str, *, method="simclr", variant="original", seed=0,
                epochs=3, n_lines=None, stop_reason="completed", knn=None, entropy=None,
                grid=None, searched=None, events=(), error=None, params=True, study="syn",
                group=None, dataset="shapes", graded=True, linear=None, untrained=None) -> str:
    """Write one trial dir; ``knn``/``entropy`` are per-epoch lists (defaults derived).
    ``graded``: its lines carry the partial-collapse criteria's inputs (er_core.rules.GRADE_METRICS);
    False writes a trial from before they existed. ``linear``: the final linear_top1, on the last
    line only (the trainer probes at a trial's end); ``untrained``: the untrained network's kNN
    top-1, written to untrained.json as the trainer does."""
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
            if last and linear is not None:
                row["linear_top1"] = linear
            f.write(json.dumps(row) + "\n")
    if untrained is not None:
        with open(os.path.join(d, "untrained.json"), "w") as f:
            json.dump({"knn_top1": untrained, "std_ratio": 0.02}, f)
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


def robustness_experiment(root: str, planted: float = 0.0, seeds: int = 6, sd: float = 0.01,
                          reference: str | None = "{ema: 0.99, batch_size: 256}") -> str:
    """BYOL (grid ema x batch_size) and SimCLR (batch_size only: no teacher) at 0.70 (original) /
    0.68 (ER) final accuracy at the reference ema=0.99, batch_size=256, every variant losing 0.05
    at ema=0.8 and 0.03 at batch_size=32 (added when both), seed noise N(0, sd). ``planted``: an
    extra drop of BYOL's original at ema=0.8, batch_size=256 only. ``study.yaml`` names
    ``reference`` (none when None). Linear top-1 is the kNN value + 0.05; the untrained network's
    kNN 0.30 + 0.01 x seed."""
    import numpy as np

    rng = np.random.default_rng(0)
    phase = os.path.join(root, "replicate")
    for method, emas in (("byol", (0.8, 0.99)), ("simclr", (None,))):
        for variant, base in (("original", 0.70), ("er", 0.68)):
            for ema in emas:
                for batch in (32, 256):
                    drop = 0.05 * (ema == 0.8) + 0.03 * (batch == 32)
                    if method == "byol" and variant == "original" and ema == 0.8 and batch == 256:
                        drop += planted
                    grid = {"batch_size": batch} if ema is None else {"batch_size": batch, "ema": ema}
                    for seed in range(seeds):
                        knn = float(base - drop + rng.normal(0.0, sd))
                        write_trial(phase, f"{method}_{variant}_{ema}_{batch}_{seed}", method=method,
                                    variant=variant, seed=seed, grid=grid, knn=[0.1, 0.2, knn],
                                    linear=knn + 0.05, dataset="cifar10", untrained=0.3 + 0.01 * seed)
    lines = ["name: syn", "methods: [byol, simclr]", "grid: {ema: [0.8, 0.99], batch_size: [32, 256]}"]
    if reference is not None:
        lines.append(f"reference: {reference}")
    with open(os.path.join(root, "study.yaml"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return root
