"""The fast-path switches (memory format, compile, resident data, fused Adam) and validation
during training. On the CPU these check correctness; tools/bench_train.py measures speed."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from tiny import TINY_CYCLEGAN, TINY_GAN

from edgegan.config import load_config, load_run_config
from edgegan.errors import ConfigError, DataError
from edgegan.train import train
from edgegan.train.checkpoint import load_checkpoint
from edgegan.train.stream import BatchStream
from edgegan.train.trainer import Trainer

CUDA = torch.cuda.is_available()


def gan(tmp_path, *overrides: str):
    return load_config("dcgan-mnist", [*TINY_GAN, *overrides])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.compile=fast", "train.compile must be one of"),
        ("train.resident_data=maybe", "train.resident_data' must be bool"),
        ("eval.every=-1", "eval.every must be >= 0"),
    ],
)
def test_bad_fast_path_settings_are_clear_errors(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        train(gan(tmp_path, override), out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_channels_last_trains_like_contiguous(tmp_path):
    plain = train(gan(tmp_path, "train.steps=3"), out_dir=tmp_path / "plain")
    config = gan(tmp_path, "train.steps=3", "train.channels_last=true")
    trainer = Trainer(config, tmp_path / "nhwc")
    convs = [m for m in trainer.task.generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    # The projection of the 1x1 latent keeps its layout (see edgegan.nn.layers.KEEP_CONTIGUOUS).
    assert convs[0].weight.is_contiguous() and not convs[0].weight.is_contiguous(
        memory_format=torch.channels_last
    )
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs[1:])
    real, _ = trainer.stream.next()
    assert real.is_contiguous(memory_format=torch.channels_last)
    trainer.stream.load_state_dict({"consumed": 0})
    nhwc = trainer.fit()
    a = load_checkpoint(plain.checkpoint)["networks"]
    b = load_checkpoint(nhwc.checkpoint)["networks"]
    for net in a:
        for key, value in a[net].items():
            # Same maths in another memory layout: only the summation order differs.
            torch.testing.assert_close(b[net][key], value, rtol=1e-4, atol=1e-4, msg=key)


@pytest.mark.parametrize("channels", [1, 3])
def test_resident_and_loader_paths_give_the_same_batches(channels):
    """MNIST is held as uint8 pixels (grey stored once for RGB); both paths, and the float32
    dataset the pixels stand for, give the same float batches bit for bit."""
    from edgegan.data.base import TensorImageDataset, uint8_stack_to_tensor
    from edgegan.data.idx import bundled_mnist_dir, load_idx_split
    from edgegan.data.mnist import build_mnist

    data = build_mnist(split="train", limit=64, image_size=32, channels=channels)
    assert data.images.dtype == torch.uint8
    raw, _ = load_idx_split(bundled_mnist_dir(), "train")
    floats = TensorImageDataset(
        uint8_stack_to_tensor(raw[:64], 32, channels), data.labels, data.class_names
    )
    cpu = torch.device("cpu")
    resident = BatchStream(data, 16, 3, cpu, resident=True)
    loader = BatchStream(data, 16, 3, cpu, resident=False)
    as_floats = BatchStream(floats, 16, 3, cpu, resident=True)
    assert resident.resident and not loader.resident
    assert resident.images.shape == (64, 1, 32, 32)  # one plane on the device
    for _ in range(6):  # crosses an epoch boundary (4 batches per epoch)
        (xa, ya), (xb, yb), (xc, yc) = resident.next(), loader.next(), as_floats.next()
        assert xa.dtype == torch.float32 and xa.shape == (16, channels, 32, 32)
        assert xa.is_contiguous()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(xa, xc) and torch.equal(ya, yc)


def test_resident_on_needs_an_in_memory_dataset(tmp_path):
    config = load_config(
        "cyclegan-digits",
        ["data.limit=16", "train.device=cpu", "train.resident_data=true", "train.batch_size=4"],
    )
    with pytest.raises(DataError, match="resident_data=true needs"):
        train(config, out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _biases_before_instance_norms(net: torch.nn.Module) -> set[str]:
    """State-dict keys of conv biases an instance norm follows (in registration order)."""
    keys, last = set(), None
    for name, module in net.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            last = f"{name}.bias" if module.bias is not None else None
        elif isinstance(module, torch.nn.InstanceNorm2d) and last:
            keys.add(last)
    return keys


def test_layout_norm_trains_like_plain_instance_norms(tmp_path):
    """train.layout_norm changes how instance norms compute, not what: the same weights after
    a few channels-last steps, plain checkpoints, and the report says it ran."""
    from edgegan.nn.layers import LayoutInstanceNorm2d

    common = [*TINY_CYCLEGAN, "train.steps=3", "eval.at_end=false", "train.channels_last=true"]
    plain = train(load_config("cyclegan-digits", common), out_dir=tmp_path / "plain")
    config = load_config("cyclegan-digits", [*common, "train.layout_norm=true"])
    trainer = Trainer(config, tmp_path / "layout")
    for name in trainer.task.networks:
        net = getattr(trainer.task, name)
        kinds = {type(m) for m in net.modules() if isinstance(m, torch.nn.InstanceNorm2d)}
        assert kinds == {LayoutInstanceNorm2d}, name
    # A conv bias right before an instance norm has no gradient but rounding noise, which
    # Adam scales up to steps of lr either way (as between NCHW and channels_last runs).
    cancelled = {
        n: _biases_before_instance_norms(getattr(trainer.task, n)) for n in trainer.task.networks
    }
    layout = trainer.fit()
    a = load_checkpoint(plain.checkpoint)["networks"]
    b = load_checkpoint(layout.checkpoint)["networks"]
    assert a.keys() == b.keys()
    for net in a:
        assert a[net].keys() == b[net].keys() and cancelled[net]
        for key, value in a[net].items():
            if key not in cancelled[net]:
                torch.testing.assert_close(b[net][key], value, rtol=1e-4, atol=1e-4, msg=key)
    assert "layout_norm: True" in (layout.run_dir / "report.md").read_text()


def test_cyclegan_validation_is_logged_during_training(tmp_path):
    config = load_config(
        "cyclegan-digits",
        [
            *TINY_CYCLEGAN,
            "train.steps=4",
            "eval.every=2",
            "eval.val_samples=8",
            "eval.at_end=false",
        ],
    )
    result = train(config, out_dir=tmp_path / "run")
    records = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val_ab_psnr" in r]
    assert [r["step"] for r in val] == [2, 4]
    assert all(r["val_ab_psnr"] > 0 and 0 <= r["val_ba_ssim"] <= 1 for r in val)
    train_records = [r for r in records if "g_loss" in r]
    assert [r["step"] for r in train_records] == [2, 4]


@pytest.mark.slow
def test_compiled_training_keeps_plain_checkpoints_and_resumes(tmp_path):
    """torch.compile in place: checkpoints hold plain keys (no ``_orig_mod``), the EMA copy is
    not compiled, and a compiled run resumes."""
    pytest.importorskip("torch._inductor")
    steps = ["train.compile=default", "train.checkpoint_every=2"]
    result = train(gan(tmp_path, *steps, "train.steps=2"), out_dir=tmp_path / "run")
    state = load_checkpoint(result.checkpoint)
    keys = [k for net in state["networks"].values() for k in net] + list(state["ema"])
    assert keys and not [k for k in keys if "_orig_mod" in k]
    resumed = train(load_run_config(result.run_dir, ["train.steps=3"]), resume=result.run_dir)
    assert resumed.step == 3


@pytest.mark.slow
@pytest.mark.parametrize("penalty", ["loss.name=wgan-gp", "train.r1_gamma=1"])
def test_compiled_training_takes_the_penalties(tmp_path, penalty):
    """They differentiate D's gradient again, which torch's compiled backward cannot: the
    first step failed ("does not currently support double backward"). They run eager."""
    pytest.importorskip("torch._inductor")
    r1_every = ["train.r1_every=1"] if "r1" in penalty else []
    config = gan(tmp_path, "train.compile=default", "train.steps=2", penalty, *r1_every)
    result = train(config, out_dir=tmp_path / "run")
    records = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    key = "r1" if "r1" in penalty else "d_penalty"
    assert result.step == 2 and all(math.isfinite(r[key]) for r in records if "g_loss" in r)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["train.amp=bf16", "train.channels_last=true"],
        ["train.amp=fp16", "train.channels_last=true", "train.fused_optim=false"],
        # Not with channels_last: on torch 2.11 inductor's compiled backward asserts on
        # ConvTranspose gradients there (docs/benchmarks.md); the reference nets compile fine.
        ["train.amp=bf16", "train.compile=default"],
    ],
    ids=["fp32", "bf16-nhwc", "fp16-nhwc-unfused", "bf16-compile"],
)
def test_cuda_training_fast_path(tmp_path, extra):
    config = gan(tmp_path, "train.device=cuda", "train.steps=4", "train.log_every=2", *extra)
    result = train(config, out_dir=tmp_path / "run")
    assert result.step == 4
    state = load_checkpoint(result.checkpoint)
    assert all(torch.isfinite(v).all() for v in state["networks"]["generator"].values())


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("first", ["false", "true"], ids=["unfused-then-fused", "fused-then-not"])
def test_cuda_resume_switches_the_adam_kernel(tmp_path, first):
    """Step counts saved by one kernel resume under the other on CUDA (the fused kernel was
    given CPU step counts: "Expected all tensors to be on the same device")."""
    then = "true" if first == "false" else "false"
    config = gan(tmp_path, "train.device=cuda", "train.steps=2", f"train.fused_optim={first}")
    run = train(config, out_dir=tmp_path / "run")
    resume = load_run_config(run.run_dir, ["train.steps=4", f"train.fused_optim={then}"])
    with pytest.warns(UserWarning, match="fused Adam"):
        assert train(resume, resume=run.run_dir).step == 4


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_compiled_cyclegan_trains_with_the_default_layout_norms(tmp_path):
    """Compiled channels-last CUDA training takes the layout-keeping norms by default and
    trains them compiled (the H100 whole run used reduce-overhead; here `default`: torch
    2.11's CUDA graph trees assert when one process builds a second graphed trainer)."""
    overrides = [*TINY_CYCLEGAN, "train.device=cuda", "train.amp=bf16", "eval.at_end=false"]
    extra = ["train.channels_last=true", "train.compile=default", "train.steps=3"]
    result = train(load_config("cyclegan-digits", [*overrides, *extra]), out_dir=tmp_path / "r")
    assert result.step == 3
    state = load_checkpoint(result.checkpoint)
    assert state["layout_norm"] is True
    for net in state["networks"].values():
        assert all(torch.isfinite(v).all() for v in net.values())
    assert "layout_norm: True" in (result.run_dir / "report.md").read_text()


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_cyclegan_fast_path_resumes(tmp_path):
    """A resumed CUDA run continues the uninterrupted one. cuDNN's backward kernels are not
    bitwise deterministic, so the yardstick is the gap between two identical full runs: the
    resumed run may differ from a full run by no more than that noise (with margin)."""
    overrides = [
        "data.limit=32",
        "model.generator.ngf=8",
        "model.discriminator.ndf=8",
        "train.batch_size=4",
        "train.device=cuda",
        "train.progress=false",
        "train.amp=bf16",
        "train.channels_last=true",
        "train.checkpoint_every=2",
        "eval.at_end=false",
        "cycle.preview=4",
    ]

    def weights(run):
        nets = load_checkpoint(run.checkpoint)["networks"]
        return torch.cat([v.float().flatten() for n in sorted(nets) for v in nets[n].values()])

    cfg = [*overrides, "train.steps=4"]
    full = weights(train(load_config("cyclegan-digits", cfg), tmp_path / "a"))
    again = weights(train(load_config("cyclegan-digits", cfg), tmp_path / "a2"))
    half = train(load_config("cyclegan-digits", [*overrides, "train.steps=2"]), tmp_path / "b")
    resumed = train(load_run_config(half.run_dir, ["train.steps=4"]), resume=half.run_dir)
    assert resumed.step == 4
    noise = (full - again).abs().max().item()
    gap = (full - weights(resumed)).abs().max().item()
    # A resume that lost optimiser state or the schedule would move weights by ~lr per step.
    assert gap <= 3 * noise + 1e-5, (gap, noise)


def test_report_names_the_switches_that_ran(tmp_path):
    result = train(gan(tmp_path, "train.steps=1", "train.channels_last=true"), tmp_path / "run")
    report = (result.run_dir / "report.md").read_text()
    assert "amp: off, compile: off, channels_last: True" in report


def test_sampling_bypasses_the_compiled_network():
    """Samples and evaluations run the plain forward: no compilation for eval mode or for
    their batch sizes."""
    from torch._dynamo.utils import counters

    from edgegan.train import fastpath

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Tanh())
    assert fastpath.eager(net) is net
    net.compile()
    before = dict(counters["stats"])
    with torch.no_grad():
        for n in (1, 3, 7):
            out = fastpath.eager(net)(torch.randn(n, 1, 8, 8))
            assert out.shape == (n, 2, 6, 6)
    assert dict(counters["stats"]) == before


