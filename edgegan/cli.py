"""The ``edgegan`` command line: a thin click layer over the Python API.

Subcommands import torch (and the heavy parts of the package) only when they run, so
``edgegan --help`` and ``edgegan plugins`` start fast. A user mistake is one line on stderr
and exit code 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import errno
import inspect
import io
import json
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from edgegan import __version__
from edgegan.config import COMPILE_MODES
from edgegan.errors import (
    ConfigError,
    EdgeganError,
    note_signal,
    one_line,
    os_error_line,
    stop_signals,
    take_signal,
    takes_stop_signals,
)

if TYPE_CHECKING:
    from edgegan.export.trt_profile import BuildOptions

LIST_KINDS = ("models", "losses", "datasets", "metrics", "exporters", "callbacks")


def _quiet_broken_pipe(streams: tuple[Any, ...] | None = None) -> None:
    """Point ``streams`` (stdout and stderr) at /dev/null: their reader is gone, and Python's
    flush at exit would otherwise print "Exception ignored ... BrokenPipeError" where no one
    reads it, or fail with exit code 120."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in streams or (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, AttributeError):  # no file descriptor (click's runner)
            pass
    os.close(devnull)


def _format_warning(message: Any, category: type, *args: Any, **kwargs: Any) -> str:
    return f"warning: {one_line(str(message))}\n"


def _is_main_process() -> bool:
    """False in a worker of rank > 0 of a job of several processes (rank 0 speaks for the
    job). A ``RANK`` without ``WORLD_SIZE`` > 1 is no such job, as
    :func:`edgegan.train.distributed.launch_env` reads the environment too."""
    try:
        return os.environ.get("RANK", "0") == "0" or int(os.environ.get("WORLD_SIZE", 1)) <= 1
    except ValueError:  # a malformed WORLD_SIZE: training reports it; speak here
        return True


class _Commands(click.Group):
    """A group whose unknown command is said in edgegan's words, the same on every click
    (8.2 and 8.3 offered no near name; 8.4 does, in its own style)."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and not ctx.resilient_parsing:
            if self.get_command(ctx, name) is None:
                close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise click.UsageError(f"no such command '{name}'{hint}", ctx)
        return super().resolve_command(ctx, args)


class _Group(_Commands):
    """Turns :class:`EdgeganError` and :class:`OSError` (a path that cannot be written, ...)
    into one line on stderr and a non-zero exit code, Ctrl-C into exit 130, and SIGTERM
    (SIGHUP) into an exception, so that cleanups run (EDGEGAN_DEBUG=1 prints the traceback too).

    Under torchrun every process fails alike on a bad config: rank 0 alone prints it, and
    another rank only an error of its own (marked ``rank_local`` by the trainer).
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:  # `edgegan --bogus`: before any command, one line too
            if _is_main_process():
                _show_usage_error(exc, ctx.command_path)
            ctx.exit(exc.exit_code)
            raise  # not reached: ctx.exit raises

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name in _FOREIGN_COMMANDS and self.get_command(ctx, name) is None:
            ours = _FOREIGN_COMMANDS[name]
            what = _OUR_COMMANDS[ours]
            raise click.UsageError(f"no such command '{name}'; use edgegan {ours} ({what})", ctx)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        main_thread = threading.current_thread() is threading.main_thread()
        stops = stop_signals() if main_thread else ()
        old = {sig: signal.signal(sig, _terminate) for sig in stops}
        try:
            result = super().invoke(ctx)
            signum = take_signal()
            if signum is not None:  # its exception was swallowed (inside an import): now
                raise _Terminated(128 + signum)
            return result
        except click.UsageError as exc:  # click's own: four lines; one, as for our errors
            if _is_main_process():
                # an option missing its value carries no context: the command being parsed
                sub = ctx.invoked_subcommand
                _show_usage_error(exc, f"{ctx.command_path} {sub}" if sub else ctx.command_path)
            ctx.exit(exc.exit_code)
        except EdgeganError as exc:
            _report(exc, str(exc))
            ctx.exit(exc.exit_code)
        except OSError as exc:  # a path that cannot be read or written, a full disk, ...
            if exc.errno == errno.EPIPE:  # `edgegan list | head`: the reader is gone
                _quiet_broken_pipe()
                ctx.exit(128 + 13)  # as a process that SIGPIPE ended (141): not an error line
            line, code = os_error_line(exc)
            _report(exc, line)
            ctx.exit(code)
        except MemoryError as exc:  # e.g. `infer --num 1000000000`: all images held at once
            _report(exc, f"out of memory ({str(exc) or 'MemoryError'}); ask for less at once")
            ctx.exit(1)
        except Warning as exc:  # made an error by -W error or PYTHONWARNINGS: still one line
            _report(exc, f"{exc} ({type(exc).__name__}, an error by -W/PYTHONWARNINGS)")
            ctx.exit(1)
        except RuntimeError as exc:
            # torch's allocators say so in a RuntimeError (torch.OutOfMemoryError on CUDA):
            # a network of absurd size from a checkpoint, a batch too large for the GPU
            text = str(exc)
            if type(exc).__name__ != "OutOfMemoryError" and "can't allocate memory" not in text:
                raise
            first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
            _report(exc, f"out of memory ({first}); ask for less at once")
            ctx.exit(1)
        except KeyboardInterrupt:  # Ctrl-C outside training (which stops cleanly itself)
            if _is_main_process():  # torchrun passes Ctrl-C to every process: one line
                _say("interrupted")
            ctx.exit(130)
        except _Terminated as exc:  # after the cleanups: a killed job's log says why it ended
            code = int(exc.code or 143)
            if "TORCHELASTIC_RUN_ID" not in os.environ:  # torchrun ends its workers this way
                _say(f"terminated ({_signal_name(code - 128)})")
            ctx.exit(code)
        finally:
            take_signal()  # acted on: none left for the next command of this process
            for sig, handler in old.items():
                signal.signal(sig, handler)


#: Options of the reference CycleGAN code (train.py) whose names mean something else here
#: or nothing (``--name`` matched every ``*.name`` key), with what to use instead.
_FOREIGN_TRAIN_OPTIONS = {
    "name": "the run directory is --out DIR (default runs/PRESET)",
    "dataroot": "train takes data.root=DIR",
    "continue_train": "continue a run with --resume RUN",
    "n_epochs": "train takes train.epochs=N (train.lr_decay_start=STEP starts the decay)",
    "n_epochs_decay": "train takes train.epochs=N and train.lr_decay_start=STEP",
}

#: Commands of other tools (Ultralytics, the reference CycleGAN, GAN libraries) that users
#: type first, with ours.
_FOREIGN_COMMANDS = {
    "predict": "infer",
    "test": "infer",
    "generate": "infer",
    "sample": "infer",
    "translate": "infer",
    "val": "eval",
    "validate": "eval",
    "benchmark": "bench",
    "fit": "train",
}
_OUR_COMMANDS = {
    "infer": "samples a GAN, translates images with a CycleGAN",
    "eval": "scores samples",
    "bench": "latency, images/s and parity per backend",
    "train": "trains a preset or config",
}


