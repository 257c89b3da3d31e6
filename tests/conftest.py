"""Shared fixtures: no autoloaded plugins, a fresh plugin manager per test, fake plugins."""

from __future__ import annotations

import importlib
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Tests see only the built-in plugins and the ones they name in EDGEGAN_LOAD_PLUGINS, never
# whatever happens to be installed in the environment. Set before edgegan is imported.
os.environ["EDGEGAN_DISABLE_PLUGIN_AUTOLOAD"] = "1"
for _var in ("EDGEGAN_LOAD_PLUGINS", "EDGEGAN_DISABLE_PLUGINS", "EDGEGAN_STRICT_PLUGINS"):
    os.environ.pop(_var, None)
# The test models are tiny: one thread is faster than two (no thread hand-offs) and keeps a
# loaded CI machine from stalling on spinning OpenMP workers. Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# onnxruntime (1.29+) sends usage telemetry and writes a device id under HOME: not from tests
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from edgegan.plugins.manager import reset_manager  # noqa: E402

#: What makes a test one of the ``gpu`` tests (``tools/gpu_check.py`` runs ``-m gpu``): a
#: skip for want of CUDA, a GPU or TensorRT, or a name (or parameter id) that says so.
_GPU = re.compile(r"cuda|gpu|tensorrt|trt", re.IGNORECASE)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        reasons = [str(m.kwargs.get("reason", "")) for m in item.iter_markers("skipif")]
        if any(_GPU.search(text) for text in (item.name, *reasons)):
            item.add_marker(pytest.mark.gpu)


@pytest.fixture(autouse=True)
def _fresh_plugin_manager() -> Iterator[None]:
    """Each test loads plugins afresh (and leaves no manager behind)."""
    reset_manager()
    yield
    reset_manager()


FakePlugin = Callable[..., str]


@pytest.fixture
def fake_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePlugin]:
    """Install fake plugin distributions that ``importlib.metadata`` really finds.

    ``fake_plugin(source, dist="edgegan-fake", version="1.0", name=None, module=None,
    target=None)`` writes ``<module>.py`` holding ``source`` (dedented) and a
    ``<dist>-<version>.dist-info`` (METADATA, ``entry_points.txt`` with ``[edgegan]
    name = target``) into a fresh folder put first on ``sys.path``. ``name`` (the entry point)
    defaults to the distribution name, ``module`` to the distribution name with ``_`` for
    ``-``, ``target`` to the module. Returns the entry-point name. Call it several times for
    several distributions; the modules are unloaded after the test.
    """
    modules: list[str] = []

    def make(
        source: str,
        *,
        dist: str = "edgegan-fake",
        version: str = "1.0",
        name: str | None = None,
        module: str | None = None,
        target: str | None = None,
    ) -> str:
        module = module or re.sub(r"[^A-Za-z0-9_]", "_", dist)
        name = name or dist
        site = tmp_path / f"site-{dist}-{version}"
        if site.exists():
            raise ValueError(f"fake distribution {dist} {version} is already installed")
        info = site / f"{re.sub(r'[^A-Za-z0-9.]', '_', dist)}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[edgegan]\n{name} = {target or module}\n")
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        sys.modules.pop(module, None)
        modules.append(module)
        monkeypatch.syspath_prepend(str(site))  # also invalidates the import caches
        importlib.invalidate_caches()
        return name

    yield make
    for module in modules:
        sys.modules.pop(module, None)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module of tiny-tensor tests: a second thread only adds sync
    cost, and on a busy 2-core machine OpenMP's spinning threads slow them tenfold."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models() -> object:
    """The built-in model registry (no installed plugins)."""
    from edgegan.plugins.manager import PluginManager

    return PluginManager(load_entry_points=False).registry("models")
