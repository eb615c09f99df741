"""BYOL (Grill et al. 2020) and its ER replacement (predictor and EMA target kept).

Original: ``2 - 2 cos(pred(z1), sg(t2))``, symmetrised over the views.
ER: ``R(pred(z1), sg(t2)) - lambda H(pred(z1))`` on the sphere, symmetrised.
"""

from __future__ import annotations

from er_tune.objectives import functional
from er_tune.objectives.base import Objective, ObjectiveInputs, ObjectiveOutput, er_output


class BYOL(Objective):
    method, variant, support = "byol", "original", "sphere"
    needs_teacher = needs_predictor = True

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        p1, p2, t1, t2 = inputs.require("p1", "p2", "t1", "t2")
        return ObjectiveOutput(loss=0.5 * (functional.byol_loss(p1, t2) + functional.byol_loss(p2, t1)))


class BYOLER(Objective):
    method, variant, support = "byol", "er", "sphere"
    needs_teacher = needs_predictor = True

    def __init__(self, kappa: float = 10.0, entropy_weight: float = 1.0) -> None:
        super().__init__()
        self.kappa, self.entropy_weight = kappa, entropy_weight

    def terms(self, inputs: ObjectiveInputs):
        p1, p2, t1, t2 = inputs.require("p1", "p2", "t1", "t2")
        return functional.byol_er(p1, p2, t1, t2, self.kappa)

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        reconstruction, entropy = self.terms(inputs)
        return er_output(reconstruction, entropy, self.entropy_weight)
