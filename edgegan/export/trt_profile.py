"""The optimisation profile of a TensorRT engine: (min, opt, max) shapes for every input.

The batch comes from ``--min-batch``/``--opt-batch``/``--max-batch`` (default 1/1/64, or 1/1/8
for an image-to-image graph, whose activations grow with the batch *and* the image size); the
dynamic height and width of an image-to-image graph from ``--min-size``/``--opt-size``/
``--max-size`` (default half, once and twice the run's image size, multiples of the
generator's ``size_multiple``). Pure logic: no TensorRT needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgegan.errors import EdgeganError

DEFAULT_WORKSPACE_GB = 2.0
DEFAULT_BATCH = (1, 1, 64)  # min, opt, max of the optimisation profile
TRANSLATOR_BATCH = (1, 1, 8)


class EngineBuildError(EdgeganError):
    """The ONNX parser or the builder failed; the message carries TensorRT's own."""


def _ordered(what: str, values: tuple[int | None, ...]) -> None:
    """The given ones of (min, opt, max) must satisfy 1 <= min <= opt <= max."""
    given = [int(v) for v in values if v is not None]
    if any(v < 1 for v in given) or given != sorted(given):
        shown = ", ".join("-" if v is None else str(v) for v in values)
        raise EdgeganError(
            f"the {what} of the TensorRT profile must satisfy 1 <= --min-{what} <= "
            f"--opt-{what} <= --max-{what}; got {shown}"
        )


def _batches(min_batch: int, opt_batch: int, max_batch: int) -> tuple[int, int, int]:
    _ordered("batch", (min_batch, opt_batch, max_batch))
    return min_batch, opt_batch, max_batch


@dataclass(frozen=True)
class BuildOptions:
    """What a user chooses about a TensorRT engine: the optimisation profile's batch and
    (image-to-image graphs) square size as (min, opt, max), and the builder's workspace.

    ``None`` takes the default, which depends on the bundle (:func:`resolve_profile`).
    Checked on construction, so a bad profile or workspace is refused before any work.
    """

    min_batch: int | None = None
    opt_batch: int | None = None
    max_batch: int | None = None
    min_size: int | None = None
    opt_size: int | None = None
    max_size: int | None = None
    workspace_gb: float = DEFAULT_WORKSPACE_GB

    def __post_init__(self) -> None:
        _ordered("batch", self.batch)
        _ordered("size", self.size)
        if not self.workspace_gb > 0:
            raise EdgeganError(f"--workspace-gb must be positive, got {self.workspace_gb}")

    @property
    def batch(self) -> tuple[int | None, int | None, int | None]:
        return self.min_batch, self.opt_batch, self.max_batch

    @property
    def size(self) -> tuple[int | None, int | None, int | None]:
        return self.min_size, self.opt_size, self.max_size


def resolve_profile(
    spec: dict[str, Any],
    batch: tuple[int | None, int | None, int | None] = (None, None, None),
    size: tuple[int | None, int | None, int | None] = (None, None, None),
) -> tuple[tuple[int, int, int], tuple[int, int, int] | None]:
    """The (min, opt, max) batch and, for an image-to-image graph, square size of the
    profile: the given values, the rest by default (a translator: batch 1/1/8, sizes half,
    once and twice the image size; sizes are multiples of the spec's size multiple)."""
    from edgegan.export.signature import is_translator, round_up

    if not is_translator(spec):
        if any(v is not None for v in size):
            raise EdgeganError(
                "--min-size/--opt-size/--max-size apply to cyclegan and pix2pix bundles"
            )
        defaults = DEFAULT_BATCH
        return _batches(*(b or d for b, d in zip(batch, defaults, strict=True))), None
    m, image = int(spec["size_multiple"]), int(spec["image_size"])
    opt = size[1] or image
    defaults_size = (max(m, round_up(opt // 2, m)), opt, round_up(2 * opt, m))
    sizes = tuple(int(v or d) for v, d in zip(size, defaults_size, strict=True))
    _ordered("size", sizes)
    bad = [v for v in sizes if v % m]
    if bad:
        raise EdgeganError(f"TensorRT profile sizes must be multiples of {m}; got {bad[0]}")
    b = _batches(*(v or d for v, d in zip(batch, TRANSLATOR_BATCH, strict=True)))
    return b, sizes  # type: ignore[return-value]


def profile_shapes(
    inputs: dict[str, list[int]],
    batch: tuple[int, int, int] = DEFAULT_BATCH,
    image_shape: list[int] | None = None,
    shapes: dict[str, tuple[list[int], list[int], list[int]]] | None = None,
    sizes: tuple[int, int, int] | None = None,
) -> dict[str, tuple[list[int], list[int], list[int]]]:
    """(min, opt, max) shapes per input from the network's input shapes (-1 = dynamic).

    The first dynamic dimension is the batch; the dynamic H and W of a 4-D image input span
    ``sizes`` (min, opt, max) when given, else take the spec's image size (fixed). ``shapes``
    sets an input's three shapes outright.
    """
    mn_b, opt_b, mx_b = _batches(*batch)
    out: dict[str, tuple[list[int], list[int], list[int]]] = {}
    for name, dims in inputs.items():
        if shapes and name in shapes:
            out[name] = tuple(list(map(int, s)) for s in shapes[name])  # type: ignore[assignment]
            continue
        lo, mid, hi = [], [], []
        for i, d in enumerate(dims):
            d = int(d)
            if d >= 0:
                vals = (d, d, d)
            elif i == 0:
                vals = (mn_b, opt_b, mx_b)
            elif len(dims) == 4 and i in (2, 3) and sizes:
                vals = tuple(int(v) for v in sizes)  # type: ignore[assignment]
            elif len(dims) == 4 and i in (2, 3) and image_shape:
                size = int(image_shape[i - 1])
                vals = (size, size, size)
            else:
                raise EngineBuildError(
                    f"input '{name}' has a dynamic dimension {i} of unknown size; "
                    "give its profile shapes"
                )
            lo.append(vals[0])
            mid.append(vals[1])
            hi.append(vals[2])
        out[name] = (lo, mid, hi)
    return out
