"""``export()``: a run directory -> a verified bundle (the API behind ``edgegan export``).

Everything is built in a temporary folder beside the destination and renamed into place at
the end, so a failed export (an exporter error, parity out of tolerance, Ctrl-C) leaves
nothing half-written.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgegan.errors import EdgeganError, caller_stacklevel, exception_line
from edgegan.export.bundle import (
    BUNDLE_FILE,
    FORMAT_VERSION,
    aside_path,
    is_bundle,
    record_graph_digests,
    set_aside,
    write_bundle,
)
from edgegan.export.signature import is_translation_task, task_directions
from edgegan.fileio import (
    holds_files,
    left_by_gone,
    make_dirs,
    mark_writer,
    release_mark,
    remove_empty_dirs,
    replace,
    temp_path,
)
from edgegan.registry import name_list

DEFAULT_OUT = "export"
EXPORTER_NAMES: dict[str, str] = {"fp32": "onnx", "fp16": "onnx-fp16", "int8": "onnx-int8"}


def default_out(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Where the bundle goes: ``out``, else ``RUN_DIR/export`` (``""``, an unset variable,
    is refused: not the current folder)."""
    from edgegan.fileio import check_not_empty

    if out is not None:
        check_not_empty(out)
    return Path(out) if out is not None else Path(run_dir) / DEFAULT_OUT


def _check_out(out: Path, overwrite: bool, run_dir: Path | None = None) -> None:
    """``out`` must be new or empty; ``overwrite`` replaces an existing bundle and nothing
    else, since replacing means deleting the folder (a run directory, or a folder holding
    runs, must never go that way)."""
    from edgegan.fileio import check_out_dir

    if run_dir is not None:
        o, r = out.resolve(), run_dir.resolve()
        if o == r or o in r.parents:
            raise EdgeganError(
                f"--out {out} holds the run being exported; choose a folder outside it "
                "(the default is RUN_DIR/export)"
            )
    if is_bundle(out) and os.path.ismount(out):
        raise EdgeganError(
            f"--out {out} is a mount point holding a bundle: a bundle is replaced by renaming "
            "its folder, which a mount point cannot be; empty it first, or export into a "
            "folder inside it"
        )
    if not overwrite and is_bundle(out):  # say what --overwrite would replace
        raise EdgeganError(
            f"--out {out} is not empty; choose another folder or pass --overwrite (it holds "
            f"{_described(out)})"
        )
    # a file, or not empty without --overwrite; the bundle is renamed into place beside it
    check_out_dir(out, overwrite, beside=True)
    if out.is_dir() and holds_files(out):
        if not is_bundle(out):
            raise EdgeganError(
                f"--out {out} holds files but no bundle (edgegan.json); --overwrite replaces "
                "only a bundle: choose a new or empty folder"
            )


def _described(bundle: Path) -> str:
    """``a bundle of RUN at step N (fp32, fp16)``, or as much of it as its metadata says."""
    from edgegan.export.bundle import graph_entries, read_bundle

    try:
        meta = read_bundle(bundle)
        source = meta.get("source") or {}
        first = (meta.get("directions") or [None])[0]
        graphs = ", ".join(graph_entries(meta, first))
        at = f" from checkpoint {source['checkpoint']}" if source.get("checkpoint") else ""
        return f"a bundle of {source.get('run_dir')} at step {source.get('step')}{at}: {graphs}"
    except Exception:  # a damaged one is still a bundle to replace
        return "a bundle"


class RunInTrainingWarning(UserWarning):
    """The run being exported is being trained by another process."""


def _warn_if_training(run_dir: Path) -> None:
    import warnings

    from edgegan.train.logs import RunLock

    if RunLock(run_dir).taken():
        warnings.warn(
            f"{run_dir} is being trained by another process: this exports its last "
            "checkpoint; export again (--overwrite) when training ends",
            RunInTrainingWarning,
            stacklevel=caller_stacklevel(),
        )


