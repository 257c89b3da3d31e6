"""Built-in networks, registered through the same hook as a third-party plugin.

This module is imported when the CLI starts, so it must not import torch: the factories
import the network modules when they are called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgegan import hookimpl

if TYPE_CHECKING:
    from edgegan.nn.dcgan import DCGANDiscriminator, DCGANGenerator


def build_dcgan_generator(
    latent_dim: int,
    channels: int,
    image_size: int,
    num_classes: int = 0,
    ngf: int = 64,
    init: str = "normal",
) -> DCGANGenerator:
    """DCGAN generator for 28, 32 or 64 pixel images; class-conditional when num_classes > 0."""
    from edgegan.nn.dcgan import DCGANGenerator

    return DCGANGenerator(latent_dim, channels, image_size, num_classes, ngf=ngf, init=init)


def build_dcgan_discriminator(
    channels: int,
    image_size: int,
    num_classes: int = 0,
    ndf: int = 64,
    norm: str = "batch",
    spectral_norm: bool = False,
    conditioning: str = "projection",
    init: str = "normal",
) -> DCGANDiscriminator:
    """DCGAN discriminator (logits); projection or concat conditioning, optional spectral norm."""
    from edgegan.nn.dcgan import DCGANDiscriminator

    return DCGANDiscriminator(
        channels,
        image_size,
        num_classes,
        ndf=ndf,
        norm=norm,
        spectral_norm=spectral_norm,
        conditioning=conditioning,
        init=init,
    )


@hookimpl
def edgegan_register_models(register: Any) -> None:
    register(
        "dcgan",
        build_dcgan_generator,
        role="generator",
        description="DCGAN generator (28/32/64 px), class-conditional via a label embedding",
    )
    register(
        "dcgan",
        build_dcgan_discriminator,
        role="discriminator",
        description="DCGAN discriminator; projection or concat conditioning, spectral norm",
    )
