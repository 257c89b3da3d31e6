"""Distributed data-parallel training: 2 processes on the CPU with gloo against one process.

The equality tests check that N processes with the same global batch and seed compute what
one process computes. That holds only where every random draw and every statistic over the
batch is the same in both, which by design is not so in general: each rank draws its noise
from ``seed + rank``, and BatchNorm without ``train.sync_bn`` (CUDA only) normalises each
rank's slice on its own. So the equality tests

- draw the generator's latent ``z`` for the *whole* global batch from a seed that depends on
  the call only, and give each rank its slice (one process takes all of it): the same number
  for each sample on any number of ranks (:func:`_sliced_noise`);
- use networks whose output for a sample depends on that sample alone: a test generator
  without BatchNorm and the preset's spectrally normalised discriminator (GAN), the ResNet
  and PatchGAN with ``norm=none`` (CycleGAN). InstanceNorm is per sample too, but in the tiny
  test ResNet it turns the last-bit differences of a summed gradient into 2% after two
  steps, in one process as well (two half-batch backward passes averaged against one
  full-batch pass), which a tolerance cannot tell from a bug;
- switch off the remaining per-rank randomness: DiffAugment (GAN), the image pools and the
  random B pairing (CycleGAN).

Everything else is the real training path: rank slices of each global batch, DDP wrappers
averaging the gradients (several forwards per update, R1's double backward through the
wrapper, the frozen discriminator of the generator update run plain), losses averaged at
log time, EMA and checkpoints from the plain modules. Another test checks what per-rank
randomness must still give: a resumed 2-process run continues bit for bit (each rank's RNG
is checkpointed), and a NaN or a signal that one rank alone sees stops all ranks together.

The workers are spawned with a gloo process group of their own, which `train()` uses as it
finds it; the slow test runs the real `torchrun ... -m edgegan train` and `--resume`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image
from tiny import TINY_CYCLEGAN, TINY_GAN, TINY_PIX2PIX
from torch import nn

from edgegan import hookimpl
from edgegan.config import load_config, load_run_config
from edgegan.data import DataWarning
from edgegan.errors import ConfigError, TrainingDiverged
from edgegan.plugins.manager import PluginManager, reset_manager
from edgegan.train import train
from edgegan.train.checkpoint import load_checkpoint
from edgegan.train.distributed import LaunchEnv, check_config, launch_env, rank_device
from edgegan.train.gan import GANTask
from edgegan.train.stream import BatchIndices
from edgegan.train.trainer import Trainer

WORLD = 2

# GAN: no DiffAugment, R1 every other D step, two D steps per G step (several forwards of
# the wrapped D, and a double backward through it), a BatchNorm-free generator.
GAN_EQUAL = [
    *TINY_GAN,
    "model.generator.name=mlp-test",
    "train.augment=",
    "train.r1_gamma=1.0",
    "train.r1_every=2",
    "train.d_steps=2",
    "train.log_every=1",
    "train.sample_every=0",
    "train.steps=3",
]
# CycleGAN: B paired serially (not at random), no image pools.
CYCLEGAN_EQUAL = [
    *TINY_CYCLEGAN,
    "model.generator.norm=none",
    "model.discriminator.norm=none",
    "data.serial_batches=true",
    "cycle.pool_size=0",
    "train.log_every=1",
    "train.sample_every=0",
    "eval.at_end=false",
    "train.steps=2",
]
PIX2PIX_EQUAL = [
    *TINY_PIX2PIX,
    "model.generator.norm=none",
    "model.generator.use_dropout=false",
    "model.discriminator.norm=none",
    "train.log_every=1",
    "train.sample_every=0",
    "eval.at_end=false",
    "train.steps=2",
]


# -- test parts: a generator without BatchNorm, a loss that fails on one rank -----------------
class _MLPGenerator(nn.Module):
    """z (and labels) -> images through two linear layers: no statistics across the batch."""

    def __init__(
        self, latent_dim: int, channels: int, image_size: int, num_classes: int, width: int
    ) -> None:
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.image_shape = (channels, image_size, image_size)
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        z_dim = latent_dim * (2 if num_classes else 1)
        self.net = nn.Sequential(
            nn.Linear(z_dim, width), nn.LeakyReLU(0.2), nn.Linear(width, channels * image_size**2)
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return torch.tanh(self.net(z)).view(-1, *self.image_shape)


class _NaNOnRank1:
    """Hinge loss whose generator loss becomes NaN on rank 1 alone, at its 3rd call."""

    def __init__(self) -> None:
        self.calls = 0

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        bad = dist.is_initialized() and dist.get_rank() == 1 and self.calls >= 3
        return -fake.mean() * (float("nan") if bad else 1.0)


class _TestParts:
    @hookimpl
    def edgegan_register_models(self, register: Any) -> None:
        def build(
            latent_dim: int, channels: int, image_size: int, num_classes: int = 0, ngf: int = 8
        ) -> _MLPGenerator:
            return _MLPGenerator(latent_dim, channels, image_size, num_classes, width=8 * ngf)

        register("mlp-test", build, role="generator")

    @hookimpl
    def edgegan_register_losses(self, register: Any) -> None:
        register("nan-on-rank-1", _NaNOnRank1)


def _install_test_parts() -> None:
    manager = PluginManager(load_entry_points=False)
    manager.register(_TestParts(), name="test-parts")
    reset_manager(manager)


def _sliced_noise(self: GANTask, n: int, labels: torch.Tensor | None = None) -> Any:
    """``GANTask.sample_inputs`` drawing z for the whole global batch from a seed of the call
    count, and returning this rank's slice: the same z per sample on any number of ranks.
    (The generator is conditioned on the real labels, which the batch slices already give.)"""
    calls = getattr(self, "_test_calls", 0)
    self._test_calls = calls + 1
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    g = torch.Generator().manual_seed(1000 + calls)
    z = torch.randn(n * world, self.latent_dim, generator=g)[rank * n : (rank + 1) * n]
    return z, (labels if self.num_classes else None)


# -- spawning ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, port: int, job: Any, args: tuple, backend: str, one_gpu: bool) -> None:
    """A spawned rank: the torchrun environment, a process group, the test parts, ``job``.

    ``one_gpu``: every rank is local rank 0 of its own node, so ``train.device=cuda`` puts
    them all on cuda:0 (over gloo: NCCL refuses two ranks on one GPU)."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK="0" if one_gpu else str(rank),
        LOCAL_WORLD_SIZE="1" if one_gpu else str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    _install_test_parts()
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend)
    try:
        job(rank, *args)
    finally:
        dist.destroy_process_group()


