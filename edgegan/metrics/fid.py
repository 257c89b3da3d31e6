"""The ``fid`` metric: FID, KID and IS in FID's Inception-v3, as papers report them.

- ``fid``: Frechet distance between Gaussians fitted to the 2048-d pool features of the
  samples and of the reference images (Heusel et al. 2017), the features pytorch-fid computes
  (:mod:`edgegan.metrics.inception`: the same network, bit for bit on the same weights);
- ``kid``, ``kid_std``: Kernel Inception Distance (Binkowski et al. 2018), the unbiased
  MMD^2 of the cubic polynomial kernel ``(x.y / 2048 + 1)^3``, averaged over ``kid_subsets``
  random subsets of ``kid_subset_size`` (fewer when either side has fewer images), as
  torch-fidelity and StudioGAN compute it; unbiased, so it can be compared across sample
  counts where FID cannot;
- ``is``, ``is_std``: the Inception Score of the samples (Salimans et al. 2016), as
  torch-fidelity computes it: the softmax of the 1008-class head without its bias (the
  original TensorFlow code's ``pool_3 @ W``), ``exp(E KL(p(y|x) || p(y)))`` over ``is_splits``
  splits of the samples shuffled by ``RandomState(2020)``; higher is better; no reference;
- ``precision``, ``recall``, ``density``, ``coverage``: fidelity and diversity in the same
  features with ``prdc_k`` nearest neighbours (:mod:`edgegan.metrics.prdc`, as StudioGAN
  reports them), against reference images (not statistics) of more than ``prdc_k`` images,
  as are the samples;
- ``num_samples``, ``num_reference``.

The reference is a folder of images or an ``.npz`` of images (what ``edgegan eval`` reads
as samples), the bundled digits (``mnist[:train|test]``, ``idx:FOLDER[:split]``, made RGB), or
a statistics ``.npz`` with ``mu`` and ``sigma`` (pytorch-fid's ``--save-stats`` files and
:func:`save_stats`'s; these give FID alone). Greyscale images are repeated to RGB.
Reference features are computed once a process.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgegan.errors import DataError, EdgeganError, caller_stacklevel
from edgegan.metrics import digits, inception
from edgegan.metrics import prdc as prdc_metrics
from edgegan.metrics.frechet import feature_stats, frechet_distance, frechet_distance_of_features
from edgegan.train.device import cudnn_flags, resolve_device

_REFERENCE_HELP = (
    "use a folder of images, an .npz of images or of statistics (mu, sigma), "
    "mnist[:train|test] or idx:FOLDER[:split]"
)

KID_WHOLE_MAX = 4096
"""Up to this many features a side, KID computes its kernel matrices once (128 MiB each)."""

# (weights, reference key, device) -> (features (N, 2048) float64, image size), or
# ((mu, sigma), None) of a statistics file; most recently used last. A long-lived process (a
# notebook that rewrites its reference folder) kept every version: 164 MB each for 10,000
# images. A new version of a reference replaces the old, and at most _CACHE_SIZE are kept.
_CACHE: OrderedDict[tuple[str, tuple[Any, ...], str], Any] = OrderedDict()
_CACHE_SIZE = 4


def _cached(key: tuple[str, tuple[Any, ...], str], value: Any) -> None:
    """Keep ``value`` for ``key``: older versions of its reference (the same weights, spec
    and device, other contents) go, and the least recently used beyond the size."""
    weights, (name, *_), device = key
    for old in [k for k in _CACHE if k[0] == weights and k[1][0] == name and k[2] == device]:
        del _CACHE[old]
    _CACHE[key] = value
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)


def _fp32_convolutions(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """Full-precision convolutions on CUDA: cuDNN's default TF32 would move the features off
    pytorch-fid's CPU ones (FP32) by about 1e-3 relative."""
    return cudnn_flags(allow_tf32=False) if device.type == "cuda" else contextlib.nullcontext()


