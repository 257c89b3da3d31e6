"""The fid metric: FID's Inception-v3 against pytorch-fid's features, KID against its formula,
references (images, statistics, digits), the eval command and training with eval.metric=fid.

The real weights cannot be downloaded here: the tests use deterministic stand-in weights
(tests/inception_weights.py) and a fixture of pytorch-fid's own features on them."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from crafted import npz_declaring
from inception_weights import PARITY_FILE, parity_inputs, random_inception_state
from PIL import Image
from tiny import TINY_CYCLEGAN, TINY_GAN

from edgegan.cli import cli
from edgegan.config import load_config
from edgegan.errors import ConfigError, EdgeganError
from edgegan.metrics import fid as fid_mod
from edgegan.metrics import inception
from edgegan.metrics.fid import (
    FidMetric,
    inception_score,
    kernel_inception_distance,
    save_stats,
)

pytestmark = pytest.mark.filterwarnings(
    # stand-in weights, and FIDs of a few images: both warned about, on purpose
    "ignore:.*is not pytorch-fid's:UserWarning",
    "ignore:an FID from .* samples means little:UserWarning",
    "ignore:precision, recall, density and coverage need more:UserWarning",
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "stand_in.pth"
    torch.save(random_inception_state(), path)
    return path


@pytest.fixture(autouse=True)
def _fresh_cache_and_small_inputs(request, monkeypatch):
    """Each test reads its references again; all but the parity test feed the network
    75x75 images (its smallest input) instead of 299x299: 16x less work, the same plumbing
    (Inception takes 0.1 s an image at 299 on 2 cores)."""
    fid_mod._CACHE.clear()
    if request.node.name != "test_features_are_pytorch_fids":
        monkeypatch.setattr(inception, "INPUT_SIZE", 75)
    yield
    fid_mod._CACHE.clear()


def _images(seed: int, n: int, size: int = 16, channels: int = 3, bright: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, channels, size, size, generator=g) * 2 - 1 + bright).clamp(-1, 1)


def _write_pngs(folder, images) -> None:
    folder.mkdir(parents=True)
    arr = ((images + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    for i, a in enumerate(arr):
        Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(folder / f"{i:03d}.png")


def test_features_are_pytorch_fids(weights) -> None:
    """On the same weights, the network gives pytorch-fid's features (tools/fid_parity.py
    wrote them with pytorch-fid 0.3.0 and torchvision 0.28: equal to the bit on torch 2.13)."""
    net = inception.load_inception(weights)
    want = np.load(PARITY_FILE)
    for size, x01 in parity_inputs().items():
        with torch.no_grad():
            got = net.features01(x01).numpy()
        ref = want[f"features_{size}"]
        assert got.shape == (2, inception.FEATURE_DIM)
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max(), size
        assert np.abs(ref[0] - ref[1]).max() > 0.1  # the two inputs' features differ


def test_8_bit_images_are_scaled_as_pytorch_fid_scales_them(weights) -> None:
    """pytorch-fid reads a file's 8-bit values u as u / 255; edgegan holds images as
    u / 127.5 - 1, and (x + 1) / 2 of those differs from u / 255 in the last bit for a
    quarter of the 256 values. The features of 8-bit images, uint8 or float, are those of
    u / 255 to the bit; other float images go through (x + 1) / 2."""
    net = inception.load_inception(weights)
    u = torch.arange(256, dtype=torch.uint8).repeat(3 * 16 * 16 * 2 // 256 + 1)
    u = u[: 2 * 3 * 16 * 16].reshape(2, 3, 16, 16)
    as_float = u.float() / 127.5 - 1
    assert not torch.equal((as_float + 1) / 2, u.float() / 255)  # what the test is about
    with torch.no_grad():
        want = net.features01(u.float() / 255).double().numpy()
    assert np.array_equal(fid_mod.inception_features(as_float, net), want)
    assert np.array_equal(fid_mod.inception_features(u, net), want)
    assert np.array_equal(fid_mod.inception_features(u.numpy(), net), want)
    x = _images(3, 2)  # not 8-bit values
    with torch.no_grad():
        assert np.array_equal(fid_mod.inception_features(x, net), net(x).double().numpy())


def test_image_files_give_the_features_of_their_values_over_255(weights, tmp_path) -> None:
    """Read from PNGs (uint8 held (N, H, W, C), seen as (N, C, H, W)) and as samples
    (float), the features are those of the contiguous u / 255 that pytorch-fid feeds: a
    channels-last batch would take other convolution kernels (1e-5 apart)."""
    from edgegan.metrics.evaluate import load_samples, read_images

    net = inception.load_inception(weights)
    _write_pngs(tmp_path / "png", _images(4, 3, size=20))
    u = torch.from_numpy(np.stack([np.asarray(Image.open(p)) for p in
                                   sorted((tmp_path / "png").iterdir())]))  # fmt: skip
    x01 = u.permute(0, 3, 1, 2).contiguous().float() / 255
    with torch.no_grad():  # in the same batches: a batch's size can change the kernels too
        want = np.concatenate([net.features01(x01[:2]), net.features01(x01[2:])]).astype(float)
    raw = read_images(tmp_path / "png")[0]
    assert raw.dtype == torch.uint8 and not raw.is_contiguous()
    assert np.array_equal(fid_mod.inception_features(raw, net, batch_size=2), want)
    floats = load_samples(tmp_path / "png")[0]
    assert np.array_equal(fid_mod.inception_features(floats, net, batch_size=2), want)


def test_the_weights_are_found_given_in_the_environment_or_in_torch_hubs_cache(
    weights, tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    with pytest.raises(EdgeganError) as exc_info:
        inception.find_weights()
    message = str(exc_info.value)
    assert inception.WEIGHTS_URL in message and inception.WEIGHTS_ENV in message
    assert str(tmp_path / "home" / "hub" / "checkpoints") in message
    with pytest.raises(EdgeganError, match="Inception weights not found: .*nope.pth"):
        inception.find_weights(tmp_path / "nope.pth")
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(tmp_path / "gone.pth"))
    with pytest.raises(EdgeganError, match=r"gone.pth \(from \$EDGEGAN_INCEPTION_WEIGHTS\)"):
        inception.find_weights()
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(weights))
    assert inception.find_weights() == weights
    monkeypatch.delenv(inception.WEIGHTS_ENV)
    cached = tmp_path / "home" / "hub" / "checkpoints" / inception.WEIGHTS_NAME
    cached.parent.mkdir(parents=True)
    cached.symlink_to(weights)  # where pytorch-fid downloads them
    assert inception.find_weights() == cached


def test_weights_of_another_network_are_one_line(weights, tmp_path) -> None:
    state = random_inception_state()
    state.pop("Mixed_7c.branch_pool.conv.weight")
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(EdgeganError, match=r"missing 'Mixed_7c.branch_pool.conv.weight' \(1 m"):
        inception.load_inception(tmp_path / "missing.pth")
    state = random_inception_state()
    state["AuxLogits.fc.weight"] = torch.zeros(3)  # torchvision's, with its aux classifier
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(EdgeganError, match="unexpected 'AuxLogits.fc.weight'"):
        inception.load_inception(tmp_path / "extra.pth")
    state = random_inception_state()
    state["fc.weight"] = torch.zeros(1000, 2048)  # an ImageNet-1k head
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(EdgeganError, match="'fc.weight' of another shape"):
        inception.load_inception(tmp_path / "shape.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(EdgeganError, match="cannot read Inception weights .*text.pth"):
        inception.load_inception(tmp_path / "text.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(EdgeganError, match="holds no state dict"):
        inception.load_inception(tmp_path / "list.pth")
    # the port's file has no BatchNorm step counters; a state dict with them loads too
    with_counters = inception.FIDInceptionV3().state_dict()
    with_counters.update(random_inception_state())
    torch.save(with_counters, tmp_path / "counters.pth")
    inception.load_inception(tmp_path / "counters.pth")


def test_weights_that_are_not_pytorch_fids_are_warned_about(weights) -> None:
    assert not inception.is_standard_weights(weights)
    with pytest.warns(UserWarning, match="cannot be compared with published ones"):
        FidMetric(weights=str(weights), device="cpu")


@pytest.mark.parametrize(
    "option, value, says",
    [("kid_subset_size", 1, "kid_subset_size must be an integer >= 2, got 1"),
     ("kid_subsets", 0, "kid_subsets must be an integer >= 1, got 0"),
     ("batch_size", True, "batch_size must be an integer >= 1, got True"),
     ("is_splits", 2.0, "is_splits must be an integer >= 1, got 2.0")],
)  # fmt: skip
def test_bad_options_are_refused_when_the_metric_is_built(weights, option, value, says) -> None:
    with pytest.raises(EdgeganError, match=f"^{says}$"):
        FidMetric(weights=str(weights), **{option: value})


def _kid_by_the_formula(f1, f2, subsets, size, seed=0):
    """torch-fidelity's KID, written out: unbiased MMD^2 of the polynomial kernel."""
    rng = np.random.default_rng(seed)
    d, out = f1.shape[1], []
    for _ in range(subsets):
        x = f1[rng.choice(len(f1), size, replace=False)]
        y = f2[rng.choice(len(f2), size, replace=False)]
        kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        m = size
        mmd = (
            (kxx.sum() - np.diag(kxx).sum()) / (m * (m - 1))
            + (kyy.sum() - np.diag(kyy).sum()) / (m * (m - 1))
            - 2 * kxy.sum() / (m * m)
        )
        out.append(mmd)
    return float(np.mean(out)), float(np.std(out))