def _check_run_dir(run_dir: Path, checkpoint: str | None = None) -> None:
    """One line for anything that is not a run directory (a bundle, a missing folder): said
    before ``--out`` is checked, whose complaint (a read-only bundle's ``export`` folder)
    would name the wrong problem. A run needs the ``checkpoint`` exported, not ``last.pt``
    (a run kept as its ``best.pt`` alone was "not a run directory")."""
    from edgegan.train.logs import CHECKPOINT, checkpoint_file

    if not run_dir.exists():
        raise EdgeganError(f"run directory not found: {run_dir}")
    if not run_dir.is_dir():
        raise EdgeganError(f"{run_dir} is not a run directory")
    if is_bundle(run_dir):
        from edgegan.export.bundle import read_bundle

        try:
            source = (read_bundle(run_dir).get("source") or {}).get("run_dir")
        except Exception:  # a damaged bundle is still not a run
            source = None
        came = f" ({source})" if source else ""
        raise EdgeganError(
            f"{run_dir} is an export bundle, not a run directory; give the run it came from"
            f"{came} (--trt builds engines from a bundle's graphs)"
        )
    if checkpoint not in (None, "last", "last.pt"):
        checkpoint_file(run_dir, checkpoint)  # one line naming those it has
    elif not (run_dir / CHECKPOINT).is_file():
        others = sorted(p.stem for p in (run_dir / "checkpoints").glob("*.pt"))
        raise EdgeganError(
            f"{run_dir} is not a run directory: no {CHECKPOINT} "
            + (
                f"(it has {', '.join(others)}: pass --checkpoint NAME)"
                if others
                else "(train one with edgegan train)"
            )
        )


def _load_spec(
    run_dir: Path, checkpoint: str | None = None
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The run's generator spec, which weights a GAN export takes (``ema`` or
    ``generator``) and the checkpoint they come from (loaded once: the export takes its
    weights from the same read), with one-line errors for anything that is not a GAN or
    cyclegan run."""
    from edgegan.train.checkpoint import load_checkpoint
    from edgegan.train.logs import checkpoint_file

    _check_run_dir(run_dir, checkpoint)
    path = checkpoint_file(run_dir, checkpoint)
    state = load_checkpoint(path, map_location="cpu")
    spec = state.get("spec")
    if not isinstance(spec, dict) or "task" not in spec:
        raise EdgeganError(f"{path} has no generator spec; cannot export it")
    if spec["task"] != "gan" and not is_translation_task(spec["task"]):
        raise EdgeganError(
            f"{run_dir} is a '{spec['task']}' run; edgegan export handles gan, cyclegan and "
            "pix2pix runs"
        )
    weights = "ema" if state.get("ema") is not None else "generator"
    state.pop("optimizers", None)  # held through the whole export: nothing there needs them
    return dict(spec), weights, state


def _check_engine_profile(
    spec: dict[str, Any], options: Any, directions: list[str] | tuple[str, ...] | None = None
) -> None:
    """``export RUN --trt``'s profile (:class:`~edgegan.export.trt_profile.BuildOptions`)
    against the graphs the export will write, before it writes them: sizes given for a GAN,
    or a min/opt/max out of order once the defaults fill in, would otherwise fail after the
    whole export. (A size that is no multiple of the network's is found when the engine is
    built: the multiple comes from the built network.)"""
    from edgegan.export.signature import direction_spec
    from edgegan.export.trt_profile import resolve_profile

    if not is_translation_task(spec["task"]):
        resolve_profile(spec, options.batch, options.size)
        return
    for d in task_directions(spec["task"], directions):
        resolve_profile(direction_spec(spec, d, size_multiple=1), options.batch, options.size)


def _graph_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A GAN run's spec as its graphs record it (``metadata_props``): an unconditional
    generator takes no label, so it names no classes (its dataset's stay in the run)."""
    if int(spec.get("num_classes") or 0):
        return dict(spec)
    return {**spec, "class_names": []}


