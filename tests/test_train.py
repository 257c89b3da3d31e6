"""Training end to end on tiny CPU configs: losses, networks, resume, guards, budgets."""

from __future__ import annotations

import errno
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import draws, seed_all

from edgegan import hookimpl
from edgegan.config import load_config, load_run_config
from edgegan.errors import ConfigError, DataError, EdgeganError, TrainingDiverged
from edgegan.plugins.manager import PluginManager, reset_manager
from edgegan.train import train
from edgegan.train.checkpoint import load_checkpoint

TINY = [
    "data.limit=256",
    "model.latent_dim=16",
    "model.generator.ngf=8",
    "model.discriminator.ndf=8",
    "train.batch_size=16",
    "train.device=cpu",
    "train.progress=false",
    "train.sample_grid=20",
    "train.log_every=2",
    "eval.at_end=false",
]


def tiny(*overrides: str, steps: int = 4):
    return load_config("dcgan-mnist", [*TINY, f"train.steps={steps}", *overrides])


@pytest.mark.parametrize("loss", ["bce", "minimax", "lsgan", "hinge", "wgan-gp", "ragan"])
def test_each_loss_trains(tmp_path, loss):
    result = train(tiny(f"loss.name={loss}"), out_dir=tmp_path / "run")
    assert result.step == 4
    records = [
        json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in records] == [2, 4]
    for key in ("d_loss", "g_loss", "d_real", "d_fake", "step_time", "images_per_sec"):
        assert math.isfinite(records[-1][key])
    if loss == "wgan-gp":
        assert records[-1]["d_penalty"] >= 0


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.conditional=false"],
        ["model.discriminator.conditioning=concat"],
        ["model.discriminator.spectral_norm=false", "model.discriminator.norm=batch"],
        ["data.image_size=28"],
        ["data.image_size=64", "data.channels=3", "model.conditional=false"],
        ["train.r1_gamma=1.0", "train.r1_every=2", "train.d_steps=2"],
        ["train.lr_schedule=linear", "train.ema=false"],
        ["train.augment=translation,cutout"],
    ],
    ids=["uncond", "concat", "bn-disc", "28px", "64px-rgb", "r1-dsteps", "linear-noema", "augment"],
)
def test_network_variants_train(tmp_path, overrides):
    result = train(tiny(*overrides, steps=2), out_dir=tmp_path / "run")
    assert result.step == 2
    assert (tmp_path / "run/samples/final.png").is_file()


def test_run_dir_contents_and_checkpoint_is_weights_only(tmp_path):
    result = train(tiny("train.checkpoint_every=2", "train.sample_every=2"), out_dir=tmp_path / "r")
    run = result.run_dir
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "report.md",
        "checkpoints/last.pt",
        "samples/step_0000002.png",
        "samples/final.png",
    ):
        assert (run / name).is_file(), name
    state = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert state["step"] == 4
    assert set(state["networks"]) == {"generator", "discriminator"}
    assert set(state["optimizers"]) == {"g", "d"}
    assert state["spec"]["num_classes"] == 10 and state["spec"]["latent_dim"] == 16
    assert "torch" in state["rng"] and state["data"]["consumed"] == 4


def _weights(run_dir):
    state = load_checkpoint(run_dir / "checkpoints/last.pt")
    return state


@pytest.mark.parametrize(
    "extra",
    [[], ["loss.name=wgan-gp", "train.amp=bf16", "train.augment=translation,cutout"]],
    ids=["bce", "gp-bf16"],
)
@pytest.mark.filterwarnings("ignore:train.amp=bf16 on a CPU")  # emulated bf16: slow, exact
def test_resume_is_exact(tmp_path, extra):
    steps = ["train.checkpoint_every=3", *extra]
    full = train(tiny(*steps, steps=6), out_dir=tmp_path / "full")
    half = train(tiny(*steps, steps=3), out_dir=tmp_path / "half")
    assert half.step == 3

    resumed = train(load_run_config(half.run_dir, ["train.steps=6"]), resume=half.run_dir)
    assert resumed.step == 6
    a, b = _weights(full.run_dir), _weights(resumed.run_dir)
    for part in ("networks",):
        for net in a[part]:
            for key, value in a[part][net].items():
                assert torch.equal(value, b[part][net][key]), f"{net}.{key}"
    for key, value in a["ema"].items():
        assert torch.equal(value, b["ema"][key]), f"ema.{key}"
    lines = (resumed.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [2, 3, 4, 6]


def test_a_resume_that_cannot_continue_exactly_says_so(tmp_path):
    """Another CPU thread count (a resume on another machine, or under taskset) or DataLoader
    workers where there were none trained other weights than a run never stopped, silently."""
    import warnings

    run = train(tiny("train.threads=1", steps=2), out_dir=tmp_path / "r").run_dir
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same settings: exact, nothing said
        train(load_run_config(run, ["train.steps=3"]), resume=run)
    with pytest.warns(UserWarning) as caught:
        train(load_run_config(run, ["train.steps=4", "train.threads=2", "train.num_workers=1"]),
              resume=run)  # fmt: skip
    said = [str(w.message) for w in caught]
    threads = "resumed with 2 CPU threads, the run trained with 1: "
    assert any(m.startswith(threads) and m.endswith("(train.threads=1 continues it exactly)")
               for m in said), said  # fmt: skip
    assert any("resumed with train.num_workers=1, the run trained with 0" in m for m in said)
    # saved by two processes and resumed in one: the noise is reseeded anyway (its own
    # warning), so another thread count (torchrun's OMP_NUM_THREADS=1) is no news
    state = torch.load(run / "checkpoints/last.pt", weights_only=True)
    state["rng_ranks"] = [state["rng"], state["rng"]]
    torch.save(state, run / "checkpoints/last.pt")
    with pytest.warns(UserWarning) as caught:
        train(load_run_config(run, ["train.steps=5", "train.threads=1", "train.num_workers=0"]),
              resume=run)  # fmt: skip
    said = [str(w.message) for w in caught]
    assert any("saved by 2 processes and resumes in one" in m for m in said), said
    assert not any("CPU thread" in m for m in said), said


def test_an_epoch_sized_run_resumed_with_another_batch_size_says_its_steps_changed(tmp_path):
    """train.epochs counts steps from the batch size: resumed with another one, the run
    trains another number of steps (and decays its learning rate over them)."""
    import shutil
    import warnings

    run = train(tiny("train.epochs=0.25"), out_dir=tmp_path / "r").run_dir  # 16 batches: 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # another length asked for: nothing to say
        assert train(load_run_config(run, ["train.epochs=0.5"]), resume=run).step == 8
    said = (
        r"^train.epochs=0.5 is {} steps now, the run planned {} \({}\): it trains to step {} "
        r"and its learning-rate schedule follows the new count{}$"
    )
    copy = shutil.copytree(run, tmp_path / "copy")  # at step 8, its planned end
    with pytest.warns(UserWarning, match=said.format(16, 8, "train.batch_size 16, now 8", 16, "")):
        resumed = train(load_run_config(run, ["train.batch_size=8"]), resume=run)
    assert resumed.step == 16
    with pytest.warns(
        UserWarning, match=said.format(16, 8, "the training data holds 512 items now", 16, "")
    ):
        assert train(load_run_config(copy, ["data.limit=512"]), resume=copy).step == 16
    # stopped before its planned end, the old plan is one override away; two discriminator
    # batches a step halve a gan's steps
    short = train(tiny("train.epochs=0.5", "train.max_seconds=0.001"), out_dir=tmp_path / "s")
    assert short.step == 1
    keep = r" \(train.steps=8 keeps the run's plan\)"
    with pytest.warns(UserWarning, match=said.format(4, 8, "train.d_steps 1, now 2", 4, keep)):
        again = load_run_config(short.run_dir, ["train.d_steps=2", "train.max_seconds=null"])
        assert train(again, resume=short.run_dir).step == 4


def test_a_steps_sized_run_resumed_on_changed_data_says_so(tmp_path):
    """The batch order follows the data's size: a run sized by train.steps resumed on a
    folder that lost most of its images went on in silence."""
    import warnings

    run = train(tiny("data.limit=256", steps=2), out_dir=tmp_path / "r").run_dir
    assert load_checkpoint(run / "checkpoints/last.pt")["data"] == {"consumed": 2, "size": 256}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same data: nothing to say
        train(load_run_config(run, ["train.steps=3"]), resume=run)
    with pytest.warns(UserWarning) as caught:
        train(load_run_config(run, ["train.steps=4", "data.limit=100"]), resume=run)
    assert [str(w.message) for w in caught] == [
        "the training data holds 100 items now, the run trained on 256 (most of it is gone: "
        "is data.root right?): its batches continue in another order than the run's would"
    ]


def test_a_seed_outside_32_bits_says_which_run_it_repeats(tmp_path):
    """torch's CPU generator and NumPy keep a seed's low 32 bits: seed 2**32 + 1 trains the
    weights of seed 1, which a seed sweep over large numbers would not expect."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = train(tiny("seed=1", steps=2), out_dir=tmp_path / "one")
        train(tiny("seed=4294967295", steps=1), out_dir=tmp_path / "top")  # the largest
    said = r"^seed=4294967297 draws torch's and NumPy's numbers as seed=1 does \(they keep"
    with pytest.warns(UserWarning, match=said) as seen:
        wrapped = train(tiny("seed=4294967297", steps=2), out_dir=tmp_path / "wrapped")
    # the warning names the caller's line (this file), not edgegan's trainer.py
    assert [w.filename for w in seen if "draws torch" in str(w.message)] == [__file__]
    a, b = _weights(one.run_dir), _weights(wrapped.run_dir)
    for net in a["networks"]:
        for key, value in a["networks"][net].items():
            assert torch.equal(value, b["networks"][net][key]), f"{net}.{key}"
    with pytest.warns(
        UserWarning, match="seed=-1 draws torch's and NumPy's numbers as seed=4294967295"
    ):
        train(tiny("seed=-1", steps=1), out_dir=tmp_path / "negative")


def test_validation_does_not_change_what_a_run_trains(tmp_path):
    """Scoring the networks every eval.every steps builds the metric (a classifier's init) and
    used to shift the run's random streams: the validated run trained other weights."""
    plain = train(tiny(), out_dir=tmp_path / "plain")
    validated = train(tiny("eval.every=2", "eval.val_samples=20"), out_dir=tmp_path / "val")
    records = (validated.run_dir / "metrics.jsonl").read_text()
    assert "val_fd" in records
    a, b = _weights(plain.run_dir), _weights(validated.run_dir)
    for net in a["networks"]:
        for key, value in a["networks"][net].items():
            assert torch.equal(value, b["networks"][net][key]), f"{net}.{key}"


def test_resume_refuses_finished_run(tmp_path):

    done = train(tiny(steps=2), out_dir=tmp_path / "r")
    with pytest.raises(ConfigError, match="already at step 2"):
        train(load_run_config(done.run_dir), resume=done.run_dir)


def test_existing_run_dir_is_never_overwritten(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(ConfigError, match="not empty"):
        train(tiny(steps=1), out_dir=out)
    assert (out / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.generator.ngff=3", "unknown parameter 'ngff'"),
        # The metric runs after training: a typo must still fail before it.
        ("eval.metric=digts", "unknown metric 'digts' \\(did you mean 'digits'\\?\\)"),
    ],
)
def test_bad_config_writes_nothing(tmp_path, override, message):
    with pytest.raises(EdgeganError, match=message):
        train(tiny(override, "eval.at_end=true"), out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


class _NaNAfter:
    """A loss that turns NaN on its 7th generator step."""

    def __init__(self) -> None:
        self.calls = 0

    def d_loss(self, real, fake):
        return (
            torch.nn.functional.softplus(-real).mean() + torch.nn.functional.softplus(fake).mean()
        )

    def g_loss(self, fake):
        self.calls += 1
        loss = torch.nn.functional.softplus(-fake).mean()
        return loss * float("nan") if self.calls >= 7 else loss


class _TestPlugin:
    @hookimpl
    def edgegan_register_losses(self, register):
        register("nan-after-6", _NaNAfter)


def test_nan_guard_keeps_last_good_checkpoint(tmp_path):
    manager = PluginManager(load_entry_points=False)
    manager.register(_TestPlugin(), name="test-plugin")
    reset_manager(manager)
    with pytest.raises(TrainingDiverged, match=r"g_loss became nan at step 7.*step 5"):
        train(
            tiny("loss.name=nan-after-6", "train.checkpoint_every=5", steps=20),
            out_dir=tmp_path / "r",
        )
    state = load_checkpoint(tmp_path / "r/checkpoints/last.pt")
    assert state["step"] == 5
    for value in state["networks"]["generator"].values():
        assert torch.isfinite(value.float()).all()
    # The CLI: exit code 1 (the README's promise to scripts: 2 is a mistake in the command)
    from click.testing import CliRunner

    from edgegan.cli import cli

    args = ["train", "dcgan-mnist", *TINY, "loss.name=nan-after-6", "train.steps=20"]
    res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "c")])
    assert res.exit_code == 1, res.output
    assert res.stderr.startswith("error: g_loss became nan at step 7")
    assert len(res.stderr.splitlines()) == 1


def test_a_failed_resume_leaves_config_yaml_as_its_checkpoint_needs(tmp_path):
    """config.yaml was rewritten at the start of a resume: one that diverged before its first
    checkpoint left the new settings beside the old checkpoint, and every later --resume
    repeated the failure."""
    manager = PluginManager(load_entry_points=False)
    manager.register(_TestPlugin(), name="test-plugin")
    reset_manager(manager)
    run = train(tiny("loss.name=nan-after-6", steps=2), out_dir=tmp_path / "r").run_dir
    before = (run / "config.yaml").read_bytes()
    with pytest.raises(TrainingDiverged, match="became nan .* checkpoint .* \\(step 2\\)"):
        train(load_run_config(run, ["train.steps=20"]), resume=run)
    assert (run / "config.yaml").read_bytes() == before
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 2
    resumed = train(load_run_config(run, ["train.steps=4"]), resume=run)  # a good resume
    assert resumed.step == 4 and load_run_config(run).train.steps == 4


@pytest.mark.parametrize("seed", [-1, 100000000000000])
def test_large_and_negative_seeds_train(tmp_path, seed):
    # 10**14 overflowed the data order's seed at the first batch; a seed of an older run
    # (negative, or above 2**32) must stay resumable
    assert train(tiny(f"seed={seed}", steps=1), out_dir=tmp_path / "r").step == 1


@pytest.mark.parametrize("where", ["weight", "running_var", "ema running_var"])
def test_weights_that_became_nan_are_never_checkpointed(tmp_path, monkeypatch, where):
    """A step's update can make the weights NaN after its losses were checked (and on a GPU
    losses are checked every few steps): the checkpoint of that step used to be written over
    the last good one, while the error called it good. BatchNorm's running statistics too:
    at a huge learning rate they overflowed while weights and losses stayed finite, and the
    run ended "done" with a checkpoint whose samples and exports were NaN."""
    from edgegan.train.trainer import Trainer

    real = Trainer.train_step

    def poisoned(self):
        values = real(self)
        if self.step == 4:  # after step 4's update; its losses stay finite
            net = self.ema.shadow if where.startswith("ema") else self.task.module("generator")
            with torch.no_grad():
                if where == "weight":
                    next(net.parameters()).fill_(float("nan"))
                else:
                    stats = [b for n, b in net.named_buffers() if n.endswith("running_var")]
                    stats[0].fill_(float("inf"))
        return values

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    with pytest.raises(TrainingDiverged, match=r"became NaN or infinite at step 4.*step 2"):
        train(tiny("train.checkpoint_every=2", steps=6), out_dir=tmp_path / "r")
    state = load_checkpoint(tmp_path / "r/checkpoints/last.pt")
    assert state["step"] == 2
    for part in (state["networks"]["generator"], state["ema"]):
        for value in part.values():
            assert torch.isfinite(value.float()).all()


