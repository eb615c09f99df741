"""Does SSL learn on a real dataset? kNN and linear-probe top-1 of raw pixels, of the untrained
network, and of each objective and its ER twin, for one or more seeds.

One dataset (FashionMNIST from ``/usr/share/datasets/fashion-mnist`` by default, the files of
Debian's ``dataset-fashion-mnist`` package; ``--dataset``/``--root`` choose another), one
evaluation (the trial's own: cosine kNN, k=20, and the linear probe of
:mod:`trainers.linear_probe`, the first ``--bank`` training images as the labelled bank, the
evaluation images as queries) and one budget for every objective, all in this run:

- ``raw pixels``: kNN and linear probe on the normalised pixel vectors;
- ``random <backbone>``: the same on the features of the untrained network (seed ``--seed``);
- each of ``--methods`` x ``--variants`` trained with :func:`trainers.trial.run_trial` for
  ``--epochs`` epochs: final kNN and linear top-1, wall time, training images/s, status.

Run: ``.venv/bin/python benchmarks/real_learning.py [--seeds 0,1] [--epochs N]``. When the dataset's
files are absent it prints why and exits 0 (nothing is ever downloaded). Hyperparameters not given
on the command line are :class:`~er_core.config.TrialConfig`'s defaults (``--set key=value`` for
any other field); the defaults here (``resnet_small`` at the native 28 px, 512 features, 3 epochs,
batch 64, lr 0.3, temperature 0.2, one warm-up epoch, 10,000 training images, all of them the
labelled bank, 2,000 evaluation images) are the real-data setting of the README. The bank is the
same 10,000 images for every row, raw pixels included, so the linear probes are comparable.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

from er_core.config import TrialConfig, data_root_problem
from trainers.baselines import random_network_knn, random_network_linear, raw_pixel_knn, raw_pixel_linear
from trainers.reporters import LocalReporter
from trainers.trial_data import load_trial_data
from trainers.trial import run_trial

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--root", default=DEFAULT_ROOT)
    parser.add_argument("--methods", default="simclr,byol")
    parser.add_argument("--variants", default="original,er")
    parser.add_argument("--seeds", default="0,1", help="comma-separated trial seeds")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--eval-size", type=int, default=2000)
    parser.add_argument("--bank", type=int, default=10000)
    parser.add_argument("--backbone", default="resnet_small")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--temperature", type=float, default=0.2, help="SimCLR's (and its ER twin's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="any TrialConfig key=value (repeatable)")
    parser.add_argument("--skip-baselines", action="store_true", help="only the trained rows")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="trial directories (default: a temporary directory)")
    return parser.parse_args(argv)


def base_config(args: argparse.Namespace) -> TrialConfig:
    values = dict(dataset=args.dataset, data_root=args.root, image_size=args.image_size,
                  train_size=args.train_size, eval_size=args.eval_size, knn_bank_size=args.bank,
                  epochs=args.epochs, backbone=args.backbone, batch_size=args.batch_size, lr=args.lr,
                  temperature=args.temperature, warmup_epochs=1, device="cpu")
    return TrialConfig(**values).with_overrides(args.overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    base = base_config(args)
    problem = data_root_problem(base.dataset, base.data_root)
    if problem:
        print(f"skipped: {problem} (install the dataset or pass --dataset/--root)")
        return 0
    start = time.perf_counter()
    try:
        data = load_trial_data(base)
    except FileNotFoundError as error:
        print(f"skipped: {error}")
        return 0
    print(f"{base.dataset} {base.image_size}x{base.image_size}: {data.train_images.shape[0]} train, "
          f"{data.eval_images.shape[0]} eval, bank {min(base.knn_bank_size, data.train_images.shape[0])} "
          f"({time.perf_counter() - start:.1f} s); backbone {base.backbone}, batch {base.batch_size}, "
          f"lr {base.lr}, {base.epochs} epochs; {torch.get_num_threads()} threads", flush=True)
    out = args.out or tempfile.mkdtemp(prefix="real_learning_")
    rows: list[tuple] = []
    for seed in (int(s) for s in args.seeds.split(",")):
        config = base.replace(seed=seed)
        if not args.skip_baselines:
            rows.append((seed, "raw pixels", raw_pixel_knn(config, data), raw_pixel_linear(config, data),
                         0.0, 0.0, "-"))
            print(f"  seed {seed} raw pixels: knn {rows[-1][2]:.3f} linear {rows[-1][3]:.3f}", flush=True)
            rows.append((seed, f"random {config.backbone}", random_network_knn(config, data),
                         random_network_linear(config, data), 0.0, 0.0, "-"))
            print(f"  seed {seed} random {config.backbone}: knn {rows[-1][2]:.3f} linear {rows[-1][3]:.3f}",
                  flush=True)
        for method in args.methods.split(","):
            for variant in args.variants.split(","):
                trial = config.replace(method=method, variant=variant)
                trial_dir = os.path.join(out, f"seed{seed}", trial.objective)
                start = time.perf_counter()
                summary = run_trial(trial, data, LocalReporter(trial_dir, trial.to_dict()),
                                    log=lambda line: print(f"    {line}", flush=True)
                                    if line.startswith("epoch") else None)
                seconds = time.perf_counter() - start
                final = summary.final_metrics
                rows.append((seed, trial.objective, final["knn_top1"], final["linear_top1"], seconds,
                             final["images_per_s"], f"{summary.status} after {summary.epochs_completed} epochs"))
                print(f"  seed {seed} {trial.objective}: knn {final['knn_top1']:.3f} linear "
                      f"{final['linear_top1']:.3f} ({seconds:.0f} s)", flush=True)
    print(f"\n{'seed':>4} {'representation':<18} {'knn_top1':>8} {'linear':>7} {'wall s':>7} {'img/s':>6}  status")
    for seed, name, knn, linear, seconds, speed, status in rows:
        print(f"{seed:>4} {name:<18} {knn:>8.3f} {linear:>7.3f} {seconds:>7.0f} {speed:>6.0f}  {status}")
    print(f"trial directories: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
