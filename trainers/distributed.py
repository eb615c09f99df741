"""Data-parallel training with global-batch semantics over a ``torch.distributed`` process group.

``batch_size`` is the *global* batch: each of the W workers forwards B/W samples, and every
quantity an objective computes over the batch (SimCLR's negatives, the ER KDE entropy and its
reconstruction, DINO's centre, SwAV's Sinkhorn codes and queue, DeepCluster-v2's bank and k-means)
is computed over all B, exactly as one process with the whole batch would (solo-learn's
``GatherLayer``, SimCLR's cross-replica negatives). The objectives stay pure tensor code: the
trainer gathers their inputs here and hands them the global batch.

Why the gradients come out equal to one process's. Every worker evaluates the same loss
``L(Y)`` on the gathered global outputs ``Y = [y_1; ...; y_W]``. Only ``y_r`` is connected to worker
r's graph, so :class:`_GatherWithGrad`'s backward sums ``dL/dY`` over the workers (an all-reduce:
``W dL/dY`` since all W computed the same loss) and keeps worker r's rows, ``W dL/dy_r``.
Worker r's parameter gradient is then ``W g_r`` with ``g_r`` the part of the one-process gradient
``g = sum_r g_r`` that flows through worker r's samples, and DDP's averaging
(:func:`average_gradients`, ``(1/W) sum_r``) gives exactly ``g``. Batch norm over the global
batch (:class:`GlobalBatchNorm`) follows the same rule through its gathered statistics.

Works with any backend (Gloo on CPUs, NCCL on GPUs); with one worker (no process group) every
function here is the identity, so a single-process trial runs exactly the code it always did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.distributed as dist
from torch import nn

from er_core.data.stream import contiguous_shard


@dataclass(frozen=True)
class World:
    """This process's place among the trial's workers: ``rank`` in ``0..size-1``."""

    rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> "World":
        """The default process group's rank and size, or a world of one without a group."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def shard(self, global_rows: torch.Tensor) -> torch.Tensor:
        """This worker's contiguous slice of ``global_rows`` (length divisible by ``size``; the rule a
        streamed epoch's :class:`~er_core.data.stream.ShardedBatchSampler` reads its files by)."""
        return contiguous_shard(global_rows, self.rank, self.size)


class _GatherWithGrad(torch.autograd.Function):
    """``cat(all_gather(x))``; backward: the all-reduced (summed) gradient's rows of this worker."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.size = dist.get_rank(), dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(ctx.size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        local = grad.shape[0] // ctx.size
        return grad[ctx.rank * local:(ctx.rank + 1) * local]


def gather(x: torch.Tensor | None, world: World) -> torch.Tensor | None:
    """All workers' rows of ``x`` [b, ...] concatenated in rank order [W b, ...], with gradient to
    this worker's rows when ``x`` requires one (every worker must pass the same shape)."""
    if x is None or not world.distributed:
        return x
    if x.requires_grad:
        return _GatherWithGrad.apply(x)
    parts = [torch.empty_like(x) for _ in range(world.size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def gather_uneven(x: torch.Tensor, world: World) -> torch.Tensor:
    """Like :func:`gather` (no gradient) for row counts that differ between workers."""
    if not world.distributed:
        return x
    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.empty_like(count) for _ in range(world.size)]
    dist.all_gather(counts, count)
    rows = [int(c) for c in counts]
    padded = x.new_zeros((max(rows), *x.shape[1:]))
    padded[:x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, rows)])


@torch.no_grad()
def average_gradients(modules: Iterable[nn.Module], world: World) -> None:
    """DDP's gradient averaging, ``g <- (1/W) sum_r g_r``, in one flat all-reduce per dtype.

    Parameters without a gradient are skipped; they are the same on every worker (one graph).
    """
    if not world.distributed:
        return
    grads = [p.grad for module in modules for p in module.parameters() if p.grad is not None]
    for dtype in sorted({g.dtype for g in grads}, key=str):
        same = [g for g in grads if g.dtype == dtype]
        flat = torch.cat([g.reshape(-1) for g in same])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(world.size)
        offset = 0
        for g in same:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


