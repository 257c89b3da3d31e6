"""Precision, recall, density and coverage: the authors' formulas (clovaai's ``prdc``
package, written out here with full distance matrices) on both the one-block and the
many-block paths, and what they say of known distributions."""

from __future__ import annotations

import numpy as np
import pytest

from edgegan.errors import EdgeganError
from edgegan.metrics import prdc as prdc_mod
from edgegan.metrics.prdc import nearest_neighbour_radii, prdc


def _by_the_package(real, fake, k):
    """``prdc.compute_prdc`` as published: sklearn's Euclidean distances, the (k+1)-th
    smallest of each row (the row itself included) by argpartition."""

    def dist(x, y):
        return np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))

    def kth(unsorted, k):
        idx = np.argpartition(unsorted, k, axis=-1)[..., :k]
        return np.take_along_axis(unsorted, idx, axis=-1).max(axis=-1)

    real_r, fake_r = kth(dist(real, real), k + 1), kth(dist(fake, fake), k + 1)
    d = dist(real, fake)
    return {
        "precision": (d < real_r[:, None]).any(axis=0).mean(),
        "recall": (d < fake_r[None, :]).any(axis=1).mean(),
        "density": (1.0 / k) * (d < real_r[:, None]).sum(axis=0).mean(),
        "coverage": (d.min(axis=1) < real_r).mean(),
    }


@pytest.mark.parametrize("k", [1, 3, 5])
def test_prdc_is_the_packages_on_both_paths(monkeypatch, k) -> None:
    rng = np.random.default_rng(k)
    real, fake = rng.normal(size=(70, 6)), rng.normal(0.4, 1.3, size=(50, 6))
    want = _by_the_package(real, fake, k)
    assert prdc(real, fake, k) == pytest.approx(want, abs=1e-12)
    monkeypatch.setattr(prdc_mod, "BLOCK_ELEMENTS", 64)  # blocks of one or a few rows
    assert prdc(real, fake, k) == pytest.approx(want, abs=1e-12)
    assert 0 < want["precision"] < 1 and 0 < want["recall"] < 1  # not a trivial case


def test_what_prdc_says_of_known_distributions() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 4))
    same = prdc(real, rng.normal(size=(400, 4)))
    collapsed = prdc(real, rng.normal(0, 0.1, size=(400, 4)))  # all near the mode
    off = prdc(real, rng.normal(4, 1, size=(400, 4)))
    # (measured: 0.985, 0.9875, 0.975, 0.9935; collapsed 1.0, 0.0025, 0.0675, 1.29; off 0s)
    assert same["precision"] > 0.9 and same["recall"] > 0.9 and same["coverage"] > 0.9
    assert 0.8 < same["density"] < 1.2
    assert collapsed["precision"] > 0.95 and collapsed["recall"] < 0.1
    assert collapsed["coverage"] < 0.2 and collapsed["density"] > 1.15  # crowded at the mode
    assert off["precision"] < 0.05 and off["coverage"] < 0.05
    assert prdc(real, real)["coverage"] == 1.0


def test_radii_leave_each_row_itself_out() -> None:
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert nearest_neighbour_radii(x, 1) == pytest.approx([1.0, 1.0, 4.0, 16.0])
    assert nearest_neighbour_radii(x, 2) == pytest.approx([9.0, 4.0, 9.0, 36.0])


def test_too_few_features_or_a_bad_k_is_one_line() -> None:
    x = np.zeros((5, 2))
    with pytest.raises(EdgeganError, match="more than 5 features a side, got 5 real and 9"):
        prdc(x, np.zeros((9, 2)), 5)
    with pytest.raises(EdgeganError, match="k >= 1"):
        prdc(x, x, 0)


def test_a_distance_equal_to_a_radius_is_outside_the_ball() -> None:
    """The package's strict ``<``: on a grid, the real point 6 (its ball reaching 4 and 8)
    does not hold the sample at 8 exactly on its border."""
    real, fake = np.array([[0.0], [2.0], [4.0], [6.0]]), np.array([[8.0], [10.0], [12.0]])
    got = prdc(real, fake, 1)
    assert got == pytest.approx(_by_the_package(real, fake, 1), abs=0)
    assert got == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
