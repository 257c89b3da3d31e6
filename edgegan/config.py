"""Typed run configuration: YAML presets and files, ``key=value`` overrides, clear errors.

The config is a tree of dataclasses. Sections naming a plugin part (``data``, ``loss``,
``model.generator``, ``model.discriminator``, each entry of ``callbacks``) are a
:class:`PartConfig`: a ``name`` plus free parameters that the part's factory validates.
Changing a part's ``name`` by an override drops the parameters the preset gave the old part.
"""

from __future__ import annotations

import codecs
import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

import yaml

from edgegan.errors import ConfigError, did_you_mean, unknown

DEFAULT_PRESET = "dcgan-mnist"


#: torch.compile's modes, for ``train.compile`` (besides ``off``) and the torch runner.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class PartConfig:
    """A plugin part chosen by name, with the parameters for its factory.

    ``defaults``: what a run recorded of the parameters its user left out (a network's
    factory defaults at training time, ``Task._record_network_params``), kept apart from
    ``params`` so that a later version of the factory may drop one of them with a warning
    instead of refusing the run. In YAML it is the part's ``defaults`` key, which, like
    ``name``, no network factory parameter may be called (only the networks record them:
    :data:`RECORDED_PARTS`)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params, **self._defaults_entry()}

    def _defaults_entry(self) -> dict[str, Any]:
        return {"defaults": dict(self.defaults)} if self.defaults else {}


@dataclass
class ModelConfig:
    latent_dim: int = 128
    conditional: bool = True  # class-conditional G and D when the dataset has labels
    generator: PartConfig = field(default_factory=lambda: PartConfig("dcgan"))
    discriminator: PartConfig = field(default_factory=lambda: PartConfig("dcgan"))


@dataclass
class OptimConfig:
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 0.0


@dataclass
class OptimsConfig:
    g: OptimConfig = field(default_factory=OptimConfig)
    d: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class TrainConfig:
    steps: int = 5000  # generator updates
    # Passes over the training data; when set, it decides steps (whole batches of batch_size
    # per epoch, as the reference CycleGAN's epochs). The override train.steps=N clears it
    # (given both, the later decides); a Config edited in Python needs train.epochs = None
    # for its steps to count.
    epochs: float | None = None
    max_seconds: float | None = None  # wall-clock budget: stop cleanly and save when reached
    batch_size: int = 64
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "off"  # off | bf16 | fp16 (fp16 uses a gradient scaler)
    threads: int | None = None  # CPU threads for torch (None: torch's default)
    d_steps: int = 1  # discriminator updates per generator update
    r1_gamma: float = 0.0  # R1 penalty weight on real data (0: off)
    r1_every: int = 1  # lazy R1: apply every N discriminator steps, scaled by N
    augment: str = ""  # DiffAugment policy for D's inputs, e.g. "translation,cutout"
    ema: bool = True  # keep an EMA of the generator for sampling and export
    ema_decay: float = 0.999
    ema_start: int = 0  # step from which the EMA averages (it copies G before)
    lr_schedule: str = "constant"  # constant | linear | cosine | step (train/schedule.py)
    lr_decay_start: int | None = None  # linear: the step decay starts (null: half-way)
    lr_step: int | None = None  # step: multiply by lr_gamma every N steps (null: steps // 3)
    lr_gamma: float = 0.1
    sample_every: int = 500
    checkpoint_every: int = 1000
    # A run directory (its last checkpoint) or a checkpoint file whose network and EMA
    # weights start this run (fine-tuning); optimisers, schedules and step start afresh.
    init_from: str | None = None
    # Also keep the newest N checkpoints as checkpoints/step_NNNNNNN.pt (0: last.pt alone);
    # `edgegan export RUN --checkpoint step_NNNNNNN` exports one.
    keep_checkpoints: int = 0
    log_every: int = 50
    sample_grid: int = 100  # images in each sample grid
    tensorboard: bool = False
    num_workers: int = 0
    progress: bool = True
    # The GPU fast path, each switch measured in docs/benchmarks.md (tools/bench_train.py).
    # One call of a per-sample network on concatenated batches (real + fake for D; a
    # CycleGAN generator's real, identity and cycle inputs) instead of one call per batch.
    merge_calls: bool = True
    channels_last: bool = False  # NHWC weights and batches (tensor cores prefer it)
    # Instance norms that keep channels_last layout (nn.layers.LayoutInstanceNorm2d) instead
    # of aten::instance_norm's copies to NCHW and back; same maths, same checkpoints. null:
    # on for compiled channels-last runs on CUDA (measured faster there), off otherwise.
    layout_norm: bool | None = None
    # torch.compile mode: off | default | reduce-overhead (CUDA graphs) | max-autotune |
    # max-autotune-no-cudagraphs
    compile: str = "off"
    fused_optim: bool = True  # fused Adam kernel (CUDA, and the CPU since torch 2.4)
    cudnn_benchmark: bool = True  # let cuDNN time its algorithms for the static shapes
    pin_memory: bool = True  # page-locked host batches with non_blocking copies (CUDA)
    # Keep an in-memory dataset whole on the device (null: when it fits in 1 GiB).
    resident_data: bool | None = None
    # Distributed training under torchrun (docs/distributed.md); batch_size is then the
    # global batch, split over the processes. No effect in a single process.
    sync_bn: bool = False  # BatchNorm statistics over the global batch (SyncBatchNorm, CUDA)
    dist_backend: str = "auto"  # auto (nccl on CUDA where torch has it, else gloo) | nccl | gloo
    dist_timeout: float = 1800.0  # seconds a collective waits (rank 0's evals, I/O)


@dataclass
class CycleConfig:
    """Settings of the ``cyclegan`` task (defaults as the reference implementation)."""

    lambda_cycle: float = 10.0  # weight of |F(G(a)) - a|_1 + |G(F(b)) - b|_1
    # The reference's lambda_A and lambda_B: the weights of domain A's cycle |F(G(a)) - a|_1
    # and B's |G(F(b)) - b|_1 (null: lambda_cycle), and of each domain's identity loss.
    lambda_a: float | None = None
    lambda_b: float | None = None
    lambda_identity: float = 0.5  # identity loss weight, relative to the cycle weights
    pool_size: int = 50  # image history pool of fakes shown to the discriminators
    preview: int = 8  # images of each domain in a sample grid

    def cycle_weights(self) -> tuple[float, float]:
        """The cycle-loss weights of domains A and B."""
        a, b = self.lambda_a, self.lambda_b
        return (self.lambda_cycle if a is None else a, self.lambda_cycle if b is None else b)

    def uses_identity(self) -> bool:
        """Whether the identity losses weigh anything (they need equal channels)."""
        return self.lambda_identity * max(self.cycle_weights()) > 0


@dataclass
class Pix2PixConfig:
    """Settings of the ``pix2pix`` task (defaults as the reference implementation)."""

    lambda_l1: float = 100.0  # weight of |G(a) - b|_1 beside the adversarial loss
    preview: int = 8  # test pairs in a sample grid


@dataclass
class EvalConfig:
    at_end: bool = True  # evaluate the final EMA generator against the reference data
    # task gan: the metric of the samples (digits, fid, a plugin's); cyclegan and pix2pix
    # always get paired scores on a paired test split, and with fid FID/KID of translations
    metric: str = "digits"
    # The metric's reference data (task gan): "" is the bundled digits' test split for runs on
    # them (mnist:test) and none otherwise; eval.metric=fid: a folder or .npz of real images at
    # the samples' size, or an FID statistics .npz (docs/eval.md).
    reference: str = ""
    # Parameters of the metric's factory, as `edgegan eval -o KEY=VALUE`, e.g.
    # eval.metric_params.batch_size=128 eval.metric_params.prdc_k=0 for fid (docs/eval.md)
    metric_params: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 2000
    every: int = 0  # also evaluate every N steps on val_samples and log val_* metrics (0: off)
    val_samples: int = 200
    # Keep checkpoints/best.pt at the best val_<best> score so far (needs eval.every), e.g.
    # fd; best_mode: min (lower is better, as FD) or max (as a PSNR).
    best: str = ""
    best_mode: str = "min"


@dataclass
class Config:
    task: str = "gan"
    seed: int = 0
    data: PartConfig = field(default_factory=lambda: PartConfig("mnist"))
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: PartConfig = field(default_factory=lambda: PartConfig("bce"))
    optim: OptimsConfig = field(default_factory=OptimsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    cycle: CycleConfig = field(default_factory=CycleConfig)
    pix2pix: Pix2PixConfig = field(default_factory=Pix2PixConfig)
    callbacks: list[PartConfig] = field(default_factory=list)
    preset: str | None = None  # which preset this config came from (informational)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_yaml(self) -> str:
        return yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False)


# -- (de)serialisation ------------------------------------------------------------------------


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, PartConfig):
        return _to_plain(obj.to_dict())
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise a ConfigError naming ``path``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except ConfigError as exc:
                errors.append(exc)
        scalars = [a for a in args if a in (bool, int, float, str)]
        if type(None) in args and len(scalars) == len(args) - 1:  # e.g. bool | None
            names = " or ".join([*(_type_name(a) for a in scalars), "null"])
            raise ConfigError(
                f"config '{path}' must be {names}, got {type(value).__name__} {value!r}"
            )
        raise errors[0]
    if tp is PartConfig:
        return _part(value, path)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config '{path}' must be a mapping, got {value!r}")
        return _from_dict(tp, value, path)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"config '{path}' must be a list, got {value!r}")
        return [_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a field type this loader does not know
        return value
    raise ConfigError(
        f"config '{path}' must be {_type_name(tp)}, got {type(value).__name__} {value!r}"
    )


#: The parts whose recorded defaults a run keeps under their ``defaults`` key.
RECORDED_PARTS = ("model.generator", "model.discriminator")


def _part(value: Any, path: str) -> PartConfig:
    if isinstance(value, str):
        return PartConfig(value)
    if not isinstance(value, dict) or "name" not in value:
        raise ConfigError(f"config '{path}' must be a mapping with a 'name', got {value!r}")
    params = dict(value)
    name = params.pop("name")
    if not isinstance(name, str):
        raise ConfigError(f"config '{path}.name' must be a string, got {name!r}")
    # Only the networks' parts record defaults (Task._record_network_params); elsewhere a
    # `defaults` key is an ordinary parameter of the factory.
    defaults = params.pop("defaults", None) or {} if path in RECORDED_PARTS else {}
    if not isinstance(defaults, dict):
        raise ConfigError(
            f"config '{path}.defaults' holds a run's recorded defaults and must be a mapping, "
            f"got {defaults!r}"
        )
    return PartConfig(name, params, defaults)


def _from_dict(cls: type, data: dict[str, Any], path: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ConfigError(
                f"unknown config key '{full}'{did_you_mean(key, names)}; "
                f"keys of '{path or 'config'}': {', '.join(names)}"
            )
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Validate a plain mapping (e.g. a loaded YAML file) into a :class:`Config`."""
    if not isinstance(data, dict):
        raise ConfigError("a config must be a YAML mapping")
    return _from_dict(Config, _plain(data))


