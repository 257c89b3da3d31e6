"""Built-in datasets, registered like any plugin's: ``mnist``, ``idx`` and ``folder``.

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


@hookimpl
def edgegan_register_datasets(register: Any) -> None:
    register("mnist", mnist)
    register("idx", idx)
    register("folder", folder)
