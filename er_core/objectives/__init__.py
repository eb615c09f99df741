"""The objectives registry: each MVSSL method and its ER replacement (DESIGN.md §2 table).

``OBJECTIVES[name]`` is the class, the one description of its method: its declared needs (teacher,
predictor, prototypes, targets, views) and its training recipe (hooks) are class members, read by
the trainer, the models, the augmentation and the diagnostics (:class:`Objective`).
:func:`build_objective` constructs it from a :class:`~er_core.config.TrialConfig`
(``cls.from_config``). Raw loss functions are in :mod:`er_core.objectives.functional`.
"""

from __future__ import annotations

from er_core import config as _config
from er_core.config import TrialConfig, did_you_mean, objective_name
from er_core.objectives.base import Objective, ObjectiveInputs, ObjectiveOutput, TrainingContext
from er_core.objectives.byol import BYOL, BYOLER
from er_core.objectives.deepcluster import DeepCluster, DeepClusterER, assign_clusters, kmeans
from er_core.objectives.dino import DINO, DINOER, Center
from er_core.objectives.er import ERObjective, ERTerms
from er_core.objectives.memory import EmbeddingQueue, MemoryBank, effective_queue_length
from er_core.objectives.simclr import SimCLR, SimCLRER
from er_core.objectives.swav import SwAV, SwAVER

OBJECTIVES: dict[str, type[Objective]] = {
    "simclr": SimCLR, "simclr_er": SimCLRER,
    "byol": BYOL, "byol_er": BYOLER,
    "dino": DINO, "dino_er": DINOER,
    "swav": SwAV, "swav_er": SwAVER,
    "deepcluster": DeepCluster, "deepcluster_er": DeepClusterER,
}



def check_registry(objectives: dict[str, type[Objective]]) -> None:
    """The torch-free names in :mod:`er_core.config` (``METHODS``, ``VARIANTS``, ``OBJECTIVE_KEYS``)
    against the classes: one class per method and variant, registered under
    ``objective_name(cls.method, cls.variant)``, and a declared key list per class.

    Raises:
        ImportError: a name in one place and not the other.
    """
    expected = {objective_name(method, variant) for method in _config.METHODS for variant in _config.VARIANTS}
    problems = [f"{name}: registered as {cls.method}/{cls.variant}" for name, cls in objectives.items()
                if name != objective_name(cls.method, cls.variant)]
    if set(objectives) != expected:
        problems.append(f"classes {sorted(objectives)} vs config.METHODS x VARIANTS {sorted(expected)}")
    if set(_config.OBJECTIVE_KEYS) != set(objectives):
        problems.append(f"config.OBJECTIVE_KEYS {sorted(_config.OBJECTIVE_KEYS)} vs classes {sorted(objectives)}")
    if problems:
        raise ImportError("er_core.objectives and er_core.config disagree: " + "; ".join(problems))


check_registry(OBJECTIVES)


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

    Fields read (``er_core.config.OBJECTIVE_KEYS``): temperature (SimCLR, SwAV, DeepCluster-v2 and
    their ER variants), student_temperature, teacher_temperature (DINO; SwAV-ER's sharpening),
    center_momentum, dino_centering, num_prototypes (DINO), sinkhorn_epsilon, sinkhorn_iterations,
    queue_length, queue_start_epoch (SwAV), freeze_prototypes_epochs (both SwAV), kappa (sphere ER),
    entropy_weight (ER).
    """
    return objective_class(name).from_config(config)


__all__ = ["OBJECTIVES", "Objective", "ObjectiveInputs", "ObjectiveOutput", "TrainingContext", "ERObjective",
           "ERTerms", "Center", "EmbeddingQueue", "MemoryBank", "effective_queue_length", "assign_clusters",
           "kmeans", "build_objective", "check_registry", "objective_class"]