def _plain(value: Any) -> Any:
    """``value`` with NumPy scalars as Python numbers and paths as strings, as a sweep's
    code sets them (``train.steps = np.int64(2)``, ``data.root = Path(...)``): what YAML
    would have given. Containers are rebuilt only where something changed."""
    if isinstance(value, dict):
        items = {k: _plain(v) for k, v in value.items()}
        return value if all(items[k] is value[k] for k in value) else items
    if isinstance(value, (list, tuple)):
        plain = [_plain(v) for v in value]
        changed = any(p is not v for p, v in zip(plain, value, strict=True))
        return (tuple(plain) if isinstance(value, tuple) else plain) if changed else value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        return value.item()  # a NumPy scalar (np.int64, np.float32, np.bool_)
    return value


# -- presets, files and overrides -------------------------------------------------------------


def preset_names() -> list[str]:
    folder = resources.files("edgegan") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2's booleans and numbers. YAML 1.1 (PyYAML's) also reads
    ``on``/``off``/``yes``/``no`` as booleans (``train.amp=off`` would be False), ``010`` as
    octal 8, ``1:30`` as the base-60 number 90, and ``1e-4`` as a string."""


_BOOL, _INT, _FLOAT = (f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float"))
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# decimal (a leading 0 is still decimal), 0x hex, 0o octal, 0b binary; _ separates digits
_Loader.add_implicit_resolver(
    _INT,
    re.compile(r"^[-+]?(?:[0-9][0-9_]*|0x[0-9a-fA-F][0-9a-fA-F_]*|0o[0-7][0-7_]*|0b[01][01_]*)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*|[0-9][0-9_]*(?=[eE]))"
        r"(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _compose_mapping_node(self: _Loader, anchor: str | None) -> yaml.MappingNode:
    """A mapping that names a key twice is an error: YAML keeps the last, so a second
    ``train:`` section replaced the first whole, without a word. Checked as the mapping is
    read, before merges (``<<:``) add their keys, which may be given again: that is what
    merging is for."""
    node = yaml.SafeLoader.compose_mapping_node(self, anchor)
    seen: dict[tuple[str, str], Any] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = (key_node.tag, key_node.value)  # 1 and "1" are two keys
        if key in seen:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"'{key_node.value}' is given twice (first on line {seen[key].line + 1}); the "
                "second would replace the first",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    return node


_Loader.compose_mapping_node = _compose_mapping_node  # type: ignore[method-assign,assignment]


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    base = {"0x": 16, "0o": 8, "0b": 2}.get(text[:2], 10)
    return sign * int(text[2:] if base != 10 else text, base)


_Loader.add_constructor(_INT, _construct_int)


class _Dumper(yaml.SafeDumper):
    """Quotes every string that YAML 1.2 (:class:`_Loader`: ``'1e5'``, ``'0o17'``) or YAML
    1.1 (other tools' ``yaml.safe_load``: ``'off'``, ``'010'``) would read as something
    else, so config.yaml reads back the same in edgegan (resume, export) and elsewhere."""


_Dumper.yaml_implicit_resolvers = {
    first: _Loader.yaml_implicit_resolvers.get(first, [])
    + yaml.SafeDumper.yaml_implicit_resolvers.get(first, [])
    for first in {*_Loader.yaml_implicit_resolvers, *yaml.SafeDumper.yaml_implicit_resolvers}
}


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 booleans (see :class:`_Loader`)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def _load_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{source}{where}: invalid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    except RecursionError:  # nested past Python's limit: no config is
        raise ConfigError(f"{source}: invalid YAML (nested too deeply)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config must be a YAML mapping")
    if _larger_than(data, max(MAX_CONFIG_VALUES, len(text))):
        # YAML aliases share one object: 1.8 KB of nested aliases ("billion laughs") loads
        # at once, then every copy of the config expands it (2.4 GB, 28 s, before an error).
        # Without aliases a value takes at least a character, so a long file of plain values
        # (a plugin part's long list) is never refused here.
        raise ConfigError(
            f"{source}: more than {MAX_CONFIG_VALUES:,} values once its YAML aliases are "
            "expanded; a config is a few hundred"
        )
    return data


#: The most values a config may hold with its aliases expanded (or its length in
#: characters, for a longer file).
MAX_CONFIG_VALUES = 100_000


def _larger_than(data: Any, limit: int, containers: bool = False) -> bool:
    """Whether ``data`` has more than ``limit`` values counting each alias's every use (with
    ``containers``: more than ``limit`` mappings and lists)."""
    count, stack = 0, [data]
    while stack:
        node = stack.pop()
        nested = isinstance(node, (dict, list))
        count += 1 if nested or not containers else 0
        if count > limit:
            return True
        if isinstance(node, dict):
            stack.extend(v for v in node.values() if not containers or isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if not containers or isinstance(v, (dict, list)))
    return False


# Byte-order marks, longest first (UTF-32 LE's begins with UTF-16 LE's).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _read_config_file(path: Path, source: str) -> dict[str, Any]:
    """The mapping in a YAML config file: one line for a file that is not UTF-8 text, not
    YAML or empty (which would silently mean the dataclass defaults, not a preset)."""
    raw = path.read_bytes()
    # YAML files may be UTF-16 or UTF-32 with a byte-order mark: Windows PowerShell 5.1's
    # `edgegan config show dcgan-mnist > my.yaml` writes UTF-16 LE.
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), "utf-8")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        kind = (
            "UTF-8" if encoding == "utf-8" else f"{encoding.upper()}, as its byte-order mark says"
        )
        raise ConfigError(f"{source}: not a text ({kind}) YAML file") from None
    data = _load_yaml(text, source)
    if not data:
        raise ConfigError(
            f"{source} is empty; start from a preset: edgegan config show dcgan-mnist > {source}"
        )
    return data


def load_source(source: str | Path | None) -> dict[str, Any]:
    """The raw mapping of a preset name or a YAML file path (None: the default preset)."""
    source = str(source or DEFAULT_PRESET)
    path = Path(source)
    if source.endswith((".yaml", ".yml")) or path.is_file():
        if path.is_dir():
            raise ConfigError(f"{source} is a folder; give a config file (YAML) or a preset")
        if not path.is_file():
            raise ConfigError(f"config file not found: {source}")
        data = _read_config_file(path, source)
        data.setdefault("preset", None)
        return data
    names = preset_names()
    if source not in names:
        if "." in source:  # most likely a key given without "=value"
            raise ConfigError(
                f"'{source}' is neither a preset nor a config file; to set a key write "
                f"{source}=VALUE"
            )
        raise unknown("preset", source, names)
    text = (resources.files("edgegan") / "presets" / f"{source}.yaml").read_text(encoding="utf-8")
    data = _load_yaml(text, f"preset {source}")
    data["preset"] = source
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"train.steps=2000"`` -> (["train", "steps"], 2000); values are parsed as YAML."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not p for p in key.split(".")):
        raise ConfigError(f"bad override '{item}': expected key=value, e.g. train.steps=2000")
    try:
        value = safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if re.search(r"\s#", raw) and "#" not in str(value):
        value = raw.strip()  # YAML read " #..." as a comment: `data.root=/data/run #2`
    return key.split("."), value


_PART_SECTIONS = {("data",), ("loss",), ("model", "generator"), ("model", "discriminator")}


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply dotted ``key=value`` overrides to a raw config mapping (returns a new mapping).

    Setting the ``name`` of a part section to another part drops the old part's parameters;
    ``name`` overrides are applied first, so ``loss.name=hinge loss.margin=2`` works. A name
    given to the section itself (``loss=hinge``) is the same override as ``loss.name=hinge``.
    """
    data = _deep_copy(data)
    parsed = [_as_name_override(*parse_override(o)) for o in overrides]
    # The run's length: train.steps clears the preset's (or the run's) epochs, which would
    # decide the steps; given both, the later override decides, as for any key given twice.
    latest = {tuple(k): i for i, (k, _) in enumerate(parsed)}
    steps_at, epochs_at = latest.get(("train", "steps")), latest.get(("train", "epochs"), -1)
    if steps_at is not None and steps_at > epochs_at:
        parsed = [(k, v) for k, v in parsed if tuple(k) != ("train", "epochs")]
        train = data.get("train")
        if isinstance(train, dict) and train.get("epochs") is not None:
            train["epochs"] = None
    parsed.sort(key=lambda kv: kv[0][-1] != "name")  # stable: name overrides first
    for keys, value in parsed:
        node = data
        for i, k in enumerate(keys[:-1]):
            child = node.get(k)
            if isinstance(child, str) and tuple(keys[: i + 1]) in _PART_SECTIONS:
                child = {"name": child}
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"bad override '{'.'.join(keys)}': '{'.'.join(keys[: i + 1])}' is not a section"
                )
            node[k] = child
            node = child
        last = keys[-1]
        if last == "name" and tuple(keys[:-1]) in _PART_SECTIONS and node.get("name") != value:
            node.clear()
        node[last] = value
    return data


