"""DeepCluster-v2 keeps its prototypes exactly equal to the k-means centroids.

The prototypes were in the optimiser (SGD with weight decay, and momentum that survived each
k-means reset), so they drifted from the centroids the targets had been assigned to. Now they get
no gradient and are not optimised, in ``deepcluster`` and ``deepcluster_er``.
"""

import pytest
import torch

from er_core.config import TrialConfig
from trainers.state import build_state
from trainers.steps import TrainingStep
from trainers.trial_data import load_trial_data


class _Writer:
    def step_scalars(self, step, **values):
        pass


@pytest.mark.parametrize("variant", ["original", "er"])
def test_prototypes_stay_the_kmeans_centroids_and_are_not_optimised(variant):
    config = TrialConfig(method="deepcluster", variant=variant, image_size=16, train_size=128, eval_size=32,
                         batch_size=32, epochs=2, warmup_epochs=0, lr=0.5, weight_decay=1e-3,
                         projector_dim=16, projector_hidden_dim=32, num_prototypes=8, knn_bank_size=32)
    data = load_trial_data(config)
    state = build_state(config, data)
    weight = state.net.prototypes.weight
    assert not weight.requires_grad
    assert all(p is not weight for group in state.optimizer.param_groups for p in group["params"])
    centroids = []
    set_weights = state.net.prototypes.set_weights
    state.net.prototypes.set_weights = lambda c: (centroids.append(c.clone()), set_weights(c))
    step_fn = TrainingStep(state, data)
    for epoch in (1, 2):
        before = [p.detach().clone() for p in state.net.projector.parameters()]
        step_fn.run_epoch(epoch, _Writer())
        assert len(centroids) == epoch
        assert torch.equal(weight, centroids[-1])  # exactly the centroids after an epoch of SGD steps
        assert weight.grad is None and weight not in state.optimizer.state
        assert any(not torch.equal(a, b) for a, b in zip(before, state.net.projector.parameters()))
