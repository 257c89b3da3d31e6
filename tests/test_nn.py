"""DCGAN networks: shapes, conditioning, spectral norm, init and the registry factories."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from edgegan.errors import EdgeganError
from edgegan.losses.adversarial import HingeLoss
from edgegan.nn.dcgan import DCGANDiscriminator, DCGANGenerator
from edgegan.nn.init import INIT_KINDS, init_weights

SIZES = (28, 32, 64)


pytestmark = pytest.mark.usefixtures("one_thread")


def labels_for(n: int, k: int) -> torch.Tensor:
    return torch.arange(n) % k


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", (1, 3))
@pytest.mark.parametrize("num_classes", (0, 10))
def test_generator_shapes_and_range(size, channels, num_classes):
    torch.manual_seed(0)
    g = DCGANGenerator(16, channels, size, num_classes, ngf=8)
    assert (g.latent_dim, g.num_classes, g.image_shape) == (16, num_classes, (channels, size, size))
    labels = labels_for(3, num_classes) if num_classes else None
    x = g(torch.randn(3, 16), labels)
    assert x.shape == (3, channels, size, size)
    assert x.abs().max() <= 1.0
    g.eval()  # export runs the generator in eval mode, often with batch 1
    assert g(torch.randn(1, 16), None if labels is None else labels[:1]).shape[0] == 1


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", (1, 3))
@pytest.mark.parametrize(
    ("num_classes", "conditioning"), ((0, "projection"), (10, "projection"), (10, "concat"))
)
def test_discriminator_shapes(size, channels, num_classes, conditioning):
    torch.manual_seed(0)
    d = DCGANDiscriminator(channels, size, num_classes, ndf=8, conditioning=conditioning)
    labels = labels_for(3, num_classes) if num_classes else None
    out = d(torch.randn(3, channels, size, size), labels)
    assert out.shape == (3,)
    assert out.requires_grad


@pytest.mark.parametrize("conditioning", ("projection", "concat"))
def test_labels_change_the_conditional_outputs(conditioning):
    torch.manual_seed(0)
    g = DCGANGenerator(8, 1, 28, 4, ngf=8).eval()
    d = DCGANDiscriminator(1, 28, 4, ndf=8, conditioning=conditioning).eval()
    z = torch.randn(1, 8).repeat(2, 1)
    x = g(z, torch.tensor([0, 1]))
    assert not torch.allclose(x[0], x[1])
    logits = d(x[:1].repeat(2, 1, 1, 1), torch.tensor([0, 3]))
    assert logits[0] != logits[1]


def test_unconditional_networks_ignore_labels():
    g = DCGANGenerator(8, 1, 32, ngf=8).eval()
    z = torch.randn(2, 8)
    assert torch.equal(g(z), g(z, torch.tensor([-1, -1])))


@pytest.mark.parametrize("conditioning", ("projection", "concat"))
def test_label_minus_one_is_no_class(conditioning):
    """An unlabelled item (-1) in a conditional run: a zero class embedding for G, and D's
    unconditional logit (no projection term, all-zero label maps)."""
    torch.manual_seed(0)
    g = DCGANGenerator(8, 1, 28, 4, ngf=8).eval()
    d = DCGANDiscriminator(1, 28, 4, ndf=8, conditioning=conditioning).eval()
    z, labels = torch.randn(3, 8), torch.tensor([2, -1, 0])
    with torch.no_grad():
        x = g(z, labels)
        plain = g.net(torch.cat([z, torch.zeros(3, 8)], dim=1)[:, :, None, None])
        assert torch.equal(x[1], plain[1]) and not torch.equal(x[0], plain[0])
        assert torch.equal(x[[0, 2]], g(z[[0, 2]], labels[[0, 2]]))  # labelled rows unchanged
        logits = d(x, labels)
        if conditioning == "projection":
            unconditional = d.head(d.features(x)).flatten()
        else:
            maps = torch.zeros(3, 4, 28, 28)
            unconditional = d.head(d.features(torch.cat([x, maps], dim=1))).flatten()
        assert torch.allclose(logits[1], unconditional[1])
        assert not torch.allclose(logits[0], unconditional[0])


def test_spectral_norm_constrains_weights():
    torch.manual_seed(0)
    d = DCGANDiscriminator(3, 32, 10, ndf=8, norm="none", spectral_norm=True)
    x = torch.randn(4, 3, 32, 32)
    for _ in range(5):  # one power iteration per training-mode forward
        d(x, labels_for(4, 10))
    for m in (d.features[0], d.head, d.embed):
        assert hasattr(m, "parametrizations")
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)


def test_spectral_norm_state_dict_roundtrips_weights_only():
    torch.manual_seed(0)
    d = DCGANDiscriminator(1, 28, 10, ndf=8, spectral_norm=True)
    buf = io.BytesIO()
    torch.save(d.state_dict(), buf)
    buf.seek(0)
    other = DCGANDiscriminator(1, 28, 10, ndf=8, spectral_norm=True)
    other.load_state_dict(torch.load(buf, weights_only=True))
    x, y = torch.randn(2, 1, 28, 28), torch.tensor([1, 2])
    assert torch.equal(d.eval()(x, y), other.eval()(x, y))


def test_missing_labels_raise():
    g = DCGANGenerator(8, 1, 32, 10, ngf=8)
    with pytest.raises(ValueError, match="pass labels"):
        g(torch.randn(2, 8))
    for conditioning in ("projection", "concat"):
        d = DCGANDiscriminator(1, 32, 10, ndf=8, conditioning=conditioning)
        with pytest.raises(ValueError, match="class-conditional"):
            d(torch.randn(2, 1, 32, 32))


@pytest.mark.parametrize("size", (16, 48, 128))
def test_unsupported_size(size):
    with pytest.raises(EdgeganError, match=f"image_size 28, 32, 64; got {size}"):
        DCGANGenerator(8, 1, size)
    with pytest.raises(EdgeganError, match="28, 32, 64"):
        DCGANDiscriminator(1, size)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    (
        ({"norm": "layer"}, "norm must be one of batch, instance, none"),
        ({"conditioning": "acgan"}, "conditioning must be one of projection, concat"),
        ({"init": "uniform"}, "init must be one of normal, xavier, kaiming, orthogonal"),
        ({"ndf": 0}, "ndf must be a positive integer"),
    ),
)
def test_bad_choices(kwargs, match):
    with pytest.raises(EdgeganError, match=match):
        DCGANDiscriminator(1, 32, **kwargs)


def test_factories_through_the_registry(models):
    context = {"latent_dim": 16, "channels": 1, "image_size": 32, "num_classes": 10}
    g = models.build("dcgan", {"ngf": 8}, context, role="generator")
    d = models.build(
        "dcgan", {"ndf": 8, "spectral_norm": True, "norm": "none"}, context, role="discriminator"
    )
    assert isinstance(g, DCGANGenerator) and isinstance(d, DCGANDiscriminator)
    y = labels_for(2, 10)
    assert d(g(torch.randn(2, 16), y), y).shape == (2,)
    with pytest.raises(EdgeganError, match="'ngf' of generator 'dcgan' must be int"):
        models.build("dcgan", {"ngf": "x"}, context, role="generator")
    with pytest.raises(EdgeganError, match="norm must be one of"):
        models.build("dcgan", {"norm": "group"}, context, role="discriminator")
    with pytest.raises(EdgeganError, match="unknown parameter 'ngf'"):
        models.build("dcgan", {"ngf": 8}, context, role="discriminator")


def test_init_weights_normal_statistics():
    torch.manual_seed(0)
    g = DCGANGenerator(64, 3, 64, ngf=32)
    conv = g.net[3]
    assert conv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    bn = g.net[1]
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.01)
    assert bn.bias.abs().sum() == 0 and g.net[-2].bias.abs().sum() == 0


@pytest.mark.parametrize("kind", INIT_KINDS)
def test_init_kinds_reach_spectral_norm_originals(kind):
    torch.manual_seed(0)
    d = DCGANDiscriminator(1, 28, ndf=8, spectral_norm=True)
    before = d.head.parametrizations.weight.original.clone()
    assert init_weights(d, kind, gain=0.5) is d
    assert not torch.equal(before, d.head.parametrizations.weight.original)


def test_init_orthogonal_gain():
    lin = init_weights(nn.Linear(8, 4), "orthogonal", gain=0.5)
    assert torch.allclose(lin.weight @ lin.weight.T, 0.25 * torch.eye(4), atol=1e-6)


def sgd_steps(params: list[nn.Parameter], loss_fn, steps: int = 5, lr: float = 0.01) -> list:
    """Plain gradient descent (torch.optim's first use imports torch._dynamo: seconds)."""
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, grad in zip(params, grads, strict=True):
                p -= lr * grad
        losses.append(loss.item())
    return losses


def test_a_few_steps_reduce_the_losses():
    torch.manual_seed(0)
    g = DCGANGenerator(8, 1, 28, 10, ngf=8)
    d = DCGANDiscriminator(1, 28, 10, ndf=8, spectral_norm=True)
    loss = HingeLoss()
    real, y, z = torch.rand(8, 1, 28, 28) * 2 - 1, labels_for(8, 10), torch.randn(8, 8)
    fake = g(z, y).detach()

    d_losses = sgd_steps(list(d.parameters()), lambda: loss.d_loss(d(real, y), d(fake, y)))
    assert d_losses[-1] < d_losses[0]
    d.requires_grad_(False)
    g_losses = sgd_steps(list(g.parameters()), lambda: loss.g_loss(d(g(z, y), y)))
    assert g_losses[-1] < g_losses[0]
