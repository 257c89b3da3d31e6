"""The pix2pix task: paired training (L1 + conditional adversarial loss), its paired digits,
the depth-by-size U-Net, exact resume, and its one direction through export, infer and eval."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tiny import TINY_PIX2PIX as TINY

from edgegan.cli import cli
from edgegan.config import load_config, load_run_config
from edgegan.data.digits_domains import build_cyclegan_digits, to_domain_b
from edgegan.errors import ConfigError, DataError, EdgeganError
from edgegan.train import train
from edgegan.train.checkpoint import load_checkpoint


def tiny(*overrides: str, steps: int = 3):
    return load_config("pix2pix-digits", [*TINY, f"train.steps={steps}", *overrides])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 4-step pix2pix run (log every step), exported with FP16 and INT8 graphs."""
    from edgegan.export import export

    root = tmp_path_factory.mktemp("pix2pix")
    result = train(tiny("train.log_every=1", steps=4), out_dir=root / "run")
    export(result.run_dir, out=root / "bundle", fp16=True, int8=True, calib_samples=16)
    return result


def test_paired_digits_pair_each_training_digit_with_its_own_translation():
    ds = build_cyclegan_digits("train", limit=8, paired=True)
    assert ds.paired and len(ds) == 8
    for i in range(8):
        item = ds[i]
        assert torch.equal(item["B"], to_domain_b(item["A"]))
        assert item["A_path"] == item["B_path"]
    unpaired = build_cyclegan_digits("train", limit=8)
    assert not unpaired.paired
    assert not torch.equal(unpaired.images_b, to_domain_b(unpaired.images_a))
    with pytest.raises(DataError, match="paired must be true or false"):
        build_cyclegan_digits("train", paired="yes")  # type: ignore[arg-type]


def test_a_run_trains_one_generator_against_a_discriminator_of_pairs(run):
    state = load_checkpoint(run.checkpoint)
    assert set(state["networks"]) == {"g_ab", "d"}
    assert set(state["optimizers"]) == {"g", "d"}
    # d sees A (1 channel) and B (3) as one 4-channel image
    first = next(v for k, v in state["networks"]["d"].items() if k.endswith("weight"))
    assert first.shape[1] == 4
    assert state["spec"]["task"] == "pix2pix" and state["spec"]["network"] == "g_ab"
    assert set(run.eval) == {"ab_l1", "ab_psnr", "ab_ssim", "num_samples"}
    assert all(math.isfinite(v) for v in run.eval.values())
    assert (run.run_dir / "samples/final.png").is_file()


def test_the_generator_loss_is_adversarial_plus_weighted_l1(run, tmp_path):
    """g_loss = g_adv + lambda_l1 * l1, as logged (lambda_l1: the preset's 100); with
    lambda_l1=0 the generator learns from the discriminator alone."""
    rows = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    for row in rows:
        assert row["g_loss"] == pytest.approx(row["g_adv"] + 100.0 * row["l1"], rel=1e-5)
    free = train(tiny("pix2pix.lambda_l1=0", "train.log_every=1", steps=1), out_dir=tmp_path / "r")
    (row,) = [json.loads(x) for x in (free.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert row["g_loss"] == pytest.approx(row["g_adv"], rel=1e-6) and row["l1"] > 0


def test_training_on_pairs_lowers_the_l1_to_the_truth(tmp_path):
    """100 steps on 64 pairs (3 s): the translations of the test digits move towards their
    true B. (The preset's whole run, 1,000 steps in 77 s on 2 cores, reaches 31.8 dB.)"""
    wider = ["eval.num_samples=32", "model.generator.ngf=16"]
    result = train(tiny(*wider, steps=100), out_dir=tmp_path / "r")
    untrained = train(tiny(*wider, steps=1), out_dir=tmp_path / "u")
    assert result.eval["ab_l1"] < 0.75 * untrained.eval["ab_l1"], (result.eval, untrained.eval)
    assert result.eval["ab_psnr"] > untrained.eval["ab_psnr"] + 2.5


def test_an_unpaired_training_split_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="pix2pix task trains on pairs.*data.paired=true"):
        train(tiny("data.paired=false"), out_dir=tmp_path / "r")
    from edgegan.config import PartConfig

    cfg = tiny()
    cfg.data = PartConfig("mnist", {"image_size": 32, "limit": 64})
    with pytest.raises(ConfigError, match="pix2pix task needs a two-domain dataset"):
        train(cfg, out_dir=tmp_path / "r2")
    assert not (tmp_path / "r").exists()


def test_the_gan_tasks_discriminator_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="only task gan uses them, a pix2pix run would ignore"):
        train(tiny("train.d_steps=2", "train.r1_gamma=1"), out_dir=tmp_path / "r")


