"""PyTorch eager (optionally torch.compile) on a run's generator (EMA weights when kept): the
reference backend, for a GAN or one direction of a cyclegan."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgegan.errors import EdgeganError
from edgegan.runtime.base import BackendUnavailable, Runner, Target, parse_device


class TorchRunner(Runner):
    """The run's generator in eval mode; fp32 anywhere, fp16 on CUDA (weights cast to half).

    There is no torch int8 path: int8 is the bundle's Q/DQ graph (onnxruntime, tensorrt).
    """

    name = "torch"

    def __init__(self, gen: Any, precision: str = "fp32", compile: bool = False) -> None:
        import torch

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
        self.module = torch.compile(module) if compile else module
        self.compiled = bool(compile)

    @classmethod
    def from_generator(cls, gen: Any) -> TorchRunner:
        """Wrap an already loaded :class:`edgegan.sampling.RunGenerator` (fp32)."""
        return cls(gen)

    @classmethod
    def open(
        cls, target: Target, precision: str = "fp32", device: str = "cpu", compile: bool = False
    ) -> TorchRunner:
        import torch

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
        return cls(target.load_generator(torch_device, match_bundle=exact), precision, compile)

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        self.check_inputs(inputs)
        args = []
        for name in self.input_names:  # positional, in the graph's order
            arr = np.ascontiguousarray(inputs[name])
            t = torch.from_numpy(arr).to(self._device)
            args.append(t.to(self._dtype) if t.is_floating_point() else t.long())
        with torch.inference_mode():
            return self.module(*args).float().cpu().numpy()

    def synchronize(self) -> None:
        if self._device.type == "cuda":
            import torch

            torch.cuda.synchronize(self._device)

    def close(self) -> None:
        self.module = None
        self.gen = None
