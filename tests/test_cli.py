"""The command line: fast start, one-line errors with exit code 2, commands end to end."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from tiny import TINY_GAN

from edgegan.cli import cli

TINY = TINY_GAN


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edgegan", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["plugins"],
        ["list", "models"],
        ["config", "list"],
        ["config", "show", "cyclegan-digits", "train.steps=5"],  # its checks too: 3 s -> 0.7 s
        ["config", "show", "dcgan-mnist"],
    ],
)
def test_light_commands_do_not_import_torch(args):
    """Nor does importing what `infer --backend onnxruntime` needs (edgegan.translate)."""
    code = (
        f"import sys\nfrom edgegan.cli import main\nsys.argv=['edgegan', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    # nor NumPy, 0.1-0.2 s of `plugins`, `list` and `config show`
    code += "assert 'numpy' not in sys.modules, 'numpy was imported'\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    code = "import sys, edgegan.translate\nassert 'torch' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "dcgan-mnst"], "unknown preset 'dcgan-mnst' (did you mean 'dcgan-mnist'?)"),
        (["train", "train.stepz=5"], "unknown config key 'train.stepz' (did you mean 'steps'?)"),
        (["train", "train.steps=many"], "config 'train.steps' must be int, got str 'many'"),
        (["train", "dcgan-mnist", "train.steps"], "bad override 'train.steps': expected key=val"),
        (["train", "train.steps"], "to set a key write train.steps=VALUE"),
        (["train", "missing.yaml"], "config file not found: missing.yaml"),
        (["train", "loss.name=hingee"], "unknown loss 'hingee' (did you mean 'hinge'?)"),
        (
            ["train", "model.generator.name=dcgn"],
            "unknown generator 'dcgn' (did you mean 'dcgan'?)",
        ),
        (["train", "data.name=mnsit"], "unknown dataset 'mnsit' (did you mean 'mnist'?)"),
        (["train", "model.generator.ngf=wide"], "parameter 'ngf' of generator 'dcgan' must be int"),
        (["train", "train.device=tpu"], "train.device must be auto, cpu, cuda or cuda:N"),
        (["infer", "no-such-run", "--num", "2", "--out", "o"], "run directory not found"),
        (["eval", "no-such-samples"], "no-such-samples"),
        (["config", "show", "nope"], "unknown preset 'nope'"),
        (
            ["config", "show", "cyclegan-digits", "data.nosuch=5"],
            "unknown parameter 'nosuch' for dataset 'cyclegan-digits'",
        ),
        (  # a latent generator cannot translate images, even when given a latent_dim
            ["config", "show", "cyclegan-digits", "model.generator.name=dcgan"],
            "generator 'dcgan' is a latent generator (z -> image); task cyclegan needs an "
            "image-to-image generator: set model.generator.name to one of: resnet_6blocks, "
            "resnet_9blocks, unet, unet_128, unet_256",
        ),
        (
            [
                "train",
                "cyclegan-digits",
                "model.generator.name=dcgan",
                "model.generator.latent_dim=8",
            ],
            "generator 'dcgan' is a latent generator (z -> image); task cyclegan needs",
        ),
        (  # an image-to-image generator given latents failed at step 1 with a traceback
            ["train", "model.generator.name=resnet_6blocks"],
            "generator 'resnet_6blocks' is an image-to-image generator; task gan needs a latent "
            "generator (z -> image): set model.generator.name to one of: dcgan",
        ),
    ],
)
def test_user_mistakes_are_one_line_exit_2(tmp_path, args, message):
    proc = subprocess.run(
        [sys.executable, "-m", "edgegan", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_config_show_resolves_overrides():
    result = CliRunner().invoke(
        cli, ["config", "show", "dcgan-mnist", "loss.name=lsgan", "train.steps=7"]
    )
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.output)
    assert data["loss"] == {"name": "lsgan"}
    assert data["train"]["steps"] == 7
    assert data["preset"] == "dcgan-mnist"


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.steps=-1", "train.steps must be > 0"),
        ("task=foo", "unknown task 'foo'"),
        ("eval.metric=nosuch", "unknown metric 'nosuch'"),
        # Without the value training would name (10, from the dataset): it said None.
        (
            "model.generator.num_classes=3",
            "parameter 'num_classes' of generator 'dcgan' is set by the task; remove it",
        ),
    ],
)
def test_config_show_refuses_what_training_refuses(override, message):
    # It exited 0 for these, which `train` refuses.
    result = CliRunner().invoke(cli, ["config", "show", "dcgan-mnist", override])
    assert result.exit_code == 2 and message in result.stderr


def test_a_config_file_whose_path_holds_an_equals_sign_is_the_source(tmp_path):
    folder = tmp_path / "sweep" / "lr=0.1"
    folder.mkdir(parents=True)
    shown = CliRunner().invoke(cli, ["config", "show", "dcgan-mnist", "train.steps=7"])
    (folder / "config.yaml").write_text(shown.output)
    # It was read as the override 'sweep/lr=...': "unknown config key".
    result = CliRunner().invoke(cli, ["config", "show", str(folder / "config.yaml"), "seed=3"])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.output)
    assert data["train"]["steps"] == 7 and data["seed"] == 3


def test_config_show_says_that_epochs_set_the_steps():
    result = CliRunner().invoke(cli, ["config", "show", "cyclegan"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["train"]["epochs"] == 200
    assert result.output.rstrip().endswith(
        "# train.epochs=200 sets train.steps from the data when the run starts "
        "(train.steps=N instead clears it)"
    )
    result = CliRunner().invoke(cli, ["config", "show", "cyclegan", "train.steps=9"])
    assert "# train.epochs" not in result.output
    assert yaml.safe_load(result.output)["train"]["epochs"] is None


def test_on_off_values_stay_strings():
    """YAML 1.1 reads off/on/yes/no as booleans; train.amp=off must stay the string 'off'."""
    result = CliRunner().invoke(
        cli, ["config", "show", "dcgan-mnist", "train.amp=off", "train.ema=false"]
    )
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.output)
    assert data["train"]["amp"] == "off" and data["train"]["ema"] is False


@pytest.mark.parametrize(
    "args, line",
    [
        (
            ["infer", "r", "--seed", "-1", "--out", "o"],
            "invalid value for '--seed': -1 is not in the range x>=0 (see edgegan infer --help)",
        ),
        (["infer"], "missing argument 'RUN_DIR|BUNDLE' (see edgegan infer --help)"),
        (["trian"], "no such command 'trian'; did you mean 'train'? (see edgegan --help)"),
        (["frobnicate"], "no such command 'frobnicate' (see edgegan --help)"),
        (["config", "shwo"], "no such command 'shwo'; did you mean 'show'? (see edgegan config"),
        (["train", "--bogsu"], "no such option '--bogsu'; train takes its settings as key=value"),
        (["infer", "r", "--nmu", "2"], "no such option '--nmu'; did you mean '--num'? (see edgeg"),
        (
            ["list"],
            "missing argument '{models|losses|datasets|metrics|exporters|callbacks}'. Choose "
            "from: models, losses, datasets, metrics, exporters, callbacks "
            "(see edgegan list --help)",
        ),
        # train's settings are config keys, not options: it says which key was meant
        (["train", "--device", "cpu"], "no such option '--device'; train takes train.device=VALUE"),
        (["train", "--seed", "1"], "no such option '--seed'; train takes seed=VALUE"),
        (["train", "--bogus"], "train takes its settings as key=value, e.g. train.steps=2000"),
        (["train", "--lr", "1"], "train takes settings as key=value: optim.g.lr=..., optim.d"),
        # before any command, and an option missing its value (no context of its own)
        (["--bogus"], "no such option '--bogus' (see edgegan --help)"),
        (["bench", "b", "--json"], "option '--json' requires an argument (see edgegan bench"),
    ],
)
def test_usage_errors_are_one_line_like_every_other_error(args, line):
    """click printed four lines (usage, a hint, a blank line, 'Error: ...')."""
    result = CliRunner().invoke(cli, args, prog_name="edgegan")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert line in result.stderr, result.stderr


@pytest.mark.parametrize("args", [[], ["config"]], ids=["edgegan", "config"])
def test_a_group_without_a_command_shows_its_help_as_help(args):
    """click >= 8.2 raises the help as a usage error: shown as the help (stderr, exit 2), as
    click does, not squashed into one cut 'error: usage: ...' line."""
    result = CliRunner().invoke(cli, args, prog_name="edgegan")
    assert result.exit_code == 2
    assert not result.stderr.startswith("error:"), result.stderr
    assert result.stderr.startswith(f"Usage: {' '.join(['edgegan', *args])} [OPTIONS] COMMAND")
    assert "\nCommands:\n" in result.stderr
    assert ("  train " if not args else "  show ") in result.stderr


def test_a_finished_run_says_what_comes_next():
    from types import SimpleNamespace

    from edgegan.cli import _next_commands

    done = SimpleNamespace(run_dir=Path("runs/my run"), stopped_by="steps")
    assert _next_commands("cyclegan", done) == [
        "next: edgegan infer 'runs/my run' --direction AtoB --input IMAGES --out translated"
        "  |  edgegan export 'runs/my run'"
    ]
    budget = SimpleNamespace(run_dir=Path("runs/a"), stopped_by="max_seconds")
    assert _next_commands("gan", budget) == [
        "continue with: edgegan train --resume runs/a",
        "next: edgegan infer runs/a --num 64 --out samples  |  edgegan export runs/a",
    ]


def test_list_shows_builtins_with_provenance():
    result = CliRunner().invoke(cli, ["list", "losses"])
    assert result.exit_code == 0
    for name in ("bce", "minimax", "lsgan", "hinge", "wgan-gp", "ragan"):
        assert name in result.output
    assert "edgegan.losses.plugin" in result.output
    shown = json.loads(CliRunner().invoke(cli, ["list", "models", "--json"]).output)
    resnet = next(e for e in shown if e["name"] == "resnet_9blocks")
    assert resnet["role"] == "generator" and resnet["plugin"] == "edgegan.nn.plugin"
    assert resnet["distribution"] == "edgegan" and resnet["description"]


def test_a_path_the_output_cannot_encode_is_escaped_not_a_crash(tmp_path):
    """A redirected stdout on Windows is cp1252: `train --out runs/画像` trained, then died
    printing its 'done' line (UnicodeEncodeError, exit 1)."""
    out = tmp_path / "画像"
    proc = run("train", *TINY, "eval.at_end=false", "--out", str(out),
               env={"PYTHONIOENCODING": "cp1252"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"-> {tmp_path}/\\u753b\\u50cf" in proc.stdout


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_a_closed_or_full_stderr_stops_the_lines_not_the_run(tmp_path):
    """`2>&-` failed every command with a progress bar (exit 1, no run: Python's stderr is
    None), and the run's lock file took fd 2; `2>/dev/full` (a log on a full disk) failed
    training at its first line."""
    import shlex

    cmd = [sys.executable, "-m", "edgegan", "train", *TINY, "eval.at_end=false",
           "train.progress=true"]  # fmt: skip
    for name, redirect in (("closed", "2>&-"), ("full", "2>/dev/full")):
        out = tmp_path / name
        line = f"{shlex.join([*cmd, '--out', str(out)])} {redirect}"
        proc = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (name, proc.stdout)
        assert (out / "checkpoints/last.pt").is_file() and "done: 2 steps" in proc.stdout
    # eval's result on stdout stays when its warning cannot be written (an FD of 200 samples)
    samples = tmp_path / "samples"
    infer = run("infer", str(tmp_path / "full"), "--num", "200", "--format", "npz",
                "--out", str(samples))  # fmt: skip
    assert infer.returncode == 0, infer.stderr
    ev = [sys.executable, "-m", "edgegan", "eval", str(samples / "images.npz"), "--json"]
    proc = subprocess.run(["bash", "-c", f"{shlex.join(ev)} 2>/dev/full"], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0 and json.loads(proc.stdout)["num_samples"] == 200, proc
    # an open number below 3 stays free for a standard stream: the lock is not fd 2
    code = (
        "import os, sys\nfrom edgegan.cli import _fill_closed_std_streams\n"
        "_fill_closed_std_streams()\nprint(os.open(os.devnull, os.O_RDONLY) > 2, "
        "sys.stderr is not None, file=sys.stdout)"
    )
    proc = subprocess.run(["bash", "-c", f"{shlex.join([sys.executable, '-c', code])} 2>&-"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.stdout.strip() == "True True", proc


@pytest.mark.slow
def test_train_resume_infer_via_cli(tmp_path):
    out = tmp_path / "run"
    proc = run("train", *TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "done: 2 steps" in proc.stdout
    # The commands it suggests next run as printed.
    (hint,) = [line for line in proc.stderr.splitlines() if line.startswith("next: ")]
    sample, export = hint.removeprefix("next: ").split("  |  ")
    assert sample == f"edgegan infer {out} --num 64 --out samples"
    assert export == f"edgegan export {out}"
    suggested = run(*shlex.split(sample)[1:-1], str(tmp_path / "suggested"))
    assert suggested.returncode == 0, suggested.stderr
    assert len(list((tmp_path / "suggested").glob("*.png"))) >= 64
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["steps"] == 2
    # A second run into the same folder is refused, and the first run is untouched.
    again = run("train", *TINY, "--out", str(out))
    assert again.returncode == 2 and "not empty" in again.stderr
    proc = run("train", "--resume", str(out), "train.steps=3")
    assert proc.returncode == 0, proc.stderr
    assert "3 steps" in proc.stdout

    samples = tmp_path / "samples"
    proc = run("infer", str(out), "--labels", "3,3,7", "--seed", "5", "--out", str(samples))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote 3 file(s) to {samples} (torch fp32 on cpu)"
    names = sorted(p.name for p in samples.iterdir())
    assert names == ["000000_label3.png", "000001_label3.png", "000002_label7.png"]

    npz_dir = tmp_path / "npz"
    proc = run("infer", str(out), "--num", "12", "--format", "npz", "--out", str(npz_dir))
    assert proc.returncode == 0, proc.stderr
    data = np.load(npz_dir / "images.npz")
    assert data["images"].shape == (12, 28, 28, 1) and data["images"].dtype == np.uint8
    assert data["labels"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    # Same seed, same images; a non-empty --out is refused without --overwrite.
    proc = run("infer", str(out), "--num", "12", "--format", "npz", "--out", str(npz_dir))
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    proc = run(
        "infer", str(out), "--num", "12", "--format", "npz", "--out", str(npz_dir), "--overwrite"
    )
    assert proc.returncode == 0
    assert (np.load(npz_dir / "images.npz")["images"] == data["images"]).all()

    proc = run("eval", str(npz_dir / "images.npz"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"fd"' in proc.stdout and '"label_accuracy"' in proc.stdout
    assert "warning: an FD from 12 samples means little" in proc.stderr  # the metric's
    assert "biased upward" not in proc.stderr  # (the CLI's, for 129 to 1,999 samples)
    json.loads(proc.stdout)  # the warning stays off stdout

    bad = run("infer", str(out), "--labels", "12", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "out of range" in bad.stderr
    assert not (tmp_path / "bad").exists()


def _raising_group():
    """A CLI group like edgegan's with a command `boom` that raises ``raised[0]``."""
    from edgegan import cli as cli_module

    group = cli_module._Group()
    raised: list[BaseException] = []

    @group.command()
    def boom() -> None:
        raise raised[0]

    return group, raised


