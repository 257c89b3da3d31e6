"""The ``aligned`` dataset: pix2pix's A|B images side by side, read as the reference does."""

from __future__ import annotations

import inspect
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgegan.data import plugin as data_plugin
from edgegan.data import transforms as T
from edgegan.data.aligned import AlignedImageDataset, build_aligned
from edgegan.data.base import DataWarning
from edgegan.errors import DataError, EdgeganError
from edgegan.plugins.manager import get_manager


def _halves(seed: int, size: tuple[int, int], grey: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A random half A and, as B, its negative (255 - A): in [-1, 1], ``B == -A`` pixel for
    pixel, which only a crop and flip shared by both halves keeps."""
    w, h = size
    shape = (h, w) if grey else (h, w, 3)
    a = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    return a, 255 - a


def _write_pair(path: Path, a: np.ndarray, b: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([a, b], axis=1)).save(path)
    return path


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """train/: 4 RGB pairs of 16x16 halves (one in a subfolder); test/ and val/: 2 each;
    B is always 255 - A."""
    base = tmp_path / "data"
    for i, name in enumerate(["p0.png", "p1.png", "sub/p2.png", "p3.png"]):
        _write_pair(base / "train" / name, *_halves(i, (16, 16)))
    for split in ("test", "val"):
        for i in range(2):
            _write_pair(base / split / f"t{i}.png", *_halves(10 + i, (16, 16)))
    return base


def _as_float(pixels: np.ndarray) -> torch.Tensor:
    return T.to_tensor(pixels)


def _negatives(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``b == -a`` up to float32 rounding (255 - x and x scaled to [-1, 1] apart)."""
    return bool(torch.allclose(b, -a, rtol=0.0, atol=1e-6))


def test_halves_split_and_direction(tmp_path):
    a0, b0 = _halves(0, (12, 10))
    b0 = np.random.default_rng(99).integers(0, 256, b0.shape, dtype=np.uint8)  # unrelated B
    _write_pair(tmp_path / "test" / "x.png", a0, b0)
    ds = build_aligned(str(tmp_path), split="test", load_size=12, crop_size=12, flip=False)
    assert isinstance(ds, AlignedImageDataset) and len(ds) == 1
    assert ds.paired is True and ds.num_classes == 0 and ds.class_names == []
    assert ds.image_shape == (3, 12, 12) and ds.image_shape_b == (3, 12, 12)
    item = ds[0]
    assert set(item) == {"A", "B", "A_path", "B_path"}
    assert item["A_path"] == item["B_path"] == str(tmp_path / "test" / "x.png")
    # halves 12x10 resized whole to 12x12 (test split), each from its own half
    expect_a = T.to_tensor(T.resize(Image.fromarray(a0), 12))
    expect_b = T.to_tensor(T.resize(Image.fromarray(b0), 12))
    assert torch.equal(item["A"], expect_a) and torch.equal(item["B"], expect_b)
    swapped = build_aligned(str(tmp_path), "test", 12, 12, direction="BtoA")[0]
    assert torch.equal(swapped["A"], expect_b) and torch.equal(swapped["B"], expect_a)
    assert ds[-1]["A_path"] == item["A_path"]
    with pytest.raises(IndexError):
        ds[1]


def test_listing_is_recursive_sorted_and_limited(root):
    ds = build_aligned(str(root), load_size=16, crop_size=8)
    assert [Path(p).relative_to(root / "train").as_posix() for p in ds.paths] == [
        "p0.png",
        "p1.png",
        "p3.png",
        "sub/p2.png",
    ]
    assert ds.root == root and ds.split == "train" and ds.train is True
    assert ds.preprocess == "resize_and_crop" and ds.load_size == 16 and ds.crop_size == 8
    assert "AlignedImageDataset(4 pairs" in repr(ds) and "train split" in repr(ds)
    limited = build_aligned(str(root), load_size=16, crop_size=8, limit=2)
    assert len(limited) == 2 and limited.paths == ds.paths[:2]


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_train_crop_and_flip_are_shared(root, direction):
    """Cropped without resizing (load_size = the halves' 16): B == -A, at every
    position and flip drawn, which a crop or flip of its own for B would break."""
    ds = build_aligned(str(root), load_size=16, crop_size=8, direction=direction)
    ds.rng = random.Random(3)
    firsts = []
    for _ in range(6):
        for i in range(len(ds)):
            item = ds[i]
            assert item["A"].shape == item["B"].shape == (3, 8, 8)
            assert _negatives(item["A"], item["B"])
            if i == 0:
                firsts.append(item["A"])
    assert any(not torch.equal(firsts[0], x) for x in firsts[1:])  # the draws vary


def test_train_draws_are_the_references_get_params(root):
    """x = randint, y = randint, flip = random() > 0.5, once per item, for both halves; the
    flip is drawn even with flip=false, so the crops do not depend on it."""
    a, b = _halves(0, (16, 16))
    ds = build_aligned(str(root), load_size=16, crop_size=8)
    ds.rng = random.Random(5)
    mirror = random.Random(5)
    flips = set()
    for _ in range(12):
        x, y = mirror.randint(0, 8), mirror.randint(0, 8)
        flip = mirror.random() > 0.5
        flips.add(flip)
        crop_a = a[y : y + 8, x : x + 8]
        crop_b = b[y : y + 8, x : x + 8]
        if flip:
            crop_a, crop_b = crop_a[:, ::-1], crop_b[:, ::-1]
        item = ds[0]
        assert torch.equal(item["A"], _as_float(crop_a))
        assert torch.equal(item["B"], _as_float(crop_b))
    assert flips == {True, False}
    unflipped = build_aligned(str(root), load_size=16, crop_size=8, flip=False)
    unflipped.rng = random.Random(5)
    mirror = random.Random(5)
    for _ in range(6):
        x, y = mirror.randint(0, 8), mirror.randint(0, 8)
        mirror.random()
        assert torch.equal(unflipped[0]["A"], _as_float(a[y : y + 8, x : x + 8]))
    # Python's global stream when no rng is set: seeded, reproducible
    ds.rng = None
    random.seed(1)
    first = [ds[1]["A"] for _ in range(4)]
    random.seed(1)
    again = [ds[1]["A"] for _ in range(4)]
    assert any(not torch.equal(first[0], x) for x in first[1:])
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))