def _bundle_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The ``spec`` of ``edgegan.json``: the interface of the graphs."""
    return {k: v for k, v in _graph_spec(spec).items() if k not in ("task", "network")}


def _versions(exporter: str) -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    versions = {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    if exporter == "dynamo":
        import onnxscript

        versions["onnxscript"] = getattr(onnxscript, "__version__", "")
    return versions


def artifact_exporters(
    names: list[str] | tuple[str, ...],
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Plugin exporters asked for with ``--with``, each with its ``--with-param`` values:
    ``{name: params}``, checked before any work. Each must be registered and not one of the
    built-in graph exporters (those are the ``--fp16``/``--int8`` flags), and its parameters
    must be ones its factory takes, of its defaults' types (as a config part's are)."""
    from edgegan.plugins.manager import get_manager
    from edgegan.registry import bind_params

    registry = get_manager().registry("exporters")
    names, params = name_list(names), dict(params or {})
    for name in params:
        if name not in names:
            raise EdgeganError(
                f"--with-param {name}.*: '{name}' is not an exporter asked for with --with"
                f"{' (asked for: ' + ', '.join(names) + ')' if names else ''}"
            )
    chosen: dict[str, dict[str, Any]] = {}
    for name in names:
        entry = registry.get(name)  # an unknown name: one line with the known ones
        if name in EXPORTER_NAMES.values():
            raise EdgeganError(
                f"'{name}' writes the bundle's ONNX graphs; ask for them with --fp16/--int8, "
                "and give --with the name of an exporter plugin"
            )
        chosen[name] = dict(params.get(name) or {})
        bind_params(entry, chosen[name], {})  # a misspelt or mistyped one fails now
        bad = _not_json(chosen[name])  # edgegan.json records them, after the whole export
        if bad:
            raise EdgeganError(f"--with-param {name}: {bad}, which edgegan.json cannot hold")
    return chosen


def run_artifact_exporters(
    exporters: Mapping[str, Mapping[str, Any]], module: Any, spec: dict[str, Any], out_dir: Path
) -> dict[str, Any]:
    """Run each plugin exporter (``{name: params}``, see :func:`artifact_exporters`) on the
    generator; return what each reports, which must be a JSON object (it is kept under
    ``artifacts`` in ``edgegan.json``)."""

    from edgegan.errors import PluginError
    from edgegan.plugins.manager import get_manager

    registry = get_manager().registry("exporters")
    results: dict[str, Any] = {}
    for name, params in exporters.items():
        entry = registry.get(name)
        try:
            result = registry.build(name, params).export(module, spec, out_dir)
        except EdgeganError:
            raise
        except Exception as exc:  # the plugin's bug: one line naming it (EDGEGAN_DEBUG=1)
            raise PluginError(
                f"exporter '{name}'{entry.origin} failed: {exception_line(exc)}"
            ) from exc
        bad = _not_json(result) if isinstance(result, dict) else ""
        if not isinstance(result, dict) or bad:
            what = f"a dict whose {bad}" if bad else type(result).__name__
            raise PluginError(
                f"exporter '{name}'{entry.origin} returned {what}; export() must return a "
                "JSON-serialisable dict (what it wrote, for edgegan.json: str(path), not a Path)"
            )
        results[name] = result
    return results


