"""Does SSL learn on ``shapes``? kNN top-1 of raw pixels, of a random backbone, and of each objective.

One dataset, one evaluation (the trial's own diagnostics: cosine kNN, k=20, temperature-weighted
votes, the first ``--bank`` training images as the labelled bank, the evaluation images as queries)
and one budget for every objective, all in this run:

- ``raw pixels``: kNN on the normalised pixel vectors;
- ``random <backbone>``: kNN on the features of the untrained network (seed ``--seed``);
- each of ``--methods`` x ``--variants`` trained with :func:`trainers.trial.run_trial` for
  ``--epochs`` epochs: final and best kNN top-1, wall time, status.

Run: ``.venv/bin/python benchmarks/shapes_learning.py [--epochs 30] [--image-size 32]``
(defaults: 32x32, 4,000 training images, batch 64, EMA 0.9, lr 0.3; trial directories under
``--out``, a temporary directory unless given, each one a normal trial for TensorBoard).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from er_core.config import TrialConfig
from trainers.baselines import random_network_knn, raw_pixel_knn
from trainers.reporters import LocalReporter
from trainers.trial_data import load_trial_data
from trainers.trial import run_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="simclr,byol,dino")
    parser.add_argument("--variants", default="original,er")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--eval-size", type=int, default=1000)
    parser.add_argument("--bank", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ema", type=float, default=0.9)
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--backbone", default="convnet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="trial directories (default: a temporary directory)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = TrialConfig(image_size=args.image_size, train_size=args.train_size, eval_size=args.eval_size,
                       knn_bank_size=args.bank, epochs=args.epochs, batch_size=args.batch_size,
                       ema=args.ema, lr=args.lr, backbone=args.backbone, seed=args.seed,
                       warmup_epochs=1, device="cpu")
    start = time.perf_counter()
    data = load_trial_data(base)
    print(f"shapes {args.image_size}x{args.image_size}: {data.train_images.shape[0]} train, "
          f"{data.eval_images.shape[0]} eval, bank {args.bank} ({time.perf_counter() - start:.1f} s); "
          f"{torch.get_num_threads()} threads", flush=True)
    rows = [("raw pixels", raw_pixel_knn(base, data), float("nan"), 0.0, "-")]
    print(f"  raw pixels: {rows[-1][1]:.3f}", flush=True)
    rows.append((f"random {args.backbone}", random_network_knn(base, data), float("nan"), 0.0, "-"))
    print(f"  random {args.backbone}: {rows[-1][1]:.3f}", flush=True)
    out = args.out or tempfile.mkdtemp(prefix="shapes_learning_")
    for method in args.methods.split(","):
        for variant in args.variants.split(","):
            config = base.replace(method=method, variant=variant)
            trial_dir = os.path.join(out, config.objective)
            knn: list[float] = []
            start = time.perf_counter()
            summary = run_trial(config, data, LocalReporter(trial_dir, config.to_dict()),
                                log=lambda line: knn.append(float(line.split("knn ")[1].split()[0]))
                                if line.startswith("epoch") else None)
            seconds = time.perf_counter() - start
            rows.append((config.objective, summary.final_metrics["knn_top1"], max(knn), seconds,
                         f"{summary.status} after {summary.epochs_completed} epochs"))
            print(f"  {config.objective}: knn per epoch {' '.join(f'{v:.3f}' for v in knn)} "
                  f"({seconds:.0f} s, {summary.status})", flush=True)
    print(f"\n{'representation':<16} {'knn_top1':>8} {'best':>6} {'wall s':>7}  status")
    for name, final, best, seconds, status in rows:
        best_text = f"{best:.3f}" if best == best else "-"
        print(f"{name:<16} {final:>8.3f} {best_text:>6} {seconds:>7.0f}  {status}")
    print(f"trial directories: {out}")


if __name__ == "__main__":
    main()
