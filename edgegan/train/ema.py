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
        self._pairs_of: nn.Module | None = None  # the model _cached lists the tensors of
        self._cached: tuple[tuple[list, list], tuple[list, list]] = (([], []), ([], []))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        if step < self.start:
            self.shadow.load_state_dict(model.state_dict())
            return
        t = step - self.start
        weight = 1.0 - min(self.decay, (1.0 + t) / (10.0 + t))
        # Multi-tensor updates: a few kernel launches per step, not one per tensor.
        averaged, copied = self._pairs(model)
        if averaged[0]:
            torch._foreach_lerp_(averaged[0], averaged[1], weight)
        if copied[0]:
            torch._foreach_copy_(copied[0], copied[1])

    def _pairs(self, model: nn.Module) -> tuple[tuple[list, list], tuple[list, list]]:
        """(shadow, model) tensors to average (parameters, float buffers such as BatchNorm
        statistics) and to copy (integer buffers), listed once per model."""
        if self._pairs_of is not model:
            ema_avg: list[torch.Tensor] = []
            src_avg: list[torch.Tensor] = []
            ema_copy: list[torch.Tensor] = []
            src_copy: list[torch.Tensor] = []
            for e, p in zip(self.shadow.parameters(), model.parameters(), strict=True):
                ema_avg.append(e)
                src_avg.append(p)
            for eb, b in zip(self.shadow.buffers(), model.buffers(), strict=True):
                (ema_avg if b.dtype.is_floating_point else ema_copy).append(eb)
                (src_avg if b.dtype.is_floating_point else src_copy).append(b)
            self._pairs_of, self._cached = model, ((ema_avg, src_avg), (ema_copy, src_copy))
        return self._cached

    def state_dict(self) -> dict:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.shadow.load_state_dict(state)
