"""Learning-rate schedules: the factor at each step, config checks, and a run that follows them."""

from __future__ import annotations

import json
import math
import re

import pytest
from tiny import TINY_GAN

from edgegan.config import load_config
from edgegan.errors import ConfigError
from edgegan.train import train
from edgegan.train.schedule import lr_factor, steps_for_epochs, validate


def cfg(*overrides: str):
    return load_config("dcgan-mnist", ["train.steps=100", *overrides]).train


def test_linear_is_constant_then_decays_to_zero():
    f = lr_factor(cfg("train.lr_schedule=linear"))
    assert [f(0), f(49), f(50), f(75), f(100)] == [1.0, 1.0, 1.0, 0.5, 0.0]
    g = lr_factor(cfg("train.lr_schedule=linear", "train.lr_decay_start=80"))
    assert [g(79), g(80), g(90), g(100)] == [1.0, 1.0, 0.5, 0.0]


def test_cosine_goes_from_one_to_zero():
    f = lr_factor(cfg("train.lr_schedule=cosine"))
    assert f(0) == 1.0 and math.isclose(f(50), 0.5) and math.isclose(f(100), 0.0, abs_tol=1e-12)
    assert all(f(i) >= f(i + 1) for i in range(100))


def test_step_multiplies_by_gamma():
    f = lr_factor(cfg("train.lr_schedule=step", "train.lr_step=30", "train.lr_gamma=0.5"))
    assert [f(0), f(29), f(30), f(60), f(99)] == [1.0, 1.0, 0.5, 0.25, 0.125]
    default = lr_factor(cfg("train.lr_schedule=step"))  # every steps // 3, times 0.1
    assert math.isclose(default(33), 0.1) and default(32) == 1.0


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr_schedule=exp", "train.lr_schedule must be one of constant, linear"),
        ("train.lr_decay_start=500", "train.lr_decay_start must be in"),
        ("train.lr_step=0", "train.lr_step must be > 0"),
        ("train.lr_gamma=0", "train.lr_gamma must be in"),
        ("train.epochs=0", "train.epochs must be > 0"),
        ("train.epochs=.inf", "train.epochs must be > 0"),
        # 128 images in batches of 16, 1 epoch: 8 steps
        ("train.epochs=1 train.lr_decay_start=8", "lr_decay_start must be in [0, train.steps=8)"),
    ],
)
def test_bad_schedule_settings_are_clear_errors(tmp_path, override, message):
    config = load_config("dcgan-mnist", [*TINY_GAN, *override.split()])
    with pytest.raises(ConfigError, match=re.escape(message)):
        train(config, out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_run_logs_the_scheduled_rates(tmp_path):
    config = load_config(
        "dcgan-mnist",
        [*TINY_GAN, "train.steps=4", "train.log_every=1", "train.lr_schedule=cosine"],
    )
    result = train(config, out_dir=tmp_path / "run")
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    rates = [json.loads(x)["lr_g"] for x in lines]
    base = config.optim.g.lr
    expected = [base * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(1, 5)]
    assert rates == pytest.approx(expected)


def test_epochs_set_the_run_length_from_the_data(tmp_path):
    from edgegan.config import load_run_config

    # 128 images in whole batches of 16: 8 batches an epoch; d_steps=2 takes two a step.
    config = load_config("dcgan-mnist", [*TINY_GAN, "train.epochs=0.5"])
    assert train(config, out_dir=tmp_path / "r").step == 4
    assert config.train.steps != 4  # the caller's config is left as it was
    config = load_config("dcgan-mnist", [*TINY_GAN, "train.epochs=1", "train.d_steps=2"])
    run = train(config, out_dir=tmp_path / "d").run_dir
    saved = load_run_config(run).train
    assert (saved.epochs, saved.steps) == (1.0, 4)
    # Resumed with more epochs, the run goes on to their length; train.steps clears epochs.
    assert train(load_run_config(run, "train.epochs=1.5"), resume=run).step == 6
    resumed = load_run_config(run, "train.steps=7")
    assert (resumed.train.epochs, resumed.train.steps) == (None, 7)
    assert train(resumed, resume=run).step == 7


def test_the_cyclegan_preset_trains_for_the_references_200_epochs():
    config = load_config("cyclegan", ["data.root=x"])
    assert (config.train.epochs, config.train.lr_schedule, config.train.lr_decay_start) == (
        200,
        "linear",
        None,  # half-way: 100 epochs constant, 100 decaying, as n_epochs/n_epochs_decay
    )
    assert load_config("cyclegan", ["train.steps=50"]).train.epochs is None


@pytest.mark.parametrize(
    "overrides, length",
    [
        (["train.epochs=0.5", "train.steps=3"], (None, 3)),  # the steps were dropped
        (["train.steps=3", "train.epochs=0.5"], (0.5, 3)),
        (["train.epochs=0.5", "train.steps=3", "train.epochs=2"], (2.0, 3)),
        (["train.steps=3", "train.epochs=null"], (None, 3)),
    ],
)
def test_given_both_steps_and_epochs_the_later_decides(overrides, length):
    """As for any key given twice: train.steps after train.epochs clears the epochs."""
    config = load_config("cyclegan", ["data.root=x", *overrides])
    assert (config.train.epochs, config.train.steps) == length


def test_a_partial_last_step_of_the_epochs_is_trained():
    """Epochs that end part-way through a step round the run's length up, so every batch of
    the last epoch is trained on: rounding down (int) dropped the last half step."""
    train_cfg = cfg("train.epochs=1", "train.batch_size=16")
    # 48 images: 3 whole batches an epoch; two batches a step -> 1.5 steps -> 2.
    assert steps_for_epochs(train_cfg, 48, batches_per_step=2) == 2
    assert steps_for_epochs(train_cfg, 48 + 15, batches_per_step=2) == 2  # 15: a partial batch
    assert steps_for_epochs(cfg("train.epochs=0.1", "train.batch_size=16"), 48) == 1
    assert steps_for_epochs(cfg("train.epochs=2.5", "train.batch_size=16"), 48) == 8  # 7.5
    assert steps_for_epochs(cfg("train.epochs=2", "train.batch_size=16"), 48) == 6  # exact


def test_a_gamma_of_one_is_a_valid_step_schedule():
    """train.lr_gamma is documented as (0, 1]: 1 (a step schedule that keeps the rate) is
    accepted, only 0, negative and > 1 values are refused."""
    ok = cfg("train.lr_schedule=step", "train.lr_step=10", "train.lr_gamma=1")
    validate(ok)
    f = lr_factor(ok)
    assert [f(0), f(10), f(99)] == [1.0, 1.0, 1.0]
    for bad in ("0", "-0.5", "1.5"):
        with pytest.raises(ConfigError, match=re.escape("train.lr_gamma must be in (0, 1]")):
            validate(cfg(f"train.lr_gamma={bad}"))


def test_step_schedule_of_a_run_shorter_than_three_steps():
    """mutation testing: the step schedule's default interval without max(1, ...) (steps // 3
    is 0 for a 1- or 2-step run: ZeroDivisionError) passed the suite."""
    for steps in (1, 2):
        f = lr_factor(
            load_config("dcgan-mnist", [f"train.steps={steps}", "train.lr_schedule=step"]).train
        )
        assert f(0) == 1.0
        assert math.isclose(f(1), 0.1)


def test_a_schedule_step_inside_the_first_epoch_of_an_epoch_sized_run_is_warned(tmp_path):
    """`train.epochs=10 train.lr_decay_start=5` decays from step 5 (of 40 here): the reference
    CycleGAN counts its decay in epochs, so the value was likely meant as epoch 5."""
    import warnings

    from edgegan.train.trainer import Trainer

    base = [*TINY_GAN, "train.epochs=10", "train.lr_schedule=linear"]  # 128 images: 8 a epoch
    with pytest.warns(UserWarning) as seen:
        Trainer(load_config("dcgan-mnist", [*base, "train.lr_decay_start=5"]), tmp_path / "a")
    said = [str(w.message) for w in seen if "lr_decay_start" in str(w.message)]
    assert said == [
        "train.lr_decay_start=5 falls in the first of 10 epochs (8 steps each): it counts "
        "steps, not epochs (after epoch 5: step 40)"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(load_config("dcgan-mnist", [*base, "train.lr_decay_start=40"]), tmp_path / "b")
        Trainer(load_config("dcgan-mnist", [*base, "train.lr_decay_start=0"]), tmp_path / "c")
        steps = ["train.steps=80", "train.lr_decay_start=5", "train.lr_schedule=linear"]
        Trainer(load_config("dcgan-mnist", [*TINY_GAN, *steps]), tmp_path / "d")  # in steps
        # 5 is more than the run's 3 epochs: it cannot have been meant as one
        short = [*TINY_GAN, "train.epochs=3", "train.lr_schedule=linear", "train.lr_decay_start=5"]
        Trainer(load_config("dcgan-mnist", short), tmp_path / "e")
