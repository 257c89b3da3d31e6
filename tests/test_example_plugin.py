"""The example plugin package (plugins/edgegan-example), installed for real."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys

import pytest

from edgegan.plugins.manager import get_manager, registry, reset_manager

try:
    VERSION = md.distribution("edgegan-example").version
except md.PackageNotFoundError:
    pytest.skip(
        "the example plugin is not installed (install plugins/edgegan-example: "
        "pip install -e plugins/edgegan-example)",
        allow_module_level=True,
    )


@pytest.fixture
def example(monkeypatch):
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", "example")
    reset_manager()
    return get_manager()


def test_module_import_is_cheap():
    code = "import sys, edgegan_example; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_parts_are_listed_with_their_distribution(example):
    info = example.infos["example"]
    assert (info.distribution, info.version, info.error) == ("edgegan-example", VERSION, None)
    assert info.hooks == [
        "edgegan_register_datasets",
        "edgegan_register_losses",
        "edgegan_register_models",
    ]
    for kind, name, role in [
        ("models", "mlp", "generator"),
        ("models", "mlp", "discriminator"),
        ("losses", "lsgan-chi2", None),
        ("datasets", "blobs", None),
    ]:
        entry = registry(kind).get(name, role)
        assert (entry.plugin, entry.distribution, entry.version) == (
            "example",
            "edgegan-example",
            VERSION,
        )
    assert info.provides == {
        "models": ["mlp (generator)", "mlp (discriminator)"],
        "losses": ["lsgan-chi2"],
        "datasets": ["blobs"],
    }


def test_parts_build_and_fit_together(example):
    import torch

    data = registry("datasets").build("blobs", {"channels": 3, "num_samples": 8}, {"split": "test"})
    assert data.image_shape == (3, 32, 32) and data.num_classes == 4 and len(data) == 8
    assert data.class_names[0] == "top-left"
    image, label = data[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert -1.0 <= float(image.min()) and float(image.max()) <= 1.0 and label in range(4)
    again = registry("datasets").build(
        "blobs", {"channels": 3, "num_samples": 8}, {"split": "test"}
    )
    assert torch.equal(data.images, again.images)  # deterministic from the seed
    train = registry("datasets").build("blobs", {"channels": 3, "num_samples": 8}, {})
    assert not torch.equal(data.images, train.images)  # splits are different streams

    context = {"channels": 3, "image_size": 32, "latent_dim": 16, "num_classes": 4}
    gen = registry("models").build("mlp", {"hidden_dim": 32}, context, role="generator")
    disc = registry("models").build("mlp", {"spectral_norm": True}, context, role="discriminator")
    assert (gen.latent_dim, gen.num_classes, gen.image_shape) == (16, 4, (3, 32, 32))
    labels = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        fake = gen(torch.randn(4, 16), labels)
    assert fake.shape == (4, 3, 32, 32) and float(fake.abs().max()) <= 1.0
    logits = disc(fake, labels)
    assert logits.shape == (4,)
    with pytest.raises(ValueError, match="class-conditional"):
        gen(torch.randn(4, 16))
    # -1, an unlabelled item, is no class (a zero one-hot), not the last class
    gen.eval()
    z = torch.randn(1, 16).expand(3, -1)
    with torch.no_grad():
        none, last, zero = gen(z, torch.tensor([-1, 3, 0]))
        assert not torch.equal(none, last) and not torch.equal(none, zero)
        plain = torch.cat([z[:1], torch.zeros(1, 4)], 1)  # what the MLP sees for no class
        assert torch.allclose(none, gen.net(plain).view(3, 32, 32), atol=1e-6)
        assert disc(fake[:2], torch.tensor([-1, 3])).shape == (2,)

    loss = registry("losses").build("lsgan-chi2", {}, {})
    ones = torch.ones(4)
    assert float(loss.d_loss(ones, -ones)) == 0.0  # reals at b=1, fakes at a=-1
    assert float(loss.g_loss(torch.zeros(4))) == 0.0  # fakes at c=0
    assert float(loss.g_loss(ones)) == pytest.approx(0.5)

    uncond = registry("models").build("mlp", {}, {**context, "num_classes": 0}, role="generator")
    assert uncond(torch.randn(2, 16)).shape == (2, 3, 32, 32)


@pytest.mark.slow
def test_train_a_few_steps_with_the_example_parts(example, tmp_path):
    from edgegan.config import load_config
    from edgegan.train import train

    cfg = load_config(
        "dcgan-mnist",
        [
            "model.generator.name=mlp",
            "model.discriminator.name=mlp",
            "model.generator.hidden_dim=64",
            "model.discriminator.hidden_dim=64",
            "loss.name=lsgan-chi2",
            "data.name=blobs",
            "data.num_samples=256",
            "train.steps=5",
            "train.batch_size=16",
            "train.device=cpu",
            "train.sample_every=5",
            "train.checkpoint_every=5",
            "train.sample_grid=16",
            "eval.at_end=false",
            "train.progress=false",
        ],
    )
    result = train(cfg, out_dir=tmp_path / "run")
    assert result.step == 5
    run_dir = result.run_dir
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "metrics.jsonl").is_file()
    assert "lsgan-chi2" in (run_dir / "config.yaml").read_text()


def test_cli_lists_the_example_plugin(tmp_path):
    env = {**os.environ, "EDGEGAN_LOAD_PLUGINS": "example"}
    out = subprocess.run(
        [sys.executable, "-m", "edgegan", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    plugins = data["plugins"] if isinstance(data, dict) else data
    (example,) = [p for p in plugins if p["name"] == "example"]
    assert example["distribution"] == "edgegan-example" and example["version"] == VERSION
    assert example["builtin"] is False and not example["error"]
    assert "edgegan_register_models" in example["hooks"]
    assert "lsgan-chi2" in example["provides"]["losses"]


def test_cli_a_plugin_factorys_value_error_is_one_line(tmp_path):
    env = {**os.environ, "EDGEGAN_LOAD_PLUGINS": "example"}
    proc = subprocess.run(
        [sys.executable, "-m", "edgegan", "train", "data.name=blobs", "data.channels=2"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: dataset 'blobs' (plugin 'example', edgegan-example {VERSION}): "
        "blobs has 1 or 3 channels, got 2"
    )
    assert not (tmp_path / "runs").exists()
