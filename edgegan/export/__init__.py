"""Export trained generators to self-describing bundles (ONNX FP32/FP16/INT8 + edgegan.json).

Importing this package is cheap (no torch, no onnx): the exporters import them when they run.

    from edgegan.export import export
    meta = export("runs/dcgan-mnist", fp16=True, int8=True)   # -> runs/dcgan-mnist/export/
"""

from __future__ import annotations

from edgegan.export.api import export
from edgegan.export.bundle import (
    BUNDLE_FILE,
    MODEL_FILES,
    PRECISIONS,
    ExportError,
    is_bundle,
    model_path,
    read_bundle,
    write_bundle,
)

__all__ = [
    "BUNDLE_FILE",
    "MODEL_FILES",
    "PRECISIONS",
    "ExportError",
    "export",
    "is_bundle",
    "model_path",
    "read_bundle",
    "write_bundle",
]
