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