def _not_json(value: Any, where: str = "") -> str:
    """``"'file' is a PosixPath"``: the first value of ``value`` JSON cannot hold (keys must be
    strings; NaN is fine, edgegan.json writes it as null), or ``""``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"key {key!r} is a {type(key).__name__}"
            found = _not_json(item, f"{where}.{key}" if where else key)
            if found:
                return found
        return ""
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _not_json(item, f"{where}[{i}]")
            if found:
                return found
        return ""
    if value is None or isinstance(value, (str, int, float, bool)):
        return ""
    return f"'{where}' is a {type(value).__name__}"


def restore_set_aside(out: Path) -> None:
    """Put back the previous bundle a killed ``--overwrite`` export left aside, where
    nothing took its place (``out`` missing): there was no bundle at ``out`` at all, and
    nothing said where it had gone. Where a bundle is at ``out`` (another export's), say
    where the set-aside one is: a hidden folder that stayed for good in silence."""
    import warnings

    left = set_aside(out)
    if left and not out.exists():
        replace(left[-1], out)
        warnings.warn(
            f"an interrupted export --overwrite had left the previous bundle at {left[-1]}: "
            f"put back at {out}",
            stacklevel=caller_stacklevel(),
        )
    elif left:
        warnings.warn(
            f"an interrupted export --overwrite left an earlier bundle of {out} at "
            f"{', '.join(map(str, left))}; remove it if it is not needed",
            stacklevel=caller_stacklevel(),
        )


def _same_device(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` lie on one file system (a rename between them can work)."""
    return os.stat(a).st_dev == os.stat(b).st_dev


def _copy_into(tmp: Path, out: Path, children: list[Path]) -> None:
    """Put ``tmp``'s ``children`` into the empty folder ``out`` on another file system
    (``--out`` an empty mount point: a volume, a card), where they cannot be renamed: all are
    copied in under temporary names first (which a killed export leaves as dead temporary
    files, :func:`~edgegan.fileio.holds_files` ignores them), then renamed, ``edgegan.json``
    last. A failure takes back every copy and rename, so ``out`` is left empty."""
    parts = [temp_path(out / c.name) for c in children]
    placed: list[Path] = []
    try:
        for child, part in zip(children, parts, strict=True):
            if child.is_dir():
                shutil.copytree(child, part)
            else:
                shutil.copy2(child, part)
        for child, part in zip(children, parts, strict=True):
            replace(part, out / child.name)
            placed.append(out / child.name)
    except BaseException:
        for path in [*parts, *placed]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink(missing_ok=True)
        raise


def _install(tmp: Path, out: Path, overwrite: bool = True) -> None:
    """Move the finished bundle ``tmp`` to ``out``, replacing an existing (empty, or
    ``--overwrite``) folder only once the new one is complete. Without ``overwrite``, a
    bundle another export put at ``out`` since the last check is not set aside and replaced
    (two exports into one new --out both succeeded, the later one's bundle kept)."""
    if out.is_dir() and not holds_files(out):
        # An empty folder (maybe the shell's working directory) stays: the files move into
        # it, edgegan.json last, so the folder is a bundle only once it is complete. Marked
        # while they move: two exports into one empty folder mixed their files.
        mark = mark_writer(out)
        try:
            if not holds_files(out):  # (else filled since: as a folder that holds a bundle)
                children = sorted(tmp.iterdir(), key=lambda c: c.name == BUNDLE_FILE)
                if not _same_device(tmp, out):  # an empty mount point
                    _copy_into(tmp, out, children)
                    shutil.rmtree(tmp, ignore_errors=True)
                    return
                for child in children:
                    replace(child, out / child.name)
                tmp.rmdir()
                return
        finally:
            release_mark(mark)
    old = None
    if out.exists():
        if not overwrite:
            raise EdgeganError(
                f"--out {out} was filled by another export while this one ran; choose another "
                "folder, or pass --overwrite"
            )
        old = aside_path(out, os.getpid())
        replace(out, old)
    try:
        replace(tmp, out)
    except BaseException:
        if old is not None:
            replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


#: Held while a bundle is exported: exports in two threads at once left process-wide state
#: changed for good (every warning silenced, sys.stdout a StringIO, the root logger at
#: ERROR: the save-and-restore of warnings filters, stdout and loggers is not thread-safe),
#: and torch's export is not thread-safe either.
_EXPORTING = threading.RLock()  # re-entrant: an export started from a progress callback


def _one_at_a_time(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with _EXPORTING:
            return fn(*args, **kwargs)

    return call


@_one_at_a_time
def export(
    run_dir: str | Path,
    out: str | Path | None = None,
    fp16: bool = False,
    int8: bool = False,
    opset: int = 18,
    calib_samples: int = 256,
    overwrite: bool = False,
    exporter: str = "auto",
    directions: list[str] | tuple[str, ...] | None = None,
    artifacts: list[str] | tuple[str, ...] = (),
    progress: Callable[[str], None] | None = None,
    checkpoint: str | None = None,
    engine_profile: Any = None,
    artifact_params: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Export a run's generator(s) to a bundle and return its ``edgegan.json``: a GAN run's
    generator (EMA weights when kept), or each direction of a cyclegan run (``directions``:
    both by default; see :mod:`edgegan.export.cyclegan`).

    FP32 ONNX is always exported (the other precisions derive from it and are compared with
    the same torch reference); ``fp16`` and ``int8`` add the mixed-precision and Q/DQ graphs.
    ``artifacts`` names exporter plugins that write something else beside the graphs (their
    reports go under ``artifacts`` in ``edgegan.json``, per direction for a cyclegan run);
    ``artifact_params`` gives some of them parameters (``{name: {param: value}}``, recorded
    under ``artifact_params``), checked before anything is written.
    ``progress`` receives a line per graph as it is written and checked (the CLI prints them).
    The bundle goes to ``out`` (default ``RUN_DIR/export``), which must be new or empty
    unless ``overwrite``. ``checkpoint``: which of the run's ``checkpoints/`` to export
    (``best``, ``step_0001000``, ...; None: ``last``), recorded in ``source.checkpoint``.
    ``engine_profile``: the :class:`~edgegan.export.trt_profile.BuildOptions` of engines to
    be built from the bundle afterwards, whose profile is checked against the run's graphs
    before anything is written.
    """
    from edgegan import __version__
    from edgegan.export.onnx import MAX_OPSET, MIN_OPSET, resolve_exporter
    from edgegan.plugins.manager import get_manager

    run_dir = Path(run_dir)
    _check_run_dir(run_dir, checkpoint)
    out = default_out(run_dir, out)
    dest = out.resolve()  # "." or ".." have no name to put the temporary folder beside
    # (the bundle is made beside it; the run is read by Python alone: any name will do)
    try:
        os.fsencode(dest).decode("utf-8")  # its bytes, whatever the locale decoded them to
    except UnicodeDecodeError:  # legal on Linux; onnxruntime failed on it, a traceback
        raise EdgeganError(
            f"{str(dest).encode('utf-8', 'backslashreplace').decode()}: its name is not "
            "UTF-8, which onnxruntime needs of the paths it opens; rename the folder"
        ) from None
    if dest == Path(dest.anchor):
        raise EdgeganError(f"--out {out} is a file system root; name a folder for the bundle")
    restore_set_aside(dest)
    _check_out(out, overwrite, run_dir)
    from edgegan.runtime.base import is_int

    if not is_int(calib_samples) or calib_samples < 1:
        raise EdgeganError(f"--calib-samples must be at least 1, got {calib_samples!r}")
    if not is_int(opset) or not MIN_OPSET <= opset <= MAX_OPSET:  # "18" was a TypeError
        raise EdgeganError(f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset!r}")
    which = resolve_exporter(exporter)
    exporters = artifact_exporters(artifacts, artifact_params)
    directions = name_list(directions) if directions else None
    spec, weights, state = _load_spec(run_dir, checkpoint)
    _warn_if_training(run_dir)
    if directions and not is_translation_task(spec["task"]):
        raise EdgeganError(
            f"--direction applies to cyclegan and pix2pix runs; {run_dir} is a GAN run"
        )
    if directions:
        task_directions(spec["task"], directions)  # one the run lacks fails before any work
    if engine_profile is not None:
        _check_engine_profile(spec, engine_profile, directions)

    registry = get_manager().registry("exporters")
    params: dict[str, dict[str, Any]] = {
        "fp32": {"opset": opset, "exporter": exporter},  # "auto" may fall back to legacy
        "fp16": {"opset": opset},
        "int8": {"opset": opset, "calib_samples": calib_samples},
    }
    precisions = ["fp32"] + (["fp16"] if fp16 else []) + (["int8"] if int8 else [])

    def build(precision: str, **extra: Any) -> Any:
        exporter = registry.build(EXPORTER_NAMES[precision], {**params[precision], **extra})
        return _Announced(exporter, precision, progress) if progress else exporter

    made = make_dirs(dest.parent, exist_ok=True)  # taken back if the export fails
    # The host in the name: on a shared filesystem, another machine's export (whose pid
    # means nothing here) is never taken for a killed one of this host.
    stem = f".{dest.name}.tmp-{socket.gethostname()}-"
    tmp = dest.with_name(f"{stem}{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for left in left_by_gone(dest.parent, stem):  # a killed export's half-made bundle
        if left.is_dir() and not left.is_symlink():
            shutil.rmtree(left, ignore_errors=True)
    tmp.mkdir()
    done = False
    try:
        if is_translation_task(spec["task"]):
            from edgegan.export.cyclegan import export_graphs

            parts = export_graphs(
                run_dir,
                spec,
                tmp,
                precisions,
                build,
                directions,
                calib_samples,
                exporters,
                checkpoint,
                state,
            )
        else:
            parts = _gan_graphs(run_dir, spec, tmp, precisions, build, exporters, checkpoint, state)
            parts["weights"] = weights
        per_graph = parts["models"].values() if "directions" in parts else [parts["models"]]
        used = next(iter(per_graph))["fp32"].get("exporter", which)
        meta: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "edgegan_version": __version__,
            "task": spec["task"],
            **({"directions": parts["directions"]} if "directions" in parts else {}),
            "source": {
                "run_dir": str(run_dir.resolve()),
                "step": parts["step"],
                "weights": parts["weights"],
                "digest": parts["digest"],
                # the checkpoint exported, when not the run's last (best, step_0001000, ...)
                **(
                    {"checkpoint": Path(checkpoint).stem}
                    if checkpoint not in (None, "last", "last.pt")
                    else {}
                ),
            },
            "spec": parts["spec"],
            "inputs": parts["inputs"],
            "outputs": parts["outputs"],
            "models": parts["models"],
            "engines": {},
            **({"artifacts": parts["artifacts"]} if parts.get("artifacts") else {}),
            # what export_command repeats to write the bundle again
            **(
                {"artifact_params": {n: p for n, p in exporters.items() if p}}
                if any(exporters.values())
                else {}
            ),
            "versions": _versions(used),
        }
        record_graph_digests(tmp, meta)
        write_bundle(tmp / BUNDLE_FILE, meta)
        _check_out(out, overwrite, run_dir)  # still free? (another process may write there)
        _install(tmp, dest, overwrite)
        done = True
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:  # a full disk's write names no
            exc.filename = str(dest)  # file: say which bundle
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            remove_empty_dirs(made)
    return meta


class _Announced:
    """An exporter that reports each graph it writes (exports of large generators take
    minutes, INT8 calibration most of them)."""

    def __init__(self, exporter: Any, precision: str, progress: Callable[[str], None]) -> None:
        self.exporter, self.precision, self.progress = exporter, precision, progress

    def export(self, generator: Any, spec: dict[str, Any], out_dir: Path) -> dict[str, Any]:
        from edgegan.export.bundle import model_file

        name = model_file(self.precision, spec.get("direction"))
        t0 = time.monotonic()
        self.progress(f"export: {name} ...")
        entry = self.exporter.export(generator, spec, out_dir)
        psnr = (entry.get("parity") or {}).get("psnr")
        parity = f", parity {psnr:.1f} dB" if isinstance(psnr, (int, float)) else ""
        self.progress(f"export: {name} done in {time.monotonic() - t0:.1f} s{parity}")
        return entry


def _gan_graphs(
    run_dir: Path,
    spec: dict[str, Any],
    out_dir: Path,
    precisions: list[str],
    build: Any,
    artifacts: Mapping[str, Mapping[str, Any]],
    checkpoint: str | None = None,
    state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export a GAN run's generator at each precision (and run the ``artifacts`` exporters,
    ``{name: params}``):
    the graph parts of ``edgegan.json``. ``state``: the checkpoint, when already loaded."""
    from edgegan.export.bundle import weights_digest
    from edgegan.export.signature import io_spec
    from edgegan.sampling import load_run_generator

    generator = load_run_generator(
        run_dir, device="cpu", ema=True, checkpoint=checkpoint, state=state
    )
    digest = weights_digest(generator.module)  # before an exporter could touch the module
    spec = _graph_spec(spec)
    models = {p: build(p).export(generator.module, spec, out_dir) for p in precisions}
    inputs, outputs = io_spec(spec)
    return {
        "step": generator.step,
        "digest": digest,
        "spec": _bundle_spec(spec),
        "inputs": inputs,
        "outputs": outputs,
        "models": models,
        "artifacts": run_artifact_exporters(artifacts, generator.module, spec, out_dir),
    }


def summary_rows(meta: dict[str, Any], bundle: str | Path) -> list[tuple[str, ...]]:
    """Rows of the table ``edgegan export`` prints: precision, file, size, max abs, PSNR."""
    from edgegan.export.bundle import directions, graph_entries

    rows: list[tuple[str, ...]] = [("precision", "file", "size", "max abs err", "PSNR dB")]
    graphs = [
        (precision, entry)
        for d in directions(meta) or [None]  # type: ignore[list-item]  # None: a GAN's graphs
        for precision, entry in graph_entries(meta, d).items()
    ]
    for precision, entry in graphs:
        path = Path(bundle) / entry["file"]
        size = path.stat().st_size if path.is_file() else 0
        parity = entry.get("parity", {})
        max_abs = parity.get("max_abs")
        rows.append(
            (
                precision,
                entry["file"],
                f"{size / 1024:.0f} KB" if size < 1024 * 1024 else f"{size / 2**20:.1f} MB",
                "-" if max_abs is None else f"{max_abs:.2e}",
                "-" if parity.get("psnr") is None else f"{parity['psnr']:.1f}",
            )
        )
    return rows


def format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
