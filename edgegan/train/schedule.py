"""Learning-rate schedules: a factor of the configured rate for each generator step.

``constant``; ``linear`` (the CycleGAN schedule: constant, then linear decay to zero from
``train.lr_decay_start``, by default half-way); ``cosine`` (half a cosine from 1 to 0 over the
run); ``step`` (times ``train.lr_gamma`` every ``train.lr_step`` steps, by default a third of
the run). Factors depend on the step alone, so a resumed run continues its schedule exactly,
and a run resumed with a larger ``train.steps`` follows the schedule of its new length.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from edgegan.errors import ConfigError

SCHEDULES = ("constant", "linear", "cosine", "step")


def validate(train: Any) -> None:
    if train.lr_schedule not in SCHEDULES:
        raise ConfigError(f"train.lr_schedule must be one of {', '.join(SCHEDULES)}")
    if train.epochs is not None and not (train.epochs > 0 and math.isfinite(train.epochs)):
        raise ConfigError("train.epochs must be > 0 (null: train.steps sets the length)")
    if train.epochs is None:  # with epochs, steps come from the data (steps_for_epochs)
        check_decay_start(train)
    if train.lr_step is not None and train.lr_step <= 0:
        raise ConfigError("train.lr_step must be > 0")
    if not 0 < train.lr_gamma <= 1:
        raise ConfigError("train.lr_gamma must be in (0, 1]")


def check_decay_start(train: Any) -> None:
    if train.lr_decay_start is not None and not 0 <= train.lr_decay_start < train.steps:
        raise ConfigError(f"train.lr_decay_start must be in [0, train.steps={train.steps})")


def steps_for_epochs(train: Any, size: int, batches_per_step: int = 1) -> int:
    """Generator steps for ``train.epochs`` passes over ``size`` items: an epoch is
    ``size // batch_size`` whole batches (the last partial one is dropped, as the training
    stream drops it), and a step takes ``batches_per_step`` of them."""
    per_epoch = max(1, size // train.batch_size)
    return max(1, math.ceil(train.epochs * per_epoch / batches_per_step))


def step_keys_within_an_epoch(train: Any) -> list[str]:
    """The schedule settings given in steps that fall inside the first epoch of a run sized
    by ``train.epochs`` (``steps`` already set from it): likely meant as epochs (the
    reference CycleGAN counts its decay in epochs), e.g. ``train.lr_decay_start=100``."""
    if train.epochs is None or train.epochs <= 1:
        return []
    per_epoch = train.steps / train.epochs
    return [
        f"train.{key}={value} falls in the first of {train.epochs:g} epochs ({per_epoch:.4g} "
        f"steps each): it counts steps, not epochs (after epoch {value}: step "
        f"{round(value * per_epoch)})"
        for key in ("lr_decay_start", "lr_step")
        # a value above the run's epochs cannot have been meant as one
        if (value := getattr(train, key)) and value < per_epoch and value <= train.epochs
    ]


def lr_factor(train: Any) -> Callable[[int], float]:
    """The factor of the base learning rate at each step, for ``train`` (a TrainConfig)."""
    total, schedule = train.steps, train.lr_schedule
    if schedule == "constant":
        return lambda step: 1.0
    if schedule == "linear":
        start = total // 2 if train.lr_decay_start is None else train.lr_decay_start
        return lambda step: 1.0 if step < start else max(0.0, (total - step) / (total - start))
    if schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    every = train.lr_step or max(1, total // 3)
    return lambda step: train.lr_gamma ** (step // every)
