"""Distributed data-parallel training under torchrun (docs/distributed.md).

``torchrun --nproc-per-node N -m edgegan train ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set. :func:`session` turns them into a process group (NCCL on
CUDA, gloo on the CPU) and a :class:`Distributed` handle that the trainer consults:

- every rank builds the networks from ``seed`` (identical weights), then draws its noise and
  augmentations from ``seed + rank``;
- ``train.batch_size`` is the global batch: rank ``r`` trains on its slice of each one
  (:class:`edgegan.train.stream.BatchIndices`), so the data order does not depend on N;
- ``train_step`` runs the updated networks through DistributedDataParallel (gradients
  averaged over ranks, :meth:`Task.train_module`); EMA, samples, export and checkpoints see
  the plain modules, so state-dict keys never gain a ``module.`` prefix;
- rank 0 alone writes the run directory; decisions that end the loop (steps, time budget,
  signals, a non-finite loss) are agreed by all ranks, so none is left waiting in a collective.

Without torchrun (or with one process) every method here is a no-op and training is the
single-process loop.
"""

from __future__ import annotations

import gc
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from edgegan.errors import ConfigError, EdgeganError, caller_stacklevel, first_line
from edgegan.fileio import shell_path
from edgegan.rng import seed_all
from edgegan.train.device import resolve_device

if TYPE_CHECKING:
    from edgegan.config import Config
    from edgegan.train.task import Task

T = TypeVar("T")

BACKENDS = ("auto", "nccl", "gloo")

# Fragments of what gloo raises (a plain RuntimeError) when a peer process is gone.
_LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
# ... and when a collective waited past the process group's timeout (gloo; NCCL's watchdog).
_TIMED_OUT = ("Timed out waiting", "timeout caused pair closure", "operation timeout")

# Settings that may differ from process to process: where each machine keeps its data and
# how it feeds its own device. Every other setting must be the same on every rank, or the
# ranks run different loops and one waits in a collective the others never reach.
PER_PROCESS = frozenset(
    {"train.device", "train.threads", "train.num_workers", "train.pin_memory", "train.progress"}
)
_PER_PROCESS_PATHS = ("data.root", "eval.reference", "train.init_from")


class DistributedError(EdgeganError):
    """The process group could not start, or lost a process (one failed or was stopped)."""

    exit_code = 1


@dataclass(frozen=True)
class LaunchEnv:
    """This process's place in a torchrun job, from the environment torchrun sets."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


def launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv | None:
    """The torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``LOCAL_WORLD_SIZE``), or None when this process was not started by a launcher."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        # Launchers other than torchrun may leave out the local values: one node then.
        local_rank = int(env.get("LOCAL_RANK", rank))
        local_world = int(env.get("LOCAL_WORLD_SIZE", world))
    except ValueError:
        raise ConfigError(
            f"bad distributed environment: RANK={env.get('RANK')!r} "
            f"WORLD_SIZE={env.get('WORLD_SIZE')!r} LOCAL_RANK={env.get('LOCAL_RANK')!r}"
        ) from None
    if not (0 <= rank < world and 0 <= local_rank < local_world):
        raise ConfigError(f"bad distributed environment: RANK={rank} of WORLD_SIZE={world}")
    return LaunchEnv(rank, world, local_rank, local_world)


def resume_command(run_dir: str | Path) -> str:
    """The command that continues ``run_dir`` as it was launched: under torchrun with N
    processes, torchrun again (``edgegan train --resume`` alone would train on one)."""
    run = shell_path(run_dir, "RUN")
    env = launch_env_or_none()
    if env is None or env.world_size == 1:
        return f"edgegan train --resume {run}"
    if env.local_world_size == env.world_size:  # one node
        launch = f"torchrun --standalone --nproc-per-node {env.world_size}"
    else:
        launch = "torchrun (the same options on every node)"
    return f"{launch} -m edgegan train --resume {run}"


def launch_env_or_none() -> LaunchEnv | None:
    """:func:`launch_env`, or None when the environment cannot be read (a message about a
    run must not fail on it)."""
    try:
        return launch_env()
    except ConfigError:
        return None