def test_a_buffer_built_non_finite_is_not_divergence(tmp_path, monkeypatch):
    """A plugin network may hold a buffer that is meant to be infinite (an attention mask of
    -inf): once buffers were checked, such a run stopped at its first checkpoint."""
    from edgegan.nn.dcgan import DCGANGenerator

    built = DCGANGenerator.__init__

    def with_mask(self, *args, **kwargs):
        built(self, *args, **kwargs)
        self.register_buffer("mask", torch.tensor([0.0, float("-inf")]))

    monkeypatch.setattr(DCGANGenerator, "__init__", with_mask)
    result = train(tiny("train.checkpoint_every=2", steps=4), out_dir=tmp_path / "r")
    state = load_checkpoint(result.checkpoint)
    assert result.step == 4 and state["networks"]["generator"]["mask"][1] == float("-inf")


def test_a_checkpoint_that_weights_only_loading_would_refuse_is_not_written(tmp_path):
    """A plugin dataset with NumPy numbers in its image_shape or class_names trained, and then
    no checkpoint of the run could be resumed, exported or sampled."""
    import numpy as np

    from edgegan.train.checkpoint import atomic_save, check_plain

    check_plain({"a": [1, 2.0, "x", None, (True,)], "t": torch.zeros(2), "s": torch.Size([1])})
    with pytest.raises(EdgeganError, match=r"cannot save checkpoint.spec.image_shape\[0\]: "
                                           r"it is a numpy.int64"):  # fmt: skip
        atomic_save({"spec": {"image_shape": [np.int64(1), 28, 28]}}, tmp_path / "c.pt")
    with pytest.raises(EdgeganError, match="numpy.str_"):
        check_plain({"class_names": [np.str_("zero")]})
    with pytest.raises(EdgeganError, match="numpy.float64"):
        check_plain({"lr": np.float64(0.1)})  # a float subclass, still refused by torch.load
    assert not (tmp_path / "c.pt").exists()


def test_metrics_average_each_value_over_its_own_steps_and_a_stop_logs_its_last_steps(tmp_path):
    """r1 is computed every r1_every steps only: averaging it over every step of a log window
    logged a third of it. A run stopped between log steps (time budget, signal) logged
    nothing for its last steps."""
    runs = {}
    for every in (1, 3):
        r = train(tiny("train.r1_gamma=1", "train.r1_every=3", f"train.log_every={every}",
                       steps=6), out_dir=tmp_path / f"e{every}")  # fmt: skip
        records = [json.loads(line) for line in (r.run_dir / "metrics.jsonl").open()]
        runs[every] = [rec["r1"] for rec in records if "r1" in rec]
    # one R1 step in each window of 3: its value, not a third of it
    assert len(runs[1]) == len(runs[3]) == 2
    assert runs[3] == pytest.approx(runs[1], rel=1e-5)
    r = train(tiny("train.max_seconds=0.000001", "train.log_every=50", steps=1000),
              out_dir=tmp_path / "stopped")  # fmt: skip
    records = [json.loads(line) for line in (r.run_dir / "metrics.jsonl").open()]
    assert r.stopped_by == "max_seconds" and [rec["step"] for rec in records] == [r.step]


def test_wall_clock_budget_stops_and_saves(tmp_path):
    result = train(tiny("train.max_seconds=0.5", steps=100000), out_dir=tmp_path / "r")
    assert result.stopped_by == "max_seconds"
    assert 0 < result.step < 100000
    assert load_checkpoint(result.checkpoint)["step"] == result.step


def test_a_budget_stopped_run_is_evaluated_and_resumes_with_a_budget_of_its_own(tmp_path):
    """The default preset's safety net (train.max_seconds) ends a run with its evaluation,
    as the README says; and the budget is each session's: a resumed run (what the stop
    suggests) that counted its earlier sessions would stop again after one step. Mutation
    testing found neither checked."""
    import torch

    cfg = tiny("train.max_seconds=0.5", "eval.at_end=true", "eval.num_samples=64", steps=100000)
    with pytest.warns(UserWarning, match="from 64 samples means little"):
        first = train(cfg, out_dir=tmp_path / "r")
    assert first.stopped_by == "max_seconds" and first.eval and "fd" in first.eval
    assert json.loads((first.run_dir / "eval.json").read_text())["fd"] == first.eval["fd"]
    path = first.run_dir / "checkpoints/last.pt"
    state = torch.load(path, weights_only=True)
    state["elapsed"] = 1000.0  # earlier sessions' seconds, far past the budget
    torch.save(state, path)
    resumed = train(load_run_config(first.run_dir, ["eval.at_end=false"]), resume=first.run_dir)
    assert resumed.stopped_by == "max_seconds" and resumed.step > first.step + 1
    assert resumed.seconds > 1000  # the run's time, all sessions


def _sigterm(signum: int = signal.SIGTERM) -> None:
    os.kill(os.getpid(), signum)


def _ctrl_c(times: int) -> None:
    for _ in range(times):
        os.kill(os.getpid(), signal.SIGINT)


class _ClosedTerminal:
    """A stream whose terminal has closed: every write fails with EIO."""

    def write(self, text: str) -> int:
        raise OSError(errno.EIO, "Input/output error")

    def flush(self) -> None:  # nothing held back to fail
        pass

    def isatty(self) -> bool:
        return False


def _terminal_closes() -> None:
    sys.stderr = _ClosedTerminal()  # (CliRunner puts its own back)
    os.kill(os.getpid(), signal.SIGHUP)


def _disk_full() -> None:
    raise OSError("disk full\n(while writing its log)")  # the message keeps its first line


class _AtStep:
    """A callback that does ``action`` at the end of step ``at``."""

    def __init__(self, at: int, action) -> None:
        self.at, self.action = at, action

    def on_step_end(self, trainer, step, metrics):
        if step == self.at:
            self.action()


class _StepPlugin:
    @hookimpl
    def edgegan_register_callbacks(self, register):
        register("signal-at", lambda at=2, signum=15: _AtStep(at, lambda: _sigterm(signum)))
        register("fail-at", lambda at=2: _AtStep(at, _disk_full))
        register("ctrl-c-at", lambda at=2, times=1: _AtStep(at, lambda: _ctrl_c(times)))
        register("terminal-closes-at", lambda at=2: _AtStep(at, _terminal_closes))


def _callback_plugin(name: str, callback: type) -> None:
    """Install (alone) a plugin 'cb' of edgegan-cb 1.0 that registers ``callback`` as
    ``name``."""

    class Plugin:
        @hookimpl
        def edgegan_register_callbacks(self, register):
            register(name, callback)

    manager = PluginManager(load_entry_points=False)
    manager.register(Plugin(), name="cb", distribution="edgegan-cb", version="1.0")
    reset_manager(manager)


def test_a_callback_with_no_hook_is_warned_about(tmp_path):
    """A misspelt hook (on_step) was accepted and never called, in silence."""

    class Misspelt:
        def on_step(self, trainer, step, metrics):
            raise AssertionError("never called")

    _callback_plugin("misspelt", Misspelt)
    with pytest.warns(UserWarning, match=r"callback 'misspelt' \(plugin 'cb', edgegan-cb 1.0\) "
                      "has none of on_train_start, on_step_end, "):  # fmt: skip
        train(tiny("callbacks=[misspelt]", steps=2), out_dir=tmp_path / "r")

    class Half(Misspelt):  # one hook right, one misspelt: half of it silently left out
        def on_train_end(self, trainer):
            pass

        def on_new_best(self, trainer):  # its own method: no hook's near name
            pass

    _callback_plugin("half", Half)
    said = (
        r"^callback 'half' \(plugin 'cb', edgegan-cb 1.0\) has on_step, which edgegan never "
        r"calls \(did you mean 'on_step_end'\?\)$"
    )
    with pytest.warns(UserWarning) as caught:
        train(tiny("callbacks=[half]", steps=2), out_dir=tmp_path / "h")
    said_of_half = [str(w.message) for w in caught if "callback 'half'" in str(w.message)]
    assert len(said_of_half) == 1 and re.match(said, said_of_half[0]), said_of_half


def test_sigterm_saves_and_stops_cleanly(tmp_path):
    manager = PluginManager(load_entry_points=False)
    manager.register(_StepPlugin(), name="signal-plugin")
    reset_manager(manager)
    cfg = load_config("dcgan-mnist", [*TINY, "train.steps=50"])
    from edgegan.config import PartConfig

    cfg.callbacks = [PartConfig("signal-at", {"at": 4})]
    result = train(cfg, out_dir=tmp_path / "r")
    assert result.stopped_by == "signal" and result.signal == "SIGTERM"
    assert result.step == 4
    assert load_checkpoint(result.checkpoint)["step"] == 4
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_train_leaves_a_programs_own_sigusr1_and_sigusr2_alone(tmp_path):
    """The CLI stops on SIGUSR1/SIGUSR2 (a scheduler's warning); a program calling train()
    may use them otherwise (faulthandler.register, submitit's requeue), and train() took
    them over: its handler lost, and the default (death) put back."""
    manager = PluginManager(load_entry_points=False)
    manager.register(_StepPlugin(), name="signal-plugin")
    reset_manager(manager)
    got: list[int] = []

    def own(signum, frame):
        got.append(signum)

    outside = signal.signal(signal.SIGUSR1, own)
    try:
        cfg = tiny(f"callbacks=[{{name: signal-at, at: 2, signum: {int(signal.SIGUSR1)}}}]")
        result = train(cfg, out_dir=tmp_path / "r")
        assert result.stopped_by == "steps" and result.step == 4 and got == [signal.SIGUSR1]
        assert signal.getsignal(signal.SIGUSR1) is own
    finally:
        signal.signal(signal.SIGUSR1, outside)


def test_a_stop_signal_abandons_a_validation_and_the_final_grid(tmp_path, monkeypatch):
    """A SIGTERM during a validation (tens of seconds with many eval.val_samples) waited for
    it, and for samples/final.png (minutes on a CPU for a 256 px CycleGAN), past a
    scheduler's grace period (Slurm's 30 s, torchrun's): killed with nothing saved."""
    import json
    import threading
    import time

    import numpy as np
    from PIL import Image

    from edgegan.data.transforms import load_image
    from edgegan.train.gan import GANTask
    from edgegan.train.trainer import Trainer

    real = GANTask.evaluate
    grids: list[str] = []
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (900, 900, 3), np.uint8)).save(big)

    def slow(self, trainer, num_samples=None):
        if trainer.step == 4:  # the scheduler's SIGTERM arrives during this validation,
            # while it reads images: an image reader's `except Exception` took the abandon
            # for an unreadable file (a DataError, exit 2)
            torch.set_grad_enabled(False)  # changed by the work: put back when abandoned
            threading.Timer(0.3, _sigterm).start()
            for _ in range(400):  # many seconds of work that the signal abandons
                load_image(big)
            raise AssertionError("the validation ran on after the SIGTERM")
        return real(self, trainer, num_samples)

    saved_with_grad: list[bool] = []
    real_save = Trainer.save_checkpoint

    def save(self, *args, **kwargs):
        saved_with_grad.append(torch.is_grad_enabled())
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "save_checkpoint", save)

    monkeypatch.setattr(GANTask, "evaluate", slow)
    real_preview = GANTask.preview
    monkeypatch.setattr(
        GANTask,
        "preview",
        lambda self, t, fixed: grids.append(t.step) or real_preview(self, t, fixed),
    )
    cfg = tiny("eval.every=2", "eval.val_samples=200", "eval.at_end=false", steps=50)
    t0 = time.monotonic()
    result = train(cfg, out_dir=tmp_path / "r")
    assert time.monotonic() - t0 < 30
    assert result.stopped_by == "signal" and result.signal == "SIGTERM" and result.step == 4
    assert load_checkpoint(result.checkpoint)["step"] == 4
    logged = [
        json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in logged if "val_fd" in r] == [2]  # step 4's abandoned
    assert 4 not in grids and not (result.run_dir / "samples/final.png").exists()
    assert saved_with_grad == [True]
    report = (result.run_dir / "report.md").read_text()
    assert "- samples: samples/ (no final grid: stopped by SIGTERM)" in report
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this system")
def test_a_closed_terminal_saves_the_run_and_exits_129_unless_under_nohup(tmp_path):
    """SIGHUP (an ssh session dropped) killed a run without saving the steps since its
    last checkpoint; a SIGTERM's exit code was 130, as Ctrl-C's. Once the terminal is gone
    its writes fail (EIO): the run must still save, report and exit 129."""
    manager = PluginManager(load_entry_points=False)
    manager.register(_StepPlugin(), name="signal-plugin")
    reset_manager(manager)
    # a SIGHUP (SIGUSR1, SIGUSR2) nothing took fails the test rather than kill pytest;
    # `nohup pytest` holds too
    stops = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
    outside = {s: signal.signal(s, _hangup_not_taken) for s in stops}
    try:
        _closed_terminal_runs(tmp_path)
    finally:
        for s, handler in outside.items():
            signal.signal(s, handler)


def _hangup_not_taken(signum, frame):
    raise AssertionError(
        f"{signal.Signals(signum).name} reached the test: edgegan did not handle it"
    )


def _closed_terminal_runs(tmp_path) -> None:
    from click.testing import CliRunner

    from edgegan.cli import cli

    args = ["train", "dcgan-mnist", *TINY, "train.steps=8"]
    # SIGUSR1/2: a batch scheduler's warning before the time limit (SLURM's --signal=USR1@120)
    # killed the run at once with nothing saved
    stops = [signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2]
    for signum, code in ((s, 128 + s) for s in stops):
        name, run = signal.Signals(signum).name, tmp_path / str(signum)
        callback = f"callbacks=[{{name: signal-at, at: 4, signum: {int(signum)}}}]"
        res = CliRunner().invoke(cli, [*args, callback, "--out", str(run)])
        assert res.exit_code == code, res.output
        assert f"interrupted ({name}) at step 4: checkpoint saved to " in res.stderr
        assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 4
    assert signal.getsignal(signal.SIGHUP) is _hangup_not_taken  # put back
    # the terminal closes: every later write to it fails with EIO, progress lines too
    run = tmp_path / "gone"
    closes = "callbacks=[{name: terminal-closes-at, at: 4}]"
    res = CliRunner().invoke(cli, [*args, closes, "train.progress=true", "--out", str(run)])
    assert res.exit_code == 129, res.output
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 4
    assert (run / "report.md").is_file()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup edgegan train ...
    cfg = tiny("callbacks=[{name: signal-at, at: 4, signum: 1}]", steps=8)
    assert train(cfg, out_dir=tmp_path / "nohup").stopped_by == "steps"


def test_ctrl_c_in_edgegan_train_saves_exits_130_and_says_how_to_resume(tmp_path):
    from click.testing import CliRunner

    from edgegan.cli import cli

    manager = PluginManager(load_entry_points=False)
    manager.register(_StepPlugin(), name="signal-plugin")
    reset_manager(manager)
    run = tmp_path / "r"
    args = ["train", "dcgan-mnist", *TINY, "train.steps=50", "callbacks=[{name: ctrl-c-at}]"]
    res = CliRunner().invoke(cli, [*args, "--out", str(run)])
    assert res.exit_code == 130, res.output
    assert f"interrupted at step 2: checkpoint saved to {run / 'checkpoints/last.pt'}" in res.stderr
    assert f"continue with: edgegan train --resume {run}" in res.stderr
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 2