@pytest.mark.parametrize("extra", [[], ["loss.name=wgan-gp", "data.channels_a=3"]])
def test_resume_is_exact(tmp_path, extra):
    """3 steps, resumed to 6, equals 6 straight (a constant schedule: a decaying one follows
    the new length), the gradient penalty on the pairs included."""
    steps = ["train.lr_schedule=constant", "train.checkpoint_every=3", "eval.at_end=false"]
    full = train(tiny(*steps, *extra, steps=6), out_dir=tmp_path / "full")
    half = train(tiny(*steps, *extra, steps=3), out_dir=tmp_path / "half")
    resumed = train(load_run_config(half.run_dir, ["train.steps=6"]), resume=half.run_dir)
    a, b = load_checkpoint(full.checkpoint), load_checkpoint(resumed.checkpoint)
    for net in ("g_ab", "d"):
        for key, value in a["networks"][net].items():
            assert torch.equal(value, b["networks"][net][key]), f"{net}.{key}"


@pytest.mark.parametrize("size, downs", [(32, 5), (64, 6), (96, 5), (256, 8), (512, 8)])
def test_the_unet_takes_as_many_downsamplings_as_the_size_allows(size, downs):
    from edgegan.nn.plugin import build_unet_any

    net = build_unet_any(channels=1, image_size=size, channels_out=3, ngf=2)
    assert net.num_downs == downs and net.size_multiple == 2**downs
    assert build_unet_any(channels=1, image_size=size, num_downs=5, ngf=2).num_downs == 5


def test_the_unet_refuses_a_size_it_cannot_halve_five_times():
    from edgegan.nn.plugin import build_unet_any

    with pytest.raises(EdgeganError, match="unet needs image_size divisible by 32; got 48"):
        build_unet_any(channels=1, image_size=48)


