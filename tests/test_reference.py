"""`edgegan import`: checkpoints of the reference CycleGAN/pix2pix code as edgegan runs.

The reference's files are plain state dicts of its networks, whose layouts edgegan's
networks repeat. These tests pin the reference's state-dict names (as its users' error
reports and conversion scripts quote them), write reference-style files with the
reference's quirks (pre-0.4 InstanceNorm statistics, a DataParallel prefix, convolutions
without a bias before norm=none), and check that the imported run computes what the
saved network computed, through export, infer, init_from and the CLI's errors.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from edgegan.cli import cli
from edgegan.config import load_run_config
from edgegan.errors import EdgeganError
from edgegan.nn.patchgan import NLayerDiscriminator, PixelDiscriminator
from edgegan.nn.resnet import ResnetGenerator
from edgegan.nn.unet import UnetGenerator
from edgegan.reference import (
    fitted,
    import_reference,
    load_weights,
    read_discriminator,
    read_generator,
    read_options,
)
from edgegan.train.checkpoint import load_checkpoint
from edgegan.translate import load_translator


def randomised(net: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """``net`` with weights and BatchNorm statistics far from their init, in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            noise = torch.randn(t.shape, generator=g) * scale
            t.copy_(noise.abs() + 0.5 if name.endswith("running_var") else noise)
    return net.eval()


