"""Export and run cyclegan generators: one image -> translated graph per direction (dynamic
batch, height and width), parity at two sizes, FP16/INT8 on CPU ONNX Runtime, metadata round
trip, `edgegan infer --direction` on torch and onnxruntime, and the bench JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from tiny import (
    TENSORRT_NEEDED,
    TINY_CYCLEGAN,
    TINY_GAN,
    copy_with_a_newer_checkpoint,
    count_checkpoint_loads,
    dequantized_constant_types,
    tensorrt_runs_here,
)

from edgegan.cli import cli
from edgegan.data.base import DataWarning
from edgegan.errors import DataError, EdgeganError
from edgegan.export import export, model_path, read_bundle, verify
from edgegan.export.onnx import read_metadata
from edgegan.export.signature import parse_size
from edgegan.runtime import open_runner
from edgegan.translate import load_translator, translate

GENERATORS = {
    "resnet": ["model.generator.name=resnet_6blocks", "train.ema=true"],
    "unet": ["model.generator.name=unet_128", "data.image_size=128"],
}


def _train(out: Path, *extra: str) -> Path:
    from edgegan.config import load_config
    from edgegan.train import train

    overrides = [*TINY_CYCLEGAN, "train.steps=2", "eval.at_end=false", *extra]
    train(load_config("cyclegan-digits", overrides), out_dir=out)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cyclegan-export")
    return {name: _train(root / name, *extra) for name, extra in GENERATORS.items()}


@pytest.fixture(scope="module")
def bundles(runs: dict[str, Path]) -> dict[str, tuple[Path, dict]]:
    """Each run exported at every precision, the ResNet one through the CLI."""
    out = {}
    resnet = runs["resnet"].parent / "resnet-bundle"
    res = CliRunner().invoke(cli, ["export", str(runs["resnet"]), "--fp16", "--int8",
                                   "--calib-samples", "8", "--out", str(resnet)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "model_AtoB.int8.onnx" in res.stdout and "model_BtoA.fp16.onnx" in res.stdout
    out["resnet"] = (resnet, read_bundle(resnet))
    unet = runs["unet"].parent / "unet-bundle"
    out["unet"] = (unet, export(runs["unet"], out=unet, fp16=True, int8=True, calib_samples=4))
    return out


# -- graphs and parity ------------------------------------------------------------------------
def test_graphs_carry_no_exporter_notes(bundles):
    """The dynamo exporter noted stack traces (this machine's paths to edgegan's files) on
    every node and its size symbols in hash order on the graph: the same weights exported
    under another PYTHONHASHSEED or from another install gave other bytes (sha256)."""
    import edgegan

    here = str(Path(edgegan.__file__).parent).encode()
    for out, meta in bundles.values():
        for d in meta["directions"]:
            for entry in meta["models"][d].values():
                data = (out / entry["file"]).read_bytes()
                assert here not in data and b"pkg.torch" not in data, entry["file"]


@pytest.mark.parametrize("name", list(GENERATORS))
def test_each_direction_exports_with_parity(bundles, name):
    out, meta = bundles[name]
    multiple = {"resnet": 4, "unet": 128}[name]
    size = {"resnet": 32, "unet": 128}[name]
    assert meta["task"] == "cyclegan" and meta["directions"] == ["AtoB", "BtoA"]
    assert meta["spec"] == {"channels_a": 1, "channels_b": 3, "image_size": size,
                            "value_range": [-1.0, 1.0], "size_multiple": multiple,
                            "min_side": 8, "halves": "AB"}  # fmt: skip
    assert meta["source"]["weights"] == {
        "AtoB": "ema" if name == "resnet" else "generator",
        "BtoA": "generator",
    }
    for d, (c_in, c_out) in {"AtoB": (1, 3), "BtoA": (3, 1)}.items():
        assert meta["inputs"][d] == [
            {"name": "image", "dtype": "float32", "shape": ["batch", c_in, "height", "width"]}
        ]
        assert meta["outputs"][d][0]["shape"] == ["batch", c_out, "height", "width"]
        models = meta["models"][d]
        assert {p: e["file"] for p, e in models.items()} == {
            "fp32": f"model_{d}.onnx",
            "fp16": f"model_{d}.fp16.onnx",
            "int8": f"model_{d}.int8.onnx",
        }
        fp32 = models["fp32"]
        assert fp32["exporter"] == "dynamo" and fp32["opset"] == 18
        assert fp32["parity"]["max_abs"] <= verify.FP32_MAX_ABS
        sizes = fp32["parity"]["sizes"]
        assert len(sizes) == 2 and sizes[0] != sizes[1] and fp32["parity"]["batch_sizes"] == [2, 1]
        model = onnx.load(str(out / fp32["file"]))
        onnx.checker.check_model(model, full_check=True)
        dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        assert model.graph.input[0].name == "image" and dims == ["batch", c_in, "height", "width"]
        assert model.graph.output[0].name == "translated"
        ops = {n.op_type for n in model.graph.node}
        assert not ops & {"BatchNormalization", "Dropout", "Shape"}  # eval mode, no shape math
        assert models["fp16"]["parity"]["psnr"] >= verify.MIN_PSNR["fp16"]
        if "InstanceNormalization" in ops:  # the ResNet's: kept in FP32 in the FP16 graph
            assert "InstanceNormalization" in models["fp16"]["blocked_ops"]
            half = onnx.load(str(out / models["fp16"]["file"]))
            types = {t.name: t.data_type for t in half.graph.initializer}
            norms = [n for n in half.graph.node if n.op_type == "InstanceNormalization"]
            assert norms and all(types[n.input[1]] == onnx.TensorProto.FLOAT for n in norms)
        int8 = models["int8"]
        assert int8["parity"]["psnr"] >= verify.MIN_PSNR["int8"]
        assert int8["calibration"]["source"].startswith("dataset cyclegan-digits, test split")
        assert int8["calibration"]["samples"] == (8 if name == "resnet" else 4)
        assert int8["calibration"]["method"] == "percentile"
        # first and last convolution, and the ResNet's reflection pad before the first (were
        # it quantised, the raw image would still be rounded to INT8 before the FP32 conv)
        ops = {n.name: n.op_type for n in onnx.load(str(out / int8["file"])).graph.node}
        kinds = [ops[n] for n in int8["excluded_nodes"]]
        assert kinds == (["Pad", "Conv", "Conv"] if name == "resnet" else ["Conv", "ConvTranspose"])
        graph = onnx.load(str(out / int8["file"]))
        assert dequantized_constant_types(graph) == {"INT8"}  # biases stay float (TensorRT)
    for out, meta in bundles.values():
        digests = meta["source"]["digest"]  # each direction's weights, for the torch backend
        assert sorted(digests) == ["AtoB", "BtoA"] and digests["AtoB"] != digests["BtoA"]
        with open_runner(out, "torch", direction="BtoA") as runner:  # its own run: they match
            assert runner.spec["direction"] == "BtoA"


def test_dynamic_height_width_match_torch(bundles, runs):
    out, _ = bundles["resnet"]
    for d in ("AtoB", "BtoA"):
        gen = load_translator(runs["resnet"], d)
        x = np.random.default_rng(5).uniform(-1, 1, (3, gen.spec["channels_in"], 20, 44))
        x = x.astype(np.float32)
        (y,) = verify.ort_session(out / f"model_{d}.onnx", threads=1).run(None, {"image": x})
        with torch.no_grad():
            ref = gen.module(torch.from_numpy(x)).numpy()
        assert y.shape == ref.shape == (3, gen.spec["channels_out"], 20, 44)
        np.testing.assert_allclose(y, ref, atol=1e-4)


def test_onnxruntime_threads_sleep_for_translators_and_spin_for_gans(bundles):
    """Image-to-image graphs run long convolutions: spinning workers only steal cores."""
    out, _ = bundles["resnet"]
    with open_runner(out, "onnxruntime", direction="AtoB") as runner:
        options = runner.session.get_session_options()
        assert not runner.spinning
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_metadata_round_trip(bundles):
    out, meta = bundles["resnet"]
    assert read_bundle(out) == meta
    for d in ("AtoB", "BtoA"):
        for precision in ("fp32", "fp16", "int8"):
            path = model_path(out, precision, direction=d)
            props = read_metadata(path)
            spec = props["edgegan.spec"]
            assert spec["direction"] == d and spec["size_multiple"] == 4
            assert spec["value_range"] == [-1.0, 1.0] and spec["channels_in"] == (
                1 if d == "AtoB" else 3
            )
            assert props["edgegan.task"] == "cyclegan"
            assert onnx.load(str(path)).producer_name == "edgegan"
            assert onnx.load(str(path)).ir_version == meta["models"][d][precision]["ir_version"]
    assert meta["spec"]["min_side"] == 8  # smaller inputs are padded up to it
    with pytest.raises(EdgeganError, match="cyclegan bundle: give --direction"):
        model_path(out, "fp32")
    meta = read_bundle(out)
    del meta["models"]["BtoA"]["int8"]
    with pytest.raises(EdgeganError, match=r"no BtoA int8 model \(it has: fp32, fp16\)"):
        model_path(out, "int8", meta=meta, direction="BtoA")  # the precisions, not directions


# -- infer: same images, same names, every backend --------------------------------------------
@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir()
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (30, 45), dtype=np.uint8)).save(folder / "sub/b.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "c.jpg")
    return folder


def _infer(target: Path, out: Path, images: Path, *extra: str) -> dict[str, np.ndarray]:
    res = CliRunner().invoke(cli, ["infer", str(target), "--direction", "AtoB", "--input",
                                   str(images), "--out", str(out), *extra])  # fmt: skip
    assert res.exit_code == 0, res.output
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    return {f: np.asarray(Image.open(out / f)).astype(int) for f in files}


def test_translating_a_folder_shows_progress(runs, images, tmp_path):
    """As sampling does: a folder of slow 256-px translations ran silently for minutes."""
    args = ["infer", str(runs["resnet"]), "--direction", "AtoB", "--input", str(images)]
    res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a"), "--batch-size", "1"])
    assert res.exit_code == 0 and "infer: images 3/3" in res.stderr, res.output
    res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "b")])  # one batch too
    assert res.exit_code == 0 and "infer: images 3/3" in res.stderr, res.output
    one = ["infer", str(runs["resnet"]), "--direction", "AtoB", "--input", str(images / "a.png")]
    res = CliRunner().invoke(cli, [*one, "--out", str(tmp_path / "c")])  # one image: no bar
    assert res.exit_code == 0 and "infer:" not in res.stderr, res.output


def test_large_images_share_no_batch_past_a_pixel_budget(runs, monkeypatch):
    """8 same-size photos of 1024x768 went through in one batch: 6 GB where one at a time
    took 1 GB, in the same time. A batch holds MAX_BATCH_PIXELS at most (one image at
    least); small images still share batches of --batch-size."""
    import edgegan.translate as tr
    from edgegan.runtime import open_runner

    with open_runner(runs["resnet"], "torch", direction="AtoB") as runner:
        batches: list[int] = []
        real_run = runner.run

        def run(feed):
            batches.append(len(feed["image"]))
            return real_run(feed)

        monkeypatch.setattr(runner, "run", run)
        monkeypatch.setattr(tr, "MAX_BATCH_PIXELS", 2 * 32 * 32)
        done: list[int] = []
        small = [np.zeros((16, 16), np.uint8)] * 5
        big = [np.zeros((32, 32), np.uint8)] * 5
        images = small + big + [np.zeros((64, 64), np.uint8)]
        out = tr.translate_arrays(runner, images, 8, done.append)
        assert len(out) == 11 and out[-1].shape == (64, 64, 3)
        assert batches == [5, 2, 2, 1, 1] and done == [5, 7, 9, 10, 11]
        batches.clear()
        monkeypatch.setattr(runner, "device", "cuda:0")  # a GPU: batch_size alone decides
        tr.translate_arrays(runner, images, 8)
    assert batches == [5, 5, 1]


def test_infer_torch_and_onnxruntime_match(runs, bundles, images, tmp_path):
    bundle, _ = bundles["resnet"]
    ref = _infer(runs["resnet"], tmp_path / "torch", images)
    assert sorted(ref) == ["a.png", "c.png", "sub/b.png"]
    assert ref["sub/b.png"].shape == (30, 45, 3)  # padded to 32x48, cropped back
    ort = _infer(bundle, tmp_path / "ort", images, "--backend", "onnxruntime", "--batch-size", "2")
    q = _infer(bundle, tmp_path / "int8", images, "--backend", "onnxruntime", "--precision", "int8")
    assert sorted(ort) == sorted(q) == sorted(ref)
    for f, img in ref.items():
        assert ort[f].shape == q[f].shape == img.shape
        assert np.abs(ort[f] - img).max() <= 1  # fp32: at most one uint8 level
        assert np.abs(q[f] - img).mean() < 8  # int8: close


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_standalone_example_translates_as_edgegan_infer_does(
    bundles, images, tmp_path, precision
):
    """examples/run_bundle.py (numpy, onnxruntime, Pillow; torch and edgegan unimportable)
    reads, pads, runs and writes as infer does: the same files, sizes and pixels (FP16 too,
    where another uint8 -> float formula changed a level in some pixels). The inputs hold an
    RGB JPEG for a grey generator and a 30x45 image (padded, cropped back)."""
    import shutil

    from tiny import run_standalone_example

    bundle, _ = bundles["resnet"]
    inputs = tmp_path / "in"  # the fixture's, and the kinds edgegan converts on reading
    shutil.copytree(images, inputs)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.random((20, 24), dtype=np.float32), mode="F").save(inputs / "f.tif")
    Image.fromarray(rng.integers(0, 256, (20, 20, 4), dtype=np.uint8)).save(inputs / "rgba.png")
    Image.fromarray(rng.integers(0, 65536, (18, 22), dtype=np.uint16)).save(inputs / "d16.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(inputs / "p.ppm")
    (inputs / "._a.png").write_bytes(b"\0\5\x16\7" + bytes(80))  # macOS metadata: skipped
    (inputs / ".ipynb_checkpoints").mkdir()
    shutil.copy(inputs / "a.png", inputs / ".ipynb_checkpoints" / "a.png")  # hidden folder
    ref = _infer(bundle, tmp_path / "e", inputs, "--backend", "onnxruntime",
                 "--precision", precision, "--batch-size", "1")  # fmt: skip
    out = tmp_path / "s"
    run_standalone_example(str(bundle), "--direction", "AtoB", "--input", str(inputs),
                           "--precision", precision, "--out", str(out))  # fmt: skip
    got = {p.relative_to(out).as_posix(): np.asarray(Image.open(p)).astype(int)
           for p in out.rglob("*.png")}  # fmt: skip
    assert sorted(got) == sorted(ref) == [
        "a.png", "c.png", "d16.png", "f.png", "p.png", "rgba.png", "sub/b.png"
    ]  # fmt: skip
    for f, img in ref.items():
        assert got[f].shape == img.shape and np.abs(got[f] - img).max() == 0, f
    if precision == "fp32":
        # A.jpg beside a.png: one file where case is ignored (macOS, Windows), which wrote
        # one over the other; and --out inside --input, which a second run would read
        shutil.copy(inputs / "c.jpg", inputs / "A.jpg")
        err = run_standalone_example(str(bundle), "--direction", "AtoB", "--input", str(inputs),
                                     "--out", str(tmp_path / "t"), fails=True)  # fmt: skip
        assert "two inputs would be written to one file" in err
        (inputs / "A.jpg").unlink()
        err = run_standalone_example(str(bundle), "--direction", "AtoB", "--input", str(inputs),
                                     "--out", str(inputs / "out"), fails=True)  # fmt: skip
        assert "--out lies inside --input" in err


@pytest.mark.slow
def test_infer_compiled_torch_translates_like_eager(runs, images, tmp_path, monkeypatch):
    """``infer --compile reduce-overhead --channels-last`` on a folder of several sizes
    (each padded size compiles once): the same files as eager, within one uint8 level."""
    from edgegan.runtime.torch_runner import CompiledGenerator

    compiled, traced = [], []
    real_compile, real_call = torch.compile, CompiledGenerator._compile_call

    def spy(module, **kwargs):
        compiled.append(kwargs)
        return real_compile(module, **kwargs)

    def spy_call(self, args):
        traced.append(tuple(args[0].shape))
        return real_call(self, args)

    ref = _infer(runs["resnet"], tmp_path / "eager", images)
    monkeypatch.setattr(torch, "compile", spy)
    monkeypatch.setattr(CompiledGenerator, "_compile_call", spy_call)
    fast = _infer(runs["resnet"], tmp_path / "compiled", images, "--compile", "reduce-overhead",
                  "--channels-last", "--batch-size", "1")  # fmt: skip
    assert [c["options"]["triton.cudagraphs"] for c in compiled] == [True]
    assert sorted(traced) == [(1, 1, 32, 32), (1, 1, 32, 48)]  # each padded size once
    assert sorted(fast) == sorted(ref)
    for f, img in ref.items():
        assert fast[f].shape == img.shape and np.abs(fast[f] - img).max() <= 1


def test_translation_errors(runs, bundles, images, tmp_path):
    bundle, _ = bundles["resnet"]
    runner = CliRunner()
    for args, msg in [
        (["infer", str(bundle), "--backend", "onnxruntime", "--num", "2"], "give --direction"),
        (["infer", str(bundle), "--direction", "AtoB", "--input", str(images), "--num", "2"],
         "translations are PNG"),
        (["infer", str(bundle), "--direction", "AtoB", "--input", str(images), "--seed", "3"],
         "--num, --labels and --seed sample GANs; translations are PNG"),
        # the format given is the one named (it said npz for --format grid)
        (["infer", str(bundle), "--direction", "AtoB", "--input", str(images), "--format",
          "grid"], "--seed and --format grid sample GANs"),
        (["infer", str(runs["resnet"]), "--num", "2"], "is a cyclegan run"),
        # without --num either: that it translates, not that it needs --num (docs/deploy.md)
        (["infer", str(bundle)], "is a cyclegan bundle: translate images with --direction"),
        (["infer", str(runs["unet"])], "is a cyclegan run: translate images with --direction"),
        (["bench", str(bundle), "--size", "30"], "multiples of 4"),
        (["bench", str(bundle), "--size", "4"], "multiples of 4, at least 8 (images are padded"),
        (["bench", str(bundle), "--directions", "AtoB,CtoD"],
         "--directions must be AtoB or BtoA, got 'CtoD'"),  # it named --direction
    ]:  # fmt: skip
        res = runner.invoke(cli, [*args, "--out", str(tmp_path / "x")] if args[0] == "infer"
                            else args)  # fmt: skip
        assert res.exit_code == 2, (args, res.output)
        assert msg in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert parse_size("48x64", {"size_multiple": 4, "image_size": 32}) == (48, 64)
    with open_runner(bundle, "onnxruntime", direction="BtoA") as r:
        assert r.spec["channels_in"] == 3 and r.input_names == ("image",)


def test_tiny_images_translate_on_every_backend(runs, bundles, tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "tiny"
    folder.mkdir()
    for name, shape in [("p.png", (3, 3)), ("q.png", (1, 6)), ("r.png", (4, 4))]:
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / name)
    ref = _infer(runs["resnet"], tmp_path / "torch", folder)
    ort = _infer(bundles["resnet"][0], tmp_path / "ort", folder, "--backend", "onnxruntime")
    assert {f: a.shape for f, a in ref.items()} == {
        "p.png": (3, 3, 3),
        "q.png": (1, 6, 3),
        "r.png": (4, 4, 3),
    }
    assert all(np.abs(ort[f] - ref[f]).max() <= 1 for f in ref)


def test_translation_never_writes_over_inputs_or_itself(runs, images, tmp_path):
    import shutil

    folder = tmp_path / "in"
    shutil.copytree(images, folder)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    base = ["infer", str(runs["resnet"]), "--direction", "AtoB", "--overwrite"]
    (folder / "a.jpg").write_bytes((folder / "c.jpg").read_bytes())
    for args, msg in [
        (["--input", str(folder), "--out", str(folder)], "is inside --input"),
        (["--input", str(folder), "--out", str(folder / "sub")], "is inside --input"),
        (["--input", str(folder / "a.png"), "--out", str(folder)], "would replace the input"),
        (["--input", str(folder), "--out", str(tmp_path / "o")], "would both be written as a.png"),
    ]:
        res = CliRunner().invoke(cli, [*base, *args])
        assert res.exit_code == 2, (args, res.output)
        assert msg in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "o").exists()


def test_names_that_differ_only_in_case_are_one_file_where_names_ignore_case(
    runs, images, tmp_path, monkeypatch
):
    """On macOS and Windows `--input Photos --out photos --overwrite` passed the path checks
    (which compared names) and wrote the translations over the inputs; A.jpg and a.png
    became one a.png. The checks ask the filesystem (os.path.samefile): a stand-in for a
    case-insensitive one here."""
    import shutil

    folder = tmp_path / "Photos"
    shutil.copytree(images, folder)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    (tmp_path / "photos").mkdir()

    def case_insensitive(a, b):
        return str(Path(a).resolve()).casefold() == str(Path(b).resolve()).casefold()

    monkeypatch.setattr(os.path, "samefile", case_insensitive)
    base = ["infer", str(runs["resnet"]), "--direction", "AtoB", "--overwrite"]
    res = CliRunner().invoke(
        cli, [*base, "--input", str(folder), "--out", str(tmp_path / "photos")]
    )
    assert res.exit_code == 2 and "is inside --input" in res.stderr, res.output
    (folder / "A.jpg").write_bytes((folder / "c.jpg").read_bytes())
    res = CliRunner().invoke(cli, [*base, "--input", str(folder), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output  # two files where names keep their case (here)
    assert {"A.png", "a.png"} <= {p.name for p in (tmp_path / "o").iterdir()}
    import edgegan.translate as tr

    monkeypatch.setattr(tr, "ignores_case", lambda path: True)  # macOS, Windows: one file
    res = CliRunner().invoke(cli, [*base, "--input", str(folder), "--out", str(tmp_path / "p")])
    assert res.exit_code == 2 and "would both be written as a.png" in res.stderr, res.output
    assert all(p.read_bytes() == b for p, b in before.items())


def test_whether_a_filesystem_ignores_case_is_asked_of_it(tmp_path, monkeypatch):
    import edgegan.fileio as fileio

    (tmp_path / "Runs").mkdir()
    assert not fileio.ignores_case(tmp_path / "Runs" / "new" / "out")  # Linux: it keeps case
    (tmp_path / "rUNS").mkdir()  # another folder here; the same one where case is ignored
    monkeypatch.setattr(fileio, "same_path", lambda a, b: True)
    assert fileio.ignores_case(tmp_path / "Runs" / "new" / "out")
    # up to the root with no cased name on the way (D:\translated, /2024/x): it raised there;
    # undecided, the system's default answers (case ignored on Windows and macOS)
    import sys

    assert not fileio.ignores_case("/2024/2025/x")  # Linux
    for platform in ("win32", "darwin"):
        monkeypatch.setattr(sys, "platform", platform)
        assert fileio.ignores_case("/2024/2025/x")


def test_a_folder_named_like_an_image_is_not_an_input(images, tmp_path):
    import shutil

    from edgegan.translate import _inputs

    folder = tmp_path / "in"
    shutil.copytree(images, folder)
    (folder / "album.png").mkdir()  # it used to end the translation: IsADirectoryError
    assert [str(rel) for _, rel in _inputs(folder)] == ["a.png", "c.jpg", "sub/b.png"]
    # A camera's IMG_0001.JPG is an image too (mutation testing: a case-sensitive suffix
    # check, which skipped it in silence, passed).
    (folder / "c.jpg").rename(folder / "IMG_0001.JPG")
    (folder / "sub" / "b.png").rename(folder / "sub" / "B.PNG")
    assert sorted(str(rel) for _, rel in _inputs(folder)) == ["IMG_0001.JPG", "a.png", "sub/B.PNG"]
    # A linked subfolder is read, as the datasets read theirs (rglob left it out, silently);
    # a link up to the input itself is not followed
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(images / "sub", elsewhere)
    (folder / "linked").symlink_to(elsewhere)
    (folder / "sub" / "up").symlink_to(folder)
    assert sorted(str(rel) for _, rel in _inputs(folder)) == [
        "IMG_0001.JPG",
        "a.png",
        "linked/b.png",
        "sub/B.PNG",
    ]


def test_int8_without_the_runs_data_is_a_clear_error(tmp_path):
    from edgegan.export.cyclegan import calibration_images

    data = types.SimpleNamespace(name="unpaired", params={"root": str(tmp_path / "gone")})
    with pytest.raises(EdgeganError, match="calibrates on images from the run's dataset"):
        calibration_images(data, "AtoB", 8)


def test_int8_without_the_runs_data_fails_before_the_first_graph(runs, tmp_path, monkeypatch):
    """It used to export and parity-check the FP32 and FP16 graphs of the first direction
    (minutes at 256 px) before finding the data missing."""
    import edgegan.export.cyclegan as cyc

    def gone(data, direction, samples, warn=True, datasets=None):
        raise EdgeganError(f"--int8 calibrates on images ... ({direction})")

    monkeypatch.setattr(cyc, "calibration_images", gone)
    lines: list[str] = []
    with pytest.raises(EdgeganError, match=r"--int8 calibrates on images \.\.\. \(AtoB\)"):
        export(runs["resnet"], out=tmp_path / "b", fp16=True, int8=True, progress=lines.append)
    assert lines == [] and not (tmp_path / "b").exists()


def test_int8_builds_the_runs_dataset_once_for_both_directions(runs, tmp_path, monkeypatch):
    """The early check and each direction's calibration built the dataset again: 4 builds,
    each listing and checking every file of both domains (3,000 a domain: 8 s of 74)."""
    from edgegan.plugins.manager import get_manager

    registry = get_manager().registry("datasets")
    real = registry.build
    builds: list[str] = []

    def counted(name, params, context=None, *args, **kwargs):
        builds.append((context or {}).get("split"))
        return real(name, params, context, *args, **kwargs)

    monkeypatch.setattr(registry, "build", counted)
    meta = export(runs["resnet"], out=tmp_path / "b", int8=True, calib_samples=2)
    assert len(builds) == 1 and set(meta["models"]) == {"AtoB", "BtoA"}
    assert all("int8" in m for m in meta["models"].values())


# -- bench --------------------------------------------------------------------------------------
def test_bench_json_shape(bundles, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)
    monkeypatch.setitem(__import__("sys").modules, "tensorrt_rtx", None)
    bundle, _ = bundles["resnet"]
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(cli, ["bench", str(bundle), "--precisions", "fp32,int8",
                                   "--backends", "torch,onnxruntime,tensorrt", "--size", "24x40",
                                   "--batch-sizes", "1,2", "--warmup", "1", "--iters", "2",
                                   "--json", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "direction" in res.stdout and "24x40 images" in res.stdout
    data = json.loads(out.read_text())
    assert data["task"] == "cyclegan" and data["directions"] == ["AtoB", "BtoA"]
    assert data["size"] == [24, 40] and data["reference"] == "torch/fp32/cpu"
    rows = {(r["direction"], r["backend"], r["precision"], r["batch"]): r for r in data["results"]}
    assert len(rows) == 2 * 3 * 2 * 2
    for d in ("AtoB", "BtoA"):
        for b in (1, 2):
            ok = rows[(d, "onnxruntime", "fp32", b)]
            assert ok["status"] == "ok" and ok["size"] == [24, 40]
            assert 0 < ok["latency_ms"]["p50"] <= ok["latency_ms"]["p95"]
            assert ok["images_per_s"] > 0 and ok["parity"]["max_abs"] < 1e-4
            assert rows[(d, "onnxruntime", "int8", b)]["parity"]["psnr"] >= 20
            assert rows[(d, "torch", "fp32", b)]["parity"]["max_abs"] == 0
            assert rows[(d, "tensorrt", "fp32", b)]["status"] == "skipped"


# -- TensorRT, where it exists ---------------------------------------------------------------
@pytest.mark.skipif(not tensorrt_runs_here(), reason=TENSORRT_NEEDED)
def test_real_tensorrt_engines_take_any_size_in_the_profile(bundles, tmp_path):
    import shutil

    from edgegan.export.tensorrt import BuildOptions, build_engines
    from edgegan.runtime.bench import parity

    bundle = tmp_path / "bundle"
    shutil.copytree(bundles["resnet"][0], bundle)
    engines = build_engines(bundle, ["fp32", "fp16"], BuildOptions(max_size=64))
    for d in ("AtoB", "BtoA"):
        assert engines[d]["fp32"]["parity"]["max_abs"] < 1e-2
        assert engines[d]["fp16"]["parity"]["psnr"] >= 30
    with (
        open_runner(bundle, "onnxruntime", direction="BtoA") as ref,
        open_runner(bundle, "tensorrt", "fp32", device="cuda", direction="BtoA") as runner,
    ):
        for n, h, w in [(1, 16, 16), (2, 32, 48), (1, 64, 64), (1, 16, 16)]:
            x = {"image": np.random.default_rng(h).uniform(-1, 1, (n, 3, h, w)).astype("f4")}
            assert parity(runner.run(x), ref.run(x), runner.spec)["max_abs"] < 1e-2


def _has_ort_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available()


@pytest.mark.skipif(not _has_ort_cuda(), reason="needs onnxruntime-gpu and a CUDA GPU")
@pytest.mark.parametrize("name", ["resnet", "unet"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "prefer_nhwc"])
def test_onnxruntime_cuda_graphs_take_any_size(bundles, name, precision, nhwc):
    """One CUDA graph per input size, replayed with new images when a size comes back; also
    with the CUDA provider's NHWC kernels (``--ort-option prefer_nhwc=1``)."""
    from edgegan.export.signature import MIN_SIDE
    from edgegan.runtime.bench import parity

    bundle = bundles[name][0]
    with (
        open_runner(bundle, "onnxruntime", precision, direction="AtoB") as ref,
        open_runner(
            bundle,
            "onnxruntime",
            precision,
            "cuda",
            "AtoB",
            cuda_graphs=True,
            provider_options={"prefer_nhwc": "1"} if nhwc else None,
        ) as gpu,
    ):
        options = gpu.session.get_provider_options()["CUDAExecutionProvider"]
        assert options["enable_cuda_graph"] == "1" and options["prefer_nhwc"] == str(int(nhwc))
        # the smallest sizes the generator takes (a ResNet's bottleneck needs 2x2 to pad)
        m = max(gpu.spec["size_multiple"], MIN_SIDE)
        c = gpu.spec["channels_in"]
        sizes = [(1, m, m), (2, m, 2 * m)] * 3
        for seed, (n, h, w) in enumerate(sizes):
            x = {"image": np.random.default_rng(seed).uniform(-1, 1, (n, c, h, w)).astype("f4")}
            assert parity(gpu.run(x), ref.run(x), gpu.spec)["psnr"] >= 40
        assert len(gpu._graphs) == 2