def _spawn(job: Any, *args: Any, backend: str = "gloo", one_gpu: bool = False) -> None:
    port = _free_port()
    mp.spawn(_entry, args=(port, job, args, backend, one_gpu), nprocs=WORLD, join=True)


# -- one 2-process session leaves every run the tests below inspect ---------------------------
LOSSES = ("hinge", "lsgan")


def _session(rank: int, root: str) -> None:
    """Process start-up dominates the cost, so one spawned session trains all of them."""
    out = Path(root)
    step, noise = Trainer.train_step, GANTask.sample_inputs
    GANTask.sample_inputs = _sliced_noise  # type: ignore[method-assign]
    train(load_config("dcgan-mnist", GAN_EQUAL), out_dir=out / "gan")
    GANTask.sample_inputs = noise  # type: ignore[method-assign]
    train(load_config("cyclegan-digits", CYCLEGAN_EQUAL), out_dir=out / "cyclegan")
    train(load_config("pix2pix-digits", PIX2PIX_EQUAL), out_dir=out / "pix2pix")

    # Exact resume, with DiffAugment on: every rank draws its own augmentations (and z).
    base = [*TINY_GAN, "train.augment=translation,cutout", "train.checkpoint_every=2"]
    train(load_config("dcgan-mnist", [*base, "train.steps=4"]), out_dir=out / "full")
    half = train(load_config("dcgan-mnist", [*base, "train.steps=2"]), out_dir=out / "half")
    train(load_run_config(half.run_dir, ["train.steps=4"]), resume=half.run_dir)
    # ... and a CycleGAN, whose image pools (one per rank) are part of what resumes.
    cyc = [*TINY_CYCLEGAN, "eval.at_end=false", "train.checkpoint_every=2"]
    train(load_config("cyclegan-digits", [*cyc, "train.steps=4"]), out_dir=out / "cyc-full")
    half = train(load_config("cyclegan-digits", [*cyc, "train.steps=2"]), out_dir=out / "cyc-half")
    train(load_run_config(half.run_dir, ["train.steps=4"]), resume=half.run_dir)

    # A data folder with an image kind it leaves out: every rank lists it, rank 0 alone warns.
    folder = out / "folder-data" / "digits"
    if rank == 0:
        folder.mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (32, 32), (30 * i, 0, 0)).save(folder / f"{i}.png")
        (folder / "skipped.gif").write_bytes(b"GIF89a")
    dist.barrier()
    on_folder = ["data.name=folder", f"data.root={folder.parent}", "data.image_size=32"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(
            load_config("dcgan-mnist", [*TINY_GAN, *on_folder, "train.batch_size=4"]),
            out_dir=out / "folder",
        )
    shown = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    (out / f"warnings-{rank}.json").write_text(json.dumps(shown))

    # A NaN on rank 1 alone: both ranks stop at that step with one agreed error.
    nan = [*TINY_GAN, "loss.name=nan-on-rank-1", "train.steps=10"]
    try:
        train(load_config("dcgan-mnist", nan), out_dir=out / "nan")
    except TrainingDiverged as exc:
        outcome = {"error": str(exc), "agreed": getattr(exc, "agreed", False)}
    else:
        outcome = {"error": None}
    (out / f"nan-{rank}.json").write_text(json.dumps(outcome))

    # A config given to one rank alone: every rank refuses it before anything is written
    # (it hung until train.dist_timeout). Per-machine settings may differ.
    own = [f"train.steps={10 + rank}", f"train.num_workers={rank}", f"loss.name={LOSSES[rank]}"]
    try:
        train(load_config("dcgan-mnist", [*TINY_GAN, *own]), out_dir=out / "mismatch")
    except ConfigError as exc:
        outcome = {"error": str(exc), "agreed": getattr(exc, "agreed", False)}
    else:
        outcome = {"error": None}
    (out / f"mismatch-{rank}.json").write_text(json.dumps(outcome))

    # SIGTERM to rank 1 alone at step 3: every rank stops at the same step and saves.
    if rank == 1:

        def signalled_step(self: Trainer) -> Any:
            if self.step == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return step(self)

        Trainer.train_step = signalled_step  # type: ignore[method-assign]
    sig = train(load_config("dcgan-mnist", [*TINY_GAN, "train.steps=50"]), out_dir=out / "stop")
    Trainer.train_step = step  # type: ignore[method-assign]
    (out / f"stop-{rank}.json").write_text(json.dumps([sig.stopped_by, sig.step]))


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    _spawn(_session, str(root))
    return root


# -- comparing runs ---------------------------------------------------------------------------
def _assert_close(a: Any, b: Any, where: str, atol: float | None = 2e-5) -> None:
    """Nested checkpoint values equal: floats within ``atol`` (None: bit for bit)."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_close(a[k], b[k], f"{where}.{k}", atol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_close(x, y, f"{where}[{i}]", atol)
    elif torch.is_tensor(a):
        if a.is_floating_point() and atol is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=atol, msg=where)
        else:
            assert torch.equal(a, b), where
    else:
        assert a == b, where


def _metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_same_training(single: Path, ddp: Path) -> None:
    a = load_checkpoint(single / "checkpoints/last.pt")
    b = load_checkpoint(ddp / "checkpoints/last.pt")
    assert a["step"] == b["step"] and a["data"] == b["data"]
    _assert_close(a["networks"], b["networks"], "networks")  # keys: no "module." prefix
    _assert_close(a["optimizers"], b["optimizers"], "optimizers")
    if a["ema"] is not None:
        _assert_close(a["ema"], b["ema"], "ema")
    assert len(b["rng_ranks"]) == WORLD and "rng_ranks" not in a
    # The logged losses are the mean over the ranks: the losses of the global batch.
    for ra, rb in zip(_metrics(single), _metrics(ddp), strict=True):
        for key in ("g_loss", "d_loss", "d_real"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-6), (ra["step"], key)


def test_gan_on_two_processes_equals_one(ddp_runs, tmp_path, monkeypatch):
    _install_test_parts()
    monkeypatch.setattr(GANTask, "sample_inputs", _sliced_noise)
    train(load_config("dcgan-mnist", GAN_EQUAL), out_dir=tmp_path / "single")
    _assert_same_training(tmp_path / "single", ddp_runs / "gan")
    assert "2 processes (gloo)" in (ddp_runs / "gan/report.md").read_text()


def test_cyclegan_on_two_processes_equals_one(ddp_runs, tmp_path):
    train(load_config("cyclegan-digits", CYCLEGAN_EQUAL), out_dir=tmp_path / "single")
    _assert_same_training(tmp_path / "single", ddp_runs / "cyclegan")


def test_pix2pix_on_two_processes_equals_one(ddp_runs, tmp_path):
    train(load_config("pix2pix-digits", PIX2PIX_EQUAL), out_dir=tmp_path / "single")
    _assert_same_training(tmp_path / "single", ddp_runs / "pix2pix")


def test_warnings_about_the_shared_data_come_from_rank_zero_alone(ddp_runs):
    """Every rank reads the same folder; a torchrun job shows its warning once."""
    shown = [json.loads((ddp_runs / f"warnings-{r}.json").read_text()) for r in range(WORLD)]
    assert len(shown[0]) == 1 and "left out 1 .gif" in shown[0][0], shown
    assert shown[1:] == [[]] * (WORLD - 1)


def test_two_processes_resume_exactly_and_stop_together(ddp_runs):
    """Per-rank randomness: each rank's RNG is checkpointed, so a resumed run continues bit
    for bit; a NaN or a signal that one rank sees stops every rank at the same step."""
    runs = sorted(p.name for p in ddp_runs.iterdir() if p.is_dir())
    expected = "cyc-full cyc-half cyclegan folder folder-data full gan half nan pix2pix stop"
    assert runs == expected.split()  # folder-data: the data, written by the session itself
    full = load_checkpoint(ddp_runs / "full/checkpoints/last.pt")
    resumed = load_checkpoint(ddp_runs / "half/checkpoints/last.pt")
    assert resumed["step"] == 4
    for part in ("networks", "ema"):
        _assert_close(full[part], resumed[part], part, atol=None)
    for rank in range(WORLD):
        _assert_close(full["rng_ranks"][rank], resumed["rng_ranks"][rank], f"rng{rank}", None)
    assert not torch.equal(full["rng_ranks"][0]["torch"], full["rng_ranks"][1]["torch"])
    # CycleGAN: every rank's image pool is checkpointed and restored to that rank.
    full = load_checkpoint(ddp_runs / "cyc-full/checkpoints/last.pt")
    resumed = load_checkpoint(ddp_runs / "cyc-half/checkpoints/last.pt")
    _assert_close(full["networks"], resumed["networks"], "cyclegan networks", atol=None)
    _assert_close(full["extra_ranks"], resumed["extra_ranks"], "pools", atol=None)
    pools = [full["extra_ranks"][r]["pool_a"]["images"] for r in range(WORLD)]
    assert pools[0].shape == pools[1].shape and not torch.equal(pools[0], pools[1])

    nan = [json.loads((ddp_runs / f"nan-{r}.json").read_text()) for r in range(WORLD)]
    assert all(o["agreed"] for o in nan), nan
    assert nan[0]["error"].startswith("g_loss became nan on rank 1 at step 3"), nan
    assert nan[1]["error"].startswith("g_loss became nan at step 3"), nan

    mismatch = [json.loads((ddp_runs / f"mismatch-{r}.json").read_text()) for r in range(WORLD)]
    assert all(o["agreed"] for o in mismatch) and mismatch[0] == mismatch[1], mismatch
    assert mismatch[0]["error"] == (
        "the processes were given different configs, loss.name: 'hinge' on rank 0, 'lsgan' "
        "on rank 1; train.steps: 10 on rank 0, 11 on rank 1: give every process the same "
        "config file and overrides"
    )

    stops = [json.loads((ddp_runs / f"stop-{r}.json").read_text()) for r in range(WORLD)]
    assert stops[0] == stops[1] == ["signal", 4], stops  # signalled during step 4
    assert load_checkpoint(ddp_runs / "stop/checkpoints/last.pt")["step"] == 4


# -- on CUDA (skipped without it) ------------------------------------------------------------
CUDA = torch.cuda.is_available()


def _keep_weights(root: Path, rank: int) -> None:
    """Make every rank save its generator's weights after ``fit`` (rank 0's checkpoint alone
    cannot show that the ranks stayed in step). Parameters only: without SyncBatchNorm each
    rank's BatchNorm statistics follow its own slice of the batch."""
    fit = Trainer.fit

    def fit_and_keep(self: Trainer) -> Any:
        result = fit(self)
        net = self.task.module(self.task.sample_network)
        weights = {k: v.detach().cpu() for k, v in net.named_parameters()}
        torch.save(weights, root / f"{result.step}-{rank}.pt")
        return result

    Trainer.fit = fit_and_keep  # type: ignore[method-assign]