def test_emulated_low_precision_on_the_cpu_warns(monkeypatch):
    """AMP on a CPU without bf16/fp16 instructions is emulated (11x slower measured): say so."""
    import warnings

    from edgegan.train.device import Precision

    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported", "_is_amx_fp16_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    cpu = torch.device("cpu")
    with pytest.warns(UserWarning, match="train.amp=bf16 on a CPU without native bf16"):
        Precision("bf16", cpu)
    with pytest.warns(UserWarning, match="train.amp=fp16 on a CPU without native fp16"):
        Precision("fp16", cpu)
    monkeypatch.setenv("RANK", "1")  # under torchrun only rank 0 says it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Precision("bf16", cpu)
    monkeypatch.delenv("RANK")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Precision("bf16", cpu)  # AMX: native
        Precision("off", cpu)


def test_fused_adam_on_the_cpu_too():
    """torch's fused Adam has a CPU kernel (torch 2.4): train.fused_optim (default on) used it
    only on CUDA; cyclegan-digits trains about 7% faster with it on 2 CPU cores."""
    from types import SimpleNamespace

    from edgegan.train.fastpath import make_adam

    cfg = SimpleNamespace(lr=1e-3, beta1=0.5, beta2=0.999, weight_decay=0.0)
    cpu = torch.device("cpu")
    weights = [torch.nn.Parameter(torch.ones(3))]
    fused = make_adam(weights, cfg, cpu, fused=True)
    plain = make_adam([torch.nn.Parameter(torch.ones(3))], cfg, cpu, fused=False)
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]
    for opt in (fused, plain):  # the same update, up to float rounding
        opt.param_groups[0]["params"][0].grad = torch.tensor([1.0, -2.0, 0.5])
        opt.step()
    torch.testing.assert_close(
        fused.param_groups[0]["params"][0], plain.param_groups[0]["params"][0]
    )


