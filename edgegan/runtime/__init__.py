"""Inference backends behind one small interface (:class:`Runner`, :func:`open_runner`).

``torch`` (a run's EMA generator, eager or torch.compile), ``onnxruntime`` (a bundle's ONNX
graph per precision; CPU, or CUDA with IOBinding) and ``tensorrt`` (a bundle's engines, with
CUDA graphs). :func:`edgegan.runtime.bench.bench` measures them side by side.
"""

from edgegan.runtime.base import (
    BACKENDS,
    PRECISIONS,
    BackendUnavailable,
    Runner,
    Target,
    open_runner,
    physical_cores,
    resolve_target,
)

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "BackendUnavailable",
    "Runner",
    "Target",
    "open_runner",
    "physical_cores",
    "resolve_target",
]
