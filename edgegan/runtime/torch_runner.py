"""PyTorch eager (optionally torch.compile) on a run's generator (EMA weights when kept): the
reference backend, for a GAN or one direction of a cyclegan.

Compiled, it is also a GPU deploy path of its own: inductor fuses the memory-bound work
between convolutions (pads, norms, activations) that eager mode and onnxruntime's CUDA
provider run as separate kernels, and ``reduce-overhead`` replays CUDA graphs (the launches
that dominate a batch-1 call).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any

import numpy as np

from edgegan.config import COMPILE_MODES
from edgegan.errors import EdgeganError, exception_line
from edgegan.runtime.base import BackendUnavailable, Runner, Target, parse_device


def compile_mode(compile: bool | str | None) -> str | None:
    """The torch.compile mode ``compile`` asks for (None: eager), or one clear error."""
    if compile is None or compile is False or compile == "off":
        return None
    if compile is True:
        return "default"
    if compile not in COMPILE_MODES:
        raise EdgeganError(f"compile mode '{compile}' is not one of {', '.join(COMPILE_MODES)}")
    return str(compile)


#: Shapes one compiled generator may compile before torch runs it eager (torch's default
#: is 8, counted per code object: every runner of the same network class shares it).
RECOMPILE_LIMIT = 64


class CompiledGenerator:
    """A generator compiled for inference: frozen weights (inductor treats them as constants
    it folds and fuses; on the CPU its prepacked convolution weights are copies, on CUDA the
    graph reads the module's own tensors, so they must not change in place), static shapes
    (each input shape compiles once, with its own CUDA graph in the modes that record them),
    compile failures as one :class:`EdgeganError` line.

    Freezing and the recompile limit are inductor/dynamo settings read while a shape is
    traced, not options of ``torch.compile``: they are set around the first call of each
    input shape and stride only (setting them costs about 10 us, a tenth of a DCGAN call),
    under a lock, since they are process-wide. Calls must run without autograd
    (``torch.inference_mode``), as freezing requires.

    Calls on CUDA run with cuDNN's autotuner on (``torch.backends.cudnn.benchmark``, restored
    after each call): shapes are static, so each convolution's algorithm is timed once, on
    its shape's first calls, and the CUDA graphs recorded later replay the fastest. This is
    the compiled path's counterpart of onnxruntime's exhaustive cuDNN search and TensorRT's
    tactic timing; the eager torch runner keeps torch's default (heuristics), as a plain
    PyTorch program would.

    torch.compile's caches are per process: the :data:`RECOMPILE_LIMIT` counts the shapes of
    every compiled generator of the same network class since the last reset, and the frozen
    weights and CUDA graphs stay in them. Closing the last open compiled generator resets
    them (:func:`torch.compiler.reset`, which also drops any other compiled code of the
    process: it recompiles on its next call).
    """

    open_count = 0
    _lock = threading.Lock()

    def __init__(self, module: Any, mode: str) -> None:
        import torch
        import torch._inductor

        # a mode's own options are spelled out: torch.compile takes a mode or options
        options = {**torch._inductor.list_mode_options(mode), "freezing": True}
        self.mode = mode
        self.fn: Any = torch.compile(module, options=options, dynamic=False)  # None when closed
        self._shapes: dict[tuple, bool] = {}  # input key -> on CUDA
        CompiledGenerator.open_count += 1
        # one that is dropped without close() still leaves the count (the reset waits for
        # the next close: resetting from a garbage-collection callback could hit a compile)
        self._release = weakref.finalize(self, CompiledGenerator._released)

    @classmethod
    def _released(cls) -> None:
        cls.open_count -= 1

    def __call__(self, *args: Any) -> Any:
        key = tuple((tuple(a.shape), a.stride(), a.dtype, a.device) for a in args)
        cuda = self._shapes.get(key)
        if cuda is None:
            cuda = any(a.device.type == "cuda" for a in args)
            with _cudnn_autotune(cuda):
                result = self._compile_call(args)
            self._shapes[key] = cuda
            return result
        if not cuda:
            return self.fn(*args)
        with _cudnn_autotune(True):
            return self.fn(*args)

    def _compile_call(self, args: tuple) -> Any:
        import torch._dynamo
        import torch._inductor.config as inductor_config
        from torch._dynamo.exc import TorchDynamoException

        dynamo_config = torch._dynamo.config
        # renamed in torch 2.6
        limit = (
            "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
        )
        with CompiledGenerator._lock:
            saved = inductor_config.freezing, getattr(dynamo_config, limit)
            inductor_config.freezing = True
            setattr(dynamo_config, limit, max(saved[1], RECOMPILE_LIMIT))
            try:
                return self.fn(*args)
            except TorchDynamoException as exc:
                raise EdgeganError(
                    f"torch.compile could not compile the generator ({_cause(exc)}); run "
                    "without --compile (on the CPU it needs a C++ compiler, on CUDA triton)"
                ) from exc
            finally:
                inductor_config.freezing = saved[0]
                setattr(dynamo_config, limit, saved[1])

    def close(self) -> None:
        if not self._release.alive:
            return
        self.fn = None
        self._release()
        if CompiledGenerator.open_count <= 0:
            import torch

            torch.compiler.reset()


def _cudnn_autotune(on: bool) -> contextlib.AbstractContextManager[None]:
    """cuDNN's autotuner on for the block (when ``on``), then as it was."""
    from edgegan.train.device import cudnn_flags

    return cudnn_flags(benchmark=True) if on else contextlib.nullcontext()