def test_kid_is_its_formula_on_both_paths(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    f1, f2 = rng.normal(size=(60, 8)), rng.normal(0.3, 1.2, size=(50, 8))
    want = _kid_by_the_formula(f1, f2, subsets=7, size=20)
    assert kernel_inception_distance(f1, f2, 7, 20) == pytest.approx(want, rel=1e-12)
    monkeypatch.setattr(fid_mod, "KID_WHOLE_MAX", 10)  # the per-subset path
    assert kernel_inception_distance(f1, f2, 7, 20) == pytest.approx(want, rel=1e-12)
    # subsets no larger than the smaller side; the same distribution scores about 0
    big, shifted = rng.normal(size=(400, 8)), rng.normal(0.3, 1.2, size=(300, 8))
    same = kernel_inception_distance(big, rng.normal(size=(300, 8)), 20, 1000)
    other = kernel_inception_distance(big, shifted, 20, 1000)
    assert abs(same[0]) < 0.05 * other[0]
    with pytest.raises(EdgeganError, match="at least 2 features on each side"):
        kernel_inception_distance(f1, f2[:1])


def test_fid_and_kid_of_images(weights) -> None:
    metric = FidMetric(weights=str(weights), device="cpu", batch_size=5)
    real = _images(0, 12)
    scores_same = _score_against(metric, real, real)
    assert scores_same["fid"] == pytest.approx(0.0, abs=1e-6)
    assert scores_same["num_samples"] == 12 and scores_same["num_reference"] == 12
    other = _score_against(metric, _images(1, 12), real)
    shifted = _score_against(metric, _images(1, 12, bright=0.6), real)
    assert 0 < other["fid"] < shifted["fid"]
    assert other["kid"] < shifted["kid"]
    assert set(shifted) == {"fid", "kid", "kid_std", "is", "is_std", "precision", "recall",
                            "density", "coverage", "num_samples", "num_reference"}  # fmt: skip
    assert set(shifted) == set(FidMetric.scores)  # what eval.best is checked against
    assert shifted["is"] >= 1.0
    # the samples are the reference: each in the other's manifold, every real ball covered
    assert scores_same["precision"] == scores_same["recall"] == scores_same["coverage"] == 1.0
    assert shifted["density"] <= scores_same["density"]
    from edgegan.metrics.prdc import prdc

    want = prdc(metric.features(real), metric.features(_images(1, 12, bright=0.6)))
    assert {k: shifted[k] for k in want} == pytest.approx(want)
    # the reference's radii once, whatever the number of comparisons against it
    ref = metric.reference_features("mem")
    calls = []
    radii = fid_mod.prdc_metrics.nearest_neighbour_radii

    def counted(features, k):
        calls.append(len(features))
        return radii(features, k)

    fresh = FidMetric(weights=str(weights), device="cpu")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fid_mod.prdc_metrics, "nearest_neighbour_radii", counted)
        fake = metric.features(_images(5, 11))
        first, second = fresh.compare(fake, ref), fresh.compare(fake[:10], ref)
    assert calls == [12, 11, 10] and "recall" in second
    assert {"precision", "recall", "density", "coverage"} <= set(first)
    no_prdc = FidMetric(weights=str(weights), device="cpu", prdc_k=0)
    assert "precision" not in _score_against(no_prdc, _images(1, 12), real)
    with pytest.warns(UserWarning, match=r"more than prdc_k=5 images a side \(got 5 and 12\)"):
        assert "recall" not in _score_against(metric, _images(1, 5), real)
    # greyscale is repeated to RGB, as pytorch-fid's PIL convert("RGB") does
    grey = _images(2, 12, channels=1)
    assert metric.features(grey) == pytest.approx(metric.features(grey.expand(-1, 3, -1, -1)))
    with pytest.raises(EdgeganError, match="at least 2 samples"):
        metric.compute(real[:1], reference="x")
    with pytest.raises(EdgeganError, match="needs a reference"):
        FidMetric(weights=str(weights), device="cpu").compute(real)
    bad = real.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(EdgeganError, match="NaN or infinite"):
        metric.features(bad)