def test_os_errors_ctrl_c_and_sigterm_end_in_one_line(monkeypatch):
    import errno

    from click.testing import CliRunner

    group, raised = _raising_group()

    @group.command()
    def term() -> None:
        import os
        import signal

        try:
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            raised.append(RuntimeError("cleanup ran"))

    cases = [
        (
            PermissionError(errno.EACCES, "Permission denied", "/ro/out"),
            2,
            "error: Permission denied: /ro/out",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "/full/x.pt"),
            1,
            "error: No space left on device: /full/x.pt",
        ),
        (KeyboardInterrupt(), 130, "interrupted"),
        # `edgegan list | head -1`: the reader gone; as SIGPIPE ends a process (it was 1, an
        # error, or 0, by the timing of the reader)
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), 141, ""),
        (  # `infer --num 1000000000` was a numpy traceback
            MemoryError("Unable to allocate 2.9 TiB"),
            1,
            "error: out of memory (Unable to allocate 2.9 TiB); ask for less at once",
        ),
        (MemoryError(), 1, "error: out of memory (MemoryError); ask for less at once"),  # was ()
        (  # PYTHONWARNINGS=error: edgegan's own warning became a traceback
            UserWarning("an FD from 64 samples means little"),
            1,
            "error: an FD from 64 samples means little (UserWarning, an error by "
            "-W/PYTHONWARNINGS)",
        ),
        (  # torch's CPU allocator (a checkpoint asking for latent_dim=10**9): a traceback
            RuntimeError(
                "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                "memory: you tried to allocate 4000000000000 bytes. Error code 12"
            ),
            1,
            "error: out of memory ([enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator:"
            " can't allocate memory: you tried to allocate 4000000000000 bytes. Error code 12);"
            " ask for less at once",
        ),
    ]
    for exc, code, line in cases:
        raised[:] = [exc]
        result = CliRunner().invoke(group, ["boom"])
        assert result.exit_code == code, result.output
        assert result.output.strip() == line
    raised[:] = [RuntimeError("a bug")]  # any other RuntimeError stays a traceback
    assert isinstance(CliRunner().invoke(group, ["boom"]).exception, RuntimeError)
    raised.clear()
    result = CliRunner().invoke(group, ["term"])
    assert result.exit_code == 143 and str(raised[0]) == "cleanup ran"
    assert result.output.strip() == "terminated (SIGTERM)"  # was silent

    # A SIGTERM whose exception an import swallowed (torch's catch broadly): the job ran to
    # its end with exit 0. The command ends as terminated when it returns.
    @group.command()
    def swallowed() -> None:
        import os
        import signal

        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except BaseException:  # noqa: S110 - as the import that lost it
            pass
        print("work done")

    result = CliRunner().invoke(group, ["swallowed"])
    assert result.exit_code == 143 and result.stdout == "work done\n"
    assert result.stderr.strip() == "terminated (SIGTERM)"
    assert CliRunner().invoke(group, ["swallowed"]).exit_code == 143  # each time, none left over


