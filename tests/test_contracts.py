"""A plugin part that breaks its interface fails before training, with one line naming it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from edgegan import hookimpl
from edgegan.config import load_config
from edgegan.data.base import unit_from_uint8 as unit
from edgegan.data.files import DataWarning
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
        # conditional on the run's classes (not an attribute num_classes: Deaf below sets it)
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None

    def forward(self, z, labels=None):
        if self.embed is not None and labels is not None:
            z = z + self.embed(labels.clamp(min=0)) * (labels >= 0)[:, None]  # -1: no class
        return torch.tanh(self.fc(z)).view(len(z), *self.shape)


class GoodD(nn.Module):
    def __init__(self, channels, image_size, num_classes=0):
        super().__init__()
        self.fc = nn.Linear(channels * image_size * image_size, 1)
        self.embed = nn.Embedding(num_classes, 1) if num_classes else None

    def forward(self, x, labels=None):
        logits = self.fc(x.flatten(1)).squeeze(1)
        if self.embed is not None and labels is not None:
            logits = logits + self.embed(labels.clamp(min=0)).squeeze(1) * (labels >= 0)
        return logits


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


def _dataset(**attrs):
    """A factory of a :class:`GoodData` with ``attrs`` (class attributes or methods) replaced."""
    return lambda split="train": type("Data", (GoodData,), attrs)()


def _missing_cache(self, i):
    return self.cache[i]  # a dataset that forgot to load: AttributeError


def _no_len(self):
    raise TypeError("object of type 'Data' has no len()")


def _raise_over_lines(*args):
    raise RuntimeError("needs the ext extension\n  build it with: pip install ext")


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


def _z_dim_factory(with_attribute):
    def factory(z_dim=100, channels=1, image_size=8, num_classes=0):
        net = GoodG(z_dim, channels, image_size, num_classes)
        if with_attribute:
            net.latent_dim = z_dim
        return net

    return factory


def _no_grad_view(self, z):
    x = torch.tanh(self.fc(z))
    with torch.no_grad():
        out = x.view(len(z), *self.shape)
    assert out.requires_grad and out.grad_fn is None  # what autograd makes of it
    return out


def _loss(**methods):
    return type("Loss", (GoodLoss,), methods)


_Deaf = type("Deaf", (GoodG,), {"num_classes": 0})  # built without the run's classes
LABELS = torch.tensor([0, 1] * 16)
PIXELS = torch.randint(
    0, 256, (32, *SHAPE), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
)

# name -> (plugin parts that replace the good ones, expected message fragment)
BROKEN = {
    "uint8 images": (
        {"data": _data(lambda: (torch.zeros(SHAPE, dtype=torch.uint8), 0))},
        "dataset 'bad' (plugin 'bad', edgegan-bad 9.9) gives images as torch.uint8 tensor; they "
        "must be float32 tensors in [-1, 1] (8-bit pixels: x.float() / 127.5 - 1)",
    ),
    "HWC images": (
        {"data": _data(lambda: (torch.zeros(8, 8, 1), 0))},
        "gives images of shape (8, 8, 1), its image_shape is (1, 8, 8) (channels last: "
        "x.permute(2, 0, 1))",
    ),
    "no label": ({"data": _data(lambda: torch.zeros(SHAPE))}, "gives a Tensor per item"),
    "2-d image_shape": ({"data": _data(shape=(8, 8))}, "has image_shape (8, 8)"),
    "0..255 pixels": (
        {"data": _data(lambda: (torch.full(SHAPE, 200.0), 0))},
        "gives images in [200, 200]; they must be in [-1, 1]",
    ),
    "float labels": ({"data": _data(lambda: (torch.zeros(SHAPE), 0.5))}, "labels as float"),
    "float64 images": (  # torch.from_numpy of a NumPy array: failed at step 1, a traceback
        {"data": _data(lambda: (torch.zeros(SHAPE, dtype=torch.float64), 0))},
        "gives images as torch.float64 tensor; they must be float32 tensors (torch.from_numpy "
        "keeps NumPy's float64: add .float())",
    ),
    "float64 generator output": (  # it was blamed on the discriminator
        {"g": _g(lambda self, z: torch.tanh(self.fc(z)).view(len(z), *self.shape).double())},
        "generator 'bad' (plugin 'bad', edgegan-bad 9.9) gives torch.float64 images for 2 "
        "latents; it must give float32",
    ),
    "NaN generator output": (  # it was "d_loss became nan at step 1 ... lower learning rate"
        {"g": _g(lambda self, z: torch.full((len(z), *self.shape), float("nan")))},
        "generator 'bad' (plugin 'bad', edgegan-bad 9.9) gives non-finite values (NaN or inf) "
        "for 2 latents",
    ),
    "generator without gradients": (  # a traceback at the first backward
        {"g": _g(lambda self, z: torch.tanh(self.fc(z)).view(len(z), *self.shape).detach())},
        "generator 'bad' (plugin 'bad', edgegan-bad 9.9) gives outputs that no gradient flows "
        "back from to its parameters (made under torch.no_grad, or detached): training would "
        "not update it",
    ),
    "generator changed in place after its graph": (  # a traceback at the first backward
        {"g": _g(lambda self, z: torch.tanh(self.fc(z)).mul_(1.0).view(len(z), *self.shape))},
        "generator 'bad' (plugin 'bad', edgegan-bad 9.9) gives outputs whose backward fails: "
        "RuntimeError: one of the variables needed for gradient computation has been modified "
        "by an inplace operation",
    ),
    "generator's view made under no_grad": (  # requires grad, reaches nothing: trained nothing
        {"g": _g(_no_grad_view)},
        "generator 'bad' (plugin 'bad', edgegan-bad 9.9) gives outputs that no gradient flows",
    ),
    "generator of another latent_dim": (  # a factory that calls it z_dim
        {"g": _z_dim_factory(with_attribute=True)},
        "generator 'bad' (plugin 'bad', edgegan-bad 9.9) has latent_dim 100 in a run of "
        "model.latent_dim 4; its factory takes no latent_dim parameter: add one (the run passes "
        "latent_dim=4) (see",
    ),
    "generator of another latent_dim, unsaid": (  # it failed on the latents, cause unsaid
        {"g": _z_dim_factory(with_attribute=False)},
        "; its factory takes no latent_dim parameter: add one (the run passes latent_dim=4) (see",
    ),
    "generator whose factory takes no num_classes": (
        {"g": lambda latent_dim, channels, image_size: _Deaf(latent_dim, channels, image_size)},
        "generator 'bad' (plugin 'bad', edgegan-bad 9.9) has num_classes 0 in a conditional run "
        "of 2 classes; its factory takes no num_classes parameter: add one (the run passes "
        "num_classes=2), or set model.conditional=false",
    ),
    "generator ignoring num_classes": (  # its bundle took labels that did nothing
        {"g": _Deaf},
        "generator 'bad' (plugin 'bad', edgegan-bad 9.9) has num_classes 0 in a conditional "
        "run of 2 classes",
    ),
    "integer logits": (
        {"d": _d(lambda self, x: (self.fc(x.flatten(1)).squeeze(1) > 0).long())},
        "discriminator 'bad' (plugin 'bad', edgegan-bad 9.9) gives torch.int64 logits; they "
        "must be floating point",
    ),
    "discriminator without gradients": (
        {"d": _d(lambda self, x: self.fc(x.flatten(1)).squeeze(1).detach())},
        "discriminator 'bad' (plugin 'bad', edgegan-bad 9.9) gives outputs that no gradient",
    ),
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
    "item 0 raises": (
        {"data": _dataset(__getitem__=_missing_cache)},
        "dataset 'bad' (plugin 'bad', edgegan-bad 9.9) failed to give item 0: AttributeError: "
        "'Data' object has no attribute 'cache'",
    ),
    "item 0 raises an OSError": (
        {"data": _data(lambda: open("/nonexistent/edgegan/x.png", encoding="utf-8"))},
        "dataset 'bad' (plugin 'bad', edgegan-bad 9.9) failed to give item 0: FileNotFoundError",
    ),
    "no length": (
        {"data": _dataset(__len__=_no_len)},
        "dataset 'bad' (plugin 'bad', edgegan-bad 9.9) has no length: TypeError",
    ),
    "num_classes str": (
        {"data": _dataset(num_classes="ten")},
        "dataset 'bad' (plugin 'bad', edgegan-bad 9.9) has num_classes 'ten'; it must be an "
        "int >= 0",
    ),
    "num_classes negative": ({"data": _dataset(num_classes=-1)}, "has num_classes -1;"),
    "num_classes bool": ({"data": _dataset(num_classes=True)}, "has num_classes True;"),
    "num_classes float": ({"data": _dataset(num_classes=2.5)}, "has num_classes 2.5;"),
    "1-based labels": (  # num_classes 2, labels 1..2: item 0 has label 2
        {"data": _dataset(__getitem__=lambda self, i: (torch.zeros(SHAPE), 2 - i % 2))},
        "dataset 'bad' (plugin 'bad', edgegan-bad 9.9) item 0 has label 2, its num_classes is "
        "2; labels must be in [0, 1] (-1: none)",
    ),
    "label below -1": (
        {"data": _data(lambda: (torch.zeros(SHAPE), -2))},
        "item 0 has label -2, its num_classes is 2",
    ),
    "labels tensor out of range": (  # item 0 is fine, the in-memory labels are not
        {"data": _dataset(images=torch.zeros(32, *SHAPE), labels=torch.tensor([0, 1, 2, 1] * 8))},
        "dataset 'bad' (plugin 'bad', edgegan-bad 9.9) its labels attribute holds values in "
        "[0, 2], its num_classes is 2",
    ),
    "no image_shape": (
        {"data": lambda split="train": type("Data", (), {"__len__": lambda s: 32})()},
        "dataset 'bad' (plugin 'bad', edgegan-bad 9.9) does not provide 'image_shape' (see "
        "'The interface of each kind' in the README)",
    ),
    # training gathers batches from in-memory images and labels, not from the items
    "NHWC images tensor": (  # NumPy's and PIL's layout: a traceback from the first batch
        {"data": _dataset(images=torch.zeros(32, 8, 8, 1, dtype=torch.uint8), labels=LABELS)},
        "dataset 'bad' (plugin 'bad', edgegan-bad 9.9) has its images attribute (the tensor "
        "training gathers batches from) of shape (32, 8, 8, 1); it must be (N, *image_shape) = "
        "(N, 1, 8, 8)",
    ),
    "float64 images tensor": (
        {"data": _dataset(images=torch.zeros(32, *SHAPE, dtype=torch.float64), labels=LABELS)},
        "batches from) as torch.float64; it must be uint8 pixels or float32",
    ),
    "images tensor shorter than the dataset": (  # an IndexError in some later batch
        {"data": _dataset(images=torch.zeros(16, *SHAPE), labels=LABELS[:16])},
        "has images (16, 1, 8, 8) and labels (16,) for 32 items (its length); they must be "
        "(32, ...) and (32,)",
    ),
    "float labels tensor": (  # an embedding's traceback at the first batch
        {"data": _dataset(images=torch.zeros(32, *SHAPE), labels=LABELS.float())},
        "dataset 'bad' (plugin 'bad', edgegan-bad 9.9) has its labels attribute as "
        "torch.float32; it must hold ints",
    ),
    "images tensor out of range": (
        {"data": _dataset(images=torch.full((32, *SHAPE), 2.0), labels=LABELS)},
        "batches from) in [2, 2]; it must be in [-1, 1]",
    ),
    "d_penalty without labels": (
        {"loss": _loss(d_penalty=lambda self, d, real, fake: (d(real) ** 2).mean())},
        "loss 'bad' (plugin 'bad', edgegan-bad 9.9) d_penalty failed on (discriminator, real, "
        "fake, labels) with 2 images (1, 8, 8): TypeError",
    ),
    "float d_penalty": (
        {"loss": _loss(d_penalty=lambda self, d, real, fake, labels: 0.0)},
        "loss 'bad' (plugin 'bad', edgegan-bad 9.9) d_penalty returned float; it must return a "
        "scalar tensor",
    ),
    "per-sample d_penalty": (
        {"loss": _loss(d_penalty=lambda self, d, real, fake, labels: d(real, labels) ** 2)},
        "d_penalty returned (2,); it must return a scalar tensor",
    ),
    "d_penalty that raises": (
        {"loss": _loss(d_penalty=lambda self, d, real, fake, labels: d(real[:, :, :4], labels))},
        "d_penalty failed on (discriminator, real, fake, labels) with 2 images (1, 8, 8): "
        "RuntimeError",
    ),
    "d_penalty that raises over lines": (  # the first line of the message, on the one line
        {"loss": _loss(d_penalty=_raise_over_lines)},
        "d_penalty failed on (discriminator, real, fake, labels) with 2 images (1, 8, 8): "
        "RuntimeError: needs the ext extension (see",
    ),
    "d_penalty not a method": ({"loss": _loss(d_penalty=3)}, "has a d_penalty that is a int"),
}


def _plugin(version="9.9", metric=MeanPix, **parts):
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
            register("meanpix", metric)

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


def _metric_config(*overrides: str, steps: int = 2, at_end: bool = True):
    """A plugin run scored at its end by the plugin metric 'meanpix' on 10 samples."""
    return load_config(
        "dcgan-mnist",
        [*_config_overrides(), f"train.steps={steps}", f"eval.at_end={str(at_end).lower()}",
         "eval.metric=meanpix", "eval.num_samples=10", *overrides],
    )  # fmt: skip


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


def _disk_gone(self, i):
    if i:  # item 0, which the contract checks, reads fine
        raise OSError("disk gone")
    return GoodData.__getitem__(self, i)


def test_a_plugin_dataset_failing_mid_run_is_named_with_its_batch(tmp_path):
    """It was 'error: disk gone': no dataset, no plugin, no batch."""
    from edgegan.errors import DataError

    _plugin(data=_dataset(__getitem__=_disk_gone))
    with pytest.raises(DataError) as info:
        train(_config(), out_dir=tmp_path / "r")
    assert str(info.value) == (
        "dataset 'bad' (plugin 'bad', edgegan-bad 9.9) failed to give batch 1: OSError: disk gone"
    )


def test_the_network_checks_keep_the_runs_random_streams():
    """A generator that draws noise inside moved the run's stream (its weights then depended
    on whether its parts came from a plugin)."""
    from edgegan.contracts import check_gan_networks
    from edgegan.registry import Entry

    class Noisy(GoodG):
        def forward(self, z, labels=None):
            return super().forward(z + torch.randn_like(z), labels)

    entry = Entry(kind="models", name="n", factory=Noisy, role="generator", plugin="p")
    context = {"latent_dim": 4, "num_classes": 0, "channels": 1, "image_size": 8}
    generator, discriminator = Noisy(4, 1, 8), GoodD(1, 8)
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    check_gan_networks(entry, generator, entry, discriminator, context)
    assert torch.equal(torch.rand(3), expected)


def test_label_blind_finds_the_networks_that_never_read_their_labels():
    """Reading counts, not the output: a generator whose class embedding starts at zero (a
    conditional BatchNorm's gains start equal) gives the same images for every label at
    initialisation, yet it learns the classes."""
    from edgegan.contracts import label_blind

    context = {"latent_dim": 4, "num_classes": 2, "channels": 1, "image_size": 8}
    blind_g = _g(lambda self, z: torch.tanh(self.fc(z)).view(len(z), *self.shape))
    blind_d = _d(lambda self, x: self.fc(x.flatten(1)).squeeze(1))
    zero_start = GoodG(4, 1, 8, 2)
    torch.nn.init.zeros_(zero_start.embed.weight)

    class Stacking(GoodD):  # reads its labels only inside a list (torch.stack's argument)
        def forward(self, x, labels=None):
            return self.fc(x.flatten(1)).squeeze(1) + torch.stack([labels, labels]).sum(0) * 0

    class Checking(GoodD):  # looks at its labels, converts them, and drops them
        def forward(self, x, labels=None):
            assert labels.shape == (len(x),) and labels.device == x.device and len(labels)
            labels = labels.long().to(x.device).view(-1)
            return self.fc(x.flatten(1)).squeeze(1)

    class Copying(GoodG):  # a forward the probe's labels cannot run: not said to be blind
        def forward(self, z, labels=None):
            import copy

            return super().forward(z, copy.deepcopy(labels))

    assert label_blind(GoodG(4, 1, 8, 2), GoodD(1, 8, 2), context) == []
    assert label_blind(zero_start, Stacking(1, 8, 2), context) == []
    assert label_blind(blind_g(4, 1, 8, 2), GoodD(1, 8, 2), context) == ["generator"]
    assert label_blind(GoodG(4, 1, 8, 2), blind_d(1, 8, 2), context) == ["discriminator"]
    assert label_blind(Copying(4, 1, 8, 2), Checking(1, 8, 2), context) == ["discriminator"]
    both = label_blind(blind_g(4, 1, 8, 2), blind_d(1, 8, 2), context)
    assert both == ["generator", "discriminator"]
    assert label_blind(blind_g(4, 1, 8), blind_d(1, 8), {**context, "num_classes": 0}) == []
    # the probe runs in eval mode and gives back the mode and the random streams it found
    g, d = GoodG(4, 1, 8, 2), GoodD(1, 8, 2).eval()
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    label_blind(g, d, context)
    assert torch.equal(torch.rand(3), expected) and g.training and not d.training


def test_a_conditional_run_warns_about_a_label_blind_network(tmp_path):
    """It trains, but its classes mean nothing: a discriminator that drops the labels (as
    the built-in patchgan does) never teaches the generator which class is which."""
    _plugin(d=_d(lambda self, x: self.fc(x.flatten(1)).squeeze(1)))
    said = (
        r"^model.conditional=true, but the discriminator 'bad' never reads its labels, so "
        r"nothing teaches the generator the classes; use networks that take labels \(dcgan\) "
        r"or set model.conditional=false$"
    )
    with pytest.warns(UserWarning, match=said):
        assert train(_config(), out_dir=tmp_path / "r").step == 2
    unconditional = _config()
    unconditional.model.conditional = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no classes, nothing to read
        assert train(unconditional, out_dir=tmp_path / "u").step == 2


def test_a_digits_run_with_the_patchgan_discriminator_is_warned_about(tmp_path):
    from tiny import TINY_GAN

    config = load_config("dcgan-mnist", [*TINY_GAN, "model.discriminator.name=patchgan"])
    with pytest.warns(UserWarning, match="the discriminator 'patchgan' never reads its labels"):
        assert train(config, out_dir=tmp_path / "r").step == 2


def test_an_images_tensor_that_is_not_the_items_is_warned_about(tmp_path):
    """Floats in [0, 1] in the tensor, [-1, 1] from the items: the run trained on the tensor,
    in the wrong range, without a word."""
    images = torch.rand(32, *SHAPE)
    data = _dataset(images=images, labels=LABELS, __getitem__=lambda s, i: (images[i] * 2 - 1, 0))
    _plugin(data=data)
    said = (
        r"^dataset 'bad' \(plugin 'bad', edgegan-bad 9.9\): item 0 differs from images\[0\] "
        r"\(max difference [0-9.]+\): training gathers batches from its in-memory images "
        r"tensor and never reads its items, nor any augmentation in them "
        r"\(train.resident_data=false reads the items\)$"
    )
    with pytest.warns(DataWarning, match=said):
        assert train(_config(), out_dir=tmp_path / "r").step == 2
    # tensors that training does not read are not checked, nor warned about
    config = _config()
    config.train.resident_data = False
    _plugin(data=_dataset(images=torch.zeros(32, *SHAPE, dtype=torch.float64), labels=LABELS))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert train(config, out_dir=tmp_path / "items").step == 2


def test_a_plugin_relativistic_loss_is_checked_and_trained_with_the_real_logits(tmp_path):
    """A g_loss with a real_logits parameter (no default) is called with them, by the check
    and by training."""
    calls = []

    def g_loss(self, fake, real_logits):
        calls.append(tuple(real_logits.shape))
        return torch.nn.functional.softplus(-(fake - real_logits.mean())).mean()

    _plugin(loss=_loss(g_loss=g_loss))
    assert train(_config(), out_dir=tmp_path / "r").step == 2
    assert calls == [(4,), (4,), (4,)]  # the check's four zero logits, then a batch of 4 twice


def test_a_generator_outside_the_image_range_is_warned_about(tmp_path):
    """No tanh: it trains, but samples and exports clip what it gives."""
    _plugin(g=_g(lambda self, z: 50 * self.fc(z).view(len(z), *self.shape)))
    said = r"generator 'bad' \(plugin 'bad', edgegan-bad 9.9\) gives values in \[-?[0-9.]+, "
    with pytest.warns(UserWarning, match=said + r"[0-9.]+\] for 2 latents; images are in"):
        assert train(_config(), out_dir=tmp_path / "r").step == 2


def _gradient_penalty(self, discriminator, real, fake, labels):
    """A WGAN-GP style penalty: random interpolates, a gradient through the discriminator."""
    _gradient_penalty.calls.append(None if labels is None else tuple(labels.shape))
    t = torch.rand(len(real), 1, 1, 1)
    x = (t * real + (1 - t) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x, labels).sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


@pytest.mark.parametrize(
    "data",
    (
        _dataset(num_classes=0, __getitem__=lambda self, i: (torch.zeros(SHAPE), 0)),
        _dataset(num_classes=0, __getitem__=lambda self, i: (torch.zeros(SHAPE), -1)),
        _dataset(num_classes=None, __getitem__=lambda self, i: (torch.zeros(SHAPE), -1)),
        _dataset(num_classes=np.int64(2), labels=np.array([0, 1] * 16)),
        _dataset(labels=torch.tensor([0, 1] * 16)),
        _dataset(__getitem__=lambda self, i: (torch.zeros(SHAPE), -1)),  # -1: no label
        _dataset(num_classes=2.0),  # read with int(), as the trainer does
        # labels training never reads: original ids beside remapped items (no images tensor)
        _dataset(labels=torch.tensor([7, 9] * 16)),
        _dataset(  # in memory as 8-bit pixels, as TensorImageDataset keeps the digits
            images=PIXELS, labels=LABELS, __getitem__=lambda self, i: (unit(PIXELS[i]), i % 2)
        ),
    ),
    ids=[
        "unlabelled 0",
        "unlabelled -1",
        "num_classes None",
        "numpy",
        "labels tensor",
        "-1",
        "num_classes 2.0",
        "unread labels",
        "uint8 images tensor",
    ],  # fmt: skip
)
def test_valid_datasets_pass_the_checks_and_train(tmp_path, data):
    _plugin(data=data)
    assert train(_config(), out_dir=tmp_path / "r").step == 2


def test_unlabelled_items_train_the_builtin_conditional_dcgan(tmp_path):
    """Label -1 in a conditional run (the contract allows it): the built-in networks embed it
    as no class; it used to stop the run at step 1 (an embedding IndexError)."""

    def item(self, i):
        return torch.rand(1, 28, 28) * 2 - 1, -1 if i % 3 == 0 else i % 2

    _plugin(data=_dataset(image_shape=(1, 28, 28), __getitem__=item))
    overrides = [*_config_overrides(), "train.steps=2"]
    overrides += ["model.generator.name=dcgan", "model.generator.ngf=8"]
    overrides += ["model.discriminator.name=dcgan", "model.discriminator.ndf=8", "loss.name=hinge"]
    result = train(load_config("dcgan-mnist", overrides), out_dir=tmp_path / "r")
    assert result.step == 2 and result.run_dir.joinpath("checkpoints/last.pt").is_file()


def test_a_lazy_datasets_label_out_of_range_stops_the_run_with_one_line(tmp_path):
    """Item 0 is checked before the run; a later item's label is checked in its batch, on
    the host (it used to be an IndexError in the embedding, a device-side assert on CUDA)."""
    from edgegan.errors import DataError

    _plugin(data=_dataset(__getitem__=lambda self, i: (torch.zeros(SHAPE), 7 if i == 5 else 1)))
    expected = (
        r"^dataset 'bad' \(plugin 'bad', edgegan-bad 9.9\): batch \d+ holds label 7; a "
        r"conditional run's labels must be in "
        r"\[0, 1\] \(-1: unlabelled\), or set model.conditional=false$"
    )
    cfg = load_config("dcgan-mnist", [*_config_overrides(), "train.steps=20"])
    with pytest.raises(DataError, match=expected):
        train(cfg, out_dir=tmp_path / "r")


def test_an_unconditional_run_does_not_check_labels_it_never_uses(tmp_path):
    _plugin(data=_dataset(__getitem__=lambda self, i: (torch.zeros(SHAPE), 5)))  # 5 >= 2
    cfg = _config()
    cfg.model.conditional = False
    assert train(cfg, out_dir=tmp_path / "r").step == 2


def test_a_gradient_penalty_passes_and_trains(tmp_path):
    _gradient_penalty.calls = []
    _plugin(loss=_loss(d_penalty=_gradient_penalty))
    assert train(_config(), out_dir=tmp_path / "r").step == 2
    # the check (a copy of the run's discriminator, labels of the conditional run), then two
    # steps
    assert _gradient_penalty.calls == [(2,), (4,), (4,)]


def test_the_penalty_check_gives_a_copy_of_the_runs_discriminator(tmp_path):
    """A penalty may use what the run's discriminator offers (a stand-in network would have
    refused a working plugin); the check leaves the run's own network as it was."""
    seen = []

    def uses_d(self, discriminator, real, fake, labels):
        seen.append(discriminator)
        if not isinstance(discriminator, GoodD):  # e.g. it reads the network's own layers
            raise TypeError(f"not the run's discriminator: {type(discriminator).__name__}")
        return discriminator(real, labels).pow(2).mean()

    _plugin(loss=_loss(d_penalty=uses_d))
    assert train(_config(), out_dir=tmp_path / "r").step == 2
    assert seen[0] is not seen[1]  # the check's copy, then the run's network

    # With train.augment the penalty calls D through the augmentation: still a module with
    # the network's parameters and attributes (it was a plain function, which broke these).
    def uses_params(self, discriminator, real, fake, labels):
        assert discriminator.fc.in_features == real[0].numel()
        return (
            sum(p.pow(2).sum() for p in discriminator.parameters()) * 0
            + discriminator(real, labels).pow(2).mean()
        )

    _plugin(loss=_loss(d_penalty=uses_params))
    cfg = _config()
    cfg.train.augment = "translation,cutout"
    assert train(cfg, out_dir=tmp_path / "aug").step == 2


