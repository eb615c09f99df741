"""DeepCluster-v2 (Caron et al. 2020) and its ER replacement (k-means targets kept), with its recipe.

Original: cross-entropy of the prototype scores against the k-means assignment of each sample
(computed once per epoch on a memory bank of projections, :class:`KMeansRecipe`). ER: the same CE
minus lambda H(p_bar). Also the spherical k-means that produces the assignments.

The prototypes are the k-means centroids and are never trained, in both variants (as
``main_deepclusterv2.py``, which overwrites them after each k-means and keeps them out of the
optimiser): both declare ``trainable_prototypes = False``, so ``build_network`` gives them frozen
prototypes and no gradient, weight decay or optimiser momentum moves them away from the centroids the
targets were assigned to.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from er_core.config import TrialConfig
from er_core.objectives import functional
from er_core.objectives.base import (Objective, ObjectiveInputs, ObjectiveOutput, TrainingContext,
                                     check_iterations, check_positive)
from er_core.objectives.er import ERObjective, ERTerms
from er_core.objectives.memory import MemoryBank

ASSIGN_CHUNK = 8192


def _check_points(x: torch.Tensor, centroids: torch.Tensor | None = None) -> None:
    if x.dim() != 2 or x.shape[0] < 1 or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor [N >= 1, d], got {x.dtype} {tuple(x.shape)}")
    if centroids is not None and (centroids.dim() != 2 or centroids.shape[1] != x.shape[1]
                                  or centroids.shape[0] < 1):
        raise ValueError(f"centroids must be [k >= 1, {x.shape[1]}] to match x [N, {x.shape[1]}], "
                         f"got {tuple(centroids.shape)}")


@torch.no_grad()
def assign_clusters(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the most similar centroid, ``argmax_c normalize(x_i) . normalize(c)``, for each row.

    Computed in chunks of ``ASSIGN_CHUNK`` rows, so N can be large (memory O(chunk x k)).

    Args:
        x: points [N, d]; centroids: [k, d] (both normalised inside).

    Returns:
        LongTensor [N] on the device of ``x``.
    """
    _check_points(x, centroids)
    c = F.normalize(centroids.to(x.dtype), dim=1)
    return torch.cat([(F.normalize(chunk, dim=1) @ c.T).argmax(dim=1) for chunk in x.split(ASSIGN_CHUNK)])


