"""Backbones, heads, EMA teacher and its schedule, memory bank."""


import pytest
import torch
import torch.nn.functional as F

from er_core.config import TrialConfig
from er_core.models import (BACKBONES, EMATeacher, MemoryBank, Prototypes, build_backbone, build_network,
                            ema_momentum)


@pytest.mark.parametrize("name, feature_dim, params", [("convnet", 128, (270_000, 290_000)),
                                                       ("resnet18_cifar", 512, (11_000_000, 11_300_000)),
                                                       ("resnet18", 512, (11_000_000, 11_300_000)),
                                                       ("resnet50", 2048, (23_000_000, 24_000_000)),
                                                       ("resnet_small", 512, (2_700_000, 2_850_000))])
def test_backbones_shapes_and_sizes(name, feature_dim, params):
    net = build_backbone(name, 32).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, feature_dim) and net.feature_dim == feature_dim
    assert params[0] <= sum(p.numel() for p in net.parameters()) <= params[1]


def test_resnet18_cifar_keeps_resolution_in_the_stem():
    net = build_backbone("resnet18_cifar", 32).net
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity)


@pytest.mark.parametrize("image_size, pools", [(8, 0), (16, 0), (24, 1), (32, 1), (64, 2), (96, 3)])
def test_convnet_works_at_16px_whatever_the_input(image_size, pools):
    net = build_backbone("convnet", image_size).eval()
    assert sum(isinstance(m, torch.nn.AvgPool2d) for m in net.modules()) == pools
    reduced = net.features[:pools](torch.zeros(1, 3, image_size, image_size))
    assert reduced.shape[-1] == min(image_size, -(-image_size // 2 ** pools)) <= 16
    assert pools == 0 or reduced.shape[-1] > 8
    with torch.no_grad():
        assert net(torch.randn(3, 3, image_size, image_size)).shape == (3, 128)


def test_convnet_pooling_is_an_area_average():
    net = build_backbone("convnet", 32).eval()
    image = torch.rand(1, 3, 32, 32)
    expected = image.view(1, 3, 16, 2, 16, 2).mean(dim=(3, 5))
    assert torch.allclose(net.features[0](image), expected, atol=1e-6)


@pytest.mark.parametrize("image_size, final", [(28, 4), (32, 4), (16, 2)])
def test_resnet_small_sees_every_pixel_and_downsamples_by_learned_strides(image_size, final):
    net = build_backbone("resnet_small", image_size).eval()
    assert not any(isinstance(m, (torch.nn.AvgPool2d, torch.nn.MaxPool2d)) for m in net.modules())
    stem = net.features[0][0]
    assert stem.kernel_size == (3, 3) and stem.stride == (2, 2)  # learned downsampling, every pixel seen
    with torch.no_grad():
        before_pool = net.features[:-2](torch.randn(2, 3, image_size, image_size))
        assert before_pool.shape == (2, 512, final, final)



def test_resnet_small_sees_detail_that_convnet_pools_away():
    """A zero-mean 2x2 checkerboard is exactly zero after convnet's 2x2 average pooling (32 -> 16 px),
    so convnet cannot tell it from a blank image; resnet_small's full-resolution stem can."""
    blank = torch.zeros(1, 3, 32, 32)
    checker = ((torch.arange(32).view(-1, 1) + torch.arange(32).view(1, -1)) % 2 * 2.0 - 1.0).expand(1, 3, 32, 32)
    torch.manual_seed(0)
    convnet, resnet = build_backbone("convnet", 32).eval(), build_backbone("resnet_small", 32).eval()
    with torch.no_grad():
        assert torch.allclose(convnet(checker), convnet(blank))
        assert not torch.allclose(resnet(checker), resnet(blank), atol=1e-3)


def test_unknown_backbone_lists_known():
    with pytest.raises(ValueError, match="known: " + ", ".join(BACKBONES)):
        build_backbone("vit_tiny", 32)


def test_network_heads_per_method():
    byol = build_network(TrialConfig(method="byol", image_size=16, projector_dim=8, projector_hidden_dim=16))
    out = byol(torch.randn(4, 3, 16, 16))
    assert out.p.shape == (4, 8) and out.scores is None
    dino = build_network(TrialConfig(method="dino", image_size=16, projector_dim=8, num_prototypes=5))
    out = dino(torch.randn(4, 3, 16, 16))
    assert out.p is None and out.scores.shape == (4, 5)


def test_prototype_scores_are_cosines():
    layer = Prototypes(6, 4)
    z = torch.randn(10, 6)
    expected = F.cosine_similarity(z[:, None, :], layer.weight[None, :, :], dim=2)
    assert torch.allclose(layer(z), expected, atol=1e-6)
    assert layer(z).abs().max() <= 1.0 + 1e-6


def test_ema_momentum_schedule():
    assert ema_momentum(0.99, 0, 100) == pytest.approx(0.99)
    assert ema_momentum(0.99, 100, 100) == pytest.approx(1.0)
    assert ema_momentum(0.99, 50, 100) == pytest.approx(0.995)
    values = [ema_momentum(0.9, s, 20) for s in range(21)]
    assert values == sorted(values)
    assert ema_momentum(0.0, 0, 10) == 0.0
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        ema_momentum(1.5, 0, 10)


def test_ema_teacher_updates():
    torch.manual_seed(0)
    student = build_network(TrialConfig(method="byol", image_size=16, projector_dim=8, projector_hidden_dim=16))
    teacher = EMATeacher(student)
    assert teacher.network.predictor is None
    assert not any(p.requires_grad for p in teacher.parameters())
    before = [p.clone() for p in teacher.network.projector.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    teacher.update(student, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.network.projector.parameters()))
    teacher.update(student, 0.5)
    target = [(a + s) / 2 for a, s in zip(before, student.projector.parameters())]
    assert all(torch.allclose(t, p) for t, p in zip(target, teacher.network.projector.parameters()))
    teacher.update(student, 0.0)  # ema = 0: the teacher is the current student
    student.eval(), teacher.eval()
    x = torch.randn(3, 3, 16, 16)
    assert torch.equal(student(x).z, teacher(x).z)


def test_memory_bank_round_trip():
    bank = MemoryBank(6, 4)
    assert not bank.filled
    values = F.normalize(torch.randn(6, 4), dim=1)
    bank.update(torch.arange(6), values, values.flip(0))
    assert bank.filled and torch.equal(bank.embeddings(0), values) and torch.equal(bank.embeddings(1), values.flip(0))
    other = MemoryBank(6, 4)
    other.load_state_dict(bank.state_dict())
    assert torch.equal(other.embeddings(), values) and other.filled