def test_control_characters_in_an_error_line_are_escaped(tmp_path):
    """A path holding a newline split the one error line in two; one holding a terminal's
    escape sequence (a crafted folder name) recoloured the terminal."""
    from click.testing import CliRunner

    cases = [("a\nb", "a\\nb"), ("a\x1b[31mred", "a\\x1b[31mred"), ("t\tab", "t\tab"),
             ("c1\x9b31m", "c1\\x9b31m"), ("ls\u2028x", "ls\\u2028x")]  # fmt: skip
    for name, shown in cases:
        res = CliRunner().invoke(cli, ["export", str(tmp_path / name)])
        assert res.exit_code == 2
        assert res.stderr == f"error: run directory not found: {tmp_path}{os.sep}{shown}\n"
    res = CliRunner().invoke(cli, ["infer", str(tmp_path), "--format", "a\rb"])
    assert res.exit_code == 2 and "'a\\rb' is not one of" in res.stderr
    assert len(res.stderr.splitlines()) == 1


def test_control_characters_in_a_warning_line_are_escaped():
    """A warning repeats names and paths as an error line does (a data folder's file, a
    plugin's message); it printed their newline and terminal escapes raw."""
    from edgegan.cli import _format_warning

    line = _format_warning("skipped a\nb\x1b[31m.png", UserWarning, "f.py", 1)
    assert line == "warning: skipped a\\nb\\x1b[31m.png\n"


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this system")
def test_a_closed_terminal_ends_a_command_as_sigterm_does_unless_under_nohup():
    """SIGHUP (an ssh session dropped) killed the process at once: no cleanup, no line."""
    import os

    from click.testing import CliRunner

    group, raised = _raising_group()

    @group.command()
    def hang() -> None:
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            print("went on")
        finally:
            raised.append("cleanup ran")

    # The test's own handler, not the default: a SIGHUP nothing took fails the test instead
    # of killing pytest, and the test holds under `nohup pytest` (SIGHUP ignored) too
    old = signal.signal(signal.SIGHUP, _hangup_not_taken)
    try:
        result = CliRunner().invoke(group, ["hang"])
        assert result.exit_code == 129 and raised == ["cleanup ran"]
        assert result.stderr.strip() == "terminated (SIGHUP)" and result.stdout == ""
        assert signal.getsignal(signal.SIGHUP) is _hangup_not_taken  # put back
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup edgegan ...
        result = CliRunner().invoke(group, ["hang"])
        assert result.exit_code == 0 and result.stdout == "went on\n"
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)
    # SIGUSR1 and SIGUSR2, a batch scheduler's warnings, end a command as SIGTERM does
    for signum in (signal.SIGUSR1, signal.SIGUSR2):
        raised.clear()
        outside = signal.signal(signum, _hangup_not_taken)  # not taken: fails, not killed

        @group.command(name=f"usr{signum}")
        def usr(signum: int = signum) -> None:
            try:
                os.kill(os.getpid(), signum)
                print("went on")
            finally:
                raised.append("cleanup ran")

        result = CliRunner().invoke(group, [f"usr{signum}"])
        assert result.exit_code == 128 + signum and raised == ["cleanup ran"]
        assert result.stderr.strip() == f"terminated ({signal.Signals(signum).name})"
        assert signal.getsignal(signum) is _hangup_not_taken  # put back
        signal.signal(signum, outside)