_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.slow
@pytest.mark.parametrize(
    "device, precision, mode",
    [
        ("cpu", "fp32", "reduce-overhead"),
        pytest.param("cuda", "fp16", "reduce-overhead", marks=_CUDA),
        pytest.param("cuda", "fp32", "default", marks=_CUDA),
    ],
)
def test_compiled_torch_runner_matches_eager(runs, device, precision, mode):
    """The torch deploy path (``--compile MODE --channels-last``): frozen weights, norms that
    keep the layout, one compile (and CUDA graph) per shape; the same images as eager."""
    from edgegan.nn.layers import LayoutInstanceNorm2d
    from edgegan.runtime.bench import parity
    from edgegan.runtime.torch_runner import CompiledGenerator

    run = runs["resnet"]
    with (
        open_runner(run, "torch", precision, device, "AtoB") as eager,
        open_runner(
            run, "torch", precision, device, "AtoB", compile=mode, channels_last=True
        ) as fast,
    ):
        norms = [m for m in fast.gen.module.modules() if isinstance(m, LayoutInstanceNorm2d)]
        assert norms and fast.compiled == mode and fast.channels_last
        assert not any(isinstance(m, LayoutInstanceNorm2d) for m in eager.gen.module.modules())
        assert fast.describe().endswith(f"(compiled {mode}, channels-last)")
        assert isinstance(fast.module, CompiledGenerator)
        c = fast.spec["channels_in"]
        # FP32 on the CPU: the same kernels' arithmetic; on CUDA, inductor's fused norms and
        # the convolution algorithms cuDNN's autotuner picks round differently (H100: 80.5 dB)
        floor = 50 if precision == "fp16" else 100 if device == "cpu" else 70
        for seed, shape in enumerate([(1, c, 32, 32), (2, c, 24, 40), (1, c, 32, 32)] * 2):
            x = {"image": np.random.default_rng(seed).uniform(-1, 1, shape).astype("f4")}
            y, ref = fast.run(x), eager.run(x)
            assert y.shape == ref.shape == (shape[0], fast.spec["channels_out"], *shape[2:])
            assert parity(y, ref, fast.spec)["psnr"] >= floor
        if device == "cuda":
            # Frozen weights are constants of the graph, but on CUDA the constants alias the
            # module's parameters unless a folding made new tensors (the CPU's prepacked
            # convolution weights are new): changing the module shows there (H100, fp16
            # reduce-overhead: 26.5 dB), so the check below is the CPU's alone.
            return
        # The weights are frozen into the compiled graph: changing the module's changes
        # nothing there (and would, were they graph inputs; conv biases before a norm may
        # stay inputs, and halving those only moves rounding)
        with torch.no_grad():
            for p in fast.gen.module.parameters():
                p.mul_(0.5)
        assert parity(fast.run(x), y, fast.spec)["psnr"] >= 100
        with torch.inference_mode():
            changed = fast.gen.module(torch.from_numpy(x["image"]).to(device, fast._dtype))
        assert parity(changed.float().cpu().numpy(), y, fast.spec)["psnr"] < 40


