"""DeepCluster-v2 (Caron et al. 2020) and its ER replacement (k-means targets kept).

Original: cross-entropy of the prototype scores against the k-means assignment of each sample
(computed once per epoch on a memory bank of projections). ER: the same CE minus lambda H(p_bar).
Also the spherical k-means used to produce the assignments.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from er_tune.objectives import functional
from er_tune.objectives.base import Objective, ObjectiveInputs, ObjectiveOutput, er_output

ASSIGN_CHUNK = 8192


@torch.no_grad()
def assign_clusters(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the most similar centroid (dot product of normalised vectors) for each row of x.

    Computed in chunks of rows, so N can be large. Returns a LongTensor [N].
    """
    if x.dim() != 2 or centroids.dim() != 2 or x.shape[1] != centroids.shape[1]:
        raise ValueError(f"x [N, d] and centroids [k, d] must share d; got {tuple(x.shape)} and {tuple(centroids.shape)}")
    x = F.normalize(x, dim=1)
    c = F.normalize(centroids, dim=1)
    return torch.cat([(chunk @ c.T).argmax(dim=1) for chunk in x.split(ASSIGN_CHUNK)])


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, iterations: int,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical k-means on the rows of x (as DeepCluster-v2): centroids are normalised means.

    Initialised with k distinct random rows (drawn with ``generator``, so deterministic); an empty
    cluster is re-seeded with a random row. Returns (centroids [k, d] normalised, assignments [N]).
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..N={n}, got {k}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    x = F.normalize(x.float(), dim=1)
    device = x.device
    start = torch.randperm(n, generator=generator, device=generator.device if generator else "cpu")[:k]
    centroids = x[start.to(device)].clone()
    assignments = assign_clusters(x, centroids)
    for _ in range(iterations):
        sums = torch.zeros_like(centroids).index_add_(0, assignments, x)
        counts = torch.bincount(assignments, minlength=k)
        empty = (counts == 0).nonzero().flatten()
        if empty.numel():
            pick = torch.randint(0, n, (empty.numel(),), generator=generator,
                                 device=generator.device if generator else "cpu")
            sums[empty] = x[pick.to(device)]
        centroids = F.normalize(sums, dim=1)
        assignments = assign_clusters(x, centroids)
    return centroids, assignments


class DeepCluster(Objective):
    method, variant, support = "deepcluster", "original", "discrete"
    needs_prototypes = needs_targets = True

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        s1, s2 = inputs.require("s1", "s2")
        if inputs.targets is None or inputs.targets.shape != (s1.shape[0],):
            raise ValueError("DeepCluster needs inputs.targets: LongTensor [batch] of k-means assignments")
        targets = inputs.targets
        loss = 0.5 * (functional.deepcluster_loss(s1, targets, self.temperature)
                      + functional.deepcluster_loss(s2, targets, self.temperature))
        return ObjectiveOutput(loss=loss)


class DeepClusterER(Objective):
    method, variant, support = "deepcluster", "er", "discrete"
    needs_prototypes = needs_targets = True

    def __init__(self, temperature: float = 0.1, entropy_weight: float = 1.0) -> None:
        super().__init__()
        self.temperature, self.entropy_weight = temperature, entropy_weight

    def terms(self, inputs: ObjectiveInputs):
        s1, s2 = inputs.require("s1", "s2")
        if inputs.targets is None or inputs.targets.shape != (s1.shape[0],):
            raise ValueError("DeepCluster-ER needs inputs.targets: LongTensor [batch] of k-means assignments")
        return functional.deepcluster_er(s1, s2, inputs.targets, self.temperature)

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        reconstruction, entropy = self.terms(inputs)
        return er_output(reconstruction, entropy, self.entropy_weight)
