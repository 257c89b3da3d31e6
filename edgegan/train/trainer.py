"""The training loop: devices, AMP, EMA, checkpoints, samples, metrics, signals, budgets.

Everything task-specific lives in the task (:mod:`edgegan.train.gan`); the trainer drives any
task generically through its declared networks and optimisers.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from edgegan import __version__, contracts
from edgegan.config import (
    Config,
    changed_parts,
    config_from_dict,
    load_config,
    load_run_config,
    part_provenance,
    with_provenance,
)
from edgegan.data.files import DataWarning
from edgegan.errors import (
    CallbackError,
    ConfigError,
    DataError,
    EdgeganError,
    PluginError,
    RunFinished,
    TrainingDiverged,
    caller_stacklevel,
    did_you_mean,
    exception_line,
    scheduler_signals,
    stop_signals,
    stops_commands,
    take_signal,
)
from edgegan.fileio import atomic_write, remove_dead_temps, remove_empty_dirs, write_json
from edgegan.float32 import float32_default
from edgegan.plugins.manager import get_manager
from edgegan.reference import IMPORTED
from edgegan.registry import StaleDefaultWarning
from edgegan.rng import random_state_kept, seed_all
from edgegan.train import checkpoint as ckpt_io
from edgegan.train import distributed, fastpath, schedule
from edgegan.train.checks import validate
from edgegan.train.device import Precision, resolve_device
from edgegan.train.ema import EMA
from edgegan.train.logs import (
    BEST_CHECKPOINT,
    CHECKPOINT,
    CLAIM,
    RUN_FILES,
    MetricsLog,
    ProgressBar,
    RunLock,
    new_run_dir,
    release_run_dir,
    stderr_line,
)
from edgegan.train.stream import BatchStream
from edgegan.train.task import Task, best_score_name, get_task


@dataclass
class TrainResult:
    """What a finished (or stopped) run leaves behind (absolute paths)."""

    run_dir: Path
    step: int
    seconds: float  # training seconds of the run, all its sessions (resumes) together
    stopped_by: str  # "steps" | "max_seconds" | "signal"
    checkpoint: Path
    eval: dict[str, float] = field(default_factory=dict)
    #: the signal that stopped the run ("SIGINT", "SIGTERM", ...; None when none did); under
    #: torchrun every process returns process 0's result: None when the signal reached
    #: another process alone. With ``stopped_by == "steps"``: one that came after the last
    #: step and stopped or skipped the final evaluation (``eval`` is empty)
    signal: str | None = None
    #: the training seconds of this session alone (``train.max_seconds`` budgets these):
    #: ``seconds`` less what the run trained before it was resumed
    session_seconds: float = 0.0


#: The methods a callback may have (README, "The interface of each kind").
CALLBACK_HOOKS = ("on_train_start", "on_step_end", "on_checkpoint", "on_validation", "on_train_end")


def _to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it moved to the CPU (to gather it between processes)."""
    if torch.is_tensor(obj):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


class CollapseWarning(UserWarning):
    """A run's sample grid is one flat colour, or its samples are all the same image."""


T = TypeVar("T")


class _Abandoned(BaseException):
    """A stop signal came during work that is no part of the training state (a validation,
    a sample grid): it is dropped, and the run saves and stops at once. A validation of
    tens of seconds ran on after a SIGTERM, past a scheduler's grace period (Slurm kills
    after 30 s; so does torchrun), and the run was killed with nothing saved. Not an
    Exception, as KeyboardInterrupt is not: an image reader's ``except Exception`` took it
    for an unreadable file."""


_UNSET: Any = object()


# Spread (max - min, in [-1, 1]) below which a grid or a pixel across samples counts as
# frozen: a diverged run's tanh saturates to exactly one value, while untrained generators,
# tiny test ones included (0.005 across samples), differ by more.
_FROZEN = 1e-3


def collapse(images: torch.Tensor) -> str | None:
    """What makes a preview grid ``(N, C, H, W)`` in [-1, 1] the mark of a collapsed
    generator, or None: every pixel the same value (a diverged run: flat black), or every
    sample the same image (to within ``_FROZEN``)."""
    images = images.float()
    if float(images.max() - images.min()) < _FROZEN:
        return f"are one flat colour (every pixel {float(images.mean()):.2f})"
    if len(images) > 1 and float((images.amax(0) - images.amin(0)).max()) < _FROZEN:
        return f"are {len(images)} copies of one image"
    return None


#: The settings the fixed preview inputs are drawn for: changed on resume, they are drawn anew.
_PREVIEW_KEYS = (("train", "sample_grid"), ("cycle", "preview"), ("pix2pix", "preview"))


def _rate(value: float) -> str:
    """``0.214``, ``12.3``, ``5000``: three figures for a slow run (not ``0``), whole numbers
    for a fast one (not ``5e+03``)."""
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _some(names: list[str], most: int = 6) -> str:
    """``'a', 'b', ... (12)``: a list of class names short enough for one line."""
    shown = ", ".join(repr(n) for n in names[:most])
    return f"{shown}, ... ({len(names)})" if len(names) > most else shown


#: The built-in scores' better direction, by the last part of their name (``ab_psnr``).
_BETTER = {
    **dict.fromkeys(("fd", "fid", "kid", "l1"), "min"),
    **dict.fromkeys(
        ("psnr", "ssim", "accuracy", "confidence", "coverage", "precision", "recall", "density",
         "is"),
        "max",
    ),
}  # fmt: skip


def _misspelt_hooks(callback: Any) -> list[str]:
    """The ``on_*`` methods of ``callback`` that look like a misspelt hook (close to one of
    :data:`CALLBACK_HOOKS`); its other methods (``on_new_best``, helpers) are its own."""
    out = []
    for name in dir(callback):
        if not name.startswith("on_") or name in CALLBACK_HOOKS:
            continue
        if did_you_mean(name, CALLBACK_HOOKS):
            try:
                if callable(getattr(callback, name)):
                    out.append(name)
            except Exception:  # a property that raises: not a method anyway
                continue
    return out


def _warn_best_mode(ev: Any) -> None:
    """``eval.best=ab_psnr`` under the default ``best_mode=min`` kept the worst checkpoint as
    ``best.pt`` without a word."""
    name = best_score_name(ev.best)
    better = _BETTER.get(name.rsplit("_", 1)[-1]) if name else None
    if better is not None and better != ev.best_mode:
        what = "higher" if better == "max" else "lower"
        warnings.warn(
            f"eval.best={ev.best} with eval.best_mode={ev.best_mode} keeps the checkpoint of "
            f"the {'lowest' if ev.best_mode == 'min' else 'highest'} val_{name}, where {what} "
            f"is better: set eval.best_mode={better}",
            stacklevel=caller_stacklevel(),
        )