def test_compile_and_layout_options_are_checked(runs):
    with pytest.raises(EdgeganError, match="compile mode 'fast' is not one of default, "):
        open_runner(runs["resnet"], "torch", direction="AtoB", compile="fast")
    with pytest.raises(EdgeganError, match="--channels-last does not apply to the onnx"):
        open_runner(runs["resnet"], "onnxruntime", direction="AtoB", channels_last=True)


def test_exporter_plugin_runs_on_each_direction(runs, tmp_path):
    from test_export import artifact_plugin

    artifact_plugin()
    res = CliRunner().invoke(
        cli, ["export", str(runs["unet"]), "--with", "weights-npz", "--out", str(tmp_path / "b")]
    )
    assert res.exit_code == 0, res.output
    assert "weights-npz: see artifacts.weights-npz in edgegan.json" in res.output
    reports = read_bundle(tmp_path / "b")["artifacts"]["weights-npz"]
    assert {d: r["file"] for d, r in reports.items()} == {
        "AtoB": "weights_AtoB.npz",
        "BtoA": "weights_BtoA.npz",
    }
    assert all((tmp_path / "b" / r["file"]).is_file() for r in reports.values())


def test_unreadable_inputs_are_found_before_any_is_translated(runs, images, tmp_path, monkeypatch):
    """A text file named .jpg at input 1,250 of 2,000 stopped the run after minutes of work
    and took it all back: the headers are checked first, and the error counts them."""
    import shutil

    from edgegan import translate as translate_module

    folder = tmp_path / "in"
    shutil.copytree(images, folder)
    (folder / "sub" / "notes.jpg").write_text("not an image")
    (folder / "zz.png").write_bytes(b"")
    batches: list[int] = []
    real = translate_module.translate_arrays
    monkeypatch.setattr(
        translate_module,
        "translate_arrays",
        lambda runner, imgs, *a, **k: batches.append(len(imgs)) or real(runner, imgs, *a, **k),
    )
    with pytest.raises(
        DataError,
        match=r"^2 of the 5 input images cannot be read; the first: cannot read image "
        r".*notes\.jpg: .* \(--skip-bad translates the others\)$",
    ):
        translate(runs["resnet"], "AtoB", folder, tmp_path / "out", batch_size=1)
    assert batches == [] and not (tmp_path / "out").exists()
    with pytest.warns(DataWarning, match=r"skipped 2 unreadable image\(s\) of 5 \(first: .*notes"):
        written = translate(runs["resnet"], "AtoB", folder, tmp_path / "out", batch_size=1,
                            skip_bad=True)  # fmt: skip
    assert len(written) == 3 and batches == [1, 1, 1]


