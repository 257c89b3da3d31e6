"""Weight initialisation with the semantics of the CycleGAN/pix2pix reference ``init_weights``."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from edgegan.nn.layers import check_choice

INIT_KINDS: tuple[str, ...] = ("normal", "xavier", "kaiming", "orthogonal")


def _weight(m: nn.Module) -> torch.Tensor:
    # Under spectral norm ``m.weight`` is computed; the trainable tensor is ``original``.
    weight = (
        m.parametrizations.weight.original  # type: ignore[union-attr]
        if parametrize.is_parametrized(m, "weight")
        else m.weight
    )
    assert isinstance(weight, torch.Tensor)
    return weight


@torch.no_grad()
def init_weights(module: nn.Module, kind: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise conv/linear and BatchNorm layers of ``module`` in place; returns ``module``.

    - conv and linear weights: ``normal`` draws N(0, gain); ``xavier`` is Xavier-normal with
      ``gain``; ``kaiming`` is Kaiming-normal (fan_in, a=0; ``gain`` unused); ``orthogonal``
      is orthogonal with ``gain``. Their biases are set to 0.
    - BatchNorm: weight N(1, gain), bias 0 (whatever ``kind``).

    Embeddings are left alone, as in the reference. Spectrally normalised layers are
    initialised through their ``original`` weight; their power-iteration vectors adapt
    within a few training steps.
    """
    check_choice("init", kind, INIT_KINDS)
    for m in module.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            w = _weight(m)
            if kind == "normal":
                nn.init.normal_(w, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(w, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(w, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(w, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return module
