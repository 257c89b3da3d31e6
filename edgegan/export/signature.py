"""The signature of an exported graph: named inputs and outputs, dynamic axes and seeded inputs.

edgegan exports two kinds of generator, told apart by their spec:

- GAN (``task: gan``): ``z`` float32 ``[batch, latent_dim]`` [, ``labels`` int64 ``[batch]``]
  -> ``image`` float32 ``[batch, C, H, W]``; the batch axis is dynamic.
- Image-to-image, one direction of a ``cyclegan`` or ``pix2pix`` run (the spec has a
  ``direction``):
  ``image`` float32 ``[batch, C_in, height, width]`` -> ``translated`` ``[batch, C_out,
  height, width]``; batch, height and width are dynamic, height and width multiples of the
  spec's ``size_multiple``.

Everything that depends on the kind (the exporter's dynamic axes, parity and calibration
inputs, the runtimes' inputs) asks this module, so the rest of the code is shared. It imports
NumPy only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from edgegan.errors import EdgeganError

if TYPE_CHECKING:  # imported where used: `edgegan plugins` and `list` need no NumPy
    import numpy as np

BATCH, HEIGHT, WIDTH = "batch", "height", "width"
IMAGE = "image"  # a GAN's output, a translator's input
TRANSLATED = "translated"
DIRECTIONS: tuple[str, ...] = ("AtoB", "BtoA")
NETWORKS: dict[str, str] = {"AtoB": "g_ab", "BtoA": "g_ba"}
SOURCES: dict[str, str] = {"AtoB": "A", "BtoA": "B"}  # the domain each direction reads
#: The image-to-image tasks and the directions their runs (and bundles) can have: a
#: pix2pix run trains its A -> B generator alone.
TASK_DIRECTIONS: dict[str, tuple[str, ...]] = {"cyclegan": DIRECTIONS, "pix2pix": ("AtoB",)}
DEFAULT_SIZE_MULTIPLE = 4


def is_translation_task(task: object) -> bool:
    """Whether runs and bundles of ``task`` hold image-to-image generators, by direction."""
    return task in TASK_DIRECTIONS


def only_direction(task: object) -> str | None:
    """The direction a run or bundle of ``task`` runs when none is given: the one of a task
    with one (pix2pix's ``AtoB``); None where there is a choice (cyclegan) or none (gan)."""
    have = TASK_DIRECTIONS.get(str(task), ())
    return have[0] if len(have) == 1 else None


def task_directions(task: str, asked: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """The directions of a ``task`` run to export or build: ``asked`` (checked, each once),
    else all it has; one it lacks is an error naming those it has."""
    have = TASK_DIRECTIONS[task]
    todo = list(dict.fromkeys(asked or have))
    for d in todo:
        check_direction(d)
        if d not in have:
            raise EdgeganError(
                f"--direction {d}: a {task} run has {' and '.join(have)} alone "
                f"(its generator translates A -> B)"
            )
    return todo


def is_translator(spec: dict[str, Any]) -> bool:
    """Whether ``spec`` describes an image-to-image graph (one direction of a cyclegan or
    pix2pix run)."""
    return bool(spec.get("direction"))


def check_direction(direction: str, option: str = "--direction") -> str:
    """``direction`` if it is AtoB or BtoA, else an error naming ``option``."""
    if direction not in DIRECTIONS:
        raise EdgeganError(f"{option} must be AtoB or BtoA, got '{direction}'")
    return direction


def direction_spec(
    spec: dict[str, Any],
    direction: str,
    size_multiple: int | None = None,
    task: str | None = None,
) -> dict[str, Any]:
    """The spec of one direction's graph, from a cyclegan or pix2pix run's or bundle's spec
    (``channels_a``, ``channels_b``, ``image_size``, ``value_range``); ``task``: the
    bundle's, whose spec names none (a run's spec does)."""
    check_direction(direction)
    ca, cb = int(spec["channels_a"]), int(spec["channels_b"])
    c_in, c_out = (ca, cb) if direction == "AtoB" else (cb, ca)
    multiple = size_multiple or spec.get("size_multiple") or DEFAULT_SIZE_MULTIPLE
    return {
        "task": task or spec.get("task") or "cyclegan",
        "direction": direction,
        "network": NETWORKS[direction],
        "channels_in": c_in,
        "channels_out": c_out,
        "image_size": int(spec["image_size"]),
        "value_range": [float(v) for v in (spec.get("value_range") or (-1.0, 1.0))],
        "size_multiple": int(multiple),
        # a bundle's (what a deployment pads to); a run's spec has none: MIN_SIDE
        **({"min_side": int(spec["min_side"])} if spec.get("min_side") else {}),
        **training_data(spec),
    }


TRAINING_DATA = ("preprocess", "load_size", "halves")
"""What a translation run's spec records of its training files, when its dataset says: how
they were scaled (``infer --resize train``) and which domain each half of a pair file holds
(``infer --split-pairs``)."""


def training_data(spec: dict[str, Any]) -> dict[str, Any]:
    """The :data:`TRAINING_DATA` entries that ``spec`` holds."""
    return {k: spec[k] for k in TRAINING_DATA if spec.get(k)}


def io_spec(spec: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The graph's inputs and outputs as recorded in ``edgegan.json`` (a string dimension is
    dynamic and named)."""
    if is_translator(spec):
        c_in, c_out = int(spec["channels_in"]), int(spec["channels_out"])
        return (
            [{"name": IMAGE, "dtype": "float32", "shape": [BATCH, c_in, HEIGHT, WIDTH]}],
            [{"name": TRANSLATED, "dtype": "float32", "shape": [BATCH, c_out, HEIGHT, WIDTH]}],
        )
    inputs: list[dict[str, Any]] = [
        {"name": "z", "dtype": "float32", "shape": [BATCH, int(spec["latent_dim"])]}
    ]
    if int(spec.get("num_classes") or 0) > 0:
        inputs.append({"name": "labels", "dtype": "int64", "shape": [BATCH]})
    shape = [BATCH, *(int(v) for v in spec["image_shape"])]
    return inputs, [{"name": IMAGE, "dtype": "float32", "shape": shape}]


def input_names(spec: dict[str, Any]) -> list[str]:
    return [i["name"] for i in io_spec(spec)[0]]


def output_names(spec: dict[str, Any]) -> list[str]:
    return [o["name"] for o in io_spec(spec)[1]]


def dynamic_axes(spec: dict[str, Any]) -> dict[str, dict[int, str]]:
    """``{tensor: {axis: name}}`` for every dynamic axis of the inputs and outputs."""
    inputs, outputs = io_spec(spec)
    return {
        t["name"]: {i: d for i, d in enumerate(t["shape"]) if isinstance(d, str)}
        for t in inputs + outputs
    }


def round_up(value: int, multiple: int) -> int:
    return -(-int(value) // int(multiple)) * int(multiple)


#: The smallest side a translator is run at: smaller images are padded up to it. The ResNet
#: generator's bottleneck is a quarter of the input, and at 1x1 its InstanceNorm (one value)
#: and reflection padding fail; at 8 px it is 2x2.
MIN_SIDE = 8


def padded_size(height: int, width: int, multiple: int, least: int = MIN_SIDE) -> tuple[int, int]:
    """The smallest size at least ``height`` x ``width`` (and ``least``, a bundle's
    ``min_side``) that the graph accepts."""
    return round_up(max(height, least), multiple), round_up(max(width, least), multiple)


def parse_size(size: int | str | tuple[int, int] | None, spec: dict[str, Any]) -> tuple[int, int]:
    """An input size for a translator: ``N``, ``"HxW"`` or ``(H, W)``; ``None`` is the run's
    image size. H and W must be positive multiples of the spec's ``size_multiple``."""
    if size is None:
        hw: tuple[int, int] = (int(spec["image_size"]),) * 2
    elif isinstance(size, (tuple, list)):
        hw = (int(size[0]), int(size[1]))
    else:
        text = str(size).lower()
        try:
            h, _, w = text.partition("x")
            hw = (int(h), int(w or h))
        except ValueError:
            raise EdgeganError(
                f"--size must be N or HxW (e.g. 256 or 192x320), got '{size}'"
            ) from None
    m = int(spec.get("size_multiple") or DEFAULT_SIZE_MULTIPLE)
    if min(hw) < MIN_SIDE or hw[0] % m or hw[1] % m:
        raise EdgeganError(
            f"--size {hw[0]}x{hw[1]}: this generator takes sizes that are multiples of {m}, "
            f"at least {MIN_SIDE} (images are padded to that; e.g. --size "
            f"{padded_size(max(hw[0], 1), max(hw[0], 1), m)[0]})"
        )
    return hw


def random_images(spec: dict[str, Any], num: int, seed: int = 0, size: Any = None) -> np.ndarray:
    """``(num, C_in, H, W)`` float32 images uniform over the value range (seeded)."""
    h, w = parse_size(size, spec)
    import numpy as np

    low, high = (float(v) for v in spec.get("value_range") or (-1.0, 1.0))
    rng = np.random.default_rng(seed)
    shape = (int(num), int(spec["channels_in"]), h, w)
    return rng.uniform(low, high, size=shape).astype(np.float32)


def make_feed(
    spec: dict[str, Any], num: int, seed: int = 0, size: Any = None
) -> dict[str, np.ndarray]:
    """Seeded named inputs for ``num`` samples: latents [and labels] for a GAN
    (:func:`edgegan.sampling.make_inputs`), random images of ``size`` for a translator."""
    if num <= 0:
        raise EdgeganError("the number of inputs must be positive")
    if is_translator(spec):
        return {IMAGE: random_images(spec, num, seed, size)}
    from edgegan.sampling import make_inputs

    return make_inputs(spec, num, seed)


def parity_sizes(spec: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(batch, H, W) of a translator's parity feeds: two images at the run's size, then one
    of another, non-square size (so dynamic batch, height and width are all exercised)."""
    s, m = int(spec["image_size"]), int(spec["size_multiple"])
    other = (max(m, round_up(math.ceil(s * 3 / 4), m)), round_up(math.ceil(s * 5 / 4), m))
    if other == (s, s):
        other = (s, s + m)
    return [(2, s, s), (1, *other)]


def example_size(spec: dict[str, Any]) -> tuple[int, int]:
    """The H, W traced by the exporter: distinct multiples (2m, 3m), so that neither axis is
    specialised to 1 or to the other."""
    m = int(spec["size_multiple"])
    return 2 * m, 3 * m