_GROUP_SIGTERM = """
import os, subprocess, sys
sys.path.insert(0, {tests!r})
from tiny import TINY_GAN
from edgegan import hookimpl
from edgegan.config import load_config
from edgegan.plugins.manager import PluginManager, reset_manager
from edgegan.train import train

class Plugin:
    @hookimpl
    def edgegan_register_callbacks(self, register):
        class GroupTerm:  # as systemd, Slurm or `kill -- -PGID`: every process of the job
            def on_step_end(self, trainer, step, metrics):
                if step == 4:  # from another process (torch's workers obey their parent's)
                    subprocess.run(["kill", "-s", "TERM", "--", f"-{{os.getpgid(0)}}"])
        register("group-term", GroupTerm)

manager = PluginManager(load_entry_points=False)
manager.register(Plugin(), name="p")
reset_manager(manager)
config = load_config("dcgan-mnist", [*TINY_GAN, "train.steps=40", "train.num_workers=2",
                                     "train.resident_data=false",
                                     "train.log_every=2", "callbacks=[group-term]"])
result = train(config, out_dir=sys.argv[1])
print(result.stopped_by, result.step, result.signal)
"""


@pytest.mark.skipif(not hasattr(signal, "sigwaitinfo"), reason="needs sigwaitinfo (Linux)")
def test_a_sigterm_to_the_whole_process_group_saves_a_run_with_workers(tmp_path):
    """torch's DataLoader workers die on a SIGTERM from anyone but their parent: the run
    failed inside its step ("DataLoader worker ... is killed by signal: Terminated") and
    lost every step since its last checkpoint."""
    script = tmp_path / "group_term.py"
    script.write_text(_GROUP_SIGTERM.format(tests=str(Path(__file__).parent)))
    res = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,  # a group of its own: the signal reaches the job alone
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-3:] == ["signal", "4", "SIGTERM"], res.stdout
    assert load_checkpoint(tmp_path / "r/checkpoints/last.pt")["step"] == 4


def test_a_full_disk_at_the_log_keeps_the_finished_step_and_names_the_file(tmp_path, monkeypatch):
    """A metrics.jsonl append that failed (disk full, a file-size limit) lost the steps
    since the last checkpoint, said only "File too large", and with progress off never
    said that a checkpoint was kept or how to go on."""
    import errno

    from click.testing import CliRunner

    from edgegan.cli import cli
    from edgegan.train.logs import MetricsLog

    class Full:
        def __init__(self, f) -> None:
            self.f, self.lines = f, 0

        def write(self, text: str) -> int:
            self.lines += 1
            if self.lines > 3:
                raise OSError(errno.EFBIG, "File too large")
            return self.f.write(text)

        def close(self) -> None:
            self.f.close()

    opened = MetricsLog.__init__

    def filling(self, path, upto=None) -> None:
        opened(self, path, upto)
        self._f = Full(self._f)

    monkeypatch.setattr(MetricsLog, "__init__", filling)
    run = tmp_path / "r"
    args = ["train", "dcgan-mnist", *TINY, "train.steps=20", "train.log_every=1"]
    res = CliRunner().invoke(cli, [*args, "train.checkpoint_every=0", "--out", str(run)])
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert lines == [
        f"train gan: stopped by an error at step 4: checkpoint saved to {run}/checkpoints/last.pt; "
        f"once mended, continue with: edgegan train --resume {run}",
        f"error: File too large: {run}/metrics.jsonl",
    ]
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 4


def test_an_unwritable_report_says_the_trained_run_is_saved(tmp_path, monkeypatch):
    """report.md that could not be written (a folder in its place, a full disk) was one
    error line, with nothing said of the run, whole and saved."""
    from click.testing import CliRunner

    from edgegan.cli import cli
    from edgegan.train.trainer import Trainer

    write_report = Trainer.write_report

    def in_the_way(self, result):  # a folder where the report goes, made once it trained
        (self.run_dir / "report.md").mkdir()
        return write_report(self, result)

    monkeypatch.setattr(Trainer, "write_report", in_the_way)
    run = tmp_path / "r"
    res = CliRunner().invoke(
        cli, ["train", "dcgan-mnist", *TINY, "train.steps=4", "--out", str(run)]
    )
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines() == [
        f"the trained run is saved in {run}",
        f"error: Is a directory: {run}/report.md",
    ]
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 4


def test_a_second_sigterm_still_saves(tmp_path):
    """systemd signals every process of a service, torchrun its workers again: a second
    SIGTERM counted as a second Ctrl-C, and the run stopped without saving its steps."""
    manager = PluginManager(load_entry_points=False)
    manager.register(_StepPlugin(), name="signal-plugin")
    reset_manager(manager)
    cfg = tiny("callbacks=[{name: signal-at, at: 4, signum: 15}, "
               "{name: signal-at, at: 4, signum: 15}]", steps=8)  # fmt: skip
    result = train(cfg, out_dir=tmp_path / "r")
    assert result.stopped_by == "signal" and result.step == 4
    assert load_checkpoint(result.checkpoint)["step"] == 4


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    manager = PluginManager(load_entry_points=False)
    manager.register(_StepPlugin(), name="signal-plugin")
    reset_manager(manager)
    cfg = load_config("dcgan-mnist", [*TINY, "train.steps=50"])
    from edgegan.config import PartConfig

    cfg.callbacks = [PartConfig("ctrl-c-at", {"at": 2, "times": 2})]
    # Python's own Ctrl-C handler, as in a terminal: a pytest started in the background by a
    # non-interactive shell (`cmd &`) inherits SIGINT ignored, and the test then failed
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg, out_dir=tmp_path / "r")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back
    finally:
        signal.signal(signal.SIGINT, old)


def test_conditional_sampling_draws_chosen_classes(tmp_path):
    from edgegan.sampling import generate, load_run_generator, make_latents

    run = train(tiny(steps=2), out_dir=tmp_path / "r").run_dir
    gen = load_run_generator(run)
    out = generate(gen, 5, seed=3, labels=[3, 3, 7])
    assert out["images"].shape == (5, 1, 28, 28)
    assert out["labels"].tolist() == [3, 3, 7, 3, 3]
    assert float(out["images"].min()) >= -1 and float(out["images"].max()) <= 1
    assert (out["latents"] == make_latents(5, 16, 3)).all()
    again = generate(gen, 5, seed=3, labels=[3, 3, 7])
    assert (again["images"] == out["images"]).all()
    # The label really conditions the output.
    other = generate(gen, 5, seed=3, labels=[1])
    assert not (other["images"] == out["images"]).all()
    with pytest.raises(EdgeganError, match="out of range"):
        generate(gen, 2, labels=[10])


def test_folder_dataset_trains_through_the_dataloader_path(tmp_path):
    """Datasets without in-memory tensors go through a DataLoader with a resumable sampler."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(10):
            img = (rng.random((40, 36, 3)) * 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / "data" / cls / f"{i}.png")
    cfg = tiny(
        "data.name=folder",
        f"data.root={tmp_path / 'data'}",
        "data.image_size=32",
        "train.batch_size=4",
        "train.num_workers=1",
        steps=3,
    )
    result = train(cfg, out_dir=tmp_path / "run")
    state = load_checkpoint(result.checkpoint)
    assert state["spec"]["image_shape"] == [3, 32, 32]
    assert state["spec"]["num_classes"] == 2 and state["spec"]["class_names"] == ["a", "b"]
    assert state["data"]["consumed"] == 3


def test_a_relative_data_root_is_kept_absolute_so_the_run_resumes_anywhere(tmp_path, monkeypatch):
    """data.root=data trained from the project folder: the run's config names the folder
    absolutely, so resume (and export's calibration, eval) work from any other folder."""
    import numpy as np
    from PIL import Image

    project = tmp_path / "project"
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (project / "data" / cls).mkdir(parents=True)
        for i in range(8):
            Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(
                project / "data" / cls / f"{i}.png"
            )
    monkeypatch.chdir(project)
    cfg = tiny("data.name=folder", "data.root=data", "data.image_size=32", "train.batch_size=4")
    run = train(cfg, out_dir=Path("run")).run_dir
    assert cfg.data.params["root"] == "data"  # the caller's config is left as it was
    saved = load_run_config(run).data.params["root"]
    assert saved == str(project / "data") and Path(saved).is_absolute()
    monkeypatch.chdir(tmp_path)
    resumed = load_run_config(project / "run", "train.steps=6")
    assert train(resumed, resume=project / "run").step == 6
    # a relative eval.reference too (fid's real images), not a digits spec
    from edgegan.train.trainer import _absolute_root

    (project / "real").mkdir()
    monkeypatch.chdir(project)
    for ref, kept in (("real", str(project / "real")), ("mnist:test", "mnist:test"),
                      ("nothing-here", "nothing-here")):  # fmt: skip
        cfg = tiny("eval.metric=fid", f"eval.reference={ref}")
        _absolute_root(cfg)
        assert cfg.eval.reference == kept
    monkeypatch.chdir(tmp_path)
    # a relative root that names nothing here is left as given (the data's error says so)
    with pytest.raises(DataError, match="image folder not found: elsewhere"):
        train(tiny("data.name=folder", "data.root=elsewhere"), out_dir=tmp_path / "r2")


def test_an_eval_best_the_validation_does_not_give_is_refused_or_warned(tmp_path):
    from edgegan.data.transforms import save_png

    ev = ["eval.every=2", "eval.val_samples=20"]
    # the metric declares its scores: a misspelt one is refused before training (it was
    # warned at the first validation, eval.every steps in, and best.pt never kept)
    typo = (
        r"eval.best=val_fdd: eval.metric=digits gives no such score \(did you mean 'fd'\?\); "
        r"it gives: class_entropy, confidence, coverage, fd, label_accuracy, num_samples$"
    )
    with pytest.raises(ConfigError, match=typo):
        train(tiny(*ev, "eval.best=val_fdd"), out_dir=tmp_path / "typo")
    assert not (tmp_path / "typo").exists()
    # a GAN on other data than the digits: the digit metric's, not an unpaired split's, reason
    folder = tmp_path / "data"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(4):
            save_png(torch.rand(3, 32, 32) * 2 - 1, folder / cls / f"{i}.png")
    nothing = r"gives no scores \(eval.metric=digits has nothing to score on data 'folder'\)"
    with pytest.warns(UserWarning, match=nothing):
        train(
            tiny(*ev, "eval.best=fd", "data.name=folder", f"data.root={folder}",
                 "data.image_size=32", "train.batch_size=4"),
            out_dir=tmp_path / "folder",
        )  # fmt: skip


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    for i, how in enumerate(("train.tensorboard=true", "callbacks=[{name: tensorboard}]")):
        # the callback form was told about a key it never set
        needs = r"'tensorboard'\) needs the tensorboard package: pip install 'edgegan\[tensor"
        with pytest.raises(ConfigError, match=needs):
            train(tiny(how), out_dir=tmp_path / f"r{i}")
        assert not (tmp_path / f"r{i}").exists()


def test_ema_follows_its_formula():
    """Parameters and float buffers trail the model with the ramped decay; integer buffers
    (BatchNorm's batch count) are copied; before ``start`` the shadow copies the model."""
    import copy

    from torch import nn

    from edgegan.train.ema import EMA

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    ema = EMA(model, decay=0.9, start=1)
    expected = copy.deepcopy(model).state_dict()
    for step in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(4, 1, 5, 5))  # moves the BatchNorm statistics
        ema.update(model, step)
        t = step - 1
        decay = min(0.9, (1 + t) / (10 + t)) if step >= 1 else 0.0
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                expected[key] = expected[key] * decay + value * (1 - decay)
            else:
                expected[key] = value.clone()
        for key, value in ema.shadow.state_dict().items():
            torch.testing.assert_close(value, expected[key], msg=f"step {step}: {key}")
    assert not ema.shadow.training and not any(p.requires_grad for p in ema.shadow.parameters())