def test_a_resume_places_step_counts_for_the_kernel_that_runs(tmp_path, monkeypatch):
    """torch's load_state_dict places each parameter's Adam step count by the saved groups'
    kernel flags (on the CPU for an unfused run) and the trainer switched the kernel only
    afterwards: resumed with fused Adam on CUDA, the first step failed ("Expected all tensors
    to be on the same device ... state_steps"). On the CPU every tensor is on one device, so
    this spies on the placement torch decides."""
    from torch.optim import Optimizer

    policy = getattr(Optimizer, "_process_value_according_to_param_policy", None)
    if policy is None:
        pytest.skip("torch no longer places optimiser state through this method")
    run = train(
        load_config("dcgan-mnist", [*TINY_GAN, "train.steps=2", "train.fused_optim=false"]),
        out_dir=tmp_path / "r",
    )
    placed = []

    def spy(param, value, param_id, param_groups, key=None):
        if key == "step":
            group = next(g for g in param_groups if param_id in g["params"])
            placed.append(bool(group.get("fused")))
        return policy(param, value, param_id, param_groups, key)

    monkeypatch.setattr(Optimizer, "_process_value_according_to_param_policy", staticmethod(spy))
    resume = load_config("dcgan-mnist", [*TINY_GAN, "train.steps=3", "train.fused_optim=true"])
    with pytest.warns(UserWarning, match="resumed with fused Adam"):
        train(resume, resume=run.run_dir)
    assert placed and all(placed)  # as the fused kernel needs them


