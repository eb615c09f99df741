"""Memories of past student embeddings that a recipe keeps: SwAV's queue, DeepCluster-v2's bank.

Both are modules of buffers only (no parameters), held by their objective, so the objective's
``state_dict()`` checkpoints them and no optimiser ever sees them.

:class:`EmbeddingQueue`, SwAV's queue for the Sinkhorn codes at small batch sizes
(facebookresearch/swav ``main_swav.py``): with batches of 256 or fewer, the equipartition constraint
of the Sinkhorn-Knopp codes over one batch is too tight (B samples spread over K prototypes), so
the codes are computed on ``[queue; batch]`` scores and only the batch's rows are kept. The queue
holds the normalised projections of the last ``length`` samples of each view (newest first); their
scores are recomputed with the *current* prototypes at every step (``queue @ W^T``), so only the
embeddings are stale, never the prototypes. The queue is used once it is full (SwAV: once its last
row is non-zero) and the batch is pushed after the codes of that step are computed.

:class:`MemoryBank`, DeepCluster-v2's bank: the normalised projection of every training image and
view, by dataset index, on which the k-means of each epoch runs.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def effective_queue_length(queue_length: int, batch_size: int) -> int:
    """SwAV's rule: the queue length rounded down to a multiple of the batch size (0: no queue)."""
    if queue_length < 0 or batch_size < 1:
        raise ValueError(f"need queue_length >= 0 and batch_size >= 1, got {queue_length}, {batch_size}")
    return queue_length - queue_length % batch_size


class EmbeddingQueue(nn.Module):
    """FIFO of L2-normalised embeddings, one row block per view: buffer ``[views, length, dim]``.

    ``size`` counts the rows written so far (capped at ``length``); the queue is ``full`` once
    ``size == length``. Both are buffers, so ``state_dict()`` checkpoints the queue exactly.
    """

    def __init__(self, length: int, dim: int, num_views: int = 2) -> None:
        super().__init__()
        if length < 1 or dim < 1 or num_views < 1:
            raise ValueError(f"queue length, dim and views must be >= 1, got {length}, {dim}, {num_views}")
        self.register_buffer("embeddings", torch.zeros(num_views, length, dim))
        self.register_buffer("size", torch.zeros((), dtype=torch.long))

    @property
    def length(self) -> int:
        return self.embeddings.shape[1]

    @property
    def full(self) -> bool:
        return int(self.size) >= self.length

    @torch.no_grad()
    def push(self, *views: torch.Tensor) -> None:
        """Insert one batch per view at the front, dropping the oldest rows (SwAV's shift)."""
        if len(views) != self.embeddings.shape[0]:
            raise ValueError(f"expected {self.embeddings.shape[0]} views, got {len(views)}")
        batch = views[0].shape[0]
        if batch > self.length:
            raise ValueError(f"a batch of {batch} does not fit a queue of length {self.length}")
        for index, values in enumerate(views):
            if values.shape != (batch, self.embeddings.shape[2]):
                raise ValueError(f"view {index} has shape {tuple(values.shape)}, expected "
                                 f"({batch}, {self.embeddings.shape[2]})")
            self.embeddings[index, batch:] = self.embeddings[index, :-batch].clone()
            self.embeddings[index, :batch] = values.detach().to(self.embeddings.dtype)
        self.size.fill_(min(self.length, int(self.size) + batch))

    @torch.no_grad()
    def scores(self, view: int, prototypes: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor | None:
        """Scores ``[length, K]`` of view ``view``'s queued embeddings under the current prototypes,
        or ``None`` while the queue is not full."""
        if not self.full:
            return None
        return prototypes(self.embeddings[view])


class MemoryBank(nn.Module):
    """L2-normalised student projections of every training image and view, by dataset index."""

    def __init__(self, size: int, dim: int, num_views: int = 2) -> None:
        super().__init__()
        self.register_buffer("embeddings_", torch.zeros(num_views, size, dim))
        self.register_buffer("written", torch.zeros(size, dtype=torch.bool))

    @property
    def filled(self) -> bool:
        return bool(self.written.all())

    @torch.no_grad()
    def update(self, indices: torch.Tensor, *views: torch.Tensor) -> None:
        for view, values in enumerate(views):
            self.embeddings_[view, indices] = values.detach().to(self.embeddings_.dtype)
        self.written[indices] = True

    def embeddings(self, view: int = 0) -> torch.Tensor:
        return self.embeddings_[view]