class Trainer:
    """Builds a run from a :class:`Config` and trains it; see :func:`train`."""

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        resume: bool = False,
        dist: distributed.Distributed | None = None,
    ) -> None:
        validate(config)
        # A copy: training fills in steps (from train.epochs) and the networks' parameters
        config = copy.deepcopy(config)
        _absolute_root(config)
        self.config, self.run_dir, self.resuming = config, Path(run_dir), resume
        self._config_pending = False  # config.yaml waits for a resumed run's first checkpoint
        t = config.train
        # Under torchrun (see train()): this process's rank and device, cuda:LOCAL_RANK.
        self.dist = dist or distributed.Distributed()
        if self.dist.is_main:  # once a run, not once a rank
            _warn_best_mode(config.eval)
            if not resume and not 0 <= config.seed < 2**32:
                warnings.warn(
                    f"seed={config.seed} draws torch's and NumPy's numbers as seed="
                    f"{config.seed % 2**32} does (they keep a seed's low 32 bits): use a seed "
                    "in [0, 2**32) to keep runs apart",
                    stacklevel=caller_stacklevel(),
                )
        self.device = self.dist.device if self.dist.enabled else resolve_device(t.device)
        if t.threads:
            torch.set_num_threads(t.threads)
        fastpath.set_backends(t, self.device)
        # Every RNG a run draws from (torch: noise, dropout; Python: image pools, unpaired
        # pairing, crops; NumPy: third-party datasets) starts from the config's seed.
        seed_all(config.seed)
        self.precision = Precision(t.amp, self.device)
        manager = get_manager()
        self.parts = part_provenance(config)
        self.dataset = manager.registry("datasets").build(
            config.data.name, config.data.params, {"split": "train"}
        )
        data_entry = manager.registry("datasets").get(config.data.name)
        for attr in ("image_shape", "__len__", "__getitem__"):
            if not hasattr(self.dataset, attr):
                raise PluginError(
                    f"{data_entry.label}{data_entry.origin} does not provide '{attr}' (see "
                    "'The interface of each kind' in the README)"
                )
        task_class = get_task(config.task)
        if t.epochs is not None:
            t.steps = schedule.steps_for_epochs(
                t, len(self.dataset), task_class.batches_per_step(config)
            )
            t.epochs = float(t.epochs)
            schedule.check_decay_start(t)
            early = schedule.step_keys_within_an_epoch(t)
            if early and not resume and self.dist.is_main:  # said once, when the run starts
                warnings.warn("; ".join(early), stacklevel=caller_stacklevel())
        self.task: Task = task_class(config, self.dataset, self.device, self.precision)
        self.dist.seed(config.seed)  # noise and augmentation: seed + rank (no-op in one process)
        self.stream = BatchStream(
            self.dataset,
            t.batch_size,
            config.seed,
            self.device,
            num_workers=t.num_workers,
            memory_format=fastpath.memory_format(t),
            pin_memory=t.pin_memory,
            resident=t.resident_data,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            num_classes=int(getattr(self.task, "num_classes", 0) or 0),
            # a plugin's dataset is named in the line of a batch it fails to give
            source=(
                f"{data_entry.label}{data_entry.origin}"
                if contracts.is_external(data_entry)
                else None
            ),
        )
        source = self._init_weights(t.init_from) if t.init_from and not resume else None
        sampled = self.task.module(self.task.sample_network)
        # The EMA copy is taken before compiling: it runs in eval mode, uncompiled.
        self.ema = EMA(sampled, t.ema_decay, t.ema_start) if t.ema else None
        if self.ema and source is not None and source.get("ema") is not None:
            self.ema.shadow.load_state_dict(source["ema"])  # the source's sampled weights
        # Buffers built non-finite (a plugin's -inf attention mask) are not divergence.
        self._nonfinite_buffers = {
            (tag, name)
            for tag, m in self._checked_modules()
            for name, b in m.named_buffers()
            if b.is_floating_point() and b.numel() and not bool(torch.isfinite(b).all())
        }
        fastpath.compile_networks({n: self.task.module(n) for n in self.task.networks}, t)
        self.schedulers = {
            name: torch.optim.lr_scheduler.LambdaLR(opt, schedule.lr_factor(t))
            for name, opt in self.task.optims.items()
        }
        callbacks = manager.registry("callbacks")
        #: the callback objects, and the registry entry of each (for error messages)
        self.callbacks: list[Any] = []
        self._callback_entries: list[Any] = []
        for c in self._callback_configs():
            callback = callbacks.build(c.name, c.params, {"run_dir": self.run_dir})
            entry = callbacks.get(c.name)
            # a misspelt hook (on_step) is otherwise never called, and nothing says so
            if not any(callable(getattr(callback, hook, None)) for hook in CALLBACK_HOOKS):
                warnings.warn(
                    f"callback '{c.name}'{entry.origin} has none of {', '.join(CALLBACK_HOOKS)}: "
                    "it is never called",
                    stacklevel=caller_stacklevel(),
                )
            else:  # beside hooks that are called, one misspelt would be left out in silence
                for name in _misspelt_hooks(callback):
                    warnings.warn(
                        f"callback '{c.name}'{entry.origin} has {name}, which edgegan never "
                        f"calls{did_you_mean(name, CALLBACK_HOOKS)}",
                        stacklevel=caller_stacklevel(),
                    )
            self.callbacks.append(callback)
            self._callback_entries.append(entry)
        self.fixed = self.task.fixed_inputs(config.train.sample_grid, config.seed + 12345)
        self.step = 0
        self.elapsed = 0.0  # training seconds before this process (resumed runs)
        self._stop: str | None = None
        self._abandonable_now = False  # doing work that a stop signal drops (_Abandoned)
        self._final_grid = False  # samples/final.png drawn in this session
        self.signal_name: str | None = None  # of the signal that stopped the run
        self.last_checkpoint: tuple[Path, int] | None = None
        self._collapse_warned = False
        self._snapshot_warned = False
        #: eval.best's best score so far: {"metric", "mode", "value", "step"} (empty: none)
        self.best: dict[str, Any] = {}
        self._best_missing_warned = False

    def _notify(self, hook: str, *args: Any) -> None:
        """Call ``hook(trainer, *args)`` on each callback that has it. A callback that raises
        stops the run with one line naming it and its plugin (EDGEGAN_DEBUG=1 shows the
        traceback); ``fit`` first saves the steps trained since the last checkpoint."""
        for entry, cb in zip(self._callback_entries, self.callbacks, strict=True):
            fn = getattr(cb, hook, None)
            if fn is None:
                continue
            try:
                fn(self, *args)
            except Exception as exc:
                raise CallbackError(
                    f"callback '{entry.name}'{entry.origin} failed in {hook} at step "
                    f"{self.step}: {exception_line(exc)}"
                ) from exc

    def _callback_configs(self) -> list[Any]:
        from edgegan.config import PartConfig

        if not self.dist.is_main:
            return []  # callbacks run on rank 0, beside the run directory it writes
        configs = list(self.config.callbacks)
        if self.config.train.tensorboard and not any(c.name == "tensorboard" for c in configs):
            configs.append(PartConfig("tensorboard"))
        return configs

    # -- sampling ----------------------------------------------------------------------------
    def sampler_module(self) -> torch.nn.Module:
        return self.ema.shadow if self.ema else self.task.module(self.task.sample_network)

    @torch.no_grad()
    def sample(self, *inputs: torch.Tensor | None, module: torch.nn.Module | None = None):
        """Run ``module`` (default: the EMA or trained sampled network) in eval mode on
        ``inputs``; returns CPU float images clipped to [-1, 1]."""
        net = module if module is not None else self.sampler_module()
        was_training = net.training
        net.eval()
        try:
            out = fastpath.eager(net)(*[None if x is None else x.to(self.device) for x in inputs])
        finally:
            net.train(was_training)
        return out.float().clamp(-1, 1).cpu()

    def save_samples(self, name: str) -> Path:
        from edgegan.data.transforms import make_grid, save_png

        images, nrow = self.task.preview(self, self.fixed)
        path = self.run_dir / "samples" / f"{name}.png"
        save_png(make_grid(images, nrow=nrow), path)
        if not self._collapse_warned and self.step > 0:
            problem = collapse(images)
            if problem:
                self._collapse_warned = True  # once a run: later grids say the same
                warnings.warn(
                    f"the samples at step {self.step} ({path.name}) {problem}: the training has "
                    "likely collapsed (learning rates too high? see samples/ and the losses)",
                    CollapseWarning,
                    stacklevel=caller_stacklevel(),
                )
        return path

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": ckpt_io.FORMAT_VERSION,
            "edgegan_version": __version__,
            "task": self.config.task,
            "step": self.step,
            "elapsed": self.elapsed + self._session_seconds(),
            "config": self.config.to_dict(),
            "spec": self.task.generator_spec(),
            "parts": self.parts,  # which plugin gave each part (infer/export/resume hints)
            **self.task.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "scalers": self.precision.state_dict(),
            "data": self.stream.state_dict(),
            "fixed": self.fixed,
            "rng": ckpt_io.rng_state(),
            "threads": torch.get_num_threads(),  # the CPU's arithmetic depends on it
            # as resolved (train.layout_norm null follows compile, layout and device)
            "layout_norm": fastpath.layout_norm(self.config.train, self.device),
            "best": dict(self.best) if self.best else None,  # eval.best's score and step
        }

    def save_checkpoint(self) -> Path:
        """Write the checkpoint (rank 0; every rank must call this, at the same step). Weights
        that are no longer finite are never written: the last good checkpoint stays."""
        path = self.run_dir / CHECKPOINT
        self._check_weights_finite()
        rng_ranks = self.dist.gather(ckpt_io.rng_state())  # each rank's noise stream
        # Each rank's task state (a CycleGAN's image pools hold that rank's fakes).
        extra_ranks = (
            self.dist.gather(_to_cpu(self.task.extra_state())) if self.dist.enabled else None
        )
        if self.dist.is_main:
            state = self.state_dict()
            if self.dist.enabled:
                state["rng_ranks"] = rng_ranks
                state["extra_ranks"] = extra_ranks
            ckpt_io.atomic_save(state, path)
            if self._config_pending:
                self._write_config()
            if self.config.train.keep_checkpoints:
                self._keep_snapshot(path)
        self.last_checkpoint = (path, self.step)
        self._notify("on_checkpoint", path)
        return path

    def _init_weights(self, init_from: str) -> dict[str, Any]:
        """Load the network weights of ``train.init_from`` (a run directory: its last
        checkpoint; or a checkpoint file) into this run's networks; returns the checkpoint."""
        path = Path(init_from).expanduser()
        if path.is_dir():
            path = path / CHECKPOINT
        if not path.is_file():
            raise ConfigError(
                f"train.init_from={init_from}: no checkpoint there (a run directory or a .pt)"
            )
        state = ckpt_io.load_checkpoint(path, map_location="cpu")
        theirs = (state.get("spec") or {}).get("num_classes")
        ours = self.task.generator_spec().get("num_classes")
        if theirs is not None and ours is not None and theirs != ours:
            raise ConfigError(
                f"train.init_from={init_from} was trained on {theirs} classes, this run's data "
                f"has {ours}: its class embeddings cannot carry over (set model.conditional="
                "false in both, or fine-tune on data with the same classes)"
            )
        if state.get("task") != self.config.task:
            raise ConfigError(
                f"train.init_from={init_from} is a '{state.get('task')}' run; this run's task "
                f"is '{self.config.task}'"
            )
        # A run imported from the reference code may lack its discriminators (a pretrained
        # model is one generator): those start from scratch.
        fresh = [
            n for n in self.task.networks if state.get("imported") and n not in state["networks"]
        ]
        if fresh and self.dist.is_main:
            warnings.warn(
                f"train.init_from={init_from} has no weights for {', '.join(fresh)} (imported "
                "without them): they start from scratch",
                UserWarning,
                stacklevel=caller_stacklevel(),
            )
        try:
            for name in self.task.networks:
                if name not in fresh:
                    self.task.module(name).load_state_dict(state["networks"][name])
        except KeyError as exc:
            raise ckpt_io.lacks(path, exc, "used by train.init_from") from None
        except RuntimeError as exc:
            raise ConfigError(
                f"train.init_from={init_from}: its networks do not fit this config's "
                f"(model.* must match the run's): {ckpt_io.mismatch(exc)}"
            ) from None
        return state

    def _keep_snapshot(self, path: Path) -> None:
        """``train.keep_checkpoints``: :func:`edgegan.train.checkpoint.keep_snapshot`, its
        problems warned about once a run (every checkpoint would say them again)."""
        problems = ckpt_io.keep_snapshot(path, self.step, self.config.train.keep_checkpoints)
        if problems and not self._snapshot_warned:
            self._snapshot_warned = True
            warnings.warn(f"train.keep_checkpoints: {problems[0]}", stacklevel=caller_stacklevel())

    def _keep_best(self, scores: dict[str, float]) -> None:
        """Write ``checkpoints/best.pt`` when ``val_<eval.best>`` beats every earlier one."""
        ev = self.config.eval
        name = best_score_name(ev.best)
        value = scores.get(name)
        if value is None:
            if not self._best_missing_warned:
                self._best_missing_warned = True
                why = (
                    "an unpaired test split has no ground truth to score"
                    if self.config.task != "gan"
                    else f"eval.metric={ev.metric} has nothing to score on data "
                    f"'{self.config.data.name}'"
                )
                gives = (
                    f"gives no such score (it gives: {', '.join(scores)})"
                    if scores
                    else f"gives no scores ({why})"
                )
                warnings.warn(
                    f"eval.best={ev.best}: the validation {gives}; checkpoints/best.pt is not kept",
                    stacklevel=caller_stacklevel(),
                )
            return
        if not math.isfinite(value):
            return
        best = self.best.get("value") if self.best else None
        if best is not None and not (value < best if ev.best_mode == "min" else value > best):
            return
        if not self._weights_finite():  # rank 0 alone validates: the next checkpoint stops
            return
        previous = self.best
        self.best = {"metric": name, "mode": ev.best_mode, "value": value, "step": self.step}
        try:
            ckpt_io.atomic_save(self.state_dict(), self.run_dir / BEST_CHECKPOINT)
        except BaseException:
            self.best = previous  # the file holds the previous best still
            raise

    def _recorded_best(self) -> dict[str, Any]:
        """The score ``checkpoints/best.pt`` was kept for, which a resumed run must beat (the
        record in ``last.pt`` can be older: validations between checkpoints write best.pt
        alone). A best.pt of another score or mode is refused, not replaced."""
        path = self.run_dir / BEST_CHECKPOINT
        ev = self.config.eval
        if not ev.best or not path.is_file():
            return {}
        record = ckpt_io.load_checkpoint(path, map_location="cpu").get("best") or {}
        was = (record.get("metric"), record.get("mode", "min"))
        if was != (best_score_name(ev.best), ev.best_mode):
            raise ConfigError(
                f"{path} holds the checkpoint of the best val_{was[0]} ({was[1]}, step "
                f"{record.get('step')}); eval.best={ev.best} eval.best_mode={ev.best_mode} "
                f"would replace it: move it aside, or resume with eval.best={was[0]} "
                f"eval.best_mode={was[1]}"
            )
        return dict(record)

    def _write_config(self) -> None:
        text = self.config.to_yaml().encode("utf-8")
        atomic_write(self.run_dir / "config.yaml", lambda f: f.write(text))
        self._config_pending = False

    def load_checkpoint(self, path: Path) -> None:
        # Load on the CPU: load_state_dict moves weights and optimiser state to their devices.
        state = ckpt_io.load_checkpoint(path, map_location="cpu")
        try:
            self._restore(path, state)
        except KeyError as exc:
            raise ckpt_io.lacks(path, exc, "resumed") from None

    def _restore(self, path: Path, state: dict[str, Any]) -> None:
        if state.get("task") != self.config.task:
            raise EdgeganError(
                f"{path} holds a '{state.get('task')}' run, not '{self.config.task}'"
            )
        self._check_classes(path, state)
        try:
            self.task.load_state_dict(state)
            if self.ema:
                if state.get("ema") is None:
                    raise EdgeganError(f"{path} has no EMA weights; resume with train.ema=false")
                self.ema.load_state_dict(state["ema"])
        except RuntimeError as exc:
            raise EdgeganError(
                f"the checkpoint does not fit the configured networks (was the model config "
                f"changed?): {ckpt_io.mismatch(exc)}"
            ) from None
        saved_seed = (state.get("config") or {}).get("seed", self.config.seed)
        if saved_seed != self.config.seed:
            raise ConfigError(
                f"seed={self.config.seed} cannot apply to a resumed run: its random streams "
                f"continue from the checkpoint (the run's seed is {saved_seed})"
            )
        for n, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][n])
            # The optimiser settings are this config's (a resume may change optim.*.lr), and
            # the learning rate of the next step follows its schedule, so a run resumed with a
            # larger train.steps decays over its new length.
            cfg = getattr(self.config.optim, self.task.optimizers[n][1])
            s.base_lrs = [cfg.lr] * len(s.optimizer.param_groups)
            factor = schedule.lr_factor(self.config.train)
            for group in s.optimizer.param_groups:
                group["initial_lr"] = cfg.lr
                group["lr"] = cfg.lr * factor(int(state["step"]))
                group["betas"] = (cfg.beta1, cfg.beta2)
                group["weight_decay"] = cfg.weight_decay
        self.precision.load_state_dict(state.get("scalers", {}))
        self.stream.load_state_dict(state["data"])
        if self.dist.is_main:
            self._warn_if_not_exact(state)
        saved = state.get("config") or {}
        previews = [(saved.get(s) or {}).get(k) for s, k in _PREVIEW_KEYS]
        if previews == [getattr(getattr(self.config, s), k) for s, k in _PREVIEW_KEYS]:
            self.fixed = state["fixed"]  # else the new sizes' inputs, drawn in __init__
        self.step = int(state["step"])
        self.elapsed = float(state.get("elapsed", 0.0))
        self.best = self._recorded_best()
        self.dist.restore_rng(state, self.config.seed)
        extra_ranks = state.get("extra_ranks")
        if self.dist.enabled and extra_ranks and len(extra_ranks) == self.dist.world_size:
            self.task.load_extra_state(extra_ranks[self.dist.rank])  # else rank 0's, loaded above
        self.last_checkpoint = (path, self.step)

    def discard_unstarted(self, lock: RunLock) -> None:
        """Take back what a new run wrote when it failed before its first step was done (a
        compile failure, an out-of-memory first step): its config and empty log could be
        neither resumed nor trained into again. The files go while the run's ``lock`` is
        still held (no other process may be writing there then); the lock is released
        before the empty folders go, the run's own among them."""
        try:
            for name in RUN_FILES:
                # best effort: the run's own error is the one to report, not this
                with contextlib.suppress(OSError):
                    (self.run_dir / name).unlink(missing_ok=True)
        finally:
            lock.release()
        made = [Path(p) for p in getattr(self, "_made", [])]
        remove_empty_dirs([self.run_dir / "checkpoints", self.run_dir / "samples", *made])

    def _data_line(self) -> str:
        """What the run trains on, said at its start: a class folder taken for a split, a
        folder without labels or a limit that left a class out shows here first."""
        ds, data = self.dataset, self.config.data
        if self.config.task != "gan":  # an item is a pair, its domains' shapes the task's
            return f"data: {data.name}, {len(ds)} items an epoch"
        shape = getattr(ds, "image_shape", None)
        size = f" {'x'.join(str(int(v)) for v in shape)}" if shape else ""
        line = f"data: {data.name}, {len(ds)} images{size}"
        names = [str(c) for c in getattr(ds, "class_names", None) or []]
        classes = int(getattr(self.task, "num_classes", 0))
        if classes:
            shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            return f"{line}, {classes} classes" + (f" ({shown})" if names else "")
        if self.config.model.conditional:
            return f"{line}, unlabelled: an unconditional GAN (model.conditional has no classes)"
        return f"{line}, unconditional (model.conditional=false)"

    def _check_classes(self, path: Path, state: dict[str, Any]) -> None:
        """A conditional run resumed on data whose classes changed (a class folder renamed,
        added or removed) would give its labels to other classes, or not fit its class
        embeddings (a size-mismatch error that blamed the model config)."""
        saved, spec = state.get("spec") or {}, self.task.generator_spec()
        if not saved.get("num_classes") or "class_names" not in spec:
            return
        was, now = list(saved.get("class_names") or []), list(spec["class_names"])
        same_count = int(saved["num_classes"]) == int(spec.get("num_classes", 0))
        if (same_count and (not was or not now or was == now)) or (was and was == now):
            return  # the same classes (a changed model.conditional: the networks' error says)
        moved = None
        if was and now and len(was) == len(now):
            moved = next((i for i, (a, b) in enumerate(zip(was, now, strict=True)) if a != b), None)
        if moved is not None:
            how = f"label {moved} was '{was[moved]}' and would now be '{now[moved]}'"
        else:
            how = f"its class embeddings hold {saved['num_classes']}"
        raise DataError(
            f"{path} was trained on classes {_some(was) or saved['num_classes']}; its data now "
            f"has {_some(now) or spec.get('num_classes', 0)}: {how}. Put the data back as it "
            "was, or train a new run (train.init_from=RUN starts it from these weights when "
            "the class count is the same)"
        )

    def _warn_if_not_exact(self, state: dict[str, Any]) -> None:
        """Say when the resumed run cannot continue as the run would have: another CPU thread
        count sums in another order, DataLoader workers (``num_workers > 0``) reseed per
        batch where the main process draws from its own streams, another version of a
        plugin part may have other defaults, and another Adam kernel or instance-norm
        formulation rounds otherwise."""
        t = self.config.train
        threads, now = state.get("threads"), torch.get_num_threads()
        # resumed on another process count, the noise is reseeded (its own warning says so),
        # and no thread count continues the run exactly: say nothing of threads then
        processes = len(state.get("rng_ranks") or [None])
        if (
            self.device.type == "cpu"
            and threads
            and threads != now
            and (processes == self.dist.world_size)
        ):
            warnings.warn(
                f"resumed with {now} CPU thread{'s' if now != 1 else ''}, the run trained with "
                f"{threads}: its weights "
                f"will differ in the last bits from a run never stopped (train.threads={threads} "
                "continues it exactly)",
                stacklevel=caller_stacklevel(),
            )
        changed = changed_parts(state.get("parts"), self.parts)
        if changed:  # only the networks' defaults are recorded: a loss's new ones apply
            nets = [c for c in changed if c.startswith(("generator ", "discriminator "))]
            after = []
            if nets:
                after.append("the networks keep the defaults the run recorded")
            if len(nets) < len(changed):
                others = "the other parts'" if nets else "their"
                after.append(
                    f"{others} parameters that the config leaves out take the new version's "
                    "defaults (set them in the config to keep the old)"
                )
            warnings.warn(
                f"resumed with other plugin versions than the run trained with: "
                f"{'; '.join(changed)}; {'; '.join(after)}",
                stacklevel=caller_stacklevel(),
            )
        groups = [
            g for o in (state.get("optimizers") or {}).values() for g in o.get("param_groups", [])
        ]
        was = any(bool(g.get("fused")) for g in groups)
        fused = any(bool(o.defaults.get("fused")) for o in self.task.optims.values())
        if groups and was != fused:
            warnings.warn(
                f"resumed with{'' if fused else 'out'} fused Adam, the run trained with"
                f"{'out' if fused else ''} it: its weights will differ in the last bits from a "
                f"run never stopped (train.fused_optim={str(was).lower()} continues it exactly)",
                stacklevel=caller_stacklevel(),
            )
        was_layout, layout = state.get("layout_norm"), fastpath.layout_norm(t, self.device)
        if was_layout is not None and bool(was_layout) != layout:
            warnings.warn(
                f"resumed with{'' if layout else 'out'} layout-keeping instance norms, the run "
                f"trained with{'out' if layout else ''} them (train.layout_norm null follows "
                "train.compile, train.channels_last and the device): its weights will differ "
                "in the last bits from a run never stopped "
                f"(train.layout_norm={str(bool(was_layout)).lower()} continues it exactly)",
                stacklevel=caller_stacklevel(),
            )
        planned = (state.get("config") or {}).get("train", {})
        switched = [
            f"train.{key}={_yaml_word(planned[key])} (now {_yaml_word(getattr(t, key))})"
            for key in _ARITHMETIC_SWITCHES
            if key in planned and planned[key] != getattr(t, key)
        ]
        if switched:
            warnings.warn(
                f"resumed with other fast-path settings than the run trained with; "
                f"{', '.join(switched)} continue{'s' if len(switched) == 1 else ''} it exactly: "
                "they change the arithmetic (merged calls also a spectral norm's power "
                "iterations), so its weights will differ from a run never stopped",
                stacklevel=caller_stacklevel(),
            )
        step, was = int(state["step"]), planned.get("steps")
        epoch_steps_changed = (
            t.epochs is not None
            and planned.get("epochs") == t.epochs
            and was not in (None, t.steps)
        )
        size, items = (state.get("data") or {}).get("size"), len(self.dataset)  # type: ignore[arg-type]
        if size is not None and size != items and not epoch_steps_changed:
            # (an epoch-sized run's step count changes with it, and its warning says why)
            gone = " (most of it is gone: is data.root right?)" if 2 * items < size else ""
            warnings.warn(
                f"the training data holds {items} items now, the run trained on {size}{gone}: "
                "its batches continue in another order than the run's would",
                stacklevel=caller_stacklevel(),
            )
        if epoch_steps_changed:
            if step < t.steps:  # else the run is refused as finished, which says enough
                why = self._epoch_steps_changed(planned)
                keep = f" (train.steps={was} keeps the run's plan)" if step < was else ""
                warnings.warn(
                    f"train.epochs={t.epochs:g} is {t.steps} steps now, the run planned {was} "
                    f"({why}): it trains to step {t.steps} and its learning-rate schedule "
                    f"follows the new count{keep}",
                    stacklevel=caller_stacklevel(),
                )
        saved = planned.get("num_workers")
        workers = self.config.train.num_workers
        if saved is not None and (saved > 0) != (workers > 0):
            warnings.warn(
                f"resumed with train.num_workers={workers}, the run trained with {saved}: its "
                f"data draws continue otherwise than a run never stopped "
                f"(train.num_workers={saved} continues it exactly)",
                stacklevel=caller_stacklevel(),
            )

    def _epoch_steps_changed(self, planned: dict[str, Any]) -> str:
        """Why ``train.epochs`` counts other steps than the checkpoint's config ``planned``:
        another batch size, batches a step (``train.d_steps`` of a gan), or dataset size."""
        t, task_class = self.config.train, type(self.task)
        why = []
        if planned.get("batch_size") not in (None, t.batch_size):
            why.append(f"train.batch_size {planned['batch_size']}, now {t.batch_size}")
        if planned.get("d_steps") not in (None, t.d_steps):
            before = copy.deepcopy(self.config)
            before.train.d_steps = planned["d_steps"]
            if task_class.batches_per_step(before) != task_class.batches_per_step(self.config):
                why.append(f"train.d_steps {planned['d_steps']}, now {t.d_steps}")
        return "; ".join(why) or f"the training data holds {len(self.dataset)} items now"

    # -- the loop ----------------------------------------------------------------------------
    def _session_seconds(self) -> float:
        return time.monotonic() - self._t0 if hasattr(self, "_t0") else 0.0

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, frame: Any) -> None:
            if self._stop == "signal":
                if signum in (signal.SIGINT, *_SIGBREAK):  # a second Ctrl-C: stop now
                    raise KeyboardInterrupt
                # A repeated SIGTERM or SIGHUP is no one's impatience: systemd signals every
                # process of a service, and torchrun passes its own on to each worker too.
                return
            self._stop = "signal"
            self.signal_name = signal.Signals(signum).name
            if self._abandonable_now:
                self._abandonable_now = False
                raise _Abandoned

        old: dict[int, Any] = {}
        # SIGBREAK: Ctrl-Break on Windows, where no process can send another SIGTERM;
        # SIGHUP: the terminal (an ssh session) gone; SIGUSR1/2: a scheduler's warning, when
        # the CLI took them (a program calling train() may have handlers of its own for them
        # that Python does not see: faulthandler.register's, which the default replaced)
        taken = [s for s in scheduler_signals() if stops_commands(signal.getsignal(s))]
        for sig in (signal.SIGINT, *_SIGBREAK, *stop_signals(scheduler=False), *taken):
            old[sig] = signal.signal(sig, handler)
        signum = take_signal()
        if signum is not None:  # the CLI's SIGTERM, swallowed while the run was built
            handler(signum, None)
        return old

    def _abandonable(self, work: Callable[[], T]) -> T | None:
        """``work()``, which a stop signal abandons (see :class:`_Abandoned`): its result,
        or None when a signal came before it or stopped it. What an abandoned block may
        have left changed (grad mode, networks left in eval mode) is put back."""
        nets = [m for m in vars(self.task).values() if isinstance(m, torch.nn.Module)]
        modes = [(m, m.training) for net in nets for m in net.modules()]
        grad = torch.is_grad_enabled()
        result = _UNSET
        self._abandonable_now = True  # (up first: a signal from here on abandons the work)
        try:
            try:
                if self._stop != "signal":
                    result = work()
            finally:  # (a signal here, before the flag is down, is caught below too)
                self._abandonable_now = False
        except _Abandoned:
            torch.set_grad_enabled(grad)
            for m, training in modes:
                m.training = training
        return None if result is _UNSET else result

    def _check_finite(self, values: dict[str, torch.Tensor]) -> None:
        problem = next(
            (f"{k} became {v.item()}" for k, v in values.items() if not torch.isfinite(v).all()),
            None,
        )
        self._diverged(problem)

    def _check_weights_finite(self) -> None:
        """Stop before a checkpoint would keep weights that are NaN or infinite: a step's
        update can make them so after its losses were checked (and on a GPU the losses are
        checked every few steps only). Buffers count too: BatchNorm's running statistics can
        overflow while the weights and losses stay finite, and eval-mode samples and exports
        divide by them (those built non-finite are left out)."""
        self._diverged(
            None
            if self._weights_finite()
            else "the weights or normalisation statistics became NaN or infinite"
        )

    def _checked_modules(self) -> list[tuple[str, torch.nn.Module]]:
        """The networks and the EMA copy, each with a tag, as the divergence check sees them."""
        modules = [(n, self.task.module(n)) for n in self.task.networks]
        return modules + ([("ema", self.ema.shadow)] if self.ema else [])

    def _weights_finite(self) -> bool:
        """Whether this process's weights and float buffers are all finite (no collective)."""
        tensors = [
            t.detach()
            for tag, m in self._checked_modules()
            for t in (
                *m.parameters(),
                *(b for n, b in m.named_buffers() if (tag, n) not in self._nonfinite_buffers),
            )
            if t.is_floating_point() and t.numel()
        ]
        if not tensors:
            return True
        norms = torch._foreach_norm(tensors, float("inf"))  # one kernel and one sync
        return bool(torch.stack([n.float() for n in norms]).isfinite().all())

    def _diverged(self, problem: str | None) -> None:
        # Agreed over the ranks: all stop together, none waits in a collective.
        problem = self.dist.first_problem(problem)
        if problem is None:
            return
        where = (
            f"the last good checkpoint is {self.last_checkpoint[0]} "
            f"(step {self.last_checkpoint[1]})"
            if self.last_checkpoint
            else "no checkpoint had been written yet"
        )
        raise self.dist.agreed(
            TrainingDiverged(
                f"{problem} at step {self.step}: training stopped; {where}. "
                "Try a lower learning rate, another loss or train.amp=off"
            )
        )

    def _stop_reason(self, every: int) -> str | None:
        """``max_seconds`` or ``signal`` when the loop must stop after this step. Under
        torchrun the ranks agree (every ``every`` steps), so all stop at the same step."""
        t = self.config.train
        over = t.max_seconds is not None and self._session_seconds() >= t.max_seconds
        signalled = self._stop is not None
        if self.dist.enabled:
            if self.step % every:
                return None
            over, signalled = self.dist.any(over, signalled)
        return "max_seconds" if over else "signal" if signalled else None

    def train_step(self) -> dict[str, torch.Tensor]:
        """One step of the task, then the EMA and the learning-rate schedules; returns the
        task's scalars (on the device: reading them syncs)."""
        if self.config.train.compile == "reduce-overhead":
            fastpath.mark_step()
        values = self.task.train_step(self.stream, self.step)
        if self.ema:
            self.ema.update(self.task.module(self.task.sample_network), self.step)
        for s in self.schedulers.values():
            # A GradScaler skips an unfused optimiser's step when its gradients overflow
            # (often the first), and torch then warns at the scheduler's first step that the
            # schedule loses its first value. Ours are indexed by the trainer's step: nothing
            # is lost, so the step counts as taken (the flag torch's step wrapper sets; a
            # warnings filter around the step, catch_warnings, forgot the warnings already
            # shown, so a once-only warning came again).
            s.optimizer._opt_called = True  # type: ignore[attr-defined]
            s.step()
        self.step += 1
        return values

    def fit(self) -> TrainResult:
        t = self.config.train
        self.dist.wrap(self.task, t.sync_bn)  # DDP under torchrun (every rank, same order)
        main = self.dist.is_main  # rank 0 alone writes the run directory
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # A resumed run's config.yaml changes with its first checkpoint: a resume that
            # fails before one (a diverging lr, a callback) leaves the config that matches
            # the checkpoint, so the next --resume is not the failed one again.
            self._config_pending = self.resuming
            if not self.resuming:
                self._write_config()
            claim = self.run_dir / CLAIM
            try:  # the folders made for the run, to take back if it fails before a step
                self._made = claim.read_text("utf-8", "surrogateescape").splitlines()
            except OSError:
                self._made = []
            claim.unlink(missing_ok=True)  # the run's files now mark it
            for folder in (self.run_dir, self.run_dir / "checkpoints", self.run_dir / "samples"):
                remove_dead_temps(folder)  # a killed run's half-written files (under our lock)
        metrics = self.run_dir / "metrics.jsonl"
        log = MetricsLog(metrics, upto=self.step if self.resuming else None) if main else None
        bar = ProgressBar(t.steps, self.step, t.progress and main, f"train {self.config.task}")
        how = f"resuming at step {self.step}" if self.step else "training"
        bar.note(f"{how} into {self.run_dir} on {self.device}")
        bar.note(self._data_line())
        if t.max_seconds is not None:
            # The default preset's safety net applies to runs made longer from it too: say so
            # before the user leaves it running for the night.
            bar.note(
                f"this session stops after {t.max_seconds:g} s (train.max_seconds; "
                f"train.max_seconds=null trains all {t.steps} steps)"
            )
        if t.epochs is not None:
            bar.note(
                f"train.epochs={t.epochs:g}: {t.steps} steps of batch {t.batch_size} "
                f"({len(self.dataset)} images an epoch)"
            )
        if t.compile != "off":
            # Compilation happens inside the first steps: say so before minutes of silence.
            bar.note(
                f"compiling the networks (train.compile={t.compile}): the first steps are slow"
            )
        old_handlers = self._install_signal_handlers()
        self._t0 = time.monotonic()
        # On the CPU a finiteness check is free; on a GPU it syncs, so check at log time.
        check_every = 1 if self.device.type == "cpu" else min(10, t.log_every)
        window: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}  # steps that gave each value (r1: only its own steps)
        window_steps, window_t0 = 0, time.monotonic()
        # seconds of the window spent on samples, validation and checkpoints: step_time and
        # images_per_sec are those of training steps (a checkpoint every 100 steps doubled them)
        window_aside = 0.0
        stopped_by = "steps"
        between_steps = False  # samples and validation: a failure there leaves the state whole

        def log_window() -> None:
            nonlocal window, counts, window_steps, window_t0, window_aside, between_steps
            window = self.dist.mean(window)  # over the ranks, at log time only
            self._check_finite(window)  # (on a GPU it waits for the window's steps)
            between_steps = True  # the step is whole and finite: a failure to log it keeps it
            seconds = time.monotonic() - window_t0 - window_aside
            record = self._log_record(window, counts, window_steps, seconds)
            if log is not None:
                log.write(record)
            self._notify("on_step_end", self.step, record)
            bar.update(self.step, f"g {record['g_loss']:.3f} d {record['d_loss']:.3f}")
            window, counts, window_steps, window_aside = {}, {}, 0, 0.0
            window_t0 = time.monotonic()  # the log and callbacks are not steps either

        try:
            self._notify("on_train_start")
            while self.step < t.steps:
                values = self.train_step()
                for k, v in values.items():
                    window[k] = window.get(k, 0.0) + v.float()
                    counts[k] = counts.get(k, 0) + 1
                window_steps += 1
                if self.step % check_every == 0 or self.step % t.log_every == 0:
                    self._check_finite(values)
                if self.step % t.log_every == 0 or self.step == t.steps:
                    log_window()  # (sets between_steps once the step's losses are finite)
                between_steps = True
                sample = main and t.sample_every and self.step % t.sample_every == 0
                val = main and self.config.eval.every and self.step % self.config.eval.every == 0
                keep = t.checkpoint_every and self.step % t.checkpoint_every == 0
                if sample or val or keep:
                    aside_t0 = self._steps_done_clock()
                if sample:
                    self._abandonable(lambda: self.save_samples(f"step_{self.step:07d}"))
                if val:
                    self.validate(log)
                between_steps = False
                if keep:
                    self.save_checkpoint()
                if sample or val or keep:
                    window_aside += time.monotonic() - aside_t0
                stop = self._stop_reason(check_every)
                if stop:
                    stopped_by = stop
                    break
            if window_steps:  # stopped early: the steps since the last record
                log_window()
                between_steps = False
            saved = self.last_checkpoint is not None and self.last_checkpoint[1] == self.step
            path = self.last_checkpoint[0] if saved else self.save_checkpoint()  # type: ignore[index]
            # stopped by a signal: not drawn (minutes on a CPU for a 256 px CycleGAN)
            if main and self._abandonable(lambda: self.save_samples("final")) is not None:
                self._final_grid = True
        except Exception as exc:
            # Keep the work when the failure came between steps (a callback, a sample PNG, a
            # metric), so the state is whole, or from the data (a file that fails only when
            # decoded, found hours in: a batch is read before the step updates anything; with
            # train.d_steps > 1 a later one may follow a D update, which the resumed run keeps).
            # (Under torchrun saving is a collective that the other ranks are not in: no save.)
            if not (between_steps or isinstance(exc, (CallbackError, DataError))):
                failed = _compile_failure(exc) if t.compile != "off" else None
                if failed:  # no C++ compiler (Windows, a Mac without Xcode's tools), no triton
                    raise ConfigError(failed) from exc
                raise
            saved = self.last_checkpoint is not None and self.last_checkpoint[1] == self.step
            if not self.dist.enabled and not saved and self.step > 0:
                self.callbacks, self._callback_entries = [], []  # no hooks from the failed one
                try:
                    kept = self.save_checkpoint()
                except Exception as save_error:  # a full disk fails both: report the first
                    bar.note(
                        f"the checkpoint at step {self.step} failed too: {save_error}",
                        always=True,
                    )
                else:
                    saved = True
                    if not isinstance(exc, CallbackError):  # its own line says this
                        bar.note(  # progress or not: where the work is, and how to go on
                            f"stopped by an error at step {self.step}: checkpoint saved to "
                            f"{kept}; once mended, continue with: "
                            f"{distributed.resume_command(self.run_dir)}",
                            always=True,
                        )
            if isinstance(exc, CallbackError) and saved:  # its one line says so, progress or not
                exc.args = (
                    f"{exc}; step {self.step} is saved: once mended, continue with: "
                    f"{distributed.resume_command(self.run_dir)}",
                )
            raise
        finally:
            self.stream.close()  # the DataLoader's workers, whatever ended the run
            bar.close()
            if log is not None:
                log.close()
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
        session = self._session_seconds()
        result = TrainResult(self.run_dir, self.step, self.elapsed + session, stopped_by, path)
        result.session_seconds = session
        if stopped_by == "signal":
            result.signal = self.signal_name
        late = self._late_signal(stopped_by)
        if late is not None:
            result.signal = self.signal_name
        if main:
            try:
                if stopped_by != "signal" and late != "stop":
                    try:
                        if late == "raise":
                            signal.raise_signal(signal.Signals[str(self.signal_name)])
                        result.eval = self.evaluate()
                    except EdgeganError as exc:
                        self.write_report(result)  # the training is whole: report it, then fail
                        exc.args = (
                            f"{exc}; the trained run is saved in {self.run_dir} (sample it with "
                            "edgegan infer, score the samples with edgegan eval)",
                            *exc.args[1:],
                        )
                        raise
                    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or the CLI's SIGTERM
                        self._evaluation_ended(result, "was interrupted")
                        raise
                    except Exception as exc:
                        if isinstance(exc, OSError):  # said below; the report, if it can be
                            with contextlib.suppress(OSError):
                                self.write_report(result)
                            raise
                        # a metric plugin's bug, a warning made an error (-W error): the
                        # training is whole all the same; report.md was missing
                        self._evaluation_ended(result, f"failed ({type(exc).__name__})")
                        raise
                try:
                    self._notify("on_train_end")
                except CallbackError as exc:  # after the run's last checkpoint: nothing is lost
                    self.write_report(result)
                    exc.args = (f"{exc}; {self._kept(stopped_by)}",)
                    raise
                self.write_report(result)
                if late == "stop":  # reported: now the signal ends the process, as it asked
                    signal.raise_signal(signal.Signals[str(self.signal_name)])
            except OSError:  # eval.json or report.md unwritable: the training itself is whole
                stderr_line(self._kept(stopped_by))
                raise
        # Every rank returns rank 0's result, once rank 0 has evaluated and reported.
        return self.dist.broadcast(result)

    def _evaluation_ended(self, result: TrainResult, how: str) -> None:
        """Report a run whose final evaluation ``how`` (was interrupted, failed ...): the
        training is whole, and where it is and how to score it is said."""
        self.write_report(result)
        stderr_line(
            f"the final evaluation {how}; the trained run is saved in {self.run_dir}: score it "
            f"with edgegan eval {self.run_dir}"
        )

    def _late_signal(self, stopped_by: str) -> str | None:
        """What to do with a signal the trainer caught after the last step, while the last
        checkpoint and samples were saved (it was dropped, and the final evaluation, minutes
        for an FID, ran on): ``"raise"`` it to the caller's handler, now restored, when that
        is Python's (Ctrl-C's KeyboardInterrupt, the CLI's SIGTERM): it stops the evaluation
        as one a moment later does; ``"stop"`` when it is the system's default, which would
        kill the process before its report: the evaluation is skipped, the report written,
        and then the signal given back (a SIGTERM ends the process, as it asked); None for no
        such signal, or one the caller ignores."""
        if self.signal_name is None or stopped_by == "signal" or not self.config.eval.at_end:
            return None
        handler = signal.getsignal(signal.Signals[self.signal_name])
        if callable(handler):
            return "raise"
        return "stop" if handler == signal.SIG_DFL else None

    def _steps_done_clock(self) -> float:
        """The time once the steps queued on a GPU have run (what follows then is not theirs)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.monotonic()

    def _kept(self, stopped_by: str) -> str:
        """Where a run's training is, said when something after its last checkpoint fails."""
        if stopped_by == "steps":
            return f"the trained run is saved in {self.run_dir}"
        return (
            f"step {self.step} is saved: continue with: {distributed.resume_command(self.run_dir)}"
        )

    def _log_record(
        self, window: dict[str, torch.Tensor], counts: dict[str, int], n: int, dt: float
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "step": self.step,
            "time": round(self.elapsed + self._session_seconds(), 3),
        }
        record.update({k: float(v) / counts[k] for k, v in window.items()})
        record["step_time"] = dt / n
        record["images_per_sec"] = n * self.config.train.batch_size / max(dt, 1e-9)
        for name, s in self.schedulers.items():
            record[f"lr_{name}"] = s.get_last_lr()[0]
        return record

    def validate(self, log: MetricsLog | None) -> dict[str, float]:
        """Score the current (EMA) networks on ``eval.val_samples`` fixed samples and log the
        scores as ``val_*`` (the same inputs every time, so the curve compares like with like).
        """
        t0 = time.monotonic()
        with random_state_kept():  # a validated run trains the weights an unvalidated one does
            n = self.config.eval.val_samples
            scores = self._abandonable(lambda: self.task.evaluate(self, num_samples=n))
        if scores is None:  # a stop signal came: the run stops now, unvalidated at this step
            return {}
        if scores:
            record = {"step": self.step, **{f"val_{k}": v for k, v in scores.items()}}
            record["val_seconds"] = round(time.monotonic() - t0, 3)
            if log is not None:
                log.write(record)
            self._notify("on_validation", self.step, record)
        if self.config.eval.best:
            self._keep_best(scores)
        return scores

    def evaluate(self) -> dict[str, float]:
        """Score the final network with the task's evaluation, when one applies; the scores
        also go to ``eval.json``."""
        if not self.config.eval.at_end:
            return {}
        scores = self.task.evaluate(self)
        if scores:
            write_json(self.run_dir / "eval.json", scores)
        return scores

    def write_report(self, result: TrainResult) -> None:
        images = result.step * self.config.train.batch_size
        # the name's bytes: UTF-8 whatever the locale decoded it to; others as \xff escapes
        name = os.fsencode(self.run_dir.name).decode("utf-8", "backslashreplace")
        lines = [
            f"# edgegan run: {name}",
            "",
            f"- task: {self.config.task}, preset: {self.config.preset or '-'}",
            f"- device: {self.device}, {fastpath.describe(self.config.train, self.device)}"
            + (f", {self.dist.describe()}" if self.dist.enabled else ""),
            f"- steps: {result.step} of {self.config.train.steps} (stopped by {result.stopped_by})",
            f"- training time: {result.seconds:.1f} s "
            f"({_rate(images / max(result.seconds, 1e-9))} images/s over the run)",
            f"- checkpoint: {result.checkpoint.relative_to(self.run_dir)}",
            "- samples: samples/final.png"
            if self._final_grid
            else f"- samples: samples/ (no final grid: stopped by {result.signal or 'a signal'})",
        ]
        if self.best:
            b = self.best
            lines.append(f"- best val_{b['metric']}: {b['value']:.4g} at step {b['step']} "
                         f"({BEST_CHECKPOINT})")  # fmt: skip
        if result.eval:
            lines.append("- eval: " + ", ".join(f"{k} {v:.4g}" for k, v in result.eval.items()))
        elif result.signal and result.stopped_by != "signal" and self.config.eval.at_end:
            lines.append(f"- eval: not done ({result.signal} after the last step)")
        text = ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace")
        atomic_write(self.run_dir / "report.md", lambda f: f.write(text))


