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
import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from edgegan.errors import EdgeganError, PluginError, caller_stacklevel, exception_line
from edgegan.registry import Entry
from edgegan.rng import random_state_kept

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


def _error(exc: BaseException) -> str:
    """``TypeError: first line of its message``: an exception from a plugin, on one line."""
    return exception_line(exc, "(no message)")


def _attr(entry: Entry, obj: Any, name: str, default: Any = None) -> Any:
    """``getattr(obj, name, default)``, where a property that raises fails with one line."""
    try:
        return getattr(obj, name, default)
    except EdgeganError:
        raise
    except Exception as exc:
        raise _fail(entry, f"failed to give its {name}: {_error(exc)}") from exc


def check_module(entry: Entry, net: Any) -> None:
    """A model factory must return a ``torch.nn.Module``."""
    if not isinstance(net, nn.Module):
        raise _fail(entry, f"built a {type(net).__name__}, not a torch.nn.Module")


def check_dataset(
    entry: Entry, dataset: Any, conditional: bool = True, resident: bool | None = None
) -> None:
    """``image_shape`` is (C, H, W), ``num_classes`` an int >= 0 and item 0 is ``(float image
    of that shape in [-1, 1], int label)``, the label in ``[0, num_classes)`` or -1 (none;
    unchecked when ``num_classes`` is 0 or the run is not ``conditional``: the labels are not
    used then). In-memory ``images`` and ``labels`` tensors (which training reads instead of
    the items: ``resident``, ``train.resident_data``) are checked too, the labels whole."""
    shape = _attr(entry, dataset, "image_shape")
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 3
        or not all(isinstance(s, numbers.Integral) and s.__index__() > 0 for s in shape)
    ):
        raise _fail(entry, f"has image_shape {shape!r}; it must be (C, H, W), positive ints")
    num_classes = _attr(entry, dataset, "num_classes", 0)
    if num_classes is None:  # absent or None: unlabelled, as the trainer reads it
        num_classes = 0
    if isinstance(num_classes, numbers.Real) and not isinstance(num_classes, bool):
        if float(num_classes).is_integer():  # 2.0 reads as 2, as the trainer's int() does
            num_classes = int(num_classes)  # type: ignore[call-overload]
    if (
        not isinstance(num_classes, numbers.Integral)
        or isinstance(num_classes, bool)
        or num_classes < 0
    ):
        raise _fail(
            entry, f"has num_classes {num_classes!r}; it must be an int >= 0 (0: unlabelled)"
        )
    num_classes = int(num_classes)
    try:
        size = len(dataset)
    except Exception as exc:
        raise _fail(entry, f"has no length: {_error(exc)}") from exc
    if size == 0:
        raise _fail(entry, "is empty")
    try:
        item = dataset[0]
    except EdgeganError:  # the plugin's own one-line message (a missing file, say)
        raise
    except Exception as exc:
        raise _fail(entry, f"failed to give item 0: {_error(exc)}") from exc
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise _fail(entry, f"gives a {type(item).__name__} per item, not an (image, label) pair")
    image, label = item
    if not isinstance(image, torch.Tensor) or image.dtype != torch.float32:
        what = f"{image.dtype} tensor" if isinstance(image, torch.Tensor) else type(image).__name__
        hints = {
            torch.float64: " (torch.from_numpy keeps NumPy's float64: add .float())",
            torch.uint8: " in [-1, 1] (8-bit pixels: x.float() / 127.5 - 1)",
        }
        hint = hints.get(image.dtype, "") if isinstance(image, torch.Tensor) else ""
        raise _fail(entry, f"gives images as {what}; they must be float32 tensors{hint}")
    if tuple(image.shape) != tuple(shape):
        c, h, w = shape
        layout = " (channels last: x.permute(2, 0, 1))" if tuple(image.shape) == (h, w, c) else ""
        raise _fail(
            entry,
            f"gives images of shape {_shape(image)}, its image_shape is {tuple(shape)}{layout}",
        )
    lo, hi = float(image.min()), float(image.max())
    if lo < -1 - RANGE_SLACK or hi > 1 + RANGE_SLACK:
        raise _fail(entry, f"gives images in [{lo:.4g}, {hi:.4g}]; they must be in [-1, 1]")
    if isinstance(label, torch.Tensor) and label.numel() == 1 and not label.is_floating_point():
        label = label.item()
    if not isinstance(label, numbers.Integral) or isinstance(label, bool):
        raise _fail(entry, f"gives labels as {type(label).__name__}; they must be ints (-1: none)")
    _check_in_memory(entry, dataset, tuple(shape), size, image, resident)
    if num_classes and conditional:
        _check_label_range(entry, int(label), int(label), num_classes, "item 0 has label")
        labels = _attr(entry, dataset, "labels")
        # what the resident data path reads: both in-memory tensors (see BatchStream)
        integers = isinstance(labels, torch.Tensor) and isinstance(
            _attr(entry, dataset, "images"), torch.Tensor
        )
        integers = integers and not (labels.is_floating_point() or labels.is_complex())
        integers = integers and labels.dtype != torch.bool and labels.numel() > 0
        if integers:  # one pass over an in-memory tensor: cheap
            lo_label, hi_label = int(labels.min()), int(labels.max())
            _check_label_range(entry, lo_label, hi_label, num_classes, "its labels attribute holds")


