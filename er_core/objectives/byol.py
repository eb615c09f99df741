"""BYOL (Grill et al. 2020) and its ER replacement (predictor and EMA target kept).

Original: ``2 - 2 cos(pred(z1), sg(t2))``, mean of the two directions (view 1 -> 2 and 2 -> 1).
ER: ``R̂(pred(z1), sg(t2)) - lambda Ĥ`` on the sphere, mean of the two directions, with
``Ĥ = (Ĥ(z1) + Ĥ(z2)) / 2`` the KDE entropy of each view's online projections. Why the projections
and not the predictor outputs (the earlier choice): the bound ``I(Z1; Z2) >= H(Z2) + E log q(Z2|Z1)``
names the entropy of the reconstructed variable, the target-side projection Z2; the predictor output
is the conditional's mean. The online projection is that variable's estimate gradients reach (the
target projector is its EMA, and equal to it at EMA 0). Per view, as SimCLR-ER (see
:func:`functional.per_view_entropy`).
Both declare ``needs_teacher``: the trainer builds the EMA target and updates it after every step
(its schedule: :func:`er_core.models.ema_momentum`); BYOL's asymmetric views (blur / solarisation).
"""

from __future__ import annotations

from er_core.config import TrialConfig
from er_core.objectives import functional
from er_core.objectives.base import Objective, ObjectiveInputs, ObjectiveOutput, check_positive
from er_core.objectives.er import ERObjective, ERTerms


class BYOL(Objective):
    """``0.5 * (byol_loss(p1, t2) + byol_loss(p2, t1))`` (:func:`functional.byol_loss`)."""

    method, variant, support = "byol", "original", "sphere"
    needs_teacher = needs_predictor = True
    views = "asymmetric"

    @classmethod
    def from_config(cls, config: TrialConfig) -> "BYOL":
        return cls()

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
    views = "asymmetric"

    def __init__(self, kappa: float = 10.0, entropy_weight: float = 1.0) -> None:
        super().__init__(entropy_weight)
        self.kappa = check_positive("kappa", kappa)

    @classmethod
    def from_config(cls, config: TrialConfig) -> "BYOLER":
        return cls(config.kappa, config.entropy_weight)

    def terms(self, inputs: ObjectiveInputs) -> ERTerms:
        z1, z2, p1, p2, t1, t2 = inputs.require("z1", "z2", "p1", "p2", "t1", "t2")
        return ERTerms(*functional.byol_er(z1, z2, p1, p2, t1, t2, self.kappa))
