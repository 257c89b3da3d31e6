"""Reduced-precision graphs derived from the FP32 ONNX graph.

- FP16: a mixed-precision graph with FP32 inputs and outputs (ONNX Runtime's
  ``convert_float_to_float16`` with ``keep_io_types``); the op types in
  :data:`FP16_BLOCK_OPS` stay in FP32.
- INT8: static Q/DQ quantisation (ONNX Runtime's ``quantize_static``): per-channel symmetric
  INT8 weights, symmetric INT8 activations (zero point 0, the form TensorRT requires), ranges
  calibrated on inputs drawn from the latent prior (a GAN) or on images from the run's
  dataset (a translator). The nodes named by :func:`int8_defaults` stay in FP32.

The block and exclusion lists were chosen by measurement (docs/export.md).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgegan.errors import EdgeganError, caller_stacklevel
from edgegan.export.bundle import ExportError
from edgegan.export.signature import input_names, is_translator

# Numerically sensitive op types kept in FP32 in the FP16 graph (ONNX Runtime's defaults, the
# normalisations and the reductions). Tanh is deliberately not blocked: measured, it changes
# nothing (its output is bounded and FP16 has ~3 decimal digits on [-1, 1]).
FP16_BLOCK_OPS: tuple[str, ...] = (
    "InstanceNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "BatchNormalization",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL2",
    "Softmax",
    "Pow",
    "Sqrt",
    "Exp",
    "Log",
    "Range",
    "CumSum",
    "TopK",
    "NonMaxSuppression",
    "RandomUniformLike",
    "Upsample",
    "Resize",
)

#: FP16's largest finite value. A weight beyond it is clamped by the converter (the model
#: changes); an activation beyond it is inf where FP16 arithmetic runs (a GPU), although the
#: CPU's parity cannot see it: ONNX Runtime's CPU provider computes FP16 convolutions in FP32.
FP16_MAX = 65504.0
#: Activations within this factor of :data:`FP16_MAX` on the parity inputs draw a warning:
#: other inputs may overflow.
FP16_HEADROOM = 8.0

# Compute nodes kept in FP32 in the INT8 graph, by role: "first" is the first convolution /
# matrix product (DCGAN's project-and-reshape), "last" the one producing the image. Explicit
# node names and op types are accepted too.
INT8_EXCLUDE: tuple[str, ...] = ("last",)
# For image-to-image generators (measured on the cyclegan generators, docs/export.md): the
# first and last convolutions in FP32 (+0.2 to +4.5 dB), ranges at the 99.999th percentile
# (+2 to +3 dB on the ResNet-9 at 256 px, where a channel has 65k values and its extremes
# waste the INT8 steps; within 0.5 dB of min/max at 32 px).
TRANSLATOR_INT8_EXCLUDE: tuple[str, ...] = ("first", "last")
TRANSLATOR_INT8_METHOD = "percentile"
COMPUTE_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Biases stay float: TensorRT's parser refuses a DequantizeLinear of INT32 data ("only
# activation types allowed as input to this layer"; onnx/onnx-tensorrt#850), and ONNX Runtime
# quantises a float bias itself when it fuses the Q/DQ convolution.
QUANTIZE_BIAS = False
ACTIVATIONS: tuple[str, ...] = ("s8", "u8")
CALIBRATION_METHODS: dict[str, str] = {
    "minmax": "MinMax",
    "percentile": "Percentile",
    "entropy": "Entropy",
}
CALIBRATION_SEED = 1234
CALIBRATION_BATCH = 32
IMAGE_CALIBRATION_BATCH = 4


def to_fp16(
    src: str | Path,
    dst: str | Path,
    block_ops: tuple[str, ...] = FP16_BLOCK_OPS,
    feeds: list[dict[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Write the mixed-precision FP16 graph of ``src`` (FP32 ONNX) to ``dst``.

    Refused when a weight computed in FP16 lies beyond FP16's range, or when, on ``feeds``
    (the parity inputs), a tensor computed in FP16 would overflow (:func:`fp16_peak`).
    Returns the ``models.fp16`` entry of ``edgegan.json`` without parity (with
    ``activation_peak``, the largest such tensor value, when ``feeds`` are given).
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from edgegan.export.onnx import read_metadata

    model = onnx.load(str(src))
    meta = read_metadata(model)
    # The exporter's intermediate type annotations would contradict the casts the converter
    # puts around blocked ops (onnx.checker then refuses the graph): let it infer them anew.
    del model.graph.value_info[:]
    try:
        half = convert_float_to_float16(
            model, keep_io_types=True, op_block_list=list(block_ops), disable_shape_infer=False
        )
    except Exception as exc:
        raise ExportError(f"FP16 conversion failed: {type(exc).__name__}: {exc}") from exc
    fp32 = onnx.load(str(src))  # as exported (the converter's copy has lost value_info)
    _check_fp16_weights(fp32, half)
    peak = fp16_peak(fp32, half, feeds) if feeds else None
    _finish(half, meta, dst, {"edgegan.precision": "fp16"})
    return {
        "file": Path(dst).name,
        "opset": _opset(half),
        "ir_version": int(half.ir_version),
        "nodes": len(half.graph.node),
        "io_dtype": "float32",
        "blocked_ops": sorted({n.op_type for n in model.graph.node if n.op_type in set(block_ops)}),
        **({"activation_peak": float(f"{peak:.4g}")} if peak is not None else {}),
    }


def _check_fp16_weights(model: Any, half: Any) -> None:
    """Refuse weights the converter clamped to FP16's range (it logs them at debug level
    only, and the graph computes another function)."""
    import onnx
    from onnx import numpy_helper

    converted = {t.name for t in half.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    for t in model.graph.initializer:
        if t.name in converted and t.data_type == onnx.TensorProto.FLOAT:
            arr = numpy_helper.to_array(t)
            peak = float(np.max(np.abs(arr))) if arr.size else 0.0
            if not peak <= FP16_MAX:
                raise ExportError(
                    f"the fp16 graph cannot hold weight '{t.name}': its largest magnitude "
                    f"{peak:.3g} is beyond FP16's range ({FP16_MAX:g}); export without --fp16"
                )


def fp16_peak(fp32: Any, half: Any, feeds: list[dict[str, np.ndarray]]) -> float:
    """The largest magnitude, over ``feeds``, of the tensors the FP16 graph ``half`` computes
    in FP16, read from the FP32 graph ``fp32`` (where they cannot overflow). Raises
    :class:`ExportError` beyond :data:`FP16_MAX`; warns within :data:`FP16_HEADROOM` of it."""
    import warnings

    import onnx
    import onnxruntime as ort

    typed = onnx.shape_inference.infer_shapes(half)
    # The converter renames the tensor each FP32 graph output is cast from (keep_io_types).
    renamed = {f"graph_output_cast_{i}": o.name for i, o in enumerate(fp32.graph.output)}
    half_tensors = {
        renamed.get(v.name, v.name)
        for v in (*typed.graph.value_info, *typed.graph.output)
        if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    }
    model = onnx.ModelProto()
    model.CopyFrom(fp32)
    producer = {o: n for n in model.graph.node for o in n.output}
    names = [o for o in producer if o in half_tensors]
    if not names:
        return 0.0
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in outputs)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep them all
    opts.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    inputs = {i.name for i in session.get_inputs()}
    peaks = dict.fromkeys(names, 0.0)
    # One input at a time: every exposed tensor is held at once (a ResNet-9 at 256 px: about
    # 0.35 GB an image).
    singles = [
        {k: v[i : i + 1] for k, v in feed.items() if k in inputs}
        for feed in feeds
        for i in range(len(next(iter(feed.values()))))
    ]
    for single in singles:
        for name, value in zip(names, session.run(names, single), strict=True):
            if value.size:
                peaks[name] = max(peaks[name], float(np.max(np.abs(value))))
    name = max(peaks, key=lambda n: peaks[n])
    peak, node = peaks[name], producer[name]
    where = f"node '{node.name or name}' ({node.op_type}) reaches {peak:.3g} on the parity inputs"
    if not peak <= FP16_MAX:
        raise ExportError(
            f"the fp16 graph would overflow: {where}, beyond FP16's largest value "
            f"{FP16_MAX:g} (inf where FP16 arithmetic runs, on a GPU; the CPU's parity cannot "
            "show it); export without --fp16"
        )
    if peak > FP16_MAX / FP16_HEADROOM:
        warnings.warn(
            f"the fp16 graph has little headroom: {where}, within {FP16_HEADROOM:g}x of FP16's "
            f"largest value {FP16_MAX:g}; other inputs may overflow to inf on a GPU",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )
    return peak


def toposort(graph: Any) -> None:
    """Order ``graph.node`` topologically, in place, keeping the original order where it is
    free (the FP16 converter appends its input casts after the nodes that read them)."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            raise ExportError("the converted graph has a cycle or a dangling input")
        first = ready[0]
        ordered.append(first)
        known.update(first.output)
        pending.remove(first)
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered, strict=True):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)