def _as_name_override(keys: list[str], value: Any) -> tuple[list[str], Any]:
    """``data=mnist`` -> (["data", "name"], "mnist"): a part section set to a name means its
    ``name``, so that it is applied with (and like) the other name overrides, instead of
    replacing the section after, or before, the overrides of its parameters."""
    if isinstance(value, str) and tuple(keys) in _PART_SECTIONS:
        return [*keys, "name"], value
    return keys, value


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deep_copy(v) for v in obj]
    return obj


def load_config(
    source: str | Path | None = None, overrides: str | list[str] | None = None
) -> Config:
    """Resolve a preset name or YAML path plus ``key=value`` overrides (a list, or one
    string) into a Config."""
    data = apply_overrides(load_source(source), _override_list(overrides))
    return config_from_dict(data)


#: What each task passes to the factories of its parts (the README's plugin docs), by
#: config key: in a check without building, these names are known to be supplied, and a run
#: records every parameter of its networks but these (``Task._record_network_params``).
TASK_CONTEXT: dict[str, dict[str, tuple[str, ...]]] = {
    "gan": {
        "generator": ("channels", "image_size", "latent_dim", "num_classes"),
        "discriminator": ("channels", "image_size", "latent_dim", "num_classes"),
    },
    "cyclegan": {
        "generator": ("channels", "channels_out", "image_size"),
        "discriminator": ("channels", "image_size"),
    },
    "pix2pix": {
        "generator": ("channels", "channels_out", "image_size"),
        "discriminator": ("channels", "image_size"),
    },
}
_PART_CONTEXT = {"data": ("split",), "loss": (), "callback": ("run_dir",)}

