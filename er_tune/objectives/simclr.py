"""SimCLR (Chen et al. 2020) and its ER replacement: InfoNCE -> R(z1, z2) - lambda H(z1 u z2)."""

from __future__ import annotations

from er_tune.objectives import functional
from er_tune.objectives.base import Objective, ObjectiveInputs, ObjectiveOutput, er_output


class SimCLR(Objective):
    """NT-Xent over the 2B projections with temperature tau."""

    method, variant, support = "simclr", "original", "sphere"

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        z1, z2 = inputs.require("z1", "z2")
        return ObjectiveOutput(loss=functional.info_nce(z1, z2, self.temperature))


class SimCLRER(Objective):
    """ER replacement: vMF reconstruction between views minus lambda x KDE entropy of both views."""

    method, variant, support = "simclr", "er", "sphere"

    def __init__(self, kappa: float = 10.0, entropy_weight: float = 1.0) -> None:
        super().__init__()
        self.kappa, self.entropy_weight = kappa, entropy_weight

    def terms(self, inputs: ObjectiveInputs):
        z1, z2 = inputs.require("z1", "z2")
        return functional.simclr_er(z1, z2, self.kappa)

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        reconstruction, entropy = self.terms(inputs)
        return er_output(reconstruction, entropy, self.entropy_weight)
