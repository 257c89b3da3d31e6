"""Small building blocks shared by the built-in networks."""

from __future__ import annotations

from collections.abc import Sequence

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
