"""What each training setting does to the weights, checked on single steps: penalties,
d_steps, the generator's direction, the EMA, fp16 loss scaling, epoch order, atomic
checkpoints and the export's parity gate. Each test fails if its setting is ignored."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from tiny import TINY_GAN

from edgegan.config import load_config
from edgegan.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def _trainer(tmp_path, *extra: str) -> Trainer:
    cfg = load_config("dcgan-mnist", [*TINY_GAN, "train.augment=", *extra])
    return Trainer(cfg, tmp_path / f"r{len(list(tmp_path.iterdir()))}")


def _d_after_one_step(tmp_path, *extra: str) -> dict[str, torch.Tensor]:
    trainer = _trainer(tmp_path, "model.discriminator.norm=none", *extra)
    trainer.train_step()
    return {k: v.clone() for k, v in trainer.task.discriminator.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_the_gradient_penalty_changes_the_discriminators_update(tmp_path):
    off = _d_after_one_step(tmp_path, "loss.name=wgan-gp", "loss.gp_weight=0")
    on = _d_after_one_step(tmp_path, "loss.name=wgan-gp", "loss.gp_weight=100")
    assert not _same(off, on)


def test_lazy_r1_is_applied_and_scaled_by_its_interval(tmp_path):
    """R1 every k steps with gamma g is the same first update as every step with k * g."""
    off = _d_after_one_step(tmp_path, "train.r1_gamma=0")
    every1 = _d_after_one_step(tmp_path, "train.r1_gamma=2", "train.r1_every=1")
    every4 = _d_after_one_step(tmp_path, "train.r1_gamma=0.5", "train.r1_every=4")
    assert not _same(off, every1)
    for key, value in every1.items():
        torch.testing.assert_close(every4[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_d_steps_updates_the_discriminator_that_many_times_per_step(tmp_path):
    trainer = _trainer(tmp_path, "train.d_steps=3")
    trainer.train_step()
    trainer.train_step()
    assert trainer.stream.consumed == 6  # a batch per discriminator update
    d_state = trainer.task.optims["d"].state_dict()["state"]
    g_state = trainer.task.optims["g"].state_dict()["state"]
    assert {int(s["step"]) for s in d_state.values()} == {6}
    assert {int(s["step"]) for s in g_state.values()} == {2}


def test_a_generator_step_lowers_its_loss_against_the_same_discriminator(tmp_path):
    trainer = _trainer(tmp_path, "train.ema=false", "train.batch_size=64")
    G, D, loss = trainer.task.generator, trainer.task.discriminator, trainer.task.loss
    torch.manual_seed(1)
    z, y = torch.randn(64, G.latent_dim), torch.arange(64) % 10
    frozen = copy.deepcopy(D).eval()
    with torch.no_grad():
        before = loss.g_loss(frozen(G(z, y), y)).item()
    trainer.train_step()
    with torch.no_grad():
        after = loss.g_loss(frozen(G(z, y), y)).item()
    assert after < before


class _Recording:
    """A relativistic loss (ragan) that keeps the real logits each g_loss call is given."""

    def __init__(self) -> None:
        from edgegan.losses.adversarial import RelativisticAverageLoss

        self.loss, self.real = RelativisticAverageLoss(), []

    def d_loss(self, real_logits, fake_logits):
        return self.loss.d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits, real_logits):
        self.real.append(real_logits.detach().clone())
        return self.loss.g_loss(fake_logits, real_logits=real_logits)


def _batches_seen(trainer) -> list:
    """The batches the trainer's stream gives from now on."""
    seen, next_batch = [], trainer.stream.next

    def spy():
        seen.append(next_batch())
        return seen[-1]

    trainer.stream.next = spy
    return seen


