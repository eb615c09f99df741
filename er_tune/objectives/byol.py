"""BYOL (Grill et al. 2020) and its ER replacement (predictor and EMA target kept).

Original: ``2 - 2 cos(pred(z1), sg(t2))``, mean of the two directions (view 1 -> 2 and 2 -> 1).
ER: ``R̂(pred(z1), sg(t2)) - lambda Ĥ(pred(z1))`` on the sphere, mean of the two directions.
The EMA update of the target and its schedule live in the trainer.
"""

from __future__ import annotations

from er_tune.objectives import functional
from er_tune.objectives.base import Objective, ObjectiveInputs, ObjectiveOutput, check_positive
from er_tune.objectives.er import ERObjective, ERTerms


class BYOL(Objective):
    """``0.5 * (byol_loss(p1, t2) + byol_loss(p2, t1))`` (:func:`functional.byol_loss`)."""

    method, variant, support = "byol", "original", "sphere"
    needs_teacher = needs_predictor = True

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        p1, p2, t1, t2 = inputs.require("p1", "p2", "t1", "t2")
        return ObjectiveOutput(loss=0.5 * (functional.byol_loss(p1, t2) + functional.byol_loss(p2, t1)))


class BYOLER(ERObjective):
    """ER replacement of BYOL (:func:`functional.byol_er`).

    Args:
        kappa: vMF concentration > 0; entropy_weight: lambda >= 0.
    """

    method, support = "byol", "sphere"
    needs_teacher = needs_predictor = True

    def __init__(self, kappa: float = 10.0, entropy_weight: float = 1.0) -> None:
        super().__init__(entropy_weight)
        self.kappa = check_positive("kappa", kappa)

    def terms(self, inputs: ObjectiveInputs) -> ERTerms:
        p1, p2, t1, t2 = inputs.require("p1", "p2", "t1", "t2")
        return ERTerms(*functional.byol_er(p1, p2, t1, t2, self.kappa))