def _score_against(metric, samples, reference_images):
    """Scores of ``samples`` against ``reference_images`` held as the reference's features."""
    fid_mod._CACHE.clear()
    key = (str(metric.weights.resolve()), ("mem",), str(metric.device))
    size = tuple(reference_images.shape[-2:])
    fid_mod._CACHE[key] = (metric.features(reference_images), size)
    return metric.compute(samples, reference="mem")


def test_references_folder_npz_statistics_and_digits(weights, tmp_path) -> None:
    real, fake = _images(0, 10), _images(1, 8)
    _write_pngs(tmp_path / "real", real)
    _write_pngs(tmp_path / "fake", fake)
    np.savez(tmp_path / "real.npz", images=((real + 1) * 127.5).round().byte().permute(0, 2, 3, 1))
    metric = FidMetric(reference=str(tmp_path / "real"), weights=str(weights), device="cpu")
    from edgegan.metrics.evaluate import load_samples

    samples = load_samples(tmp_path / "fake")[0]
    by_folder = metric.compute(samples)
    by_npz = metric.compute(samples, reference=str(tmp_path / "real.npz"))
    assert by_npz == pytest.approx(by_folder)
    assert by_folder["num_reference"] == 10
    # statistics: pytorch-fid's keys; FID alone (KID needs the features)
    out = save_stats(tmp_path / "real", tmp_path / "stats.npz", weights=str(weights), device="cpu")
    with np.load(out) as data:
        assert sorted(data.files) == ["mu", "num", "sigma"] and int(data["num"]) == 10
        np.savez(tmp_path / "pytorch_fid_style.npz", mu=data["mu"], sigma=data["sigma"])
    # (from statistics, the rank-deficient covariances' eigenvalues round: 4e-7 here)
    by_stats = metric.compute(samples, reference=str(out))
    assert by_stats == {"fid": pytest.approx(by_folder["fid"], rel=1e-5), "num_samples": 8,
                        "is": by_folder["is"], "is_std": by_folder["is_std"]}  # fmt: skip
    assert metric.compute(samples, reference=str(tmp_path / "pytorch_fid_style.npz"))["fid"] == (
        pytest.approx(by_stats["fid"], rel=1e-12)
    )
    np.savez(tmp_path / "bad_stats.npz", mu=np.zeros(64), sigma=np.eye(64))
    with pytest.raises(EdgeganError, match=r"need mu \(2048,\) and sigma"):
        metric.compute(samples, reference=str(tmp_path / "bad_stats.npz"))
    # a few bytes declaring 8 TB: refused from the headers, before NumPy allocated them
    npz_declaring(tmp_path / "huge.npz", mu=np.zeros(2048), sigma=("<f8", (2048, 2048)))
    with pytest.raises(EdgeganError, match=r"its 'sigma' declares 33554432 bytes of data"):
        metric.compute(samples, reference=str(tmp_path / "huge.npz"))
    with pytest.raises(EdgeganError, match="holds statistics already"):
        save_stats(out, tmp_path / "again.npz", weights=str(weights), device="cpu")
    # an existing file is replaced only when asked; samples never by their own statistics
    before = out.read_bytes()
    with pytest.raises(EdgeganError, match="stats.npz exists: choose another file"):
        save_stats(tmp_path / "fake", out, weights=str(weights), device="cpu")
    assert out.read_bytes() == before
    save_stats(tmp_path / "fake", out, weights=str(weights), device="cpu", overwrite=True)
    with np.load(out) as data:
        assert int(data["num"]) == 8
    before = (tmp_path / "real.npz").read_bytes()
    with pytest.raises(EdgeganError, match="real.npz is what SAMPLES names: write the stat"):
        save_stats(tmp_path / "real.npz", tmp_path / "real.npz", weights=str(weights),
                   overwrite=True)  # fmt: skip
    assert (tmp_path / "real.npz").read_bytes() == before
    with pytest.raises(EdgeganError, match="written as .npz"):
        save_stats(tmp_path / "real", tmp_path / "stats.txt", weights=str(weights))
    with pytest.raises(EdgeganError, match="reference not found"):
        metric.compute(samples, reference=str(tmp_path / "nowhere"))