def _finish(model: Any, meta: dict[str, Any], dst: str | Path, extra: dict[str, str]) -> None:
    """Restore the graph metadata, sort, check and save."""
    import onnx

    from edgegan.export.onnx import add_metadata, lowest_ir_version

    toposort(model.graph)
    spec = meta.get("edgegan.spec", {})
    keep = {k: v for k, v in meta.items() if k.startswith("edgegan.") and k != "edgegan.spec"}
    # ONNX Runtime's tools leave their own marks (metadata such as onnx.quant.pre_process,
    # opset imports of domains no node uses): the bundle's graphs carry edgegan's only
    ours = [p for p in model.metadata_props if p.key.startswith("edgegan.")]
    del model.metadata_props[:]
    model.metadata_props.extend(ours)
    nodes = [*model.graph.node, *(n for f in model.functions for n in f.node)]
    used = {n.domain for n in nodes} | {f.domain for f in model.functions} | {"", "ai.onnx"}
    opsets = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(opsets)
    add_metadata(model, spec, {**keep, **extra})
    lowest_ir_version(model)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        what = extra.get("edgegan.precision", "")
        raise ExportError(f"the {what} graph fails onnx.checker: {exc}") from exc
    onnx.save(model, str(dst))


def _opset(model: Any) -> int:
    opsets = {o.domain: o.version for o in model.opset_import}
    return int(opsets.get("", opsets.get("ai.onnx", 0)))