def _one_gpu_job(rank: int, root: str) -> None:
    out = Path(root)
    _keep_weights(out, rank)
    cuda = ["train.device=cuda", "train.dist_backend=gloo", "train.checkpoint_every=3"]
    # The GPU fast path: bf16 autocast, torch.compile with CUDA graphs, channels-last.
    # Eager bf16 + channels-last: CUDA graphs (compile=reduce-overhead) keep one tree per
    # process and assert when a second trainer records in the same process (torch 2.11).
    cuda += ["train.amp=bf16", "train.channels_last=true"]
    gan = train(load_config("dcgan-mnist", [*TINY_GAN, *cuda, "train.steps=3"]), out_dir=out / "g")
    train(load_run_config(gan.run_dir, ["train.steps=5"]), resume=gan.run_dir)
    cyc = [*TINY_CYCLEGAN, *cuda, "eval.at_end=false", "train.steps=4"]
    train(load_config("cyclegan-digits", cyc), out_dir=out / "c")


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_two_processes_on_one_gpu_with_the_fast_path(tmp_path):
    """DDP around networks compiled with CUDA graphs, in bf16 and channels-last: a GAN trains
    and resumes, a CycleGAN trains, and the ranks end with the same weights."""
    _spawn(_one_gpu_job, str(tmp_path), one_gpu=True)
    for step in (5, 4):  # the GAN after its resume, the CycleGAN
        a, b = (torch.load(tmp_path / f"{step}-{r}.pt", weights_only=True) for r in range(WORLD))
        _assert_close(a, b, f"generator at step {step}", atol=None)
    state = load_checkpoint(tmp_path / "g/checkpoints/last.pt")
    assert state["step"] == 5 and len(state["rng_ranks"]) == WORLD
    assert "cuda:0" in (tmp_path / "g/report.md").read_text()


