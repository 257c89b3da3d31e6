"""The CycleGAN datasets: ``unpaired`` image folders and the ``cyclegan-digits`` demo."""

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
from edgegan.data.base import DataWarning, unit_from_uint8
from edgegan.data.digits_domains import (
    build_cyclegan_digits,
    dilate,
    to_domain_b,
    write_cyclegan_digits_folder,
)
from edgegan.data.mnist import build_mnist
from edgegan.data.transforms import to_tensor, to_uint8
from edgegan.data.unpaired import UnpairedImageDataset, build_unpaired
from edgegan.errors import DataError
from edgegan.plugins.manager import PluginManager


def _write(path: Path, size: tuple[int, int], mode: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    w, h = size
    shape = (h, w) if mode == "L" else (h, w, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)


@pytest.fixture()
def folders(tmp_path: Path) -> Path:
    """trainA: 3 grey images (non-square); trainB: 5 RGB ones; testA/testB paired by name."""
    root = tmp_path / "data"
    for i in range(3):
        _write(root / "trainA" / f"a{i}.png", (20 + i, 12), "L", i)
    for i in range(5):
        _write(root / "trainB" / f"b{i}.jpg", (16, 24 + i), "RGB", 10 + i)
    for i in range(4):
        _write(root / "testA" / f"x{i}.png", (16, 16), "RGB", 20 + i)
        _write(
            root / "testB" / f"x{i}.jpg" if i % 2 else root / "testB" / f"x{i}.png",
            (18, 18),
            "RGB",
            30 + i,
        )
    return root


def test_unpaired_train_shapes_length_and_sampling(folders):
    ds = build_unpaired(str(folders), load_size=14, crop_size=10, channels_a=1, channels_b=3)
    assert isinstance(ds, UnpairedImageDataset)
    assert len(ds) == 5  # max(len(A), len(B))
    assert ds.image_shape == (1, 10, 10) and ds.image_shape_b == (3, 10, 10)
    assert ds.num_classes == 0 and ds.class_names == [] and ds.paired is False
    item = ds[4]
    assert set(item) == {"A", "B", "A_path", "B_path"}
    assert item["A"].shape == (1, 10, 10) and item["B"].shape == (3, 10, 10)
    assert item["A"].dtype == torch.float32
    assert -1.0 <= float(item["A"].min()) and float(item["B"].max()) <= 1.0
    assert item["A_path"].endswith("a1.png")  # A[i % len(A)]
    # B at a random index (Python's random), serial with serial_batches.
    random.seed(0)
    picked = {Path(ds[0]["B_path"]).name for _ in range(40)}
    assert len(picked) > 1
    serial = build_unpaired(str(folders), load_size=14, crop_size=10, serial_batches=True)
    assert [Path(serial[i]["B_path"]).name for i in range(5)] == [f"b{i}.jpg" for i in range(5)]
    # Crops and flips are random: the same item differs between draws, and is reproducible.
    random.seed(1)
    first = [ds[0]["A"] for _ in range(6)]
    assert any(not torch.equal(first[0], x) for x in first[1:])
    random.seed(1)
    again = [ds[0]["A"] for _ in range(6)]
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    with pytest.raises(IndexError):
        ds[5]


def test_unpaired_test_split_deterministic_and_paired(folders):
    ds = build_unpaired(str(folders), split="test", load_size=14, crop_size=10)
    assert ds.paired is True and len(ds) == 4
    for i in range(4):
        item = ds[i]
        assert Path(item["A_path"]).stem == Path(item["B_path"]).stem == f"x{i}"
        assert torch.equal(item["A"], ds[i]["A"]) and torch.equal(item["B"], ds[i]["B"])
    # As the reference's test.py: the whole image resized to crop_size (no crop), no flip.
    from edgegan.data import transforms as T

    img = T.resize(T.load_image(ds.paths_a[2], 3), 10)
    assert torch.equal(ds[2]["A"], T.to_tensor(img))
    # Names that differ: not paired, B taken serially.
    (folders / "testB" / "x3.jpg").rename(folders / "testB" / "y3.jpg")
    ds = build_unpaired(str(folders), split="test", load_size=14, crop_size=10)
    assert ds.paired is False
    assert [Path(ds[i]["B_path"]).name for i in range(4)] == [
        "x0.png",
        "x1.jpg",
        "x2.png",
        "y3.jpg",
    ]


def test_unpaired_errors_and_skip_bad(folders, tmp_path):
    import shutil

    with pytest.raises(DataError, match="data.root"):
        build_unpaired("")
    with pytest.raises(DataError, match="crop_size"):
        build_unpaired(str(folders), load_size=8, crop_size=10)
    with pytest.raises(DataError, match="channels_a"):
        build_unpaired(str(folders), channels_a=2)
    with pytest.raises(DataError, match="unknown split"):
        build_unpaired(str(folders), split="val")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(DataError, match="not a folder: .*a-file .*trainA/ and trainB/"):
        build_unpaired(str(tmp_path / "a-file"))
    (folders / "trainA" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.png.*skip_bad"):
        build_unpaired(str(folders), load_size=14, crop_size=10)
    with pytest.warns(DataWarning, match="skipped 1"):
        ds = build_unpaired(str(folders), load_size=14, crop_size=10, skip_bad=True)
    assert len(ds.domain_a) == 3 and ds.skipped[0].endswith("bad.png")
    # A file that breaks after the header check is replaced by the next good one.
    good = folders / "trainA" / "a0.png"
    good.write_bytes(good.read_bytes()[:60])
    (folders / "trainA" / "bad.png").unlink()
    strict = build_unpaired(str(folders), load_size=14, crop_size=10)  # headers all read
    with pytest.raises(DataError, match=r"a0\.png.*data\.skip_bad=true"):
        strict[0]
    with pytest.warns(DataWarning, match="a0.png"):
        item = ds[0]
    assert item["A_path"].endswith("a1.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ds[3]["A_path"].endswith("a1.png")  # already known bad: no second warning
    shutil.rmtree(folders / "trainB")
    with pytest.raises(DataError, match=r"trainB"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        build_unpaired(str(folders), skip_bad=True)
    with pytest.raises(DataError, match="not found"):
        build_unpaired(str(tmp_path / "nowhere"))


def test_unpaired_limit(folders):
    ds = build_unpaired(str(folders), load_size=14, crop_size=10, limit=2)
    assert len(ds.domain_a) == 2 and len(ds.domain_b) == 2 and len(ds) == 2


# -- cyclegan-digits ---------------------------------------------------------------------------


def test_digits_train_domains_disjoint():
    ds = build_cyclegan_digits(split="train", limit=64)
    assert ds.paired is False and len(ds) == 64
    assert ds.image_shape == (1, 32, 32) and ds.image_shape_b == (3, 32, 32)
    assert ds.num_classes == 0 and ds.class_names == []
    assert not set(ds.indices_a.tolist()) & set(ds.indices_b.tolist())
    full = build_cyclegan_digits(split="train")
    assert len(full.images_a) == len(full.images_b) == 4000
    assert not set(full.indices_a.tolist()) & set(full.indices_b.tolist())
    assert sorted(full.indices_a.tolist() + full.indices_b.tolist()) == list(range(8000))
    item = ds[3]
    assert item["A"].shape == (1, 32, 32) and item["B"].shape == (3, 32, 32)
    assert item["A_path"] == "mnist10k/train/3" and item["B_path"].startswith("mnist10k/train/")
    assert int(item["B_path"].rsplit("/", 1)[1]) >= 4000
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["A"].shape == (2, 1, 32, 32) and len(batch["B_path"]) == 2
    serial = build_cyclegan_digits(split="train", limit=64, serial_batches=True)
    assert serial[5]["B_path"] == "mnist10k/train/4005"


def test_digits_transform_thickens_and_colours():
    ds = build_cyclegan_digits(split="test", limit=32)
    a = ds.images_a
    thick = dilate(a)
    assert int((thick > 0).sum()) > int((a > 0).sum())  # more stroke pixels
    b = ds.images_b
    assert b.shape == (32, 3, 32, 32) and float(b.min()) >= -1 and float(b.max()) <= 1
    # 8-bit levels, so PNG files hold B exactly.
    pixels = to_uint8(b)
    assert torch.equal(torch.stack([to_tensor(p) for p in pixels]), b)
    # Background dark blue, stroke cores yellow.
    bg = b[:, :, 0, 0].mean(0)
    assert bg[2] > bg[0] and bg[2] > bg[1]
    core = b.permute(1, 0, 2, 3)[:, a[:, 0] == 1.0]
    assert core.shape[1] > 0 and (core[0] > 0.9).all() and (core[2] < 0).all()


def test_digits_test_split_pairs_true_b():
    ds = build_cyclegan_digits(split="test", limit=40)
    assert ds.paired is True and len(ds) == 40
    assert torch.equal(ds.images_b, to_domain_b(ds.images_a))
    # A is exactly the "mnist" dataset's image of the same digit.
    assert torch.equal(ds.images_a, unit_from_uint8(build_mnist(split="test", limit=40).images))
    item = ds[7]
    assert item["A_path"] == item["B_path"] == "mnist10k/test/7"
    assert torch.equal(item["B"], to_domain_b(item["A"]))
    three = build_cyclegan_digits(split="test", limit=4, channels_a=3)
    assert three.image_shape == (3, 32, 32)
    assert torch.equal(three.images_b, ds.images_b[:4])


def test_digits_errors():
    with pytest.raises(DataError, match="unknown split"):
        build_cyclegan_digits(split="val")
    with pytest.raises(DataError, match="limit"):
        build_cyclegan_digits(limit=-1)


# -- registry ----------------------------------------------------------------------------------


def test_registry_builds_cyclegan_datasets(folders):
    datasets = PluginManager(load_entry_points=False).registry("datasets")
    ds = datasets.build("cyclegan-digits", {"limit": 64}, {"split": "test"})
    assert len(ds) == 64 and ds.paired is True
    ds = datasets.build(
        "unpaired",
        {"root": str(folders), "load_size": 12, "crop_size": 8, "channels_a": 1},
        {"split": "train"},
    )
    assert ds.image_shape == (1, 8, 8) and len(ds) == 5


@pytest.mark.parametrize(
    "wrapper, real",
    [
        (data_plugin.unpaired, build_unpaired),
        (data_plugin.cyclegan_digits, build_cyclegan_digits),
    ],
)
def test_plugin_signatures_mirror_builders(wrapper, real):
    def params(f):
        return [(p.name, p.default) for p in inspect.signature(f).parameters.values()]

    assert params(wrapper) == params(real)


def test_digits_folder_round_trip(tmp_path):
    """The PNG folders of the demo read back through ``unpaired`` exactly."""
    counts = write_cyclegan_digits_folder(tmp_path, limit=6)
    assert counts == {"trainA": 6, "trainB": 6, "testA": 6, "testB": 6}
    assert sorted(p.name for p in (tmp_path / "trainB").iterdir())[0] == "04000.png"
    kw = {"load_size": 32, "crop_size": 32, "channels_a": 1, "channels_b": 3}
    test = build_unpaired(str(tmp_path), split="test", **kw)
    assert test.paired is True and len(test) == 6
    mem = build_cyclegan_digits(split="test", limit=6)
    for i in range(6):
        assert torch.equal(test[i]["A"], mem.images_a[i])
        assert torch.equal(test[i]["B"], mem.images_b[i])
    train = build_unpaired(str(tmp_path), split="train", serial_batches=True, flip=False, **kw)
    assert torch.equal(train[2]["B"], build_cyclegan_digits(limit=6).images_b[2])


def test_unpaired_domains_say_which_image_files_they_leave_out(folders):
    from edgegan.data.base import DataWarning

    Image.new("RGB", (16, 16)).save(folders / "trainA" / "odd.gif")
    with pytest.warns(DataWarning, match=r"unpaired': left out 1 \.gif under .*trainA") as seen:
        ds = build_unpaired(str(folders), load_size=14, crop_size=10)
    assert "convert them" in str(seen[0].message) and seen[0].filename == __file__
    assert len(ds.domain_a.rel) == 3


def test_thin_int8_calibration_warns(folders):
    """One black image per domain calibrated an INT8 graph to 20.2 dB (just above the floor;
    16 varied images: 40.5 dB) with no word, though 8 images were asked for."""
    import types
    import warnings

    from edgegan.data.files import DataWarning
    from edgegan.export.cyclegan import calibration_images

    params = {"root": str(folders), "load_size": 14, "crop_size": 10, "channels_a": 1}
    data = types.SimpleNamespace(name="unpaired", params=params)
    with pytest.warns(DataWarning, match=r"calibrates on 4 images \(dataset unpaired, test "
                                         r"split.*fewer than --calib-samples 8"):  # fmt: skip
        images, _ = calibration_images(data, "AtoB", 8)
    assert len(images) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calibration_images(data, "AtoB", 4)  # as many as asked, and varied: no word
        calibration_images(data, "AtoB", 8, warn=False)  # export's early check of the data
    few = "edgegan.export.cyclegan.FEW_CALIBRATION_IMAGES"
    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as m:
        m.setattr(few, 4)  # a split of horse2zebra's 120 against the default 256: no word
        warnings.simplefilter("error")
        calibration_images(data, "AtoB", 256)
    for path in (folders / "testA").iterdir():
        Image.new("RGB", (16, 16)).save(path)  # all black
    with pytest.warns(DataWarning, match="images that are all one value"):
        calibration_images(data, "AtoB", 4)


def test_int8_calibration_from_a_training_split_is_the_same_every_export(folders, monkeypatch):
    """Without a test split INT8 calibrated on the training split, which draws a random B
    for each A and random crops and flips from the global streams, unseeded in an export:
    two exports of one run gave other INT8 graphs (parity 33.4 and 33.8 dB)."""
    import random
    import shutil
    import types

    from edgegan.export.cyclegan import calibration_images

    for name in ("testA", "testB"):
        shutil.rmtree(folders / name)
    params = {"root": str(folders), "load_size": 14, "crop_size": 10, "channels_a": 1}
    data = types.SimpleNamespace(name="unpaired", params=params)
    import torch

    def cuda_seeded(seed):  # torch.manual_seed queues this for CUDA, which no block undoes
        raise AssertionError("the caller's CUDA seed was replaced")

    monkeypatch.setattr(torch.cuda, "manual_seed_all", cuda_seeded)
    runs = []
    for seed in (1, 2):
        random.seed(seed)
        state = random.getstate()
        images, source = calibration_images(data, "BtoA", 4)
        assert random.getstate() == state  # the caller's streams as they were
        runs.append(images)
    assert images.shape == (4, 3, 10, 10) and np.array_equal(runs[0], runs[1])
    assert (
        source == "dataset unpaired, train split, domain B, 4 drawn as training draws them, seed 0"
    )


def test_preprocess_modes_of_the_reference(tmp_path):
    """scale_width_and_crop keeps a wide image's aspect ratio (resize_and_crop squashes it),
    crop takes the image as it is; the test split is deterministic in each."""
    from edgegan.data.unpaired import scale_width

    # 120 wide, 40 high: A a ramp from left to right, B from top to bottom. The steps between
    # neighbouring pixels tell how each mode resized (in [-1, 1]: 2 over the ramp's pixels).
    across = np.tile(np.linspace(0, 255, 120), (40, 1)).round().astype(np.uint8)
    down = np.tile(np.linspace(0, 255, 40)[:, None], (1, 120)).round().astype(np.uint8)
    for split in ("train", "test"):
        Image.fromarray(across).save(_folder(tmp_path, f"{split}A") / "x.png")
        Image.fromarray(down).save(_folder(tmp_path, f"{split}B") / "x.png")

    def build(split: str, mode: str) -> UnpairedImageDataset:
        ds = build_unpaired(str(tmp_path), split, load_size=60, crop_size=20, channels_a=1,
                            channels_b=1, flip=False, preprocess=mode)  # fmt: skip
        ds.rng = random.Random(0)
        return ds

    def steps(mode: str, split: str = "train") -> tuple[float, float]:
        item = build(split, mode)[0]
        a, b = item["A"][0], item["B"][0]
        assert a.shape == b.shape == (20, 20)
        return float((a[:, 1:] - a[:, :-1]).mean()), float((b[1:] - b[:-1]).mean())

    # resize_and_crop: 120x40 -> 60x60; scale_width_and_crop: -> 60x20; crop: as it is
    assert steps("resize_and_crop") == pytest.approx((2 / 59, 2 / 59), rel=0.1)
    assert steps("scale_width_and_crop") == pytest.approx((2 / 59, 2 / 19), rel=0.1)
    assert steps("crop") == pytest.approx((2 / 119, 2 / 39), rel=0.1)
    # the test split: the training scale, its centre square
    assert steps("scale_width_and_crop", "test") == pytest.approx((2 / 59, 2 / 19), rel=0.1)
    assert torch.equal(build("test", "crop")[0]["A"], build("test", "crop")[0]["A"])
    assert scale_width(Image.new("L", (120, 10)), 60, 20).size == (60, 20)  # height floor
    Image.new("L", (10, 30)).save(tmp_path / "trainA" / "small.png")
    # found when the dataset is built, not at the step that first draws it
    with pytest.raises(
        DataError,
        match=r"1 image\(s\) in .*trainA are smaller than crop_size 20 \(first: small.png, 10x30\)",
    ):
        build("train", "crop")
    build("train", "resize_and_crop")  # resized first: fine
    with pytest.raises(DataError, match="preprocess must be one of resize_and_crop, scale_width"):
        build("train", "scale_width")


def _folder(root: Path, name: str) -> Path:
    (root / name).mkdir(parents=True, exist_ok=True)
    return root / name


def test_domain_images_upscaled_more_than_twice_are_warned_about(folders):
    """Against the size they are resized to (load_size): trainA's 12 px tall images at 30
    (a crop of 10 from them still trains blurred)."""
    with pytest.warns(DataWarning) as caught:
        build_unpaired(str(folders), load_size=30, crop_size=10, channels_a=1)
    shown = [str(w.message) for w in caught]
    assert len(shown) == 1 and shown[0].startswith(
        f"3 of 3 images in {folders / 'trainA'} are upscaled more than 2x to 30 px (shorter "
        f"side under 15; smallest 20x12: {folders / 'trainA' / 'a0.png'})"
    ), shown


def test_each_header_is_read_once_and_many_files_are_probed_in_chunks(folders, monkeypatch):
    """Paired (aligned) and preprocess=crop datasets read every header a second time, the
    second silently (20,000 pairs: 5.6 s more); the threaded probe made a task per file
    (200,000 files: +365 MB and twice a plain loop's time)."""
    from concurrent.futures import ThreadPoolExecutor

    from edgegan.data import files as files_module
    from edgegan.data import transforms
    from edgegan.data.aligned import AlignedImageDataset

    read: list[str] = []
    real = transforms.probe_image
    monkeypatch.setattr(transforms, "probe_image", lambda p: read.append(str(p)) or real(p))
    ds = build_unpaired(str(folders), load_size=12, crop_size=10, preprocess="crop")
    assert len(read) == len(set(read)) == len(ds.domain_a) + len(ds.domain_b)
    read.clear()
    test = build_unpaired(str(folders), "test", load_size=12, crop_size=10, preprocess="crop")
    assert test.paired and len(read) == len(set(read)) == 8
    # B's files put in A's order (a.k.png, a.png; a.jpg sorts before a.k.jpg): sizes too
    pairs = folders / "sorted"
    for name, size in (("testA/a.png", 16), ("testA/a.k.png", 16), ("testB/a.jpg", 18),
                       ("testB/a.k.jpg", 20)):  # fmt: skip
        _write(pairs / name, (size, size), "RGB", size)
    test = build_unpaired(str(pairs), "test", load_size=12, crop_size=10)
    assert test.paired and test.domain_b.rel == ["a.k.jpg", "a.jpg"]
    assert test.domain_b.sizes == [(20, 20), (18, 18)]
    pairs = folders / "pairs" / "train"
    for i in range(3):
        _write(pairs / f"p{i}.png", (32, 16), "RGB", i)
    read.clear()
    AlignedImageDataset(str(folders / "pairs"), load_size=16, crop_size=16)
    assert sorted(read) == sorted(str(pairs / f"p{i}.png") for i in range(3))
    # more files than a chunk: one task per chunk, results in the files' order
    tasks: list[int] = []
    real_map = ThreadPoolExecutor.map

    def counted(self, fn, *iterables, **kwargs):
        chunks = list(iterables[0])
        tasks.append(len(chunks))
        return real_map(self, fn, chunks, **kwargs)

    monkeypatch.setattr(ThreadPoolExecutor, "map", counted)
    monkeypatch.setattr(files_module, "PROBE_CHUNK", 10)
    files = sorted((folders / "trainB").iterdir()) * 20 + [folders / "missing.png"]
    probed = files_module.probe_headers(files)
    assert tasks == [11] and len(probed) == 101
    assert probed[:5] == [(16, 24 + i) for i in range(5)] and isinstance(probed[-1], str)
