"""Tiny configurations shared by the tests that need a trained run quickly, and the
global random streams' helpers of the tests that check a call keeps them."""

import random
import subprocess
import sys

import numpy as np
import torch

TINY_GAN = [
    "data.limit=128",
    "model.latent_dim=16",
    "model.generator.ngf=8",
    "model.discriminator.ndf=8",
    "train.batch_size=16",
    "train.steps=2",
    "train.device=cpu",
    "train.progress=false",
    "train.sample_grid=10",
    "eval.at_end=false",
]

#: What the tiny translation runs share: narrow networks, small batches, a quick evaluation.
_TINY_TRANSLATION = [
    "model.generator.ngf=4",
    "model.discriminator.ndf=8",
    "train.batch_size=4",
    "train.device=cpu",
    "train.progress=false",
    "train.log_every=2",
    "train.max_seconds=null",
    "eval.num_samples=16",
]

# Overrides of the `cyclegan-digits` preset (3-channel B, no identity loss).
TINY_CYCLEGAN = [
    "data.limit=64",
    "model.generator.name=resnet_6blocks",
    *_TINY_TRANSLATION,
    "cycle.preview=4",
]

#: Overrides of the pix2pix-digits preset for tests: 64 paired digits, a narrow U-Net.
TINY_PIX2PIX = ["data.limit=64", *_TINY_TRANSLATION, "pix2pix.preview=4"]


def seed_all(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global random streams."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def draws() -> tuple[float, float, float]:
    """The next value of each global random stream: equal after two runs of the same code
    from the same seeds, whatever a call in between drew and gave back."""
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def dequantized_constant_types(model) -> set[str]:
    """The element types of the constants an ONNX graph's DequantizeLinear nodes read:
    TensorRT parses INT8 ones only (an INT32 bias: "only activation types allowed")."""
    from onnx import TensorProto

    constants = {t.name: t.data_type for t in model.graph.initializer}
    return {
        TensorProto.DataType.Name(constants[n.input[0]])
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in constants
    }


def run_standalone_example(*args: str, fails: bool = False) -> str:
    """Run ``examples/run_bundle.py`` in a process where torch and edgegan cannot be
    imported (as on a deployment machine that has only the bundle); its stdout (its stderr
    when it is expected to fail: ``fails``)."""
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "run_bundle.py"
    code = (
        "import runpy, sys\n"
        "sys.modules['torch'] = sys.modules['edgegan'] = None  # import -> ImportError\n"
        f"sys.argv = {[str(script), *args]!r}\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if fails:
        assert proc.returncode != 0, proc.stdout
        return proc.stderr
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


#: Compute capabilities TensorRT-RTX runs engines on, as it said on an H100 (9.0): "Supported
#: compute capabilities: 8.0 8.6 8.9 12.0 12.1 >12.0".
RTX_CAPABILITIES = ((8, 0), (8, 6), (8, 9), (12, 0), (12, 1))
TENSORRT_NEEDED = "needs TensorRT (or tensorrt_rtx on a GPU it runs on) and a CUDA GPU"


def tensorrt_runs_here() -> bool:
    """TensorRT and a CUDA GPU, or TensorRT-RTX and a GPU it runs engines on (on an H100 it
    builds a plan and refuses to load it: the real-engine tests failed instead of skipping)."""
    import importlib.util

    if not torch.cuda.is_available():
        return False
    if importlib.util.find_spec("tensorrt"):
        return True
    if importlib.util.find_spec("tensorrt_rtx"):
        capability = gpu_capability()
        return capability in RTX_CAPABILITIES or capability > (12, 1)
    return False


def gpu_capability() -> tuple[int, int]:
    """The first GPU's compute capability, asked of another process: this is called while
    tests are collected, and asking here would initialise CUDA in the test process before
    any test forks (a forked child cannot use CUDA then)."""
    global _CAPABILITY
    if _CAPABILITY is None:
        code = "import torch; print(*torch.cuda.get_device_capability())"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        major, minor = (int(v) for v in out.stdout.split()) if out.returncode == 0 else (0, 0)
        _CAPABILITY = (major, minor)
    return _CAPABILITY


_CAPABILITY: tuple[int, int] | None = None


def count_checkpoint_loads(monkeypatch) -> list[str]:
    """The names of the checkpoint files edgegan reads (``load_checkpoint``) from now on."""
    from pathlib import Path

    import edgegan.train.checkpoint as ckpt

    loads: list[str] = []
    real = ckpt.load_checkpoint

    def counted(path, *args, **kwargs):
        loads.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(ckpt, "load_checkpoint", counted)
    return loads


def copy_with_a_newer_checkpoint(run, dest, name: str = "odd"):
    """``run`` copied to ``dest`` (without its bundle), with ``checkpoints/NAME.pt``: its last
    checkpoint as a newer edgegan's, whose config holds a key this one does not know."""
    import shutil

    from edgegan.train.checkpoint import atomic_save, load_checkpoint

    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("export"))
    state = load_checkpoint(dest / "checkpoints/last.pt")
    state["config"]["train"]["newer_switch"] = True
    atomic_save(state, dest / f"checkpoints/{name}.pt")
    return dest
