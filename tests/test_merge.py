"""Merged network calls (train.merge_calls): which networks merge, and that merging changes
the arithmetic only in its last bits.

The training comparisons use networks without InstanceNorm or spectral norm: InstanceNorm
amplifies last-bit differences of a larger convolution into visible ones within two steps
(see tests/test_distributed.py), and spectral norm advances its power iteration once per call,
so fewer calls give (legitimately) different weights.
"""

from __future__ import annotations

import pytest
import torch
from tiny import TINY_CYCLEGAN, TINY_GAN
from torch import nn

from edgegan.config import load_config
from edgegan.nn.dcgan import DCGANDiscriminator, DCGANGenerator
from edgegan.nn.patchgan import NLayerDiscriminator
from edgegan.nn.resnet import ResnetGenerator
from edgegan.train import merge, train
from edgegan.train.checkpoint import load_checkpoint
from edgegan.train.trainer import Trainer


class _Undeclared(nn.Module):
    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return x - x.mean(0, keepdim=True)  # mixes samples: must never be merged


def test_which_networks_are_per_sample():
    assert merge.per_sample(NLayerDiscriminator(3, ndf=8, norm="instance"))
    assert merge.per_sample(DCGANDiscriminator(1, 28, ndf=8, norm="none", spectral_norm=True))
    # BatchNorm's training statistics span the batch; undeclared networks are not trusted.
    assert not merge.per_sample(NLayerDiscriminator(3, ndf=8, norm="batch"))
    assert not merge.per_sample(DCGANGenerator(8, 1, 28, ngf=8))
    assert not merge.per_sample(_Undeclared())


def test_merged_call_computes_the_separate_calls():
    torch.manual_seed(0)
    g = ResnetGenerator(3, 3, ngf=8, n_blocks=2)
    d = DCGANDiscriminator(1, 28, num_classes=10, ndf=8, norm="none")
    xs = [torch.randn(2, 3, 32, 32), torch.randn(3, 3, 32, 32)]
    for a, b in zip(merge.call(g, xs), merge.call(g, xs, merge=False), strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    ys = [torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)]
    labels = [torch.arange(4), torch.arange(4, 8)]
    merged = merge.call(d, ys, labels)
    separate = merge.call(d, ys, labels, merge=False)
    assert [t.shape for t in merged] == [t.shape for t in separate] == [(4,), (4,)]
    for a, b in zip(merged, separate, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # The labels follow their images: swapped labels give other logits.
    swapped = merge.call(d, ys, labels[::-1])
    assert not torch.allclose(swapped[0], merged[0])


def _tasks_merge(config) -> dict[str, bool]:
    return Trainer(config, run_dir="unused").task.merged


def test_trainer_merges_only_per_sample_networks(tmp_path):
    gan = load_config("dcgan-mnist", TINY_GAN)
    assert _tasks_merge(gan) == {"generator": False, "discriminator": True}
    bn = load_config("dcgan-mnist", [*TINY_GAN, "model.discriminator.norm=batch"])
    assert _tasks_merge(bn) == {"generator": False, "discriminator": False}
    off = load_config("dcgan-mnist", [*TINY_GAN, "train.merge_calls=false"])
    assert not any(_tasks_merge(off).values())
    cyc = load_config("cyclegan-digits", TINY_CYCLEGAN)
    assert all(_tasks_merge(cyc).values())


def _final_weights(tmp_path, preset: str, overrides: list[str], merged: bool) -> dict:
    cfg = load_config(preset, [*overrides, f"train.merge_calls={str(merged).lower()}"])
    result = train(cfg, out_dir=tmp_path / f"merged-{merged}")
    return load_checkpoint(result.checkpoint)["networks"]


@pytest.mark.parametrize(
    "preset, overrides",
    [
        (
            "dcgan-mnist",
            [
                *TINY_GAN,
                "model.discriminator.spectral_norm=false",
                "model.discriminator.norm=none",
                "train.augment=translation,cutout",
                "train.steps=3",
            ],
        ),
        (
            "cyclegan-digits",
            [
                *TINY_CYCLEGAN,
                "data.channels_a=3",  # equal channels: the identity loss is on
                "cycle.lambda_identity=0.5",
                "model.generator.norm=none",
                "model.discriminator.norm=none",
                "eval.at_end=false",
                "train.sample_every=0",
                "train.steps=3",
            ],
        ),
    ],
    ids=["gan-augment", "cyclegan-identity"],
)
def test_merged_training_matches_separate_calls(tmp_path, preset, overrides):
    merged = _final_weights(tmp_path, preset, overrides, merged=True)
    separate = _final_weights(tmp_path, preset, overrides, merged=False)
    for net, state in separate.items():
        for key, value in state.items():
            if value.is_floating_point():
                torch.testing.assert_close(
                    merged[net][key], value, rtol=1e-4, atol=2e-5, msg=f"{net}.{key}"
                )
