"""A Ray Tune searcher that hands out a fixed list of complete, flat trial configurations.

The replicate phase runs known configurations (best search configuration × every seed).
``BasicVariantGenerator(points_to_evaluate=...)`` only fills in keys of a ``param_space``, and a
``grid_search`` over whole configs would nest them under one key; this searcher returns each
config as it is, so ``params.json`` has the same flat schema in both phases. Its position is saved
with the experiment, so ``Tuner.restore`` never hands a configuration out twice.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

from ray.tune.search import Searcher

from er_core.io import dump_state, load_state


class FixedConfigSearcher(Searcher):
    """Suggests ``configs[0], configs[1], ...`` then ``Searcher.FINISHED``."""

    def __init__(self, configs: Sequence[Mapping[str, Any]]) -> None:
        super().__init__()
        self._configs = [dict(config) for config in configs]
        self._next = 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str):
        if self._next >= len(self._configs):
            return Searcher.FINISHED
        config = copy.deepcopy(self._configs[self._next])
        self._next += 1
        return config

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        """Nothing to learn: the configurations are fixed."""

    def save(self, checkpoint_path: str) -> None:
        dump_state(checkpoint_path, {"configs": self._configs, "next": self._next})

    def restore(self, checkpoint_path: str) -> None:
        state = load_state(checkpoint_path)
        self._configs, self._next = state["configs"], state["next"]
