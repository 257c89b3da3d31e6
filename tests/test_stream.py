"""BatchStream with DataLoader workers: one-line errors, and draws that resume bit for bit."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from tiny import draws, seed_all
from torch.utils.data import Dataset, default_collate

from edgegan.errors import DataError
from edgegan.train.stream import BatchIndices, BatchStream, worker_message

CPU = torch.device("cpu")
TRUNCATED = "cannot read image /data/3.png: OSError: image file is truncated"


class BrokenItem(Dataset):
    """Eight items; item 3 raises ``error`` as a dataset does for an unreadable file."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        if index == 3:
            raise self.error
        return torch.full((1, 2, 2), float(index)), index


class RandomDraws(Dataset):
    """Items whose values are draws from Python's ``random``, ``numpy.random`` and torch, as
    random crops, flips and the unpaired B index are."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int):
        draws = [random.random(), float(np.random.rand()), float(torch.rand(()))]
        return torch.tensor(draws, dtype=torch.float64), index


def take(stream: BatchStream, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [stream.next() for _ in range(n)]


def assert_same(a, b) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(ya, yb)
        assert torch.equal(xa, xb)


def error_from_stream(dataset: Dataset, num_workers: int) -> Exception:
    stream = BatchStream(dataset, 4, 0, CPU, num_workers=num_workers)
    with pytest.raises(Exception) as info:
        take(stream, 2)  # the two batches of an epoch: one holds item 3
    # Free the loader now: left to the garbage collector (the frames in the tracebacks hold
    # it in a cycle), torch waits 5 s for its worker to stop.
    exc = info.value
    del info
    for e in (exc, exc.__context__):
        if e is not None:
            e.__traceback__ = None
    return exc


# -- errors raised in workers ------------------------------------------------------------------


class PluginDataError(DataError):
    """An edgegan error subclass defined outside edgegan (as a plugin's would be)."""


@pytest.mark.parametrize("cls", [DataError, PluginDataError])
def test_a_worker_data_error_is_one_line_of_the_same_type(cls):
    exc = error_from_stream(BrokenItem(cls(TRUNCATED)), num_workers=1)
    assert type(exc) is cls
    assert str(exc) == TRUNCATED
    assert exc.__cause__ is None and exc.__suppress_context__  # raised ``from None``
    # The same message as without workers.
    direct = error_from_stream(BrokenItem(cls(TRUNCATED)), num_workers=0)
    assert type(direct) is cls and str(direct) == str(exc)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_datasets_own_failure_is_one_line_naming_it(workers):
    """A plugin dataset's OSError was 'error: disk gone' (no dataset, no batch); another
    error, the worker's whole traceback. The traceback stays the cause (EDGEGAN_DEBUG=1)."""
    for error, line in [(OSError("disk gone"), "OSError: disk gone"),
                        (ValueError("bad value\nmore"), "ValueError: bad value")]:  # fmt: skip
        stream = BatchStream(BrokenItem(error), 4, 0, CPU, num_workers=workers, source="ds 'x'")
        with pytest.raises(DataError) as info:
            take(stream, 2)  # the two batches of an epoch: one holds item 3
        assert str(info.value) == f"ds 'x' failed to give batch {stream.consumed + 1}: {line}"
        assert isinstance(info.value.__cause__, type(error))
        del info, stream


def test_edgegan_datasets_and_out_of_memory_errors_pass_as_raised():
    """Only a plugin's dataset (a source) is named: a built-in's bug keeps its traceback, and
    out-of-memory or the pin-memory thread's errors are no dataset's."""
    with pytest.raises(ValueError, match="^bad value$"):
        take(BatchStream(BrokenItem(ValueError("bad value")), 4, 0, CPU), 2)
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory")
    with pytest.raises(torch.cuda.OutOfMemoryError):
        take(BatchStream(BrokenItem(oom), 4, 0, CPU, source="ds 'x'"), 2)
    pinned = RuntimeError("Caught RuntimeError in pin memory thread for device 0.\nOriginal")
    with pytest.raises(RuntimeError, match="pin memory thread"):
        take(BatchStream(BrokenItem(pinned), 4, 0, CPU, source="ds 'x'"), 2)


def test_worker_message_reads_the_last_line_of_the_traceback():
    def wrapped(tail: str) -> DataError:
        return DataError(
            "Caught DataError in DataLoader worker process 0.\n"
            "Original Traceback (most recent call last):\n"
            '  File "x.py", line 1, in <module>\n'
            "edgegan.errors.DataError: not this one\n\n"
            "During handling of the above exception, another exception occurred:\n\n"
            'Traceback (most recent call last):\n  File "x.py", line 2, in <module>\n' + tail
        )

    assert worker_message(wrapped("edgegan.errors.DataError: this one\n")) == "this one"
    assert worker_message(wrapped("edgegan.errors.DataError: two\nlines\n")) == "two\nlines"
    assert worker_message(wrapped("edgegan.errors.DataError\n")) == ""
    assert worker_message(DataError(TRUNCATED)) is None  # not from a worker
    assert worker_message(DataError("Caught my eye")) is None


class FailsOnce(Dataset):
    """Eight items; item 3 raises while ``marker`` exists, and removes it (a file read while
    still being written). A file, so that a worker process's failure is seen by the next."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        if index == 3 and self.marker.exists():
            self.marker.unlink()
            raise DataError("cannot read image 3.png")
        return torch.full((1, 2, 2), float(index)), index


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_failed_batch_is_read_again_when_asked_again(tmp_path, num_workers):
    marker = tmp_path / "fail"
    expected = take(BatchStream(FailsOnce(marker), 4, 5, CPU), 4)  # no marker: no failure
    marker.touch()
    stream = BatchStream(FailsOnce(marker), 4, 5, CPU, num_workers=num_workers)
    got, failures = [], 0
    while len(got) < 4:
        try:
            got.append(stream.next())
        except DataError:
            failures += 1
            assert stream.consumed == len(got)
    assert failures == 1 and stream.consumed == 4
    assert_same(got, expected)


class BadLabel(Dataset):
    """Eight items; item 3 has label 7, beyond four classes."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        return torch.full((1, 2, 2), float(index)), 7 if index == 3 else index % 4


def test_a_batch_with_a_label_out_of_range_is_refused_and_not_consumed():
    stream = BatchStream(BadLabel(), 4, 5, CPU, num_classes=4)
    errors = []
    while len(errors) < 2:
        before = stream.consumed
        try:
            stream.next()
        except DataError as exc:
            assert stream.consumed == before  # asked again, the same batch fails again
            errors.append(str(exc))
    assert errors[0] == errors[1]
    assert errors[0].startswith(f"the dataset's batch {before + 1} holds label 7; ")


# -- worker randomness -------------------------------------------------------------------------


def test_a_resumed_stream_with_workers_loads_the_same_batches():
    """Resumed at batch k (here in the second epoch), the workers draw what the uninterrupted
    run's did; and which worker loads a batch does not matter."""
    whole = take(BatchStream(RandomDraws(), 4, 7, CPU, num_workers=1), 5)
    for k in (2, 4):
        resumed = BatchStream(RandomDraws(), 4, 7, CPU, num_workers=1, consumed=k)
        assert_same(take(resumed, 5 - k), whole[k:])
    assert_same(take(BatchStream(RandomDraws(), 4, 7, CPU, num_workers=2), 5), whole)
    # The draws are random: not the same within a batch, nor across batches.
    x = torch.cat([x for x, _ in whole])
    assert len(set(x.flatten().tolist())) == x.numel()


def test_ranks_draw_differently_with_workers():
    ranks = [
        take(BatchStream(RandomDraws(), 4, 7, CPU, num_workers=1, rank=r, world_size=2), 2)
        for r in (0, 1)
    ]
    for (x0, y0), (x1, y1) in zip(*ranks, strict=True):
        assert set(y0.tolist()).isdisjoint(y1.tolist())  # each rank its slice of the batch
        assert not set(x0.flatten().tolist()) & set(x1.flatten().tolist())
    # And each rank resumes bit for bit.
    resumed = BatchStream(RandomDraws(), 4, 7, CPU, num_workers=1, rank=1, world_size=2, consumed=1)
    assert_same(take(resumed, 1), ranks[1][1:])


def test_without_workers_the_stream_draws_from_the_global_generators():
    """num_workers=0: items load in the sampler's order in this process, drawing from the
    global generators (saved in checkpoints), which nothing reseeds."""

    dataset = RandomDraws()
    seed_all(5)
    got = take(BatchStream(dataset, 4, 7, CPU, num_workers=0), 5)
    after = draws()
    seed_all(5)
    order = iter(BatchIndices(len(dataset), 4, 7))
    expected = [default_collate([dataset[i] for i in next(order)]) for _ in range(5)]
    assert_same(got, expected)
    assert draws() == after
    # A stream resumed at batch k loads the sampler's batches from k on.
    indices = next(iter(BatchIndices(len(dataset), 4, 7, start=2)))
    _, y = BatchStream(dataset, 4, 7, CPU, num_workers=0, consumed=2).next()
    assert y.tolist() == indices


def test_each_epoch_is_a_fresh_permutation_of_whole_batches():
    """mutation testing: BatchIndices drawing the same permutation every epoch, or skipping
    an epoch's last batch, passed the suite."""
    indices = BatchIndices(10, 3, seed=5)  # 3 whole batches an epoch, 1 item dropped
    it = iter(indices)
    batches = [next(it) for _ in range(9)]
    epochs = [sum(batches[e * 3 : (e + 1) * 3], []) for e in range(3)]
    for e, flat in enumerate(epochs):
        assert len(flat) == 9 and len(set(flat)) == 9
        assert flat == indices.epoch_order(e)[:9].tolist()
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
    for start in range(9):  # resumed anywhere, across epoch boundaries: the same batches
        assert next(iter(BatchIndices(10, 3, seed=5, start=start))) == batches[start]


class InMemory(Dataset):
    """Six in-memory items with the given labels, as edgegan's tensor datasets hold them."""

    def __init__(self, labels):
        self.images = torch.zeros(6, 1, 2, 2)
        self.labels = torch.tensor(labels)

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int):
        return self.images[index], int(self.labels[index])


