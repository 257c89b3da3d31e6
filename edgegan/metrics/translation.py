"""Scores of image-to-image translators on a test split: during training (the translation
tasks' evaluation) and of a finished or imported run (``edgegan eval RUN``).

Each direction, named by its prefix (``ab``: A -> B, ``ba``: B -> A), translates the split's
source images; a paired split scores them against the true target images (L1, PSNR, SSIM),
and the FID metric against the split's target images (FID, KID, ...; paired or not).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from edgegan.errors import DataError, EdgeganError

#: prefix -> (source domain, target domain), e.g. {"ab": ("A", "B")}
Directions = Mapping[str, tuple[str, str]]
#: (prefix, source images) -> translated images
Translate = Callable[[str, torch.Tensor], torch.Tensor]

_CHUNK = 256


def translation_scores(
    ds: Any,
    directions: Directions,
    translate: Translate,
    n: int,
    fid: Any = None,
    reference_cache: dict[tuple[str, int], Any] | None = None,
) -> dict[str, float]:
    """Scores of each direction on the first ``n`` items of the test split ``ds``: paired
    (``ab_l1``, ``ab_psnr``, ``ab_ssim``) when the split is paired; with ``fid`` (a built
    FID metric) ``ab_fid``, ``ab_kid``, ...; ``reference_cache`` keeps the target images'
    features between calls (a run evaluated every ``eval.every`` steps)."""
    translate = _pixel_bounded(translate)
    scores = paired(ds, directions, translate, n) if getattr(ds, "paired", False) else {}
    if fid is not None:
        cache = {} if reference_cache is None else reference_cache
        scores.update(fid_scores(ds, directions, translate, n, fid, cache))
    return scores


def _pixel_bounded(translate: Translate) -> Translate:
    """``translate`` called on parts of a chunk of at most ``MAX_BATCH_PIXELS`` pixels (one
    image at least), as ``infer`` translates on the CPU: 256 images of 256x256 through the
    ResNet-9 at once took about 15 GB there. Small images (the digits) go whole."""
    from edgegan.translate import MAX_BATCH_PIXELS

    def bounded(prefix: str, x: torch.Tensor) -> torch.Tensor:
        per = max(1, MAX_BATCH_PIXELS // (x.shape[-2] * x.shape[-1]))
        if len(x) <= per:
            return translate(prefix, x)
        return torch.cat([translate(prefix, x[i : i + per]) for i in range(0, len(x), per)])

    return bounded


def paired(ds: Any, directions: Directions, translate: Translate, n: int) -> dict[str, float]:
    """L1/PSNR/SSIM of each translation against the true images of a paired split."""
    from edgegan.metrics.paired import paired_scores

    scores: dict[str, list[float]] = {}
    for i in range(0, n, _CHUNK):
        items = [ds[j] for j in range(i, min(n, i + _CHUNK))]
        chunk: dict[str, float] = {}
        for prefix, (source, target) in directions.items():
            x = torch.stack([it[source] for it in items])
            y = torch.stack([it[target] for it in items])
            chunk.update(paired_scores(translate(prefix, x), y, f"{prefix}_"))
        for key, value in chunk.items():
            scores.setdefault(key, []).append(value * len(items))
    return {k: sum(v) / n for k, v in scores.items()}


def fid_scores(
    ds: Any,
    directions: Directions,
    translate: Translate,
    n: int,
    fid: Any,
    reference_cache: dict[tuple[str, int], Any],
) -> dict[str, float]:
    """``{prefix}_fid``, ``_kid``, ...: the translations of the split's first ``n`` distinct
    source images against its first ``n`` distinct target images (an unpaired split repeats
    the smaller domain's images up to the larger's length)."""
    out: dict[str, float] = {}
    for prefix, (source, target) in directions.items():
        n_source, n_target = min(n, distinct(ds, source)), min(n, distinct(ds, target))
        if min(n_source, n_target) < 2:
            continue  # FID and KID need two images a side
        key = (target, n_target)
        if key not in reference_cache:
            reference_cache[key] = _features(fid, ds, target, n_target)
        fake = _features(fid, ds, source, n_source, lambda x, p=prefix: translate(p, x))
        scores = fid.compare(fake, reference_cache[key])
        out.update({f"{prefix}_{k}": v for k, v in scores.items()})
    return out


def _features(fid: Any, ds: Any, domain: str, n: int, through: Any = None) -> Any:
    """Inception features of the first ``n`` test images of ``domain`` (translated by
    ``through`` when given), a chunk at a time."""
    import numpy as np

    chunks = []
    for i in range(0, n, _CHUNK):
        x = torch.stack([ds[j][domain] for j in range(i, min(n, i + _CHUNK))])
        chunks.append(fid.features(x if through is None else through(x)))
    return np.concatenate(chunks)


def distinct(ds: Any, domain: str) -> int:
    """How many distinct images of ``domain`` ("A" or "B") a test split holds: the unpaired
    dataset's ``domain_a``/``domain_b`` file lists, else (paired datasets) its length."""
    files = getattr(ds, f"domain_{domain.lower()}", None)
    return len(files) if files is not None else len(ds)


