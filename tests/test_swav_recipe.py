"""SwAV's small-batch recipe (facebookresearch/swav main_swav.py): queue, prototype freezing, renormalisation."""

import pytest
import torch
import torch.nn.functional as F

from er_core.config import ConfigError, TrialConfig
from er_core.models import EmbeddingQueue, effective_queue_length
from er_core.objectives import functional
from tests.test_trial import tiny
from trainers.state import build_state
from trainers.steps import TrainingStep
from trainers.trial_data import load_trial_data


class NullWriter:
    def step_scalars(self, step, **values):
        pass


@pytest.fixture(scope="module")
def tiny_data():
    return load_trial_data(tiny("swav"))


def test_queue_length_is_rounded_down_to_a_multiple_of_the_batch():
    assert effective_queue_length(3840, 256) == 3840
    assert effective_queue_length(3840, 100) == 3800
    assert effective_queue_length(100, 256) == 0
    assert effective_queue_length(0, 32) == 0


def test_recipe_fields_are_validated_and_default_to_swav_small_batch_recipe():
    config = TrialConfig()
    assert (config.queue_length, config.queue_start_epoch, config.freeze_prototypes_epochs) == (3840, 15, 1)
    for key in ("queue_length", "queue_start_epoch", "freeze_prototypes_epochs"):
        with pytest.raises(ConfigError, match=f"{key}=-1 is out of range; allowed: >= 0"):
            TrialConfig(**{key: -1})


def test_queue_is_fifo_newest_first_and_full_after_length_rows():
    queue = EmbeddingQueue(length=4, dim=3)
    batches = [torch.full((2, 3), float(i)) for i in range(3)]
    queue.push(batches[0], -batches[0])
    assert not queue.full and queue.scores(0, lambda e: e) is None
    queue.push(batches[1], -batches[1])
    assert queue.full
    queue.push(batches[2], -batches[2])
    assert queue.embeddings[0, :, 0].tolist() == [2.0, 2.0, 1.0, 1.0]
    assert queue.embeddings[1, :, 0].tolist() == [-2.0, -2.0, -1.0, -1.0]
    restored = EmbeddingQueue(length=4, dim=3)
    restored.load_state_dict(queue.state_dict())
    assert restored.full and torch.equal(restored.embeddings, queue.embeddings)


def test_queue_lets_a_small_batch_keep_a_shared_assignment():
    """Batch-only equipartition spreads 4 samples over 8 prototypes even when they all prefer
    prototype 0; with 60 queued samples that cover every prototype, the batch's codes can follow
    their scores (the reason SwAV uses a queue below batch 4096)."""
    K, B = 8, 4
    batch = torch.full((B, K), -0.2)
    batch[:, 0] = 0.9
    queue = torch.full((60, K), -0.2)
    queue[torch.arange(60), torch.arange(60) % K] = 0.9
    without = functional.sinkhorn(batch, 0.05, 3)
    joint = functional.sinkhorn(torch.cat([queue, batch]), 0.05, 3)[-B:]
    assert without[:, 0].mean() < 0.3
    assert joint[:, 0].mean() > 0.9
    assert torch.allclose(joint.sum(dim=1), torch.ones(B))
    scores2 = torch.randn(B, K)
    expected = 0.5 * (functional.soft_cross_entropy(joint, scores2, 0.1)
                      + functional.soft_cross_entropy(functional.sinkhorn(torch.cat([queue, scores2]), 0.05, 3)[-B:],
                                                      batch, 0.1))
    got = functional.swav_loss(batch, scores2, 0.1, 0.05, 3, queue1=queue, queue2=queue)
    assert got == pytest.approx(float(expected), rel=1e-6)
    assert functional.swav_loss(batch, scores2, 0.1, 0.05, 3) != pytest.approx(float(got), rel=1e-3)


def queue(state):
    """SwAV's queue, recipe state of its objective (None before it starts; SwAV-ER has none)."""
    return getattr(state.objective, "queue", None)


def record_steps(state):
    """Per objective call: prototype row norms, the queue scores passed, and the scores expected
    from the queued embeddings under the current prototypes."""
    calls = []

    def hook(module, args):
        inputs = args[0]
        weight = state.net.prototypes.weight.detach().clone()
        expected = None
        if queue(state) is not None and queue(state).full:
            expected = F.normalize(queue(state).embeddings[0], dim=1) @ F.normalize(weight, dim=1).T
        calls.append(dict(norms=weight.norm(dim=1), weight=weight, queue1=inputs.queue1, expected=expected))

    state.objective.register_forward_pre_hook(hook)
    return calls


@pytest.mark.parametrize("variant", ["original", "er"])
def test_prototypes_are_renormalised_each_step_and_frozen_for_the_first_epoch(tiny_data, variant):
    config = tiny("swav", variant, epochs=2, freeze_prototypes_epochs=1, queue_length=0)
    state = build_state(config, tiny_data)
    initial = state.net.prototypes.weight.detach().clone()
    calls = record_steps(state)
    step = TrainingStep(state, tiny_data)
    step.run_epoch(1, NullWriter())
    # frozen: no gradient, so no weight decay or momentum either; only the renormalisation
    assert torch.allclose(state.net.prototypes.weight, F.normalize(initial, dim=1), atol=1e-7)
    assert state.net.prototypes.weight not in state.optimizer.state
    step.run_epoch(2, NullWriter())
    assert not torch.allclose(state.net.prototypes.weight, F.normalize(initial, dim=1), atol=1e-4)
    assert len(calls) == 2 * step.steps_per_epoch
    for call in calls:
        assert torch.allclose(call["norms"], torch.ones_like(call["norms"]), atol=1e-6)


def test_queue_joins_the_codes_once_full_with_scores_from_the_current_prototypes(tiny_data):
    config = tiny("swav", epochs=2, queue_length=64, queue_start_epoch=1)  # 3 steps of 32 per epoch
    state = build_state(config, tiny_data)
    calls = record_steps(state)
    step = TrainingStep(state, tiny_data)
    step.run_epoch(1, NullWriter())
    assert queue(state) is None and all(call["queue1"] is None for call in calls)
    step.run_epoch(2, NullWriter())
    assert [call["queue1"] is None for call in calls[3:]] == [True, True, False]
    last = calls[-1]
    assert last["queue1"].shape == (64, config.num_prototypes)
    assert torch.allclose(last["queue1"], last["expected"], atol=1e-6)


def test_swav_er_never_builds_a_queue(tiny_data):
    config = tiny("swav", "er", epochs=1, queue_length=64, queue_start_epoch=0)
    state = build_state(config, tiny_data)
    calls = record_steps(state)
    TrainingStep(state, tiny_data).run_epoch(1, NullWriter())
    assert queue(state) is None and all(call["queue1"] is None for call in calls)
