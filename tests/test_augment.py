"""DiffAugment: shapes, differentiability, what each transform does."""

from __future__ import annotations

import pytest
import torch

from edgegan.errors import ConfigError
from edgegan.train.augment import DiffAugment, cutout, translation


def test_translation_moves_content_and_fills_background():
    torch.manual_seed(0)
    x = torch.full((64, 1, 8, 8), -1.0)
    x[:, :, 3, 3] = 1.0  # one bright pixel
    y = translation(x, ratio=0.25)
    assert y.shape == x.shape
    assert ((y == 1.0).sum(dim=(1, 2, 3)) <= 1).all()
    moved = [tuple(torch.nonzero(img[0] == 1.0)[0].tolist()) for img in y if (img == 1).any()]
    assert len(set(moved)) > 5  # different shifts per image
    for r, c in moved:
        assert abs(r - 3) <= 2 and abs(c - 3) <= 2
    assert set(y.unique().tolist()) <= {-1.0, 1.0}


def test_translation_with_zero_ratio_is_identity():
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(translation(x, ratio=0.0), x)


def test_cutout_blanks_one_square_per_image():
    torch.manual_seed(1)
    x = torch.ones(16, 2, 8, 8)
    y = cutout(x, ratio=0.5)
    blanked = (y == -1.0).all(dim=1).sum(dim=(1, 2))
    assert (blanked == 16).all()  # a 4x4 square in every image


def test_augment_is_differentiable():
    x = torch.randn(4, 1, 16, 16, requires_grad=True)
    DiffAugment("translation,cutout,brightness,contrast")(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unknown_policy_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown augmentation 'rotate'"):
        DiffAugment("translation,rotate")
    assert not DiffAugment("")


@pytest.mark.parametrize("penalty", ["train.r1_gamma=1", "loss.name=wgan-gp"])
def test_penalties_see_the_images_the_loss_sees(tmp_path, penalty):
    """With train.augment, R1 and WGAN-GP's penalty took D's gradient at raw images, which
    D never trains on: they now call D through the augmentation, as the loss does."""
    from tiny import TINY_GAN

    from edgegan.config import load_config
    from edgegan.train.trainer import Trainer

    cfg = load_config(
        "dcgan-mnist",
        [*TINY_GAN, penalty, "train.r1_every=1", "model.discriminator.norm=none"],
    )
    trainer = Trainer(cfg, tmp_path / "r")
    trainer.task.augment = lambda x: x + 1000.0  # marks every augmented image
    seen = []
    net = trainer.task.module("discriminator")
    net.register_forward_pre_hook(lambda m, args: seen.append(float(args[0].detach().min())))
    trainer.train_step()
    assert len(seen) >= 2 and min(seen) > 500, seen  # the penalty's call too


def test_brightness_shifts_each_image_by_one_offset_centred_on_zero():
    """mutation testing: dropping the ``- 0.5`` from brightness (every shift positive, the
    augmented images brighter on average) passed the suite."""
    from edgegan.train.augment import brightness

    torch.manual_seed(0)
    x = torch.zeros(256, 2, 4, 4)
    y = brightness(x)
    shift = y[:, 0, 0, 0]
    assert torch.equal(y, shift.view(-1, 1, 1, 1).expand_as(y))  # one offset per image
    assert float(shift.min()) >= -0.5 and float(shift.max()) < 0.5
    assert float(shift.min()) < -0.3 and float(shift.max()) > 0.3
    assert abs(float(shift.mean())) < 0.1


def test_contrast_scales_around_the_image_mean_by_a_factor_in_half_to_three_halves():
    """mutation testing: contrast without ``+ mean`` (the image mean lost), with per-channel
    means (colours pulled to grey instead of scaled) or with factors in [1, 2) instead of
    [0.5, 1.5) passed the suite."""
    from edgegan.train.augment import contrast

    torch.manual_seed(0)
    x = torch.empty(256, 2, 4, 4)
    x[:, 0] = 0.6  # each channel constant, the channels different: image mean 0.2
    x[:, 1] = -0.2
    y = contrast(x)
    torch.testing.assert_close(y.mean(dim=(1, 2, 3)), torch.full((256,), 0.2))
    factor = (y[:, 0, 0, 0] - y[:, 1, 0, 0]) / 0.8  # the channel gap scales by the factor
    assert float(factor.min()) >= 0.5 - 1e-5 and float(factor.max()) < 1.5 + 1e-5
    assert float(factor.min()) < 0.7 and float(factor.max()) > 1.3


def test_cutout_places_its_square_independently_per_image():
    """mutation testing: drawing one cutout offset for the whole batch (every image blanked
    at the same place) passed the suite."""
    torch.manual_seed(2)
    y = cutout(torch.ones(32, 1, 8, 8), ratio=0.25)
    blank = y[:, 0] == -1.0
    tops = {int(torch.nonzero(b)[0, 0]) for b in blank}
    lefts = {int(torch.nonzero(b)[0, 1]) for b in blank}
    assert len(tops) > 2 and len(lefts) > 2  # rows and columns both vary across the batch