def _hangup_not_taken(signum, frame):
    raise AssertionError(
        f"{signal.Signals(signum).name} reached the test: edgegan did not handle it"
    )


def test_an_os_error_of_another_rank_is_printed_with_its_rank(monkeypatch):
    import errno

    from click.testing import CliRunner

    import edgegan.cli as cli_mod
    from edgegan.errors import EdgeganError

    group, raised = _raising_group()
    waits: list[float] = []
    monkeypatch.setattr(cli_mod.time, "sleep", waits.append)
    # RANK alone is no job of several processes: every error is this process's to print
    monkeypatch.setenv("RANK", "1")
    raised[:] = [EdgeganError("bad key")]
    assert CliRunner().invoke(group, ["boom"]).output.strip() == "error: bad key"
    monkeypatch.setenv("WORLD_SIZE", "2")
    raised[:] = [OSError(errno.EIO, "disk gone", "/data/x.png")]
    assert CliRunner().invoke(group, ["boom"]).output.strip() == (
        "error: [rank 1] disk gone: /data/x.png"
    )
    raised[:] = [EdgeganError("bad key")]  # agreed by every rank: rank 0 prints it
    result = CliRunner().invoke(group, ["boom"])
    assert result.output.strip() == "" and result.exit_code == 2 and waits == []
    # ... and under torchrun this rank waits to be ended after rank 0 has printed and exited:
    # exiting first made torchrun kill rank 0 before it reported (seen on the H100)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    result = CliRunner().invoke(group, ["boom"])
    assert result.exit_code == 2 and waits == [cli_mod.SILENT_RANK_WAIT]
    # not ended in that time, rank 0 did not report it: the error was this rank's alone (a
    # config given to it only, found before the processes met, while rank 0 waits for it),
    # and it said nothing before torchrun ended the job
    assert result.output.strip() == "error: [rank 1] bad key"
    monkeypatch.setenv("RANK", "0")
    assert CliRunner().invoke(group, ["boom"]).output.strip() == "error: bad key"
    assert waits == [cli_mod.SILENT_RANK_WAIT]  # rank 0 reports and exits at once


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_silent_rank_waiting_for_rank_0_ends_at_once_on_sigterm_or_ctrl_c(
    monkeypatch, signum, code
):
    """torchrun sends SIGTERM to the other workers once rank 0 has exited: the waiting rank
    must end then, with 143 (or 130 on Ctrl-C), not after its whole wait."""
    import threading
    import time

    from click.testing import CliRunner

    import edgegan.cli as cli_mod
    from edgegan.errors import EdgeganError

    group, raised = _raising_group()
    raised[:] = [EdgeganError("bad key")]
    for key, value in (("RANK", "1"), ("WORLD_SIZE", "2"), ("TORCHELASTIC_RUN_ID", "t")):
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(cli_mod, "SILENT_RANK_WAIT", 60.0)
    # Python's own Ctrl-C handler, as in a terminal: a process started in the background
    # by a non-interactive shell (`cmd &`, as CI may be) inherits SIGINT ignored
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signum))
    t0 = time.monotonic()
    timer.start()
    try:
        result = CliRunner().invoke(group, ["boom"])
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, old)
    assert result.exit_code == code and result.output.strip() == ""
    assert time.monotonic() - t0 < 10


