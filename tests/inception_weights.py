"""Deterministic stand-in weights for FID's Inception-v3 (the real ones cannot be downloaded
here) and the inputs of the parity fixture ``tests/assets/fid_parity.npz``, which
``tools/fid_parity.py`` writes with pytorch-fid's own network on these weights."""

from __future__ import annotations

from pathlib import Path

import torch

PARITY_FILE = Path(__file__).parent / "assets" / "fid_parity.npz"
PARITY_SIZES = (28, 64, 299)  # smaller than, and as large as, the network's 299x299 input


def random_inception_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict of :class:`edgegan.metrics.inception.FIDInceptionV3` (pytorch-fid's
    names) drawn from ``seed`` in sorted key order, scaled so activations stay O(1)-O(10)
    through the 94 layers (He-scaled convolutions, positive batch-norm scales and
    variances). The same seed gives the same tensors on every torch version (CPU draws)."""
    from edgegan.metrics.inception import FIDInceptionV3

    shapes = {k: v.shape for k, v in FIDInceptionV3().state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key in sorted(shapes):
        shape = shapes[key]
        if key.endswith("num_batches_tracked"):
            continue  # the port has none
        if key.endswith(("running_var", "bn.weight")):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("conv.weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


def parity_inputs() -> dict[int, torch.Tensor]:
    """Images in [0, 1] (pytorch-fid's range), two of each size in :data:`PARITY_SIZES`."""
    g = torch.Generator().manual_seed(1)
    return {s: torch.rand(2, 3, s, s, generator=g) for s in PARITY_SIZES}
