"""Checks that a plugin's parts keep the interface the README promises, run when a run is built.

A third-party dataset, network or loss that breaks its contract (HWC images, a flat
generator output, a loss that returns a Python float) would otherwise fail at the first
training step with a traceback from deep inside the trainer, after the run directory was
made. These checks run before that, on one sample and on a batch of two, and fail with one
line naming the part and the plugin that gave it. Built-in parts are covered by the test
suite and are not checked again here, so a run of built-ins spends nothing on it.
"""

from __future__ import annotations

import copy
import numbers
from typing import Any

import torch
from torch import nn

from edgegan.errors import PluginError
from edgegan.registry import Entry

#: Slack on the [-1, 1] value range of a dataset's images (float rounding of a rescale).
RANGE_SLACK = 1e-3


def is_external(entry: Entry) -> bool:
    """Whether ``entry`` comes from an installed plugin rather than edgegan itself."""
    return bool(entry.origin)


def _fail(entry: Entry, problem: str) -> PluginError:
    return PluginError(
        f"{entry.label}{entry.origin} {problem} (see 'The interface of each kind' in the README)"
    )


def _shape(x: Any) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def check_module(entry: Entry, net: Any) -> None:
    """A model factory must return a ``torch.nn.Module``."""
    if not isinstance(net, nn.Module):
        raise _fail(entry, f"built a {type(net).__name__}, not a torch.nn.Module")


def check_dataset(entry: Entry, dataset: Any) -> None:
    """``image_shape`` is (C, H, W) and item 0 is ``(float image of that shape in [-1, 1],
    int label)``."""
    shape = getattr(dataset, "image_shape", None)
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 3
        or not all(isinstance(s, numbers.Integral) and s > 0 for s in shape)
    ):
        raise _fail(entry, f"has image_shape {shape!r}; it must be (C, H, W), positive ints")
    if len(dataset) == 0:
        raise _fail(entry, "is empty")
    item = dataset[0]
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise _fail(entry, f"gives a {type(item).__name__} per item, not an (image, label) pair")
    image, label = item
    if not isinstance(image, torch.Tensor) or not image.is_floating_point():
        what = f"{image.dtype} tensor" if isinstance(image, torch.Tensor) else type(image).__name__
        raise _fail(entry, f"gives images as {what}; they must be float tensors")
    if tuple(image.shape) != tuple(shape):
        raise _fail(
            entry, f"gives images of shape {_shape(image)}, its image_shape is {tuple(shape)}"
        )
    lo, hi = float(image.min()), float(image.max())
    if lo < -1 - RANGE_SLACK or hi > 1 + RANGE_SLACK:
        raise _fail(entry, f"gives images in [{lo:.4g}, {hi:.4g}]; they must be in [-1, 1]")
    if isinstance(label, torch.Tensor) and label.numel() == 1 and not label.is_floating_point():
        label = label.item()
    if not isinstance(label, numbers.Integral) or isinstance(label, bool):
        raise _fail(entry, f"gives labels as {type(label).__name__}; they must be ints (-1: none)")


def check_loss(entry: Entry, loss: Any) -> None:
    """``d_loss(real, fake)`` and ``g_loss(fake)`` exist and return scalar tensors that carry
    gradients, checked on a few zero logits (of a copy, so a loss that counts its calls
    counts only the run's)."""
    for method in ("d_loss", "g_loss"):
        if not callable(getattr(loss, method, None)):
            raise _fail(entry, f"has no {method} method")
    try:
        loss = copy.deepcopy(loss)
    except Exception:  # an uncopyable loss is checked as it is
        pass
    real = torch.zeros(4, requires_grad=True)
    fake = torch.zeros(4, requires_grad=True)
    for method, args in (("d_loss", (real, fake)), ("g_loss", (fake,))):
        try:
            value = getattr(loss, method)(*args)
        except Exception as exc:
            raise _fail(entry, f"{method} failed on logits of shape (4,): {exc!r}") from exc
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise _fail(entry, f"{method} returned {_shape(value)}; it must return a scalar tensor")
        if not value.requires_grad:
            raise _fail(entry, f"{method} returned a tensor without gradients from the logits")