def test_export_has_the_one_direction_and_runs_alike_on_every_backend(run, tmp_path):
    """The bundle holds AtoB alone; `infer --input` needs no --direction, and onnxruntime
    translates as torch does (within a level of 8 bits)."""
    from PIL import Image

    bundle = run.run_dir.parent / "bundle"
    meta = json.loads((bundle / "edgegan.json").read_text())
    assert meta["task"] == "pix2pix" and meta["directions"] == ["AtoB"]
    assert set(meta["models"]["AtoB"]) == {"fp32", "fp16", "int8"}
    assert meta["models"]["AtoB"]["fp32"]["parity"]["max_abs"] < 1e-4
    assert meta["spec"]["channels_a"] == 1 and meta["spec"]["channels_b"] == 3
    images = tmp_path / "in"
    images.mkdir()
    ds = build_cyclegan_digits("test", limit=3)
    for i in range(3):
        grey = ((ds[i]["A"][0].numpy() + 1) * 127.5).round().astype(np.uint8)
        Image.fromarray(grey).save(images / f"{i}.png")
    outs = {}
    for name, target, backend in (
        ("torch", run.run_dir, "torch"),
        ("ort", bundle, "onnxruntime"),
    ):
        out = tmp_path / name
        res = CliRunner().invoke(
            cli,
            ["infer", str(target), "--input", str(images), "--out", str(out), "--backend", backend],
        )
        assert res.exit_code == 0, res.output
        outs[name] = [np.asarray(Image.open(out / f"{i}.png")).astype(int) for i in range(3)]
    for a, b in zip(outs["torch"], outs["ort"], strict=True):
        assert a.shape == (32, 32, 3) and np.abs(a - b).max() <= 1
    # the standalone reader (no edgegan, no torch) takes the bundle's one direction too: it
    # took a pix2pix bundle for a GAN's (KeyError 'latent_dim')
    from tiny import run_standalone_example

    run_standalone_example(str(bundle), "--input", str(images), "--out", str(tmp_path / "s"))
    for i in range(3):
        alone = np.asarray(Image.open(tmp_path / "s" / f"{i}.png")).astype(int)
        assert np.array_equal(alone, outs["ort"][i])
    said = run_standalone_example(str(bundle), "--direction", "BtoA", "--input", str(images),
                                  "--out", str(tmp_path / "t"), fails=True)  # fmt: skip
    assert "error: the bundle has no BtoA graphs (it has: AtoB)" in said


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["infer", "{run}", "--direction", "BtoA", "--input", "{img}", "--out", "{out}"],
            "a pix2pix run has AtoB alone",
        ),
        (
            ["infer", "{bundle}", "--direction", "BtoA", "--input", "{img}", "--out", "{out}"],
            "a pix2pix bundle has AtoB alone",
        ),
        (
            ["export", "{run}", "--direction", "BtoA", "--out", "{out}"],
            "a pix2pix run has AtoB alone",
        ),
        (
            ["infer", "{run}", "--num", "4", "--out", "{out}"],
            "is a pix2pix run: translate images with --input",
        ),
        (["eval", "{bundle}"], "is a pix2pix run or bundle: eval scores a GAN's samples"),
        (
            ["infer", "{bundle}", "--num", "4", "--out", "{out}"],
            "AtoB is an image-to-image generator: it translates images",
        ),
        (["eval", "{bundle}"], "and `edgegan infer --input DIR` translates images"),
    ],  # fmt: skip
)
def test_the_missing_direction_and_sampling_are_one_clear_line(run, tmp_path, args, message):
    img = tmp_path / "in.png"
    from PIL import Image

    Image.new("L", (32, 32)).save(img)
    paths = {
        "run": run.run_dir,
        "bundle": run.run_dir.parent / "bundle",
        "img": img,
        "out": tmp_path / "out",
    }
    res = CliRunner().invoke(cli, [a.format(**paths) for a in args])
    assert res.exit_code != 0
    assert message in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_eval_scores_the_run_on_its_test_split_as_its_training_did(run, tmp_path):
    res = CliRunner().invoke(cli, ["eval", str(run.run_dir), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == run.eval and run.eval["num_samples"] == 16
    res = CliRunner().invoke(cli, ["eval", str(run.run_dir), "--num", "3", "--json"])
    assert json.loads(res.output)["num_samples"] == 3
    for args, message in (
        (["--seed", "1"], "scored on its own test split with its generators: no --seed"),
        (["--reference", "mnist"], "no --reference"),
        (["--metric", "digits"], "and with --metric fid; not --metric digits"),
        (["--device", "tpu"], "--device"),
        (["-o", "weights=/nope"], "-o sets the FID metric's options: add --metric fid"),
    ):
        res = CliRunner().invoke(cli, ["eval", str(run.run_dir), *args])
        assert res.exit_code == 2 and message in res.output, (args, res.output)
        assert len(res.output.strip().splitlines()) == 1, res.output
    # the Python API's evaluate_generator says where a translation run is scored (the
    # digits metric's refusal of runs on other data is for GAN runs)
    from edgegan.metrics.evaluate import evaluate_generator

    with pytest.raises(EdgeganError, match="is a pix2pix run or bundle: eval scores a GAN's"):
        evaluate_generator(run.run_dir)
    # the data moved: --data-root says where; a run's own root is kept otherwise
    res = CliRunner().invoke(cli, ["eval", str(run.run_dir), "--data-root", str(tmp_path)])
    assert res.exit_code == 2 and "'cyclegan-digits', which reads no folder" in res.output
    res = CliRunner().invoke(cli, ["eval", str(tmp_path), "--data-root", str(tmp_path)])
    assert res.exit_code == 2 and "--data-root tells a cyclegan or pix2pix run" in res.output
    # a damaged config.yaml is reported as such (its checkpoint says it is a pix2pix run)
    import shutil

    copy = shutil.copytree(run.run_dir, tmp_path / "copy")
    (copy / "config.yaml").write_text("garbage: [\n")
    res = CliRunner().invoke(cli, ["eval", str(copy)])
    assert res.exit_code == 2 and "config.yaml line 2: invalid YAML" in res.output, res.output


def test_eval_scores_the_ema_generator_as_training_does(tmp_path):
    result = train(tiny("train.ema=true", "train.ema_decay=0.5", steps=2), out_dir=tmp_path / "r")
    res = CliRunner().invoke(cli, ["eval", str(result.run_dir), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == result.eval and result.eval["num_samples"] == 16
    # the trained (not averaged) weights score otherwise: the EMA copy is what was scored
    state = load_checkpoint(result.checkpoint)
    state["ema"] = None
    torch.save(state, result.checkpoint)
    res = CliRunner().invoke(cli, ["eval", str(result.run_dir), "--json"])
    assert json.loads(res.output)["ab_l1"] != result.eval["ab_l1"]


def test_eval_clips_translations_to_the_value_range_as_the_trainer_samples(run, monkeypatch):
    """A generator whose output leaves [-1, 1] (a plugin without a final tanh) is scored on
    its clipped images, as training scores it (Trainer.sample); the paired scores clip for
    themselves, Inception's features do not."""
    import edgegan.translate as tr
    from edgegan.metrics import translation as mt

    real, real_scores = tr.load_translator, mt.translation_scores

    def loud(*args, **kwargs):
        gen = real(*args, **kwargs)
        inner = gen.module
        gen.module = lambda x: inner(x) * 3 + 2  # out of range
        return gen

    seen = {}

    def spy(ds, directions, translate, n, fid=None, cache=None):
        x = torch.stack([ds[i]["A"] for i in range(4)])
        seen["out"], seen["raw"] = translate("ab", x), loud(run.run_dir, "AtoB").module(x)
        return real_scores(ds, directions, translate, n, fid, cache)

    monkeypatch.setattr(tr, "load_translator", loud)
    monkeypatch.setattr(mt, "translation_scores", spy)
    mt.evaluate_translation_run(run.run_dir, num=4)
    assert seen["raw"].abs().max() > 1.5
    assert torch.equal(seen["out"], seen["raw"].clamp(-1, 1))


def test_scoring_translates_large_images_a_megapixel_at_a_time():
    """As infer on the CPU: 256 images of 256x256 through the ResNet-9 at once took 15 GB."""
    from edgegan.metrics.translation import _pixel_bounded

    sizes = []

    def translate(prefix, x):
        sizes.append(len(x))
        return -x

    big = torch.rand(5, 1, 512, 512)  # 4 images make a megapixel
    assert torch.equal(_pixel_bounded(translate)("ab", big), -big) and sizes == [4, 1]
    sizes.clear()
    small = torch.rand(300, 1, 32, 32)
    assert torch.equal(_pixel_bounded(translate)("ab", small), -small) and sizes == [300]
    # the scores translate so
    from edgegan.metrics.translation import translation_scores

    class Pairs(list):
        paired = True

    sizes.clear()
    pairs = Pairs({"A": a, "B": -a} for a in big)
    scores = translation_scores(pairs, {"ab": ("A", "B")}, translate, 5)
    assert sizes == [4, 1] and scores["ab_l1"] == 0


def test_a_cyclegan_still_needs_its_direction(tmp_path):
    from edgegan.translate import default_direction

    cyc = train(
        load_config("cyclegan-digits", ["data.limit=8", "model.generator.ngf=4", "train.steps=1",
                                        "train.progress=false", "eval.at_end=false",
                                        "train.batch_size=4"]),
        out_dir=tmp_path / "cyc",
    )  # fmt: skip
    with pytest.raises(EdgeganError, match="is a cyclegan run: give --direction"):
        default_direction(cyc.run_dir)


@pytest.mark.slow
def test_compiled_training_with_the_penalty_on_pairs(tmp_path):
    """torch.compile in place, with wgan-gp's penalty (run eager) on the (A, B) pairs: plain
    checkpoint keys, finite losses."""
    pytest.importorskip("torch._inductor")
    cfg = tiny("train.compile=default", "loss.name=wgan-gp", "train.log_every=1", steps=2)
    result = train(cfg, out_dir=tmp_path / "run")
    state = load_checkpoint(result.checkpoint)
    assert not [k for net in state["networks"].values() for k in net if "_orig_mod" in k]
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(math.isfinite(r["d_penalty"]) and math.isfinite(r["g_loss"]) for r in rows)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(
    "extra",
    [
        ["train.amp=bf16", "train.channels_last=true"],
        ["train.amp=fp16", "train.channels_last=true"],
        ["train.amp=bf16", "train.compile=default"],
        # Not yet run on a GPU: torch 2.11's compiled backward asserted on ConvTranspose
        # gradient strides with channels_last for a small DCGAN (docs/benchmarks.md), and
        # the U-Net's innermost up-convolution starts from 1x1.
        ["train.amp=bf16", "train.channels_last=true", "train.compile=default"],
    ],
    ids=["bf16-nhwc", "fp16-nhwc", "bf16-compile", "bf16-nhwc-compile"],
)
def test_cuda_pix2pix_fast_path(tmp_path, extra):
    result = train(tiny("train.device=cuda", *extra, steps=4), out_dir=tmp_path / "run")
    assert result.step == 4 and all(math.isfinite(v) for v in result.eval.values())
    state = load_checkpoint(result.checkpoint)
    for net in state["networks"].values():
        assert all(torch.isfinite(v).all() for v in net.values())


def _pair_files(root, test=8):
    """train/ (16) and test/ A|B files of digits: grey A (stored as RGB) left, colour B
    right."""
    from PIL import Image

    for split, n in (("train", 16), ("test", test)):
        ds = build_cyclegan_digits(split, limit=n)
        (root / split).mkdir(parents=True)
        for i in range(n):
            a = ((ds[i]["A"].expand(3, -1, -1) + 1) * 127.5).round().byte()
            b = ((ds[i]["B"] + 1) * 127.5).round().byte()
            pair = torch.cat([a, b], 2).permute(1, 2, 0).numpy()
            Image.fromarray(pair).save(root / split / f"{i:03d}.png")
    return root


def _aligned_config(root, *extra):
    data = [
        "data.name=aligned",
        f"data.root={root}",
        "data.load_size=36",
        "data.crop_size=32",
        "data.channels_a=1",
    ]
    return load_config(
        "pix2pix", [*TINY, *data, "model.generator.name=unet", "train.steps=2", *extra]
    )


def test_an_aligned_folder_trains_exports_and_calibrates(tmp_path):
    """The reference's layout end to end: A|B pairs of digits written side by side, trained
    (grey A, colour B), exported with INT8 calibrated on the folder's test A halves."""

    from edgegan.export import export

    result = train(_aligned_config(_pair_files(tmp_path / "pairs")), out_dir=tmp_path / "run")
    assert set(result.eval) == {"ab_l1", "ab_psnr", "ab_ssim", "num_samples"}
    spec = load_checkpoint(result.checkpoint)["spec"]
    assert (spec["channels_a"], spec["channels_b"], spec["image_size"]) == (1, 3, 32)
    assert spec["preprocess"] == "resize_and_crop" and spec["load_size"] == 36
    meta = export(result.run_dir, out=tmp_path / "b", int8=True, calib_samples=8)
    source = meta["models"]["AtoB"]["int8"]["calibration"]
    assert "dataset aligned, test split, domain A, first 8" in json.dumps(source)


def _pngs(folder):
    from PIL import Image

    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.iterdir())}


def test_split_pairs_translates_the_source_half_of_each_pair(tmp_path):
    """`infer --split-pairs` on pair files (a pix2pix test/ folder) translates the half the
    run reads (the left one, or the right one after training with data.direction=BtoA), as
    the same halves cut out and translated alone; with --side-by-side, input | translation |
    truth. The bundle records the halves too; an odd width is one line, nothing written."""
    from PIL import Image

    from edgegan.export import export

    root = _pair_files(tmp_path / "pairs", test=3)
    test = root / "test"
    cut = {"left": tmp_path / "left", "right": tmp_path / "right"}
    for folder in cut.values():
        folder.mkdir()
    for p in sorted(test.iterdir()):
        pair = Image.open(p)
        pair.crop((0, 0, 32, 32)).save(cut["left"] / p.name)
        pair.crop((32, 0, 64, 32)).save(cut["right"] / p.name)
    runner = CliRunner()

    def infer(target, source, out, *extra):
        args = ["infer", str(target), "--input", str(source), "--out", str(tmp_path / out)]
        res = runner.invoke(cli, [*args, *extra])
        assert res.exit_code == 0, res.output
        return _pngs(tmp_path / out)

    ab = train(_aligned_config(root), out_dir=tmp_path / "ab").run_dir
    # BtoA: A is each file's right (colour) half, B its left; grey B
    ba = train(
        _aligned_config(root, "data.direction=BtoA", "data.channels_a=3", "data.channels_b=1"),
        out_dir=tmp_path / "ba",
    ).run_dir
    assert load_checkpoint(ab / "checkpoints/last.pt")["spec"]["halves"] == "AB"
    assert load_checkpoint(ba / "checkpoints/last.pt")["spec"]["halves"] == "BA"
    split_by_run = {}
    for run_dir, half, truth in ((ab, "left", "right"), (ba, "right", "left")):
        split = split_by_run[run_dir.name] = infer(run_dir, test, f"{run_dir.name}-split",
                                                   "--split-pairs")  # fmt: skip
        alone = infer(run_dir, cut[half], f"{run_dir.name}-alone")
        assert split.keys() == alone.keys() and len(split) == 3
        for name in split:
            assert np.array_equal(split[name], alone[name]), (run_dir.name, name)
        shown = infer(run_dir, test, f"{run_dir.name}-sbs", "--split-pairs", "--side-by-side")
        channels = 3 if run_dir == ab else 1
        for name, img in shown.items():
            assert img.shape[:2] == (32, 96)
            assert np.array_equal(img[:, 32:64], split[name])
            real = Image.open(cut[truth] / name).convert("RGB" if channels == 3 else "L")
            assert np.array_equal(img[:, 64:], np.asarray(real))
    meta = export(ba, out=tmp_path / "bundle")
    assert meta["spec"]["halves"] == "BA"
    by_bundle = infer(tmp_path / "bundle", test, "by-bundle", "--split-pairs", "--backend",
                      "onnxruntime")  # fmt: skip
    right = infer(ba, cut["right"], "ba-again")
    for name, img in right.items():
        assert np.abs(by_bundle[name].astype(int) - img).max() <= 1
    # a run from before specs recorded the halves: its config says; a bundle: warned about
    from edgegan.train.checkpoint import atomic_save

    state = load_checkpoint(ba / "checkpoints/last.pt")
    del state["spec"]["halves"]
    atomic_save(state, ba / "checkpoints/last.pt")
    old_run = infer(ba, test, "old-run", "--split-pairs")
    assert all(np.array_equal(old_run[k], v) for k, v in split_by_run["ba"].items())
    meta_file = tmp_path / "bundle" / "edgegan.json"
    meta = json.loads(meta_file.read_text())
    del meta["spec"]["halves"]
    meta_file.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="does not record which half of a pair file is A"):
        infer(tmp_path / "bundle", test, "old-bundle", "--split-pairs", "--backend", "onnxruntime")
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.new("RGB", (63, 32)).save(odd / "x.png")
    res = runner.invoke(cli, ["infer", str(ab), "--input", str(odd), "--split-pairs", "--out",
                              str(tmp_path / "none")])  # fmt: skip
    assert res.exit_code == 2 and "an odd width does not split into A and B" in res.stderr
    assert res.stderr.count("\n") == 1 and not (tmp_path / "none").exists()


def test_a_run_with_its_bundle_translates_and_refuses_as_the_run(run, tmp_path):
    """RUN/export serves `infer RUN` (no --direction needed on any backend); BtoA is the
    run's one error, not a warning about its bundle first; a damaged bundle leaves the torch
    backend the checkpoint, as with --direction."""
    import shutil
    import subprocess
    import sys

    from PIL import Image

    copy = tmp_path / "run"
    shutil.copytree(run.run_dir, copy)
    shutil.copytree(run.run_dir.parent / "bundle", copy / "export")
    Image.new("L", (32, 32)).save(tmp_path / "in.png")

    def infer(*args: str) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable,
            "-m",
            "edgegan",
            "infer",
            str(copy),
            "--input",
            str(tmp_path / "in.png"),
        ]
        return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)

    done = infer("--out", str(tmp_path / "o1"), "--backend", "onnxruntime")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o1" / "in.png").is_file()
    refused = infer("--out", str(tmp_path / "o2"), "--direction", "BtoA")
    assert refused.returncode == 2
    assert refused.stderr == (
        "error: --direction BtoA: a pix2pix run has AtoB alone (its generator translates A -> B)\n"
    )
    (copy / "export" / "edgegan.json").write_text("{")
    torch_run = infer("--out", str(tmp_path / "o3"))
    assert torch_run.returncode == 0, torch_run.stderr
    assert (tmp_path / "o3" / "in.png").is_file() and "is not used" in torch_run.stderr


