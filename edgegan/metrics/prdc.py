"""Precision, recall, density and coverage of samples against real images, in feature space.

- ``precision`` (Kynkaanniemi et al. 2019): the share of samples inside the real manifold,
  the union of balls around each real feature reaching its ``k``-th nearest real neighbour:
  fidelity;
- ``recall``: the share of real features inside the samples' manifold (balls to each
  sample's ``k``-th nearest sample): diversity;
- ``density`` (Naeem et al. 2020): how many real balls hold each sample, over ``k``,
  averaged (about 1 when the samples follow the real distribution; above 1 when they crowd
  where the reals are dense), less swayed by outliers than precision;
- ``coverage``: the share of real balls holding at least one sample.

As the authors' ``prdc`` package computes them (clovaai/generative-evaluation-prdc,
``compute_prdc``; StudioGAN reports them with ``k = 5`` in Inception features), with the
Euclidean distances computed in blocks of rows so that memory stays bounded: 10,000 features
a side would take 800 MB a matrix at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from edgegan.errors import EdgeganError

BLOCK_ELEMENTS = 2**24
"""Distances held at once (float64: 128 MiB)."""


def _blocks(n: int, width: int) -> Iterator[slice]:
    step = max(1, BLOCK_ELEMENTS // max(width, 1))
    for i in range(0, n, step):
        yield slice(i, min(n, i + step))


def _squared_distances(a: np.ndarray, b: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """``|a_i - b_j|^2`` for rows of ``a`` and ``b`` (``b2``: the squared norms of ``b``),
    clipped at 0 (the expansion can round below it)."""
    d = (a * a).sum(axis=1)[:, None] + b2[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0, out=d)


def nearest_neighbour_radii(features: np.ndarray, k: int) -> np.ndarray:
    """The squared distance of each row to its ``k``-th nearest other row."""
    sq = (features * features).sum(axis=1)
    out = np.empty(len(features))
    for rows in _blocks(len(features), len(features)):
        d = _squared_distances(features[rows], features, sq)
        out[rows] = np.partition(d, k, axis=1)[:, k]  # index 0: the row itself, at 0
    return out


def prdc(
    real: np.ndarray, fake: np.ndarray, k: int = 5, real_radii: np.ndarray | None = None
) -> dict[str, float]:
    """``precision``, ``recall``, ``density`` and ``coverage`` of ``fake`` features
    ``(M, D)`` against ``real`` features ``(N, D)`` with ``k`` nearest neighbours (both sides
    need more than ``k`` rows). ``real_radii``: ``nearest_neighbour_radii(real, k)`` when the
    caller keeps them (a validation every N steps against one reference: the N x N distances
    once)."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if k < 1:
        raise EdgeganError(f"prdc needs k >= 1, got {k}")
    if min(len(real), len(fake)) <= k:
        raise EdgeganError(
            f"precision and recall with k = {k} need more than {k} features a side, got "
            f"{len(real)} real and {len(fake)} generated"
        )
    real_r = nearest_neighbour_radii(real, k) if real_radii is None else real_radii
    fake_r = nearest_neighbour_radii(fake, k)
    fake_sq = (fake * fake).sum(axis=1)
    balls_holding = np.zeros(len(fake))  # per sample: real balls that hold it
    recalled = np.zeros(len(real), dtype=bool)
    covered = np.zeros(len(real), dtype=bool)
    for rows in _blocks(len(real), len(fake)):
        d = _squared_distances(real[rows], fake, fake_sq)
        balls_holding += (d < real_r[rows, None]).sum(axis=0)
        recalled[rows] = (d < fake_r[None, :]).any(axis=1)
        covered[rows] = d.min(axis=1) < real_r[rows]
    return {
        "precision": float((balls_holding > 0).mean()),
        "recall": float(recalled.mean()),
        "density": float(balls_holding.mean() / k),
        "coverage": float(covered.mean()),
    }
