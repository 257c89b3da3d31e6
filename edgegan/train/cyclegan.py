"""Task ``cyclegan``: unpaired image-to-image translation (Zhu et al. 2017).

Generators ``g_ab`` (A -> B) and ``g_ba`` (B -> A); discriminators ``d_b`` (real B vs
``g_ab(a)``) and ``d_a`` (real A vs ``g_ba(b)``). The generators minimise the adversarial
loss in both directions plus the cycle losses
``lambda_a * |g_ba(g_ab(a)) - a|_1 + lambda_b * |g_ab(g_ba(b)) - b|_1`` and the identity
loss ``lambda_identity * (lambda_b * |g_ab(b) - b|_1 + lambda_a * |g_ba(a) - a|_1)``
(``lambda_a`` and ``lambda_b`` default to ``lambda_cycle``, as the reference's to 10);
then the discriminators are updated on real images and fakes drawn through the image pools,
as the reference implementation does.
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
from edgegan.train.pool import ImagePool
from edgegan.train.task import register_task
from edgegan.train.translation import TranslationTask, rgb


@register_task
class CycleGANTask(TranslationTask):
    name = "cyclegan"
    networks = ("g_ab", "g_ba", "d_a", "d_b")
    optimizers = {"g": (("g_ab", "g_ba"), "g"), "d": (("d_a", "d_b"), "d")}
    sample_network = "g_ab"
    translations = {"ab": ("g_ab", "A", "B"), "ba": ("g_ba", "B", "A")}
    settings = "cycle"

    def build_networks(self) -> None:
        manager = get_manager()
        models = manager.registry("models")
        self.read_domains()
        ca, cb = self.channels_a, self.channels_b
        cyc = self.config.cycle
        if cyc.uses_identity() and ca != cb:
            raise ConfigError(
                f"cycle.lambda_identity needs domains with equal channels (A has {ca}, B {cb}); "
                "set cycle.lambda_identity=0 or make the channels equal"
            )
        g, d = self.config.model.generator, self.config.model.discriminator
        check_generator_kind(self.name, models.get(g.name, "generator"))

        def gen(c_in: int, c_out: int) -> Any:
            ctx = {"channels": c_in, "channels_out": c_out, "image_size": self.size}
            return models.build_part(g, ctx, "generator")

        def disc(c: int) -> Any:
            ctx = {"channels": c, "image_size": self.size}
            return models.build_part(d, ctx, "discriminator")

        self.g_ab, self.g_ba = gen(ca, cb), gen(cb, ca)
        self.d_a, self.d_b = disc(ca), disc(cb)
        self.loss = manager.registry("losses").build(self.config.loss.name, self.config.loss.params)
        contracts.check_cyclegan_parts(self)
        self.pool_a, self.pool_b = ImagePool(cyc.pool_size), ImagePool(cyc.pool_size)

    def train_step(self, batches: Any, step: int) -> dict[str, torch.Tensor]:
        cyc, amp, loss = self.config.cycle, self.precision, self.loss
        batch = batches.next()
        real_a, real_b = batch["A"], batch["B"]
        lam_a, lam_b = cyc.cycle_weights()
        use_idt = cyc.uses_identity()
        out: dict[str, torch.Tensor] = {}
        # Under torchrun the networks being updated run through their DDP wrappers; the
        # frozen discriminators of the generator update run plain (see Task.train_module).
        d_a, d_b = self.train_module("d_a"), self.train_module("d_b")

        # Generators, with both discriminators frozen.
        for d in (self.d_a, self.d_b):
            d.requires_grad_(False)
        try:
            with amp.autocast():
                # Three generator calls, not six, where they are per-sample (merge_calls):
                # g_ab on (real A, real B), g_ba on (real B, real A, fake B), g_ab on fake A.
                if use_idt:
                    fake_b, idt_b = self.call("g_ab", [real_a, real_b])
                    fake_a, idt_a, rec_a = self.call("g_ba", [real_b, real_a, fake_b])
                else:
                    (fake_b,) = self.call("g_ab", [real_a])
                    fake_a, rec_a = self.call("g_ba", [real_b, fake_b])
                (rec_b,) = self.call("g_ab", [fake_a])
                cycle_a, cycle_b = F.l1_loss(rec_a, real_a), F.l1_loss(rec_b, real_b)
                cycle = cycle_a + cycle_b
                adv = generator_loss(loss, self.d_b, fake_b, lambda: real_b) + generator_loss(
                    loss, self.d_a, fake_a, lambda: real_a
                )
                g_loss = adv + _weighted(cycle_a, cycle_b, lam_a, lam_b)
                if use_idt:
                    # g_ab(b) is B's identity (the reference's idt_A, weighted by lambda_B)
                    idt_loss_b, idt_loss_a = F.l1_loss(idt_b, real_b), F.l1_loss(idt_a, real_a)
                    idt = idt_loss_b + idt_loss_a
                    w = cyc.lambda_identity
                    g_loss = g_loss + _weighted(idt_loss_a, idt_loss_b, lam_a * w, lam_b * w)
                    out.update(
                        idt=idt.detach(), idt_a=idt_loss_a.detach(), idt_b=idt_loss_b.detach()
                    )
            amp.step("g", g_loss, self.optims["g"])
        finally:
            for d in (self.d_a, self.d_b):
                d.requires_grad_(True)

        # Discriminators, on fakes from the history pools.
        pooled_b = self.pool_b.query(fake_b.detach())
        pooled_a = self.pool_a.query(fake_a.detach())
        with amp.autocast():
            d_real_b, d_fake_b = self.call("d_b", [real_b, pooled_b])
            d_real_a, d_fake_a = self.call("d_a", [real_a, pooled_a])
            d_loss = loss.d_loss(d_real_b, d_fake_b) + loss.d_loss(d_real_a, d_fake_a)
        d_penalty = getattr(loss, "d_penalty", None)
        if d_penalty is not None:
            with fastpath.uncompiled(self.d_a, self.d_b):  # as the GAN task's penalties
                pen = d_penalty(d_b, real_b.float(), pooled_b.float(), None) + d_penalty(
                    d_a, real_a.float(), pooled_a.float(), None
                )
            d_loss = d_loss + pen
            out["d_penalty"] = pen.detach()
        amp.step("d", d_loss, self.optims["d"])
        out.update(
            g_loss=g_loss.detach(),
            g_adv=adv.detach(),
            cycle=cycle.detach(),
            cycle_a=cycle_a.detach(),
            cycle_b=cycle_b.detach(),
            d_loss=d_loss.detach(),
            d_real=0.5 * (d_real_a.detach().float().mean() + d_real_b.detach().float().mean()),
            d_fake=0.5 * (d_fake_a.detach().float().mean() + d_fake_b.detach().float().mean()),
        )
        return out

    # -- previews ---------------------------------------------------------------------------
    def preview(self, trainer: Any, fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Rows: real A, fake B, reconstructed A, real B, fake A, reconstructed B."""
        a, b = fixed["A"], fixed["B"]
        fake_b = trainer.sample(a)  # EMA of g_ab when train.ema is on
        fake_a = trainer.sample(b, module=self.g_ba)
        rec_a = trainer.sample(fake_b, module=self.g_ba)
        rec_b = trainer.sample(fake_a, module=self.g_ab)
        rows = [a, fake_b, rec_a, b, fake_a, rec_b]
        return torch.cat([rgb(r) for r in rows]), len(a)

    # -- pools are part of the state -------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"pool_a": self.pool_a.state_dict(), "pool_b": self.pool_b.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.pool_a.load_state_dict(state["pool_a"], self.device)
        self.pool_b.load_state_dict(state["pool_b"], self.device)


def _weighted(a: torch.Tensor, b: torch.Tensor, w_a: float, w_b: float) -> torch.Tensor:
    """``w_a * a + w_b * b``, as one product of the sum when the weights are equal: the
    arithmetic of the single-lambda loss, to the bit."""
    return w_a * (a + b) if w_a == w_b else w_a * a + w_b * b
