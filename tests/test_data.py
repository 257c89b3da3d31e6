"""Built-in datasets (mnist, idx, folder) and the image helpers in edgegan.data.transforms."""

from __future__ import annotations

import gzip
import inspect
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgegan.data import folder as folder_mod
from edgegan.data import mnist as mnist_mod
from edgegan.data import plugin as data_plugin
from edgegan.data import transforms as T
from edgegan.data.base import (
    DataWarning,
    TensorImageDataset,
    channel_base,
    resize_uint8_stack,
    uint8_stack_to_tensor,
    unit_from_uint8,
)
from edgegan.data.folder import build_folder
from edgegan.data.idx import read_idx
from edgegan.data.mnist import FASHION_MNIST_NAMES, build_idx, build_mnist
from edgegan.errors import DataError, EdgeganError
from edgegan.plugins.manager import PluginManager


def check_contract(ds, shape, num_classes):
    assert ds.image_shape == shape
    assert ds.num_classes == num_classes == len(ds.class_names)
    x, y = ds[0]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
    assert tuple(x.shape) == shape
    assert isinstance(y, int)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    if num_classes == 0:
        assert y == -1
    else:
        assert 0 <= y < num_classes


# -- mnist (bundled) ---------------------------------------------------------------------------


def test_mnist_bundled_test_split_28():
    ds = build_mnist(split="test", image_size=28)
    assert len(ds) == 2000
    check_contract(ds, (1, 28, 28), 10)
    assert ds.class_names == [str(i) for i in range(10)]
    # Held as 8-bit pixels (a quarter of float32's memory); items come out as floats.
    assert ds.images.shape == (2000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.labels.shape == (2000,) and ds.labels.dtype == torch.int64
    assert int(ds.images.min()) == 0 and int(ds.images.max()) == 255
    image, _ = ds[0]
    assert image.dtype == torch.float32 and torch.equal(image, unit_from_uint8(ds.images[0]))
    # Stratified split documented in the data README.
    counts = np.bincount(ds.labels.numpy(), minlength=10).tolist()
    assert counts == [200, 225, 198, 206, 196, 173, 203, 214, 189, 196]
    # Real digits: mostly background with some ink.
    ink = (ds.images > 0).float().mean().item()
    assert 0.05 < ink < 0.4


def test_mnist_resize_rgb_and_limit():
    ds = build_mnist(split="train", image_size=32, channels=3, limit=50)
    assert len(ds) == 50
    check_contract(ds, (3, 32, 32), 10)
    assert ds.images.shape == (50, 3, 32, 32)
    assert torch.equal(ds.images[:, 0], ds.images[:, 2])
    assert channel_base(ds.images).shape == (50, 1, 32, 32)  # grey stored once
    assert ds[3][0].shape == (3, 32, 32) and ds[3][0].is_contiguous()
    small = build_mnist(split="train", image_size=28, limit=50)
    assert torch.equal(small.labels, ds.labels)  # limit keeps the first N, no shuffling
    # Same digits as Pillow's bilinear resize (within one grey level).
    ref = np.stack(
        [
            np.asarray(Image.fromarray(im).resize((32, 32), T.BILINEAR))
            for im in small.images[:10, 0].numpy()
        ]
    )
    got = ds.images[:10, 0].numpy().astype(int)
    assert np.abs(got - ref.astype(int)).max() <= 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "val"}, "unknown split"),
        ({"channels": 2}, "channels"),
        ({"image_size": 0}, "image_size"),
        ({"limit": -1}, "limit"),
    ],
)
def test_mnist_bad_params(kwargs, match):
    with pytest.raises(DataError, match=match):
        build_mnist(**kwargs)


# -- idx -----------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def make_idx_folder(root: Path, n=(6, 4), size=28, test_stem="t10k", sep="-", gz=(True, False)):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = {}
    for split, stem, count, z in (
        ("train", "train", n[0], gz[0]),
        ("test", test_stem, n[1], gz[1]),
    ):
        images = rng.integers(0, 256, size=(count, size, size), dtype=np.uint8)
        images[:, 0, 0] = 0
        images[:, 0, 1] = 255
        labels = np.arange(count, dtype=np.uint8) % 3
        suffix = ".gz" if z else ""
        write_idx(root / f"{stem}-images{sep}idx3-ubyte{suffix}", images, z)
        write_idx(root / f"{stem}-labels{sep}idx1-ubyte{suffix}", labels, z)
        out[split] = (images, labels)
    return out


@pytest.mark.parametrize("test_stem", ["t10k", "test"])
def test_idx_folder_both_namings(tmp_path, test_stem):
    data = make_idx_folder(tmp_path / "digits", test_stem=test_stem)
    for split, count in (("train", 6), ("test", 4)):
        ds = build_idx(root=str(tmp_path / "digits"), split=split)
        assert len(ds) == count
        check_contract(ds, (1, 28, 28), 10)
        images, labels = data[split]
        assert ds.labels.tolist() == labels.tolist()
        assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
        expected = torch.from_numpy(images).float() / 127.5 - 1
        assert torch.allclose(ds[0][0][0], expected[0], atol=1e-6)
        assert float(ds[0][0][0, 0, 0]) == -1.0 and float(ds[0][0][0, 0, 1]) == 1.0