def test_plain_progress_eta_uses_the_latest_interval(monkeypatch, capsys):
    """A compiled run's first step can take minutes; later estimates must not carry it."""
    from edgegan.train import logs

    clock = [1000.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(logs.sys.stderr, "isatty", lambda: False, raising=False)
    bar = logs.ProgressBar(1000, 0, True, "train gan")
    bar.note("compiling")
    clock[0] += 300.0  # the first step, compilation included
    bar.update(1)
    clock[0] += 40.0  # 100 more steps at 2.5 steps/s
    bar.update(101)
    clock[0] += 10.0  # under 30 s since the last line: no line
    bar.update(110)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "train gan: compiling"
    assert lines[1].startswith("train gan: step 1/1000  eta 83.2 h")  # 999 steps at 300 s
    assert lines[2].startswith("train gan: step 101/1000  eta 6.0 min")  # 899 / 2.5 s
    assert len(lines) == 3


def test_the_terminal_progress_bar_draws_on_stderr(monkeypatch, capsys):
    """rich's Progress drew on stdout, the command's result (a translation's 'wrote ...')."""
    from edgegan.train import logs

    monkeypatch.setattr(logs.sys.stderr, "isatty", lambda: True, raising=False)
    bar = logs.ProgressBar(10, 0, True, "infer", "images")
    assert bar._bar is not None and bar._bar.console.stderr
    bar.update(10)
    bar.close()
    assert capsys.readouterr().out == ""


def test_progress_on_a_stderr_that_is_none_or_only_writes_is_plain_or_nothing(
    tmp_path, monkeypatch
):
    """sys.stderr None (pythonw, an embedding host) or an object with write alone (a
    notebook's stand-in) failed the run with AttributeError: 'isatty'."""
    import io

    class WriteOnly:  # no isatty, no flush
        def __init__(self) -> None:
            self.text = io.StringIO()

        def write(self, s: str) -> int:
            return self.text.write(s)

    stand_in = WriteOnly()
    monkeypatch.setattr("sys.stderr", stand_in)
    train(tiny("train.progress=true", steps=2), out_dir=tmp_path / "w")
    assert "train gan: step 2/2" in stand_in.text.getvalue()  # plain lines
    monkeypatch.setattr("sys.stderr", None)
    assert train(tiny("train.progress=true", steps=2), out_dir=tmp_path / "n").step == 2
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr("sys.stderr", closed)  # a host that closed it: ValueError on write
    assert train(tiny("train.progress=true", steps=2), out_dir=tmp_path / "c").step == 2


def test_progress_names_the_run_and_warns_of_compilation(tmp_path, capsys, monkeypatch):
    from edgegan.train import fastpath

    compiled = []
    # Record the call instead of compiling: real compilation takes minutes on a 2-core CPU.
    monkeypatch.setattr(fastpath, "compile_networks", lambda nets, t: compiled.append(set(nets)))
    train(tiny("train.progress=true", "train.compile=default", steps=2), out_dir=tmp_path / "r")
    err = capsys.readouterr().err
    assert compiled == [{"generator", "discriminator"}]
    assert f"train gan: training into {tmp_path / 'r'} on cpu" in err
    # what it trains on, where a class folder taken for a split would show
    assert "train gan: data: mnist, 256 images 1x28x28, 10 classes (0, 1, 2, 3" in err
    assert "compiling the networks (train.compile=default)" in err
    resumed = load_config("dcgan-mnist", [*TINY, "train.steps=3", "train.progress=true"])
    train(resumed, resume=tmp_path / "r")
    assert "train gan: resuming at step 2 into" in capsys.readouterr().err


def test_a_failing_callback_names_itself_and_keeps_the_steps(tmp_path):
    from edgegan.config import PartConfig
    from edgegan.errors import CallbackError

    manager = PluginManager(load_entry_points=False)
    manager.register(_StepPlugin(), name="failing", distribution="edgegan-failing", version="2.0")
    reset_manager(manager)
    cfg = tiny("train.checkpoint_every=4", steps=50)
    cfg.callbacks = [PartConfig("fail-at", {"at": 6})]
    with pytest.raises(CallbackError) as exc_info:
        train(cfg, out_dir=tmp_path / "r")
    assert str(exc_info.value) == (
        "callback 'fail-at' (plugin 'failing', edgegan-failing 2.0) failed in on_step_end "
        "at step 6: OSError: disk full; step 6 is saved: once mended, continue with: edgegan "
        f"train --resume {tmp_path / 'r'}"
    )
    assert load_checkpoint(tmp_path / "r/checkpoints/last.pt")["step"] == 6  # not 4
    # The run continues from there once the callback is mended (here: left out).
    cfg.callbacks = []
    resumed = load_config("dcgan-mnist", [*TINY, "train.steps=8"])
    assert train(resumed, resume=tmp_path / "r").step == 8


def test_a_callback_failing_after_the_run_says_the_run_is_whole(tmp_path):
    from edgegan.errors import CallbackError

    class Notify:
        def on_train_end(self, trainer):
            raise ConnectionError("the chat server is down")

    _callback_plugin("notify", Notify)
    with pytest.raises(CallbackError) as exc_info:
        train(tiny("callbacks=[notify]", steps=2), out_dir=tmp_path / "r")
    assert str(exc_info.value) == (
        "callback 'notify' (plugin 'cb', edgegan-cb 1.0) failed in on_train_end at step 2: "
        f"ConnectionError: the chat server is down; the trained run is saved in {tmp_path / 'r'}"
    )
    assert (tmp_path / "r/report.md").is_file()
    assert load_checkpoint(tmp_path / "r/checkpoints/last.pt")["step"] == 2
    # a run its budget stopped early is not whole: it is to be continued
    with pytest.raises(CallbackError) as exc_info:
        train(
            tiny("callbacks=[notify]", "train.max_seconds=0.001", steps=50), out_dir=tmp_path / "s"
        )
    assert str(exc_info.value).endswith(
        f"the chat server is down; step 1 is saved: continue with: edgegan train --resume "
        f"{tmp_path / 's'}"
    )


def test_a_failing_sample_png_keeps_the_steps(tmp_path, monkeypatch, capsys):
    """A sample grid that cannot be written (a full disk, a lost mount) comes between steps:
    the state is whole, so the steps since the last checkpoint are saved before the error."""
    import edgegan.data.transforms as transforms

    real = transforms.save_png

    def failing(image, path, **kwargs):
        if Path(path).name == "step_0000006.png":
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real(image, path, **kwargs)

    monkeypatch.setattr(transforms, "save_png", failing)
    cfg = tiny("train.checkpoint_every=4", "train.sample_every=3", "train.progress=true", steps=8)
    with pytest.raises(OSError, match="Input/output error"):
        train(cfg, out_dir=tmp_path / "r")
    assert load_checkpoint(tmp_path / "r/checkpoints/last.pt")["step"] == 6  # not 4
    err = capsys.readouterr().err
    assert "stopped by an error at step 6: checkpoint saved to" in err
    assert f"continue with: edgegan train --resume {tmp_path / 'r'}" in err
    monkeypatch.setattr(transforms, "save_png", real)
    resumed = load_config("dcgan-mnist", [*TINY, "train.steps=8"])
    assert train(resumed, resume=tmp_path / "r").step == 8


def test_an_error_inside_a_step_saves_nothing(tmp_path, monkeypatch):
    """An error inside a training step may leave the networks half-updated: no save."""
    from edgegan.train.trainer import Trainer

    real = Trainer.train_step

    def failing(self):
        if self.step == 5:
            raise RuntimeError("boom")
        return real(self)

    monkeypatch.setattr(Trainer, "train_step", failing)
    with pytest.raises(RuntimeError, match="boom"):
        train(tiny("train.checkpoint_every=4", steps=8), out_dir=tmp_path / "r")
    assert load_checkpoint(tmp_path / "r/checkpoints/last.pt")["step"] == 4


class _Checkpoints:
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_checkpoint(self, trainer, path):
        self.steps.append(trainer.step)


def test_a_run_ending_on_a_checkpoint_step_saves_it_once(tmp_path):
    seen = _Checkpoints()

    class Plugin:
        @hookimpl
        def edgegan_register_callbacks(self, register):
            register("count", lambda: seen)

    manager = PluginManager(load_entry_points=False)
    manager.register(Plugin(), name="count")
    reset_manager(manager)
    from edgegan.config import PartConfig

    cfg = tiny("train.checkpoint_every=2", steps=4)
    cfg.callbacks = [PartConfig("count")]
    result = train(cfg, out_dir=tmp_path / "r")
    assert seen.steps == [2, 4]  # was [2, 4, 4]: the final step written twice
    assert result.checkpoint == tmp_path / "r/checkpoints/last.pt"
    assert load_checkpoint(result.checkpoint)["step"] == 4


def test_a_resumed_crash_logs_each_step_once_and_redraws_changed_previews(tmp_path, monkeypatch):
    """A run that died after its checkpoint had logged steps it trains again on resume:
    metrics.jsonl held them twice. A sample_grid changed on resume was ignored (the fixed
    inputs came back from the checkpoint)."""
    from edgegan.train.trainer import Trainer

    real = Trainer.train_step

    def dies_at_5(self):
        if self.step == 4:  # steps 1-4 logged, 3 checkpointed
            raise RuntimeError("killed")
        return real(self)

    monkeypatch.setattr(Trainer, "train_step", dies_at_5)
    run = tmp_path / "r"
    with pytest.raises(RuntimeError, match="killed"):
        train(tiny("train.checkpoint_every=3", "train.log_every=1", steps=6), out_dir=run)
    metrics = run / "metrics.jsonl"
    with metrics.open("a") as f:
        f.write('{"step": 5, "g_lo')  # a line the crash cut short
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 3
    monkeypatch.setattr(Trainer, "train_step", real)
    cfg = load_run_config(run, ["train.steps=6", "train.sample_grid=30"])
    train(cfg, resume=run)
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert load_checkpoint(run / "checkpoints/last.pt")["fixed"]["z"].shape[0] == 30


def test_a_run_that_saved_no_checkpoint_is_not_offered_for_resume(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text("task: gan\n")  # what a run that failed at step 1 leaves
    with pytest.raises(ConfigError, match="stopped before its first checkpoint") as info:
        train(tiny(steps=1), out_dir=run)
    assert "--resume" not in str(info.value)
    with pytest.raises(EdgeganError) as info:  # and --resume says why it cannot be continued
        train(tiny(steps=1), resume=run)
    assert str(info.value) == (
        f"cannot resume {run}: no checkpoints/last.pt (it stopped before its first checkpoint: "
        "nothing to resume; train it again into a new --out, or remove the folder)"
    )
    # last.pt lost beside snapshots: they are named, not the folder's removal advised
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "step_0000004.pt").write_bytes(b"")
    with pytest.raises(EdgeganError, match=r"\(it has step_0000004.pt: copy the one to continue"):
        train(tiny(steps=1), resume=run)
    with pytest.raises(EdgeganError, match=r"^cannot resume \S+: it does not exist$"):
        train(tiny(steps=1), resume=tmp_path / "nowhere")


def test_edgegan_debug_prints_the_traceback_behind_the_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from edgegan.cli import cli

    args = ["train", "model.generator.ngff=3", "--out", str(tmp_path / "r")]
    quiet = CliRunner().invoke(cli, args)
    assert quiet.exit_code == 2 and "Traceback" not in quiet.output
    monkeypatch.setenv("EDGEGAN_DEBUG", "1")
    loud = CliRunner().invoke(cli, args)
    assert loud.exit_code == 2 and "Traceback" in loud.output
    assert loud.output.rstrip().splitlines()[-1].startswith("error: unknown parameter 'ngff'")


def test_run_dirs_are_claimed_at_once_and_released_on_failure(tmp_path):
    from edgegan.train.logs import CLAIM, new_run_dir, release_run_dir

    root = tmp_path / "runs"
    first = new_run_dir(None, "dcgan-mnist", root)
    second = new_run_dir(None, "dcgan-mnist", root)  # before the first wrote anything
    assert (first.name, second.name) == ("dcgan-mnist", "dcgan-mnist-2")
    mine = new_run_dir(tmp_path / "out", "x")
    with pytest.raises(EdgeganError, match="already exists and is not empty"):
        new_run_dir(tmp_path / "out", "x")  # a second run given the same --out
    for path in (second, first, mine):
        release_run_dir(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # runs/ was made for them too
    empty = tmp_path / "empty"
    empty.mkdir()
    release_run_dir(new_run_dir(empty, "x"))
    assert empty.is_dir() and not (empty / CLAIM).exists()  # the user's folder stays
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgeganError, match="cannot make the run directory .*file.*Not a dir"):
        new_run_dir(None, "x", tmp_path / "file")
    with pytest.raises(EdgeganError, match="is a file; give a folder"):
        new_run_dir(tmp_path / "file", "x")
    with pytest.raises(EdgeganError, match="--out is empty; name a folder"):
        new_run_dir("", "x")  # an unset variable: not the current folder


def test_a_finished_run_keeps_no_claim_mark(tmp_path):
    from edgegan.train.logs import CLAIM

    run = train(tiny(steps=2), out_dir=tmp_path / "r").run_dir
    assert not (run / CLAIM).exists() and (run / "config.yaml").is_file()


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.threads=-1", "train.threads must be in 1..1024"),
        ("train.threads=100000", "train.threads must be in 1..1024"),  # crashed the process
        ("optim.g.lr=-1", "optim.g.lr must be a finite number > 0"),
        ("optim.g.lr=.inf", "optim.g.lr must be a finite number > 0"),
        ("optim.d.lr=1e39", "optim.d.lr must be a finite number > 0"),  # float32 overflow
        ("seed=9223372036854775808", "seed must be in [-2**63, 2**63)"),  # overflowed
        ("optim.d.beta2=1.5", "optim.d.beta1/beta2 must be in [0, 1)"),
        ("train.sample_grid=0", "train.sample_grid must be > 0"),
        ("eval.num_samples=0", "eval.num_samples must be > 0"),
        ("train.num_workers=-1", "train.num_workers must be >= 0"),
        ("cycle.pool_size=-1", "cycle.pool_size must be >= 0"),
        ("cycle.preview=0", "cycle.preview must be > 0"),
        ("cycle.lambda_cycle=-1", "cycle.lambda_cycle must be >= 0"),
        ("cycle.lambda_a=-1", "cycle.lambda_a must be >= 0"),
        # trained before, then no bundle could hold it
        ("model.latent_dim=1048577", "model.latent_dim must be in 1..1048576"),
    ],
)
def test_out_of_range_settings_fail_before_the_run_dir(tmp_path, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        train(tiny(override), out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_dataset_no_bundle_could_hold_is_refused_before_training():
    """A plugin dataset of 2000 channels trained, and its export was refused (bundle bounds)."""
    from types import SimpleNamespace

    from edgegan.train.gan import model_context
    from edgegan.train.translation import TranslationTask

    config = tiny()
    wide = SimpleNamespace(image_shape=(2000, 8, 8), num_classes=0)
    with pytest.raises(ConfigError, match=re.escape("exported: channels is 2000; an exported")):
        model_context(config, wide)
    assert model_context(config, SimpleNamespace(image_shape=(1024, 8, 8)))["channels"] == 1024
    many = SimpleNamespace(image_shape=(1, 8, 8), num_classes=2**20 + 1)
    with pytest.raises(ConfigError, match="num_classes is 1048577; an exported bundle holds 0"):
        model_context(config, many)
    two = SimpleNamespace(image_shape=(3, 8, 8), image_shape_b=(2000, 8, 8))
    task = SimpleNamespace(dataset=two, prepare_evaluation=lambda: None)
    with pytest.raises(ConfigError, match="channels_b is 2000; an exported bundle holds 1..1024"):
        TranslationTask.read_domains(task)


def test_a_config_that_is_not_utf8_or_a_folder_is_one_line(tmp_path):
    (tmp_path / "c.yaml").write_bytes(b"\x80\x81 not text")
    with pytest.raises(ConfigError, match="c.yaml: not a text \\(UTF-8\\) YAML file"):
        load_config(str(tmp_path / "c.yaml"))
    (tmp_path / "e.yaml").write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="e.yaml is empty; start from a preset"):
        load_config(str(tmp_path / "e.yaml"))
    (tmp_path / "d.yaml").mkdir()
    with pytest.raises(ConfigError, match="d.yaml is a folder; give a config file"):
        load_config(str(tmp_path / "d.yaml"))


def test_an_unreadable_checkpoint_says_why_rather_than_damaged(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not read")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(EdgeganError, match=r"last.pt: PermissionError: \[Errno 13\] Permission"):
        load_checkpoint(path)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_unusable_checkpoints_are_one_line_on_resume(tmp_path):
    import shutil

    run = train(tiny(steps=2), out_dir=tmp_path / "r").run_dir
    good = (run / "checkpoints/last.pt").read_bytes()
    resume = load_config("dcgan-mnist", [*TINY, "train.steps=4"])

    def refused(data: bytes | None, message: str, *overrides: str) -> None:
        copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(run, copy)
        if data is not None:
            (copy / "checkpoints/last.pt").write_bytes(data)
        cfg = load_config("dcgan-mnist", [*TINY, "train.steps=4", *overrides])
        with pytest.raises(EdgeganError, match=message) as exc_info:
            train(cfg, resume=copy)
        assert "\n" not in str(exc_info.value) and "weights_only=False" not in str(exc_info.value)

    refused(b"", "the file is empty")
    refused(good[: len(good) // 2], "damaged or cut short")
    # random bytes, seeded: 20 and 195 make torch's legacy unpickler raise KeyError and
    # UnicodeDecodeError rather than an UnpicklingError (os.urandom once did in CI)
    for seed in (0, 2, 20, 195):
        refused(random.Random(seed).randbytes(2000), "damaged or cut short")
    state = torch.load(run / "checkpoints/last.pt", weights_only=True)
    state.pop("optimizers")
    path = tmp_path / "no-optim.pt"
    torch.save(state, path)
    refused(path.read_bytes(), "lacks 'optimizers' \\(written by another edgegan version")
    torch.save({**state, "format": 2, "edgegan_version": "0.3.0"}, path)
    refused(path.read_bytes(), "format 2, written by edgegan 0.3.0; .*: upgrade edgegan")
    torch.save({"format": 1, "x": _AtStep(1, _disk_full)}, path)
    refused(path.read_bytes(), "holds Python objects, not only tensors")
    # a function such as os.system: torch words it otherwise ("unsupported GLOBAL posix.
    # system whose module posix is blocked"), which read as a damaged file
    torch.save({"format": 1, "x": _RunsCode()}, path)
    refused(path.read_bytes(), "holds Python objects, not only tensors")
    refused(
        None,
        "does not fit .* DCGANGenerator: (size mismatch|Missing key)",
        "model.generator.ngf=16",
    )
    assert train(resume, resume=run).step == 4  # the original still resumes
    # ... and sampling or exporting one that lacks a key: a KeyError's traceback before
    from edgegan.sampling import load_run_generator

    for key in ("spec", "step", "config"):
        edited = torch.load(run / "checkpoints/last.pt", weights_only=True)
        edited.pop(key)
        copy = tmp_path / f"lacks-{key}"
        shutil.copytree(run, copy)
        torch.save(edited, copy / "checkpoints/last.pt")
        with pytest.raises(EdgeganError, match=f"last.pt lacks '{key}' \\(written by another"):
            load_run_generator(copy)


def test_a_run_saved_by_a_newer_edgegan_is_not_called_a_typo(tmp_path):
    """A key a newer edgegan added, in a run's config.yaml or checkpoint, names the file and
    the version that saved it; a mistyped override is still the user's own error."""
    import shutil

    import yaml

    from edgegan.config import ConfigError, load_run_config
    from edgegan.sampling import load_run_generator

    run = train(tiny(steps=1), out_dir=tmp_path / "r").run_dir
    newer = tmp_path / "newer"
    shutil.copytree(run, newer)
    saved = yaml.safe_load((newer / "config.yaml").read_text(encoding="utf-8"))
    saved["train"]["future_switch"] = True
    (newer / "config.yaml").write_text(yaml.safe_dump(saved), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_run_config(newer, ["train.steps=2"])
    assert str(caught.value).startswith(f"{newer / 'config.yaml'}: unknown config key ")
    assert "'train.future_switch'" in str(caught.value)
    assert "saved by another edgegan? this is edgegan " in str(caught.value)
    with pytest.raises(ConfigError, match="unknown config key 'train.stesp'") as caught:
        load_run_config(run, ["train.stesp=2"])
    assert "saved by" not in str(caught.value)
    state = torch.load(newer / "checkpoints/last.pt", weights_only=True)
    state["config"]["train"]["future_switch"] = True
    state["edgegan_version"] = "0.3.0"
    torch.save(state, newer / "checkpoints/last.pt")
    with pytest.raises(ConfigError, match="last.pt: unknown config key .*saved by edgegan 0.3.0;"):
        load_run_generator(newer)


def test_a_run_being_trained_is_locked_against_a_second_process(tmp_path):
    import socket
    import subprocess
    import sys

    from edgegan.train.logs import RunLock

    run = train(tiny(steps=2), out_dir=tmp_path / "r").run_dir
    assert not (run / RunLock.NAME).exists()  # released at the end
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / RunLock.NAME).write_text(f"{socket.gethostname()} {sleeper.pid}\n")
        resume = load_config("dcgan-mnist", [*TINY, "train.steps=4"])
        with pytest.raises(ConfigError, match="is being trained by another process"):
            train(resume, resume=run)
        assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 2  # untouched
        # An export of it says that it is a snapshot of a run still training.
        from edgegan.export import export
        from edgegan.export.api import RunInTrainingWarning

        with pytest.warns(RunInTrainingWarning, match="is being trained by another process"):
            export(run, out=tmp_path / "b")
        # A new run given its folder: not told to remove a run that trains now.
        with pytest.raises(ConfigError, match=r"choose another --out \(a process is training"):
            train(tiny(steps=1), out_dir=run)
        # --resume of a run that process is still building (no config.yaml yet): not "not a
        # run directory"
        starting = tmp_path / "starting"
        starting.mkdir()
        (starting / RunLock.NAME).write_text(f"{socket.gethostname()} {sleeper.pid}\n")
        with pytest.raises(ConfigError, match="a run another process is starting"):
            load_run_config(starting, ["train.steps=4"])
    finally:
        sleeper.kill()
        sleeper.wait()
    with pytest.raises(ConfigError, match="not a run directory"):
        load_run_config(starting)
    # Its process is gone: the lock is stale and taken over.
    assert train(resume, resume=run).step == 4
    assert not (run / RunLock.NAME).exists()


def test_resume_applies_new_optimiser_settings_and_refuses_a_new_seed(tmp_path):
    import json

    run = train(tiny(steps=2), out_dir=tmp_path / "r").run_dir
    cfg = load_config("dcgan-mnist", [*TINY, "train.steps=4", "optim.g.lr=0.001"])
    train(cfg, resume=run)
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 4 and last["lr_g"] == pytest.approx(0.001)
    with pytest.raises(ConfigError, match="seed=5 cannot apply to a resumed run"):
        train(load_config("dcgan-mnist", [*TINY, "train.steps=6", "seed=5"]), resume=run)


def test_resume_with_a_damaged_config_yaml_is_one_line(tmp_path):
    from click.testing import CliRunner

    from edgegan.cli import cli

    run = train(tiny(steps=2), out_dir=tmp_path / "r").run_dir
    for data, message in [(b"\x80\x81\x00", "not a text (UTF-8) YAML file"), (b"", "is empty")]:
        (run / "config.yaml").write_bytes(data)
        result = CliRunner().invoke(cli, ["train", "--resume", str(run), "train.steps=4"])
        assert result.exit_code == 2 and message in result.output, result.output


def test_a_run_whose_config_yaml_was_removed_resumes_from_its_checkpoints_config(tmp_path):
    """A removed config.yaml blocked --resume for good ("not a run directory"), with the
    whole config in the checkpoint; the resumed run writes it again."""
    from click.testing import CliRunner

    from edgegan.cli import cli

    run = train(tiny(steps=2), out_dir=tmp_path / "r").run_dir
    kept = (run / "config.yaml").read_text()
    (run / "config.yaml").unlink()
    said = (
        f"{run / 'config.yaml'} is missing: the config saved in {run / 'checkpoints' / 'last.pt'} "
        "is read instead (a resumed run writes config.yaml again at its next checkpoint)"
    )
    with pytest.warns(UserWarning, match=f"^{re.escape(said)}$"):
        result = CliRunner().invoke(cli, ["train", "--resume", str(run), "train.steps=4"])
    assert result.exit_code == 0, result.output
    assert (run / "config.yaml").read_text() == kept.replace("steps: 2\n", "steps: 4\n", 1)
    # No checkpoint either: no run to resume
    (run / "config.yaml").unlink()
    (run / "checkpoints" / "last.pt").unlink()
    with pytest.raises(ConfigError, match="not a run directory"):
        load_run_config(run)


def test_locks_of_gone_processes_and_starts_killed_while_building_are_taken_over(tmp_path):
    import os
    import socket

    from edgegan.train.logs import CLAIM, RunLock, new_run_dir

    host = socket.gethostname()
    lock = RunLock(tmp_path)
    lock.path.write_text(f"{host} {os.getpid()}\n")  # this very process: a crashed earlier try
    assert lock.stale()
    lock.path.write_text(f"{host} 1 0\n")  # pid 1 lives, but started at another time
    assert lock.stale()
    lock.path.write_text(f"other-host {os.getpid()}\n")  # cannot tell: respected
    assert not lock.stale()
    # A start killed while it was built leaves its claim and a stale lock: taken over.
    out = tmp_path / "killed"
    out.mkdir()
    (out / CLAIM).write_text("")
    (out / RunLock.NAME).write_text(f"{host} {os.getpid()}\n")
    (out / ".DS_Store").write_bytes(b"Bud1")  # the folder opened in Finder since
    assert new_run_dir(out, "x") == out
    # Its lock is this process's now, held on for the run's own lock (which adopts it).
    assert sorted(p.name for p in out.iterdir()) == [".DS_Store", CLAIM, RunLock.NAME]
    assert (out / RunLock.NAME).read_text().split()[1] == str(os.getpid())
    adopted = RunLock(out).acquire()
    assert adopted.held and (out / RunLock.NAME).exists()
    adopted.release()
    assert not (out / RunLock.NAME).exists()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "f").write_text("x")
    with pytest.raises(ConfigError, match="or empty it \\(it is no run: nothing to resume\\)"):
        new_run_dir(tmp_path / "junk", "x")
    # claimed by a run starting now (its claim, no lock or config yet): it was "no run: empty
    # it", an invitation to delete a run being built
    starting = new_run_dir(tmp_path / "starting", "x")
    with pytest.raises(ConfigError, match="\\(another run is starting in it now\\)"):
        new_run_dir(starting, "x")


def test_a_requeued_slurm_job_takes_over_the_lock_its_earlier_run_left_on_another_node(
    tmp_path, monkeypatch
):
    """A run killed on one node (SIGKILL after the grace period, a node failure) left a lock
    naming that host: the job requeued on another node was refused for good. Slurm requeues
    a job only once its run has ended, so an earlier run's lock of the same job is stale."""
    from edgegan.train.logs import RunLock, batch_job

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert batch_job() is None
    run = train(tiny(steps=2), out_dir=tmp_path / "r").run_dir
    lock = RunLock(run)
    lock.path.write_text("node042 13444 7418022\njob 77.0\n")
    assert not lock.stale()  # outside a job: another machine's process, respected
    with pytest.raises(ConfigError, match=r"being trained by another process \(node042 13444 "
                       r"7418022 job 77\.0\); wait for it"):  # fmt: skip
        train(load_run_config(run, ["train.steps=4"]), resume=run)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    assert batch_job() == "77.0" and not lock.stale()  # this very run of the job: live
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert not lock.stale()  # another job's
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    assert batch_job() == "77.1" and lock.stale()  # the job's earlier run: gone
    lock.path.write_text("node042 13444 7418022\njob\n")  # garbled: respected
    assert not lock.stale()
    lock.path.write_text("node042 13444 7418022\njob 77.0\n")
    assert train(load_run_config(run, ["train.steps=4"]), resume=run).step == 4
    assert not lock.path.exists()
    # a lock names its job, for the next requeue
    held = RunLock(tmp_path).acquire()
    try:
        assert held.path.read_text().splitlines()[1:] == ["job 77.1"]
    finally:
        held.release()


def test_auto_resume_starts_continues_and_finishes_a_run_with_one_command(tmp_path):
    """A requeued batch job runs the same command each time: it must start the run, then
    continue it, then do nothing once it is finished (a --resume of a finished run was an
    error, exit 2, so the job failed; the command differs between start and resume)."""
    import socket

    from click.testing import CliRunner

    from edgegan.cli import cli

    run = tmp_path / "r"
    again = ["train", "dcgan-mnist", *TINY, "--out", str(run), "--auto-resume"]
    res = CliRunner().invoke(cli, [*again, "train.steps=2"])
    assert res.exit_code == 0 and res.stdout.startswith("done: 2 steps in "), res.output
    res = CliRunner().invoke(cli, [*again, "train.steps=4"])  # a longer run: continued
    assert res.exit_code == 0 and res.stdout.startswith("done: 4 steps in "), res.output
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 4
    res = CliRunner().invoke(cli, [*again, "train.steps=4"])
    assert res.exit_code == 0, res.output
    assert res.stdout == f"done: {run} is finished at step 4; nothing to train\n"
    assert res.stderr == ""
    assert CliRunner().invoke(cli, ["train", "--resume", str(run)]).exit_code == 2  # as before
    # an --out reused for another preset: not the old run trained on without a word
    res = CliRunner().invoke(cli, ["train", "cyclegan-digits", "--out", str(run), "--auto-resume"])
    assert res.exit_code == 2, res.output
    assert res.stderr == (
        f"error: --out {run} holds a gan run of preset dcgan-mnist, not cyclegan-digits: "
        "--auto-resume continues the run there; choose another --out\n"
    )
    # killed before its first checkpoint (SIGKILL, out of memory, a lost node): its folder
    # could be neither resumed nor trained into, and the requeued job failed for good
    (run / "checkpoints" / "last.pt").unlink()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    (run / ".edgegan-lock").write_text(f"{socket.gethostname()} {gone} 1\n")
    res = CliRunner().invoke(cli, [*again, "train.steps=2"])
    assert res.exit_code == 0 and res.stdout.startswith("done: 2 steps in "), res.output
    assert f"{run} stopped before its first checkpoint (nothing to resume): it starts again" in (
        res.stderr
    )
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 2
    # one that holds anything else is not cleared: refused, as before
    (run / "checkpoints" / "last.pt").unlink()
    (run / "notes.txt").write_text("mine")
    res = CliRunner().invoke(cli, [*again, "train.steps=2"])
    assert res.exit_code == 2 and "already exists and is not empty" in res.stderr, res.output
    assert (run / "notes.txt").read_text() == "mine" and (run / "config.yaml").is_file()
    for args, said in [
        (["--auto-resume", "--resume", str(run)], "drop --resume"),
        (["dcgan-mnist", "--auto-resume"], "--auto-resume needs --out RUN"),
    ]:
        res = CliRunner().invoke(cli, ["train", *args])
        assert res.exit_code == 2 and said in res.stderr, res.output


def test_a_lock_that_is_a_link_or_no_file_is_refused(tmp_path):
    """A run from elsewhere holding `.edgegan-lock -> ~/token` (a stale-looking lock) had the
    token written over with the lock line when --resume took the lock over."""
    import os
    import time

    from edgegan.train.logs import RunLock

    token = tmp_path / "token"
    token.write_text("ghp_SECRET\n")
    old = time.time() - 3600
    os.utime(token, (old, old))
    run = tmp_path / "run"
    run.mkdir()
    (run / RunLock.NAME).symlink_to(token)
    with pytest.raises(
        ConfigError, match=r"\.edgegan-lock is not a lock edgegan writes \(a link\)"
    ):
        RunLock(run).acquire()
    assert token.read_text() == "ghp_SECRET\n"
    (run / RunLock.NAME).unlink()
    (run / RunLock.NAME).mkdir()
    with pytest.raises(ConfigError, match=r"is not a lock edgegan writes \(Is a directory\)"):
        RunLock(run).acquire()


def _hold_system_lock(path):
    """Another process that holds ``path`` locked by the system (flock), as one does while it
    takes over (or trains with) that lock; kill it to end."""
    import subprocess
    import sys

    code = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.skipif(sys.platform == "win32", reason="system file locks are POSIX flock here")
def test_a_stale_lock_is_taken_over_by_one_process_only(tmp_path):
    """Two processes that found a dead process's lock at once both removed it and both
    trained the run (4 in 100 tries). Taking it over now needs its system lock, which the
    first keeps: the second, finding it held, is refused; and so is a second claim of a
    folder whose start was killed, rather than both claiming it."""
    import os
    import socket

    from edgegan.train.logs import CLAIM, RunLock, new_run_dir

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    lock = RunLock(tmp_path)
    lock.path.write_text(f"{socket.gethostname()} {dead}\n")
    assert lock.stale()
    other = _hold_system_lock(lock.path)  # another process is taking it over right now
    try:
        with pytest.raises(ConfigError, match="lock is being taken over by another process, or"):
            RunLock(tmp_path).acquire()
        assert lock.path.read_text().split()[1] == dead  # not removed under it
        # held, and naming this host and this pid: a live container sharing the folder (each
        # runs edgegan as pid 1), not a dead writer; "try again in a few seconds" never helped
        lock.path.write_text(f"{socket.gethostname()} {os.getpid()}\n")
        with pytest.raises(ConfigError, match="with this process's host name and pid .*another "
                           "container sharing the folder"):  # fmt: skip
            RunLock(tmp_path).acquire()
        lock.path.write_text(f"{socket.gethostname()} {dead}\n")
        # held by this very process (a train() on another thread): said so
        (tmp_path / "mine").mkdir()
        mine = RunLock(tmp_path / "mine").acquire()
        try:
            with pytest.raises(ConfigError, match="is being trained by this process already"):
                RunLock(tmp_path / "mine").acquire()
        finally:
            mine.release()
        out = tmp_path / "killed"
        out.mkdir()
        (out / CLAIM).write_text("")
        (out / RunLock.NAME).write_text(f"{socket.gethostname()} {dead}\n")
        claimer = _hold_system_lock(out / RunLock.NAME)
        try:
            with pytest.raises(ConfigError, match="already exists and is not empty"):
                new_run_dir(out, "x")
            assert (out / RunLock.NAME).read_text().split()[1] == dead
        finally:
            claimer.kill()
            claimer.wait()
    finally:
        other.kill()
        other.wait()
    # The other process died without taking it: the lock is taken over, and held.
    taken = RunLock(tmp_path).acquire()
    assert taken.held and lock.path.read_text().split()[1] == str(os.getpid())
    probe = (
        f"import fcntl, os; fd = os.open({str(lock.path)!r}, os.O_RDWR)\n"
        "try: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError: print('held')"
    )
    holder = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert holder.stdout.strip() == "held"
    taken.release()
    assert not lock.path.exists()
    # A lock removed by hand while held, and another run's made since: released, the held
    # one leaves the other's in place.
    mine = RunLock(tmp_path).acquire()
    lock.path.unlink()
    lock.path.write_text(f"{socket.gethostname()} 4242\n")
    mine.release()
    assert lock.path.read_text() == f"{socket.gethostname()} 4242\n"
    lock.path.unlink()
    assert new_run_dir(out, "x") == out  # its dead start, now nobody's: taken over
    from edgegan.train.logs import release_run_dir

    release_run_dir(out)  # a run that never trained: its taken-over lock goes too
    assert not (out / RunLock.NAME).exists()


def test_without_system_locks_no_lock_file_is_held_open(tmp_path, monkeypatch):
    """Where there is no flock (Windows), the lock file was held open for the run, and
    Windows cannot remove a file held open: every run ended in 'WinError 32' on release, and
    a dead process's lock could not be taken over."""
    import socket

    import edgegan.train.logs as logs

    monkeypatch.setattr(logs, "_os_lock", lambda fd: None)
    real_unlink = Path.unlink
    opened: set[str] = set()
    real_open, real_close = os.open, os.close
    fds: dict[int, str] = {}

    def tracking_open(path, *args, **kwargs):
        fd = real_open(path, *args, **kwargs)
        fds[fd] = str(path)
        opened.add(str(path))
        return fd

    def tracking_close(fd):
        opened.discard(fds.pop(fd, None))
        real_close(fd)

    def windows_unlink(self, missing_ok=False):
        if str(self) in opened:
            raise PermissionError(32, "The process cannot access the file", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(logs.os, "open", tracking_open)
    monkeypatch.setattr(logs.os, "close", tracking_close)
    monkeypatch.setattr(Path, "unlink", windows_unlink)
    lock = logs.RunLock(tmp_path).acquire()
    assert lock.held and lock._fd is None
    lock.release()
    assert not lock.path.exists()
    lock.path.write_text(f"{socket.gethostname()} 999999999\n")  # a dead writer's
    taken = logs.RunLock(tmp_path).acquire()
    assert taken.held and lock.path.read_text().split()[1] == str(os.getpid())
    taken.release()
    assert not lock.path.exists() and not opened


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_does_not_hold_its_parents_run_lock(tmp_path):
    """A DataLoader worker (forked) kept a copy of the locked file: a trainer killed with
    kill -9 left its lock held as long as its workers lived."""
    import edgegan.train.logs as logs

    lock = logs.RunLock(tmp_path).acquire()
    try:
        pid = os.fork()
        if pid == 0:  # the child: its copy closed, the parent's lock untouched
            code = 0 if not logs._LOCK_FDS else 1
            try:
                os.fstat(lock._fd)
                code = 2  # still open in the child
            except OSError:
                pass
            lock.release()  # a child's release leaves the parent's lock
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert lock.path.exists() and lock._fd in logs._LOCK_FDS
        with pytest.raises(ConfigError):  # still locked: by this process, not the child
            logs.RunLock(tmp_path).acquire()
    finally:
        lock.release()
    assert not lock.path.exists() and not logs._LOCK_FDS


def test_a_lock_released_while_being_taken_over_is_not_written_over(tmp_path, monkeypatch):
    """A process that locked the file it opened, after its holder had removed it and a new
    run had made another, checks that it is still the file at the path (else it would take
    over a file nobody sees, beside a live lock)."""
    import socket

    import edgegan.train.logs as logs

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = logs.RunLock(tmp_path)
        lock.path.write_text(f"{socket.gethostname()} 999999999\n")  # a dead writer's
        real = logs._os_lock
        calls = []

        def replaced_meanwhile(fd):
            if not calls:  # the holder released, and a live run made its own lock
                lock.path.unlink()
                lock.path.write_text(f"{socket.gethostname()} {sleeper.pid}\n")
            calls.append(fd)
            return real(fd)

        monkeypatch.setattr(logs, "_os_lock", replaced_meanwhile)
        with pytest.raises(ConfigError, match=f"another process \\(.* {sleeper.pid}\\)"):
            logs.RunLock(tmp_path).acquire()
        assert lock.path.read_text().split()[1] == str(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_full_disk_leaves_no_empty_claim_and_an_old_empty_lock_is_stale(tmp_path, monkeypatch):
    """A lock or claim was made, then filled: a full disk (or kill -9) between the two left
    an empty one, which blocked the run for good ('being trained by another process (?)',
    'not empty'), and the error named the run directory 'None'."""
    import errno
    import os
    import time

    import edgegan.fileio as fileio
    import edgegan.train.logs as logs

    lock = logs.RunLock(tmp_path)
    lock.path.write_text("")
    assert not lock.stale()  # its writer may be filling it this very moment
    old = time.time() - 2 * logs.STALE_EMPTY_LOCK_S
    os.utime(lock.path, (old, old))
    assert lock.stale() and lock.acquire().held
    lock.release()

    real_open = open

    class _Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    # (the lock and claim are written by fileio.write_new)
    monkeypatch.setattr(fileio, "open", lambda *a, **k: _Full(real_open(*a, **k)), raising=False)
    out = tmp_path / "new" / "deep"
    with pytest.raises(ConfigError, match=f"cannot make the run directory {out}: No space left"):
        logs.new_run_dir(out, "x")
    assert not (tmp_path / "new").exists()
    with pytest.raises(OSError, match="No space left"):
        logs.RunLock(tmp_path).acquire()
    assert not logs.RunLock(tmp_path).path.exists()


def test_a_failed_build_with_dotdot_in_out_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgeganError):
        train(tiny("model.generator.ngff=3"), out_dir="a/../b")
    assert list(tmp_path.iterdir()) == []


def test_load_config_takes_a_path_and_a_single_override(tmp_path):
    (tmp_path / "c.yaml").write_text(load_config("dcgan-mnist").to_yaml())
    cfg = load_config(tmp_path / "c.yaml", "train.steps=7")  # a Path; one override, not chars
    assert cfg.train.steps == 7 and cfg.data.name == "mnist"


def test_train_gives_back_threads_and_random_streams(tmp_path):
    threads = torch.get_num_threads()
    seed_all(123)
    expected = draws()
    seed_all(123)
    train(tiny("train.threads=1", steps=2), out_dir=tmp_path / "r")
    # Training seeded these from the config and ran on one thread; the program's own stay.
    assert draws() == expected
    assert torch.get_num_threads() == threads


def test_train_gives_back_cudnns_autotuner_flag(tmp_path, monkeypatch):
    """A CUDA run turns cuDNN's autotuner on (train.cudnn_benchmark); stood in for here."""
    from edgegan.train import fastpath

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(
        fastpath, "set_backends", lambda t, d: setattr(torch.backends.cudnn, "benchmark", True)
    )
    train(tiny(steps=1), out_dir=tmp_path / "r")
    assert torch.backends.cudnn.benchmark is False


def test_resume_through_the_api(tmp_path):

    run = train(tiny(steps=2), out_dir=tmp_path / "r").run_dir
    with pytest.raises(ConfigError, match="continues in its own directory"):
        train(load_run_config(run, "train.steps=3"), out_dir=tmp_path / "other", resume=run)
    assert not (tmp_path / "other").exists()
    # No config: the run's own, as saved (here already trained to its end).
    with pytest.raises(ConfigError, match="already at step 2; set train.steps=N"):
        train(resume=run)
    with pytest.raises(ConfigError, match="needs a config"):
        train()
    # A preset's settings silently replaced the run's (the CLI refuses a preset with --resume)
    before = (run / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=r"continues with its own config: .*load_run_config\("):
        train("dcgan-mnist", resume=run)
    assert (run / "config.yaml").read_text() == before
    assert train(load_run_config(run, "train.steps=3"), out_dir=run, resume=run).step == 3


def test_train_takes_a_preset_name_or_mapping_and_checks_edited_configs(tmp_path):
    cfg = tiny(steps=1)
    assert train(cfg.to_dict(), out_dir=tmp_path / "d").step == 1
    cfg.train.steps = "10"  # edited by hand: the checks of load_config apply again
    with pytest.raises(ConfigError, match="config 'train.steps' must be int, got str '10'"):
        train(cfg, out_dir=tmp_path / "e")
    assert not (tmp_path / "e").exists()
    with pytest.raises(EdgeganError, match="unknown preset 'dcgan-mnst'"):
        train("dcgan-mnst", out_dir=tmp_path / "p")


def test_a_run_records_its_networks_defaults_so_a_changed_default_still_rebuilds_it(tmp_path):
    """config.yaml used to hold only the parameters the user set: a network whose default
    changed afterwards (a plugin's update, or edgegan's own U-Net norm) no longer fit the
    run's checkpoint. Every parameter is recorded now, the defaults apart from what the user
    set, so a default the plugin later drops is ignored with a warning, not a refusal."""
    import yaml

    from edgegan.nn.plugin import build_dcgan_generator
    from edgegan.plugins.manager import get_manager
    from edgegan.sampling import load_run_generator

    def plugin(default_ngf: int, with_init: bool = True) -> object:
        def wide(latent_dim, channels, image_size, num_classes=0, ngf=default_ngf, init="normal"):
            return build_dcgan_generator(latent_dim, channels, image_size, num_classes, ngf, init)

        def wide_without_init(latent_dim, channels, image_size, num_classes=0, ngf=default_ngf):
            return build_dcgan_generator(latent_dim, channels, image_size, num_classes, ngf)

        class Wide:
            @hookimpl
            def edgegan_register_models(self, register):
                register("wide", wide if with_init else wide_without_init, role="generator")

        return Wide()

    get_manager().register(plugin(8), name="wide")
    run = tmp_path / "run"
    overrides = [o for o in TINY if not o.startswith("model.generator.")]  # ngf left default
    overrides += ["model.generator.name=wide", "train.steps=2", "eval.at_end=false"]
    train(load_config("dcgan-mnist", overrides), out_dir=run)
    recorded = yaml.safe_load((run / "config.yaml").read_text())["model"]
    assert recorded["generator"] == {"name": "wide", "defaults": {"ngf": 8, "init": "normal"}}
    disc = dict(recorded["discriminator"])
    defaults = disc.pop("defaults")
    assert disc["ndf"] == 8 and defaults and not set(defaults) & set(disc)  # kept apart
    assert "latent_dim" not in recorded["generator"]["defaults"]  # the task's context
    # the plugin's next version widens its default: the run still loads as it was trained
    get_manager().unregister("wide")
    get_manager().register(plugin(16), name="wide")
    gen = load_run_generator(run)  # before: "the checkpoint does not fit generator 'wide'"
    as_trained = build_dcgan_generator(16, 1, 28, 10, ngf=8)
    shapes = [p.shape for p in as_trained.parameters()]
    assert [p.shape for p in gen.module.parameters()] == shapes
    # ... and a resumed run keeps the recorded default, not the plugin's new one
    resumed = train(load_run_config(run, ["train.steps=3"]), out_dir=run, resume=run)
    assert resumed.step == 3
    recorded = yaml.safe_load((run / "config.yaml").read_text())["model"]["generator"]
    assert recorded["defaults"] == {"ngf": 8, "init": "normal"}
    # a later version drops `init`: the recorded default goes with a warning, the run loads
    get_manager().unregister("wide")
    get_manager().register(plugin(16, with_init=False), name="wide")
    from edgegan.registry import StaleDefaultWarning

    with pytest.warns(
        StaleDefaultWarning,
        match="generator 'wide' no longer takes the run's recorded default.s. for init ",
    ):
        gen = load_run_generator(run)
    assert [p.shape for p in gen.module.parameters()] == shapes


def test_a_resume_removes_the_temporary_files_of_a_killed_run(tmp_path):
    """kill -9 while a checkpoint was written left `checkpoints/.last.pt.PID.tmp` (hundreds
    of MB for a CycleGAN) for good; the next run in the directory removes it."""
    import subprocess
    import sys

    train(tiny(), out_dir=tmp_path / "r")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    dead = tmp_path / f"r/checkpoints/.last.pt.{gone}.tmp"
    dead.write_bytes(b"PK half")
    dead_grid = tmp_path / f"r/samples/.final.png.{gone}.tmp"
    dead_grid.write_bytes(b"\x89PNG half")
    live = tmp_path / f"r/checkpoints/.last.pt.{os.getppid()}.tmp"  # a live process's: kept
    live.write_bytes(b"PK")
    train(load_config("dcgan-mnist", [*TINY, "train.steps=6"]), resume=tmp_path / "r")
    assert not dead.exists() and not dead_grid.exists() and live.exists()


def test_a_resumed_run_from_elsewhere_writes_nothing_through_its_links(tmp_path):
    """A run folder from elsewhere with `report.md -> ~/.bashrc` (or its log, config, a
    sample, the checkpoint linked outside): `--resume` rewrote those files with text from
    the folder's config. Now it replaces the links and leaves their targets alone."""
    train(tiny("eval.at_end=true", "eval.num_samples=200"), out_dir=tmp_path / "r")
    outside = tmp_path / "outside"
    outside.mkdir()
    names = ["report.md", "metrics.jsonl", "config.yaml", "samples/final.png",
             "checkpoints/last.pt", "eval.json"]  # fmt: skip
    for name in names:
        link = tmp_path / "r" / name
        target = outside / link.name
        target.write_bytes(link.read_bytes())
        link.unlink()
        link.symlink_to(target)
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    resumed = load_config("dcgan-mnist", [*TINY, "train.steps=6", "eval.at_end=true",
                                          "eval.num_samples=200"])  # fmt: skip
    assert train(resumed, resume=tmp_path / "r").step == 6
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before
    for name in names:
        assert not (tmp_path / "r" / name).is_symlink(), name
    assert load_checkpoint(tmp_path / "r/checkpoints/last.pt")["step"] == 6


def test_a_failed_run_stops_its_data_workers_even_while_its_error_is_kept(tmp_path):
    """DataLoader workers lived on after a diverged (or interrupted) train() for as long as
    the exception was kept (a notebook, a REPL, `except ... as e: err = e`)."""
    import multiprocessing

    cfg = tiny("train.num_workers=1", "train.resident_data=false", "optim.g.lr=1e30",
               "optim.d.lr=1e30", steps=20)  # fmt: skip
    kept = None
    try:
        train(cfg, out_dir=tmp_path / "r")
    except TrainingDiverged as exc:
        kept = exc  # its traceback holds the trainer, and the trainer its stream
    assert kept is not None
    assert multiprocessing.active_children() == []


def test_data_workers_that_cannot_start_are_one_line_without_a_teardown_traceback(
    tmp_path, monkeypatch
):
    """A small or read-only /dev/shm (a container's) failed the run with 'No space left on
    device' alone, then 'Exception ignored in ... __del__' and a traceback from the half-made
    loader; nothing said that the workers needed it or how to train without them."""
    import errno
    import sys

    import torch.multiprocessing

    def no_shm(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.multiprocessing, "Queue", no_shm)
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    cfg = tiny("train.num_workers=2", "train.resident_data=false")
    with pytest.raises(DataError) as err:
        train(cfg, out_dir=tmp_path / "r")
    assert str(err.value) == (
        "the DataLoader's 2 worker processes failed ([Errno 28] No space left on device): "
        "they need shared memory (/dev/shm, small in containers: docker run --shm-size) and "
        "open files (ulimit -n); train with train.num_workers=0, or give them more"
    )
    assert unraisable == [] and sys.unraisablehook == unraisable.append
    assert not (tmp_path / "r").exists()  # failed before its first step: taken back


def test_data_workers_short_of_shared_memory_later_are_one_line(tmp_path, monkeypatch):
    """With /dev/shm small but not tiny (a container's) the workers start, and the first batch
    put in shared memory fails in the worker: its whole traceback, exit 1."""
    from edgegan.train import stream

    def full(self, batch):
        raise RuntimeError(
            "unable to allocate shared memory(shm) for file </torch_1_2_0>: No space left on "
            "device (28)"
        )

    monkeypatch.setattr(stream.SeededItems, "__getitems__", full)  # runs in the worker
    cfg = tiny("train.num_workers=1", "train.resident_data=false")
    with pytest.raises(DataError) as err:
        train(cfg, out_dir=tmp_path / "r")
    assert str(err.value).startswith(
        "the DataLoader's 1 worker processes failed (unable to allocate shared memory(shm) for "
        "file </torch_1_2_0>: No space left on device (28)): they need shared memory"
    )


def test_the_preview_grid_gives_each_class_a_row(tmp_path):
    """The fixed preview labels of a conditional run are in class blocks, as many images of
    a class as the grid has columns ([0, 0, 1, 1, ..., 9, 9] for 20 images of 10 classes in
    rows of 2): labels cycling 0..9 put every class in every row's columns instead, a grid
    that cannot be read class by class."""
    from PIL import Image

    result = train(tiny(steps=1), out_dir=tmp_path / "r")  # sample_grid=20, MNIST's 10 classes
    fixed = load_checkpoint(result.checkpoint)["fixed"]
    assert fixed["labels"].tolist() == [c for c in range(10) for _ in range(2)]
    assert fixed["z"].shape == (20, 16)
    grid = Image.open(result.run_dir / "samples/final.png")
    assert grid.size == (2 * (28 + 2) + 2, 10 * (28 + 2) + 2)  # 2 columns, a row per class


# -- mutation testing, round 5: step accounting, reports, TensorBoard and run-directory logs ---
def test_a_time_budget_of_zero_seconds_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("train.max_seconds must be > 0")):
        train(tiny("train.max_seconds=0"), out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_logged_step_time_and_throughput_are_per_step_and_over_the_window(tmp_path):
    """step_time is the seconds of one step, images_per_sec the window's images over its
    seconds: their product is one batch, whatever the window's length."""
    r = train(tiny("train.log_every=3", steps=5), out_dir=tmp_path / "r")
    records = [json.loads(line) for line in (r.run_dir / "metrics.jsonl").open()]
    assert [rec["step"] for rec in records] == [3, 5]  # windows of 3 and 2 steps
    for rec in records:
        assert rec["step_time"] * rec["images_per_sec"] == pytest.approx(16, rel=1e-6)


def test_logged_step_time_leaves_out_samples_validation_and_checkpoints(tmp_path, monkeypatch):
    """A window's seconds counted the samples, validation and checkpoints written in it: a
    run that checkpoints often logged steps many times slower than they were."""
    import time

    from edgegan.train.trainer import Trainer

    def slowed(name):
        real = getattr(Trainer, name)

        def slow(self, *args, **kwargs):
            time.sleep(0.4)
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Trainer, name, slow)

    for name in ("save_samples", "validate", "save_checkpoint"):
        slowed(name)
    config = tiny(
        "train.log_every=2", "train.sample_every=1", "train.checkpoint_every=1",
        "eval.every=1", "eval.val_samples=2", steps=4,
    )  # fmt: skip
    r = train(config, out_dir=tmp_path / "r")
    records = [json.loads(line) for line in (r.run_dir / "metrics.jsonl").open()]
    steps = [rec for rec in records if "step_time" in rec]
    assert [rec["step"] for rec in steps] == [2, 4]
    # each window held at least 1.2 s of the three (0.6 s a step): the steps alone are fast
    assert all(rec["step_time"] < 0.3 for rec in steps), steps
    assert r.seconds > 4 * 3 * 0.4  # the wall clock still has them all


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals sent with os.kill")
def test_a_signal_while_the_last_checkpoint_is_saved_stops_the_final_evaluation(
    tmp_path, monkeypatch
):
    """Caught by the trainer during the final save, after the last step, a Ctrl-C was dropped:
    the final evaluation (minutes for an FID) ran on and the run ended as if never stopped."""
    import os
    import signal

    from edgegan.train.trainer import Trainer

    real = Trainer.save_checkpoint

    def signalled(self):
        if self.step == self.config.train.steps:
            os.kill(os.getpid(), signal.SIGINT)  # the trainer's handler takes it
        return real(self)

    monkeypatch.setattr(Trainer, "save_checkpoint", signalled)
    monkeypatch.setattr(Trainer, "evaluate", lambda self: pytest.fail("evaluated"))
    config = tiny("eval.at_end=true", steps=3)
    with pytest.raises(KeyboardInterrupt):
        train(config, out_dir=tmp_path / "r")
    run = tmp_path / "r"
    assert (run / "checkpoints/last.pt").exists()
    assert "- steps: 3 of 3 (stopped by steps)" in (run / "report.md").read_text()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # a SIGTERM whose handler is the system's (a program calling train()): the evaluation is
    # skipped, the report written, then the signal ends the process as it asked (given back
    # at once, it killed the process before its report; held, the process ran on)
    code = (
        "import os, signal, sys\n"
        "from edgegan.config import load_config\n"
        "from edgegan.train import train\n"
        "from edgegan.train.trainer import Trainer\n"
        "real = Trainer.save_checkpoint\n"
        "def terminated(self):\n"
        "    if self.step == self.config.train.steps:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(self)\n"
        "Trainer.save_checkpoint = terminated\n"
        "Trainer.evaluate = lambda self: sys.exit('evaluated')\n"
        f"train(load_config('dcgan-mnist', {[*TINY, 'train.steps=3', 'eval.at_end=true']!r}),"
        f" out_dir={str(tmp_path / 't')!r})\n"
        "print('returned')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGTERM and "returned" not in proc.stdout, proc.stderr
    report = (tmp_path / "t/report.md").read_text()
    assert "- steps: 3 of 3 (stopped by steps)" in report
    assert "- eval: not done (SIGTERM after the last step)" in report


def test_a_notebooks_no_grad_and_float64_default_neither_break_nor_change_a_run(tmp_path):
    """Under torch.no_grad (or inference_mode) training failed in backward with torch's
    error; under a float64 default it trained float64 weights, which a loaded generator
    then kept: float32 inputs were refused, and an export failed onnx.checker."""
    import torch

    from edgegan.export.onnx import _example_inputs
    from edgegan.sampling import generate, load_run_generator

    plain = train(tiny(steps=2), out_dir=tmp_path / "plain")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.no_grad():
            r = train(tiny(steps=2), out_dir=tmp_path / "nograd")
        with torch.inference_mode():
            train(tiny(steps=2), out_dir=tmp_path / "inference")
        assert torch.get_default_dtype() == torch.float64 and torch.is_grad_enabled()
        state = torch.load(r.checkpoint, weights_only=True)
        weights = state["networks"]["generator"]
        assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float32}
        before = torch.load(plain.checkpoint, weights_only=True)["networks"]["generator"]
        assert all(torch.equal(before[k], v) for k, v in weights.items())  # the same run
        gen = load_run_generator(r.run_dir)
        assert next(gen.module.parameters()).dtype == torch.float32
        assert generate(gen, 2, seed=0)["images"].shape[0] == 2
        assert {x.dtype for x in _example_inputs(gen.spec) if x.is_floating_point()} == {
            torch.float32
        }
    finally:
        torch.set_default_dtype(old)


def test_a_final_evaluation_that_fails_unexpectedly_still_reports_the_saved_run(
    tmp_path, monkeypatch, capsys
):
    """A metric plugin's bug (or a warning made an error by -W error) in the final evaluation
    left no report.md and no word that the trained run was saved."""
    from edgegan.train.trainer import Trainer

    def buggy(self):
        raise ZeroDivisionError("a metric plugin's bug")

    monkeypatch.setattr(Trainer, "evaluate", buggy)
    with pytest.raises(ZeroDivisionError):
        train(tiny("eval.at_end=true", steps=2), out_dir=tmp_path / "r")
    assert "- steps: 2 of 2 (stopped by steps)" in (tmp_path / "r/report.md").read_text()
    err = capsys.readouterr().err
    assert f"the final evaluation failed (ZeroDivisionError); the trained run is saved in " \
        f"{tmp_path / 'r'}" in err  # fmt: skip
    # with no stderr (pythonw), the line is not printed on stdout, the caller's result
    monkeypatch.setattr("sys.stderr", None)
    with pytest.raises(ZeroDivisionError):
        train(tiny("eval.at_end=true", steps=2), out_dir=tmp_path / "n")
    assert capsys.readouterr().out == ""


def test_the_report_says_what_stopped_the_run_and_no_eval_means_no_eval_json(tmp_path):
    done = train(tiny(steps=2), out_dir=tmp_path / "done")  # eval.at_end=false
    report = (done.run_dir / "report.md").read_text()
    assert "- steps: 2 of 2 (stopped by steps)" in report and "- eval:" not in report
    assert done.eval == {} and not (done.run_dir / "eval.json").exists()
    budget = train(tiny("train.max_seconds=0.000001", steps=1000), out_dir=tmp_path / "budget")
    report = (budget.run_dir / "report.md").read_text()
    assert f"- steps: {budget.step} of 1000 (stopped by max_seconds)" in report
    # a slow run's rate in three figures: it said "0 images/s" for 3 steps in 14 s
    from edgegan.train.trainer import Trainer, TrainResult

    slow = Trainer(tiny("train.batch_size=1", steps=3), tmp_path / "slow")
    slow.run_dir.mkdir()
    slow.write_report(TrainResult(slow.run_dir, 3, 14.0, "steps", slow.run_dir / "x.pt"))
    assert "(0.214 images/s over the run)" in (slow.run_dir / "report.md").read_text()
    slow.write_report(TrainResult(slow.run_dir, 3000, 0.6, "steps", slow.run_dir / "x.pt"))
    assert "(5000 images/s over the run)" in (slow.run_dir / "report.md").read_text()  # not 5e+03


def test_the_ema_copies_the_generator_before_ema_start(tmp_path):
    """train.ema_start=1: the first step's update copies the generator (step 0 < start), so
    after one step the EMA weights are the generator's."""
    r = train(tiny("train.ema_start=1", steps=1), out_dir=tmp_path / "r")
    state = load_checkpoint(r.checkpoint)
    generator = state["networks"]["generator"]
    assert state["ema"].keys() == generator.keys()
    for key, value in state["ema"].items():
        assert torch.equal(value, generator[key]), key


def test_a_resume_continues_the_learning_rate_schedule_exactly(tmp_path):
    """The first resumed step trains with the schedule's rate at its step (here half the
    base rate), as the run never stopped would."""
    steps = ["optim.g.lr=0.01", "optim.d.lr=0.01",
             "train.lr_schedule=step", "train.lr_step=2", "train.lr_gamma=0.5"]  # fmt: skip
    full = train(tiny(*steps, steps=4), out_dir=tmp_path / "full")
    half = train(tiny(*steps, steps=3), out_dir=tmp_path / "half")
    resumed = train(load_run_config(half.run_dir, ["train.steps=4"]), resume=half.run_dir)
    a, b = _weights(full.run_dir), _weights(resumed.run_dir)
    for net in a["networks"]:
        for key, value in a["networks"][net].items():
            assert torch.equal(value, b["networks"][net][key]), f"{net}.{key}"


def test_a_single_image_preview_is_not_taken_for_copies_of_one_image():
    from edgegan.train.trainer import collapse

    torch.manual_seed(0)
    assert collapse(torch.rand(1, 1, 8, 8) * 2 - 1) is None
    assert collapse(torch.rand(1, 1, 8, 8).expand(3, 1, 8, 8)) == "are 3 copies of one image"
    assert collapse(torch.full((2, 1, 8, 8), -1.0)).startswith("are one flat colour")


class _FakeSummaryWriter:
    """torch.utils.tensorboard's SummaryWriter as the TensorBoard callback calls it."""

    events: list = []

    def __init__(self, log_dir, purge_step=None):
        self.events.append(("open", Path(log_dir), purge_step))

    def add_scalar(self, key, value, step):
        self.events.append(("scalar", key, step))

    def add_images(self, tag, images, step):
        self.events.append(("images", tag, step, images.shape[0], images))

    def flush(self):
        self.events.append(("flush",))

    def close(self):
        self.events.append(("close",))


def test_tensorboard_logs_losses_validation_and_samples_and_purges_on_resume(tmp_path, monkeypatch):
    import types

    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = _FakeSummaryWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    events = _FakeSummaryWriter.events = []
    cfg = tiny("train.tensorboard=true", "eval.every=2", "eval.val_samples=16", steps=2)
    with pytest.warns(UserWarning):  # an FD from 16 samples means little
        run = train(cfg, out_dir=tmp_path / "r").run_dir
    assert events[0] == ("open", run / "tensorboard", None)
    scalars = {(e[1], e[2]) for e in events if e[0] == "scalar"}
    assert {("g_loss", 2), ("d_loss", 2), ("lr_g", 2)} <= scalars
    assert any(key.startswith("val_") and step == 2 for key, step in scalars)
    assert not any(key == "step" for key, _ in scalars)
    (images,) = [e for e in events if e[0] == "images"]  # at the checkpoint (the last step)
    assert images[1:4] == ("samples", 2, 20)
    grid = images[4]
    assert 0 <= float(grid.min()) and float(grid.max()) <= 1 and 0.25 < float(grid.mean()) < 0.75
    assert events[-1] == ("close",)
    # A resume drops the events logged after its checkpoint (from step 3 on).
    events.clear()
    train(load_run_config(run, ["train.steps=3", "eval.every=0"]), resume=run)
    assert events[0] == ("open", run / "tensorboard", 3) and events[-1] == ("close",)


def test_metrics_log_writes_strict_json_and_a_resume_keeps_records_it_cannot_place(tmp_path):
    from edgegan.train.logs import MetricsLog

    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"step": 1, "g_loss": 1.0}\n{"note": "no step"}\n[1, 2]\n{"step": "3"}\n'
        '{"step": 2, "g_loss": 0.5}\n{"step": 3, "g_loss": 0.2}\n{"step": 4, "g_lo'
    )
    log = MetricsLog(path, upto=2)
    log.write({"step": 3, "g_loss": float("nan"), "d_loss": float("inf"), "n": 1})
    log.close()

    def strict(text):  # NaN and Infinity are no JSON: jq, browsers and pandas refuse them
        raise ValueError(text)

    records = [json.loads(line, parse_constant=strict) for line in path.read_text().splitlines()]
    assert records == [
        {"step": 1, "g_loss": 1.0},
        {"note": "no step"},
        [1, 2],
        {"step": "3"},
        {"step": 2, "g_loss": 0.5},
        {"step": 3, "g_loss": "nan", "d_loss": "inf", "n": 1},
    ]


def test_a_resume_cuts_the_log_after_its_checkpoint_reading_only_the_tail(tmp_path, monkeypatch):
    """A resume read and parsed the whole metrics.jsonl, and rewrote it (126 MB: 3.5 s, 400
    MB more memory, and free disk for all of it). Its records are in step order: the tail
    is read backwards, the file truncated in place, as the full rewrite would have left it."""
    import io
    import random

    from edgegan.train import logs

    rng = random.Random(0)
    for case in range(40):
        lines = []
        for step in range(1, rng.randint(0, 12) + 1):
            lines.append(json.dumps({"step": step, "g_loss": rng.random()}))
            if rng.random() < 0.3:
                lines.append(json.dumps({"step": step, "val_fd": 1.5}))  # a validation's
        text = "".join(f"{line}\n" for line in lines)
        tail = rng.choice(["", '{"step": 99, "g_lo', "\n", '{"step": 1e400}'])
        if rng.random() < 0.3 and text and not tail:
            text = text[:-1]  # the last record without its newline
        text += tail
        upto = rng.randint(0, 14)
        path = tmp_path / f"{case}.jsonl"
        path.write_text(text)
        logs._keep_records_through(path, upto)
        kept = [line for line in lines if json.loads(line)["step"] <= upto]
        assert path.read_text() == "".join(f"{line}\n" for line in kept), (text, upto)
    data = b"a\nbb\n\nccc\nd"
    for block in (1, 2, 3, 64):
        got = list(logs._lines_backwards(io.BytesIO(data), len(data), block))
        assert got == [(10, b"d"), (6, b"ccc"), (5, b""), (2, b"bb"), (0, b"a")], block
    # only the tail is parsed, and the file is cut where it is (the same inode)
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 20001)))
    inode, parsed, loads = path.stat().st_ino, [], json.loads
    monkeypatch.setattr(logs.json, "loads", lambda text: parsed.append(1) or loads(text))
    logs._keep_records_through(path, 19990)
    monkeypatch.undo()
    assert len(parsed) == 11 and path.stat().st_ino == inode
    assert path.read_text().splitlines()[-1] == '{"step": 19990}'