def test_a_relativistic_generator_loss_gets_the_discriminators_real_logits(tmp_path):
    """ragan's G loss compares the fakes with the real batch: the trainer gives it D's
    logits on the step's (last) real batch, with the labels."""
    trainer = _trainer(tmp_path, "loss.name=ragan", "model.discriminator.spectral_norm=false",
                       "train.d_steps=2")  # fmt: skip
    recording = trainer.task.loss = _Recording()
    seen = _batches_seen(trainer)
    trainer.train_step()
    real, labels = seen[-1]  # the second discriminator batch
    with torch.no_grad():  # D is as the generator update left it (frozen then)
        want = trainer.task.discriminator(real, labels)
    (got,) = recording.real
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("task", ["gan", "cyclegan", "pix2pix"])
def test_the_logged_d_real_and_d_fake_are_the_discriminators_mean_logits(tmp_path, task):
    """Only the keys were checked: the two swapped (or a penalty's logits logged) would
    mislead every log and TensorBoard plot without a test failing."""
    from tiny import TINY_CYCLEGAN, TINY_PIX2PIX

    preset, tiny = {
        "gan": ("dcgan-mnist", [*TINY_GAN, "train.augment="]),
        "cyclegan": ("cyclegan-digits", TINY_CYCLEGAN),
        "pix2pix": ("pix2pix-digits", TINY_PIX2PIX),
    }[task]
    trainer = Trainer(load_config(preset, tiny), tmp_path / "r")
    loss, calls = trainer.task.loss, []
    d_loss = loss.d_loss

    def recording(real, fake, *args, **kwargs):
        calls.append((real.detach().float().mean(), fake.detach().float().mean()))
        return d_loss(real, fake, *args, **kwargs)

    loss.d_loss = recording
    out = trainer.train_step()
    # the last D step's logits (cyclegan: the mean of its two discriminators')
    last = calls[-2:] if task == "cyclegan" else calls[-1:]
    real, fake = (sum(c[i] for c in last) / len(last) for i in (0, 1))
    assert abs(float(real) - float(fake)) > 1e-6  # the two can be told apart
    torch.testing.assert_close(out["d_real"], real)
    torch.testing.assert_close(out["d_fake"], fake)


@pytest.mark.parametrize("task", ["cyclegan", "pix2pix"])
def test_a_relativistic_loss_gets_each_discriminators_real_logits(tmp_path, task):
    from tiny import TINY_CYCLEGAN, TINY_PIX2PIX

    preset, tiny = (
        ("cyclegan-digits", TINY_CYCLEGAN)
        if task == "cyclegan"
        else ("pix2pix-digits", TINY_PIX2PIX)
    )
    cfg = load_config(preset, [*tiny, "loss.name=ragan", "model.discriminator.norm=none"])
    trainer = Trainer(cfg, tmp_path / "r")
    recording = trainer.task.loss = _Recording()
    seen = _batches_seen(trainer)
    task_ = trainer.task
    before = {n: copy.deepcopy(task_.module(n)) for n in task_.networks if n.startswith("d")}
    trainer.train_step()
    batch = seen[-1]
    with torch.no_grad():  # the discriminators before their update (cyclegan: G goes first)
        if task == "cyclegan":
            want = [before["d_b"](batch["B"]), before["d_a"](batch["A"])]
        else:  # pix2pix updates D first: the generator's D is the updated one
            want = [task_.d(torch.cat([batch["A"], batch["B"]], 1))]
    assert len(recording.real) == len(want)
    for got, expected in zip(recording.real, want, strict=True):
        torch.testing.assert_close(got, expected)


def test_the_ema_follows_its_decay_and_is_what_sampling_loads(tmp_path):
    from edgegan.sampling import load_run_generator
    from edgegan.train import train
    from edgegan.train.checkpoint import load_checkpoint

    def run(decay: float):
        cfg = load_config("dcgan-mnist", [*TINY_GAN, "train.steps=3", f"train.ema_decay={decay}"])
        run_dir = train(cfg, out_dir=tmp_path / str(decay)).run_dir
        return run_dir, load_checkpoint(run_dir / "checkpoints/last.pt")

    _, state = run(0.0)  # decay 0: the average is the generator after every step
    assert _same(state["ema"], state["networks"]["generator"])
    run_dir, state = run(0.5)
    g, ema = state["networks"]["generator"], state["ema"]
    assert any(not torch.equal(g[k], ema[k]) for k in ema if g[k].is_floating_point())
    assert _same(ema, load_run_generator(run_dir).module.state_dict())  # infer samples it