def test_idx_dotted_names_resize_limit_and_class_names(tmp_path):
    make_idx_folder(tmp_path / "fashion-mnist", sep=".", gz=(False, False))
    ds = build_idx(root=str(tmp_path / "fashion-mnist"), image_size=16, channels=3, limit=5)
    assert len(ds) == 5
    check_contract(ds, (3, 16, 16), 10)
    assert ds.class_names == FASHION_MNIST_NAMES  # "fashion" in the path
    named = build_idx(root=str(tmp_path / "fashion-mnist"), class_names=["a", "b", "c"])
    assert named.class_names == ["a", "b", "c"] and named.num_classes == 3
    assert build_idx(root=str(tmp_path / "fashion-mnist"), class_names="x,y,z").num_classes == 3
    with pytest.raises(DataError, match="class names"):
        build_idx(root=str(tmp_path / "fashion-mnist"), class_names=["a", "b"])
    # the folder's own name decides (its parent's for torchvision's FashionMNIST/raw), not a
    # folder above it: a relative root inside ~/fashion-project is kept absolute in a run
    for root, fashion in (("fashion-project/mnist", False), ("FashionMNIST/raw", True)):
        make_idx_folder(tmp_path / root, sep=".", gz=(False, False))
        names = build_idx(root=str(tmp_path / root), image_size=16).class_names
        assert (names == FASHION_MNIST_NAMES) == fashion, root


def test_idx_errors(tmp_path, monkeypatch):
    root = tmp_path / "bad"
    make_idx_folder(root)
    raw = bytearray((root / "t10k-images-idx3-ubyte").read_bytes())
    raw[2] = 0x42
    (root / "t10k-images-idx3-ubyte").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="bad magic.*t10k-images-idx3-ubyte"):
        build_idx(root=str(root), split="test")
    (root / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="no IDX files for split 'test'"):
        build_idx(root=str(root), split="test")
    with pytest.raises(DataError, match="not found"):
        build_idx(root=str(tmp_path / "missing"))
    monkeypatch.setattr(mnist_mod, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    with pytest.raises(DataError, match="data.root"):
        build_idx()


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        # a valid gzip header before a garbage deflate stream (zlib.error)
        ("x.gz", gzip.compress(b"\0" * 64)[:10] + b"\xff" * 64, "cannot read IDX file"),
        ("x", bytes([0, 0, 8, 0]), "declares 0 dimensions"),  # a 0-d array
        ("x.gz", gzip.compress(bytes([0, 0, 8, 0]) + b"\1"), "declares 0 dimensions"),
        # dimensions whose product passes int64 (np.prod wrapped it to 0)
        (
            "x",
            bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (2**31, 2**31, 4)),
            r"holds 0 bytes of data, expected 18446744073709551616",
        ),
        # a small gzip file expanding far past what its header declares: refused after the
        # declared bytes and one more, not expanded whole first (1.5 MB took 3.2 GB)
        (
            "x.gz",
            gzip.compress(
                bytes([0, 0, 8, 3])
                + b"".join(d.to_bytes(4, "big") for d in (1, 28, 28))
                + b"\0" * (8 << 20)
            ),
            r"holds more than 784 bytes of data, expected 784 for shape \(1, 28, 28\)",
        ),  # fmt: skip
    ],
    ids=["bad-deflate", "0-d", "0-d-gz", "int64-overflow", "gzip-bomb"],
)
def test_corrupt_idx_files_are_one_line_data_errors(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=match) as caught:
        read_idx(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def _typed_idx(path: Path, array: np.ndarray) -> None:
    code = {np.dtype(">f4"): 0x0D, np.dtype(">i2"): 0x0B}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.tobytes())


@pytest.mark.parametrize(
    ("images", "labels", "expect"),
    [
        (np.array([[[0.0, 0.5, 1.0]]], ">f4"), [1], [0, 128, 255]),  # [0, 1] floats: scaled
        (np.array([[[0.0, 17.0, 255.0]]], ">f4"), [1], [0, 17, 255]),  # 0..255 floats
        (np.array([[[0, 17, 255]]], ">i2"), [1], [0, 17, 255]),
        (np.array([[[0, 300, 1020]]], ">i2"), [1], "int16 pixel values from 0 to 1020"),
        (np.array([[[0.0, np.nan, 1.0]]], ">f4"), [1], "NaN or infinite pixel values"),
        (np.array([[[0.0, 0.5, 1.0]]], ">f4"), np.array([np.nan], ">f4"), "not whole numbers"),
        (np.array([[[0.0, 0.5, 1.0]]], ">f4"), np.array([1.5], ">f4"), "not whole numbers"),
        (np.array([[[0, 1, 2]]], ">i2"), np.array([-1], ">i2"), r"a negative label \(-1\)"),
    ],
)
def test_idx_pixels_of_other_types_are_read_as_pixels_or_refused(tmp_path, images, labels, expect):
    """A plain uint8 cast made [0, 1] float images black (trained on, and scored FD 0 against
    black samples), wrapped 16-bit values modulo 256 and NaN labels into -2**63."""
    from edgegan.data.idx import load_idx_split

    _typed_idx(tmp_path / "train-images-idx3-ubyte", images)
    labels = np.asarray(labels)
    if labels.dtype.kind == "f" or labels.dtype == np.dtype(">i2"):
        _typed_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    else:
        write_idx(tmp_path / "train-labels-idx1-ubyte", labels, gz=False)
    if isinstance(expect, str):
        with pytest.raises(DataError, match=expect):
            load_idx_split(tmp_path, "train")
        return
    got, got_labels = load_idx_split(tmp_path, "train")
    assert got.dtype == np.uint8 and got.ravel().tolist() == expect and got_labels.tolist() == [1]