def test_the_re_export_command_of_a_pix2pix_bundle_names_no_direction(run):
    """A pix2pix bundle's one direction is all its run has, not a --direction it was
    exported with (a cyclegan's single direction is)."""
    from edgegan.export.bundle import export_command, read_bundle

    bundle = run.run_dir.parent / "bundle"
    command = export_command(bundle, read_bundle(bundle))
    assert command.startswith(f"edgegan export {run.run_dir}") and "--fp16 --int8" in command
    assert "--direction" not in command


class _OneBatch:
    """A batch stream that gives one fixed batch (what ``train_step`` reads)."""

    def __init__(self, batch: dict[str, torch.Tensor]) -> None:
        self.batch = batch

    def next(self) -> dict[str, torch.Tensor]:
        return self.batch


def _pairs(n: int, split: str = "train") -> dict[str, torch.Tensor]:
    ds = build_cyclegan_digits(split, limit=n, paired=True)
    return {"A": ds.images_a[:n], "B": ds.images_b[:n]}


def test_a_step_updates_d_on_both_pairs_then_g_against_it_frozen(tmp_path):
    """One step as the reference's: g translates A; d sees the real pair (a, b) and the
    detached fake pair (a, g(a)), A's channels first, and steps; then g steps against the
    updated d, whose weights take no gradient there. (mutation testing: d shown (a, b) as its
    fake pair, B before A in either pair, g reading B, g updated first, d left trainable or
    never stepped, all passed the suite.)"""
    from edgegan.train.trainer import Trainer

    task = Trainer(tiny(), tmp_path / "r").task
    batch = _pairs(4)
    inputs: list[torch.Tensor] = []
    fakes: list[torch.Tensor] = []
    seen: list[torch.Tensor] = []
    events: list[tuple[str, bool]] = []
    task.g_ab.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    task.g_ab.register_forward_hook(lambda m, args, out: fakes.append(out.detach().clone()))
    task.d.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    d_weight = next(task.d.parameters())
    before = d_weight.detach().clone()
    for name, opt in task.optims.items():
        opt.register_step_pre_hook(
            lambda o, args, kwargs, name=name: events.append((name, d_weight.requires_grad))
        )
    task.train_step(_OneBatch(batch), 0)
    assert events == [("d", True), ("g", False)]  # d first; frozen while g steps
    assert all(p.requires_grad for p in task.d.parameters())  # and trainable again
    assert not torch.equal(before, d_weight.detach())
    (fake,) = fakes  # g runs once a step, on A
    assert torch.equal(inputs[0], batch["A"])
    real_pair = torch.cat([batch["A"], batch["B"]], 1)
    fake_pair = torch.cat([batch["A"], fake], 1)
    assert len(seen) == 3  # d on the real pairs, the fake pairs, then inside g's update
    assert torch.equal(seen[0], real_pair)
    assert torch.equal(seen[1], fake_pair) and not seen[1].requires_grad
    assert torch.equal(seen[2].detach(), fake_pair) and seen[2].requires_grad