def reference_file(path, net: torch.nn.Module, prefix="", old_instance_norm=False, keep_bias=None):
    """Save ``net`` as the reference would have: its state dict, with the reference's quirks.

    ``keep_bias``: with norm=none, the reference builds its convs without a bias but these
    (edgegan's have one): the others' biases are zeroed in ``net`` (the same function then)
    and left out of the file."""
    state = dict(net.state_dict())
    if keep_bias is not None:
        convs = [n for n, m in net.named_modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
        for name in set(convs) - set(keep_bias):
            net.get_submodule(name).bias.data.zero_()
            del state[f"{name}.bias"]
    if old_instance_norm:  # PyTorch < 0.4 saved InstanceNorm statistics
        for name, m in net.named_modules():
            if isinstance(m, torch.nn.InstanceNorm2d):
                state[f"{name}.running_mean"] = torch.zeros(m.num_features)
                state[f"{name}.running_var"] = torch.ones(m.num_features)
    torch.save({prefix + k: v for k, v in state.items()}, path)
    return path


def test_the_networks_carry_the_reference_state_dict_names():
    """The names the reference's checkpoints hold (quoted in its issue threads): a change of
    edgegan's layout that breaks them fails here, not on a user's file."""
    resnet = set(ResnetGenerator(3, 3, ngf=8).state_dict())
    for key in ("model.1.weight", "model.1.bias", "model.4.weight", "model.7.weight",
                "model.10.conv_block.1.weight", "model.10.conv_block.5.bias",
                "model.18.conv_block.5.weight", "model.19.weight", "model.22.weight",
                "model.26.weight", "model.26.bias"):  # fmt: skip
        assert key in resnet, key
    dropout = set(ResnetGenerator(3, 3, ngf=8, use_dropout=True).state_dict())
    assert (
        "model.10.conv_block.6.weight" in dropout and "model.10.conv_block.5.weight" not in dropout
    )
    unet = set(UnetGenerator(3, 3, num_downs=8, ngf=4, norm="batch").state_dict())
    for key in ("model.model.0.weight", "model.model.1.model.1.weight",
                "model.model.1.model.2.weight", "model.model.1.model.2.running_mean",
                "model.model.1.model.3.model.2.running_var", "model.model.3.weight"):  # fmt: skip
        assert key in unet, key
    patch = set(NLayerDiscriminator(3, ndf=8, norm="batch").state_dict())
    assert {"model.0.weight", "model.2.weight", "model.3.weight", "model.11.weight"} <= patch
    assert {"net.0.weight", "net.3.weight", "net.5.weight"} <= set(
        PixelDiscriminator(3, ndf=8, norm="batch").state_dict()
    )


GENERATORS = [
    # (edgegan network, its model name, the params the importer must read, size, file quirks)
    (
        lambda: ResnetGenerator(3, 3, ngf=8, n_blocks=9),
        "resnet_9blocks",
        {"ngf": 8, "norm": "instance", "use_dropout": False},
        32,
        {"old_instance_norm": True},
    ),
    (
        lambda: ResnetGenerator(1, 3, ngf=4, n_blocks=6, norm="batch", use_dropout=True),
        "resnet_6blocks",
        {"ngf": 4, "norm": "batch", "use_dropout": True},
        16,
        {"prefix": "module."},
    ),
    (
        lambda: ResnetGenerator(3, 1, ngf=4, n_blocks=6, norm="none"),
        "resnet_6blocks",
        {"ngf": 4, "norm": "none", "use_dropout": False},
        16,
        {"keep_bias": ["model.26"]},  # the last conv only
    ),
    (
        lambda: UnetGenerator(3, 3, num_downs=8, ngf=4, norm="batch"),
        "unet_256",
        {"ngf": 4, "norm": "batch"},
        256,
        {},
    ),
    (
        lambda: UnetGenerator(1, 1, num_downs=7, ngf=4, norm="instance"),
        "unet_128",
        {"ngf": 4, "norm": "instance"},
        128,
        {"old_instance_norm": True},
    ),
    (
        lambda: UnetGenerator(3, 3, num_downs=6, ngf=4, norm="none"),
        "unet",
        {"ngf": 4, "norm": "none", "num_downs": 6},
        64,
        {"keep_bias": ["model.model.3"]},  # the outermost up-convolution only
    ),
]


@pytest.mark.parametrize("make, name, params, size, quirks", GENERATORS)
def test_a_generator_file_imports_as_the_same_function(tmp_path, make, name, params, size, quirks):
    net = randomised(make())
    path = reference_file(tmp_path / "g.pth", net, **quirks)
    read = read_generator(load_weights(path), path)
    assert (read.name, read.params) == (name, params)
    assert (read.channels, read.channels_out) == (net.channels_in, net.channels_out)

    result = import_reference(path, tmp_path / "run", image_size=size)
    assert result.task == "pix2pix"  # one generator: a one-direction run
    g = load_translator(tmp_path / "run", "AtoB").module
    x = torch.rand(2, net.channels_in, size, size) * 2 - 1
    with torch.no_grad():
        assert torch.equal(g(x), net(x))


def test_an_import_into_a_relative_folder_returns_absolute_paths(tmp_path, monkeypatch):
    """ImportResult.run_dir stayed relative to the folder of the call (TrainResult's are
    absolute); the CLI still says it as given."""
    monkeypatch.chdir(tmp_path)
    path = reference_file(tmp_path / "g.pth", randomised(ResnetGenerator(1, 1, ngf=4)))
    result = import_reference("g.pth", "run", image_size=16)
    assert result.run_dir == tmp_path / "run" and result.run_dir.is_absolute()
    res = CliRunner().invoke(cli, ["import", str(path), "--out", "cli", "--size", "16"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("imported a pix2pix run (16 px) -> cli\n")


@pytest.mark.parametrize(
    "net, params, keep_bias",
    [
        (
            NLayerDiscriminator(6, ndf=8, norm="batch"),
            {"ndf": 8, "n_layers": 3, "norm": "batch"},
            None,
        ),
        (
            NLayerDiscriminator(3, ndf=4, n_layers=1),
            {"ndf": 4, "n_layers": 1, "norm": "instance"},
            None,
        ),
        (
            NLayerDiscriminator(3, ndf=4, n_layers=4, norm="none"),
            {"ndf": 4, "n_layers": 4, "norm": "none"},
            ["model.0", "model.14"],  # the reference's first and last convs have biases
        ),
        (PixelDiscriminator(4, ndf=8, norm="batch"), {"ndf": 8, "norm": "batch"}, None),
        (PixelDiscriminator(4, ndf=8), {"ndf": 8, "norm": "instance"}, None),
    ],
)
def test_a_discriminator_file_imports_as_the_same_function(tmp_path, net, params, keep_bias):
    net = randomised(net)
    path = reference_file(tmp_path / "d.pth", net, keep_bias=keep_bias)
    read = read_discriminator(load_weights(path), path)
    kind = PixelDiscriminator if read.name == "pixel" else NLayerDiscriminator
    assert (read.name, read.params) == (
        {PixelDiscriminator: "pixel"}.get(type(net), "patchgan"),
        params,
    )
    ours = kind(read.channels, **read.params).eval()
    fitted(ours, read, "d")
    x = torch.rand(2, read.channels, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), net(x))


# What a reference run prints to train_opt.txt (its print_options: '{:>25}: {:<30}{}'),
# with "\t[default: X]" after the options set away from their defaults.
OPTION_VALUES = [
    ("batch_size", "1", None),
    ("beta1", "0.5", None),
    ("checkpoints_dir", "./checkpoints", None),
    ("crop_size", "32", "256"),
    ("dataroot", "{root}", "None"),
    ("direction", "{direction}", None),
    ("gan_mode", "vanilla", "lsgan"),
    ("gpu_ids", "0", None),
    ("lambda_A", "5.0", "10.0"),
    ("lambda_B", "10.0", None),
    ("lambda_identity", "0.0", "0.5"),
    ("load_size", "36", "286"),
    ("lr", "0.0001", "0.0002"),
    ("model", "cycle_gan", None),
    ("n_epochs", "3", "100"),
    ("n_epochs_decay", "2", "100"),
    ("name", "maps_cyclegan", "experiment_name"),
    ("netG", "resnet_6blocks", "resnet_9blocks"),
    ("no_dropout", "True", None),
    ("no_flip", "True", "False"),
    ("pool_size", "50", None),
    ("preprocess", "resize_and_crop", None),
]
OPTIONS = (
    "----------------- Options ---------------\n"
    + "".join(
        "{:>25}: {:<30}{}\n".format(k, v, f"\t[default: {d}]" if d else "")
        for k, v, d in OPTION_VALUES
    )
    + "----------------- End -------------------\n"
)


def test_read_options_reads_the_reference_option_file(tmp_path):
    path = tmp_path / "train_opt.txt"
    path.write_text(OPTIONS.format(root="./datasets/maps", direction="AtoB"))
    opts = read_options(path)
    assert opts["netG"] == "resnet_6blocks" and opts["crop_size"] == "32"
    assert opts["dataroot"] == "./datasets/maps" and opts["no_flip"] == "True"
    assert opts["name"] == "maps_cyclegan" and opts["gpu_ids"] == "0"
    assert "Options" not in "".join(opts)


def cyclegan_checkpoints(folder, root, direction="AtoB", options=None):
    """A reference CycleGAN checkpoints folder: 3-channel A, 1-channel B, ResNet-6, 32 px;
    ``options``: its train_opt.txt (default: :data:`OPTIONS`)."""
    folder.mkdir()
    c_a, c_b = (1, 3) if direction == "BtoA" else (3, 1)  # BtoA: the reference's A is trainB
    # weights of a trained network's scale (the INT8 graph's parity check passes on them)
    g_a = randomised(ResnetGenerator(c_a, c_b, ngf=4, n_blocks=6), seed=1, scale=0.05)
    g_b = randomised(ResnetGenerator(c_b, c_a, ngf=4, n_blocks=6), seed=2, scale=0.05)
    d_a = randomised(NLayerDiscriminator(c_b, ndf=4), seed=3)  # judges its B
    d_b = randomised(NLayerDiscriminator(c_a, ndf=4), seed=4)
    for name, net in (("G_A", g_a), ("G_B", g_b), ("D_A", d_a), ("D_B", d_b)):
        reference_file(folder / f"latest_net_{name}.pth", net, old_instance_norm=True)
    text = options if options is not None else OPTIONS.format(root=root, direction=direction)
    (folder / "train_opt.txt").write_text(text)
    return {"G_A": g_a, "G_B": g_b, "D_A": d_a, "D_B": d_b}


def image_folders(root):
    rng = np.random.default_rng(0)
    for sub, mode in (("trainA", "RGB"), ("trainB", "L"), ("testA", "RGB"), ("testB", "L")):
        (root / sub).mkdir(parents=True)
        for i in range(3):
            img = Image.fromarray((rng.random((36, 36, 3)) * 255).astype(np.uint8)).convert(mode)
            img.save(root / sub / f"{i}.png")


@pytest.mark.slow
def test_a_cyclegan_folder_imports_exports_infers_and_fine_tunes(tmp_path):
    data = tmp_path / "data"
    image_folders(data)
    nets = cyclegan_checkpoints(tmp_path / "maps_cyclegan", "./datasets/maps")  # not here
    run = tmp_path / "run"
    runner = CliRunner()
    source = str(tmp_path / "maps_cyclegan")
    with pytest.warns(
        UserWarning, match="kept the learning rate for 3 epochs and decayed it over 2"
    ):
        res = runner.invoke(cli, ["import", source, "--out", str(run), "--data-root", str(data)])
    assert res.exit_code == 0, res.output
    assert "imported a cyclegan run (32 px)" in res.output
    assert "g_ab: resnet_6blocks (ngf=4, norm=instance, use_dropout=False)" in res.output
    assert "latest_net_D_B.pth" in res.output.split("d_a:")[1].splitlines()[0]

    # The training settings of train_opt.txt, in edgegan's keys
    config = load_run_config(run)
    assert config.task == "cyclegan" and config.loss.name == "bce"
    assert config.data.params["root"] == str(data) and config.data.params["flip"] is False
    assert (config.data.params["load_size"], config.data.params["crop_size"]) == (36, 32)
    assert (config.cycle.lambda_a, config.cycle.lambda_b, config.cycle.lambda_identity) == (
        5,
        10,
        0,
    )
    assert config.optim.g.lr == config.optim.d.lr == 1e-4 and config.train.epochs == 5
    imported = json.loads((run / "imported.json").read_text())
    assert imported["networks"]["g_ab"]["name"] == "resnet_6blocks"
    assert imported["options"]["name"] == "maps_cyclegan"

    # Both directions compute what the reference's G_A and G_B computed
    x = torch.rand(2, 3, 40, 28) * 2 - 1
    y = torch.rand(2, 1, 40, 28) * 2 - 1
    with torch.no_grad():
        assert torch.equal(load_translator(run, "AtoB").module(x), nets["G_A"](x))
        assert torch.equal(load_translator(run, "BtoA").module(y), nets["G_B"](y))
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    for ours, theirs in (("d_a", "D_B"), ("d_b", "D_A")):
        for k, v in nets[theirs].state_dict().items():
            assert torch.equal(state["networks"][ours][k], v), (ours, k)

    # export (parity measured; INT8 calibrated on --data-root's images) and infer
    bundle = str(tmp_path / "bundle")
    res = runner.invoke(
        cli, ["export", str(run), "--int8", "--calib-samples", "3", "--out", bundle]
    )
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "bundle" / "edgegan.json").read_text())
    assert meta["task"] == "cyclegan"
    assert (tmp_path / "bundle" / "model_AtoB.int8.onnx").is_file()
    res = runner.invoke(
        cli,
        [
            "infer",
            str(run),
            "--direction",
            "AtoB",
            "--input",
            str(data / "testA"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "out").glob("*.png"))) == 3

    # scored on its test split (testA and testB hold the same names: paired)
    res = runner.invoke(cli, ["eval", str(run), "--json"])
    assert res.exit_code == 0, res.output
    scores = json.loads(res.output)
    assert {"ab_l1", "ab_psnr", "ba_ssim"} <= set(scores) and scores["num_samples"] == 3

    # no optimiser state: resume says how to fine-tune instead, and init_from does it
    res = runner.invoke(cli, ["train", "--resume", str(run), "train.steps=2"])
    assert res.exit_code == 2 and "train.init_from=" in res.output, res.output
    tuned = tmp_path / "tuned"
    res = runner.invoke(
        cli,
        [
            "train",
            str(run / "config.yaml"),
            "train.steps=2",
            f"train.init_from={run}",
            "optim.g.lr=1e-30",
            "optim.d.lr=1e-30",
            "train.progress=false",
            "eval.num_samples=2",
            "train.sample_every=0",
            "--out",
            str(tuned),
        ],
    )
    assert res.exit_code == 0, res.output
    tuned_state = load_checkpoint(tuned / "checkpoints" / "last.pt")
    for name in ("g_ab", "g_ba", "d_a", "d_b"):  # a step of 1e-30: the imported weights
        for k, v in state["networks"][name].items():
            assert torch.equal(tuned_state["networks"][name][k], v), (name, k)


