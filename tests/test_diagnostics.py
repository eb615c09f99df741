"""The diagnostic ER estimates: leave-one-out Ĥ, and Ĥ and R̂ on the same views."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from er_core.config import TrialConfig
from er_core.estimators import kde_entropy, sphere_max_entropy, vmf_reconstruction
from er_core.models import NetworkOutput
from trainers.diagnostics import Diagnostics, diagnostic_entropy
from trainers.trial_data import load_trial_data

DIM = 32


class PixelNetwork(nn.Module):
    """A fixed network: a random projection of the pixels (spread), or snapped near one of ten
    directions chosen from the pixels (ten tight clusters). ``features`` are the pixels."""

    def __init__(self, clusters: bool) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("projection", torch.randn(3 * 16 * 16, DIM, generator=g))
        self.register_buffer("choose", torch.randn(3 * 16 * 16, 10, generator=g))
        self.register_buffer("centres", F.normalize(torch.randn(10, DIM, generator=g), dim=1))
        self.clusters = clusters

    def forward(self, x):
        flat = x.flatten(1)
        spread = F.normalize(torch.sin(1000.0 * flat @ self.projection), dim=1)  # pseudo-random directions
        z = spread
        if self.clusters:
            z = self.centres[(flat @ self.choose).argmax(dim=1)] + 0.05 * spread
        return NetworkOutput(flat, z, None, None)


@pytest.fixture(scope="module")
def setup():
    config = TrialConfig(image_size=16, train_size=64, eval_size=256, batch_size=32, knn_bank_size=64, knn_k=5,
                         projector_dim=DIM, kappa_eval=30.0)
    return config, load_trial_data(config)


def test_diagnostic_entropy_is_leave_one_out_and_separates_a_spread_from_a_clustered_network(setup):
    config, data = setup
    measure = Diagnostics(config, data, torch.device("cpu"))
    spread, clustered = measure(PixelNetwork(False)), measure(PixelNetwork(True))
    # leave-one-out: the spread network is at the maximum entropy, 17 nats above the clustered one;
    # the resubstitution estimate (the old diagnostic) put them 3.5 nats apart
    assert spread["er_entropy"] == pytest.approx(sphere_max_entropy(DIM), abs=0.05)
    assert spread["er_entropy"] - clustered["er_entropy"] > 15.0
    z = F.normalize(torch.randn(64, DIM, dtype=torch.float64), dim=1)
    assert diagnostic_entropy(z, 30.0) == kde_entropy(z, 30.0, leave_one_out=True)


def _projections(net, images):
    with torch.no_grad():
        return F.normalize(net(images).z.double(), dim=1)


def test_entropy_and_reconstruction_come_from_the_same_fixed_views(setup):
    config, data = setup
    measure = Diagnostics(config, data, torch.device("cpu"))
    net = PixelNetwork(True)
    metrics = measure(net)
    v1, v2 = measure._eval_views()
    z1, z2 = _projections(net, v1), _projections(net, v2)
    on_views = 0.5 * (float(kde_entropy(z1, 30.0, leave_one_out=True))
                      + float(kde_entropy(z2, 30.0, leave_one_out=True)))
    on_clean = float(kde_entropy(_projections(net, measure._clean(data.eval_images)), 30.0, leave_one_out=True))
    assert abs(on_views - on_clean) > 0.1  # the old er_entropy (clean images) is a different number
    assert metrics["er_entropy"] == pytest.approx(on_views, abs=1e-9)
    assert metrics["er_reconstruction"] == pytest.approx(float(vmf_reconstruction(z1, z2, 30.0)), abs=1e-9)
    assert metrics["er_bound"] == pytest.approx(on_views - metrics["er_reconstruction"], abs=1e-9)
    # the views are drawn once with a fixed seed: a second Diagnostics gives the same numbers
    assert Diagnostics(config, data, torch.device("cpu"))(net) == metrics
