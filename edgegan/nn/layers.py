"""Small building blocks shared by the built-in networks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from edgegan.errors import EdgeganError

NORMS: tuple[str, ...] = ("batch", "none")

# The layers spectral normalisation constrains: everything with a weight matrix.
_SN_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


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
    """The normalisation layer after a conv: ``"batch"`` or ``"none"`` (identity)."""
    check_choice("norm", kind, NORMS)
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()


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
