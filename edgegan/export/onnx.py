"""FP32 ONNX export of a generator: a GAN's ``z`` [, ``labels``] -> ``image`` (dynamic batch), or
one cyclegan direction's ``image`` -> ``translated`` (dynamic batch, height and width; see
:mod:`edgegan.export.signature`).

The graph is traced from the generator in eval mode (BatchNorm on its running statistics, no
dropout). BatchNorm layers that follow a convolution are folded into its weights first (exact
algebra on the eval-mode affine map), which removes every BatchNormalization node from the
graph, gives the INT8 quantiser per-channel weights that already include the BN scale, and
lets every runtime see plain (transposed) convolutions. Parity against the unfolded torch
generator is measured afterwards (see :mod:`edgegan.export.verify`).

Two exporters are supported: torch's dynamo exporter (``torch.export`` + onnxscript; needs
the ``onnxscript`` package) and the legacy TorchScript exporter. ``"auto"`` uses dynamo when
onnxscript is installed; the measured comparison is in docs/export.md.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgegan.errors import EdgeganError, first_line
from edgegan.export.bundle import ExportError
from edgegan.export.signature import (
    BATCH,
    dynamic_axes,
    example_size,
    input_names,
    is_translator,
    output_names,
)

EXPORTERS: tuple[str, ...] = ("auto", "dynamo", "legacy")
MIN_OPSET = 17
MAX_OPSET = 21
MAX_DIM = 65536


def resolve_exporter(exporter: str = "auto") -> str:
    """``"dynamo"`` or ``"legacy"``: ``"auto"`` picks dynamo when onnxscript is installed."""
    if exporter not in EXPORTERS:
        raise EdgeganError(f"exporter must be one of {', '.join(EXPORTERS)}, got '{exporter}'")
    has_onnxscript = importlib.util.find_spec("onnxscript") is not None
    if exporter == "auto":
        return "dynamo" if has_onnxscript else "legacy"
    if exporter == "dynamo" and not has_onnxscript:
        raise EdgeganError("the dynamo exporter needs onnxscript: pip install onnxscript")
    return exporter


def fold_batchnorm(module: Any) -> tuple[Any, int]:
    """A copy of ``module`` with each eval-mode BatchNorm2d that directly follows a Conv2d or
    ConvTranspose2d (in an ``nn.Sequential``) folded into that convolution; returns the copy
    and the number of folded layers. Other modules are left as they are."""
    import torch
    from torch import nn

    module = copy.deepcopy(module).eval()
    folded = 0
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = seq._modules[a], seq._modules[b]
            if not (
                isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d))
                and type(bn) is nn.BatchNorm2d
                and bn.track_running_stats
                and bn.running_mean is not None
                and bn.running_var is not None
                and conv.groups == 1
                and not hasattr(conv, "parametrizations")
            ):
                continue
            with torch.no_grad():
                scale = bn.running_var.double().add(bn.eps).rsqrt()
                if bn.affine:
                    scale = scale * bn.weight.double()
                shift = -bn.running_mean.double() * scale
                if bn.affine:
                    shift = shift + bn.bias.double()
                if conv.bias is not None:
                    shift = shift + conv.bias.double() * scale
                # Output channels are dim 0 of a Conv2d weight, dim 1 of a ConvTranspose2d's.
                axis = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
                shape = [1] * conv.weight.dim()
                shape[axis] = -1
                weight = conv.weight.double() * scale.view(shape)
                conv.weight = nn.Parameter(weight.to(conv.weight.dtype))
                conv.bias = nn.Parameter(shift.to(conv.weight.dtype))
            seq._modules[b] = nn.Identity()
            folded += 1
    return module, folded


def _wrapper(generator: Any, num_inputs: int) -> Any:
    """An ``nn.Module`` with the graph's signature: ``forward(a, b)`` (z, labels) or
    ``forward(a)`` (z, or an image), so the exporter names exactly the graph's inputs."""
    from torch import nn

    class TwoInputGraph(nn.Module):
        def __init__(self, g: nn.Module) -> None:
            super().__init__()
            self.generator = g

        def forward(self, a, b):  # noqa: ANN001, ANN202 (traced)
            return self.generator(a, b)

    class OneInputGraph(nn.Module):
        def __init__(self, g: nn.Module) -> None:
            super().__init__()
            self.generator = g

        def forward(self, a):  # noqa: ANN001, ANN202 (traced)
            return self.generator(a)

    return (TwoInputGraph if num_inputs == 2 else OneInputGraph)(generator).eval()


def _example_inputs(spec: dict[str, Any], batch: int = 2) -> tuple[Any, ...]:
    """Traced inputs; batch 2 and distinct sizes so no dynamic axis is specialised."""
    import torch

    gen = torch.Generator().manual_seed(0)
    if is_translator(spec):
        h, w = example_size(spec)
        shape = (batch, int(spec["channels_in"]), h, w)
        return (torch.rand(shape, generator=gen, dtype=torch.float32) * 2 - 1,)
    z = torch.randn(batch, int(spec["latent_dim"]), generator=gen, dtype=torch.float32)
    k = int(spec.get("num_classes") or 0)
    if k > 0:
        return z, torch.arange(batch, dtype=torch.int64) % k
    return (z,)