def _rgb(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise EdgeganError(f"images must have shape (N, 1|3, H, W), got {tuple(images.shape)}")
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def _unit_range(x: torch.Tensor) -> torch.Tensor:
    """A batch in [0, 1], as pytorch-fid reads images: uint8 ``u`` and float images that are
    8-bit values ``u / 127.5 - 1`` (images read from files, generators' samples saved as 8
    bits) as ``u / 255``, its figures to the bit; other float images as ``(x + 1) / 2``.
    Where the batch lies: on the CPU for images read from files, as pytorch-fid divides
    (CUDA divides by a number through its reciprocal, a bit off for half the values)."""
    x = x.contiguous()  # a channels-last batch takes other kernels: 1e-5 apart
    if x.dtype == torch.uint8:
        return x.float() / 255
    x = x.float()
    u = ((x + 1) * 127.5).round_()
    if torch.equal(u / 127.5 - 1, x):  # the exact steps that made x from 8-bit values
        return u.div_(255)
    return (x + 1) / 2


def inception_features(
    images: Any,
    net: inception.FIDInceptionV3,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Pool features ``(N, 2048)`` float64 of images ``(N, 1|3, H, W)``, float in [-1, 1] or
    uint8 (a tensor on any device or a NumPy array), in batches on ``device``."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    images = _rgb(images.detach())
    device = torch.device(device)
    out = np.empty((len(images), inception.FEATURE_DIM), dtype=np.float64)
    with torch.no_grad(), _fp32_convolutions(device):
        for i in range(0, len(images), batch_size):
            x = _unit_range(images[i : i + batch_size]).to(device, non_blocking=True)
            out[i : i + len(x)] = net.features01(x).double().cpu().numpy()
    if not np.all(np.isfinite(out)):
        raise EdgeganError("images hold NaN or infinite values (their features do)")
    return out


def kernel_inception_distance(
    f1: np.ndarray, f2: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (mean, standard deviation over subsets) between features ``(N1, D)`` and
    ``(N2, D)``: the unbiased MMD^2 of the kernel ``(x.y / D + 1)^3`` on ``subsets`` random
    subsets of ``min(subset_size, N1, N2)`` rows of each."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        raise EdgeganError(f"KID needs at least 2 features on each side, got {len(f1)}, {len(f2)}")
    if subsets < 1:
        raise EdgeganError(f"kid_subsets must be >= 1, got {subsets}")
    d = f1.shape[1]
    rng = np.random.default_rng(seed)

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a @ b.T / d + 1.0) ** 3

    # Up to KID_WHOLE_MAX rows a side, the three kernel matrices once (each subset then
    # indexes them: 100 subsets of 1,000 cost 100x three 1000x2048x1000 products otherwise).
    whole = max(len(f1), len(f2)) <= KID_WHOLE_MAX
    if whole:
        k11, k22, k12 = kernel(f1, f1), kernel(f2, f2), kernel(f1, f2)
    mmds = np.empty(subsets)
    for s in range(subsets):
        i = rng.choice(len(f1), m, replace=False)
        j = rng.choice(len(f2), m, replace=False)
        if whole:
            a, b, c = k11[np.ix_(i, i)], k22[np.ix_(j, j)], k12[np.ix_(i, j)]
        else:
            a, b, c = kernel(f1[i], f1[i]), kernel(f2[j], f2[j]), kernel(f1[i], f2[j])
        off = (a.sum() - np.trace(a) + b.sum() - np.trace(b)) / (m * (m - 1))
        mmds[s] = off - 2.0 * c.mean()
    return float(mmds.mean()), float(mmds.std())


def inception_score(logits: np.ndarray, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """IS (mean, standard deviation over splits) of logits ``(N, C)``: rows shuffled by
    ``RandomState(seed)``, cut into ``min(splits, N)`` parts, each scoring
    ``exp(mean KL(p(y|x) || p(y)))`` with ``p(y)`` the part's mean prediction."""
    x = np.asarray(logits, np.float64)
    n = len(x)
    x = x[np.random.RandomState(seed).permutation(n)]
    log_p = x - x.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    parts = min(splits, n)
    scores = []
    for i in range(parts):
        lo, hi = i * n // parts, (i + 1) * n // parts
        q = p[lo:hi].mean(axis=0, keepdims=True)
        kl = (p[lo:hi] * (log_p[lo:hi] - np.log(q))).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def _reference_key(spec: str) -> tuple[Any, ...]:
    """What names a reference's content: the spec, and for a file its resolved path, size
    and modification time; for a folder those of each file in it (a file rewritten in place
    changes its own time, not the folder's)."""
    path = Path(spec).expanduser()
    if not path.exists():
        return (spec,)
    if path.is_dir():
        files = sorted((p.name, p.stat()) for p in path.iterdir() if p.is_file())
        return (str(path.resolve()), *((n, st.st_size, st.st_mtime_ns) for n, st in files))
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def check_reference(spec: Any, probe: bool = False) -> str:
    """``spec`` stripped, when it names a reference that can be read: a folder, an ``.npz``
    file or a digits spec (checked by the digits metric's parser); else one line saying why
    (before a run trains or a generator is sampled, not after). ``probe``: a folder's images
    are listed and their headers read (no pixels), so a folder without images, with an
    unreadable header or with images of different sizes fails now too."""
    if not isinstance(spec, str) or not spec.strip():
        raise EdgeganError(f"the fid metric needs a reference; {_REFERENCE_HELP}")
    spec = spec.strip()
    if digits.is_digits_reference(spec):
        digits.parse_reference(spec)
        return spec
    path = Path(spec).expanduser()
    if not path.exists():
        raise EdgeganError(f"reference not found: {path}; {_REFERENCE_HELP}")
    if path.is_file() and path.suffix.lower() != ".npz":
        raise EdgeganError(f"reference {path} is a file, not an .npz; {_REFERENCE_HELP}")
    if probe and path.is_dir():
        _probe_folder(path)
    return spec


def _probe_folder(folder: Path) -> None:
    """What :func:`~edgegan.metrics.evaluate.read_batches` would refuse of a reference
    folder, from the files' headers: none (or no image), an unreadable one, another size."""
    from edgegan.data.files import probe_headers
    from edgegan.metrics.evaluate import folder_images, npz_of_folder, size_mismatch

    if npz_of_folder(folder) is not None:
        return
    files = folder_images(folder)
    first: tuple[int, int] | None = None
    for p, size in zip(files, probe_headers(files), strict=True):
        if isinstance(size, str):  # the header does not read
            raise DataError(size)
        first = first or size
        if size != first:
            raise EdgeganError(size_mismatch(files[0], first, p, size))


def _load_reference(spec: str) -> tuple[str, Any]:
    """``("stats", (mu, sigma))``, ``("files", image files)`` of a folder (read a batch at a
    time: a 50,000-image reference need not fit in memory) or ``("images", tensor (N, C, H,
    W))``: uint8 as stored (digits, a uint8 ``.npz``) or float in [-1, 1]."""
    from edgegan.metrics.evaluate import folder_images, npz_of_folder, read_images

    spec = check_reference(spec)
    if digits.is_digits_reference(spec):
        return "images", digits.load_reference_images(spec)[0]
    path = Path(spec).expanduser()
    if path.is_file():
        stats = _read_stats(path)
        if stats is not None:
            return "stats", stats
    elif npz_of_folder(path) is None:
        return "files", folder_images(path)
    return "images", read_images(path)[0]


def _read_stats(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``(mu, sigma)`` of a statistics file, or None for an ``.npz`` without them."""
    from edgegan.metrics.evaluate import npz_arrays

    arrays = npz_arrays(path, ("mu", "sigma"))  # the shapes are checked before any read
    if "mu" not in arrays or "sigma" not in arrays:
        return None
    d = inception.FEATURE_DIM
    shapes = arrays["mu"][1], arrays["sigma"][1]
    if shapes != ((d,), (d, d)):
        raise EdgeganError(
            f"{path}: statistics of {d}-d Inception pool features need mu ({d},) and sigma "
            f"({d}, {d}), got {shapes[0]} and {shapes[1]}"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
    except (OSError, ValueError, EOFError) as exc:
        raise EdgeganError(f"cannot read {path} as .npz: {exc}") from None
    return mu, sigma


class FidMetric:
    """FID and KID of samples against a reference (see the module doc)."""

    name = "fid"
    #: every score :meth:`compute` may give (``eval.best`` is checked against them)
    scores = ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "is",
              "is_std", "num_samples", "num_reference")  # fmt: skip

    def __init__(
        self,
        reference: str | None = None,
        weights: str | None = None,
        batch_size: int = 64,
        device: str = "auto",
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        is_splits: int = 10,
        prdc_k: int = 5,
    ) -> None:
        counts = {"batch_size": batch_size, "kid_subsets": kid_subsets,
                  "kid_subset_size": kid_subset_size, "is_splits": is_splits,
                  "prdc_k": prdc_k}  # fmt: skip
        least_of = {"kid_subset_size": 2, "prdc_k": 0}  # an unbiased MMD needs 2 a side
        for key, value in counts.items():
            least = least_of.get(key, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise EdgeganError(f"{key} must be an integer >= {least}, got {value!r}")
        self.weights = inception.find_weights(weights)  # no weights: fail before any work
        # a bad reference too: before a run trains or a generator is sampled
        self.reference = None if reference is None else check_reference(reference, probe=True)
        self.batch_size, self.kid_subsets, self.kid_subset_size = (
            batch_size, kid_subsets, kid_subset_size
        )  # fmt: skip
        self.is_splits, self.prdc_k = is_splits, prdc_k
        self.device = resolve_device(device, "device")
        if not inception.is_standard_weights(self.weights):
            warnings.warn(
                f"{self.weights} is not pytorch-fid's {inception.WEIGHTS_NAME} (its SHA-256 "
                f"does not start with {inception.WEIGHTS_SHA256_PREFIX}): its FIDs cannot be "
                "compared with published ones",
                stacklevel=caller_stacklevel(),
            )
        self._net: inception.FIDInceptionV3 | None = None
        # id(reference features) -> (those features, k, their radii): a validation every N
        # steps compares new samples against the same reference
        self._radii: dict[int, tuple[np.ndarray, int, np.ndarray]] = {}

    @property
    def net(self) -> inception.FIDInceptionV3:
        """The network, loaded on first use (building the metric only finds its weights)."""
        if self._net is None:
            self._net = inception.load_inception(self.weights, self.device)
        return self._net

    def features(self, images: Any) -> np.ndarray:
        """Inception pool features of images ``(N, 1|3, H, W)`` in [-1, 1]."""
        return inception_features(images, self.net, self.batch_size, self.device)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """The 1008-class logits of pool features, without the head's bias (what the
        Inception Score's original code and torch-fidelity's ``logits_unbiased`` use)."""
        weight = self.net.fc.weight.detach().double().cpu().numpy()
        return np.asarray(features, np.float64) @ weight.T

    def reference_features(self, spec: str) -> Any:
        """Features ``(N, 2048)`` of a reference's images, or ``(mu, sigma)`` of a
        statistics file (cached per process)."""
        return self._reference(spec)[0]

    def _reference(self, spec: str) -> tuple[Any, tuple[int, int] | None]:
        """:meth:`reference_features` and the reference images' size (None: statistics)."""
        key = (str(self.weights.resolve()), _reference_key(spec), str(self.device))
        if key not in _CACHE:
            kind, value = _load_reference(spec)
            size = None
            if kind != "stats" and len(value) < 2:
                raise EdgeganError(f"reference '{spec}' holds {len(value)} image(s); need >= 2")
            if kind == "files":
                from edgegan.metrics.evaluate import read_batches

                chunks = []
                for b in read_batches(value, self.batch_size):  # (n, H, W, C) uint8
                    size = size or (int(b.shape[1]), int(b.shape[2]))
                    chunks.append(self.features(torch.from_numpy(b).permute(0, 3, 1, 2)))
                value = np.concatenate(chunks)
            elif kind == "images":
                size = (int(value.shape[-2]), int(value.shape[-1]))
                value = self.features(value)
            _cached(key, (value, size))
        _CACHE.move_to_end(key)
        return _CACHE[key]

    def compute(
        self, samples: Any, labels: Any = None, reference: str | None = None
    ) -> dict[str, float]:
        """FID and KID of ``samples`` (``(N, C, H, W)`` in [-1, 1]; ``labels`` are not used)
        against ``reference`` (or the metric's own)."""
        del labels  # FID is unconditional
        n = len(samples)
        if n < 2:
            raise EdgeganError(f"need at least 2 samples to evaluate, got {n}")
        spec = reference or self.reference
        if not spec:
            raise EdgeganError(f"the fid metric needs a reference; {_REFERENCE_HELP}")
        if n <= inception.FEATURE_DIM:
            warnings.warn(
                f"an FID from {n} samples means little: with no more samples than the "
                f"{inception.FEATURE_DIM} Inception features their covariance is "
                "rank-deficient; compare KIDs, or use 10,000 or more (papers: 50,000)",
                stacklevel=caller_stacklevel(),
            )
        ref, size = self._reference(spec)
        if size is not None and size != tuple(samples.shape[-2:]):
            h, w = samples.shape[-2:]
            warnings.warn(
                f"the reference images are {size[1]}x{size[0]}, the samples {w}x{h}: both are "
                "resized to 299x299, and the FID measures the sizes' difference in sharpness "
                "too; give reference images at the samples' size",
                stacklevel=caller_stacklevel(),
            )
        feats = self.features(samples)
        out = self.compare(feats, ref)
        out["is"], out["is_std"] = inception_score(self.logits(feats), self.is_splits)
        out["num_samples"] = int(n)
        if not isinstance(ref, tuple):
            out["num_reference"] = int(len(ref))
        return out

    def _real_radii(self, reference: np.ndarray, k: int) -> np.ndarray:
        """The reference's k-th neighbour radii, kept while its features are the same array."""
        hit = self._radii.get(id(reference))
        if hit is None or hit[0] is not reference or hit[1] != k:
            # (each entry holds its reference's features: two, a translation's domains;
            # more kept features the cache above had let go)
            if len(self._radii) >= 2:
                self._radii.clear()
            radii = prdc_metrics.nearest_neighbour_radii(np.asarray(reference, np.float64), k)
            hit = self._radii[id(reference)] = (reference, k, radii)
        return hit[2]

    def compare(self, features: np.ndarray, reference: Any) -> dict[str, float]:
        """``fid`` (and ``kid``, ``kid_std``, ``precision``, ``recall``, ``density``,
        ``coverage`` when ``reference`` is features, not statistics) of sample features
        against reference features ``(N, 2048)`` or ``(mu, sigma)``."""
        if isinstance(reference, tuple):
            return {"fid": frechet_distance(*feature_stats(features), *reference)}
        kid, kid_std = kernel_inception_distance(
            features, reference, self.kid_subsets, self.kid_subset_size
        )
        out = {"fid": frechet_distance_of_features(features, reference), "kid": kid,
               "kid_std": kid_std}  # fmt: skip
        if self.prdc_k:
            k = self.prdc_k
            if min(len(features), len(reference)) > k:
                radii = self._real_radii(reference, k)
                out.update(prdc_metrics.prdc(reference, features, k, real_radii=radii))
            else:
                warnings.warn(
                    f"precision, recall, density and coverage need more than prdc_k={k} "
                    f"images a side (got {len(features)} and {len(reference)}): left out",
                    stacklevel=caller_stacklevel(),
                )
        return out


def save_stats(
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    weights: str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    overwrite: bool = False,
) -> Path:
    """Write the FID statistics (``mu``, ``sigma``, pytorch-fid's keys) of a reference's
    images to ``out`` (an ``.npz``, written atomically), to score against later without
    reading the images again. An existing ``out`` is replaced only with ``overwrite``, and
    never when it is ``images`` itself (an ``.npz`` of samples)."""
    from edgegan.fileio import atomic_write, same_path

    out = Path(out).expanduser()
    if out.suffix.lower() != ".npz":
        raise EdgeganError(f"statistics are written as .npz, got {out}")
    source = Path(images).expanduser()
    if out.exists() and source.exists() and same_path(out, source):
        raise EdgeganError(f"{out} is what SAMPLES names: write the statistics elsewhere")
    if out.exists() and not overwrite:
        raise EdgeganError(
            f"{out} exists: choose another file, or replace it with --overwrite (overwrite=True)"
        )
    metric = FidMetric(weights=weights, batch_size=batch_size, device=device)
    ref = metric.reference_features(str(images))
    if isinstance(ref, tuple):
        raise EdgeganError(f"{images} holds statistics already")
    mu, sigma = feature_stats(ref)
    return atomic_write(out, lambda f: np.savez(f, mu=mu, sigma=sigma, num=np.int64(len(ref))))