def is_translation_run(target: str | Path) -> bool:
    """Whether ``target`` is the directory of a cyclegan or pix2pix run (its config says; a
    damaged config.yaml: its checkpoint, and scoring it reports the config's error)."""
    from edgegan.export.signature import is_translation_task
    from edgegan.metrics.evaluate import run_config
    from edgegan.sampling import target_task
    from edgegan.train.logs import is_run_dir

    if not is_run_dir(target):
        return False
    config = run_config(target)
    if config is not None:
        return is_translation_task(config.task)
    try:
        return is_translation_task(target_task(target)[0])
    except EdgeganError:
        return False


def evaluate_translation_run(
    run_dir: str | Path,
    num: int | None = None,
    metric: str | None = None,
    params: Mapping[str, Any] | None = None,
    device: str = "cpu",
    checkpoint: str | None = None,
    data_root: str | Path | None = None,
) -> dict[str, float]:
    """Score a cyclegan or pix2pix run's generators (eval mode, the EMA copy for A -> B where
    kept) on its dataset's test split, as its training scored them at the end: paired
    scores when the split is paired; ``metric="fid"`` adds FID, KID, ... against the split's
    target images. ``num``: its first items (default: the run's ``eval.num_samples``).
    ``params``: the FID metric's (default: the run's ``eval.metric_params``).
    ``data_root``: where its data lies now (default: the run's ``data.root``); e.g. a run
    imported from the reference code (``edgegan import``)."""
    from edgegan.config import load_run_config
    from edgegan.metrics.evaluate import check_metric
    from edgegan.plugins.manager import get_manager
    from edgegan.sampling import check_num
    from edgegan.train.device import resolve_device
    from edgegan.train.task import get_task
    from edgegan.translate import NETWORKS, load_translator

    if num is not None:  # 0 scored the run's default count, -5 "nothing in its first -5"
        check_num(num)
    target = resolve_device(device, "--device")
    if metric not in (None, "fid"):
        raise EdgeganError(
            f"a translation run is scored on its test split (paired: L1, PSNR, SSIM) and with "
            f"--metric fid; not --metric {metric}"
        )
    config = load_run_config(run_dir)
    translations = getattr(get_task(config.task), "translations", None)
    if not translations:
        raise EdgeganError(f"{run_dir} is a '{config.task}' run, not an image translator's")
    datasets = get_manager().registry("datasets")
    if data_root is not None:
        factory = datasets.get(config.data.name).factory
        if "root" not in inspect.signature(factory).parameters:
            raise EdgeganError(
                f"--data-root: {run_dir} trained on '{config.data.name}', which reads no folder"
            )
        config.data.params["root"] = str(Path(data_root).expanduser())
    if metric is None and params:
        raise EdgeganError("-o sets the FID metric's options: add --metric fid")
    fid = None
    if metric == "fid":  # built before the data and the networks: its errors come first
        chosen = config.eval.metric_params if params is None else params
        fid = check_metric("fid", None, chosen).metric
    data = config.data
    try:
        ds = datasets.build(data.name, data.params, {"split": "test"})
    except DataError as exc:
        hint = "" if data_root is not None else " (--data-root DIR: where its data lies now)"
        raise DataError(f"{run_dir}'s test split: {exc}{hint}") from None
    if fid is None and not getattr(ds, "paired", False):
        raise EdgeganError(
            f"the test split of {run_dir} is unpaired: there are no true translations to "
            "compare with; score it with --metric fid"
        )
    by_network = {network: direction for direction, network in NETWORKS.items()}
    directions, modules = {}, {}
    for prefix, (network, source, dest) in translations.items():
        directions[prefix] = (source, dest)
        gen = load_translator(run_dir, by_network[network], device, checkpoint=checkpoint)
        modules[prefix] = gen.module

    def translate(prefix: str, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # as the trainer samples: float, clipped to the value range
            return modules[prefix](x.to(target)).float().clamp(-1, 1).cpu()

    n = min(len(ds), int(config.eval.num_samples if num is None else num))
    scores = translation_scores(ds, directions, translate, n, fid)
    if not scores:
        raise EdgeganError(
            f"{run_dir}: nothing to score in its first {n} test items (FID and KID need two "
            "distinct images in each domain)"
        )
    return {**scores, "num_samples": n}
