"""SwAV (Caron et al. 2020) and its ER replacement (prototypes kept).

Original: swapped prediction against Sinkhorn-Knopp codes, computed over SwAV's queue of past
embeddings when the trainer passes ``queue1``/``queue2`` (small-batch recipe, see
:mod:`er_tune.models.queue`). ER: the Sinkhorn targets are replaced by the other view's sharpened
softmax under stop-gradient, minus lambda H(p_bar); with no Sinkhorn codes there is nothing for the
queue to serve, so the ER variant ignores it. The architecture and its optimisation are the same
for both: prototypes frozen for the first ``freeze_prototypes_epochs`` epochs and renormalised in
place before each step (``trainers/steps.py``).
"""

from __future__ import annotations

from er_tune.objectives import functional
from er_tune.objectives.base import (Objective, ObjectiveInputs, ObjectiveOutput, check_iterations,
                                     check_positive)
from er_tune.objectives.er import ERObjective, ERTerms


class SwAV(Objective):
    """Swapped prediction (:func:`functional.swav_loss`).

    Args:
        temperature: tau of the predicted softmax; epsilon: Sinkhorn regularisation;
        iterations: Sinkhorn-Knopp iterations.
    """

    method, variant, support = "swav", "original", "discrete"
    needs_prototypes = True
    loss_is_cross_entropy_over_prototypes = True

    def __init__(self, temperature: float = 0.1, epsilon: float = 0.05, iterations: int = 3) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.epsilon = check_positive("epsilon", epsilon)
        self.iterations = check_iterations("iterations", iterations)

    def forward(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        s1, s2 = inputs.require("s1", "s2")
        return ObjectiveOutput(loss=functional.swav_loss(s1, s2, self.temperature, self.epsilon, self.iterations,
                                                         inputs.queue1, inputs.queue2))


class SwAVER(ERObjective):
    """ER replacement of SwAV (:func:`functional.swav_er`).

    Args:
        temperature: tau of the student softmax (prediction and H(p_bar)).
        sharpen_temperature: lower tau of the target softmax (the config's teacher_temperature).
        entropy_weight: lambda >= 0.
    """

    method, support = "swav", "discrete"
    needs_prototypes = True

    def __init__(self, temperature: float = 0.1, sharpen_temperature: float = 0.04,
                 entropy_weight: float = 1.0) -> None:
        super().__init__(entropy_weight)
        self.temperature = check_positive("temperature", temperature)
        self.sharpen_temperature = check_positive("sharpen_temperature", sharpen_temperature)

    def terms(self, inputs: ObjectiveInputs) -> ERTerms:
        s1, s2 = inputs.require("s1", "s2")
        return ERTerms(*functional.swav_er(s1, s2, self.temperature, self.sharpen_temperature))
