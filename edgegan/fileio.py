"""Output files and folders: atomic writes (a crash or Ctrl-C mid-write never leaves a
half-written file behind), ``--out`` folders that never clobber earlier files, and what a
failed run takes back."""

from __future__ import annotations

import errno
import glob
import json
import math
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

from edgegan.errors import EdgeganError


def atomic_write(
    path: str | Path,
    write: Callable[[BinaryIO], object],
    fsync: bool = True,
    follow_symlinks: bool = False,
) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, then rename it over
    ``path``. The file gets the usual permissions (umask), unlike ``tempfile.mkstemp``'s
    0600. ``fsync=False`` skips the fsync (about 1 ms a file) where many small files are
    written: a crashed or killed process still leaves the old file or the new one, whole;
    only a power cut may lose the newest.

    A symlink ``path`` is replaced by the file, and what it pointed to is left alone: a run
    or bundle folder may come from elsewhere, and a link in it (``report.md ->
    ~/.bashrc``) must not make edgegan write outside it. ``follow_symlinks=True`` writes
    the link's target instead, for paths the user chose (``--json FILE``)."""
    given = path = Path(path)
    if follow_symlinks and path.is_symlink():  # as open() would
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = None
    try:
        fd, tmp = _create_new(path)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        replace(tmp, path)
    except OSError as exc:
        # a full disk's write names no file ("error: No space ..."); a folder at ``path``, or
        # one that cannot be written, named the hidden temporary file, not the user's path
        temp = Path(str(exc.filename)).name
        if exc.filename is None or (temp.startswith(f".{path.name}.") and temp.endswith(".tmp")):
            exc.filename, exc.filename2 = str(given), None
        raise
    except RuntimeError as exc:
        # torch.save's zip writer turns the full disk's OSError into "[enforce fail at
        # inline_container.cc] unexpected pos": a traceback of 40 lines. Give the OSError.
        cause = _os_error_behind(exc)
        if cause is None:
            raise
        if cause.filename is None:
            cause.filename = str(given)
        raise cause from None
    finally:
        if tmp is not None and (tmp.is_symlink() or tmp.exists()):
            tmp.unlink()
    return given


#: Opens a new file and never through a link (where the system has O_NOFOLLOW).
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def temp_path(path: Path) -> Path:
    """A temporary name beside ``path``: ``.NAME.PID-RANDOM.tmp``. The pid says whose it is
    (:func:`remove_dead_temps`); the random part keeps apart two writers with one pid, as
    containers sharing a volume each run edgegan as pid 1 (with the pid alone, each took the
    other's half-written file for a dead one's, removed it and published its own)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _create_new(path: Path) -> tuple[int, Path]:
    """A new temporary file beside ``path`` (usual permissions) opened for writing, and its
    name. Never opened through a link: one planted under a temporary name in a run or bundle
    from elsewhere (``.report.md.1-ab12cd34.tmp -> ~/x``) would be written through and
    renamed over the real name; another name is drawn instead."""
    flags = _NEW_FILE | getattr(os, "O_BINARY", 0)
    for _ in range(8):
        tmp = temp_path(path)
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "cannot make a temporary file beside it", str(path))


def shell_word(text: str, placeholder: str = "VALUE") -> str:
    """``text`` as one word of a command to copy. POSIX shells: single-quoted where needed
    (nothing inside is expanded). Windows: double-quoted where needed, which cmd.exe and
    PowerShell both read; a value holding what either would still expand there (``%``,
    ``!``, ``$``, a backquote, a double quote) is printed as ``placeholder`` instead, so a
    command built from a bundle's metadata cannot run what the metadata holds."""
    if not _WINDOWS:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a name's bytes that are not UTF-8 (or the locale's)
            try:
                return _bytes_word(os.fsencode(text))
            except UnicodeEncodeError:  # a lone surrogate no file name decodes to
                return placeholder
        return shlex.quote(text)
    if any(c in text for c in '%!$`"\n\r'):
        return placeholder
    return f'"{text}"' if not text or any(c in text for c in " \t&|<>^();,='") else text


