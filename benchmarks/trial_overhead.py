"""Cost of a trial's instrumentation: ``run_trial`` against a bare training loop (goal >= 0.97).

Both sides train the same network, objective, augmentation and data for the same number of steps
in this one process. Printed ratios (ours / bare, higher is better):

- ``training``: images/s of the optimisation steps alone — the bare loop against ``run_trial``'s
  own ``images_per_s`` (which includes the finiteness checks of loss and gradients, the LR and EMA
  schedules, per-step TensorBoard scalars). This is the instrumentation cost the goal is about.
- ``end to end``: wall time of everything ``run_trial`` does per epoch — additionally the
  diagnostics on the fixed evaluation set (kNN, KDE entropy, reconstruction, RankMe), the collapse
  monitor, the checkpoint and ``result.json`` — against the bare loop's wall time.

Run: ``.venv/bin/python benchmarks/trial_overhead.py [--method byol] [--epochs 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from er_tune.config import TrialConfig
from er_tune.data.augment import make_augmenter
from er_tune.models import EMATeacher, build_network, ema_momentum
from er_tune.objectives import ObjectiveInputs, build_objective
from trainers.optim import build_optimizer
from trainers.reporters import LocalReporter
from trainers.trainable import load_trial_data
from trainers.trial import run_trial


def bare_loop(config: TrialConfig, data) -> tuple[float, int]:
    """The same training, nothing else: returns (seconds, images)."""
    torch.manual_seed(config.seed)
    net = build_network(config)
    objective = build_objective(config.objective, config)
    teacher = EMATeacher(net) if objective.needs_teacher else None
    optimizer = build_optimizer([net, objective], config)
    augment = make_augmenter(objective.views, data.mean, data.std)
    generator = torch.Generator().manual_seed(config.seed)
    n = data.train_images.shape[0]
    steps = n // config.batch_size
    images = 0
    start = time.perf_counter()
    for epoch in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        for i in range(steps):
            batch = data.train_images[order[i * config.batch_size:(i + 1) * config.batch_size]]
            v1, v2 = augment(batch, generator)
            o1, o2 = net(v1), net(v2)
            inputs = ObjectiveInputs(z1=o1.z, z2=o2.z, p1=o1.p, p2=o2.p, s1=o1.scores, s2=o2.scores)
            if teacher is not None:
                with torch.no_grad():
                    t1, t2 = teacher(v1), teacher(v2)
                inputs.t1, inputs.t2, inputs.ts1, inputs.ts2 = t1.z, t2.z, t1.scores, t2.scores
            loss = objective(inputs).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if teacher is not None:
                teacher.update(net, ema_momentum(config.ema, epoch * steps + i, config.epochs * steps))
            images += batch.shape[0]
    return time.perf_counter() - start, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", default="byol")
    parser.add_argument("--variant", default="original")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train-size", type=int, default=4096)
    parser.add_argument("--eval-size", type=int, default=1000)
    args = parser.parse_args()
    config = TrialConfig(method=args.method, variant=args.variant, epochs=args.epochs,
                         image_size=args.image_size, train_size=args.train_size,
                         eval_size=args.eval_size, knn_bank_size=args.eval_size, batch_size=256)
    data = load_trial_data(config)
    bare_loop(config.replace(epochs=1), data)  # warm-up: thread pools, allocator, first-call costs
    bare_seconds, bare_images = bare_loop(config, data)
    with tempfile.TemporaryDirectory() as trial_dir:
        start = time.perf_counter()
        run_trial(config, data, LocalReporter(trial_dir, config.to_dict()))
        ours_seconds = time.perf_counter() - start
        with open(os.path.join(trial_dir, "result.json")) as handle:
            lines = [json.loads(line) for line in handle]
    ours_train = sum(line["images_per_s"] for line in lines) / len(lines)
    bare_rate = bare_images / bare_seconds
    print(f"threads={torch.get_num_threads()} {config.objective} {config.backbone}@{config.image_size}px "
          f"B={config.batch_size} train={config.train_size} eval={config.eval_size} epochs={config.epochs}")
    print(f"bare loop            : {bare_rate:8.1f} img/s ({bare_seconds:.1f} s)")
    print(f"run_trial training   : {ours_train:8.1f} img/s   ratio {ours_train / bare_rate:.3f} (goal >= 0.97)")
    ours_end_to_end = bare_images / ours_seconds
    print(f"run_trial end to end : {ours_end_to_end:8.1f} img/s ({ours_seconds:.1f} s)   "
          f"ratio {ours_end_to_end / bare_rate:.3f} (includes per-epoch diagnostics + checkpoint)")


if __name__ == "__main__":
    main()
