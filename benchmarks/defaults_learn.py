"""Do the defaults learn on real photos? SimCLR at ``TrialConfig``'s defaults on an ImageFolder.

Issue 17's check, as a user would run it: real grey photos (FashionMNIST's, from Debian's
``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist``) saved as PNG class folders
(``<out>/photos/{train,test}/<class>/*.png``), then the equivalent of

    er-tune train --method simclr --variant original --dataset imagefolder \\
        --set data_root=<out>/photos --set image_size=32 --epochs 20

with every other key at its default (``backbone: auto``, ``augment: auto``). Prints the backbone and
preset ``auto`` chose, the untrained network's kNN top-1 (the trial's own kNN, same bank and
queries, same seed), the trained one after each epoch, and the gain; goal: >= 0.05 within 20 epochs.

Run: ``.venv/bin/python benchmarks/defaults_learn.py [--train-per-class 400] [--epochs 20]``. Without
the dataset's files it prints why and exits 0 (nothing is ever downloaded).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"


def export_imagefolder(source_root: str, out: str, *, train_per_class: int, test_per_class: int) -> str:
    """Write the first ``train_per_class``/``test_per_class`` images of each class as grey PNGs."""
    from PIL import Image

    from er_core.data import load_dataset

    bundle = load_dataset("fashion_mnist", root=source_root, image_size=28, train_size=60000,
                          eval_size=10000, seed=0)
    photos = os.path.join(out, "photos")
    for split, images, labels, per_class in (("train", bundle.train_images, bundle.train_labels, train_per_class),
                                             ("test", bundle.eval_images, bundle.eval_labels, test_per_class)):
        for label in range(bundle.num_classes):
            folder = os.path.join(photos, split, f"class_{label}")
            os.makedirs(folder, exist_ok=True)
            picked = (labels == label).nonzero().flatten()[:per_class]
            for index in picked.tolist():
                Image.fromarray(images[index, 0].numpy(), mode="L").save(os.path.join(folder, f"{index}.png"))
    return photos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=DEFAULT_ROOT)
    parser.add_argument("--train-per-class", type=int, default=400)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="photos and trial directory (default: a temporary directory)")
    args = parser.parse_args(argv)

    from er_core.config import TrialConfig, data_root_problem

    problem = data_root_problem("fashion_mnist", args.root)
    if problem:
        print(f"skipped: {problem} (apt-get install dataset-fashion-mnist)")
        return 0
    torch.set_num_threads(args.threads)
    out = args.out or tempfile.mkdtemp(prefix="defaults_learn_")
    photos = export_imagefolder(args.root, out, train_per_class=args.train_per_class,
                                test_per_class=args.test_per_class)

    from trainers.baselines import random_network_knn
    from trainers.reporters import LocalReporter
    from trainers.trial_data import load_trial_data
    from trainers.trial import run_trial

    config = TrialConfig().with_overrides(["method=simclr", "variant=original", "dataset=imagefolder",
                                           f"data_root={photos}", "image_size=32", f"epochs={args.epochs}",
                                           f"seed={args.seed}", "device=cpu"])
    data = load_trial_data(config)
    config = config.resolved(data.grayscale)
    print(f"ImageFolder {photos}: {data.train_images.shape[0]} train / {data.eval_images.shape[0]} test photos; "
          f"auto chose backbone {config.backbone}, augment {config.augment}; batch {config.batch_size}, "
          f"lr {config.lr}, {config.epochs} epochs, {torch.get_num_threads()} threads", flush=True)
    untrained = random_network_knn(config, data)
    print(f"untrained {config.backbone}: knn_top1 {untrained:.3f}", flush=True)
    start = time.perf_counter()
    summary = run_trial(config, data, LocalReporter(os.path.join(out, "simclr"), config.to_dict()),
                        log=lambda line: print(f"  {line}", flush=True) if line.startswith("epoch") else None)
    seconds = time.perf_counter() - start
    final = summary.final_metrics
    gain = final["knn_top1"] - untrained
    print(f"SimCLR at the defaults: {summary.status} after {summary.epochs_completed} epochs in {seconds:.0f} s; "
          f"knn_top1 {final['knn_top1']:.3f} (untrained {untrained:.3f}, gain {gain:+.3f}; goal >= +0.05), "
          f"linear_top1 {final['linear_top1']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
