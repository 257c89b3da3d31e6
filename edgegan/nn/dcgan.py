"""DCGAN generator and discriminator (Radford et al. 2016), optionally class-conditional.

Conditioning follows Mirza & Osindero (2014) in the generator (a label embedding concatenated
with z) and, in the discriminator, either the projection of Miyato & Koyama (2018) or one-hot
label maps concatenated to the image channels (Mirza & Osindero).
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from edgegan.errors import EdgeganError
from edgegan.nn.init import init_weights
from edgegan.nn.layers import (
    KEEP_CONTIGUOUS,
    NORMS,
    apply_spectral_norm,
    check_choice,
    check_positive,
    exporting,
    norm_2d,
)

CONDITIONINGS: tuple[str, ...] = ("projection", "concat")

# image size -> (spatial size of the first stage, width multipliers from that stage upwards).
# The generator upsamples by 2 per stage; the discriminator mirrors it.
_PLANS: dict[int, tuple[int, tuple[int, ...]]] = {
    28: (7, (2, 1)),  # 7 -> 14 -> 28
    32: (4, (4, 2, 1)),  # 4 -> 8 -> 16 -> 32
    64: (4, (8, 4, 2, 1)),  # 4 -> 8 -> 16 -> 32 -> 64
}
IMAGE_SIZES: tuple[int, ...] = tuple(_PLANS)


def _plan(image_size: int) -> tuple[int, tuple[int, ...]]:
    if image_size not in _PLANS:
        sizes = ", ".join(str(s) for s in IMAGE_SIZES)
        raise EdgeganError(
            f"dcgan supports image_size {sizes}; got {image_size} "
            "(set data.image_size to one of them)"
        )
    return _PLANS[image_size]


def _check_labels(labels: torch.Tensor | None, num_classes: int, who: str) -> torch.Tensor:
    if labels is None:
        raise ValueError(
            f"this {who} is class-conditional ({num_classes} classes): pass labels, "
            "an integer tensor of shape (N,)"
        )
    return labels.long()


def _embed(embed: nn.Module, labels: torch.Tensor) -> torch.Tensor:
    """Class embeddings, zero for label -1 (an unlabelled item in a conditional run): the
    generator then draws from no class in particular and the discriminator's projection term
    drops out, leaving its unconditional logit. Two elementwise ops, no host sync. Not in
    an exported graph: inference takes labels in [0, K) only (every runner checks), so the
    graph keeps its plain Gather."""
    if exporting():
        return embed(labels)
    known = (labels >= 0).unsqueeze(1)
    return embed(labels.clamp(min=0)) * known


class DCGANGenerator(nn.Module):
    """z ``(N, latent_dim)`` (and labels ``(N,)`` if conditional) -> images in [-1, 1].

    Transposed convolutions with BatchNorm and ReLU, Tanh on the output. Attributes
    ``latent_dim``, ``num_classes`` and ``image_shape`` (C, H, W) describe the interface for
    sampling and export.
    """

    per_sample = True  # no layer mixes samples but BatchNorm (see edgegan.train.merge)

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        image_size: int,
        num_classes: int = 0,
        ngf: int = 64,
        init: str = "normal",
        embed_dim: int | None = None,
    ) -> None:
        super().__init__()
        base, mults = _plan(image_size)
        check_positive("latent_dim", latent_dim)
        check_positive("channels", channels)
        check_positive("ngf", ngf)
        if num_classes < 0:
            raise EdgeganError(f"num_classes must be >= 0; got {num_classes}")
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.image_shape = (channels, image_size, image_size)

        in_dim = latent_dim
        self.embed: nn.Embedding | None = None
        if num_classes > 0:
            # The label gets as many dimensions as z by default, so neither drowns the other.
            embed_dim = embed_dim or latent_dim
            self.embed = nn.Embedding(num_classes, embed_dim)
            in_dim += embed_dim

        widths = [ngf * m for m in mults]
        # A kernel of the first stage's size on a 1x1 input is the DCGAN "project and reshape".
        project = nn.ConvTranspose2d(in_dim, widths[0], base, 1, 0, bias=False)
        setattr(project, KEEP_CONTIGUOUS, True)  # its input is 1x1 (see train.fastpath)
        layers: list[nn.Module] = [project, nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        for w_in, w_out in pairwise(widths):
            layers += [
                nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False),  # BN supplies the bias
                nn.BatchNorm2d(w_out),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_weights(self, init)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images ``(N, C, H, W)`` in [-1, 1]; ``labels`` are ignored when unconditional."""
        if self.embed is not None:
            labels = _check_labels(labels, self.num_classes, "generator")
            z = torch.cat([z, _embed(self.embed, labels).to(z.dtype)], dim=1)
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """Images ``(N, C, H, W)`` (and labels ``(N,)`` if conditional) -> raw logits ``(N,)``.

    Strided convolutions with LeakyReLU(0.2); ``norm`` after every conv but the first, as in
    DCGAN. ``spectral_norm`` constrains every conv, linear and embedding weight (Miyato et
    al. 2018). ``conditioning`` (used when ``num_classes > 0``): ``"projection"`` adds
    ``<embed(y), phi(x)>`` to the logit, phi(x) being the flattened last feature map;
    ``"concat"`` appends one-hot label maps to the input channels.
    """

    per_sample = True  # no layer mixes samples but BatchNorm (see edgegan.train.merge)

    def __init__(
        self,
        channels: int,
        image_size: int,
        num_classes: int = 0,
        ndf: int = 64,
        norm: str = "batch",
        spectral_norm: bool = False,
        conditioning: str = "projection",
        init: str = "normal",
    ) -> None:
        super().__init__()
        base, mults = _plan(image_size)
        check_positive("channels", channels)
        check_positive("ndf", ndf)
        check_choice("norm", norm, NORMS)
        check_choice("conditioning", conditioning, CONDITIONINGS)
        if num_classes < 0:
            raise EdgeganError(f"num_classes must be >= 0; got {num_classes}")
        self.num_classes = num_classes
        self.image_shape = (channels, image_size, image_size)
        self.conditioning = conditioning if num_classes > 0 else "none"

        in_ch = channels + (num_classes if self.conditioning == "concat" else 0)
        widths = [ndf * m for m in reversed(mults)]
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, widths[0], 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for w_in, w_out in pairwise(widths):
            layers += [
                nn.Conv2d(w_in, w_out, 4, 2, 1, bias=norm == "none"),
                norm_2d(norm, w_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        # A conv over the whole last map: a linear layer on the flattened features.
        self.head = nn.Conv2d(widths[-1], 1, base, 1, 0)
        self.embed: nn.Embedding | None = None
        if self.conditioning == "projection":
            self.embed = nn.Embedding(num_classes, widths[-1] * base * base)
        init_weights(self, init)
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)  # as in Miyato & Koyama's code
        if spectral_norm:
            apply_spectral_norm(self)  # after init: its power iteration starts from these

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Raw logits ``(N,)``; ``labels`` are ignored when unconditional."""
        if self.conditioning == "none":
            return self.head(self.features(x)).flatten()
        labels = _check_labels(labels, self.num_classes, "discriminator")
        if self.conditioning == "concat":
            n, _, h, w = x.shape
            maps = F.one_hot(labels.clamp(min=0), self.num_classes) * (labels >= 0)[:, None]
            maps = maps.to(x.dtype)[:, :, None, None]  # all zero for label -1
            x = torch.cat([x, maps.expand(n, -1, h, w)], dim=1)
            return self.head(self.features(x)).flatten()
        feats = self.features(x)
        assert self.embed is not None  # projection conditioning
        proj = (_embed(self.embed, labels).to(feats.dtype) * feats.flatten(1)).sum(dim=1)
        return self.head(feats).flatten() + proj