#: The registry kind and model role of each part key (``callback:NAME`` is a callback).
PART_KINDS: dict[str, tuple[str, str | None]] = {
    "data": ("datasets", None),
    "generator": ("models", "generator"),
    "discriminator": ("models", "discriminator"),
    "loss": ("losses", None),
    "callback": ("callbacks", None),
}


#: The kind of generator each task drives, told apart by its factory's signature: a latent
#: generator (z -> image) takes ``latent_dim``, an image-to-image one needs none. Without this
#: check, a ResNet generator in a ``gan`` run failed at its first step with a traceback.
GENERATOR_KINDS: dict[str, str] = {
    "gan": "latent",
    "cyclegan": "image-to-image",
    "pix2pix": "image-to-image",
}
_KIND_WORDS = {
    "latent": "a latent generator (z -> image)",
    "image-to-image": "an image-to-image generator",
}


def generator_kind(entry: Any) -> str | None:
    """``latent`` for a generator whose factory requires ``latent_dim``, ``image-to-image``
    for one that takes ``channels_out`` and does not; None when its signature cannot tell
    (a latent generator of a fixed size may take neither: it is left to the interface
    checks)."""
    from edgegan.registry import factory_parameters

    accepted, _ = factory_parameters(entry.factory)
    latent = accepted.get("latent_dim")
    if latent is not None and latent.default is latent.empty:
        return "latent"
    return "image-to-image" if latent is None and "channels_out" in accepted else None