def _absolute_root(config: Config) -> None:
    """A relative ``data.root`` (or ``eval.reference``) that names a folder or file from here
    is kept absolute in the run's config, so that resume, export's INT8 calibration and eval
    find it from any folder (a plain ``data.root=data`` worked only from where training
    started). A reference that is a digits spec (``mnist``, ``idx:...``) is left alone."""
    from edgegan.metrics.digits import is_digits_reference

    def absolute(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).is_absolute():
            path = Path(value).expanduser()
            if path.exists():
                return os.path.abspath(path)
        return value

    if "root" in config.data.params:
        config.data.params["root"] = absolute(config.data.params["root"])
    ref = config.eval.reference
    if ref and not is_digits_reference(ref):
        config.eval.reference = absolute(ref)


def train(
    config: Config | str | Path | dict[str, Any] | None = None,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
) -> TrainResult:
    """Train ``config`` into a new run directory, or continue the run in ``resume``.

    ``config`` is a :class:`Config` (``load_config(preset, overrides)``), a preset name or
    YAML path, or a mapping as ``Config.to_dict`` gives it; it is checked again here, so a
    field set to a value of the wrong type is one ConfigError.

    To resume, pass the run's own config, with any changes, as
    ``load_run_config(run, overrides)`` gives it, or no config at all (the run's as saved;
    a preset name or YAML path is refused there: its settings would replace the run's);
    a resumed run stays in its directory, so ``out_dir`` must be None or that directory.

    The run directory is claimed first (two runs started together never share one), and
    everything is built (and so validated) before anything is written there: a bad config
    leaves nothing behind. Under torchrun every process calls this: the processes
    start a process group, agree on the run directory (rank 0 picks it) and on every error
    before training, and train data-parallel (:mod:`edgegan.train.distributed`).

    Ctrl-C or SIGTERM during training saves a checkpoint and returns normally, with
    ``stopped_by == "signal"``: check it before using the result (a second Ctrl-C raises
    KeyboardInterrupt at once). The thread count and the global random generators (torch,
    NumPy, ``random``), which training sets from the config, are given back as they were.
    """
    if resume is not None:
        if out_dir is not None and Path(out_dir).resolve() != Path(resume).resolve():
            raise ConfigError(
                f"a resumed run continues in its own directory ({resume}); out_dir "
                f"{out_dir} cannot be given with resume"
            )
        if config is None:
            config = load_run_config(resume)
        elif isinstance(config, (str, Path)):  # a preset's settings would replace the run's
            raise ConfigError(
                f"a resumed run continues with its own config: pass no config, or "
                f"load_run_config({str(resume)!r}, overrides), not {str(config)!r}"
            )
    elif config is None:
        raise ConfigError("train() needs a config (load_config(...)) or a run to resume")
    if isinstance(config, (str, Path)):
        config = load_config(config)
    # Rebuilt from its plain form: the checks load_config makes apply to an edited Config.
    config = config_from_dict(config if isinstance(config, dict) else config.to_dict())
    # A notebook's torch.no_grad/inference_mode or float64 default would train nothing, or
    # train float64 weights in silence: training sets its own.
    with _process_state_kept(), float32_default(), torch.enable_grad():
        with torch.inference_mode(False):
            result = _train(config, out_dir, resume)
    # absolute: a program that changes its working folder later still finds the run
    return dataclasses.replace(
        result, run_dir=result.run_dir.absolute(), checkpoint=result.checkpoint.absolute()
    )