def test_a_corrupt_gzip_idx_split_is_a_data_error(tmp_path):
    root = tmp_path / "digits"
    make_idx_folder(root)
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"")[:10] + b"\xff" * 99)
    with pytest.raises(DataError, match="cannot read IDX file .*train-images"):
        build_idx(root=str(root), split="train")


def test_resize_matches_pillow_non_square():
    rng = np.random.default_rng(1)
    for shape in ((3, 20, 37), (3, 37, 20)):
        images = rng.integers(0, 256, size=shape, dtype=np.uint8)
        got = T.to_uint8(uint8_stack_to_tensor(images, 16, 1))[..., 0].astype(int)
        ref = np.stack(
            [
                np.asarray(T.center_crop(T.resize_shorter(Image.fromarray(im), 16, T.BILINEAR), 16))
                for im in images
            ]
        ).astype(int)
        assert got.shape == (3, 16, 16)
        assert np.abs(got - ref).max() <= 1


# -- folder --------------------------------------------------------------------------------------


def save(path: Path, size=(12, 10), color=(200, 30, 30), mode="RGB", fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, format=fmt)
    return path


def test_folder_classes_from_subfolders(tmp_path):
    save(tmp_path / "cats" / "a.png")
    save(tmp_path / "cats" / "nested" / "deep" / "b.JPG", fmt="JPEG")
    save(tmp_path / "dogs" / "c.bmp")
    save(tmp_path / "dogs" / "d.webp", fmt="WEBP")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    save(tmp_path / "dogs" / ".hidden.png")
    (tmp_path / "empty").mkdir()
    ds = build_folder(root=str(tmp_path), image_size=8)
    assert len(ds) == 4
    check_contract(ds, (3, 8, 8), 2)
    assert ds.class_names == ["cats", "dogs"]
    assert [y for _, y in ds.samples] == [0, 0, 1, 1]
    assert [Path(p).name for p in ds.paths] == ["a.png", "b.JPG", "c.bmp", "d.webp"]
    unlabelled = build_folder(root=str(tmp_path), image_size=8, labels=False)
    assert unlabelled.num_classes == 0 and unlabelled[3][1] == -1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # narrowed on purpose: no warning for the rest
        only_png = build_folder(root=str(tmp_path), image_size=8, extensions=["PNG"])
    assert len(only_png) == 1
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 8, 8) and y.tolist() == [0, 0, 1, 1]


def test_image_files_of_other_kinds_are_not_left_out_silently(tmp_path):
    save(tmp_path / "a.png")
    save(tmp_path / "b.gif", fmt="GIF")
    save(tmp_path / "sub" / "c.GIF", fmt="GIF")
    (tmp_path / "notes.txt").write_text("not an image: no warning")
    with pytest.warns(DataWarning, match=r"dataset 'folder': left out 2 \.gif under") as seen:
        ds = build_folder(root=str(tmp_path), image_size=8, labels=False)
    assert len(ds) == 1 and len(seen) == 1 and "data.extensions adds kinds" in str(seen[0].message)
    assert seen[0].filename == __file__  # it points at the code that built the dataset
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = build_folder(root=str(tmp_path), image_size=8, labels=False, extensions="png,gif")
    assert len(ds) == 3 and ds[1][0].shape == (3, 8, 8)  # Pillow reads them


def test_folder_flat_is_unlabelled_and_grey(tmp_path):
    save(tmp_path / "x1.png", color=(255, 255, 255))
    save(tmp_path / "x2.png", mode="RGBA", color=(0, 0, 0, 0))  # transparent -> white
    save(tmp_path / "sub" / "x3.png", color=(0, 0, 0))
    with pytest.warns(DataWarning, match="both directly and in subfolders"):
        ds = build_folder(root=str(tmp_path), image_size=6, channels=1)
    assert len(ds) == 3
    check_contract(ds, (1, 6, 6), 0)
    assert [Path(p).name for p in ds.paths] == ["x3.png", "x1.png", "x2.png"]  # sorted paths
    assert torch.all(ds[0][0] == -1) and torch.all(ds[1][0] == 1) and torch.all(ds[2][0] == 1)


