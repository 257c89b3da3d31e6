"""Atomic writes: the old file survives a failed write, and permissions follow the umask."""

from __future__ import annotations

import os

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
