"""User-facing errors: the CLI prints their message as one line and exits with `exit_code`."""

from __future__ import annotations

import difflib
import errno
import re
from collections.abc import Iterable
from typing import Any


class EdgeganError(Exception):
    """A mistake the user can fix (bad config, unknown name, missing file): exit code 2."""

    exit_code = 2


class ConfigError(EdgeganError):
    """An invalid preset, config file or ``key=value`` override."""


class RunFinished(ConfigError):
    """``--resume`` of a run already at its last step (``step``): nothing to train."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class UnknownNameError(EdgeganError):
    """A plugin part, preset or key that does not exist."""


class PluginError(EdgeganError):
    """A plugin that failed to load, or two plugins that claim the same name."""


class CallbackError(PluginError):
    """A training callback raised; the run stopped (after saving its last steps)."""


class DataError(EdgeganError):
    """A dataset that is missing, empty or holds unreadable files."""


class TrainingDiverged(EdgeganError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 1


def first_line(exc: BaseException, empty: str = "") -> str:
    """The first line of ``exc``'s message (libraries' run over many lines; edgegan's errors
    are one line), or ``empty`` when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else empty


def exception_line(exc: BaseException, empty: str = "") -> str:
    """``RuntimeError: boom``: an exception's type and the first line of its message (or
    ``empty``), as messages about a plugin's or a library's failure show it; the type alone
    when there is no text. The traceback: ``EDGEGAN_DEBUG=1``."""
    text = first_line(exc, empty)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return " (did you mean 'x'?)" for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown(what: str, name: str, choices: Iterable[str]) -> UnknownNameError:
    """Build the standard "unknown X 'y'; known: ..." error with a suggestion."""
    choices = sorted(set(choices))
    known = ", ".join(choices) if choices else "none"
    return UnknownNameError(f"unknown {what} '{name}'{did_you_mean(name, choices)}; known: {known}")


def format_mismatch(
    what: str, path: object, found: object, reads: int, writer: object, older: str
) -> EdgeganError:
    """A file of ``what`` (e.g. "bundle") in a format this edgegan does not read: a newer one
    calls for a newer edgegan, an older one for ``older`` (what to do instead)."""
    from edgegan import __version__

    by = f", written by edgegan {writer}" if isinstance(writer, str) and writer else ""
    here = f"this edgegan ({__version__}) reads format {reads}"
    if not isinstance(found, int) or isinstance(found, bool):
        return EdgeganError(f"{path} is not an edgegan {what}: its format is {found!r}")
    if found > reads:
        return EdgeganError(
            f"{path} is a {what} of format {found}{by}; {here}: upgrade edgegan to read it"
        )
    return EdgeganError(f"{path} is a {what} of the older format {found}{by}; {here}: {older}")


#: errors of a path the user gave (exit 2, as other input mistakes); others exit 1
PATH_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EACCES,
        errno.EPERM,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.EROFS,
        errno.ENOTEMPTY,
    }
)


def os_error_line(exc: OSError) -> tuple[str, int]:
    """An OSError (a path that cannot be read or written, a full disk) as one line and an
    exit code: 2 for a path's errors, as other input mistakes; 1 for the rest."""
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}", (2 if exc.errno in PATH_ERRNOS else 1)


def caller_stacklevel() -> int:
    """``warnings.warn``'s stacklevel that names the first frame outside edgegan, called
    from the function that warns: the user's line, however deep inside edgegan (and through
    which of its public functions) the warning was raised."""
    import os
    import sys
    import types

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame: types.FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


#: Signals the CLI received whose exception may have been swallowed: raised inside an
#: import (torch's own imports catch broadly), a SIGTERM from a scheduler at start-up was
#: lost and the job ran to its end. See :func:`note_signal` and :func:`take_signal`.
_PENDING_SIGNALS: list[int] = []


def note_signal(signum: int) -> None:
    """Record that the process was asked to stop by ``signum`` (the CLI's handler)."""
    _PENDING_SIGNALS.append(signum)


def stop_signals(scheduler: bool = True) -> tuple[int, ...]:
    """The signals that stop a command as SIGTERM does: SIGTERM, SIGHUP where the system has
    it and it is not ignored (a closed terminal, a dropped ssh session; a command under
    ``nohup``, which asked to outlive its terminal, keeps ignoring it) and, with
    ``scheduler``, :func:`scheduler_signals`."""
    import signal

    return (
        signal.SIGTERM,
        *_not_ignored(("SIGHUP",)),
        *(scheduler_signals() if scheduler else ()),
    )


def scheduler_signals() -> tuple[int, ...]:
    """SIGUSR1 and SIGUSR2 where the system has them and they are not ignored: what a batch
    scheduler sends ahead of a job's time limit (Slurm's ``--signal=USR1@120``; their
    default killed a run at once, with nothing saved)."""
    return _not_ignored(("SIGUSR1", "SIGUSR2"))


def _not_ignored(names: tuple[str, ...]) -> tuple[int, ...]:
    import signal

    found = (getattr(signal, n, None) for n in names)
    return tuple(s for s in found if s is not None and signal.getsignal(s) is not signal.SIG_IGN)


def takes_stop_signals(handler: Any) -> Any:
    """Mark ``handler`` (the CLI's) as one that stops the command: the trainer takes SIGUSR1
    and SIGUSR2 over only from such a handler, not from a program that calls ``train()``
    with handlers of its own for them (faulthandler, submitit's requeue)."""
    handler.edgegan_stops = True
    return handler


def stops_commands(handler: Any) -> bool:
    """Whether ``handler`` was marked by :func:`takes_stop_signals`."""
    return getattr(handler, "edgegan_stops", False) is True


def take_signal() -> int | None:
    """The first recorded stop signal not yet acted on, or None; it is acted on now."""
    signum = _PENDING_SIGNALS[0] if _PENDING_SIGNALS else None
    _PENDING_SIGNALS.clear()
    return signum


#: control characters (a newline, a terminal's escape; C1's single-character escape and
#: the line breaks str.splitlines knows) in a path or name that an error line repeats:
#: written escaped, so the error stays one line and cannot drive the terminal
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with its control characters escaped as Python writes them (``\\n``)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
