"""Raw loss functions of the five MVSSL objectives and of their ER replacements (no state).

Conventions follow the reference implementations: SimCLR's NT-Xent as in lightly / SimCLR
(2B anchors, 2B-1 candidates), BYOL's normalised MSE, DINO's ``DINOLoss`` (facebookresearch/dino),
SwAV's ``distributed_sinkhorn`` and swapped prediction (facebookresearch/swav), DeepCluster-v2's
cross-entropy against k-means assignments. ER replacements follow DESIGN.md §2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from er_tune.estimators import kde_entropy, vmf_reconstruction


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent: for each of the 2B anchors, CE of its positive against the other 2B-1 samples.

    ``z = normalize([z1; z2])``, ``s = z z^T / tau`` with the diagonal removed; anchor i's positive
    is i + B (mod 2B). Mean over the 2B anchors. If every view coincides, the loss is log(2B-1).
    """
    batch = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    logits = z @ z.transpose(0, 1) / temperature
    logits = logits.masked_fill(torch.eye(2 * batch, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.cat([torch.arange(batch, 2 * batch), torch.arange(0, batch)]).to(z.device)
    return F.cross_entropy(logits, positives)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``mean_i (2 - 2 cos(p_i, sg(z_i)))``: 0 for identical directions, 4 for opposite ones."""
    return (2.0 - 2.0 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


def dino_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, center: torch.Tensor,
              student_temp: float, teacher_temp: float) -> torch.Tensor:
    """``mean_i CE(softmax((t_i - c)/tau_t), log_softmax(s_i/tau_s))`` with the teacher detached."""
    targets = F.softmax((teacher_logits.detach() - center) / teacher_temp, dim=1)
    return -(targets * F.log_softmax(student_logits / student_temp, dim=1)).sum(dim=1).mean()


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """SwAV's Sinkhorn-Knopp codes: ``Q = exp(scores/eps)`` equipartitioned over the K prototypes.

    Alternates normalising the K prototype marginals to 1/K and the B sample marginals to 1/B,
    ``iterations`` times, then scales so each sample's code (row) sums to 1 (returned B x K).
    Subtracting the global max before ``exp`` changes nothing after normalisation but avoids
    overflow.
    """
    q = torch.exp((scores - scores.max()) / epsilon).transpose(0, 1).double()  # K x B
    prototypes, batch = q.shape
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= prototypes
        q /= q.sum(dim=0, keepdim=True)
        q /= batch
    q *= batch
    return q.transpose(0, 1).to(scores.dtype)


def swapped_prediction(codes: torch.Tensor, scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """``-mean_i sum_k codes_ik log softmax(scores_i / tau)_k``."""
    return -(codes * F.log_softmax(scores / temperature, dim=1)).sum(dim=1).mean()


def swav_loss(scores1: torch.Tensor, scores2: torch.Tensor, temperature: float, epsilon: float,
              iterations: int) -> torch.Tensor:
    """Swapped prediction: view 1's Sinkhorn codes predict view 2's softmax and vice versa; mean."""
    q1 = sinkhorn(scores1.detach(), epsilon, iterations)
    q2 = sinkhorn(scores2.detach(), epsilon, iterations)
    return 0.5 * (swapped_prediction(q1, scores2, temperature) + swapped_prediction(q2, scores1, temperature))


def deepcluster_loss(scores: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """DeepCluster-v2: ``CE(scores / tau, k-means assignment)``."""
    return F.cross_entropy(scores / temperature, targets)


def mean_assignment_entropy(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """H(p_bar) of ``p = softmax(logits / tau)`` (log K when uniform, 0 for one prototype)."""
    mean = F.softmax(logits / temperature, dim=1).mean(dim=0)
    return -torch.special.xlogy(mean, mean).sum()


def soft_cross_entropy(targets: torch.Tensor, logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``-mean_i sum_k targets_ik log softmax(logits_i / tau)_k`` (targets detached)."""
    return -(targets.detach() * F.log_softmax(logits / temperature, dim=1)).sum(dim=1).mean()


def simclr_er(z1: torch.Tensor, z2: torch.Tensor, kappa: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR-ER terms: ``(R(z1, z2), H(z1 u z2))`` on the normalised projections."""
    n1, n2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    return vmf_reconstruction(n1, n2, kappa), kde_entropy(torch.cat([n1, n2]), kappa)


def byol_er(p1: torch.Tensor, p2: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor,
            kappa: float) -> tuple[torch.Tensor, torch.Tensor]:
    """BYOL-ER terms, symmetrised: ``R(pred(z1), sg(t2))`` and ``H(pred(z1))`` averaged over views."""
    n1, n2 = F.normalize(p1, dim=1), F.normalize(p2, dim=1)
    m1, m2 = F.normalize(t1.detach(), dim=1), F.normalize(t2.detach(), dim=1)
    reconstruction = 0.5 * (vmf_reconstruction(n1, m2, kappa) + vmf_reconstruction(n2, m1, kappa))
    entropy = 0.5 * (kde_entropy(n1, kappa) + kde_entropy(n2, kappa))
    return reconstruction, entropy


def dino_er(s1: torch.Tensor, s2: torch.Tensor, ts1: torch.Tensor, ts2: torch.Tensor,
            student_temp: float, teacher_temp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DINO-ER terms: the DINO cross-entropy without centering, and H(mean student assignment)."""
    q1 = F.softmax(ts1.detach() / teacher_temp, dim=1)
    q2 = F.softmax(ts2.detach() / teacher_temp, dim=1)
    reconstruction = 0.5 * (soft_cross_entropy(q1, s2, student_temp) + soft_cross_entropy(q2, s1, student_temp))
    entropy = 0.5 * (mean_assignment_entropy(s1, student_temp) + mean_assignment_entropy(s2, student_temp))
    return reconstruction, entropy


def swav_er(s1: torch.Tensor, s2: torch.Tensor, temperature: float,
            sharpen_temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SwAV-ER terms: targets are the other view's sharpened softmax (stop-gradient), + H(p_bar)."""
    q1 = F.softmax(s1.detach() / sharpen_temperature, dim=1)
    q2 = F.softmax(s2.detach() / sharpen_temperature, dim=1)
    reconstruction = 0.5 * (soft_cross_entropy(q1, s2, temperature) + soft_cross_entropy(q2, s1, temperature))
    entropy = 0.5 * (mean_assignment_entropy(s1, temperature) + mean_assignment_entropy(s2, temperature))
    return reconstruction, entropy


def deepcluster_er(s1: torch.Tensor, s2: torch.Tensor, targets: torch.Tensor,
                   temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepCluster-v2-ER terms: CE against the k-means targets (both views) and H(p_bar)."""
    reconstruction = 0.5 * (deepcluster_loss(s1, targets, temperature) + deepcluster_loss(s2, targets, temperature))
    entropy = 0.5 * (mean_assignment_entropy(s1, temperature) + mean_assignment_entropy(s2, temperature))
    return reconstruction, entropy
