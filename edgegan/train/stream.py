"""A resumable, deterministic stream of training batches.

The batch order is a function of (seed, number of batches consumed): every epoch is a fresh
permutation drawn from its own generator, so a resumed run sees exactly the batches the
uninterrupted run would have seen. Under DDP ``batch_size`` is the global batch and rank ``r``
of ``N`` takes the ``r``-th contiguous slice of each one, so N processes together see exactly
the batches one process would (and a resumed run, on any N, continues that order).

Random draws made while loading an item (crops, flips, the unpaired B index) come from the
global ``random``, ``numpy.random`` and ``torch`` generators. With ``num_workers=0`` they are
drawn in the training process, whose generators are saved in checkpoints. In DataLoader
workers, whose generators are not saved, each batch first reseeds all three from
``(seed, rank, global batch number)``: a batch's draws do not depend on which worker loads it
or on when the workers were started, so a resumed run loads the same batches as the
uninterrupted one, and different ranks draw differently.

An edgegan error raised in a worker comes out of :meth:`BatchStream.next` as the same error
with its own one-line message (the DataLoader would carry the worker's whole traceback in it).
"""

from __future__ import annotations

import functools
import gc
import os
import random
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from edgegan.data.base import channel_base, unit_from_uint8
from edgegan.errors import DataError, EdgeganError, exception_line
from edgegan.fileio import pid_gone
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
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**64)
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


def _check_sendable(dataset: Any, source: str | None) -> None:
    """Where DataLoader workers are spawned (macOS, Windows: they start afresh and are sent
    the dataset pickled), a dataset that cannot be pickled (a lambda in it, a class defined
    in a notebook) failed at the first batch with a traceback, or with "worker exited
    unexpectedly" that hid why. Where they are forked (Linux) nothing is sent."""
    import multiprocessing
    import pickle

    # (unset: the platform's default, listed first; forkserver on Linux from Python 3.14)
    method = multiprocessing.get_start_method(allow_none=True)
    if (method or multiprocessing.get_all_start_methods()[0]) == "fork":
        return

    class _Nowhere:  # the pickle is not kept: a large in-memory dataset is not copied
        def write(self, data: bytes) -> int:
            return len(data)

    try:
        pickle.Pickler(_Nowhere()).dump(dataset)
    except Exception as exc:  # PicklingError, AttributeError, TypeError: whatever it raises
        whose = f"{source}" if source else "the dataset"
        raise DataError(
            f"{whose} cannot be sent to DataLoader worker processes, which this system "
            f"starts afresh ({exception_line(exc)}): train with train.num_workers=0, or make "
            "it picklable (no lambdas or local classes in it)"
        ) from None


class NumberedBatches(Sampler[tuple[int, list[int]]]):
    """``(global batch number, indices)`` for each batch of ``batches``: the number lets a
    DataLoader worker seed the batch's random draws (:class:`SeededItems`)."""

    def __init__(self, batches: BatchIndices) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[tuple[int, list[int]]]:
        return enumerate(self.batches, self.batches.start)

    def __len__(self) -> int:
        return len(self.batches)


def seed_batch(seed: int, rank: int, number: int) -> None:
    """Reseed Python's ``random``, ``numpy.random`` and torch from (seed, rank, batch number)."""
    py, npy, pt = np.random.SeedSequence([seed % 2**64, rank, number]).spawn(3)
    random.seed(int.from_bytes(py.generate_state(4).tobytes(), "little"))
    np.random.seed(npy.generate_state(4))
    torch.manual_seed(int(pt.generate_state(1, np.uint64)[0]))