def test_a_translation_that_fails_halfway_leaves_nothing(runs, images, tmp_path, capsys):
    import io
    import shutil

    folder = tmp_path / "in"
    shutil.copytree(images, folder)
    # after a.png, c.jpg, sub/b.png: cut short in its pixels, so its header reads and it
    # fails only when decoded, halfway through the run
    whole = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        whole, "PNG"
    )
    (folder / "sub" / "z.png").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    out = tmp_path / "deep" / "out"
    res = CliRunner().invoke(cli, ["infer", str(runs["resnet"]), "--direction", "AtoB",
                                   "--input", str(folder), "--out", str(out),
                                   "--batch-size", "1"])  # fmt: skip
    assert res.exit_code == 2 and "z.png" in res.stderr, res.output
    assert "(--skip-bad translates the others)" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # deep/out/sub taken back
    # --skip-bad: the others are translated, and one warning counts what was left out
    with pytest.warns(DataWarning, match=r"skipped 1 unreadable image\(s\) of 4 \(first: .*z"):
        written = translate(runs["resnet"], "AtoB", folder, tmp_path / "skip", batch_size=1,
                            skip_bad=True)  # fmt: skip
    names = sorted(p.relative_to(tmp_path / "skip").as_posix() for p in written)
    assert names == ["a.png", "c.png", "sub/b.png"]
    shutil.rmtree(tmp_path / "skip")
    # the progress bar counts a skipped file as done: it reaches its total (it stopped at 3/4)
    with pytest.warns(DataWarning, match="skipped 1"):
        translate(runs["resnet"], "AtoB", folder, tmp_path / "skip", batch_size=1,
                  skip_bad=True, progress=True)  # fmt: skip
    assert "infer: images 4/4" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "skip")
    with pytest.raises(DataError, match=r"none of the 1 input image\(s\) could be read"):
        translate(runs["resnet"], "AtoB", folder / "sub" / "z.png", tmp_path / "none",
                  skip_bad=True)  # fmt: skip
    assert not (tmp_path / "none").exists()
    # With --overwrite into a folder of earlier files: those stay, even the replaced ones.
    out = tmp_path / "old"
    (out / "sub").mkdir(parents=True)
    (out / "a.png").write_bytes(b"OLD")
    (out / "notes.txt").write_text("keep")
    res = CliRunner().invoke(cli, ["infer", str(runs["resnet"]), "--direction", "AtoB",
                                   "--input", str(folder), "--out", str(out),
                                   "--batch-size", "1", "--overwrite"])  # fmt: skip
    assert res.exit_code == 2
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "a.png",
        "notes.txt",
        "sub",
    ]