@contextlib.contextmanager
def _process_state_kept() -> Iterator[None]:
    """Give back the torch thread count, cuDNN's autotuner flag and the global random streams
    after training: a program that trains and then goes on should find its process as it
    left it."""
    threads = torch.get_num_threads()
    benchmark = torch.backends.cudnn.benchmark  # set for a CUDA run (fastpath.set_backends)
    try:
        with random_state_kept():
            yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = benchmark


@contextlib.contextmanager
def _shared_warnings_from_rank_zero(dist: distributed.Distributed) -> Iterator[None]:
    """Ranks > 0 drop the warnings every rank would give alike while the trainer is built
    (about the data folder and the config they all read), so a torchrun job shows each
    once, from rank 0. Warnings about one rank's own batches still come from that rank."""
    if dist.is_main:
        yield
        return
    with warnings.catch_warnings():
        for category in (DataWarning, StaleDefaultWarning):
            warnings.filterwarnings("ignore", category=category)
        yield


_SIGBREAK = (signal.SIGBREAK,) if hasattr(signal, "SIGBREAK") else ()

#: train settings that change a step's arithmetic, warned about when a resume changes them
#: (layout_norm, fused_optim and threads have warnings of their own)
_ARITHMETIC_SWITCHES = ("amp", "compile", "channels_last", "merge_calls")


