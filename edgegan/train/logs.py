"""Run-directory outputs that are not checkpoints: metrics JSONL, progress, run-dir naming."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgegan.errors import ConfigError
from edgegan.fileio import (
    atomic_write,
    check_default_root,
    check_not_empty,
    check_writable,
    holds_files,
    is_os_metadata,
    make_dirs,
    pid_gone,
    process_started,
    process_token,
    remove_empty_dirs,
    write_new,
)

#: Where a run keeps its last checkpoint (here, not in the trainer, so that reading a run's
#: layout does not import the trainer: 0.13 s of each infer and bench)
CHECKPOINT = "checkpoints/last.pt"

#: The checkpoint of the best validation score (``eval.best``), beside ``CHECKPOINT``.
BEST_CHECKPOINT = "checkpoints/best.pt"


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a run directory (one holding its last checkpoint)."""
    return (Path(path) / CHECKPOINT).is_file()


def checkpoint_file(run_dir: str | Path, name: str | None = None) -> Path:
    """The checkpoint ``name`` of a run (``last``, ``best``, ``step_0001000``, with or
    without ``.pt``), a file of its ``checkpoints/`` folder; None: ``last``. A name that
    is not there is one line listing those that are."""
    from edgegan.errors import EdgeganError

    if name is None:
        return Path(run_dir) / CHECKPOINT
    folder = Path(run_dir) / "checkpoints"
    if not isinstance(name, str):  # a bundle's source.checkpoint edited into a number
        raise EdgeganError(f"--checkpoint takes a name in {folder}, e.g. best, got {name!r}")
    file = name if name.endswith(".pt") else f"{name}.pt"
    if Path(file).name != file or file.startswith("."):
        raise EdgeganError(f"--checkpoint takes a name in {folder}, e.g. best, got {name!r}")
    if not (folder / file).is_file():
        have = sorted(p.stem for p in folder.glob("*.pt")) if folder.is_dir() else []
        raise EdgeganError(
            f"no checkpoint '{name}' in {folder} (it has: {', '.join(have) or 'none'})"
        )
    return folder / file


def stderr_line(line: str) -> bool:
    """Write ``line`` on stderr; False when stderr is gone, and later lines are best left
    unwritten. A stderr that fails (its reader gone: ``edgegan train 2>&1 | head``, a killed
    ``tee``, a closed terminal; a log file on a full disk) ends the lines, not the work: a
    training run died at its next line with the steps since its last checkpoint lost."""
    stream = sys.stderr
    if stream is None:  # pythonw, a host that closed it: print would take stdout
        return False
    try:
        stream.write(line + "\n")
        flush = getattr(stream, "flush", None)  # a stand-in may only write
        if flush is not None:
            flush()
    except BlockingIOError:  # a non-blocking stderr, full for now: this line only
        return True
    except (OSError, ValueError):  # ValueError: a closed stream
        return False
    return True


#: The files a run writes in its folder before its first checkpoint, besides its sample
#: grids (what a run that failed or was killed before it leaves, to take back)
RUN_FILES = ("config.yaml", "metrics.jsonl", "report.md")

#: A file that marks a run directory as taken while its run is being built (removed once the
#: run writes its config); it lists the folders made for the run, to remove if it fails.
CLAIM = ".edgegan-claim"