def _bytes_word(raw: bytes) -> str:
    """``raw`` as bash's (and zsh's, ksh's) ``$'...'`` word: the bytes of a file name that
    no quoting of its text can give back (printed, ``'run\\udcff'`` was a literal backslash)."""
    return (
        "$'"
        + "".join(chr(b) if 32 <= b < 127 and b not in (39, 92) else f"\\x{b:02x}" for b in raw)
        + "'"
    )


def shell_path(path: str | Path, placeholder: str = "PATH") -> str:
    """:func:`shell_word` of a path, a relative one starting with ``-`` written ``./-x`` (it
    read as an option)."""
    text = str(path)
    if text.startswith("-"):
        text = f"./{text}"
    return shell_word(text, placeholder)


#: seconds between the tries of :func:`replace` on Windows (about 2 s in all)
REPLACE_RETRY_S = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8)


def same_path(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name one file or folder: the same resolved path, or, where
    both exist, the same one on disk (on macOS and Windows ``Photos`` is ``photos``)."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def ignores_case(path: str | Path) -> bool:
    """Whether the filesystem ``path`` is on (or would be made on) ignores the case of names,
    as macOS' and Windows' do by default: asked of the nearest existing folder with a cased
    letter in its name, which is found under its name in the other case too."""
    for folder in (Path(path), *Path(path).parents):
        folder = folder.absolute()
        if not folder.name:  # a root (/, D:\): no name to swap (with_name raised)
            break
        swapped = folder.with_name(folder.name.swapcase())
        if folder.exists() and swapped != folder:
            return swapped.exists() and same_path(folder, swapped)
    # nothing to ask (no cased name up to the root: D:\translated): the system's default
    return sys.platform in ("win32", "darwin")


def replace(src: str | Path, dst: str | Path) -> None:
    """``os.replace``; on Windows tried again for a while on PermissionError: a file another
    process has open (``edgegan export`` reading ``last.pt`` while the run trains, a virus
    scanner or indexer opening the new file) cannot be replaced or renamed there until it is
    closed, and a checkpoint that could not be written stopped the run."""
    for wait in (*REPLACE_RETRY_S, None) if _WINDOWS else (None,):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if wait is None:
                raise
            time.sleep(wait)


def _os_error_behind(exc: BaseException) -> OSError | None:
    """The first OSError in ``exc``'s chain of causes and contexts."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, OSError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks (graphs and plans run large)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def strict_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None``: Python's ``json`` writes
    them as ``NaN``/``Infinity``, which are not JSON (jq, JavaScript and Go refuse the file)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any, follow_symlinks: bool = False, **dumps: Any) -> Path:
    """``obj`` as indented, strict JSON (non-finite numbers as ``null``) at ``path``,
    atomically (a crash leaves the old file; symlinks as :func:`atomic_write`)."""
    text = json.dumps(strict_json(obj), indent=2, allow_nan=False, **dumps) + "\n"
    return atomic_write(
        path, lambda f: f.write(text.encode("utf-8")), follow_symlinks=follow_symlinks
    )


def check_not_empty(out: str | Path) -> None:
    """``--out ''`` (an unset variable) means no folder, not the current one."""
    if isinstance(out, str) and not out.strip():
        raise EdgeganError("--out is empty; name a folder")


def check_writable(path: str | Path, flag: str, folder: bool = False, beside: bool = False) -> None:
    """What writing ``path`` needs can be written, checked before the work that fills it (a
    read-only place used to fail it at its end, naming a temporary file): an existing
    ``folder`` itself (its files go inside); else the nearest existing folder above ``path``
    (a file is written beside itself, a new folder made there). ``beside``: that folder too,
    for a folder put in place by renaming (an export's bundle)."""
    path = Path(path)
    # a link is written through (atomic_write writes beside its target): check there
    real = Path(os.path.realpath(path)) if path.is_symlink() else path
    inside = folder and real.is_dir()
    places = [real] if inside else []
    if beside or not inside:
        places.append(next((p for p in real.parents if p.exists()), Path(".")))
    for place in places:
        why = _unwritable(place)
        if why is not None:
            raise EdgeganError(f"{flag} {path}: {place} is not writable ({why})")


def _unwritable(place: Path) -> str | None:
    """Why files cannot be made in the folder ``place``, or None when they can."""
    # os.access says yes to root on a read-only mount or in /proc, and no without the
    # reason (a read-only mount was "permission denied"): make a file there, an unnamed
    # one where the system has them (nothing left behind, none seen)
    try:
        with tempfile.TemporaryFile(dir=place, prefix=".edgegan-probe-"):
            pass
        return None if os.access(place, os.W_OK | os.X_OK) else "permission denied"
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()


def check_default_root(root: str | Path) -> None:
    """The default output folder ``root`` (``runs``, made in the working folder when no
    ``--out`` is given) can be made or written in. Said with where that is and what to do:
    a read-only working folder said only "Permission denied: runs"."""
    root = Path(root)
    place = root if root.is_dir() else next((p for p in root.parents if p.exists()), Path("."))
    if not place.is_dir():  # a file named runs: what makes it says so
        return
    why = _unwritable(place)
    if why is not None:
        where = f"{root}/" if root.is_absolute() else f"{root}/ in {Path.cwd()}"
        raise EdgeganError(
            f"no --out given, and the default folder {where} cannot be written ({why}): "
            "pass --out DIR"
        )


def check_out_dir(out: str | Path, overwrite: bool = False, beside: bool = False) -> Path:
    """``out`` must be new or empty, unless ``overwrite``: a run never clobbers earlier files.
    Checked before the work too, so a long sampling run is not refused at its end; and it
    must be writable (``beside``: the folder it is in too, see :func:`check_writable`)."""
    check_not_empty(out)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EdgeganError(f"--out {out} exists and is not a directory")
    if not out.exists():
        parent = next((p for p in out.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():  # mkdir would say "File exists"
            raise EdgeganError(f"--out {out}: {parent} is not a directory")
    check_writable(out, "--out", folder=True, beside=beside)
    if out.exists() and not overwrite and holds_files(out):
        raise EdgeganError(f"--out {out} is not empty; choose another folder or pass --overwrite")
    return out


#: Files the desktop makes in folders it shows (Finder, Explorer): no one's results.
OS_METADATA = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", ".localized"})


def holds_files(folder: str | Path) -> bool:
    """Whether ``folder`` holds anything but the desktop's metadata (``.DS_Store``, macOS'
    ``._*`` files on FAT and network disks, ``Thumbs.db``) and killed writers' temporary
    files: a folder that looks empty (``ls``) counts as empty."""
    return any(
        not (is_os_metadata(p) or _dead_temp(p) or p.name.startswith(f".{WRITING}."))
        for p in Path(folder).iterdir()
    )


def _mark_text(path: Path) -> str:
    """What a writer's mark says (``host pid start``), or "" when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _mark_gone(path: Path) -> bool:
    """Whether the writer that made the mark ``path`` (of :meth:`NewFiles.claim`) is gone:
    of this host, its pid is gone or is another process now (its start differs; a container
    restarted runs edgegan as pid 1 again). Another host's, or one that cannot be told, is
    taken for live."""
    host, pid, start = (_mark_text(path).split() + ["", "", ""])[:3]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) != os.getpid() and pid_gone(pid):
        return True
    now = process_started(int(pid))
    return bool(now and start and start != now)


def is_os_metadata(path: Path) -> bool:
    """Whether ``path`` is a file the desktop made (:data:`OS_METADATA`, or an AppleDouble
    ``._NAME`` beside a file; not a temporary file of ours named so)."""
    if path.name in OS_METADATA:
        return True
    return path.name.startswith("._") and not path.name.endswith(".tmp") and path.is_file()


#: a temporary name of :func:`temp_path` (``.NAME.PID-RANDOM.tmp``), or of the versions
#: before it (``.NAME.PID.tmp``); nothing looser: ``.notes.2024-05.tmp`` is a user's file
_TEMP_NAME = re.compile(r"\..+\.(\d+)(?:-[0-9a-f]{8})?\.tmp")


def _temp_pid(name: str) -> str | None:
    """The pid in a temporary name of ours, or None for any other name."""
    match = _TEMP_NAME.fullmatch(name)
    return match.group(1) if match else None


def _dead_temp(path: Path, own: bool = False) -> bool:
    """A temporary file of :func:`atomic_write` whose process is gone (killed mid-write): a
    folder holding only those looks empty (``ls``) and is (they are not results). ``own``:
    one named with this process's pid counts too (see :func:`remove_dead_temps`)."""
    pid = _temp_pid(path.name)
    if pid is None:
        return False
    return (own and int(pid) == os.getpid()) or pid_gone(pid)


def remove_dead_temps(folder: str | Path) -> list[Path]:
    """Remove the temporary files that killed writers left in ``folder`` (its own files, not
    its subfolders'); the paths removed. Only for a folder this process holds (a run under
    its lock) and writes nothing into now: one named with this process's pid is a previous
    process's too (a container restarted runs edgegan as pid 1 again; each kill left one
    more half-written checkpoint). The pid in a name is checked on this host."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        if path.is_file() and _dead_temp(path, own=True):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_new(path: Path, text: str) -> None:
    """Create ``path`` holding ``text`` (FileExistsError when it exists): made and filled, or
    not left at all. A lock or claim made, then left empty by a full disk or a kill, blocked
    its run for good."""
    # surrogateescape: paths in it that are not UTF-8 (legal on Linux) are written as their
    # bytes, and read back so (a claim listing them raised, and was left empty for good)
    with open(path, "x", encoding="utf-8", errors="surrogateescape") as f:
        try:
            f.write(text)
            f.flush()
        except BaseException:
            path.unlink(missing_ok=True)
            raise


def left_by_gone(folder: Path, stem: str) -> list[Path]:
    """The entries of ``folder`` named ``stem`` + a pid whose process (of this host) is gone,
    sorted: what a killed process left (a half-made bundle, a bundle it set aside)."""
    found = []
    for path in folder.glob(glob.escape(stem) + "*"):
        pid = path.name[len(stem) :]
        if pid.isdigit() and pid_gone(pid):
            found.append(path)
    return sorted(found)


def pid_gone(pid: str | int) -> bool:
    """Whether the process ``pid`` (a temporary name's, of this host) has ended; False for
    this process and for what is no pid."""
    if not str(pid).isdigit() or int(pid) in (0, os.getpid()):
        return False
    if _WINDOWS:
        return _windows_pid_gone(int(pid))
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: another user's live process
        return False
    # A zombie (killed, not yet reaped by its parent: a notebook's Popen) answers the probe
    # but will never run again.
    return _proc_state(int(pid)) == "Z"


def _proc_stat(pid: int, field: int) -> str | None:
    """Field ``field`` of /proc/PID/stat (Linux) counted after the command name (0: the
    state letter, 19: the start time), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        return stat.rsplit(")", 1)[1].split()[field]
    except (OSError, IndexError):
        return None


def _proc_state(pid: int) -> str | None:
    """Process ``pid``'s state letter from /proc (Linux), or None."""
    return _proc_stat(pid, 0)


def process_token() -> str:
    """``HOST PID START``: this process, as a lock or a writer's mark names it (the start
    tells a pid reused, as by a restarted container's pid 1, from its first owner)."""
    return f"{socket.gethostname()} {os.getpid()} {process_started(os.getpid()) or ''}".rstrip()


def process_started(pid: int) -> str | None:
    """When process ``pid`` started, as a token that with the pid names one process even
    after the pid is reused (a reboot, a wrap-around), or None where it cannot be told:
    clock ticks since boot from /proc on Linux, the creation time on Windows, ``ps``'s
    start time on macOS."""
    if _WINDOWS:
        return _windows_started(pid)
    return _proc_started(pid) or (_ps_started(pid) if sys.platform == "darwin" else None)


def _proc_started(pid: int) -> str | None:
    return _proc_stat(pid, 19)


def _ps_started(pid: int) -> str | None:
    try:
        # lstart is local time in the locale's words: the same zone and locale for every
        # process that compares them (another TZ took a live run's lock for a stale one)
        env = {**os.environ, "TZ": "UTC0", "LC_ALL": "C"}
        ps = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True,
                            text=True, timeout=10, env=env)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return "".join(ps.stdout.split()) or None  # one word: a lock's line splits on spaces


_WINDOWS = sys.platform == "win32"
# Windows API constants (winnt.h, winerror.h, minwinbase.h).
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_ERROR_INVALID_PARAMETER = 87  # OpenProcess's answer for a pid no process has
_STILL_ACTIVE = 259


@contextmanager
def _windows_process(pid: int, kernel32: Any) -> Iterator[Any]:
    """A query handle of process ``pid`` (closed after the block), or 0 when OpenProcess
    refuses it; ``kernel32`` is ctypes' or a stand-in in tests."""
    handle = kernel32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    try:
        yield handle
    finally:
        if handle:
            kernel32.CloseHandle(handle)


def _kernel32() -> Any:
    import ctypes

    return ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]


def _windows_started(pid: int, kernel32: Any = None) -> str | None:
    """:func:`process_started` on Windows: the process' creation time (GetProcessTimes, in
    100 ns units since 1601). ``kernel32`` stands in for ctypes' in tests."""
    import ctypes

    kernel32 = kernel32 or _kernel32()
    with _windows_process(pid, kernel32) as handle:
        # four FILETIMEs (two DWORDs each, low first: a little-endian 64-bit integer)
        times = [ctypes.c_uint64() for _ in range(4)]
        if not handle or not kernel32.GetProcessTimes(handle, *map(ctypes.byref, times)):
            return None
        return f"w{times[0].value}"


def _windows_pid_gone(pid: int, kernel32: Any = None, last_error: Any = None) -> bool:
    """:func:`pid_gone` on Windows, where ``os.kill(pid, 0)`` does not probe a process but
    terminates it (TerminateProcess): ask OpenProcess and GetExitCodeProcess instead.
    ``kernel32`` and ``last_error`` stand in for ctypes' in tests."""
    import ctypes

    if kernel32 is None:
        kernel32, last_error = _kernel32(), ctypes.get_last_error  # type: ignore[attr-defined]
    with _windows_process(pid, kernel32) as handle:
        if not handle:  # access denied: a live process of another user (or a protected one)
            return bool(last_error() == _ERROR_INVALID_PARAMETER)
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return False
        return code.value != _STILL_ACTIVE  # ended; its handle kept the pid from reuse


def prepare_out_dir(out: str | Path, overwrite: bool = False) -> Path:
    """:func:`check_out_dir`, then make the folder."""
    out = check_out_dir(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    return out


def missing_dirs(path: str | Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first: the folders
    ``path.mkdir(parents=True)`` will make, to take back if the work that needs them fails."""
    path, out = Path(path), []
    while not path.exists() and path != path.parent:
        out.append(path)
        path = path.parent
    return out


def make_dirs(path: str | Path, exist_ok: bool = False) -> list[Path]:
    """``path.mkdir(parents=True, exist_ok=exist_ok)`` that returns the folders this call
    made, deepest first, to take back if the work that needs them fails. A folder another
    process made first is not counted, and a parent another process removes meanwhile is
    made again: tasks of a job array started together each found ``runs/`` missing and took
    it for their own, and one that failed removed it from under another ("cannot make the
    run directory runs/seed6: No such file or directory")."""
    path = Path(path)
    made: list[Path] = []
    for _ in range(100):  # bounded: each retry follows a removal by another process
        try:
            for folder in [*reversed(missing_dirs(path.parent)), path]:
                try:
                    folder.mkdir()
                    made.append(folder)
                except FileExistsError:
                    if folder == path and not exist_ok:
                        raise
            break
        except FileNotFoundError:
            continue
    else:
        path.mkdir(exist_ok=exist_ok)  # what keeps failing, said by mkdir
    return [d for d in dict.fromkeys(reversed(made)) if d.is_dir()]  # (made again: once)


def remove_empty_dirs(dirs: list[Path] | list[str]) -> None:
    """Remove each of ``dirs`` that is an empty folder, deepest first (so a folder emptied by
    removing a deeper one goes too); anything else stays."""
    for d in sorted({Path(d) for d in dirs}, key=lambda p: -len(p.parts)):
        try:
            d.rmdir()
        except OSError:
            pass


#: the mark of a process writing into an output folder (``.edgegan-writing.PID-RANDOM.tmp``)
WRITING = "edgegan-writing"


def mark_writer(folder: Path) -> Path:
    """Mark ``folder`` as written into by this process (a ``.edgegan-writing.PID-RANDOM.tmp``
    file holding its host, pid and start) and return the mark; refused when another live
    process has marked it. The mark is made first and the others looked at after: of two
    writers at once, at most one goes on. A killed writer's mark is removed; one of another
    host (a container, a machine sharing the disk) is respected."""
    mark = temp_path(folder / WRITING)
    write_new(mark, process_token() + "\n")
    for other in sorted(folder.glob(f".{WRITING}.*")):
        if other == mark or not other.name.endswith(".tmp"):
            continue
        if _mark_gone(other):
            other.unlink(missing_ok=True)
            continue
        release_mark(mark)
        raise EdgeganError(
            f"--out {folder} is being written into by another process ({other.name}: "
            f"{_mark_text(other) or '?'}); wait for it, or choose another --out"
        )
    return mark


def release_mark(mark: Path) -> None:
    """Take back a :func:`mark_writer` mark, best effort: one that cannot be removed (a
    scanner holding it on Windows) is a dead writer's once this process ends."""
    with suppress(OSError):
        mark.unlink(missing_ok=True)


class NewFiles:
    """What a block of writes created, to take back if it fails: see :func:`undo_new_files`."""

    def __init__(self, root: Path | None) -> None:
        self.files: list[Path] = []
        self.dirs: list[Path] = [] if root is None else missing_dirs(root)
        self._mark: Path | None = None

    def claim(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Make the output folder ``folder`` (:func:`prepare_out_dir`) and mark it as written
        into by this process until the block ends (:func:`mark_writer`); refused, too, when
        it holds files (without ``overwrite``), looked at after the mark. Two ``infer`` into
        one ``--out`` both checked it empty, both wrote, and one's files silently replaced
        the other's."""
        folder = prepare_out_dir(folder, overwrite=True)  # (its emptiness is checked below)
        self._mark = mark_writer(folder)
        if not overwrite and holds_files(folder):  # filled since it was checked
            raise EdgeganError(
                f"--out {folder} is not empty; choose another folder or pass --overwrite"
            )
        return folder

    def release(self) -> None:
        """Take back the mark of :meth:`claim`."""
        if self._mark is not None:
            release_mark(self._mark)
            self._mark = None

    def file(self, path: str | Path) -> Path:
        """Call before writing ``path``: it is this run's to remove unless it was there
        already (``--overwrite`` replaces it; removing it would lose it). Returns ``path``."""
        path = Path(path)
        if not path.exists():
            self.files.append(path)
        return path

    def folder(self, path: str | Path) -> Path:
        """Call before making folder ``path`` (and its parents)."""
        self.dirs += missing_dirs(path)
        return Path(path)

    def remove(self) -> None:
        for path in self.files:
            path.unlink(missing_ok=True)
        remove_empty_dirs(self.dirs)


@contextmanager
def undo_new_files(root: str | Path | None) -> Iterator[NewFiles]:
    """A block that writes under ``root`` and records what it creates with the yielded
    :class:`NewFiles`: if the block raises (Ctrl-C included), those files go, and the folders
    it made (``root`` too; None: the block records its folders itself) if they are left
    empty; then the error goes on, even if taking back fails. Only what the block recorded
    is touched, never files others write there meanwhile, so a failed run neither loses
    earlier files nor leaves a partial result that looks whole."""
    new = NewFiles(None if root is None else Path(root))
    try:
        yield new
    except BaseException:
        new.release()  # before the files: the folder made for them goes too when left empty
        try:
            new.remove()
        except BaseException:  # noqa: BLE001 - the block's error is the one to report
            pass
        raise
    new.release()