def _cause(exc: BaseException) -> str:
    """The root of a torch.compile failure, on one line: dynamo wraps it (a backend's
    failure in BackendCompilerFailed, whose own first line says only which backend)."""
    cause: BaseException = exc
    for _ in range(8):  # InductorError around the compiler's own error, ...
        inner = getattr(cause, "inner_exception", None)
        if not isinstance(inner, BaseException) or inner is cause:
            break
        cause = inner
    return exception_line(cause)[:300]


def for_inference(module: Any, mode: str | None, channels_last: bool = False) -> Any:
    """``module`` (in eval mode) as the torch runner runs it: with ``channels_last``, its
    4-D weights in channels-last layout, in place; with a torch.compile ``mode``, its instance
    norms swapped for layout-keeping ones (inductor runs convolutions channels-last, and the
    plain norm's decomposition converts back to NCHW around each), in place, and a
    :class:`CompiledGenerator` returned. ``mode`` None returns ``module`` itself."""
    if channels_last:
        from edgegan.train.fastpath import to_channels_last

        to_channels_last(module)
    if mode is None:
        return module
    from edgegan.nn.layers import keep_layout_norms

    keep_layout_norms(module)
    return CompiledGenerator(module, mode)


class TorchRunner(Runner):
    """The run's generator in eval mode; fp32 anywhere, fp16 on CUDA (weights cast to half).

    ``compile``: a torch.compile mode (:data:`edgegan.config.COMPILE_MODES`; ``True`` is
    ``"default"``), with inductor's weight freezing (the runner only infers) and instance
    norms that keep the input's layout (:class:`edgegan.nn.layers.LayoutInstanceNorm2d`:
    inductor makes convolutions channels-last, and the plain norm's decomposition converts
    back). Each input shape compiles once, on its first call (seconds to minutes).
    ``channels_last``: weights and image inputs in channels-last layout (cuDNN's tensor-core
    kernels on recent GPUs are NHWC). Both change ``gen.module`` in place (half precision,
    weight layout, norm class): the runner owns the generator it is given.

    There is no torch int8 path: int8 is the bundle's Q/DQ graph (onnxruntime, tensorrt).
    """

    name = "torch"

    def __init__(
        self,
        gen: Any,
        precision: str = "fp32",
        compile: bool | str = False,
        channels_last: bool = False,
    ) -> None:
        import torch

        mode = compile_mode(compile)
        self.gen = gen
        self.spec = dict(gen.spec)
        self.precision = precision
        param = next(gen.module.parameters())
        self._device = param.device
        self.device = str(param.device)
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        module = gen.module
        if precision == "fp16":
            module = module.half()
        self.channels_last = bool(channels_last)
        self.compiled: str | None = mode
        self.module = for_inference(module, mode, self.channels_last)

    @classmethod
    def from_generator(cls, gen: Any) -> TorchRunner:
        """Wrap an already loaded :class:`edgegan.sampling.RunGenerator` (fp32)."""
        return cls(gen)

    @classmethod
    def open(
        cls,
        target: Target,
        precision: str = "fp32",
        device: str = "cpu",
        compile: bool | str = False,
        channels_last: bool = False,
    ) -> TorchRunner:
        import torch

        compile_mode(compile)  # before loading anything
        kind, index = parse_device(device)
        if precision == "int8":
            raise BackendUnavailable(
                "the torch backend has no int8 path; int8 is the bundle's Q/DQ graph: "
                "use --backend onnxruntime or tensorrt"
            )
        if kind == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(f"device {device}: torch sees no CUDA GPU")
        if precision == "fp16" and kind != "cuda":
            raise BackendUnavailable("torch fp16 runs on CUDA only; use --device cuda or fp32")
        run_dir = target.source_run()
        if run_dir is None:
            source = ((target.meta or {}).get("source") or {}).get("run_dir")
            raise EdgeganError(
                f"the torch backend runs the run directory the bundle was exported from "
                f"({source or 'not recorded'}), which is not here; "
                "use --backend onnxruntime or tensorrt"
            )
        torch_device = f"cuda:{index}" if kind == "cuda" else "cpu"
        # Given a bundle, run its weights or nothing; given a run, run the run.
        exact = target.run_dir is None
        generator = target.load_generator(torch_device, match_bundle=exact)
        return cls(generator, precision, compile, channels_last)

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        self.check_inputs(inputs)
        args = []
        for name in self.input_names:  # positional, in the graph's order
            arr = np.ascontiguousarray(inputs[name])
            t = torch.from_numpy(arr).to(self._device)
            t = t.to(self._dtype) if t.is_floating_point() else t.long()
            if self.channels_last and t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            args.append(t)
        with torch.inference_mode():
            if self.compiled is not None:
                from edgegan.train.fastpath import mark_step

                mark_step()  # the previous call's outputs were copied out: reuse them
            return self.module(*args).float().cpu().numpy()

    def describe(self) -> str:
        extras = [f"compiled {self.compiled}"] if self.compiled else []
        extras += ["channels-last"] if self.channels_last else []
        return super().describe() + (f" ({', '.join(extras)})" if extras else "")

    def synchronize(self) -> None:
        if self._device.type == "cuda":
            import torch

            torch.cuda.synchronize(self._device)

    def close(self) -> None:
        super().close()
        if isinstance(self.module, CompiledGenerator):
            self.module.close()
        self.module = None
        self.gen = None
