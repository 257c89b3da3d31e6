"""The cyclegan task: image pool, paired metrics, a few steps per network, exact resume."""

from __future__ import annotations

import math
import os
import random
import signal

import pytest
import torch
import yaml
from tiny import TINY_CYCLEGAN as TINY

from edgegan import hookimpl
from edgegan.config import load_config, load_run_config
from edgegan.data import DataWarning
from edgegan.errors import ConfigError
from edgegan.metrics.paired import l1, paired_scores, psnr, ssim
from edgegan.train import train
from edgegan.train.checkpoint import load_checkpoint
from edgegan.train.pool import ImagePool


def tiny(*overrides: str, steps: int = 3):
    return load_config("cyclegan-digits", [*TINY, f"train.steps={steps}", *overrides])


def test_pool_fills_then_mixes_old_and_new():
    random.seed(0)
    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: the new images pass through
    new = torch.full((64, 1, 1, 1), 9.0)
    out = pool.query(new)
    from_history = (out != 9.0).sum().item()
    assert 0 < from_history <= 4  # each old image can be handed out once (it is replaced)
    state = pool.state_dict()
    other = ImagePool(4)
    other.load_state_dict(state, torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(pool.images, other.images, strict=True))
    assert torch.equal(ImagePool(0).query(new), new)


def test_paired_metrics_on_known_values():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert psnr(x, x) == 100.0
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-5)
    y = (x + 0.2).clamp(-1, 1)
    mse = (((x + 1) / 2 - (y + 1) / 2) ** 2).flatten(1).mean(1)
    assert psnr(x, y) == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), rel=1e-5)
    assert l1(x, y) == pytest.approx(float((x - y).abs().mean()))
    assert ssim(x, torch.rand_like(x) * 2 - 1) < 0.2
    assert set(paired_scores(x, y, "ab_")) == {"ab_l1", "ab_psnr", "ab_ssim"}
    # Out of range (an API user's unclamped output): all three score the clamped pixels, as
    # saved images would be (L1 alone scored the raw values, while PSNR said 100 dB).
    over = x.clamp(-1, 1) * 1.5
    scores = paired_scores(over, over.clamp(-1, 1))
    assert scores["l1"] == 0.0 and scores["psnr"] == 100.0
    # A NaN pixel is not clamped into range: its image scores NaN, not a plausible figure.
    broken = x.clone()
    broken[1, 0, 3, 3] = float("nan")
    assert all(math.isnan(v) for v in paired_scores(broken, x).values())


@pytest.mark.parametrize(
    "generator, discriminator",
    [
        ("resnet_6blocks", "patchgan"),
        ("resnet_9blocks", "pixel"),
        ("unet_128", "patchgan"),
    ],
)
def test_each_network_pair_trains(tmp_path, generator, discriminator):
    extra = ["data.image_size=128"] if generator.startswith("unet") else []
    result = train(
        tiny(
            f"model.generator.name={generator}",
            f"model.discriminator.name={discriminator}",
            *extra,
            steps=2,
        ),
        out_dir=tmp_path / "run",
    )
    assert result.step == 2
    assert (tmp_path / "run/samples/final.png").is_file()
    for key in ("ab_psnr", "ba_psnr", "ab_ssim", "ab_l1"):
        assert math.isfinite(result.eval[key])
    # the run records each network's parameters, defaults apart (the U-Net's norm)
    model = yaml.safe_load((tmp_path / "run/config.yaml").read_text())["model"]
    assert model["generator"]["name"] == generator and "norm" in model["generator"]["defaults"]
    assert model["discriminator"]["name"] == discriminator and "ndf" in model["discriminator"]
    assert "channels_out" not in model["generator"]["defaults"]  # the task's context


class _SigtermAt:
    """A callback plugin: SIGTERM at the end of step ``at``, as `kill` would send it."""

    @hookimpl
    def edgegan_register_callbacks(self, register):
        class Callback:
            def __init__(self, at: int = 3) -> None:
                self.at = at

            def on_step_end(self, trainer, step, metrics):
                if step == self.at:
                    os.kill(os.getpid(), signal.SIGTERM)

        register("sigterm-at", Callback)