@torch.no_grad()
def broadcast_state(modules: Iterable[nn.Module | None], world: World, source: int = 0) -> None:
    """Copy every parameter and buffer of ``modules`` from worker ``source`` to all (as DDP does at
    construction): the replicas start, and after a recipe's per-epoch state change stay, identical."""
    if not world.distributed:
        return
    for module in modules:
        if module is None:
            continue
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=source)


def broadcast_object(value: Any, world: World, source: int = 0) -> Any:
    """``value`` of worker ``source`` on every worker (a picklable object: metrics, decisions)."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=source)
    return box[0]


def gather_objects(value: Any, world: World) -> Any:
    """Every worker's ``value`` as a list in rank order; ``value`` itself with one worker."""
    if not world.distributed:
        return value
    values: list[Any] = [None] * world.size
    dist.all_gather_object(values, value)
    return values


class GlobalBatchNorm(nn.SyncBatchNorm):
    """Batch norm whose training statistics are those of the global batch (``SyncBatchNorm``).

    Each worker computes its rows' per-channel mean ``m_r`` and sum of squared deviations ``M2_r``
    (n rows each); they are gathered with gradient and merged (Chan et al.):
    ``mean = (1/W) sum_r m_r``, ``var = (1/(W n)) sum_r [M2_r + n (m_r - mean)^2]`` (biased, used to
    normalise; the running variance gets the unbiased ``W n / (W n - 1)`` correction, as torch).
    Merging per-worker moments avoids the cancellation of ``E[x^2] - E[x]^2``. Unlike torch's
    ``SyncBatchNorm`` it runs on any device and backend (Gloo on CPUs). Without a process group, in
    eval mode it is the ordinary batch norm.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        world = World.current()
        if not (self.training and world.distributed):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        x = input.float()
        n = x.numel() // x.shape[1]
        local_mean = x.mean(dim=dims)
        local_m2 = ((x - local_mean.view(1, -1, *[1] * (x.dim() - 2))) ** 2).sum(dim=dims)
        moments = gather(torch.stack([local_mean, local_m2]).unsqueeze(0), world)  # [W, 2, C]
        means, m2s = moments[:, 0], moments[:, 1]
        mean = means.mean(dim=0)
        total = n * world.size
        var = (m2s.sum(dim=0) + n * ((means - mean) ** 2).sum(dim=0)) / total
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                unbiased = var.detach() * total / max(total - 1, 1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        shape = (1, -1, *[1] * (x.dim() - 2))
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def global_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every batch norm layer replaced by a :class:`GlobalBatchNorm` holding the
    same parameters and running statistics (``SyncBatchNorm.convert_sync_batchnorm``'s contract)."""
    if isinstance(module, _BATCH_NORMS) and not isinstance(module, GlobalBatchNorm):
        converted = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                converted.weight = module.weight
                converted.bias = module.bias
        converted.running_mean = module.running_mean
        converted.running_var = module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, global_batchnorm(child))
    return module


class MainRankDiagnostics:
    """The per-epoch diagnostics measured once, on worker 0, and broadcast to every worker.

    The evaluation set is measured whole by one worker (no shard, so nothing to merge), and every
    worker's collapse monitor then sees the same metrics and takes the same stop decision.
    """

    def __init__(self, diagnostics: Any, world: World) -> None:
        self.diagnostics = diagnostics
        self.world = world

    knn_correct: Any = None  # per-query kNN correctness of the latest call (the monitor's gate)

    def __call__(self, net: nn.Module) -> dict[str, float]:
        measured = (self.diagnostics(net), self.diagnostics.knn_correct) if self.world.is_main else None
        metrics, self.knn_correct = broadcast_object(measured, self.world)
        return metrics

    def linear_top1(self) -> float:
        return broadcast_object(self.diagnostics.linear_top1() if self.world.is_main else None, self.world)

    def final(self, net: nn.Module) -> Any:
        """The final evaluation (``Diagnostics.final``) on worker 0, broadcast."""
        return broadcast_object(self.diagnostics.final(net) if self.world.is_main else None, self.world)
