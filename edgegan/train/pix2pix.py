"""Task ``pix2pix``: paired image-to-image translation (Isola et al. 2017).

One generator ``g_ab`` (A -> B) and one conditional discriminator ``d``, which sees an
image pair ``(a, b)`` as one image of ``channels_a + channels_b`` channels: real pairs
``(a, b)`` from the dataset against ``(a, g_ab(a))``. The generator minimises the
adversarial loss plus ``lambda_l1 * |g_ab(a) - b|_1`` (``pix2pix.lambda_l1``, the
reference's 100). As the reference implementation does, each step runs the generator once,
updates the discriminator on that fake (detached), then updates the generator against the
updated, frozen discriminator; there is no image pool.

The training split must be paired (item ``i``'s B is the translation of its A): the
``aligned`` dataset (the reference's side-by-side images) or ``cyclegan-digits`` with
``paired=true``. The reference halves its discriminator loss; Adam's steps do not change
with the scale of a loss (up to its epsilon), so here the loss plugin's own discriminator
loss is used as it is (``lsgan``'s already has the 0.5).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from edgegan import contracts
from edgegan.config import check_generator_kind
from edgegan.errors import ConfigError
from edgegan.losses.adversarial import generator_loss
from edgegan.plugins.manager import get_manager
from edgegan.train import fastpath
from edgegan.train.task import register_task
from edgegan.train.translation import TranslationTask, rgb


@register_task
class Pix2PixTask(TranslationTask):
    name = "pix2pix"
    networks = ("g_ab", "d")
    optimizers = {"g": (("g_ab",), "g"), "d": (("d",), "d")}
    sample_network = "g_ab"
    translations = {"ab": ("g_ab", "A", "B")}
    settings = "pix2pix"
    dataset_hint = "aligned, cyclegan-digits with paired=true"

    def build_networks(self) -> None:
        manager = get_manager()
        models = manager.registry("models")
        self.read_domains()
        if not getattr(self.dataset, "paired", False):
            raise ConfigError(
                f"the pix2pix task trains on pairs, and the training split of "
                f"'{self.config.data.name}' is unpaired; use the aligned dataset (A|B images "
                "side by side) or cyclegan-digits with data.paired=true (or task=cyclegan)"
            )
        g, d = self.config.model.generator, self.config.model.discriminator
        check_generator_kind(self.name, models.get(g.name, "generator"))
        ctx = {"channels": self.channels_a, "channels_out": self.channels_b}
        self.g_ab = models.build_part(g, {**ctx, "image_size": self.size}, "generator")
        pair = {"channels": self.channels_a + self.channels_b, "image_size": self.size}
        self.d = models.build_part(d, pair, "discriminator")
        self.loss = manager.registry("losses").build(self.config.loss.name, self.config.loss.params)
        contracts.check_pix2pix_parts(self)

    def train_step(self, batches: Any, step: int) -> dict[str, torch.Tensor]:
        amp, loss = self.precision, self.loss
        batch = batches.next()
        real_a, real_b = batch["A"], batch["B"]
        with amp.autocast():
            (fake_b,) = self.call("g_ab", [real_a])
        real_ab = torch.cat([real_a, real_b], 1)
        fake_ab = torch.cat([real_a, fake_b], 1)

        # Discriminator, on the real pair and this step's fake pair.
        fake_pair = fake_ab.detach()
        with amp.autocast():
            d_real, d_fake = self.call("d", [real_ab, fake_pair])
            d_loss = loss.d_loss(d_real, d_fake)
        out: dict[str, torch.Tensor] = {}
        d_penalty = getattr(loss, "d_penalty", None)
        if d_penalty is not None:
            with fastpath.uncompiled(self.d):  # as the other tasks' penalties
                pen = d_penalty(self.train_module("d"), real_ab.float(), fake_pair.float(), None)
            d_loss = d_loss + pen
            out["d_penalty"] = pen.detach()
        amp.step("d", d_loss, self.optims["d"])

        # Generator, against the updated discriminator, frozen.
        self.d.requires_grad_(False)
        try:
            with amp.autocast():
                adv = generator_loss(loss, self.d, fake_ab, lambda: real_ab)
                l1 = F.l1_loss(fake_b, real_b)
                g_loss = adv + self.config.pix2pix.lambda_l1 * l1
            amp.step("g", g_loss, self.optims["g"])
        finally:
            self.d.requires_grad_(True)
        out.update(
            g_loss=g_loss.detach(),
            g_adv=adv.detach(),
            l1=l1.detach(),
            d_loss=d_loss.detach(),
            d_real=d_real.detach().float().mean(),
            d_fake=d_fake.detach().float().mean(),
        )
        return out

    def preview(self, trainer: Any, fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Rows: input A, translation, true B."""
        a, b = fixed["A"], fixed["B"]
        fake_b = trainer.sample(a)  # EMA of g_ab when train.ema is on
        return torch.cat([rgb(a), rgb(fake_b), rgb(b)]), len(a)