def test_a_rank_that_cannot_see_the_run_it_resumes_says_so_at_once(monkeypatch, tmp_path):
    """Multi-node without a shared filesystem: the node lacking the run printed nothing (the
    error read as one every rank makes alike, rank 0's to print), waited, and left the nodes
    that have it waiting in the process group for train.dist_timeout."""
    import edgegan.cli as cli_mod

    waits: list[float] = []
    monkeypatch.setattr(cli_mod.time, "sleep", waits.append)
    for key, value in (("RANK", "1"), ("WORLD_SIZE", "2"), ("TORCHELASTIC_RUN_ID", "t")):
        monkeypatch.setenv(key, value)
    missing = tmp_path / "run"
    result = CliRunner().invoke(cli_mod.cli, ["train", "--resume", str(missing)])
    assert result.exit_code == 2 and waits == []
    assert result.output.strip() == (
        f"error: [rank 1] not a run directory (no config.yaml): {missing}"
    )
    # A mistake every process makes alike (a bad override) stays rank 0's to print.
    from edgegan.config import load_config

    missing.mkdir()
    (missing / "config.yaml").write_text(yaml.safe_dump(load_config("dcgan-mnist").to_dict()))
    result = CliRunner().invoke(cli_mod.cli, ["train", "--resume", str(missing), "bogus.key=1"])
    assert result.exit_code == 2 and waits == [cli_mod.SILENT_RANK_WAIT]
    assert result.output.strip().startswith("error: [rank 1] ")  # only once not ended first