def test_runners_refuse_inputs_their_graph_cannot_take(bundles, tmp_path):
    from edgegan.config import load_config
    from edgegan.export import export
    from edgegan.runtime import open_runner
    from edgegan.sampling import sample
    from edgegan.train import train
    from edgegan.translate import translate_arrays

    bundle, _ = bundles["resnet"]
    gan = train(load_config("dcgan-mnist", TINY_GAN), out_dir=tmp_path / "g").run_dir
    export(gan)
    for backend in ("torch", "onnxruntime"):
        # These were the backends' own errors (a torch RuntimeError, ORT's InvalidArgument),
        # or a KeyError from deep inside.
        with open_runner(bundle, backend, direction="AtoB") as translator:
            c = translator.spec["channels_in"]
            with pytest.raises(EdgeganError, match=f"input 'image' must have shape \\(\\?, {c}, "):
                translator.run({"image": np.zeros((1, c + 1, 8, 8), np.float32)})
            with pytest.raises(EdgeganError, match="multiples of 4; got 8x6"):
                translator.run({"image": np.zeros((1, c, 8, 6), np.float32)})
            with pytest.raises(EdgeganError, match="AtoB is an image-to-image generator"):
                sample(translator, 2)
        with open_runner(gan, backend) as generator:
            labels = np.zeros(2, np.int64)
            with pytest.raises(EdgeganError, match="input 'z' must have shape \\(\\?, 16\\)"):
                generator.run({"z": np.zeros((2, 10), np.float32), "labels": labels})
            with pytest.raises(EdgeganError, match="labels must be in \\[0, 10\\); got 0..11"):
                generator.run({"z": np.zeros((2, 16), np.float32), "labels": labels + [0, 11]})
            with pytest.raises(EdgeganError, match="this is a GAN generator"):
                translate_arrays(generator, [np.zeros((8, 8), np.uint8)])