def test_folder_resize_and_center_crop(tmp_path):
    # 40x20: left half black, right half white; shorter side -> 16 (32x16), crop the centre.
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, 20:] = 255
    Image.fromarray(arr).save(tmp_path / "wide.png")
    tall = np.zeros((50, 10), np.uint8)
    tall[:25] = 255
    Image.fromarray(tall).save(tmp_path / "tall.png")
    ds = build_folder(root=str(tmp_path), image_size=16, channels=3)
    by_name = {Path(p).name: i for i, p in enumerate(ds.paths)}
    x = ds[by_name["wide.png"]][0]
    assert x.shape == (3, 16, 16)
    assert torch.all(x[:, :, :6] == -1) and torch.all(x[:, :, 10:] == 1)
    x = ds[by_name["tall.png"]][0]
    assert x.shape == (3, 16, 16)  # 10x50 -> 16x80 -> centre 16 rows, all near the edge
    assert torch.all(x[:, :6] == 1) and torch.all(x[:, 10:] == -1)


def test_folder_splits(tmp_path):
    save(tmp_path / "train" / "a" / "1.png")
    save(tmp_path / "train" / "b" / "2.png")
    save(tmp_path / "test" / "a" / "3.png")
    assert len(build_folder(root=str(tmp_path), split="train", image_size=4)) == 2
    test = build_folder(root=str(tmp_path), split="test", image_size=4)
    assert [Path(p).name for p in test.paths] == ["3.png"] and test.num_classes == 0


def test_folders_beside_the_split_folders_are_warned_about(tmp_path):
    """Class folders bus/, car/ and train/: train/ was taken for the train split, and the
    other classes (with the images in the root) were dropped without a word."""
    import warnings

    for cls in ("bus", "car", "train"):
        save(tmp_path / "vehicles" / cls / "1.png")
    save(tmp_path / "vehicles" / "loose.png")
    (tmp_path / "vehicles" / ".cache").mkdir()  # hidden: not data
    with pytest.warns(
        DataWarning,
        match=r"vehicles has train/, which hold the splits: its folders bus, car and 1 image "
        r"in it are not read \(a class folder named 'train'\? rename it",
    ):
        ds = build_folder(root=str(tmp_path / "vehicles"), image_size=4)
    assert len(ds) == 1  # still the split folder's, as documented
    with warnings.catch_warnings():  # the layout of labelled splits says nothing
        warnings.simplefilter("error")
        build_folder(root=str(tmp_path / "vehicles" / "train"), image_size=4)
        save(tmp_path / "split" / "train" / "a" / "1.png")
        save(tmp_path / "split" / "test" / "a" / "2.png")
        save(tmp_path / "split" / "val" / "a" / "3.png")  # a validation split: no lost class
        build_folder(root=str(tmp_path / "split"), image_size=4)
    import shutil

    (tmp_path / "vehicles" / "loose.png").unlink()
    with pytest.warns(DataWarning, match=r"its folders bus, car are not read"):
        build_folder(root=str(tmp_path / "vehicles"), image_size=4)
    shutil.rmtree(tmp_path / "vehicles" / "car")
    with pytest.warns(DataWarning, match=r"its folder bus is not read"):
        build_folder(root=str(tmp_path / "vehicles"), image_size=4)


def test_folder_corrupt_file(tmp_path):
    save(tmp_path / "a.png")
    save(tmp_path / "c.png")
    (tmp_path / "b.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"b\.png"):
        build_folder(root=str(tmp_path), image_size=8)
    with pytest.warns(DataWarning, match="skipped 1 unreadable"):
        ds = build_folder(root=str(tmp_path), image_size=8, skip_bad=True)
    assert len(ds) == 2 and len(ds.skipped) == 1 and ds.skipped[0].endswith("b.png")


def test_folder_corrupt_pixels_found_lazily(tmp_path):
    save(tmp_path / "a.png", size=(64, 64))
    good = save(tmp_path / "b.png", size=(64, 64), color=(0, 0, 255))
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[:60])  # header intact, pixels gone
    ds = build_folder(root=str(tmp_path), image_size=8)
    assert len(ds) == 2
    with pytest.raises(DataError, match=r"a\.png.*data\.skip_bad=true"):
        ds[0]
    ds = build_folder(root=str(tmp_path), image_size=8, skip_bad=True)
    with pytest.warns(DataWarning, match=r"a\.png"):
        x, _ = ds[0]  # replaced by the next good item
    assert torch.equal(x, ds.load(ds.paths.index(str(good))))
    assert ds.skipped == [str(tmp_path / "a.png")]