def test_a_folder_reference_is_read_a_batch_at_a_time(weights, tmp_path, monkeypatch) -> None:
    """A folder of reference images never sits whole in memory (50,000 images at 256x256
    would take 10 GB as uint8): its files are read a batch at a time, into the same features
    as the whole folder read at once; grey and colour files mixed score as RGB."""
    import importlib

    evaluate = importlib.import_module("edgegan.metrics.evaluate")  # (the package's name
    # edgegan.metrics.evaluate is the function)

    real = _images(0, 7)
    _write_pngs(tmp_path / "real", real)
    Image.fromarray(np.full((16, 16), 77, np.uint8)).save(tmp_path / "real" / "grey.png")
    metric = FidMetric(weights=str(weights), device="cpu", batch_size=3)
    whole = metric.features(evaluate.read_images(tmp_path / "real")[0])
    sizes = []
    read_batches = evaluate.read_batches

    def spy(files, batch_size):
        for batch in read_batches(files, batch_size):
            sizes.append(len(batch))
            yield batch

    monkeypatch.setattr(evaluate, "read_batches", spy)
    monkeypatch.setattr(evaluate, "read_images", None)  # not used for a folder
    assert np.array_equal(metric.reference_features(str(tmp_path / "real")), whole)
    assert sizes == [3, 3, 2]
    Image.new("RGB", (20, 16)).save(tmp_path / "real" / "zz.png")
    fid_mod._CACHE.clear()
    with pytest.raises(EdgeganError, match="differ in size: 000.png is 16x16, zz.png is 20x16"):
        metric.reference_features(str(tmp_path / "real"))


def test_the_bundled_digits_are_a_reference(weights, monkeypatch) -> None:
    """Made RGB; at another size than the samples (warned about). Six of them: Inception
    takes 0.1 s an image on 2 cores, and the test split holds 2,000."""
    from edgegan.metrics import digits

    calls = []

    def six(spec):
        calls.append(spec)
        images, labels = load_reference_images(spec)
        return images[:6], labels[:6]

    load_reference_images = digits.load_reference_images
    monkeypatch.setattr(digits, "load_reference_images", six)
    metric = FidMetric(reference="mnist:train", weights=str(weights), device="cpu")
    with pytest.warns(UserWarning, match="reference images are 28x28, the samples 16x16"):
        scores = metric.compute(_images(1, 8))
    assert calls == ["mnist:train"] and scores["num_reference"] == 6
    grey = load_reference_images("mnist:train")[0][:6].float() / 127.5 - 1
    want = FidMetric(weights=str(weights), device="cpu").features(grey.repeat(1, 3, 1, 1))
    assert metric.reference_features("mnist:train") == pytest.approx(want)


def test_a_reference_rewritten_in_place_is_read_again(weights, tmp_path) -> None:
    _write_pngs(tmp_path / "real", _images(0, 6))
    metric = FidMetric(reference=str(tmp_path / "real"), weights=str(weights), device="cpu")
    samples = _images(1, 6)
    first = metric.compute(samples)
    (tmp_path / "real" / "000.png").unlink()
    import os

    os.utime(tmp_path / "real", ns=(1, 1))  # a new modification time, whatever the clock
    second = metric.compute(samples)
    assert second["num_reference"] == 5 != first["num_reference"]
    # files overwritten under the same names: the folder's own time does not change
    folder_time = (tmp_path / "real").stat().st_mtime_ns
    for i, p in enumerate(sorted((tmp_path / "real").iterdir())):
        Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(p)
        os.utime(p, ns=(2, 2 + i))
    os.utime(tmp_path / "real", ns=(folder_time, folder_time))
    third = metric.compute(samples)
    assert third["num_reference"] == 5 and third["fid"] != pytest.approx(second["fid"])
    # each version replaced the one before: a notebook that rewrote its reference kept them all
    assert len(fid_mod._CACHE) == 1


def test_the_reference_cache_keeps_the_most_recently_used(weights, tmp_path, monkeypatch):
    monkeypatch.setattr(fid_mod, "_CACHE_SIZE", 2)
    metric = FidMetric(weights=str(weights), device="cpu")
    folders = [tmp_path / name for name in ("a", "b", "c")]
    for i, folder in enumerate(folders):
        _write_pngs(folder, _images(i, 2))
    metric.reference_features(str(folders[0]))
    metric.reference_features(str(folders[1]))
    metric.reference_features(str(folders[0]))  # used again: b is now the oldest
    metric.reference_features(str(folders[2]))
    assert [key[1][0] for key in fid_mod._CACHE] == [str(folders[0]), str(folders[2])]


