"""The ``digits`` metric: quality and mode coverage of generated MNIST-like digits.

Everything is measured with the shipped digit classifier (:mod:`edgegan.metrics.classifier`):

- ``fd``: Frechet distance between the classifier's penultimate features of the samples and
  of a reference split of real digits (lower is better; real digits score a small floor);
- ``coverage``: fraction of the 10 classes predicted for at least half the uniform share
  (>= 5% of the samples); 1.0 means no class is missing, 0.1 a collapse onto one digit;
- ``confidence``: mean max-softmax probability (low for blurry or ambiguous digits);
- ``class_entropy``: entropy of the predicted-class histogram divided by log(10), in [0, 1];
- ``label_accuracy``: with known conditioning labels, the fraction classified as their label;
- ``num_samples``.

References: ``mnist`` (= ``mnist:test``), ``mnist:train``, ``mnist:test`` (the bundled
digits) or ``idx:FOLDER[:train|test]`` for any MNIST-format folder (default split ``test``).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgegan.errors import EdgeganError, caller_stacklevel
from edgegan.metrics import classifier as clf
from edgegan.metrics.frechet import feature_stats, frechet_distance
from edgegan.train.device import resolve_device

MIN_CLASS_SHARE = 0.5 / clf.NUM_CLASSES
"""A class counts as covered when at least this share of samples is predicted as it."""

_SPLITS = ("train", "test")
_REFERENCE_HELP = "use mnist, mnist:train, mnist:test or idx:FOLDER[:train|test]"

# (kind, folder, split, device, size) -> (mu, sigma): reference statistics, once a process.
_REFERENCE_STATS: dict[tuple[str, str, str, str, int | None], tuple[np.ndarray, np.ndarray]] = {}


def is_digits_reference(spec: str) -> bool:
    """Whether ``spec`` names bundled or IDX digits (``mnist[:split]``, ``idx:FOLDER``), as
    :func:`parse_reference` reads them, rather than a path."""
    return spec == "mnist" or spec.startswith(("mnist:", "idx:"))


def parse_reference(spec: str) -> tuple[str, Path, str]:
    """``"mnist:train"`` -> ``("mnist", <bundled folder>, "train")``; ``"idx:/d:test"`` ->
    ``("idx", Path("/d"), "test")``. Raises :class:`EdgeganError` for anything else."""
    from edgegan.data.idx import bundled_mnist_dir

    if not isinstance(spec, str) or not spec.strip():
        raise EdgeganError(f"invalid reference {spec!r}; {_REFERENCE_HELP}")
    spec = spec.strip()
    if spec == "mnist" or spec.startswith("mnist:"):
        split = spec[len("mnist:") :] if ":" in spec else "test"
        if split not in _SPLITS:
            raise EdgeganError(f"unknown split '{split}' in reference '{spec}'; {_REFERENCE_HELP}")
        return "mnist", bundled_mnist_dir(), split
    if spec.startswith("idx:"):
        rest, split = spec[len("idx:") :], "test"
        head, sep, tail = rest.rpartition(":")
        if sep and tail in _SPLITS:
            rest, split = head, tail
        if not rest:
            raise EdgeganError(f"reference '{spec}' names no folder; {_REFERENCE_HELP}")
        folder = Path(rest).expanduser()
        if not folder.is_dir():
            raise EdgeganError(f"reference folder not found: {folder} (from '{spec}')")
        return "idx", folder.resolve(), split
    raise EdgeganError(f"unknown reference '{spec}'; {_REFERENCE_HELP}")


def load_reference_images(spec: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference digits as uint8 ``(N, 1, H, W)`` and labels ``(N,)`` (preprocessed later,
    by the same path as samples)."""
    from edgegan.data.idx import load_idx_split

    _, folder, split = parse_reference(spec)
    images, labels = load_idx_split(folder, split)
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)