def _yaml_word(value: Any) -> str:
    """``value`` as a config override writes it (``true``, ``null``, ``bf16``)."""
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _compile_failure(exc: BaseException) -> str | None:
    """The one line for a torch.compile failure (a 110-line traceback), or None."""
    from torch._dynamo.exc import TorchDynamoException

    if not isinstance(exc, TorchDynamoException):
        return None
    from edgegan.runtime.torch_runner import _cause

    return (
        f"torch.compile could not compile the networks ({_cause(exc)}); train with "
        "train.compile=off (on the CPU it needs a C++ compiler, on CUDA triton)"
    )


def _train(config: Config, out_dir: str | Path | None, resume: str | Path | None) -> TrainResult:
    with distributed.session(config) as dist:
        dist.same_config(config)
        if resume is None:
            run_dir = dist.agree(
                lambda: (
                    new_run_dir(out_dir, config.preset or config.task) if dist.is_main else None
                ),
                from_main=True,
            )
            assert run_dir is not None  # every rank has rank 0's
        else:
            run_dir = Path(resume)
        # Rank 0 holds the run's lock from before it is built until training ends.
        lock = RunLock(run_dir)
        trainer: Trainer | None = None
        unstarted = False  # a new run that failed before its first step: taken back
        try:
            if dist.is_main and run_dir.is_dir():
                dist.agree(lock.acquire)
            else:
                dist.agree(lambda: None)
            if resume is not None:
                with _shared_warnings_from_rank_zero(dist):
                    trainer = dist.agree(lambda: _resumed(config, run_dir, dist))
            else:
                try:
                    with _shared_warnings_from_rank_zero(dist):
                        trainer = dist.agree(lambda: Trainer(config, run_dir, dist=dist))
                except BaseException:
                    lock.release()
                    if dist.is_main:  # a bad config (or Ctrl-C while building) leaves nothing
                        release_run_dir(run_dir)
                    raise
            try:
                return trainer.fit()
            except BaseException:
                unstarted = resume is None and dist.is_main and trainer.step == 0
                unstarted = unstarted and trainer.last_checkpoint is None
                raise
        finally:
            if unstarted and trainer is not None:
                trainer.discard_unstarted(lock)  # which releases it
            else:
                lock.release()


