"""Atomic writes: the old file survives a failed write, and permissions follow the umask."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgegan.fileio import atomic_write


def test_atomic_write_replaces_and_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "a.bin", lambda f: f.write(b"new"))
    finally:
        os.umask(old)
    assert path.read_bytes() == b"new"
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"precious")

    def boom(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, boom)
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_a_folder_in_the_files_place_is_named_not_the_temporary_file(tmp_path):
    """'error: Is a directory: out/.x.png.23417.tmp' named a file the user never made."""
    from edgegan.errors import os_error_line

    (tmp_path / "x.png").mkdir()
    with pytest.raises(OSError) as info:
        atomic_write(tmp_path / "x.png", lambda f: f.write(b"img"))
    assert os_error_line(info.value)[0].endswith(f": {tmp_path / 'x.png'}"), info.value
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"] and (tmp_path / "x.png").is_dir()


@pytest.mark.parametrize("error", [RuntimeError("unreadable image"), KeyboardInterrupt()])
def test_a_failed_block_takes_back_only_what_it_recorded(tmp_path, error):
    from edgegan.fileio import undo_new_files

    out = tmp_path / "a" / "b"
    with pytest.raises(type(error)), undo_new_files(out) as new:
        new.folder(out / "sub").mkdir(parents=True)
        new.file(out / "sub" / "x.png").write_bytes(b"1")
        raise error
    assert list(tmp_path.iterdir()) == []  # a/ and a/b/ were made by the block: gone too

    out.mkdir(parents=True)
    (out / "old").mkdir()
    (out / "old" / "keep.png").write_bytes(b"earlier")
    (out / "replaced.png").write_bytes(b"earlier")
    with pytest.raises(type(error)), undo_new_files(out) as new:
        new.file(out / "old" / "new.png").write_bytes(b"1")
        new.file(out / "replaced.png").write_bytes(b"overwritten")  # --overwrite: not ours
        new.folder(out / "deep" / "er").mkdir(parents=True)
        new.file(out / "deep" / "er" / "y.png").write_bytes(b"1")
        (out / "theirs.png").write_bytes(b"another process's")  # never recorded: stays
        raise error
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == ["old", "old/keep.png", "replaced.png", "theirs.png"]

    with undo_new_files(out) as new:  # no error: everything stays
        new.file(out / "z.png").write_bytes(b"1")
    assert (out / "z.png").exists()


def test_the_blocks_error_survives_a_failing_cleanup(tmp_path, monkeypatch):
    from edgegan.fileio import NewFiles, undo_new_files

    def broken(self):
        raise OSError("read-only file system")

    monkeypatch.setattr(NewFiles, "remove", broken)
    with pytest.raises(KeyboardInterrupt), undo_new_files(tmp_path / "o"):
        raise KeyboardInterrupt


def test_write_json_writes_strict_json(tmp_path):
    import json

    from edgegan.fileio import write_json

    obj = {"a": float("nan"), "b": [1.5, float("-inf"), {"c": float("inf")}], "d": (1, "x")}
    text = write_json(tmp_path / "r.json", obj).read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.5, None, {"c": None}], "d": [1, "x"]}


def test_an_out_dir_under_a_file_is_one_clear_line(tmp_path):
    from edgegan.errors import EdgeganError
    from edgegan.fileio import check_out_dir

    (tmp_path / "f").write_text("keep")
    for out in (tmp_path / "f" / "x", tmp_path / "f" / "x" / "y"):
        with pytest.raises(EdgeganError, match=f"^--out {out}: {tmp_path / 'f'} is not a dir"):
            check_out_dir(out)
    assert (tmp_path / "f").read_text() == "keep"
    assert check_out_dir(tmp_path / "new" / "x") == tmp_path / "new" / "x"


def test_unwritable_places_and_an_empty_out_are_refused_before_the_work(tmp_path, monkeypatch):
    """As root (CI), permissions do not stop writes: os.access stands in for a read-only
    folder. The work used to run in full, then fail naming a temporary file."""
    from edgegan.errors import EdgeganError
    from edgegan.fileio import check_out_dir
    from edgegan.scripting import check_json_path

    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != ro and real(p, mode))
    for path in (ro / "r.json", ro / "sub" / "r.json"):
        with pytest.raises(
            EdgeganError, match=f"--json {path}: {ro} is not writable \\(permission denied\\)$"
        ):
            check_json_path(path)
    for out in (ro, ro / "b"):
        with pytest.raises(
            EdgeganError, match=f"--out {out}: {ro} is not writable \\(permission denied\\)$"
        ):
            check_out_dir(out)
    assert check_json_path(tmp_path / "r.json") == tmp_path / "r.json"
    # A writable folder in a read-only one (a container's output mount): infer writes inside
    # it, so it is fine; an export renames its bundle into place beside it, so it is not.
    mount = ro / "out"
    mount.mkdir()
    assert check_out_dir(mount) == mount
    with pytest.raises(
        EdgeganError, match=f"--out {mount}: {ro} is not writable \\(permission denied\\)$"
    ):
        check_out_dir(mount, beside=True)
    with pytest.raises(EdgeganError, match="--out is empty"):
        check_out_dir("")
    # a read-only mount is said to be one (os.access says no without a reason)
    import errno
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(EdgeganError, match=r"is not writable \(read-only file system\)$"):
        check_json_path(ro / "r.json")


@pytest.mark.parametrize("command", ["export", "import"])
def test_an_empty_out_is_refused_by_every_command_that_writes_one(tmp_path, monkeypatch, command):
    """export took --out '' (an unset variable) for the current folder, import said
    '--out  is not empty'; train and infer refused it already."""
    from click.testing import CliRunner

    from edgegan.cli import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("the current folder holds files")
    res = CliRunner().invoke(cli, [command, "some-run", "--out="])
    assert res.exit_code == 2 and res.stderr == "error: --out is empty; name a folder\n"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_place_that_takes_no_file_is_refused_even_where_os_access_says_yes(tmp_path, monkeypatch):
    """/proc (or a read-only mount, for root) passes os.access: train, export and infer
    failed at their first write naming the path, or a temporary file, not the option."""
    from edgegan.errors import EdgeganError
    from edgegan.fileio import check_out_dir
    from edgegan.scripting import check_json_path
    from edgegan.train.logs import new_run_dir

    monkeypatch.setattr(os, "access", lambda *args: True)  # as for root, whoever runs this
    link = tmp_path / "link.json"  # --json through a link: written beside the link's target
    link.symlink_to("/proc/nope.json")
    with pytest.raises(EdgeganError, match=f"^--json {link}: /proc is not writable \\("):
        check_json_path(link)
    link.unlink()

    out = Path("/proc/edgegan-test-out")
    for check in (
        check_out_dir,
        lambda o: check_out_dir(o, beside=True),
        lambda o: new_run_dir(o, "x"),
    ):
        with pytest.raises(EdgeganError, match=f"^--out {out}: /proc is not writable \\("):
            check(out)
    with pytest.raises(EdgeganError, match="^--json /proc/r.json: /proc is not writable \\("):
        check_json_path("/proc/r.json")
    assert not out.exists() and not list(tmp_path.iterdir())
    check_out_dir(tmp_path / "fine")  # the probe leaves nothing behind
    assert not list(tmp_path.iterdir())


def test_atomic_write_writes_through_a_symlink_only_when_asked(tmp_path, monkeypatch):
    """A linked file (a --json FILE the user chose) keeps its link with follow_symlinks;
    otherwise the link is replaced and its target left alone: a run
    folder from elsewhere holding `report.md -> ~/.bashrc` had `train --resume` rewrite the
    user's .bashrc with text taken from the folder's config."""
    shared = tmp_path / "shared.cache"
    shared.write_bytes(b"old")
    link = tmp_path / "bundle" / "timing.cache"
    link.parent.mkdir()
    link.symlink_to(shared)
    assert atomic_write(link, lambda f: f.write(b"new"), follow_symlinks=True) == link
    assert link.is_symlink() and shared.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "shared.cache"]
    assert atomic_write(link, lambda f: f.write(b"mine")) == link
    assert not link.is_symlink() and link.read_bytes() == b"mine"
    assert shared.read_bytes() == b"new"  # untouched
    # a link planted under a temporary name is not written through and renamed over the real
    # name (the run's report ended in the link's target): another name is drawn
    import os

    import edgegan.fileio as fileio

    tokens = iter(["00000000", "11111111"])
    monkeypatch.setattr(fileio.secrets, "token_hex", lambda n: next(tokens))
    report = tmp_path / "bundle" / "report.md"
    planted = tmp_path / "bundle" / f".report.md.{os.getpid()}-00000000.tmp"
    planted.symlink_to(shared)
    atomic_write(report, lambda f: f.write(b"report"))
    assert not report.is_symlink() and report.read_bytes() == b"report"
    assert shared.read_bytes() == b"new" and planted.is_symlink()  # not ours: left alone
    assert sorted(p.name for p in report.parent.iterdir()) == [
        planted.name,
        "report.md",
        "timing.cache",
    ]


def test_two_writers_with_one_pid_never_share_a_temporary_file(tmp_path, monkeypatch):
    """Containers sharing a volume each run edgegan as pid 1: with the pid alone in the
    temporary name, each removed the other's half-written file as a dead process's and one
    published the other's half, or lost its own."""
    import threading

    from edgegan.fileio import atomic_write

    target = tmp_path / "images.npz"
    started, both = threading.Barrier(2), []

    def writer(fill: bytes) -> None:
        def write(f):
            f.write(fill * 5000)
            started.wait(timeout=10)  # both temporary files exist at once, one pid
            f.write(fill * 5000)

        atomic_write(target, write)
        both.append(fill)

    threads = [threading.Thread(target=writer, args=(b,)) for b in (b"x", b"y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert sorted(both) == [b"x", b"y"]  # neither failed
    data = target.read_bytes()
    assert data in (b"x" * 10000, b"y" * 10000)  # one writer's whole file, never a mix
    assert [p.name for p in tmp_path.iterdir()] == ["images.npz"]  # no temporary left


class _FullDisk:
    """A file object whose disk fills after ``room`` bytes, as a write to a full tmpfs fails."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        self.room -= len(data)
        if self.room < 0:
            import errno

            raise OSError(errno.ENOSPC, "No space left on device")
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def test_a_full_disk_is_one_os_error_naming_the_file_and_keeps_the_old_one(tmp_path):
    """torch.save's zip writer hid the OSError behind "[enforce fail at inline_container.cc]
    unexpected pos": a 40-line traceback at a checkpoint on a full disk. And a write's
    ENOSPC names no file: the line read `error: No space left on device`."""
    import errno

    import torch

    from edgegan.errors import os_error_line

    path = tmp_path / "last.pt"
    path.write_bytes(b"good")
    state = {"w": torch.zeros(100_000)}
    for write in (
        lambda f: torch.save(state, _FullDisk(f, 50_000)),
        lambda f: _FullDisk(f, 10).write(b"x" * 100),
    ):
        with pytest.raises(OSError) as caught:
            atomic_write(path, write)
        assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
        assert os_error_line(caught.value)[0] == f"No space left on device: {path}"
        assert path.read_bytes() == b"good" and os.listdir(tmp_path) == ["last.pt"]


def test_an_out_dir_holding_only_a_killed_writes_temporary_file_counts_as_empty(tmp_path):
    """kill -9 during `infer --format npz` left `.images.npz.PID.tmp`: the folder looked
    empty (`ls`) but the next infer refused it as not empty."""
    import subprocess
    import sys

    from edgegan.errors import EdgeganError
    from edgegan.fileio import check_out_dir

    out = tmp_path / "o"
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (out / f".images.npz.{gone}.tmp").write_bytes(b"PK half")
    assert check_out_dir(out) == out
    (out / f".images.npz.{os.getppid()}.tmp").write_bytes(b"PK")  # a live writer's
    with pytest.raises(EdgeganError, match="is not empty"):
        check_out_dir(out)


def test_a_pid_is_never_signalled_on_windows(tmp_path, monkeypatch):
    """On Windows ``os.kill(pid, 0)`` terminates the process instead of probing it: asking
    whether a lock's (or a temporary file's) writer lives would have killed a training run.
    There the check asks OpenProcess and GetExitCodeProcess; stand-ins for kernel32 play
    Windows' answers here."""
    import ctypes
    import socket

    import edgegan.fileio as fileio
    from edgegan.train.logs import RunLock

    class Kernel32:
        def __init__(self, handle: int, exit_code: int = 259, error: int = 0):
            self.handle, self.exit_code, self.error, self.closed = handle, exit_code, error, 0

        def OpenProcess(self, access, inherit, pid):  # noqa: N802 (the Windows API's names)
            assert access == 0x1000 and inherit is False and pid == 4242
            return self.handle

        def GetExitCodeProcess(self, handle, ref):  # noqa: N802
            ctypes.cast(ref, ctypes.POINTER(ctypes.c_ulong)).contents.value = self.exit_code
            return 1

        def CloseHandle(self, handle):  # noqa: N802
            self.closed += 1

    def gone(k: Kernel32) -> bool:
        return fileio._windows_pid_gone(4242, k, lambda: k.error)

    alive = Kernel32(handle=7)
    assert not gone(alive) and alive.closed == 1  # STILL_ACTIVE
    assert gone(Kernel32(handle=7, exit_code=0))  # ended, its handle still open somewhere
    assert gone(Kernel32(handle=0, error=87))  # ERROR_INVALID_PARAMETER: no such process
    assert not gone(Kernel32(handle=0, error=5))  # ERROR_ACCESS_DENIED: it lives

    def kill(pid, sig):
        raise AssertionError(f"os.kill({pid}, {sig}) would terminate it on Windows")

    answers: list[int] = []
    monkeypatch.setattr(fileio, "_WINDOWS", True)
    monkeypatch.setattr(fileio.os, "kill", kill)
    monkeypatch.setattr(fileio, "_windows_pid_gone", lambda pid: answers.append(pid) or False)
    lock = RunLock(tmp_path)
    lock.path.write_text(f"{socket.gethostname()} 4242\n")
    assert not lock.stale() and answers == [4242]
    assert not fileio.pid_gone("4242") and answers == [4242, 4242]


def test_a_file_held_open_on_windows_is_replaced_once_it_is_closed(tmp_path, monkeypatch):
    """Windows refuses to replace a file another process has open (export reading last.pt
    while the run trains; a virus scanner on the new file): PermissionError, and the run
    stopped. There the rename is tried again for about 2 s; elsewhere at once."""
    import edgegan.fileio as fileio

    real, calls = os.replace, []

    def held_twice(src, dst):
        calls.append(dst)
        if len(calls) <= 2:
            raise PermissionError(13, "The process cannot access the file", str(dst))
        real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", held_twice)
    monkeypatch.setattr(fileio, "REPLACE_RETRY_S", (0, 0, 0))
    path = tmp_path / "last.pt"
    path.write_bytes(b"old")
    with pytest.raises(PermissionError):  # not Windows: at once, the old file kept
        atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"old" and len(calls) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    monkeypatch.setattr(fileio, "_WINDOWS", True)
    calls.clear()
    atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and len(calls) == 3
    calls.clear()

    def held(src, dst):  # never closed: the error, after every try
        calls.append(dst)
        raise PermissionError(13, "The process cannot access the file", str(dst))

    monkeypatch.setattr(fileio.os, "replace", held)
    with pytest.raises(PermissionError):
        atomic_write(path, lambda f: f.write(b"newer"))
    assert path.read_bytes() == b"new" and len(calls) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_reused_pid_is_told_apart_by_its_start_time_on_every_system(tmp_path, monkeypatch):
    """A run killed by a reboot left its lock; after the reboot its pid names another
    process. Linux tells them apart by /proc's start time; Windows (where pids are reused
    soon) and macOS took the lock for a live run's until it was removed by hand. They ask
    GetProcessTimes and ps now."""
    import ctypes
    import shutil
    import socket
    import subprocess
    import sys

    import edgegan.fileio as fileio
    from edgegan.train.logs import RunLock

    class Kernel32:
        def __init__(self, created: int) -> None:
            self.created = created

        def OpenProcess(self, access, inherit, pid):  # noqa: N802 (the Windows API's names)
            return 7

        def GetProcessTimes(self, handle, created, exited, kernel, user):  # noqa: N802
            ctypes.cast(created, ctypes.POINTER(ctypes.c_uint64)).contents.value = self.created
            return 1

        def CloseHandle(self, handle):  # noqa: N802
            pass

    assert fileio._windows_started(4242, Kernel32(133_000_000_000_000_000)) == (
        "w133000000000000000"
    )
    if shutil.which("ps"):  # macOS' way, where ps is (procps on Linux takes the same options)
        me = fileio._ps_started(os.getpid())
        assert me and " " not in me and fileio._ps_started(os.getpid()) == me
        monkeypatch.setenv("TZ", "Asia/Kolkata")  # a checker in another zone: the same word
        monkeypatch.setenv("LANG", "de_DE.UTF-8")
        assert fileio._ps_started(os.getpid()) == me
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert fileio._ps_started(int(gone)) is None

    monkeypatch.setattr(fileio, "_WINDOWS", True)
    monkeypatch.setattr(fileio, "_windows_pid_gone", lambda pid: False)  # the pid lives...
    monkeypatch.setattr(fileio, "_windows_started", lambda pid: "w2")  # ...started at w2
    lock = RunLock(tmp_path)
    lock.path.write_text(f"{socket.gethostname()} 4242 w1\n")
    assert lock.stale()  # another process than the one that wrote the lock
    lock.path.write_text(f"{socket.gethostname()} 4242 w2\n")
    assert not lock.stale()


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc (Linux)")
def test_a_killed_process_not_yet_reaped_is_gone():
    """A trainer killed from a notebook's Popen stays a zombie until waited for: its run
    lock was taken for a live one ('being trained by another process')."""
    import subprocess
    import sys
    import time

    from edgegan import fileio

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not fileio.pid_gone(proc.pid)
        proc.kill()
        for _ in range(500):  # until the kernel has made it a zombie
            if fileio._proc_state(proc.pid) == "Z":
                break
            time.sleep(0.01)
        assert fileio.pid_gone(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_paths_in_commands_to_copy_are_one_shell_word(monkeypatch):
    import subprocess
    import sys

    import edgegan.fileio as fileio

    assert fileio.shell_path("runs/a b") == "'runs/a b'"
    assert fileio.shell_path("-dash") == "./-dash"  # it read as an option
    if sys.platform != "win32":  # a name that is not UTF-8 (a str with surrogate escapes)
        odd = os.fsdecode(b"runs/x\xffy's")
        word = fileio.shell_path(odd)
        assert word == "$'runs/x\\xffy\\x27s'"
        shell = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True)
        assert shell.stdout == b"runs/x\xffy's"  # the shell gives the bytes back
        # a lone surrogate no name decodes to (from a bundle's edgegan.json): a placeholder
        assert fileio.shell_path("/tmp/r\ud800x", "RUN") == "RUN"
    monkeypatch.setattr(fileio, "_WINDOWS", True)  # cmd.exe passed 'runs\\x' on, quotes too
    assert fileio.shell_path("runs\\dcgan-mnist") == "runs\\dcgan-mnist"
    assert fileio.shell_path("C:\\my runs\\x") == '"C:\\my runs\\x"'
    assert fileio.shell_path("C:\\R&D\\run") == '"C:\\R&D\\run"'  # & | < > ^: quoted
    # what cmd.exe (%, !) or PowerShell ($, `) expand even in double quotes: a placeholder
    for bad in ("x$(calc)", "%PATH%", "a!b", 'a"b', "a`b"):
        assert fileio.shell_path(bad, "RUN") == "RUN", bad


def test_two_writers_into_one_out_folder_never_both_go_on(tmp_path, monkeypatch):
    """Two `infer` into one --out both found it empty, both wrote, and one's files silently
    replaced the other's (2 of 5 pairs in the audit)."""
    import socket
    import subprocess
    import sys

    from edgegan.errors import EdgeganError
    from edgegan.fileio import WRITING, holds_files, process_started, undo_new_files

    out = tmp_path / "out"
    with undo_new_files(out) as first:
        out.mkdir()
        first.claim(out)
        assert not holds_files(out)  # a mark is no file: "not empty" was the wrong refusal
        (out / first.file(out / "a.png")).write_bytes(b"first's")
        (mark,) = out.glob(f".{WRITING}.*")
        me = f"{socket.gethostname()} {os.getpid()}"
        assert mark.read_text().startswith(me)  # host, pid and start: whose it is
        with pytest.raises(EdgeganError, match=rf"--out {out} is being written into by another "
                           rf"process \({mark.name}: {me}"):  # fmt: skip
            with undo_new_files(out) as second:
                second.claim(out, overwrite=True)
        assert (out / "a.png").read_bytes() == b"first's"  # the refused one took nothing
    assert [p.name for p in out.iterdir()] == ["a.png"]  # the mark goes with the block
    # filled since it was checked: without --overwrite the claim (made first) refuses it
    with pytest.raises(EdgeganError, match="is not empty; choose another folder or pass"):
        with undo_new_files(out) as late:
            late.claim(out)
    # a killed writer's mark is no writer: removed, and the folder is written; so is one of
    # this pid that started at another time (a container restarted: pid 1 again), while a
    # mark of another host (a container, a machine sharing the disk) is respected
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    host = socket.gethostname()
    (out / f".{WRITING}.{gone}-0a0b0c0d.tmp").write_text(f"{host} {gone} 1\n")
    if process_started(os.getpid()):
        (out / f".{WRITING}.{os.getpid()}-0e0e0e0e.tmp").write_text(f"{host} {os.getpid()} 1\n")
    with undo_new_files(out) as third:
        third.claim(out, overwrite=True)
        marks = sorted(p.name for p in out.glob(f".{WRITING}.*"))
        assert len(marks) == 1 and marks[0].startswith(f".{WRITING}.{os.getpid()}-")
    assert [p.name for p in out.iterdir()] == ["a.png"]
    elsewhere = out / f".{WRITING}.{gone}-0f0f0f0f.tmp"
    elsewhere.write_text(f"another-{host} {gone} 1\n")
    with pytest.raises(EdgeganError, match="being written into by another process"):
        with undo_new_files(out) as fourth:
            fourth.claim(out, overwrite=True)
    elsewhere.unlink()
    # a mark that cannot be removed (a scanner holding it) fails neither the work nor its undo
    real_unlink = Path.unlink

    def held(self, *args, **kwargs):
        if self.name.startswith(f".{WRITING}."):
            raise PermissionError(13, "Permission denied", str(self))
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", held)
    with undo_new_files(out) as fifth:
        fifth.claim(out, overwrite=True)
        (out / fifth.file(out / "b.png")).write_bytes(b"b")
    assert (out / "b.png").read_bytes() == b"b"
    other = tmp_path / "other"  # (out keeps fifth's mark: a live process's, this one)
    with pytest.raises(KeyboardInterrupt):
        with undo_new_files(other) as sixth:
            other.mkdir()
            sixth.claim(other, overwrite=True)
            (other / sixth.file(other / "c.png")).write_bytes(b"c")
            raise KeyboardInterrupt
    assert not (other / "c.png").exists()  # taken back all the same


def test_only_our_temporary_names_count_as_dead_temporaries(tmp_path):
    """`.NAME.<digits>-<anything>.tmp` counted: a user's `.notes.2024-05.tmp` in a run folder
    was a dead temporary file, to be removed."""
    import subprocess
    import sys

    from edgegan.fileio import _dead_temp, remove_dead_temps

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert not _dead_temp(Path(".notes.2024-05.tmp")) and not _dead_temp(Path(f".x.{gone}-1.tmp"))
    assert _dead_temp(Path(f".last.pt.{gone}.tmp"))  # the older form
    assert _dead_temp(Path(f".last.pt.{gone}-0a1b2c3d.tmp"))
    # under the run's lock one named with this pid is a previous process's (pid 1 again)
    mine = tmp_path / f".last.pt.{os.getpid()}-deadbeef.tmp"
    mine.write_bytes(b"half")
    keep = tmp_path / ".notes.2024-05.tmp"
    keep.write_text("mine")
    assert not _dead_temp(mine) and remove_dead_temps(tmp_path) == [mine]
    assert keep.exists()


def test_a_temporary_file_that_cannot_be_made_is_said_of_the_users_path(tmp_path, monkeypatch):
    """A folder that cannot be written fails at the temporary file's making: the error named
    the hidden .NAME.PID-RANDOM.tmp, not the file the user asked for."""
    import errno

    import edgegan.fileio as fileio

    real_open = os.open

    def refused(path, flags, *args):
        if str(path).endswith(".tmp"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(fileio.os, "open", refused)
    with pytest.raises(PermissionError) as caught:
        fileio.atomic_write(tmp_path / "r.json", lambda f: f.write(b"{}"))
    assert caught.value.filename == str(tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args", [["train", "train.steps=1"], ["infer", "some-run"], ["import", "some.pth"]]
)
def test_no_out_in_an_unwritable_folder_says_where_the_default_goes(tmp_path, monkeypatch, args):
    """With no --out, train, infer and import make runs/ in the working folder: a read-only
    one said only "Permission denied: runs" (infer) or named no way out."""
    from click.testing import CliRunner

    from edgegan.cli import cli

    monkeypatch.chdir(tmp_path)
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: Path(p).absolute() != tmp_path and real(p, mode)
    )
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert res.stderr == (
        f"error: no --out given, and the default folder runs/ in {tmp_path} cannot be written "
        "(permission denied): pass --out DIR\n"
    )
    assert not list(tmp_path.iterdir())
    # runs/ there and writable: the check passes whatever the working folder is
    (tmp_path / "runs").mkdir()
    from edgegan.fileio import check_default_root

    check_default_root("runs")


def test_make_dirs_counts_only_its_own_folders_and_makes_a_removed_parent_again(
    tmp_path, monkeypatch
):
    """Tasks of a job array started together each found runs/ missing and took it for their
    own; one that failed before training removed it from under another, whose run then
    failed with "cannot make the run directory runs/seed6: No such file or directory"."""
    from edgegan.fileio import make_dirs
    from edgegan.train.logs import new_run_dir, release_run_dir

    real_mkdir = Path.mkdir
    runs = tmp_path / "runs"
    events: list[str] = []

    def racing(self, *args, **kwargs):
        if self == runs / "seed6" and not events:
            # between this task's mkdir(runs) and mkdir(runs/seed6), another task that
            # made runs/ first fails and removes it, empty
            events.append("removed")
            runs.rmdir()
        return real_mkdir(self, *args, **kwargs)

    real_mkdir(runs)  # made by the other task a moment before
    monkeypatch.setattr(Path, "mkdir", racing)
    made = make_dirs(runs / "seed6")
    assert events == ["removed"] and (runs / "seed6").is_dir()
    assert made == [runs / "seed6", runs]  # runs/ made again by this call: its own now
    monkeypatch.setattr(Path, "mkdir", real_mkdir)
    # a folder that was there is not counted; path itself there: FileExistsError
    assert make_dirs(runs / "seed7" / "x") == [runs / "seed7" / "x", runs / "seed7"]
    with pytest.raises(FileExistsError):
        make_dirs(runs / "seed7")
    assert make_dirs(runs / "seed7", exist_ok=True) == []
    # through the run claim: a task that fails before training takes back only its own
    other = new_run_dir(tmp_path / "arr" / "seed1", "x")
    mine = new_run_dir(tmp_path / "arr" / "seed2", "x")
    release_run_dir(other)  # arr/ was made by the first task, but holds seed2: it stays
    assert mine.is_dir() and not other.exists()
    release_run_dir(mine)  # arr/ is not its own to remove
    assert list((tmp_path / "arr").iterdir()) == []
