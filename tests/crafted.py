"""Files crafted as an attacker (or a damaged disk) would make them, shared by the tests of
the readers that must refuse them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np


def npz_declaring(path: Path, **arrays: tuple[str, tuple[int, ...]] | np.ndarray) -> None:
    """An .npz whose arrays given as ``(descr, shape)`` are a header alone, with no data, so
    a file of a few hundred bytes may declare terabytes; arrays given as such are whole."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            if isinstance(array, np.ndarray):
                np.lib.format.write_array(member, array)
            else:
                descr, shape = array
                np.lib.format.write_array_header_1_0(
                    member, {"descr": descr, "fortran_order": False, "shape": shape}
                )
            archive.writestr(f"{name}.npy", member.getvalue())