#: click >= 8.2 raises this for a group given no command (``edgegan``, ``edgegan config``):
#: its message is the whole help, to be shown as help, not squashed into an error line.
_NO_ARGS_IS_HELP: type[Exception] | tuple[()] = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _show_usage_error(exc: click.UsageError, where: str) -> None:
    if isinstance(exc, _NO_ARGS_IS_HELP):
        exc.show()  # the help on stderr, exit 2: as click itself does
    else:
        _say(f"error: {one_line(_usage_line(exc, where))}")


def _usage_line(exc: click.UsageError, where: str = "edgegan") -> str:
    """A click usage error as one line, in our style, with where to read more (the command
    of its context, else ``where``); an option ``train`` lacks that is a config key
    (``--seed 1``) says how to set it."""
    message = " ".join(exc.format_message().split()).rstrip(".")  # click's may span lines
    message = message[:1].lower() + message[1:]
    if isinstance(exc, click.NoSuchOption):  # our words: click's differ by version
        close = list(exc.possibilities or ())  # closest first (difflib)
        message = f"no such option '{exc.option_name}'" + (
            f"; did you mean '{close[0]}'?" if close else ""
        )
    command = exc.ctx.command_path if exc.ctx is not None else where
    if isinstance(exc, click.NoSuchOption) and command.endswith(" train"):
        name = exc.option_name.lstrip("-").replace("-", "_")
        keys = [k for k in _config_keys() if k == name or k.endswith(f".{name}")]
        if name in _FOREIGN_TRAIN_OPTIONS:  # the reference CycleGAN's: what we call them
            message = f"no such option '{exc.option_name}'; {_FOREIGN_TRAIN_OPTIONS[name]}"
        elif len(keys) == 1:  # click's "did you mean" would offer an option, not the key meant
            message = f"no such option '{exc.option_name}'; train takes {keys[0]}=VALUE"
        elif keys:
            message = (
                f"no such option '{exc.option_name}'; train takes settings as key=value: "
                + ", ".join(f"{k}=..." for k in keys)
            )
        else:  # (an option's near name would mislead: train's settings are keys)
            message = (
                f"no such option '{exc.option_name}'; train takes its settings as key=value, "
                "e.g. train.steps=2000"
            )
    return f"{message} (see {command} --help)"


def _config_keys(cls: Any = None, prefix: str = "") -> list[str]:
    """The dotted keys of :class:`~edgegan.config.Config` (``train.device``, ...)."""
    import dataclasses
    import typing

    from edgegan.config import Config

    cls = cls or Config
    hints = typing.get_type_hints(cls)
    keys: list[str] = []
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            keys += _config_keys(kind, f"{prefix}{field.name}.")
        else:
            keys.append(f"{prefix}{field.name}")
    return keys


def _say(line: str) -> None:
    """``line`` on stderr; when it cannot be written (a pipe's reader gone, a terminal
    closed by SIGHUP, a log file on a full disk) the command's exit code is all that is left
    to say it: not an error, and the command's work stands."""
    try:
        click.echo(line, err=True)
    except BlockingIOError:  # a non-blocking stderr, full for now: this line only
        pass
    except OSError:
        _quiet_broken_pipe((sys.stderr,))  # stdout, the command's result, may still be read


def _report(exc: BaseException, line: str) -> None:
    # Under torchrun an error agreed by every rank is rank 0's to print; one of this rank's
    # own (rank_local, or an OSError, which no rank agreed on) is printed here, with the rank.
    # (rank_local errors carry their "[rank r]" already.)
    other = not isinstance(exc, EdgeganError)
    if _is_main_process() or other or getattr(exc, "rank_local", False):
        if os.environ.get("EDGEGAN_DEBUG", "").strip() not in ("", "0"):
            # The traceback behind the one line (a plugin's bug, say).
            traceback.print_exception(exc, file=sys.stderr)
        rank = f"[rank {os.environ.get('RANK')}] " if other and not _is_main_process() else ""
        _say(f"error: {rank}{one_line(line)}")
    elif "TORCHELASTIC_RUN_ID" in os.environ:
        # torchrun ends every worker as soon as one exits: were this silent rank first, rank 0
        # would be killed before it printed the error. Wait for rank 0 to report and exit (the
        # SIGTERM that follows ends this wait); exit on our own only if it never does, and
        # then say why: the error was this rank's alone (a config given to this rank only,
        # found before the processes met), and rank 0 waits for this one to join them.
        try:
            time.sleep(SILENT_RANK_WAIT)
        except KeyboardInterrupt:  # raised inside the caller's handler: it cannot catch it
            raise SystemExit(130) from None
        _say(f"error: [rank {os.environ.get('RANK')}] {one_line(line)}")


#: seconds a worker of rank > 0 waits, on an error rank 0 reports, before exiting itself
SILENT_RANK_WAIT = 20.0


class _Terminated(SystemExit):
    """SIGTERM, raised where the main thread is, so that cleanups run (an export's temporary
    folder, say); a SystemExit, so that no ``except Exception`` takes it for an error.
    Training installs its own handler, which saves a checkpoint first."""


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@takes_stop_signals
def _terminate(signum: int, frame: Any) -> None:
    note_signal(signum)  # in case the exception is swallowed where it lands
    raise _Terminated(128 + signum)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgegan")