def check_config(config: Config, world_size: int) -> None:
    """The distributed settings, checked in every process (so a typo fails in one process
    too); with ``world_size`` > 1 also what N processes need."""
    t = config.train
    if t.dist_backend not in BACKENDS:
        raise ConfigError(
            f"train.dist_backend must be one of {', '.join(BACKENDS)}, got '{t.dist_backend}'"
        )
    if not t.dist_timeout > 0:
        raise ConfigError("train.dist_timeout must be > 0 (seconds)")
    if world_size > 1 and t.batch_size % world_size:
        up = -(-t.batch_size // world_size) * world_size
        raise ConfigError(
            f"train.batch_size={t.batch_size} is the global batch, split over {world_size} "
            f"processes: it must be divisible by {world_size} (e.g. train.batch_size={up})"
        )


def rank_device(name: str, env: LaunchEnv) -> torch.device:
    """``train.device`` for this process: ``cuda`` (or ``auto`` on a GPU machine) means
    ``cuda:LOCAL_RANK``, one GPU per process.

    A mistake in ``train.device`` itself is made alike by every process (rank 0 alone
    reports it); a process whose ``cuda:LOCAL_RANK`` is missing fails on its own."""
    try:
        device = resolve_device(name)
        if device.type == "cuda" and device.index is not None and env.local_world_size > 1:
            raise ConfigError(
                f"train.device={name} would put all {env.local_world_size} processes of this "
                "node on one GPU; use train.device=cuda (process LOCAL_RANK uses cuda:LOCAL_RANK)"
            )
    except EdgeganError as exc:
        raise _agreed(exc) from None
    if device.type != "cuda" or device.index is not None:
        return device
    count = torch.cuda.device_count()
    if env.local_rank >= count:
        raise ConfigError(
            f"process {env.local_rank} of this node needs cuda:{env.local_rank}, but {count} "
            f"GPU(s) are visible: start at most {count} processes per node (--nproc-per-node)"
        )
    return torch.device("cuda", env.local_rank)


def _backend(config: Config, device: torch.device) -> str:
    backend = config.train.dist_backend
    if backend == "auto":  # torch for Windows (and some builds) comes without NCCL
        return "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise _agreed(
            ConfigError("train.dist_backend=nccl needs CUDA devices; use gloo on the CPU")
        )
    if backend == "nccl" and not dist.is_nccl_available():
        raise _agreed(
            ConfigError("train.dist_backend=nccl: this torch has no NCCL; use gloo (or auto)")
        )
    return backend


def _agreed(exc: BaseException) -> BaseException:
    """Mark an error that every rank raises alike: rank 0 alone reports it."""
    exc.agreed = True  # type: ignore[attr-defined]
    return exc


