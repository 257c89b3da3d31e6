"""ResNet image-to-image generator of CycleGAN (Zhu et al. 2017), after Johnson et al. (2016).

The layout is the reference's (junyanz/pytorch-CycleGAN-and-pix2pix ``ResnetGenerator``):
c7s1-ngf, two stride-2 3x3 downsamplings (d2ngf, d4ngf), ``n_blocks`` residual blocks at 4ngf,
two upsamplings (u2ngf, ungf), c7s1-out and Tanh. ``upsample="transposed"`` is the reference's
ConvTranspose2d (k3, s2, p1, output_padding 1); ``"resize"`` is nearest-neighbour x2 followed by
a padded 3x3 conv, which avoids checkerboard artifacts (Odena et al. 2016) with the same
parameter count. Both map an ``H x W`` input to ``H x W`` when H and W are multiples of 4.
"""

from __future__ import annotations

import torch
from torch import nn

from edgegan.errors import EdgeganError
from edgegan.nn.init import init_weights
from edgegan.nn.layers import NORMS, check_choice, check_positive, conv_bias, norm_2d

PADDINGS: tuple[str, ...] = ("reflect", "replicate", "zero")
UPSAMPLES: tuple[str, ...] = ("transposed", "resize")

_N_DOWN = 2


def _pad(kind: str, size: int) -> list[nn.Module]:
    """The explicit padding layer before a conv (none for ``"zero"``: the conv pads)."""
    if kind == "reflect":
        return [nn.ReflectionPad2d(size)]
    if kind == "replicate":
        return [nn.ReplicationPad2d(size)]
    return []


class ResnetBlock(nn.Module):
    """x + [pad, conv3, norm, ReLU, (dropout 0.5), pad, conv3, norm](x)."""

    def __init__(self, dim: int, padding: str, norm: str, use_dropout: bool) -> None:
        super().__init__()
        p = 1 if padding == "zero" else 0
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            *_pad(padding, 1),
            nn.Conv2d(dim, dim, 3, padding=p, bias=bias),
            norm_2d(norm, dim),
            nn.ReLU(True),
        ]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [
            *_pad(padding, 1),
            nn.Conv2d(dim, dim, 3, padding=p, bias=bias),
            norm_2d(norm, dim),
        ]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Images ``(N, channels_in, H, W)`` -> images ``(N, channels_out, H, W)`` in [-1, 1].

    H and W must be multiples of :attr:`size_multiple` (4); ``labels`` are accepted and
    ignored so the call matches the other generators. ``padding`` is the residual blocks'
    padding (the 7x7 convs always reflect-pad, as in the reference).
    """

    per_sample = True  # no layer mixes samples but BatchNorm (see edgegan.train.merge)

    size_multiple = 2**_N_DOWN

    def __init__(
        self,
        channels_in: int,
        channels_out: int,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: str = "instance",
        use_dropout: bool = False,
        padding: str = "reflect",
        upsample: str = "transposed",
        init: str = "normal",
        init_gain: float = 0.02,
    ) -> None:
        super().__init__()
        check_positive("channels_in", channels_in)
        check_positive("channels_out", channels_out)
        check_positive("ngf", ngf)
        if n_blocks < 0:
            raise EdgeganError(f"n_blocks must be >= 0; got {n_blocks}")
        check_choice("norm", norm, NORMS)
        check_choice("padding", padding, PADDINGS)
        check_choice("upsample", upsample, UPSAMPLES)
        self.channels_in = channels_in
        self.channels_out = channels_out
        bias = conv_bias(norm)

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels_in, ngf, 7, bias=bias),
            norm_2d(norm, ngf),
            nn.ReLU(True),
        ]
        for i in range(_N_DOWN):
            w = ngf * 2**i
            layers += [
                nn.Conv2d(w, w * 2, 3, stride=2, padding=1, bias=bias),
                norm_2d(norm, w * 2),
                nn.ReLU(True),
            ]
        width = ngf * 2**_N_DOWN
        layers += [ResnetBlock(width, padding, norm, use_dropout) for _ in range(n_blocks)]
        for i in range(_N_DOWN):
            w = ngf * 2 ** (_N_DOWN - i)
            if upsample == "transposed":
                layers.append(
                    nn.ConvTranspose2d(
                        w, w // 2, 3, stride=2, padding=1, output_padding=1, bias=bias
                    )
                )
            else:
                p = 1 if padding == "zero" else 0
                layers += [
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    *_pad(padding, 1),
                    nn.Conv2d(w, w // 2, 3, padding=p, bias=bias),
                ]
            layers += [norm_2d(norm, w // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, channels_out, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_weights(self, init, init_gain)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Translated images, same spatial size as ``x``; ``labels`` are ignored."""
        return self.model(x)
