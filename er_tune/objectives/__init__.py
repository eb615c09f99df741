"""The objectives registry: each MVSSL method and its ER replacement (DESIGN.md §2 table)."""

from __future__ import annotations

from er_tune.config import TrialConfig, did_you_mean
from er_tune.objectives.base import Objective, ObjectiveInputs, ObjectiveOutput
from er_tune.objectives.byol import BYOL, BYOLER
from er_tune.objectives.deepcluster import DeepCluster, DeepClusterER
from er_tune.objectives.dino import DINO, DINOER, Center
from er_tune.objectives.simclr import SimCLR, SimCLRER
from er_tune.objectives.swav import SwAV, SwAVER

OBJECTIVES: dict[str, type[Objective]] = {
    "simclr": SimCLR, "simclr_er": SimCLRER,
    "byol": BYOL, "byol_er": BYOLER,
    "dino": DINO, "dino_er": DINOER,
    "swav": SwAV, "swav_er": SwAVER,
    "deepcluster": DeepCluster, "deepcluster_er": DeepClusterER,
}


def objective_class(name: str) -> type[Objective]:
    """The registered class, or ValueError listing the known names."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective '{name}'{did_you_mean(name, list(OBJECTIVES))}; "
                         f"known: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def build_objective(name: str, config: TrialConfig) -> Objective:
    """Construct objective ``name`` with its hyperparameters taken from ``config``."""
    objective_class(name)  # raises with the known names
    c = config
    builders = {
        "simclr": lambda: SimCLR(c.temperature),
        "simclr_er": lambda: SimCLRER(c.kappa, c.entropy_weight),
        "byol": lambda: BYOL(),
        "byol_er": lambda: BYOLER(c.kappa, c.entropy_weight),
        "dino": lambda: DINO(c.num_prototypes, c.student_temperature, c.teacher_temperature,
                             c.center_momentum, centering=c.dino_centering),
        "dino_er": lambda: DINOER(c.student_temperature, c.teacher_temperature, c.entropy_weight),
        "swav": lambda: SwAV(c.temperature, c.sinkhorn_epsilon, c.sinkhorn_iterations),
        "swav_er": lambda: SwAVER(c.temperature, c.teacher_temperature, c.entropy_weight),
        "deepcluster": lambda: DeepCluster(c.temperature),
        "deepcluster_er": lambda: DeepClusterER(c.temperature, c.entropy_weight),
    }
    objective = builders[name]()
    return objective


__all__ = ["OBJECTIVES", "Objective", "ObjectiveInputs", "ObjectiveOutput", "Center", "build_objective",
           "objective_class"]