def is_main_process() -> bool:
    """True but in a process of rank > 0 of a started process group (which evaluates
    nothing and writes nothing: process 0 does)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def rank_local(exc: EdgeganError, rank: int) -> EdgeganError:
    """Mark an error of this rank alone (what one node's filesystem holds, a lost peer):
    prefixed ``[rank r]``, and printed by every rank that raises it (see the CLI)."""
    exc.args = (f"[rank {rank}] {exc}",)
    exc.rank_local = True  # type: ignore[attr-defined]
    return exc


class Distributed:
    """This process's rank, device and the few collectives training needs.

    A default instance is the single process: every method is then a cheap no-op.
    """

    def __init__(
        self,
        rank: int = 0,
        world_size: int = 1,
        local_rank: int = 0,
        device: torch.device | None = None,
        backend: str | None = None,
    ) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.device = device or torch.device("cpu")
        self.backend = backend
        # NCCL reduces device tensors; gloo is given CPU tensors.
        self._comm = self.device if backend == "nccl" else torch.device("cpu")
        self._wrapped: list[Task] = []

    @property
    def enabled(self) -> bool:
        """More than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run directory."""
        return self.rank == 0

    def describe(self) -> str:
        return f"{self.world_size} processes ({self.backend})" if self.enabled else "1 process"

    # -- set-up ------------------------------------------------------------------------------
    def seed(self, seed: int) -> None:
        """Reseed this rank's torch, Python and NumPy RNGs with ``seed + rank``: the networks
        were built from ``seed`` alike on every rank; noise and augmentation must differ."""
        if not self.enabled:
            return
        seed_all(seed + self.rank)

    def wrap(self, task: Task, sync_bn: bool = False) -> None:
        """DDP-wrap the task's networks into ``task.ddp`` (what its ``train_step`` calls).

        The plain networks stay the task's attributes: ``task.module(name)``, the EMA,
        samples and checkpoints never see a wrapper. DDP broadcasts rank 0's weights and
        buffers here (they are equal already) and then averages gradients in backward.
        """
        if not self.enabled:
            return
        from torch.nn.parallel import DistributedDataParallel

        for name in task.networks:
            net = task.module(name)
            if sync_bn:
                # Replaces the BatchNorm layers inside (keeping their parameters); returns a
                # new object only when the network itself is a BatchNorm layer.
                converted = nn.SyncBatchNorm.convert_sync_batchnorm(net)
                if converted is not net:
                    setattr(task, name, converted)
                net = converted
            if not any(p.requires_grad for p in net.parameters()):
                continue  # nothing to average (DDP refuses such a module)
            task.ddp[name] = DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self._wrapped.append(task)

    def release(self) -> None:
        """Drop the DDP wrappers. They hold the process group, which must be gone before the
        interpreter exits (a gloo group torn down at exit aborts the process)."""
        for task in self._wrapped:
            task.ddp.clear()
        self._wrapped.clear()
        gc.collect()  # wrappers caught in reference cycles (trainer <-> callbacks, say)

    def restore_rng(self, state: Mapping[str, Any], seed: int) -> None:
        """Restore this rank's RNG streams from checkpoint ``state``.

        A checkpoint written by N processes holds each rank's state (``rng_ranks``); resumed
        on N processes every rank continues its own stream exactly. On another number of
        processes each rank reseeds (the data order still continues exactly).
        """
        from edgegan.train.checkpoint import set_rng_state

        saved = state.get("rng_ranks")
        if not self.enabled:
            set_rng_state(state["rng"])  # rank 0's stream
            if saved is not None and len(saved) > 1:
                warnings.warn(
                    f"this run was saved by {len(saved)} processes and resumes in one: the data "
                    "order continues exactly, the noise continues rank 0's stream",
                    stacklevel=caller_stacklevel(),
                )
            return
        if saved is not None and len(saved) == self.world_size:
            set_rng_state(saved[self.rank])
            return
        set_rng_state(state["rng"])
        self.seed(seed + 1_000_003 * int(state["step"]))
        if self.is_main:
            warnings.warn(
                f"this run was saved by {len(saved) if saved else 1} process(es) and resumes "
                f"on {self.world_size}: the data order continues exactly, the noise of each "
                "rank is reseeded",
                stacklevel=caller_stacklevel(),
            )

    # -- collectives -------------------------------------------------------------------------
    def agree(self, fn: Callable[[], T], *, from_main: bool = False) -> T:
        """Run ``fn`` on every rank and agree on the outcome.

        If it raised on any rank, every rank raises (rank 0 reports the first failure, the
        others stay quiet), so that no rank goes on alone into a collective that would never
        complete. With ``from_main`` every rank returns rank 0's result.
        """
        if not self.enabled:
            return fn()
        value: Any = None
        error: BaseException | None = None
        try:
            value = fn()
        except Exception as exc:
            error = exc
        failure = None if error is None else (str(error), getattr(error, "exit_code", 1))
        outcomes: list[Any] = [None] * self.world_size
        dist.all_gather_object(outcomes, (failure, value if from_main and self.is_main else None))
        failed = [(r, f) for r, (f, _) in enumerate(outcomes) if f is not None]
        if not failed:
            return outcomes[0][1] if from_main else value
        if isinstance(error, EdgeganError):
            raise _agreed(error)
        if error is not None:
            raise error  # a bug on this rank: its traceback
        rank, (message, code) = failed[0]
        lost = DistributedError(f"[rank {rank}] {message}")
        lost.exit_code = code
        raise _agreed(lost)

    def same_config(self, config: Config) -> None:
        """Refuse to train when the processes were given different configs (a config file
        edited on one node, an override given to one rank): they would train different
        loops and hang at the first collective one of them skips. Paths to data and a few
        per-machine settings (:data:`PER_PROCESS`) may differ."""
        if not self.enabled:
            return
        mine = {k: v for k, v in _flat(config.to_dict()) if not _per_process(k)}
        everyone: list[Any] = [None] * self.world_size
        dist.all_gather_object(everyone, mine)
        keys = sorted(set().union(*everyone))
        differ = [k for k in keys if len({repr(cfg.get(k, _UNSET)) for cfg in everyone}) > 1]
        if not differ:
            return
        shown = []
        for key in differ[:3]:
            by_rank = ", ".join(
                f"{_shown(cfg.get(key, _UNSET))} on rank {r}" for r, cfg in enumerate(everyone)
            )
            shown.append(f"{key}: {by_rank}")
        more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
        raise _agreed(
            ConfigError(
                "the processes were given different configs, "
                + "; ".join(shown)
                + more
                + ": give every process the same config file and overrides"
            )
        )

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag or-ed over the ranks (one small all-reduce)."""
        if not self.enabled:
            return flags
        t = torch.tensor([float(f) for f in flags], device=self._comm)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in t.tolist())

    def first_problem(self, problem: str | None) -> str | None:
        """Agree whether any rank has a ``problem``; if so every rank gets the first one
        (naming its rank when it is another's)."""
        if not self.enabled:
            return problem
        if not self.any(problem is not None)[0]:
            return None
        problems: list[Any] = [None] * self.world_size
        dist.all_gather_object(problems, problem)
        rank, first = next((r, p) for r, p in enumerate(problems) if p is not None)
        return first if rank == self.rank else f"{first} on rank {rank}"

    def agreed(self, exc: EdgeganError) -> EdgeganError:
        """``exc`` marked as raised alike on every rank (rank 0 alone reports it)."""
        return _agreed(exc)  # type: ignore[return-value]

    def mean(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each scalar averaged over the ranks (one all-reduce of them stacked)."""
        if not self.enabled or not values:
            return values
        keys = sorted(values)  # the same order on every rank
        home = values[keys[0]].device
        stacked = torch.stack([values[k].float().reshape(()) for k in keys]).to(self._comm)
        dist.all_reduce(stacked)
        stacked = (stacked / self.world_size).to(home)
        return {k: stacked[i] for i, k in enumerate(keys)}

    def gather(self, obj: T) -> list[T] | None:
        """Every rank's ``obj`` on rank 0 (None on the others); ``[obj]`` in one process."""
        if not self.enabled:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (the others wait for it)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


_UNSET = object()


def _flat(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _per_process(key: str) -> bool:
    return key in PER_PROCESS or key.startswith(_PER_PROCESS_PATHS)


def _shown(value: Any) -> str:
    return "(not set)" if value is _UNSET else repr(value)


def _lost_peer(exc: BaseException) -> bool:
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _LOST_PEER)


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _TIMED_OUT)