def test_plain_progress_prints_the_last_step_and_nothing_when_off(monkeypatch, capsys):
    from edgegan.train import logs

    clock = [1000.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(logs.sys.stderr, "isatty", lambda: False, raising=False)
    bar = logs.ProgressBar(100, 0, True, "train gan")
    clock[0] += 10.0
    bar.update(50)
    clock[0] += 10.0  # under 30 s since the last line, but the last step: always said
    bar.update(100, "g 1.000 d 1.000")
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("  eta")[0] for line in lines] == [
        "train gan: step 50/100",
        "train gan: step 100/100",
    ]
    quiet = logs.ProgressBar(100, 0, False, "train gan")  # train.progress=false
    quiet.note("training into runs/x on cpu")
    quiet.update(100)
    assert capsys.readouterr().err == ""


def test_edgegan_train_says_a_time_budget_stopped_it(tmp_path):
    from click.testing import CliRunner

    from edgegan.cli import cli

    run = tmp_path / "r"
    args = ["train", "dcgan-mnist", *TINY, "train.steps=1000", "train.max_seconds=0.000001"]
    res = CliRunner().invoke(cli, [*args, "--out", str(run)])
    assert res.exit_code == 0, res.output
    step = load_checkpoint(run / "checkpoints/last.pt")["step"]
    assert re.match(rf"time budget reached: {step} steps in \d+ s -> {re.escape(str(run))}$",
                    res.stdout.splitlines()[0])  # fmt: skip
    assert f"continue with: edgegan train --resume {run}" in res.stderr
    # Resumed: the run's seconds are all its sessions', and this session's are said apart
    # (train.max_seconds budgets them; "in 1080 s" after a budget of 540 read as a bug).
    res = CliRunner().invoke(cli, ["train", "--resume", str(run), "train.max_seconds=0.000001"])
    assert res.exit_code == 0, res.output
    assert re.match(r"time budget reached: \d+ steps in \d+ s \(\d+ s this session\) -> ",
                    res.stdout.splitlines()[0])  # fmt: skip
    before = load_checkpoint(run / "checkpoints/last.pt")["elapsed"]
    r = train(load_run_config(run, ["train.max_seconds=0.000001"]), resume=run)
    assert 0 < r.session_seconds < r.seconds
    assert r.seconds - r.session_seconds == pytest.approx(before)


