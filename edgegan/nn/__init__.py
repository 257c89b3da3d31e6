"""Built-in networks.

Importing this package does not import torch (the CLI imports ``edgegan.nn.plugin`` at
start); the names below load their module on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgegan.lazy import lazy_attribute

if TYPE_CHECKING:
    from edgegan.nn.dcgan import DCGANDiscriminator, DCGANGenerator
    from edgegan.nn.init import init_weights
    from edgegan.nn.patchgan import NLayerDiscriminator, PixelDiscriminator
    from edgegan.nn.resnet import ResnetGenerator
    from edgegan.nn.unet import UnetGenerator

_LAZY = {
    "DCGANGenerator": "edgegan.nn.dcgan",
    "DCGANDiscriminator": "edgegan.nn.dcgan",
    "init_weights": "edgegan.nn.init",
    "NLayerDiscriminator": "edgegan.nn.patchgan",
    "PixelDiscriminator": "edgegan.nn.patchgan",
    "ResnetGenerator": "edgegan.nn.resnet",
    "UnetGenerator": "edgegan.nn.unet",
}

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "NLayerDiscriminator",
    "PixelDiscriminator",
    "ResnetGenerator",
    "UnetGenerator",
    "init_weights",
]


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY.get(name), name)
