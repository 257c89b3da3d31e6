"""Gradient penalties on the discriminator: WGAN-GP (Gulrajani et al. 2017) and R1 (Mescheder
et al. 2018). Both build the graph of the gradient (``create_graph=True``) so that the
penalty trains the discriminator.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Discriminator = Callable[..., torch.Tensor]


def _logits(
    discriminator: Discriminator, x: torch.Tensor, labels: torch.Tensor | None
) -> torch.Tensor:
    # Plain callables without a labels argument are fine when unconditional.
    return discriminator(x) if labels is None else discriminator(x, labels)


def _input_grad(
    discriminator: Discriminator, x: torch.Tensor, labels: torch.Tensor | None
) -> torch.Tensor:
    """d(sum of logits)/dx per sample, flattened to ``(N, -1)`` in float32."""
    out = _logits(discriminator, x, labels)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    # Float32 so that a penalty under fp16 autocast cannot overflow when squared.
    return grad.flatten(1).float()


def gradient_penalty(
    discriminator: Discriminator,
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor | None = None,
    target: float = 1.0,
) -> torch.Tensor:
    """``mean((||grad_x D(x_hat)||_2 - target)^2)`` at ``x_hat = a*real + (1-a)*fake``.

    ``a ~ U[0, 1)`` per sample, drawn with the global RNG on the input's device (so a
    checkpoint's RNG state reproduces it). ``fake`` is detached: the penalty trains D only.
    With BatchNorm in D the per-sample gradients mix across the batch; use ``norm="none"``.
    """
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
    x_hat = torch.lerp(fake.detach(), real.detach(), alpha.to(real.dtype)).requires_grad_(True)
    grad = _input_grad(discriminator, x_hat, labels)
    # The epsilon keeps the gradient of the norm finite where the gradient is exactly zero.
    norm = torch.sqrt(grad.pow(2).sum(dim=1) + 1e-12)
    return (norm - target).pow(2).mean()


def r1_penalty(
    discriminator: Discriminator, real: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """``mean(||grad_x sum D(x)||_2^2)`` over the real batch (the trainer scales by gamma/2)."""
    x = real.detach().requires_grad_(True)
    return _input_grad(discriminator, x, labels).pow(2).sum(dim=1).mean()
