"""Keeping the process's random streams as they were around work that may draw from them.

Building a metric (a layer's init), checking a plugin part, or a validation pass draws from
Python's, NumPy's and torch's global generators; inside :func:`random_state_kept` those draws
do not shift a run's randomness, so a run with ``eval.every`` trains the weights a run without
it does, and a program that calls the API finds its streams as it left them.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def random_state_kept() -> Iterator[None]:
    """Restore ``random``, ``numpy.random``, torch's CPU and CUDA generators on exit,
    whatever the block drew (CUDA's also when the block started CUDA)."""
    py_state, np_state, torch_state = (
        random.getstate(),
        np.random.get_state(),
        torch.get_rng_state(),
    )
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    seed = torch.initial_seed()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        elif torch.cuda.is_initialized():
            # CUDA started inside the block: before, its generators held only the seeding
            # torch.manual_seed queues for them (no draws without CUDA), which is this seed.
            torch.cuda.manual_seed_all(seed)


def seed_all(seed: int, cuda: bool = True) -> None:
    """Seed Python's, NumPy's and torch's global generators from one integer of any sign
    (``random.seed(-s)`` is ``random.seed(s)``; NumPy takes 0..2**32-1). ``cuda=False`` seeds
    torch's CPU generator alone: ``torch.manual_seed`` also queues CUDA's seeding, which
    :func:`random_state_kept` cannot take back."""
    random.seed(seed % 2**64)
    np.random.seed(seed % 2**32)
    if cuda:
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)