def test_the_generator_gradient_is_the_adversarial_one_plus_lambda_times_l1s(tmp_path):
    """The same step with lambda_l1 0, 50 and 100 (same weights, batch and dropout): g's
    gradient moves linearly with the weight, and with lambda_l1=0 it is not zero (the
    adversarial term reaches g through d). (mutation testing: the adversarial loss on a
    detached fake, or the L1 on one, passed the suite's tests of the logged losses.)"""
    from edgegan.train.trainer import Trainer

    batch = _pairs(4)
    grads = []
    for weight in (0, 50, 100):
        task = Trainer(tiny(f"pix2pix.lambda_l1={weight}"), tmp_path / f"r{weight}").task
        torch.manual_seed(0)
        task.train_step(_OneBatch(batch), 0)
        grads.append(torch.cat([p.grad.flatten() for p in task.g_ab.parameters()]))
    adv, half, full = grads
    assert adv.abs().max() > 0
    assert (half - adv).abs().max() > 10 * adv.abs().max()  # the L1's, 50 times
    torch.testing.assert_close(full - half, half - adv, rtol=1e-3, atol=1e-6)


def test_previews_and_scores_are_the_sampled_generators_on_the_test_pairs(tmp_path):
    """Previews show the first test pairs (A, its translation by the EMA copy, B) and the
    scores are that copy's translations of the test A against their B. (mutation testing:
    previews of the training split, of B in place of the translation or of g_ab in train
    mode, and scores against A or of g_ab while an EMA copy was kept, all passed the suite.)"""
    from edgegan.metrics.paired import paired_scores
    from edgegan.train.trainer import Trainer
    from edgegan.train.translation import rgb

    trainer = Trainer(tiny("train.ema=true"), tmp_path / "r")
    task = trainer.task
    with torch.no_grad():  # the trained weights drift from the EMA copy's
        for p in task.g_ab.parameters():
            p.add_(0.05 * torch.randn_like(p))
    test = _pairs(16, "test")
    a, b = test["A"], test["B"]
    assert torch.equal(trainer.fixed["A"], a[:4]) and torch.equal(trainer.fixed["B"], b[:4])
    ema = trainer.sample(a)
    assert not torch.allclose(ema, trainer.sample(a, module=task.g_ab), atol=1e-3)
    images, nrow = task.preview(trainer, trainer.fixed)
    assert nrow == 4
    torch.testing.assert_close(images, torch.cat([rgb(a[:4]), ema[:4], b[:4]]))
    scores = task.evaluate(trainer)
    assert scores.pop("num_samples") == 16
    assert scores == pytest.approx(paired_scores(ema, b, "ab_"), rel=1e-5)


