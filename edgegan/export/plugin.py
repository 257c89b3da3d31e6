"""Built-in exporters ``onnx``, ``onnx-fp16`` and ``onnx-int8``, registered through the same
hook as a third-party plugin.

Each factory returns an object with ``export(generator, spec, out_dir) -> dict``: it writes
one graph into ``out_dir``, measures its parity against ``generator`` and returns the graph's
``models`` entry for ``edgegan.json`` (raising :class:`~edgegan.export.bundle.ExportError`
when parity is out of tolerance). ``spec`` is a GAN's or one cyclegan direction's
(:mod:`edgegan.export.signature`), which also names the file (``model.onnx``,
``model_AtoB.onnx``, ...). The FP16 and INT8 exporters derive from the FP32 graph in
``out_dir``, exporting it first when it is not there. This module is imported when the CLI
starts: torch and onnx are imported only inside ``export``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgegan import hookimpl
from edgegan.export.bundle import model_file


def _finish(generator: Any, spec: dict[str, Any], path: Path, precision: str, info: dict) -> dict:
    from edgegan.export import verify

    parity = verify.measure_parity(generator, spec, path)
    verify.check_parity(precision, parity, path.name)
    return {**info, "parity": verify.sanitize(parity)}


def _path(out_dir: str | Path, spec: dict[str, Any], precision: str) -> Path:
    return Path(out_dir) / model_file(precision, spec.get("direction"))


class OnnxExporter:
    """FP32 ONNX graph (z [, labels] -> image, or image -> translated), parity-checked."""

    precision = "fp32"

    def __init__(self, opset: int = 18, exporter: str = "auto", fold_batchnorm: bool = True):
        self.opset = opset
        self.exporter = exporter
        self.fold_batchnorm = fold_batchnorm

    def export(self, generator: Any, spec: dict[str, Any], out_dir: str | Path) -> dict:
        from edgegan.export.onnx import export_onnx

        path = _path(out_dir, spec, "fp32")
        info = export_onnx(
            generator, spec, path, self.opset, self.exporter, fold_bn=self.fold_batchnorm
        )
        return _finish(generator, spec, path, self.precision, info)


def _fp32_graph(generator: Any, spec: dict[str, Any], out_dir: str | Path, opset: int) -> Path:
    path = _path(out_dir, spec, "fp32")
    if not path.is_file():
        OnnxExporter(opset=opset).export(generator, spec, out_dir)
    return path


class OnnxFp16Exporter:
    """Mixed-precision FP16 ONNX graph with FP32 inputs/outputs, parity-checked."""

    precision = "fp16"

    def __init__(self, opset: int = 18):
        self.opset = opset

    def export(self, generator: Any, spec: dict[str, Any], out_dir: str | Path) -> dict:
        from edgegan.export.precision import to_fp16
        from edgegan.export.verify import parity_inputs

        src = _fp32_graph(generator, spec, out_dir, self.opset)
        path = _path(out_dir, spec, "fp16")
        info = to_fp16(src, path, feeds=parity_inputs(spec))
        return _finish(generator, spec, path, self.precision, info)


class OnnxInt8Exporter:
    """Static Q/DQ INT8 ONNX graph calibrated on the latent prior (a GAN) or on
    ``calibration`` images (a translator), parity-checked."""

    precision = "int8"

    def __init__(
        self,
        opset: int = 18,
        calib_samples: int = 256,
        exclude: tuple = (),
        calibration: Any = None,
        calib_source: str = "",
    ):
        self.opset = opset
        self.calib_samples = calib_samples
        self.exclude = tuple(exclude)
        self.calibration = calibration
        self.calib_source = calib_source

    def export(self, generator: Any, spec: dict[str, Any], out_dir: str | Path) -> dict:
        from edgegan.export.precision import int8_defaults, to_int8

        src = _fp32_graph(generator, spec, out_dir, self.opset)
        path = _path(out_dir, spec, "int8")
        options = {**int8_defaults(spec), **({"exclude": self.exclude} if self.exclude else {})}
        info = to_int8(
            src,
            path,
            spec,
            self.calib_samples,
            calibration=self.calibration,
            calib_source=self.calib_source,
            **options,
        )
        return _finish(generator, spec, path, self.precision, info)


@hookimpl
def edgegan_register_exporters(register: Any) -> None:
    register("onnx", OnnxExporter, precision="fp32")
    register("onnx-fp16", OnnxFp16Exporter, precision="fp16")
    register("onnx-int8", OnnxInt8Exporter, precision="int8")
