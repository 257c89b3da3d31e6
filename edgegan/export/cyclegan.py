"""The graphs of a cyclegan or pix2pix run: one image-to-image graph per direction and
precision.

``AtoB`` is ``g_ab`` (with its EMA weights when the run kept them), ``BtoA`` is ``g_ba`` (a
cyclegan run's; a pix2pix run has ``AtoB`` alone); each
is exported, checked and described exactly like a GAN generator (the exporters are the same
plugins; :mod:`edgegan.export.signature` supplies what differs), into ``model_AtoB.onnx``,
``model_AtoB.fp16.onnx``, ``model_AtoB.int8.onnx`` and the same for ``BtoA``. The INT8 graphs
are calibrated on images of their input domain from the run's own dataset: the test split,
else the training split.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgegan.errors import DataError, EdgeganError, caller_stacklevel
from edgegan.export.signature import (
    MIN_SIDE,
    SOURCES,
    check_direction,
    io_spec,
    task_directions,
    training_data,
)


def calibration_images(
    data: Any,
    direction: str,
    samples: int,
    warn: bool = True,
    datasets: dict[str, Any] | None = None,
) -> tuple[np.ndarray, str]:
    """Up to ``samples`` images ``(N, C, H, W)`` of ``direction``'s input domain from the
    run's dataset (``data``: its config's data section; the test split, else the training
    split) and a description of where they came from. With ``warn``, a handful of images
    (fewer than :data:`FEW_CALIBRATION_IMAGES` and than ``samples``) or images all of one
    value draw a warning. ``datasets``: the splits built so far, by name, to build each
    once for several calls (building one lists and checks every file of both domains)."""
    from edgegan.plugins.manager import get_manager
    from edgegan.rng import random_state_kept, seed_all

    domain = SOURCES[check_direction(direction)]
    problems = []
    for split in ("test", "train"):
        # A training split draws (random crops and flips, a random B for each A) from the
        # global streams: seeded, so an export calibrates (and quantises) alike every time.
        with random_state_kept():
            seed_all(0, cuda=False)
            try:
                ds = (datasets or {}).get(split)
                if ds is None:
                    registry = get_manager().registry("datasets")
                    ds = registry.build(data.name, data.params, {"split": split})
                    if datasets is not None:
                        datasets[split] = ds
                n = min(int(samples), len(ds))
                if n < 1:
                    problems.append(f"its {split} split is empty")
                    continue
                images = np.stack([np.asarray(ds[i][domain], dtype=np.float32) for i in range(n)])
            except DataError as exc:
                problems.append(str(exc))
                continue
        how = f"first {n}" if split == "test" else f"{n} drawn as training draws them, seed 0"
        source = f"dataset {data.name}, {split} split, domain {domain}, {how}"
        if warn:
            _warn_thin_calibration(images, int(samples), source)
        return images, source
    raise EdgeganError(
        f"--int8 calibrates on images from the run's dataset '{data.name}', which cannot be "
        f"read here ({'; '.join(dict.fromkeys(problems))}); make the data available or export "
        "without --int8"
    )


#: Fewer calibration images than this (and than asked for) draw a warning: 16 varied images
#: calibrated the digit CycleGAN to 40.5 dB. A test split smaller than --calib-samples'
#: default 256 (horse2zebra's: 120 and 140) is no reason to warn.
FEW_CALIBRATION_IMAGES = 16


def _warn_thin_calibration(images: np.ndarray, samples: int, source: str) -> None:
    """INT8 ranges drawn from a handful of images, or from images that are all alike, may
    clip other inputs: one black image calibrated a graph to 20.2 dB, just above the floor,
    where 16 varied ones gave 40.5 dB."""
    from edgegan.data.files import DataWarning

    if len(images) < min(samples, FEW_CALIBRATION_IMAGES):
        warnings.warn(
            f"--int8 calibrates on {len(images)} images ({source}), fewer than --calib-samples "
            f"{samples}: ranges from so few images may clip other inputs",
            DataWarning,
            stacklevel=caller_stacklevel(),
        )
    if len(images) and float(np.ptp(images)) < 1e-6:
        warnings.warn(
            f"--int8 calibrates on images that are all one value ({source}): the ranges "
            "describe no real input",
            DataWarning,
            stacklevel=caller_stacklevel(),
        )


def export_graphs(
    run_dir: str | Path,
    spec: dict[str, Any],
    out_dir: Path,
    precisions: list[str],
    build: Callable[..., Any],
    directions: list[str] | tuple[str, ...] | None = None,
    calib_samples: int = 256,
    artifacts: Mapping[str, Mapping[str, Any]] | None = None,
    checkpoint: str | None = None,
    state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export each direction of the cyclegan or pix2pix run at each precision into
    ``out_dir`` (and run the ``artifacts`` exporter plugins, ``{name: params}``, on each
    direction).

    ``build(precision, **params)`` returns the exporter plugin of a precision. Returns the
    parts of ``edgegan.json`` that describe the graphs: ``directions``, ``spec``, ``inputs``,
    ``outputs``, ``models``, and the ``step`` and ``weights`` of the run. ``state``: the
    checkpoint, when the caller has already loaded it.
    """
    from edgegan.config import saved_config
    from edgegan.export.api import run_artifact_exporters
    from edgegan.export.bundle import weights_digest
    from edgegan.train.checkpoint import load_checkpoint
    from edgegan.train.logs import checkpoint_file
    from edgegan.translate import load_translator, translator_weights

    todo = task_directions(spec["task"], directions)
    path = checkpoint_file(run_dir, checkpoint)
    if state is None:
        state = load_checkpoint(path, map_location="cpu")
    # where INT8 calibration images come from
    data = saved_config(state["config"], str(path), state.get("edgegan_version")).data
    parts: dict[str, Any] = {"directions": todo, "inputs": {}, "outputs": {}, "models": {}}
    artifacts = artifacts or {}
    parts["artifacts"] = {name: {} for name in artifacts}
    weights: dict[str, str] = {}
    digests: dict[str, str] = {}
    built: dict[str, Any] = {}  # the dataset's splits, built once for every direction
    if "int8" in precisions:  # data that cannot be read fails now, not after other graphs
        for d in todo:
            calibration_images(data, d, 1, warn=False, datasets=built)
    for d in todo:
        generator = load_translator(run_dir, d, device="cpu", state=state, checkpoint=checkpoint)
        gspec = generator.spec
        weights[d] = translator_weights(state, d)[1]
        digests[d] = weights_digest(generator.module)
        models: dict[str, Any] = {}
        for precision in precisions:
            extra: dict[str, Any] = {}
            if precision == "int8":
                images, source = calibration_images(data, d, calib_samples, datasets=built)
                extra = {"calibration": images, "calib_source": source}
            models[precision] = build(precision, **extra).export(generator.module, gspec, out_dir)
        parts["models"][d] = models
        reports = run_artifact_exporters(artifacts, generator.module, gspec, out_dir)
        for name, report in reports.items():
            parts["artifacts"][name][d] = report
        parts["inputs"][d], parts["outputs"][d] = io_spec(gspec)
    # Both directions come from one run and checkpoint: the last one's step and graph spec.
    parts["spec"] = {
        "channels_a": int(spec["channels_a"]),
        "channels_b": int(spec["channels_b"]),
        "image_size": int(spec["image_size"]),
        "value_range": gspec["value_range"],
        "size_multiple": gspec["size_multiple"],
        "min_side": MIN_SIDE,  # smaller inputs are padded up to it (a 4 px one fails the graph)
        **training_data(spec),
    }
    return {**parts, "step": generator.step, "weights": weights, "digest": digests}