def test_export_takes_one_direction_as_a_string(runs, tmp_path):
    # "AtoB" used to be read as the directions "A", "t", "o", "B".
    meta = export(runs["resnet"], out=tmp_path / "b", directions="AtoB")
    assert meta["directions"] == ["AtoB"]
    from edgegan.export.bundle import export_command

    # The command that writes it again keeps it to its one direction.
    run = runs["resnet"].resolve()
    assert export_command(tmp_path / "b", meta) == (
        f"edgegan export {run} --direction AtoB --out {tmp_path / 'b'} --overwrite"
    )


def test_translate_says_which_image_files_it_leaves_out(runs, images, tmp_path):
    import shutil

    from edgegan.data.base import DataWarning
    from edgegan.translate import translate

    folder = tmp_path / "in"
    shutil.copytree(images, folder)
    Image.new("RGB", (16, 16)).save(folder / "sub" / "anim.gif")
    (folder / "notes.txt").write_text("no warning for this")
    (folder / "sub" / "._b.png").write_bytes(b"\0\5\x16\7" + bytes(80))  # macOS metadata
    with pytest.warns(DataWarning, match=r"translate: left out 1 \.gif under .*in \(it reads") as w:
        written = translate(runs["resnet"], "AtoB", folder, tmp_path / "out")
    assert w[0].filename == __file__
    assert sorted(p.name for p in written) == ["a.png", "b.png", "c.png"]


