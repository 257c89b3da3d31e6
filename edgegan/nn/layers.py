"""Small building blocks shared by the built-in networks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from edgegan.errors import EdgeganError

NORMS: tuple[str, ...] = ("batch", "instance", "none")

# The layers spectral normalisation constrains: everything with a weight matrix.
_SN_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


#: A module with this attribute set to True keeps its weights in the default layout under
#: ``train.channels_last``: a convolution on a 1x1 input (the DCGAN projection), where both
#: layouts coincide and cuDNN's weight gradient and inductor's expected strides disagree.
KEEP_CONTIGUOUS = "edgegan_contiguous_weights"


def check_choice(what: str, value: str, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a one-line EdgeganError."""
    if value not in choices:
        raise EdgeganError(f"{what} must be one of {', '.join(choices)}; got {value!r}")
    return value


def check_positive(what: str, value: int) -> int:
    if value < 1:
        raise EdgeganError(f"{what} must be a positive integer; got {value!r}")
    return value


def norm_2d(kind: str, channels: int) -> nn.Module:
    """The normalisation layer after a conv, as the CycleGAN/pix2pix reference builds it.

    ``"batch"``: BatchNorm2d (affine, running statistics); ``"instance"``: InstanceNorm2d
    without affine parameters or running statistics (it normalises with the statistics of
    each image, in training and in eval); ``"none"``: identity.
    """
    check_choice("norm", kind, NORMS)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


class LayoutInstanceNorm2d(nn.InstanceNorm2d):
    """InstanceNorm2d computed with tensor ops that keep the input's memory layout.

    ``aten::instance_norm`` reshapes its input to ``(1, N*C, H, W)`` for a batch-norm
    kernel: a channels-last input is copied to NCHW first, and the output comes back NCHW,
    so the next convolution converts it again (measured on an H100: the largest kernel of an
    eager channels-last CycleGAN step, docs/benchmarks.md). Here the statistics come from
    ``var_mean`` over H and W and the output keeps the input's layout. Statistics are in
    FP32 for half-precision inputs, and the result is cast back to the input's dtype, as
    the fused kernel does. Same parameters and state dict as :class:`torch.nn.InstanceNorm2d`
    (:func:`keep_layout_norms` swaps the class in place); exporters trace the plain operator
    so the ONNX graph keeps one ``InstanceNormalization`` node, and inputs the plain module
    refuses or warns about (one spatial element, another channel count, affine weights of
    another dtype than a float32/float64 input) go to it for its error or warning.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.track_running_stats or x.dim() != 4 or x.shape[2] * x.shape[3] < 2:
            return super().forward(x)
        if x.shape[1] != self.num_features or _mixed_dtypes(x, self.weight):
            return super().forward(x)  # torch's own warning or error for these
        if exporting():
            return super().forward(x)
        if x.numel() == 0:  # an empty batch: var_mean would warn about zero degrees of freedom
            return x.clone()
        y = _InstanceNorm.apply(x, self.eps)  # in the statistics' dtype: one rounding below
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y.to(x.dtype)


def _mixed_dtypes(x: torch.Tensor, weight: torch.Tensor | None) -> bool:
    """Affine weights of another dtype than the input, which the plain operator refuses
    (mixed dtypes) and broadcasting would silently promote; half-precision inputs with
    float32 weights (autocast's case) it takes, and so does this norm."""
    if weight is None or weight.dtype == x.dtype:
        return False
    return not (x.dtype in (torch.float16, torch.bfloat16) and weight.dtype == torch.float32)


def _stats_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


class _InstanceNorm(torch.autograd.Function):
    """``(x - mean) / sqrt(var + eps)`` over H, W that saves only ``x`` for the backward pass
    (autograd through the same ops would keep an FP32 copy and an intermediate: 4x the
    memory of a bf16 input). The backward recomputes the statistics with differentiable
    ops, so a gradient penalty's double backward (R1, WGAN-GP) gets every term."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.eps = eps
        return _normalise(x, eps)[0]  # FP32 for half inputs: the caller casts once

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        xhat, rstd = _normalise(x, ctx.eps)
        g = grad.to(xhat.dtype)
        dims = (2, 3)
        mean_g = g.mean(dim=dims, keepdim=True)
        mean_gx = (g * xhat).mean(dim=dims, keepdim=True)
        return ((g - mean_g - xhat * mean_gx) * rstd).to(x.dtype), None


def _normalise(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` normalised over H, W in the statistics' dtype, and ``1 / sqrt(var + eps)``."""
    xf = x.to(_stats_dtype(x))
    var, mean = torch.var_mean(xf, dim=(2, 3), keepdim=True, correction=0)
    rstd = torch.rsqrt(var + eps)
    return (xf - mean) * rstd, rstd


def exporting() -> bool:
    """Whether an ONNX (TorchScript or dynamo) export is tracing the network.

    torch.export's flag is read, not ``torch.compiler.is_exporting()``: dynamo in torch
    2.11 folds that call to True while it traces for ``torch.compile`` too, which kept this
    norm out of every compiled graph (found on the H100, docs/benchmarks.md)."""
    if torch.onnx.is_in_onnx_export():
        return True
    flag = getattr(torch.compiler, "_is_exporting_flag", None)
    if flag is not None:
        return bool(flag)
    is_exporting = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.5
    return bool(is_exporting and is_exporting())


def keep_layout_norms(net: nn.Module) -> int:
    """Make every plain InstanceNorm2d in ``net`` a :class:`LayoutInstanceNorm2d`, in place
    (``train.layout_norm``); returns how many. Parameters, buffers and state-dict keys are
    unchanged, so checkpoints and exports are those of the plain network."""
    count = 0
    for module in net.modules():
        if type(module) is nn.InstanceNorm2d and not module.track_running_stats:
            module.__class__ = LayoutInstanceNorm2d
            count += 1
    return count


def conv_bias(norm: str) -> bool:
    """Whether a conv followed by ``norm`` needs its own bias.

    BatchNorm's shift makes a bias redundant; InstanceNorm without affine parameters removes
    any per-channel constant, so the reference keeps a (useless but harmless) bias there.
    Unlike the reference, which drops the bias with ``norm="none"`` too (leaving those convs
    with no bias at all), a conv followed by no normalisation keeps its bias.
    """
    return norm != "batch"


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectrally normalise every conv, linear and embedding weight inside ``module``.

    Call it after weight initialisation: registration runs the power iteration on the
    weights present then, so the first sigma estimate matches the initialised weights.
    """
    # Collect first: registering a parametrization swaps the module's class while iterating.
    targets = [m for m in module.modules() if isinstance(m, _SN_TYPES)]
    for m in targets:
        spectral_norm(m)
    return module