def test_the_reference_direction_BtoA_keeps_trainA_as_edgegans_A(tmp_path):
    nets = cyclegan_checkpoints(tmp_path / "ck", "data", direction="BtoA")
    with pytest.warns(UserWarning, match="linear schedule decays from half-way"):
        result = import_reference(tmp_path / "ck", tmp_path / "run")
    # the reference's G_B maps its B (trainA, 3 channels) to its A (trainB)
    assert result.networks["g_ab"].source.name == "latest_net_G_B.pth"
    assert result.networks["d_a"].source.name == "latest_net_D_A.pth"
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (state["spec"]["channels_a"], state["spec"]["channels_b"]) == (3, 1)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_translator(tmp_path / "run", "AtoB").module(x), nets["G_B"](x))
    # lambda_A weighed the reference's A: trainB, edgegan's B
    config = load_run_config(tmp_path / "run")
    assert (config.cycle.lambda_a, config.cycle.lambda_b) == (10, 5)
    assert json.loads((tmp_path / "run" / "imported.json").read_text())["direction"] == "BtoA"


# An opt.txt of the reference's 2018 versions: other option names, the same meaning.
LEGACY_OPTIONS = "".join(
    f"{k:>25}: {v:<30}\n"
    for k, v in (
        ("batchSize", "4"),
        ("fineSize", "64"),
        ("loadSize", "72"),
        ("lambda_A", "5.0"),
        ("lambda_B", "10.0"),
        ("identity", "0.0"),
        ("model", "cycle_gan"),
        ("niter", "30"),
        ("niter_decay", "10"),
        ("no_lsgan", "True"),
        ("resize_or_crop", "scale_width"),
        ("which_direction", "BtoA"),
        ("lr_policy", "step"),
    )
)


