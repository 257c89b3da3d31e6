"""What the image-to-image tasks (``cyclegan``, ``pix2pix``) share: the two-domain dataset
they need, their test split (previews and paired scores), the spec their generators export
with, and the paired evaluation of each direction they train.

A subclass declares :attr:`TranslationTask.translations`, which generator translates which
domain into which; the rest is generic.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch

from edgegan.data.files import DataWarning
from edgegan.errors import ConfigError, DataError, caller_stacklevel
from edgegan.export.bundle import check_exportable
from edgegan.plugins.manager import get_manager
from edgegan.train.task import Task, check_best_score


def training_scale(dataset: Any) -> dict[str, Any]:
    """What the dataset says of its files, for the spec: how it scaled the images the
    generators trained on (the ``unpaired`` and ``aligned`` datasets' ``preprocess`` and
    ``load_size``, for ``infer --resize train``) and which domain each half of a pair file
    holds (the ``aligned`` dataset's ``halves``; other datasets' runs read pair files as the
    format stores them, A on the left: ``AB``; for ``infer --split-pairs``)."""
    out: dict[str, Any] = {"halves": "BA" if getattr(dataset, "halves", None) == "BA" else "AB"}
    mode = getattr(dataset, "preprocess", None)
    if isinstance(mode, str):
        out.update(preprocess=mode, load_size=int(getattr(dataset, "load_size", 0) or 0))
    return out


def translation_spec(
    task: str, network: str, channels_a: int, channels_b: int, image_size: int, dataset: Any
) -> dict[str, Any]:
    """The spec a translation run's checkpoint keeps (export and infer read it): the task,
    its sampled network, the domains' channels, the training size and scale
    (:func:`training_scale` of ``dataset``)."""
    return {
        "task": task,
        "network": network,
        "channels_a": int(channels_a),
        "channels_b": int(channels_b),
        "image_size": int(image_size),
        "value_range": [-1.0, 1.0],
        **training_scale(dataset),
    }


def rgb(x: torch.Tensor) -> torch.Tensor:
    """Grey images as three equal channels, so grey and colour rows share a sample grid."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class TranslationTask(Task):
    """Base of the image-to-image tasks: subclasses set :attr:`translations` (and the
    :class:`~edgegan.train.task.Task` attributes) and build their networks after
    :meth:`read_domains`."""

    #: score prefix -> (generator, the domain it reads, the domain it writes): ``ab_psnr`` is
    #: the PSNR of ``translations["ab"]``'s generator on the test split's A against its B.
    translations: ClassVar[dict[str, tuple[str, str, str]]]
    #: the config section holding ``preview`` (test pairs in a sample grid)
    settings: ClassVar[str]
    #: datasets that fit, named in the error for one that does not
    dataset_hint: ClassVar[str] = "unpaired, cyclegan-digits"

    def read_domains(self) -> None:
        """``channels_a``, ``channels_b`` and ``size`` from the dataset, which must have two
        domains (``image_shape`` is A's, ``image_shape_b`` B's); then
        :meth:`prepare_evaluation`."""
        if not hasattr(self.dataset, "image_shape_b"):
            raise ConfigError(
                f"the {self.name} task needs a two-domain dataset (e.g. {self.dataset_hint}); "
                f"'{self.config.data.name}' is not one"
            )
        ca, h, _ = self.dataset.image_shape
        cb = self.dataset.image_shape_b[0]
        self.channels_a, self.channels_b, self.size = int(ca), int(cb), int(h)
        check_exportable(
            {"channels_a": self.channels_a, "channels_b": self.channels_b, "image_size": self.size}
        )
        self.prepare_evaluation()

    def generator_spec(self) -> dict[str, Any]:
        return translation_spec(
            self.name,
            self.sample_network,
            self.channels_a,
            self.channels_b,
            self.size,
            self.dataset,
        )

    # -- previews and evaluation ------------------------------------------------------------
    def _eval_dataset(self) -> Any:
        """The test split (built once: evaluation may run every ``eval.every`` steps)."""
        if getattr(self, "_eval_ds", None) is None:
            data = self.config.data
            try:
                registry = get_manager().registry("datasets")
                self._eval_ds = registry.build(data.name, data.params, {"split": "test"})
            except DataError as exc:
                # No (usable) test split: preview the training data, and say why nothing is
                # evaluated (a broken testA/ file must not pass for a missing one in silence).
                warnings.warn(
                    f"no test split to evaluate on ({exc}); previews show training images and "
                    "the run gets no paired scores",
                    DataWarning,
                    stacklevel=caller_stacklevel(),
                )
                self._eval_ds = self.dataset
        return self._eval_ds

    def fixed_inputs(self, n: int, seed: int) -> dict[str, torch.Tensor]:
        ds = self._eval_dataset()
        k = min(getattr(self.config, self.settings).preview, len(ds))
        items = [ds[i] for i in range(k)]
        return {
            "A": torch.stack([it["A"] for it in items]),
            "B": torch.stack([it["B"] for it in items]),
        }

    def translate(self, trainer: Any, prefix: str, images: torch.Tensor) -> torch.Tensor:
        """``translations[prefix]``'s generator on ``images`` in eval mode (its EMA copy when
        it is the sampled network and train.ema is on)."""
        network = self.translations[prefix][0]
        module = None if network == self.sample_network else self.module(network)
        return trainer.sample(images, module=module)

    def prepare_evaluation(self) -> None:
        """With ``eval.metric=fid``, build the FID metric now: a run without the Inception
        weights fails before training, not after it (process 0 alone evaluates)."""
        from edgegan.train.distributed import is_main_process

        self._fid: Any = None
        self._fid_reference: dict[tuple[str, int], Any] = {}  # (domain, n) -> features
        ev = self.config.eval
        if ev.metric == "fid" and (ev.at_end or ev.every) and is_main_process():
            from edgegan.metrics.evaluate import check_metric

            self._fid = check_metric("fid", None, ev.metric_params).metric
        if ev.best and ev.every:  # the scores evaluate() can give, on any split
            from edgegan.metrics.fid import FidMetric
            from edgegan.metrics.paired import PAIRED_SCORES

            kinds = PAIRED_SCORES + (FidMetric.scores if ev.metric == "fid" else ())
            scores = [f"{p}_{k}" for p in self.translations for k in kinds] + ["num_samples"]
            metric = " and eval.metric=fid" if ev.metric == "fid" else ""
            check_best_score(ev.best, scores, f"a {self.name} run's validation{metric}")

    def evaluate(self, trainer: Any, num_samples: int | None = None) -> dict[str, float]:
        """Scores of each generator's translations of the test split (``ab_*``: A -> B), on
        its first ``num_samples`` items: L1/PSNR/SSIM against the true images when the split
        is paired; with ``eval.metric=fid``, FID and KID against the other domain's test
        images, paired or not (:mod:`edgegan.metrics.translation`)."""
        from edgegan.metrics.translation import translation_scores

        ds = self._eval_dataset()
        if ds is self.dataset:
            return {}
        n = min(len(ds), num_samples or self.config.eval.num_samples)
        directions = {p: (source, target) for p, (_, source, target) in self.translations.items()}
        scores = translation_scores(
            ds,
            directions,
            lambda prefix, x: self.translate(trainer, prefix, x),
            n,
            getattr(self, "_fid", None),
            self._fid_reference,
        )
        # how many were scored, as a GAN's metric and `edgegan eval RUN` say
        return {**scores, "num_samples": n} if scores else {}
