"""What the scripts in ``tools/`` share with the CLI: one ``error:`` line for a user's mistake,
Ctrl-C as exit 130, and JSON results whose path is checked before minutes of work and which
are written atomically.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgegan.errors import EdgeganError, one_line, os_error_line
from edgegan.fileio import (
    check_writable,
    write_json,  # noqa: F401  (re-exported for the tools)
)


class Interrupted(Exception):
    """A run inside a tool stopped on Ctrl-C/SIGTERM (the trainer saved it and returned)."""


def run(main: Callable[[], int | None]) -> int:
    """Call a tool's ``main``; its exit status (0, the error's code, or 130 when stopped)."""
    try:
        return int(main() or 0)
    except EdgeganError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a results file that cannot be written, a full disk, ...
        line, code = os_error_line(exc)
        print(f"error: {one_line(line)}", file=sys.stderr)
        return code
    except (KeyboardInterrupt, Interrupted):
        print("interrupted: no results written", file=sys.stderr)
        return 130


def stopped(result: Any) -> Any:
    """``result`` of :func:`edgegan.train.train`, or :class:`Interrupted` when the run was
    stopped by a signal: a tool must not report a cut-short run as a measurement."""
    if getattr(result, "stopped_by", None) == "signal":
        raise Interrupted
    return result


def int_list(minimum: int | None = None) -> Callable[[str], list[int]]:
    """An argparse ``type``: comma-separated integers (each at least ``minimum``)."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated integers, got '{text}'"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError("expected at least one integer")
        if minimum is not None and min(values) < minimum:
            raise argparse.ArgumentTypeError(f"each value must be at least {minimum}: '{text}'")
        return values

    return parse


def check_json_path(path: str | Path | None) -> Path | None:
    """Refuse a results path that cannot be written, before the work that fills it."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise EdgeganError(f"--json {path} is a folder; give a file name")
    parent = next((p for p in path.parents if p.exists()), Path("."))
    if not parent.is_dir():
        raise EdgeganError(f"--json {path}: {parent} is a file, not a folder")
    check_writable(path, "--json")
    return path
