"""Share of a training step spent in the ER objective (goal: <= 3% at B=256, d=256).

Measures, in one run and on the same inputs, (a) a full training step of SimCLR-ER — batched
augmentation of two views, student forward on both, objective, backward, SGD step — and (b) the
objective's own forward + backward on detached projections of the same shape. Prints both and the
ratio (b)/(a). Run: ``.venv/bin/python benchmarks/er_cost.py [--image-size 32] [--backbone convnet]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from er_core.config import TrialConfig
from er_core.data.augment import make_augmenter
from er_core.models import build_network
from er_core.objectives import ObjectiveInputs, build_objective
from trainers.optim import build_optimizer


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--backbone", default="convnet")
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = TrialConfig(method=args.method, variant="er", backbone=args.backbone,
                         batch_size=args.batch_size, projector_dim=args.dim,
                         image_size=args.image_size)
    net = build_network(config)
    objective = build_objective(config.objective, config)
    optimizer = build_optimizer([net], config)
    augment = make_augmenter(objective.views, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    images = torch.randint(0, 256, (args.batch_size, 3, args.image_size, args.image_size),
                           dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)

    def full_step():
        v1, v2 = augment(images, generator)
        o1, o2 = net(v1), net(v2)
        loss = objective(ObjectiveInputs(z1=o1.z, z2=o2.z, p1=o1.p, p2=o2.p)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    z1 = torch.randn(args.batch_size, args.dim, requires_grad=True)
    z2 = torch.randn(args.batch_size, args.dim, requires_grad=True)

    def objective_only():
        loss = objective(ObjectiveInputs(z1=z1, z2=z2)).loss
        loss.backward()
        z1.grad = z2.grad = None

    step_s = timed(full_step, args.repeats)
    objective_s = timed(objective_only, args.repeats * 4)
    print(f"threads={torch.get_num_threads()} B={args.batch_size} d={args.dim} "
          f"{args.backbone}@{args.image_size}px objective={config.objective}")
    print(f"full training step     : {step_s * 1e3:9.2f} ms")
    print(f"ER objective fwd+bwd   : {objective_s * 1e3:9.2f} ms")
    print(f"share of the step      : {objective_s / step_s:9.2%}  (goal <= 3%)")


if __name__ == "__main__":
    main()
