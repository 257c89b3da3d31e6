"""Adversarial losses: minimax, non-saturating (bce), least squares, hinge, WGAN-GP and the
relativistic average GAN (ragan).

Each loss maps discriminator logits (``r`` on real data, ``f`` on generated data) of any
shape, ``(N,)``, ``(N, 1)`` or patch maps ``(N, 1, h, w)``, to a scalar: every term is a mean
over all elements. ``d_loss`` is minimised by the discriminator, ``g_loss`` by the generator.
Logits in fp16/bf16 (autocast) are promoted to float32 first. See docs/losses.md.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from edgegan.errors import EdgeganError
from edgegan.losses.penalties import gradient_penalty


def _f32(x: torch.Tensor) -> torch.Tensor:
    # Only low precision is promoted, so float64 inputs (exact tests) stay float64.
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _logistic_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    # -log sigmoid(r) = softplus(-r) and -log(1 - sigmoid(f)) = softplus(f), without overflow.
    return F.softplus(-_f32(real_logits)).mean() + F.softplus(_f32(fake_logits)).mean()


class AdversarialLoss(ABC):
    """Base class: ``d_loss(real_logits, fake_logits)`` and ``g_loss(fake_logits)``."""

    name = ""

    @abstractmethod
    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """The discriminator's loss to minimise."""

    @abstractmethod
    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """The generator's loss to minimise."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class MinimaxLoss(AdversarialLoss):
    """The original objective of Goodfellow et al. (2014), saturating generator loss.

    ``d_loss = mean(softplus(-r)) + mean(softplus(f))``
    (= -log D(x) - log(1 - D(G(z))), D = sigmoid of the logit);
    ``g_loss = -mean(softplus(f))`` (= log(1 - D(G(z))), minimised by G).
    """

    name = "minimax"

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return _logistic_d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -F.softplus(_f32(fake_logits)).mean()


class NonSaturatingLoss(AdversarialLoss):
    """Binary cross-entropy with the non-saturating generator loss (Goodfellow et al. 2014).

    ``d_loss = mean(softplus(-r)) + mean(softplus(f))``;
    ``g_loss = mean(softplus(-f))`` (= -log D(G(z))): strong gradients while D rejects fakes.
    """

    name = "bce"

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return _logistic_d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-_f32(fake_logits)).mean()


class LSGANLoss(AdversarialLoss):
    """Least squares GAN (Mao et al. 2017) with targets 1 (real) and 0 (fake).

    ``d_loss = 0.5 * (mean((r - 1)^2) + mean(f^2))``; ``g_loss = mean((f - 1)^2)``.
    The 0.5 on D only follows the CycleGAN/pix2pix reference, which halves D's loss to slow
    D relative to G; Mao et al. halve both, which only rescales G's learning rate.
    """

    name = "lsgan"

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        r, f = _f32(real_logits), _f32(fake_logits)
        return 0.5 * ((r - 1).pow(2).mean() + f.pow(2).mean())

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return (_f32(fake_logits) - 1).pow(2).mean()


class HingeLoss(AdversarialLoss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018).

    ``d_loss = mean(relu(1 - r)) + mean(relu(1 + f))``; ``g_loss = -mean(f)``.
    """

    name = "hinge"

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - _f32(real_logits)).mean() + F.relu(1 + _f32(fake_logits)).mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -_f32(fake_logits).mean()


class WGANGPLoss(AdversarialLoss):
    """Wasserstein loss with gradient penalty (Gulrajani et al. 2017).

    ``d_loss = mean(f) - mean(r) + drift * mean(r^2)``; ``g_loss = -mean(f)``;
    ``d_penalty = gp_weight * mean((||grad D(x_hat)||_2 - 1)^2)`` at random interpolates
    ``x_hat`` of real and fake samples. The drift term (Karras et al. 2018) keeps the critic's
    output near zero; it is off by default.
    """

    name = "wgan-gp"

    def __init__(self, gp_weight: float = 10.0, drift: float = 0.0) -> None:
        if gp_weight < 0 or drift < 0:
            raise EdgeganError(
                f"wgan-gp needs gp_weight >= 0 and drift >= 0; got {gp_weight}, {drift}"
            )
        self.gp_weight = float(gp_weight)
        self.drift = float(drift)

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        r, f = _f32(real_logits), _f32(fake_logits)
        loss = f.mean() - r.mean()
        if self.drift:
            loss = loss + self.drift * r.pow(2).mean()
        return loss

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -_f32(fake_logits).mean()

    def d_penalty(
        self,
        discriminator: Callable[..., torch.Tensor],
        real: torch.Tensor,
        fake: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The gradient penalty, weighted; added to ``d_loss`` by the trainer."""
        return self.gp_weight * gradient_penalty(discriminator, real, fake, labels)


class RelativisticAverageLoss(AdversarialLoss):
    """Relativistic average GAN with the logistic loss (RaSGAN, Jolicoeur-Martineau 2019):
    D judges whether a real image looks more real than the fakes on average, and G is
    trained on both halves, so it also pulls the real logits down.

    ``d_loss = mean(softplus(-(r - mean(f)))) + mean(softplus(f - mean(r)))``;
    ``g_loss = mean(softplus(-(f - mean(r)))) + mean(softplus(r - mean(f)))``, given the
    real logits: the trainer passes them to a ``g_loss`` with a ``real_logits`` parameter.
    """

    name = "ragan"

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        r, f = _f32(real_logits), _f32(fake_logits)
        return F.softplus(-(r - f.mean())).mean() + F.softplus(f - r.mean()).mean()

    def g_loss(
        self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        if real_logits is None:
            raise EdgeganError("ragan's g_loss needs the discriminator's logits on real images")
        r, f = _f32(real_logits), _f32(fake_logits)
        return F.softplus(-(f - r.mean())).mean() + F.softplus(r - f.mean()).mean()


def takes_real_logits(loss: Any) -> bool:
    """Whether ``loss.g_loss`` has a ``real_logits`` parameter: a relativistic loss, which
    the trainer gives the discriminator's logits on the real batch as well."""
    try:
        return "real_logits" in inspect.signature(loss.g_loss).parameters
    except (TypeError, ValueError):  # no signature to read
        return False


def generator_loss(
    loss: Any,
    discriminator: Callable[..., torch.Tensor],
    fake: torch.Tensor,
    real: Callable[[], torch.Tensor],
    *d_args: Any,
) -> torch.Tensor:
    """``loss.g_loss`` on the (frozen) ``discriminator``'s logits on ``fake``; a loss that
    takes ``real_logits`` also gets its logits on ``real()`` (called only then: an
    augmentation draws randomness), without gradients: the real images do not depend on the
    generator, and the discriminator is not being updated."""
    fake_logits = discriminator(fake, *d_args)
    if not takes_real_logits(loss):
        return loss.g_loss(fake_logits)
    with torch.no_grad():
        real_logits = discriminator(real(), *d_args)
    return loss.g_loss(fake_logits, real_logits=real_logits)


LOSSES: dict[str, type[AdversarialLoss]] = {
    cls.name: cls
    for cls in (
        MinimaxLoss,
        NonSaturatingLoss,
        LSGANLoss,
        HingeLoss,
        WGANGPLoss,
        RelativisticAverageLoss,
    )
}
"""The built-in losses by registered name."""