def test_a_fifo_named_like_an_image_is_not_listed(tmp_path):
    """`mkfifo data/3.png` in a downloaded folder hung training for ever (opening it waits
    for a writer); only regular files (or links to them) are images."""
    import os

    from edgegan.data.folder import list_images

    save(tmp_path / "a.png")
    os.mkfifo(tmp_path / "3.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    assert list_images(tmp_path) == ["a.png", "b.png"]  # listing opens nothing: no hang here
    assert sorted(Path(p).name for p in build_folder(root=str(tmp_path)).paths) == [
        "a.png",
        "b.png",
    ]


def test_folder_user_errors(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no images in .*empty"):
        build_folder(root=str(tmp_path / "empty"))
    with pytest.raises(DataError, match="not found: .*missing"):
        build_folder(root=str(tmp_path / "missing"))
    with pytest.raises(DataError, match="data.root"):
        build_folder()
    save(tmp_path / "one" / "a.png")
    with pytest.raises(DataError, match="image_size"):
        build_folder(root=str(tmp_path / "one"), image_size=-3)


# -- transforms ----------------------------------------------------------------------------------


def test_make_grid_shape_and_layout():
    images = torch.linspace(-1, 1, 10).view(10, 1, 1, 1).expand(10, 1, 8, 6)
    grid = T.make_grid(images, nrow=4)
    assert grid.dtype == np.uint8 and grid.shape == (3 * 10 + 2, 4 * 8 + 2, 1)
    assert grid[0].max() == 0 and grid[:, :2].max() == 0  # padding
    assert grid[2, 2, 0] == 0 and grid[2, 2 + 8, 0] == T.to_uint8(images[1])[0, 0, 0]
    assert (grid[22:, 22:] == 0).all()  # the two empty cells of the last row
    assert np.array_equal(T.make_grid(images.numpy(), nrow=4), grid)
    rgb = T.make_grid(torch.zeros(3, 3, 4, 4), nrow=8, padding=1, pad_value=255)
    assert rgb.shape == (4 + 2, 3 * 5 + 1, 3) and rgb[0, 0, 0] == 255 and rgb[1, 1, 0] == 128


def test_to_uint8_to_tensor_and_save_png(tmp_path):
    x = torch.tensor([[[-1.0, 0.0, 1.0, float("nan"), 5.0]]])
    assert T.to_uint8(x).tolist() == [[[0], [128], [255], [128], [255]]]
    img = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    t = T.to_tensor(img)
    assert t.shape == (3, 5, 7) and t.dtype == torch.float32
    assert np.array_equal(T.to_uint8(t), img)
    path = T.save_png(t, tmp_path / "out" / "img.png")
    assert np.array_equal(np.asarray(Image.open(path)), img)
    T.save_png(T.make_grid(t[None, :1]), tmp_path / "grey.png")
    assert Image.open(tmp_path / "grey.png").mode == "L"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["img.png"]  # no temp files


def test_crops_and_flip():
    img = Image.fromarray(np.arange(6 * 4, dtype=np.uint8).reshape(4, 6))
    assert T.center_crop(img, 2).size == (2, 2)
    assert np.asarray(T.center_crop(img, (2, 4))).tolist() == [[7, 8, 9, 10], [13, 14, 15, 16]]
    import random

    crop = T.random_crop(img, 3, random.Random(0))
    assert crop.size == (3, 3)
    assert np.asarray(T.hflip(img))[0].tolist() == [5, 4, 3, 2, 1, 0]
    assert T.resize_shorter(img, 8).size == (12, 8)
    with pytest.raises(DataError, match="cannot read image"):
        T.load_image(__file__, 3)


def test_center_crop_rounds_an_odd_margin_as_torchvision_does():
    """torchvision's center_crop starts at int(round((w - cw) / 2)) (Python's round: half to
    even): a 7-wide image cropped to 4 starts at column 2 (3 / 2 = 1.5 -> 2), where floor
    division gives 1: every crop one pixel off the reference pipeline's."""
    img = Image.fromarray((np.arange(5)[:, None] * 16 + np.arange(7)).astype(np.uint8))  # 7x5
    crop = np.asarray(T.center_crop(img, (2, 4)))  # (h, w): margins 3 wide, 3 high
    assert crop[0, 0] == 2 * 16 + 2  # row 2, column 2
    assert crop.tolist() == [[34, 35, 36, 37], [50, 51, 52, 53]]
    # margin 5: 2.5 rounds to 2 (half to even), as torchvision's round does
    wide = Image.fromarray(np.arange(9, dtype=np.uint8)[None])  # 9x1
    assert np.asarray(T.center_crop(wide, (1, 4)))[0].tolist() == [2, 3, 4, 5]


def test_random_crop_reaches_every_offset():
    """Each position from 0 to w - cw (and h - ch) inclusive is drawn: one short (a mutant
    the suite let pass), the crops never touch the right or bottom edge of the image."""
    import random

    img = Image.fromarray((np.arange(5)[:, None] * 16 + np.arange(6)).astype(np.uint8))  # 6x5
    offsets = set()
    for seed in range(200):
        corner = int(np.asarray(T.random_crop(img, (3, 3), random.Random(seed)))[0, 0])
        offsets.add(divmod(corner, 16))  # (top, left)
    assert offsets == {(top, left) for top in range(3) for left in range(4)}


# -- registry --------------------------------------------------------------------------------


def test_build_through_registry():
    manager = PluginManager(load_entry_points=False)
    datasets = manager.registry("datasets")
    assert {"mnist", "idx", "folder"} <= set(datasets.names())
    ds = datasets.build("mnist", {"limit": 100}, {"split": "test"})
    assert len(ds) == 100 and ds.image_shape == (1, 32, 32) and ds.num_classes == 10
    with pytest.raises(EdgeganError, match="unknown parameter 'imagesize'.*'image_size'"):
        datasets.build("mnist", {"imagesize": 32}, {"split": "test"})
    with pytest.raises(EdgeganError, match="'image_size' .* must be int"):
        datasets.build("mnist", {"image_size": "32"}, {"split": "test"})
    with pytest.raises(EdgeganError, match="set by the task"):
        datasets.build("mnist", {"split": "train"}, {"split": "test"})


@pytest.mark.parametrize(
    "wrapper, real",
    [
        (data_plugin.mnist, build_mnist),
        (data_plugin.idx, build_idx),
        (data_plugin.folder, build_folder),
    ],
)
def test_plugin_signatures_mirror_builders(wrapper, real):
    def params(f):
        return [(p.name, p.default) for p in inspect.signature(f).parameters.values()]

    assert params(wrapper) == params(real)
    assert params(folder_mod.ImageFolderDataset)[0][0] == "root"


def test_plugin_module_does_not_import_torch():
    code = "import sys, edgegan.data, edgegan.data.plugin; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tensor_dataset_base():
    ds = TensorImageDataset(torch.zeros(3, 1, 2, 2))
    assert ds.num_classes == 0 and ds.labels.tolist() == [-1, -1, -1] and ds[2][1] == -1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labelled = TensorImageDataset(torch.zeros(2, 3, 4, 4), torch.tensor([0, 1]), ["a", "b"])
    assert labelled.image_shape == (3, 4, 4) and labelled[1][1] == 1
    with pytest.raises(ValueError):
        TensorImageDataset(torch.zeros(2, 3, 4, 4), torch.tensor([0, 2]), ["a", "b"])


def test_tensor_dataset_keeps_uint8_pixels_and_gives_float_items():
    pixels = resize_uint8_stack(np.arange(2 * 6 * 6, dtype=np.uint8).reshape(2, 6, 6), 6)
    assert pixels.dtype == torch.uint8 and pixels.shape == (2, 1, 6, 6)
    rgb = TensorImageDataset(pixels.expand(-1, 3, -1, -1))
    assert rgb.images.stride(1) == 0  # the repeated grey stays one stored plane
    image, label = rgb[1]
    assert image.dtype == torch.float32 and image.shape == (3, 6, 6) and label == -1
    assert torch.equal(image, uint8_stack_to_tensor(pixels[:, 0].numpy(), 6, 3)[1])
    assert image[0, 0, 0].item() == pytest.approx(36 / 127.5 - 1)
    # Other strided uint8 views are copied once, so a batch gather reads dense memory.
    odd = TensorImageDataset(torch.zeros(2, 4, 4, 3, dtype=torch.uint8).permute(0, 3, 1, 2))
    assert odd.images.is_contiguous() and odd.images.dtype == torch.uint8
    with pytest.raises(TypeError, match="uint8"):
        unit_from_uint8(torch.zeros(2))


def test_list_images_follows_links_once_but_never_up_to_an_ancestor(tmp_path):
    import os

    from edgegan.data.folder import list_images

    root = tmp_path / "data" / "trainA"
    root.mkdir(parents=True)
    (root / "a.png").write_bytes(b"x")
    other = tmp_path / "data" / "trainB"
    other.mkdir()
    (other / "b.png").write_bytes(b"x")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "c.png").write_bytes(b"x")
    os.symlink(tmp_path / "data", root / "loop")  # up: would add trainB to A
    os.symlink(root, root / "self")  # a cycle
    os.symlink(extra, root / "more")  # a folder elsewhere: followed
    assert list_images(root) == ["a.png", "more/c.png"]


def test_wide_and_float_greyscale_images_are_scaled_to_8_bits():
    from edgegan.data.transforms import convert_channels

    ramp16 = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    assert np.asarray(convert_channels(ramp16, 1)).tolist() == [[0, 128, 255]]
    # every 16-bit value rounds to its nearest 8-bit one (scaled in integers now: float64
    # copies took 1.6 GB for one 8000x8000 scan); 32-bit integers clip to 0..65535 or 0..255
    every = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    nearest = np.rint(every.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(np.asarray(convert_channels(Image.fromarray(every), 1)), nearest)
    wide = Image.fromarray(np.array([[-7, 0, 257, 65535, 90000]], dtype=np.int32))
    assert wide.mode == "I"
    assert np.asarray(convert_channels(wide, 1)).tolist() == [[0, 0, 1, 255, 255]]
    narrow = Image.fromarray(np.array([[-7, 0, 128, 255]], dtype=np.int32))
    assert np.asarray(convert_channels(narrow, 1)).tolist() == [[0, 0, 128, 255]]
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))  # a float TIFF
    assert np.asarray(convert_channels(unit, 1)).tolist() == [[0, 128, 255]]  # was all black
    hot = Image.fromarray(np.array([[0.0, 0.5, np.inf]], dtype=np.float32))  # inf: white
    assert np.asarray(convert_channels(hot, 1)).tolist() == [[0, 128, 255]]
    byte_range = Image.fromarray(np.array([[0.0, 127.6, 300.0]], dtype=np.float32))
    assert np.asarray(convert_channels(byte_range, 3))[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_unreadable_files_are_counted_and_huge_images_named(tmp_path, monkeypatch):
    """Every header is read before the error: it said the first of 501 unreadable files
    alone. Pillow's decompression-bomb warning named no file: the folder's line does."""
    from PIL import Image as PILImage

    for i in range(4):
        Image.new("L", (8 + i, 8), i).save(tmp_path / f"{i}.png")
    (tmp_path / "1.png").write_bytes(b"not a png")
    (tmp_path / "3.png").write_bytes(b"")
    with pytest.raises(
        DataError,
        match=r"^2 of 4 images cannot be read; the first: cannot read image .*1\.png: .* "
        r"\(set data\.skip_bad=true to skip unreadable files\)$",
    ):
        build_folder(root=str(tmp_path), image_size=8, labels=False)
    (tmp_path / "3.png").unlink()
    with pytest.raises(DataError, match=r"^cannot read image .*1\.png"):  # one: not counted
        build_folder(root=str(tmp_path), image_size=8, labels=False)
    (tmp_path / "1.png").unlink()
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 70)  # 8x8 is within it, 10x8 not
    said = r"^1 image\(s\) in .* are over Pillow's limit of 70 pixels \(largest 10x8: .*2\.png\)"
    with pytest.warns(DataWarning, match=said):
        build_folder(root=str(tmp_path), image_size=8, labels=False)