def test_an_older_opt_txt_is_read_under_its_old_names_and_says_what_does_not_carry(tmp_path):
    nets = cyclegan_checkpoints(tmp_path / "ck", "", direction="BtoA", options=LEGACY_OPTIONS)
    (tmp_path / "ck" / "train_opt.txt").rename(tmp_path / "ck" / "opt.txt")
    with pytest.warns(UserWarning) as caught:
        result = import_reference(tmp_path / "ck", tmp_path / "run")
    notes = [str(w.message) for w in caught]
    assert result.notes == notes and len(notes) == 3, notes
    assert "kept the learning rate for 30 epochs and decayed it over 10" in notes[1]
    assert "preprocess scale_width has no edgegan equivalent" in notes[0]
    assert "lr_policy step is not carried over" in notes[2]
    assert result.networks["g_ab"].source.name == "latest_net_G_B.pth"  # which_direction
    assert result.image_size == 64  # fineSize
    config = load_run_config(tmp_path / "run")
    assert (config.data.params["load_size"], config.train.batch_size) == (72, 4)
    assert config.train.epochs == 40 and config.loss.name == "bce"  # niter + niter_decay
    assert (config.cycle.lambda_a, config.cycle.lambda_b, config.cycle.lambda_identity) == (
        10,
        5,
        0,
    )
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(load_translator(tmp_path / "run", "AtoB").module(x), nets["G_B"](x))
    assert json.loads((tmp_path / "run" / "imported.json").read_text())["notes"] == notes