def _dynamo_shapes(spec: dict[str, Any]) -> tuple[dict[int, Any], ...]:
    """torch.export dynamic shapes per input: the batch, and for a translator H and W as
    multiples of ``size_multiple`` (derived dims, so the graph needs no shape arithmetic)."""
    import torch

    dims: dict[str, Any] = {BATCH: torch.export.Dim(BATCH, min=1, max=MAX_DIM)}
    if is_translator(spec):
        m = int(spec["size_multiple"])
        for name in ("height", "width"):
            root = torch.export.Dim(f"{name}_{m}", min=1, max=MAX_DIM // m)
            dims[name] = m * root if m > 1 else root
    axes = dynamic_axes(spec)
    return tuple({i: dims[d] for i, d in axes[n].items()} for n in input_names(spec))


@contextlib.contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """Raise the named loggers (``""``: the root logger) to ERROR for the ``with`` block and
    give them back their levels after it: a library call in an export must not change the
    logging of the program that exports."""
    loggers = [logging.getLogger(n) if n else logging.getLogger() for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _export_dynamo(wrapper: Any, args: tuple, spec: dict[str, Any], opset: int) -> Any:
    # The dynamo exporter logs warnings and passes that say nothing about this graph
    # (torchvision ops not registered, deprecated pytree classes, onnx_ir's passes).
    with quiet_loggers("torch.onnx", "torch.export", "onnxscript", "onnx_ir"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = _dynamo(wrapper, args, spec, opset)
    model = program.model_proto
    _name_dynamic_dims(model, spec)
    return model


def _dynamo(wrapper: Any, args: tuple, spec: dict[str, Any], opset: int) -> Any:
    import torch

    return torch.onnx.export(
        wrapper,
        args,
        dynamo=True,
        input_names=input_names(spec),
        output_names=output_names(spec),
        dynamic_shapes=_dynamo_shapes(spec),
        opset_version=opset,
        optimize=True,
        external_data=False,
        verbose=False,
    )


def _name_dynamic_dims(model: Any, spec: dict[str, Any]) -> None:
    """Give the graph's dynamic input/output dimensions the names of :func:`io_spec`
    (dynamo writes the symbols it traced, such as ``4*height_4``), everywhere they occur."""
    rename: dict[str, str] = {}
    tensors = {t.name: t for t in [*model.graph.input, *model.graph.output]}
    for name, axes in dynamic_axes(spec).items():
        dims = tensors[name].type.tensor_type.shape.dim
        for i, new in axes.items():
            old = dims[i].dim_param
            if old and old != new:
                rename[old] = new
    if not rename:
        return
    for info in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in info.type.tensor_type.shape.dim:
            if dim.dim_param in rename:
                dim.dim_param = rename[dim.dim_param]


def _export_legacy(wrapper: Any, args: tuple, spec: dict[str, Any], opset: int, tmp: Path) -> Any:
    import onnx
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                args,
                str(tmp),  # the legacy exporter writes a file
                dynamo=False,
                input_names=input_names(spec),
                output_names=output_names(spec),
                dynamic_axes=dynamic_axes(spec),
                opset_version=opset,
            )
        return onnx.load(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)


def lowest_ir_version(model: Any) -> int:
    """Lower the graph's IR version to the lowest its opsets allow, and return it.

    onnx writes its own newest IR version (10 since onnx 1.16), which onnxruntime before
    1.18 refuses ("Unsupported model IR version: 10") although nothing in these graphs
    needs it: opset 18 needs IR 8, so a bundle loads on onnxruntime 1.15 and newer (measured
    with 1.15.1, 1.16.3, 1.17.3; docs/export.md). onnx.checker runs after this."""
    import onnx

    lowest = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    model.ir_version = min(int(model.ir_version), int(lowest))
    return int(model.ir_version)


def drop_exporter_notes(model: Any) -> None:
    """Remove the notes torch's dynamo exporter leaves on the graph and its nodes (stack
    traces with this machine's file paths, FX node text, the exported program's signature
    and its size symbols in hash order): a bundle's graph is then the same bytes from the
    same weights on any machine and under any PYTHONHASHSEED, and its sha256 can check a
    re-export. Neither runtime reads them."""
    g = model.graph
    for item in (g, *g.node, *g.input, *g.output, *g.value_info, *g.initializer):
        if hasattr(item, "metadata_props"):  # onnx >= 1.16 (IR 10)
            del item.metadata_props[:]
    for function in model.functions:
        for node in function.node:
            if hasattr(node, "metadata_props"):
                del node.metadata_props[:]


def add_metadata(model: Any, spec: dict[str, Any], extra: dict[str, str] | None = None) -> None:
    """Put the generator's spec (JSON) and the producer in the graph's ``metadata_props``."""
    from edgegan import __version__

    props = {
        "edgegan.spec": json.dumps(spec, sort_keys=True),
        "edgegan.version": __version__,
        "edgegan.task": str(spec.get("task", "gan")),
        **(extra or {}),
    }
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for p in kept:
        model.metadata_props.add(key=p.key, value=p.value)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "edgegan"
    model.producer_version = __version__
    keys = (
        ("direction", "channels_in", "channels_out", "value_range", "size_multiple")
        if is_translator(spec)
        else ("latent_dim", "num_classes", "image_shape")
    )
    model.doc_string = f"edgegan {spec.get('task', 'gan')} generator: " + ", ".join(
        f"{k}={spec[k]}" for k in keys if k in spec
    )


def read_metadata(model: Any) -> dict[str, Any]:
    """The ``metadata_props`` of an ONNX model (a ModelProto or path), ``edgegan.spec``
    decoded from JSON."""
    import onnx

    if isinstance(model, (str, Path)):
        model = onnx.load(str(model), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if "edgegan.spec" in props:
        props["edgegan.spec"] = json.loads(props["edgegan.spec"])
    return props


#: What the dynamo exporter imports on its first use (seconds of imports).
_DYNAMO_MODULES = (
    "torch._dynamo",
    "torch.export",
    "onnxscript",
    "torch.onnx._internal.exporter._core",
)


def _preload_dynamo() -> None:
    """Import what the dynamo exporter needs before its fallback's ``try``: a Ctrl-C (or
    SIGTERM) landing in those imports came back from torch as an AttributeError ("module
    'torch._dynamo' has no attribute 'exc'"), which the fallback took for a broken dynamo
    and finished the export with the legacy exporter, ignoring the signal. Here it stops
    the export. A module that fails to import is left to the exporter (and its fallback)."""
    for name in _DYNAMO_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # a version mismatch: the export attempt says what, or falls back
            pass


def _run_exporter(
    which: str, wrapper: Any, args: tuple, spec: dict[str, Any], opset: int, path: Path
) -> Any:
    import torch

    with torch.no_grad():
        if which == "dynamo":
            return _export_dynamo(wrapper, args, spec, opset)
        return _export_legacy(wrapper, args, spec, opset, path.with_name(f".{path.name}.tmp"))


def _export_failed(which: str, exc: BaseException) -> ExportError:
    if isinstance(exc, ExportError):
        return exc
    msg = first_line(exc)
    return ExportError(f"ONNX export ({which} exporter) failed: {type(exc).__name__}: {msg}")


def export_onnx(
    generator: Any,
    spec: dict[str, Any],
    path: str | Path,
    opset: int = 18,
    exporter: str = "auto",
    fold_bn: bool = True,
) -> dict[str, Any]:
    """Export ``generator`` to ``path``: a GAN generator (``forward(z, labels=None)``) or, when
    ``spec`` is a translator's (:func:`edgegan.export.signature.direction_spec`), an
    image-to-image generator (``forward(image)``).

    Returns the ``models.fp32`` entry of ``edgegan.json`` without parity: ``file``, ``opset``,
    ``exporter``, ``nodes``, ``folded_batchnorm``, ``export_seconds``.
    """
    import onnx

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise EdgeganError(f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")
    which = resolve_exporter(exporter)
    path = Path(path)
    module = generator.module if hasattr(generator, "module") else generator
    folded = 0
    if fold_bn:
        module, folded = fold_batchnorm(module)
    else:
        module = copy.deepcopy(module)
    module = module.to("cpu").float().eval()
    wrapper = _wrapper(module, len(input_names(spec)))
    args = _example_inputs(spec)
    if which == "dynamo":
        _preload_dynamo()
    start = time.perf_counter()
    fallback = None
    try:
        model = _run_exporter(which, wrapper, args, spec, opset, path)
    except Exception as exc:
        if exporter != "auto" or which != "dynamo":
            raise _export_failed(which, exc) from exc
        # "auto": an exporter/onnxscript version mismatch should not block the export; the
        # legacy exporter gives an equivalent graph (parity is checked either way).
        fallback = f"dynamo failed ({type(exc).__name__}); used legacy"
        which = "legacy"
        try:
            model = _run_exporter(which, wrapper, args, spec, opset, path)
        except Exception as exc2:
            raise _export_failed(which, exc2) from exc2
    seconds = time.perf_counter() - start
    drop_exporter_notes(model)
    add_metadata(model, spec, {"edgegan.exporter": which, "edgegan.precision": "fp32"})
    lowest_ir_version(model)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ExportError(f"the exported ONNX graph fails onnx.checker: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    opsets = {o.domain: o.version for o in model.opset_import}
    return {
        "file": path.name,
        "opset": int(opsets.get("", opsets.get("ai.onnx", opset))),
        "ir_version": int(model.ir_version),
        "io_dtype": "float32",
        "exporter": which,
        "nodes": len(model.graph.node),
        "folded_batchnorm": folded,
        "export_seconds": round(seconds, 3),
        **({"note": fallback} if fallback else {}),
    }
