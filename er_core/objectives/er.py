"""The shared shape of every ER replacement: ``L_ER = R̂ - lambda * Ĥ`` (DESIGN.md §2).

Each ``*ER`` objective defines :meth:`ERObjective.terms`, which returns the reconstruction R̂ (an
NLL) and the entropy Ĥ computed on the online/student branch and symmetrised over the views;
``forward`` combines them and hands both (detached) to the trainer for logging.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from er_core.objectives.base import Objective, ObjectiveInputs, ObjectiveOutput


class ERTerms(NamedTuple):
    """The two terms of the ER bound, in nats: ``reconstruction`` (NLL, minimised), ``entropy``."""

    reconstruction: torch.Tensor
    entropy: torch.Tensor


def er_output(terms: ERTerms, entropy_weight: float) -> ObjectiveOutput:
    """``ObjectiveOutput(loss=R - lambda * H, entropy=sg(H), reconstruction=sg(R))``."""
    return ObjectiveOutput(loss=terms.reconstruction - entropy_weight * terms.entropy,
                           entropy=terms.entropy.detach(), reconstruction=terms.reconstruction.detach())


class ERObjective(Objective):
    """Base of the ER replacements; subclasses implement :meth:`terms`.

    Args:
        entropy_weight: lambda >= 0, the weight of the entropy term (1 in the paper).
    """

    variant = "er"

    def __init__(self, entropy_weight: float = 1.0) -> None:
        super().__init__()
        entropy_weight = float(entropy_weight)
        if not entropy_weight >= 0.0 or entropy_weight == float("inf"):
            raise ValueError(f"entropy_weight must be a finite number >= 0, got {entropy_weight}")
        self.entropy_weight = entropy_weight

    def terms(self, inputs: ObjectiveInputs) -> ERTerms:  # pragma: no cover - abstract
        """The reconstruction and entropy terms (with gradients) for this batch."""
        raise NotImplementedError

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        return er_output(self.terms(inputs), self.entropy_weight)