def new_run_dir(out: str | Path | None, name: str, root: str | Path = "runs") -> Path:
    """Claim the run directory: ``out`` if given (it must not hold files), else ``runs/NAME``,
    ``runs/NAME-2``, ... so that no earlier run is ever overwritten.

    The directory is taken at once (made and marked with :data:`CLAIM`, which lists the
    folders made for it), so two runs started together never share it. :func:`release_run_dir`
    gives it back when the run fails before training.
    """
    try:
        if out is not None:
            check_not_empty(out)
            above = next((p for p in Path(out).parents if p.exists()), Path("."))
            if above.is_dir():  # else _claim says what is in the way
                check_writable(out, "--out", folder=True)
            return _claim(Path(out))
        root = Path(root)
        check_default_root(root)
        # a folder name of its own under runs/: `preset=../x` wrote outside it, and `a:b`
        # is no file name on Windows
        name = re.sub(r"[^\w.+-]", "-", name.replace("\\", "/").rsplit("/", 1)[-1]).lstrip(".")
        path, i = root / (name or "run"), 1
        while True:
            try:
                made = make_dirs(path)
            except FileExistsError:
                i += 1
                path = root / f"{name}-{i}"
                continue
            _write_claim(path, made)
            return path
    except OSError as exc:  # NotADirectoryError, PermissionError, a read-only mount, ...
        where = exc.filename or out or root  # a full disk's write names no file
        raise ConfigError(f"cannot make the run directory {where}: {exc.strerror}") from None


def _write_claim(path: Path, made: list[Path]) -> None:
    """Mark ``path`` as claimed, listing the folders made for it. Made and filled at once or
    not at all: an empty claim left by a full disk made the folder 'not empty' for good."""
    try:
        write_new(path / CLAIM, "".join(f"{p}\n" for p in made))
    except OSError as exc:
        if not isinstance(exc, FileExistsError):  # (that one: another run claimed it)
            remove_empty_dirs(made)  # a full disk: the folders made for it go too
        raise


def _names_this_process(text: str) -> bool:
    """Whether a lock's ``text`` names this host and this pid."""
    host, _, rest = _holder(text).partition(" ")
    return host == socket.gethostname() and rest.split()[:1] == [str(os.getpid())]


def _holder(text: str) -> str:
    """A lock's first line, ``HOST PID START``: who holds it."""
    return (text.strip().splitlines() or [""])[0].strip()


def batch_job() -> str | None:
    """This process's batch job and which run of it this is, ``JOB.RESTART`` (Slurm's
    ``SLURM_JOB_ID`` and ``SLURM_RESTART_COUNT``, 0 before a requeue), or None outside one."""
    job = os.environ.get("SLURM_JOB_ID", "").strip()
    if not job or any(c.isspace() for c in job):
        return None
    restart = os.environ.get("SLURM_RESTART_COUNT", "").strip() or "0"
    return f"{job}.{restart}" if restart.isdigit() else None


def _earlier_run_of_this_job(text: str) -> bool:
    """Whether a lock was written by an earlier run of this very batch job: Slurm requeues
    a job (preempted, its node failed) only once that run has ended, so its lock is stale
    whatever host it names. A requeued job landing on another node was refused for good."""
    mine = batch_job()
    theirs = next(
        (w[1] for w in map(str.split, text.splitlines()[1:]) if len(w) == 2 and w[0] == "job"),
        None,
    )
    if mine is None or theirs is None:
        return False
    (job, _, restart), (their_job, _, their_restart) = mine.partition("."), theirs.partition(".")
    return job == their_job and their_restart.isdigit() and int(their_restart) < int(restart)


def _busy(path: Path) -> ConfigError:
    """The error for a run folder that cannot be claimed, saying what holds it (looked at
    when it is raised: a folder claimed by a run starting at this moment has its claim, and
    no lock or config yet, and was called 'no run: empty it')."""
    if RunLock(path).taken():
        how = "(a process is training it now)"
    elif (path / "checkpoints" / "last.pt").is_file():
        how = f"or continue it with --resume {path}"
    elif (path / "config.yaml").is_file():
        how = "or remove it (a run that stopped before its first checkpoint: nothing to resume)"
    elif (path / CLAIM).is_file() and not run_dir_is_stale_start(path):
        how = "(another run is starting in it now)"
    else:
        how = "or empty it (it is no run: nothing to resume)"
    return ConfigError(
        f"run directory {path} already exists and is not empty; choose another --out {how}"
    )