@pytest.mark.parametrize("preprocess", ["resize_and_crop", "scale_width_and_crop", "crop"])
def test_train_preprocess_modes_keep_the_pairs_aligned(tmp_path, preprocess):
    """Resized halves (bicubic, 16x12 -> load_size 20) stay each other's negative to a level
    of rounding; a crop of B at another position would not."""
    for i in range(3):
        _write_pair(tmp_path / "train" / f"{i}.png", *_halves(i, (16, 12)))
    load = 16 if preprocess == "crop" else 20
    ds = build_aligned(str(tmp_path), load_size=load, crop_size=10, preprocess=preprocess)
    ds.rng = random.Random(0)
    for _ in range(4):
        for i in range(3):
            item = ds[i]
            assert item["A"].shape == item["B"].shape == (3, 10, 10)
            assert float((item["A"] + item["B"]).abs().max()) <= 1.5 / 127.5


def test_test_and_val_splits_are_deterministic(root):
    state = random.getstate()
    for split in ("test", "val"):
        ds = build_aligned(str(root), split=split, load_size=16, crop_size=8)
        assert ds.train is False and len(ds) == 2
        for i in range(2):
            a, _ = _halves(10 + i, (16, 16))
            item = ds[i]
            # the whole half resized to crop_size: no crop, no flip
            assert torch.equal(item["A"], T.to_tensor(T.resize(Image.fromarray(a), 8)))
            assert torch.equal(item["A"], ds[i]["A"]) and torch.equal(item["B"], ds[i]["B"])
    assert random.getstate() == state  # nothing drawn
    # the other modes: the centre crop_size square
    ds = build_aligned(str(root), split="test", load_size=16, crop_size=8, preprocess="crop")
    a, b = _halves(10, (16, 16))
    assert torch.equal(ds[0]["A"], _as_float(a[4:12, 4:12]))
    assert torch.equal(ds[0]["B"], _as_float(b[4:12, 4:12]))


