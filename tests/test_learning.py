"""`shapes` is a real learning problem: a short SimCLR run beats raw pixels and the untrained network.

The full comparison (SimCLR, BYOL, DINO and their ER replacements at 32x32) is
``benchmarks/shapes_learning.py``; this is the seconds-scale version that CI can afford.
"""

import pytest

from er_core.config import TrialConfig
from trainers.baselines import random_network_knn, raw_pixel_knn
from trainers.reporters import LocalReporter
from trainers.trial_data import load_trial_data
from trainers.trial import run_trial

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def config():
    return TrialConfig(method="simclr", image_size=16, train_size=2048, eval_size=500, knn_bank_size=2048,
                       batch_size=64, epochs=12, warmup_epochs=1, projector_dim=64, projector_hidden_dim=256,
                       device="cpu", seed=0)


@pytest.fixture(scope="module")
def data(config):
    return load_trial_data(config)


def test_baselines_are_far_from_perfect_and_above_chance(config, data):
    raw, random = raw_pixel_knn(config, data), random_network_knn(config, data)
    assert 0.15 < raw < 0.45
    assert 0.12 < random < 0.40
    assert raw_pixel_knn(config, data) == raw and random_network_knn(config, data) == random  # deterministic


@pytest.mark.e2e
def test_short_simclr_run_beats_raw_pixels_and_the_untrained_network(tmp_path, config, data):
    raw, random = raw_pixel_knn(config, data), random_network_knn(config, data)
    summary = run_trial(config, data, LocalReporter(str(tmp_path), config.to_dict()))
    trained = summary.final_metrics["knn_top1"]
    assert summary.status == "completed"
    assert trained > max(raw, random) + 0.05, (trained, raw, random)  # measured: 0.426, 0.338, 0.274