def _claim(path: Path) -> Path:
    path = Path(os.path.normpath(path))  # "a/../b" is b: mkdir would make a/ too
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file; give a folder for the run")
    try:
        made = make_dirs(path)
    except FileExistsError:
        made = []
        if holds_files(path):
            if not run_dir_is_stale_start(path):
                raise _busy(path) from None
            # A start killed while building (kill -9, out of memory): take the folder over,
            # through its lock, so that one process does (held on for the run's own lock).
            lock = RunLock(path)
            try:
                lock.acquire()
            except ConfigError:
                raise _busy(path) from None
            try:
                if not run_dir_is_stale_start(path):  # another process took it first
                    lock.release()  # (said as the folder is without this process's lock)
                    raise _busy(path)
                (path / CLAIM).unlink(missing_ok=True)
                _write_claim(path, made)
            except BaseException:
                lock.release()
                raise
            _CLAIMED[os.path.abspath(lock.path)] = lock
            return path
    try:
        _write_claim(path, made)
    except FileExistsError:  # another run claimed it a moment ago
        raise _busy(path) from None
    return path


def release_run_dir(path: Path) -> None:
    """Undo :func:`new_run_dir` for a run that failed before training: remove the mark, and
    the directories made for the run (``runs/`` too) that hold nothing else."""
    claimed = _CLAIMED.pop(os.path.abspath(path / RunLock.NAME), None)
    if claimed is not None:  # a lock taken over for the run, never adopted by it
        claimed.release()
    mark = path / CLAIM
    try:
        made = mark.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        mark.unlink()
    except OSError:
        return
    remove_empty_dirs(made)


def clear_unstarted(path: Path) -> bool:
    """Remove what a run that stopped before its first checkpoint (killed: SIGKILL, out of
    memory, a lost node) wrote in ``path``, when the folder holds nothing else and no live
    process holds its lock: such a folder could neither be resumed nor trained into again,
    so a requeued job's ``--auto-resume`` failed for good. False, and nothing removed,
    otherwise (a checkpoint, a file of anyone else's, a link)."""
    from edgegan.fileio import _dead_temp

    if not (path / "config.yaml").is_file() or RunLock(path).taken():
        return False
    top = {*RUN_FILES, "eval.json", CLAIM, RunLock.NAME}
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(path):
        here = Path(dirpath)
        where = here.relative_to(path).parts
        if where not in ((), ("samples",), ("checkpoints",), ("tensorboard",)):
            return False
        for name in dirnames + filenames:
            entry = here / name
            if entry.is_symlink():
                return False
            if name in dirnames:
                continue
            fine = (
                is_os_metadata(entry)
                or _dead_temp(entry)
                or (where == () and name in top)
                or (where == ("samples",) and name.endswith(".png"))
                or (where == ("tensorboard",) and name.startswith("events.out.tfevents."))
            )
            if not fine:
                return False
            files.append(entry)
    for entry in files:
        entry.unlink(missing_ok=True)
    remove_empty_dirs([path / "samples", path / "checkpoints", path / "tensorboard"])
    return True


def run_dir_is_stale_start(path: Path) -> bool:
    """Whether ``path`` holds only what a run's start leaves (its claim and lock) from a
    process that is gone, e.g. killed while it was being built."""
    names = {p.name for p in path.iterdir() if not is_os_metadata(p)}
    return names == {CLAIM, RunLock.NAME} and RunLock(path).stale()


#: seconds after which a lock (or claim) holding no owner is taken for a dead writer's
STALE_EMPTY_LOCK_S = 10.0