def test_the_torch_backend_runs_a_run_whose_bundle_lacks_the_direction(runs, tmp_path):
    """The torch backend runs the run itself: a RUN/export with only AtoB (or a damaged one)
    used to refuse `infer RUN --direction BtoA` though nothing of the bundle was needed."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["resnet"], run, ignore=shutil.ignore_patterns("export"))
    export(run, directions="AtoB")
    with pytest.warns(UserWarning, match="export is not used: the bundle has no BtoA graphs"):
        runner = open_runner(run, "torch", direction="BtoA")
    with runner:
        assert runner.spec["direction"] == "BtoA"
    # the advice keeps AtoB: re-exporting with --direction BtoA over it would drop AtoB
    with pytest.raises(EdgeganError, match=r"the bundle has no BtoA graphs \(it has: AtoB\); "
                       r"export the run again without --direction \(both\), or with "
                       r"--direction BtoA to another --out"):  # fmt: skip
        open_runner(run, "onnxruntime", direction="BtoA")  # that one needs the bundle


def test_a_bundles_min_side_is_what_infer_pads_to():
    """spec.min_side is recorded for deployments, which pad to it; edgegan's own runners
    padded to the constant whatever the bundle said (an edited bundle disagreed)."""
    from edgegan.export.signature import direction_spec
    from edgegan.translate import preprocess

    bundle_spec = {"channels_a": 1, "channels_b": 3, "image_size": 32, "size_multiple": 4,
                   "value_range": [-1.0, 1.0], "min_side": 16}  # fmt: skip
    spec = direction_spec(bundle_spec, "AtoB")
    assert spec["min_side"] == 16
    assert preprocess(np.zeros((4, 6), np.uint8), spec).shape == (1, 16, 16)
    del bundle_spec["min_side"]  # a bundle from before min_side: the constant, 8
    assert preprocess(np.zeros((4, 6), np.uint8), direction_spec(bundle_spec, "AtoB")).shape == (
        1, 8, 8
    )  # fmt: skip


@pytest.mark.parametrize("samples", [6, 7])
def test_int8_calibrates_on_a_count_of_images_that_batches_do_not_divide(runs, samples, tmp_path):
    """The percentile calibrator stacks its feeds: 6 images in feeds of 4 (4 + 2) failed
    ("inhomogeneous shape"), so every split whose size is no multiple of 4 failed the
    default --int8 export. Every image still calibrates."""
    out = tmp_path / "b"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # fewer than 16 images: warned, not here
        meta = export(runs["unet"], out=out, int8=True, calib_samples=samples, directions="AtoB")
    int8 = meta["models"]["AtoB"]["int8"]
    assert int8["calibration"]["samples"] == samples
    assert int8["parity"]["psnr"] >= verify.MIN_PSNR["int8"]


def test_a_cyclegan_exports_the_checkpoint_it_is_given(runs, tmp_path):
    """Both directions come from ``checkpoint`` (weights of its own), and the torch backend
    on the bundle runs that checkpoint's generators."""
    import shutil

    from edgegan.train.checkpoint import atomic_save, load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(runs["resnet"], run, ignore=shutil.ignore_patterns("export"))
    state = load_checkpoint(run / "checkpoints/last.pt")
    for weights in (state["ema"], *state["networks"].values()):
        for value in weights.values():
            if value.is_floating_point():
                value.mul_(0.5)
    atomic_save(state, run / "checkpoints/halved.pt")
    last = export(run, out=tmp_path / "last")
    halved = export(run, out=tmp_path / "halved", checkpoint="halved")
    assert halved["source"]["checkpoint"] == "halved" and "checkpoint" not in last["source"]
    assert halved["directions"] == ["AtoB", "BtoA"]
    for d in ("AtoB", "BtoA"):
        assert halved["source"]["digest"][d] != last["source"]["digest"][d]
        open_runner(tmp_path / "halved", "torch", direction=d).close()  # matches its weights