def leave_sigterm_to(main: int, worker_id: int = 0) -> None:
    """In a DataLoader worker of process ``main``: leave a SIGTERM that another process sent
    (to the whole job: ``main`` got it too) to ``main``, which stops the run and shuts its
    workers down; one from ``main`` itself (its fallback ``terminate``), or any once ``main``
    is gone, still ends the worker.

    torch's own handler ends a worker on a SIGTERM from anyone but its parent, and the trainer
    then failed inside a step ("DataLoader worker ... killed by signal"), saving nothing: a
    service manager (systemd), Slurm and ``kill -- -PGID`` signal every process of a job, the
    workers too. Where a handler cannot learn the sender (no ``sigwaitinfo``: macOS,
    Windows), torch's stays."""
    if not hasattr(signal, "sigwaitinfo"):
        return
    # blocked in this thread, and so in the one started below: its sigwaitinfo takes it
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait() -> None:
        while True:
            sender = signal.sigwaitinfo({signal.SIGTERM}).si_pid
            if sender == main or pid_gone(main):
                os._exit(0)  # as torch's handler does for its parent's

    threading.Thread(target=wait, name="edgegan-worker-sigterm", daemon=True).start()


class SeededItems(Dataset):
    """``dataset`` fetched a batch at a time from :class:`NumberedBatches`: inside a DataLoader
    worker each batch reseeds the worker's generators (:func:`seed_batch`) first. Other
    attributes are the dataset's."""

    def __init__(self, dataset: Dataset, seed: int, rank: int) -> None:
        self.dataset, self.seed, self.rank = dataset, seed, rank

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __getitems__(self, batch: tuple[int, list[int]]) -> list[Any]:
        # torch's map-style fetcher passes the batch sampler's item whole and collates the list.
        number, indices = batch
        if get_worker_info() is not None:
            seed_batch(self.seed, self.rank, number)
        getitems = getattr(self.dataset, "__getitems__", None)
        if getitems:
            return getitems(indices)
        return [self.dataset[i] for i in indices]

    def __getattr__(self, name: str) -> Any:
        try:
            dataset = self.__dict__["dataset"]
        except KeyError:  # not set yet (unpickling in a spawned worker)
            raise AttributeError(name) from None
        return getattr(dataset, name)


def worker_message(exc: BaseException) -> str | None:
    """The original message of ``exc`` when a DataLoader re-raised it with the worker's
    traceback as its message (``Caught X in DataLoader worker process N.``, ``Original
    Traceback ...`` and, last, ``module.X: message``); ``None`` when it did not."""
    text = str(exc)
    if not text.startswith("Caught ") or "\nOriginal Traceback" not in text:
        return None
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ not in ("__main__", "builtins"):
        name = f"{cls.__module__}.{name}"
    if text.rstrip("\n").endswith(f"\n{name}"):  # raised without a message
        return ""
    _, found, message = text.rpartition(f"\n{name}: ")
    return message.rstrip("\n") if found else None


#: what torch says when a batch cannot pass between processes: too few open files (``ulimit
#: -n``), a full /dev/shm (a container's 64 MB: at the first batch, or a Bus error later)
_SHORT_OF = ("Too many open files", "shared memory", "(shm)", "Bus error")


