"""ONNX Runtime: the bundle's graph for the chosen precision, on the CPU or CUDA.

CPU: graph optimisation ORT_ENABLE_ALL, sequential execution, intra-op threads = physical
cores (``threads=`` to tune). Worker threads spin between the ops of latent generators (their
calls take a fraction of a millisecond) and sleep for image-to-image graphs, whose long
convolutions leave spinning threads nothing to do but steal cores (docs/benchmarks.md, the
ResNet-9 at 256x256 on 2 cores: as fast when the CPU is quiet, 2.5x faster when it is not).

CUDA (needs ``onnxruntime-gpu`` in place of ``onnxruntime``: :data:`GPU_INSTALL`): the CUDA
execution provider with IOBinding, so the inputs are copied to the device once, the output
is allocated on the device by ONNX Runtime and copied back once. With CUDA graphs (the
default on CUDA, ``cuda_graphs=False`` turns them off; measured on an H100,
docs/benchmarks.md: 1.2x the plain runs for the ResNet-9 at batch 1, 2.3x for the DCGAN
generator) the session records each input shape's run in a CUDA graph (onnxruntime's
``enable_cuda_graph``) and replays it: graphs read and write fixed addresses, so a shape
seen a second time gets its own device buffers, bound once, that later calls copy into and
out of (one graph id per shape, up to :data:`MAX_GRAPHS`; further shapes, and a shape whose
capture fails, run without a graph, and a graph onnxruntime refuses at load runs without
graphs, each with a warning).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgegan.errors import EdgeganError, caller_stacklevel, first_line
from edgegan.export.bundle import check_graph_file
from edgegan.export.signature import is_translator
from edgegan.runtime.base import (
    GPU_INSTALL,
    BackendUnavailable,
    Runner,
    Target,
    is_int,
    model_entry,
    parse_device,
    physical_cores,
)

_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def session_options(threads: int | None = None, spinning: bool = True) -> Any:
    """The tuned session options of the runner (also used by the benchmark tools)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads) if threads else physical_cores()
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.log_severity_level = 3  # errors only: no warnings about unused initialisers etc.
    return so


def cuda_provider(index: int, **options: Any) -> Any:
    """The CUDA execution provider for GPU ``index`` with provider ``options``. ``device_id``
    is passed only when it is not the default: onnxruntime 1.26+ logs "No registered plugin
    EP device found" for every session given one (its plugin-EP lookup runs first), which
    filled bench's output on the H100."""
    if index:
        options = {"device_id": index, **options}
    return ("CUDAExecutionProvider", options) if options else "CUDAExecutionProvider"


#: Input shapes one runner records CUDA graphs for; each holds its buffers and graph.
MAX_GRAPHS = 4
#: onnxruntime's run option naming a CUDA graph (-1: run without one; 0, the id of runs that
#: name none, is left unused)
GRAPH_ID = "gpu_graph_id"


@dataclass
class _GraphSlot:
    """The bound device buffers and run options of one input shape's CUDA graph."""

    inputs: dict[str, Any]  # name -> OrtValue on the GPU
    output: Any  # OrtValue on the GPU
    binding: Any
    run_options: Any
    runs: int = 0  # onnxruntime captures within the first runs of a graph id


#: CUDA provider options the runner sets itself (--device, --cuda-graphs/--no-cuda-graphs)
_RUNNER_OPTIONS = {
    "device_id": "--device cuda:N",
    "enable_cuda_graph": "--cuda-graphs/--no-cuda-graphs",
    "has_user_compute_stream": None,
    "user_compute_stream": None,
}


def _provider_options(options: dict[str, Any]) -> dict[str, str]:
    """Provider options as onnxruntime takes them (strings; booleans as 1/0), refusing those
    the runner owns."""
    out: dict[str, str] = {}
    for key, value in options.items():
        key = str(key)
        if key in _RUNNER_OPTIONS:
            use = _RUNNER_OPTIONS[key]
            raise EdgeganError(
                f"the runner sets the provider option {key} itself"
                + (f": use {use}" if use else "")
            )
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, (str, int)):
            raise EdgeganError(f"provider option {key} must be a string or integer, got {value!r}")
        out[key] = str(value)
    return out


#: onnxruntime's words for a graph newer than it reads (its IR version, or an opset it
#: calls "under development")
_IR_TOO_NEW = re.compile(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)")
_OPSET_TOO_NEW = re.compile(
    r"Opset (\d+) is under development.*?support for domain (\S+) is till opset (\d+)"
)