@pytest.mark.filterwarnings("ignore:train.amp=fp16 on a CPU")
def test_fp16_loss_scaling_steps_both_optimisers_and_resumes_exactly(tmp_path):
    """fp16 runs on the CPU too (emulated): its GradScalers must step the optimisers."""
    from edgegan.config import load_run_config
    from edgegan.train import train
    from edgegan.train.checkpoint import load_checkpoint

    def cfg(steps: int):
        extra = ["train.amp=fp16", "train.checkpoint_every=2", f"train.steps={steps}"]
        return load_config("dcgan-mnist", [*TINY_GAN, *extra])

    full = load_checkpoint(train(cfg(4), out_dir=tmp_path / "full").checkpoint)
    assert set(full["scalers"]) == {"g", "d"}
    half = train(cfg(2), out_dir=tmp_path / "half")
    at_2 = load_checkpoint(half.checkpoint)["networks"]
    for net in ("generator", "discriminator"):  # steps 3 and 4 moved both (not only BN stats)
        params = [k for k in at_2[net] if "running_" not in k and "num_batches" not in k]
        params = [k for k in params if not k.endswith(("._u", "._v"))]  # SN's power iteration
        assert all(not torch.equal(at_2[net][k], full["networks"][net][k]) for k in params), net
    resumed = train(load_run_config(half.run_dir, ["train.steps=4"]), resume=half.run_dir)
    for net, weights in load_checkpoint(resumed.checkpoint)["networks"].items():
        assert _same(weights, full["networks"][net]), net


def test_every_epoch_is_a_fresh_permutation():
    from edgegan.train.stream import BatchIndices

    batches = BatchIndices(64, 8, 0)
    orders = [batches.epoch_order(e) for e in range(3)]
    assert all(sorted(o.tolist()) == list(range(64)) for o in orders)
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])


def test_a_checkpoint_write_cut_short_keeps_the_previous_one(tmp_path, monkeypatch):
    from edgegan.train.checkpoint import atomic_save

    path = tmp_path / "last.pt"
    atomic_save({"format": 1, "step": 1}, path)

    def cut_short(obj, f, *args, **kwargs):
        f.write(b"PK\x03")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", cut_short)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"format": 1, "step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.parametrize(
    ("precision", "parity", "error"),
    [
        ("fp32", {"max_abs": 5e-5, "psnr": 120.0}, None),
        ("fp32", {"max_abs": 2e-4, "psnr": 90.0}, "max abs error 0.0002 > 0.0001"),
        ("fp32", {"max_abs": float("nan"), "psnr": 0.0}, "produced NaN or infinite values"),
        ("fp16", {"max_abs": 1e-2, "psnr": 29.9}, "PSNR 29.9 dB < 30 dB"),
        ("fp16", {"max_abs": 1e-2, "psnr": 30.1}, None),
        ("int8", {"max_abs": 0.1, "psnr": 19.9}, "PSNR 19.9 dB < 20 dB"),
        ("int8", {"max_abs": float("inf"), "psnr": 25.0}, "NaN or infinite"),
    ],
)
def test_the_export_parity_gate(precision, parity, error):
    from edgegan.export.verify import ExportError, check_parity

    if error is None:
        check_parity(precision, parity, "model.onnx")
    else:
        with pytest.raises(ExportError, match=error.replace("(", r"\(").replace(".", r"\.")):
            check_parity(precision, parity, "model.onnx")


