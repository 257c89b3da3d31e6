"""Runtimes behind one interface: the same images for the same seed on every backend, the
bench's JSON, and TensorRT: the one-line error without it, the builder's logic against a stub
module, engine metadata checks, and a real build-run-parity test where TensorRT and CUDA exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tiny import TENSORRT_NEEDED, TINY_GAN, count_checkpoint_loads, tensorrt_runs_here

from edgegan.cli import cli
from edgegan.errors import EdgeganError
from edgegan.export.bundle import BUNDLE_FILE, read_bundle, write_bundle
from edgegan.export.trt_profile import BuildOptions
from edgegan.runtime import BackendUnavailable, open_runner, physical_cores, resolve_target
from edgegan.runtime.base import parse_device
from edgegan.sampling import make_inputs, postprocess, sample, to_uint8_nhwc

TINY = TINY_GAN
TRT_EXTRA = "pip install 'edgegan[trt]'"


def _has_ort_cuda() -> bool:
    import onnxruntime as ort
    import torch

    return "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available()


needs_trt = pytest.mark.skipif(not tensorrt_runs_here(), reason=TENSORRT_NEEDED)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from edgegan.config import load_config
    from edgegan.train import train

    out = tmp_path_factory.mktemp("runtime") / "run"
    train(load_config("dcgan-mnist", TINY), out_dir=out)
    return out


@pytest.fixture(scope="module")
def bundle(run_dir) -> Path:
    from edgegan.export import export

    out = run_dir.parent / "bundle"
    export(run_dir, out=out, fp16=True, int8=True, calib_samples=32)
    return out


def _needs_model(bundle: Path, precision: str) -> None:
    # the fixture exports every precision: a graph missing is a failure, never a skip
    assert precision in read_bundle(bundle)["models"], f"the bundle has no {precision} graph"


@pytest.fixture
def bundle_copy(bundle, tmp_path) -> Path:
    """A copy to modify (engine records, source run)."""
    out = tmp_path / "bundle"
    shutil.copytree(bundle, out)
    return out


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Neither tensorrt nor tensorrt_rtx importable, whatever is installed."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)


# -- shared pre/post-processing ------------------------------------------------------------------
def test_inputs_and_postprocessing_are_shared():
    spec = {"latent_dim": 4, "num_classes": 3, "value_range": [-1.0, 1.0]}
    a, b = make_inputs(spec, 5, seed=7), make_inputs(spec, 5, seed=7)
    assert a.keys() == {"z", "labels"}
    assert a["z"].dtype == np.float32 and a["labels"].dtype == np.int64
    np.testing.assert_array_equal(a["z"], b["z"])
    assert a["labels"].tolist() == [0, 1, 2, 0, 1]
    assert make_inputs({"latent_dim": 4, "num_classes": 0}, 2).keys() == {"z"}
    raw = np.array([[[[-1.5, -1.0, 0.0, 1.0, 2.0]]]], dtype=np.float32)
    assert postprocess(raw, spec).min() == -1.0 and postprocess(raw, spec).max() == 1.0
    assert to_uint8_nhwc(postprocess(raw, spec))[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]
    # another value range maps the same way onto 0..255
    assert to_uint8_nhwc(np.array([[[[0.0, 0.5, 1.0]]]]), (0.0, 1.0))[0, 0, :, 0].tolist() == [
        0,
        128,
        255,
    ]


def test_sample_splits_batches_to_the_runner_limit():
    class Echo:
        spec = {"latent_dim": 3, "num_classes": 0, "image_shape": [1, 1, 3]}
        max_batch = 2
        seen: list[int] = []

        def run(self, inputs):
            self.seen.append(len(inputs["z"]))
            return inputs["z"][:, None, None, :] * 10

    runner = Echo()
    result = sample(runner, 5, seed=0, batch_size=4)
    assert runner.seen == [2, 2, 1]
    assert result["images"].shape == (5, 1, 1, 3)
    assert np.abs(result["images"]).max() <= 1.0  # clipped by the shared post-processing


def test_devices_and_cores():
    assert parse_device("cpu") == ("cpu", 0)
    assert parse_device("cuda") == ("cuda", 0)
    assert parse_device("cuda:1") == ("cuda", 1)
    for bad in ("gpu", "cuda:x", "cpu:1"):
        with pytest.raises(EdgeganError, match="unknown device"):
            parse_device(bad)
    assert physical_cores() >= 1


def test_physical_cores_on_macos_and_windows(monkeypatch):
    """Without /sys (macOS, Windows) the logical CPUs were counted: with hyper-threading,
    twice onnxruntime's own default threads. Read as each system tells them (stand-ins)."""
    import ctypes
    import struct

    from edgegan.runtime import base

    class Libc:
        def sysctlbyname(self, name, value, size, new, new_size):
            assert name == b"hw.physicalcpu" and size._obj.value == ctypes.sizeof(ctypes.c_int)
            value._obj.value = 6
            return 0

    assert base._darwin_physical_cores(Libc()) == 6

    class Kernel32:
        """Four cores, as records of two DWORDs (relationship 0, size) and their payload."""

        records = b"".join(struct.pack("<II", 0, 48) + bytes(40) for _ in range(4))

        def GetLogicalProcessorInformationEx(self, relationship, buf, size):
            assert relationship == 0
            if buf is None:
                size._obj.value = len(self.records)
                return 0  # ERROR_INSUFFICIENT_BUFFER, with the size needed
            ctypes.memmove(buf, self.records, len(self.records))
            return 1

    assert base._windows_physical_cores(Kernel32()) == 4
    monkeypatch.delattr(base.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(base.sys, "platform", "win32")
    monkeypatch.setattr(base, "_windows_physical_cores", lambda: 4)
    assert physical_cores() == 4
    monkeypatch.setattr(base, "_windows_physical_cores", lambda: None)  # unreadable
    assert physical_cores() == (os.cpu_count() or 1)
    monkeypatch.setattr(base.sys, "platform", "darwin")
    monkeypatch.setattr(base, "_darwin_physical_cores", lambda: 6)
    assert physical_cores() == 6


def test_device_auto_is_cuda_when_torch_sees_a_gpu(bundle, monkeypatch):
    """As train.device=auto; infer and bench refused it ('unknown device')."""
    import torch

    from edgegan.runtime.base import resolve_auto
    from edgegan.runtime.bench import bench

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_auto("auto") == "cuda" and parse_device(" Auto ") == ("cuda", 0)
    assert resolve_auto("cuda:1") == "cuda:1" and resolve_auto("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert parse_device("auto") == ("cpu", 0)
    with open_runner(bundle, "onnxruntime", device="auto") as runner:
        assert runner.device == "cpu"
    result = bench(bundle, "onnxruntime", "fp32", [1], warmup=0, iters=1, device="auto")
    assert [r["device"] for r in result["results"]] == ["cpu"]


# -- same images on every backend ------------------------------------------------------------------
def test_torch_and_onnxruntime_fp32_agree(run_dir, bundle):
    with (
        open_runner(run_dir, "torch") as torch_runner,
        open_runner(bundle, "onnxruntime", "fp32") as ort_runner,
    ):
        assert torch_runner.spec["latent_dim"] == ort_runner.spec["latent_dim"] == 16
        inputs = make_inputs(ort_runner.spec, 16, seed=0)
        a, b = torch_runner.run(inputs), ort_runner.run(inputs)
        # A latent generator's calls are sub-millisecond: its worker threads spin between ops.
        options = ort_runner.session.get_session_options()
        assert ort_runner.spinning
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert a.shape == b.shape == (16, 1, 28, 28) and b.dtype == np.float32
    assert np.abs(a - b).max() < 1e-4


def _available_combos() -> list[tuple[str, str, str]]:
    combos = [("onnxruntime", p, "cpu") for p in ("fp32", "fp16", "int8")]
    if _has_ort_cuda():
        combos += [("onnxruntime", p, "cuda") for p in ("fp32", "fp16", "int8")]
        combos += [("torch", "fp16", "cuda")]
    return combos


@pytest.mark.parametrize("backend, precision, device", _available_combos())
def test_every_available_backend_samples_the_same_images(
    run_dir, bundle, backend, precision, device
):
    from edgegan.runtime.bench import parity

    target = run_dir if backend == "torch" else bundle
    if backend != "torch":
        _needs_model(bundle, precision)
    with open_runner(run_dir, "torch") as ref:
        expected = sample(ref, 20, seed=3, batch_size=8)
    with open_runner(target, backend, precision, device=device) as runner:
        got = sample(runner, 20, seed=3, batch_size=8)
    np.testing.assert_array_equal(got["latents"], expected["latents"])
    np.testing.assert_array_equal(got["labels"], expected["labels"])
    err = parity(got["images"], expected["images"], runner.spec)
    if precision == "fp32":
        assert err["max_abs"] < 1e-4, err
    else:
        assert err["psnr"] >= {"fp16": 30.0, "int8": 20.0}[precision], err


def test_cli_infer_bundle_matches_run(run_dir, bundle, tmp_path):
    runner = CliRunner()
    common = ["--num", "16", "--seed", "0", "--format", "npz"]
    a = runner.invoke(cli, ["infer", str(run_dir), "--backend", "torch", *common,
                            "--out", str(tmp_path / "t")])  # fmt: skip
    assert a.exit_code == 0, a.output
    b = runner.invoke(cli, ["infer", str(bundle), "--backend", "onnxruntime", *common,
                            "--batch-size", "5", "--out", str(tmp_path / "o")])  # fmt: skip
    assert b.exit_code == 0, b.output
    assert "infer: images 16/16" in b.stderr  # an npz of many batches shows progress too
    t, o = np.load(tmp_path / "t/images.npz"), np.load(tmp_path / "o/images.npz")
    assert sorted(o.files) == ["images", "labels", "latents", "raw"]
    from edgegan.runtime import open_runner
    from edgegan.sampling import sample, to_uint8_nhwc

    with open_runner(bundle, "onnxruntime") as runner:  # filled in place, batch by batch
        api = sample(runner, 16, seed=0, batch_size=5)
    np.testing.assert_array_equal(api["images"], o["raw"])
    np.testing.assert_array_equal(to_uint8_nhwc(api["images"]), o["images"])
    np.testing.assert_array_equal(t["latents"], o["latents"])
    np.testing.assert_array_equal(t["labels"], o["labels"])
    assert t["images"].dtype == np.uint8 and t["images"].shape == (16, 28, 28, 1)
    diff = np.abs(t["images"].astype(int) - o["images"].astype(int))
    assert diff.max() <= 1


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_standalone_example_samples_as_edgegan_infer_does(bundle, tmp_path, precision):
    """examples/run_bundle.py, with numpy, onnxruntime and Pillow only (torch and edgegan
    unimportable), draws edgegan's latents and labels and gives its images."""
    from tiny import run_standalone_example

    args = ["--num", "12", "--seed", "5", "--labels", "3,7,1", "--precision", precision]
    res = CliRunner().invoke(cli, ["infer", str(bundle), "--backend", "onnxruntime", *args,
                                   "--format", "npz", "--out", str(tmp_path / "e")])  # fmt: skip
    assert res.exit_code == 0, res.output
    run_standalone_example(str(bundle), *args, "--out", str(tmp_path / "s.npz"))
    e, s = np.load(tmp_path / "e/images.npz"), np.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(e["latents"], s["latents"])
    np.testing.assert_array_equal(e["labels"], s["labels"])
    assert list(s["labels"][:4]) == [3, 7, 1, 3]
    assert e["images"].dtype == s["images"].dtype == np.uint8
    assert np.abs(e["images"].astype(int) - s["images"].astype(int)).max() == 0
    # its mistakes are one line, as edgegan's (they were tracebacks)
    out = str(tmp_path / "x.npz")
    for args, said in (
        (["--direction", "AtoB"], "error: a gan bundle samples latents: no --direction"),
        (["--input", str(tmp_path)], "error: a gan bundle samples latents: no --input"),
        (["--num", "-1"], "error: --num must be at least 1, got -1"),
        (["--labels", "Sneaker"], "error: --labels: 'Sneaker' is no class (classes: 0, 1,"),
    ):
        assert said in run_standalone_example(str(bundle), *args, "--out", out, fails=True)
    assert not (tmp_path / "x.npz").exists()
    # labels read as edgegan reads them: names ignoring case, numbers first, and a number
    # that is another class's name refused (it took the name, and names case-sensitively)
    import importlib.util

    from edgegan.sampling import class_indices

    path = Path(__file__).resolve().parents[1] / "examples" / "run_bundle.py"
    module_spec = importlib.util.spec_from_file_location("run_bundle", path)
    reader = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(reader)
    fashion = {"class_names": ["Sneaker", "Bag", "Coat"]}
    assert reader.parse_labels("sneaker,2", fashion) == class_indices(["sneaker", 2], fashion)
    folders = {"class_names": ["1", "2", "3"]}
    with pytest.raises(EdgeganError, match="is both class number 1 and the class named '1'"):
        class_indices([1], folders)
    with pytest.raises(SystemExit, match="is both class number 1 and the class named '1'"):
        reader.parse_labels("1", folders)


def test_a_graph_newer_than_onnxruntime_or_a_newer_bundle_says_so(bundle_copy, tmp_path):
    """A bundle exported with a higher --opset than this onnxruntime reads (or a newer IR
    version) is no damaged file: upgrade onnxruntime or export lower; the standalone reader
    refuses a bundle format it does not know instead of misreading it."""
    import hashlib

    import onnx
    from tiny import run_standalone_example

    meta = read_bundle(bundle_copy)
    graph = bundle_copy / meta["models"]["fp32"]["file"]
    original = graph.read_bytes()
    for field, value, words in (
        ("ir_version", 99, "the graph is ONNX IR version 99, it reads up to "),
        ("opset", 99, "the graph is opset 99, it reads up to "),
    ):
        model = onnx.load_from_string(original)
        if field == "opset":
            for entry in model.opset_import:
                if entry.domain in ("", "ai.onnx"):
                    entry.version = value
        else:
            model.ir_version = value
        graph.write_bytes(model.SerializeToString())
        meta["models"]["fp32"]["sha256"] = hashlib.sha256(graph.read_bytes()).hexdigest()
        (bundle_copy / BUNDLE_FILE).write_text(json.dumps(meta))
        with pytest.raises(EdgeganError) as caught:
            open_runner(bundle_copy, "onnxruntime").close()
        message = str(caught.value)
        assert words in message and "upgrade onnxruntime" in message, message
        assert "damaged" not in message and "\n" not in message
        standalone = run_standalone_example(str(bundle_copy), "--num", "2", "--out",
                                            str(tmp_path / "s.npz"), fails=True)  # fmt: skip
        assert "cannot load" in standalone and str(value) in standalone
    (bundle_copy / BUNDLE_FILE).write_text(json.dumps({**meta, "format": 2}))
    standalone = run_standalone_example(str(bundle_copy), "--num", "2", "--out",
                                        str(tmp_path / "s.npz"), fails=True)  # fmt: skip
    assert "error: bundle format 2; this reader knows 1" in standalone
    assert not (tmp_path / "s.npz").exists()


def test_a_bundle_replaced_while_bench_runs_is_not_called_damaged(bundle_copy, monkeypatch):
    """export --overwrite swapped the bundle between bench reading edgegan.json and opening
    a graph: each row said the (sound) graph was damaged, and bench exited 0."""
    import hashlib

    import onnx

    from edgegan.export.bundle import BundleReplaced
    from edgegan.runtime import bench as bench_module

    meta = read_bundle(bundle_copy)
    target = resolve_target(bundle_copy)  # the metadata, as bench reads it first
    graph = bundle_copy / meta["models"]["fp32"]["file"]
    model = onnx.load(str(graph))
    model.doc_string = "another export"  # other bytes, the same interface
    graph.write_bytes(model.SerializeToString())
    with pytest.raises(EdgeganError, match="sha256 differs.*damaged") as caught:
        open_runner(target, "onnxruntime").close()  # edited, not re-exported: damaged
    assert not isinstance(caught.value, BundleReplaced)
    meta["models"]["fp32"]["sha256"] = hashlib.sha256(graph.read_bytes()).hexdigest()
    (bundle_copy / BUNDLE_FILE).write_text(json.dumps(meta))  # ... now a whole new export
    with pytest.raises(BundleReplaced, match="was replaced by another export while"):
        open_runner(target, "onnxruntime").close()
    with pytest.raises(BundleReplaced):
        bench_module.bench(target, backends=["onnxruntime"], precisions=["fp32"],
                           batch_sizes=[1], warmup=1, iters=2)  # fmt: skip
    res = CliRunner().invoke(cli, ["bench", str(bundle_copy), "--backends", "onnxruntime",
                                   "--precisions", "fp32", "--batch-sizes", "1"])  # fmt: skip
    assert res.exit_code == 0, res.output  # read afresh: the new bundle measures


def test_int8_and_fp16_through_cli(bundle, tmp_path):
    for precision in [p for p in ("fp16", "int8") if p in read_bundle(bundle)["models"]]:
        res = CliRunner().invoke(cli, ["infer", str(bundle), "--backend", "onnxruntime",
                                       "--precision", precision, "--labels", "3,7",
                                       "--out", str(tmp_path / precision)])  # fmt: skip
        assert res.exit_code == 0, res.output
        assert sorted(p.name for p in (tmp_path / precision).iterdir()) == [
            "000000_label3.png",
            "000001_label7.png",
        ]


def test_run_dir_needs_a_bundle_for_exported_backends(run_dir, bundle, tmp_path):
    res = CliRunner().invoke(
        cli,
        [
            "infer",
            str(run_dir),
            "--backend",
            "onnxruntime",
            "--num",
            "2",
            "--out",
            str(tmp_path / "o"),
        ],  # fmt: skip
    )
    assert res.exit_code == 2
    assert "edgegan export" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    # a run with its bundle in RUN/export runs that bundle
    run2 = tmp_path / "run2"
    (run2 / "checkpoints").mkdir(parents=True)
    shutil.copy2(run_dir / "checkpoints/last.pt", run2 / "checkpoints/last.pt")
    shutil.copytree(bundle, run2 / "export")
    target = resolve_target(run2, need_bundle=True)
    assert target.bundle == run2 / "export" and target.source_run() == run2
    with open_runner(run2, "onnxruntime") as runner:
        assert runner.run(make_inputs(runner.spec, 2)).shape == (2, 1, 28, 28)


def test_clear_errors(bundle, bundle_copy, tmp_path):
    with pytest.raises(EdgeganError, match="does not apply to the onnxruntime backend"):
        open_runner(bundle, "onnxruntime", compile=True)
    with pytest.raises(BackendUnavailable, match="no int8 path"):
        open_runner(bundle, "torch", "int8")
    with pytest.raises(EdgeganError, match="neither a run directory"):
        open_runner(tmp_path, "onnxruntime")
    meta = read_bundle(bundle_copy)
    meta["models"].pop("fp16", None)
    meta["source"]["run_dir"] = str(tmp_path / "gone")
    write_bundle(bundle_copy, meta)
    with pytest.raises(BackendUnavailable, match="no fp16 model.*--fp16"):
        open_runner(bundle_copy, "onnxruntime", "fp16")
    with pytest.raises(EdgeganError, match="which is not here; use --backend onnxruntime"):
        open_runner(bundle_copy, "torch")
    # A relative run_dir (an edited bundle) is read beside the bundle, not from the working
    # directory, which could hold any run of that name
    meta["source"]["run_dir"] = "run"
    write_bundle(bundle_copy, meta)
    cwd = os.getcwd()
    os.chdir(bundle.parent)  # holds the fixture's "run"
    try:
        with pytest.raises(EdgeganError, match="which is not here"):
            open_runner(bundle_copy, "torch")
    finally:
        os.chdir(cwd)


def test_api_arguments_are_checked_with_one_line(run_dir, bundle, tmp_path):
    """What the CLI's option types check, the Python API checks too (these were numpy or
    torch errors, an AssertionError, or silently accepted)."""
    from edgegan.sampling import generate, infer, load_run_generator

    for device, message in (("gpu", "device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
                            ("cuda:99", "device=cuda:99 but")):  # fmt: skip
        if device.startswith("cuda") and _torch_cuda():
            continue
        with pytest.raises(EdgeganError, match=re.escape(message)):
            load_run_generator(run_dir, device=device)
    gen = load_run_generator(run_dir)
    with pytest.raises(EdgeganError, match="--seed must be an integer >= 0, got -1"):
        generate(gen, 2, seed=-1)
    with pytest.raises(EdgeganError, match="--seed must be an integer >= 0, got -1"):
        infer(run_dir, tmp_path / "o", num=2, seed=-1)
    with pytest.raises(EdgeganError, match="--seed must be an integer >= 0"):
        make_inputs({"latent_dim": 4}, 2, seed=1.5)
    for size in (-5, 0):
        with pytest.raises(EdgeganError, match="batch-size must be a positive number"):
            generate(gen, 3, batch_size=size)
    with pytest.raises(EdgeganError, match="--batch-size must be a positive integer, got 2.5"):
        generate(gen, 3, batch_size=2.5)
    for num in (0, 2.5, "3"):  # 2.5 was a bare TypeError from NumPy
        with pytest.raises(
            EdgeganError, match=f"--num must be a positive number of images, got {num!r}"
        ):
            generate(gen, num)
        with pytest.raises(EdgeganError, match="--num must be a positive number of images"):
            make_inputs({"latent_dim": 4}, num)
    for threads in (-1, "x"):
        with pytest.raises(EdgeganError, match="--threads must be an integer >= 1"):
            open_runner(bundle, "onnxruntime", threads=threads)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_labels_outside_the_classes_are_refused_on_either_side(run_dir, bundle, backend):
    """onnxruntime quietly reads label -1 as class 9 (a Gather from the end) and returns an
    image: the check in front of every backend must refuse both ends."""
    with open_runner(run_dir if backend == "torch" else bundle, backend) as runner:
        inputs = make_inputs(runner.spec, 1)
        for bad in (-1, 10):
            inputs["labels"] = np.array([bad], dtype=np.int64)
            with pytest.raises(EdgeganError, match=r"labels must be in \[0, 10\)"):
                runner.run(inputs)


def _torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_a_closed_runner_says_so(run_dir, bundle, backend):
    runner = open_runner(run_dir if backend == "torch" else bundle, backend)
    with runner:
        inputs = make_inputs(runner.spec, 2)
        assert runner.run(inputs).shape[0] == 2
    with pytest.raises(EdgeganError, match=f"this {backend} runner is closed"):
        runner.run(inputs)
    with pytest.raises(EdgeganError, match="runner is closed"):
        sample(runner, 2)


def test_loading_a_generator_leaves_the_callers_random_stream_alone(run_dir):
    import torch

    from edgegan.sampling import load_run_generator

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    load_run_generator(run_dir)
    assert torch.equal(torch.rand(3), expected)


def test_bench_json_never_overwrites_a_file_of_the_bundle(bundle_copy, monkeypatch):
    """--json B/edgegan.json replaced the bundle's metadata with the results (exit 0); so
    did B/Edgegan.json on macOS and Windows, where names ignore case (os.path.samefile
    knows: a stand-in for such a filesystem here)."""
    import os

    before = {p.name: p.read_bytes() for p in bundle_copy.iterdir()}

    def case_insensitive(a, b):
        return str(Path(a).resolve()).casefold() == str(Path(b).resolve()).casefold()

    monkeypatch.setattr(os.path, "samefile", case_insensitive)
    for name in ("edgegan.json", "model.onnx", "Edgegan.JSON"):
        args = ["bench", str(bundle_copy), "--backends", "onnxruntime", "--precisions", "fp32",
                "--iters", "1", "--json", str(bundle_copy / name)]  # fmt: skip
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2 and "is a file of the bundle" in res.stderr, res.output
    assert {p.name: p.read_bytes() for p in bundle_copy.iterdir()} == before


# -- bench --------------------------------------------------------------------------------
def test_bench_memory_is_each_batch_s_own_from_live_memory(bundle, monkeypatch):
    """A row's peak was the runner's running maximum, measured from an RSS that freed but
    kept heap memory inflated: torch fp32 batch 1 read 9.5 MB alone and 1.0 MB beside batch
    2048. The heap is trimmed before the baseline, and the peak starts anew each batch."""
    import edgegan.runtime.bench as bench_mod

    events: list[str] = []
    real_reset = bench_mod._HostMemory.reset_peak
    monkeypatch.setattr(bench_mod, "_trim_heap", lambda: events.append("trim"))
    monkeypatch.setattr(bench_mod._HostMemory, "reset_peak",
                        lambda self: events.append("reset") or real_reset(self))  # fmt: skip
    result = bench_mod.bench(bundle, backends=["onnxruntime"], precisions=["fp32"],
                             batch_sizes=[1, 4, 2], warmup=0, iters=1)  # fmt: skip
    assert [r["status"] for r in result["results"]] == ["ok"] * 3
    # the baseline, then a fresh peak from live memory at the open and before each batch
    assert events == ["trim"] + ["reset", "trim"] * 4


def test_nan_outputs_are_refused_by_infer_and_marked_by_bench(run_dir, tmp_path):
    """A run whose BatchNorm statistics overflowed sampled NaN: infer wrote black PNGs (NaN's
    uint8 cast) and exited 0, eval then scored them, and bench showed "nan" with no word."""
    import torch

    from edgegan.runtime.bench import parity
    from edgegan.runtime.bench_table import row_line, table_rows
    from edgegan.sampling import check_finite_outputs, infer

    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    path = broken / "checkpoints/last.pt"
    state = torch.load(path, weights_only=True)
    name = next(k for k in state["ema"] if k.endswith("running_var"))
    state["ema"][name][0] = float("nan")  # one channel: every image is NaN somewhere
    torch.save(state, path)
    refused = r"\(torch fp32\) produced NaN or infinite values in 8 of the 8 images of its batch"
    refused += r" \(images 0-7\): its weights are broken"
    with pytest.raises(EdgeganError, match=refused):
        infer(broken, tmp_path / "out", num=8)
    assert not (tmp_path / "out").exists()  # nothing written
    result = CliRunner().invoke(
        cli, ["infer", str(broken), "--num", "3", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code != 0 and "produced NaN" in result.output
    # A reduced-precision graph may overflow instead.
    fp16 = types.SimpleNamespace(name="onnxruntime", precision="fp16")
    half_nan = np.zeros((4, 1, 2, 2), np.float32)
    half_nan[1, 0, 0, 0] = np.inf
    with pytest.raises(EdgeganError, match=r"in 1 of the 4 images of its batch \(images "
                                           r"256-259\).*fp16 graph overflows: try "
                                           r"--precision fp32"):  # fmt: skip
        check_finite_outputs(half_nan, fp16, start=256)  # the batch from image 256 of a run
    int8 = types.SimpleNamespace(name="onnxruntime", precision="int8")
    with pytest.raises(EdgeganError, match=r"\(image 3\): its weights are broken \(did its "
                                           r"training diverge\?\)$"):  # fmt: skip
        check_finite_outputs(half_nan[1:2], int8, start=3)  # no overflow hint: not FP16
    assert check_finite_outputs(np.ones((2, 1, 2, 2)), fp16).shape == (2, 1, 2, 2)
    from edgegan.translate import translate_arrays

    spec = {"direction": "AtoB", "size_multiple": 4, "min_side": 4}
    translator = types.SimpleNamespace(
        name="onnxruntime", precision="fp16", spec=spec, max_batch=None, device="cpu",
        run=lambda inputs: np.full(inputs["image"].shape, np.nan, np.float32),
    )  # fmt: skip
    with pytest.raises(EdgeganError, match="in 2 of the 2 images.*fp16 graph overflows"):
        translate_arrays(translator, [np.zeros((8, 8), np.uint8)] * 2)
    # bench measures on, and says the outputs are not images.
    got = parity(half_nan, np.zeros_like(half_nan))
    assert got == {"max_abs": None, "psnr": None, "nonfinite": 1}
    row = {"backend": "onnxruntime", "precision": "fp16", "device": "cpu", "batch": 4,
           "status": "ok", "latency_ms": {"p50": 1.0, "p95": 1.2}, "images_per_s": 4000.0,
           "peak_mem_mb": 10.0, "parity": got}  # fmt: skip
    assert table_rows({"results": [row]})[0][-3:] == ["-", "-", "cpu, NaN/inf in 1 outputs"]
    assert row_line(row).endswith("(NaN/inf in 1 outputs)")
    # A reference (torch FP32) that is itself NaN is no yardstick either.
    got = parity(np.zeros_like(half_nan), half_nan)
    assert got == {"max_abs": None, "psnr": None, "nonfinite": 0, "reference_nonfinite": 1}
    row["parity"] = got
    assert table_rows({"results": [row]})[0][-1] == "cpu, NaN/inf in 1 reference outputs"
    assert row_line(row).endswith("ms (NaN/inf in 1 reference outputs)")


def test_bench_json_shape(bundle, tmp_path, no_tensorrt):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(cli, ["bench", str(bundle), "--precisions", "fp32,int8",
                                   "--batch-sizes", "1,3", "--warmup", "1", "--iters", "3",
                                   "--json", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "onnxruntime" in res.stdout and "p50 ms" in res.stdout
    # each row as it finishes, on stderr (a bench cut off by a time limit keeps them)
    progress = [line for line in res.stderr.splitlines() if line.startswith("bench: ")]
    assert len(progress) == 3 * 2 * 2
    assert re.fullmatch(r"bench: onnxruntime fp32 batch 3: p50 [0-9.]+ ms", progress[5])
    assert progress[-1].startswith("bench: tensorrt int8 batch 3: skipped (")
    data = json.loads(out.read_text())
    assert data["reference"] == "torch/fp32/cpu" and data["iters"] == 3
    assert data["environment"]["onnxruntime"] and data["spec"]["latent_dim"] == 16
    env = data["environment"]  # what else slows CPU figures: spinning, another job's load
    assert env["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY")
    assert isinstance(env["load_average"], float) == hasattr(os, "getloadavg")
    rows = {(r["backend"], r["precision"], r["batch"]): r for r in data["results"]}
    assert len(rows) == 3 * 2 * 2
    for batch in (1, 3):
        ok = rows[("onnxruntime", "fp32", batch)]
        assert ok["status"] == "ok", ok
        lat = ok["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p95"]
        assert ok["images_per_s"] > 0 and ok["peak_mem_mb"] >= 0
        assert ok["parity"]["max_abs"] < 1e-4 and ok["parity"]["psnr"] > 60
        assert rows[("onnxruntime", "int8", batch)]["parity"]["psnr"] >= 20
        assert rows[("torch", "fp32", batch)]["parity"]["max_abs"] == 0
        assert "no int8 path" in rows[("torch", "int8", batch)]["reason"]
        for precision in ("fp32", "int8"):
            trt = rows[("tensorrt", precision, batch)]
            assert trt["status"] == "skipped" and TRT_EXTRA in trt["reason"]


@pytest.mark.slow
def test_bench_compiled_torch_rows(bundle, tmp_path):
    """``--compile [MODE] --channels-last`` add compiled torch rows beside the eager ones
    (each batch size compiles on its first warm-up run, which the rows report; compiled
    rows get warm-up runs even with ``--warmup 0``, so no timed run compiles) and say so in
    the JSON and the table."""
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(cli, ["bench", str(bundle), "--backends", "torch,onnxruntime",
                                   "--precisions", "fp32", "--batch-sizes", "1,3",
                                   "--warmup", "0", "--iters", "3", "--compile",
                                   "--channels-last", "--json", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "compiled default, channels-last" in res.stdout
    assert "bench: torch fp32 batch 3 (compiled default, channels-last): p50 " in res.stderr
    data = json.loads(out.read_text())
    assert data["compile"] == "default" and data["channels_last"] is True
    kinds = [(r["backend"], r["batch"], r.get("compile")) for r in data["results"]]
    assert kinds == [("torch", 1, None), ("torch", 3, None), ("torch", 1, "default"),
                     ("torch", 3, "default"), ("onnxruntime", 1, None),
                     ("onnxruntime", 3, None)]  # fmt: skip
    for row in data["results"]:
        assert row["status"] == "ok", row
        if row.get("compile"):
            assert row["backend"] == "torch" and row["channels_last"] is True
            assert row["first_run_s"] > 0.1  # the compile
            assert row["latency_ms"]["p95"] < 100 * row["latency_ms"]["min"]  # not timed
            assert row["parity"]["max_abs"] < 1e-5
        else:
            assert "channels_last" not in row
            assert "first_run_s" not in row  # --warmup 0


def test_compile_options_are_checked(bundle, tmp_path):
    from edgegan.runtime.bench import bench

    with pytest.raises(EdgeganError, match="apply to the torch backend's rows"):
        bench(bundle, backends=["onnxruntime"], compile="default")
    with pytest.raises(EdgeganError, match="compile mode 'fast' is not one of"):
        bench(bundle, backends=["torch"], compile="fast")
    res = CliRunner().invoke(cli, ["bench", str(bundle), "--backends", "onnxrunime", "--threads",
                                   "1"])  # fmt: skip
    assert res.exit_code == 2 and "did you mean 'onnxruntime'" in res.stderr  # the typo first
    res = CliRunner().invoke(cli, ["bench", str(bundle), "--backends", "torch", "--threads", "1"])
    assert res.exit_code == 2, res.output
    assert "--threads and --ort-option apply to the onnxruntime backend's rows" in res.stderr
    with pytest.raises(EdgeganError, match="apply to the onnxruntime backend's rows"):
        bench(bundle, backends=["torch", "tensorrt"], ort_options={"prefer_nhwc": "1"})
    res = CliRunner().invoke(cli, ["bench", str(bundle), "--compile", "fast"])
    assert res.exit_code == 2 and "'fast' is not one of 'default'" in res.stderr
    args = ["--num", "2", "--backend", "onnxruntime", "--compile"]
    res = CliRunner().invoke(cli, ["infer", str(bundle), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code != 0 and not (tmp_path / "o").exists()
    assert "--compile and --channels-last apply to the torch backend" in res.stderr


def test_compiled_generator_freezes_and_lifts_the_limit_while_a_shape_compiles(monkeypatch):
    """Freezing and the recompile limit are read while dynamo traces a shape, not taken from
    torch.compile's options: they are set around each new shape's (and stride's) first call,
    and only then (setting them costs a tenth of a small generator's call), and restored.
    The last compiled generator to close resets torch.compile's caches (its frozen weights,
    CUDA graphs); one dropped without close() still counts itself out."""
    import gc

    import torch
    import torch._dynamo
    import torch._inductor.config as inductor_config

    from edgegan.runtime.torch_runner import RECOMPILE_LIMIT, CompiledGenerator

    name = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else (
        "cache_size_limit")  # fmt: skip
    seen = []

    def fake_fn(x):
        seen.append((tuple(x.shape), inductor_config.freezing,
                     getattr(torch._dynamo.config, name)))  # fmt: skip
        return x

    resets = []
    monkeypatch.setattr(torch.compiler, "reset", lambda: resets.append(1))
    before = inductor_config.freezing, getattr(torch._dynamo.config, name)
    assert CompiledGenerator.open_count == 0
    a, b = (CompiledGenerator(torch.nn.Identity(), "default") for _ in range(2))
    try:
        a.fn = fake_fn
        x = torch.zeros(4, 2)
        strided = torch.zeros(2, 4).t()[:1]  # a seen shape (1, 2), strides (1, 4)
        for t in [x[:1], x[:1], x[:3], x[:1], strided, strided]:
            a(t)
        assert seen == [
            ((1, 2), True, RECOMPILE_LIMIT),
            ((1, 2), *before),
            ((3, 2), True, RECOMPILE_LIMIT),
            ((1, 2), *before),
            ((1, 2), True, RECOMPILE_LIMIT),
            ((1, 2), *before),
        ]
        assert (inductor_config.freezing, getattr(torch._dynamo.config, name)) == before
        a.close()
        a.close()
        assert resets == [] and CompiledGenerator.open_count == 1  # b is still open
        c = CompiledGenerator(torch.nn.Identity(), "default")
        del c
        gc.collect()
        assert resets == [] and CompiledGenerator.open_count == 1
    finally:
        a.close()
        b.close()
    assert resets == [1] and CompiledGenerator.open_count == 0


def test_compiled_generator_autotunes_cudnn_on_cuda_calls_only():
    """Compiled calls on CUDA run with cuDNN's autotuner on (the deploy path's counterpart of
    onnxruntime's exhaustive search), first and later calls alike, and leave the flag as it
    was; CPU calls never touch it. The inputs' devices are all the wrapper reads of them."""
    import torch

    from edgegan.runtime.torch_runner import CompiledGenerator

    class OnCuda:  # what the wrapper reads of a CUDA tensor, without a GPU
        shape, dtype, device = (1, 3), torch.float16, torch.device("cuda", 0)

        def stride(self):
            return (3, 1)

    seen = []
    gen = CompiledGenerator(torch.nn.Identity(), "default")
    try:
        gen.fn = lambda x: seen.append(torch.backends.cudnn.benchmark)
        for before in (False, True):
            torch.backends.cudnn.benchmark = before
            for x in (OnCuda(), OnCuda(), torch.zeros(1, 3), torch.zeros(1, 3)):
                gen(x)
            assert torch.backends.cudnn.benchmark is before
        assert seen == [True, True, False, False, True, True, True, True]
    finally:
        torch.backends.cudnn.benchmark = False
        gen.close()


def test_a_compile_failure_is_named_by_its_innermost_cause():
    """dynamo wraps a backend's failure (BackendCompilerFailed, whose first line names only
    the backend; InductorError around the compiler's own error): the line names the root."""
    from edgegan.runtime.torch_runner import _cause

    class Wrapped(RuntimeError):
        def __init__(self, text, inner=None):
            super().__init__(text)
            self.inner_exception = inner

    root = OSError("No working C++ compiler found\nmore detail")
    assert _cause(Wrapped("backend='inductor' raised:", Wrapped("x", root))) == (
        "OSError: No working C++ compiler found"
    )
    assert _cause(Wrapped("backend='inductor' raised:", "not an exception")) == (
        "Wrapped: backend='inductor' raised:"
    )
    a, b = Wrapped("a"), Wrapped("b")
    a.inner_exception, b.inner_exception = b, a  # a cycle ends, too
    assert _cause(a) in ("Wrapped: a", "Wrapped: b")


@pytest.mark.slow
def test_a_failed_compile_is_one_line(run_dir, tmp_path):
    """Without a C++ compiler inductor cannot build CPU kernels: one line, nothing written."""
    env = {**os.environ, "CXX": str(tmp_path / "no-such-g++"),
           "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"}  # fmt: skip
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "edgegan", "infer", str(run_dir), "--num", "2", "--compile",
           "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0 and not out.exists()
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "torch.compile could not compile the generator (InvalidCxxCompiler:" in errors[0]
    assert "run without --compile" in errors[0]


def test_bench_rejects_bad_arguments(bundle):
    from edgegan.runtime.bench import bench

    with pytest.raises(EdgeganError, match="unknown backend 'onnx'"):
        bench(bundle, backends=["onnx"])
    with pytest.raises(EdgeganError, match="batch-sizes"):
        bench(bundle, batch_sizes=[0])
    res = CliRunner().invoke(cli, ["bench", str(bundle), "--batch-sizes", "1,x"])
    assert res.exit_code == 2 and "comma-separated" in res.stderr


def test_bench_warms_each_backend_up_before_measuring(bundle, monkeypatch):
    from edgegan.runtime import bench as bench_module

    warmed = []
    real = bench_module._warm_up_library
    monkeypatch.setattr(
        bench_module, "_warm_up_library", lambda t, b, *a: (warmed.append(b), real(t, b, *a))
    )
    from edgegan import sampling

    loads = []
    real_load = sampling.load_run_generator
    monkeypatch.setattr(
        sampling, "load_run_generator", lambda *a, **k: (loads.append(1), real_load(*a, **k))[1]
    )
    bench_module.bench(bundle, ["torch", "onnxruntime"], ["fp32"], [1, 2], warmup=0, iters=1)
    # Once each, before the rows: the first row measured no longer absorbs library setup;
    # torch on the CPU has run for the reference (its checkpoint was loaded three times)
    assert warmed == ["onnxruntime"]
    assert len(loads) == 2  # the reference's and the torch row's


def test_bench_takes_one_name_for_a_list_and_counts_repeats_once(bundle):
    from edgegan.runtime.bench import bench

    # "onnxruntime" used to be read letter by letter ("unknown backend 'o'"), and repeated
    # names gave repeated rows.
    res = bench(bundle, "onnxruntime", ["fp32", "fp32"], [1], warmup=0, iters=1)
    assert [(r["backend"], r["precision"]) for r in res["results"]] == [("onnxruntime", "fp32")]


def test_bench_checks_json_path_and_infer_seed_first(bundle, bundle_copy, tmp_path):
    (tmp_path / "file").write_text("keep")
    for json_path, msg in [(tmp_path, "is a folder"), (tmp_path / "file/x.json", "is a file")]:
        res = CliRunner().invoke(cli, ["bench", str(bundle), "--json", str(json_path)])
        assert res.exit_code == 2 and msg in res.stderr and "p50" not in res.stdout, res.output
    res = CliRunner().invoke(cli, ["infer", str(bundle), "--seed", "-1", "--out", "o"])
    assert res.exit_code == 2 and "-1 is not in the range" in res.stderr
    # A damaged graph: one line that says so, not a protobuf traceback.
    onnx_file = bundle_copy / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:500])
    res = CliRunner().invoke(cli, ["infer", str(bundle_copy), "--backend", "onnxruntime",
                                   "--num", "2", "--out", str(tmp_path / "o")])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "model.onnx is not the graph" in res.stderr and "the file is damaged" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    meta = read_bundle(bundle_copy)  # a bundle from before digests: onnxruntime's own word
    del meta["models"]["fp32"]["sha256"]
    write_bundle(bundle_copy, meta)
    res = CliRunner().invoke(cli, ["infer", str(bundle_copy), "--backend", "onnxruntime",
                                   "--num", "2", "--out", str(tmp_path / "o")])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "onnxruntime cannot load" in res.stderr and "export the bundle again" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_infer_without_num_names_a_missing_target_first(bundle, tmp_path):
    """`infer /typo` asked for --num, then, once given it, said the path was not there."""
    cases = [
        (tmp_path / "typo", "run directory not found: "),
        (tmp_path, "is neither a run directory (no checkpoints/last.pt) nor an exported bundle"),
        (bundle, "give --num N (or --labels, one image per label)"),
    ]
    for target, said in cases:
        res = CliRunner().invoke(cli, ["infer", str(target), "--out", str(tmp_path / "o")])
        assert res.exit_code == 2 and said in res.stderr, res.output
    assert not (tmp_path / "o").exists()


# -- TensorRT without TensorRT ------------------------------------------------------------
def test_tensorrt_absent_is_one_line_exit_2(run_dir, bundle, tmp_path, no_tensorrt):
    runner = CliRunner()
    for args in (
        ["export", str(run_dir), "--trt", "--out", str(tmp_path / "b")],
        ["export", str(bundle), "--trt"],
        ["infer", str(bundle), "--backend", "tensorrt", "--num", "2", "--out", str(tmp_path / "o")],
    ):
        res = runner.invoke(cli, args)
        assert res.exit_code == 2, (args, res.output)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and TRT_EXTRA in lines[0], res.stderr
    assert not (tmp_path / "b").exists()  # nothing exported before the check
    assert read_bundle(bundle)["engines"] == {}


# -- TensorRT builder logic against a stub module -------------------------------------------------
#: what TensorRT-RTX 1.7.1 logged on the H100 (shortened), with a newline as TensorRT's have
RTX_ON_HOPPER = (
    "IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error (The engine cannot run "
    "on this GPU, which has compute capability 9.0. Supported compute capabilities: 8.0 8.6 "
    "8.9 12.0 12.1 >12.0.\n)"
)


def make_stub_trt(
    version="10.8.0",
    name="tensorrt",
    parse_ok=True,
    build_ok=True,
    inputs=None,
    load_ok=True,
    load_error=RTX_ON_HOPPER,
):
    """A stand-in for the ``tensorrt`` module that records what the builder asks of it;
    its parser gives the network ``inputs`` ({name: shape}, default a GAN's z and labels).
    ``version=None``: no ``__version__``, as ``tensorrt_rtx``'s bindings; ``load_ok=False``:
    a plan that builds but does not load on this GPU, as TensorRT-RTX's on an H100."""
    inputs = inputs or {"z": (-1, 16), "labels": (-1,)}
    calls: list[tuple] = []
    trt = types.ModuleType(name)
    if version is not None:
        trt.__version__ = version
    trt.calls = calls

    class ILogger:
        class Severity:
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self):
            pass

    class Logger(ILogger):
        WARNING = 2

        def __init__(self, severity=2):
            calls.append(("Logger",))

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 1

    class MemoryPoolType:
        WORKSPACE = "WORKSPACE"

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class Network:
        def __init__(self, flags):
            calls.append(("create_network", flags))
            self.inputs = []

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            return self.inputs[i]

    class OnnxParser:
        num_errors = 1

        def __init__(self, network, logger):
            self.network = network

        def parse_from_file(self, path):
            calls.append(("parse_from_file", Path(path).name))
            self.network.inputs = [Tensor(n, shape) for n, shape in inputs.items()]
            return parse_ok

        def get_error(self, i):
            return "In node 3 (Foo): unsupported operator"

    class TimingCache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return b"CACHE:" + self.data

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            calls.append(("set_shape", name, tuple(lo), tuple(opt), tuple(hi)))

    class Config:
        def set_memory_pool_limit(self, pool, size):
            calls.append(("set_memory_pool_limit", pool, size))

        def add_optimization_profile(self, profile):
            calls.append(("add_optimization_profile",))

        def create_timing_cache(self, data):
            calls.append(("create_timing_cache", bytes(data)))
            self.cache = TimingCache(bytes(data))
            return self.cache

        def set_timing_cache(self, cache, ignore_mismatch):
            calls.append(("set_timing_cache", ignore_mismatch))
            return True

        def get_timing_cache(self):
            return self.cache

        def set_flag(self, flag):  # must never be called: precision is in the graph
            calls.append(("set_flag", flag))

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(("build_serialized_network",))
            if build_ok:
                self.logger.log(ILogger.Severity.WARNING, "a warning of the build")
                return b"PLAN"
            self.logger.log(ILogger.Severity.ERROR, "no tactic fits the workspace")
            return None

    class Runtime:
        def __init__(self, logger):
            calls.append(("Runtime",))
            self.logger = logger

        def deserialize_cuda_engine(self, plan):
            calls.append(("deserialize_cuda_engine", bytes(plan)))
            if load_ok:
                return object()
            self.logger.log(ILogger.Severity.ERROR, load_error)
            return None

    for obj in (ILogger, Logger, NetworkDefinitionCreationFlag, MemoryPoolType, OnnxParser,
                Builder, Runtime):  # fmt: skip
        setattr(trt, obj.__name__, obj)
    return trt


H100 = {
    "gpu": "NVIDIA H100 80GB HBM3",
    "compute_capability": "9.0",
    "tensorrt_version": "10.8.0",
    "library": "tensorrt",
}


def test_builder_is_strongly_typed_with_profile_workspace_and_cache(tmp_path):
    from edgegan.export.tensorrt import build_engine

    onnx_path = tmp_path / "model.fp16.onnx"
    onnx_path.write_bytes(b"onnx")
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    trt = make_stub_trt("10.8.0")
    info = build_engine(trt, onnx_path, tmp_path / "model.fp16.engine", batch=(1, 4, 32),
                        workspace_gb=0.5, timing_cache=cache)  # fmt: skip
    calls = trt.calls
    assert ("create_network", 1 << 1) in calls  # STRONGLY_TYPED on TensorRT 10
    assert ("parse_from_file", "model.fp16.onnx") in calls
    assert ("set_shape", "z", (1, 16), (4, 16), (32, 16)) in calls
    assert ("set_shape", "labels", (1,), (4,), (32,)) in calls
    assert ("set_memory_pool_limit", "WORKSPACE", 1 << 29) in calls
    assert ("create_timing_cache", b"old") in calls and ("set_timing_cache", False) in calls
    assert not [c for c in calls if c[0] == "set_flag"]  # no FP16/INT8 builder flags
    assert (tmp_path / "model.fp16.engine").read_bytes() == b"PLAN"  # the plain plan
    assert cache.read_bytes() == b"CACHE:old"
    assert info["profile"]["max"] == {"z": [32, 16], "labels": [32]}
    assert info["workspace"] == 1 << 29
    # TensorRT 11 is strongly typed only: the deprecated flag is not passed
    trt11 = make_stub_trt("11.0.1")
    build_engine(trt11, onnx_path, tmp_path / "e11")
    assert ("create_network", 0) in trt11.calls


def test_a_timing_cache_of_another_gpu_is_replaced_by_a_fresh_one(tmp_path):
    """TensorRT refuses it (set_timing_cache returns False): the result was unchecked."""
    from edgegan.export.tensorrt import build_engine

    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"onnx")
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"foreign")
    trt = make_stub_trt("10.8.0")
    config = type(trt.Builder(None).create_builder_config())
    config.set_timing_cache = lambda self, c, ignore: c.data != b"foreign"
    info = build_engine(trt, onnx_path, tmp_path / "e", timing_cache=cache)
    assert [c for c in trt.calls if c[0] == "create_timing_cache"] == [
        ("create_timing_cache", b"foreign"),
        ("create_timing_cache", b""),
    ]
    assert cache.read_bytes() == b"CACHE:"  # this GPU's, from the build
    assert any("timing.cache is of another GPU" in w for w in info["warnings"])
    config.get_timing_cache = lambda self: None  # none to keep: the old file stays
    cache.write_bytes(b"kept")
    build_engine(trt, onnx_path, tmp_path / "e2", timing_cache=cache)
    assert cache.read_bytes() == b"kept" and (tmp_path / "e2").read_bytes() == b"PLAN"
    # A blob TensorRT cannot read at all gives no cache object (set_timing_cache(None) was a
    # pybind TypeError): a fresh one is used.
    create = config.create_timing_cache
    config.create_timing_cache = lambda self, data: None if data == b"junk" else create(self, data)
    cache.write_bytes(b"junk")
    info = build_engine(trt, onnx_path, tmp_path / "e3", timing_cache=cache)
    assert (tmp_path / "e3").read_bytes() == b"PLAN"
    assert any("timing.cache is of another GPU" in w for w in info["warnings"])


def test_tensorrt_rtx_builds_strongly_typed_without_a_timing_cache(tmp_path):
    """TensorRT-RTX ignores timing caches and deprecated their API: none is made or written."""
    from edgegan.export.tensorrt import build_engine, uses_timing_cache

    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"onnx")
    rtx = make_stub_trt("1.7.1", name="tensorrt_rtx")
    assert not uses_timing_cache(rtx) and uses_timing_cache(make_stub_trt("10.8.0"))
    build_engine(rtx, onnx_path, tmp_path / "e", timing_cache=tmp_path / "timing.cache")
    assert ("create_network", 1 << 1) in rtx.calls  # the STRONGLY_TYPED flag
    assert not [c for c in rtx.calls if "timing_cache" in c[0]]
    assert not (tmp_path / "timing.cache").exists()
    assert (tmp_path / "e").read_bytes() == b"PLAN"


def test_builder_reports_parser_and_build_errors(tmp_path):
    from edgegan.export.tensorrt import EngineBuildError, build_engine

    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"onnx")
    with pytest.raises(EngineBuildError, match="could not parse model.onnx: In node 3"):
        build_engine(make_stub_trt(parse_ok=False), onnx_path, tmp_path / "e")
    with pytest.raises(EngineBuildError, match="no tactic fits the workspace"):
        build_engine(make_stub_trt(build_ok=False), onnx_path, tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_a_plan_this_gpu_cannot_load_is_refused_and_leaves_the_old_engine(tmp_path):
    """TensorRT-RTX 1.7.1 built a plan on the H100 and then refused to load it there: the
    export must fail in one line saying so, and not replace the engine already in place."""
    from edgegan.export.tensorrt import EngineBuildError, build_engine

    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"onnx")
    engine = tmp_path / "model.fp32.engine"
    engine.write_bytes(b"OLD")
    rtx = make_stub_trt(None, name="tensorrt_rtx", load_ok=False)
    with pytest.raises(EngineBuildError) as info:
        build_engine(rtx, onnx_path, engine)
    line = str(info.value)
    assert "built model.fp32.engine but cannot load it on this GPU" in line
    assert "compute capability 9.0" in line and TRT_EXTRA in line
    assert "\n" not in line  # one line, though TensorRT's message has a newline
    assert "a warning of the build" not in line  # only what loading the plan said
    assert engine.read_bytes() == b"OLD" and sorted(p.name for p in tmp_path.iterdir()) == [
        "model.fp32.engine",
        "model.onnx",
    ]
    # the same failure on TensorRT itself: its message, no advice to install it
    with pytest.raises(EngineBuildError, match="compute capability 9.0") as info:
        build_engine(make_stub_trt(load_ok=False), onnx_path, engine)
    assert TRT_EXTRA not in str(info.value)
    # nor on TensorRT-RTX when what failed was not the GPU
    damaged = make_stub_trt(None, "tensorrt_rtx", load_ok=False, load_error="magic tag wrong")
    with pytest.raises(EngineBuildError, match="magic tag wrong") as info:
        build_engine(damaged, onnx_path, engine)
    assert TRT_EXTRA not in str(info.value)
    # a plan that loads is checked, then written
    trt = make_stub_trt()
    build_engine(trt, onnx_path, engine)
    assert ("deserialize_cuda_engine", b"PLAN") in trt.calls and engine.read_bytes() == b"PLAN"


def test_an_engine_write_cut_short_leaves_the_old_engine_and_no_temp_file(tmp_path, monkeypatch):
    """A full disk while writing the plan: it was written without fsync and renamed over
    the engine in place (and a failed write left its .tmp behind)."""
    from edgegan.export.tensorrt import build_engine

    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"onnx")
    engine = tmp_path / "model.fp32.engine"
    engine.write_bytes(b"OLD")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        build_engine(make_stub_trt(), onnx_path, engine)
    assert engine.read_bytes() == b"OLD"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fp32.engine", "model.onnx"]


def test_trt_logger_gives_what_was_said_since_a_mark_on_one_line(capsys):
    from edgegan.export.tensorrt import make_logger

    trt = make_stub_trt()
    sev = trt.ILogger.Severity
    logger = make_logger(trt, echo_warnings=True)
    assert logger.said() == "no message from TensorRT"
    logger.log(sev.INFO, "not kept")
    logger.log(sev.WARNING, "a warning\nover two lines")
    mark = logger.count
    for i in range(120):  # a long-lived runner: older messages are dropped, the mark holds
        logger.log(sev.ERROR, f"error {i}")
    assert logger.said(mark, last=2) == "error 118; error 119"
    assert logger.said(logger.count) == "no message from TensorRT"  # nothing since
    assert "error 0;" not in logger.said(mark, last=200)  # dropped, as the oldest
    assert len(logger.messages) <= 100
    # warnings are echoed (errors go into the failure's line instead), each on one line
    assert capsys.readouterr().err == "TensorRT: a warning over two lines\n"
    logger2 = make_logger(trt)
    logger2.log(sev.WARNING, "a warning\nover two lines")
    assert logger2.said() == "a warning over two lines"


def test_tensorrt_rtx_version_comes_from_its_distribution(monkeypatch):
    """``tensorrt_rtx``'s bindings have no ``__version__`` (an export on the H100 failed with
    an AttributeError): the installed distribution's version is recorded instead."""
    from importlib import metadata

    from edgegan.export import tensorrt as trt_mod

    assert trt_mod.library_version(make_stub_trt("10.8.0")) == "10.8.0"
    found = {"tensorrt-rtx-cu13-bindings": "1.7.1.116"}

    def version(dist):
        if dist in found:
            return found[dist]
        raise metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(metadata, "version", version)
    rtx = make_stub_trt(None, name="tensorrt_rtx")
    assert trt_mod.library_version(rtx) == "1.7.1.116"
    assert trt_mod._network_flags(rtx) == 1 << 1  # strongly typed, as on TensorRT 10
    found.clear()
    assert trt_mod.library_version(rtx) == "unknown"


def test_profile_shapes_and_options():
    from edgegan.export.tensorrt import profile_shapes

    shapes = profile_shapes({"x": [-1, 3, -1, -1]}, (1, 2, 8), image_shape=[3, 64, 64])
    assert shapes["x"] == ([1, 3, 64, 64], [2, 3, 64, 64], [8, 3, 64, 64])
    with pytest.raises(EdgeganError, match="min-batch"):
        BuildOptions(min_batch=4, opt_batch=2, max_batch=8)
    with pytest.raises(EdgeganError, match="min-batch"):
        BuildOptions(max_batch=0)
    with pytest.raises(EdgeganError, match="workspace"):
        BuildOptions(workspace_gb=0)
    options = BuildOptions(opt_batch=4, max_size=64)
    assert options.batch == (None, 4, None) and options.size == (None, None, 64)


def test_image_to_image_profile_has_dynamic_height_width(tmp_path, monkeypatch):
    """A cyclegan bundle: one engine per direction and precision, H/W from the size options."""
    import edgegan.export.tensorrt as trt_mod

    spec = {"channels_a": 1, "channels_b": 3, "image_size": 32, "value_range": [-1.0, 1.0],
            "size_multiple": 4}  # fmt: skip
    models = {d: {"fp32": {"file": f"model_{d}.onnx"}} for d in ("AtoB", "BtoA")}
    meta = {"format": 1, "task": "cyclegan", "directions": ["AtoB", "BtoA"], "spec": spec,
            "inputs": {}, "outputs": {}, "models": models}  # fmt: skip
    write_bundle(tmp_path, meta)
    for d in models:
        (tmp_path / f"model_{d}.onnx").write_bytes(b"onnx")
    trt = make_stub_trt(inputs={"image": (-1, 3, -1, -1)})
    monkeypatch.setattr(trt_mod, "build_env", lambda trt, device="cuda:0": dict(H100))
    engines = trt_mod.build_engines(tmp_path, options=BuildOptions(max_size=96), trt=trt,
                                    verify=False)  # fmt: skip
    assert ("set_shape", "image", (1, 3, 16, 16), (1, 3, 32, 32), (8, 3, 96, 96)) in trt.calls
    assert set(engines) == {"AtoB", "BtoA"} and read_bundle(tmp_path)["engines"] == engines
    e = engines["BtoA"]["fp32"]
    assert e["file"] == "model_BtoA.fp32.engine" and e["onnx"] == "model_BtoA.onnx"
    assert (tmp_path / e["file"]).read_bytes() == b"PLAN"
    assert e["profile"]["max"] == {"image": [8, 3, 96, 96]}
    rows = trt_mod.engine_rows(engines)
    assert len(rows) == 2 and "engine AtoB fp32" in rows[0] and "size 16x16/32x32/96x96" in rows[0]
    options = BuildOptions(opt_size=64, min_size=64, max_batch=2)
    trt_mod.build_engines(tmp_path, options=options, trt=trt, verify=False, directions=["AtoB"])
    assert ("set_shape", "image", (1, 3, 64, 64), (1, 3, 64, 64), (2, 3, 128, 128)) in trt.calls
    with pytest.raises(EdgeganError, match="multiples of 4"):
        trt_mod.build_engines(tmp_path, options=BuildOptions(opt_size=30), trt=trt, verify=False)
    with pytest.raises(EdgeganError, match="--min-size <= --opt-size"):
        BuildOptions(min_size=64, opt_size=32)
    with pytest.raises(EdgeganError, match="apply to cyclegan and pix2pix bundles"):
        trt_mod.resolve_profile(
            {"latent_dim": 4, "image_shape": [1, 28, 28]}, size=(None, 64, None)
        )


def test_build_engines_records_metadata(bundle_copy, monkeypatch):
    import edgegan.export.tensorrt as trt_mod

    trt = make_stub_trt("10.8.0")
    monkeypatch.setattr(trt_mod, "build_env", lambda trt, device="cuda:0": dict(H100))
    engines = trt_mod.build_engines(bundle_copy, ["fp32", "int8"], BuildOptions(max_batch=16),
                                    trt=trt, verify=False)  # fmt: skip
    meta = read_bundle(bundle_copy)
    assert meta["engines"] == engines and set(engines) == {"fp32", "int8"}
    e = engines["int8"]
    assert e["file"] == "model.int8.engine" and e["onnx"] == "model.int8.onnx"
    assert (bundle_copy / e["file"]).read_bytes() == b"PLAN"
    assert e["sha256"] == hashlib.sha256(b"PLAN").hexdigest()
    # what a runner reads: the plan the bundle records, or one line before TensorRT loads it
    from edgegan.export.bundle import read_recorded

    assert read_recorded(bundle_copy / e["file"], e, engine=True) == b"PLAN"
    (bundle_copy / e["file"]).write_bytes(b"PLAN from elsewhere")
    with pytest.raises(EdgeganError) as caught:
        read_recorded(bundle_copy / e["file"], e, engine=True)
    assert str(caught.value) == (
        "model.int8.engine is not the TensorRT engine the bundle's edgegan.json was written "
        "with (its sha256 differs): the file is damaged or was edited, or the bundle mixes "
        f"files of two exports; build it again with `edgegan export {bundle_copy} --trt`"
    )
    # the runner refuses it so, before CUDA starts or TensorRT reads a byte of it
    import torch

    from edgegan.runtime.trt_runner import TrtRunner

    monkeypatch.setattr(trt_mod, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(torch.cuda, "init", lambda: pytest.fail("CUDA started first"))
    target = resolve_target(bundle_copy, need_bundle=True)
    with pytest.raises(EdgeganError, match="model.int8.engine is not the TensorRT engine"):
        TrtRunner(target, "int8", device="cuda:0")
    assert e["gpu"] == H100["gpu"] and e["compute_capability"] == "9.0"
    assert e["tensorrt_version"] == "10.8.0" and e["built_at"]
    assert e["profile"]["max"]["z"] == [16, 16] and e["timing_cache"] == "timing.cache"
    assert (bundle_copy / "timing.cache").is_file()
    meta["models"].pop("fp16", None)
    write_bundle(bundle_copy, meta)
    with pytest.raises(EdgeganError, match="no ONNX graph for fp16"):
        trt_mod.build_engines(bundle_copy, ["fp16"], trt=trt, verify=False)


def test_cli_trt_options_reach_the_builder(bundle_copy, monkeypatch):
    """`edgegan export BUNDLE --trt` with profile options: a bad profile is refused before
    anything is built; good ones end up in the engine's profile and workspace."""
    import edgegan.export.tensorrt as trt_mod

    trt = make_stub_trt("10.8.0")
    monkeypatch.setattr(trt_mod, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(trt_mod, "build_env", lambda trt, device="cuda:0": dict(H100))
    monkeypatch.setattr(trt_mod, "engine_parity", lambda *a, **k: {"max_abs": 0.0, "psnr": 99.0})
    runner = CliRunner()
    bad = ["export", str(bundle_copy), "--trt", "--min-batch", "4", "--max-batch", "2"]
    res = runner.invoke(cli, bad)
    assert res.exit_code != 0 and "--min-batch <= --opt-batch" in res.stderr
    assert not trt.calls and read_bundle(bundle_copy)["engines"] == {}
    # options of the graphs: refused, one message naming them (--calib-samples was told to
    # "give --int8 too", which this refusal then refused)
    for graph_option in (
        ["--calib-samples", "8"],
        ["--fp16"],
        ["--opset", "17"],
        ["--with-param", "x.y=1"],
    ):
        res = runner.invoke(cli, ["export", str(bundle_copy), "--trt", *graph_option])
        assert res.exit_code == 2, res.output
        assert "a bundle keeps its graphs: with a bundle, --trt takes no" in res.stderr
        assert "--calib-samples/--opset/" in res.stderr and not trt.calls
    good = ["export", str(bundle_copy), "--trt", "--max-batch", "16", "--workspace-gb", "0.5"]
    res = runner.invoke(cli, good)
    assert res.exit_code == 0, res.output
    engines = read_bundle(bundle_copy)["engines"]
    assert set(engines) == set(read_bundle(bundle_copy)["models"])
    for entry in engines.values():
        assert entry["profile"]["min"]["z"] == [1, 16] and entry["profile"]["max"]["z"] == [16, 16]
        assert entry["workspace"] == 1 << 29 and entry["parity"]["psnr"] == 99.0
    assert "engine fp32" in res.output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--min-batch", "100"], "--min-batch <= --opt-batch <= --max-batch; got 100, 1, 64"),
        (
            ["--max-size", "64"],
            "--min-size/--opt-size/--max-size apply to cyclegan and pix2pix bundles",
        ),
    ],
)
def test_export_run_trt_checks_the_profile_before_exporting(run_dir, tmp_path, monkeypatch,
                                                             options, message):  # fmt: skip
    """A profile that only the run's graphs can refute (the defaults filled in, or sizes for
    a GAN) was found after the whole export, leaving the bundle in --out."""
    import edgegan.export.tensorrt as trt_mod

    monkeypatch.setattr(trt_mod, "import_tensorrt", lambda: make_stub_trt("10.8.0"))
    res = CliRunner().invoke(cli, ["export", str(run_dir), "--trt", *options,
                                   "--out", str(tmp_path / "b")])  # fmt: skip
    assert res.exit_code == 2 and res.stderr.strip().splitlines()[-1].endswith(message)
    assert "export:" not in res.stderr and not (tmp_path / "b").exists()


def test_export_run_trt_reads_the_checkpoint_once(run_dir, tmp_path, monkeypatch):
    """The profile check before the export takes the spec from the export's own read of
    the checkpoint (it read it once more, and always last.pt whatever --checkpoint said)."""
    import edgegan.export.tensorrt as trt_mod

    monkeypatch.setattr(trt_mod, "import_tensorrt", lambda: make_stub_trt("10.8.0"))
    monkeypatch.setattr(trt_mod, "build_env", lambda trt, device="cuda:0": dict(H100))
    monkeypatch.setattr(trt_mod, "engine_parity", lambda *a, **k: {"max_abs": 0.0, "psnr": 99.0})
    loads = count_checkpoint_loads(monkeypatch)
    res = CliRunner().invoke(cli, ["export", str(run_dir), "--trt", "--max-batch", "16",
                                   "--out", str(tmp_path / "b")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert loads == ["last.pt"]
    assert "engine fp32" in res.output


def test_engine_from_another_device_is_refused(bundle_copy, monkeypatch):
    import edgegan.export.tensorrt as trt_mod

    trt = make_stub_trt("10.8.0")
    monkeypatch.setattr(trt_mod, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(trt_mod, "build_env", lambda trt, device="cuda:0": dict(H100))
    meta = read_bundle(bundle_copy)
    meta["engines"]["fp32"] = {
        "file": "model.fp32.engine",
        "gpu": "NVIDIA A100-SXM4-40GB",
        "compute_capability": "8.0",
        "tensorrt_version": "10.3.0",
        "library": "tensorrt",
    }
    write_bundle(bundle_copy, meta)
    with pytest.raises(EdgeganError) as info:
        open_runner(bundle_copy, "tensorrt", "fp32", device="cuda")
    msg = str(info.value)
    assert "compute capability 8.0 (here 9.0)" in msg and "TensorRT 10.3.0 (here 10.8.0)" in msg
    assert f"edgegan export {bundle_copy} --trt" in msg
    assert ("Runtime",) not in trt.calls  # refused before deserializing anything
    with pytest.raises(BackendUnavailable, match="no int8 TensorRT engine"):
        open_runner(bundle_copy, "tensorrt", "int8", device="cuda")
    trt_mod.check_engine(dict(H100, file="model.fp32.engine"), H100)  # same device: fine


def test_tensorrt_rtx_engines_move_between_rtx_gpus():
    """RTX engines are portable across compute capabilities 8.6/8.9/12.0 (its support matrix);
    TensorRT engines are not; neither crosses library versions."""
    from edgegan.export.tensorrt import check_engine

    def env(library, gpu, cc, version="1.7.1"):
        return {"library": library, "gpu": gpu, "compute_capability": cc,
                "tensorrt_version": version}  # fmt: skip

    built = dict(env("tensorrt_rtx", "NVIDIA GeForce RTX 4090", "8.9"), file="model.engine")
    check_engine(built, env("tensorrt_rtx", "NVIDIA GeForce RTX 5090", "12.0"))
    check_engine(built, env("tensorrt_rtx", "NVIDIA RTX A6000", "8.6"))
    for other, what in [
        (env("tensorrt_rtx", "NVIDIA GeForce RTX 2080 Ti", "7.5"), "compute capability 8.9"),
        (env("tensorrt_rtx", "NVIDIA GeForce RTX 5090", "12.0", "1.8.0"), "TensorRT 1.7.1"),
        (env("tensorrt", "NVIDIA GeForce RTX 5090", "12.0"), "library tensorrt_rtx"),
    ]:
        with pytest.raises(EdgeganError, match=what):
            check_engine(built, other)
    trt_built = dict(env("tensorrt", "NVIDIA GeForce RTX 4090", "8.9", "10.8.0"), file="m")
    with pytest.raises(EdgeganError, match="GPU NVIDIA GeForce RTX 4090"):
        check_engine(trt_built, env("tensorrt", "NVIDIA GeForce RTX 5090", "12.0", "10.8.0"))


# -- the real thing, where it exists ---------------------------------------------------------------
@needs_trt
def test_real_tensorrt_build_run_parity(bundle_copy):
    from edgegan.export.tensorrt import BuildOptions, build_engines
    from edgegan.runtime.bench import parity

    engines = build_engines(bundle_copy, ["fp32", "fp16"], BuildOptions(max_batch=16))
    assert engines["fp32"]["parity"]["max_abs"] < 1e-2
    assert engines["fp16"]["parity"]["psnr"] >= 30
    assert (bundle_copy / "model.fp32.engine").stat().st_size > 0
    with (
        open_runner(bundle_copy, "onnxruntime") as ref,
        open_runner(bundle_copy, "tensorrt", "fp32", device="cuda") as runner,
    ):
        for n in (1, 5, 1):  # shape switches; the third run of a shape replays a CUDA graph
            inputs = make_inputs(runner.spec, n, seed=n)
            outs = [runner.run(inputs) for _ in range(3)]
            np.testing.assert_array_equal(outs[1], outs[2])
            assert parity(outs[2], ref.run(inputs), runner.spec)["max_abs"] < 1e-2


def test_onnxruntime_cuda_provider_names_a_device_only_when_not_the_first():
    """onnxruntime 1.31.1 on the H100 logged a plugin-EP warning for every session given
    ``device_id``; GPU 0 is its default, so none is passed for it."""
    from edgegan.runtime.ort_runner import cuda_provider

    assert cuda_provider(0) == "CUDAExecutionProvider"
    assert cuda_provider(1) == ("CUDAExecutionProvider", {"device_id": 1})
    graphs = {"enable_cuda_graph": "1"}
    assert cuda_provider(0, **graphs) == ("CUDAExecutionProvider", graphs)
    assert cuda_provider(2, **graphs) == ("CUDAExecutionProvider", {"device_id": 2, **graphs})


#: batch sizes of successive calls: 1 and 3 come back (new values each time) until each
#: replays, 5 comes back past a two-graph limit
GRAPH_BATCHES = (1, 3, 1, 5, 3, 1, 5, 1, 3)


def _graph_calls(spec: dict) -> list[dict]:
    return [make_inputs(spec, b, seed=s) for s, b in enumerate(GRAPH_BATCHES)]


def _graph_path_on_the_cpu(runner):
    """``runner`` (CPU) taking the CUDA-graph path with CPU buffers: onnxruntime has no
    graphs there and ignores graph ids, so its bookkeeping runs as it would on CUDA."""
    runner._binding, runner.cuda_graphs = runner.session.io_binding(), True
    return runner


def test_onnxruntime_graph_slots_rebind_nothing_and_copy_new_inputs(bundle, monkeypatch):
    """A shape's first call runs without a graph; from its second, one slot per shape, bound
    once, whose buffers later calls copy their inputs into; the same images as plain runs
    (outputs are not views of a buffer the next call overwrites); no slot past MAX_GRAPHS."""
    from edgegan.runtime import ort_runner

    monkeypatch.setattr(ort_runner, "MAX_GRAPHS", 2)
    with pytest.raises(EdgeganError, match="cuda_graphs needs a CUDA device"):
        open_runner(bundle, "onnxruntime", cuda_graphs=True)
    with open_runner(bundle, "onnxruntime") as plain, open_runner(bundle, "onnxruntime") as g:
        _graph_path_on_the_cpu(g)
        bound, outs, graphed = {}, [], []
        for inputs in _graph_calls(plain.spec):
            outs.append((g.run(inputs), plain.run(inputs)))
            graphed.append(g.graphed(inputs))
            for key, slot in g._graphs.items():
                # the same buffers, call after call: a CUDA graph replays fixed addresses
                assert bound.setdefault(key, (slot.binding, slot.output)) == (
                    slot.binding,
                    slot.output,
                )
        for got, want in outs:
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        # bench's label: a shape replays from its slot's second run (onnxruntime captures in
        # a graph id's first runs)
        assert graphed == [False, False, False, False, False, True, False, True, True]
        assert sorted(key[0][1][0] for key in g._graphs) == [1, 3]
        assert [s.runs for s in g._graphs.values()] == [3, 2]
        ids = {
            slot.run_options.get_run_config_entry(ort_runner.GRAPH_ID)
            for slot in g._graphs.values()
        }
        assert ids == {"1", "2"}


def test_bench_table_marks_rows_that_ran_in_a_cuda_graph(bundle):
    from edgegan.runtime.bench import bench
    from edgegan.runtime.bench_table import table_rows

    result = bench(bundle, "onnxruntime", "fp32", [1, 2], warmup=0, iters=1)
    assert not any("cuda_graphs" in r for r in result["results"])  # the CPU has none
    result["results"][1]["cuda_graphs"] = True  # as a CUDA row whose shape had a graph
    notes = [row[-1] for row in table_rows(result)]
    assert not notes[0].endswith("CUDA graph") and notes[1].endswith(", CUDA graph")


def test_bench_table_never_crops_a_figure(bundle):
    """In a terminal narrower than the table rich cropped cells: 4379 images/s read 437."""
    import io

    from rich.console import Console

    from edgegan.runtime.bench import bench
    from edgegan.runtime.bench_table import print_table

    result = bench(bundle, "onnxruntime", "fp32", [1, 2], warmup=0, iters=1)
    result["results"][0]["images_per_s"] = 43791.0
    for width, rich in ((80, False), (220, True)):
        out = io.StringIO()
        print_table(result, Console(file=out, force_terminal=True, width=width))
        text = out.getvalue()
        assert ("│" in text) == rich and "43791" in text, text
        if not rich:  # whole rows, one a line, for grep and awk
            line = next(x for x in text.splitlines() if "43791" in x)
            assert line.split()[:3] == ["onnxruntime", "fp32", "1"] and "cpu" in line
    out = io.StringIO()
    print_table(result, Console(file=out, width=220))  # a pipe or a file: plain too
    assert "│" not in out.getvalue() and "43791" in out.getvalue()


def test_bench_json_dash_prints_the_results_on_stdout(bundle, tmp_path):
    args = ["bench", str(bundle), "--backends", "onnxruntime", "--precisions", "fp32",
            "--batch-sizes", "1", "--warmup", "0", "--iters", "1"]  # fmt: skip
    res = CliRunner().invoke(cli, [*args, "--json", "-"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)  # the whole of stdout; the table went to stderr
    assert [r["status"] for r in data["results"]] == ["ok"] and "p50 ms" in res.stderr
    assert not (tmp_path / "-").exists() and not Path("-").exists()
    res = CliRunner().invoke(cli, [*args, "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0 and f"wrote {tmp_path / 'b.json'}" in res.stderr
    assert "wrote" not in res.stdout


def test_bench_where_nothing_can_run_fails_and_keeps_the_results_file(
    bundle, tmp_path, no_tensorrt
):
    """It exited 0 with every row skipped, and replaced --json with a file of no figures."""
    kept = tmp_path / "bench.json"
    kept.write_text('{"earlier": "figures"}')
    args = ["bench", str(bundle), "--backends", "tensorrt", "--iters", "1", "--json", str(kept)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "skipped: TensorRT is not installed" in res.stdout
    assert res.stderr.splitlines()[-1] == (
        "error: no backend, precision and batch size could run here (see above)"
    )
    assert kept.read_text() == '{"earlier": "figures"}'


def test_onnxruntime_shape_whose_capture_fails_runs_without_a_graph(bundle):
    with open_runner(bundle, "onnxruntime") as plain, open_runner(bundle, "onnxruntime") as g:
        _graph_path_on_the_cpu(g)
        real = g.session.run_with_iobinding

        def capture_fails(binding, options=None):
            if options is not None and options.get_run_config_entry("gpu_graph_id") != "-1":
                raise RuntimeError("Error in execution: capture failed\nmore")
            return real(binding, options)

        g.session.run_with_iobinding = capture_fails
        x = make_inputs(plain.spec, 2, seed=0)
        g.run(x)
        with pytest.warns(RuntimeWarning, match=r"for z \(2, 16\).*\(Error in execution: capture"):
            out = g.run(x)
        np.testing.assert_allclose(out, plain.run(x), atol=1e-6)
        assert not g._graphs and not g.graphed(x)
        np.testing.assert_allclose(g.run(x), plain.run(x), atol=1e-6)  # no slot, no warning


def test_onnxruntime_provider_options_are_for_cuda_and_checked(bundle, tmp_path):
    from edgegan.runtime.ort_runner import _provider_options

    with pytest.raises(EdgeganError, match="provider options are for the CUDA execution"):
        open_runner(bundle, "onnxruntime", provider_options={"prefer_nhwc": "1"})
    assert _provider_options({"prefer_nhwc": True, "gpu_mem_limit": 2**30}) == {
        "prefer_nhwc": "1",
        "gpu_mem_limit": "1073741824",
    }
    for bad, message in [
        ({"enable_cuda_graph": "1"}, "itself: use --cuda-graphs/--no-cuda-graphs"),
        ({"device_id": "0"}, "use --device cuda:N"),
        ({"prefer_nhwc": None}, "must be a string or integer, got None"),
    ]:  # fmt: skip
        with pytest.raises(EdgeganError, match=message):
            _provider_options(bad)
    for cmd in ("infer", "bench"):
        extra = ["--num", "1", "--out", str(tmp_path / cmd)] if cmd == "infer" else []
        for opts, message in [
            (["prefer_nhwc"], "--ort-option takes KEY=VALUE, got 'prefer_nhwc'"),
            (["prefer_nhwc="], "--ort-option takes KEY=VALUE, got 'prefer_nhwc='"),
            (["a=1", "a=2"], "--ort-option a is given twice"),
        ]:
            args = [x for o in opts for x in ("--ort-option", o)]
            res = CliRunner().invoke(cli, [cmd, str(bundle), *args, *extra])
            assert res.exit_code == 2 and message in res.stderr, res.output
            assert len(res.stderr.strip().splitlines()) == 1


def test_onnxruntime_cuda_graphs_is_an_onnxruntime_and_tensorrt_option(bundle, tmp_path):
    with pytest.raises(EdgeganError, match="--cuda-graphs does not apply to the torch"):
        open_runner(bundle, "torch", cuda_graphs=True)
    res = CliRunner().invoke(
        cli, ["infer", str(bundle), "--cuda-graphs", "--num", "1", "--out", str(tmp_path)]
    )
    assert res.exit_code == 2 and "--cuda-graphs does not apply to the torch" in res.stderr
    # turning off what torch's runner does not have asks nothing of it (scripts that pass
    # --no-cuda-graphs for every backend, as bench takes it)
    out = tmp_path / "off"
    res = CliRunner().invoke(
        cli, ["infer", str(bundle), "--no-cuda-graphs", "--num", "1", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert len(list(out.glob("*.png"))) == 1


def test_bench_passes_cuda_graphs_to_the_runners_that_take_it(bundle, monkeypatch):
    from edgegan.runtime import bench as bench_module

    opened = []
    real = bench_module.open_runner

    def spy(target, backend, *args, **options):
        opened.append((backend, options.get("cuda_graphs")))
        return real(target, backend, *args, **options)

    monkeypatch.setattr(bench_module, "open_runner", spy)
    kw = {"warmup": 0, "iters": 1}
    bench_module.bench(bundle, ["torch", "onnxruntime"], ["fp32"], [1], cuda_graphs=True, **kw)
    assert set(opened) == {("torch", None), ("onnxruntime", True)}
    opened.clear()
    bench_module.bench(bundle, ["onnxruntime"], ["fp32"], [1], **kw)
    assert set(opened) == {("onnxruntime", None)}
    # provider options reach onnxruntime only, and the results say which were used
    opened.clear()
    monkeypatch.setattr(
        bench_module,
        "open_runner",
        lambda t, backend, *a, **o: (
            opened.append((backend, o.get("provider_options"))),
            real(t, backend, *a, **{k: v for k, v in o.items() if k != "provider_options"}),
        )[1],
    )
    ort = {"prefer_nhwc": "1"}
    res = bench_module.bench(bundle, ["torch", "onnxruntime"], ["fp32"], [1], ort_options=ort, **kw)
    assert {(b, str(o)) for b, o in opened} == {("torch", "None"), ("onnxruntime", str(ort))}
    assert res["ort_options"] == ort and "cuda_graphs" not in res


def test_onnxruntime_uses_cuda_graphs_by_default_on_cuda_only(bundle, monkeypatch):
    """Measured on an H100 (docs/benchmarks.md), CUDA graphs are the CUDA default; the CPU has
    none, and False turns them off. The CUDA provider is faked: which options it gets."""
    import onnxruntime as ort

    from edgegan.runtime.ort_runner import OrtRunner

    with open_runner(bundle, "onnxruntime") as cpu:
        assert cpu.cuda_graphs is False
    real_session = OrtRunner._session
    given = []

    def session(self, path, providers):
        given.append(providers[0])
        real = real_session(self, path, ["CPUExecutionProvider"])
        return types.SimpleNamespace(
            get_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
            get_inputs=real.get_inputs,
            get_outputs=real.get_outputs,
            io_binding=real.io_binding,
        )

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider"])
    monkeypatch.setattr(OrtRunner, "_session", session)
    assert open_runner(bundle, "onnxruntime", device="cuda").cuda_graphs is True
    off = open_runner(bundle, "onnxruntime", device="cuda", cuda_graphs=False)
    assert off.cuda_graphs is False
    assert given == [("CUDAExecutionProvider", {"enable_cuda_graph": "1"}), "CUDAExecutionProvider"]


@pytest.mark.skipif(not _has_ort_cuda(), reason="needs onnxruntime-gpu and a CUDA GPU")
def test_onnxruntime_cuda_iobinding_matches_cpu(bundle):
    with (
        open_runner(bundle, "onnxruntime") as cpu,
        open_runner(bundle, "onnxruntime", device="cuda", cuda_graphs=False) as gpu,
    ):
        assert not gpu.cuda_graphs
        inputs = make_inputs(cpu.spec, 7, seed=1)
        assert np.abs(cpu.run(inputs) - gpu.run(inputs)).max() < 1e-3


@pytest.mark.skipif(not _has_ort_cuda(), reason="needs onnxruntime-gpu and a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_onnxruntime_cuda_graphs_match_cpu_as_shapes_come_and_go(bundle, precision, monkeypatch):
    from edgegan.runtime import ort_runner

    monkeypatch.setattr(ort_runner, "MAX_GRAPHS", 2)
    with (
        open_runner(bundle, "onnxruntime", precision) as cpu,
        open_runner(bundle, "onnxruntime", precision, "cuda") as gpu,  # graphs: the default
    ):
        options = gpu.session.get_provider_options()["CUDAExecutionProvider"]
        assert gpu.cuda_graphs and options["enable_cuda_graph"] == "1"
        tol = 1e-3 if precision == "fp32" else 2e-2
        for inputs in _graph_calls(cpu.spec):
            assert np.abs(cpu.run(inputs) - gpu.run(inputs)).max() < tol
        assert len(gpu._graphs) == 2 and all(s.runs >= 2 for s in gpu._graphs.values())


@pytest.mark.skipif(not _has_ort_cuda(), reason="needs onnxruntime-gpu and a CUDA GPU")
def test_onnxruntime_cuda_graphs_run_the_int8_graph_as_plain_runs_do(bundle):
    """CUDA graphs are the default for every precision: the Q/DQ graph is captured and
    replayed, and gives what the same provider gives without graphs (two sessions may pick
    other convolution algorithms: a value may cross one quantisation step, rarely)."""
    _needs_model(bundle, "int8")
    with (
        open_runner(bundle, "onnxruntime", "int8", "cuda", cuda_graphs=False) as plain,
        open_runner(bundle, "onnxruntime", "int8", "cuda") as graphed,
    ):
        for inputs in _graph_calls(plain.spec):
            diff = np.abs(plain.run(inputs) - graphed.run(inputs))
            assert diff.max() < 0.1 and (diff > 1e-4).mean() < 1e-3
        assert graphed.cuda_graphs and graphed._graphs  # captured, not fallen back


def test_a_runs_bundle_older_than_its_checkpoint_is_warned_about(run_dir, tmp_path):
    import warnings

    from edgegan.export import export
    from edgegan.runtime import open_runner
    from edgegan.runtime.base import StaleBundleWarning

    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("export"))
    export(run)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleBundleWarning)
        open_runner(run, "onnxruntime").close()  # fresh: no warning
    later = (run / "export/edgegan.json").stat().st_mtime + 60
    os.utime(run / "checkpoints/last.pt", (later, later))  # as after `train --resume`
    with pytest.warns(StaleBundleWarning, match="was exported before the run's last checkpoint"):
        open_runner(run, "onnxruntime").close()


def test_the_torch_backend_runs_a_run_whose_bundle_is_damaged(run_dir, tmp_path):
    """`infer RUN` on torch never reads RUN/export's graphs: a damaged edgegan.json there is
    a warning, not a refusal; the backends that run the bundle still refuse it."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("export"))
    (run / "export").mkdir()
    (run / "export/edgegan.json").write_text("{bad")
    with pytest.warns(UserWarning, match="export is not used: cannot read bundle metadata"):
        res = CliRunner().invoke(cli, ["infer", str(run), "--num", "2", "--out",
                                       str(tmp_path / "o")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "o").glob("*.png"))) == 2
    res = CliRunner().invoke(cli, ["infer", str(run), "--backend", "onnxruntime", "--num", "2",
                                   "--out", str(tmp_path / "p")])  # fmt: skip
    assert res.exit_code == 2 and "cannot read bundle metadata" in res.stderr


def test_a_bundle_whose_run_trained_on_is_not_run_with_other_torch_weights(run_dir, tmp_path):
    from edgegan.config import load_run_config
    from edgegan.export import export
    from edgegan.runtime.base import StaleBundleError, StaleBundleWarning
    from edgegan.runtime.bench import bench
    from edgegan.train import train

    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("export"))
    bundle = tmp_path / "b"
    export(run, out=bundle, fp16=True)
    step = read_bundle(bundle)["source"]["step"]
    train(load_run_config(run, f"train.steps={step + 2}"), resume=run)
    # The torch backend on the bundle used to run the run's newer weights silently, and
    # bench took them as the reference: its FP32 graph showed a "parity" of 10 dB.
    with pytest.raises(StaleBundleError) as info:
        open_runner(bundle, "torch")
    assert f"holds the weights of step {step}, but its run {run} is now at step {step + 2}" in str(
        info.value
    )
    assert f"edgegan export {run.resolve()} --fp16 --out {bundle} --overwrite" in str(info.value)
    open_runner(run, "torch").close()  # the run itself: its latest weights, as asked
    with pytest.warns(StaleBundleWarning, match="parity is against onnxruntime fp32"):
        result = bench(bundle, ["onnxruntime"], ["fp32"], [2], warmup=1, iters=2)
    assert result["reference"] == "onnxruntime/fp32/cpu"
    assert result["results"][0]["parity"]["max_abs"] == 0


def test_a_bundle_whose_run_folder_holds_another_run_of_the_same_step_is_refused(run_dir, tmp_path):
    """Its step alone matched: the torch backend ran the other run's weights, and bench blamed
    the bundle's correct FP32 graph for the difference (a parity of 42 dB)."""
    from edgegan.config import load_run_config
    from edgegan.export import export
    from edgegan.runtime.base import StaleBundleError
    from edgegan.train import train

    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("export"))
    bundle = tmp_path / "b"
    meta = export(run, out=bundle)
    assert len(meta["source"]["digest"]) == 64
    open_runner(bundle, "torch").close()  # its own run: the same weights
    other = load_run_config(run, "seed=77")
    shutil.rmtree(run)
    train(other, out_dir=run)
    assert read_bundle(bundle)["source"]["step"] == load_run_config(run).train.steps
    with pytest.raises(StaleBundleError, match=f"{run} holds other weights than {bundle} was"):
        open_runner(bundle, "torch")


def test_more_labels_than_images_is_refused():
    from edgegan.sampling import make_labels

    assert make_labels(5, 10, [3, 4]).tolist() == [3, 4, 3, 4, 3]  # shorter: repeated
    with pytest.raises(EdgeganError, match="--labels gives 3 labels for --num 2"):
        make_labels(2, 10, [3, 4, 5])


def test_infer_refuses_a_non_empty_out_before_sampling(run_dir, tmp_path, monkeypatch):
    import edgegan.runtime
    from edgegan.sampling import infer

    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.png").write_bytes(b"x")

    def never(*args, **kwargs):
        raise AssertionError("the generator ran before --out was checked")

    monkeypatch.setattr(edgegan.runtime, "open_runner", never)
    with pytest.raises(EdgeganError, match="is not empty"):
        infer(run_dir, out, num=30000)
    assert (out / "keep.png").read_bytes() == b"x"


def _before_each_run(monkeypatch, hook) -> None:
    """Make the runners that edgegan.runtime.open_runner opens call ``hook()`` before each
    batch."""
    import edgegan.runtime

    real = edgegan.runtime.open_runner

    class Hooked:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def run(self, inputs):
            hook()
            return self.inner.run(inputs)

    monkeypatch.setattr(edgegan.runtime, "open_runner", lambda *a, **k: Hooked(real(*a, **k)))


@pytest.mark.parametrize("fmt", ["png", "npz"])
def test_a_failed_infer_takes_back_its_files_and_keeps_earlier_ones(
    bundle, tmp_path, monkeypatch, fmt
):
    """As a failed translation does: no partial folder that looks like a result. PNGs: the
    third batch fails after two were written; npz: the one file's write fails midway."""
    from edgegan.sampling import infer

    calls = []

    def third_batch_fails():
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    def half_written(f, **arrays):
        f.write(b"PK\x03\x04 half")
        raise KeyboardInterrupt

    if fmt == "png":
        _before_each_run(monkeypatch, third_batch_fails)
    else:
        monkeypatch.setattr(np, "savez_compressed", half_written)
    kw = {"num": 10, "batch_size": 4, "backend": "onnxruntime", "fmt": fmt}
    with pytest.raises(KeyboardInterrupt):
        infer(bundle, tmp_path / "new" / "o", **kw)
    assert not (tmp_path / "new").exists()  # the folders it made go too
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        infer(bundle, out, overwrite=True, **kw)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_infer_writes_pngs_batch_by_batch_with_the_same_images_for_any_batch_size(
    bundle, tmp_path, monkeypatch
):
    """`infer --num N` held all N images (and their latents) in memory before writing the
    first file; it now writes each batch as it comes, and the batching changes nothing."""
    from edgegan.sampling import infer, iter_samples

    with open_runner(bundle, "onnxruntime") as runner:
        whole = sample(runner, 10, seed=3, labels=[7, 2, 5])
        parts = list(iter_samples(runner, 10, seed=3, labels=[7, 2, 5], batch_size=4))
    assert [len(p["images"]) for p in parts] == [4, 4, 2]
    for key in ("images", "latents", "labels"):
        np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])
    np.testing.assert_array_equal(whole["latents"], make_inputs(runner.spec, 10, seed=3)["z"])
    assert whole["labels"].tolist() == [7, 2, 5, 7, 2, 5, 7, 2, 5, 7]

    out = tmp_path / "o"
    written_before: list[int] = []

    _before_each_run(  # how many PNGs exist when each batch starts
        monkeypatch,
        lambda: written_before.append(len(list(out.glob("*.png"))) if out.exists() else 0),
    )
    paths = infer(bundle, out, num=10, seed=3, labels=[7, 2, 5], backend="onnxruntime",
                  batch_size=4, progress=True)  # fmt: skip
    assert written_before == [0, 4, 8]  # each batch written before the next one runs
    assert [p.name for p in paths][:4] == [
        "000000_label7.png",
        "000001_label2.png",
        "000002_label5.png",
        "000003_label7.png",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)
    assert paths[-1].name == "000009_label7.png"
    from PIL import Image

    first = np.asarray(Image.open(out / "000000_label7.png"))
    np.testing.assert_array_equal(first, to_uint8_nhwc(whole["images"][:1])[0, :, :, 0])


def test_a_failed_infer_overwrite_leaves_each_earlier_png_whole(bundle, tmp_path, monkeypatch):
    """PNGs were written in place: with --overwrite, a write that failed mid-file (a full
    disk) left a cut-off PNG where a good one was, and kill -9 a 0-byte one."""
    import errno

    from PIL import Image

    from edgegan.sampling import infer

    out = tmp_path / "o"
    infer(bundle, out, num=6, backend="onnxruntime")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_save, calls = Image.Image.save, []

    def disk_fills_at_the_fourth(self, fp, *args, **kwargs):
        calls.append(1)
        if len(calls) < 4:
            return real_save(self, fp, *args, **kwargs)
        fp.write(b"\x89PNG cut") if hasattr(fp, "write") else Path(fp).write_bytes(b"\x89PNG")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_fills_at_the_fourth)
    with pytest.raises(OSError, match="No space left"):
        infer(bundle, out, num=6, seed=1, backend="onnxruntime", overwrite=True)
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(after) == sorted(before)  # no temporary files left
    names = sorted(before)
    assert all(after[n] != before[n] for n in names[:3])  # the new seed's
    assert all(after[n] == before[n] for n in names[3:])  # the earlier, whole
    for name in names:
        Image.open(out / name).load()


def test_host_memory_without_proc_on_macos_and_windows(monkeypatch):
    """Without /proc there is no peak of the runner's own: ru_maxrss is the process's
    lifetime peak, which less a baseline of 0 read 290 MB for rows Linux measured at 2-11
    MB. The table shows "-" (and bench does not die: Windows has no ``resource``)."""
    import sys

    import edgegan.runtime.bench as bench

    monkeypatch.setattr(bench, "_status_kb", lambda field: None)
    memory = bench._HostMemory()
    for platform in ("darwin", "win32"):
        monkeypatch.setattr(sys, "platform", platform)
        assert memory.peak_mb() is None
    import ctypes

    def no_cdll(name):  # Windows: ctypes.CDLL(None) raises TypeError
        raise TypeError("argument of type 'NoneType' is not iterable")

    monkeypatch.setattr(ctypes, "CDLL", no_cdll)
    monkeypatch.setattr(sys, "platform", "win32")
    assert bench._HostMemory().peak_mb() is None  # no traceback


def test_runner_input_checks_hold_at_their_limits():
    """Mutation testing: dropping the rank check or the equal-batch check, or moving the
    max_batch bound by one, left the suite green."""
    from edgegan.runtime.base import Runner

    class Stub(Runner):
        name = "stub"

        def __init__(self) -> None:
            self.spec = {"latent_dim": 16, "num_classes": 10, "image_shape": [1, 28, 28]}
            self.max_batch = 2

        def run(self, inputs):
            self.check_inputs(inputs)
            return np.zeros((len(inputs["z"]), 1, 28, 28), np.float32)

    runner = Stub()
    z, labels = np.zeros((2, 16), np.float32), np.zeros(2, np.int64)
    assert runner.run({"z": z, "labels": labels}).shape == (2, 1, 28, 28)  # max_batch itself
    with pytest.raises(EdgeganError, match=r"batch 3 is larger than this stub runner takes \(2\)"):
        runner.run({"z": np.zeros((3, 16), np.float32), "labels": np.zeros(3, np.int64)})
    with pytest.raises(
        EdgeganError, match=r"input 'z' must have shape \(\?, 16\); got \(2, 16, 1\)"
    ):
        runner.run({"z": z[..., None], "labels": labels})
    with pytest.raises(EdgeganError, match=r"inputs have different batch sizes: \[1, 2\]"):
        runner.run({"z": z, "labels": labels[:1]})
    with pytest.raises(EdgeganError, match="missing input"):
        runner.run({"z": z})


def test_the_real_tensorrt_tests_skip_where_tensorrt_rtx_cannot_run(monkeypatch):
    """TensorRT-RTX on an H100 builds a plan and refuses to load it (compute capability 9.0):
    the real-engine tests would fail there instead of skipping."""
    import importlib.util

    import tiny
    import torch

    found = {"tensorrt_rtx"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: object() if name in found else None
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, runs in (((9, 0), False), ((8, 6), True), ((12, 0), True), ((13, 0), True)):
        monkeypatch.setattr(tiny, "_CAPABILITY", capability)
        assert tensorrt_runs_here() is runs, capability
    found.add("tensorrt")
    monkeypatch.setattr(tiny, "_CAPABILITY", (9, 0))
    assert tensorrt_runs_here()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not tensorrt_runs_here()


def test_a_tensorrt_cuda_graph_that_cannot_be_captured_is_said(monkeypatch):
    """The failure was kept in a list nothing read: the engine ran eagerly and bench showed
    only a missing "CUDA graph" tag (onnxruntime's runner warns in the same case)."""
    import contextlib

    import torch

    from edgegan.runtime.trt_runner import TrtRunner, _Slot

    @contextlib.contextmanager
    def refused(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing\nmore")
        yield

    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: object())
    monkeypatch.setattr(torch.cuda, "graph", refused)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    runner = TrtRunner.__new__(TrtRunner)
    runner.stream, runner._torch_device = None, "cuda:0"
    slot = _Slot(inputs={"z": torch.zeros(2, 16)}, outputs={})
    said = r"could not capture a CUDA graph for z \(2, 16\) \(operation not permitted .*\); those"
    with pytest.warns(RuntimeWarning, match=said):
        runner._capture(slot)
    assert slot.graph_failed and slot.graph is None


def test_a_label_equal_to_the_class_count_is_out_of_range():
    """Labels are 0..K-1: K itself reached the generator (torch's Embedding: an IndexError
    traceback) when the bound moved by one, and the suite passed (mutation testing)."""
    from edgegan.sampling import make_labels

    assert make_labels(2, 10, [9]).tolist() == [9, 9]
    with pytest.raises(EdgeganError, match="label 10 is out of range: the generator has 10"):
        make_labels(1, 10, [10])


def test_torch_runner_takes_non_contiguous_inputs(run_dir):
    """mutation testing: the torch runner without np.ascontiguousarray (torch.from_numpy
    refuses a negative-stride view such as z[::-1]) passed the suite."""
    from edgegan.runtime import open_runner

    with open_runner(run_dir, "torch") as runner:
        feed = make_inputs(runner.spec, 4, seed=3)
        flipped = {k: v[::-1] for k, v in feed.items()}  # views with a negative stride
        assert not flipped["z"].flags["C_CONTIGUOUS"]
        out = runner.run(flipped)
        copied = {k: v.copy() for k, v in flipped.items()}
        np.testing.assert_allclose(out, runner.run(copied), rtol=0, atol=0)


def test_torch_runner_channels_last_converts_weights_and_images(run_dir):
    """mutation testing: a torch runner that ignored channels_last=True (weights and image
    inputs left NCHW, describe() without it) passed the suite."""
    import torch

    from edgegan.runtime import open_runner

    with open_runner(run_dir, "torch") as plain:
        feed = make_inputs(plain.spec, 2, seed=1)
        expected = plain.run(feed)
    with open_runner(run_dir, "torch", channels_last=True) as runner:
        assert runner.channels_last and "channels-last" in runner.describe()
        weights = [p for p in runner.module.parameters() if p.dim() == 4]
        # (a few layers keep NCHW on purpose: some, not all, are channels-last)
        assert any(
            w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
            for w in weights
        )
        np.testing.assert_allclose(runner.run(feed), expected, atol=1e-5)


def test_torch_fp16_on_the_cpu_is_refused_with_one_line(run_dir):
    """mutation testing: a torch runner that opened fp16 on the CPU (instead of saying it
    runs on CUDA only) passed the suite."""
    with pytest.raises(BackendUnavailable, match="torch fp16 runs on CUDA only"):
        open_runner(run_dir, "torch", "fp16", device="cpu")


def test_compile_mode_off_false_and_none_mean_eager():
    """mutation testing: compile_mode without its "off" spelling (refused as an unknown
    mode) passed the suite."""
    from edgegan.runtime.torch_runner import compile_mode

    assert [compile_mode(v) for v in ("off", False, None)] == [None, None, None]
    assert compile_mode(True) == "default"
    assert compile_mode("reduce-overhead") == "reduce-overhead"
    with pytest.raises(EdgeganError, match="compile mode 'fast' is not one of"):
        compile_mode("fast")


def test_parse_size_checks_both_sides_and_reads_hxw():
    """mutation testing: parse_size checking only the height's multiple (a width the
    generator cannot take went through to the runner) passed the suite."""
    from edgegan.export.signature import parse_size

    spec = {"size_multiple": 4, "image_size": 32}
    assert parse_size(None, spec) == (32, 32)
    assert parse_size(16, spec) == (16, 16)
    assert parse_size("16X24", spec) == (16, 24)
    assert parse_size((8, 12), spec) == (8, 12)
    for bad in ("16x18", "18x16", (16, 10), "4x8"):
        with pytest.raises(EdgeganError, match="multiples of 4"):
            parse_size(bad, spec)
    with pytest.raises(EdgeganError, match="--size must be N or HxW"):
        parse_size("ax8", spec)


def test_io_spec_and_dynamic_axes_of_each_kind_of_graph():
    """mutation testing: io_spec giving an unconditional GAN a 'labels' input (num_classes
    >= 0) passed the suite, whose runtime runs are of a conditional GAN."""
    from edgegan.export.signature import dynamic_axes, input_names, io_spec

    plain = {"latent_dim": 4, "num_classes": 0, "image_shape": [1, 8, 8]}
    inputs, outputs = io_spec(plain)
    assert inputs == [{"name": "z", "dtype": "float32", "shape": ["batch", 4]}]
    assert outputs == [{"name": "image", "dtype": "float32", "shape": ["batch", 1, 8, 8]}]
    assert input_names({**plain, "num_classes": None}) == ["z"]
    assert input_names({**plain, "num_classes": 10}) == ["z", "labels"]
    assert dynamic_axes({**plain, "num_classes": 10}) == {
        "z": {0: "batch"},
        "labels": {0: "batch"},
        "image": {0: "batch"},
    }
    translator = {"direction": "AtoB", "channels_in": 1, "channels_out": 3}
    assert io_spec(translator)[1][0]["shape"] == ["batch", 3, "height", "width"]
    axes = {0: "batch", 2: "height", 3: "width"}
    assert dynamic_axes(translator) == {"image": axes, "translated": axes}


def test_parse_device_ignores_case_and_spaces():
    """mutation testing: parse_device without strip().lower() (--device CUDA:1 or ' cpu'
    refused as unknown) passed the suite."""
    assert parse_device("CUDA:1") == ("cuda", 1)
    assert parse_device(" cpu ") == ("cpu", 0)
    assert parse_device("Cuda") == ("cuda", 0)


def test_a_run_target_that_needs_a_bundle_is_resolved_again(run_dir, bundle):
    """mutation testing: resolve_target returning a given Target as it is when a bundle is
    needed (a run's Target, without bundle, went on to the onnxruntime runner) passed the
    suite."""
    from edgegan.runtime.base import Target

    target = resolve_target(run_dir)
    assert isinstance(target, Target) and target.bundle is None
    with pytest.raises(EdgeganError, match="is a run directory without a bundle in export/"):
        resolve_target(target, need_bundle=True)
    with pytest.raises(EdgeganError, match="without a bundle"):
        open_runner(target, "onnxruntime")
    given = resolve_target(bundle)
    assert resolve_target(given, need_bundle=True) is given


def test_a_direction_for_a_gan_run_with_a_bundle_is_not_also_warned_about(
    run_dir, bundle, tmp_path
):
    """mutation testing: resolve_target warning that RUN/export 'is not used' also when the
    bundle is of the other kind than asked (a --direction for a GAN run: that is the run's
    error alone) passed the suite."""
    import warnings

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    shutil.copytree(bundle, run / "export")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        target = resolve_target(run, direction="AtoB")
    assert target.bundle is None and target.run_dir == run and target.direction == "AtoB"


class _Clock:
    """A perf_counter that only the fake runner's calls advance (ms durations in turn)."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def _fake_bench(monkeypatch, durations_ms, warmup, iters, compiled=None, max_batch=None):
    import types

    import edgegan.runtime.bench as bench_mod

    clock = _Clock()
    calls = []

    class Fake:
        spec = {"latent_dim": 2, "num_classes": 0, "image_shape": [1, 1, 1]}
        threads = 3

        def __init__(self):
            self.compiled, self.max_batch = compiled, max_batch

        def run(self, inputs):
            n = len(calls)
            calls.append(len(inputs["z"]))
            clock.now += (durations_ms[n] if n < len(durations_ms) else 1000.0) / 1e3
            return np.zeros((len(inputs["z"]), 1, 1, 1), np.float32)

        def synchronize(self):
            pass

        def graphed(self, inputs):
            return False

        def close(self):
            pass

    monkeypatch.setattr(bench_mod, "open_runner", lambda *a, **k: Fake())
    monkeypatch.setattr(bench_mod, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    inputs = {b: {"z": np.zeros((b, 2), np.float32)} for b in (4, 8)}
    rows = bench_mod._bench_one(None, "torch", "fp32", "cpu", inputs, {}, warmup, iters, {})
    return rows, calls


def test_bench_row_times_iters_runs_after_warmup_and_computes_its_figures(monkeypatch):
    """mutation testing: bench with one warm-up run fewer, p90 for p95, the median for the
    mean or images/s not multiplied by the batch passed the suite."""
    warm = [500.0, 400.0]
    timed = [1.0, 1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0]
    rows, calls = _fake_bench(monkeypatch, warm + timed + warm + timed, warmup=2, iters=10)
    assert calls == [4] * 12 + [8] * 12  # per batch: 2 untimed runs, then 10 timed
    ms = np.asarray(timed)
    for row, batch in zip(rows, (4, 8), strict=True):
        assert row["status"] == "ok" and row["batch"] == batch and row["backend"] == "torch"
        latency = row["latency_ms"]
        assert latency["p50"] == pytest.approx(np.percentile(ms, 50), abs=1e-3)
        assert latency["p95"] == pytest.approx(np.percentile(ms, 95), abs=1e-3)
        assert latency["mean"] == pytest.approx(ms.mean(), abs=1e-3)
        assert latency["min"] == pytest.approx(1.0, abs=1e-3)
        assert row["images_per_s"] == pytest.approx(batch * 1e3 / np.percentile(ms, 50), abs=0.1)
        assert row["first_run_s"] == pytest.approx(0.5, abs=1e-3)
        assert row["mem_kind"] == "rss" and row["threads"] == 3 and row["parity"] is None


def test_bench_gives_a_compiled_runner_its_warm_up_runs_and_keeps_the_max_batch(monkeypatch):
    """mutation testing: bench skipping a batch equal to the runner's max_batch (as larger
    than the engine takes) passed the suite; a compiled runner gets COMPILED_WARMUP runs."""
    from edgegan.runtime.bench import COMPILED_WARMUP

    rows, calls = _fake_bench(monkeypatch, [], warmup=1, iters=2, compiled="default", max_batch=4)
    assert calls == [4] * (COMPILED_WARMUP + 2)
    assert [r["status"] for r in rows] == ["ok", "skipped"]
    assert rows[1]["reason"] == "batch 8 > the engine's max batch 4"


def test_trt_profile_defaults_fill_around_the_given_values_and_are_checked():
    """mutation testing: resolve_profile without checking the order of the sizes it filled
    in (a --min-size above the default opt size built an unordered profile) passed the
    suite."""
    from edgegan.export.trt_profile import resolve_profile

    spec = {"direction": "AtoB", "size_multiple": 4, "image_size": 32}
    assert resolve_profile(spec) == ((1, 1, 8), (16, 32, 64))
    assert resolve_profile(spec, size=(None, 48, None)) == ((1, 1, 8), (24, 48, 96))
    with pytest.raises(EdgeganError, match="--min-size <= --opt-size <= --max-size; got 64, 32"):
        resolve_profile(spec, size=(64, None, None))
    assert resolve_profile({"latent_dim": 4}, batch=(None, 4, None)) == ((1, 4, 64), None)


def test_trt_profile_shapes_given_for_an_input_are_taken_as_they_are():
    """mutation testing: profile_shapes ignoring its ``shapes`` argument (an input's
    explicit min/opt/max shapes) passed the suite."""
    from edgegan.export.trt_profile import profile_shapes

    given = ([1, 3, 8, 8], [1, 3, 16, 16], [2, 3, 32, 32])
    shapes = profile_shapes(
        {"x": [-1, 3, -1, -1], "z": [-1, 4]},
        (1, 2, 8),
        image_shape=[3, 64, 64],
        shapes={"x": given},
    )
    assert shapes == {"x": given, "z": ([1, 4], [2, 4], [8, 4])}


def test_torch_on_cuda_without_a_gpu_is_backend_unavailable(run_dir, monkeypatch):
    """mutation testing: the torch runner without its 'torch sees no CUDA GPU' check (torch
    then failed on its own while loading) passed the suite."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailable, match="device cuda:1: torch sees no CUDA GPU"):
        open_runner(run_dir, "torch", device="cuda:1")


def test_torch_int8_is_refused_with_the_backends_that_have_it(run_dir):
    """mutation testing: the torch runner without its int8 check (an int8 request ran the
    fp32 generator, labelled int8) passed the suite."""
    with pytest.raises(BackendUnavailable, match="torch backend has no int8 path"):
        open_runner(run_dir, "torch", "int8")


def test_resolve_target_names_a_bad_direction_first(run_dir, bundle):
    """mutation testing: resolve_target without its check of ``direction`` (a run target
    kept a direction such as 'sideways' for the loader to trip on later) passed the
    suite."""
    for path in (run_dir, bundle):
        with pytest.raises(EdgeganError, match="--direction must be AtoB or BtoA, got 'sideways'"):
            resolve_target(path, direction="sideways")


def test_bench_parity_psnr_is_over_the_value_ranges_width():
    """mutation testing: bench's parity PSNR over the range's high end instead of its width
    (6 dB too low for [-1, 1]) passed the suite, whose outputs agree to the PSNR cap."""
    from edgegan.runtime.bench import parity

    reference = np.zeros((1, 1, 4, 4), np.float32)
    images = reference + np.float32(0.2)  # MSE 0.04 over a width of 2: 20 dB
    result = parity(images, reference, {"value_range": [-1.0, 1.0]})
    assert result["max_abs"] == pytest.approx(0.2) and result["psnr"] == pytest.approx(20.0)
    unit = parity(images, reference, {"value_range": [0.0, 1.0]})  # width 1: 14 dB
    assert unit["psnr"] == pytest.approx(13.98, abs=0.01)


def test_a_runner_option_error_names_the_command_line_flag():
    """mutation testing: open_runner naming provider_options '--provider-options' (the CLI
    flag is --ort-option) in its error passed the suite."""
    with pytest.raises(EdgeganError) as info:
        open_runner("nowhere", "torch", provider_options={"prefer_nhwc": "1"}, cuda_graphs=True)
    message = str(info.value)
    assert message.startswith("--cuda-graphs, --ort-option does not apply to the torch backend")
    assert "(it takes: --channels-last, --compile)" in message


# -- mutation testing, round 5: the bench table and the files of a bundle ------------------------
def test_bench_json_never_overwrites_an_engine_of_the_bundle(bundle_copy):
    meta = read_bundle(bundle_copy)
    meta["engines"] = {"fp16": {"file": "model.fp16.engine"}}
    write_bundle(bundle_copy, meta)
    engine = bundle_copy / "model.fp16.engine"
    engine.write_bytes(b"a TensorRT plan")
    args = ["bench", str(bundle_copy), "--backends", "onnxruntime", "--precisions", "fp32",
            "--batch-sizes", "1", "--warmup", "0", "--iters", "1"]  # fmt: skip
    args += ["--json", str(engine)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "is a file of the bundle" in res.stderr, res.output
    assert engine.read_bytes() == b"a TensorRT plan"


def test_bench_table_rows_title_and_progress_lines_of_a_cyclegan_result():
    from edgegan.runtime.bench_table import headers, plain_table, row_line, table_rows, title

    def skipped(direction, backend, precision, batch, reason, status="skipped"):
        return {"direction": direction, "backend": backend, "precision": precision,
                "batch": batch, "status": status, "reason": reason}  # fmt: skip

    fast = {"direction": "AtoB", "backend": "torch", "precision": "fp32", "batch": 1,
            "status": "ok", "device": "cpu", "threads": 2, "compile": "default",
            "channels_last": True, "latency_ms": {"p50": 1.5, "p95": 2.0},
            "images_per_s": 666.7, "peak_mem_mb": 10.0,
            "parity": {"max_abs": 1e-6, "psnr": 120.0}}  # fmt: skip
    slow = {**fast, "batch": 8, "threads": None, "compile": None, "channels_last": False,
            "latency_ms": {"p50": 900.0, "p95": 950.0}, "images_per_s": 8.888,
            "parity": {"max_abs": None, "psnr": None, "nonfinite": 2}}  # fmt: skip
    no_trt = "TensorRT is not installed"
    result = {
        "bundle": "b", "reference": "torch fp32", "warmup": 3, "iters": 7, "size": [32, 48],
        "directions": ["AtoB", "BtoA"],
        "results": [
            fast, slow,
            skipped("AtoB", "tensorrt", "fp16", 1, no_trt),
            skipped("AtoB", "tensorrt", "fp16", 8, no_trt),  # one row for both batches
            skipped("AtoB", "onnxruntime", "int8", 1, "no int8 graph"),
            skipped("AtoB", "onnxruntime", "int8", 8, "out of memory", "failed"),  # its own
            skipped("BtoA", "tensorrt", "fp16", 1, no_trt),  # another direction: its own
        ],
    }  # fmt: skip
    none = ["-"] * 6
    assert headers(result)[:3] == ["direction", "backend", "precision"]
    assert table_rows(result) == [
        ["AtoB", "torch", "fp32", "1", "1.500", "2.000", "667", "10.0", "1.00e-06", "120.0",
         "cpu, 2 threads, compiled default, channels-last"],
        ["AtoB", "torch", "fp32", "8", "900.000", "950.000", "8.89", "10.0", "-", "-",
         "cpu, NaN/inf in 2 outputs"],
        ["AtoB", "tensorrt", "fp16", "1,8", *none, f"skipped: {no_trt}"],
        ["AtoB", "onnxruntime", "int8", "1", *none, "skipped: no int8 graph"],
        ["AtoB", "onnxruntime", "int8", "8", *none, "failed: out of memory"],
        ["BtoA", "tensorrt", "fp16", "1", *none, f"skipped: {no_trt}"],
    ]  # fmt: skip
    assert title(result) == (
        "edgegan bench b  (32x48 images; parity vs torch fp32; 3 warm-up + 7 timed runs)"
    )
    assert plain_table(result).splitlines()[0] == title(result)
    assert (
        row_line(fast) == "AtoB torch fp32 batch 1 (compiled default, channels-last): p50 1.500 ms"
    )
    assert row_line(slow) == "AtoB torch fp32 batch 8: p50 900.000 ms (NaN/inf in 2 outputs)"
    assert row_line(result["results"][5]) == "AtoB onnxruntime int8 batch 8: failed (out of memory)"


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="names are bytes on Linux alone")
def test_onnxruntime_runs_the_checked_bytes_of_a_bundle_whose_path_is_not_utf8(
    bundle, tmp_path, monkeypatch
):
    """onnxruntime took the graph's path: a folder name that is not UTF-8 made it fail as
    'the file is damaged or not an ONNX graph', and the file could change between the digest
    check and the load. It is given the bytes checked."""
    import os

    from edgegan.export.signature import make_feed
    from edgegan.runtime import open_runner

    odd = Path(os.fsdecode(os.fsencode(tmp_path) + b"/x\xffy"))
    shutil.copytree(bundle, odd)
    with open_runner(odd, "onnxruntime", "fp32") as runner:
        assert runner.run(make_feed(runner.spec, 2, 0)).shape[0] == 2
    # the bytes read for the check are those loaded: a file swapped after it is not read
    from edgegan.export import bundle as bundles
    from edgegan.runtime import ort_runner

    real = bundles.check_graph_file

    def then_swapped(path, entry):
        data = real(path, entry)
        path.write_bytes(b"not a graph")
        return data

    monkeypatch.setattr(ort_runner, "check_graph_file", then_swapped)
    with open_runner(odd, "onnxruntime", "fp32") as runner:
        assert runner.run(make_feed(runner.spec, 1, 0)).shape[0] == 1


def test_infer_refuses_an_out_folder_another_process_writes_into(bundle, tmp_path):
    """Two infer into one --out both wrote: one's images replaced the other's in silence."""
    import os

    out = tmp_path / "out"
    out.mkdir()
    (out / f".edgegan-writing.{os.getppid()}-0a0b0c0d.tmp").write_bytes(b"")  # a live writer
    res = CliRunner().invoke(
        cli, ["infer", str(bundle), "--backend", "onnxruntime", "--num", "2", "--out", str(out),
              "--overwrite"],
    )  # fmt: skip
    assert res.exit_code == 2
    assert f"--out {out} is being written into by another process (.edgegan-writing." in (
        res.stderr
    )
    assert sorted(p.name for p in out.iterdir()) == [
        f".edgegan-writing.{os.getppid()}-0a0b0c0d.tmp"
    ]


def test_a_graph_the_bundle_lists_but_lacks_is_one_line(bundle_copy):
    from edgegan.export.bundle import model_path

    (bundle_copy / "model.fp16.onnx").unlink()
    assert model_path(bundle_copy, "fp32") == bundle_copy / "model.onnx"
    with pytest.raises(EdgeganError, match="lists model.fp16.onnx but the file is missing"):
        model_path(bundle_copy, "fp16")


@pytest.mark.parametrize("n, warned", [(128, False), (129, True), (1999, True), (2000, False)])
def test_edgegan_eval_warns_of_a_biased_fd_from_129_to_1999_samples(monkeypatch, n, warned):
    """At 2,000 samples (what the warning asks for) an FD is comparable: no warning; at
    128 or fewer the metric itself has said the figure means nothing."""
    import importlib

    evaluate_module = importlib.import_module("edgegan.metrics.evaluate")  # not the function
    scores = {"fd": 1.25, "num_samples": n}
    monkeypatch.setattr(
        evaluate_module, "evaluate", lambda samples, reference, metric, params: scores
    )
    res = CliRunner().invoke(cli, ["eval", "samples.npz"])
    assert res.exit_code == 0, res.output
    assert res.stdout.split() == ["fd", "1.2500", "num_samples", str(n)]
    assert ("biased upward" in res.stderr) == warned, res.stderr


def test_an_onnxruntime_failure_while_running_is_one_line(bundle, tmp_path, monkeypatch):
    """onnxruntime's allocator failing (a huge image, a batch of 200,000) was a 45-line
    traceback with exit code 1; the torch backend says the same in one line."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

    from edgegan.runtime.ort_runner import OrtRunner

    arena = (
        "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Conv "
        "node. Name:'/conv/Conv' Status Message: /onnxruntime_src/onnxruntime/core/framework/"
        "bfc_arena.cc:359 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool) "
        "Failed to allocate memory for requested buffer of size 123\nmore"
    )
    other = "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input"
    for error, code, said in (
        (Fail(arena), 1, "error: out of memory (onnxruntime: Failed to allocate memory for "
         "requested buffer of size 123 (Conv node. Name:'/conv/Conv')); ask for less at once"),
        (InvalidArgument(other), 2, "error: onnxruntime failed to run onnxruntime/fp32/cpu: "
         "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input"),
    ):  # fmt: skip

        def fail(self, feed, error=error):
            raise error

        monkeypatch.setattr(OrtRunner, "_run", fail)
        res = CliRunner().invoke(cli, ["infer", str(bundle), "--backend", "onnxruntime",
                                       "--num", "2", "--out", str(tmp_path / "o")])  # fmt: skip
        assert res.exit_code == code and res.stderr == said + "\n", res.output
        assert not (tmp_path / "o").exists()


# -- the Python API's edges (found by an audit as a notebook user) ----------------------------
def test_labels_given_as_arrays_are_taken_and_non_integers_refused(run_dir):
    import torch

    from edgegan.sampling import generate, load_run_generator

    gen = load_run_generator(run_dir)
    listed = generate(gen, 4, labels=[3, 7], seed=1)
    for given in (np.array([3, 7]), torch.tensor([3, 7]), [np.int64(3), 7]):  # ambiguous truth
        np.testing.assert_array_equal(
            generate(gen, 4, labels=given, seed=1)["images"], listed["images"]
        )
    for bad in ([7.5], [True], np.array([7.5])):  # 7.5 sampled class 7, True class 1
        with pytest.raises(EdgeganError, match="--labels takes class numbers"):
            generate(gen, 2, labels=bad)


def test_a_runner_refuses_float_labels_and_names_a_latent_of_the_wrong_rank(bundle):
    for backend in ("torch", "onnxruntime"):
        with open_runner(bundle, backend) as runner:
            feed = make_inputs(runner.spec, 2, seed=0)
            floats = {**feed, "labels": feed["labels"].astype(np.float32) + 0.5}
            with pytest.raises(EdgeganError, match="labels must be integers .*got float32"):
                runner.run(floats)
            with pytest.raises(
                EdgeganError, match=r"input 'z' must have shape \(\?, 16\); got \(16,\)"
            ):
                runner.run({**feed, "z": feed["z"][0]})  # it said "different batch sizes"


def test_bench_refuses_batch_sizes_and_counts_that_are_not_integers(bundle):
    from edgegan.runtime.bench import bench

    for bad in ([1.5], 8, ["4"], []):  # 1.5 was timed as 1.5 images a call
        with pytest.raises(EdgeganError, match="--batch-sizes must be positive integers"):
            bench(bundle, ["onnxruntime"], ["fp32"], batch_sizes=bad)
    with pytest.raises(EdgeganError, match="--iters > 0; got 10 and 2.5"):
        bench(bundle, ["onnxruntime"], ["fp32"], batch_sizes=[1], iters=2.5)


def test_export_refuses_an_opset_that_is_not_an_integer(run_dir, tmp_path):
    from edgegan.export import export

    with pytest.raises(EdgeganError, match="--opset must be between 17 and .*, got '18'"):
        export(run_dir, out=tmp_path / "b", opset="18")  # type: ignore[arg-type]
    assert not (tmp_path / "b").exists()


def test_scores_of_anything_but_one_image_tensor_are_one_line():
    import torch

    from edgegan.metrics import evaluate_tensors

    for bad, got in (([torch.zeros(1, 28, 28)] * 4, "list"), (torch.zeros(4, 28, 28), "shape")):
        with pytest.raises(EdgeganError, match=f"images must be one tensor or array .*got {got}"):
            evaluate_tensors(bad)
