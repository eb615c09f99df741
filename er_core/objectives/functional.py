"""Raw loss functions of the five MVSSL objectives and of their ER replacements (no state).

Conventions follow the reference implementations exactly: SimCLR's NT-Xent as in lightly's
``NTXentLoss`` (2B anchors, 2B-1 candidates each, mean over anchors), BYOL's ``2 - 2 cos``
(google-deepmind/byol), DINO's ``DINOLoss`` (facebookresearch/dino), SwAV's
``distributed_sinkhorn`` and swapped prediction (facebookresearch/swav) and DeepCluster-v2's
cross-entropy against k-means assignments (facebookresearch/swav, ``main_deepclusterv2.py``).
The ER replacements follow DESIGN.md §2; each returns ``(reconstruction, entropy)`` so that
``L_ER = reconstruction - lambda * entropy``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from er_core.estimators import discrete_entropy, kde_entropy, vmf_reconstruction
from er_core.objectives.base import check_iterations, check_positive


def _check_pair(name1: str, x1: torch.Tensor, name2: str, x2: torch.Tensor) -> None:
    if x1.dim() != 2 or x1.shape != x2.shape:
        raise ValueError(f"{name1} and {name2} must be 2-D tensors of the same shape [batch, dim], "
                         f"got {tuple(x1.shape)} and {tuple(x2.shape)}")


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: each of the 2B anchors classifies its positive among the other 2B-1 samples.

    ``z = normalize([z1; z2])``, ``logits = z z^T / tau`` without the diagonal; anchor i's positive
    is i + B (mod 2B); the loss is the mean cross-entropy over the 2B anchors. If every view
    coincides the loss is ``log(2B - 1)``.

    Args:
        z1, z2: projections of the two views [B, d] (normalised inside).
        temperature: tau > 0.
    """
    temperature = check_positive("temperature", temperature)
    _check_pair("z1", z1, "z2", z2)
    batch = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    logits = z @ z.transpose(0, 1) / temperature
    logits = logits.masked_fill(torch.eye(2 * batch, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.arange(2 * batch, device=z.device).add(batch).remainder(2 * batch)
    return F.cross_entropy(logits, positives)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss ``mean_i (2 - 2 cos(p_i, sg(z_i)))``: 0 for equal directions, 4 for opposite.

    Args:
        p: online predictions [B, d]; z: target projections [B, d] (detached inside).
    """
    _check_pair("p", p, "z", z)
    p, z = F.normalize(p, dim=1), F.normalize(z.detach(), dim=1)
    return (2.0 - 2.0 * (p * z).sum(dim=1)).mean()


def dino_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, center: torch.Tensor,
              student_temp: float, teacher_temp: float) -> torch.Tensor:
    """DINO's ``mean_i CE(softmax((t_i - c)/tau_t), log_softmax(s_i/tau_s))``, teacher detached.

    Args:
        student_logits, teacher_logits: [B, K]; center: [K] or [1, K] (zeros disable centering).
        student_temp, teacher_temp: the two temperatures (> 0).
    """
    student_temp = check_positive("student_temp", student_temp)
    teacher_temp = check_positive("teacher_temp", teacher_temp)
    _check_pair("student_logits", student_logits, "teacher_logits", teacher_logits)
    if center.shape[-1] != student_logits.shape[1] or center.numel() != student_logits.shape[1]:
        raise ValueError(f"center must have {student_logits.shape[1]} entries ([K] or [1, K]), "
                         f"got shape {tuple(center.shape)}")
    targets = F.softmax((teacher_logits.detach() - center.detach()) / teacher_temp, dim=1)
    return -(targets * F.log_softmax(student_logits / student_temp, dim=1)).sum(dim=1).mean()


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """SwAV's Sinkhorn-Knopp codes: ``Q = exp(scores / eps)`` equipartitioned over the K prototypes.

    As ``distributed_sinkhorn``: normalise Q (K x B) to total mass 1, then ``iterations`` times
    scale the K prototype marginals to 1/K and the B sample marginals to 1/B; finally multiply by
    B so that each sample's code sums to 1. The same updates are carried out on log Q in float64
    (``logsumexp`` instead of sums), so no sample's column can underflow to zeros or overflow,
    which the reference's float32 ``exp(scores / eps)`` does for scores beyond ~4 at eps = 0.05.
    Column sums tend to B/K as the iterations grow.

    Args:
        scores: prototype scores [B, K]; epsilon: entropic regularisation > 0; iterations: >= 1.

    Returns:
        Codes [B, K] in the dtype of ``scores``, rows summing to 1, no gradient.
    """
    epsilon = check_positive("epsilon", epsilon)
    iterations = check_iterations("iterations", iterations)
    if scores.dim() != 2:
        raise ValueError(f"scores must be a 2-D tensor [batch, K], got shape {tuple(scores.shape)}")
    log_q = scores.double().transpose(0, 1) / epsilon  # K x B
    prototypes, batch = log_q.shape
    log_q = log_q - torch.logsumexp(log_q.flatten(), dim=0)
    for _ in range(iterations):
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(prototypes)
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(batch)
    return torch.exp(log_q + math.log(batch)).transpose(0, 1).to(scores.dtype)


def soft_cross_entropy(targets: torch.Tensor, logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``-mean_i sum_k targets_ik log softmax(logits_i / tau)_k`` with the targets detached."""
    temperature = check_positive("temperature", temperature)
    _check_pair("targets", targets, "logits", logits)
    return -(targets.detach() * F.log_softmax(logits / temperature, dim=1)).sum(dim=1).mean()


def swav_loss(scores1: torch.Tensor, scores2: torch.Tensor, temperature: float, epsilon: float,
              iterations: int, queue1: torch.Tensor | None = None,
              queue2: torch.Tensor | None = None) -> torch.Tensor:
    """SwAV's swapped prediction: each view's Sinkhorn codes predict the other view's softmax.

    ``0.5 * (CE(q1, softmax(s2/tau)) + CE(q2, softmax(s1/tau)))`` with ``q = sinkhorn(sg(s))``.
    With SwAV's queue (``queue1``/``queue2``: scores [L, K] of the queued embeddings of each view
    under the current prototypes), ``q1 = sinkhorn([queue1; sg(s1)])[-B:]``: the equipartition
    is imposed over L + B samples and only the batch's codes are kept (``main_swav.py``).
    """
    _check_pair("scores1", scores1, "scores2", scores2)
    q1 = _codes(scores1, queue1, epsilon, iterations)
    q2 = _codes(scores2, queue2, epsilon, iterations)
    return 0.5 * (soft_cross_entropy(q1, scores2, temperature) + soft_cross_entropy(q2, scores1, temperature))


def _codes(scores: torch.Tensor, queue: torch.Tensor | None, epsilon: float, iterations: int) -> torch.Tensor:
    scores = scores.detach()
    if queue is None:
        return sinkhorn(scores, epsilon, iterations)
    if queue.dim() != 2 or queue.shape[1] != scores.shape[1]:
        raise ValueError(f"queue scores must be [L, {scores.shape[1]}], got {tuple(queue.shape)}")
    joint = torch.cat([queue.detach().to(scores.dtype), scores])
    return sinkhorn(joint, epsilon, iterations)[-scores.shape[0]:]


def deepcluster_loss(scores: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """DeepCluster-v2: ``CE(scores / tau, targets)`` against k-means assignments (-100 is ignored)."""
    temperature = check_positive("temperature", temperature)
    if scores.dim() != 2 or targets.shape != (scores.shape[0],) or targets.is_floating_point():
        raise ValueError(f"scores must be [B, K] and targets an integer tensor [B]; got {tuple(scores.shape)} "
                         f"and {targets.dtype} {tuple(targets.shape)}")
    return F.cross_entropy(scores / temperature, targets)


def mean_assignment_entropy(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """H(p_bar) of ``p = softmax(logits / tau)`` (log K when p_bar is uniform, 0 on one prototype)."""
    temperature = check_positive("temperature", temperature)
    return discrete_entropy(F.softmax(logits / temperature, dim=1))


def per_view_entropy(n1: torch.Tensor, n2: torch.Tensor, kappa: float) -> torch.Tensor:
    """``(H(n1) + H(n2)) / 2``: the KDE entropy of each view's unit projections [B, d], averaged.

    The entropy of one view's representation, as the bound ``I(Z1; Z2) >= H(Z2) + E log q(Z2|Z1)``
    names it. Not ``H(n1 u n2)``: pooling the views puts each sample's positive among its kernel
    neighbours, so the entropy gradient pushes the two views of an image apart and cancels part
    of the reconstruction pull (21% at cos(z1, z2) = 0.87, 28% at 0.91, 48% at 0.99; kappa 10,
    B 256, d 128); per view the two terms do not interact.
    """
    return 0.5 * (kde_entropy(n1, kappa) + kde_entropy(n2, kappa))


def simclr_er(z1: torch.Tensor, z2: torch.Tensor, kappa: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR-ER terms ``(R(z1, z2), (H(z1) + H(z2)) / 2)``: vMF NLL between views, KDE entropy per view."""
    _check_pair("z1", z1, "z2", z2)
    n1, n2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    return vmf_reconstruction(n1, n2, kappa), per_view_entropy(n1, n2, kappa)


def byol_er(z1: torch.Tensor, z2: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, t1: torch.Tensor,
            t2: torch.Tensor, kappa: float) -> tuple[torch.Tensor, torch.Tensor]:
    """BYOL-ER terms, mean of both directions: ``R(pred(z1), sg(t2))`` and ``(H(z1) + H(z2)) / 2``.

    The reconstructed variable is the target-side projection Z2; its entropy is estimated on the
    online projections ``z`` (the projector of which the target is an EMA, identical to it at
    EMA 0, and the branch gradients reach), per view, averaged -- not on the predictor outputs,
    which are the conditional's mean, not the variable the bound names.
    """
    _check_pair("z1", z1, "z2", z2)
    _check_pair("p1", p1, "t2", t2)
    _check_pair("p2", p2, "t1", t1)
    n1, n2 = F.normalize(p1, dim=1), F.normalize(p2, dim=1)
    m1, m2 = F.normalize(t1.detach(), dim=1), F.normalize(t2.detach(), dim=1)
    reconstruction = 0.5 * (vmf_reconstruction(n1, m2, kappa) + vmf_reconstruction(n2, m1, kappa))
    return reconstruction, per_view_entropy(F.normalize(z1, dim=1), F.normalize(z2, dim=1), kappa)


def dino_er(s1: torch.Tensor, s2: torch.Tensor, ts1: torch.Tensor, ts2: torch.Tensor,
            student_temp: float, teacher_temp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DINO-ER terms: DINO's cross-view CE without centering, and H(mean student assignment)."""
    teacher_temp = check_positive("teacher_temp", teacher_temp)
    q1 = F.softmax(ts1.detach() / teacher_temp, dim=1)
    q2 = F.softmax(ts2.detach() / teacher_temp, dim=1)
    reconstruction = 0.5 * (soft_cross_entropy(q1, s2, student_temp) + soft_cross_entropy(q2, s1, student_temp))
    entropy = 0.5 * (mean_assignment_entropy(s1, student_temp) + mean_assignment_entropy(s2, student_temp))
    return reconstruction, entropy


def swav_er(s1: torch.Tensor, s2: torch.Tensor, temperature: float,
            sharpen_temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SwAV-ER terms: each view predicts sg(softmax(other view / sharpen_temperature)); and H(p_bar)."""
    sharpen_temperature = check_positive("sharpen_temperature", sharpen_temperature)
    _check_pair("s1", s1, "s2", s2)
    q1 = F.softmax(s1.detach() / sharpen_temperature, dim=1)
    q2 = F.softmax(s2.detach() / sharpen_temperature, dim=1)
    reconstruction = 0.5 * (soft_cross_entropy(q1, s2, temperature) + soft_cross_entropy(q2, s1, temperature))
    entropy = 0.5 * (mean_assignment_entropy(s1, temperature) + mean_assignment_entropy(s2, temperature))
    return reconstruction, entropy


def deepcluster_er(s1: torch.Tensor, s2: torch.Tensor, targets: torch.Tensor,
                   temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepCluster-v2-ER terms: CE against the k-means targets (both views) and H(p_bar)."""
    _check_pair("s1", s1, "s2", s2)
    reconstruction = 0.5 * (deepcluster_loss(s1, targets, temperature) + deepcluster_loss(s2, targets, temperature))
    entropy = 0.5 * (mean_assignment_entropy(s1, temperature) + mean_assignment_entropy(s2, temperature))
    return reconstruction, entropy
