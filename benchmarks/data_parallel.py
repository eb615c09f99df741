"""Images/s of one trial's training steps at 1 and 2 workers on CPU, and at 1/2/4/8 GPUs.

Each measurement spawns the workers as processes of one ``torch.distributed`` group (Gloo on CPU,
NCCL on GPU; a world of one runs without a group, as a ``workers: 1`` trial does), builds the trial's
state and its :class:`~trainers.steps.TrainingStep`, trains one warm-up epoch, then times
``--epochs`` epochs of steps (the per-epoch diagnostics are not timed: they run on worker 0 only,
whatever the number of workers). ``batch_size`` is the global batch, so the work per step is the same
at every world size and scaling efficiency = images/s(W) / (W x images/s(1)).

On CPU each worker gets ``--threads`` torch threads (default 1), so 2 workers use twice the cores of
1 (2 cores: the whole machine). Run on a quiet machine; the figures are only comparable within one run.

``--loader`` measures reading instead of training: images/s of decoding and resizing the files of an
ImageFolder (``--root``, or JPEGs generated at ``--source-size``, ImageNet's typical 500x375 by
default) with the streaming loader of ``streaming: true`` (:class:`er_core.data.stream.FileBatches`
fed by a :class:`~er_core.data.stream.ShardedBatchSampler`) and with torchvision's
``datasets.ImageFolder`` + ``torch.utils.data.DataLoader`` (``Resize((size, size))`` bilinear +
``PILToTensor``: the same RGB conversion, resize and uint8 tensors), side by side in one run: the same
files in the same order, ``--loader-workers`` processes each (torch's default start method for
torchvision's loader, the fork server for ours), batch ``--batch-size``, persistent workers, the first
pass timed apart (worker start-up) and ``--passes`` passes after it, the two loaders alternating.
It also checks that the two give bit-identical batches.

    PYTHONPATH=. python benchmarks/data_parallel.py                      # CPU, 1 and 2 workers
    PYTHONPATH=. python benchmarks/data_parallel.py --gpu --backbone resnet50 --image-size 224 \\
        --batch-size 1024 --train-size 16384                             # 1, 2, 4, 8 GPUs as present
    PYTHONPATH=. python benchmarks/data_parallel.py --loader --image-size 224 --batch-size 64 \\
        --loader-workers 2 --files 1024                                  # streaming vs torchvision
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from er_core.config import TrialConfig
from er_core.data import DatasetBundle
from trainers.distributed import World
from trainers.state import build_state
from trainers.steps import TrainingStep


class _NoLog:
    def step_scalars(self, step: int, loss: float, lr: float) -> None:
        pass


def synthetic_data(train_size: int, image_size: int) -> DatasetBundle:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (train_size, 3, image_size, image_size), dtype=torch.uint8, generator=generator)
    labels = torch.arange(train_size) % 10
    return DatasetBundle(name="synthetic", num_classes=10, train_images=images, train_labels=labels,
                         eval_images=images[:64], eval_labels=labels[:64], mean=(0.5,) * 3, std=(0.25,) * 3)


def measure(rank: int, world_size: int, args: argparse.Namespace, out: str) -> None:
    torch.set_num_threads(args.threads)
    device = "cuda" if args.gpu else "cpu"
    if args.gpu:
        torch.cuda.set_device(rank)
    if world_size > 1:
        dist.init_process_group("nccl" if args.gpu else "gloo", init_method=f"file://{out}.init",
                                rank=rank, world_size=world_size)
    try:
        config = TrialConfig(method=args.method, variant=args.variant, backbone=args.backbone,
                             image_size=args.image_size, train_size=args.train_size, eval_size=64,
                             batch_size=args.batch_size, epochs=args.epochs + 1, warmup_epochs=0,
                             device=device, world_size=world_size, knn_bank_size=64)
        data = synthetic_data(args.train_size, args.image_size)
        state = build_state(config, data, World.current())
        step_fn = TrainingStep(state, data)
        step_fn.run_epoch(1, _NoLog())  # warm-up: allocation, cuDNN autotuning, Gloo connections
        if args.gpu:
            torch.cuda.synchronize()
        start = time.perf_counter()
        images = 0
        for epoch in range(2, args.epochs + 2):
            images += step_fn.run_epoch(epoch, _NoLog()).images
        if args.gpu:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        if rank == 0:
            with open(out, "w", encoding="utf-8") as handle:
                handle.write(f"{images / seconds}")
    finally:
        if world_size > 1:
            dist.destroy_process_group()


def images_per_s(world_size: int, args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result")
        mp.spawn(measure, args=(world_size, args, out), nprocs=world_size, join=True)
        with open(out, encoding="utf-8") as handle:
            return float(handle.read())


def write_jpegs(root: str, files: int, width: int, height: int, classes: int = 10) -> None:
    """``root/c<k>/<i>.jpg``: smooth random photos (noise at 1/8 scale, bicubic up), JPEG quality 90."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for index in range(files):
        directory = os.path.join(root, f"c{index % classes}")
        os.makedirs(directory, exist_ok=True)
        small = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
        Image.fromarray(small).resize((width, height), Image.BICUBIC).save(
            os.path.join(directory, f"{index:06d}.jpg"), quality=90)