@pytest.mark.parametrize("resident", [True, False])
def test_unlabelled_items_pass_the_label_check_of_a_conditional_stream(resident):
    """mutation testing: the label check refusing -1 (an unlabelled item, which conditional
    runs accept) passed the suite."""
    stream = BatchStream(
        InMemory([0, -1, 2, -1, 1, 0]), 6, 0, CPU, resident=resident, num_classes=3
    )
    images, labels = stream.next()
    assert sorted(labels.tolist()) == [-1, -1, 0, 0, 1, 2]
    with pytest.raises(DataError, match="label 3"):
        BatchStream(
            InMemory([0, 3, 0, 0, 0, 0]), 6, 0, CPU, resident=resident, num_classes=3
        ).next()


def test_a_dataset_workers_cannot_be_sent_is_one_line_where_they_are_spawned(monkeypatch):
    """macOS and Windows spawn DataLoader workers and send them the dataset pickled: one
    holding a lambda failed at its first batch with a traceback (or 'worker exited')."""
    import multiprocessing

    unsendable = BrokenItem(ValueError(lambda x: x))  # its error holds a lambda
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: "fork")
    BatchStream(unsendable, 4, 0, CPU, num_workers=1)  # forked: nothing sent
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: "spawn")
    said = r"^dataset 'x' of plugin 'p' cannot be sent to DataLoader worker processes, which"
    with pytest.raises(DataError, match=said):
        BatchStream(
            unsendable,
            4,
            0,
            CPU,
            num_workers=1,
            source="dataset 'x' of plugin 'p'",
        )
    BatchStream(BrokenItem(ValueError("x")), 4, 0, CPU, num_workers=1)  # picklable: fine
    BatchStream(unsendable, 4, 0, CPU, num_workers=0)  # no workers: nothing sent
