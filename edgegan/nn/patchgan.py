"""PatchGAN and pixel discriminators of pix2pix/CycleGAN, as the reference builds them.

``NLayerDiscriminator`` (junyanz/pytorch-CycleGAN-and-pix2pix) classifies overlapping patches:
``n_layers`` 4x4 stride-2 convs (widths ndf, 2ndf, 4ndf, 8ndf capped at 8ndf), a 4x4 stride-1
conv and a 4x4 stride-1 conv to one channel, LeakyReLU(0.2) between them and ``norm`` after
all but the first and last. With ``n_layers=3`` each output sees a 70x70 patch and a 256 pixel
input gives a 30x30 logit map. ``PixelDiscriminator`` (1x1 convs) classifies every pixel.
Both return raw logits ``(N, 1, h, w)``; the adversarial loss averages over the map.
"""

from __future__ import annotations

import torch
from torch import nn

from edgegan.errors import EdgeganError
from edgegan.nn.init import init_weights
from edgegan.nn.layers import NORMS, check_choice, check_positive, conv_bias, norm_2d


def patch_output_size(size: int, n_layers: int = 3) -> int:
    """Side of the logit map for a ``size`` pixel side: halved ``n_layers`` times, then -2."""
    for _ in range(n_layers):
        size //= 2  # k4 s2 p1: floor(size / 2)
    return size - 2  # two k4 s1 p1 convs take one pixel each


def receptive_field(n_layers: int = 3) -> int:
    """Side of the input patch each output logit sees (70 for ``n_layers=3``)."""
    rf = 1
    for stride in [1, 1] + [2] * n_layers:  # from the output back to the input
        rf = (rf - 1) * stride + 4
    return rf


class NLayerDiscriminator(nn.Module):
    """Images ``(N, C, H, W)`` -> patch logits ``(N, 1, h, w)``; ``labels`` are ignored."""

    per_sample = True  # no layer mixes samples but BatchNorm (see edgegan.train.merge)

    def __init__(
        self,
        channels: int,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "instance",
        init: str = "normal",
        init_gain: float = 0.02,
    ) -> None:
        super().__init__()
        check_positive("channels", channels)
        check_positive("ndf", ndf)
        check_positive("n_layers", n_layers)
        check_choice("norm", norm, NORMS)
        self.n_layers = n_layers
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.Conv2d(channels, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=bias),
                norm_2d(norm, ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=bias),
            norm_2d(norm, ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*layers)
        init_weights(self, init, init_gain)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1-conv discriminator (a 1x1 PatchGAN): ``(N, C, H, W)`` -> logits ``(N, 1, H, W)``."""

    per_sample = True  # no layer mixes samples but BatchNorm (see edgegan.train.merge)

    def __init__(
        self,
        channels: int,
        ndf: int = 64,
        norm: str = "instance",
        init: str = "normal",
        init_gain: float = 0.02,
    ) -> None:
        super().__init__()
        check_positive("channels", channels)
        check_positive("ndf", ndf)
        check_choice("norm", norm, NORMS)
        bias = conv_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(channels, ndf, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias),
            norm_2d(norm, ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )
        init_weights(self, init, init_gain)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x)


def check_patch_size(image_size: int, n_layers: int) -> None:
    """Raise if a ``image_size`` input leaves no logit map after ``n_layers`` downsamplings."""
    if patch_output_size(image_size, n_layers) < 1:
        smallest = 3 * 2**n_layers
        raise EdgeganError(
            f"patchgan with n_layers={n_layers} needs image_size >= {smallest}; got "
            f"{image_size} (lower n_layers or use larger images)"
        )
