"""What training refuses of a config before it builds anything: ranges, contradictions with
its task, names of parts. Free of torch, so ``edgegan config show`` checks a config in a
fraction of a second (importing torch takes seconds).
"""

from __future__ import annotations

from dataclasses import asdict

from edgegan.config import COMPILE_MODES, GENERATOR_KINDS, TASK_CONTEXT, Config
from edgegan.errors import ConfigError
from edgegan.export.bundle import MAX_LATENT_DIM
from edgegan.plugins.manager import get_manager
from edgegan.train import schedule

#: Beyond this torch's thread pool cannot start (100,000 threads crashed the process).
MAX_THREADS = 1024
# the optimisers keep lr in float32; its largest finite value, written out: config show
# would import NumPy for it
FLOAT32_MAX = float.fromhex("0x1.fffffep+127")
#: ``train.compile``: off, or a torch.compile mode
TRAIN_COMPILE = ("off", *COMPILE_MODES)


def validate(config: Config) -> None:
    """Refuse a config whose values are out of range or contradict its task, one line each."""
    t, cyc = config.train, config.cycle
    checks = [
        (-(2**63) <= config.seed < 2**63, "seed must be in [-2**63, 2**63)"),
        (t.steps > 0, "train.steps must be > 0"),
        (t.batch_size > 0, "train.batch_size must be > 0"),
        (t.d_steps >= 1, "train.d_steps must be >= 1"),
        (t.r1_every >= 1, "train.r1_every must be >= 1"),
        (t.r1_gamma >= 0, "train.r1_gamma must be >= 0"),
        (0 <= t.ema_decay < 1, "train.ema_decay must be in [0, 1)"),
        (t.max_seconds is None or t.max_seconds > 0, "train.max_seconds must be > 0"),
        (t.sample_every >= 0 and t.checkpoint_every >= 0, "intervals must be >= 0 (0: off)"),
        (t.log_every > 0, "train.log_every must be > 0"),
        (
            0 < config.model.latent_dim <= MAX_LATENT_DIM,
            f"model.latent_dim must be in 1..{MAX_LATENT_DIM} (what a bundle holds)",
        ),
        (config.eval.every >= 0, "eval.every must be >= 0 (0: off)"),
        (config.eval.val_samples > 0, "eval.val_samples must be > 0"),
        (config.eval.num_samples > 0, "eval.num_samples must be > 0"),
        (t.keep_checkpoints >= 0, "train.keep_checkpoints must be >= 0 (0: last.pt alone)"),
        (config.eval.best_mode in ("min", "max"), "eval.best_mode must be min or max"),
        (
            "reference" not in config.eval.metric_params,
            "eval.metric_params.reference: the metric's reference is eval.reference",
        ),
        (
            not config.eval.best or config.eval.every > 0,
            "eval.best needs eval.every > 0 (the validation that scores each checkpoint)",
        ),
        (t.sample_grid > 0, "train.sample_grid must be > 0"),
        (
            t.threads is None or 0 < t.threads <= MAX_THREADS,
            f"train.threads must be in 1..{MAX_THREADS} (null: torch's default)",
        ),
        (t.num_workers >= 0, "train.num_workers must be >= 0"),
        (t.ema_start >= 0, "train.ema_start must be >= 0"),
        (cyc.pool_size >= 0, "cycle.pool_size must be >= 0 (0: no pool)"),
        (cyc.preview > 0, "cycle.preview must be > 0"),
        (cyc.lambda_cycle >= 0, "cycle.lambda_cycle must be >= 0"),
        (cyc.lambda_a is None or cyc.lambda_a >= 0, "cycle.lambda_a must be >= 0"),
        (cyc.lambda_b is None or cyc.lambda_b >= 0, "cycle.lambda_b must be >= 0"),
        (cyc.lambda_identity >= 0, "cycle.lambda_identity must be >= 0"),
        (config.pix2pix.lambda_l1 >= 0, "pix2pix.lambda_l1 must be >= 0"),
        (config.pix2pix.preview > 0, "pix2pix.preview must be > 0"),
    ]
    for name in ("g", "d"):
        o = getattr(config.optim, name)
        checks += [
            (0 < o.lr <= FLOAT32_MAX, f"optim.{name}.lr must be a finite number > 0"),
            (0 <= o.beta1 < 1 and 0 <= o.beta2 < 1, f"optim.{name}.beta1/beta2 must be in [0, 1)"),
            (o.weight_decay >= 0, f"optim.{name}.weight_decay must be >= 0"),
        ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if t.compile not in TRAIN_COMPILE:
        raise ConfigError(f"train.compile must be one of {', '.join(TRAIN_COMPILE)}")
    schedule.validate(t)
    _refuse_other_tasks_sections(config)
    if GENERATOR_KINDS.get(config.task) == "image-to-image":
        # the GAN task's discriminator settings: an image-to-image run ignored them in silence
        given = [
            (key, value, off)  # off: the value that leaves the setting off
            for key, value, off in (
                ("d_steps", t.d_steps, 1),
                ("r1_gamma", t.r1_gamma, 0),
                ("augment", t.augment.replace(",", " ").strip(), ""),  # "," is no policy
            )
            if value != off
        ]
        if config.eval.reference:
            raise ConfigError(
                f"eval.reference={config.eval.reference!r}: only task gan uses it; a "
                f"{config.task} run scores its test split's pairs (eval.json); remove it"
            )
        if given:
            unused = [
                f"train.{k}={v!r}" if isinstance(v, str) else f"train.{k}={v:g}"
                for k, v, _ in given
            ]
            it = "it" if len(unused) == 1 else "them"
            reset = " ".join(f"train.{k}={off}" for k, _, off in given)
            raise ConfigError(
                f"{', '.join(unused)}: only task gan uses {it}, a {config.task} run would "
                f"ignore {it}; remove {it}, or override {it} ({reset}: resuming a run that "
                f"set {it}); a {config.task}'s gradient penalty is loss.name=wgan-gp"
            )


#: The config sections of one built-in task each (a run of another ignores them).
_TASK_SECTIONS = {"cycle": "cyclegan", "pix2pix": "pix2pix"}


def _refuse_other_tasks_sections(config: Config) -> None:
    """``cycle.*`` on a gan or pix2pix run, ``pix2pix.*`` on a gan or cyclegan run: ignored in
    silence before (as the GAN task's train.r1_gamma on a cyclegan is refused below).

    Every run's config.yaml records these sections at their defaults: changing a default of
    CycleConfig or Pix2PixConfig would make this refuse to resume the older runs of the
    other tasks, so such a change must accept the old default here too."""
    if config.task not in ("gan", *_TASK_SECTIONS.values()):
        return  # a plugin's task: which sections it reads is its own affair
    for section, task in _TASK_SECTIONS.items():
        if task == config.task:
            continue
        value = getattr(config, section)
        current, default = asdict(value), asdict(type(value)())
        changed = [(k, v, default[k]) for k, v in current.items() if v != default[k]]
        if changed:
            given = ", ".join(f"{section}.{k}={v}" for k, v, _ in changed)
            reset = " ".join(f"{section}.{k}={'null' if d is None else d}" for k, _, d in changed)
            it = "it" if len(changed) == 1 else "them"
            raise ConfigError(
                f"{given}: only task {task} reads {section}.*, a {config.task} run would "
                f"ignore {it}; remove {it} (or override {it} to the default, {reset}, "
                f"resuming a run that set {it})"
            )


def check_config(config: Config) -> None:
    """What training refuses of a config before it builds anything (ranges, the task, the GAN
    task's metric), so ``edgegan config show`` can refuse it too."""
    validate(config)
    if config.task not in TASK_CONTEXT:  # a built-in's name needs no import of torch
        from edgegan.train.task import get_task

        get_task(config.task)  # a plugin's task, or the error naming the known ones
    ev = config.eval
    if config.task == "gan" and (ev.at_end or ev.every):
        get_manager().registry("metrics").get(ev.metric)
