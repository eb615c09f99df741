"""Augmentation throughput: our batched augmenter vs torchvision v2 applied per image in a loop.

Usage: python benchmarks/augment.py [--threads 2] [--batch 256] [--size 32] [--repeats 5]
Prints images/s (best of the repeats) for both on the same uint8 batch, and the ratio.
"""
from __future__ import annotations

import argparse
import time

import torch

from er_core.data.augment import AugmentConfig, BatchAugmenter


def _timed(fn, repeats: int) -> float:
    """Best of ``repeats`` timed calls after a warm-up (robust to other load on a shared machine)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from torchvision.transforms import v2

    images = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    # Same augmentation family as the torchvision pipeline below (no blur/solarise), one view.
    config = AugmentConfig(crop_scale=(0.08, 1.0), blur_p=0.0, solarize_p=0.0)
    ours = BatchAugmenter(config, config, (0.5,) * 3, (0.25,) * 3)
    generator = torch.Generator().manual_seed(0)
    tv = v2.Compose([
        v2.RandomResizedCrop(args.size, antialias=True), v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), v2.RandomGrayscale(0.2),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize((0.5,) * 3, (0.25,) * 3),
    ])

    def run_ours():
        ours(images, generator)  # two views

    def run_torchvision():
        torch.stack([tv(image) for image in images])
        torch.stack([tv(image) for image in images])

    t_ours = _timed(run_ours, args.repeats)
    t_tv = _timed(run_torchvision, max(1, args.repeats // 2))
    ours_ips, tv_ips = args.batch / t_ours, args.batch / t_tv
    print(f"batch {args.batch}x3x{args.size}x{args.size} uint8, {args.threads} threads, two views per image")
    print(f"ours (batched):          {ours_ips:10.0f} images/s")
    print(f"torchvision v2 per-image: {tv_ips:10.0f} images/s")
    print(f"ratio: {ours_ips / tv_ips:.1f}x")


if __name__ == "__main__":
    main()