def cli() -> None:
    """Train GANs and CycleGANs, and ship the generators to the edge."""
    warnings.formatwarning = _format_warning  # plugin warnings as one readable line


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1)
@click.option("--out", type=click.Path(), help="Run directory (default: runs/PRESET[-N]).")
@click.option("--resume", type=click.Path(), help="Continue the run in this directory.")
@click.option(
    "--auto-resume",
    is_flag=True,
    help="With --out RUN: continue RUN when it holds a run (its own config, with the "
    "key=value overrides), say so and exit 0 when it is finished, else start it: one "
    "command for a job that is requeued or run again.",
)
def train(args: tuple[str, ...], out: str | None, resume: str | None, auto_resume: bool) -> None:
    """Train a model: edgegan train [PRESET|CONFIG.yaml] [key=value ...]

    With no arguments, trains the default preset (dcgan-mnist) on the bundled digits.
    Launched by torchrun (torchrun --nproc-per-node N -m edgegan train ...) it trains
    data-parallel over N processes; train.batch_size is then the global batch.
    Keys are dotted paths, e.g. train.steps=2000 loss.name=hinge model.generator.ngf=32.
    """
    from edgegan.config import load_config, load_run_config
    from edgegan.errors import RunFinished

    source, overrides = _source_and_overrides(list(args))
    if auto_resume:
        if resume:
            raise EdgeganError(
                "--auto-resume continues --out RUN when it holds a run; drop --resume"
            )
        if not out:
            raise EdgeganError(
                "--auto-resume needs --out RUN: the run to continue, or to start when it holds none"
            )
        from edgegan.train.logs import clear_unstarted, is_run_dir

        if is_run_dir(out):  # the preset or config file was for its start
            _same_run(out, source, overrides)
            resume, out, source = out, None, None
        elif _is_main_process() and Path(out).is_dir() and clear_unstarted(Path(out)):
            _say(f"{out} stopped before its first checkpoint (nothing to resume): it starts again")
    if resume:
        if source:
            raise EdgeganError("--resume continues a run with its own config; drop the preset")
        if out:
            raise EdgeganError("--resume writes into the run it continues; drop --out")
        try:
            config = load_run_config(resume, overrides)
        except ConfigError as exc:
            from edgegan.train.distributed import launch_env, rank_local

            env = launch_env()
            if env is not None and env.world_size > 1 and not Path(resume, "config.yaml").exists():
                # What this node's disk holds: another node may see the run (no shared
                # filesystem), and its processes then wait for this one; say which failed.
                raise rank_local(exc, env.rank) from None
            raise
    else:
        config = load_config(source, overrides)

    from edgegan.train import train as run_training
    from edgegan.train.distributed import resume_command

    try:
        result = run_training(config, out_dir=out, resume=resume)
    except RunFinished as exc:
        if not auto_resume or resume is None:
            raise
        if _is_main_process():
            click.echo(f"done: {resume} is finished at step {exc.step}; nothing to train")
        return
    # said as the user gave it: relative to here when it is under here
    result = dataclasses.replace(
        result, run_dir=_from_here(result.run_dir), checkpoint=_from_here(result.checkpoint)
    )
    # stopped by a signal: the status a process it ended would have (130 Ctrl-C, 143 SIGTERM)
    # (Ctrl-Break is Windows' Ctrl-C: 130 too)
    by = result.signal if result.signal not in (None, "SIGINT", "SIGBREAK") else None
    stopped = 128 + (signal.Signals[by] if by else signal.SIGINT)
    if not _is_main_process():
        sys.exit(stopped if result.stopped_by == "signal" else 0)
    if result.stopped_by == "signal":
        _say(
            one_line(
                f"interrupted{f' ({by})' if by else ''} at step {result.step}: checkpoint "
                f"saved to {result.checkpoint}; continue with: {resume_command(result.run_dir)}"
            )
        )
        sys.exit(stopped)
    how = "time budget reached" if result.stopped_by == "max_seconds" else "done"
    # a resumed run's seconds are all its sessions'; train.max_seconds budgets this one
    this = f" ({result.session_seconds:.0f} s this session)" if resume else ""
    click.echo(f"{how}: {result.step} steps in {result.seconds:.0f} s{this} -> {result.run_dir}")
    if result.eval:
        click.echo("eval: " + ", ".join(f"{k}={v:.4g}" for k, v in result.eval.items()))
    for line in _next_commands(config.task, result):
        _say(line)


def _same_run(run: str, source: str | None, overrides: list[str]) -> None:
    """``--auto-resume`` continues ``run`` with its own config: a preset or config file of
    another task or preset given with it names another run (an --out reused by mistake
    would go on training the old one without a word)."""
    if source is None:
        return
    from edgegan.config import load_config, load_run_config

    saved, asked = load_run_config(run), load_config(source, overrides)
    if saved.task != asked.task or (saved.preset and asked.preset and saved.preset != asked.preset):
        what = f"{saved.task} run" + (f" of preset {saved.preset}" if saved.preset else "")
        raise EdgeganError(
            f"--out {run} holds a {what}, not {asked.preset or asked.task}: --auto-resume "
            "continues the run there; choose another --out"
        )


def _from_here(path: Path) -> Path:
    """``path`` relative to the working folder when it lies under it, else as it is."""
    try:
        return path.relative_to(Path.cwd())
    except (ValueError, OSError):  # elsewhere; the working folder removed
        return path


def _next_commands(task: str, result: Any) -> list[str]:
    """What a finished run is for, as commands to copy (on stderr: stdout is the result)."""
    from edgegan.fileio import shell_path
    from edgegan.train.distributed import resume_command

    run = shell_path(result.run_dir, "RUN")
    lines = []
    if result.stopped_by == "max_seconds":
        lines.append(f"continue with: {resume_command(result.run_dir)}")
    if task == "cyclegan":
        use = f"edgegan infer {run} --direction AtoB --input IMAGES --out translated"
    elif task == "pix2pix":
        use = f"edgegan infer {run} --input IMAGES --out translated"
    else:
        use = f"edgegan infer {run} --num 64 --out samples"
    lines.append(f"next: {use}  |  edgegan export {run}")
    return lines


def _free_folder(root: Path, name: str) -> Path:
    """``root/name``, else ``root/name-2``, ``root/name-3``, ...: the first that is not there."""
    path, i = root / name, 1
    while path.exists() or path.is_symlink():
        i += 1
        path = root / f"{name}-{i}"
    return path


def _claim_folder(root: Path, name: str) -> tuple[Path, list[Path]]:
    """:func:`_free_folder`, made by this process (``mkdir`` is atomic): two commands started
    together each get their own (both wrote into ``runs/infer``, mixed, and said so). With
    the folders made for it (``root`` too, unless another process made it)."""
    from edgegan.fileio import make_dirs

    while True:
        path = _free_folder(root, name)
        try:
            return path, make_dirs(path)
        except FileExistsError:  # another process made it first: the next one
            continue


def _gpu_runner_options(command: Any) -> Any:
    """``--compile[=MODE]``, ``--channels-last`` (torch), ``--cuda-graphs/--no-cuda-graphs``
    and ``--ort-option``, shared by infer and bench."""
    command = click.option(
        "--channels-last",
        is_flag=True,
        help="torch backend: weights and images in channels-last layout.",
    )(command)
    command = click.option(
        "--compile",
        "compile_",
        is_flag=False,
        flag_value="default",
        default=None,
        metavar="[MODE]",
        type=click.Choice(COMPILE_MODES),
        help="torch backend: torch.compile, with frozen weights, in MODE (default, "
        "reduce-overhead for CUDA graphs, max-autotune, max-autotune-no-cudagraphs); "
        "each input shape compiles on its first call (bench: compiled rows beside the "
        "eager ones). Give it after the target, or as --compile=MODE.",
    )(command)
    command = click.option(
        "--ort-option",
        "ort_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="An onnxruntime CUDA execution provider option, e.g. prefer_nhwc=1 (repeatable).",
    )(command)
    return click.option(
        "--cuda-graphs/--no-cuda-graphs",
        default=None,
        help="On CUDA, replay CUDA graphs in onnxruntime and tensorrt (default: on).",
    )(command)