def _check_in_memory(
    entry: Entry,
    dataset: Any,
    shape: tuple[int, ...],
    size: int,
    item: torch.Tensor,
    resident: bool | None,
) -> None:
    """In-memory ``images`` and ``labels`` tensors, when training gathers batches from them
    instead of calling ``__getitem__`` (``resident``: ``train.resident_data``; see
    :func:`~edgegan.train.stream.is_resident`): ``(N, *image_shape)`` images, uint8 pixels or
    float32 in [-1, 1], and ``(N,)`` integer labels, N the dataset's length. A first image
    that is not item 0's (another scale, say) is warned about: such a dataset's items, and
    any augmentation in them, are never read."""
    from edgegan.data.base import unit_from_uint8
    from edgegan.data.files import DataWarning
    from edgegan.train.stream import is_resident

    if not is_resident(dataset, resident):
        return  # items are read one by one: the tensors are not what trains
    images, labels = dataset.images, dataset.labels
    what = "its images attribute (the tensor training gathers batches from)"
    if images.ndim != 4 or tuple(images.shape[1:]) != shape:
        raise _fail(
            entry, f"has {what} of shape {_shape(images)}; it must be (N, *image_shape) = "
            f"(N, {', '.join(map(str, shape))})",
        )  # fmt: skip
    if images.dtype not in (torch.uint8, torch.float32):
        raise _fail(entry, f"has {what} as {images.dtype}; it must be uint8 pixels or float32")
    if images.shape[0] != size or tuple(labels.shape) != (size,):
        raise _fail(
            entry,
            f"has images {_shape(images)} and labels {_shape(labels)} for {size} items (its "
            f"length); they must be ({size}, ...) and ({size},)",
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise _fail(entry, f"has its labels attribute as {labels.dtype}; it must hold ints")
    if images.dtype == torch.float32 and size:
        lo, hi = (float(v) for v in torch.aminmax(images))  # NaN or inf shows here too
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise _fail(entry, f"has {what} with NaN or infinite values")
        if lo < -1 - RANGE_SLACK or hi > 1 + RANGE_SLACK:
            raise _fail(entry, f"has {what} in [{lo:.4g}, {hi:.4g}]; it must be in [-1, 1]")
    first = unit_from_uint8(images[0]) if images.dtype == torch.uint8 else images[0]
    diff = float((first.cpu() - item.cpu()).abs().max())
    if diff > 2 / 255:  # more than a rounding to 8 bits
        warnings.warn(
            f"{entry.label}{entry.origin}: item 0 differs from images[0] (max difference "
            f"{diff:.3g}): training gathers batches from its in-memory images tensor and never "
            "reads its items, nor any augmentation in them (train.resident_data=false reads "
            "the items)",
            DataWarning,
            stacklevel=caller_stacklevel(),
        )


def _check_label_range(entry: Entry, lo: int, hi: int, num_classes: int, what: str) -> None:
    """Labels index class embeddings: one out of ``[-1, num_classes)`` fails mid-run (an
    IndexError, or a device-side assert on CUDA)."""
    if lo < -1 or hi >= num_classes:
        found = f"{lo}" if lo == hi else f"values in [{lo}, {hi}]"
        raise _fail(
            entry,
            f"{what} {found}, its num_classes is {num_classes}; labels must be in "
            f"[0, {num_classes - 1}] (-1: none)",
        )


def check_loss(
    entry: Entry,
    loss: Any,
    image_shape: tuple[int, int, int] = (1, 8, 8),
    num_classes: int = 0,
    discriminator: nn.Module | None = None,
) -> None:
    """``d_loss(real, fake)`` and ``g_loss(fake)`` exist and return scalar tensors that carry
    gradients, checked on a few zero logits, and an optional ``d_penalty(discriminator, real,
    fake, labels)`` returns a scalar tensor, checked on two images of ``image_shape`` (and
    labels when ``num_classes``) with a copy of the run's ``discriminator`` (a stand-in when
    none is given or it cannot be copied); on a copy of the loss (so a loss that counts its
    calls counts only the run's) and on a random stream of its own."""
    for method in ("d_loss", "g_loss"):
        if not callable(getattr(loss, method, None)):
            raise _fail(entry, f"has no {method} method")
    penalty = getattr(loss, "d_penalty", None)
    if penalty is not None and not callable(penalty):
        raise _fail(entry, f"has a d_penalty that is a {type(penalty).__name__}, not a method")
    try:
        loss = copy.deepcopy(loss)
    except Exception:  # an uncopyable loss is checked as it is
        pass
    real = torch.zeros(4, requires_grad=True)
    fake = torch.zeros(4, requires_grad=True)
    from edgegan.losses.adversarial import takes_real_logits

    # a relativistic g_loss gets the real logits too, as training calls it
    g_kwargs = {"real_logits": real.detach()} if takes_real_logits(loss) else {}
    with random_state_kept():  # the run's random streams stay as they were
        for method, args, kwargs in (("d_loss", (real, fake), {}), ("g_loss", (fake,), g_kwargs)):
            try:
                value = getattr(loss, method)(*args, **kwargs)
            except Exception as exc:
                raise _fail(entry, f"{method} failed on logits of shape (4,): {exc!r}") from exc
            if not isinstance(value, torch.Tensor) or value.dim() != 0:
                raise _fail(
                    entry, f"{method} returned {_shape(value)}; it must return a scalar tensor"
                )
            if not value.requires_grad:
                raise _fail(entry, f"{method} returned a tensor without gradients from the logits")
        if penalty is not None:
            _check_penalty(entry, loss.d_penalty, tuple(image_shape), num_classes, discriminator)


class _StandInDiscriminator(nn.Module):
    """What :func:`_check_penalty` gives a loss's ``d_penalty``: ``forward(x, labels=None)``
    returning one logit per image, as the interface promises of every discriminator."""

    def __init__(self, image_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.fc = nn.Linear(int(np.prod(image_shape)), 1)

    def forward(self, x: torch.Tensor, labels: Any = None) -> torch.Tensor:
        return self.fc(x.flatten(1)).squeeze(1)


def _check_penalty(
    entry: Entry,
    penalty: Any,
    image_shape: tuple[int, ...],
    num_classes: int,
    discriminator: nn.Module | None = None,
) -> None:
    """Call ``d_penalty(discriminator, real, fake, labels)`` as training does (positionally,
    full precision, with autograd on: a gradient penalty differentiates through D). A copy of
    the run's discriminator, so a penalty may use what that network offers, and the run's own
    (spectral norm's vectors, BatchNorm statistics) is left as it was."""
    net: nn.Module = _StandInDiscriminator(image_shape)
    if discriminator is not None:
        try:
            net = copy.deepcopy(discriminator).train()
        except Exception:  # an uncopyable network: the stand-in has the interface's forward
            pass
    n = 2
    g = torch.Generator().manual_seed(0)
    real = torch.rand(n, *image_shape, generator=g) * 2 - 1
    fake = torch.rand(n, *image_shape, generator=g) * 2 - 1
    labels = torch.zeros(n, dtype=torch.long) if num_classes else None
    what = f"(discriminator, real, fake, labels) with {n} images {image_shape}"
    with torch.enable_grad():
        try:
            value = penalty(net, real, fake, labels)
        except Exception as exc:
            raise _fail(entry, f"d_penalty failed on {what}: {_error(exc)}") from exc
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        raise _fail(entry, f"d_penalty returned {_shape(value)}; it must return a scalar tensor")


def check_metric(entry: Entry, metric: Any) -> None:
    """A metric factory must build an object with a ``compute`` method."""
    if not callable(getattr(metric, "compute", None)):
        raise _fail(entry, f"built a {type(metric).__name__} without a compute method")


def call_metric(entry: Entry, metric: Any, samples: Any, **kwargs: Any) -> dict[str, Any]:
    """``metric.compute(samples, **kwargs)``, whose result must be a (possibly empty) mapping of
    names (str) to numbers (NaN and infinities included: a score may be undefined), given
    as Python or NumPy numbers or one-element tensors/arrays. Returns plain ``int`` counts
    and ``float`` scores. An exception from an installed plugin's metric fails with one
    line naming it (an :class:`EdgeganError` it raises is its own message, and passes)."""
    try:
        result = metric.compute(samples, **kwargs)
    except EdgeganError:
        raise
    except Exception as exc:
        if not is_external(entry):
            raise  # edgegan's own bug: keep the traceback
        what = f"{len(samples)} samples" if hasattr(samples, "__len__") else "its samples"
        raise _fail(entry, f"compute failed on {what}: {_error(exc)}") from exc
    expected = "it must return a dict of score names to numbers"
    if not isinstance(result, Mapping):
        raise _fail(entry, f"compute returned {type(result).__name__}; {expected}")
    if not result:
        return {}  # no scores for these samples (too few, say): training goes on without
    scores: dict[str, Any] = {}
    for key, value in result.items():
        if not isinstance(key, str):
            raise _fail(entry, f"compute returned a score named {key!r}; names must be strings")
        if isinstance(value, (torch.Tensor, np.ndarray)):
            if (value.numel() if isinstance(value, torch.Tensor) else value.size) != 1:
                shape = f"a {type(value).__name__} of shape {tuple(value.shape)}"
                raise _fail(entry, f"compute returned score '{key}' as {shape}; {expected}")
            value = value.item()
        if not isinstance(value, numbers.Real):
            raise _fail(
                entry, f"compute returned score '{key}' as {type(value).__name__}; {expected}"
            )
        # Counts stay ints (num_samples 2000, not 2000.0); scores become plain floats.
        integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        scores[key] = int(value) if integral else float(value)  # type: ignore[call-overload]
    return scores


def check_gan_networks(
    g_entry: Entry,
    generator: nn.Module,
    d_entry: Entry,
    discriminator: nn.Module,
    context: dict[str, Any],
) -> None:
    """Run the generator on two latents (and labels) and the discriminator on its output, in
    eval mode (no statistics or power iterations move), with gradients on (a network whose
    output cannot train is refused here, not at the first backward) and with their own random
    stream (the run's stays as it was, whatever the networks draw)."""
    n = 2
    classes = getattr(generator, "num_classes", None)
    k = context["num_classes"]
    if k and isinstance(classes, int) and classes != k:  # its bundle would take labels it ignores
        unpassed = _unpassed(g_entry, "num_classes", k)
        fix = (
            f"{unpassed}, or set model.conditional=false"
            if unpassed
            else ": build it with the num_classes its factory is given (or set "
            "model.conditional=false)"
        )
        raise _fail(g_entry, f"has num_classes {classes} in a conditional run of {k} classes{fix}")
    latent_dim = context["latent_dim"]
    latent = getattr(generator, "latent_dim", None)
    if isinstance(latent, int) and latent != latent_dim:
        unpassed = _unpassed(g_entry, "latent_dim", latent_dim)
        fix = unpassed or ": build it with the latent_dim its factory is given"
        raise _fail(
            g_entry, f"has latent_dim {latent} in a run of model.latent_dim {latent_dim}{fix}"
        )
    with random_state_kept():
        z = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(0))
        labels = torch.zeros(n, dtype=torch.long) if k else None
        expected = (n, context["channels"], context["image_size"], context["image_size"])
        unpassed = _unpassed(g_entry, "latent_dim", latent_dim)

        def hint(exc: BaseException) -> str:  # a width that does not fit the latents
            sizes = any(w in str(exc) for w in ("shape", "size"))
            return unpassed if sizes else ""

        images = _call(g_entry, generator, f"{n} latents", z, labels, hint=hint)
        if not isinstance(images, torch.Tensor) or tuple(images.shape) != expected:
            raise _fail(g_entry, f"gives {_shape(images)} for {n} latents; it must give {expected}")
        _check_images(g_entry, generator, images, f"{n} latents")
        _check_discriminator(d_entry, discriminator, images.detach(), labels)


def _unpassed(entry: Entry, name: str, value: Any) -> str:
    """``; its factory takes no NAME parameter: add one (the run passes NAME=VALUE)`` when
    ``entry``'s factory cannot be given ``name`` (no such parameter, no ``**kwargs``): the
    run's value never reached the network it built. Empty otherwise."""
    from edgegan.registry import factory_parameters

    try:
        accepted, var_kw = factory_parameters(entry.factory)
    except (TypeError, ValueError):  # no signature to read (a builtin, say)
        return ""
    if name in accepted or var_kw:
        return ""
    return f"; its factory takes no {name} parameter: add one (the run passes {name}={value})"


def label_blind(
    generator: nn.Module, discriminator: nn.Module, context: dict[str, Any]
) -> list[str]:
    """Which networks of a conditional ``gan`` run never use their labels (``"generator"``,
    ``"discriminator"``): each is run once on two inputs with labels that record whether a
    torch operation read their values (looking at their shape or device, or converting them
    with ``.long()`` or ``.to()``, is no use), in eval mode, without gradients, on a random
    stream of its own. A label-blind discriminator (a PatchGAN, a plugin that drops
    ``labels``) gives the generator nothing to learn the classes from; a label-blind generator
    makes ``--labels`` do nothing. Reading is what counts, not the output: a class-conditional
    BatchNorm starts equal for every class, so outputs compared at initialisation would
    wrongly say blind. A network the probe cannot run (one that copies its labels, say) is
    not said to be blind: this is advice, and the contract checks ran it already."""
    if context["num_classes"] < 2:
        return []
    size = context["image_size"]
    blind: list[str] = []
    with random_state_kept(), torch.no_grad():
        g = torch.Generator().manual_seed(0)
        z = torch.randn(2, context["latent_dim"], generator=g)
        x = torch.rand(2, context["channels"], size, size, generator=g) * 2 - 1
        for name, net, inputs in (("generator", generator, z), ("discriminator", discriminator, x)):
            watched: type[_ReadLabels] = type("Labels", (_ReadLabels,), {"read": False})
            labels = torch.tensor([0, 1]).as_subclass(watched)  # this probe's own class
            was_training = net.training
            net.eval()
            try:
                net(inputs, labels)
            except Exception:
                continue  # cannot tell
            finally:
                net.train(was_training)
            if not watched.read:
                blind.append(name)
    return blind


#: Torch functions that look at a tensor without reading its values.
_METADATA = frozenset({"size", "dim", "ndimension", "numel", "nelement", "__len__",
                       "element_size", "is_floating_point", "is_complex", "is_contiguous",
                       "get_device"})  # fmt: skip
#: Conversions and views: their result is still the labels, watched as they were.
_SAME_LABELS = frozenset({"to", "long", "int", "cpu", "cuda", "clone", "detach", "contiguous",
                          "view", "view_as", "reshape", "reshape_as", "flatten", "squeeze",
                          "unsqueeze", "expand", "type_as", "__get__"})  # fmt: skip


class _ReadLabels(torch.Tensor):
    """Labels that note on their class whether a torch function read their values (an
    embedding, ``one_hot``, indexing, a comparison, ``tolist``, also inside a list as
    ``torch.stack`` takes it); see :data:`_METADATA` and :data:`_SAME_LABELS`."""

    read = False

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name not in _METADATA and name not in _SAME_LABELS:
            cls.read = True
        with torch._C.DisableTorchFunctionSubclass():  # the network gets plain tensors back
            out = func(*args, **(kwargs or {}))
        # an attribute (``__get__``) that is a tensor (``.data``, ``.T``) is the labels too
        if name in _SAME_LABELS and isinstance(out, torch.Tensor):
            return out.as_subclass(cls)
        return out


def check_translator_networks(
    g_entry: Entry,
    generator: nn.Module,
    d_entry: Entry,
    discriminator: nn.Module,
    shapes: tuple[tuple[int, int, int], tuple[int, int, int]],
    conditional: bool = False,
) -> None:
    """Run an image-to-image generator on two images of its input shape (``shapes[0]``) and
    the discriminator of its output domain on what it gives, which must have ``shapes[1]``
    (``conditional``: on each input and its output as one image, pix2pix's pairs); in eval
    mode, with gradients on and on a random stream of their own, as
    :func:`check_gan_networks`."""
    n = 2
    source, target = ((n, *s) for s in shapes)
    with random_state_kept():
        x = torch.rand(*source, generator=torch.Generator().manual_seed(0)) * 2 - 1
        images = _call(g_entry, generator, f"{n} images {source[1:]}", x, None)
        if not isinstance(images, torch.Tensor) or tuple(images.shape) != target:
            raise _fail(
                g_entry,
                f"gives {_shape(images)} for {n} images {source[1:]}; it must give {target}",
            )
        _check_images(g_entry, generator, images, f"{n} images {source[1:]}")
        seen = torch.cat([x, images.detach()], 1) if conditional else images.detach()
        _check_discriminator(d_entry, discriminator, seen, None)


def _check_images(entry: Entry, generator: nn.Module, images: torch.Tensor, what: str) -> None:
    """A generator's images are float32 (what the discriminator, the losses and the exports
    take: a float64 one was blamed on the discriminator), finite, carry gradients, and lie in
    [-1, 1] (a warning: an output layer without tanh still trains, but samples and exports
    clip it)."""
    if images.dtype != torch.float32:
        raise _fail(entry, f"gives {images.dtype} images for {what}; it must give float32")
    if not bool(torch.isfinite(images).all()):
        raise _fail(entry, f"gives non-finite values (NaN or inf) for {what}")
    _check_gradients(entry, generator, images)
    lo, hi = float(images.detach().min()), float(images.detach().max())
    if lo < -1 - RANGE_SLACK or hi > 1 + RANGE_SLACK:
        import warnings

        warnings.warn(
            f"{entry.label}{entry.origin} gives values in [{lo:.4g}, {hi:.4g}] for {what}; "
            "images are in [-1, 1] (end the network with tanh): samples and exports clip them",
            stacklevel=caller_stacklevel(),
        )


def _check_gradients(entry: Entry, net: nn.Module, out: Any) -> None:
    """``out`` depends on the network's trainable parameters through autograd: one made
    under ``torch.no_grad`` or detached failed at the first backward with a traceback
    ("element 0 of tensors does not require grad"), or trained nothing."""
    trainable = [p for p in net.parameters() if p.requires_grad]
    if not trainable or not isinstance(out, torch.Tensor):
        return
    # A view made under torch.no_grad requires grad yet leads to no parameter: training
    # ran, and never updated the network. So the gradients are taken, not just asked for.
    reached = out.requires_grad and out.is_floating_point()
    if reached:
        try:
            grads = torch.autograd.grad(out.float().sum(), trainable, allow_unused=True)
        except Exception as exc:  # an in-place change after the graph, a Function without
            # backward: the first training step would fail so
            raise _fail(entry, f"gives outputs whose backward fails: {_error(exc)}") from exc
        reached = any(g is not None for g in grads)
    if not reached:
        raise _fail(
            entry,
            "gives outputs that no gradient flows back from to its parameters (made under "
            "torch.no_grad, or detached): training would not update it",
        )


def _check_discriminator(
    entry: Entry, discriminator: nn.Module, images: torch.Tensor, labels: Any
) -> None:
    """The discriminator gives floating-point logits with one row per image (a PatchGAN map
    is fine)."""
    n = len(images)
    logits = _call(entry, discriminator, f"{n} images {tuple(images.shape[1:])}", images, labels)
    if not isinstance(logits, torch.Tensor) or logits.dim() == 0 or logits.shape[0] != n:
        raise _fail(entry, f"gives {_shape(logits)} for {n} images; it must give ({n}, ...)")
    if not logits.is_floating_point():
        raise _fail(entry, f"gives {logits.dtype} logits; they must be floating point")
    _check_gradients(entry, discriminator, logits)


def check_cyclegan_parts(task: Any) -> None:
    """Every check above for the external parts of a built ``cyclegan`` task: both
    directions, each generator with the discriminator of the domain it translates into."""
    # d_penalty is called with the images of each domain and no labels: domain B's here
    shape_b = (task.channels_b, task.size, task.size)
    check_parts(task, [task.g_ab, task.g_ba], [task.d_a, task.d_b], shape_b, 0, task.d_b)
    g_entry, d_entry, _ = _entries(task.config)
    if is_external(g_entry) or is_external(d_entry):
        a = (task.channels_a, task.size, task.size)
        b = (task.channels_b, task.size, task.size)
        check_translator_networks(g_entry, task.g_ab, d_entry, task.d_b, (a, b))
        check_translator_networks(g_entry, task.g_ba, d_entry, task.d_a, (b, a))


def check_pix2pix_parts(task: Any) -> None:
    """Every check above for the external parts of a built ``pix2pix`` task: the generator
    A -> B, and the discriminator of (A, B) pairs, one image of both domains' channels."""
    pair = (task.channels_a + task.channels_b, task.size, task.size)
    check_parts(task, [task.g_ab], [task.d], pair, 0, task.d)
    g_entry, d_entry, _ = _entries(task.config)
    if is_external(g_entry) or is_external(d_entry):
        a = (task.channels_a, task.size, task.size)
        b = (task.channels_b, task.size, task.size)
        check_translator_networks(g_entry, task.g_ab, d_entry, task.d, (a, b), conditional=True)


def _call(entry: Entry, net: nn.Module, what: str, *inputs: Any, hint: Any = None) -> Any:
    """``net(*inputs)`` in eval mode with gradients on; a failure is one line, followed by
    ``hint(exc)`` when given."""
    was_training = net.training
    net.eval()
    try:
        with torch.enable_grad():  # as in training: the gradient checks need the graph
            return net(*inputs)
    except Exception as exc:
        more = hint(exc) if hint is not None else ""
        raise _fail(entry, f"failed on {what}: {_error(exc)}{more}") from exc
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


def check_parts(
    task: Any,
    generators: list[nn.Module],
    discriminators: list[nn.Module],
    image_shape: tuple[int, int, int] = (1, 8, 8),
    num_classes: int = 0,
    penalty_discriminator: nn.Module | None = None,
) -> None:
    """Model types and the loss, for the external parts of a built task (any task); the
    loss's ``d_penalty`` on images of ``image_shape`` (with labels when ``num_classes``),
    given a copy of ``penalty_discriminator``, the network that sees such images."""
    g_entry, d_entry, loss_entry = _entries(task.config)
    for entry, nets in ((g_entry, generators), (d_entry, discriminators)):
        if is_external(entry):
            for net in nets:
                check_module(entry, net)
    if is_external(loss_entry):
        check_loss(loss_entry, task.loss, image_shape, num_classes, penalty_discriminator)


def check_gan_parts(task: Any) -> None:
    """Every check above for the external parts of a built ``gan`` task (before its networks
    move to the device)."""
    ctx = task.context
    shape = (ctx["channels"], ctx["image_size"], ctx["image_size"])
    # the penalty is checked with what training gives it (through the augmentation)
    seen = task.penalty_discriminator(task.discriminator)
    check_parts(task, [task.generator], [task.discriminator], shape, ctx["num_classes"], seen)
    g_entry, d_entry, _ = _entries(task.config)
    if is_external(g_entry) or is_external(d_entry):
        check_gan_networks(g_entry, task.generator, d_entry, task.discriminator, task.context)
