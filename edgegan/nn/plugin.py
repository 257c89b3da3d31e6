"""Built-in networks, registered through the same hook as a third-party plugin.

This module is imported when the CLI starts, so it must not import torch: the factories
import the network modules when they are called.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgegan import hookimpl

if TYPE_CHECKING:
    from edgegan.nn.dcgan import DCGANDiscriminator, DCGANGenerator
    from edgegan.nn.patchgan import NLayerDiscriminator, PixelDiscriminator
    from edgegan.nn.resnet import ResnetGenerator
    from edgegan.nn.unet import UnetGenerator


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


def _check_divisible(name: str, image_size: int, multiple: int) -> None:
    from edgegan.errors import EdgeganError

    if image_size % multiple:
        raise EdgeganError(
            f"{name} needs image_size divisible by {multiple}; got {image_size} "
            f"(set data.crop_size, or data.image_size, to a multiple of {multiple})"
        )


def _variant(build: Callable[..., Any], name: str, doc: str, **fixed: Any) -> Callable[..., Any]:
    """``build`` with ``fixed`` arguments bound, as the factory of the model ``name``.

    Its signature, which the registry reads to accept, type-check and list parameters, shows
    only the free ones: users of ``resnet_9blocks`` cannot set ``n_blocks``.
    """

    def factory(**kwargs: Any) -> Any:
        return build(name=name, **fixed, **kwargs)

    sig = inspect.signature(build)
    free = [p for n, p in sig.parameters.items() if n not in fixed and n != "name"]
    factory.__signature__ = sig.replace(parameters=free)  # type: ignore[attr-defined]
    factory.__name__ = factory.__qualname__ = f"build_{name}"
    factory.__doc__ = doc
    return factory


def build_resnet(
    name: str,
    n_blocks: int,
    channels: int,
    image_size: int,
    channels_out: int = 0,
    ngf: int = 64,
    norm: str = "instance",
    use_dropout: bool = False,
    padding: str = "reflect",
    upsample: str = "transposed",
    init: str = "normal",
    init_gain: float = 0.02,
) -> ResnetGenerator:
    """CycleGAN ResNet generator with ``n_blocks`` residual blocks; channels_out 0 means the
    input's. Registered as ``resnet_9blocks`` and ``resnet_6blocks``."""
    from edgegan.nn.resnet import ResnetGenerator

    _check_divisible(name, image_size, ResnetGenerator.size_multiple)
    return ResnetGenerator(
        channels,
        channels_out or channels,
        ngf=ngf,
        n_blocks=n_blocks,
        norm=norm,
        use_dropout=use_dropout,
        padding=padding,
        upsample=upsample,
        init=init,
        init_gain=init_gain,
    )


def build_unet(
    name: str,
    num_downs: int,
    channels: int,
    image_size: int,
    channels_out: int = 0,
    ngf: int = 64,
    norm: str = "batch",
    use_dropout: bool = False,
    init: str = "normal",
    init_gain: float = 0.02,
) -> UnetGenerator:
    """pix2pix U-Net generator with ``num_downs`` downsamplings (image_size a multiple of
    2**num_downs). Registered as ``unet_128`` and ``unet_256``."""
    from edgegan.nn.unet import UnetGenerator

    _check_divisible(name, image_size, 2**num_downs)
    return UnetGenerator(
        channels,
        channels_out or channels,
        num_downs=num_downs,
        ngf=ngf,
        norm=norm,
        use_dropout=use_dropout,
        init=init,
        init_gain=init_gain,
    )


def build_unet_any(
    channels: int,
    image_size: int,
    channels_out: int = 0,
    num_downs: int = 0,
    ngf: int = 64,
    norm: str = "batch",
    use_dropout: bool = False,
    init: str = "normal",
    init_gain: float = 0.02,
) -> UnetGenerator:
    """pix2pix U-Net generator of any depth from 5 to 8 downsamplings: ``num_downs`` 0 takes
    as many as ``image_size`` allows (its largest power-of-two factor, at most 8: 32 px
    gives 5, 256 px 8, as ``unet_256``)."""
    if num_downs == 0:
        num_downs = 5
        while num_downs < 8 and image_size % 2 ** (num_downs + 1) == 0:
            num_downs += 1
    return build_unet(
        "unet",
        num_downs,
        channels,
        image_size,
        channels_out=channels_out,
        ngf=ngf,
        norm=norm,
        use_dropout=use_dropout,
        init=init,
        init_gain=init_gain,
    )


build_resnet_9blocks = _variant(
    build_resnet,
    "resnet_9blocks",
    "CycleGAN ResNet generator, 9 residual blocks; channels_out 0 means the input's.",
    n_blocks=9,
)
build_resnet_6blocks = _variant(
    build_resnet,
    "resnet_6blocks",
    "CycleGAN ResNet generator, 6 residual blocks; channels_out 0 means the input's.",
    n_blocks=6,
)
build_unet_128 = _variant(
    build_unet,
    "unet_128",
    "pix2pix U-Net generator, 7 downsamplings (image_size a multiple of 128).",
    num_downs=7,
)
build_unet_256 = _variant(
    build_unet,
    "unet_256",
    "pix2pix U-Net generator, 8 downsamplings (image_size a multiple of 256).",
    num_downs=8,
)


def build_patchgan(
    channels: int,
    image_size: int,
    ndf: int = 64,
    n_layers: int = 3,
    norm: str = "instance",
    init: str = "normal",
    init_gain: float = 0.02,
) -> NLayerDiscriminator:
    """PatchGAN discriminator (70x70 patches with n_layers 3), logits (N, 1, h, w)."""
    from edgegan.nn.patchgan import NLayerDiscriminator, check_patch_size

    check_patch_size(image_size, n_layers)
    return NLayerDiscriminator(
        channels, ndf=ndf, n_layers=n_layers, norm=norm, init=init, init_gain=init_gain
    )


def build_pixel_discriminator(
    channels: int,
    ndf: int = 64,
    norm: str = "instance",
    init: str = "normal",
    init_gain: float = 0.02,
) -> PixelDiscriminator:
    """Per-pixel (1x1 PatchGAN) discriminator, logits (N, 1, H, W)."""
    from edgegan.nn.patchgan import PixelDiscriminator

    return PixelDiscriminator(channels, ndf=ndf, norm=norm, init=init, init_gain=init_gain)


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
    for name, factory, what in (
        ("resnet_9blocks", build_resnet_9blocks, "ResNet generator, 9 blocks (CycleGAN, 256 px)"),
        ("resnet_6blocks", build_resnet_6blocks, "ResNet generator, 6 blocks (CycleGAN, 128 px)"),
        ("unet_128", build_unet_128, "U-Net generator, 7 downsamplings (pix2pix)"),
        ("unet_256", build_unet_256, "U-Net generator, 8 downsamplings (pix2pix)"),
        ("unet", build_unet_any, "U-Net generator, 5-8 downsamplings (default: by image_size)"),
    ):
        register(name, factory, role="generator", description=f"{what}; image-to-image")
    register(
        "patchgan",
        build_patchgan,
        role="discriminator",
        description="PatchGAN discriminator (70x70 patches by default), patch logits",
    )
    register(
        "pixel",
        build_pixel_discriminator,
        role="discriminator",
        description="Pixel (1x1 PatchGAN) discriminator, per-pixel logits",
    )