@pytest.mark.parametrize(
    "how, extra",
    [
        ("stopped", []),
        (
            "extended",
            [
                "train.lr_schedule=constant",
                "loss.name=wgan-gp",
                "data.channels_a=3",
                "cycle.lambda_identity=0.5",
            ],
        ),
    ],  # fmt: skip
    ids=["stopped-lsgan", "extended-gp-idt"],
)
def test_cyclegan_resume_is_exact(tmp_path, how, extra):
    """Stopped by SIGTERM at step 3 of 6 and resumed, or trained 3 steps and resumed to 6
    (where the schedule does not depend on the run's length: a decaying one follows the
    new length's schedule, by design): the weights and pools of 6 steps straight. (With 2 and
    4 steps the linear schedule's factors happened to agree.)"""
    from edgegan.config import PartConfig
    from edgegan.plugins.manager import PluginManager, reset_manager

    steps = [
        "train.checkpoint_every=2",
        "train.log_every=1",
        "cycle.pool_size=3",
        "eval.at_end=false",
        *extra,
    ]
    full = train(tiny(*steps, steps=6), out_dir=tmp_path / "full")
    if how == "stopped":
        manager = PluginManager(load_entry_points=False)
        manager.register(_SigtermAt(), name="sigterm-plugin")
        reset_manager(manager)
        cfg = tiny(*steps, steps=6)
        cfg.callbacks = [PartConfig("sigterm-at", {"at": 3})]
        half = train(cfg, out_dir=tmp_path / "half")
        assert half.stopped_by == "signal" and half.step == 3
        resumed = train(resume=half.run_dir)
    else:
        half = train(tiny(*steps, steps=3), out_dir=tmp_path / "half")
        resumed = train(load_run_config(half.run_dir, ["train.steps=6"]), resume=half.run_dir)
    assert resumed.step == 6
    a = load_checkpoint(full.checkpoint)
    b = load_checkpoint(resumed.checkpoint)
    for net in ("g_ab", "g_ba", "d_a", "d_b"):
        for key, value in a["networks"][net].items():
            assert torch.equal(value, b["networks"][net][key]), f"{net}.{key}"
    assert torch.equal(a["extra"]["pool_b"]["images"], b["extra"]["pool_b"]["images"])