def test_the_paired_digits_train_on_all_8000_training_digits():
    """mutation testing: half the digits (the unpaired split's A) passed the suite."""
    paired = build_cyclegan_digits("train", paired=True)
    assert len(paired) == 8000 and paired.indices_a.tolist() == list(range(8000))


@pytest.mark.parametrize(
    "override, message",
    [
        ("pix2pix.lambda_l1=-1", "pix2pix.lambda_l1 must be >= 0"),
        ("pix2pix.preview=0", "pix2pix.preview must be > 0"),
    ],
)
def test_bad_pix2pix_settings_are_refused_before_the_run(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        train(tiny(override), out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_resume_with_another_preview_count_draws_the_previews_anew(tmp_path):
    """mutation testing: pix2pix.preview left out of the settings the fixed previews are
    drawn for passed the suite (the resumed run kept the old count)."""
    from edgegan.train.trainer import Trainer

    half = train(tiny("eval.at_end=false", steps=1), out_dir=tmp_path / "r")
    cfg = load_run_config(half.run_dir, ["train.steps=2", "pix2pix.preview=2"])
    resumed = Trainer(cfg, half.run_dir, resume=True)
    resumed.load_checkpoint(half.checkpoint)
    assert len(resumed.fixed["A"]) == 2


def test_the_run_and_its_bundle_translate_as_pix2pix_and_list_atob_alone(run, tmp_path):
    """The direction's spec names the run's task, from the run as from its bundle, and an
    edited bundle that lists BtoA is refused when read. (mutation testing: a run's translator
    spec saying cyclegan, and a pix2pix bundle let list BtoA, passed the suite.)"""
    from edgegan.export.bundle import BUNDLE_FILE, read_bundle
    from edgegan.translate import load_translator

    spec = load_translator(run.run_dir, "AtoB").spec
    assert spec["task"] == "pix2pix" and spec["network"] == "g_ab"
    assert (spec["channels_in"], spec["channels_out"]) == (1, 3)
    meta = read_bundle(run.run_dir.parent / "bundle")
    (tmp_path / BUNDLE_FILE).write_text(json.dumps({**meta, "directions": ["AtoB", "BtoA"]}))
    with pytest.raises(EdgeganError, match="valid edgegan bundle: directions must list AtoB,"):
        read_bundle(tmp_path)


def test_translating_arrays_takes_uint8_images_alone(run):
    """Float images in [0, 1] were read as 0..255 pixels: a black translation, silently."""
    from edgegan.runtime import open_runner
    from edgegan.translate import translate_arrays

    img = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    with open_runner(run.run_dir, "torch", direction="AtoB") as runner:
        assert translate_arrays(runner, [img])[0].dtype == np.uint8
        for bad, got in ((img.astype(np.float32) / 255, "float32 (32, 32)"),
                         (img[:0, :5], "uint8 (0, 5)")):  # fmt: skip
            with pytest.raises(
                EdgeganError, match=rf"image 0: .*uint8 images .*got {re.escape(got)}"
            ):
                translate_arrays(runner, [bad])


@pytest.mark.parametrize("num", [0, -5, True, 2.5])
def test_eval_of_a_translation_run_refuses_a_count_that_is_not_positive(run, num):
    """0 scored the run's default count; -5 said "nothing to score in its first -5"."""
    from edgegan.metrics.translation import evaluate_translation_run

    with pytest.raises(EdgeganError, match="--num must be a positive number of images"):
        evaluate_translation_run(run.run_dir, num=num)


def test_a_config_takes_numpy_numbers_and_paths_as_a_sweep_sets_them(tmp_path):
    from pathlib import Path

    config = tiny(steps=1)
    config.train.steps = np.int64(2)
    config.optim.g.lr = np.float32(0.0005)
    config.model.generator.params["ngf"] = np.int64(8)
    config.train.init_from = Path(tmp_path / "nowhere")  # checked as a str: not found
    with pytest.raises(EdgeganError, match=r"train.init_from=.*nowhere: no checkpoint there"):
        train(config, out_dir=tmp_path / "r")
    config.train.init_from = None
    result = train(config, out_dir=tmp_path / "r")
    assert result.step == 2
    saved = load_run_config(result.run_dir)
    assert saved.train.steps == 2 and saved.model.generator.params["ngf"] == 8
