"""The public plugin contract: one hook per kind of part, each given a ``register`` callback.

A plugin is a module (or object) with functions decorated by :data:`hookimpl`, listed under the
entry-point group ``edgegan``. Each ``edgegan_register_<kind>`` hook is called once with a
``register`` callable; call it once per part::

    register(name, factory, *, role=None, description="", **meta)

``factory(**params, **context)`` builds the part; ``params`` come from the user's config and
``context`` from the task (see the README, "Writing a plugin"). Import torch inside factories,
not at module import, so that ``edgegan --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT = "edgegan"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]


@hookspec
def edgegan_register_models(register: Register) -> None:
    """Register networks: ``register(name, factory, role="generator"|"discriminator")``.

    A generator's ``forward(z, labels=None)`` maps latents ``(N, latent_dim)`` to images
    ``(N, C, H, W)`` in [-1, 1]; a discriminator's ``forward(x, labels=None)`` returns logits.
    Context passed to the factory: ``channels``, ``image_size``, ``latent_dim``,
    ``num_classes`` (0 when unconditional).
    """


@hookspec
def edgegan_register_losses(register: Register) -> None:
    """Register adversarial losses: factories returning an object with ``d_loss(real_logits,
    fake_logits)`` and ``g_loss(fake_logits)`` (or ``g_loss(fake_logits, real_logits)``, given
    the discriminator's logits on real images too: a relativistic loss), and optionally
    ``d_penalty(discriminator, real, fake, labels)`` (a term added to the discriminator's
    loss, e.g. a gradient penalty)."""


@hookspec
def edgegan_register_datasets(register: Register) -> None:
    """Register datasets: factories returning a ``torch.utils.data.Dataset`` of
    ``(image, label)`` pairs (image ``(C, H, W)`` float in [-1, 1], label int, -1 if none) with
    attributes ``image_shape`` and ``num_classes``. Context: ``split``."""


@hookspec
def edgegan_register_metrics(register: Register) -> None:
    """Register metrics: factories returning an object with ``compute(samples, labels=None,
    reference=None) -> dict[str, float]`` (samples ``(N, C, H, W)`` in [-1, 1])."""


@hookspec
def edgegan_register_exporters(register: Register) -> None:
    """Register exporters: factories returning an object with ``export(generator, spec,
    out_dir) -> dict`` writing one deployable artifact."""


@hookspec
def edgegan_register_callbacks(register: Register) -> None:
    """Register training callbacks: factories returning an object with any of the methods
    ``on_train_start(trainer)``, ``on_step_end(trainer, step, metrics)``,
    ``on_checkpoint(trainer, path)``, ``on_validation(trainer, step, scores)``,
    ``on_train_end(trainer)``. ``on_step_end`` runs every ``train.log_every`` steps with the
    metrics averaged since the last call; ``on_validation`` every ``eval.every`` steps with
    the ``val_*`` scores. Context: ``run_dir``."""


HOOKS: dict[str, str] = {
    "models": "edgegan_register_models",
    "losses": "edgegan_register_losses",
    "datasets": "edgegan_register_datasets",
    "metrics": "edgegan_register_metrics",
    "exporters": "edgegan_register_exporters",
    "callbacks": "edgegan_register_callbacks",
}
