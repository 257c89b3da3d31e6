"""Built-in datasets, registered like any plugin's: ``mnist``, ``idx``, ``folder``,
``unpaired``, ``aligned`` and ``cyclegan-digits``.

The factories here only import the dataset modules (and so torch) when called, keeping
``edgegan --help`` fast; their signatures mirror the ``build_*`` functions (a test checks it),
because the registry reads accepted parameters and their types from them.
"""

from __future__ import annotations

from typing import Any

from edgegan import hookimpl


def mnist(split: str = "train", image_size: int = 32, channels: int = 1, limit: int = 0) -> Any:
    """The 10,000 real MNIST digits bundled with edgegan (8,000 train / 2,000 test)."""
    from edgegan.data.mnist import build_mnist

    return build_mnist(split=split, image_size=image_size, channels=channels, limit=limit)


def idx(
    root: str | None = None,
    split: str = "train",
    image_size: int = 28,
    channels: int = 1,
    limit: int = 0,
    class_names: list | None = None,
) -> Any:
    """Any MNIST-format folder (MNIST, Fashion-MNIST, ...); default: Debian's Fashion-MNIST."""
    from edgegan.data.mnist import build_idx

    return build_idx(
        root=root,
        split=split,
        image_size=image_size,
        channels=channels,
        limit=limit,
        class_names=class_names,
    )


def folder(
    root: str = "",
    split: str = "train",
    image_size: int = 64,
    channels: int = 3,
    labels: bool = True,
    skip_bad: bool = False,
    extensions: list | None = None,
    limit: int = 0,
) -> Any:
    """Images under a folder (PNG/JPEG/BMP/WebP), labelled by class subfolder when present."""
    from edgegan.data.folder import build_folder

    return build_folder(
        root=root,
        split=split,
        image_size=image_size,
        channels=channels,
        labels=labels,
        skip_bad=skip_bad,
        extensions=extensions,
        limit=limit,
    )


def unpaired(
    root: str = "",
    split: str = "train",
    load_size: int = 286,
    crop_size: int = 256,
    channels_a: int = 3,
    channels_b: int = 3,
    flip: bool = True,
    serial_batches: bool = False,
    skip_bad: bool = False,
    limit: int = 0,
    preprocess: str = "resize_and_crop",
) -> Any:
    """Unpaired image folders ``root/trainA``, ``root/trainB`` (``testA``/``testB``), CycleGAN's
    layout: resized to ``load_size``, cropped to ``crop_size``, flipped (train split);
    ``preprocess``: resize_and_crop, scale_width_and_crop or crop, as the reference's."""
    from edgegan.data.unpaired import build_unpaired

    return build_unpaired(
        root=root,
        split=split,
        load_size=load_size,
        crop_size=crop_size,
        channels_a=channels_a,
        channels_b=channels_b,
        flip=flip,
        serial_batches=serial_batches,
        skip_bad=skip_bad,
        limit=limit,
        preprocess=preprocess,
    )


def aligned(
    root: str = "",
    split: str = "train",
    load_size: int = 286,
    crop_size: int = 256,
    channels_a: int = 3,
    channels_b: int = 3,
    direction: str = "AtoB",
    flip: bool = True,
    skip_bad: bool = False,
    limit: int = 0,
    preprocess: str = "resize_and_crop",
) -> Any:
    """Paired image folders ``root/train`` (``val``, ``test``), pix2pix's layout: each file
    holds A (left) and B (right) side by side, swapped with ``direction=BtoA``; both halves
    resized to ``load_size``, cropped to ``crop_size`` at one position and flipped together
    (train split); ``preprocess``: resize_and_crop, scale_width_and_crop or crop, as the
    reference's."""
    from edgegan.data.aligned import build_aligned

    return build_aligned(
        root=root,
        split=split,
        load_size=load_size,
        crop_size=crop_size,
        channels_a=channels_a,
        channels_b=channels_b,
        direction=direction,
        flip=flip,
        skip_bad=skip_bad,
        limit=limit,
        preprocess=preprocess,
    )


def cyclegan_digits(
    split: str = "train",
    image_size: int = 32,
    channels_a: int = 1,
    serial_batches: bool = False,
    limit: int = 0,
    paired: bool = False,
) -> Any:
    """Offline CycleGAN demo: bundled MNIST digits (A) and thickened, colour-mapped other
    digits (B); the test split pairs each A with its true B, the train split too with
    ``paired`` (for pix2pix)."""
    from edgegan.data.digits_domains import build_cyclegan_digits

    return build_cyclegan_digits(
        split=split,
        image_size=image_size,
        channels_a=channels_a,
        serial_batches=serial_batches,
        limit=limit,
        paired=paired,
    )


@hookimpl
def edgegan_register_datasets(register: Any) -> None:
    register("mnist", mnist)
    register("idx", idx)
    register("folder", folder)
    register("unpaired", unpaired)
    register("aligned", aligned)
    register("cyclegan-digits", cyclegan_digits)
