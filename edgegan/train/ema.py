"""Exponential moving average of a network's weights (used for sampling and export)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps ``shadow``, an eval-mode copy of ``model`` whose weights trail the model's.

    Before ``start`` the shadow copies the model; after it, the effective decay ramps up as
    ``min(decay, (1 + t) / (10 + t))`` so that a short run is not dominated by the random
    initial weights. Floating-point buffers (BatchNorm statistics) are averaged the same way.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, start: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.start = start
        self.shadow = copy.deepcopy(model).eval()
        self.shadow.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        if step < self.start:
            self.shadow.load_state_dict(model.state_dict())
            return
        t = step - self.start
        decay = min(self.decay, (1.0 + t) / (10.0 + t))
        ema_p = [p for p in self.shadow.parameters()]
        src_p = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_p, src_p, 1.0 - decay)
        for b_ema, b in zip(self.shadow.buffers(), model.buffers(), strict=True):
            if b.dtype.is_floating_point:
                b_ema.lerp_(b, 1.0 - decay)
            else:
                b_ema.copy_(b)

    def state_dict(self) -> dict:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.shadow.load_state_dict(state)