def _short_of_resources(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's failure to pass a batch between the DataLoader's processes
    for want of open files or shared memory (not the dataset's failure)."""
    return isinstance(exc, RuntimeError) and any(words in str(exc) for words in _SHORT_OF)


def _workers_failed(workers: int, exc: BaseException) -> str:
    text = worker_message(exc) or str(exc)  # a worker's own, not "Caught ... in worker 0"
    first = (text.strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
    return (
        f"the DataLoader's {workers} worker processes failed ({first}): they need shared "
        "memory (/dev/shm, small in containers: docker run --shm-size) and open files "
        "(ulimit -n); train with train.num_workers=0, or give them more"
    )


def _not_from_a_loader(hook: Any) -> Any:
    """``sys.unraisablehook`` ``hook`` less the failures of a DataLoader iterator's teardown."""

    def filtered(unraisable: Any) -> None:
        owner = getattr(unraisable.object, "__qualname__", "")
        if not owner.startswith("_MultiProcessingDataLoaderIter."):
            hook(unraisable)

    return filtered


def _from_dataset(exc: BaseException) -> bool:
    """Whether ``exc`` is a dataset's own failure to give an item (not Ctrl-C, an exit, out
    of memory, or the pin-memory thread's CUDA error, which say nothing about the data)."""
    if not isinstance(exc, Exception) or isinstance(exc, (MemoryError, StopIteration)):
        return False
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return False
    return "in pin memory thread" not in str(exc).split("\n", 1)[0]


def is_resident(dataset: Any, resident: bool | None) -> bool:
    """Whether training gathers batches from ``dataset``'s in-memory ``images`` and
    ``labels`` tensors rather than its items: when it has both and ``resident``
    (``train.resident_data``) says so, or, left to null, when the images fit in
    :data:`RESIDENT_LIMIT_BYTES`. Items are then never read (nor their augmentation)."""
    images, labels = getattr(dataset, "images", None), getattr(dataset, "labels", None)
    if not (isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor)):
        return False
    if resident is not None:
        return bool(resident)
    stored = channel_base(images)  # grey repeated as a view: one plane moves
    return stored.numel() * stored.element_size() <= RESIDENT_LIMIT_BYTES


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
        num_classes: int = 0,
        source: str | None = None,
    ) -> None:
        """``num_classes`` > 0 (a conditional run): every batch's labels are checked to lie
        in ``[-1, num_classes)`` before they reach the device (an embedding fails on others,
        on CUDA with a device-side assert); on the host, a few microseconds a batch.
        ``source`` names a plugin's dataset (and the plugin) in the one line that a batch it
        failed to give becomes; without it (edgegan's own datasets) errors pass as raised."""
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
        self.num_classes = num_classes
        self.source = source
        self.pin_memory = pin_memory and device.type == "cuda"
        images = getattr(dataset, "images", None)
        labels = getattr(dataset, "labels", None)
        self.resident = False
        if isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor):  # in memory
            stored = channel_base(images)  # grey repeated as a view: one plane moves
            self.resident = is_resident(dataset, resident)
            if num_classes and labels.numel():
                self._check_labels(labels, "its labels tensor holds")
            if self.resident:
                # Small in-memory datasets live on the device: a batch is one gather (and the
                # copy of its indices), not a copy of its images. uint8 pixels stay 8-bit
                # there and become floats per batch, as the dataset's items do.
                self.images = stored.to(device)
                self.channels = int(images.shape[1])
                self.labels = labels.to(device)
        elif resident:
            raise DataError(
                "train.resident_data=true needs a dataset with in-memory 'images' and 'labels' "
                "tensors; this one loads items one by one (use null or false)"
            )
        if num_workers > 0 and not self.resident:
            _check_sendable(dataset, source)
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
        # must not shift the global RNG (a resumed run creates one more iterator). The workers'
        # draws for a batch come from seed_batch, not from that worker seed.
        generator = torch.Generator().manual_seed(
            ((self.seed + self.rank) * 1_000_003 + self.consumed) % 2**64
        )
        loader = DataLoader(
            SeededItems(self.dataset, self.seed, self.rank),
            batch_sampler=NumberedBatches(sampler),  # type: ignore[arg-type]  # (number, indices)
            generator=generator,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=functools.partial(leave_sigterm_to, os.getpid()),
        )
        return self._start_workers(loader) if self.num_workers else iter(loader)

    def _start_workers(self, loader: DataLoader) -> Iterator[Any]:
        """``iter(loader)``, whose workers may fail to start (a small or read-only /dev/shm,
        as in a container; too few open files): one line then. The loader they leave half
        made fails again when it is collected ("Exception ignored in ... __del__" and a
        traceback): that is dropped."""
        hook = sys.unraisablehook
        failure = None
        sys.unraisablehook = _not_from_a_loader(hook)
        try:
            try:
                return iter(loader)
            except (OSError, RuntimeError) as exc:
                if not (isinstance(exc, OSError) or _short_of_resources(exc)):
                    raise
                failure = _workers_failed(self.num_workers, exc)
            gc.collect()  # the half-made loader, now, while its teardown's failure is dropped
        finally:
            sys.unraisablehook = hook
        raise DataError(failure)

    def next(self) -> Any:
        """The next batch: ``(images, labels)``, or a dict of tensors for datasets whose items
        are dicts (e.g. the unpaired ``{"A": ..., "B": ...}``), on the device."""
        if self._iter is None:
            self._iter = self._start()
        try:
            item = next(self._iter)
            if self.num_classes and not self.resident and not isinstance(item, dict):
                labels = torch.as_tensor(item[1])  # on the host, before the device asserts
                self._check_labels(labels, f"batch {self.consumed + 1} holds")
                item = (item[0], labels)
        except BaseException as exc:
            # A failed batch is not consumed: a caller that catches the error and asks again
            # gets that batch again (a new iterator from ``consumed``), not the one after it.
            self.close()
            message = worker_message(exc)  # a worker's: the traceback is its message
            if isinstance(exc, EdgeganError):
                if message is None:
                    raise
                # One line, as from the training process, not the worker's whole traceback.
                raise type(exc)(message) from None
            if self.num_workers and _short_of_resources(exc):
                raise DataError(_workers_failed(self.num_workers, exc)) from None
            if self.source is None or not _from_dataset(exc):
                raise  # edgegan's own dataset's bug, out of memory, Ctrl-C: as they are
            # A dataset's own failure (an unreadable file, its bug): one line naming it; the
            # traceback is the cause (EDGEGAN_DEBUG=1 prints it).
            if message is None:
                line = exception_line(exc)
            else:
                line = type(exc).__name__ + (f": {message.splitlines()[0]}" if message else "")
            raise DataError(
                f"{self.source} failed to give batch {self.consumed + 1}: {line}"
            ) from exc
        self.consumed += 1
        return to_format(self._to_device(item), self.memory_format)

    def _to_device(self, item: Any) -> Any:
        if self.resident:
            idx = torch.as_tensor(item, dtype=torch.long)
            if self.device.type == "cuda":
                # Pinned and asynchronous: a list copied straight to the GPU is a synchronous
                # copy, which waits for the steps already queued (a launch-bound DCGAN step
                # could not be queued while the one before runs).
                idx = idx.pin_memory().to(self.device, non_blocking=True)
            images = self.images.index_select(0, idx)
            if images.shape[1] != self.channels:
                images = images.expand(-1, self.channels, -1, -1)
            # A new (contiguous) tensor either way: the model gets no stride-0 view.
            images = unit_from_uint8(images) if images.dtype == torch.uint8 else images.contiguous()
            return images, self.labels.index_select(0, idx)
        # A copy from pinned memory can overlap the previous step's kernels.
        non_blocking = self.pin_memory
        if isinstance(item, dict):
            return {
                k: v.to(self.device, non_blocking=non_blocking) if torch.is_tensor(v) else v
                for k, v in item.items()
            }
        images, labels = item
        labels = torch.as_tensor(labels)
        return (
            images.to(self.device, non_blocking=non_blocking),
            labels.to(self.device, non_blocking=non_blocking),
        )

    def _check_labels(self, labels: torch.Tensor, where: str) -> None:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < -1 or hi >= self.num_classes:
            found = f"label {lo}" if lo < -1 else f"label {hi}"
            whose = f"{self.source}:" if self.source else "the dataset's"
            raise DataError(
                f"{whose} {where} {found}; a conditional run's labels must be in "
                f"[0, {self.num_classes - 1}] (-1: unlabelled), or set model.conditional=false"
            )

    def close(self) -> None:
        """Stop the DataLoader's worker processes now. Left to the garbage collector, they
        lived on as long as a kept exception (a notebook's, a REPL's ``sys.last_traceback``)
        held the trainer. The next :meth:`next` starts a new iterator from ``consumed``."""
        it, self._iter = self._iter, None
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

    def state_dict(self) -> dict[str, int]:
        # The size too: the batch order depends on it, so a resume can tell changed data.
        return {"consumed": self.consumed, "size": len(self.dataset)}  # type: ignore[arg-type]

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.consumed = int(state["consumed"])
        self._iter = None