def check_generator_kind(task: str, entry: Any) -> None:
    """Refuse a generator of the wrong kind for ``task`` with one line listing those that fit."""
    from edgegan.plugins.manager import get_manager

    wanted = GENERATOR_KINDS.get(task)
    kind = generator_kind(entry)
    if wanted is None or kind is None or kind == wanted:
        return
    registry = get_manager().registry("models")
    fits = [e.name for e in registry if e.role == "generator" and generator_kind(e) == wanted]
    names = ", ".join(fits) or "none installed"
    raise ConfigError(
        f"{entry.label}{entry.origin} is {_KIND_WORDS[kind]}; task {task} needs "
        f"{_KIND_WORDS[wanted]}: set model.generator.name to one of: {names}"
    )


def check_part_params(config: Config) -> None:
    """Check every part the config names (dataset, networks, loss, callbacks) and its
    parameters against the registered factories, as training would, without building them:
    unknown names and parameters, wrong types, missing required parameters."""
    from edgegan.plugins.manager import get_manager
    from edgegan.registry import SUPPLIED, bind_params, with_recorded_defaults

    manager = get_manager()
    models = TASK_CONTEXT.get(config.task, {})
    for key, kind, part, role in config_parts(config):
        entry = manager.registry(kind).get(part.name, role)
        if role == "generator":
            check_generator_kind(config.task, entry)
        names = models.get(key) if role else _PART_CONTEXT[key.split(":")[0]]
        if names is None:  # a task this check does not know: its names are unknown too
            continue
        context = dict.fromkeys(names, SUPPLIED)
        bind_params(
            entry, with_recorded_defaults(entry, part.params, part.defaults, context), context
        )