def _cluster_sums(x: torch.Tensor, assignments: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cluster sums and counts via one-hot matmuls in chunks (deterministic, unlike index_add_ on CUDA)."""
    sums = x.new_zeros(k, x.shape[1])
    counts = x.new_zeros(k)
    for chunk, labels in zip(x.split(ASSIGN_CHUNK), assignments.split(ASSIGN_CHUNK)):
        one_hot = F.one_hot(labels, k).to(x.dtype)
        sums += one_hot.T @ chunk
        counts += one_hot.sum(dim=0)
    return sums, counts


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, iterations: int,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical k-means on the rows of ``x`` (as DeepCluster-v2): centroids are normalised means.

    Initialised with k distinct random rows; each iteration assigns every row to its most similar
    centroid (:func:`assign_clusters`) and replaces each centroid by the normalised mean of its
    rows. An empty cluster is re-seeded with a random row. Random draws use ``generator``
    (a CPU generator, or one on ``x``'s device), so the result is deterministic given it.

    Args:
        x: points [N, d] (normalised inside, computed in float32 or float64).
        k: number of clusters, 1 <= k <= N.
        iterations: Lloyd iterations >= 1.
        generator: source of randomness; None uses torch's global RNG.

    Returns:
        ``(centroids [k, d] unit rows, assignments LongTensor [N])``, assignments consistent with
        the returned centroids.
    """
    _check_points(x)
    n = x.shape[0]
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in 1..N={n}, got {k}")
    iterations = check_iterations("iterations", iterations)
    k = int(k)
    x = F.normalize(x if x.dtype == torch.float64 else x.float(), dim=1)
    rng_device = generator.device if generator is not None else torch.device("cpu")
    start = torch.randperm(n, generator=generator, device=rng_device)[:k].to(x.device)
    centroids = x[start].clone()
    assignments = assign_clusters(x, centroids)
    for _ in range(iterations):
        sums, counts = _cluster_sums(x, assignments, k)
        empty = (counts == 0).nonzero().flatten()
        if empty.numel():
            pick = torch.randint(0, n, (empty.numel(),), generator=generator, device=rng_device)
            sums[empty] = x[pick.to(x.device)]
        centroids = F.normalize(sums, dim=1)
        assignments = assign_clusters(x, centroids)
    return centroids, assignments


class KMeansRecipe(Objective):
    """DeepCluster-v2's recipe, both variants: per-epoch k-means targets on a memory bank.

    :meth:`setup` allocates the bank (the normalised projections of both views of every training
    image, by index) and the ``targets`` buffer. At the start of each epoch the bank is filled
    from a pass over the training set when it is the first epoch or the bank is incomplete, then
    spherical k-means (``KMEANS_ITERATIONS`` Lloyd iterations, a generator seeded ``seed * 1000 +
    epoch``) gives the epoch's targets, and its centroids become the prototypes. Each step reads
    its samples' targets and writes their new projections into the bank.
    """

    KMEANS_ITERATIONS = 10

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bank: MemoryBank | None
        self.register_module("bank", None)
        self.register_buffer("targets", None)

    def setup(self, config: TrialConfig, num_train: int) -> None:
        self.bank = MemoryBank(num_train, config.projector_dim)
        self.targets = torch.full((num_train,), -100, dtype=torch.long)  # -100: no k-means yet (ignored by CE)

    @torch.no_grad()
    def on_epoch_start(self, trainer: TrainingContext, epoch: int) -> None:
        if epoch == 1 or not self.bank.filled:
            for indices, z1, z2 in trainer.embed_training_set():
                self.bank.update(indices, F.normalize(z1, dim=1), F.normalize(z2, dim=1))
        generator = torch.Generator(device=trainer.device)
        generator.manual_seed(trainer.config.seed * 1000 + epoch)
        centroids, assignments = kmeans(self.bank.embeddings(), trainer.config.num_prototypes,
                                        iterations=self.KMEANS_ITERATIONS, generator=generator)
        self.targets.copy_(assignments)
        trainer.net.prototypes.set_weights(centroids)

    def add_inputs(self, trainer: TrainingContext, inputs: ObjectiveInputs, batch_indices: torch.Tensor) -> None:
        inputs.targets = self.targets[batch_indices]

    @torch.no_grad()
    def after_backward(self, trainer: TrainingContext, outputs: tuple[Any, Any], batch_indices: torch.Tensor) -> None:
        out1, out2 = outputs
        self.bank.update(batch_indices, F.normalize(out1.z.float(), dim=1), F.normalize(out2.z.float(), dim=1))


class DeepCluster(KMeansRecipe):
    """``0.5 * (CE(s1/tau, targets) + CE(s2/tau, targets))`` (:func:`functional.deepcluster_loss`).

    Args:
        temperature: tau > 0.
    """

    method, variant, support = "deepcluster", "original", "discrete"
    needs_prototypes = needs_targets = True
    trainable_prototypes = False

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)

    @classmethod
    def from_config(cls, config: TrialConfig) -> "DeepCluster":
        return cls(config.temperature)

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        s1, s2, targets = inputs.require("s1", "s2", "targets")
        loss = 0.5 * (functional.deepcluster_loss(s1, targets, self.temperature)
                      + functional.deepcluster_loss(s2, targets, self.temperature))
        return ObjectiveOutput(loss=loss)


class DeepClusterER(KMeansRecipe, ERObjective):
    """ER replacement of DeepCluster-v2 (:func:`functional.deepcluster_er`).

    Args:
        temperature: tau > 0; entropy_weight: lambda >= 0.
    """

    method, support = "deepcluster", "discrete"
    needs_prototypes = needs_targets = True
    trainable_prototypes = False

    def __init__(self, temperature: float = 0.1, entropy_weight: float = 1.0) -> None:
        super().__init__(entropy_weight)
        self.temperature = check_positive("temperature", temperature)

    @classmethod
    def from_config(cls, config: TrialConfig) -> "DeepClusterER":
        return cls(config.temperature, config.entropy_weight)

    def terms(self, inputs: ObjectiveInputs) -> ERTerms:
        s1, s2, targets = inputs.require("s1", "s2", "targets")
        return ERTerms(*functional.deepcluster_er(s1, s2, targets, self.temperature))
