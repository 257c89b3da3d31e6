"""U-Net image-to-image generator of pix2pix (Isola et al. 2017), as the reference builds it.

The reference (junyanz/pytorch-CycleGAN-and-pix2pix ``UnetGenerator``) nests
``UnetSkipConnectionBlock`` s from the innermost outwards: each block downsamples by a 4x4
stride-2 conv, runs its submodule, upsamples by a 4x4 stride-2 transposed conv and
concatenates its input to the result (the skip connection). ``num_downs`` downsamplings bring
a ``2**num_downs`` pixel image to 1x1 at the bottleneck: 7 for ``unet_128``, 8 for
``unet_256``. Widths: ngf, 2ngf, 4ngf, then 8ngf for every deeper level.
"""

from __future__ import annotations

import torch
from torch import nn

from edgegan.errors import EdgeganError
from edgegan.nn.init import init_weights
from edgegan.nn.layers import NORMS, check_choice, check_positive, conv_bias, norm_2d


class UnetSkipConnectionBlock(nn.Module):
    """x -> cat([x, up(submodule(down(x)))]); the outermost block returns just the up path.

    Down: LeakyReLU(0.2), conv4 s2, norm (the outermost block has no activation or norm
    before its conv, the innermost no norm after it). Up: ReLU, transposed conv4 s2, norm
    (Tanh instead of the norm in the outermost block), dropout 0.5 in the middle blocks when
    ``use_dropout``.
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "batch",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        bias = conv_bias(norm)
        if input_nc is None:
            input_nc = outer_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        if outermost:
            assert submodule is not None
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
            layers = [downconv, submodule, nn.ReLU(True), upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [
                nn.LeakyReLU(0.2, True),
                downconv,
                nn.ReLU(True),
                upconv,
                norm_2d(norm, outer_nc),
            ]
        else:
            assert submodule is not None
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [
                nn.LeakyReLU(0.2, True),
                downconv,
                norm_2d(norm, inner_nc),
                submodule,
                nn.ReLU(True),
                upconv,
                norm_2d(norm, outer_nc),
            ]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        # As in the reference, the in-place LeakyReLU heading self.model activates x itself,
        # so the skip connection carries LeakyReLU(x). x is always an intermediate tensor here
        # (the outermost block, which gets the network input, has no activation first).
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """Images ``(N, channels_in, H, W)`` -> images ``(N, channels_out, H, W)`` in [-1, 1].

    H and W must be multiples of :attr:`size_multiple` (``2**num_downs``); ``labels`` are
    accepted and ignored so the call matches the other generators.
    """

    per_sample = True  # no layer mixes samples but BatchNorm (see edgegan.train.merge)

    def __init__(
        self,
        channels_in: int,
        channels_out: int,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        use_dropout: bool = False,
        init: str = "normal",
        init_gain: float = 0.02,
    ) -> None:
        super().__init__()
        check_positive("channels_in", channels_in)
        check_positive("channels_out", channels_out)
        check_positive("ngf", ngf)
        if num_downs < 5:
            raise EdgeganError(f"num_downs must be >= 5; got {num_downs}")
        check_choice("norm", norm, NORMS)
        self.channels_in = channels_in
        self.channels_out = channels_out
        self.num_downs = num_downs
        self.size_multiple = 2**num_downs

        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout
            )
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(
            channels_out, ngf, input_nc=channels_in, submodule=block, outermost=True, norm=norm
        )
        init_weights(self, init, init_gain)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Translated images, same spatial size as ``x``; ``labels`` are ignored."""
        return self.model(x)
