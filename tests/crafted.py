"""Files crafted as an attacker (or a damaged disk) would make them, shared by the tests of
the readers that must refuse them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np


def npz_declaring(path: Path, **arrays: tuple[str, tuple[int, ...]]) -> None:
    """An .npz whose arrays are a header alone, declaring ``(descr, shape)``: no data, so a
    file of a few hundred bytes may declare terabytes."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, (descr, shape) in arrays.items():
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header, {"descr": descr, "fortran_order": False, "shape": shape}
            )
            archive.writestr(f"{name}.npy", header.getvalue())