def test_a_copied_runs_stale_bundle_is_reexported_from_the_copy(tmp_path):
    """A run folder copied and trained on: the stale-bundle hints named the original run
    (whose older weights `export --overwrite` would then have put into the copy's bundle),
    and told a user who gave the run directory to give the run directory."""
    import shutil

    from edgegan.config import load_config, load_run_config
    from edgegan.export import export
    from edgegan.runtime.base import StaleBundleWarning
    from edgegan.train import train

    original = tmp_path / "g1"
    train(load_config("dcgan-mnist", [*TINY_GAN, "train.sample_grid=4"]), out_dir=original)
    export(original)
    copy = tmp_path / "g1copy"
    shutil.copytree(original, copy)
    train(load_run_config(copy, "train.steps=3"), resume=copy)
    later = (copy / "export/edgegan.json").stat().st_mtime + 60
    os.utime(copy / "checkpoints/last.pt", (later, later))  # as a resume minutes later
    infer = ["infer", str(copy), "--backend", "onnxruntime", "--num", "2"]
    with pytest.warns(StaleBundleWarning) as seen:
        res = CliRunner().invoke(cli, [*infer, "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert f"run `edgegan export {copy} --overwrite` to export the latest" in str(seen[0].message)
    bench = ["bench", str(copy), "--backends", "onnxruntime", "--batch-sizes", "1", "--iters", "1"]
    with pytest.warns(StaleBundleWarning) as seen:
        res = CliRunner().invoke(cli, bench)
    assert res.exit_code == 0, res.output
    said = " ".join(str(w.message) for w in seen)
    assert f"export again (`edgegan export {copy} --overwrite`); parity" in said
    assert f"{original} " not in said and "give the run directory" not in said


def test_train_says_at_its_start_when_a_time_budget_will_stop_it(tmp_path):
    """The default preset's 540 s safety net also stops a run made longer from it (a
    100,000-step GPU run stopped after 9 minutes, said only at its end)."""
    args = ["train", "dcgan-mnist", *TINY_GAN, "train.progress=true"]
    res = CliRunner().invoke(cli, [*args, "train.max_seconds=600", "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    said = "this session stops after 600 s (train.max_seconds; train.max_seconds=null trains all 2"
    assert f"train gan: {said} steps)" in res.stderr
    res = CliRunner().invoke(cli, [*args, "train.max_seconds=null", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert "stops after" not in res.stderr and "training into" in res.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["predict", "RUN"], "no such command 'predict'; use edgegan infer (samples a GAN,"),
        (["translate"], "no such command 'translate'; use edgegan infer (samples a GAN,"),
        (["val", "x"], "no such command 'val'; use edgegan eval (scores samples)"),
        (["benchmark"], "no such command 'benchmark'; use edgegan bench (latency,"),
        (["train", "--name", "x"], "no such option '--name'; the run directory is --out DIR"),
        (["train", "--dataroot", "d"], "no such option '--dataroot'; train takes data.root=DIR"),
        (["train", "--continue_train"], "no such option '--continue_train'; continue a run with"),
    ],
)
def test_other_tools_commands_and_options_point_to_ours(args, said):
    """What users of Ultralytics or the reference CycleGAN type first: `--name` matched every
    `*.name` key ("data.name=..."), `predict` had no hint at all."""
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2
    assert res.stderr.startswith(f"error: {said}") and res.stderr.count("\n") == 1


def test_export_takes_one_of_the_runs_checkpoints_and_its_bundle_runs_against_it(tmp_path):
    """`export RUN --checkpoint NAME` (or RUN/checkpoints/NAME.pt): the bundle records the
    checkpoint, the torch backend and bench's reference run that one (not last.pt, which
    is further on), and a re-export hint keeps it."""
    from edgegan.config import load_config
    from edgegan.export import read_bundle
    from edgegan.runtime import open_runner
    from edgegan.runtime.base import StaleBundleError
    from edgegan.train import train

    extra = ["train.steps=4", "train.checkpoint_every=2", "train.keep_checkpoints=2"]
    run = train(load_config("dcgan-mnist", [*TINY_GAN, *extra]), out_dir=tmp_path / "r").run_dir
    (run / "checkpoints/step_0000002.pt").rename(run / "checkpoints/early.pt")  # any name
    early = tmp_path / "early"
    res = CliRunner().invoke(
        cli, ["export", str(run / "checkpoints/early.pt"), "--out", str(early)]
    )
    assert res.exit_code == 0, res.output
    source = read_bundle(early)["source"]
    assert source["checkpoint"] == "early" and source["step"] == 2
    open_runner(early, "torch").close()  # early.pt's weights (last.pt's: StaleBundleError)
    res = CliRunner().invoke(cli, ["export", str(run), "--out", str(early)])
    assert res.exit_code == 2  # what --overwrite would replace is said
    assert res.stderr.endswith(
        f"(it holds a bundle of {run.resolve()} at step 2 from checkpoint early: fp32)\n"
    )
    res = CliRunner().invoke(
        cli, ["export", str(run), "--checkpoint", "nope", "--out", str(tmp_path / "n")]
    )
    assert res.exit_code == 2
    have = "(it has: early, last, step_0000004)"
    assert res.stderr == f"error: no checkpoint 'nope' in {run / 'checkpoints'} {have}\n"
    assert not (tmp_path / "n").exists()
    (run / "checkpoints/early.pt").unlink()  # pruned since
    with pytest.raises(
        StaleBundleError, match="was exported from checkpoint 'early' of .*, which is gone"
    ):
        open_runner(early, "torch")
    from edgegan.export.bundle import export_command

    assert export_command(early, read_bundle(early)).endswith(
        f" --checkpoint early --out {early} --overwrite"
    )


def test_labels_are_class_numbers_or_the_runs_class_names():
    """`--labels 7,Sneaker` on a Fashion-MNIST run: 'must be comma-separated integers'
    before, though the spec holds the class names."""
    from edgegan.errors import EdgeganError
    from edgegan.sampling import class_indices, make_inputs, parse_labels

    spec = {"latent_dim": 4, "num_classes": 3, "class_names": ["T-shirt/top", "Sneaker", "Bag"]}
    assert parse_labels(" 2, sneaker,T-shirt/top ") == [2, "sneaker", "T-shirt/top"]
    assert class_indices(parse_labels("2,sneaker,T-shirt/top"), spec) == [2, 1, 0]
    assert make_inputs(spec, 3, labels=["Bag", 0, "SNEAKER"])["labels"].tolist() == [2, 0, 1]
    with pytest.raises(EdgeganError, match=r"no class 'Boot'; its classes are T-shirt/top, Sn"):
        class_indices(["Boot"], spec)
    with pytest.raises(EdgeganError, match="its classes have no names: give numbers"):
        class_indices(["cat"], {**spec, "class_names": []})
    # classes named by numbers: 1 is class number 1 ('2') and the class named '1' (number 0)
    numbered = {**spec, "class_names": ["1", "2", "3"]}
    with pytest.raises(EdgeganError, match=r"1 is both class number 1 and the class named '1'"):
        class_indices(parse_labels("1"), numbered)
    assert class_indices([0, 2], {**spec, "class_names": ["0", "1", "2"]}) == [0, 2]  # MNIST's
    assert parse_labels("-+3,+2") == ["-+3", 2]  # no number: a name (no traceback)


def test_infer_writes_one_grid_sheet(tmp_path):
    """`--format grid`: one grid.png of the images (a column per class when the labels cycle
    through them), the same pixels as the PNGs one by one."""
    from PIL import Image

    from edgegan.config import load_config
    from edgegan.train import train

    run = train(load_config("dcgan-mnist", TINY_GAN), out_dir=tmp_path / "r").run_dir
    for fmt, out in (("png", "p"), ("grid", "g")):
        res = CliRunner().invoke(
            cli, ["infer", str(run), "--num", "20", "--format", fmt, "--out", str(tmp_path / out)]
        )
        assert res.exit_code == 0, res.output
    assert [p.name for p in (tmp_path / "g").iterdir()] == ["grid.png"]
    grid = np.asarray(Image.open(tmp_path / "g/grid.png"))
    assert grid.shape[:2] == (2 + 2 * 30, 2 + 10 * 30)  # 28 px digits, 2 px apart: 10 x 2
    third = np.asarray(Image.open(tmp_path / "p/000012_label2.png"))  # row 1, column 2
    assert np.array_equal(grid[32:60, 62:90].squeeze(), third)
    # labels that do not cycle: a square sheet, not 2 columns mixing 3s and 7s
    # (cycling 3,7 x3: 2 columns, 3 rows; the square sheet would be 3 columns, 2 rows)
    for labels, shape in (("3,3,3,3,7", (62, 92)), ("3,7,3,7,3,7", (92, 62))):
        res = CliRunner().invoke(
            cli,
            ["infer", str(run), "--labels", labels, "--format", "grid", "--out",
             str(tmp_path / labels)],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert np.asarray(Image.open(tmp_path / labels / "grid.png")).shape[:2] == shape, labels
    res = CliRunner().invoke(
        cli, ["infer", str(run), "--num", "1025", "--format", "grid", "--out", str(tmp_path / "x")]
    )
    assert res.exit_code == 2 and "--format grid takes at most 1024 images" in res.stderr


def test_infer_without_out_writes_a_new_folder_each_time(tmp_path, monkeypatch):
    """No --out: runs/infer, then runs/infer-2, ... (as train's runs/PRESET-N): an earlier
    result is never overwritten, and the line says where the files went."""
    from edgegan.config import load_config
    from edgegan.train import train

    run = train(load_config("dcgan-mnist", TINY_GAN), out_dir=tmp_path / "r").run_dir
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "infer-2").mkdir(parents=True)  # taken, though empty
    for out, num in (("infer", 2), ("infer-3", 3)):
        res = CliRunner().invoke(cli, ["infer", str(run), "--num", str(num)])
        assert res.exit_code == 0, res.output
        assert f"wrote {num} file(s) to runs/{out} " in res.output
        assert len(list((tmp_path / "runs" / out).iterdir())) == num
    assert not any((tmp_path / "runs" / "infer-2").iterdir())
    # The folder is made as it is chosen: one another process made after the check (two
    # infers started together both wrote into runs/infer) is passed over for the next.
    import edgegan.cli as cli_mod

    free = cli_mod._free_folder
    raced = []

    def made_meanwhile(root, name):
        path = free(root, name)
        if not raced:  # another process makes it between the check and the mkdir
            raced.append(path)
            path.mkdir()
        return path

    monkeypatch.setattr(cli_mod, "_free_folder", made_meanwhile)
    res = CliRunner().invoke(cli, ["infer", str(run), "--num", "1"])
    assert res.exit_code == 0 and "to runs/infer-5 " in res.output, res.output
    assert raced == [Path("runs/infer-4")]
    # a failed infer takes its new folder back (and runs/, if it made that)
    shutil.rmtree(tmp_path / "runs")
    res = CliRunner().invoke(cli, ["infer", str(run), "--num", "1", "--labels", "99"])
    assert res.exit_code == 2 and not (tmp_path / "runs").exists(), res.output


def test_eval_samples_a_run_or_bundle_itself(tmp_path):
    """`eval RUN|BUNDLE --num N --seed S [--backend --precision]` scores what `infer --format
    npz` then `eval images.npz` scored, in one step."""
    from edgegan.config import load_config
    from edgegan.export import export
    from edgegan.train import train

    run = train(load_config("dcgan-mnist", TINY_GAN), out_dir=tmp_path / "r").run_dir
    export(run, out=tmp_path / "b", int8=True, calib_samples=8)
    infer = ["infer", str(run), "--num", "300", "--seed", "3", "--format", "npz"]
    assert CliRunner().invoke(cli, [*infer, "--out", str(tmp_path / "s")]).exit_code == 0

    def scores(*args: str) -> dict:
        res = CliRunner().invoke(cli, ["eval", *args, "--json"])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    two_steps = scores(str(tmp_path / "s"))
    assert scores(str(run), "--num", "300", "--seed", "3") == two_steps
    ort = scores(str(tmp_path / "b"), "--backend", "onnxruntime", "--num", "300", "--seed", "3")
    assert ort["num_samples"] == 300 and ort["fd"] == pytest.approx(two_steps["fd"], rel=1e-3)
    int8 = scores(str(tmp_path / "b"), "--backend", "onnxruntime", "--precision", "int8",
                  "--num", "300", "--seed", "3")  # fmt: skip
    assert int8["num_samples"] == 300 and int8 != two_steps
    res = CliRunner().invoke(cli, ["eval", str(tmp_path / "s"), "--num", "5"])
    assert res.exit_code == 2 and "--num sample a run or bundle" in res.stderr


def test_a_runs_bundle_of_another_checkpoint_is_stale_by_that_checkpoint(tmp_path):
    """RUN/export from --checkpoint step_N: training on (a newer last.pt) leaves it as it
    was exported; a rewritten step_N makes it stale, and the hint re-exports that one."""
    import warnings

    from edgegan.config import load_config
    from edgegan.export import export
    from edgegan.runtime import open_runner
    from edgegan.runtime.base import StaleBundleWarning
    from edgegan.train import train

    extra = ["train.steps=4", "train.checkpoint_every=2", "train.keep_checkpoints=2"]
    run = train(load_config("dcgan-mnist", [*TINY_GAN, *extra]), out_dir=tmp_path / "r").run_dir
    export(run, checkpoint="step_0000002")
    later = (run / "export/edgegan.json").stat().st_mtime + 60
    os.utime(run / "checkpoints/last.pt", (later, later))
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleBundleWarning)
        open_runner(run, "onnxruntime").close()
    os.utime(run / "checkpoints/step_0000002.pt", (later, later))
    with pytest.warns(
        StaleBundleWarning, match="before the run's checkpoint 'step_0000002' was last written"
    ) as seen:
        open_runner(run, "onnxruntime").close()
    assert f"edgegan export {run} --checkpoint step_0000002 --overwrite" in str(seen[0].message)


def test_openmp_threads_wait_passively_when_the_cpu_is_shared(monkeypatch):
    """Spinning OpenMP threads on a CPU another job kept busy trained 2.3x slower; on an
    idle CPU spinning is a few percent faster, and a policy the user chose stays."""
    import edgegan.cli as cli_mod

    for load, expected in ((1.9, "PASSIVE"), (0.2, None)):
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        cli_mod._wait_passively_when_shared()
        assert os.environ.get("OMP_WAIT_POLICY") == expected
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 3.0, 3.0))
    cli_mod._wait_passively_when_shared()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