def test_checking_a_large_folder_shows_progress(tmp_path, monkeypatch, capsys):
    """A folder dataset checks every file's header before the first step: 100k files took
    20 s with nothing on the screen. From PROBE_PROGRESS_FROM files a bar shows it (lowered
    here), and the checks keep their files' order (the bad one is the one skipped)."""
    import edgegan.data.files as files

    monkeypatch.setattr(files, "PROBE_PROGRESS_FROM", 80)
    for i in range(100):
        Image.new("L", (8, 8), i).save(tmp_path / f"{i:03d}.png")
    (tmp_path / "050.png").write_bytes(b"not a png")
    with pytest.warns(DataWarning, match="skipped 1 unreadable image"):
        ds = build_folder(root=str(tmp_path), image_size=8, labels=False, skip_bad=True)
    assert len(ds) == 99 and ds.skipped == [str(tmp_path / "050.png")]
    assert "data: image headers checked 100/100" in capsys.readouterr().err
    monkeypatch.setattr(files, "PROBE_PROGRESS_FROM", 101)
    with pytest.warns(DataWarning):
        build_folder(root=str(tmp_path), image_size=8, labels=False, skip_bad=True)
    assert "headers checked" not in capsys.readouterr().err


def test_resized_pixels_are_rounded_to_the_nearest_8_bit_value():
    """mutation testing: truncating the resized values to uint8 instead of rounding them
    (every pixel up to one level darker than Pillow's) passed the suite, whose comparison
    allows one level."""
    from edgegan.data.base import _resize_matrix

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(4, 20, 20), dtype=np.uint8)
    got = resize_uint8_stack(images, 13)[:, 0].numpy().astype(np.float64)
    m = _resize_matrix(20, 13, int(T.BILINEAR)).astype(np.float64)
    exact = np.clip(np.einsum("ij,njk,lk->nil", m, images.astype(np.float64), m), 0, 255)
    assert np.abs(got - exact).max() <= 0.5 + 1e-3


