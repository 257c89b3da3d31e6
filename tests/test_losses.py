"""Adversarial losses and penalties against values computed by hand."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from edgegan.errors import EdgeganError
from edgegan.losses.adversarial import (
    LOSSES,
    HingeLoss,
    LSGANLoss,
    MinimaxLoss,
    NonSaturatingLoss,
    RelativisticAverageLoss,
    WGANGPLoss,
    takes_real_logits,
)
from edgegan.losses.penalties import gradient_penalty, r1_penalty
from edgegan.nn.dcgan import DCGANDiscriminator
from edgegan.plugins.manager import PluginManager

R = [2.0, -1.0]
F = [0.5, -3.0]


pytestmark = pytest.mark.usefixtures("one_thread")


def sp(x: float) -> float:
    return math.log1p(math.exp(x))


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


@pytest.fixture
def logits() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(R, dtype=torch.float64), torch.tensor(F, dtype=torch.float64)


@pytest.fixture(scope="module")
def losses_registry():
    return PluginManager(load_entry_points=False).registry("losses")


LOGISTIC_D = mean([sp(-r) for r in R]) + mean([sp(f) for f in F])
EXPECTED = {
    # name: (d_loss, g_loss)
    "minimax": (LOGISTIC_D, -mean([sp(f) for f in F])),
    "bce": (LOGISTIC_D, mean([sp(-f) for f in F])),
    "lsgan": (0.5 * (mean([1.0, 4.0]) + mean([0.25, 9.0])), mean([0.25, 16.0])),
    "hinge": (mean([0.0, 2.0]) + mean([1.5, 0.0]), 1.25),
    "wgan-gp": (mean(F) - mean(R), -mean(F)),
    "ragan": (  # each side relative to the other's mean; G is trained on both halves
        mean([sp(-(r - mean(F))) for r in R]) + mean([sp(f - mean(R)) for f in F]),
        mean([sp(-(f - mean(R))) for f in F]) + mean([sp(r - mean(F)) for r in R]),
    ),
}


def g_loss(loss, fake, real):
    """``loss.g_loss`` as training calls it: with the real logits when it takes them."""
    return loss.g_loss(fake, real_logits=real) if takes_real_logits(loss) else loss.g_loss(fake)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hand_computed_values(name, logits, losses_registry):
    loss = losses_registry.build(name)
    r, f = logits
    d, g = EXPECTED[name]
    assert loss.d_loss(r, f).item() == pytest.approx(d, abs=1e-12)
    assert g_loss(loss, f, r).item() == pytest.approx(g, abs=1e-12)
    assert loss.d_loss(r, f).dim() == 0 and g_loss(loss, f, r).dim() == 0
    assert takes_real_logits(loss) == (name == "ragan")


def test_registered_names_match_classes(losses_registry):
    assert losses_registry.names() == sorted(LOSSES)
    for name, cls in LOSSES.items():
        assert type(losses_registry.build(name)) is cls


def test_minimax_saturates_where_bce_does_not():
    # D confidently rejects a fake (f = -8): minimax's G gradient vanishes, bce's does not.
    f = torch.tensor([-8.0], dtype=torch.float64, requires_grad=True)
    (g_minimax,) = torch.autograd.grad(MinimaxLoss().g_loss(f), f)
    (g_bce,) = torch.autograd.grad(NonSaturatingLoss().g_loss(f), f)
    assert g_minimax.item() == pytest.approx(-1 / (1 + math.exp(8)))  # -sigmoid(f)
    assert g_bce.item() == pytest.approx(-1 / (1 + math.exp(-8)))  # -sigmoid(-f)
    r = torch.tensor(R)
    assert torch.equal(MinimaxLoss().d_loss(r, f.detach()), NonSaturatingLoss().d_loss(r, f))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_extreme_logits_stay_finite(name):
    big = torch.tensor([100.0, -100.0])
    loss = LOSSES[name]()
    assert torch.isfinite(loss.d_loss(big, -big)) and torch.isfinite(g_loss(loss, big, -big))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_any_logit_shape_averages_all_elements(name):
    torch.manual_seed(0)
    r, f = torch.randn(4, 1, 3, 3), torch.randn(4, 1, 3, 3)
    loss = LOSSES[name]()
    assert torch.allclose(loss.d_loss(r, f), loss.d_loss(r.flatten(), f.flatten()))
    assert torch.allclose(g_loss(loss, f, r), g_loss(loss, f.reshape(-1, 1), r.flatten()))


def test_ragan_needs_the_real_logits_and_pulls_them_down_for_the_generator():
    loss = RelativisticAverageLoss()
    with pytest.raises(EdgeganError, match="needs the discriminator's logits on real images"):
        loss.g_loss(torch.zeros(2))
    # G's loss grows with the real logits' lead over the fakes (the half bce's G ignores)
    f = torch.zeros(4)
    assert loss.g_loss(f, real_logits=torch.full((4,), 3.0)) > loss.g_loss(f, torch.zeros(4))
    # and it is symmetric: D's loss with the roles of real and fake swapped
    r, f = torch.randn(5, generator=torch.Generator().manual_seed(0)), torch.randn(5)
    assert torch.allclose(loss.g_loss(f, real_logits=r), loss.d_loss(f, r))


def test_low_precision_logits_are_promoted():
    r, f = torch.tensor(R, dtype=torch.float16), torch.tensor(F, dtype=torch.bfloat16)
    assert HingeLoss().d_loss(r, f).dtype == torch.float32


def test_wgan_drift(logits):
    r, f = logits
    assert WGANGPLoss(drift=0.1).d_loss(r, f).item() == pytest.approx(-1.75 + 0.1 * 2.5)


def test_only_wgan_gp_has_a_penalty():
    assert [n for n, cls in LOSSES.items() if hasattr(cls(), "d_penalty")] == ["wgan-gp"]


def test_loss_params_are_validated(losses_registry):
    assert losses_registry.build("wgan-gp", {"gp_weight": 5}).gp_weight == 5.0
    with pytest.raises(EdgeganError, match="gp_weight"):
        losses_registry.build("wgan-gp", {"gp_weight": "x"})
    with pytest.raises(EdgeganError, match="gp_weight"):
        losses_registry.build("wgan-gp", {"gp_weight": -1.0})
    with pytest.raises(EdgeganError, match="unknown parameter 'margin'"):
        losses_registry.build("hinge", {"margin": 2.0})


def test_lsgan_halves_only_d():
    zero, one = torch.zeros(3), torch.ones(3)
    assert LSGANLoss().d_loss(zero, one).item() == pytest.approx(1.0)  # 0.5 * (1 + 1)
    assert LSGANLoss().g_loss(zero).item() == pytest.approx(1.0)


# -- penalties ---------------------------------------------------------------------------------


def linear_d(weight: torch.Tensor) -> nn.Module:
    """D(x) = <w, flatten(x)>: its input gradient is w everywhere."""
    lin = nn.Linear(weight.numel(), 1, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(weight.reshape(1, -1))
    return nn.Sequential(nn.Flatten(), lin)


def test_gradient_penalty_of_a_linear_critic():
    real = torch.randn(5, 1, 2, 2, dtype=torch.float64)
    fake = torch.randn(5, 1, 2, 2, dtype=torch.float64)
    unit = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    assert gradient_penalty(linear_d(unit), real, fake).item() == pytest.approx(0.0, abs=1e-12)
    # ||grad|| = 3 for every interpolate: (3 - 1)^2 = 4, and (3 - 2)^2 = 1 with target 2.
    assert gradient_penalty(linear_d(3 * unit), real, fake).item() == pytest.approx(4.0)
    assert gradient_penalty(linear_d(3 * unit), real, fake, target=2.0).item() == pytest.approx(1)


def test_wgan_gp_penalty_trains_d():
    u = torch.tensor([0.6, 0.0, 0.8, 0.0], dtype=torch.float64)
    d = linear_d(3 * u)
    real, fake = torch.randn(4, 1, 2, 2).double(), torch.randn(4, 1, 2, 2).double()
    penalty = WGANGPLoss(gp_weight=10.0).d_penalty(d, real, fake)
    assert penalty.item() == pytest.approx(40.0)
    # d/dw 10 * (||w|| - 1)^2 = 20 * (||w|| - 1) * w / ||w|| = 40 u.
    penalty.backward()
    assert torch.allclose(d[1].weight.grad.flatten(), 40 * u)


def test_gradient_penalty_through_a_conditional_convnet():
    torch.manual_seed(0)
    d = DCGANDiscriminator(1, 28, num_classes=3, ndf=4, norm="none", conditioning="concat")
    real, fake = torch.rand(3, 1, 28, 28) * 2 - 1, torch.rand(3, 1, 28, 28) * 2 - 1
    labels = torch.tensor([0, 1, 2])
    torch.manual_seed(1)
    first = WGANGPLoss().d_penalty(d, real, fake, labels)
    first.backward()
    assert all(p.grad is not None for n, p in d.named_parameters() if n.endswith("weight"))
    assert d.head.weight.grad.abs().sum() > 0
    torch.manual_seed(1)  # the interpolation draws from the global RNG
    assert torch.equal(WGANGPLoss().d_penalty(d, real, fake, labels), first.detach())
    assert not fake.requires_grad


def test_r1_of_a_known_function():
    # D(x) = a * sum(x^2): grad_x = 2 a x, so R1 = 4 a^2 mean ||x||^2 and dR1/da = 8 a mean ||x||^2.
    a = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)

    def d(x: torch.Tensor) -> torch.Tensor:
        return a * x.pow(2).flatten(1).sum(1)

    real = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    sq = real.pow(2).flatten(1).sum(1).mean().item()
    penalty = r1_penalty(d, real)
    assert penalty.item() == pytest.approx(4 * 1.5**2 * sq)
    penalty.backward()
    assert a.grad.item() == pytest.approx(8 * 1.5 * sq)
    assert not real.requires_grad


def test_loss_plugin_does_not_import_torch():
    code = "import sys, edgegan.losses.plugin, edgegan.nn.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- low precision, parameters and the penalty's inputs ----------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_fp16_or_bf16_logits_alone_are_promoted_to_float32(name, dtype):
    """Each loss on logits all of one low precision (as autocast gives them) computes in
    float32: the mixed fp16/bf16 pair above promotes by itself, and LSGAN's (300 - 1)^2 or
    the drift's 300^2 overflow fp16 (max 65504) to inf when computed in it."""
    loss = LOSSES[name](drift=0.1) if name == "wgan-gp" else LOSSES[name]()
    r = torch.tensor([300.0, 2.0, -1.0]).to(dtype)
    f = torch.tensor([-300.0, 0.5, -3.0]).to(dtype)
    d, g = loss.d_loss(r, f), g_loss(loss, -f, r)
    assert d.dtype == torch.float32 and g.dtype == torch.float32
    assert torch.isfinite(d) and torch.isfinite(g)
    assert torch.equal(d, loss.d_loss(r.float(), f.float()))
    assert torch.equal(g, g_loss(loss, -f.float(), r.float()))


