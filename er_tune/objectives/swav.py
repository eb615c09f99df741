"""SwAV (Caron et al. 2020) and its ER replacement (prototypes kept).

Original: swapped prediction against Sinkhorn-Knopp codes. ER: the Sinkhorn targets are replaced
by the other view's sharpened softmax under stop-gradient, minus lambda H(p_bar).
"""

from __future__ import annotations

from er_tune.objectives import functional
from er_tune.objectives.base import Objective, ObjectiveInputs, ObjectiveOutput, er_output


class SwAV(Objective):
    method, variant, support = "swav", "original", "discrete"
    needs_prototypes = True

    def __init__(self, temperature: float = 0.1, epsilon: float = 0.05, iterations: int = 3) -> None:
        super().__init__()
        self.temperature, self.epsilon, self.iterations = temperature, epsilon, iterations

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        s1, s2 = inputs.require("s1", "s2")
        return ObjectiveOutput(loss=functional.swav_loss(s1, s2, self.temperature, self.epsilon, self.iterations))


class SwAVER(Objective):
    method, variant, support = "swav", "er", "discrete"
    needs_prototypes = True

    def __init__(self, temperature: float = 0.1, sharpen_temperature: float = 0.04,
                 entropy_weight: float = 1.0) -> None:
        super().__init__()
        self.temperature, self.sharpen_temperature = temperature, sharpen_temperature
        self.entropy_weight = entropy_weight

    def terms(self, inputs: ObjectiveInputs):
        s1, s2 = inputs.require("s1", "s2")
        return functional.swav_er(s1, s2, self.temperature, self.sharpen_temperature)

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        reconstruction, entropy = self.terms(inputs)
        return er_output(reconstruction, entropy, self.entropy_weight)
