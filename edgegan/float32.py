"""torch's default dtype held at float32 while edgegan builds networks and draws tensors.

edgegan's networks, checkpoints and graphs are float32. A caller who set
``torch.set_default_dtype(torch.float64)`` (common in a notebook) made them float64: a loaded
generator refused the float32 inputs it is given, an export failed onnx.checker, and training
kept float64 weights in silence. Inside :func:`float32_default` the default is float32; the
caller's comes back after.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def float32_default() -> Iterator[None]:
    """torch's default floating dtype float32 in the block (also as a decorator:
    ``@float32_default()``), the caller's restored on exit."""
    old = torch.get_default_dtype()
    if old == torch.float32:
        yield
        return
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(old)