def test_channel_base_takes_one_plane_of_repeated_grey_only():
    """mutation testing: ``channel_base`` ignoring the stride check (a real RGB tensor cut to
    its red plane, so resident RGB data trained on grey copies of red) passed the suite."""
    rgb = torch.arange(2 * 3 * 2 * 2, dtype=torch.uint8).reshape(2, 3, 2, 2)
    assert channel_base(rgb) is rgb
    grey = torch.zeros(2, 1, 2, 2, dtype=torch.uint8)
    assert channel_base(grey.expand(-1, 3, -1, -1)).shape == (2, 1, 2, 2)


def test_image_size_limit_is_inclusive():
    """mutation testing: refusing image_size == MAX_IMAGE_SIZE (the documented range is
    1..MAX_IMAGE_SIZE) passed the suite."""
    from edgegan.data.base import MAX_IMAGE_SIZE, check_image_params

    check_image_params(MAX_IMAGE_SIZE, 3, "here")
    check_image_params(1, 1, "here")
    with pytest.raises(DataError, match="image_size"):
        check_image_params(MAX_IMAGE_SIZE + 1, 3, "here")


def test_idx_labels_above_nine_get_default_class_names(tmp_path):
    """mutation testing: default class names fixed at ten (an IDX folder with labels up to
    11 and no data.class_names refused as out of range) passed the suite."""
    root = tmp_path / "twelve"
    root.mkdir()
    rng = np.random.default_rng(0)
    for stem in ("train", "t10k"):
        write_idx(root / f"{stem}-images-idx3-ubyte", rng.integers(0, 256, (12, 8, 8)), False)
        write_idx(root / f"{stem}-labels-idx1-ubyte", np.arange(12), False)
    ds = build_idx(root=str(root), image_size=8)
    assert ds.num_classes == 12 and ds.class_names == [str(i) for i in range(12)]