@torch.no_grad()
def check_gan_networks(
    g_entry: Entry,
    generator: nn.Module,
    d_entry: Entry,
    discriminator: nn.Module,
    context: dict[str, Any],
) -> None:
    """Run the generator on two latents (and labels) and the discriminator on its output, in
    eval mode (no statistics or power iterations move) and with their own random stream (the
    run's stays as it was)."""
    n = 2
    z = torch.randn(n, context["latent_dim"], generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(n, dtype=torch.long) if context["num_classes"] else None
    expected = (n, context["channels"], context["image_size"], context["image_size"])
    images = _call(g_entry, generator, f"{n} latents", z, labels)
    if not isinstance(images, torch.Tensor) or tuple(images.shape) != expected:
        raise _fail(g_entry, f"gives {_shape(images)} for {n} latents; it must give {expected}")
    _check_discriminator(d_entry, discriminator, images, labels)


@torch.no_grad()
def check_translator_networks(
    g_entry: Entry,
    generator: nn.Module,
    d_entry: Entry,
    discriminator: nn.Module,
    shapes: tuple[tuple[int, int, int], tuple[int, int, int]],
) -> None:
    """Run an image-to-image generator on two images of its input shape (``shapes[0]``) and
    the discriminator of its output domain on what it gives, which must have ``shapes[1]``;
    in eval mode and on a random stream of their own, as :func:`check_gan_networks`."""
    n = 2
    source, target = ((n, *s) for s in shapes)
    x = torch.rand(*source, generator=torch.Generator().manual_seed(0)) * 2 - 1
    images = _call(g_entry, generator, f"{n} images {source[1:]}", x, None)
    if not isinstance(images, torch.Tensor) or tuple(images.shape) != target:
        raise _fail(
            g_entry, f"gives {_shape(images)} for {n} images {source[1:]}; it must give {target}"
        )
    _check_discriminator(d_entry, discriminator, images, None)


def _check_discriminator(
    entry: Entry, discriminator: nn.Module, images: torch.Tensor, labels: Any
) -> None:
    """The discriminator gives logits with one row per image (a PatchGAN map is fine)."""
    n = len(images)
    logits = _call(entry, discriminator, f"{n} images {tuple(images.shape[1:])}", images, labels)
    if not isinstance(logits, torch.Tensor) or logits.dim() == 0 or logits.shape[0] != n:
        raise _fail(entry, f"gives {_shape(logits)} for {n} images; it must give ({n}, ...)")


def check_cyclegan_parts(task: Any) -> None:
    """Every check above for the external parts of a built ``cyclegan`` task: both
    directions, each generator with the discriminator of the domain it translates into."""
    check_parts(task, [task.g_ab, task.g_ba], [task.d_a, task.d_b])
    g_entry, d_entry, _ = _entries(task.config)
    if is_external(g_entry) or is_external(d_entry):
        a = (task.channels_a, task.size, task.size)
        b = (task.channels_b, task.size, task.size)
        check_translator_networks(g_entry, task.g_ab, d_entry, task.d_b, (a, b))
        check_translator_networks(g_entry, task.g_ba, d_entry, task.d_a, (b, a))


def _call(entry: Entry, net: nn.Module, what: str, *inputs: Any) -> Any:
    was_training = net.training
    net.eval()
    try:
        return net(*inputs)
    except Exception as exc:
        raise _fail(entry, f"failed on {what}: {type(exc).__name__}: {exc}") from exc
    finally:
        net.train(was_training)


def _entries(config: Any) -> tuple[Entry, Entry, Entry]:
    from edgegan.plugins.manager import get_manager

    manager = get_manager()
    return (
        manager.registry("models").get(config.model.generator.name, "generator"),
        manager.registry("models").get(config.model.discriminator.name, "discriminator"),
        manager.registry("losses").get(config.loss.name),
    )


def check_parts(task: Any, generators: list[nn.Module], discriminators: list[nn.Module]) -> None:
    """Model types and the loss, for the external parts of a built task (any task)."""
    g_entry, d_entry, loss_entry = _entries(task.config)
    for entry, nets in ((g_entry, generators), (d_entry, discriminators)):
        if is_external(entry):
            for net in nets:
                check_module(entry, net)
    if is_external(loss_entry):
        check_loss(loss_entry, task.loss)


def check_gan_parts(task: Any) -> None:
    """Every check above for the external parts of a built ``gan`` task (before its networks
    move to the device)."""
    check_parts(task, [task.generator], [task.discriminator])
    g_entry, d_entry, _ = _entries(task.config)
    if is_external(g_entry) or is_external(d_entry):
        check_gan_networks(g_entry, task.generator, d_entry, task.discriminator, task.context)
