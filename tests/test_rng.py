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
