"""Import checkpoints of the reference CycleGAN/pix2pix code (junyanz/pytorch-CycleGAN-and-pix2pix).

edgegan's ResNet and U-Net generators and its PatchGAN and pixel discriminators are built
with the reference's layers in the reference's order (``edgegan/nn``), so a reference
``*_net_G_A.pth`` (a plain ``state_dict``) loads into the edgegan network of the same shape.
:func:`import_reference` reads that shape from the weights themselves (generator kind,
blocks or depth, widths, channels, norm, the ResNet's dropout), the training settings from
the run's ``train_opt.txt`` (or ``opt.txt``, also in the older versions' option names) when
it is there, and writes an edgegan run directory: ``edgegan export`` and ``infer`` take it
as a run trained here, and ``train.init_from`` fine-tunes from it. The reference saves no
optimiser state, so an imported run cannot be resumed.

Quirks of the reference's files handled here: the ``running_mean``/``running_var`` that
InstanceNorm layers of PyTorch before 0.4 saved (the reference drops them too), a
``module.`` prefix (weights saved from a DataParallel wrapper), and convolutions without a
bias before ``norm=none`` (the reference drops the bias there; edgegan keeps one, zero).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from edgegan.errors import ConfigError, EdgeganError, caller_stacklevel

REFERENCE = "junyanz/pytorch-CycleGAN-and-pix2pix"

#: Written into an imported run directory: where its weights came from and what was read.
IMPORTED = "imported.json"

OPTION_FILES = ("train_opt.txt", "opt.txt")

#: The reference's ``--gan_mode`` -> edgegan's loss.
_LOSSES = {"lsgan": "lsgan", "vanilla": "bce", "wgangp": "wgan-gp"}
_PREPROCESS = ("resize_and_crop", "scale_width_and_crop", "crop")
#: Option names of the reference before its 2018-2020 renames -> today's.
_LEGACY = {
    "which_direction": "direction",
    "fineSize": "crop_size",
    "loadSize": "load_size",
    "batchSize": "batch_size",
    "niter": "n_epochs",
    "niter_decay": "n_epochs_decay",
    "resize_or_crop": "preprocess",
    "identity": "lambda_identity",
    "which_model_netG": "netG",
    "which_model_netD": "netD",
}
_STATS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class Network:
    """One network read from a reference weights file: the edgegan part and its weights."""

    name: str  # edgegan model name: resnet_9blocks, unet_256, patchgan, ...
    params: dict[str, Any]
    channels: int  # input channels
    channels_out: int  # generators' output channels (0 for a discriminator)
    weights: dict[str, Any] = field(repr=False)
    source: Path
    size_multiple: int = 1  # what a generator's image sides must be a multiple of

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name} ({shown})"


def read_options(path: str | Path) -> dict[str, str]:
    """The options a reference run printed to ``train_opt.txt`` (``name: value`` lines, each
    maybe followed by ``[default: ...]``), as strings."""
    options: dict[str, str] = {}
    line_re = re.compile(r"^\s*([A-Za-z_][\w]*):\s?(.*?)\s*(?:\[default: .*\])?\s*$")
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        m = line_re.match(line)
        if m:
            options[m.group(1)] = m.group(2).strip()
    return options


def load_weights(path: str | Path) -> dict[str, Any]:
    """A reference ``.pth`` as a state dict of tensors (``weights_only``: no code runs), with a
    DataParallel ``module.`` prefix taken off."""
    import torch

    from edgegan.train.checkpoint import why_unloadable

    path = Path(path)
    if not path.is_file():
        raise EdgeganError(f"{path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # garbage fails the unpickler in many ways (see why_unloadable)
        raise EdgeganError(f"cannot load {path}: {why_unloadable(path, exc)}") from None
    if not isinstance(state, dict) or not state:
        raise EdgeganError(f"{path} does not hold a state dict (a mapping of tensor names)")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise EdgeganError(f"{path} is not a network's state dict (not only named tensors)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def _norm(weights: dict[str, Any], norm_key: str, conv_key: str) -> str:
    """The norm after a convolution: affine parameters are BatchNorm's (the reference's
    InstanceNorm has none); else a conv bias means InstanceNorm (the reference drops the bias
    before BatchNorm and before no norm)."""
    if f"{norm_key}.weight" in weights:
        return "batch"
    return "instance" if f"{conv_key}.bias" in weights else "none"


def read_generator(weights: dict[str, Any], source: Path) -> Network:
    """The edgegan generator a reference generator's weights fit: ResNet (``model.N``) or
    U-Net (``model.model.N``, nested blocks)."""
    if "model.model.0.weight" in weights:
        return _unet(weights, source)
    if "model.1.weight" in weights and weights["model.1.weight"].dim() == 4:
        return _resnet(weights, source)
    raise EdgeganError(
        f"{source} is not a reference generator (ResNet or U-Net: no 'model.1.weight' or "
        "'model.model.0.weight'); a discriminator's file (net_D) holds no generator"
    )


def _resnet(weights: dict[str, Any], source: Path) -> Network:
    from edgegan.nn.resnet import ResnetGenerator

    first = weights["model.1.weight"]
    if tuple(first.shape[2:]) != (7, 7):
        raise EdgeganError(f"{source}: the first conv is {tuple(first.shape[2:])}, not 7x7")
    blocks = sorted({int(k.split(".")[1]) for k in weights if ".conv_block." in k})
    n_blocks = len(blocks)
    if n_blocks not in (6, 9):
        raise EdgeganError(
            f"{source}: a ResNet generator of {n_blocks} blocks; edgegan builds 6 "
            "(resnet_6blocks) and 9 (resnet_9blocks)"
        )
    # With dropout, the block's second conv moves from index 5 to 6 (Dropout sits at 4).
    second = weights.get(f"model.{blocks[0]}.conv_block.6.weight")
    use_dropout = second is not None and second.dim() == 4
    convs = [k for k, v in weights.items() if k.endswith(".weight") and v.dim() == 4]
    last = max(convs, key=lambda k: int(k.split(".")[1]) if "conv_block" not in k else -1)
    params = {
        "ngf": int(first.shape[0]),
        "norm": _norm(weights, "model.2", "model.1"),
        "use_dropout": use_dropout,
    }
    name = f"resnet_{n_blocks}blocks"
    c_in, c_out = int(first.shape[1]), int(weights[last].shape[0])
    return Network(name, params, c_in, c_out, weights, source, ResnetGenerator.size_multiple)


def _unet(weights: dict[str, Any], source: Path) -> Network:
    # Each block's Sequential holds its submodule at index 1 (outermost) or 3 (the others).
    depth, prefix = 1, "model.model.1.model."
    while any(k.startswith(prefix) for k in weights):
        depth += 1
        prefix += "3.model."
    outer = weights["model.model.0.weight"]
    up = weights.get("model.model.3.weight")
    if up is None or depth < 5:
        raise EdgeganError(f"{source}: not a reference U-Net (depth {depth}, at least 5)")
    params: dict[str, Any] = {
        "ngf": int(outer.shape[0]),
        "norm": _norm(weights, "model.model.1.model.2", "model.model.1.model.1"),
    }
    names = {7: "unet_128", 8: "unet_256"}
    if depth not in names:
        params["num_downs"] = depth
    # Dropout has no weights: the caller sets use_dropout from the run's options.
    name = names.get(depth, "unet")
    return Network(name, params, int(outer.shape[1]), int(up.shape[1]), weights, source, 2**depth)


def read_discriminator(weights: dict[str, Any], source: Path) -> Network:
    """The edgegan discriminator a reference ``NLayerDiscriminator`` (``model.N``, 4x4 convs)
    or ``PixelDiscriminator`` (``net.N``, 1x1 convs) fits."""
    if "net.0.weight" in weights:
        first = weights["net.0.weight"]
        params = {"ndf": int(first.shape[0]), "norm": _norm(weights, "net.3", "net.2")}
        return Network("pixel", params, int(first.shape[1]), 0, weights, source)
    first = weights.get("model.0.weight")
    if first is None or tuple(first.shape[2:]) != (4, 4):
        raise EdgeganError(f"{source} is not a reference discriminator (PatchGAN or pixel)")
    convs = [k for k, v in weights.items() if k.endswith(".weight") and v.dim() == 4]
    params = {
        "ndf": int(first.shape[0]),
        "n_layers": len(convs) - 2,  # n_layers strided convs after the first, then two
        "norm": _norm(weights, "model.3", "model.2"),
    }
    return Network("patchgan", params, int(first.shape[1]), 0, weights, source)


def fitted(module: Any, net: Network, what: str) -> dict[str, Any]:
    """``net``'s weights as ``module`` (the edgegan network built for them) loads them:
    pre-0.4 InstanceNorm statistics dropped, zero biases where the reference has none."""
    import torch

    ours = module.state_dict()
    weights = {
        k: v for k, v in net.weights.items() if k in ours or k.rsplit(".", 1)[-1] not in _STATS
    }
    for key, value in ours.items():
        owner = key.rsplit(".", 1)[0]
        if key.endswith(".bias") and key not in weights and f"{owner}.weight" in weights:
            weights[key] = torch.zeros_like(value)
    try:
        module.load_state_dict(weights)
    except RuntimeError as exc:
        from edgegan.train.checkpoint import mismatch

        raise EdgeganError(
            f"{net.source} does not fit edgegan's {net.describe()} as {what} ({mismatch(exc)})"
        ) from None
    return module.state_dict()


@dataclass
class _Source:
    task: str
    files: dict[str, Path]  # reference network name (G_A, G, D_B, ...) -> file
    options: dict[str, str]
    options_file: Path | None


def _find(source: Path, epoch: str) -> _Source:
    if source.is_file():
        folder, files = source.parent, {"G": source}
        task = "pix2pix"  # one generator: one direction, as the pix2pix task holds it
    elif source.is_dir():
        folder = source
        found = {
            n: source / f"{epoch}_net_{n}.pth"
            for n in ("G_A", "G_B", "D_A", "D_B", "G", "D")
            if (source / f"{epoch}_net_{n}.pth").is_file()
        }
        if "G_A" in found and "G_B" in found:
            task, files = (
                "cyclegan",
                {n: found[n] for n in ("G_A", "G_B", "D_A", "D_B") if n in found},
            )
        elif "G" in found:
            task, files = "pix2pix", {n: found[n] for n in ("G", "D") if n in found}
        else:
            have = sorted(p.name for p in source.glob("*_net_*.pth"))[:6]
            hint = f" (it has {', '.join(have)}: pass --epoch)" if have else ""
            raise EdgeganError(
                f"{source} holds no {epoch}_net_G_A.pth and _G_B.pth (CycleGAN) or "
                f"{epoch}_net_G.pth (pix2pix){hint}"
            )
    else:
        raise EdgeganError(f"{source} not found (a reference checkpoints folder or a .pth file)")
    options_file = next((folder / n for n in OPTION_FILES if (folder / n).is_file()), None)
    options = read_options(options_file) if options_file else {}
    return _Source(task, files, options, options_file)


def modern_options(options: dict[str, str]) -> dict[str, str]:
    """``options`` under today's names: older reference versions wrote ``which_direction``,
    ``fineSize``, ``niter``, ``no_lsgan``, ... (:data:`_LEGACY`), and their pix2pix weighed
    its L1 loss by ``lambda_A``."""
    out = dict(options)
    for old, new in _LEGACY.items():
        if old in options and new not in options:
            out[new] = options[old]
    if "gan_mode" not in out and options.get("no_lsgan") in ("True", "False"):
        out["gan_mode"] = "vanilla" if options["no_lsgan"] == "True" else "lsgan"
    if "lambda_L1" not in out and out.get("model") == "pix2pix" and "lambda_A" in options:
        out["lambda_L1"] = options["lambda_A"]
    return out


def _number(options: dict[str, str], key: str, cast: Any) -> Any:
    try:
        return cast(options[key])
    except (KeyError, ValueError):
        return None


def _settings(options: dict[str, str], task: str, backwards: bool) -> tuple[list[str], list[str]]:
    """``key=value`` overrides for the reference options that have an edgegan setting (the
    rest keep the preset's value, the reference's default), and notes on what does not
    carry over."""
    out: list[str] = []
    notes: list[str] = []

    def put(key: str, value: Any) -> None:
        if value is not None:
            out.append(f"{key}={value}")

    put("data.load_size", _number(options, "load_size", int))
    mode = options.get("preprocess")
    if mode in _PREPROCESS:
        put("data.preprocess", mode)
    elif mode:
        notes.append(
            f"preprocess {mode} has no edgegan equivalent: the run keeps resize_and_crop (for "
            "fine-tuning and infer --resize train)"
        )
    if options.get("no_flip") in ("True", "False"):
        put("data.flip", "false" if options["no_flip"] == "True" else "true")
    put("loss.name", _LOSSES.get(options.get("gan_mode", "")))
    if options.get("gan_mode") == "wgangp":
        notes.append(
            "the reference's wgangp applies no gradient penalty in its cycle_gan and pix2pix "
            "models; edgegan's wgan-gp does (loss.gp_weight=0 for none)"
        )
    put("train.batch_size", _number(options, "batch_size", int))
    kept, decay = (_number(options, k, int) for k in ("n_epochs", "n_epochs_decay"))
    if kept is not None and decay is not None:
        put("train.epochs", kept + decay)
        if kept != decay:
            notes.append(
                f"the reference kept the learning rate for {kept} epochs and decayed it over "
                f"{decay}; edgegan's linear schedule decays from half-way (to fine-tune on its "
                "schedule, set train.lr_decay_start to the step where epoch "
                f"{kept} ends)"
            )
    if options.get("lr_policy", "linear") != "linear":
        notes.append(f"lr_policy {options['lr_policy']} is not carried over: the run's is linear")
    for net in ("g", "d"):
        put(f"optim.{net}.lr", _number(options, "lr", float))
        put(f"optim.{net}.beta1", _number(options, "beta1", float))
    if task == "cyclegan":
        # lambda_A weighs the cycle of the reference's A: trainB after --direction BtoA
        a, b = ("lambda_B", "lambda_A") if backwards else ("lambda_A", "lambda_B")
        put("cycle.lambda_a", _number(options, a, float))
        put("cycle.lambda_b", _number(options, b, float))
        put("cycle.lambda_identity", _number(options, "lambda_identity", float))
        put("cycle.pool_size", _number(options, "pool_size", int))
    else:
        put("pix2pix.lambda_l1", _number(options, "lambda_L1", float))
    return out, notes


def _network_notes(options: dict[str, str], nets: dict[str, Network], file: str) -> list[str]:
    """A note when the options' network settings (``netG``, ``ngf``, ``netD``, ``n_layers_D``,
    ``ndf``, ``norm``) disagree with the weights: the run is built from the weights, and the
    options file may be another run's (copied into the wrong folder, or a later run's). The
    file's values are quoted as it writes them."""
    said: list[str] = []

    def compare(key: str, ours: Any, whose: str = "the weights") -> None:
        theirs = options.get(key)
        if theirs is not None and theirs != str(ours):
            said.append(f"{key} {theirs}, {whose} {ours}")

    g = nets["g_ab"]
    compare("netG", g.name if g.name != "unet" else f"a U-Net of {g.params['num_downs']} levels")
    compare("ngf", g.params["ngf"])
    compare("norm", g.params["norm"], "the generator's weights")
    d = next((nets[n] for n in ("d", "d_a", "d_b") if n in nets), None)
    if d is not None:
        compare("ndf", d.params["ndf"])
        compare("norm", d.params["norm"], "the discriminator's weights")  # one --norm for both
        net_d = options.get("netD")
        layers = d.params.get("n_layers")  # a PatchGAN's (the reference's basic and n_layers)
        if net_d == "pixel" and layers is not None:
            said.append(f"netD pixel, the weights a PatchGAN of {layers} layers")
        elif net_d in ("basic", "n_layers") and layers is None:
            said.append(f"netD {net_d}, the weights pixel")
        elif net_d == "basic" and layers != 3:
            said.append(f"netD basic (3 layers), the weights {layers} layers")
        elif net_d == "n_layers":
            compare("n_layers_D", layers)
    if not said:
        return []
    return [
        f"{file} does not describe these weights ({'; '.join(said)}): the run is built as the "
        f"weights are; check that {file} is this run's"
    ]