def _nccl_job(rank: int, root: str) -> None:
    torch.backends.cudnn.allow_tf32 = False  # TF32 convolutions round differently per batch
    GANTask.sample_inputs = _sliced_noise  # type: ignore[method-assign]
    train(load_config("dcgan-mnist", NCCL_EQUAL), out_dir=Path(root) / "ddp")


# The real DCGAN generator (BatchNorm) over the global batch through SyncBatchNorm; eager
# FP32 so that one GPU and two compute the same sums.
NCCL_EQUAL = [
    *[o for o in GAN_EQUAL if not o.startswith("model.generator.name=")],
    "train.device=cuda",
    "train.sync_bn=true",
    "train.amp=off",
    "train.compile=off",
    "train.channels_last=false",
    "train.cudnn_benchmark=false",
]


@pytest.mark.skipif(not CUDA or torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_gpus_with_nccl_and_sync_bn_equal_one(tmp_path, monkeypatch):
    _spawn(_nccl_job, str(tmp_path), backend="nccl")
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(GANTask, "sample_inputs", _sliced_noise)
    train(load_config("dcgan-mnist", NCCL_EQUAL), out_dir=tmp_path / "single")
    a = load_checkpoint(tmp_path / "single/checkpoints/last.pt")
    b = load_checkpoint(tmp_path / "ddp/checkpoints/last.pt")
    _assert_close(a["networks"], b["networks"], "networks", atol=1e-4)


# -- fast checks without processes ------------------------------------------------------------
@pytest.mark.parametrize("world", [2, 4])
def test_rank_slices_make_up_each_global_batch(world):
    """Across an epoch boundary and from a resume point, the ranks' slices of each global
    batch are disjoint and together are the batch one process takes."""
    single = iter(BatchIndices(40, 8, seed=3, start=3))
    ranks = [
        iter(BatchIndices(40, 8, seed=3, start=3, rank=r, world_size=world)) for r in range(world)
    ]
    for _ in range(12):  # 5 batches an epoch
        assert sum((next(it) for it in ranks), []) == next(single)
    with pytest.raises(ValueError, match="cannot split"):
        BatchIndices(40, 6, seed=3, world_size=4)


def test_distributed_settings_are_checked(tmp_path):
    config = load_config("dcgan-mnist", ["train.batch_size=30"])
    check_config(config, 1)
    check_config(config, 3)
    with pytest.raises(ConfigError, match=r"global batch.*divisible by 4 \(e.g. .*=32\)"):
        check_config(config, 4)
    with pytest.raises(ConfigError, match="dist_backend must be one of auto, nccl, gloo"):
        check_config(load_config("dcgan-mnist", ["train.dist_backend=mpi"]), 1)
    with pytest.raises(ConfigError, match="dist_timeout must be > 0"):
        check_config(load_config("dcgan-mnist", ["train.dist_timeout=0"]), 1)
    # One process checks them too: a typo fails before anything is written.
    with pytest.raises(ConfigError, match="dist_backend"):
        train(load_config("dcgan-mnist", ["train.dist_backend=ncl"]), out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_backend_auto_is_gloo_where_torch_has_no_nccl(monkeypatch):
    """torch for Windows has no NCCL: auto chose it for CUDA, and the process group failed."""
    from edgegan.train import distributed

    cuda = torch.device("cuda", 0)
    config = load_config("dcgan-mnist")
    monkeypatch.setattr(distributed.dist, "is_nccl_available", lambda: True)
    assert distributed._backend(config, cuda) == "nccl"
    monkeypatch.setattr(distributed.dist, "is_nccl_available", lambda: False)
    assert distributed._backend(config, cuda) == "gloo"
    assert distributed._backend(config, torch.device("cpu")) == "gloo"
    with pytest.raises(ConfigError, match="this torch has no NCCL; use gloo"):
        distributed._backend(load_config("dcgan-mnist", ["train.dist_backend=nccl"]), cuda)


def test_launch_environment_and_devices():
    assert launch_env({}) is None
    env = launch_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"})
    assert env == LaunchEnv(3, 8, 1, 4)
    with pytest.raises(ConfigError, match="bad distributed environment"):
        launch_env({"RANK": "8", "WORLD_SIZE": "8"})
    assert rank_device("cpu", env) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_a_cuda_rank_without_cuda_is_one_clear_error():
    env = LaunchEnv(3, 8, 1, 4)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        rank_device("cuda", env)


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 GPUs"
)
def test_each_rank_takes_the_gpu_of_its_local_rank():
    env = LaunchEnv(3, 8, 1, 4)
    assert rank_device("cuda", env) == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="one GPU"):
        rank_device("cuda:0", env)


