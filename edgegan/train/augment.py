"""Differentiable augmentation of discriminator inputs (DiffAugment, Zhao et al. 2020).

The same kind of random transform is applied to real and generated images before the
discriminator sees them, in both the discriminator and the generator updates. Because the
transforms are differentiable, the generator still learns the un-augmented distribution,
while the discriminator cannot memorise a small training set. Randomness comes from torch's
global generator, so checkpoints (which save its state) make augmented runs resume exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from edgegan.errors import ConfigError


@functools.lru_cache(maxsize=16)
def _grid(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices ``(1, h, 1)`` and ``(1, 1, w)``, made once per size and device
    (every discriminator call augments: rebuilding them is launches for nothing)."""
    return (
        torch.arange(h, device=device).view(1, h, 1),
        torch.arange(w, device=device).view(1, 1, w),
    )


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size, filling with the background (-1)."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    gy, gx = _grid(h, w, x.device)
    # Gather from the padded image: index (y + dy, x + dx) shifted by the padding.
    iy = (gy + (dy + sh)).clamp(0, h + 2 * sh - 1)
    ix = (gx + (dx + sw)).clamp(0, w + 2 * sw - 1)
    padded = F.pad(x, (sw, sw, sh, sh), value=-1.0)
    flat = padded.flatten(2)  # (n, c, (h + 2sh) * (w + 2sw))
    index = (iy * (w + 2 * sw) + ix).flatten(1).unsqueeze(1).expand(-1, x.shape[1], -1)
    return flat.gather(2, index).view_as(x)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Blank one random square of ``ratio`` times the image size per image (to -1)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h - ch + 1, (n, 1, 1), device=x.device)
    ox = torch.randint(0, w - cw + 1, (n, 1, 1), device=x.device)
    gy, gx = _grid(h, w, x.device)
    inside = (gy >= oy) & (gy < oy + ch) & (gx >= ox) & (gx < ox + cw)
    return x.masked_fill(inside.unsqueeze(1), -1.0)


def brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)


def contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    factor = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5
    return (x - mean) * factor + mean


POLICIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "translation": translation,
    "cutout": cutout,
    "brightness": brightness,
    "contrast": contrast,
}


class DiffAugment:
    """Applies the comma-separated ``policy`` (e.g. ``"translation,cutout"``) in order."""

    def __init__(self, policy: str) -> None:
        names = [p.strip() for p in policy.split(",") if p.strip()]
        bad = [p for p in names if p not in POLICIES]
        if bad:
            raise ConfigError(
                f"unknown augmentation '{bad[0]}' in train.augment; known: {', '.join(POLICIES)}"
            )
        self.ops = [POLICIES[p] for p in names]

    def __bool__(self) -> bool:
        return bool(self.ops)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x