def compare_loaders(args: argparse.Namespace) -> None:
    """Images/s of the streaming loader against torchvision's ImageFolder + DataLoader (module docstring)."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from er_core.data.stream import FileBatches, ImageFiles, ShardedBatchSampler

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            root = os.path.join(tmp, "folder")
            width, height = (int(v) for v in args.source_size.split("x"))
            start = time.perf_counter()
            write_jpegs(root, args.files, width, height)
            print(f"wrote {args.files} JPEG files of {width}x{height} in {time.perf_counter() - start:.1f} s")
        size = args.image_size
        resize = transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BILINEAR)
        folder = datasets.ImageFolder(root, transform=transforms.Compose([resize, transforms.PILToTensor()]))
        files = ImageFiles.from_samples(root, folder.samples, size)  # the same files, in the same order
        mbytes = float(files.sizes.sum()) / 2**20
        order = torch.randperm(len(files), generator=torch.Generator().manual_seed(0))
        sampler = ShardedBatchSampler(order, args.batch_size)
        workers = args.loader_workers
        ours = FileBatches(files, workers=workers)
        theirs = DataLoader(folder, batch_sampler=sampler, num_workers=workers, persistent_workers=workers > 0)
        passes = {"streaming": lambda: ours.batches(sampler), "torchvision": lambda: (x for x, _ in theirs)}
        print(f"{len(files)} files ({mbytes:.0f} MB) decoded + resized to {size} px, batch {args.batch_size} "
              f"({len(sampler)} batches a pass), {workers} loader processes each, {args.passes} timed passes")
        first, kept = {}, {}
        for name, make in passes.items():  # the first pass: worker start-up; its batches are compared
            start = time.perf_counter()
            kept[name] = list(make())
            first[name] = time.perf_counter() - start
        identical = all(torch.equal(a, b) for a, b in zip(kept["streaming"], kept["torchvision"]))
        del kept
        seconds = {name: 0.0 for name in passes}
        for _ in range(args.passes):
            for name, make in passes.items():
                start = time.perf_counter()
                for _batch in make():
                    pass
                seconds[name] += time.perf_counter() - start
        ours.close()
        del theirs
        images = len(sampler) * args.batch_size * args.passes
        rates = {name: images / seconds[name] for name in passes}
        labels = {"streaming": "er-tune streaming (FileBatches, forkserver)",
                  "torchvision": "torchvision ImageFolder + DataLoader (default start)"}
        for name in passes:
            print(f"  {labels[name]:<52} {rates[name]:8.1f} images/s   first pass {first[name]:6.1f} s")
        print(f"  ratio streaming / torchvision: {rates['streaming'] / rates['torchvision']:.2f}   "
              f"identical uint8 batches: {'yes' if identical else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--variant", default="er")
    parser.add_argument("--backbone", default="convnet")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch")
    parser.add_argument("--train-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per CPU worker")
    parser.add_argument("--gpu", action="store_true", help="measure 1, 2, 4, 8 GPUs (as many as present)")
    parser.add_argument("--loader", action="store_true",
                        help="measure reading an ImageFolder: streaming loader vs torchvision (no training)")
    parser.add_argument("--root", help="--loader: an ImageFolder <root>/<class>/* (default: generated JPEGs)")
    parser.add_argument("--files", type=int, default=1024, help="--loader: JPEG files to generate")
    parser.add_argument("--source-size", default="500x375", help="--loader: generated files' WIDTHxHEIGHT")
    parser.add_argument("--loader-workers", type=int, default=2, help="--loader: loader processes of each")
    parser.add_argument("--passes", type=int, default=2, help="--loader: timed passes after the first")
    args = parser.parse_args()
    if args.loader:
        compare_loaders(args)
        return
    if args.gpu and not torch.cuda.is_available():
        print("--gpu: no CUDA device visible; nothing measured")
        return
    counts = [n for n in (1, 2, 4, 8) if n <= torch.cuda.device_count()] if args.gpu else [1, 2]
    kind = "GPU" if args.gpu else f"CPU worker ({args.threads} thread(s))"
    print(f"{args.method}/{args.variant}, {args.backbone} at {args.image_size} px, global batch {args.batch_size}, "
          f"{args.train_size} images, {args.epochs} timed epochs")
    base = None
    for count in counts:
        rate = images_per_s(count, args)
        base = base or rate
        print(f"  {count} x {kind}: {rate:8.1f} images/s   "
              f"speed-up {rate / base:4.2f}   scaling efficiency {rate / (count * base):4.2f}")


if __name__ == "__main__":
    main()
