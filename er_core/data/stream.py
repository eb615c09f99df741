"""Reading an ImageFolder's training split from its files every epoch (``streaming: true``).

In memory (the default) every training image is decoded once into the bundle's uint8 tensor. A
streamed split keeps only its file index in the bundle (:class:`ImageFiles`: paths relative to the
data root, byte sizes, labels); each step's images are decoded from the files by a
``torch.utils.data.DataLoader`` in ``loader_workers`` worker processes (0: in the training process)
and handed to the trainer as uint8 [b, 3, H, W], which augments them on the trial's device as it does
the in-memory ones.

What a streamed epoch reads, and in which order, is what the in-memory trainer indexes:
:class:`ShardedBatchSampler` walks the epoch's permutation (drawn by the trainer from its data-order
generator) one global batch per step and yields this worker's contiguous shard of it
(:func:`contiguous_shard`, the rule :meth:`trainers.distributed.World.shard` applies), so every
sample is read once per epoch across the workers, the workers' shards are disjoint, and a decoded
image is bit-identical to the in-memory bundle's (:func:`decode_image` is the one decoder of both
paths). Training is therefore the same, step for step, streamed or not (``tests/test_stream.py``).

Memory. A loader process holds the batch it decodes; the loader keeps at most
``loader_workers x PREFETCH_FACTOR`` batches of ``batch_size / world_size`` images in flight (shared
memory), plus the one being trained on. At ImageNet-100's 224 px and a local batch of 512 that is
``6 x 2 x 512 x 150,528`` bytes = 0.9 GB per training process with 6 loader workers, whatever the
dataset's size. The decoded dataset is never held.

Loader processes start from a fork server (``multiprocessing`` context ``forkserver``), not by forking
the training process: a trial runs in a Ray worker with gRPC and Gloo/NCCL threads, a CUDA context and
an OpenMP pool, and ``fork`` of a multi-threaded process may deadlock the child on a lock another
thread held (Python 3.12 warns about it; 3.14 makes ``forkserver`` the POSIX default); a forked
loader would also hold a copy-on-write view of the trainer (its model, its bank). ``spawn`` is as safe
but every loader process would import torch afresh (here about 3 s and 280 MB of private memory
each). The fork server imports this module (torch, PIL) once, freezes those objects
out of the garbage collector's reach (:mod:`er_core.data.loader_preload`) and forks each loader from
that clean, single-threaded process, so a loader starts in a fraction of a second and shares those
pages (14 MB private each, measured by ``tests/test_stream_memory.py``; without the freeze, in a
run started from a script, a loader's collections had copied about 100 MB into it). The server is one extra process per training process,
started with its first loader. Loaders are persistent: they live as long as the trial's loader, not one
epoch. Like every non-``fork`` start method, it needs a script that trains with ``loader_workers > 0``
to guard its entry point with ``if __name__ == "__main__":`` (er-tune's commands and Ray's workers do).

Paths live in one numpy byte buffer with offsets, not a list of ``str``: a loader process that reads
a list of Python objects touches their reference counts and so copies every page holding them
(pytorch/pytorch#13246), and the buffer pickles in one piece to each loader and through Ray's object
store. Decoding happens on the CPU, in the loader processes (no GPU JPEG decoding).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

PREFETCH_FACTOR = 2  # batches each loader process decodes ahead (torch's default; memory grows with it)
LOADER_START_METHOD = "forkserver"
DECODE_CHUNK = 256  # images per batch when a split is decoded whole (the kNN bank, the test split)


def decode_image(path: str, image_size: int) -> torch.Tensor:
    """uint8 [3, image_size, image_size] of the image file ``path``.

    torchvision's ImageFolder loader (PIL, ``convert("RGB")``: grey and palette images become three
    equal channels), then PIL's bilinear resize to ``image_size`` x ``image_size`` (the aspect ratio
    is not kept). The in-memory ImageFolder and the streamed one both decode with this function.
    """
    with open(path, "rb") as handle:  # torchvision.datasets.folder.pil_loader, without importing torchvision
        rgb = Image.open(handle).convert("RGB")
    rgb = rgb.resize((image_size, image_size), Image.BILINEAR)
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)


class ImageFiles(Dataset):
    """The image files of a split in a fixed order; item ``i`` is file ``i`` decoded (:func:`decode_image`).

    Args:
        root: the directory the paths are relative to (the study's ``data_root``).
        relative_paths: file paths under ``root``, in the split's order.
        labels: class index of each file.
        image_size: side of the decoded square images.
        sizes: byte size of each file (read from the disk when omitted); with the paths and labels
            they identify the split in :meth:`digest`.
    """

    def __init__(self, root: str, relative_paths: Sequence[str], labels: Sequence[int], image_size: int,
                 sizes: Sequence[int] | None = None) -> None:
        if len(labels) != len(relative_paths):
            raise ValueError(f"{len(relative_paths)} paths but {len(labels)} labels")
        encoded = [path.encode("utf-8") for path in relative_paths]
        self.root = root
        self.image_size = int(image_size)
        self._paths = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self._ends = np.cumsum([len(path) for path in encoded], dtype=np.int64)
        self.labels = torch.as_tensor(list(labels), dtype=torch.int64)
        if sizes is None:
            sizes = [os.path.getsize(os.path.join(root, path)) for path in relative_paths]
        self.sizes = np.asarray(sizes, dtype=np.int64)
        if self.sizes.shape != (len(relative_paths),):
            raise ValueError(f"{len(relative_paths)} paths but {self.sizes.shape[0]} sizes")

    @classmethod
    def from_samples(cls, root: str, samples: Sequence[tuple[str, int]], image_size: int) -> "ImageFiles":
        """From torchvision's ``(path, class_index)`` samples, their paths made relative to ``root``."""
        return cls(root, [os.path.relpath(path, root) for path, _ in samples], [label for _, label in samples],
                   image_size)

    def __len__(self) -> int:
        return int(self._ends.shape[0])

    def relative_path(self, index: int) -> str:
        start = int(self._ends[index - 1]) if index > 0 else 0
        return self._paths[start:int(self._ends[index])].tobytes().decode("utf-8")

    def path(self, index: int) -> str:
        return os.path.join(self.root, self.relative_path(index))

    def __getitem__(self, index: int) -> torch.Tensor:
        return decode_image(self.path(int(index)), self.image_size)

    def digest(self) -> bytes:
        """SHA-256 of what identifies the split without reading the images: ``image_size``, then the
        relative paths (NUL-separated, in order), the byte sizes and the labels. The data root is not
        part of it, so the same folder copied elsewhere gives the same digest; a file rewritten in
        place with the same size does not change it."""
        digest = hashlib.sha256()
        digest.update(f"image_size={self.image_size};files={len(self)}".encode())
        for index in range(len(self)):
            digest.update(self.relative_path(index).encode("utf-8") + b"\0")
        digest.update(self.sizes.astype("<i8").tobytes())
        digest.update(self.labels.numpy().astype("<i8").tobytes())
        return digest.digest()


def contiguous_shard(rows: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Worker ``rank``'s contiguous slice of a global batch ``rows`` (its length divisible by ``world_size``)."""
    if rows.shape[0] % world_size:
        raise ValueError(f"a global batch of {rows.shape[0]} does not split over {world_size} workers")
    local = rows.shape[0] // world_size
    return rows[rank * local:(rank + 1) * local]


class ShardedBatchSampler(Sampler[list[int]]):
    """This worker's shard of every global batch of an epoch's order (a DataLoader ``batch_sampler``).

    Step ``s`` yields ``contiguous_shard(order[s B:(s + 1) B], rank, world_size)`` as a list, for the
    ``len(order) // B`` full batches (the remainder of the epoch is not trained on, as in memory).
    Over the ranks the shards of a step are disjoint and cover its global batch, so every index of
    the trained part of ``order`` is read exactly once per epoch. ``order`` is the epoch's
    permutation, drawn by the trainer (a new one each epoch from its checkpointed generator).

    Examples:
        >>> order = torch.tensor([5, 2, 7, 0, 3, 6, 1, 4])
        >>> list(ShardedBatchSampler(order, 4, rank=1, world_size=2))
        [[7, 0], [1, 4]]
    """

    def __init__(self, order: torch.Tensor, batch_size: int, *, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
        if batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} does not split over {world_size} workers")
        self.order, self.batch_size, self.rank, self.world_size = order, batch_size, rank, world_size

    def __len__(self) -> int:
        return int(self.order.shape[0]) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(len(self)):
            rows = self.order[step * self.batch_size:(step + 1) * self.batch_size]
            yield contiguous_shard(rows, self.rank, self.world_size).tolist()


class _Plan(Sampler[Sequence[int]]):
    """The loader's batch sampler: the plan of the current pass (set before each ``iter(loader)``)."""

    def __init__(self) -> None:
        self.current: Iterable[Sequence[int]] = ()

    def __iter__(self) -> Iterator[Sequence[int]]:
        return iter(self.current)


def loader_context() -> multiprocessing.context.BaseContext:
    """The ``forkserver`` context, its server asked to import this module (torch, PIL)
    once, through :mod:`er_core.data.loader_preload`, so that the loaders it forks share them (module
    docstring). The preload list belongs to the process's one fork server and counts when that server
    starts (nothing else in er-tune starts it)."""
    context = multiprocessing.get_context(LOADER_START_METHOD)
    context.set_forkserver_preload(["__main__", "er_core.data.loader_preload"])
    return context


class FileBatches:
    """Batches decoded from :class:`ImageFiles` by a DataLoader with ``workers`` loader processes.

    ``workers`` 0 decodes in the calling process. With workers the loader is persistent (its
    processes serve every pass until :meth:`close`) and each prefetches :data:`PREFETCH_FACTOR`
    batches. A pass abandoned part-way (a diverged epoch) is discarded by the next one.
    """

    def __init__(self, files: ImageFiles, *, workers: int = 0, prefetch_factor: int = PREFETCH_FACTOR) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.files, self.workers, self.prefetch_factor = files, workers, prefetch_factor
        self._plan = _Plan()
        self._loader: DataLoader | None = None

    def _dataloader(self) -> DataLoader:
        if self._loader is None:
            options = {}
            if self.workers:
                options = dict(num_workers=self.workers, prefetch_factor=self.prefetch_factor,
                               persistent_workers=True, multiprocessing_context=loader_context())
            self._loader = DataLoader(self.files, batch_sampler=self._plan, **options)
        return self._loader

    def batches(self, plan: Iterable[Sequence[int]]) -> Iterator[torch.Tensor]:
        """uint8 [len(rows), 3, H, W] of the files ``rows``, for each (non-empty) ``rows`` of ``plan``, in
        order; one pass at a time (a new call ends the previous pass)."""
        loader = self._dataloader()
        self._plan.current = plan
        return iter(loader)

    def close(self) -> None:
        """Stop the loader processes (a later :meth:`batches` starts new ones)."""
        self._loader = None  # the persistent iterator's finaliser shuts its workers down


def decode_files(files: ImageFiles, count: int | None = None, *, workers: int = 0) -> torch.Tensor:
    """The first ``count`` (default: all) images of ``files`` as one uint8 [count, 3, H, W] tensor, in order."""
    count = len(files) if count is None else min(count, len(files))
    size = files.image_size
    images = torch.empty(count, 3, size, size, dtype=torch.uint8)
    plan = [list(range(start, min(start + DECODE_CHUNK, count))) for start in range(0, count, DECODE_CHUNK)]
    source = FileBatches(files, workers=min(workers, len(plan)))
    try:
        for rows, batch in zip(plan, source.batches(plan)):
            images[rows[0]:rows[-1] + 1] = batch
    finally:
        source.close()
    return images