def test_the_loss_check_leaves_the_random_stream_alone():
    from edgegan.contracts import check_loss
    from edgegan.registry import Entry

    entry = Entry("losses", "gp", _loss, plugin="gp", distribution="edgegan-gp", version="1")
    _gradient_penalty.calls = []
    state = torch.get_rng_state()
    check_loss(entry, _loss(d_penalty=_gradient_penalty)(), (3, 4, 4), num_classes=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert _gradient_penalty.calls == [None]
    check_loss(entry, _loss(d_penalty=None)())  # no penalty: as d_penalty absent


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


def test_cyclegan_checks_its_plugin_loss_penalty(tmp_path):
    _plugin(loss=_loss(d_penalty=lambda self, d, real, fake: (d(real) ** 2).mean()))
    cfg = load_config(
        "cyclegan-digits",
        ["loss.name=bad", "train.steps=1", "train.device=cpu", "train.progress=false"],
    )
    with pytest.raises(PluginError, match=r"d_penalty failed on .* 2 images \(3, 32, 32\)"):
        train(cfg, out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


class GoodT(nn.Module):
    """An image-to-image generator (task cyclegan)."""

    def __init__(self, channels, channels_out, image_size):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels_out, 1)

    def forward(self, x, labels=None):
        return torch.tanh(self.conv(x))


def _cyclegan(tmp_path, preset="cyclegan-digits", **parts):
    """One step of ``preset`` (a translation task's) with the plugin's generator and
    discriminator (``parts``: ``g``, ``d`` factories in place of the good ones)."""
    _plugin(g=parts.get("g", GoodT), d=parts.get("d", GoodD))
    names = ["model.generator.name=bad", "model.discriminator.name=bad"]
    cfg = load_config(
        preset,
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


def test_a_resume_with_another_plugin_version_warns(tmp_path):
    """Only the networks' defaults are recorded in a run: a loss or dataset whose plugin
    changed between the steps resumes with the new version's defaults, so it says so."""
    _plugin()
    run = train(_config(), out_dir=tmp_path / "r").run_dir
    resume = load_config("dcgan-mnist", [*_config_overrides(), "train.steps=3"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same version: no warning
        train(resume, resume=run)
    swapped = tmp_path / "swapped"
    import shutil

    shutil.copytree(run, swapped)
    other_loss = load_config(
        "dcgan-mnist", [*_config_overrides(), "train.steps=4", "loss.name=hinge"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # another part chosen, not another version
        train(other_loss, resume=swapped)
    _plugin(version="10.0")
    resume = load_config("dcgan-mnist", [*_config_overrides(), "train.steps=4"])
    with pytest.warns(UserWarning, match="other plugin versions than the run trained with") as w:
        train(resume, resume=run)
    (message,) = [str(x.message) for x in w if "plugin versions" in str(x.message)]
    for part in ("dataset", "generator", "discriminator", "loss"):
        assert f"{part} 'bad' of edgegan-bad 9.9, now 10.0" in message
    # the networks' defaults are recorded in the run and kept; the others' are not
    assert message.endswith(
        "; the networks keep the defaults the run recorded; the other parts' parameters that "
        "the config leaves out take the new version's defaults (set them in the config to keep "
        "the old)"
    )


def test_a_plugin_metric_scores_a_plugin_dataset_run(tmp_path):
    import json

    _plugin()
    cfg = _metric_config("eval.every=2", "eval.val_samples=6", steps=4)
    result = train(cfg, out_dir=tmp_path / "r")
    assert result.eval["n"] == 10 and -1 <= result.eval["mean"] <= 1
    assert json.loads((result.run_dir / "eval.json").read_text()) == result.eval
    records = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_n"] for r in records if "val_n" in r] == [6, 6]
    # `edgegan eval RUN` scores it with the metric it was trained with (it took digits,
    # which refused a run on other data)
    from click.testing import CliRunner

    from edgegan.cli import cli
    from edgegan.metrics.evaluate import evaluate_generator

    res = CliRunner().invoke(cli, ["eval", str(result.run_dir), "--num", "12", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n"] == 12
    assert evaluate_generator(result.run_dir, num=5)["n"] == 5


def test_a_plugin_metric_is_built_once_per_run(tmp_path):
    """Checked at the start, then scored at each validation and at the end: one build (a
    metric that loads a network used to load it at every validation pass)."""
    built = []

    class Counted(MeanPix):
        def __init__(self):
            built.append(self)

    _plugin(metric=Counted)
    cfg = _metric_config("eval.every=1", "eval.val_samples=6", steps=4)
    result = train(cfg, out_dir=tmp_path / "r")
    assert result.eval["n"] == 10 and len(built) == 1


def test_a_plugin_metric_is_built_by_process_0_alone(monkeypatch):
    """Under torchrun the others only look it up (process 0 alone evaluates): each process
    built it, loading whatever network it holds N times over."""
    from edgegan.errors import EdgeganError
    from edgegan.plugins.manager import get_manager
    from edgegan.train.device import Precision
    from edgegan.train.gan import GANTask

    built = []

    class Counted(MeanPix):
        def __init__(self):
            built.append(self)

    _plugin(metric=Counted)
    cfg = _metric_config()
    data = get_manager().registry("datasets").build("bad", {}, {"split": "train"})
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    for rank, builds in ((1, 0), (0, 1)):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        task = GANTask(cfg, data, cpu, Precision("off", cpu))
        assert len(built) == builds and (task._scorer is not None) == bool(builds)
        built.clear()
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    cfg.eval.metric = "nosuch"
    with pytest.raises(EdgeganError, match="unknown metric 'nosuch'"):  # still checked there
        GANTask(cfg, data, cpu, Precision("off", cpu))


class NanMetric:
    def compute(self, samples, labels=None, reference=None):
        return {"fd": float("nan"), "n": len(samples)}


def test_a_runs_eval_json_is_strict_json_when_a_score_is_nan(tmp_path):
    import json

    _plugin(metric=NanMetric)
    cfg = _metric_config()
    result = train(cfg, out_dir=tmp_path / "r")
    text = (result.run_dir / "eval.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"fd": None, "n": 10}


class RaisingMetric:
    def compute(self, samples, labels=None, reference=None):
        raise RuntimeError("needs scipy")


@pytest.mark.parametrize(
    ("metric", "expected"),
    (
        (RaisingMetric, "compute failed on 10 samples: RuntimeError: needs scipy"),
        (type("NoCompute", (), {}), "built a NoCompute without a compute method"),
    ),
)
def test_a_broken_plugin_metric_stops_a_run_with_one_line(tmp_path, metric, expected):
    _plugin(metric=metric)
    cfg = _metric_config()
    with pytest.raises(PluginError) as exc_info:
        train(cfg, out_dir=tmp_path / "r")
    message = str(exc_info.value)
    assert message.startswith("metric 'meanpix' (plugin 'bad', edgegan-bad 9.9) ")
    assert expected in message and "\n" not in message
    if metric is RaisingMetric:  # found when it runs, after training: the run is reported
        assert "steps: 2 of 2" in (tmp_path / "r/report.md").read_text()
        hint = "(sample it with edgegan infer, score the samples with edgegan eval)"
        assert message.endswith(f"; the trained run is saved in {tmp_path / 'r'} {hint}")
        assert (tmp_path / "r/checkpoints/last.pt").is_file()
    else:  # found when it is built, before the run directory
        assert not (tmp_path / "r").exists()


def test_the_digit_metric_on_other_data_says_it_is_skipped(tmp_path):
    _plugin()
    cfg = load_config("dcgan-mnist", [*_config_overrides(), "train.steps=2", "eval.at_end=true"])
    with pytest.warns(UserWarning, match="no final evaluation: eval.metric=digits scores runs on"):
        result = train(cfg, out_dir=tmp_path / "r")
    assert result.eval == {} and not (result.run_dir / "eval.json").exists()


def test_checking_a_plugin_metric_early_leaves_the_runs_random_streams_alone(tmp_path):
    """The metric is built at startup to check it: a factory that draws (a layer's init)
    made the trained weights depend on eval.at_end."""

    class Drawing(MeanPix):
        def __init__(self):
            self.layer = nn.Linear(4, 4)  # draws from torch's global RNG

    _plugin(metric=Drawing)
    weights = []
    for at_end in (False, True):
        run = train(_metric_config(at_end=at_end), out_dir=tmp_path / str(at_end)).run_dir
        state = torch.load(run / "checkpoints/last.pt", weights_only=True)
        weights.append(state["networks"]["generator"])
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key


def test_dataset_images_just_outside_minus_one_to_one_are_refused():
    """mutation testing: widening the dataset check's range (images in [-1.5, 1.5], from a
    rescale gone wrong, accepted) passed the suite, whose bad dataset gave 0..255 pixels."""
    from edgegan.contracts import check_dataset
    from edgegan.registry import Entry

    entry = Entry("datasets", "bad", factory=GoodData)
    check_dataset(entry, _dataset(__getitem__=lambda self, i: (torch.ones(SHAPE), 0))())
    for value in (1.5, -1.01):
        data = _dataset(__getitem__=lambda self, i, v=value: (torch.full(SHAPE, v), 0))()
        with pytest.raises(PluginError, match=r"they must be in \[-1, 1\]"):
            check_dataset(entry, data)


def _pix2pix(tmp_path, **parts):
    return _cyclegan(tmp_path, "pix2pix-digits", **parts)


def test_pix2pix_checks_its_plugin_parts_on_pairs(tmp_path):
    """pix2pix's discriminator sees A and B as one image: a plugin discriminator built for
    the channels it is given trains; one that assumes B's 3 channels fails before the run."""
    assert _pix2pix(tmp_path).step == 1
    with pytest.raises(PluginError) as exc_info:
        _pix2pix(tmp_path / "2", d=lambda channels, image_size: GoodD(3, image_size))
    assert "discriminator 'bad' (plugin 'bad', edgegan-bad 9.9) failed on 2 images" in str(
        exc_info.value
    )
    assert not (tmp_path / "2" / "r").exists()