@cli.command()
@click.argument("target", metavar="RUN_DIR|BUNDLE", type=click.Path())
@click.option(
    "--out",
    type=click.Path(),
    help="Folder for the outputs (default: runs/infer, or runs/infer-N, the first not there).",
)
@click.option("--num", type=int, help="Number of images.")
@click.option(
    "--labels",
    help="Class labels for a conditional generator: numbers or the run's class names, e.g. "
    "3,3,7 or Sneaker,Bag.",
)
@click.option("--seed", type=click.IntRange(min=0), help="Seed of the latents (default 0).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["png", "npz", "grid"]),
    default="png",
    show_default=True,
    help="One PNG per image, one images.npz (uint8 images, raw floats, latents, labels), or "
    "one grid.png sheet (a column per class when conditional; at most 1,024 images).",
)
@click.option(
    "--backend",
    type=click.Choice(["torch", "onnxruntime", "tensorrt"]),
    default="torch",
    show_default=True,
    help="torch runs the run's generator; onnxruntime and tensorrt an exported bundle.",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default="fp32",
    show_default=True,
    help="Which of the bundle's graphs (or engines) to run.",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="auto, cpu, cuda or cuda:N (auto: cuda when torch sees a GPU).",
)
@click.option("--batch-size", type=int, help="Images per run (default: 256; 8 when translating).")
@click.option(
    "--threads", type=click.IntRange(min=1), help="onnxruntime intra-op threads (default: cores)."
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Write into a non-empty --out (files of the same names are replaced, others kept).",
)
@click.option(
    "--direction",
    type=click.Choice(["AtoB", "BtoA"]),
    help="cyclegan: which generator to run (pix2pix: AtoB, its only one, the default).",
)
@click.option(
    "--input",
    "input_path",
    type=click.Path(),
    help="cyclegan, pix2pix: an image or a folder to translate.",
)
@click.option(
    "--resize",
    metavar="N|train",
    help="cyclegan, pix2pix: resize each input first so its shorter side is N px, or to the "
    "scale the generator trained at (train: as data.preprocess scaled); outputs have that size "
    "(default: native size).",
)
@click.option(
    "--side-by-side",
    is_flag=True,
    help="cyclegan, pix2pix: write each input and its translation side by side in one PNG.",
)
@click.option(
    "--split-pairs",
    is_flag=True,
    help="cyclegan, pix2pix: each input holds A and B side by side (the aligned dataset's "
    "files, e.g. a pix2pix test/ folder): translate its source half; with --side-by-side, "
    "the other half (the truth) goes right of the translation.",
)
@click.option(
    "--skip-bad",
    is_flag=True,
    help="cyclegan, pix2pix: leave out input images that cannot be read (one warning counts "
    "them) instead of stopping, which takes back what was written.",
)
@_gpu_runner_options
def infer(
    target: str,
    out: str | None,
    num: int | None,
    labels: str | None,
    seed: int | None,
    fmt: str,
    backend: str,
    precision: str,
    device: str,
    batch_size: int | None,
    threads: int | None,
    overwrite: bool,
    direction: str | None,
    input_path: str | None,
    resize: str | None,
    side_by_side: bool,
    split_pairs: bool,
    skip_bad: bool,
    cuda_graphs: bool | None,
    ort_options: tuple[str, ...],
    compile_: str | None,
    channels_last: bool,
) -> None:
    """Sample images from a run's generator (EMA weights) or an exported bundle; or, for a
    cyclegan run or bundle, translate --input images (--direction AtoB|BtoA), keeping their
    names and sizes (or --resize them first); a pix2pix one translates A -> B.

    The same --seed gives the same latents (and images, within each backend's precision) on
    every backend; translation pre/post-processing is the same on every backend too. A run
    directory with a bundle in RUN_DIR/export runs that bundle on the onnxruntime and
    tensorrt backends.
    """
    from edgegan.runtime.bench import torch_options

    options: dict[str, Any] = {}
    if threads is not None:
        options["threads"] = threads
    if (compile_ or channels_last) and backend != "torch":
        raise EdgeganError("--compile and --channels-last apply to the torch backend")
    options.update(torch_options(compile_, channels_last))
    if cuda_graphs or (cuda_graphs is False and backend != "torch"):
        options["cuda_graphs"] = cuda_graphs  # --no-cuda-graphs asks nothing of torch's runner
    if ort_options:
        options["provider_options"] = _key_values(ort_options, "ort-option")
    from edgegan.runtime.base import resolve_auto

    # what ran: infer's device defaults to cpu, where a GPU user may not expect it
    how = f"{backend} {precision} on {resolve_auto(device)}"
    # what translating and sampling are both given
    common = {"device": device, "overwrite": overwrite, "backend": backend,
              "precision": precision, "progress": True, **options}  # fmt: skip
    with contextlib.ExitStack() as undo:
        if out is None:  # a new folder each time, as train's runs/PRESET-N: nothing overwritten
            from edgegan.fileio import check_default_root, undo_new_files

            check_default_root("runs")
            # made as it is chosen, and taken back (runs/ too, if made here) on a failure
            new = undo.enter_context(undo_new_files(None))
            claimed, new.dirs = _claim_folder(Path("runs"), "infer")
            out = str(claimed)
        if direction or input_path:
            if not input_path:
                raise EdgeganError("--direction translates --input images: give --input too")
            if num is not None or labels or fmt != "png" or seed is not None:
                from edgegan.sampling import target_task
                from edgegan.translate import is_translation_task

                task, said_by = target_task(target)
                if task and not is_translation_task(task):  # sampling meant: --input is the slip
                    raise EdgeganError(
                        f"{target} is a {task} {said_by}: it samples (--num, --labels, --seed, "
                        "--format); --input and --direction translate with a cyclegan or pix2pix"
                    )
                raise EdgeganError(
                    f"--num, --labels, --seed and --format {fmt} sample GANs; translations are PNG"
                    if fmt != "png"
                    else "--num, --labels and --seed sample GANs; translations are PNG"
                )
            from edgegan.translate import translate

            paths = translate(
                target,
                direction,
                input_path,
                out,
                batch_size=8 if batch_size is None else batch_size,
                resize=resize,
                side_by_side=side_by_side,
                split_pairs=split_pairs,
                skip_bad=skip_bad,
                **common,
            )
            click.echo(f"wrote {len(paths)} translated image(s) to {out} ({how})")
            return
        if resize is not None or side_by_side or split_pairs or skip_bad:
            raise EdgeganError(
                "--resize, --side-by-side, --split-pairs and --skip-bad apply to translation "
                "(--direction and --input)"
            )
        from edgegan.sampling import infer as run_infer
        from edgegan.sampling import parse_labels

        paths = run_infer(
            target,
            out,
            num=num,
            labels=parse_labels(labels),
            seed=0 if seed is None else seed,
            fmt=fmt,
            batch_size=256 if batch_size is None else batch_size,
            **common,
        )
        click.echo(f"wrote {len(paths)} file(s) to {out} ({how})")