def test_channels_per_half(tmp_path):
    a, b = _halves(7, (8, 8))
    _write_pair(tmp_path / "train" / "rgb.png", a, b)
    ds = build_aligned(str(tmp_path), load_size=8, crop_size=8, channels_a=1, channels_b=3)
    ds.rng = random.Random(0)
    assert ds.image_shape == (1, 8, 8) and ds.image_shape_b == (3, 8, 8)
    item = ds[0]
    assert item["A"].shape == (1, 8, 8) and item["B"].shape == (3, 8, 8)
    grey_a = np.asarray(Image.fromarray(a).convert("L"))
    flipped = bool(torch.equal(item["B"], _as_float(b[:, ::-1])))
    assert flipped or torch.equal(item["B"], _as_float(b))
    assert torch.equal(item["A"], _as_float(grey_a[:, ::-1] if flipped else grey_a))
    # grey files read as grey on both sides, or repeated to RGB
    ga, gb = _halves(8, (8, 8), grey=True)
    _write_pair(tmp_path / "test" / "grey.png", ga, gb)
    grey = build_aligned(str(tmp_path), "test", 8, 8, channels_a=1, channels_b=1)[0]
    assert torch.equal(grey["A"], _as_float(ga)) and torch.equal(grey["B"], _as_float(gb))
    rgb = build_aligned(str(tmp_path), "test", 8, 8)[0]
    assert torch.equal(rgb["B"], _as_float(gb).expand(3, -1, -1))


