"""The GPU fast path: memory format, torch.compile, cuDNN autotuning, fused optimisers.

Each switch is a ``train.*`` config item (see :class:`edgegan.config.TrainConfig`) measured on
its own by ``tools/bench_train.py``. The trainer and the benchmark apply them through the same
functions here, so what is measured is what trains.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from edgegan.nn.layers import KEEP_CONTIGUOUS


def describe(train: Any, device: torch.device | None = None) -> str:
    """The switches a run trains with, for its report (``layout_norm`` as resolved for
    ``device`` when one is given)."""
    norm = train.layout_norm if device is None else layout_norm(train, device)
    return (
        f"amp: {train.amp}, compile: {train.compile}, channels_last: {train.channels_last}, "
        f"layout_norm: {norm}, fused_optim: {train.fused_optim}, "
        f"merge_calls: {train.merge_calls}"
    )


def layout_norm(train: Any, device: torch.device) -> bool:
    """Whether instance norms keep the channels-last layout (``train.layout_norm``; null:
    for compiled channels-last runs on CUDA). Measured on an H100 (docs/benchmarks.md): the
    compiled CycleGAN step at batch 32 ran 1.16x faster with them (its layout copies in
    convolution backward fell from 86 to 37 ms a step); in eager mode they cost more
    pointwise kernels than the copies they save, and on the CPU the copies are cheap."""
    if train.layout_norm is not None:
        return bool(train.layout_norm)
    return bool(train.channels_last) and train.compile != "off" and device.type == "cuda"


def memory_format(train: Any) -> torch.memory_format:
    """The layout of batches (and weights) for ``train.channels_last``."""
    return torch.channels_last if train.channels_last else torch.contiguous_format


def set_backends(train: Any, device: torch.device) -> None:
    """Process-wide backend flags for a CUDA run (nothing to set on the CPU)."""
    if device.type != "cuda":
        return
    # TF32 stays at PyTorch's defaults (on for cuDNN convs, off for matmuls) in every mode,
    # so the plain FP32 baseline is the loop users of the reference code run.
    torch.backends.cudnn.benchmark = bool(train.cudnn_benchmark)


def to_channels_last(net: nn.Module) -> nn.Module:
    """Put the 4-D weights of ``net`` in channels-last layout, in place (parameters stay the
    same objects, so optimisers built before or after see them)."""
    for module in net.modules():
        if getattr(module, KEEP_CONTIGUOUS, False):
            continue
        for p in module.parameters(recurse=False):
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
    return net


def compile_networks(networks: dict[str, nn.Module], train: Any) -> None:
    """``torch.compile`` each network in place (``nn.Module.compile``), so state-dict keys,
    EMA copies made before and checkpoints are those of the plain network.

    ``reduce-overhead`` records CUDA graphs of the (static-shape) forward and backward passes.
    """
    if train.compile == "off":
        return
    for net in networks.values():
        # dynamic=False: training shapes are static; a different last batch never occurs
        # (the stream drops incomplete batches).
        net.compile(mode=None if train.compile == "default" else train.compile, dynamic=False)


def eager(net: nn.Module) -> Any:
    """``net``'s uncompiled call, for sampling and evaluation: those run in eval mode, without
    gradients and at other batch sizes, each of which would compile (and with
    ``reduce-overhead`` record CUDA graphs) anew, for a handful of calls."""
    if getattr(net, "_compiled_call_impl", None) is not None:  # set by nn.Module.compile
        return net._call_impl
    return net


@contextlib.contextmanager
def uncompiled(*nets: nn.Module) -> Iterator[None]:
    """Within the block each compiled network (``nn.Module.compile``) runs its eager call,
    through a DDP wrapper too: for the penalties (R1, WGAN-GP's), which differentiate D's
    gradient again, and torch's compiled backward cannot ("does not currently support double
    backward"). The graph they build is eager; the rest of the step stays compiled."""
    saved = [(n, n._compiled_call_impl) for n in nets if getattr(n, "_compiled_call_impl", None)]
    for net, _ in saved:
        net._compiled_call_impl = None
    try:
        yield
    finally:
        for net, compiled in saved:
            net._compiled_call_impl = compiled


def mark_step() -> None:
    """Tell CUDA-graph trees a new iteration begins, so outputs of the previous one may be
    overwritten (only matters with ``train.compile=reduce-overhead``)."""
    mark = getattr(torch.compiler, "cudagraph_mark_step_begin", None)
    if mark is not None:
        mark()


def to_format(x: Any, fmt: torch.memory_format) -> Any:
    """``x`` (a tensor, tuple or dict of tensors) with 4-D tensors in memory format ``fmt``."""
    if fmt is torch.contiguous_format:
        return x
    if torch.is_tensor(x):
        return x.contiguous(memory_format=fmt) if x.dim() == 4 else x
    if isinstance(x, dict):
        return {k: to_format(v, fmt) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(to_format(v, fmt) for v in x)
    return x


def make_adam(params: list[nn.Parameter], cfg: Any, device: torch.device, fused: bool) -> Any:
    """Adam with the fused kernel when asked for: one kernel for all parameters instead of
    several per tensor, on CUDA and (since torch 2.4) on the CPU: a DCGAN generator's step
    0.8 -> 0.2 ms there, a ResNet-9's 3.5 -> 0.8 ms (cyclegan-digits trains 7% faster)."""
    settings = {"lr": cfg.lr, "betas": (cfg.beta1, cfg.beta2), "weight_decay": cfg.weight_decay}
    if fused and device.type in ("cuda", "cpu"):
        try:
            return torch.optim.Adam(params, fused=True, **settings)
        except RuntimeError:  # a torch without that device's kernel: the plain one
            pass
    return torch.optim.Adam(params, **settings)