@cli.command("import")
@click.argument("source", type=click.Path())
@click.option("--out", type=click.Path(), help="Run directory (default: runs/NAME[-N]).")
@click.option(
    "--epoch",
    default="latest",
    show_default=True,
    help="Which checkpoint of a folder: EPOCH_net_G_A.pth, ... (latest, 200, ...).",
)
@click.option(
    "--size",
    type=click.IntRange(min=1),
    help="Image size it was trained at (default: crop_size in train_opt.txt, else 256).",
)
@click.option(
    "--data-root",
    type=click.Path(),
    help="The run's data.root (default: dataroot in train_opt.txt): export --int8 calibrates "
    "on it, fine-tuning trains on it.",
)
@click.option(
    "--direction",
    type=click.Choice(["AtoB", "BtoA"]),
    help="The reference's --direction (default: train_opt.txt's, else AtoB; the pretrained "
    "facades and sat2map models are BtoA).",
)
def import_cmd(
    source: str,
    out: str | None,
    epoch: str,
    size: int | None,
    data_root: str | None,
    direction: str | None,
) -> None:
    """Import a checkpoint of the reference CycleGAN/pix2pix code as an edgegan run.

    SOURCE: a reference checkpoints folder (checkpoints/NAME with latest_net_G_A.pth and
    latest_net_G_B.pth, or latest_net_G.pth; train_opt.txt is read when there), or one
    generator's .pth (a pretrained model such as horse2zebra.pth). The networks' kind and
    sizes are read from the weights. The run exports and infers as one trained here;
    train.init_from=RUN fine-tunes from it.
    """
    from edgegan.reference import import_reference

    given = Path(source)
    name = (given.stem if given.is_file() else given.resolve().name) or "imported"
    if out is None:
        from edgegan.fileio import check_default_root

        check_default_root("runs")
    run_dir = out if out is not None else _free_folder(Path("runs"), name)
    result = import_reference(
        source, run_dir, epoch=epoch, image_size=size, data_root=data_root, direction=direction
    )
    # said as the user gave it: relative to here when it is under here
    result = dataclasses.replace(
        result,
        run_dir=_from_here(result.run_dir),
        options_file=result.options_file and _from_here(result.options_file),
    )
    click.echo(f"imported a {result.task} run ({result.image_size} px) -> {result.run_dir}")
    for ours, net in result.networks.items():
        click.echo(f"  {ours}: {net.describe()} <- {net.source}")
    if result.options_file is not None:
        click.echo(f"  settings from {result.options_file}")
    from edgegan.fileio import shell_path

    run = shell_path(result.run_dir, "RUN")
    which = " --direction AtoB" if result.task == "cyclegan" else ""
    _say(
        f"next: edgegan infer {run}{which} --input IMAGES --out translated  |  edgegan export {run}"
    )


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--onnx", "onnx_fp32", is_flag=True, help="FP32 ONNX (always exported).")
@click.option("--fp16", is_flag=True, help="Also a mixed-precision FP16 graph (FP32 I/O).")
@click.option("--int8", is_flag=True, help="Also a static Q/DQ INT8 graph.")
@click.option("--out", type=click.Path(), help="Bundle folder (default: RUN_DIR/export).")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset (17-21).")
@click.option(
    "--exporter",
    type=click.Choice(["auto", "dynamo", "legacy"]),
    default="auto",
    show_default=True,
    help="torch's ONNX exporter: auto is dynamo when onnxscript is installed (the cleaner "
    "graph); legacy exports in a fraction of the time (a DCGAN: 2.7 s instead of 7 s).",
)
@click.option(
    "--calib-samples",
    type=int,
    default=256,
    show_default=True,
    help="INT8 calibration inputs (latents for a GAN, the run's images for a cyclegan).",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace the bundle in --out (the whole folder goes)."
)
@click.option(
    "--checkpoint",
    help="Which of the run's checkpoints/ to export: best, step_0001000, ... (default: last; "
    "RUN_DIR/checkpoints/NAME.pt as RUN_DIR says the same).",
)
@click.option(
    "--trt",
    is_flag=True,
    help="Also build TensorRT engines on this GPU (RUN_DIR may be an existing bundle).",
)
@click.option(
    "--workspace-gb", type=float, default=2.0, show_default=True, help="TensorRT workspace."
)
@click.option("--min-batch", type=int, help="TensorRT profile (default 1).")
@click.option("--opt-batch", type=int, help="TensorRT profile (default 1).")
@click.option("--max-batch", type=int, help="TensorRT profile (default 64; translators 8).")
@click.option("--min-size", type=int, help="TensorRT profile, translator H/W (default size/2).")
@click.option("--opt-size", type=int, help="TensorRT profile, translator H/W (default: the run's).")
@click.option("--max-size", type=int, help="TensorRT profile, translator H/W (default 2 x size).")
@click.option(
    "--direction",
    "directions",
    type=click.Choice(["AtoB", "BtoA"]),
    multiple=True,
    help="cyclegan: export (or build) only this direction (default: both; pix2pix: AtoB).",
)
@click.option(
    "--with",
    "artifacts",
    multiple=True,
    metavar="EXPORTER",
    help="Also run this artifact exporter from a plugin (edgegan list exporters shows the "
    "installed ones; the built-in onnx* write the graphs themselves); repeatable.",
)
@click.option(
    "--with-param",
    "artifact_params",
    multiple=True,
    metavar="NAME.KEY=VALUE",
    help="A parameter of a --with exporter's factory (the value is read as YAML, as in a "
    "config: true, 8, [1, 2]); repeatable.",
)
def export(
    run_dir: str,
    onnx_fp32: bool,
    fp16: bool,
    int8: bool,
    out: str | None,
    opset: int,
    exporter: str,
    calib_samples: int,
    overwrite: bool,
    checkpoint: str | None,
    trt: bool,
    workspace_gb: float,
    min_batch: int | None,
    opt_batch: int | None,
    max_batch: int | None,
    min_size: int | None,
    opt_size: int | None,
    max_size: int | None,
    directions: tuple[str, ...],
    artifacts: tuple[str, ...],
    artifact_params: tuple[str, ...],
) -> None:
    """Export a trained generator to a bundle: ONNX graphs + edgegan.json, parity-checked.

    A GAN run gives z [, labels] -> image; a cyclegan run one image -> translated graph per
    direction (dynamic batch, height and width), a pix2pix run one (AtoB). FP32 ONNX is
    always written; --fp16 and --int8 derive from it (a translator's INT8 is calibrated on
    the run's dataset). Each graph
    is run with ONNX Runtime against the torch generator and the errors are stored in
    edgegan.json. --trt builds a TensorRT engine per graph on this machine's GPU; `edgegan
    export BUNDLE --trt` builds them from an existing bundle's graphs (on the device that
    will run them).
    """
    from edgegan.export.api import default_out, format_table, summary_rows
    from edgegan.export.api import export as run_export
    from edgegan.export.bundle import is_bundle

    given = Path(run_dir)
    if given.suffix == ".pt" and given.parent.name == "checkpoints":  # a run's checkpoint file
        if checkpoint:
            raise EdgeganError(f"{run_dir} names a checkpoint already; drop --checkpoint")
        run_dir, checkpoint = str(given.parent.parent), given.stem
    # options of a part not asked for would be ignored without a word (infer refuses its own)
    ctx = click.get_current_context()
    engine_flags = ("workspace_gb", "min_batch", "opt_batch", "max_batch", "min_size",
                    "opt_size", "max_size")  # fmt: skip

    def flag_given(flag: str) -> bool:
        return ctx.get_parameter_source(flag) != ParameterSource.DEFAULT

    onto_bundle = trt and is_bundle(run_dir)  # its refusal below names its own options
    for flags, needs in ((engine_flags, "trt"), (("calib_samples",), "int8")):
        given_flags = [f for f in flags if flag_given(f)]
        if given_flags and not ctx.params[needs] and not onto_bundle:
            names = ", ".join("--" + f.replace("_", "-") for f in given_flags)
            verb = "sets" if len(given_flags) == 1 else "set"
            raise EdgeganError(f"{names} {verb} the --{needs} build: give --{needs} too")
    engine_options = None
    if trt:
        from edgegan.export.tensorrt import BuildOptions, import_tensorrt

        import_tensorrt()  # one line naming the extra, before any work
        engine_options = BuildOptions(  # checked here, before any work
            min_batch=min_batch,
            opt_batch=opt_batch,
            max_batch=max_batch,
            min_size=min_size,
            opt_size=opt_size,
            max_size=max_size,
            workspace_gb=workspace_gb,
        )
    if engine_options is not None and onto_bundle:  # --trt on a bundle
        if (
            out or fp16 or int8 or onnx_fp32 or artifacts or artifact_params
            or exporter != "auto" or checkpoint or flag_given("calib_samples")
            or flag_given("opset")
        ):  # fmt: skip
            raise EdgeganError(
                "a bundle keeps its graphs: with a bundle, --trt takes no --out/--onnx/--fp16/"
                "--int8/--calib-samples/--opset/--with/--with-param/--exporter/--checkpoint "
                "(export the run again to change them)"
            )
        _build_engines(run_dir, engine_options, directions)
        return
    bundle = default_out(run_dir, out)
    meta = run_export(
        run_dir,
        out=bundle,
        fp16=fp16,
        int8=int8,
        opset=opset,
        exporter=exporter,
        calib_samples=calib_samples,
        overwrite=overwrite,
        directions=directions or None,
        artifacts=artifacts,
        artifact_params=_exporter_params(artifact_params),
        progress=_say,
        checkpoint=checkpoint,
        engine_profile=engine_options,  # checked before anything is written
    )
    click.echo(format_table(summary_rows(meta, bundle)))
    for name in meta.get("artifacts", {}):
        click.echo(f"{name}: see artifacts.{name} in edgegan.json")
    if engine_options is not None:
        _build_engines(str(bundle), engine_options)
    click.echo(f"bundle: {bundle}")