def newer_than_runtime(message: str) -> str:
    """What onnxruntime's load error ``message`` says is too new for it, in a few words (a
    bundle exported with a higher ``--opset`` than it reads), or ``""``."""
    ir = _IR_TOO_NEW.search(message)
    if ir:
        return f"the graph is ONNX IR version {ir[1]}, it reads up to {ir[2]}"
    opset = _OPSET_TOO_NEW.search(message)
    if opset:
        return f"the graph is opset {opset[1]}, it reads up to {opset[3]}"
    return ""


def _first_line(exc: BaseException) -> str:
    return first_line(exc, type(exc).__name__)


#: What onnxruntime's failures say when an allocation failed.
_OUT_OF_MEMORY = ("Failed to allocate memory", "bad_alloc", "out of memory")


def _ort_detail(line: str) -> str:
    """The useful end of onnxruntime's ``[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION :
    Non-zero status code returned while running Conv node. ... Status Message: WHY``."""
    why = line.rsplit("Status Message:", 1)[-1].strip()
    why = re.sub(r"^\S+\.\w+:\d+ [^(]*\([^)]*\)\s*", "", why)  # its source file and function
    node = re.search(r"while running (\S+ node\. Name:'[^']*')", line)
    return f"{why} ({node.group(1)})" if node and why != line.strip() else why


def _run_options(graph_id: int) -> Any:
    import onnxruntime as ort

    options = ort.RunOptions()
    options.add_run_config_entry(GRAPH_ID, str(graph_id))
    return options


def signature_mismatch(session: Any, spec: dict[str, Any]) -> str | None:
    """How an onnxruntime session's inputs and outputs disagree with the ones ``spec``
    describes (names, and every dimension both give as a number), or None. The runners build
    inputs and read outputs from the spec: a graph from another export would otherwise run
    with inputs dropped or images of another shape."""
    from edgegan.export.signature import io_spec

    want_in, want_out = io_spec(spec)
    got = {t.name: list(t.shape) for t in session.get_inputs()}
    names = sorted(got), sorted(t["name"] for t in want_in)
    if names[0] != names[1]:
        return f"its inputs are {', '.join(names[0])}, the bundle's {', '.join(names[1])}"
    outputs = session.get_outputs()
    if outputs[0].name != want_out[0]["name"]:
        return f"its output is {outputs[0].name}, the bundle's {want_out[0]['name']}"
    got[outputs[0].name] = list(outputs[0].shape)
    for tensor in want_in + want_out:
        mine, theirs = got[tensor["name"]], tensor["shape"]
        if len(mine) != len(theirs) or any(
            isinstance(a, int) and isinstance(b, int) and a != b
            for a, b in zip(mine, theirs, strict=True)
        ):
            shown = [", ".join(str(d) for d in dims) for dims in (mine, theirs)]
            return f"'{tensor['name']}' is [{shown[0]}] in the graph, [{shown[1]}] in the bundle"
    return None