def test_identity_loss_needs_equal_channels(tmp_path):
    with pytest.raises(ConfigError, match="lambda_identity needs domains with equal channels"):
        train(tiny("cycle.lambda_identity=0.5"), out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_the_gan_tasks_discriminator_settings_are_refused_not_ignored(tmp_path):
    """train.d_steps, r1_gamma and augment: a cyclegan run trained without them, silently."""
    with pytest.raises(ConfigError) as info:
        train(tiny("train.d_steps=3", "train.r1_gamma=10"), out_dir=tmp_path / "r")
    assert str(info.value).startswith(
        "train.d_steps=3, train.r1_gamma=10: only task gan uses them, a cyclegan run would "
        "ignore them; remove them"
    )
    assert "(train.d_steps=1 train.r1_gamma=0: resuming a run that set them)" in str(info.value)
    with pytest.raises(ConfigError, match="train.augment='cutout': only task gan uses it"):
        train(tiny("train.augment=cutout"), out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()
    assert train(tiny("train.augment=,", steps=1), out_dir=tmp_path / "r").step == 1  # none


def test_another_tasks_section_is_refused_not_ignored(tmp_path):
    """cycle.* on a gan or pix2pix run, pix2pix.* on a gan or cyclegan run: ignored before."""
    from tiny import TINY_GAN, TINY_PIX2PIX

    from edgegan.train.checks import check_config

    for preset, overrides, says in (
        ("cyclegan-digits", [*TINY, "pix2pix.lambda_l1=3"],
         "pix2pix.lambda_l1=3.0: only task pix2pix reads pix2pix.*, a cyclegan run would "
         "ignore it; remove it (or override it to the default, pix2pix.lambda_l1=100.0, "
         "resuming a run that set it)"),
        ("pix2pix-digits", [*TINY_PIX2PIX, "cycle.pool_size=7", "cycle.lambda_a=2"],
         "cycle.lambda_a=2.0, cycle.pool_size=7: only task cyclegan reads cycle.*, a pix2pix "
         "run would ignore them; remove them (or override them to the default, "
         "cycle.lambda_a=null cycle.pool_size=50,"),
        ("dcgan-mnist", [*TINY_GAN, "cycle.lambda_cycle=5"], "cycle.lambda_cycle=5.0: only task"),
    ):  # fmt: skip
        with pytest.raises(ConfigError) as info:
            train(load_config(preset, overrides), out_dir=tmp_path / "r")
        assert str(info.value).startswith(says), str(info.value)
        assert not (tmp_path / "r").exists()
    # the defaults given again (resuming a run that set them) pass
    check_config(
        load_config("dcgan-mnist", [*TINY_GAN, "cycle.pool_size=50", "cycle.lambda_a=null"])
    )


def test_cyclegan_needs_a_two_domain_dataset(tmp_path):
    cfg = tiny("data.name=mnist")
    with pytest.raises(ConfigError, match="two-domain dataset"):
        train(cfg, out_dir=tmp_path / "r")


@pytest.mark.slow
def test_unpaired_folder_train_and_translate_via_cli(tmp_path):
    """The issue's flow: train `cyclegan` on a trainA/trainB folder of small greyscale images,
    then translate testA keeping the file names."""
    import os
    import subprocess
    import sys

    from PIL import Image

    from edgegan.data.digits_domains import write_cyclegan_digits_folder

    data = tmp_path / "data"
    write_cyclegan_digits_folder(data, image_size=32, limit=24)
    for name in ("trainB", "testB"):  # make both domains greyscale, as in the issue
        for p in (data / name).iterdir():
            Image.open(p).convert("L").save(p)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "edgegan"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            *cmd,
            "train",
            "cyclegan",
            f"data.root={data}",
            "data.load_size=32",
            "data.crop_size=32",
            "data.channels_a=1",
            "data.channels_b=1",
            "train.max_seconds=900",
            "train.steps=3",
            "train.progress=false",
            "model.generator.name=resnet_6blocks",
            "model.generator.ngf=4",
            "model.discriminator.ndf=8",
            "eval.num_samples=8",
            "--out",
            str(run),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ab_psnr" in (run / "eval.json").read_text()  # testA/testB share names: paired
    spec = torch.load(run / "checkpoints/last.pt", weights_only=True)["spec"]
    assert (spec["preprocess"], spec["load_size"]) == ("resize_and_crop", 32)  # --resize train
    out = tmp_path / "translated"
    proc = subprocess.run(
        [
            *cmd,
            "infer",
            str(run),
            "--direction",
            "AtoB",
            "--input",
            str(data / "testA"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    inputs = sorted(p.name for p in (data / "testA").iterdir())
    said = f"wrote {len(inputs)} translated image(s) to {out} (torch fp32 on cpu)"
    assert proc.stdout.strip().splitlines()[-1] == said
    assert sorted(p.name for p in out.iterdir()) == inputs
    # Any size the generator accepts after padding: a 30x45 image comes back 30x45.
    odd = tmp_path / "odd.png"
    Image.new("L", (45, 30), 128).save(odd)
    out2 = tmp_path / "odd-out"
    proc = subprocess.run(
        [*cmd, "infer", str(run), "--direction", "BtoA", "--input", str(odd), "--out", str(out2)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out2 / "odd.png").size == (45, 30)


@pytest.mark.slow
def test_demo_translates_close_to_the_truth(tmp_path):
    """A shortened `cyclegan-digits` demo (300 of its steps, about 2 minutes on 2 cores).

    Measured: A->B PSNR 23.5 dB, B->A 22.0 dB against the true images of the 500 first test
    digits (`edgegan train cyclegan-digits train.steps=300 eval.num_samples=500`); copying A
    scores 10.9 dB and the mean B image 14.1 dB (docs/cyclegan-data.md)."""
    cfg = load_config(
        "cyclegan-digits",
        [
            "train.steps=300",
            "train.max_seconds=null",
            "train.progress=false",
            "train.sample_every=0",
            "train.checkpoint_every=0",
            "eval.num_samples=500",
        ],
    )
    scores = train(cfg, out_dir=tmp_path / "run").eval
    assert scores["ab_psnr"] >= 20.0, scores
    assert scores["ba_psnr"] >= 19.0, scores
    assert scores["ab_ssim"] >= 0.7, scores


def test_a_folder_without_a_usable_test_split_says_it_is_not_evaluated(tmp_path):
    from edgegan.data.digits_domains import write_cyclegan_digits_folder

    data = tmp_path / "data"
    write_cyclegan_digits_folder(data, image_size=32, limit=8)
    (data / "testA" / "zero.png").write_bytes(b"")  # a broken file, not a missing split
    cfg = tiny(
        "data.name=unpaired",
        f"data.root={data}",
        "data.load_size=32",
        "data.crop_size=32",
        "data.channels_a=1",
        steps=1,
    )
    with pytest.warns(DataWarning, match="no test split to evaluate on .*zero.png"):
        result = train(cfg, out_dir=tmp_path / "r")
    assert result.eval == {}


def test_cycle_losses_take_the_references_separate_weights(tmp_path):
    """cycle.lambda_a / lambda_b (the reference's lambda_A / lambda_B): each domain's cycle
    loss gets its own weight; unset, both are lambda_cycle, bit for bit as before."""
    import json

    weighted = train(
        tiny("cycle.lambda_a=3", "cycle.lambda_b=5", "train.log_every=1", steps=2),
        out_dir=tmp_path / "w",
    )
    records = [json.loads(x) for x in (weighted.run_dir / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if "cycle_a" in r]
    assert len(records) == 2
    for r in records:
        assert {"d_real", "d_fake"} <= set(r)  # as a GAN run logs them (README)
        assert r["cycle"] == pytest.approx(r["cycle_a"] + r["cycle_b"], rel=1e-5)
        want = r["g_adv"] + 3 * r["cycle_a"] + 5 * r["cycle_b"]
        assert r["g_loss"] == pytest.approx(want, rel=1e-5)
    # with identity losses (equal channels): each domain's weighted by its own lambda
    idt = train(
        tiny("cycle.lambda_a=3", "cycle.lambda_b=5", "train.log_every=1", "data.channels_a=3",
             "cycle.lambda_identity=0.5", steps=1),
        out_dir=tmp_path / "i",
    )  # fmt: skip
    r = [json.loads(x) for x in (idt.run_dir / "metrics.jsonl").read_text().splitlines()]
    r = next(x for x in r if "idt_a" in x)
    assert r["idt"] == pytest.approx(r["idt_a"] + r["idt_b"], rel=1e-5)
    want = (
        r["g_adv"] + 3 * r["cycle_a"] + 5 * r["cycle_b"] + 0.5 * (3 * r["idt_a"] + 5 * r["idt_b"])
    )
    assert r["g_loss"] == pytest.approx(want, rel=1e-5)
    default = train(tiny(steps=2), out_dir=tmp_path / "d")
    same = train(tiny("cycle.lambda_a=10", "cycle.lambda_b=10", steps=2), out_dir=tmp_path / "s")
    a, b = load_checkpoint(default.checkpoint), load_checkpoint(same.checkpoint)
    for net in a["networks"]:
        for key, value in a["networks"][net].items():
            assert torch.equal(b["networks"][net][key], value), (net, key)
    with pytest.raises(ConfigError, match="cycle.lambda_b must be >= 0"):
        train(tiny("cycle.lambda_b=-1", steps=1), out_dir=tmp_path / "bad")


class _AtStart:
    """A callback plugin: ``fn(trainer)`` when training starts, before step 1."""

    def __init__(self, fn) -> None:
        self.fn = fn

    @hookimpl
    def edgegan_register_callbacks(self, register):
        fn = self.fn

        class Callback:
            def on_train_start(self, trainer):
                fn(trainer)

        register("at-start", Callback)


def _train_calling_at_start(cfg, out_dir, fn):
    from edgegan.config import PartConfig
    from edgegan.plugins.manager import PluginManager, reset_manager

    manager = PluginManager(load_entry_points=False)
    manager.register(_AtStart(fn), name="at-start-plugin")
    reset_manager(manager)
    cfg.callbacks = [PartConfig("at-start", {})]
    return train(cfg, out_dir=out_dir)


def test_both_discriminators_train_the_generators(tmp_path):
    """The generators' adversarial loss is d_b's term on g_ab(a) plus d_a's on g_ba(b).
    Without cycle (and so identity) losses, g_ba learns from d_a's term alone: dropped (or
    weighted 0), g_ba's weights stayed as they were built while the run seemed to train."""
    start = {}

    def keep_weights(trainer):
        for net in ("g_ab", "g_ba"):
            state = trainer.task.module(net).state_dict()
            start[net] = {k: v.detach().clone() for k, v in state.items()}

    cfg = tiny("cycle.lambda_cycle=0", "eval.at_end=false", steps=1)
    result = _train_calling_at_start(cfg, tmp_path / "r", keep_weights)
    after = load_checkpoint(result.checkpoint)["networks"]
    for net in ("g_ab", "g_ba"):
        assert after[net].keys() == start[net].keys()
        changed = [k for k, v in start[net].items() if not torch.equal(v, after[net][k])]
        assert changed, f"{net} was not trained by its discriminator"


def test_evaluation_averages_over_the_pairs_it_scored(tmp_path):
    """evaluate(num_samples=n) scores the first n test pairs and averages over those n:
    dividing the sums by the split's size (64 here) scaled every score down by n / 64."""
    got = {}

    def evaluate(trainer):
        task = trainer.task
        ds = task._eval_dataset()
        assert len(ds) == 64 and ds.paired
        for n in (5, None):  # None: eval.num_samples (16)
            k = n or 16
            a = torch.stack([ds[i]["A"] for i in range(k)])
            b = torch.stack([ds[i]["B"] for i in range(k)])
            want = paired_scores(trainer.sample(a), b, "ab_")
            want.update(paired_scores(trainer.sample(b, module=task.g_ba), a, "ba_"))
            got[n] = (task.evaluate(trainer, num_samples=n), want)

    _train_calling_at_start(tiny("eval.at_end=false", steps=1), tmp_path / "r", evaluate)
    assert set(got) == {5, None}
    for n, (scores, want) in got.items():
        assert scores.pop("num_samples") == (n or 16)  # the eval.json of a run says it too
        assert set(scores) == {f"{d}_{m}" for d in ("ab", "ba") for m in ("l1", "psnr", "ssim")}
        assert scores == pytest.approx(want, rel=1e-6)


def test_an_eval_best_no_validation_gives_is_refused_before_training(tmp_path):
    """A translation run's validation gives {ab,ba}_{l1,psnr,ssim} (and FID's scores with
    eval.metric=fid): eval.best naming another was warned about eval.every steps in."""
    from edgegan.train.trainer import Trainer

    ev = ["eval.every=2"]
    cases = {
        "ab_pnsr": r"\(did you mean 'ab_psnr'\?\); it gives: ab_l1, ab_psnr, ab_ssim, ba_l1, ",
        "ab_fid": r"eval.best=ab_fid: a cyclegan run's validation gives no such score",
    }
    for best, error in cases.items():
        config = load_config("cyclegan-digits", [*TINY, *ev, f"eval.best={best}"])
        with pytest.raises(ConfigError, match=error):
            Trainer(config, tmp_path / best)
    # every score the validation gives is accepted
    config = load_config("cyclegan-digits", [*TINY, *ev, "eval.best=ab_l1"])
    trainer = Trainer(config, tmp_path / "ok")
    scores = trainer.task.evaluate(trainer, num_samples=2)
    assert set(scores) == {f"{p}_{k}" for p in ("ab", "ba") for k in ("l1", "psnr", "ssim")} | {
        "num_samples"
    }
    from edgegan.metrics.paired import PAIRED_SCORES

    got = paired_scores(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), "x_")
    assert set(got) == {f"x_{k}" for k in PAIRED_SCORES}
