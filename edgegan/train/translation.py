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
from edgegan.errors import ConfigError, DataError
from edgegan.plugins.manager import get_manager
from edgegan.train.task import Task


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
        self.prepare_evaluation()

    def generator_spec(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "network": self.sample_network,
            "channels_a": int(self.channels_a),
            "channels_b": int(self.channels_b),
            "image_size": int(self.size),
            "value_range": [-1.0, 1.0],
            **training_scale(self.dataset),
        }

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
                    stacklevel=2,
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

    def evaluate(self, trainer: Any, num_samples: int | None = None) -> dict[str, float]:
        """Scores of each generator's translations of the test split (``ab_*``: A -> B), on
        its first ``num_samples`` items: L1/PSNR/SSIM against the true images when the split
        is paired; with ``eval.metric=fid``, FID and KID against the other domain's test
        images, paired or not."""
        ds = self._eval_dataset()
        if ds is self.dataset:
            return {}
        n = min(len(ds), num_samples or self.config.eval.num_samples)
        scores = self._paired_scores(trainer, ds, n) if getattr(ds, "paired", False) else {}
        if getattr(self, "_fid", None) is not None:
            scores.update(self._fid_scores(trainer, ds, n))
        return scores

    def _fid_scores(self, trainer: Any, ds: Any, n: int) -> dict[str, float]:
        """``{prefix}_fid``, ``_kid``, ``_kid_std``: the translations of the test split's
        first ``n`` distinct source images against its first ``n`` distinct target images
        (an unpaired split repeats the smaller domain's images up to the larger's length)."""
        out: dict[str, float] = {}
        for prefix, (_, source, target) in self.translations.items():
            n_source, n_target = min(n, _distinct(ds, source)), min(n, _distinct(ds, target))
            if min(n_source, n_target) < 2:
                continue  # FID and KID need two images a side
            key = (target, n_target)
            if key not in self._fid_reference:
                self._fid_reference[key] = self._features(ds, target, n_target)
            fake = self._features(
                ds, source, n_source, lambda x, p=prefix: self.translate(trainer, p, x)
            )
            scores = self._fid.compare(fake, self._fid_reference[key])
            out.update({f"{prefix}_{k}": v for k, v in scores.items()})
        return out

    def _features(self, ds: Any, domain: str, n: int, through: Any = None) -> Any:
        """Inception features of the first ``n`` test images of ``domain`` (translated by
        ``through`` when given), 256 images at a time."""
        import numpy as np

        chunks = []
        for i in range(0, n, 256):
            x = torch.stack([ds[j][domain] for j in range(i, min(n, i + 256))])
            chunks.append(self._fid.features(x if through is None else through(x)))
        return np.concatenate(chunks)

    def _paired_scores(self, trainer: Any, ds: Any, n: int) -> dict[str, float]:
        """L1/PSNR/SSIM of each translation against the true images of a paired split."""
        from edgegan.metrics.paired import paired_scores

        scores: dict[str, list[float]] = {}
        for i in range(0, n, 256):
            items = [ds[j] for j in range(i, min(n, i + 256))]
            chunk: dict[str, float] = {}
            for prefix, (_, source, target) in self.translations.items():
                x = torch.stack([it[source] for it in items])
                y = torch.stack([it[target] for it in items])
                chunk.update(paired_scores(self.translate(trainer, prefix, x), y, f"{prefix}_"))
            for key, value in chunk.items():
                scores.setdefault(key, []).append(value * len(items))
        return {k: sum(v) / n for k, v in scores.items()}


def _distinct(ds: Any, domain: str) -> int:
    """How many distinct images of ``domain`` ("A" or "B") a test split holds: the unpaired
    dataset's ``domain_a``/``domain_b`` file lists, else (paired datasets) its length."""
    files = getattr(ds, f"domain_{domain.lower()}", None)
    return len(files) if files is not None else len(ds)
