"""The objectives registry: each MVSSL method and its ER replacement (DESIGN.md §2 table).

``OBJECTIVES[name]`` is the class; :func:`build_objective` constructs it from a
:class:`~er_tune.config.TrialConfig`. Raw loss functions are in :mod:`er_tune.objectives.functional`.
"""

from __future__ import annotations

from typing import Callable

from er_tune.config import TrialConfig, did_you_mean
from er_tune.objectives.base import Objective, ObjectiveInputs, ObjectiveOutput
from er_tune.objectives.byol import BYOL, BYOLER
from er_tune.objectives.deepcluster import DeepCluster, DeepClusterER, assign_clusters, kmeans
from er_tune.objectives.dino import DINO, DINOER, Center
from er_tune.objectives.er import ERObjective, ERTerms
from er_tune.objectives.simclr import SimCLR, SimCLRER
from er_tune.objectives.swav import SwAV, SwAVER

OBJECTIVES: dict[str, type[Objective]] = {
    "simclr": SimCLR, "simclr_er": SimCLRER,
    "byol": BYOL, "byol_er": BYOLER,
    "dino": DINO, "dino_er": DINOER,
    "swav": SwAV, "swav_er": SwAVER,
    "deepcluster": DeepCluster, "deepcluster_er": DeepClusterER,
}

_BUILDERS: dict[str, Callable[[TrialConfig], Objective]] = {
    "simclr": lambda c: SimCLR(c.temperature),
    "simclr_er": lambda c: SimCLRER(c.kappa, c.entropy_weight),
    "byol": lambda c: BYOL(),
    "byol_er": lambda c: BYOLER(c.kappa, c.entropy_weight),
    "dino": lambda c: DINO(c.num_prototypes, c.student_temperature, c.teacher_temperature,
                           c.center_momentum, centering=c.dino_centering),
    "dino_er": lambda c: DINOER(c.student_temperature, c.teacher_temperature, c.entropy_weight),
    "swav": lambda c: SwAV(c.temperature, c.sinkhorn_epsilon, c.sinkhorn_iterations),
    "swav_er": lambda c: SwAVER(c.temperature, c.teacher_temperature, c.entropy_weight),
    "deepcluster": lambda c: DeepCluster(c.temperature),
    "deepcluster_er": lambda c: DeepClusterER(c.temperature, c.entropy_weight),
}


def objective_class(name: str) -> type[Objective]:
    """The registered class for ``name``.

    Raises:
        ValueError: unknown name; the message lists the known ones.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective '{name}'{did_you_mean(str(name), list(OBJECTIVES))}; "
                         f"known: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def build_objective(name: str, config: TrialConfig) -> Objective:
    """Construct objective ``name`` with its hyperparameters taken from ``config``.

    Fields read: temperature (SimCLR, SwAV, DeepCluster-v2 and their ER variants), student_temperature,
    teacher_temperature (DINO; SwAV-ER's sharpening), center_momentum, dino_centering, num_prototypes
    (DINO), sinkhorn_epsilon, sinkhorn_iterations (SwAV), kappa (sphere ER), entropy_weight (ER).
    """
    objective_class(name)
    return _BUILDERS[name](config)


__all__ = ["OBJECTIVES", "Objective", "ObjectiveInputs", "ObjectiveOutput", "ERObjective", "ERTerms",
           "Center", "assign_clusters", "kmeans", "build_objective", "objective_class"]
