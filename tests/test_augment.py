"""Batched augmentation: per-sample parameters, ranges, determinism, presets."""
import pytest
import torch

from er_core.data.augment import (VIEW_PRESETS, AugmentConfig, BatchAugmenter, crop_and_flip, make_augmenter)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _batch(n=16, size=16):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def test_identical_inputs_get_different_views_per_sample():
    images = _batch(1).expand(32, -1, -1, -1).contiguous()
    v1, v2 = make_augmenter("symmetric", MEAN, STD)(images, torch.Generator().manual_seed(0))
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
    aug = make_augmenter("asymmetric", MEAN, STD)
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
    assert VIEW_PRESETS["asymmetric"][0].blur_p == 1.0 and VIEW_PRESETS["asymmetric"][1].solarize_p == 0.2
    assert VIEW_PRESETS["symmetric"][0] == VIEW_PRESETS["symmetric"][1]
    with pytest.raises(ValueError, match="symmetric"):
        make_augmenter("nope", MEAN, STD)
    with pytest.raises(ValueError, match="uint8"):
        make_augmenter("symmetric", MEAN, STD)(torch.zeros(2, 3, 8, 8), torch.Generator())


def test_gray_preset_drops_exactly_the_colour_operations():
    from dataclasses import replace

    from er_core.data.augment import GRAY_VIEW_PRESETS

    assert set(GRAY_VIEW_PRESETS) == set(VIEW_PRESETS)
    for method, views in VIEW_PRESETS.items():
        for colour, gray in zip(views, GRAY_VIEW_PRESETS[method]):
            assert (gray.saturation, gray.hue, gray.grayscale_p) == (0.0, 0.0, 0.0)
            assert gray.brightness == colour.brightness > 0 and gray.contrast == colour.contrast > 0
            assert replace(colour, saturation=0.0, hue=0.0, grayscale_p=0.0) == gray
        augmenter = make_augmenter(method, MEAN, STD, grayscale=True)
        assert (augmenter.view1, augmenter.view2) == GRAY_VIEW_PRESETS[method]


def test_gray_jitter_is_brightness_then_contrast_only():
    """On colour input (where saturation/hue would show) the gray jitter equals the closed form
    y = clamp(c (clamp(b x) - m) + m), m the mean luma, with (apply, b, c) drawn in that order."""
    from er_core.data.augment import GRAY_VIEW_PRESETS, color_jitter

    config = GRAY_VIEW_PRESETS["symmetric"][0]
    x = _batch(n=64).float() / 255
    out = color_jitter(x, config, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    apply = (torch.rand(64, generator=g) < config.jitter_p).view(-1, 1, 1, 1)
    b = (1 - config.brightness + 2 * config.brightness * torch.rand(64, generator=g)).view(-1, 1, 1, 1)
    c = (1 - config.contrast + 2 * config.contrast * torch.rand(64, generator=g)).view(-1, 1, 1, 1)
    y = (x * b).clamp(0, 1)
    luma = (y * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    m = luma.mean(dim=(2, 3), keepdim=True)
    expected = torch.where(apply, ((y - m) * c + m).clamp(0, 1), x)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert 40 <= int(apply.sum()) < 64  # jitter was applied to most images, not skipped
    # The colour preset with the same draws differs: it also scales and rotates chroma.
    colour = color_jitter(x, VIEW_PRESETS["symmetric"][0], torch.Generator().manual_seed(5))
    assert (colour - expected).abs().max() > 0.05


def test_grey_images_stay_grey_and_use_the_whole_pipeline():
    grey = _batch(n=32)[:, :1].expand(-1, 3, -1, -1).contiguous()
    for method in VIEW_PRESETS:
        augmenter = make_augmenter(method, MEAN, STD, grayscale=True)
        for view in augmenter(grey, torch.Generator().manual_seed(2)):
            torch.testing.assert_close(view[:, 0], view[:, 1], atol=1e-5, rtol=0)
            torch.testing.assert_close(view[:, 1], view[:, 2], atol=1e-5, rtol=0)
            assert not torch.allclose(view, augmenter.normalize(grey), atol=1e-2)


@pytest.mark.parametrize("augment,grayscale,expected", [("auto", True, True), ("auto", False, False),
                                                         ("color", True, False), ("gray", False, True)])
def test_use_gray_preset_follows_data_unless_overridden(augment, grayscale, expected):
    from er_core.data.augment import use_gray_preset

    assert use_gray_preset(augment, grayscale) is expected


def test_augment_key_validated_and_resolved_per_trial():
    from er_core.config import ConfigError, TrialConfig
    from er_core.data import load_dataset
    from trainers.state import build_state
    from trainers.steps import TrainingStep

    with pytest.raises(ConfigError, match="augment.*auto, color, gray"):
        TrialConfig(augment="grey")
    digits = load_dataset("digits", image_size=16, train_size=64, eval_size=16)
    shapes = load_dataset("shapes", image_size=16, train_size=64, eval_size=16)
    assert digits.grayscale and not shapes.grayscale
    base = TrialConfig(dataset="digits", image_size=16, train_size=64, eval_size=16, batch_size=32, epochs=1,
                       device="cpu")
    for config, data, hue in ((base, digits, 0.0), (base.replace(augment="color"), digits, 0.1),
                              (base.replace(dataset="shapes"), shapes, 0.1),
                              (base.replace(dataset="shapes", augment="gray"), shapes, 0.0)):
        step = TrainingStep(build_state(config, data), data)
        assert step.augment.view1.hue == hue and step.augment.view2.grayscale_p == (0.2 if hue else 0.0)
