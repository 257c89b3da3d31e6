"""Task ``gan``: an (optionally class-conditional) GAN, trained by alternating updates.

Each step does ``train.d_steps`` discriminator updates on real and detached fake samples, then
one generator update through the discriminator with its weights frozen, as the adversarial
objective prescribes.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from edgegan import contracts
from edgegan.config import Config, check_generator_kind
from edgegan.errors import ConfigError, caller_stacklevel
from edgegan.export.bundle import check_exportable
from edgegan.losses.adversarial import generator_loss
from edgegan.plugins.manager import get_manager
from edgegan.train import fastpath
from edgegan.train.augment import DiffAugment
from edgegan.train.task import Task, check_best_score, declared_scores, register_task


def model_context(config: Any, dataset: Any) -> dict[str, Any]:
    """The context every model factory receives: image shape, latent size, classes."""
    c, h, w = dataset.image_shape
    if h != w:
        raise ConfigError(f"the gan task needs square images, the dataset gives {h}x{w}")
    classes = int(getattr(dataset, "num_classes", 0) or 0)
    if config.model.conditional and classes == 0:
        classes = 0  # an unlabelled dataset trains an unconditional GAN
    context = {
        "channels": int(c),
        "image_size": int(h),
        "latent_dim": config.model.latent_dim,
        "num_classes": classes if config.model.conditional else 0,
    }
    check_exportable(context)
    return context


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class _Through(torch.nn.Module):
    """``discriminator`` called on ``aug(x)``: what a penalty differentiates w.r.t. ``x``.
    Otherwise it is the discriminator: its parameters and attributes are the network's, so a
    plugin's penalty may use them."""

    def __init__(self, aug: Any, discriminator: torch.nn.Module) -> None:
        super().__init__()
        self.aug, self.net = aug, discriminator

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.aug(x)) if labels is None else self.net(self.aug(x), labels)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("net"), name)


