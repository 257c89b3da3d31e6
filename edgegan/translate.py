"""Translating images with a trained CycleGAN (``edgegan infer RUN --direction AtoB --input``).

Images of any size are padded (edge replication) to a multiple the generator accepts, run
through it, and cropped back, so each output has its input's size and file name (as PNG).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgegan.errors import EdgeganError

DIRECTIONS = ("AtoB", "BtoA")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


def load_translator(run_dir: str | Path, direction: str, device: str = "cpu") -> tuple[Any, int]:
    """The generator of one direction of a cyclegan run (EMA weights for A->B when kept),
    in eval mode, and the number of channels it reads."""
    import torch

    from edgegan.config import config_from_dict
    from edgegan.plugins.manager import get_manager
    from edgegan.train.checkpoint import load_checkpoint
    from edgegan.train.trainer import CHECKPOINT

    if direction not in DIRECTIONS:
        raise EdgeganError(f"--direction must be AtoB or BtoA, got '{direction}'")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EdgeganError(f"run directory not found: {run_dir}")
    state = load_checkpoint(run_dir / CHECKPOINT)
    spec = state["spec"]
    if spec.get("task") != "cyclegan":
        raise EdgeganError(f"{run_dir} is a '{spec.get('task')}' run; --direction needs a cyclegan")
    ca, cb = spec["channels_a"], spec["channels_b"]
    c_in, c_out, name = (ca, cb, "g_ab") if direction == "AtoB" else (cb, ca, "g_ba")
    g = config_from_dict(state["config"]).model.generator
    context = {"channels": c_in, "channels_out": c_out, "image_size": spec["image_size"]}
    module = get_manager().registry("models").build(g.name, g.params, context, role="generator")
    ema = state.get("ema") if direction == "AtoB" else None
    module.load_state_dict(ema if ema is not None else state["networks"][name])
    return module.to(torch.device(device)).eval(), c_in


def _inputs(path: Path) -> list[tuple[Path, Path]]:
    """(file, its path relative to the input) for an image or every image under a folder."""
    if path.is_file():
        return [(path, Path(path.name))]
    if not path.is_dir():
        raise EdgeganError(f"--input not found: {path}")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EdgeganError(f"no images (PNG/JPEG/...) under {path}")
    return [(p, p.relative_to(path)) for p in files]


def translate(
    run_dir: str | Path,
    direction: str,
    input_path: str | Path,
    out: str | Path,
    device: str = "cpu",
    overwrite: bool = False,
) -> list[Path]:
    """Translate an image or a folder of images; writes ``out/<same relative name>.png``."""
    import torch
    import torch.nn.functional as F

    from edgegan.data.transforms import load_image, save_png, to_tensor
    from edgegan.sampling import prepare_out_dir

    module, channels = load_translator(run_dir, direction, device)
    files = _inputs(Path(input_path))
    out = prepare_out_dir(out, overwrite)
    multiple = int(getattr(module, "size_multiple", 4))
    dev = next(module.parameters()).device
    written = []
    with torch.no_grad():
        for src, rel in files:
            x = to_tensor(load_image(src, channels)).unsqueeze(0).to(dev)
            h, w = x.shape[-2:]
            ph, pw = (-h) % multiple, (-w) % multiple
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph), mode="replicate")
            y = module(x)[..., :h, :w].float().clamp(-1, 1).cpu()[0]
            written.append(save_png(y, (out / rel).with_suffix(".png")))
    return written