def reference_stats(
    spec: str = "mnist:test", batch_size: int = 500, device: str = "cpu", size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Feature mean and covariance of a reference split (cached per process).

    ``size``: the samples' (square) size. Reference digits of another size are first resized
    to it as the training data are (Pillow bilinear, rounded to 8 bits), then take the
    samples' path to the classifier: a generator trained on digits at 64 px is measured
    against real digits at 64 px. (Taken 28 -> 32 directly, real digits at 64 px scored an
    FD of 1.7, seven times the sampling floor at 2,000 samples.)
    """
    kind, folder, split = parse_reference(spec)
    key = (kind, str(folder), split, str(torch.device(device)), size)
    if key not in _REFERENCE_STATS:
        images, _ = load_reference_images(spec)
        if len(images) < 2:
            raise EdgeganError(f"reference '{spec}' holds {len(images)} image(s); need >= 2")
        if size is not None and tuple(images.shape[-2:]) != (size, size):
            from edgegan.data.base import uint8_stack_to_tensor

            images = uint8_stack_to_tensor(images[:, 0].numpy(), size, 1)
        feats = clf.features(images, batch_size=batch_size, device=device)
        _REFERENCE_STATS[key] = feature_stats(feats)
    return _REFERENCE_STATS[key]


def _check_labels(labels: Any, n: int) -> torch.Tensor | None:
    if labels is None:
        return None
    if isinstance(labels, torch.Tensor):
        arr = labels.detach().cpu().numpy()
    else:
        arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise EdgeganError(f"labels must have shape ({n},), got {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise EdgeganError(f"labels must be integers, got dtype {arr.dtype}")
    y = torch.from_numpy(arr.astype(np.int64))
    lo, hi = (int(y.min()), int(y.max())) if n else (0, 0)
    if lo < -1 or hi >= clf.NUM_CLASSES:
        raise EdgeganError(
            f"labels must be digit classes 0..{clf.NUM_CLASSES - 1} (or -1 for none), "
            f"got {hi if hi >= clf.NUM_CLASSES else lo}"
        )
    return y


class DigitsMetric:
    """Frechet distance, class coverage and confidence of digit samples (see module doc)."""

    #: every score :meth:`compute` may give (``eval.best`` is checked against them)
    scores = ("fd", "coverage", "confidence", "class_entropy", "label_accuracy", "num_samples")

    name = "digits"

    def __init__(
        self, reference: str = "mnist:test", batch_size: int = 500, device: str = "cpu"
    ) -> None:
        parse_reference(reference)  # fail early on a bad spec
        if batch_size < 1:
            raise EdgeganError(f"batch_size must be >= 1, got {batch_size}")
        self.reference = reference
        self.batch_size = batch_size
        self.device = str(resolve_device(device, "device"))

    def compute(
        self, samples: Any, labels: Any = None, reference: str | None = None
    ) -> dict[str, float]:
        """Metrics of ``samples`` (``(N, C, H, W)`` in [-1, 1]); ``labels`` ``(N,)`` are the
        conditioning labels of a conditional generator (-1 where none); ``reference``
        overrides the metric's reference split."""
        n = len(samples)
        if n < 2:
            raise EdgeganError(f"need at least 2 samples to evaluate, got {n}")
        y = _check_labels(labels, n)
        if n <= clf.FEATURE_DIM:
            warnings.warn(
                f"an FD from {n} samples means little: with no more samples than the "
                f"classifier's {clf.FEATURE_DIM} features their covariance is rank-deficient "
                "(3 real digits scored worse than blank images); use 2,000 or more",
                stacklevel=caller_stacklevel(),
            )
        feats, logits = clf.features_and_logits(samples, self.batch_size, self.device)
        if not torch.isfinite(feats).all():
            raise EdgeganError("samples hold NaN or infinite values")
        h, w = samples.shape[-2:]
        size = int(h) if h == w else None
        mu_r, sigma_r = reference_stats(
            reference or self.reference, self.batch_size, self.device, size
        )
        fd = frechet_distance(*feature_stats(feats), mu_r, sigma_r)

        probs = torch.softmax(logits.double(), dim=1)
        pred = probs.argmax(dim=1)
        share = torch.bincount(pred, minlength=clf.NUM_CLASSES).double() / n
        nz = share[share > 0]
        entropy = float((nz * nz.log()).sum().neg()) / math.log(clf.NUM_CLASSES)
        out = {
            "fd": fd,
            "coverage": float((share >= MIN_CLASS_SHARE - 1e-12).double().mean()),
            "confidence": float(probs.max(dim=1).values.mean()),
            "class_entropy": min(max(entropy, 0.0), 1.0) + 0.0,  # + 0.0: no -0.0
        }
        if y is not None:
            known = y >= 0
            if known.any():
                out["label_accuracy"] = float((pred[known] == y[known]).double().mean())
        out["num_samples"] = int(n)
        return out