def _build_engines(
    bundle: str, options: BuildOptions, directions: tuple[str, ...] | None = None
) -> None:
    from edgegan.export.tensorrt import build_engines, engine_rows

    engines = build_engines(bundle, options=options, directions=directions or None)
    for line in engine_rows(engines):
        click.echo(line)


def _exporter_params(pairs: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``--with-param NAME.KEY=VALUE`` options as ``{name: {key: value}}`` (an exporter's
    name may hold dots: the key is what follows the last one)."""
    from edgegan.config import parse_override

    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        try:
            path, value = parse_override(pair)
        except EdgeganError:
            path, value = [], None
        if len(path) < 2:
            raise EdgeganError(
                f"--with-param takes NAME.KEY=VALUE (an exporter given with --with, one of "
                f"its parameters), got '{pair}'"
            )
        name, key = ".".join(path[:-1]), path[-1]
        if key in out.setdefault(name, {}):
            raise EdgeganError(f"--with-param {name}.{key} is given twice")
        out[name][key] = value
    return out


def _key_values(pairs: tuple[str, ...], what: str) -> dict[str, str]:
    """``KEY=VALUE`` pairs (a repeated option) as a dict."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = (part.strip() for part in pair.partition("="))
        if not sep or not key or not value:
            raise EdgeganError(f"--{what} takes KEY=VALUE, got '{pair}'")
        if key in out:
            raise EdgeganError(f"--{what} {key} is given twice")
        out[key] = value
    return out


def _csv(text: str, what: str, cast: Any = str) -> list[Any]:
    try:
        values = [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EdgeganError(f"--{what} must be a comma-separated list, got '{text}'") from None
    if not values:
        raise EdgeganError(f"--{what} is empty")
    return values


@cli.command()
@click.argument("bundle", metavar="BUNDLE", type=click.Path())
@click.option(
    "--backends",
    default="torch,onnxruntime,tensorrt",
    show_default=True,
    help="Comma-separated backends.",
)
@click.option(
    "--precisions",
    default="fp32,fp16,int8",
    show_default=True,
    help="Comma-separated graph precisions (those a bundle lacks are listed as skipped).",
)
@click.option("--batch-sizes", default="1,8", show_default=True, help="Comma-separated sizes.")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed runs.")
@click.option("--iters", type=int, default=50, show_default=True, help="Timed runs.")
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="torch/onnxruntime device: auto, cpu, cuda or cuda:N (tensorrt: cuda).",
)
@click.option(
    "--threads", type=click.IntRange(min=1), help="onnxruntime intra-op threads (default: cores)."
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the inputs."
)
@click.option(
    "--json",
    "json_file",
    type=click.Path(),
    help="Also write the results here (replacing the file); '-': print them on stdout, the "
    "table on stderr.",
)
@click.option(
    "--size", help="cyclegan, pix2pix: input images N or HxW (default: the run's image size)."
)
@click.option(
    "--directions", help="cyclegan: comma-separated directions (default: all in the bundle)."
)
@_gpu_runner_options
def bench(
    bundle: str,
    backends: str,
    precisions: str,
    batch_sizes: str,
    warmup: int,
    iters: int,
    device: str,
    threads: int | None,
    seed: int,
    json_file: str | None,
    size: str | None,
    directions: str | None,
    cuda_graphs: bool | None,
    ort_options: tuple[str, ...],
    compile_: str | None,
    channels_last: bool,
) -> None:
    """Latency (p50/p95), images/s, peak memory and parity against torch FP32, per backend,
    precision and batch size (and direction of a cyclegan bundle, on random images of
    --size). Combinations that cannot run here are listed with the reason."""

    from edgegan.export.bundle import bundle_files
    from edgegan.fileio import same_path, strict_json, write_json
    from edgegan.runtime.bench import bench as run_bench
    from edgegan.runtime.bench_table import print_table, row_line
    from edgegan.scripting import check_json_path

    def progress(rows: list[dict[str, Any]]) -> None:
        # each row as it finishes, on stderr: a run cut short (a time limit) keeps them
        for row in rows:
            _say(f"bench: {row_line(row)}")

    to_stdout = json_file == "-"
    if not to_stdout:
        check_json_path(json_file)  # before minutes of benchmarking, not after
    if json_file and not to_stdout and any(same_path(json_file, f) for f in bundle_files(bundle)):
        raise EdgeganError(
            f"--json {json_file} is a file of the bundle {bundle}; write the results elsewhere"
        )
    result = run_bench(
        bundle,
        backends=_csv(backends, "backends"),
        precisions=_csv(precisions, "precisions"),
        batch_sizes=_csv(batch_sizes, "batch-sizes", int),
        warmup=warmup,
        iters=iters,
        device=device,
        seed=seed,
        threads=threads,
        directions=_csv(directions, "directions") if directions else None,
        size=size,
        cuda_graphs=cuda_graphs,
        ort_options=_key_values(ort_options, "ort-option"),
        compile=compile_,
        channels_last=channels_last,
        progress=progress,
    )
    from rich.console import Console

    print_table(result, Console(stderr=to_stdout))
    if not any(r["status"] == "ok" for r in result["results"]):
        # nothing measured: a failure, and no results file replaces one that holds figures
        raise EdgeganError("no backend, precision and batch size could run here (see above)")
    if to_stdout:
        click.echo(json.dumps(strict_json(result), indent=2, allow_nan=False))
    elif json_file:
        _say(f"wrote {write_json(json_file, result, follow_symlinks=True)}")


def _metric_params(options: tuple[str, ...]) -> dict[str, Any]:
    """``("weights=/w.pth", "batch_size=32")`` -> ``{"weights": "/w.pth", "batch_size": 32}``
    (values read as YAML, as training's ``key=value``)."""
    from edgegan.config import parse_override

    params: dict[str, Any] = {}
    for item in options:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip() or "." in key:
            raise EdgeganError(
                f"bad --metric-option '{item}': expected KEY=VALUE, e.g. batch_size=32"
            )
        params[key.strip()] = parse_override(item)[1]
    return params


#: Samples below which `edgegan eval` warns that its FD is biased (docs/eval.md).
FD_SAMPLES = 2000


@cli.command(name="eval")
@click.argument("samples", type=click.Path())
@click.option(
    "--reference",
    help="Reference data: mnist[:train|test] or idx:FOLDER[:split] (digits: mnist:test); "
    "fid: a folder or .npz of real images, or an FID statistics .npz. A run scored with "
    "--metric: its own eval.reference.",
)
@click.option(
    "--metric",
    help="A registered metric: digits (the default; a GAN run: the eval.metric it was trained "
    "with), fid or a plugin's (`edgegan plugins`); a cyclegan or pix2pix run: its paired "
    "scores on its test split, and fid.",
)
@click.option(
    "--metric-option",
    "-o",
    "metric_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A parameter of the metric's factory (repeatable), e.g. -o weights=FILE for fid.",
)
@click.option(
    "--save-stats",
    type=click.Path(dir_okay=False),
    help="fid: write the FID statistics (mu, sigma) of SAMPLES to this .npz instead of "
    "scoring them (a reference to score against later).",
)
@click.option("--overwrite", is_flag=True, help="--save-stats: replace the file if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--num",
    type=click.IntRange(min=1),
    help="A run or bundle: images to sample (2000); a translation run: its first N test items "
    "(its eval.num_samples).",
)
@click.option("--seed", type=click.IntRange(min=0), help="A run or bundle: latents' seed (0).")
@click.option(
    "--backend",
    type=click.Choice(["torch", "onnxruntime", "tensorrt"]),
    help="A run or bundle: the backend that samples (torch).",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    help="A run or bundle: the graph that samples (fp32).",
)
@click.option("--device", help="A run or bundle: auto, cpu, cuda or cuda:N (cpu).")
@click.option(
    "--data-root",
    type=click.Path(),
    help="A cyclegan or pix2pix run: where its data lies now (default: its data.root).",
)
def eval_cmd(
    samples: str,
    reference: str | None,
    metric: str | None,
    metric_options: tuple[str, ...],
    save_stats: str | None,
    overwrite: bool,
    as_json: bool,
    num: int | None,
    seed: int | None,
    backend: str | None,
    precision: str | None,
    device: str | None,
    data_root: str | None,
) -> None:
    """Score generated samples: a PNG folder or an .npz from `edgegan infer`, or a GAN run or
    bundle, sampled here (--num, --seed, --backend, --precision: e.g. a bundle's INT8 graph).

    A cyclegan or pix2pix run (also one from `edgegan import`) is scored on its dataset's
    test split as its training scores it: L1, PSNR and SSIM against the true translations
    of a paired split; --metric fid adds FID, KID, ... of each direction against the other
    domain's test images (--num of them, --device, --data-root).
    """
    from edgegan.export.bundle import is_bundle
    from edgegan.fileio import strict_json
    from edgegan.metrics.evaluate import evaluate, evaluate_generator
    from edgegan.train.logs import is_run_dir

    sampling = {"num": num, "seed": seed, "backend": backend, "precision": precision,
                "device": device}  # fmt: skip
    given = {k: v for k, v in sampling.items() if v is not None}
    params = _metric_params(metric_options)
    if overwrite and save_stats is None:
        raise EdgeganError(
            "--overwrite replaces the file of --save-stats; eval writes nothing else"
        )
    if save_stats is not None:
        if metric != "fid":
            raise EdgeganError("--save-stats writes FID statistics: use it with --metric fid")
        from edgegan.metrics.fid import save_stats as write_stats

        if given or reference or as_json:
            raise EdgeganError(
                "--save-stats reads the images of SAMPLES alone (no --reference, --json or "
                "sampling options)"
            )
        own = ("images", "out", "overwrite")
        takes = [p for p in inspect.signature(write_stats).parameters if p not in own]
        unknown = sorted(set(params) - set(takes))
        if unknown:
            raise EdgeganError(
                f"--save-stats takes -o {', '.join(takes)}; not {', '.join(unknown)}"
            )
        out = write_stats(samples, save_stats, overwrite=overwrite, **params)
        _say(f"wrote {out}")
        return
    from edgegan.metrics.translation import evaluate_translation_run, is_translation_run

    translator = is_translation_run(samples)
    if data_root is not None and not translator:
        raise EdgeganError("--data-root tells a cyclegan or pix2pix run where its data lies")
    if translator:
        others = {"reference": reference, "seed": seed, "backend": backend, "precision": precision}
        extra = [k for k, v in others.items() if v is not None]
        if extra:
            raise EdgeganError(
                f"a translation run is scored on its own test split with its generators: "
                f"no --{', --'.join(extra)}"
            )
        scores = evaluate_translation_run(
            samples,
            num=num,
            metric=metric,
            params=params or None,
            device=device or "cpu",
            data_root=data_root,
        )
    elif is_run_dir(samples) or is_bundle(samples):
        from edgegan.metrics.evaluate import default_metric

        given_metric, metric = metric, metric or default_metric(samples)  # a run: its own
        scores = evaluate_generator(
            samples,
            num=num or FD_SAMPLES,
            seed=seed or 0,
            backend=backend or "torch",
            precision=precision or "fp32",
            device=device or "cpu",
            reference=reference,
            metric=given_metric,  # None: the run's, and its errors say so
            params=params or None,  # no -o: the run's own eval.metric_params
        )
    elif given:
        raise EdgeganError(
            f"--{', --'.join(given)} sample a run or bundle; {samples} is neither (samples "
            "are scored as they are)"
        )
    else:
        metric = metric or "digits"
        scores = evaluate(samples, reference=reference, metric=metric, params=params)
    if not scores:
        raise EdgeganError(f"metric '{metric}' gave no scores for {samples}")
    n = scores.get("num_samples")
    from edgegan.metrics.classifier import FEATURE_DIM

    # (at N <= FEATURE_DIM the metric itself has warned that the figure means nothing)
    if "fd" in scores and isinstance(n, int) and FEATURE_DIM < n < FD_SAMPLES:
        _say(
            f"warning: an FD from {n} samples is biased upward (real digits score about 0.95 "
            f"at 500, 0.25 at 2,000; docs/eval.md): compare FDs at equal N, "
            f"{FD_SAMPLES:,} or more"
        )
    if as_json:
        click.echo(json.dumps(strict_json(scores), indent=2, allow_nan=False))
    else:
        width = max(len(k) for k in scores)
        for k, v in scores.items():
            click.echo(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json: bool) -> None:
    """List plugins: name, version, hooks, what each provides, load errors."""
    from edgegan.plugins.manager import get_manager, misplaced_entry_points

    infos, error = get_manager().plugin_infos()
    for line in misplaced_entry_points():
        _say(f"warning: {line}")
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in infos], indent=2))
    else:
        for info in infos:
            kind = "built-in" if info.builtin else info.distribution
            click.echo(f"{' '.join(filter(None, (info.name, info.version)))} ({kind})")
            if info.error:
                click.echo(f"  error: {info.error}")
            if info.hooks:
                click.echo(f"  hooks: {', '.join(info.hooks)}")
            for k, names in sorted(info.provides.items()):
                click.echo(f"  {k}: {', '.join(names)}")
            for conflict in info.conflicts:
                click.echo(f"  conflict: {conflict}")
    if error:
        raise EdgeganError(error)


