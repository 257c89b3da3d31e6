"""The export bundle: a folder of ONNX graphs (and engines) described by ``edgegan.json``.

``edgegan.json`` is the contract between ``edgegan export`` and the runtimes (``edgegan infer``
and ``edgegan bench``)::

    {"format": 1, "edgegan_version": "0.1.0", "task": "gan",
     "source": {"run_dir": ..., "step": 8000, "weights": "ema"},  # + "checkpoint": "best"
     "spec": {"latent_dim", "num_classes", "image_shape", "class_names", "value_range"},
     "inputs": [{"name": "z", "dtype": "float32", "shape": ["batch", 64]}, ...],
     "outputs": [{"name": "image", "dtype": "float32", "shape": ["batch", 1, 28, 28]}],
     "models": {"fp32": {"file": "model.onnx", "opset", "exporter", "nodes", "parity"}, ...},
     "engines": {},
     "versions": {"torch", "onnx", "onnxruntime"}}

A ``cyclegan`` bundle holds one graph per direction and precision (``model_AtoB.onnx``,
``model_AtoB.fp16.onnx``, ``model_AtoB.int8.onnx``, the same for ``BtoA``); the
per-graph parts are keyed by direction first::

    {"task": "cyclegan", "directions": ["AtoB", "BtoA"],
     "source": {..., "weights": {"AtoB": "ema", "BtoA": "generator"}},
     "spec": {"channels_a", "channels_b", "image_size", "value_range", "size_multiple",
              "min_side"},
     "inputs": {"AtoB": [{"name": "image", "shape": ["batch", 1, "height", "width"]}], ...},
     "outputs": {"AtoB": [{"name": "translated", ...}], ...},
     "models": {"AtoB": {"fp32": {...}, "fp16": {...}}, "BtoA": {...}},
     "engines": {"AtoB": {"fp16": {...}}}}

A ``pix2pix`` bundle is laid out the same, with the ``AtoB`` direction alone.

:func:`graph_entries` and :func:`engine_entries` pick the ``{precision: entry}`` of a GAN
bundle or of one direction, so the code around them is the same for both.

This module imports nothing heavy: the runtimes read bundles without torch.
"""

from __future__ import annotations

import json
import math
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgegan.errors import EdgeganError, format_mismatch
from edgegan.export.signature import TASK_DIRECTIONS, is_translation_task, only_direction
from edgegan.fileio import left_by_gone, sha256_file, shell_path, shell_word, write_json

BUNDLE_FILE = "edgegan.json"
FORMAT_VERSION = 1
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
MODEL_FILES: dict[str, str] = {
    "fp32": "model.onnx",
    "fp16": "model.fp16.onnx",
    "int8": "model.int8.onnx",
}
REQUIRED_KEYS: tuple[str, ...] = ("format", "task", "spec", "inputs", "outputs", "models")


class ExportError(EdgeganError):
    """An export that failed (parity out of tolerance, an exporter error): exit code 1."""

    exit_code = 1


