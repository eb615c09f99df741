"""The mutable state of one trial: what it trains, and how it is checkpointed and restored.

Everything that influences later epochs lives in :class:`TrialState` and goes into the
checkpoint: network, EMA teacher (when the objective declares one), objective (with the state its
recipe keeps: DINO's centre, DeepCluster-v2's memory bank and current k-means targets, SwAV's queue
once it has started), optimiser, collapse monitor, and all random number generators (data order,
augmentation, torch's global RNG). Learning rate and EMA coefficient are pure functions of
the global step, so restoring ``step`` restores both schedules. Resuming from epoch k therefore
reproduces the metrics of an uninterrupted run (tested in ``tests/test_trial.py``).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from er_core.collapse import CollapseMonitor
from er_core.config import TrialConfig
from er_core.io import atomic_path
from er_core.data import DatasetBundle
from er_core.models import EMATeacher, SSLNetwork, build_network
from er_core.objectives import Objective, build_objective
from trainers.distributed import World, gather_objects, global_batchnorm
from trainers.optim import build_optimizer

STATE_FILE = "trial_state.pt"
# Checkpoints written before the recipes moved into the objectives kept their state at the top level
# under these keys; load_state_dict folds them into the objective's state dict (same module names).
LEGACY_RECIPE_KEYS = ("bank", "targets", "queue")
AUGMENT_SEED_STRIDE = 1_000_003  # worker r's augmentation seed: seed + 1 + r x stride (rank 0: seed + 1)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when a GPU is visible (Ray sets CUDA_VISIBLE_DEVICES per trial), else CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was requested but no CUDA device is visible")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class TrialState:
    """Live objects of a trial plus its position (``epoch`` finished, global ``step``)."""

    config: TrialConfig
    device: torch.device
    net: SSLNetwork
    teacher: EMATeacher | None
    objective: Objective
    optimizer: torch.optim.Optimizer
    monitor: CollapseMonitor
    data_generator: torch.Generator
    augment_generator: torch.Generator
    epoch: int = 0
    step: int = 0
    last_metrics: dict[str, Any] = field(default_factory=dict)
    world: World = field(default_factory=World)

    @property
    def channels_last(self) -> bool:
        return self.device.type == "cuda"

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "net": self.net.state_dict(),
            "teacher": self.teacher.state_dict() if self.teacher is not None else None,
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "monitor": self.monitor.state_dict(),
            "data_rng": self.data_generator.get_state(),
            # each worker draws its own shard's augmentations: keep every worker's stream
            "augment_rng": gather_objects(self.augment_generator.get_state(), self.world),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "python_rng": random.getstate(),
            "numpy_rng": np.random.get_state(),
            "last_metrics": dict(self.last_metrics),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.net.load_state_dict(state["net"])
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])
        self.objective.load_state_dict(_with_legacy_recipe(state))
        self.optimizer.load_state_dict(state["optimizer"])
        self.monitor.load_state_dict(state["monitor"])
        self.data_generator.set_state(state["data_rng"])
        augment_rng = state["augment_rng"]
        if isinstance(augment_rng, list):
            if len(augment_rng) != self.world.size:
                raise ValueError(f"the checkpoint holds the augmentation streams of {len(augment_rng)} workers, "
                                 f"this trial runs {self.world.size}")
            augment_rng = augment_rng[self.world.rank]
        self.augment_generator.set_state(augment_rng.cpu())
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        random.setstate(state["python_rng"])
        np.random.set_state(state["numpy_rng"])
        self.last_metrics = dict(state.get("last_metrics", {}))

    def save(self, directory: str) -> None:
        """Write the checkpoint file into ``directory`` (atomically: temp file then rename)."""
        path = os.path.join(directory, STATE_FILE)
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)

    def restore(self, directory: str) -> None:
        state = torch.load(os.path.join(directory, STATE_FILE), map_location=self.device,
                           weights_only=False)
        self.load_state_dict(state)


def _with_legacy_recipe(state: dict[str, Any]) -> dict[str, Any]:
    """The objective's state dict, with the recipe state of an older checkpoint folded in."""
    objective_state = dict(state["objective"])
    for name in LEGACY_RECIPE_KEYS:
        value = state.get(name)
        if isinstance(value, dict):
            objective_state.update({f"{name}.{key}": tensor for key, tensor in value.items()})
        elif value is not None:
            objective_state[name] = value
    return objective_state


def build_state(config: TrialConfig, data: DatasetBundle, world: World | None = None) -> TrialState:
    """Seed every RNG from ``config.seed`` and build the trial's modules on its device.

    With several workers (``world``, default: one) every worker builds the same replica from the
    same seed; only the augmentation stream differs by rank (each worker augments its own shard),
    and batch norm becomes :class:`~trainers.distributed.GlobalBatchNorm` when
    ``config.sync_batchnorm`` (before the EMA teacher copies the network, so it normalises
    globally too).
    """
    world = world or World()
    if world.size != config.world_size:
        raise ValueError(f"the trial is configured for world_size={config.world_size} but runs on {world.size} "
                         "worker(s)")
    device = resolve_device(config.device)
    random.seed(config.seed)
    np.random.seed(config.seed % (2**32))
    torch.manual_seed(config.seed)
    net = build_network(config)
    if world.distributed and config.sync_batchnorm:
        net = global_batchnorm(net)
    net = net.to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    objective = build_objective(config.objective, config)
    objective.setup(config, data.num_train)
    objective = objective.to(device)
    teacher = EMATeacher(net) if objective.needs_teacher else None
    optimizer = build_optimizer([net, objective], config)
    monitor = CollapseMonitor(config.collapse, discrete=objective.support == "discrete",
                              num_classes=data.num_classes)
    data_generator = torch.Generator()
    data_generator.manual_seed(config.seed)
    augment_generator = torch.Generator(device=device)
    augment_generator.manual_seed(config.seed + 1 + AUGMENT_SEED_STRIDE * world.rank)
    return TrialState(config=config, device=device, net=net, teacher=teacher, objective=objective,
                      optimizer=optimizer, monitor=monitor, data_generator=data_generator,
                      augment_generator=augment_generator, world=world)