def _part(key: str, net: Network, extra: dict[str, Any] | None = None) -> list[str]:
    params = {**net.params, **(extra or {})}
    values = [
        f"{key}.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in params.items()
    ]
    return [f"{key}.name={net.name}", *values]


def _same_kind(nets: list[Network]) -> None:
    """The two generators (discriminators) of a CycleGAN share one config part."""
    if len(nets) == 2 and nets[0].describe() != nets[1].describe():
        a, b = nets
        raise EdgeganError(
            f"{a.source.name} is {a.describe()} and {b.source.name} {b.describe()}: edgegan "
            "builds both directions alike"
        )


@dataclass
class ImportResult:
    """What :func:`import_reference` wrote (absolute paths: a notebook that changes folder
    keeps them, as :class:`~edgegan.train.TrainResult`'s)."""

    run_dir: Path
    task: str
    networks: dict[str, Network]  # edgegan network name (g_ab, d_b, ...) -> what was read
    options_file: Path | None
    image_size: int
    notes: list[str]  # settings of the options file that did not carry over


def import_reference(
    source: str | Path,
    out: str | Path,
    epoch: str = "latest",
    image_size: int | None = None,
    data_root: str | Path | None = None,
    direction: str | None = None,
) -> ImportResult:
    """Write an edgegan run directory ``out`` (new or empty) from a reference checkpoint.

    ``source``: a reference checkpoints folder (``checkpoints/NAME``: ``EPOCH_net_G_A.pth``
    and ``_G_B.pth`` give a ``cyclegan`` run, ``EPOCH_net_G.pth`` a ``pix2pix`` run; the
    discriminators come along when their files are there), or one generator's ``.pth`` (a
    pretrained model such as ``horse2zebra.pth``), which gives a one-direction run of the
    ``pix2pix`` task's layout. ``image_size``: the size it was trained at (default: the
    options' ``crop_size``, else 256). ``data_root``: the run's ``data.root`` (default: the
    options' ``dataroot``), which ``export --int8`` calibrates on and fine-tuning trains on.
    ``direction``: the reference's ``--direction`` (default: the options', else AtoB; the
    pretrained facades and sat2map models are BtoA). With BtoA, edgegan's A is the run's
    ``trainA`` folder still (for a CycleGAN, ``g_ab`` is then ``G_B``); a pix2pix run reads
    A from the right half of its pair files. Settings that do not carry over are warned
    about (``ImportResult.notes``, also in ``imported.json``).
    """
    from edgegan import __version__
    from edgegan.config import load_config, part_provenance
    from edgegan.fileio import atomic_write, check_not_empty, check_out_dir, holds_files, write_json
    from edgegan.plugins.manager import get_manager
    from edgegan.rng import random_state_kept
    from edgegan.train.checkpoint import FORMAT_VERSION, atomic_save
    from edgegan.train.logs import CHECKPOINT
    from edgegan.train.task import record_network_params
    from edgegan.train.translation import translation_spec

    if direction not in (None, "AtoB", "BtoA"):
        raise ConfigError(f"--direction must be AtoB or BtoA; got {direction!r}")
    check_not_empty(out)
    if Path(out).is_dir() and holds_files(out):  # never written over, unlike export's
        raise EdgeganError(f"--out {out} is not empty; choose a new or empty folder")
    out = check_out_dir(out)
    src = _find(Path(source).expanduser(), epoch)
    opts = modern_options(src.options)
    size = image_size or _number(opts, "crop_size", int) or 256
    if size < 1:
        raise ConfigError(f"--size must be a positive integer; got {size}")
    backwards = (direction or opts.get("direction")) == "BtoA"
    read = {n: load_weights(p) for n, p in src.files.items()}
    if src.task == "cyclegan":
        # The reference's G_A maps its A to its B, and D_A judges B; BtoA makes trainB its A.
        names = (
            {"g_ab": "G_B", "g_ba": "G_A", "d_a": "D_A", "d_b": "D_B"}
            if backwards
            else {"g_ab": "G_A", "g_ba": "G_B", "d_a": "D_B", "d_b": "D_A"}
        )
    else:
        names = {"g_ab": "G", "d": "D"}
    nets: dict[str, Network] = {}
    for ours, theirs in names.items():
        if theirs in read:
            reader = read_generator if ours.startswith("g") else read_discriminator
            nets[ours] = reader(read[theirs], src.files[theirs])
    g = nets["g_ab"]
    if size % g.size_multiple:
        given = (
            "--size"
            if image_size
            else f"crop_size in {src.options_file}"
            if "crop_size" in opts
            else "the default"
        )
        raise ConfigError(
            f"{g.name} translates images whose sides are multiples of {g.size_multiple}; the "
            f"training size {size} ({given}) is not: give the size it was trained at (--size)"
        )
    _same_kind([nets[n] for n in ("g_ab", "g_ba") if n in nets])
    ca, cb = g.channels, g.channels_out
    extra = {}
    if g.name.startswith("unet"):  # the reference's default: dropout in pix2pix's U-Net only
        dropout = opts.get("no_dropout")
        extra["use_dropout"] = dropout == "False" if dropout else src.task == "pix2pix"
    settings, notes = _settings(opts, src.task, backwards)
    if src.options_file is not None:
        notes += _network_notes(opts, nets, src.options_file.name)
    overrides = settings + _part("model.generator", g, extra)
    ds = [nets[n] for n in ("d", "d_a", "d_b") if n in nets]
    _same_kind(ds)
    d = ds[0] if ds else None
    if d is not None:
        overrides += _part("model.discriminator", d)
    overrides += [f"data.crop_size={size}", f"data.channels_a={ca}", f"data.channels_b={cb}"]
    if src.task == "pix2pix" and backwards:
        overrides.append("data.direction=BtoA")
    config = load_config(src.task, overrides)
    root = data_root if data_root is not None else opts.get("dataroot")
    if root and root != "None":  # set as given: a path is no YAML to parse
        config.data.params["root"] = str(Path(root).expanduser())
    record_network_params(config)

    models = get_manager().registry("models")
    weights: dict[str, dict[str, Any]] = {}
    for ours, net in nets.items():
        role = "generator" if ours.startswith("g") else "discriminator"
        if role == "generator":
            c_in, c_out = (ca, cb) if ours == "g_ab" else (cb, ca)
            context = {"channels": c_in, "channels_out": c_out, "image_size": size}
        else:
            channels = {"d_a": ca, "d_b": cb, "d": ca + cb}[ours]
            context = {"channels": channels, "image_size": size}
        with random_state_kept():
            module = models.build_part(getattr(config.model, role), context, role)
        weights[ours] = fitted(module, net, ours)
    scale = SimpleNamespace(  # what the dataset would say of its files (training_scale)
        halves="BA" if src.task == "pix2pix" and backwards else "AB",
        preprocess=config.data.params.get("preprocess", "resize_and_crop"),
        load_size=config.data.params.get("load_size"),
    )
    spec = translation_spec(src.task, "g_ab", ca, cb, size, scale)
    imported = {
        "from": REFERENCE,
        "files": {n: str(nets[n].source.resolve()) for n in nets},
        "networks": {n: {"name": v.name, **v.params} for n, v in nets.items()},
        "options_file": str(src.options_file.resolve()) if src.options_file else None,
        "options": src.options,
        "direction": "BtoA" if backwards else "AtoB",
        "notes": notes,
        "edgegan_version": __version__,
    }
    state = {
        "format": FORMAT_VERSION,
        "edgegan_version": __version__,
        "task": src.task,
        "step": 0,
        "elapsed": 0.0,
        "config": config.to_dict(),
        "spec": spec,
        "parts": part_provenance(config),
        "networks": weights,
        "ema": None,
        "imported": imported,
    }
    # The checkpoint last: a folder without it is no run (and imported.json first marks it
    # as one that cannot be resumed).
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / IMPORTED, imported)
    text = config.to_yaml().encode("utf-8")
    atomic_write(out / "config.yaml", lambda f: f.write(text))
    (out / "checkpoints").mkdir(exist_ok=True)
    atomic_save(state, out / CHECKPOINT)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=caller_stacklevel())
    options = None if src.options_file is None else Path(src.options_file).absolute()
    return ImportResult(out.absolute(), src.task, nets, options, size, notes)
