"""Adversarial losses and discriminator penalties.

Importing this package does not import torch (the CLI imports ``edgegan.losses.plugin`` at
start); the names below load their module on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgegan.lazy import lazy_attribute

if TYPE_CHECKING:
    from edgegan.losses.adversarial import (
        AdversarialLoss,
        HingeLoss,
        LSGANLoss,
        MinimaxLoss,
        NonSaturatingLoss,
        RelativisticAverageLoss,
        WGANGPLoss,
    )
    from edgegan.losses.penalties import gradient_penalty, r1_penalty

_LAZY = {
    **dict.fromkeys(
        (
            "AdversarialLoss",
            "HingeLoss",
            "LSGANLoss",
            "MinimaxLoss",
            "NonSaturatingLoss",
            "RelativisticAverageLoss",
            "WGANGPLoss",
        ),
        "edgegan.losses.adversarial",
    ),
    "gradient_penalty": "edgegan.losses.penalties",
    "r1_penalty": "edgegan.losses.penalties",
}

__all__ = [
    "AdversarialLoss",
    "HingeLoss",
    "LSGANLoss",
    "MinimaxLoss",
    "NonSaturatingLoss",
    "RelativisticAverageLoss",
    "WGANGPLoss",
    "gradient_penalty",
    "r1_penalty",
]


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY.get(name), name)