@cli.command(name="list")
@click.argument("kind", type=click.Choice(LIST_KINDS))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (as plugins --json).")
def list_cmd(kind: str, as_json: bool) -> None:
    """List the registered parts of one kind, with the plugin that provides each."""
    from edgegan.plugins.manager import get_manager

    entries = list(get_manager().registry(kind))
    if as_json:
        fields = ("name", "role", "plugin", "distribution", "version", "description")
        click.echo(json.dumps([{f: getattr(e, f) for f in fields} for e in entries], indent=2))
        return
    if not entries:
        click.echo(f"no {kind} registered")
        return
    with_role = any(e.role for e in entries)
    rows = [
        (e.name, *([e.role or ""] if with_role else []), e.plugin, e.description) for e in entries
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [f"{c:<{w}}" for c, w in zip(row, widths, strict=False)] + [row[-1]]
        click.echo("  ".join(cells).rstrip())


def _source_and_overrides(args: list[str]) -> tuple[str | None, list[str]]:
    """``[PRESET|CONFIG.yaml] key=value ...`` split: the first argument is the source unless
    it is an override (a config file whose path holds '=', ``sweep/lr=0.1/c.yaml``, is one)."""
    if args:
        first = args[0]
        if "=" not in first or (first.endswith((".yaml", ".yml")) and Path(first).is_file()):
            return first, args[1:]
    return None, args


@cli.group(cls=_Commands)
def config() -> None:
    """Inspect presets and configs."""


@config.command("show")
@click.argument("preset", required=False)
@click.argument("overrides", nargs=-1)
def config_show(preset: str | None, overrides: tuple[str, ...]) -> None:
    """Print the resolved YAML of a preset (or config file) with overrides applied, after
    checking its parts and their parameters (names and types) as training would."""
    from edgegan.config import check_part_params, load_config
    from edgegan.train.checks import check_config

    preset, args = _source_and_overrides([preset, *overrides] if preset else list(overrides))
    config = load_config(preset, args)
    check_part_params(config)
    check_config(config)
    click.echo(config.to_yaml(), nl=False)
    if config.train.epochs is not None:
        click.echo(
            f"# train.epochs={config.train.epochs:g} sets train.steps from the data when the run "
            "starts (train.steps=N instead clears it)"
        )


@config.command("list")
def config_list() -> None:
    """List the shipped presets."""
    from edgegan.config import preset_names

    for name in preset_names():
        click.echo(name)


#: The 1-minute load average from which the CPU counts as shared with other work at start.
SHARED_CPU_LOAD = 0.75


def _wait_passively_when_shared() -> None:
    """OpenMP's threads (torch's CPU ops) spin while they wait for work: on a CPU that
    another job keeps busy they take its time and their own, and training ran 2.3x slower
    (docs/benchmarks.md). When the load average says the CPU is shared as the command
    starts, and the user chose no policy, they wait passively (``OMP_WAIT_POLICY=PASSIVE``,
    read when torch loads OpenMP: before any import of torch). On an idle CPU spinning is
    a few percent faster, so it stays there."""
    if "OMP_WAIT_POLICY" in os.environ or not hasattr(os, "getloadavg"):
        return
    try:
        shared = os.getloadavg()[0] >= SHARED_CPU_LOAD
    except OSError:  # no load average to read
        return
    if shared:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def _fill_closed_std_streams() -> None:
    """/dev/null in place of a standard stream the caller closed (``2>&-``): the files a
    command opens (a run's lock) took its number, so whatever wrote to stderr wrote into
    them, and Python's None for the stream failed the command once its work was done."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one, or lower
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        if getattr(sys, name) is None:
            mode = "r" if fd == 0 else "w"
            setattr(sys, name, open(fd, mode, encoding="utf-8", closefd=False))  # noqa: SIM115


def main() -> None:
    _fill_closed_std_streams()
    _wait_passively_when_shared()
    # A path the output's encoding cannot show (cp1252 on a redirected Windows stdout) is
    # escaped, as stderr already does, instead of failing a command after its work.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")
    cli(prog_name="edgegan")


if __name__ == "__main__":
    main()
