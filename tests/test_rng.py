"""edgegan.rng.random_state_kept: every global random stream comes back as it was."""

from __future__ import annotations

import random

import numpy as np
import torch
from tiny import draws, seed_all

from edgegan.rng import random_state_kept


def test_the_cpu_streams_come_back():
    seed_all(1)
    expected = draws()
    seed_all(1)
    with random_state_kept():
        random.random(), np.random.rand(), torch.rand(5), torch.nn.Linear(8, 8)
    assert draws() == expected


def test_cuda_started_inside_the_block_is_reseeded_as_its_queued_seeding_left_it(monkeypatch):
    """Stood in for on the CPU: CUDA not started on entry (nothing to save), started inside
    (a metric built on the GPU drew from it). Its generators go back to the seed that
    torch.manual_seed queued for them, not to wherever the block left them."""
    started = {"now": False}
    calls = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: started["now"])
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    torch.manual_seed(1234)  # which queues the CUDA seeding (calls manual_seed_all)
    calls.clear()
    with random_state_kept():
        started["now"] = True
    assert calls == [1234]


def test_a_checkpoints_rng_state_brings_back_every_cpu_stream():
    """rng_state()/set_rng_state() (what a checkpoint keeps and a resume restores) give back
    Python's, NumPy's and torch's streams, NumPy's cached Gaussian included: plugin datasets
    and augmentations draw from NumPy's global stream, and a resume that left it where the
    new process seeded it would feed them other draws than the straight run. The state also
    survives a weights_only save and load, as checkpoints are read."""
    import io

    from edgegan.train.checkpoint import rng_state, set_rng_state

    seed_all(5)
    np.random.standard_normal()  # leaves the second Gaussian of the pair cached
    state = rng_state()
    expected = (draws(), float(np.random.standard_normal()))
    seed_all(6)
    draws()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    set_rng_state(torch.load(buffer, weights_only=True))
    assert (draws(), float(np.random.standard_normal())) == expected
