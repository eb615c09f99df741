"""Batched augmentation: per-sample parameters, ranges, determinism, presets."""
import pytest
import torch

from er_tune.data.augment import (VIEW_PRESETS, AugmentConfig, BatchAugmenter, crop_and_flip, make_augmenter)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _batch(n=16, size=16):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def test_identical_inputs_get_different_views_per_sample():
    images = _batch(1).expand(32, -1, -1, -1).contiguous()
    v1, v2 = make_augmenter("simclr", MEAN, STD)(images, torch.Generator().manual_seed(0))
    flat = v1.flatten(1)
    distinct = {tuple(row.round(decimals=4).tolist()) for row in flat}
    assert len(distinct) == 32
    assert not torch.allclose(v1, v2)


def test_outputs_in_normalised_range_and_shape():
    images = _batch()
    for method in VIEW_PRESETS:
        v1, v2 = make_augmenter(method, MEAN, STD)(images, torch.Generator().manual_seed(3))
        for v in (v1, v2):
            assert v.shape == images.shape and v.dtype == torch.float32
            pixels = v * 0.25 + 0.5
            assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5


def test_deterministic_given_seed():
    aug = make_augmenter("byol", MEAN, STD)
    a = aug(_batch(), torch.Generator().manual_seed(7))
    b = aug(_batch(), torch.Generator().manual_seed(7))
    c = aug(_batch(), torch.Generator().manual_seed(8))
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])
    assert not torch.allclose(a[0], c[0])


def test_identity_config_is_normalize():
    identity = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0,
                             grayscale_p=0.0)
    aug = BatchAugmenter(identity, identity, MEAN, STD)
    images = _batch()
    v1, _ = aug(images, torch.Generator().manual_seed(0))
    torch.testing.assert_close(v1, aug.normalize(images), atol=1e-5, rtol=0)
    torch.testing.assert_close(aug.normalize(images), (images.float() / 255 - 0.5) / 0.25)


def test_flip_always_mirrors():
    config = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=1.0)
    x = _batch().float() / 255
    torch.testing.assert_close(crop_and_flip(x, config, torch.Generator().manual_seed(0)), x.flip(-1),
                               atol=1e-5, rtol=0)


def test_grayscale_always_has_equal_channels_and_solarize_inverts():
    config = AugmentConfig(jitter_p=0.0, grayscale_p=1.0)
    v, _ = BatchAugmenter(config, config, (0, 0, 0), (1, 1, 1))(_batch(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(v[:, 0], v[:, 1])
    torch.testing.assert_close(v[:, 1], v[:, 2])
    sol = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0,
                        grayscale_p=0.0, solarize_p=1.0)
    images = _batch()
    out, _ = BatchAugmenter(sol, sol, (0, 0, 0), (1, 1, 1))(images, torch.Generator().manual_seed(0))
    x = images.float() / 255
    torch.testing.assert_close(out, torch.where(x >= 0.5, 1 - x, x), atol=1e-5, rtol=0)


def test_presets_and_errors():
    assert VIEW_PRESETS["byol"][0].blur_p == 1.0 and VIEW_PRESETS["byol"][1].solarize_p == 0.2
    assert VIEW_PRESETS["simclr"][0] == VIEW_PRESETS["simclr"][1]
    with pytest.raises(ValueError, match="simclr"):
        make_augmenter("nope", MEAN, STD)
    with pytest.raises(ValueError, match="uint8"):
        make_augmenter("simclr", MEAN, STD)(torch.zeros(2, 3, 8, 8), torch.Generator())
