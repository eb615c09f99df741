"""GPU packing: images/s per GPU when 1, 2, 4 or 8 trials share one GPU (``resources: {gpu: 1/k}``).

Small SSL trials (CIFAR ResNet-18 at 32 px, batch 256) leave most of an H100-class GPU idle: kernels
are short and the launch overhead is paid by one process at a time. Ray packs ``k`` trials on a GPU
when each asks for ``gpu: 1/k``. This script measures what that buys, the way Tune runs it: ``k x G``
Ray tasks with ``num_gpus=1/k``, each training SimCLR on ``resnet18_cifar`` with bf16 autocast,
channels_last and its training images resident on the GPU (uint8, indexed and augmented there, so no
host-to-device copy per step). All tasks warm up, meet at a barrier, then train for the same
``--seconds`` window; the figure is ``sum(images) / seconds / G`` and the printed ratio is against
1 trial per GPU, measured in the same run.

Without CUDA (or with ``--dry-run``) it runs the same path on the CPU with tiny sizes and a logical
GPU, to check the script end to end; the figures are then not GPU measurements and it says so.

Run: ``.venv/bin/python benchmarks/gpu_packing.py [--trials 1 2 4 8] [--seconds 30] [--dry-run]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import ray
import torch


@ray.remote(num_cpus=0)
class Barrier:
    """Releases every waiting task at one common start time once ``n`` have arrived."""

    def __init__(self, n: int) -> None:
        self.n, self.arrived, self.start = n, 0, 0.0
        self.event = asyncio.Event()

    async def wait(self) -> float:
        self.arrived += 1
        if self.arrived == self.n:
            self.start = time.time() + 0.5
            self.event.set()
        await self.event.wait()
        return self.start


def train_window(settings: dict, barrier, seconds: float) -> dict:
    """One packed trial: warm up, wait at the barrier, count images trained in the window."""
    from er_core.config import TrialConfig
    from er_core.data import load_dataset
    from er_core.data.augment import make_augmenter
    from er_core.models import build_network
    from er_core.objectives import ObjectiveInputs, build_objective
    from trainers.optim import build_optimizer

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(1)
    config = TrialConfig.from_dict({"method": "simclr", "variant": "original", "backbone": "resnet18_cifar",
                                    "image_size": settings["image_size"], "batch_size": settings["batch_size"],
                                    "projector_dim": 128, "projector_hidden_dim": 512})
    data = load_dataset("shapes", image_size=settings["image_size"], train_size=settings["train_size"],
                        eval_size=64, seed=0)
    images = data.train_images.to(device)  # resident: indexed and augmented on the device
    net = build_network(config).to(device)
    memory_format = torch.channels_last if cuda else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    objective = build_objective(config.objective, config).to(device)
    optimizer = build_optimizer([net, objective], config)
    augment = make_augmenter(objective.views, data.mean, data.std)
    generator = torch.Generator(device=device).manual_seed(0)
    batch = config.batch_size

    def step() -> None:
        index = torch.randint(0, images.shape[0], (batch,), device=device, generator=generator)
        view1, view2 = augment(images[index], generator)
        view1 = view1.contiguous(memory_format=memory_format)
        view2 = view2.contiguous(memory_format=memory_format)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda):
            out1, out2 = net(view1), net(view2)
        loss = objective(ObjectiveInputs(z1=out1.z.float(), z2=out2.z.float())).loss
        loss.backward()
        optimizer.step()

    for _ in range(settings["warmup_steps"]):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = ray.get(barrier.wait.remote())
    time.sleep(max(0.0, start - time.time()))
    steps, end = 0, start + seconds
    while time.time() < end:
        step()
        steps += 1
        if cuda and steps % 8 == 0:
            torch.cuda.synchronize()  # keep the queue short so the window boundary is honest
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.time() - start
    return {"images": steps * batch, "elapsed": elapsed, "device": str(device),
            "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0}


def measure(per_gpu: int, gpus: int, settings: dict, seconds: float, cpus: int) -> dict:
    n = per_gpu * gpus
    barrier = Barrier.remote(n)
    task = ray.remote(train_window).options(num_gpus=1.0 / per_gpu, num_cpus=min(1.0, cpus / n))
    results = ray.get([task.remote(settings, barrier, seconds) for _ in range(n)])
    ray.kill(barrier)
    window = max(r["elapsed"] for r in results)
    total = sum(r["images"] for r in results) / window
    return {"per_gpu": per_gpu, "images_per_s_per_gpu": total / gpus, "per_trial": total / n,
            "peak_mib": max(r["peak_mib"] for r in results), "device": results[0]["device"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[1, 2, 4, 8], help="trials per GPU")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window per setting")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train-size", type=int, default=8192)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (automatic without CUDA)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    dry = args.dry_run or not torch.cuda.is_available()
    settings = {"batch_size": args.batch_size, "image_size": args.image_size,
                "train_size": args.train_size, "warmup_steps": 10}
    seconds, gpus = args.seconds, torch.cuda.device_count()
    if dry:
        settings = {"batch_size": 16, "image_size": 16, "train_size": 256, "warmup_steps": 1}
        seconds, gpus = min(seconds, 2.0), 1
        print("DRY RUN: no CUDA device (or --dry-run): CPU, 16 px, batch 16, 2 s windows, one logical "
              "GPU. These figures exercise the script; they are not GPU measurements.")
    cpus = os.cpu_count() or 1
    ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, logging_level="ERROR")
    try:
        name = "CPU (dry run)" if dry else torch.cuda.get_device_name(0)
        precision = "fp32 (bf16 autocast and channels_last are CUDA-only)" if dry else "bf16 autocast + channels_last"
        print(f"resnet18_cifar SimCLR, batch {settings['batch_size']}, {settings['image_size']} px, "
              f"{precision}, data resident on the device; {gpus} x {name}; {seconds:.0f} s per setting")
        print(f"{'trials/GPU':>10} {'images/s per GPU':>17} {'ratio to 1':>11} {'per trial':>10} {'peak MiB/trial':>15}")
        base = None
        for per_gpu in args.trials:
            row = measure(per_gpu, gpus, settings, seconds, cpus)
            base = base or row["images_per_s_per_gpu"]
            print(f"{per_gpu:>10} {row['images_per_s_per_gpu']:>17.0f} {row['images_per_s_per_gpu'] / base:>11.2f} "
                  f"{row['per_trial']:>10.0f} {row['peak_mib']:>15.0f}", flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
