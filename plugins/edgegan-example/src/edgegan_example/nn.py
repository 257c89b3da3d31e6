"""MLP generator and discriminator (imported by the factories, never at plugin load)."""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn


def _one_hot(eye: torch.Tensor, labels: torch.Tensor | None, n: int, who: str) -> torch.Tensor:
    if labels is None:
        raise ValueError(f"this {who} is class-conditional: pass labels of shape (N,)")
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    # Indexing an identity matrix (not F.one_hot) keeps the graph simple to export to ONNX.
    # -1 (an unlabelled item, which a conditional run may mix in) is no class: a zero row;
    # plain indexing took it for the last class.
    labels = labels.long()
    return eye[labels.clamp(min=0)] * (labels >= 0).unsqueeze(1).to(eye.dtype)


def _mlp(sizes: list[int], negative_slope: float, wrap=None) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for fan_in, fan_out in pairwise(sizes):
        linear = nn.Linear(fan_in, fan_out)
        layers += [wrap(linear) if wrap else linear, nn.LeakyReLU(negative_slope)]
    return layers


class MLPGenerator(nn.Module):
    """``forward(z, labels=None)``: latents ``(N, latent_dim)`` -> images ``(N, C, H, W)`` in
    [-1, 1]; ``labels`` ``(N,)`` ints are required when ``num_classes > 0``."""

    def __init__(
        self,
        latent_dim: int,
        image_shape: tuple[int, int, int],
        num_classes: int = 0,
        hidden_dim: int = 256,
        depth: int = 2,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.latent_dim = int(latent_dim)
        self.num_classes = int(num_classes)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.register_buffer("eye", torch.eye(max(self.num_classes, 1)), persistent=False)
        sizes = [self.latent_dim + self.num_classes] + [hidden_dim] * depth
        self.net = nn.Sequential(
            *_mlp(sizes, negative_slope),
            nn.Linear(hidden_dim, math.prod(self.image_shape)),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes > 0:
            z = torch.cat([z, _one_hot(self.eye, labels, z.shape[0], "generator").to(z)], dim=1)
        return self.net(z).view(z.shape[0], *self.image_shape)


class MLPDiscriminator(nn.Module):
    """``forward(x, labels=None)``: images ``(N, C, H, W)`` -> logits ``(N,)``."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_classes: int = 0,
        hidden_dim: int = 256,
        depth: int = 2,
        negative_slope: float = 0.2,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.num_classes = int(num_classes)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.register_buffer("eye", torch.eye(max(self.num_classes, 1)), persistent=False)
        wrap = nn.utils.parametrizations.spectral_norm if spectral_norm else None
        sizes = [math.prod(self.image_shape) + self.num_classes] + [hidden_dim] * depth
        head = nn.Linear(hidden_dim, 1)
        self.net = nn.Sequential(*_mlp(sizes, negative_slope, wrap), wrap(head) if wrap else head)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        if self.num_classes > 0:
            h = torch.cat([h, _one_hot(self.eye, labels, x.shape[0], "discriminator").to(h)], 1)
        return self.net(h).squeeze(1)