def test_a_pretrained_pix2pix_generator_takes_its_direction_from_the_command(tmp_path):
    """The reference's pretrained facades and sat2map generators are BtoA, and come alone."""
    g = randomised(UnetGenerator(3, 3, num_downs=5, ngf=4, norm="batch"))
    path = reference_file(tmp_path / "facades_label2photo.pth", g)
    res = CliRunner().invoke(
        cli,
        ["import", str(path), "--direction", "BtoA", "--size", "32", "--out", str(tmp_path / "r")],
    )
    assert res.exit_code == 0, res.output
    state = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    assert state["spec"]["halves"] == "BA"  # infer --split-pairs reads A from the right
    assert load_run_config(tmp_path / "r").data.params["direction"] == "BtoA"
    res = CliRunner().invoke(cli, ["import", str(path), "--out", str(tmp_path / "u")])
    assert res.exit_code == 0, res.output  # at the default 256 px, AtoB
    assert load_checkpoint(tmp_path / "u" / "checkpoints" / "last.pt")["spec"]["halves"] == "AB"
    (tmp_path / "opt.txt").write_text("crop_size: 100\n")  # beside the file: read too
    res = CliRunner().invoke(cli, ["import", str(path), "--out", str(tmp_path / "v")])
    assert res.exit_code == 2 and not (tmp_path / "v").exists(), res.output
    assert "multiples of 32; the training size 100 (crop_size in" in res.output, res.output