class ArrayReader:
    """Calibration feeds for ``quantize_static`` from an array of inputs (a translator's
    images), at most ``batch`` rows per feed, every feed the same size: the histogram
    calibrators stack their feeds' outputs, and a short last feed (10 images in fours)
    failed them ("inhomogeneous shape"). The size is the largest divisor of the count
    up to ``batch``, so every input calibrates."""

    def __init__(self, name: str, inputs: np.ndarray, batch: int = CALIBRATION_BATCH) -> None:
        arr = np.ascontiguousarray(inputs, dtype=np.float32)
        size = next(b for b in range(max(1, min(batch, len(arr))), 0, -1) if len(arr) % b == 0)
        self.feeds = [{name: arr[i : i + size]} for i in range(0, len(arr), size)]
        self._iter = iter(self.feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self.feeds)


class LatentPriorReader:
    """Calibration feeds for ``quantize_static``: ``z`` from N(0, I) (seeded), ``labels``
    cycling over the classes, ``batch`` rows per feed, ``samples`` rows in all."""

    def __init__(
        self,
        spec: dict[str, Any],
        samples: int,
        seed: int = CALIBRATION_SEED,
        batch: int = CALIBRATION_BATCH,
    ) -> None:
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((samples, int(spec["latent_dim"])), dtype=np.float32)
        k = int(spec.get("num_classes") or 0)
        labels = np.arange(samples, dtype=np.int64) % k if k > 0 else None
        self.feeds = []
        for i in range(0, samples, batch):
            feed: dict[str, np.ndarray] = {"z": z[i : i + batch]}
            if labels is not None:
                feed["labels"] = labels[i : i + batch]
            self.feeds.append(feed)
        self._iter = iter(self.feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self.feeds)


def int8_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """:func:`to_int8`'s ``exclude`` (nodes kept in FP32) and calibration ``method`` for a
    generator of this kind."""
    if is_translator(spec):
        return {"exclude": TRANSLATOR_INT8_EXCLUDE, "method": TRANSLATOR_INT8_METHOD}
    return {"exclude": INT8_EXCLUDE, "method": "minmax"}


def resolve_exclusions(model: Any, exclude: tuple[str, ...]) -> list[str]:
    """Node names for ``exclude`` (roles ``first``/``last``, op types or node names). ``first``
    is the first compute node with the nodes between it and the graph's inputs (a ResNet's
    reflection pad): were those quantised, the raw input would be rounded to INT8 anyway."""
    compute = [n for n in model.graph.node if n.op_type in COMPUTE_OPS]
    names: list[str] = []
    for item in exclude:
        if item == "first" and compute:
            names += [*_upstream(model, compute[0]), compute[0].name]
        elif item == "last" and compute:
            names.append(compute[-1].name)
        else:
            names += [n.name for n in model.graph.node if item in (n.name, n.op_type)]
    return list(dict.fromkeys(n for n in names if n))


def _upstream(model: Any, node: Any) -> list[str]:
    """The names of the nodes ``node`` depends on, nearest the graph's inputs first."""
    # "" is an omitted optional input or output: it links nothing
    producer = {out: n for n in model.graph.node for out in n.output if out}
    seen: list[Any] = []
    pending = [name for name in node.input if name]
    while pending:
        source = producer.get(pending.pop())
        if source is not None and all(source is not n for n in seen):
            seen.append(source)
            pending += [name for name in source.input if name]
    return [n.name for n in reversed(seen) if n.name]