def test_a_negative_wgan_drift_is_refused(losses_registry):
    """A negative drift rewards a critic for large outputs on real data, the opposite of
    what the term is for (mutation testing: without the check the suite passed)."""
    with pytest.raises(EdgeganError, match="drift >= 0"):
        WGANGPLoss(drift=-0.1)
    with pytest.raises(EdgeganError, match="drift >= 0"):
        losses_registry.build("wgan-gp", {"drift": -1.0})
    assert WGANGPLoss(drift=0.0).drift == 0.0


def test_gradient_penalty_does_not_reach_the_generator():
    """The penalty trains D only: fakes straight from G (not detached by the caller) must
    not carry the penalty's gradient back into G's parameters. D is non-linear, so its input
    gradient depends on the interpolate and hence on the fake."""
    torch.manual_seed(0)
    g = nn.Linear(3, 4)
    fake = g(torch.randn(5, 3))
    real = torch.randn(5, 4)
    scale = torch.tensor(1.5, requires_grad=True)

    def d(x: torch.Tensor) -> torch.Tensor:
        return scale * x.pow(2).sum(1)

    penalty = gradient_penalty(d, real, fake)
    penalty.backward()
    assert scale.grad is not None and scale.grad.abs() > 0  # D is trained
    assert g.weight.grad is None and g.bias.grad is None


def test_gradient_penalty_draws_one_alpha_per_sample():
    """x_hat = a*real + (1-a)*fake with its own a ~ U[0, 1) for each sample (Gulrajani et
    al.): one a shared by the batch puts every interpolate at the same fraction of the way."""
    seen = []

    def d(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach())
        return x.flatten(1).sum(1)

    real = torch.ones(16, 1, 2, 3, dtype=torch.float64)
    fake = -torch.ones(16, 1, 2, 3, dtype=torch.float64)
    torch.manual_seed(0)
    gradient_penalty(d, real, fake)
    (x_hat,) = seen
    alpha = ((x_hat - fake) / (real - fake)).flatten(1)  # (N, 6): a per sample, per pixel
    assert torch.allclose(alpha, alpha[:, :1].expand_as(alpha))  # one a within a sample
    a = alpha[:, 0]
    assert ((a >= 0) & (a < 1)).all()
    assert len(set(a.tolist())) == 16  # and a different one for each sample
