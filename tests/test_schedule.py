"""Learning-rate schedules: the factor at each step, config checks, and a run that follows them."""

from __future__ import annotations

import json
import math

import pytest
from tiny import TINY_GAN

from edgegan.config import load_config
from edgegan.errors import ConfigError
from edgegan.train import train
from edgegan.train.schedule import lr_factor


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
    ],
)
def test_bad_schedule_settings_are_clear_errors(tmp_path, override, message):
    config = load_config("dcgan-mnist", [*TINY_GAN, override])
    with pytest.raises(ConfigError, match=message):
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