def config_parts(config: Config) -> list[tuple[str, str, PartConfig, str | None]]:
    """(key, registry kind, part, model role) of every part a config names; the keys are
    ``data``, ``generator``, ``discriminator``, ``loss`` and ``callback:NAME``."""
    named = [
        ("data", config.data),
        ("generator", config.model.generator),
        ("discriminator", config.model.discriminator),
        ("loss", config.loss),
        *((f"callback:{c.name}", c) for c in config.callbacks),
    ]
    return [(key, _kind(key)[0], part, _kind(key)[1]) for key, part in named]


def _kind(key: str) -> tuple[str, str | None]:
    return PART_KINDS[key.split(":")[0]]


def part_provenance(config: Config) -> dict[str, dict[str, str]]:
    """Which plugin (distribution, version) gave each part of ``config``: kept in a run's
    checkpoint so a run whose plugin is gone or changed can say which one it needs."""
    from edgegan.plugins.manager import get_manager

    manager = get_manager()
    out = {}
    for key, kind, part, role in config_parts(config):
        e = manager.registry(kind).get(part.name, role)
        out[key] = {
            "name": e.name,
            "plugin": e.plugin,
            "distribution": e.distribution,
            "version": e.version,
        }
    return out


def _part_what(key: str) -> str:
    """What a :func:`config_parts` key names, in words: ``data`` -> "dataset", ``callback:x``
    -> "callback"."""
    return {"data": "dataset"}.get(key, key.split(":")[0])