def _bundle_file(path: str | Path) -> Path:
    path = Path(path)
    return path if path.name == BUNDLE_FILE or path.suffix == ".json" else path / BUNDLE_FILE


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` is a bundle folder (one holding ``edgegan.json``)."""
    path = Path(path)
    return path.is_dir() and (path / BUNDLE_FILE).is_file()


def read_bundle(path: str | Path) -> dict[str, Any]:
    """Read and check a bundle's metadata; ``path`` is the folder or its ``edgegan.json``."""
    file = _bundle_file(path)
    if not file.is_file():
        where = Path(path)
        if where.is_dir():
            raise EdgeganError(
                f"{where} is not an export bundle (no {BUNDLE_FILE}); "
                f"create one with: edgegan export RUN_DIR --out {where}"
            )
        raise EdgeganError(f"bundle not found: {where}")
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    # ValueError: JSONDecodeError, and an integer of more than 4300 digits
    except (OSError, ValueError) as exc:
        raise EdgeganError(f"cannot read bundle metadata {file}: {exc}") from None
    except RecursionError:  # nested past Python's limit: no edgegan.json is
        raise EdgeganError(f"cannot read bundle metadata {file}: nested too deeply") from None
    if not isinstance(meta, dict):
        raise EdgeganError(f"{file} is not an edgegan bundle description (not a JSON object)")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise EdgeganError(f"{file} is not a valid edgegan bundle: missing {', '.join(missing)}")
    if meta["format"] != FORMAT_VERSION:
        raise format_mismatch(
            "bundle",
            file,
            meta["format"],
            FORMAT_VERSION,
            meta.get("edgegan_version"),
            "export the run again with this edgegan",
        )
    if not isinstance(meta["models"], dict) or not isinstance(meta["spec"], dict):
        raise EdgeganError(f"{file} is not a valid edgegan bundle: bad 'models' or 'spec'")
    meta.setdefault("engines", {})
    problem = _spec_problem(meta)
    if problem:
        raise EdgeganError(f"{file} is not a valid edgegan bundle: {problem}")
    for section in ("models", "engines"):
        for place, entry in _file_entries(meta, section):
            name = entry.get("file") if isinstance(entry, dict) else None
            if name is None:
                raise EdgeganError(
                    f"{file} is not a valid edgegan bundle: {place} is not an entry with a 'file'"
                )
            # a bundle may come from elsewhere: its files are the bundle's own, by name only
            if not _plain_name(name):
                raise EdgeganError(
                    f"{file} is not a valid edgegan bundle: its {section} list the file "
                    f"{name!r}, which is not a file name inside the bundle"
                )
            # a digest edited into another form turned the graph's integrity check off
            digest = entry.get("sha256", "0" * 64)
            if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
                raise EdgeganError(
                    f"{file} is not a valid edgegan bundle: {place}'s sha256 {digest!r} is not "
                    "a sha256 digest (64 hex digits); export it again"
                )
    return meta


#: Bounds of what a spec's sizes may be: the runtimes build inputs from them (an edited
#: latent_dim of 2e8 took 3 GB for 4 latents before anything failed). Training refuses a
#: run outside them (:func:`check_exportable`), so every run can be exported.
MAX_LATENT_DIM = MAX_CLASSES = 2**20
MAX_CHANNELS = 1024
#: edgegan.data.base.MAX_IMAGE_SIZE, the largest training size (importing it loads torch)
MAX_IMAGE_SIZE = 4096
#: What a built-in task's spec must hold, as ``{key: (least, most)}`` of integers (the
#: runtimes read these to build inputs and check outputs).
_SPEC_INTS: dict[str, dict[str, tuple[int, int]]] = {
    "gan": {"latent_dim": (1, MAX_LATENT_DIM), "num_classes": (0, MAX_CLASSES)},
    "cyclegan": {
        "channels_a": (1, MAX_CHANNELS),
        "channels_b": (1, MAX_CHANNELS),
        "image_size": (1, MAX_IMAGE_SIZE),
    },
    "pix2pix": {
        "channels_a": (1, MAX_CHANNELS),
        "channels_b": (1, MAX_CHANNELS),
        "image_size": (1, MAX_IMAGE_SIZE),
    },
}
#: Optional integers and their range: a translator pads its inputs to these, so an edited
#: 20000 padded a 28 px image to 20000x20000 (gigabytes) before anything failed.
_SPEC_RANGES: dict[str, dict[str, tuple[int, int]]] = {
    "cyclegan": {"size_multiple": (1, 1024), "min_side": (1, 1024)},
    "pix2pix": {"size_multiple": (1, 1024), "min_side": (1, 1024)},
}


#: The bounds of :func:`check_exportable`, by the names a training run's sizes have.
_RUN_SIZES = {**_SPEC_INTS["gan"], **_SPEC_INTS["cyclegan"], "channels": (1, MAX_CHANNELS)}


def check_exportable(sizes: dict[str, int]) -> None:
    """Refuse a training run whose ``sizes`` (``latent_dim``, ``num_classes``, ``channels``,
    ``channels_a``, ``channels_b``, ``image_size``) no bundle may hold, before its first
    step: a run found unexportable after hours of training would be hours lost."""
    from edgegan.errors import ConfigError

    for key, value in sizes.items():
        least, most = _RUN_SIZES[key]
        if not least <= value <= most:
            raise ConfigError(
                f"the run could not be exported: {key} is {value}; an exported bundle holds "
                f"{least}..{most}"
            )


def _spec_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with a gan, cyclegan or pix2pix bundle's spec (None: nothing), so an edited or
    truncated edgegan.json is one line here rather than a traceback in a runtime."""
    spec, task = meta["spec"], meta.get("task")
    for key, (least, most) in _SPEC_INTS.get(str(task), {}).items():
        value = spec.get(key)
        if not _is_int(value) or not least <= value <= most:
            return f"spec.{key} must be an integer in {least}..{most}, got {value!r}"
    for key, (low, high) in _SPEC_RANGES.get(str(task), {}).items():
        value = spec.get(key)
        if value is not None and (not _is_int(value) or not low <= value <= high):
            return f"spec.{key} must be an integer in {low}..{high}, got {value!r}"
    if task == "gan":
        shape = spec.get("image_shape")
        largest = (MAX_CHANNELS, MAX_IMAGE_SIZE, MAX_IMAGE_SIZE)
        if (
            not isinstance(shape, list)
            or len(shape) != 3
            or not all(_is_int(v) and 1 <= v <= m for v, m in zip(shape, largest, strict=True))
        ):
            return (
                f"spec.image_shape must be [channels, height, width] (at most "
                f"{MAX_CHANNELS}, {MAX_IMAGE_SIZE}, {MAX_IMAGE_SIZE}), got {shape!r}"
            )
    if is_translation_task(task):
        have, may = meta.get("directions"), TASK_DIRECTIONS[str(task)]
        if not isinstance(have, list) or not have or not set(have) <= set(may):
            return f"directions must list {' and/or '.join(may)}, got {have!r}"
    value_range = spec.get("value_range", [-1.0, 1.0])
    if not (
        isinstance(value_range, list)
        and len(value_range) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value_range)
        and all(math.isfinite(v) for v in value_range)  # JSON reads Infinity: NaN pixels
        and value_range[0] < value_range[1]
    ):
        return f"spec.value_range must be [low, high], got {value_range!r}"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _file_entries(meta: dict[str, Any], section: str) -> list[tuple[str, Any]]:
    """``(where, entry)`` of each graph in ``models`` or ``engines``: ``{precision: entry}``,
    per direction in a cyclegan or pix2pix bundle."""
    table = meta[section]
    if not isinstance(table, dict):
        return [(section, None)]
    if is_translation_task(meta.get("task")):
        groups = [(f"{section}.{d}", table[d]) for d in table]
    else:
        groups = [(section, table)]
    entries: list[tuple[str, Any]] = []
    for where, group in groups:
        if not isinstance(group, dict):
            entries.append((where, None))
            continue
        entries += [(f"{where}.{precision}", entry) for precision, entry in group.items()]
    return entries


def _plain_name(name: Any) -> bool:
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and Path(name).name == name
    )


def bundle_files(path: str | Path) -> set[Path]:
    """The files a bundle folder holds for its own use (``edgegan.json``, the graphs and
    engines it lists), resolved; empty for a folder that is no bundle."""
    if not is_bundle(path):
        return set()
    folder = Path(path).resolve()
    files = {folder / BUNDLE_FILE}
    try:
        meta = json.loads((folder / BUNDLE_FILE).read_text(encoding="utf-8"))
        for section in ("models", "engines"):
            for _, entry in _file_entries(meta, section) if section in meta else []:
                if isinstance(entry, dict) and _plain_name(entry.get("file")):
                    files.add(folder / entry["file"])
    except (OSError, ValueError, TypeError, AttributeError):
        pass  # a damaged bundle: its edgegan.json at least
    return files


def write_bundle(path: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``edgegan.json`` atomically (temp file, fsync, rename); returns its path.
    Non-finite numbers (a plugin exporter's NaN) are written as ``null``."""
    file = _bundle_file(path)
    return write_json(file, meta)


def aside_path(out: Path, pid: int | str = "") -> Path:
    """Where ``export --overwrite`` (process ``pid`` of this host) puts the old bundle at
    ``out`` while it moves the new one in (``""``: the name before the pid). The host is in
    the name: on a shared disk another machine's pids mean nothing here."""
    return out.with_name(f".{out.name}.old-{socket.gethostname()}-{pid}")


def set_aside(out: Path) -> list[Path]:
    """Bundles that an ``--overwrite`` export killed between its two renames left beside
    ``out`` (``.NAME.old-HOST-PID``, its process gone; ``.NAME.old-PID`` as edgegan named them
    before 2026-11-23): the previous bundle, whole."""
    stems = (aside_path(out).name, f".{out.name}.old-")
    found = [p for stem in stems for p in left_by_gone(out.parent, stem) if p.is_dir()]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def record_graph_digests(folder: str | Path, meta: dict[str, Any]) -> None:
    """Add each ONNX graph's ``sha256`` to its ``models`` entry (of every direction), over
    the files as they are finally written."""
    for direction in meta.get("directions") or [None]:
        for entry in graph_entries(meta, direction).values():
            entry["sha256"] = sha256_file(Path(folder) / entry["file"])


class BundleReplaced(EdgeganError):
    """The bundle was replaced (``export --overwrite``) after its edgegan.json was read: its
    graphs are sound, but another export's; the command should run again, not go on."""


def _now_recorded(path: Path, digest: str, section: str) -> bool:
    """Whether the bundle's edgegan.json, read again now, records ``path`` (of ``models`` or
    ``engines``) with ``digest``: a new export replaced the bundle since it was first read."""
    try:
        meta = json.loads((path.parent / BUNDLE_FILE).read_text(encoding="utf-8"))
        entries = [e for _, e in _file_entries(meta, section) if isinstance(e, dict)]
    except Exception:  # noqa: BLE001 - unreadable or malformed now: no sign of a new export
        return False
    return any(e.get("file") == path.name and e.get("sha256") == digest for e in entries)


def check_graph_file(path: Path, entry: dict[str, Any]) -> bytes:
    """Before onnxruntime opens a bundle's graph: refuse a graph other than the one exported
    (its recorded sha256; a link to the right file, as git-annex or DVC make, is fine:
    another export's graph of the same interface ran silently with other weights, only
    bench's parity said so), and a graph whose tensors live in external data files: a
    bundle from elsewhere could name ``../../secret`` there (onnxruntime 1.22 read such
    paths; 1.32 refuses them), and edgegan never writes external data. The second holds
    whatever the digest says: whoever made such a graph can record its digest too.
    Returns the bytes checked, for the runtime to load those and no others."""
    data = read_recorded(path, entry)
    # An external tensor names its file under the key "location": a graph without those
    # bytes has none, and is not parsed here (importing onnx took 0.1-0.2 s a runner).
    if b"location" not in data:
        return data
    import onnx

    try:
        model = onnx.load_from_string(data)
    except Exception:  # not a graph at all: onnxruntime says so in its own words
        return data
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in _all_tensors(model.graph)):
        raise EdgeganError(
            f"{path.name} keeps tensors in external data files, which edgegan never writes: "
            "the bundle was not made by edgegan export, or was edited; export it again"
        )
    return data


def read_recorded(path: Path, entry: dict[str, Any], engine: bool = False) -> bytes:
    """The bytes of a bundle's graph (an ``engine``'s) at ``path``, refused when they are not
    those its ``entry`` records (its ``sha256``; entries written before digests have none)."""
    import hashlib

    data = path.read_bytes()
    expected = entry.get("sha256")
    if isinstance(expected, str):
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            if _now_recorded(path, actual, "engines" if engine else "models"):
                raise BundleReplaced(
                    f"{path.parent} was replaced by another export while this command ran "
                    "(export --overwrite); run the command again"
                )
            what, again = (
                (
                    "TensorRT engine",
                    f"build it again with `edgegan export {shell_path(path.parent)} --trt`",
                )
                if engine
                else ("graph", "export it again")
            )
            raise EdgeganError(
                f"{path.name} is not the {what} the bundle's edgegan.json was written with (its "
                "sha256 differs): the file is damaged or was edited, or the bundle mixes files "
                f"of two exports; {again}"
            )
    return data


def _all_tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of ``graph``: initializers (sparse ones too), node attributes, and
    those of the subgraphs of If, Loop and Scan nodes, at any depth (onnxruntime reads an
    external tensor in a subgraph as well)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield from (attr.sparse_tensor.values, attr.sparse_tensor.indices)
            for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                yield from _all_tensors(sub)


def model_file(precision: str, direction: str | None = None, suffix: str = ".onnx") -> str:
    """The file name of a graph: ``model.onnx``, ``model.fp16.onnx``; with a direction
    ``model_AtoB.onnx``, ``model_AtoB.int8.onnx``. ``suffix=".engine"`` names the TensorRT
    plan of that graph (always with its precision: ``model_AtoB.fp32.engine``)."""
    stem = f"model_{direction}" if direction else "model"
    if precision == "fp32" and suffix == ".onnx":
        return stem + suffix
    return f"{stem}.{precision}{suffix}"


def weights_digest(module: Any) -> str:
    """sha256 of a network's parameters and buffers (names, dtypes, shapes and values): what
    a bundle records of the weights its graphs were made from, so the torch backend can tell
    that its run still holds them (the step alone cannot: another run trained as far may
    have taken the run's folder)."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if not isinstance(tensor, torch.Tensor):  # a module's extra state: no weights
            continue
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{t.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def recorded_digest(meta: dict[str, Any], direction: str | None = None) -> str | None:
    """The :func:`weights_digest` ``edgegan.json`` recorded for the graph(s) of ``direction``
    (None for bundles written before it was recorded)."""
    digest = (meta.get("source") or {}).get("digest")
    if isinstance(digest, dict):
        return digest.get(direction or "")
    return digest if isinstance(digest, str) else None


def directions(meta: dict[str, Any]) -> list[str]:
    """The directions of a cyclegan or pix2pix bundle (empty for a GAN bundle)."""
    return list(meta.get("directions") or [])


def _per_graph(meta: dict[str, Any], key: str, direction: str | None) -> dict[str, Any]:
    if not isinstance(meta.get(key), dict):
        meta[key] = {}
    table = meta[key]
    have = directions(meta)
    if not have:
        if direction:
            raise EdgeganError(
                f"--direction applies to cyclegan and pix2pix bundles; this is a "
                f"'{meta.get('task')}' bundle"
            )
        return table
    if not direction:
        raise EdgeganError(
            f"this is a {meta.get('task')} bundle: give --direction ({' or '.join(have)})"
        )
    task = str(meta.get("task"))
    if direction not in TASK_DIRECTIONS.get(task, (direction,)):
        raise EdgeganError(
            f"a {task} bundle has {' and '.join(TASK_DIRECTIONS[task])} alone; "
            f"--direction {direction} has no generator there"
        )
    if direction not in have:
        raise EdgeganError(
            f"the bundle has no {direction} graphs (it has: {', '.join(have)}); export the run "
            f"again without --direction (both), or with --direction {direction} to another --out"
        )
    return table.setdefault(direction, {})


def graph_entries(meta: dict[str, Any], direction: str | None = None) -> dict[str, Any]:
    """``{precision: models entry}`` of a GAN bundle, or of one direction of a cyclegan
    bundle (the dict inside ``meta``: changes to it are changes to ``meta``)."""
    return _per_graph(meta, "models", direction)


def engine_entries(meta: dict[str, Any], direction: str | None = None) -> dict[str, Any]:
    """``{precision: engines entry}``, like :func:`graph_entries`."""
    return _per_graph(meta, "engines", direction)


def export_command(
    folder: str | Path,
    meta: dict[str, Any],
    precision: str = "fp32",
    run: str | Path | None = None,
) -> str:
    """The command that writes the bundle in ``folder`` again from its run (``run``, else
    the one it records), with the precisions it has (and ``precision``): ``--overwrite``
    replaces the whole folder. ``run`` matters for a run folder copied or moved: the
    recorded path is the original's, whose weights are not this folder's."""
    first = (meta.get("directions") or [None])[0]
    entries = graph_entries(meta, first) if meta.get("models") else {}
    run = run or (meta.get("source") or {}).get("run_dir") or "RUN_DIR"
    default = Path(run) / "export"  # export's default --out
    # every part shell-quoted: the bundle may come from elsewhere (a run_dir of
    # "x$(touch y)" printed a command that ran it), and paths hold spaces
    out = (
        ""
        if Path(folder).resolve() == default.resolve()
        else f" --out {shell_path(folder, 'BUNDLE')}"
    )
    flags = "".join(f" --{p}" for p in ("fp16", "int8") if p in {*entries, precision})
    # exported with --direction (not a pix2pix's only one): keep it so
    task = meta.get("task")
    choice = is_translation_task(task) and only_direction(task) is None
    if len(meta.get("directions") or []) == 1 and choice:
        flags += f" --direction {first}"
    flags += "".join(f" --with {shell_word(str(n), 'NAME')}" for n in meta.get("artifacts") or {})
    for name, params in (meta.get("artifact_params") or {}).items():  # with their parameters
        for key, value in params.items():  # JSON is YAML, which the option's values are
            text = json.dumps(value, ensure_ascii=False)  # YAML reads \ud83d\ude00 as two halves
            flags += f" --with-param {shell_word(f'{name}.{key}={text}', 'NAME.KEY=VALUE')}"
    if (meta.get("source") or {}).get("checkpoint"):  # exported from best, step_N, ...
        flags += f" --checkpoint {shell_word(str(meta['source']['checkpoint']), 'NAME')}"
    return f"edgegan export {shell_path(run, 'RUN_DIR')}{flags}{out} --overwrite"


def missing_model(
    folder: str | Path, meta: dict[str, Any], precision: str, direction: str | None = None
) -> str:
    """The message for a bundle without a ``precision`` graph, with the command that rewrites
    this very bundle with the precisions it has plus the missing one."""
    entries = graph_entries(meta, direction)
    have = ", ".join(entries) or "none"  # this graph's precisions (not the directions)
    graph = f"{direction} " if direction else ""
    return (
        f"the bundle {folder} has no {graph}{precision} model (it has: {have}); export one "
        f"with `{export_command(folder, meta, precision)}`"
    )


def model_path(
    path: str | Path,
    precision: str = "fp32",
    meta: dict | None = None,
    direction: str | None = None,
) -> Path:
    """The ONNX file of ``precision`` (and ``direction``, in a cyclegan bundle) in the bundle
    at ``path``, with a clear error when the bundle was exported without it."""
    path = Path(path)
    folder = path.parent if path.name == BUNDLE_FILE else path
    meta = meta if meta is not None else read_bundle(folder)
    entries = graph_entries(meta, direction)
    entry = entries.get(precision)
    if entry is None:
        raise EdgeganError(missing_model(folder, meta, precision, direction))
    file = folder / entry["file"]
    if not file.is_file():
        raise EdgeganError(f"bundle {folder} lists {entry['file']} but the file is missing")
    return file
