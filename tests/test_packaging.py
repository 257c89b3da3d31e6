"""The wheel carries what an installed edgegan needs besides its modules."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_ships_its_data_and_type_marker(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools")
    # Built from a copy, so setuptools' build/ folder stays out of the checkout.
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "edgegan", src / "edgegan", ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + [str(src), "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("edgegan-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # py.typed: without it a type checker treats the whole public API as Any.
    assert "edgegan/py.typed" in names
    for pattern in ("presets/*.yaml", "data/assets/mnist10k/*", "metrics/assets/*"):
        shipped = {n for n in names if Path(n).match(f"edgegan/{pattern}")}
        assert shipped == {
            f"edgegan/{p.relative_to(ROOT / 'edgegan').as_posix()}"
            for p in (ROOT / "edgegan").glob(pattern)
        }, pattern


@pytest.mark.parametrize("package", ["edgegan.data", "edgegan.metrics"])
def test_lazy_exports_are_typed_listed_and_importable(package):
    """A lazily exported name is in ``__all__``, imported under TYPE_CHECKING (so type
    checkers see its real type, not ``Any``) from the module that defines it, and loads."""
    import ast
    import importlib

    module = importlib.import_module(package)
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    typed = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                typed.update({alias.name: stmt.module for alias in stmt.names})
    lazy = module._EXPORTS
    assert typed == lazy
    assert set(lazy) <= set(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