def test_a_pix2pix_folder_keeps_its_direction_and_dropout(tmp_path):
    folder = tmp_path / "facades"
    folder.mkdir()
    g = randomised(UnetGenerator(3, 3, num_downs=5, ngf=4, norm="batch", use_dropout=True))
    d = randomised(NLayerDiscriminator(6, ndf=4, norm="batch"))
    reference_file(folder / "30_net_G.pth", g)
    reference_file(folder / "30_net_D.pth", d)
    (folder / "opt.txt").write_text(
        "model: pix2pix\ndirection: BtoA\ncrop_size: 64\nno_dropout: False\nlambda_L1: 50.0\n"
    )
    with pytest.raises(
        EdgeganError,
        match=r"holds no latest_net_G_A.*it has 30_net_D.pth, 30_net_G.pth: pass --epoch",
    ):
        import_reference(folder, tmp_path / "x")
    result = import_reference(folder, tmp_path / "run", epoch="30")
    assert result.task == "pix2pix" and set(result.networks) == {"g_ab", "d"}
    config = load_run_config(tmp_path / "run")
    assert config.data.params["direction"] == "BtoA" and config.pix2pix.lambda_l1 == 50
    assert (
        config.model.generator.name == "unet"
        and config.model.generator.params["use_dropout"] is True
    )
    assert config.model.generator.params["num_downs"] == 5
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["spec"]["halves"] == "BA" and state["spec"]["image_size"] == 64
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(load_translator(tmp_path / "run", "AtoB").module(x), g(x))


