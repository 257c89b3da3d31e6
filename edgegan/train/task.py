"""The declarative base of training tasks (``gan``, ``cyclegan``, ``pix2pix``).

A task names its networks and optimisers; the trainer checkpoints, logs and schedules them
generically from those names, as the reference CycleGAN's BaseModel does, without a global
options object.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from edgegan.config import TASK_CONTEXT, Config, OptimConfig
from edgegan.errors import ConfigError, did_you_mean, unknown
from edgegan.nn.layers import keep_layout_norms
from edgegan.train import fastpath, merge
from edgegan.train.device import Precision
from edgegan.train.fastpath import make_adam, to_channels_last


def declared_scores(metric: Any) -> tuple[str, ...]:
    """The score names a metric declares in its ``scores`` attribute (a tuple, list or set of
    strings, or one string); ``()`` when it declares none, or something else under that name
    (a plugin's own ``scores`` method): then ``eval.best`` is checked at the first validation."""
    try:
        value = getattr(metric, "scores", None)
    except Exception:  # a property that fails: declares nothing
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (tuple, list, set, frozenset)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return ()


def best_score_name(best: str) -> str:
    """``eval.best``'s score as the validation names it (``val_fd`` as logged is ``fd``)."""
    return best.removeprefix("val_")


def check_best_score(best: str, scores: Iterable[str], source: str) -> None:
    """Refuse ``eval.best`` naming none of the ``scores`` that ``source`` (the metric, the
    task's validation) can give: misspelt, it was told at the first validation, an
    ``eval.every`` into the run, and no ``best.pt`` was kept."""
    name, names = best_score_name(best), sorted(set(scores))
    if best and name not in names:
        raise ConfigError(
            f"eval.best={best}: {source} gives no such score{did_you_mean(name, names)}; "
            f"it gives: {', '.join(names)}"
        )


class Task(ABC):
    """Base class: subclasses set the class attributes and implement :meth:`train_step`."""

    name: ClassVar[str]
    #: attribute names of the networks to build, train and checkpoint
    networks: ClassVar[tuple[str, ...]]
    #: optimiser name -> (networks it updates, the config.optim section it reads)
    optimizers: ClassVar[dict[str, tuple[tuple[str, ...], str]]]
    #: the network sampled and exported (its EMA copy when train.ema is on)
    sample_network: ClassVar[str]

    def __init__(self, config: Config, dataset: Any, device: torch.device, precision: Precision):
        self.config, self.dataset, self.device, self.precision = config, dataset, device, precision
        #: network name -> its DistributedDataParallel wrapper under torchrun (see train_module)
        self.ddp: dict[str, nn.Module] = {}
        self.build_networks()
        record_network_params(self.config)
        for name in self.networks:
            net = getattr(self, name).to(device).train()
            if config.train.channels_last:
                to_channels_last(net)
            if fastpath.layout_norm(config.train, device):
                keep_layout_norms(net)
        #: network name -> whether its calls on several batches run as one (train.merge_calls)
        self.merged = {
            n: config.train.merge_calls and merge.per_sample(getattr(self, n))
            for n in self.networks
        }
        self.optims: dict[str, torch.optim.Optimizer] = {
            opt: self._make_optimizer(nets, getattr(config.optim, section))
            for opt, (nets, section) in self.optimizers.items()
        }

    @classmethod
    def batches_per_step(cls, config: Config) -> int:
        """Batches of the training stream that one generator step takes (``train.epochs``
        counts steps with it)."""
        return 1

    @abstractmethod
    def build_networks(self) -> None:
        """Create the networks named in :attr:`networks` (and the loss) as attributes."""

    def _make_optimizer(self, nets: tuple[str, ...], cfg: OptimConfig) -> torch.optim.Optimizer:
        params = [p for n in nets for p in getattr(self, n).parameters()]
        return make_adam(params, cfg, self.device, self.config.train.fused_optim)

    @abstractmethod
    def train_step(self, batches: Any, step: int) -> dict[str, torch.Tensor]:
        """One generator update (and the discriminator updates that go with it); returns
        scalar tensors to log, ``g_loss`` and ``d_loss`` among them. ``batches.next()`` yields
        the next batch on the device."""

    def generator_spec(self) -> dict[str, Any]:
        """What sampling and export need to rebuild and drive the sampled network."""
        return {}

    def fixed_inputs(self, n: int, seed: int) -> dict[str, torch.Tensor]:
        """Inputs kept for the whole run (and checkpointed) to draw comparable previews."""
        return {}

    @abstractmethod
    def preview(self, trainer: Any, fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Images ``(N, C, H, W)`` in [-1, 1] for a sample grid, and its images per row."""

    def evaluate(self, trainer: Any, num_samples: int | None = None) -> dict[str, float]:
        """Scores of the networks on ``num_samples`` (default ``eval.num_samples``) samples:
        at the end (``eval.at_end``) and every ``eval.every`` steps; empty when none applies."""
        return {}

    # -- generic state ---------------------------------------------------------------------
    def module(self, name: str) -> nn.Module:
        """The plain network ``name`` (what EMA, samples, export and checkpoints see)."""
        return getattr(self, name)

    def train_module(self, name: str) -> nn.Module:
        """What :meth:`train_step` calls to *update* network ``name``: under torchrun its DDP
        wrapper (which averages the gradients over the processes), else the network itself.

        A network run with frozen weights (the discriminator inside the generator update) is
        called as :meth:`module`: no gradient reaches its weights, so there is nothing to
        average, and its wrapper would only arm a reduction that never runs and re-broadcast
        its buffers.
        """
        wrapper = self.ddp.get(name)
        return wrapper if wrapper is not None else getattr(self, name)

    def call(
        self,
        name: str,
        inputs: list[torch.Tensor],
        labels: list[torch.Tensor | None] | None = None,
    ) -> list[torch.Tensor]:
        """Network ``name`` (its :meth:`train_module`) on each batch of ``inputs``: one call
        on their concatenation when the network is per-sample (:mod:`edgegan.train.merge`)."""
        return merge.call(self.train_module(name), inputs, labels, self.merged[name])

    def state_dict(self) -> dict[str, Any]:
        return {
            "networks": {n: self.module(n).state_dict() for n in self.networks},
            "optimizers": {n: o.state_dict() for n, o in self.optims.items()},
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for n in self.networks:
            self.module(n).load_state_dict(state["networks"][n])
        for n, o in self.optims.items():
            o.load_state_dict(_with_kernel_of(o, state["optimizers"][n]))
        self.load_extra_state(state.get("extra", {}))

    def extra_state(self) -> dict[str, Any]:
        """Task-specific state to checkpoint (an image pool, say)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`extra_state` returned (nothing by default)."""


def record_network_params(config: Config) -> None:
    """Record every parameter of the generator and discriminator that the user left out, at
    the value the networks are built with, in the config that config.yaml and the
    checkpoints keep (``PartConfig.defaults``), so that a default changed later rebuilds the
    run alike. Only where the task's context names are known
    (:data:`~edgegan.config.TASK_CONTEXT`): those must stay out of the parameters."""
    from edgegan.plugins.manager import get_manager

    contexts = TASK_CONTEXT.get(config.task)
    if contexts is None:
        return
    models = get_manager().registry("models")
    for role in ("generator", "discriminator"):
        part = getattr(config.model, role)
        context = dict.fromkeys(contexts[role])
        part.defaults = models.recorded_defaults(
            part.name, part.params, context, role, part.defaults
        )


TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


def get_task(name: str) -> type[Task]:
    import edgegan.train.cyclegan  # noqa: F401  (registers the built-in tasks)
    import edgegan.train.gan  # noqa: F401
    import edgegan.train.pix2pix  # noqa: F401

    if name not in TASKS:
        raise unknown("task", name, TASKS)
    return TASKS[name]


#: An optimiser group's kernel choice, which the constructor made for this config and device.
_KERNEL_KEYS = ("fused", "foreach", "capturable")


def _with_kernel_of(optimizer: Any, saved: dict[str, Any]) -> dict[str, Any]:
    """``saved`` (an optimiser's state dict) with ``optimizer``'s kernel choice in its groups:
    load_state_dict brought the saved choice back (train.fused_optim given on --resume was
    ignored), and it places each parameter's step count by the saved groups: on the CPU for
    an unfused run, where a fused CUDA kernel then failed at the first step ("Expected all
    tensors to be on the same device ... state_steps")."""
    kernel = {k: optimizer.defaults[k] for k in _KERNEL_KEYS if k in optimizer.defaults}
    groups = [{**g, **kernel} for g in saved.get("param_groups", [])]
    return {**saved, "param_groups": groups}
