"""Device selection and mixed precision (autocast + per-optimiser gradient scaling)."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import torch

from edgegan.errors import ConfigError, caller_stacklevel

AMP_MODES = ("off", "bf16", "fp16")

# CPU instructions that run bf16/fp16 natively (``torch.cpu`` probes, private but stable);
# without them oneDNN converts every operand to FP32 and back.
_NATIVE_CPU = {
    "bf16": ("_is_avx512_bf16_supported", "_is_amx_tile_supported"),
    "fp16": ("_is_amx_fp16_supported",),
}


@contextlib.contextmanager
def cudnn_flags(**flags: bool) -> Iterator[None]:
    """``torch.backends.cudnn``'s settings ``flags`` (``benchmark=True``, ``allow_tf32=False``)
    for the block, then as they were."""
    cudnn = torch.backends.cudnn
    saved = {name: getattr(cudnn, name) for name in flags}
    for name, value in flags.items():
        setattr(cudnn, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(cudnn, name, value)


def native_cpu_precision(mode: str) -> bool:
    """Whether this CPU computes ``mode`` (bf16 | fp16) in hardware."""
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in _NATIVE_CPU[mode])


def resolve_device(name: str | torch.device, key: str = "train.device") -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it, or for a device that is
    neither, is a clear error naming ``key`` (the config key or the parameter)."""
    if isinstance(name, str) and name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    wrong = ConfigError(f"{key} must be auto, cpu, cuda or cuda:N, got '{name}'")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise wrong from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={name} but CUDA is not available; use {key}=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"{key}={name} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    elif device.type != "cpu":
        raise wrong
    return device


class Precision:
    """Autocast context and loss scaling for one training run.

    ``bf16`` needs no scaling; ``fp16`` gets one GradScaler per optimiser because the
    generator and discriminator steps overflow independently.
    """

    def __init__(self, mode: str, device: torch.device) -> None:
        if mode not in AMP_MODES:
            raise ConfigError(f"train.amp must be one of {', '.join(AMP_MODES)}, got '{mode}'")
        if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("train.amp=bf16 is not supported on this GPU; use train.amp=fp16")
        first_rank = os.environ.get("RANK", "0") == "0"  # under torchrun: said once
        if mode != "off" and device.type == "cpu" and first_rank and not native_cpu_precision(mode):
            warnings.warn(
                f"train.amp={mode} on a CPU without native {mode} instructions "
                f"({'AVX512-BF16/AMX' if mode == 'bf16' else 'AMX-FP16'}): it is emulated and "
                "trains far slower than FP32"
                + (" (11x slower on a 2-core AVX2 CPU)" if mode == "bf16" else "")
                + "; train.amp=off is the fast setting here",
                stacklevel=caller_stacklevel(),
            )
        self.mode, self.device = mode, device
        self.dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
        self.scalers: dict[str, torch.amp.GradScaler] = {}

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
        else:
            with torch.autocast(self.device.type, dtype=self.dtype):
                yield

    def scaler(self, name: str) -> torch.amp.GradScaler | None:
        if self.mode != "fp16":
            return None
        if name not in self.scalers:
            self.scalers[name] = torch.amp.GradScaler(self.device.type)
        return self.scalers[name]

    def step(self, name: str, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward ``loss`` and step ``optimizer`` (scaled in fp16 mode)."""
        optimizer.zero_grad(set_to_none=True)
        scaler = self.scaler(name)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    def state_dict(self) -> dict:
        return {k: s.state_dict() for k, s in self.scalers.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, s in state.items():
            scaler = self.scaler(name)
            if scaler is not None:
                scaler.load_state_dict(s)
