"""edgegan-example: a third-party-style edgegan plugin.

It registers, through the public hooks only:

- models ``mlp`` (role ``generator`` and role ``discriminator``): plain MLPs, class-conditional
  by concatenating a one-hot label when the task has classes;
- loss ``lsgan-chi2``: least squares with targets a=-1 (fake), b=+1 (real), c=0 (what G aims
  for), the variant of Mao et al. (2017) that minimises the Pearson chi-squared divergence;
- dataset ``blobs``: procedurally generated images of one Gaussian blob, labelled by the
  quadrant it sits in (deterministic from ``seed``; no download).

This module imports no torch: the factories import their implementation modules when called,
so loading the plugin keeps ``edgegan --help`` fast.
"""

from __future__ import annotations

from typing import Any

from edgegan import hookimpl

__version__ = "0.1.0"


def build_generator(
    *,
    latent_dim: int,
    channels: int,
    image_size: int,
    num_classes: int = 0,
    hidden_dim: int = 256,
    depth: int = 2,
    negative_slope: float = 0.2,
) -> Any:
    """MLP generator: z (+ one-hot label) -> LeakyReLU hidden layers -> Tanh image."""
    from edgegan_example.nn import MLPGenerator

    return MLPGenerator(
        latent_dim=latent_dim,
        image_shape=(channels, image_size, image_size),
        num_classes=num_classes,
        hidden_dim=hidden_dim,
        depth=depth,
        negative_slope=negative_slope,
    )


def build_discriminator(
    *,
    channels: int,
    image_size: int,
    num_classes: int = 0,
    hidden_dim: int = 256,
    depth: int = 2,
    negative_slope: float = 0.2,
    spectral_norm: bool = False,
) -> Any:
    """MLP discriminator: flattened image (+ one-hot label) -> one logit per image."""
    from edgegan_example.nn import MLPDiscriminator

    return MLPDiscriminator(
        image_shape=(channels, image_size, image_size),
        num_classes=num_classes,
        hidden_dim=hidden_dim,
        depth=depth,
        negative_slope=negative_slope,
        spectral_norm=spectral_norm,
    )


def build_lsgan_chi2(*, a: float = -1.0, b: float = 1.0, c: float = 0.0) -> Any:
    """Least-squares GAN loss with targets a (fake), b (real), c (generator's aim)."""
    from edgegan_example.losses import LeastSquaresLoss

    return LeastSquaresLoss(a=a, b=b, c=c)


def build_blobs(
    *,
    split: str = "train",
    image_size: int = 32,
    channels: int = 1,
    num_samples: int = 2048,
    sigma: float = 0.1,
    seed: int = 0,
) -> Any:
    """Procedural images of one Gaussian blob; the label is the quadrant it sits in."""
    from edgegan_example.data import BlobsDataset

    return BlobsDataset(
        split=split,
        image_size=image_size,
        channels=channels,
        num_samples=num_samples,
        sigma=sigma,
        seed=seed,
    )


@hookimpl
def edgegan_register_models(register):
    register("mlp", build_generator, role="generator")
    register("mlp", build_discriminator, role="discriminator")


@hookimpl
def edgegan_register_losses(register):
    register(
        "lsgan-chi2",
        build_lsgan_chi2,
        description="least squares, targets -1/+1/0 (Pearson chi-squared, Mao et al. 2017)",
    )


@hookimpl
def edgegan_register_datasets(register):
    register("blobs", build_blobs)