def test_idx_duplicate_class_names_are_refused(tmp_path):
    """mutation testing: accepting duplicate data.class_names (two classes under one name
    in samples and reports) passed the suite."""
    make_idx_folder(tmp_path / "d")
    with pytest.raises(DataError, match="duplicates"):
        build_idx(root=str(tmp_path / "d"), class_names=["a", "b", "a"])


def test_label_counts_include_class_zero():
    """mutation testing: ``label_counts`` dropping class 0 with the unlabelled items passed
    the suite."""
    from edgegan.data.mnist import label_counts

    ds = TensorImageDataset(
        torch.zeros(5, 1, 2, 2), torch.tensor([0, 0, 2, -1, 1]), ["a", "b", "c"]
    )
    assert label_counts(ds).tolist() == [2, 1, 1]


def test_a_folder_limit_keeps_every_class_its_share(tmp_path):
    """``limit`` spreads over the sorted files: the first N of a class-sorted folder held
    only the first class while ``num_classes`` still counted all three."""
    for cls, shade in (("a", 10), ("b", 120), ("c", 240)):
        for i in range(4):
            save(tmp_path / cls / f"{i}.png", color=(shade, shade, shade))
    three = build_folder(root=str(tmp_path), image_size=8, limit=3)
    assert [y for _, y in three.samples] == [0, 1, 2] and three.num_classes == 3
    six = build_folder(root=str(tmp_path), image_size=8, limit=6)
    assert [Path(p).relative_to(tmp_path).as_posix() for p in six.paths] == [
        "a/0.png",
        "a/2.png",
        "b/0.png",
        "b/2.png",
        "c/0.png",
        "c/2.png",
    ]
    assert len(build_folder(root=str(tmp_path), image_size=8, limit=50)) == 12
    flat = build_folder(root=str(tmp_path), image_size=8, labels=False, limit=2)
    assert [Path(p).parent.name for p in flat.paths] == ["a", "b"]


def test_a_class_left_without_images_is_warned_about(tmp_path):
    """data.limit (evenly spaced) or skip_bad can leave a class folder with nothing read: its
    label was kept, trained on nothing, and offered by infer --labels."""
    save(tmp_path / "Zebra" / "1.png")
    for i in range(2):
        save(tmp_path / "apple" / f"{i}.png")
    for i in range(3):
        save(tmp_path / "banana" / f"{i}.png")
    with pytest.warns(DataWarning, match=r"class apple holds no image that is read \(data.lim"
                      r"it=2\): its label trains on nothing"):  # fmt: skip
        ds = build_folder(root=str(tmp_path), image_size=4, limit=2)
    assert ds.class_names == ["Zebra", "apple", "banana"]
    for name in ("0.png", "1.png"):
        (tmp_path / "apple" / name).write_bytes(b"not a png")
    with pytest.warns(DataWarning, match=r"class apple holds no image that is read \(unreadab"
                      r"le files skipped: skip_bad\)"):  # fmt: skip
        build_folder(root=str(tmp_path), image_size=4, skip_bad=True)


def test_images_upscaled_more_than_twice_are_warned_about(tmp_path):
    """A folder of 24 px icons trained at 64 px was upscaled into blur without a word."""
    save(tmp_path / "a.png", size=(40, 40))
    save(tmp_path / "b.png", size=(31, 90))  # shorter side 31 < 64 / 2
    save(tmp_path / "c.png", size=(24, 30))
    with pytest.warns(DataWarning) as caught:
        build_folder(root=str(tmp_path), image_size=64, labels=False)
    (message,) = [str(w.message) for w in caught]
    assert caught[0].filename == __file__  # the caller's line, not edgegan's
    assert message == (
        f"2 of 3 images in {tmp_path} are upscaled more than 2x to 64 px (shorter side under "
        f"32; smallest 24x30: {tmp_path / 'c.png'}): they train blurred (a smaller image size "
        "suits them)"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_folder(root=str(tmp_path), image_size=48, labels=False)  # 24 is half of 48


def test_a_failing_import_behind_a_lazy_name_keeps_its_cause(monkeypatch):
    """Pillow 9.0 lacks Image.Resampling: `from edgegan.train import train` said only
    "cannot import name 'train'", the AttributeError behind it lost."""
    import importlib

    import edgegan.data
    import edgegan.lazy

    real = importlib.import_module

    def broken(name: str, *args):
        if name == "edgegan.data.folder":
            raise AttributeError("module 'PIL.Image' has no attribute 'Resampling'")
        return real(name, *args)

    monkeypatch.setattr(edgegan.lazy.importlib, "import_module", broken)
    with pytest.raises(ImportError) as caught:
        from edgegan.data import ImageFolderDataset  # noqa: F401
    assert str(caught.value) == (
        "importing edgegan.data.folder for edgegan.data.ImageFolderDataset failed: module "
        "'PIL.Image' has no attribute 'Resampling'"
    )
    assert isinstance(caught.value.__cause__, AttributeError)
    with pytest.raises(AttributeError, match="module 'edgegan.data' has no attribute 'Nope'"):
        edgegan.data.Nope  # noqa: B018 - a name no module defines stays an AttributeError