def test_translation_at_the_training_scale(runs, images, tmp_path):
    """`--resize N|train` translates each input resized (shorter side, aspect kept); at
    native size, inputs far larger than the training size are warned about once."""
    from edgegan.translate import translate

    run = runs["resnet"]
    size = int(load_translator(run, "AtoB").spec["image_size"])
    sizes = {"a.png": (32, 32), "sub/b.png": (45, 30), "c.jpg": (32, 32)}  # (w, h)
    out = _infer(run, tmp_path / "n", images, "--resize", "16")
    for name, (w, h) in sizes.items():
        got = out[str(Path(name).with_suffix(".png").as_posix())].shape[:2]
        assert got == (16, round(w * 16 / h)) if h < w else got == (round(h * 16 / w), 16)
    trained = _infer(run, tmp_path / "t", images, "--resize", "train")
    assert all(min(img.shape[:2]) == size for img in trained.values())
    big = tmp_path / "big"
    big.mkdir()
    Image.new("L", (5 * size, 4 * size), 90).save(big / "x.png")
    Image.new("L", (4 * size, 3 * size), 90).save(big / "y.png")
    with pytest.warns(UserWarning, match=rf"images up to {4 * size} px .* trained at {size} px"):
        translate(run, "AtoB", big, tmp_path / "w", batch_size=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        translate(run, "AtoB", big, tmp_path / "r", resize="train")
    for bad in ("0", "x", "2.5"):
        with pytest.raises(
            EdgeganError, match=f"--resize takes a size in pixels or 'train', got '{bad}'"
        ):
            translate(run, "AtoB", big, tmp_path / "e", resize=bad)
    with pytest.raises(EdgeganError, match="--resize takes at most 8192 px .*, got 100000"):
        translate(run, "AtoB", big, tmp_path / "e", resize="100000")
    res = CliRunner().invoke(
        cli, ["infer", str(run), "--num", "2", "--resize", "8", "--out", str(tmp_path / "g")]
    )
    assert res.exit_code == 2 and "--split-pairs and --skip-bad apply to translation" in res.stderr


def test_side_by_side_translations(runs, images, tmp_path):
    """`--side-by-side`: the input (in the output's channels) left of its translation."""
    run = runs["resnet"]
    alone = _infer(run, tmp_path / "o", images)
    both = _infer(run, tmp_path / "s", images, "--side-by-side")
    assert alone.keys() == both.keys()
    for name, out in alone.items():
        h, w = out.shape[:2]
        assert both[name].shape == (h, 2 * w, *out.shape[2:])
        assert np.array_equal(both[name][:, w:], out)
    grey = np.asarray(Image.open(images / "a.png"))  # A is grey, B (the output) RGB
    assert np.array_equal(both["a.png"][:, :32], np.repeat(grey[:, :, None], 3, axis=2))


def test_a_graph_fixed_to_one_shape_as_the_deploy_docs_say_computes_the_same(bundles, tmp_path):
    """docs/deploy.md, "Fixed shapes": ONNX Runtime's make_dynamic_shape_fixed on the
    bundle's dimension names gives a static graph with the bundle graph's outputs."""
    import onnxruntime as ort

    bundle, _ = bundles["resnet"]
    fixed = tmp_path / "a2b.onnx"
    src = bundle / "model_AtoB.onnx"
    for dim, value in (("batch", 1), ("height", 32), ("width", 32)):
        cmd = [sys.executable, "-m", "onnxruntime.tools.make_dynamic_shape_fixed",
               "--dim_param", dim, "--dim_value", str(value), str(src), str(fixed)]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
        src = fixed
    shape = [d.dim_value for d in onnx.load(str(fixed)).graph.input[0].type.tensor_type.shape.dim]
    assert shape == [1, 1, 32, 32]
    x = np.random.default_rng(0).uniform(-1, 1, (1, 1, 32, 32)).astype(np.float32)
    want = ort.InferenceSession(str(bundle / "model_AtoB.onnx")).run(None, {"image": x})[0]
    got = ort.InferenceSession(str(fixed)).run(None, {"image": x})[0]
    assert np.array_equal(got, want)


def test_resize_train_follows_how_the_run_scaled_its_training_images():
    """`--resize train` and the native-size warning follow the run's data.preprocess: the
    crop_size on the shorter side (resize_and_crop), width load_size (scale_width_and_crop),
    native (crop: no warning either)."""
    from edgegan.translate import _rescale, _scaling, _warn_if_far_larger

    base = {"image_size": 32}
    assert _scaling("train", base) == ("shorter", 32)  # a run that recorded nothing
    assert _scaling("train", {**base, "preprocess": "resize_and_crop", "load_size": 36}) == (
        "shorter",
        32,
    )
    wide = {**base, "preprocess": "scale_width_and_crop", "load_size": 100}
    assert _scaling("train", wide) == ("width", 100)
    assert _scaling("train", {**base, "preprocess": "crop", "load_size": 36}) is None
    assert _scaling("24", wide) == ("shorter", 24)
    photo = Image.new("RGB", (400, 300))
    assert _rescale(photo, ("width", 100)).size == (100, 75)
    assert _rescale(photo, ("shorter", 24)).size == (32, 24)
    with pytest.warns(
        UserWarning, match="images up to 400 px in width, for a generator trained at 100"
    ):
        assert _warn_if_far_larger([photo], wide)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not _warn_if_far_larger([photo], {**base, "preprocess": "crop"})
        assert not _warn_if_far_larger([Image.new("L", (190, 150))], wide)


def test_eval_scores_a_cyclegan_run_and_says_how_of_its_bundle(runs, bundles):
    res = CliRunner().invoke(cli, ["eval", str(runs["unet"]), "--json"])
    assert res.exit_code == 0, res.output  # its test split (tests/test_pix2pix.py: as eval.json)
    assert {"ab_psnr", "ba_psnr", "num_samples"} <= set(json.loads(res.stdout))
    res = CliRunner().invoke(cli, ["eval", str(bundles["unet"][0])])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "is a cyclegan run or bundle: eval scores a GAN's samples" in res.stderr
    assert "scored on its test split by `edgegan eval RUN`" in res.stderr
    assert "`edgegan infer --direction AtoB --input DIR` translates" in res.stderr


def test_a_cyclegan_export_reads_the_checkpoint_once(runs, tmp_path, monkeypatch):
    loads = count_checkpoint_loads(monkeypatch)
    meta = export(runs["unet"], out=tmp_path / "b")
    assert loads == ["last.pt"] and meta["directions"] == ["AtoB", "BtoA"]


def test_a_cyclegan_export_of_a_named_checkpoint_names_it_when_it_cannot_be_read(runs, tmp_path):
    run = copy_with_a_newer_checkpoint(runs["unet"], tmp_path / "run")
    with pytest.raises(EdgeganError, match=r"checkpoints/odd\.pt: .*newer_switch"):
        export(run, out=tmp_path / "b", checkpoint="odd")