def _resumed(config: Config, run_dir: Path, dist: distributed.Distributed) -> Trainer:
    """A trainer restored from the checkpoint in ``run_dir`` (every rank reads it)."""
    checkpoint = run_dir / CHECKPOINT
    if not checkpoint.is_file():
        if not run_dir.is_dir():
            raise EdgeganError(f"cannot resume {run_dir}: it does not exist")
        others = sorted(checkpoint.parent.glob("*.pt"))  # snapshots (keep_checkpoints), best
        if others:
            why = (
                f"it has {', '.join(p.name for p in others)}: copy the one to continue from "
                f"to {CHECKPOINT}"
            )
        elif (run_dir / "config.yaml").is_file():
            why = (
                "it stopped before its first checkpoint: nothing to resume; train it again "
                "into a new --out, or remove the folder"
            )
        else:
            why = "it holds no run"
        raise EdgeganError(f"cannot resume {run_dir}: no {CHECKPOINT} ({why})")
    if (run_dir / IMPORTED).is_file():
        raise ConfigError(
            f"{run_dir} was imported (edgegan import) and holds no optimiser state to resume; "
            f"fine-tune from it: edgegan train {run_dir}/config.yaml train.init_from={run_dir} "
            "--out NEW_RUN"
        )
    try:
        trainer = Trainer(config, run_dir, resume=True, dist=dist)
        trainer.load_checkpoint(checkpoint)
    except EdgeganError as exc:  # a plugin part gone or changed? say which the run used
        if isinstance(exc, PluginError):
            raise  # it names its plugin already
        raise with_provenance(exc, ckpt_io.load_checkpoint(checkpoint).get("parts")) from None
    t = trainer.config.train  # its steps come from train.epochs when that is set
    if trainer.step >= t.steps:
        longer = f"train.epochs above {t.epochs:g} or " if t.epochs is not None else ""
        raise RunFinished(
            f"{run_dir} is already at step {trainer.step}; set {longer}train.steps=N with "
            f"N > {trainer.step} to train further",
            trainer.step,
        )
    return trainer