@register_task
class GANTask(Task):
    name = "gan"
    networks = ("generator", "discriminator")
    optimizers = {"g": (("generator",), "g"), "d": (("discriminator",), "d")}
    sample_network = "generator"

    @classmethod
    def batches_per_step(cls, config: Config) -> int:
        return config.train.d_steps  # each discriminator update takes a batch of its own

    def build_networks(self) -> None:
        manager = get_manager()
        models = manager.registry("models")
        data_entry = manager.registry("datasets").get(self.config.data.name)
        if contracts.is_external(data_entry):
            contracts.check_dataset(
                data_entry,
                self.dataset,
                self.config.model.conditional,
                self.config.train.resident_data,
            )
        self.context = model_context(self.config, self.dataset)
        g, d = self.config.model.generator, self.config.model.discriminator
        check_generator_kind(self.name, models.get(g.name, "generator"))
        self.generator = models.build_part(g, self.context, "generator")
        self.discriminator = models.build_part(d, self.context, "discriminator")
        self.loss = manager.registry("losses").build(self.config.loss.name, self.config.loss.params)
        self.augment = DiffAugment(self.config.train.augment)
        self.num_classes = self.context["num_classes"]
        self.latent_dim = self.context["latent_dim"]
        contracts.check_gan_parts(self)
        self._warn_label_blind()
        ev = self.config.eval
        self._scorer: Any = None  # the metric, built once for every evaluation of the run
        if ev.at_end or ev.every:  # an unknown or broken metric must fail now, not after training
            from edgegan.metrics.evaluate import check_metric
            from edgegan.train.distributed import is_main_process

            if ev.metric == "fid" and not self._reference():
                raise ConfigError(
                    "eval.metric=fid needs eval.reference: a folder or .npz of real images at "
                    "the samples' size, or an FID statistics .npz (docs/eval.md)"
                )
            if is_main_process():
                self._scorer = check_metric(ev.metric, self._reference(), ev.metric_params)
                scores = declared_scores(self._scorer.metric)  # optional for a plugin
                if ev.best and ev.every and scores:
                    check_best_score(ev.best, scores, f"eval.metric={ev.metric}")
            else:  # process 0 alone evaluates: a metric that loads a network is built there
                manager.registry("metrics").get(ev.metric)

    def _warn_label_blind(self) -> None:
        """Warn (once a run) when a conditional run's network ignores the labels: the run
        trains, but its classes mean nothing."""
        from edgegan.train.distributed import is_main_process

        if not is_main_process():  # it alone would say it: the others need not probe
            return
        blind = contracts.label_blind(self.generator, self.discriminator, self.context)
        if not blind:
            return
        g, d = self.config.model.generator.name, self.config.model.discriminator.name
        why = {
            "generator": f"the generator '{g}' never reads its labels",
            "discriminator": f"the discriminator '{d}' never reads its labels, so nothing "
            "teaches the generator the classes",
        }
        warnings.warn(
            f"model.conditional=true, but {' and '.join(why[n] for n in blind)}; use networks "
            "that take labels (dcgan) or set model.conditional=false",
            stacklevel=caller_stacklevel(),
        )

    def _reference(self) -> str | None:
        """``eval.reference``, else the test split of the bundled digits for runs on them."""
        from edgegan.metrics.evaluate import config_reference

        return config_reference(self.config)

    def penalty_discriminator(self, discriminator: torch.nn.Module) -> torch.nn.Module:
        """What the penalties (R1, a loss's ``d_penalty``) call: the discriminator, through
        the augmentation when there is one (as the loss sees it)."""
        return _Through(self.augment, discriminator) if self.augment else discriminator

    def generator_spec(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "network": "generator",
            # plain ints and strings: a plugin dataset may give NumPy ones, which a
            # checkpoint cannot hold (weights_only loading)
            "latent_dim": int(self.latent_dim),
            "num_classes": int(self.num_classes),
            "image_shape": [int(v) for v in self.dataset.image_shape],
            "class_names": [str(c) for c in getattr(self.dataset, "class_names", []) or []],
            "value_range": [-1.0, 1.0],
        }

    def fixed_inputs(self, n: int, seed: int) -> dict[str, torch.Tensor]:
        """Fixed latents and, when conditional, labels giving one row per class (every class
        when ``n`` is at least the number of classes; a remainder starts the classes again);
        drawn from their own generator so they do not disturb the training RNG."""
        g = torch.Generator().manual_seed(seed)
        fixed = {"z": torch.randn(n, self.latent_dim, generator=g)}
        if self.num_classes:
            # Rounded down: rounding up (25 images, 10 classes: 3 per row) left the last
            # classes out of the grid.
            fixed["labels"] = (torch.arange(n) // self._per_class(n)) % self.num_classes
        return fixed

    def _per_class(self, n: int) -> int:
        """Images per class row of an ``n``-image preview of a conditional generator."""
        return max(1, n // self.num_classes)

    def preview(self, trainer: Any, fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        images = trainer.sample(fixed["z"], fixed.get("labels"))
        n = len(images)
        labels = fixed.get("labels")
        if self.num_classes and labels is not None and len(labels):
            # a row per run of one label: the fixed labels of a run resumed from an older
            # edgegan may be laid out otherwise than _per_class's
            changes = (labels != labels[0]).nonzero()
            nrow = int(changes[0]) if len(changes) else n
        else:
            nrow = math.ceil(math.sqrt(n))
        return images, nrow

    def evaluate(self, trainer: Any, num_samples: int | None = None) -> dict[str, float]:
        """``eval.metric`` on the generator's samples: the digit metric for runs on the
        bundled digits (against their test split, or ``eval.reference``), any other metric
        on any data, against ``eval.reference`` (a plugin's metric gets ``reference=None``
        without one)."""
        ev = self.config.eval
        mnist = self.config.data.name == "mnist"
        if not mnist and ev.metric == "digits" and not ev.reference:
            if num_samples is None:  # the final evaluation (validation passes stay quiet)
                warnings.warn(
                    f"no final evaluation: eval.metric=digits scores runs on the bundled digits "
                    f"(data.name=mnist), this one trains on '{self.config.data.name}'; set "
                    "eval.metric to a metric for this data (eval.metric=fid "
                    "eval.reference=REAL_IMAGES), or eval.at_end=false",
                    stacklevel=caller_stacklevel(),
                )
            return {}
        from edgegan.metrics.evaluate import Scorer

        n = num_samples or ev.num_samples
        g = torch.Generator().manual_seed(self.config.seed + 777)
        z = torch.randn(n, self.latent_dim, generator=g)
        labels = torch.arange(n) % self.num_classes if self.num_classes else None
        chunks = [
            trainer.sample(z[i : i + 500], None if labels is None else labels[i : i + 500])
            for i in range(0, n, 500)
        ]
        if self._scorer is None:
            self._scorer = Scorer(ev.metric, self._reference(), ev.metric_params)
        return self._scorer(torch.cat(chunks), labels)

    def sample_inputs(self, n: int, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        z = torch.randn(n, self.latent_dim, device=self.device)
        if self.num_classes == 0:
            return z, None
        if labels is None:
            labels = torch.randint(0, self.num_classes, (n,), device=self.device)
        return z, labels

    def train_step(self, batches: Any, step: int) -> dict[str, torch.Tensor]:
        cfg = self.config.train
        G, D, loss, amp = self.generator, self.discriminator, self.loss, self.precision
        # The network being updated runs through its DDP wrapper under torchrun (gradients
        # averaged over ranks); the one that is not (G under no_grad, the frozen D) runs plain.
        G_train, D_train = self.train_module("generator"), self.train_module("discriminator")
        out: dict[str, torch.Tensor] = {}
        d_penalty = getattr(loss, "d_penalty", None)
        aug = self.augment if self.augment else _identity
        for i in range(cfg.d_steps):
            real, labels = batches.next()
            n = real.shape[0]
            labels = labels if self.num_classes else None
            z, fake_labels = self.sample_inputs(n, labels)
            with amp.autocast():
                with torch.no_grad():
                    fake = G(z, fake_labels)
                # One call of D on real and fake when it is per-sample (train.merge_calls).
                d_real, d_fake = self.call(
                    "discriminator", [aug(real), aug(fake)], [labels, fake_labels]
                )
                d_loss = loss.d_loss(d_real, d_fake)
            total = d_loss
            # Penalties smooth D where the loss trains it: through the augmentation (as
            # DiffAugment's and StyleGAN2-ADA's R1 do), differentiated w.r.t. the images.
            # Penalties differentiate through D: keep them in full precision, and eager (a
            # compiled D's backward cannot be differentiated again).
            D_seen = self.penalty_discriminator(D_train)
            r1_step = cfg.r1_gamma > 0 and (step * cfg.d_steps + i) % cfg.r1_every == 0
            with fastpath.uncompiled(D):
                if d_penalty is not None:
                    pen = d_penalty(D_seen, real.float(), fake.float(), labels)
                    total = total + pen
                    out["d_penalty"] = pen.detach()
                if r1_step:
                    from edgegan.losses.penalties import r1_penalty

                    r1 = r1_penalty(D_seen, real.float(), labels)
                    total = total + 0.5 * cfg.r1_gamma * cfg.r1_every * r1
                    out["r1"] = r1.detach()
            amp.step("d", total, self.optims["d"])
        out["d_loss"] = d_loss.detach()
        out["d_real"] = d_real.detach().float().mean()
        out["d_fake"] = d_fake.detach().float().mean()

        # Generator update: D's weights get no gradients (saves their backward).
        D.requires_grad_(False)
        try:
            z, fake_labels = self.sample_inputs(n, labels)
            with amp.autocast():
                # a relativistic loss also gets D's logits on this step's last real batch
                seen = aug(G_train(z, fake_labels))
                g_loss = generator_loss(loss, D, seen, lambda: aug(real), fake_labels)
            amp.step("g", g_loss, self.optims["g"])
        finally:
            D.requires_grad_(True)
        out["g_loss"] = g_loss.detach()
        return out
