"""TensorRT: a bundle's ``model.<precision>.engine`` with named tensors and CUDA graphs.

Before the plan is deserialized, the engine's record in ``edgegan.json`` (GPU, compute
capability, TensorRT version) is compared with this device and library
(:func:`edgegan.export.tensorrt.check_engine`): a foreign engine is a clear error that says how
to rebuild it here. Device buffers are torch CUDA tensors; inference is
``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3`` on a dedicated CUDA
stream. Each input shape gets its own buffers; while the shape stays the same (the static-shape
case), the enqueue is captured in a CUDA graph after the first eager run and replayed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgegan.errors import EdgeganError, caller_stacklevel, first_line
from edgegan.runtime.base import BackendUnavailable, Runner, Target, parse_device


@dataclass
class _Slot:
    """Buffers (and the CUDA graph, once captured) for one set of input shapes."""

    inputs: dict[str, Any]
    outputs: dict[str, Any]
    runs: int = 0
    graph: Any = None
    graph_failed: bool = False


def _torch_dtype(trt: Any, dtype: Any) -> Any:
    import torch

    table = {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "BF16": torch.bfloat16,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "INT8": torch.int8,
        "UINT8": torch.uint8,
        "BOOL": torch.bool,
    }
    for name, tdtype in table.items():
        if getattr(trt.DataType, name, None) == dtype:
            return tdtype
    raise EdgeganError(f"the engine uses a tensor type edgegan does not handle: {dtype}")


class TrtRunner(Runner):
    name = "tensorrt"

    def __init__(
        self,
        target: Target,
        precision: str = "fp32",
        device: str = "cuda",
        cuda_graphs: bool = True,
    ) -> None:
        import torch

        from edgegan.export.bundle import engine_entries, read_recorded
        from edgegan.export.tensorrt import (
            build_env,
            check_engine,
            import_tensorrt,
            load_failure,
            make_logger,
        )

        trt = import_tensorrt()
        self.trt = trt
        kind, index = parse_device(device if str(device).startswith("cuda") else "cuda")
        self.device = f"cuda:{index}"
        self.precision = precision
        self.spec = target.spec
        entry = engine_entries(dict(target.meta or {}), target.direction).get(precision)
        if not entry:
            graphs = f"{target.direction} " if target.direction else ""
            raise BackendUnavailable(
                f"the bundle {target.bundle} has no {graphs}{precision} TensorRT engine; build "
                f"the engines on this device with `edgegan export {target.bundle} --trt`"
            )
        check_engine(entry, build_env(trt, self.device), target.bundle or "BUNDLE")
        path = target.bundle / entry["file"]
        if not path.is_file():
            raise EdgeganError(f"the bundle lists {entry['file']} but {path} is missing")
        plan = read_recorded(path, entry, engine=True)  # the plan built, or one line

        self._torch_device = torch.device(self.device)
        torch.cuda.init()
        self.logger = make_logger(trt, echo_warnings=True)  # errors go into a failure's line
        # TensorRT works on the calling thread's current device: make it ours while loading
        with torch.cuda.device(self._torch_device):
            self.runtime = trt.Runtime(self.logger)
            mark = self.logger.count
            self.engine = self.runtime.deserialize_cuda_engine(plan)
            if self.engine is None:
                raise EdgeganError(
                    f"TensorRT could not load {path.name}: "
                    f"{load_failure(trt, self.logger, mark)}; "
                    f"an engine from elsewhere is rebuilt on this device with "
                    f"`edgegan export {target.bundle} --trt`"
                )
            mark = self.logger.count
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise EdgeganError(
                    f"TensorRT could not create an execution context for {path.name}: "
                    f"{self.logger.said(mark)}"
                )
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode
        self._in_names = [n for n in names if self.engine.get_tensor_mode(n) == mode.INPUT]
        self._out_names = [n for n in names if self.engine.get_tensor_mode(n) == mode.OUTPUT]
        self._dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        maxes = [int(self.engine.get_tensor_profile_shape(n, 0)[2][0]) for n in self._in_names]
        self.max_batch = min(maxes) if maxes else None
        self.stream = torch.cuda.Stream(device=self._torch_device)
        self.cuda_graphs = bool(cuda_graphs)
        self._slots: dict[tuple, _Slot] = {}
        self._bound: tuple | None = None

    # -- buffers and bindings ---------------------------------------------------------------
    def _slot(self, key: tuple, feed: dict[str, np.ndarray]) -> _Slot:
        import torch

        slot = self._slots.get(key)
        if slot is not None:
            return slot
        dev = self._torch_device
        ins = {
            n: torch.empty(feed[n].shape, dtype=self._dtypes[n], device=dev) for n in self._in_names
        }
        mark = self.logger.count
        for n, buf in ins.items():
            if not self.context.set_input_shape(n, tuple(buf.shape)):
                lo, _, hi = self.engine.get_tensor_profile_shape(n, 0)
                raise EdgeganError(
                    f"input '{n}' of shape {tuple(buf.shape)} is outside the engine's profile "
                    f"({tuple(lo)} to {tuple(hi)}); rebuild it with a wider profile "
                    "(--max-batch, --min-size/--max-size)"
                )
        outs = {}
        for n in self._out_names:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                raise EdgeganError(
                    f"TensorRT could not infer the shape of output '{n}': {self.logger.said(mark)}"
                )
            outs[n] = torch.empty(shape, dtype=self._dtypes[n], device=dev)
        slot = _Slot(ins, outs)
        self._slots[key] = slot
        self._bound = None
        return slot

    def _bind(self, key: tuple, slot: _Slot) -> None:
        """Point the context at this slot's shapes and buffers. A CUDA graph holds the
        context's state at capture (shape-dependent parameters included), so graphs live only
        while their shapes stay bound: a shape change drops them and the new shape runs
        eagerly once before it is captured."""
        if self._bound == key:
            return
        for n, buf in slot.inputs.items():
            self.context.set_input_shape(n, tuple(buf.shape))
            self.context.set_tensor_address(n, buf.data_ptr())
        for n, buf in slot.outputs.items():
            self.context.set_tensor_address(n, buf.data_ptr())
        for other in self._slots.values():
            other.graph = None
            other.runs = 0
        self._bound = key

    def _enqueue(self) -> None:
        mark = self.logger.count
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise EdgeganError(
                "TensorRT failed to enqueue the engine (execute_async_v3): "
                + self.logger.said(mark)
            )

    def _capture(self, slot: _Slot) -> None:
        """Capture the enqueue of this slot in a CUDA graph (after one eager run, which also
        lets TensorRT finish its deferred setup); fall back to eager runs if it fails."""
        import torch

        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                self._enqueue()
        except Exception as exc:  # a graph-incompatible engine still runs, eagerly
            slot.graph_failed = True
            torch.cuda.synchronize(self._torch_device)
            shapes = ", ".join(f"{n} {tuple(b.shape)}" for n, b in slot.inputs.items())
            first = first_line(exc, type(exc).__name__)
            warnings.warn(  # as onnxruntime's runner says it: bench's rows then show why
                f"TensorRT could not capture a CUDA graph for {shapes} ({first}); those "
                "inputs run without one",
                RuntimeWarning,
                stacklevel=caller_stacklevel(),
            )
            return
        slot.graph = graph

    # -- the interface ----------------------------------------------------------------------
    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        self.check_inputs(inputs)
        missing = [n for n in self._in_names if n not in inputs]
        if missing:
            raise EdgeganError(f"the engine needs input(s) {', '.join(missing)}")
        feed = {n: np.ascontiguousarray(inputs[n]) for n in self._in_names}
        key = tuple((n, feed[n].shape) for n in self._in_names)
        slot = self._slot(key, feed)
        with torch.cuda.device(self._torch_device), torch.cuda.stream(self.stream):
            for n, buf in slot.inputs.items():
                buf.copy_(torch.from_numpy(feed[n]))  # converts dtype; ordered on self.stream
            self._bind(key, slot)
            if slot.graph is None and self.cuda_graphs and slot.runs >= 1 and not slot.graph_failed:
                self._capture(slot)
            if slot.graph is not None:
                slot.graph.replay()
            else:
                self._enqueue()
            slot.runs += 1
            out = slot.outputs[self._out_names[0]].float().cpu()  # waits for the stream
        return out.numpy()

    def graphed(self, inputs: dict[str, np.ndarray]) -> bool:
        key = tuple((n, np.shape(inputs[n])) for n in self._in_names if n in inputs)
        slot = self._slots.get(key)
        return slot is not None and slot.graph is not None and self._bound == key

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        super().close()
        self._slots.clear()
        for attr in ("context", "engine", "runtime"):
            setattr(self, attr, None)