def _os_lock(fd: int) -> bool | None:
    """Lock the open file ``fd`` for this process without waiting (the system drops the lock
    when the process ends): True, False when another process holds it, or None where there
    are no such locks (Windows, whose locks also bar reading the file; a filesystem
    without them)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK, EOPNOTSUPP: no locks on this filesystem
        return None
    return True


#: The lock files this process holds open (and locked): closed in a forked child, whose copy
#: would otherwise hold a killed trainer's lock as long as its DataLoader workers lived
_LOCK_FDS: set[int] = set()


def _close_lock_fds_in_child() -> None:
    for fd in _LOCK_FDS:  # the parent's descriptions stay open, and locked, in the parent
        try:
            os.close(fd)
        except OSError:
            pass
    _LOCK_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_lock_fds_in_child)


#: Locks this process took over while claiming a folder (see ``_claim``), until its run's
#: own :class:`RunLock` adopts them: the lock is held without a gap from the takeover on.
_CLAIMED: dict[str, RunLock] = {}


def _open_lock(path: Path) -> int:
    """The lock file opened for reading and writing, refused when it is not a plain file: a
    link planted as the lock of a run from elsewhere (``.edgegan-lock -> ~/token``) had its
    target written over when the lock was taken over as stale."""
    refused = f"{path} is not a lock edgegan writes ({{}}): remove it, and check the run is yours"
    if path.is_symlink():
        raise ConfigError(refused.format("a link"))
    try:  # O_NOFOLLOW: nor a link made since
        fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(refused.format(exc.strerror or type(exc).__name__)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(refused.format("not a plain file"))
    return fd


class RunLock:
    """``RUN/.edgegan-lock`` while a process trains the run, so a second ``--resume`` of it
    (or one started while the run trains) is refused instead of writing into it too. A lock
    left by a process that died (same host, pid gone) is taken over.

    The holder also keeps the file locked by the system (``flock``, where there is one), so
    that taking over a dead process's lock is one process's act: two processes that found it
    stale at once could otherwise both remove it and both train the run."""

    NAME = ".edgegan-lock"

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / self.NAME
        self.held = False
        self._fd: int | None = None  # the open, system-locked lock file
        self._pid = os.getpid()  # the process that holds it

    def acquire(self) -> RunLock:
        claimed = _CLAIMED.pop(os.path.abspath(self.path), None)
        if claimed is not None and claimed.held:  # taken over by this process's claim
            fd, claimed._fd, claimed.held = claimed._fd, None, False
            self._hold(fd)
            return self
        job = batch_job()
        me = process_token() + (f"\njob {job}" if job else "")
        for _ in range(3):
            try:
                write_new(self.path, me + "\n")  # a full disk leaves no empty lock behind
            except FileExistsError:
                if self._take_over(me):
                    return self
                continue  # released, or removed where the system has no locks: again
            opened = _open_lock(self.path)
            # Another process may hold it a moment, reading it (alive: refused); wait.
            locked = None
            for _ in range(200):
                locked = _os_lock(opened)
                if locked is not False:
                    break
                time.sleep(0.01)
            if locked is None:  # no system locks (Windows cannot remove a file held open)
                os.close(opened)
            self._hold(None if locked is None else opened)
            return self
        raise ConfigError(f"cannot lock {self.path.parent} for training; try again")

    def _take_over(self, me: str) -> bool:
        """Take the existing lock if its writer is gone; False when it went meanwhile (try
        again); a ConfigError naming its owner when a live process holds it."""
        try:
            fd = _open_lock(self.path)
        except FileNotFoundError:
            return False
        owned: int | None = fd  # closed on the way out, unless it was closed or handed on
        try:
            locked = _os_lock(fd)
            if locked and not _same_file(fd, self.path):
                return False  # released (removed) before this process locked it
            text = os.read(fd, 4096).decode("utf-8", errors="replace")
            stale = self._stale_text(text, os.fstat(fd).st_mtime)
            if locked is False and stale and _names_this_process(text):
                if any(_same_file(held, self.path) for held in list(_LOCK_FDS)):
                    raise ConfigError(
                        f"{self.path.parent} is being trained by this process already (a "
                        "train() on another thread that has not returned)"
                    )
                # held by a live process that has this host name and pid: another container
                # (each runs edgegan as pid 1) sharing the folder; waiting does not help
                raise ConfigError(
                    f"{self.path.parent} is being trained by another process with this "
                    f"process's host name and pid ({_holder(text)}): another container sharing "
                    "the folder? Wait for it, or stop it and resume"
                )
            if locked is False and stale:  # its writer is gone, yet the lock is held
                raise ConfigError(
                    f"{self.path.parent}'s lock is being taken over by another process, or "
                    f"the DataLoader workers of the process that held it ({_holder(text)}) "
                    "still run; try again in a few seconds"
                )
            if locked is False or not stale:
                owner = " ".join(text.split()) or "?"
                raise ConfigError(
                    f"{self.path.parent} is being trained by another process ({owner}); "
                    f"wait for it, or stop it and resume (remove {self.path} if no process "
                    "holds it)"
                )
            if locked is None:  # no system locks: remove it and make a new one (closed
                os.close(fd)  # first: Windows cannot remove a file held open)
                owned = None
                self.path.unlink(missing_ok=True)
                return False
            # Written over in place: the file stays the one this process locked.
            os.ftruncate(fd, 0)
            os.pwrite(fd, (me + "\n").encode("utf-8"), 0)
            self._hold(fd)
            owned = None  # the lock's now
            return True
        finally:
            if owned is not None:
                os.close(owned)

    def _hold(self, fd: int | None) -> None:
        self._fd, self.held, self._pid = fd, True, os.getpid()
        if fd is not None:
            _LOCK_FDS.add(fd)

    def stale(self) -> bool:
        """Whether the process that wrote the lock is gone: same host, and its pid is dead,
        is this process (a container restarted as pid 1 again), or belongs to a process
        started at another time (the pid was reused)."""
        try:
            text = self.path.read_text(encoding="utf-8")
            mtime = self.path.stat().st_mtime
        except OSError:
            return False  # unreadable (or gone): respect it
        return self._stale_text(text, mtime)

    @staticmethod
    def _stale_text(text: str, mtime: float) -> bool:
        try:
            host, pid, *start = _holder(text).split()
            if host != socket.gethostname():
                # another machine's process: cannot tell, so respect it, unless it was an
                # earlier run of this batch job (requeued, on another node)
                return _earlier_run_of_this_job(text)
            if int(pid) == os.getpid():
                return True
            if pid_gone(pid):
                return True
        except ValueError:  # empty or garbled: its writer died between making and filling
            # it (a full disk, kill -9), unless it is filling it this very moment
            return time.time() - mtime > STALE_EMPTY_LOCK_S
        if not start:  # written where the start time could not be told
            return False
        now = process_started(int(pid))
        return bool(now and start[0] != now)

    def taken(self) -> bool:
        """Whether another live process holds the lock (trains the run now)."""
        return not self.held and self.path.is_file() and not self.stale()

    def release(self) -> None:
        if self.held:
            # Removed before it is unlocked: a process waiting on this file finds another
            # one (or none) at the path once it gets it, and starts again. Not when the
            # path holds another file now (removed by hand, and another run's since).
            if self._pid != os.getpid():  # a forked child's copy: the parent's lock
                self._fd, self.held = None, False
                return
            if self._fd is None or _same_file(self._fd, self.path):
                self.path.unlink(missing_ok=True)
            if self._fd is not None:
                _LOCK_FDS.discard(self._fd)
                os.close(self._fd)
                self._fd = None
            self.held = False


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


class MetricsLog:
    """Appends one JSON object per line; a resumed run appends to the same file.

    ``upto``: the step a resumed run restarts from. Records of later steps (logged after
    the checkpoint it resumes, before a crash) are dropped first, so the resumed run does not
    log those steps twice.
    """

    def __init__(self, path: Path, upto: int | None = None) -> None:
        self.path = path
        if path.is_symlink():  # appending would write where the link points, outside the run
            text = path.read_bytes() if path.is_file() else b""
            atomic_write(path, lambda f: f.write(text))  # a file of its own, same records
        if upto is not None and path.is_file():
            _keep_records_through(path, upto)
        self._f = open(path, "a", buffering=1, encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        clean = {
            k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
            for k, v in record.items()
        }
        try:
            self._f.write(json.dumps(clean) + "\n")
        except OSError as exc:  # a file object's error names no file: say which
            if exc.filename is None:
                exc.filename = str(self.path)
            raise

    def close(self) -> None:
        self._f.close()


def _keep_records_through(path: Path, step: int) -> None:
    """Cut ``path`` after its last record of a step up to ``step``: the records of later
    steps go, and a last line a crash cut short. The records are in step order, so only the
    file's tail is read (a resume read and parsed the whole log: 126 MB took 3.5 s and 400 MB
    more), and the file is truncated in place (a rewrite needed free space for all of it)."""
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        cut = 0  # no record of a step through ``step``: nothing is kept
        for offset, line in _lines_backwards(f, end):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # cut short, or nested past Python's limit
                continue
            logged = record.get("step") if isinstance(record, dict) else None
            if not isinstance(logged, (int, float)) or logged <= step:
                cut = offset + len(line) + 1  # through its newline
                break
        if cut > end:  # the record kept is the last line, without its newline
            f.write(b"\n")
        elif cut < end:
            f.truncate(cut)


def _lines_backwards(f: Any, end: int, block: int = 1 << 16) -> Iterator[tuple[int, bytes]]:
    """``(offset, line)`` of the lines of the binary file ``f`` before ``end``, the last
    first, each without its newline."""
    pos, rest = end, b""
    while pos > 0:
        size = min(block, pos)
        pos -= size
        f.seek(pos)
        parts = (f.read(size) + rest).split(b"\n")
        rest = parts[0]  # its start may lie before ``pos``
        offset = pos + len(rest) + 1
        lines = []
        for part in parts[1:]:
            lines.append((offset, part))
            offset += len(part) + 1
        yield from reversed(lines)
    yield 0, rest


def _is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal: False for None (pythonw, an embedding host), an
    object that only writes (a notebook's or a logger's stand-in) or a closed stream."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class ProgressBar:
    """A rich progress bar with ETA on a terminal; periodic plain lines otherwise (CI logs)."""

    def __init__(
        self, total: int, start: int, enabled: bool, description: str, unit: str = "step"
    ) -> None:
        self.enabled = enabled
        self.total, self.description, self.unit = total, description, unit
        self._bar = None
        self._last_line = 0.0
        self._t0, self._s0 = time.monotonic(), start
        self._last_step = start
        if not enabled:
            return
        if _is_terminal(sys.stderr):
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                transient=False,
                console=Console(stderr=True),  # stdout is the command's result
            )
            self._task = self._bar.add_task(description, total=total, completed=start, info="")
            self._bar.start()

    def update(self, step: int, info: str = "") -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=info)
            return
        now = time.monotonic()
        if now - self._last_line >= 30 or step == self.total:
            # The rate since the previous line, not since the start: the first steps of a
            # compiled run take minutes and would inflate every later estimate.
            if self._last_line:
                rate = (step - self._last_step) / max(now - self._last_line, 1e-9)
            else:
                rate = (step - self._s0) / max(now - self._t0, 1e-9)
            self._last_line, self._last_step = now, step
            eta = (self.total - step) / rate if rate > 0 else float("inf")
            eta_s = "?" if not math.isfinite(eta) else f"{eta / 60:.1f} min"
            if math.isfinite(eta) and eta >= 7200:
                eta_s = f"{eta / 3600:.1f} h"
            line = f"{self.description}: {self.unit} {step}/{self.total}  eta {eta_s}  {info}"
            self._print(line.rstrip())

    def note(self, text: str, always: bool = False) -> None:
        """One line of status above the bar (or among the plain lines); ``always``: on
        stderr also when progress is off (what a failed run kept, and how to go on)."""
        if not self.enabled and not always:
            return
        line = f"{self.description}: {text}"
        if self._bar is None:
            self._print(line)
            return
        try:
            self._bar.console.print(line, markup=False, highlight=False)
        except BlockingIOError:  # as in _print
            pass
        except (OSError, ValueError):
            self.enabled = False

    def _print(self, line: str) -> None:
        if not stderr_line(line):
            self.enabled = False

    def close(self) -> None:
        if self._bar is not None:
            bar, self._bar = self._bar, None
            try:
                bar.stop()  # redraws the bar a last time
            except OSError:  # the terminal closed (SIGHUP), ...: the run's work goes on
                pass