def test_a_runs_result_holds_absolute_paths_and_the_cli_says_them_from_here(tmp_path, monkeypatch):
    """TrainResult.run_dir was relative to the working folder of the call: a notebook that
    changed folder afterwards could not load the run it had just trained."""
    from click.testing import CliRunner

    from edgegan.cli import cli
    from edgegan.sampling import load_run_generator

    monkeypatch.chdir(tmp_path)
    r = train(tiny(steps=1), out_dir="rel")
    assert r.run_dir == tmp_path / "rel" and r.checkpoint == tmp_path / "rel/checkpoints/last.pt"
    monkeypatch.chdir(tmp_path / "rel")
    assert load_run_generator(r.run_dir).step == 1
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["train", "dcgan-mnist", *TINY, "train.steps=1", "--out", "c"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0].endswith(" -> c")  # as given, not made absolute
    assert "edgegan export c" in res.stderr


def test_a_resume_on_data_whose_classes_changed_is_refused(tmp_path):
    """A class folder renamed between runs gave label 1 to another class without a word; one
    added failed on the class embeddings' size, blaming the model config."""
    from edgegan.data.transforms import save_png

    folder = tmp_path / "pets"
    for cls in ("cats", "dogs"):
        (folder / cls).mkdir(parents=True)
        for i in range(4):
            save_png(torch.rand(3, 32, 32) * 2 - 1, folder / cls / f"{i}.png")
    data = ["data.name=folder", f"data.root={folder}", "data.image_size=32", "eval.at_end=false"]
    run = train(tiny(*data, "train.batch_size=4", steps=2), out_dir=tmp_path / "r").run_dir
    last = (run / "checkpoints" / "last.pt").read_bytes()
    (folder / "dogs").rename(folder / "canines")
    renamed = r"trained on classes 'cats', 'dogs'; its data now has 'canines', 'cats': label 0 "
    with pytest.raises(DataError, match=renamed + r"was 'cats' and would now be 'canines'\. Put"):
        train(load_run_config(run, "train.steps=4"), out_dir=run, resume=run)
    (folder / "canines").rename(folder / "dogs")
    (folder / "birds").mkdir()
    save_png(torch.rand(3, 32, 32) * 2 - 1, folder / "birds" / "0.png")
    added = r"'cats', 'dogs'; its data now has 'birds', 'cats', 'dogs': its class embeddings hold 2"
    with pytest.raises(DataError, match=added):
        train(load_run_config(run, "train.steps=4"), out_dir=run, resume=run)
    assert (run / "checkpoints" / "last.pt").read_bytes() == last
    shutil.rmtree(folder / "birds")  # as it was: the run continues
    # the same classes, model.conditional changed: the networks' own error (a review saw a
    # bare StopIteration here)
    with pytest.raises(EdgeganError, match="does not fit the configured networks"):
        config = load_run_config(run, ["train.steps=4", "model.conditional=false"])
        train(config, out_dir=run, resume=run)
    assert train(load_run_config(run, "train.steps=4"), out_dir=run, resume=run).step == 4