def test_fused_optim_given_on_resume_applies_and_warns(tmp_path):
    """torch's load_state_dict brought the saved kernel choice back: train.fused_optim=false
    on --resume was ignored (the run report said false). It applies now, with a warning that
    the run no longer continues exactly."""
    import warnings

    run = train(load_config("dcgan-mnist", [*TINY_GAN, "train.steps=2"]), out_dir=tmp_path / "r")
    resume = load_config("dcgan-mnist", [*TINY_GAN, "train.steps=3", "train.fused_optim=false"])
    with pytest.warns(UserWarning, match="resumed without fused Adam, the run trained with it"):
        train(resume, resume=run.run_dir)
    state = load_checkpoint(run.run_dir / "checkpoints/last.pt")
    groups = [g for o in state["optimizers"].values() for g in o["param_groups"]]
    assert groups and not any(g.get("fused") for g in groups)
    again = load_config("dcgan-mnist", [*TINY_GAN, "train.steps=4", "train.fused_optim=false"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as it trained since: no warning
        train(again, resume=run.run_dir)


def test_a_resume_with_other_fast_path_settings_warns_which_continue_it(tmp_path):
    """train.merge_calls or channels_last changed on --resume gave other weights than a run
    never stopped, silently (merged calls also advance a spectral norm's power iteration
    fewer times)."""
    import warnings

    run = train(load_config("dcgan-mnist", [*TINY_GAN, "train.steps=2"]), out_dir=tmp_path / "r")
    changed = ["train.steps=3", "train.merge_calls=false", "train.channels_last=true"]
    with pytest.warns(UserWarning) as caught:
        train(load_config("dcgan-mnist", [*TINY_GAN, *changed]), resume=run.run_dir)
    said = [str(w.message) for w in caught if "fast-path" in str(w.message)]
    assert said == [
        "resumed with other fast-path settings than the run trained with; "
        "train.channels_last=false (now true), train.merge_calls=true (now false) continue it "
        "exactly: they change the arithmetic (merged calls also a spectral norm's power "
        "iterations), so its weights will differ from a run never stopped"
    ]
    again = load_config("dcgan-mnist", [*TINY_GAN, "train.steps=4", *changed[1:]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as it trained since: no warning
        train(again, resume=run.run_dir)


def test_layout_norm_follows_compiled_channels_last_runs_on_cuda():
    """train.layout_norm null (the default) turns the layout-keeping norms on only where they
    were measured faster: compiled, channels-last, on CUDA; a set value always wins."""
    from types import SimpleNamespace

    from edgegan.train import fastpath

    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")

    def switches(**kw):
        base = {"layout_norm": None, "channels_last": True, "compile": "reduce-overhead"}
        return SimpleNamespace(**{**base, **kw})

    assert fastpath.layout_norm(switches(), cuda)
    assert fastpath.layout_norm(switches(compile="default"), cuda)
    assert not fastpath.layout_norm(switches(), cpu)
    assert not fastpath.layout_norm(switches(compile="off"), cuda)
    assert not fastpath.layout_norm(switches(channels_last=False), cuda)
    assert not fastpath.layout_norm(switches(layout_norm=False), cuda)
    assert fastpath.layout_norm(switches(layout_norm=True, compile="off"), cpu)
    assert load_config("cyclegan", []).train.layout_norm is None
    report = fastpath.describe(
        SimpleNamespace(**vars(switches()), amp="bf16", fused_optim=True, merge_calls=True), cuda
    )
    assert "layout_norm: True" in report


def test_the_default_layout_norm_on_the_cpu_keeps_plain_norms(tmp_path):
    """A compiled channels-last CPU run keeps aten's instance norm (the default resolves off),
    and its report says so."""
    config = load_config(
        "cyclegan-digits",
        [*TINY_CYCLEGAN, "train.steps=1", "eval.at_end=false", "train.channels_last=true"],
    )
    config.train.compile = "default"  # not fitted: no compile runs
    trainer = Trainer(config, tmp_path / "run")
    for name in trainer.task.networks:
        kinds = {type(m) for m in getattr(trainer.task, name).modules()}
        assert torch.nn.InstanceNorm2d in kinds, name


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_compiled_channels_last_cuda_runs_keep_the_layout_in_their_norms(tmp_path):
    from edgegan.nn.layers import LayoutInstanceNorm2d

    overrides = [*TINY_CYCLEGAN, "train.device=cuda", "train.channels_last=true"]
    config = load_config("cyclegan-digits", [*overrides, "train.compile=reduce-overhead"])
    trainer = Trainer(config, tmp_path / "run")
    for name in trainer.task.networks:
        norms = {type(m) for m in getattr(trainer.task, name).modules()}
        assert LayoutInstanceNorm2d in norms and torch.nn.InstanceNorm2d not in norms, name


def test_a_resume_that_switches_the_norms_says_so(tmp_path):
    """The checkpoint records the norms as resolved (null follows compile, layout and
    device); a resume that resolves otherwise warns as an Adam-kernel switch does, and the
    report gives the resolved value, not null."""
    common = [*TINY_CYCLEGAN, "eval.at_end=false", "train.channels_last=true"]
    first = load_config("cyclegan-digits", [*common, "train.steps=1", "train.layout_norm=true"])
    run = train(first, out_dir=tmp_path / "run")
    assert load_checkpoint(run.checkpoint)["layout_norm"] is True
    same = load_config("cyclegan-digits", [*common, "train.steps=2", "train.layout_norm=true"])
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        train(same, resume=run.run_dir)
    assert not [w for w in said if "layout-keeping" in str(w.message)]
    again = load_config("cyclegan-digits", [*common, "train.steps=3"])  # null: off on the CPU
    switched = (
        "resumed without layout-keeping instance norms, the run trained with them .*"
        r"\(train.layout_norm=true continues it exactly\)"
    )
    with pytest.warns(UserWarning, match=switched):
        train(again, resume=run.run_dir)
    assert load_checkpoint(run.checkpoint)["layout_norm"] is False
    assert "layout_norm: False" in (run.run_dir / "report.md").read_text()
    with pytest.raises(ConfigError, match="'train.layout_norm' must be bool or null, got str"):
        load_config("cyclegan-digits", ["train.layout_norm=maybe"])


# -- mutation testing, round 5: the fast-path helpers and devices on their own -----------------
def test_the_report_line_gives_each_switch_its_own_value():
    from types import SimpleNamespace

    from edgegan.train import fastpath

    switches = SimpleNamespace(
        amp="bf16",
        compile="max-autotune",
        channels_last=True,
        layout_norm=False,
        fused_optim=False,
        merge_calls=True,
    )
    assert fastpath.describe(switches) == (
        "amp: bf16, compile: max-autotune, channels_last: True, layout_norm: False, "
        "fused_optim: False, merge_calls: True"
    )


def test_compile_networks_compiles_each_network_in_its_mode(monkeypatch):
    """Every network of the task is compiled (not only the first), ``default`` is torch's
    mode None, the others pass through, and ``off`` compiles nothing."""
    from types import SimpleNamespace

    from edgegan.train import fastpath

    calls = []
    nets = {"generator": torch.nn.Linear(2, 2), "discriminator": torch.nn.Linear(2, 2)}
    for name, net in nets.items():
        monkeypatch.setattr(net, "compile", lambda name=name, **kw: calls.append((name, kw)))
    fastpath.compile_networks(nets, SimpleNamespace(compile="off"))
    assert calls == []
    for mode, expected in (("default", None), ("reduce-overhead", "reduce-overhead")):
        calls.clear()
        fastpath.compile_networks(nets, SimpleNamespace(compile=mode))
        assert calls == [
            (name, {"mode": expected, "dynamic": False}) for name in ("generator", "discriminator")
        ]


def test_eager_and_uncompiled_skip_a_compiled_call_and_uncompiled_gives_it_back():
    """``nn.Module.compile`` sets ``_compiled_call_impl``; a stand-in that records its calls
    shows which call ran without compiling anything."""
    from edgegan.train import fastpath

    torch.manual_seed(0)
    net, plain = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    expected = net(x)
    calls = []

    def compiled(*args, **kwargs):
        calls.append("compiled")
        return net._call_impl(*args, **kwargs)

    net._compiled_call_impl = compiled
    net(x)
    assert calls == ["compiled"]
    calls.clear()
    torch.testing.assert_close(fastpath.eager(net)(x), expected)  # sampling: eager
    assert calls == []
    with fastpath.uncompiled(net, plain):  # the penalties' double backward: eager
        torch.testing.assert_close(net(x), expected)
        plain(x)
    assert calls == []
    net(x)  # and compiled again after the block
    assert calls == ["compiled"] and plain._compiled_call_impl is None
    calls.clear()
    with pytest.raises(RuntimeError, match="in the block"), fastpath.uncompiled(net):
        raise RuntimeError("in the block")
    net(x)  # given back when the block fails too
    assert calls == ["compiled"]


def test_to_format_puts_each_4d_tensor_of_a_batch_in_the_layout():
    """Unpaired (cyclegan) batches are dicts; (images, labels) pairs are tuples."""
    from edgegan.train.fastpath import to_format

    torch.manual_seed(0)
    nhwc = torch.channels_last
    batch = {"A": torch.randn(2, 3, 4, 4), "B": torch.randn(2, 3, 4, 4), "A_path": ["a", "b"]}
    out = to_format(batch, nhwc)
    assert set(out) == {"A", "B", "A_path"} and out["A_path"] == ["a", "b"]
    for key in ("A", "B"):
        assert out[key].is_contiguous(memory_format=nhwc) and torch.equal(out[key], batch[key])
    pair = (torch.randn(2, 3, 4, 4), torch.arange(2))
    images, labels = to_format(pair, nhwc)
    assert isinstance(to_format(pair, nhwc), tuple)
    assert images.is_contiguous(memory_format=nhwc) and torch.equal(images, pair[0])
    assert labels is pair[1]
    assert to_format(batch, torch.contiguous_format) is batch


@pytest.mark.parametrize("fused", [True, False])
def test_adam_takes_the_configured_learning_rate_betas_and_weight_decay(fused):
    from types import SimpleNamespace

    from edgegan.train.fastpath import make_adam

    cfg = SimpleNamespace(lr=2e-4, beta1=0.5, beta2=0.99, weight_decay=0.01)
    opt = make_adam([torch.nn.Parameter(torch.ones(3))], cfg, torch.device("cpu"), fused=fused)
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (2e-4, (0.5, 0.99), 0.01)
    assert bool(group["fused"]) == fused


def test_resolve_device_refuses_a_gpu_past_the_last_and_devices_it_cannot_train_on(monkeypatch):
    from edgegan.train.device import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match=r"^train.device=cuda:2 but only 2 CUDA device\(s\)"):
        resolve_device("cuda:2")
    for name in ("mps", "meta", "xpu"):  # devices torch names; training runs on none
        with pytest.raises(
            ConfigError, match=f"^--device must be auto, cpu, cuda or cuda:N, got '{name}'"
        ):
            resolve_device(name, key="--device")


def test_each_amp_mode_computes_in_its_dtype_and_only_fp16_scales_its_losses(monkeypatch):
    from edgegan.train.device import Precision

    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported", "_is_amx_fp16_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: True, raising=False)  # no emulation warning
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    for mode, dtype in (("off", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        precision = Precision(mode, torch.device("cpu"))
        with precision.autocast():
            assert (a @ b).dtype == dtype, mode
        scaler = precision.scaler("generator")
        assert (scaler is not None) == (mode == "fp16"), mode
        assert precision.scaler("generator") is scaler  # one per optimiser, kept


def test_fp16_loss_scales_are_restored_from_a_checkpoint():
    """A resumed fp16 run goes on with each optimiser's loss scale, not torch's initial 65536."""
    import warnings

    from edgegan.train.device import Precision

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fp16 emulated on this CPU: said, and beside the point
        saved, restored = (
            Precision("fp16", torch.device("cpu")),
            Precision("fp16", torch.device("cpu")),
        )
    scaler = saved.scaler("discriminator")
    scaler.scale(torch.tensor(1.0))
    scaler.update(new_scale=128.0)
    restored.load_state_dict(saved.state_dict())
    assert restored.scaler("discriminator").get_scale() == 128.0


# -- mutation testing, round 6: the resolved train.layout_norm ---------------------------------
def test_a_runs_report_gives_the_layout_norm_it_resolved(tmp_path):
    """train.layout_norm null (the default) reads as what it resolved to on the run's device,
    not as None."""
    result = train(gan(tmp_path, "train.steps=1"), out_dir=tmp_path / "run")
    report = (result.run_dir / "report.md").read_text()
    assert "layout_norm: False" in report and "layout_norm: None" not in report


def test_a_set_layout_norm_swaps_the_norms_without_channels_last(tmp_path):
    """A set train.layout_norm wins over the other switches: NCHW networks get the
    layout-keeping norms too."""
    from edgegan.nn.layers import LayoutInstanceNorm2d

    overrides = [*TINY_CYCLEGAN, "train.steps=1", "train.layout_norm=true"]
    trainer = Trainer(load_config("cyclegan-digits", overrides), tmp_path / "run")
    for name in trainer.task.networks:
        norms = {type(m) for m in getattr(trainer.task, name).modules()}
        assert LayoutInstanceNorm2d in norms and torch.nn.InstanceNorm2d not in norms, name


def test_the_task_swaps_the_norms_as_fastpath_resolves_them_for_its_device(tmp_path, monkeypatch):
    """The networks follow fastpath.layout_norm(train, device), not train.layout_norm as set
    (null on a CUDA run resolves on: stood in for here, on the CPU)."""
    from edgegan.nn.layers import LayoutInstanceNorm2d
    from edgegan.train import fastpath

    asked = []

    def resolved(train_config, device):
        asked.append(device)
        return True

    monkeypatch.setattr(fastpath, "layout_norm", resolved)
    config = load_config("cyclegan-digits", [*TINY_CYCLEGAN, "train.steps=1"])
    assert config.train.layout_norm is None
    trainer = Trainer(config, tmp_path / "run")
    assert asked and set(asked) == {trainer.device}
    for name in trainer.task.networks:
        norms = {type(m) for m in getattr(trainer.task, name).modules()}
        assert LayoutInstanceNorm2d in norms, name


def test_cudnn_flags_are_set_for_the_block_and_given_back() -> None:
    """The one helper behind fid's FP32 convolutions and the compiled runner's autotuner."""
    from edgegan.train.device import cudnn_flags

    cudnn = torch.backends.cudnn
    was = (cudnn.benchmark, cudnn.allow_tf32)
    with (
        pytest.raises(RuntimeError, match="inside"),
        cudnn_flags(benchmark=not was[0], allow_tf32=not was[1]),
    ):
        assert (cudnn.benchmark, cudnn.allow_tf32) == (not was[0], not was[1])
        raise RuntimeError("inside")
    assert (cudnn.benchmark, cudnn.allow_tf32) == was
