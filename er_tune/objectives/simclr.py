"""SimCLR (Chen et al. 2020) and its ER replacement: NT-Xent -> R̂(z1, z2) - lambda Ĥ(z1 u z2)."""

from __future__ import annotations

from er_tune.objectives import functional
from er_tune.objectives.base import Objective, ObjectiveInputs, ObjectiveOutput, check_positive
from er_tune.objectives.er import ERObjective, ERTerms


class SimCLR(Objective):
    """NT-Xent over the 2B projections (:func:`functional.info_nce`).

    Args:
        temperature: tau > 0.
    """

    method, variant, support = "simclr", "original", "sphere"

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        z1, z2 = inputs.require("z1", "z2")
        return ObjectiveOutput(loss=functional.info_nce(z1, z2, self.temperature))


class SimCLRER(ERObjective):
    """vMF reconstruction between the normalised views minus lambda x KDE entropy of all 2B projections.

    Args:
        kappa: vMF concentration > 0; entropy_weight: lambda >= 0.
    """

    method, support = "simclr", "sphere"

    def __init__(self, kappa: float = 10.0, entropy_weight: float = 1.0) -> None:
        super().__init__(entropy_weight)
        self.kappa = check_positive("kappa", kappa)

    def terms(self, inputs: ObjectiveInputs) -> ERTerms:
        z1, z2 = inputs.require("z1", "z2")
        return ERTerms(*functional.simclr_er(z1, z2, self.kappa))
