"""ONNX Runtime: the bundle's graph for the chosen precision, on the CPU or CUDA.

CPU: graph optimisation ORT_ENABLE_ALL, sequential execution, intra-op threads = physical
cores (``threads=`` to tune). Worker threads spin between the ops of latent generators (their
calls take a fraction of a millisecond) and sleep for image-to-image graphs, whose long
convolutions leave spinning threads nothing to do but steal cores (docs/benchmarks.md, the
ResNet-9 at 256x256 on 2 cores: as fast when the CPU is quiet, 2.5x faster when it is not).

CUDA (needs ``onnxruntime-gpu``, ``pip install 'edgegan[gpu]'``): the CUDA execution provider
with IOBinding, so the inputs are copied to the device once, the output is allocated on the
device by ONNX Runtime and copied back once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgegan.errors import EdgeganError
from edgegan.export.signature import is_translator
from edgegan.runtime.base import (
    GPU_EXTRA,
    BackendUnavailable,
    Runner,
    Target,
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


def cuda_provider(index: int) -> Any:
    """The CUDA execution provider for GPU ``index``. ``device_id`` is passed only when it is
    not the default: onnxruntime 1.26+ logs "No registered plugin EP device found" for every
    session given one (its plugin-EP lookup runs first), which filled bench's output on the
    H100."""
    return ("CUDAExecutionProvider", {"device_id": index}) if index else "CUDAExecutionProvider"


class OrtRunner(Runner):
    name = "onnxruntime"

    def __init__(
        self,
        target: Target,
        precision: str = "fp32",
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        entry = model_entry(target, precision)
        path = target.bundle / entry["file"]  # type: ignore[operator]
        if not path.is_file():
            raise EdgeganError(f"the bundle lists {entry['file']} but {path} is missing")
        kind, index = parse_device(device)
        self.spec = target.spec
        self.precision = precision
        self.device = "cpu" if kind == "cpu" else f"cuda:{index}"
        self.threads = int(threads) if threads else physical_cores()
        self.spinning = not is_translator(self.spec)
        self.model_path = path
        if kind == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailable(
                    "this onnxruntime has no CUDA execution provider: "
                    f"{GPU_EXTRA} (onnxruntime-gpu replaces the CPU package)"
                )
            providers: list[Any] = [cuda_provider(index), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(
                str(path),
                sess_options=session_options(self.threads, self.spinning),
                providers=providers,
            )
        except Exception as exc:  # onnxruntime's own errors: truncated or foreign files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EdgeganError(
                f"onnxruntime cannot load {path} ({first}); the file is damaged or not an ONNX "
                "graph: export the bundle again"
            ) from exc
        if kind == "cuda" and self.session.get_providers()[0] != "CUDAExecutionProvider":
            # onnxruntime falls back to the CPU silently when the CUDA libraries fail to load
            raise BackendUnavailable(
                "onnxruntime could not start its CUDA execution provider (CUDA/cuDNN "
                "libraries not found?); see onnxruntime's CUDA requirements"
            )
        self._inputs = {
            i.name: _NUMPY_TYPES.get(i.type, np.float32) for i in self.session.get_inputs()
        }
        self._output = self.session.get_outputs()[0].name
        self._device_id = index
        self._binding = self.session.io_binding() if kind == "cuda" else None

    def _feed(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_inputs(inputs)
        missing = [n for n in self._inputs if n not in inputs]
        if missing:
            raise EdgeganError(f"the ONNX graph needs input(s) {', '.join(missing)}")
        return {n: np.ascontiguousarray(inputs[n], dtype=t) for n, t in self._inputs.items()}

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feed = self._feed(inputs)
        if self._binding is None:
            out = self.session.run([self._output], feed)[0]
            return np.asarray(out, dtype=np.float32)
        return self._run_cuda(feed)

    def _run_cuda(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        import onnxruntime as ort

        io = self._binding
        io.clear_binding_inputs()
        io.clear_binding_outputs()
        # The OrtValues must outlive the run: keep them referenced in this frame.
        values = {
            n: ort.OrtValue.ortvalue_from_numpy(a, "cuda", self._device_id) for n, a in feed.items()
        }
        for n, v in values.items():
            io.bind_ortvalue_input(n, v)
        io.bind_output(self._output, "cuda", self._device_id)  # allocated by ORT on the GPU
        io.synchronize_inputs()
        self.session.run_with_iobinding(io)
        io.synchronize_outputs()
        out = io.copy_outputs_to_cpu()[0]  # the one device -> host copy
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self._binding = None
        self.session = None