def test_the_gradient_penalty_changes_a_cyclegans_discriminators(tmp_path):
    from tiny import TINY_CYCLEGAN

    def after_one_step(gp_weight: int) -> dict[str, torch.Tensor]:
        extra = ["loss.name=wgan-gp", f"loss.gp_weight={gp_weight}", "train.steps=1"]
        cfg = load_config("cyclegan-digits", [*TINY_CYCLEGAN, *extra])
        trainer = Trainer(cfg, tmp_path / f"c{gp_weight}")
        trainer.train_step()
        return {k: v.clone() for k, v in trainer.task.module("d_a").state_dict().items()}

    assert not _same(after_one_step(0), after_one_step(100))


@pytest.mark.parametrize(("grid", "per_row"), [(25, 2), (100, 10), (10, 1), (7, 1)])
def test_a_conditional_preview_shows_one_class_per_row_and_every_class_it_can(
    tmp_path, grid, per_row
):
    """Rows hold one class each; a grid of at least one image per class shows all ten (25
    images once showed classes 0-8: three per row, rounded up, ran out before class 9)."""
    trainer = _trainer(tmp_path, f"train.sample_grid={grid}")
    labels = trainer.fixed["labels"]
    images, nrow = trainer.task.preview(trainer, trainer.fixed)
    assert len(images) == grid and nrow == per_row
    assert set(labels.tolist()) == set(range(min(grid, 10)))
    rows = labels.split(nrow)
    assert all(len(set(row.tolist())) == 1 for row in rows)
    # A run resumed from an older edgegan keeps its fixed labels, three a class (rounded up
    # from 25 / 10): its rows follow them, one class each.
    old = {**trainer.fixed, "labels": (torch.arange(grid) // 3) % 10}
    assert trainer.task.preview(trainer, old)[1] == (3 if grid > 3 else grid)


def test_an_fp16_step_skipped_for_overflow_keeps_the_schedule_and_says_nothing(tmp_path):
    """An unfused optimiser whose first fp16 step overflows is not stepped; torch's warning
    that the schedule lost its first value is wrong here (schedules follow the trainer's
    step) and is not shown, and the learning rate still follows the schedule."""
    import warnings

    trainer = _trainer(
        tmp_path, "train.amp=fp16", "train.fused_optim=false", "train.lr_schedule=cosine"
    )
    for name in ("g", "d"):
        trainer.precision.scaler(name)._init_scale = 1e38  # the first step's grads overflow
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train_step()
    assert trainer.precision.scaler("g").get_scale() < 1e38  # the step was skipped
    assert not [w for w in caught if "lr_scheduler" in str(w.message)]
    lr = trainer.task.optims["g"].param_groups[0]["lr"]
    assert lr == pytest.approx(trainer.config.optim.g.lr * 0.5)  # cosine at step 1 of 2


def test_the_collapse_check_names_flat_grids_and_copies_only():
    from edgegan.train.trainer import collapse

    varied = torch.rand(8, 1, 8, 8) * 2 - 1
    assert collapse(varied) is None
    assert collapse(torch.full((8, 1, 8, 8), -1.0)) == "are one flat colour (every pixel -1.00)"
    copies = varied[:1].expand(8, -1, -1, -1)
    assert collapse(copies) == "are 8 copies of one image"
    # An untrained tiny generator's grid: samples a few thousandths apart are not copies.
    near = varied * 0.003
    assert collapse(near) is None and collapse(varied[:1]) is None


def test_a_run_whose_samples_collapse_is_told_once_and_still_finishes(tmp_path):
    from edgegan.train import train
    from edgegan.train.trainer import CollapseWarning

    extra = ["optim.g.lr=1e3", "optim.d.lr=1e3", "train.steps=6", "train.sample_every=2"]
    cfg = load_config("dcgan-mnist", [*TINY_GAN, *extra])
    with pytest.warns(CollapseWarning, match=r"samples at step 2 \(step_0000002.png\)") as got:
        result = train(cfg, out_dir=tmp_path / "run")
    assert len([w for w in got if w.category is CollapseWarning]) == 1
    assert result.checkpoint.is_file()
    healthy = load_config("dcgan-mnist", [*TINY_GAN, "train.steps=4", "train.sample_every=2"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        train(healthy, out_dir=tmp_path / "healthy")


def test_keep_checkpoints_keeps_the_newest_snapshots_across_a_resume(tmp_path):
    from edgegan.config import load_run_config
    from edgegan.train import train

    extra = ["train.checkpoint_every=2", "train.keep_checkpoints=2", "train.steps=7"]
    run = train(load_config("dcgan-mnist", [*TINY_GAN, *extra]), out_dir=tmp_path / "r").run_dir
    ckpts = run / "checkpoints"
    # every 2 steps and the final one (7): the newest two kept, each whole
    assert sorted(p.name for p in ckpts.iterdir()) == [
        "last.pt",
        "step_0000006.pt",
        "step_0000007.pt",
    ]
    assert (ckpts / "step_0000007.pt").read_bytes() == (ckpts / "last.pt").read_bytes()
    six = torch.load(ckpts / "step_0000006.pt", weights_only=True)
    assert six["step"] == 6
    train(load_run_config(run, "train.steps=10"), resume=run)
    assert sorted(p.name for p in ckpts.iterdir()) == [
        "last.pt",
        "step_0000008.pt",
        "step_0000010.pt",
    ]
    assert torch.load(ckpts / "step_0000008.pt", weights_only=True)["step"] == 8
    plain = train(
        load_config("dcgan-mnist", [*TINY_GAN, "train.checkpoint_every=1"]), out_dir=tmp_path / "p"
    )
    assert [p.name for p in (plain.run_dir / "checkpoints").iterdir()] == ["last.pt"]


def _scripted_validation(trainer, scores: list[dict]) -> None:
    trainer.task.evaluate = lambda _trainer, num_samples=None: scores.pop(0) if num_samples else {}


@pytest.mark.parametrize(("mode", "best_step"), [("min", 4), ("max", 6)])
def test_eval_best_keeps_the_checkpoint_of_the_best_validation(tmp_path, mode, best_step):
    extra = ["train.steps=6", "eval.every=2", "eval.best=fd", f"eval.best_mode={mode}"]
    trainer = Trainer(load_config("dcgan-mnist", [*TINY_GAN, *extra]), tmp_path / "r")
    _scripted_validation(trainer, [{"fd": 5.0}, {"fd": 3.0}, {"fd": 7.0}])
    trainer.fit()
    best = torch.load(tmp_path / "r/checkpoints/best.pt", weights_only=True)
    assert best["step"] == best_step
    value = {4: 3.0, 6: 7.0}[best_step]
    assert best["best"] == {"metric": "fd", "mode": mode, "value": value, "step": best_step}
    report = (tmp_path / "r/report.md").read_text()
    assert (
        f"- best val_fd: {best['best']['value']:.4g} at step {best_step} (checkpoints/best.pt)"
        in report
    )


def test_a_best_mode_against_the_scores_better_direction_is_warned(tmp_path):
    """eval.best=coverage under the default best_mode=min kept the worst checkpoint."""
    import warnings

    extra = ["eval.every=2", "eval.best=val_coverage"]
    with pytest.warns(UserWarning, match=r"eval.best=val_coverage with eval.best_mode=min keeps "
                      r"the checkpoint of the lowest val_coverage, where higher is better: set "
                      r"eval.best_mode=max"):  # fmt: skip
        Trainer(load_config("dcgan-mnist", [*TINY_GAN, *extra]), tmp_path / "a")
    with pytest.warns(UserWarning, match="highest val_fd, where lower is better: set eval.best_m"):
        Trainer(load_config("dcgan-mnist", [*TINY_GAN, *extra, "eval.best=fd",
                                            "eval.best_mode=max"]), tmp_path / "b")  # fmt: skip
    for ok in (["eval.best=fd"], ["eval.best_mode=max"], ["eval.best=class_entropy"]):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            Trainer(load_config("dcgan-mnist", [*TINY_GAN, *extra, *ok]), tmp_path / "c")
    from edgegan.train.distributed import Distributed

    with warnings.catch_warnings():  # under torchrun, process 0 alone says it
        warnings.simplefilter("error")
        config = load_config("dcgan-mnist", [*TINY_GAN, *extra])
        Trainer(config, tmp_path / "d", dist=Distributed(rank=1, world_size=2))


def test_a_metrics_declared_scores_are_read_with_care():
    """A plugin metric's own `scores` method, or a string, is no list of score names (a
    method failed the run; a string was split into letters)."""
    from edgegan.train.task import declared_scores

    class Own:
        def scores(self):
            return {}

    class Failing:
        @property
        def scores(self):
            raise RuntimeError("no")

    assert declared_scores(Own()) == declared_scores(Failing()) == declared_scores(object()) == ()
    assert declared_scores(type("S", (), {"scores": "my_score"})()) == ("my_score",)
    assert declared_scores(type("L", (), {"scores": ["a", "b"]})()) == ("a", "b")
    assert declared_scores(type("M", (), {"scores": ["a", 1]})()) == ()


#: Which way each built-in score is better, from the metrics' own definitions (written out
#: here, not read from the trainer's table: the warning below must follow it, not echo it).
_BETTER_BY_DEFINITION = {
    "val_fd": "min", "fid": "min", "ab_fid": "min", "ba_kid": "min", "val_ab_l1": "min",
    "ab_psnr": "max", "val_ba_ssim": "max", "accuracy": "max", "confidence": "max",
    "coverage": "max", "precision": "max", "recall": "max", "density": "max", "is": "max",
}  # fmt: skip


@pytest.mark.parametrize(("best", "better"), sorted(_BETTER_BY_DEFINITION.items()))
def test_the_best_mode_warning_knows_which_way_each_score_is_better(best, better):
    """A wrong entry would tell a user to set the mode that keeps the worst checkpoint."""
    from types import SimpleNamespace

    from edgegan.train.trainer import _warn_best_mode

    wrong = "max" if better == "min" else "min"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_best_mode(SimpleNamespace(best=best, best_mode=better))  # silent
    with pytest.warns(UserWarning, match=f"set eval.best_mode={better}$"):
        _warn_best_mode(SimpleNamespace(best=best, best_mode=wrong))


def test_eval_best_carries_over_a_resume_and_names_a_score_validation_lacks(tmp_path):
    from edgegan.config import load_run_config

    extra = ["train.steps=4", "eval.every=2", "eval.best=fd"]
    trainer = Trainer(load_config("dcgan-mnist", [*TINY_GAN, *extra]), tmp_path / "r")
    _scripted_validation(trainer, [{"fd": 5.0}, {"fd": 3.0}])
    trainer.fit()
    resumed = Trainer(load_run_config(tmp_path / "r", "train.steps=6"), tmp_path / "r", resume=True)
    resumed.load_checkpoint(tmp_path / "r/checkpoints/last.pt")
    _scripted_validation(resumed, [{"fd": 4.0}])  # worse than step 4's 3.0: best.pt stays
    resumed.fit()
    assert torch.load(tmp_path / "r/checkpoints/best.pt", weights_only=True)["step"] == 4
    # a score the metric may give, which this validation does not (label_accuracy: of a
    # conditional run; a plugin metric that declares no scores is checked here alone)
    best = "eval.best=class_entropy"
    odd = Trainer(load_config("dcgan-mnist", [*TINY_GAN, *extra, best]), tmp_path / "k")
    _scripted_validation(odd, [{"fd": 5.0}, {"fd": 3.0}])
    with pytest.warns(
        UserWarning,
        match=r"eval.best=class_entropy: the validation gives no such score \(it gives: fd\)",
    ) as seen:
        odd.fit()
    assert len([w for w in seen if "eval.best" in str(w.message)]) == 1
    assert not (tmp_path / "k/checkpoints/best.pt").exists()


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (["eval.best=fd"], "eval.best needs eval.every > 0"),
        (
            ["eval.every=2", "eval.best=fd", "eval.best_mode=lowest"],
            "eval.best_mode must be min or max",
        ),
        (["train.keep_checkpoints=-1"], "train.keep_checkpoints must be >= 0"),
    ],
)
def test_checkpoint_keeping_settings_are_checked(tmp_path, extra, error):
    from edgegan.errors import ConfigError

    with pytest.raises(ConfigError, match=error):
        Trainer(load_config("dcgan-mnist", [*TINY_GAN, *extra]), tmp_path / "r")


def test_init_from_starts_a_new_run_from_another_runs_weights(tmp_path):
    """Fine-tuning: the networks and the EMA come from the source (a run directory, or one
    of its checkpoint files); the step, optimisers and run folder are the new run's."""
    from edgegan.errors import ConfigError
    from edgegan.train import train
    from edgegan.train.checkpoint import atomic_save, load_checkpoint

    source = train(load_config("dcgan-mnist", [*TINY_GAN, "train.steps=3"]), out_dir=tmp_path / "a")
    saved = load_checkpoint(source.checkpoint)
    for given in (source.run_dir, source.checkpoint):
        tuned = _trainer(tmp_path, f"train.init_from={given}")
        assert tuned.step == 0 and not tuned.task.optims["g"].state
        for name, weights in saved["networks"].items():
            assert _same(tuned.task.module(name).state_dict(), weights), name
        assert _same(tuned.ema.shadow.state_dict(), saved["ema"])
    fresh = _trainer(tmp_path)
    assert not _same(fresh.task.module("generator").state_dict(), saved["networks"]["generator"])
    with pytest.raises(ConfigError, match=r"its networks do not fit this config's .*size mismatch"):
        _trainer(tmp_path, f"train.init_from={source.run_dir}", "model.generator.ngf=16")
    with pytest.raises(ConfigError, match="no checkpoint there"):
        _trainer(tmp_path, f"train.init_from={tmp_path / 'none'}")
    atomic_save({**saved, "spec": {**saved["spec"], "num_classes": 3}}, tmp_path / "three.pt")
    with pytest.raises(ConfigError, match="was trained on 3 classes, this run's data has 10"):
        _trainer(tmp_path, f"train.init_from={tmp_path / 'three.pt'}")
    atomic_save({**saved, "task": "cyclegan"}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="is a 'cyclegan' run; this run's task is 'gan'"):
        _trainer(tmp_path, f"train.init_from={tmp_path / 'other.pt'}")


def test_a_warning_from_every_step_is_shown_once(tmp_path):
    """The fp16 scheduler-warning filter once wrapped every step in catch_warnings, which
    forgets the warnings already shown: a once-only warning (a PIL palette image's) came
    every step."""
    trainer = _trainer(tmp_path)
    step = trainer.task.train_step

    def warning_step(*args):
        warnings.warn("from inside a step", UserWarning, stacklevel=1)
        return step(*args)

    trainer.task.train_step = warning_step
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")  # once per place, as Python's default
        for _ in range(3):
            trainer.train_step()
    assert [str(w.message) for w in seen].count("from inside a step") == 1


def test_a_resume_beats_the_best_checkpoints_own_score_and_keeps_another_scores(tmp_path):
    """best.pt is written at validations, last.pt at checkpoints: a run stopped between them
    resumed with last.pt's older record and replaced a better best.pt with a worse one; and a
    resume with another eval.best replaced the old score's best.pt."""
    from edgegan.config import load_run_config
    from edgegan.errors import ConfigError

    extra = ["train.steps=4", "train.checkpoint_every=2", "eval.every=1", "eval.best=val_fd"]
    trainer = Trainer(load_config("dcgan-mnist", [*TINY_GAN, *extra]), tmp_path / "r")
    _scripted_validation(trainer, [{"fd": 5.0}, {"fd": 4.0}, {"fd": 2.0}, {"fd": 9.0}])
    trainer.fit()
    ckpts = tmp_path / "r/checkpoints"
    assert torch.load(ckpts / "best.pt", weights_only=True)["best"]["step"] == 3
    # A run that died after step 3's validation: its last.pt (step 2) records fd 4.0, its
    # best.pt fd 2.0 (step 3's: copied from the run above).
    trainer = Trainer(
        load_config("dcgan-mnist", [*TINY_GAN, *extra, "train.steps=2"]), tmp_path / "s"
    )
    _scripted_validation(trainer, [{"fd": 5.0}, {"fd": 4.0}])
    trainer.fit()
    import shutil

    shutil.copy(ckpts / "best.pt", tmp_path / "s/checkpoints/best.pt")  # step 3's fd 2.0
    resumed = Trainer(load_run_config(tmp_path / "s", "train.steps=4"), tmp_path / "s", resume=True)
    resumed.load_checkpoint(tmp_path / "s/checkpoints/last.pt")
    assert resumed.best["value"] == 2.0
    _scripted_validation(resumed, [{"fd": 3.0}, {"fd": 2.5}])  # better than 4.0, not than 2.0
    resumed.fit()
    assert torch.load(tmp_path / "s/checkpoints/best.pt", weights_only=True)["best"]["step"] == 3
    other = load_run_config(
        tmp_path / "s", ["train.steps=6", "eval.best=coverage", "eval.best_mode=max"]
    )
    again = Trainer(other, tmp_path / "s", resume=True)
    with pytest.raises(
        ConfigError,
        match=r"holds the checkpoint of the best val_fd \(min, step 3\); eval.best=coverage",
    ):
        again.load_checkpoint(tmp_path / "s/checkpoints/last.pt")


def test_eval_best_says_so_when_the_validation_gives_no_scores(tmp_path):
    trainer = Trainer(
        load_config("dcgan-mnist", [*TINY_GAN, "train.steps=4", "eval.every=2", "eval.best=fd"]),
        tmp_path / "r",
    )
    _scripted_validation(trainer, [{}, {}])  # an unpaired test split: nothing to score
    with pytest.warns(UserWarning, match="eval.best=fd: the validation gives no scores") as seen:
        trainer.fit()
    assert len([w for w in seen if "eval.best" in str(w.message)]) == 1
    assert not (tmp_path / "r/checkpoints/best.pt").exists()


def test_a_snapshot_that_cannot_be_pruned_or_kept_does_not_stop_the_run(tmp_path, monkeypatch):
    """On Windows a snapshot another process holds open cannot be removed: the run goes on
    (warned once), and the file goes at a later checkpoint."""
    from pathlib import Path

    from edgegan.train import train

    real_unlink = Path.unlink
    held = {"step_0000002.pt"}

    def unlink(self, missing_ok=False):
        if self.name in held:
            raise PermissionError(13, "in use by another process", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    extra = ["train.checkpoint_every=2", "train.keep_checkpoints=1", "train.steps=6"]
    with pytest.warns(
        UserWarning, match=r"keep_checkpoints: cannot remove step_0000002.pt yet"
    ) as seen:
        result = train(load_config("dcgan-mnist", [*TINY_GAN, *extra]), out_dir=tmp_path / "r")
    assert result.step == 6
    assert len([w for w in seen if "keep_checkpoints" in str(w.message)]) == 1
    names = sorted(p.name for p in (tmp_path / "r/checkpoints").iterdir())
    assert names == ["last.pt", "step_0000002.pt", "step_0000006.pt"]  # 4 went; 2 still held