def test_a_pretrained_generator_fine_tunes_with_a_fresh_discriminator(tmp_path):
    import warnings

    from edgegan.config import load_config
    from edgegan.train import train

    g = randomised(UnetGenerator(1, 3, num_downs=5, ngf=4, norm="batch"))
    path = reference_file(tmp_path / "digits2color.pth", g)
    import_reference(path, tmp_path / "run", image_size=32)
    config = load_config(
        tmp_path / "run" / "config.yaml",
        [
            "data=cyclegan-digits",
            "data.paired=true",
            "data.limit=8",
            "train.steps=1",
            "train.batch_size=2",
            "optim.g.lr=1e-30",
            f"train.init_from={tmp_path / 'run'}",
            "train.progress=false",
            "train.sample_every=0",
            "eval.at_end=false",
            "train.device=cpu",
        ],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(config, out_dir=tmp_path / "tuned")
    assert any("has no weights for d (imported without them)" in str(w.message) for w in caught)
    state = load_checkpoint(result.checkpoint)
    for k, v in g.state_dict().items():
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(state["networks"]["g_ab"][k], v), k


def test_bad_sources_are_one_line_and_write_nothing(tmp_path):
    runner = CliRunner()
    good = reference_file(tmp_path / "g.pth", ResnetGenerator(3, 3, ngf=4, n_blocks=6))
    four = reference_file(tmp_path / "four.pth", ResnetGenerator(3, 3, ngf=4, n_blocks=4))
    disc = reference_file(tmp_path / "d.pth", NLayerDiscriminator(3, ndf=4))
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    torch.save({"model": [1, 2]}, tmp_path / "nested.pth")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    cases = [
        ([str(tmp_path / "missing")], "not found (a reference checkpoints folder or a .pth file)"),
        ([str(four)], "a ResNet generator of 4 blocks; edgegan builds 6"),
        ([str(disc)], "is not a reference generator"),
        ([str(tmp_path / "garbage.pth")], "the file is damaged or cut short"),
        ([str(tmp_path / "nested.pth")], "is not a network's state dict"),
        ([str(good), "--out", str(tmp_path / "full")], "is not empty"),
        ([str(good), "--size", "30"], "multiples of 4; the training size 30 (--size) is not"),
    ]
    for args, message in cases:
        out = [] if "--out" in args else ["--out", str(tmp_path / "new")]
        res = runner.invoke(cli, ["import", *args, *out])
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output and len(res.output.strip().splitlines()) == 1, res.output
        assert not (tmp_path / "new").exists()
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_generators_of_two_kinds_are_refused(tmp_path):
    folder = tmp_path / "ck"
    folder.mkdir()
    reference_file(folder / "latest_net_G_A.pth", ResnetGenerator(3, 3, ngf=4, n_blocks=6))
    reference_file(folder / "latest_net_G_B.pth", ResnetGenerator(3, 3, ngf=8, n_blocks=6))
    with pytest.raises(EdgeganError, match="builds both directions alike"):
        import_reference(folder, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _options(**values):
    """A train_opt.txt of :data:`OPTION_VALUES` with ``values`` set or added."""
    chosen = {k: v for k, v, _ in OPTION_VALUES} | values
    text = "".join(f"{k:>25}: {v:<30}\n" for k, v in chosen.items())
    return text.format(root="", direction="AtoB")


def test_options_that_do_not_describe_the_weights_are_a_note(tmp_path):
    """The run is built as the weights are; an options file of another run (the reference's
    defaults: ResNet-9, 64 filters) is said to be one, with each disagreement."""
    theirs = _options(ngf="64", netG="resnet_9blocks", netD="basic", ndf="64", norm="instance")
    cyclegan_checkpoints(tmp_path / "ck", "", options=theirs)
    with pytest.warns(UserWarning, match="does not describe") as caught:
        result = import_reference(tmp_path / "ck", tmp_path / "run")
    (note,) = [str(w.message) for w in caught if "does not describe" in str(w.message)]
    assert note == (
        "train_opt.txt does not describe these weights (netG resnet_9blocks, the weights "
        "resnet_6blocks; ngf 64, the weights 4; ndf 64, the weights 4): the run is built as the "
        "weights are; check that train_opt.txt is this run's"
    )
    assert note in result.notes
    assert load_run_config(tmp_path / "run").model.generator.name == "resnet_6blocks"

    # the reference's own names for what the weights hold, also the older which_model_netD
    ours = _options(ngf="4", netG="resnet_6blocks", which_model_netD="n_layers", n_layers_D="3")
    cyclegan_checkpoints(tmp_path / "ck2", "", options=ours + f"{'ndf':>25}: 4\n")
    with pytest.warns(UserWarning) as caught:  # the schedule's note, and no other
        import_reference(tmp_path / "ck2", tmp_path / "run2")
    assert not [w for w in caught if "does not describe" in str(w.message)]
    for i, (options, expected) in enumerate(
        (
            ({"netD": "pixel", "n_layers_D": "5"}, "netD pixel, the weights a PatchGAN of 3 "),
            ({"netD": "n_layers", "n_layers_D": "5"}, "(n_layers_D 5, the weights 3)"),
            (
                {"norm": "batch"},
                "norm batch, the generator's weights instance; norm batch, "
                "the discriminator's weights instance)",
            ),  # fmt: skip
        )
    ):
        cyclegan_checkpoints(tmp_path / f"case{i}", "", options=_options(**options))
        with pytest.warns(UserWarning, match=re.escape(expected)):
            import_reference(tmp_path / f"case{i}", tmp_path / f"case{i}-run")
