"""Least-squares adversarial loss with configurable targets (Mao et al., 2017)."""

from __future__ import annotations

import torch


class LeastSquaresLoss:
    """``d_loss = ½·E[(D(x) − b)²] + ½·E[(D(G(z)) − a)²]``, ``g_loss = ½·E[(D(G(z)) − c)²]``.

    With the defaults a = −1, b = 1, c = 0 (so that b − c = 1 and b − a = 2) training
    minimises the Pearson χ² divergence between the data and the model (Mao et al. 2017,
    "Least Squares Generative Adversarial Networks", eq. 9).
    """

    def __init__(self, a: float = -1.0, b: float = 1.0, c: float = 0.0) -> None:
        self.a, self.b, self.c = float(a), float(b), float(c)

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        real = (real_logits.float() - self.b).pow(2).mean()
        fake = (fake_logits.float() - self.a).pow(2).mean()
        return 0.5 * (real + fake)

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return 0.5 * (fake_logits.float() - self.c).pow(2).mean()