def test_an_image_that_fails_only_when_decoded_keeps_the_steps_trained(tmp_path):
    """A truncated JPEG passes the header check at the start and fails when its batch is
    read: the run stopped there lost every step since its last checkpoint (with none, it
    could not be resumed with the error's own data.skip_bad=true)."""
    import io

    import numpy as np
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(16):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3), np.uint8)).save(
            folder / f"{i:02d}.jpg"
        )
    whole = io.BytesIO()
    Image.fromarray(np.random.default_rng(99).integers(0, 255, (64, 64, 3), np.uint8)).save(
        whole, "JPEG"
    )
    (folder / "bad.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    data = ["data.name=folder", f"data.root={folder}", "data.image_size=32", "eval.at_end=false",
            "model.conditional=false", "train.batch_size=2", "train.checkpoint_every=99",
            "train.resident_data=false", "seed=4"]  # fmt: skip
    with pytest.raises(DataError, match=r"cannot read image .*bad\.jpg.*data\.skip_bad=true"):
        train(tiny(*data, steps=20), out_dir=tmp_path / "r")
    state = torch.load(tmp_path / "r/checkpoints/last.pt", weights_only=True)
    assert 0 < state["step"] < 9  # in the first epoch, after some steps
    again = load_run_config(tmp_path / "r", "data.skip_bad=true")
    with pytest.warns(UserWarning, match="bad.jpg.*skipping it"):
        assert train(again, out_dir=tmp_path / "r", resume=tmp_path / "r").step == 20