class OrtRunner(Runner):
    name = "onnxruntime"

    def __init__(
        self,
        target: Target,
        precision: str = "fp32",
        device: str = "cpu",
        threads: int | None = None,
        cuda_graphs: bool | None = None,
        provider_options: dict[str, str] | None = None,
    ) -> None:
        import onnxruntime as ort

        entry = model_entry(target, precision)
        path = target.bundle / entry["file"]
        if not path.is_file():
            raise EdgeganError(f"the bundle lists {entry['file']} but {path} is missing")
        # onnxruntime is given the bytes checked, not the path: the file cannot change between
        # the check and the load, and a path it cannot take (a name that is not UTF-8) is
        # no "damaged file"
        model = check_graph_file(path, entry)
        kind, index = parse_device(device)
        self.spec = target.spec
        self.precision = precision
        self.device = "cpu" if kind == "cpu" else f"cuda:{index}"
        if threads is not None and (not is_int(threads) or threads < 0):
            raise EdgeganError(
                f"--threads must be an integer >= 1 (0: one per core), got {threads!r}"
            )
        self.threads = int(threads) if threads else physical_cores()
        self.spinning = not is_translator(self.spec)
        self.model_path = path
        if cuda_graphs and kind != "cuda":
            raise EdgeganError("cuda_graphs needs a CUDA device (--device cuda)")
        if cuda_graphs is None:  # on by default where there are any
            cuda_graphs = kind == "cuda"
        if provider_options and kind != "cuda":
            raise EdgeganError(
                "provider options are for the CUDA execution provider (--device cuda)"
            )
        #: extra CUDA execution provider options, e.g. {"prefer_nhwc": "1"}
        self.provider_options = _provider_options(provider_options or {})
        self.cuda_graphs = bool(cuda_graphs)
        if kind == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailable(
                    "this onnxruntime has no CUDA execution provider: "
                    f"{GPU_INSTALL} (the two share one folder: installed beside it, the CPU "
                    "package may win; redo this after any pip install that brings it back)"
                )
            graph_option = {"enable_cuda_graph": "1"} if self.cuda_graphs else {}
            cuda = cuda_provider(index, **self.provider_options, **graph_option)
            providers: list[Any] = [cuda, "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        try:
            self.session = self._session(model, providers)
        except Exception as exc:  # onnxruntime's own errors: truncated or foreign files
            first = _first_line(exc)
            if self.provider_options and "graph capture" not in first.lower():
                shown = ", ".join(f"{k}={v}" for k, v in self.provider_options.items())
                raise EdgeganError(
                    f"onnxruntime cannot load {path} with the provider options {shown} "
                    f"({first}); check them, or export the bundle again if the file is damaged"
                ) from exc
            too_new = newer_than_runtime(first)
            if too_new:
                raise EdgeganError(
                    f"onnxruntime {ort.__version__} cannot load {path}: {too_new}; upgrade "
                    "onnxruntime (pip install -U onnxruntime), or export the run again with a "
                    "lower --opset (18, the default, loads on onnxruntime 1.15 and newer)"
                ) from exc
            if not (self.cuda_graphs and "graph capture" in first.lower()):
                raise EdgeganError(
                    f"onnxruntime cannot load {path} ({first}); the file is damaged or not an "
                    "ONNX graph: export the bundle again"
                ) from exc
            # e.g. Memcpy nodes to shape ops onnxruntime placed on the CPU
            warnings.warn(
                f"onnxruntime cannot capture {path.name} in CUDA graphs ({first}); it runs "
                "without them",
                RuntimeWarning,
                stacklevel=caller_stacklevel(),
            )
            self.cuda_graphs = False
            cuda = cuda_provider(index, **self.provider_options)
            try:
                self.session = self._session(model, [cuda, "CPUExecutionProvider"])
            except Exception as exc2:
                raise EdgeganError(
                    f"onnxruntime cannot load {path} ({_first_line(exc2)})"
                ) from exc2
        if kind == "cuda" and self.session.get_providers()[0] != "CUDAExecutionProvider":
            # onnxruntime falls back to the CPU silently when the CUDA libraries fail to load
            raise BackendUnavailable(
                "onnxruntime could not start its CUDA execution provider (CUDA/cuDNN "
                "libraries not found?); see onnxruntime's CUDA requirements"
            )
        mismatch = signature_mismatch(self.session, self.spec)
        if mismatch:
            raise EdgeganError(
                f"{path.name} does not match the bundle's edgegan.json ({mismatch}); the "
                "bundle was edited or mixes files of two exports: export it again"
            )
        self._inputs = {
            i.name: _NUMPY_TYPES.get(i.type, np.float32) for i in self.session.get_inputs()
        }
        self._output = self.session.get_outputs()[0].name
        self._device_id = index
        self._binding = self.session.io_binding() if kind == "cuda" else None
        self._io_device = "cuda" if kind == "cuda" else "cpu"  # where bound buffers live
        self._graphs: dict[tuple, _GraphSlot] = {}
        #: input shapes run once -> their output's shape and type (a second run binds a graph)
        self._seen: dict[tuple, tuple[tuple, Any]] = {}
        self._ungraphed: set[tuple] = set()  # shapes whose capture failed
        self._next_graph_id = 1

    def _session(self, model: bytes, providers: list[Any]) -> Any:
        import onnxruntime as ort

        # No fallback: onnxruntime would print a box to stdout and retry on the CPU when the
        # CUDA provider refuses its options; the error is ours to report in one line.
        return ort.InferenceSession(
            model,
            sess_options=session_options(self.threads, self.spinning),
            providers=providers,
            enable_fallback=0,
        )

    def _feed(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_inputs(inputs)
        missing = [n for n in self._inputs if n not in inputs]
        if missing:
            raise EdgeganError(f"the ONNX graph needs input(s) {', '.join(missing)}")
        return {n: np.ascontiguousarray(inputs[n], dtype=t) for n, t in self._inputs.items()}

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feed = self._feed(inputs)
        try:
            return self._run(feed)
        except Exception as exc:
            if not type(exc).__module__.startswith("onnxruntime"):
                raise
            # onnxruntime's own failures: a page of text and a traceback; one line, as the
            # torch backend's (its allocator failing: the CLI's out-of-memory line)
            line = _first_line(exc)
            if any(words in line for words in _OUT_OF_MEMORY):
                raise MemoryError(f"onnxruntime: {_ort_detail(line)}") from exc
            raise EdgeganError(
                f"onnxruntime failed to run {self.describe()}: {_ort_detail(line)}"
            ) from exc

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        if self._binding is None:
            out = self.session.run([self._output], feed)[0]
            return np.asarray(out, dtype=np.float32)
        if self.cuda_graphs:
            return self._run_graph(feed)
        return np.asarray(self._run_cuda(feed), dtype=np.float32)

    def _run_cuda(self, feed: dict[str, np.ndarray], run_options: Any = None) -> np.ndarray:
        import onnxruntime as ort

        io, dev = self._binding, self._io_device
        assert io is not None  # made with the session on CUDA
        io.clear_binding_inputs()
        io.clear_binding_outputs()
        # The OrtValues must outlive the run: keep them referenced in this frame.
        values = {
            n: ort.OrtValue.ortvalue_from_numpy(a, dev, self._device_id) for n, a in feed.items()
        }
        for n, v in values.items():
            io.bind_ortvalue_input(n, v)
        io.bind_output(self._output, dev, self._device_id)  # allocated by ORT on the GPU
        io.synchronize_inputs()
        self.session.run_with_iobinding(io, run_options)
        io.synchronize_outputs()
        out = io.copy_outputs_to_cpu()[0]  # the one device -> host copy
        return out

    def _key(self, feed: dict[str, np.ndarray]) -> tuple:
        return tuple((n, a.shape) for n, a in feed.items())

    def _run_graph(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Run in the CUDA graph of this input shape: copy the inputs into its bound buffers,
        run (onnxruntime captures the graph in the first runs of its id, then replays it),
        copy the output back. A shape's first call runs without a graph (a one-off shape
        costs nothing more) and gives the output's shape and type for its fixed buffer; its
        second binds the buffers."""
        key = self._key(feed)
        slot = self._graphs.get(key)
        if slot is None:
            if key not in self._seen or key in self._ungraphed or len(self._graphs) >= MAX_GRAPHS:
                out = self._run_cuda(feed, _run_options(-1))
                self._seen[key] = (out.shape, out.dtype.type)
                return np.asarray(out, dtype=np.float32)
            slot = self._graphs[key] = self._bind_graph(feed, *self._seen[key])
        for n, a in feed.items():
            slot.inputs[n].update_inplace(a)
        slot.binding.synchronize_inputs()
        try:
            self.session.run_with_iobinding(slot.binding, slot.run_options)
        except Exception as exc:
            if slot.runs >= 2:  # it captured and replayed before: not a capture problem
                raise EdgeganError(
                    f"onnxruntime failed in a CUDA graph: {_first_line(exc)}"
                ) from exc
            del self._graphs[key]
            self._ungraphed.add(key)
            shapes = ", ".join(f"{n} {tuple(s)}" for n, s in key)
            warnings.warn(
                f"onnxruntime could not capture a CUDA graph for {shapes} "
                f"({_first_line(exc)}); those inputs run without one",
                RuntimeWarning,
                stacklevel=caller_stacklevel(),
            )
            try:
                out = self._run_cuda(feed, _run_options(-1))
            except Exception as exc2:  # not the graph, then: say what onnxruntime said
                raise EdgeganError(f"onnxruntime failed: {_first_line(exc2)}") from exc2
            return np.asarray(out, dtype=np.float32)
        slot.runs += 1
        out = slot.output.numpy()  # on CUDA a new host array; on the CPU the bound buffer
        if self._io_device == "cpu":
            return out.astype(np.float32, copy=True)
        return np.asarray(out, dtype=np.float32)

    def _bind_graph(self, feed: dict[str, np.ndarray], shape: tuple, dtype: Any) -> _GraphSlot:
        import onnxruntime as ort

        dev, index = self._io_device, self._device_id
        # On the CPU an OrtValue would wrap the caller's array: give it its own.
        inputs = {
            n: ort.OrtValue.ortvalue_from_numpy(a.copy() if dev == "cpu" else a, dev, index)
            for n, a in feed.items()
        }
        output = ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, dev, index)
        binding = self.session.io_binding()
        for n, v in inputs.items():
            binding.bind_ortvalue_input(n, v)
        binding.bind_ortvalue_output(self._output, output)
        slot = _GraphSlot(inputs, output, binding, _run_options(self._next_graph_id))
        self._next_graph_id += 1
        return slot

    def graphed(self, inputs: dict[str, np.ndarray]) -> bool:
        """Whether calls with these inputs' shapes replay a CUDA graph now (bench's label):
        onnxruntime captures within a graph id's first two runs."""
        key = tuple((n, np.shape(inputs[n])) for n in self._inputs if n in inputs)
        slot = self._graphs.get(key) if self.cuda_graphs else None
        return slot is not None and slot.runs >= 2

    def close(self) -> None:
        super().close()
        self._graphs.clear()
        self._seen.clear()
        self._binding = None
        self.session = None