def to_int8(
    src: str | Path,
    dst: str | Path,
    spec: dict[str, Any],
    calib_samples: int = 256,
    exclude: tuple[str, ...] = INT8_EXCLUDE,
    per_channel: bool = True,
    activations: str = "s8",
    preprocess: bool = True,
    calibration: np.ndarray | None = None,
    calib_source: str = "",
    method: str = "minmax",
    quantize_bias: bool = QUANTIZE_BIAS,
) -> dict[str, Any]:
    """Write the static Q/DQ INT8 graph of ``src`` (FP32 ONNX) to ``dst``, calibrated on
    ``calib_samples`` latent-prior inputs, or for a translator on ``calibration`` (images
    ``(N, C, H, W)`` in the value range, described by ``calib_source``). Returns the
    ``models.int8`` entry without parity.

    ``activations``: ``"s8"`` (symmetric int8, zero point 0: what TensorRT accepts) or
    ``"u8"`` (asymmetric uint8, for CPU-only graphs). ``method``: the calibration,
    ``"minmax"``, ``"percentile"`` (99.999th) or ``"entropy"``.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from edgegan.export.onnx import quiet_loggers, read_metadata

    if calib_samples < 1:
        raise EdgeganError(f"--calib-samples must be at least 1, got {calib_samples}")
    if activations not in ACTIVATIONS:
        raise EdgeganError(f"activations must be one of {', '.join(ACTIVATIONS)}")
    if method not in CALIBRATION_METHODS:
        raise EdgeganError(f"method must be one of {', '.join(CALIBRATION_METHODS)}")
    symmetric = activations == "s8"
    if is_translator(spec):
        if calibration is None or not len(calibration):
            raise EdgeganError("INT8 calibration of an image-to-image graph needs images")
        # a few images a batch: one run holds every activation of its batch (GBs at 256 px)
        reader: Any = ArrayReader(input_names(spec)[0], calibration, IMAGE_CALIBRATION_BATCH)
        record = {"samples": len(calibration), "source": calib_source or "images"}
    else:
        reader = LatentPriorReader(spec, calib_samples)
        record = {"samples": int(calib_samples), "source": "latent prior"}
    meta = read_metadata(src)
    # ONNX Runtime's quantisation tools log through the root logger too; quiet both while
    # they run, and only then (a program that exports keeps its own logging).
    with (
        quiet_loggers("onnxruntime", "onnxruntime.quantization", ""),
        tempfile.TemporaryDirectory(prefix="edgegan-int8-") as tmp,
    ):
        model_in = Path(src)
        if preprocess:
            model_in = Path(tmp) / "pre.onnx"
            try:
                quant_pre_process(str(src), str(model_in), skip_symbolic_shape=True)
            except Exception:  # pre-processing only helps; quantise the graph as it is
                model_in = Path(src)
        model = onnx.load(str(model_in))
        excluded = resolve_exclusions(model, exclude)
        out = Path(tmp) / "int8.onnx"
        try:
            # the histogram calibrators print their progress: keep it off the CLI's stdout
            with contextlib.redirect_stdout(io.StringIO()):
                quantize_static(
                    str(model_in),
                    str(out),
                    reader,
                    quant_format=QuantFormat.QDQ,
                    per_channel=per_channel,
                    activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded,
                    calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[method]),
                    extra_options={
                        "ActivationSymmetric": symmetric,
                        "WeightSymmetric": True,
                        "QuantizeBias": quantize_bias,
                    },
                )
        except Exception as exc:
            raise ExportError(f"INT8 quantisation failed: {type(exc).__name__}: {exc}") from exc
        quantized = onnx.load(str(out))
    _finish(quantized, meta, dst, {"edgegan.precision": "int8"})
    ops = [n.op_type for n in quantized.graph.node]
    return {
        "file": Path(dst).name,
        "opset": _opset(quantized),
        "ir_version": int(quantized.ir_version),
        "io_dtype": "float32",  # Q/DQ inside: the inputs and output stay float32
        "nodes": len(ops),
        "quantize_nodes": ops.count("QuantizeLinear"),
        "dequantize_nodes": ops.count("DequantizeLinear"),
        "weights": "int8 symmetric, per-channel convolutions" if per_channel else "int8 symmetric",
        "activations": "int8 symmetric" if symmetric else "uint8 asymmetric",
        "calibration": {
            **record,
            "method": method,
            **({} if is_translator(spec) else {"seed": CALIBRATION_SEED}),
        },
        "excluded_nodes": excluded,
    }