@contextmanager
def session(config: Config) -> Iterator[Distributed]:
    """The distributed context of one training run.

    Under torchrun with N > 1 processes: checks the config for N, picks this process's
    device, starts the process group and destroys it on the way out, whether training
    finished, failed or was interrupted. A process group the caller started is used as it is
    (and left open). Otherwise: the single-process handle.

    Errors raised alike on every rank are reported by rank 0 alone; an error of this rank
    alone is prefixed ``[rank r]`` and marked ``rank_local`` (the CLI prints those on every
    rank); losing another process becomes one :class:`DistributedError` line.
    """
    owned = not (dist.is_available() and dist.is_initialized())
    if owned:
        env = launch_env()
    else:
        env = LaunchEnv(
            dist.get_rank(),
            dist.get_world_size(),
            int(os.environ.get("LOCAL_RANK", dist.get_rank())),
            int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())),
        )
    world = env.world_size if env else 1
    try:
        check_config(config, world)
    except EdgeganError as exc:
        raise _agreed(exc) from None
    if world == 1:
        yield Distributed()
        return
    assert env is not None
    started = False
    handle: Distributed | None = None
    try:
        try:
            device = rank_device(config.train.device, env)
            backend = _backend(config, device)
            if config.train.sync_bn and device.type != "cuda":
                raise _agreed(
                    ConfigError(
                        "train.sync_bn needs CUDA devices (torch's SyncBatchNorm does not run "
                        "on the CPU)"
                    )
                )
            if device.type == "cuda":
                torch.cuda.set_device(device)  # NCCL and DDP use the current device
            if owned:
                timeout = timedelta(seconds=config.train.dist_timeout)
                dist.init_process_group(backend, timeout=timeout)
                started = True
        except (RuntimeError, ValueError) as exc:
            first = first_line(exc, type(exc).__name__)
            raise DistributedError(f"cannot start the process group: {first}") from None
        handle = Distributed(env.rank, env.world_size, env.local_rank, device, backend)
        yield handle
    except EdgeganError as exc:
        if not getattr(exc, "agreed", False):
            rank_local(exc, env.rank)
        raise
    except Exception as exc:
        timed_out = _timed_out(exc)  # first: a timeout may be a DistError too
        if not (timed_out or _lost_peer(exc)):
            raise
        # gloo's message: "[.../pair.cc:553] Connection closed by peer [addr]:port. This is..."
        first = re.sub(r"^\[[^\]]*\] ", "", str(exc).strip()).split(". ")[0]
        if timed_out:
            why = (
                f"a collective waited longer than train.dist_timeout="
                f"{config.train.dist_timeout:g} s: another process is stuck, or was busy "
                "for longer (process 0 evaluates, validates, writes samples and checkpoints "
                "while the others wait: raise train.dist_timeout)"
            )
        else:
            why = (
                "a collective failed, most likely because another process failed or was "
                "stopped (see its error)"
            )
        raise rank_local(DistributedError(f"{why}: {first}"), env.rank) from None
    finally:
        if handle is not None:
            handle.release()
        if started and dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: S110 - a broken group cannot be torn down more cleanly
                pass