def provenance_hint(parts: dict[str, Any] | None, first: str | None = None) -> str:
    """For a run's recorded :func:`part_provenance`: ``"; the run was trained with generator
    'tiny' of plugin 'audit' (edgegan-audit 0.2.0), which is not installed"`` (or is
    installed but not loaded, or installed at another version) for the first part from a
    plugin that is not as it was (the part ``first`` is looked at first); else ``""``."""
    from edgegan.plugins.manager import get_manager, origin

    manager = get_manager()
    parts = parts or {}
    for key in sorted(parts, key=lambda k: k != first):
        e = parts[key]
        if not isinstance(e, dict) or e.get("distribution") in (None, "", "edgegan"):
            continue
        kind, role = _kind(key)
        what = _part_what(key)
        registry = manager.registry(kind)
        where = f"{what} '{e.get('name')}' of plugin '{e.get('plugin')}'"
        # (a plugin registered in code has no version: "(mod )" had a stray space)
        was = origin(str(e.get("distribution")), e.get("version") or "")
        if (e.get("name"), role) not in registry:
            return f"; the run was trained with {where} ({was}), which " + manager.absent(
                e.get("plugin"), e.get("distribution")
            )
        now = registry.get(e["name"], role)
        if (now.distribution, now.version) != (e.get("distribution"), e.get("version")):
            return (
                f"; the run was trained with {where} from {was}, installed now: "
                f"{origin(now.distribution, now.version or '')}"
            )
    return ""


