"""A resumable, deterministic stream of training batches.

The batch order is a function of (seed, number of batches consumed): every epoch is a fresh
permutation drawn from its own generator, so a resumed run sees exactly the batches the
uninterrupted run would have seen. Under DDP ``batch_size`` is the global batch and rank ``r``
of ``N`` takes the ``r``-th contiguous slice of each one, so N processes together see exactly
the batches one process would (and a resumed run, on any N, continues that order).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from edgegan.errors import DataError
from edgegan.train.fastpath import to_format

# Datasets up to this size are kept whole on the training device and sliced per batch.
RESIDENT_LIMIT_BYTES = 1 << 30


class BatchIndices(Sampler[list[int]]):
    """Index batches from batch ``start`` on (drop_last: every batch is full); with
    ``world_size`` > 1, this ``rank``'s slice of each global batch of ``batch_size``."""

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size % world_size or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of {world_size} cannot split a batch of {batch_size}")
        self.size, self.batch_size, self.seed, self.start = size, batch_size, seed, start
        self.per_epoch = size // batch_size
        per_rank = batch_size // world_size
        self.shard = (rank * per_rank, (rank + 1) * per_rank)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=g)

    def __iter__(self) -> Iterator[list[int]]:
        n = self.start
        while True:
            epoch, pos = divmod(n, self.per_epoch)
            order = self.epoch_order(epoch)
            lo, hi = self.shard
            for p in range(pos, self.per_epoch):
                yield order[p * self.batch_size + lo : p * self.batch_size + hi].tolist()
            n = (epoch + 1) * self.per_epoch

    def __len__(self) -> int:  # DataLoader asks; the stream is endless
        return 2**62


class BatchStream:
    """Endless ``(images, labels)`` batches on ``device``; ``consumed`` is its whole state."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int,
        device: torch.device,
        num_workers: int = 0,
        consumed: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
        pin_memory: bool = True,
        resident: bool | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        size = len(dataset)  # type: ignore[arg-type]
        if size < batch_size:
            raise DataError(
                f"the dataset has {size} images, fewer than train.batch_size={batch_size}"
            )
        self.dataset, self.batch_size, self.seed, self.device = dataset, batch_size, seed, device
        self.num_workers = num_workers
        self.consumed = consumed  # global batches, the same on every rank
        self.rank, self.world_size = rank, world_size
        self.memory_format = memory_format
        self.pin_memory = pin_memory and device.type == "cuda"
        images = getattr(dataset, "images", None)
        labels = getattr(dataset, "labels", None)
        in_memory = isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor)
        if resident and not in_memory:
            raise DataError(
                "train.resident_data=true needs a dataset with in-memory 'images' and 'labels' "
                "tensors; this one loads items one by one (use null or false)"
            )
        fits = in_memory and images.numel() * images.element_size() <= RESIDENT_LIMIT_BYTES
        self.resident = in_memory and (fits if resident is None else resident)
        if self.resident:
            # Small in-memory datasets live on the device: a batch is one gather, no copies.
            self.images = images.to(device)
            self.labels = labels.to(device)
        self._iter: Iterator[Any] | None = None

    def _start(self) -> Iterator[Any]:
        sampler = BatchIndices(
            len(self.dataset),  # type: ignore[arg-type]
            self.batch_size,
            self.seed,
            self.consumed,
            self.rank,
            self.world_size,
        )
        if self.resident:
            return iter(sampler)
        # The loader's own generator: creating an iterator draws a worker seed from it, which
        # must not shift the global RNG (a resumed run creates one more iterator).
        # Per rank, so that DataLoader workers of different ranks draw different crops.
        generator = torch.Generator().manual_seed(
            (self.seed + self.rank) * 1_000_003 + self.consumed
        )
        loader = DataLoader(
            self.dataset,
            batch_sampler=sampler,
            generator=generator,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )
        return iter(loader)

    def next(self) -> Any:
        """The next batch: ``(images, labels)``, or a dict of tensors for datasets whose items
        are dicts (e.g. the unpaired ``{"A": ..., "B": ...}``), on the device."""
        if self._iter is None:
            self._iter = self._start()
        item = next(self._iter)
        self.consumed += 1
        return to_format(self._to_device(item), self.memory_format)

    def _to_device(self, item: Any) -> Any:
        if self.resident:
            idx = torch.as_tensor(item, device=self.device)
            return self.images.index_select(0, idx), self.labels.index_select(0, idx)
        # A copy from pinned memory can overlap the previous step's kernels.
        non_blocking = self.pin_memory
        if isinstance(item, dict):
            return {
                k: v.to(self.device, non_blocking=non_blocking) if torch.is_tensor(v) else v
                for k, v in item.items()
            }
        images, labels = item
        return (
            images.to(self.device, non_blocking=non_blocking),
            torch.as_tensor(labels).to(self.device, non_blocking=non_blocking),
        )

    def state_dict(self) -> dict[str, int]:
        return {"consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.consumed = int(state["consumed"])
        self._iter = None