def test_the_start_says_what_the_run_trains_on(tmp_path, capsys):
    """An unlabelled folder under the conditional preset trains an unconditional GAN: the
    first lines say so (and a class folder taken for a split would show its count here)."""
    from edgegan.data.transforms import save_png

    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(4):
        save_png(torch.rand(3, 32, 32) * 2 - 1, folder / f"{i}.png")
    data = ["data.name=folder", f"data.root={folder}", "data.image_size=32", "eval.at_end=false",
            "train.batch_size=2", "train.progress=true"]  # fmt: skip
    train(tiny(*data, steps=1), out_dir=tmp_path / "r")
    err = " ".join(capsys.readouterr().err.split())  # unwrapped
    assert "data: folder, 4 images 3x32x32, unlabelled: an unconditional GAN (model.condit" in err
    train(tiny(*data, "model.conditional=false", steps=1), out_dir=tmp_path / "u")
    assert "4 images 3x32x32, unconditional (model.conditional=false)" in capsys.readouterr().err


def test_a_final_evaluation_cut_short_keeps_the_report_and_says_how_to_score(
    tmp_path, capsys, monkeypatch
):
    """Ctrl-C in the final evaluation (minutes for a large eval.num_samples) left the trained
    run without report.md and with no word on how to score it (its --resume is refused: the
    run is at its last step)."""
    from edgegan.train.trainer import Trainer

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny("eval.at_end=true", steps=2), out_dir=tmp_path / "r")
    assert "- steps: 2 of 2" in (tmp_path / "r" / "report.md").read_text()
    err = capsys.readouterr().err
    assert f"score it with edgegan eval {tmp_path / 'r'}" in err


def test_a_sigterm_the_cli_got_while_the_run_was_built_stops_it_at_once(tmp_path):
    """Its exception, raised inside an import that caught it, was lost: the job trained on
    to its end (a scheduler's SIGTERM at start-up, ignored until SIGKILL)."""
    import signal

    from edgegan.errors import note_signal, take_signal

    note_signal(signal.SIGTERM)  # what the CLI's handler records before raising
    result = train(tiny(steps=50), out_dir=tmp_path / "r")
    assert result.stopped_by == "signal" and result.step <= 1
    assert take_signal() is None  # acted on
    assert load_checkpoint(result.checkpoint)["step"] == result.step  # resumable


def test_progress_lines_to_a_reader_that_is_gone_end_the_lines_not_the_run(monkeypatch):
    """`edgegan train 2>&1 | head -3`: the run died at its next progress line, and the steps
    since its last checkpoint were lost."""
    import sys

    from edgegan.train.logs import ProgressBar

    class Gone:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    monkeypatch.setattr(sys, "stderr", Gone())
    bar = ProgressBar(10, 0, True, "train")
    bar.note("data: mnist")  # the reader is gone: no error
    bar.update(10)
    assert not bar.enabled


@pytest.mark.skipif(sys.platform != "linux", reason="file names that are not UTF-8: Linux")
def test_a_run_folder_whose_name_is_not_utf8_trains_and_export_says_why_not(tmp_path):
    """Its claim failed to be written (a traceback), and was left empty: the folder was then
    'not empty' for good; training into an existing one failed at report.md."""
    import os

    from edgegan.errors import EdgeganError
    from edgegan.export import export

    run = Path(os.fsdecode(bytes(tmp_path) + b"/run\xff"))
    result = train(tiny(steps=1), out_dir=run)
    assert result.step == 1
    assert "# edgegan run: run\\xff\n" in (run / "report.md").read_text(encoding="utf-8")
    with pytest.raises(EdgeganError, match=r"its name is not UTF-8, which onnxruntime needs"):
        export(run)  # into run/export, beside which the bundle is made
    # only the bundle's folder must be UTF-8: the run is read by Python alone
    bundle = tmp_path / "b"
    assert export(run, out=bundle)["source"]["run_dir"] == str(run.resolve())
    # a bundle given for the run is said to be one, before its --out is looked at (a file
    # there, a read-only bundle: the complaint was about --out)
    (bundle / "export").write_text("")
    with pytest.raises(EdgeganError, match="is an export bundle, not a run directory"):
        export(bundle)


def test_a_new_run_that_fails_before_its_first_step_leaves_nothing(tmp_path, monkeypatch):
    """A compile failure (no C++ compiler: Windows, a Mac without Xcode's tools) was a
    110-line traceback, and left config.yaml and metrics.jsonl: a folder that could be
    neither resumed nor trained into again."""
    from torch._dynamo.exc import TorchDynamoException

    from edgegan.train.trainer import Trainer

    step = Trainer.train_step

    def failing(self: Trainer):
        if self.step == fail_at:
            raise TorchDynamoException("InvalidCxxCompiler: No working C++ compiler found")
        return step(self)

    from edgegan.train.logs import RunLock

    release, left_at_release = RunLock.release, []

    def released(self: RunLock) -> None:  # what the run folder held when its lock went
        if self.held:
            left_at_release.append(sorted(p.name for p in self.path.parent.iterdir()))
        release(self)

    monkeypatch.setattr(Trainer, "train_step", failing)
    monkeypatch.setattr(RunLock, "release", released)
    fail_at = 0
    with pytest.raises(ConfigError) as caught:
        train(tiny("train.compile=default"), out_dir=tmp_path / "deep" / "run")
    # taken back under the lock: another process could have claimed the folder after it
    assert left_at_release == [[".edgegan-lock"]]
    assert str(caught.value) == (
        "torch.compile could not compile the networks (TorchDynamoException: "
        "InvalidCxxCompiler: No working C++ compiler found); train with train.compile=off (on "
        "the CPU it needs a C++ compiler, on CUDA triton)"
    )
    assert list(tmp_path.iterdir()) == []  # deep/ and run/ were made for it: gone too
    (tmp_path / "given").mkdir()  # an empty folder given: left as it was, empty
    with pytest.raises(TorchDynamoException):  # compile off: not a compile failure of ours
        train(tiny(), out_dir=tmp_path / "given")
    assert list((tmp_path / "given").iterdir()) == []
    fail_at = 1  # after a step: the run's files stay (its log shows what it did)
    with pytest.raises(TorchDynamoException):
        train(tiny(), out_dir=tmp_path / "later")
    assert (tmp_path / "later" / "config.yaml").is_file()


def test_a_run_folder_named_after_the_preset_stays_under_runs(tmp_path):
    """`preset=../escape` made runs/../escape, outside runs/; `a:b` is no name on Windows."""
    from edgegan.train.logs import new_run_dir, release_run_dir

    for name, made in (("../escape", "escape"), ("a:b", "a-b"), ("..", "run"), ("x\\y", "y")):
        path = new_run_dir(None, name, root=tmp_path / "runs")
        assert path == tmp_path / "runs" / made
        release_run_dir(path)


def test_a_datasets_warning_during_train_names_the_callers_line(tmp_path):
    """It named edgegan/registry.py (where the trainer builds the dataset)."""
    from PIL import Image

    from edgegan.data import DataWarning

    for i in range(16):
        Image.new("L", (10, 10), 16 * i).save(tmp_path / f"{i}.png")
    folder = ["data.name=folder", f"data.root={tmp_path}", "data.image_size=32", "data.channels=1"]
    with pytest.warns(DataWarning, match="upscaled more than 2x") as caught:
        train(tiny(*folder, "model.conditional=false", "train.batch_size=8", steps=1),
              out_dir=tmp_path / "r")  # fmt: skip
    assert [w.filename for w in caught if "upscaled" in str(w.message)] == [__file__]