def changed_parts(was: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """The plugin parts of a run's recorded :func:`part_provenance` (``was``) that another
    version or distribution gives ``now``, as ``"loss 'x' of edgegan-x 0.1.0, now 0.2.0"``."""
    out = []
    for key, old in (was or {}).items():
        new = now.get(key)
        if not isinstance(old, dict) or not new or old.get("distribution") in (None, "", "edgegan"):
            continue
        if (old.get("name"), old.get("plugin")) != (new.get("name"), new.get("plugin")):
            continue  # another part chosen on resume (loss.name=...): not a version change
        before = (old.get("distribution"), old.get("version"))
        if before != (new.get("distribution"), new.get("version")):
            what = _part_what(key)
            after = (
                new["version"]
                if new.get("distribution") == before[0]
                else (f"{new.get('distribution')} {new.get('version')}")
            )
            out.append(f"{what} '{old.get('name')}' of {before[0]} {before[1]}, now {after}")
    return out


def with_provenance(exc: Exception, parts: dict[str, Any] | None, first: str | None = None) -> Any:
    """``exc`` (same type) with :func:`provenance_hint` added, or ``exc`` itself when the
    run's plugin parts are all as they were."""
    hint = provenance_hint(parts, first)
    return type(exc)(f"{exc}{hint}") if hint else exc


def _override_list(overrides: str | list[str] | None) -> list[str]:
    if isinstance(overrides, str):  # one override, not its characters
        return [overrides]
    return list(overrides or [])


def saved_config(data: Any, where: str, writer: Any = None) -> Config:
    """A config a run saved (its config.yaml, a checkpoint's), validated. One this edgegan
    cannot read names ``where`` it is and says it may be another version's: a key added by a
    newer edgegan reads as a typo otherwise. ``writer``: the edgegan version recorded with it."""
    from edgegan import __version__

    if _larger_than(data, MAX_CONFIG_VALUES, containers=True):
        # a checkpoint's pickle keeps shared objects shared, as YAML aliases: 8 MB of nested
        # lists expanded without end when the config was checked. Sections and lists are
        # counted, not values: a plugin parameter's long list is one.
        raise ConfigError(
            f"{where}: more than {MAX_CONFIG_VALUES:,} sections and lists once its shared "
            "ones are expanded; a config has a few dozen (the file was not written by edgegan)"
        )
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        known = isinstance(writer, str) and writer
        by = f"saved by edgegan {writer};" if known else "saved by another edgegan?"
        raise ConfigError(
            f"{where}: {exc} ({by} this is edgegan {__version__}: read the run with the "
            "edgegan that trained it, or a newer one)"
        ) from None


def load_run_config(run_dir: str | Path, overrides: str | list[str] | None = None) -> Config:
    """The resolved config saved in a run directory, with overrides (for ``--resume``)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        from edgegan.train.logs import RunLock

        if RunLock(Path(run_dir)).taken():  # a run being built there writes it soon
            raise ConfigError(
                f"{run_dir} is a run another process is starting (it has no config.yaml yet); "
                "wait for it, or resume it once it has stopped"
            )
        saved = _checkpoint_config(Path(run_dir))
        if saved is None:
            raise ConfigError(f"not a run directory (no config.yaml): {run_dir}")
    else:
        saved = _read_config_file(path, str(path))
        saved_config(saved, str(path))  # the file's own problems, apart from the overrides'
    return config_from_dict(apply_overrides(saved, _override_list(overrides)))


def _checkpoint_config(run_dir: Path) -> dict[str, Any] | None:
    """The config in ``run_dir``'s last checkpoint, for a run whose config.yaml was removed
    (it blocked ``--resume`` for good, with the whole config in the checkpoint); None when
    there is no checkpoint. The run writes config.yaml again at its next checkpoint."""
    import warnings

    from edgegan.errors import caller_stacklevel
    from edgegan.train.logs import CHECKPOINT

    checkpoint = run_dir / CHECKPOINT
    if not checkpoint.is_file():
        return None
    from edgegan.train.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint)
    saved = state.get("config")
    if not isinstance(saved, dict):
        raise ConfigError(f"not a run directory (no config.yaml, and {checkpoint} has no config)")
    saved_config(saved, str(checkpoint), state.get("edgegan_version"))
    warnings.warn(
        f"{run_dir / 'config.yaml'} is missing: the config saved in {checkpoint} is read "
        "instead (a resumed run writes config.yaml again at its next checkpoint)",
        UserWarning,
        stacklevel=caller_stacklevel(),
    )
    return dict(saved)