def test_cli_eval_scores_and_saves_statistics(weights, tmp_path, monkeypatch) -> None:
    _write_pngs(tmp_path / "real", _images(0, 10))
    _write_pngs(tmp_path / "fake", _images(1, 8))
    runner = CliRunner()
    args = ["eval", str(tmp_path / "fake"), "--metric", "fid", "--json"]
    ref = ["--reference", str(tmp_path / "real")]
    res = runner.invoke(cli, [*args, *ref, "-o", f"weights={weights}", "-o", "batch_size=3"])
    assert res.exit_code == 0, res.output
    scores = json.loads(res.stdout)
    assert scores["num_samples"] == 8 and scores["num_reference"] == 10 and scores["fid"] > 0
    stats = tmp_path / "ref.npz"
    res = runner.invoke(
        cli,
        ["eval", str(tmp_path / "real"), "--metric", "fid", "--save-stats", str(stats),
         "--metric-option", f"weights={weights}"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"wrote {stats}" in res.stderr
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(weights))
    res = runner.invoke(cli, [*args, "--reference", str(stats)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["fid"] == pytest.approx(scores["fid"], rel=1e-5)
    # bad input: one line, exit 2
    for bad, says in (
        ([*args], "needs a reference"),
        ([*args, *ref, "-o", "weight=x"], "weight"),
        ([*args, *ref, "-o", "nonsense"], "bad --metric-option 'nonsense'"),
        (["eval", str(tmp_path / "fake"), "--save-stats", str(tmp_path / "s.npz")],
         "use it with --metric fid"),
        ([*args, "--save-stats", str(tmp_path / "s.npz"), *ref], "SAMPLES alone"),
        ([*args, "--save-stats", str(tmp_path / "s.npz")], "SAMPLES alone"),  # --json
        ([*args[:-1], "--save-stats", str(tmp_path / "s.npz"), "-o", "kid_subsets=10"],
         "--save-stats takes -o weights, batch_size, device; not kid_subsets"),
        ([*args, *ref[:1], str(tmp_path / "typo")], "reference not found"),
        ([*args, *ref, "-o", "kid_subset_size=1"], "kid_subset_size must be an integer >= 2"),
        ([*args[:-1], "--save-stats", str(stats)], "ref.npz exists: choose another file, or "
         "replace it with --overwrite"),
        ([*args, *ref, "--overwrite"], "--overwrite replaces the file of --save-stats"),
    ):  # fmt: skip
        res = runner.invoke(cli, bad)
        assert res.exit_code == 2, (bad, res.output)
        assert says in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert not (tmp_path / "s.npz").exists()
    res = runner.invoke(cli, [*args[:-1], "--save-stats", str(stats), "--overwrite"])
    assert res.exit_code == 0, res.output
    with np.load(stats) as data:
        assert int(data["num"]) == 8  # fake's 8 images replaced real's 10
    monkeypatch.delenv(inception.WEIGHTS_ENV)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    res = runner.invoke(cli, [*args, *ref])
    assert res.exit_code == 2 and "needs the Inception weights" in res.stderr


def _folder_data(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(24, 3, 32, 32, generator=g) * 2 - 1).clamp(-1, 1)
    _write_pngs(tmp_path / "data", images)
    return tmp_path / "data"


def test_training_scores_a_run_with_fid(weights, tmp_path, monkeypatch) -> None:
    from edgegan.train import train

    monkeypatch.setenv(inception.WEIGHTS_ENV, str(weights))
    data = _folder_data(tmp_path)
    base = [
        *TINY_GAN,
        "model.conditional=false",
        "data.name=folder",
        f"data.root={data}",
        "data.image_size=32",
        "eval.metric=fid",
        "eval.num_samples=6",
    ]
    cfg = load_config("dcgan-mnist", [*base, "eval.at_end=true", f"eval.reference={data}",
                                      "eval.metric_params.prdc_k=0"])  # fmt: skip
    train(cfg, out_dir=tmp_path / "run")
    scores = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert scores["num_samples"] == 6 and scores["num_reference"] == 24
    assert scores["fid"] > 0 and np.isfinite(scores["kid"]) and "precision" not in scores
    # eval of the run: its own eval.metric_params unless -o says otherwise
    runner = CliRunner()
    run_eval = ["eval", str(tmp_path / "run"), "--metric", "fid", "--num", "8", "--json"]
    res = runner.invoke(cli, run_eval)
    assert res.exit_code == 0 and "precision" not in json.loads(res.stdout), res.output
    res = runner.invoke(cli, [*run_eval, "-o", "prdc_k=5"])
    assert res.exit_code == 0 and 0 <= json.loads(res.stdout)["precision"] <= 1, res.output
    # metric parameters the metric does not take, or the reference: refused before training
    for bad, says in (
        ("eval.metric_params.nope=1", "nope"),
        ("eval.metric_params.reference=x", "the metric's reference is eval.ref"),
    ):
        with pytest.raises(EdgeganError, match=says):
            train(
                load_config(
                    "dcgan-mnist", [*base, "eval.at_end=true", f"eval.reference={data}", bad]
                ),
                out_dir=tmp_path / "bad",
            )
        assert not (tmp_path / "bad").exists()
    # eval of the run: against the run's own eval.reference unless told otherwise
    res = runner.invoke(cli, ["eval", str(tmp_path / "run"), "--metric", "fid", "--num", "5",
                              "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["num_reference"] == 24
    other = tmp_path / "other"
    _write_pngs(other, _images(5, 7, size=32))
    res = runner.invoke(cli, ["eval", str(tmp_path / "run"), "--metric", "fid", "--num", "5",
                              "--json", "--reference", str(other)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["num_reference"] == 7
    # no --metric: the run's own (fid), against its own reference
    res = runner.invoke(cli, ["eval", str(tmp_path / "run"), "--num", "5", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["num_reference"] == 24, res.output
    # digits on a run of other data: refused unless given digits to compare with
    res = runner.invoke(cli, ["eval", str(tmp_path / "run"), "--num", "5", "--metric", "digits"])
    assert res.exit_code == 2 and "trained on 'folder': give --metric fid" in res.stderr
    res = runner.invoke(cli, ["eval", str(tmp_path / "run"), "--num", "5", "--metric", "digits",
                              "--reference", "mnist:test"])  # fmt: skip
    assert res.exit_code == 0 and "fd" in res.stdout, res.output
    # a reference that cannot be read: refused before sampling
    from edgegan import runtime

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before the reference was checked")

    monkeypatch.setattr(runtime, "open_runner", no_sampling)
    res = runner.invoke(cli, ["eval", str(tmp_path / "run"), "--metric", "fid", "--num", "5",
                              "--reference", str(tmp_path / "typo")])  # fmt: skip
    assert res.exit_code == 2 and "reference not found" in res.stderr, res.output
    monkeypatch.undo()
    monkeypatch.setattr(inception, "INPUT_SIZE", 75)
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(weights))
    # no reference, or one that cannot be read: refused before training, nothing written
    with pytest.raises(ConfigError, match="eval.metric=fid needs eval.reference"):
        train(load_config("dcgan-mnist", [*base, "eval.at_end=true"]), out_dir=tmp_path / "r2")
    assert not (tmp_path / "r2").exists()
    typo = load_config("dcgan-mnist", [*base, "eval.at_end=true", f"eval.reference={tmp_path}/x"])
    with pytest.raises(EdgeganError, match="reference not found"):
        train(typo, out_dir=tmp_path / "r2")
    assert not (tmp_path / "r2").exists()
    # no weights: refused before training too
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(inception.WEIGHTS_ENV)
    cfg = load_config("dcgan-mnist", [*base, "eval.at_end=true", f"eval.reference={data}"])
    with pytest.raises(EdgeganError, match="needs the Inception weights"):
        train(cfg, out_dir=tmp_path / "r3")
    assert not (tmp_path / "r3").exists()
    # eval RUN without --metric: a failure of what the run chose says so
    res = runner.invoke(cli, ["eval", str(tmp_path / "run"), "--num", "5"])
    assert res.exit_code == 2 and "needs the Inception weights" in res.stderr, res.output
    assert res.stderr.rstrip().endswith(
        f"(from the run's eval.metric=fid and eval.reference={data}: --metric and --reference "
        "choose others)"
    )


def test_a_digits_run_scored_with_fid_is_evaluated_against_the_test_digits(
    weights, tmp_path, monkeypatch
) -> None:
    """eval.reference left empty on the bundled digits: the run was scored against
    mnist:test, and `edgegan eval RUN --metric fid` scores against it too."""
    from edgegan.metrics import digits
    from edgegan.train import train

    monkeypatch.setenv(inception.WEIGHTS_ENV, str(weights))
    specs = []

    def six(spec):  # six of the 2,000 test digits: Inception is slow on 2 cores
        specs.append(spec)
        images, labels = load_reference_images(spec)
        return images[:6], labels[:6]

    load_reference_images = digits.load_reference_images
    monkeypatch.setattr(digits, "load_reference_images", six)
    runner = CliRunner()
    for metric in ("fid", "digits"):  # scored with fid, or with digits then evaluated with fid
        cfg = load_config("dcgan-mnist", [*TINY_GAN, f"eval.metric={metric}", "eval.at_end=false"])
        train(cfg, out_dir=tmp_path / metric)
        fid_mod._CACHE.clear()
        res = runner.invoke(cli, ["eval", str(tmp_path / metric), "--metric", "fid", "--num",
                                  "4", "--json"])  # fmt: skip
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["num_reference"] == 6 and specs.pop() == "mnist:test"


def test_a_run_without_a_reference_for_fid_is_refused_before_sampling(
    weights, tmp_path, monkeypatch
) -> None:
    from edgegan import runtime
    from edgegan.train import train

    monkeypatch.setenv(inception.WEIGHTS_ENV, str(weights))
    data = _folder_data(tmp_path)
    overrides = [*TINY_GAN, "model.conditional=false", "data.name=folder", f"data.root={data}",
                 "data.image_size=32", "eval.at_end=false"]  # fmt: skip
    train(load_config("dcgan-mnist", overrides), out_dir=tmp_path / "run")

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before the reference was checked")

    monkeypatch.setattr(runtime, "open_runner", no_sampling)
    res = CliRunner().invoke(cli, ["eval", str(tmp_path / "run"), "--metric", "fid"])
    assert res.exit_code == 2 and "the fid metric needs a reference" in res.stderr, res.output
    # the default metric, digits, on a run that is not on the digits: refused as training
    # refuses it (it scored a folder's classes as digits: label_accuracy 0.5 of cats/dogs)
    res = CliRunner().invoke(cli, ["eval", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert res.stderr.count("\n") == 1 and "trained on 'folder': give --metric fid" in res.stderr


def test_the_python_api_leaves_the_reference_to_the_metric(weights, tmp_path) -> None:
    """reference=None (the default): digits scores against mnist:test, fid needs one given
    (before, the API's default gave fid the digits without a word)."""
    from edgegan.metrics import Scorer, evaluate, evaluate_tensors

    assert Scorer("digits").metric.reference == "mnist:test"
    assert Scorer("fid", params={"weights": str(weights)}).metric.reference is None
    _write_pngs(tmp_path / "fake", _images(1, 4))
    params = {"weights": str(weights), "device": "cpu"}
    with pytest.raises(EdgeganError, match="the fid metric needs a reference"):
        evaluate(tmp_path / "fake", metric="fid", params=params)
    with pytest.raises(EdgeganError, match="the fid metric needs a reference"):
        evaluate_tensors(_images(1, 4), metric="fid", params=params)


def test_eval_reference_is_refused_by_translation_tasks(tmp_path) -> None:
    from edgegan.train import train

    cfg = load_config("cyclegan-digits", [*TINY_CYCLEGAN, "eval.reference=mnist:test"])
    with pytest.raises(ConfigError, match="eval.reference='mnist:test': only task gan uses it"):
        train(cfg, out_dir=tmp_path / "run")


def test_digits_metric_scores_other_idx_data_given_a_reference(tmp_path) -> None:
    """eval.reference lets the digit metric score a run on any MNIST-format data (before,
    a run on other data than the bundled digits had no final scores)."""
    from edgegan.data.idx import bundled_mnist_dir
    from edgegan.train import train

    cfg = load_config(
        "dcgan-mnist",
        [*TINY_GAN, "data.name=idx", f"data.root={bundled_mnist_dir()}", "eval.at_end=true",
         "eval.num_samples=20", f"eval.reference=idx:{bundled_mnist_dir()}:test"],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an FD of 20 samples
        train(cfg, out_dir=tmp_path / "run")
    scores = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert scores["num_samples"] == 20 and "fd" in scores and "coverage" in scores


@pytest.mark.parametrize("n1, n2", [(5, 7), (30, 12), (40, 50)])
def test_the_frechet_distance_of_few_features_is_that_of_their_statistics(n1, n2) -> None:
    """With fewer rows than features, FD goes through the singular values of P1 P2^T (an
    N1 x N2 problem); with more, through the covariances: the same distance either way."""
    from edgegan.metrics.frechet import (
        feature_stats,
        frechet_distance,
        frechet_distance_of_features,
    )

    rng = np.random.default_rng(n1)
    a, b = rng.normal(size=(n1, 20)), rng.normal(0.2, 1.3, size=(n2, 20))
    want = frechet_distance(*feature_stats(a), *feature_stats(b))
    assert frechet_distance_of_features(a, b) == pytest.approx(want, rel=1e-7)
    assert frechet_distance_of_features(a, a) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="differ in size"):
        frechet_distance_of_features(a, b[:, :5])
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance_of_features(np.full((3, 20), np.nan), b)


def _unpaired_folder(tmp_path):
    """A cyclegan folder whose test split is unpaired: 5 A images, 3 B images of other names."""
    from edgegan.data.digits_domains import write_cyclegan_digits_folder

    data = tmp_path / "data"
    write_cyclegan_digits_folder(data, image_size=32, limit=8)
    for i, p in enumerate(sorted((data / "testA").iterdir())):
        if i >= 5:
            p.unlink()
    for i, p in enumerate(sorted((data / "testB").iterdir())):
        if i >= 3:
            p.unlink()
        else:
            p.rename(p.with_name(f"other_{p.name}"))
    return data


def test_translation_runs_score_fid_and_kid_against_the_other_domain(
    weights, tmp_path, monkeypatch
) -> None:
    """eval.metric=fid: each direction's translations of the test split against the other
    domain's test images, unpaired (no paired scores there) or paired (both kinds)."""
    from edgegan.data.unpaired import UnpairedImageDataset
    from edgegan.metrics import translation
    from edgegan.train import train

    monkeypatch.setenv(inception.WEIGHTS_ENV, str(weights))
    data = _unpaired_folder(tmp_path)
    test = UnpairedImageDataset(data, split="test", load_size=32, crop_size=32, channels_a=1)
    assert not test.paired and len(test) == 5
    assert (translation.distinct(test, "A"), translation.distinct(test, "B")) == (5, 3)
    seen = []
    real_features = translation._features

    def spy(fid, ds, domain, n, through=None):
        seen.append((domain, n, through is not None))
        return real_features(fid, ds, domain, n, through)

    monkeypatch.setattr(translation, "_features", spy)
    unpaired = [
        *TINY_CYCLEGAN,
        "data.name=unpaired",
        f"data.root={data}",
        "data.load_size=32",
        "data.crop_size=32",
        "data.channels_a=1",
        "train.steps=1",
        "eval.metric=fid",
    ]
    result = train(load_config("cyclegan-digits", unpaired), out_dir=tmp_path / "u")
    scores = json.loads((tmp_path / "u" / "eval.json").read_text())
    assert scores == result.eval
    assert scores.pop("num_samples") == 5  # the test split's items (5 A, 3 distinct B)
    assert set(scores) == {f"{d}_{k}" for d in ("ab", "ba") for k in ("fid", "kid", "kid_std")}
    assert all(np.isfinite(v) for v in scores.values()) and scores["ab_fid"] > 0
    # distinct images only: 5 A translated against 3 B, 3 B translated against 5 A
    assert sorted(seen) == [("A", 5, False), ("A", 5, True), ("B", 3, False), ("B", 3, True)]
    # `edgegan eval RUN --metric fid` scores the finished run alike
    res = CliRunner().invoke(cli, ["eval", str(tmp_path / "u"), "--metric", "fid", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == result.eval
    res = CliRunner().invoke(cli, ["eval", str(tmp_path / "u")])  # no truth to compare with
    assert res.exit_code == 2 and "unpaired" in res.output and "--metric fid" in res.output
    res = CliRunner().invoke(cli, ["eval", str(tmp_path / "u"), "--metric", "fid", "--num", "1"])
    assert res.exit_code == 2 and "nothing to score in its first 1 test items" in res.output
    seen.clear()
    paired = [*TINY_CYCLEGAN, "train.steps=1", "eval.metric=fid", "eval.num_samples=6"]
    scores = train(load_config("cyclegan-digits", paired), out_dir=tmp_path / "p").eval
    assert {"ab_psnr", "ab_fid", "ba_kid", "ba_ssim"} <= set(scores)
    assert sorted(seen) == [("A", 6, False), ("A", 6, True), ("B", 6, False), ("B", 6, True)]
    from edgegan.metrics.translation import evaluate_translation_run

    again = evaluate_translation_run(tmp_path / "p", metric="fid")
    assert again == scores and scores["num_samples"] == 6
    # pix2pix: its one direction
    from tiny import TINY_PIX2PIX

    scores = train(
        load_config("pix2pix-digits", [*TINY_PIX2PIX, "train.steps=1", "eval.metric=fid",
                                       "eval.num_samples=4", "eval.metric_params.prdc_k=2"]),
        out_dir=tmp_path / "x",
    ).eval  # fmt: skip
    assert {"ab_fid", "ab_kid", "ab_psnr"} <= set(scores) and not any("ba" in k for k in scores)
    assert "ab_precision" in scores  # 4 images a side: k = 2 (the default 5 needs 6)
    # without the weights: refused before training
    monkeypatch.delenv(inception.WEIGHTS_ENV)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    with pytest.raises(EdgeganError, match="needs the Inception weights"):
        train(load_config("cyclegan-digits", unpaired), out_dir=tmp_path / "none")
    assert not (tmp_path / "none").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_features_are_the_cpus_in_fp32(weights) -> None:
    """On CUDA the convolutions run in FP32 whatever cuDNN's TF32 setting (pytorch-fid's
    features are FP32 ones), and the setting is given back."""
    x = _images(3, 4, size=32)
    cpu = FidMetric(weights=str(weights), device="cpu").features(x)
    was = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        gpu = FidMetric(weights=str(weights), device="cuda").features(x.cuda())
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = was
    assert np.abs(gpu - cpu).max() <= 1e-4 * np.abs(cpu).max()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_scales_8_bit_images_on_the_cpu_as_pytorch_fid(weights) -> None:
    """8-bit images on their way to CUDA are scaled on the CPU (CUDA divides by a number
    through its reciprocal, a bit off for about half the 256 values): uint8 and float 8-bit
    batches give the features of the CPU's u / 255."""
    net = inception.load_inception(weights, torch.device("cuda"))
    u = torch.arange(256, dtype=torch.uint8).repeat(6)[: 2 * 3 * 16 * 16].reshape(2, 3, 16, 16)
    with torch.no_grad(), fid_mod._fp32_convolutions(torch.device("cuda")):
        want = net.features01((u.float() / 255).cuda()).double().cpu().numpy()
    for batch in (u, u.float() / 127.5 - 1):
        assert np.array_equal(fid_mod.inception_features(batch, net, device="cuda"), want)


def _is_by_torch_fidelity(logits, splits=10, seed=2020):
    """torch-fidelity 0.4.0's isc_features_to_metric, written out (torch, float64)."""
    x = torch.from_numpy(logits)[np.random.RandomState(seed).permutation(len(logits))].double()
    p, log_p = x.softmax(dim=1), x.log_softmax(dim=1)
    n, scores = len(x), []
    for i in range(splits):
        pc, lc = (
            p[i * n // splits : (i + 1) * n // splits],
            log_p[i * n // splits : (i + 1) * n // splits],
        )
        q = pc.mean(dim=0, keepdim=True)
        scores.append((pc * (lc - q.log())).sum(dim=1).mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores))


def test_the_inception_score_is_torch_fidelitys(weights) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(53, 1008))
    assert inception_score(logits) == pytest.approx(_is_by_torch_fidelity(logits), rel=1e-10)
    assert inception_score(logits, 3, seed=1) == pytest.approx(
        _is_by_torch_fidelity(logits, 3, seed=1), rel=1e-10
    )
    same = np.tile(logits[:1], (20, 1))  # one image over and over: p(y|x) == p(y)
    assert inception_score(same) == pytest.approx((1.0, 0.0))
    # fewer samples than splits: one a split, where p(y|x) == p(y) again
    assert inception_score(logits[:4]) == pytest.approx((1.0, 0.0))
    assert inception_score(logits[:4], 2)[0] > 1
    # the metric's logits: pool features times the head's weight, no bias
    metric = FidMetric(weights=str(weights), device="cpu")
    feats = metric.features(_images(0, 3))
    head = metric.net.fc
    want = (torch.from_numpy(feats).float() @ head.weight.T).double().numpy()
    assert metric.logits(feats) == pytest.approx(want, rel=1e-5, abs=1e-5)
    assert not np.allclose(want, want + head.bias.detach().double().numpy())


@pytest.mark.parametrize(
    "factory, cls",
    [("build_fid_metric", "fid.FidMetric"), ("build_digits_metric", "digits.DigitsMetric")],
)
def test_the_metric_factories_mirror_their_classes(factory, cls) -> None:
    """The registry reads a metric's parameters (-o KEY=VALUE) from its factory, which
    imports torch only when called: it repeats the class's signature, names and defaults."""
    import importlib
    import inspect

    from edgegan.metrics import plugin

    module, name = cls.split(".")
    klass = getattr(importlib.import_module(f"edgegan.metrics.{module}"), name)

    def params(f):
        return [(p.name, p.default) for p in inspect.signature(f).parameters.values()
                if p.name != "self"]  # fmt: skip

    assert params(getattr(plugin, factory)) == params(klass.__init__)


def test_a_reference_folder_that_cannot_be_read_stops_training_before_its_first_step(
    weights, tmp_path, monkeypatch
) -> None:
    """Only a missing path was checked at the start: an empty folder, one of class folders
    (the training data itself), or of images of two sizes failed after the whole run."""
    from edgegan.train import train

    monkeypatch.setenv(inception.WEIGHTS_ENV, str(weights))
    data = _folder_data(tmp_path)
    (tmp_path / "empty").mkdir()
    mixed = tmp_path / "mixed"
    _write_pngs(mixed, _images(0, 2))
    Image.new("RGB", (20, 10)).save(mixed / "wide.png")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    cases = {
        "empty": r"no images \(.*\) in .*empty$",
        "mixed": r"images in .*mixed differ in size: 000.png is 16x16, wide.png is 20x10$",
        "broken": r"cannot read image .*a\.png",
    }
    overrides = [*TINY_GAN, "model.conditional=false", "data.name=folder", f"data.root={data}",
                 "data.image_size=32", "eval.metric=fid", "eval.at_end=true"]  # fmt: skip
    for name, error in cases.items():
        config = load_config("dcgan-mnist", [*overrides, f"eval.reference={tmp_path / name}"])
        with pytest.raises(EdgeganError, match=error):
            train(config, out_dir=tmp_path / f"run-{name}")
        assert not (tmp_path / f"run-{name}").exists()
    # the messages are read_batches' own, which reads the pixels
    with pytest.raises(EdgeganError, match=cases["mixed"]):
        FidMetric(weights=str(weights), device="cpu").compute(_images(1, 4), reference=str(mixed))