def test_errors_name_the_problem(root, tmp_path):
    where = "dataset 'aligned': "
    with pytest.raises(DataError, match=r"aligned.*train/.*data\.root=DIR"):
        build_aligned("")
    with pytest.raises(DataError, match="image folder not found: .*nowhere"):
        build_aligned(str(tmp_path / "nowhere"))
    cases = [
        ({"direction": "AtoC"}, "direction must be AtoB .* or BtoA, got 'AtoC'"),
        ({"channels_a": 2}, r"channels_a must be 1 \(grey\) or 3 \(RGB\), got 2"),
        ({"channels_b": True}, "channels_b must be 1"),
        ({"load_size": 8, "crop_size": 10}, r"crop_size \(10\) must not exceed load_size \(8\)"),
        ({"split": "valid"}, "unknown split 'valid'; splits: train, val, test"),
        ({"preprocess": "none"}, "preprocess must be one of resize_and_crop"),
        ({"limit": -1}, "limit must be an integer >= 0"),
        ({"load_size": 0}, "load_size must be an integer in 1..4096"),
    ]
    for params, message in cases:
        with pytest.raises(DataError, match=where + message):
            build_aligned(str(root), **params)
    lone = tmp_path / "lone"
    (lone / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no images in .*lone/train"):
        build_aligned(str(lone))
    with pytest.raises(DataError, match=where + r"no test/ folder in .*lone .*\(it has train/\)"):
        build_aligned(str(lone), split="test")
    # a file of odd width cannot hold two equal halves: found when the dataset is built
    Image.new("RGB", (17, 8)).save(root / "train" / "odd.png")
    with pytest.raises(DataError, match=where + r"1 image\(s\) in .* odd width \(first: odd"):
        build_aligned(str(root), load_size=16, crop_size=8)
    (root / "train" / "odd.png").unlink()
    # preprocess=crop takes crops of the halves as they are: each must hold one
    Image.new("RGB", (12, 20)).save(root / "train" / "narrow.png")
    with pytest.raises(DataError, match=r"halves smaller than crop_size 8 .*narrow.png, 12x20"):
        build_aligned(str(root), load_size=16, crop_size=8, preprocess="crop")
    build_aligned(str(root), load_size=16, crop_size=8)  # resized first: fine


def test_skip_bad(root):
    (root / "train" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"bad\.png.*skip_bad"):
        build_aligned(str(root), load_size=16, crop_size=8)
    with pytest.warns(DataWarning, match="skipped 1"):
        ds = build_aligned(str(root), load_size=16, crop_size=8, skip_bad=True)
    assert len(ds) == 4 and ds.skipped == [str(root / "train" / "bad.png")]
    # a file that breaks after the header check is replaced by the next good one
    good = root / "train" / "p0.png"
    good.write_bytes(good.read_bytes()[:80])
    (root / "train" / "bad.png").unlink()
    strict = build_aligned(str(root), load_size=16, crop_size=8)  # headers all read
    with pytest.raises(DataError, match=r"p0\.png.*data\.skip_bad=true"):
        strict[0]
    with pytest.warns(DataWarning, match="p0.png"):
        item = ds[0]
    assert item["A_path"].endswith("p1.png") and _negatives(item["A"], item["B"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ds[0]["A_path"].endswith("p1.png")  # known bad now: no second warning
    assert ds.skipped[-1].endswith("p0.png")


def test_files_that_fail_when_decoded_warn_once_where_read_and_are_left_out(root):
    """Two files broken after their headers: one warning, pointing at the line that read
    the item, and each file tried once. (mutation testing: a warning for every such file,
    one pointing into edgegan, and known-bad files decoded again at every read, which the
    skipped list then named twice, all passed the suite.)"""
    for name in ("p0.png", "p1.png"):
        path = root / "train" / name
        path.write_bytes(path.read_bytes()[:80])
    ds = build_aligned(str(root), load_size=16, crop_size=8, skip_bad=True)
    with pytest.warns(DataWarning, match="p0.png") as seen:
        item = ds[0]
    assert item["A_path"].endswith("p3.png")  # p0, p1 broken: the next good one
    assert len(seen) == 1 and seen[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            assert ds[0]["A_path"].endswith("p3.png") and ds[1]["A_path"].endswith("p3.png")
    assert ds.skipped == [str(root / "train" / "p0.png"), str(root / "train" / "p1.png")]


def test_registry_builds_aligned(root):
    datasets = get_manager().registry("datasets")
    params = {"root": str(root), "load_size": 16, "crop_size": 8, "channels_b": 1}
    ds = datasets.build("aligned", params, {"split": "train"})
    assert isinstance(ds, AlignedImageDataset) and len(ds) == 4
    assert ds.image_shape == (3, 8, 8) and ds.image_shape_b == (1, 8, 8)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["A"].shape == (2, 3, 8, 8) and batch["B"].shape == (2, 1, 8, 8)
    test = datasets.build("aligned", {**params, "direction": "BtoA"}, {"split": "test"})
    assert test.split == "test" and test.direction == "BtoA" and test.paired is True
    with pytest.raises(EdgeganError, match="set by the task"):
        datasets.build("aligned", {**params, "split": "test"}, {"split": "train"})


def test_plugin_signature_mirrors_the_dataset():
    def params(f):
        return [(p.name, p.default) for p in inspect.signature(f).parameters.values()]

    assert params(data_plugin.aligned) == params(build_aligned)
    hints = inspect.signature(data_plugin.aligned).parameters
    assert hints["direction"].annotation == "str" and hints["flip"].annotation == "bool"


def test_a_large_jpeg_pair_loads_at_a_draft_scale_that_rounds_its_width(tmp_path):
    """A JPEG is decoded at a reduced scale (draft) for speed: 2302 px at 1/4 is 576 but at
    1/2 is 1151, odd, which must not pass for a file of odd width (the header says 2302)."""
    rng = np.random.default_rng(0)
    pair = rng.integers(0, 256, (1200, 2302, 3), dtype=np.uint8)
    (tmp_path / "train").mkdir()
    Image.fromarray(pair).save(tmp_path / "train" / "x.jpg", quality=90)
    ds = build_aligned(root=str(tmp_path), load_size=286, crop_size=256)
    item = ds[0]
    assert item["A"].shape == item["B"].shape == (3, 256, 256)