# -- the command line through torchrun --------------------------------------------------------
CLI_TINY = [*TINY_GAN, "train.log_every=10", "train.checkpoint_every=10"]


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={WORLD}", "-m", "edgegan", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_torchrun_trains_resumes_and_reports_errors_once(tmp_path):
    run = tmp_path / "run"
    proc = _torchrun("dcgan-mnist", *CLI_TINY, "train.steps=20", "--out", str(run), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("done: 20 steps") == 1  # rank 0 alone reports
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    proc = _torchrun("--resume", str(run), "train.steps=30", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("done: 30 steps") == 1
    state = load_checkpoint(run / "checkpoints/last.pt")
    assert state["step"] == 30 and state["data"]["consumed"] == 30
    assert not any(k.startswith("module.") for k in state["networks"]["generator"])
    assert [r["step"] for r in _metrics(run)] == [10, 20, 30]
    assert (run / "samples/final.png").is_file()
    # A config that N processes cannot run: one error line, a non-zero exit.
    proc = _torchrun("dcgan-mnist", *CLI_TINY, "train.batch_size=15", cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0
    assert errors == [
        "error: train.batch_size=15 is the global batch, split over 2 processes: it must be "
        "divisible by 2 (e.g. train.batch_size=16)"
    ]


@pytest.mark.parametrize(
    "mistake", [["train.device=tpu"], ["train.dist_backend=nccl", "train.device=cpu"]]
)
def test_device_and_backend_mistakes_are_reported_once(tmp_path, mistake):
    """Every process makes them alike (they fail before the process group starts)."""
    proc = _torchrun("dcgan-mnist", *CLI_TINY, *mistake, "--out", str(tmp_path / "r"), cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0
    assert len(errors) == 1 and "[rank" not in errors[0], proc.stderr
    assert not (tmp_path / "r").exists()


def test_device_mistakes_are_agreed_and_a_missing_gpu_is_rank_local(monkeypatch):
    env = LaunchEnv(1, 2, 1, 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("tpu", "cuda"):  # the same on every process of the node
        with pytest.raises(ConfigError) as caught:
            rank_device(name, env)
        assert getattr(caught.value, "agreed", False), name
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="one GPU") as caught:
        rank_device("cuda:0", env)
    assert getattr(caught.value, "agreed", False)
    with pytest.raises(ConfigError, match="process 1 of this node needs cuda:1") as caught:
        rank_device("cuda", env)  # this process's GPU alone is missing
    assert not getattr(caught.value, "agreed", False)


def test_resuming_a_multi_process_run_in_one_process_says_so():
    from edgegan.train.checkpoint import rng_state
    from edgegan.train.distributed import Distributed

    one = Distributed()
    state = {"rng": rng_state(), "rng_ranks": [rng_state(), rng_state()], "step": 4}
    with pytest.warns(UserWarning, match="saved by 2 processes and resumes in one"):
        one.restore_rng(state, seed=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one.restore_rng({"rng": rng_state(), "step": 4}, seed=0)  # saved by one: quiet


@pytest.mark.parametrize(
    "raised, expected",
    [
        (  # gloo, the rank waiting for a busy process 0 (the message seen with torch 2.13)
            "[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:129] Timed out "
            "waiting 3000ms for send operation to complete",
            "error: [rank 1] a collective waited longer than train.dist_timeout=3 s: another "
            "process is stuck, or was busy for longer (process 0 evaluates, validates, writes "
            "samples and checkpoints while the others wait: raise train.dist_timeout): Timed "
            "out waiting 3000ms for send operation to complete",
        ),
        (  # gloo, the other end of a lost process
            "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by "
            "peer [127.0.0.1]:55947. This is typically caused by a remote worker crashing.",
            "error: [rank 1] a collective failed, most likely because another process failed "
            "or was stopped (see its error): Connection closed by peer [127.0.0.1]:55947",
        ),
    ],
)
def test_a_collective_timeout_or_a_lost_peer_is_one_line_of_this_rank(
    monkeypatch, capsys, raised, expected
):
    """A timeout was a 70-line traceback that blamed nothing (only lost peers were known)."""
    import edgegan.train.distributed as distributed
    from edgegan.cli import _report

    config = load_config("dcgan-mnist", [*TINY_GAN, "train.dist_timeout=3"])
    monkeypatch.setattr(distributed, "launch_env", lambda: LaunchEnv(1, 2, 1, 2))
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: None)  # no peers here
    for key, value in (("RANK", "1"), ("WORLD_SIZE", "2")):
        monkeypatch.setenv(key, value)
    with pytest.raises(distributed.DistributedError) as caught:
        with distributed.session(config):
            raise RuntimeError(raised)
    assert caught.value.rank_local and caught.value.__cause__ is None
    _report(caught.value, str(caught.value))  # as the CLI prints it, on rank 1 too
    assert capsys.readouterr().err.strip() == expected


def test_the_resume_command_is_launched_as_the_run_was(monkeypatch):
    """A torchrun job told to continue with `edgegan train --resume` trained on one process."""
    from edgegan.train.distributed import resume_command

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert resume_command("runs/my run") == "edgegan train --resume 'runs/my run'"
    assert resume_command("-dash") == "edgegan train --resume ./-dash"  # not an option
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert resume_command("runs/a") == (
        "torchrun --standalone --nproc-per-node 4 -m edgegan train --resume runs/a"
    )
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two nodes of two
    assert resume_command("runs/a") == (
        "torchrun (the same options on every node) -m edgegan train --resume runs/a"
    )
    monkeypatch.setenv("WORLD_SIZE", "x")  # unreadable: the plain command, not a failure
    assert resume_command("runs/a") == "edgegan train --resume runs/a"
