"""Built-in adversarial losses, registered through the same hook as a third-party plugin.

This module is imported when the CLI starts, so it must not import torch: each factory
imports :mod:`edgegan.losses.adversarial` when it is called. A factory takes only the loss's
own parameters (those a config's ``loss`` section may set).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgegan import hookimpl

if TYPE_CHECKING:
    from edgegan.losses.adversarial import (
        HingeLoss,
        LSGANLoss,
        MinimaxLoss,
        NonSaturatingLoss,
        RelativisticAverageLoss,
        WGANGPLoss,
    )


def minimax() -> MinimaxLoss:
    """Original minimax GAN objective (saturating generator loss)."""
    from edgegan.losses.adversarial import MinimaxLoss

    return MinimaxLoss()


def bce() -> NonSaturatingLoss:
    """Binary cross-entropy, non-saturating generator loss -log D(G(z))."""
    from edgegan.losses.adversarial import NonSaturatingLoss

    return NonSaturatingLoss()


def lsgan() -> LSGANLoss:
    """Least squares GAN (Mao et al.), targets 1/0."""
    from edgegan.losses.adversarial import LSGANLoss

    return LSGANLoss()


def hinge() -> HingeLoss:
    """Hinge loss (SNGAN, BigGAN)."""
    from edgegan.losses.adversarial import HingeLoss

    return HingeLoss()


def wgan_gp(gp_weight: float = 10.0, drift: float = 0.0) -> WGANGPLoss:
    """Wasserstein loss with gradient penalty (gp_weight) and optional drift term."""
    from edgegan.losses.adversarial import WGANGPLoss

    return WGANGPLoss(gp_weight=gp_weight, drift=drift)


def ragan() -> RelativisticAverageLoss:
    """Relativistic average GAN, logistic (RaSGAN, ESRGAN's adversarial loss)."""
    from edgegan.losses.adversarial import RelativisticAverageLoss

    return RelativisticAverageLoss()


@hookimpl
def edgegan_register_losses(register: Any) -> None:
    register("minimax", minimax)
    register("bce", bce)
    register("lsgan", lsgan)
    register("hinge", hinge)
    register("wgan-gp", wgan_gp)
    register("ragan", ragan)
