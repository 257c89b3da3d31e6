"""A plugin part that breaks its interface fails before training, with one line naming it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgegan import hookimpl
from edgegan.config import load_config
from edgegan.errors import PluginError
from edgegan.plugins.manager import PluginManager, reset_manager
from edgegan.train import train

SHAPE = (1, 8, 8)


class GoodData(torch.utils.data.Dataset):
    image_shape = SHAPE
    num_classes = 2

    def __len__(self):
        return 32

    def __getitem__(self, i):
        return torch.rand(SHAPE) * 2 - 1, i % 2


class GoodG(nn.Module):
    def __init__(self, latent_dim, channels, image_size, num_classes=0):
        super().__init__()
        self.shape = (channels, image_size, image_size)
        self.fc = nn.Linear(latent_dim, channels * image_size * image_size)

    def forward(self, z, labels=None):
        return torch.tanh(self.fc(z)).view(len(z), *self.shape)


class GoodD(nn.Module):
    def __init__(self, channels, image_size, num_classes=0):
        super().__init__()
        self.fc = nn.Linear(channels * image_size * image_size, 1)

    def forward(self, x, labels=None):
        return self.fc(x.flatten(1)).squeeze(1)


class GoodLoss:
    def d_loss(self, real, fake):
        return torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()

    def g_loss(self, fake):
        return -fake.mean()


class MeanPix:
    """A plugin metric that needs no reference data."""

    def compute(self, samples, labels=None, reference=None):
        assert reference is None  # no digits here: no digit reference either
        return {"mean": float(samples.mean()), "n": len(samples)}


def _data(item=None, shape=SHAPE):
    class Data(GoodData):
        image_shape = shape

        def __getitem__(self, i):
            return item() if item else super().__getitem__(i)

    return lambda split="train": Data()


def _g(forward):
    class G(GoodG):
        def forward(self, z, labels=None):
            return forward(self, z)

    return G


def _d(forward):
    class D(GoodD):
        def forward(self, x, labels=None):
            return forward(self, x)

    return D


def _loss(**methods):
    return type("Loss", (GoodLoss,), methods)


# name -> (plugin parts that replace the good ones, expected message fragment)
BROKEN = {
    "uint8 images": (
        {"data": _data(lambda: (torch.zeros(SHAPE, dtype=torch.uint8), 0))},
        "dataset 'bad' (plugin 'bad', edgegan-bad 9.9) gives images as torch.uint8 tensor",
    ),
    "HWC images": (
        {"data": _data(lambda: (torch.zeros(8, 8, 1), 0))},
        "gives images of shape (8, 8, 1), its image_shape is (1, 8, 8)",
    ),
    "no label": ({"data": _data(lambda: torch.zeros(SHAPE))}, "gives a Tensor per item"),
    "2-d image_shape": ({"data": _data(shape=(8, 8))}, "has image_shape (8, 8)"),
    "0..255 pixels": (
        {"data": _data(lambda: (torch.full(SHAPE, 200.0), 0))},
        "gives images in [200, 200]; they must be in [-1, 1]",
    ),
    "float labels": ({"data": _data(lambda: (torch.zeros(SHAPE), 0.5))}, "labels as float"),
    "flat generator output": (
        {"g": _g(lambda self, z: torch.tanh(self.fc(z)))},
        "generator 'bad' (plugin 'bad', edgegan-bad 9.9) gives (2, 64) for 2 latents; "
        "it must give (2, 1, 8, 8)",
    ),
    "generator that raises": (
        {"g": _g(lambda self, z: self.fc(z, 3))},
        "generator 'bad' (plugin 'bad', edgegan-bad 9.9) failed on 2 latents: TypeError",
    ),
    "not a module": ({"g": lambda **kw: object()}, "built a object, not a torch.nn.Module"),
    "scalar discriminator": (
        {"d": _d(lambda self, x: self.fc(x.flatten(1)).mean())},
        "discriminator 'bad' (plugin 'bad', edgegan-bad 9.9) gives () for 2 images",
    ),
    "per-sample loss": (
        {"loss": _loss(g_loss=lambda self, fake: -fake)},
        "loss 'bad' (plugin 'bad', edgegan-bad 9.9) g_loss returned (4,); it must return a scalar",
    ),
    "float loss": ({"loss": _loss(d_loss=lambda self, r, f: 0.0)}, "d_loss returned float"),
    "no g_loss": ({"loss": type("NoG", (), {"d_loss": GoodLoss.d_loss})}, "has no g_loss"),
    "constant loss": (
        {"loss": _loss(g_loss=lambda self, fake: torch.tensor(0.0))},
        "g_loss returned a tensor without gradients",
    ),
}


def _plugin(version="9.9", **parts):
    parts = {"data": _data(), "g": GoodG, "d": GoodD, "loss": GoodLoss, **parts}

    class Plugin:
        @hookimpl
        def edgegan_register_datasets(self, register):
            register("bad", parts["data"])

        @hookimpl
        def edgegan_register_models(self, register):
            register("bad", parts["g"], role="generator")
            register("bad", parts["d"], role="discriminator")

        @hookimpl
        def edgegan_register_losses(self, register):
            register("bad", parts["loss"])

        @hookimpl
        def edgegan_register_metrics(self, register):
            register("meanpix", MeanPix)

    manager = PluginManager(load_entry_points=False)
    manager.register(Plugin(), name="bad", distribution="edgegan-bad", version=version)
    reset_manager(manager)


def _config_overrides():
    names = ["data.name=bad", "model.generator.name=bad", "model.discriminator.name=bad"]
    return [
        *names,
        "loss.name=bad",
        "model.latent_dim=4",
        "train.augment=",
        "train.batch_size=4",
        "train.device=cpu",
        "train.progress=false",
        "train.sample_grid=4",
        "eval.at_end=false",
    ]


def _config():
    return load_config("dcgan-mnist", [*_config_overrides(), "train.steps=2"])


def test_good_plugin_parts_pass_and_train(tmp_path):
    _plugin()
    assert train(_config(), out_dir=tmp_path / "r").step == 2


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_part_fails_before_the_run_dir_with_one_line(tmp_path, case):
    parts, expected = BROKEN[case]
    _plugin(**parts)
    with pytest.raises(PluginError) as exc_info:
        train(_config(), out_dir=tmp_path / "r")
    message = str(exc_info.value)
    assert expected in message
    assert "\n" not in message
    assert not (tmp_path / "r").exists()


def test_loss_check_leaves_a_stateful_loss_alone(tmp_path):
    built = []

    class Counting(GoodLoss):
        def __init__(self):
            self.calls = 0
            built.append(self)  # the instance the factory built (a copy skips __init__)

        def g_loss(self, fake):
            self.calls += 1
            return super().g_loss(fake)

    _plugin(loss=Counting)
    train(_config(), out_dir=tmp_path / "r")
    assert [loss.calls for loss in built] == [2]  # the two training steps (the check used a copy)


def test_cyclegan_checks_its_plugin_loss(tmp_path):
    _plugin(loss=_loss(g_loss=lambda self, fake: -fake))
    cfg = load_config(
        "cyclegan-digits",
        ["loss.name=bad", "train.steps=1", "train.device=cpu", "train.progress=false"],
    )
    with pytest.raises(PluginError, match="loss 'bad' .* g_loss returned \\(4,\\)"):
        train(cfg, out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


class GoodT(nn.Module):
    """An image-to-image generator (task cyclegan)."""

    def __init__(self, channels, channels_out, image_size):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels_out, 1)

    def forward(self, x, labels=None):
        return torch.tanh(self.conv(x))


def _cyclegan(tmp_path, **parts):
    _plugin(g=parts.get("g", GoodT), d=parts.get("d", GoodD))
    names = ["model.generator.name=bad", "model.discriminator.name=bad"]
    cfg = load_config(
        "cyclegan-digits",
        [*names, "train.steps=1", "train.device=cpu", "train.progress=false", "eval.at_end=false"],
    )
    return train(cfg, out_dir=tmp_path / "r")


def test_good_translator_plugin_parts_pass_and_train(tmp_path):
    assert _cyclegan(tmp_path).step == 1


@pytest.mark.parametrize(
    ("parts", "expected"),
    (
        (  # ignores channels_out: cyclegan-digits maps grey digits (1) to colour ones (3)
            {"g": lambda channels, image_size: GoodT(channels, channels, image_size)},
            "generator 'bad' (plugin 'bad', edgegan-bad 9.9) gives (2, 1, 32, 32) for 2 images "
            "(1, 32, 32); it must give (2, 3, 32, 32)",
        ),
        (
            {"g": type("NoLabels", (GoodT,), {"forward": lambda self, x: self.conv(x)})},
            "generator 'bad' (plugin 'bad', edgegan-bad 9.9) failed on 2 images (1, 32, 32): "
            "TypeError",
        ),
        (
            {"d": _d(lambda self, x: self.fc(x.flatten(1)).mean())},
            "discriminator 'bad' (plugin 'bad', edgegan-bad 9.9) gives () for 2 images",
        ),
    ),
)
def test_broken_translator_part_fails_before_the_run_dir(tmp_path, parts, expected):
    with pytest.raises(PluginError) as exc_info:
        _cyclegan(tmp_path, **parts)
    assert expected in str(exc_info.value)
    assert not (tmp_path / "r").exists()


def test_a_run_names_the_plugin_it_needs_when_it_is_gone_or_changed(tmp_path):
    from edgegan.errors import EdgeganError
    from edgegan.sampling import load_run_generator

    _plugin()
    run = train(_config(), out_dir=tmp_path / "r").run_dir
    from edgegan.train.checkpoint import load_checkpoint

    assert load_checkpoint(run / "checkpoints/last.pt")["parts"]["generator"] == {
        "name": "bad",
        "plugin": "bad",
        "distribution": "edgegan-bad",
        "version": "9.9",
    }
    reset_manager(PluginManager(load_entry_points=False))  # the plugin is uninstalled
    gone = "the run was trained with {} 'bad' of plugin 'bad' \\(edgegan-bad 9.9\\), which is not"
    with pytest.raises(EdgeganError, match="unknown generator 'bad'.*" + gone.format("generator")):
        load_run_generator(run)
    resume = load_config("dcgan-mnist", [*_config_overrides(), "train.steps=3"])
    with pytest.raises(EdgeganError, match="unknown dataset 'bad'.*" + gone.format("dataset")):
        train(resume, resume=run)

    class Wider(GoodG):  # version 10.0 changed the generator
        def __init__(self, latent_dim, channels, image_size, num_classes=0):
            super().__init__(latent_dim + 1, channels, image_size, num_classes)

    _plugin(g=Wider, version="10.0")
    with pytest.raises(EdgeganError, match="does not fit generator 'bad' as it is built now .*"
                       "installed now: edgegan-bad 10.0"):  # fmt: skip
        load_run_generator(run)


def test_a_plugin_metric_scores_a_plugin_dataset_run(tmp_path):
    import json

    _plugin()
    cfg = load_config(
        "dcgan-mnist",
        [*_config_overrides(), "train.steps=4", "eval.at_end=true", "eval.metric=meanpix",
         "eval.num_samples=10", "eval.every=2", "eval.val_samples=6"],
    )  # fmt: skip
    result = train(cfg, out_dir=tmp_path / "r")
    assert result.eval["n"] == 10 and -1 <= result.eval["mean"] <= 1
    assert json.loads((result.run_dir / "eval.json").read_text()) == result.eval
    records = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_n"] for r in records if "val_n" in r] == [6, 6]


def test_the_digit_metric_on_other_data_says_it_is_skipped(tmp_path):
    _plugin()
    cfg = load_config("dcgan-mnist", [*_config_overrides(), "train.steps=2", "eval.at_end=true"])
    with pytest.warns(UserWarning, match="no final evaluation: eval.metric=digits scores runs on"):
        result = train(cfg, out_dir=tmp_path / "r")
    assert result.eval == {} and not (result.run_dir / "eval.json").exists()
