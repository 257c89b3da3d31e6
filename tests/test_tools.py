"""The benchmark tools run end to end on the CPU and write the JSON they document."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def test_bench_train_counts_what_merging_saves(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(TOOLS / "bench_train.py"), "--device", "cpu", "--cases", "dcgan"]
    cmd += ["--variants", "plain,merge", "--warmup", "1", "--steps", "2", "--json", str(out)]
    cmd += ["--profile", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ops/step" in proc.stdout
    results = json.loads(out.read_text())
    rows = {r["variant"]: r for r in results["rows"]}
    assert set(rows) == {"plain", "merge"}
    for row in rows.values():
        assert row["case"] == "dcgan" and row["batch_size"] == 64 and row["finite"]
        assert row["images_per_sec"] > 0 and row["gflop_per_image"] > 0
    # One discriminator call on real + fake instead of two: fewer operators per step.
    assert rows["merge"]["ops_per_step"] < 0.9 * rows["plain"]["ops_per_step"]
    assert rows["plain"]["speedup_vs_plain"] == 1.0
    # The profile splits the step's operator time; convolutions are the largest share on a
    # CPU, and the shares of the classes add up to the whole busy time.
    assert "where a training step's operator time goes" in proc.stdout
    for row in rows.values():
        prof = row["profile"]
        assert prof["steps"] == 1 and 0.5 < prof["busy_fraction"] <= 1.05
        assert abs(sum(prof["share"].values()) - 1) < 1e-6
        assert max(prof["share"], key=prof["share"].get) == "conv/matmul"
        assert prof["conv_tflops"] > 0
        # the most expensive operators behind the shares, most expensive first
        top = prof["top"]
        assert 0 < len(top) <= 15 and top[0]["class"] == "conv/matmul"
        assert [k["ms_per_step"] for k in top] == sorted(
            (k["ms_per_step"] for k in top), reverse=True
        )
        assert sum(k["share"] for k in top) <= 1 + 1e-6
        assert all(k["class"] in prof["share"] for k in top)
        # which operators ran them: a convolution's backward under its autograd node
        for k in top:
            assert 0 < len(k["launched_by"]) <= 3
            assert sum(c["ms_per_step"] for c in k["launched_by"]) <= k["ms_per_step"] * 1.001
        by_name = {k["name"]: k for k in top}
        chains = [c["ops"] for c in by_name["aten::convolution_backward"]["launched_by"]]
        assert any("ConvolutionBackward0" in c for c in chains), chains
    assert "the most expensive operators of each profiled row" in proc.stdout
    assert "launched by (ms)" in proc.stdout


def test_bench_train_names_the_operators_that_launch_each_kernel():
    """On CUDA a kernel is charged to the chain of operators that launched it: what makes a
    copy kernel's time actionable (on the H100: copies inside convolution_backward)."""
    from types import SimpleNamespace as NS

    bench = _tool("bench_train")
    Kernel = NS
    conv_bwd = NS(name="aten::convolution_backward", cpu_parent=None, kernels=[])
    contiguous = NS(name="aten::contiguous", cpu_parent=conv_bwd, kernels=[])
    clone = NS(name="aten::clone", cpu_parent=contiguous, kernels=[])
    copy_a = NS(name="aten::copy_", cpu_parent=clone, kernels=[Kernel(name="copy_k", duration=30)])
    to = NS(name="aten::to", cpu_parent=conv_bwd, kernels=[])
    copy_b = NS(name="aten::copy_", cpu_parent=to, kernels=[Kernel(name="copy_k", duration=10)])
    copy_c = NS(name="aten::copy_", cpu_parent=clone, kernels=[Kernel(name="copy_k", duration=5)])
    other = NS(name="aten::add", cpu_parent=None, kernels=[Kernel(name="add_k", duration=7)])
    found = bench._launchers([conv_bwd, copy_a, copy_b, copy_c, other], {"copy_k"}, cuda=True)
    assert found == {
        "copy_k": {
            "aten::copy_ < aten::clone < aten::contiguous < aten::convolution_backward": 35,
            "aten::copy_ < aten::to < aten::convolution_backward": 10,
        }
    }


@pytest.mark.parametrize("tool", sorted(p.stem for p in TOOLS.glob("*.py")))
def test_tools_run_from_a_checkout_where_edgegan_is_not_installed(tool, tmp_path):
    """A GPU machine's image has torch but not edgegan: `python tools/gpu_check.py` stopped
    at its first line (ModuleNotFoundError), as did the benchmarks it runs. ``-S`` skips the
    .pth files, so the editable install's finder is gone; PYTHONPATH gives back the
    third-party packages alone."""
    import site

    packages = os.pathsep.join([*site.getsitepackages(), site.getusersitepackages()])
    env = {**os.environ, "PYTHONPATH": packages}
    probe = [sys.executable, "-S", "-c", "import edgegan"]
    if subprocess.run(probe, env=env, cwd=tmp_path, capture_output=True).returncode == 0:
        pytest.skip("edgegan is installed as a package here (not editable): nothing to hide")
    cmd = [sys.executable, "-S", str(TOOLS / f"{tool}.py"), "--help"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout


def test_gpu_check_gives_its_commands_the_checkout(monkeypatch):
    """The commands gpu_check starts (and theirs: pytest's torchrun workers run
    ``python -m edgegan`` in a temporary folder) import the checkout's edgegan."""
    gpu_check = _tool("gpu_check")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    paths = gpu_check._child_env()["PYTHONPATH"].split(os.pathsep)
    assert paths == [str(TOOLS.parent), "/elsewhere"]


def test_gpu_check_tests_section_runs_the_gpu_tests_unless_told(tmp_path, monkeypatch):
    """The six files whole took 343 s of the section's 420 s limit in the third lease and
    have grown since: killed at the limit, pytest would print no summary at all."""
    gpu_check = _tool("gpu_check")
    commands = []
    monkeypatch.setattr(gpu_check, "run", lambda cmd, log, timeout=None: commands.append(cmd))
    gpu_check.section_tests(tmp_path / "log", quick=False)
    gpu_check.section_tests(tmp_path / "log", quick=True)
    gpu_check.section_tests(tmp_path / "log", quick=False, all_tests=True)
    pairs = [zip(c[:-1], c[1:], strict=True) for c in commands]
    marks = [[b for a, b in pair if a == "-m" and b != "pytest"] for pair in pairs]
    assert marks == [["gpu"], ["gpu and not slow"], []]  # one -m: a second replaces the first
    assert commands[2][-len(gpu_check.GPU_TESTS) :] == gpu_check.GPU_TESTS
    # The marker: every test skipped for want of CUDA, a GPU or TensorRT is a gpu test.
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only"]
    files = [str(TOOLS.parent / f) for f in gpu_check.GPU_TESTS]
    listed = subprocess.run([*cmd, "-m", "gpu", *files], capture_output=True, text=True)
    gpu = {line for line in listed.stdout.splitlines() if "::" in line}
    for name in ("test_cuda_resume_switches_the_adam_kernel", "test_real_tensorrt_build_run_parity",
                 "test_two_gpus_with_nccl_and_sync_bn_equal_one"):  # fmt: skip
        assert any(f"::{name}" in test for test in gpu), name
    assert not any("::test_bench_json_shape" in test for test in gpu)  # CPU work


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_train_classifies_gpu_kernels_and_cpu_operators():
    time_class = _tool("bench_train").time_class
    expected = {
        "conv/matmul": [  # cuDNN / CUTLASS kernels (torch 2.11, H100), inductor, CPU ops
            "sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128",
            "sm90_xmma_dgrad_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc",
            "cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_16x16_128x2_tn>",
            "triton_tem_fused_convolution_0",
            "aten::mkldnn_convolution",
            "aten::mm",
        ],
        "norm/reduction": [
            "triton_red_fused_convolution_backward_native_batch_norm_backward_3",
            "triton_per_fused__native_batch_norm_legit_relu_7",
            "void at::native::batch_norm_collect_statistics_kernel<float, float, float>",
            "cudnn::bn_fw_tr_1C11_kernel_NCHW<float, float, int, 512, true, 1, true>",
        ],
        "pad": [
            "triton_poi_fused_reflection_pad2d_relu_2",
            "void at::native::(anonymous namespace)::reflection_pad2d_out_kernel<float>",
        ],
        "pointwise": [
            "triton_poi_fused_add_mul_tanh_5",
            "void at::native::vectorized_elementwise_kernel<4, CUDAFunctor_add<float>>",
            "aten::leaky_relu",
        ],
        "copy/layout": ["void cudnn::engines_precompiled::nchwToNhwcKernel<float>", "Memset"],
        "optimizer": ["multi_tensor_apply_kernel<FusedAdam>", "aten::_foreach_lerp_"],
    }
    got = {cls: [time_class(name) for name in names] for cls, names in expected.items()}
    assert got == {cls: [cls] * len(names) for cls, names in expected.items()}


def test_gpu_check_env_runs_anywhere_and_gpu_sections_need_cuda(tmp_path):
    import torch

    out = tmp_path / "env.json"
    cmd = [sys.executable, str(TOOLS / "gpu_check.py"), "--sections", "env", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    env = json.loads(out.read_text())["env"]
    assert env["torch"] == torch.__version__
    assert env["cuda_available"] == torch.cuda.is_available()
    assert "onnxruntime_providers" in env and "tensorrt" in env
    bad = [sys.executable, str(TOOLS / "gpu_check.py"), "--sections", "curve,nope"]
    proc = subprocess.run(bad, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown section(s) ['nope']" in proc.stderr
    bad = [sys.executable, str(TOOLS / "gpu_check.py"), "--sections", "curve"]
    proc = subprocess.run(bad + ["--curve-variants", "graphs-ln,nope"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "unknown curve variant(s) ['nope']" in proc.stderr
    for flag, what in (("--infer-cases", "infer case"), ("--infer-variants", "infer variant")):
        proc = subprocess.run(bad + [flag, "nope"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and f"unknown {what}(s) ['nope']" in proc.stderr
    if not torch.cuda.is_available():
        gpu = [sys.executable, str(TOOLS / "gpu_check.py"), "--sections", "curve"]
        proc = subprocess.run(gpu + ["--out", str(tmp_path / "c.json")], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 2 and "sees no CUDA GPU" in proc.stderr


def test_gpu_check_saves_each_command_of_a_section_as_it_finishes(tmp_path, monkeypatch):
    """A device call cut off mid-section keeps the commands that finished (CUDA and the
    benchmark runs are faked: what is checked is when the results file is written)."""
    import torch

    gpu_check = _tool("gpu_check")
    out = tmp_path / "curve.json"
    seen_on_disk = []

    def fake_bench(name, args, log, work):
        saved = json.loads(out.read_text()).get("curve", {}) if out.is_file() else {}
        seen_on_disk.append(sorted(saved))
        return {"rc": 0, "name": name}

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_check, "_bench_train", fake_bench)
    argv = ["--sections", "curve", "--curve-sizes", "4,16,32", "--out", str(out)]
    assert gpu_check.main(argv) == 0
    # the default variant is the training default's fast path (layout-keeping norms)
    first, second = "graphs-ln_batch_4", "graphs-ln_batch_16"
    assert seen_on_disk == [[], [first], [second, first]]
    curve = json.loads(out.read_text())["curve"]
    assert sorted(curve) == [second, "graphs-ln_batch_32", first]
    assert curve["graphs-ln_batch_32"] == {"rc": 0, "name": "curve_graphs-ln_32"}


def test_gpu_check_infer_runs_the_cases_and_variants_asked_for(tmp_path, monkeypatch):
    """Each variant is a bench process of its own against the case's bundle; the compiled
    torch rows take one direction of the ResNet-9 (each shape compiles), and onnxruntime's
    variants need its CUDA provider (commands faked: what is checked is what would run)."""
    gpu_check = _tool("gpu_check")
    commands = []

    def fake_run(cmd, log, timeout=None):
        commands.append(cmd[3:])  # after python -m edgegan
        return {"rc": 0}

    monkeypatch.setattr(gpu_check, "run", fake_run)
    monkeypatch.setattr(gpu_check, "_random_unpaired_folder", lambda path: path)
    bundle = str(tmp_path / "resnet9-bundle")
    for ort_cuda in (True, False):
        monkeypatch.setattr(gpu_check, "_ort_cuda", lambda have=ort_cuda: have)
        commands.clear()
        out = {}
        variants = ("nhwc", "torch_compiled")
        gpu_check.section_infer(tmp_path / "log", tmp_path, True, out, ("resnet9",), variants)
        assert [c[:2] for c in commands[:2]] == [
            ["train", "cyclegan"],
            ["export", str(tmp_path / "resnet9")],
        ]
        benches = commands[2:]
        assert [c[:2] for c in benches] == [["bench", bundle]] * (3 if ort_cuda else 2)
        compiled = benches[-1]
        assert compiled[compiled.index("--backends") + 1] == "torch"
        assert compiled[compiled.index("--compile") + 1] == "reduce-overhead"
        assert compiled[compiled.index("--directions") + 1] == "AtoB"
        assert "--channels-last" in compiled
        keys = ["resnet9_train", "resnet9_export", "resnet9_bench"]
        keys += ["resnet9_bench_nhwc"] if ort_cuda else []
        assert sorted(out) == sorted([*keys, "resnet9_bench_torch_compiled"])
        assert any("prefer_nhwc=1" in c for c in benches) == ort_cuda


def test_bench_default_repeats_the_comparison_per_seed(tmp_path):
    out = tmp_path / "default.json"
    cmd = [sys.executable, str(TOOLS / "bench_default.py"), "--seeds", "0,1"]
    cmd += ["--out", str(tmp_path / "runs"), "--json", str(out)]
    cmd += ["train.steps=4", "eval.num_samples=64"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Over seeds 0,1" in proc.stdout and "mean FD ratio" in proc.stdout
    results = json.loads(out.read_text())
    rows = results["results"]
    assert [(r["preset"], r["seed"]) for r in rows] == [
        ("dcgan-mnist", 0),
        ("dcgan-textbook", 0),
        ("dcgan-mnist", 1),
        ("dcgan-textbook", 1),
    ]
    # Each seed is its own run directory; the default preset ran its own step count.
    assert len({r["run_dir"] for r in rows}) == 4
    assert all(r["steps"] == 4 for r in rows if r["preset"] == "dcgan-mnist")
    fd = results["summary"]["dcgan-mnist"]["fd"]
    mine = [r["fd"] for r in rows if r["preset"] == "dcgan-mnist"]
    assert fd["min"] == min(mine) and fd["max"] == max(mine)
    assert abs(fd["mean"] - sum(mine) / 2) < 1e-3
    assert results["meta"]["seeds"] == [0, 1]


def test_bench_default_rejects_bad_seeds():
    cmd = [sys.executable, str(TOOLS / "bench_default.py"), "--seeds", "0,x"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--seeds: expected comma-separated integers, got '0,x'" in proc.stderr


@pytest.mark.parametrize(
    "tool, args, message",
    [
        ("bench_default.py", ["--presets", "dcgan-mnist,nosuch"], "unknown preset 'nosuch'"),
        ("bench_default.py", ["--seeds", "0,0"], "--seeds names one twice: 0,0"),
        (
            "bench_default.py",
            ["--out", ".", "--presets", "dcgan-mnist,dcgan-textbook"],
            "dcgan-textbook already exists and is not empty",
        ),  # fmt: skip
        ("sweep_steps.py", ["dcgan-mnist", "--steps", "2", "--json", "."], "is a folder"),
        ("sweep_steps.py", ["nosuch", "--steps", "2"], "unknown preset 'nosuch'"),
        ("bench_train.py", ["--device", "cpu", "--steps", "0"], "--steps must be at least 1"),
        ("bench_train.py", ["--device", "tpu"], "train.device must be"),
        ("bench_infer.py", ["--batch-sizes", "0"], "each value must be at least 1"),
        ("bench_translate.py", ["--size", "30"], "--size must be a multiple of 4"),
        ("make_cyclegan_digits_folder.py", ["."], "is not an empty folder"),
        ("train_digit_classifier.py", ["--epochs", "0"], "--epochs, --batch-size and"),
    ],
)
def test_tools_answer_mistakes_with_one_line(tool, args, message, tmp_path):
    (tmp_path / "x").write_text("x")  # the working directory is not empty
    (tmp_path / "dcgan-textbook").mkdir()  # nor is bench_default's folder for the second run
    (tmp_path / "dcgan-textbook" / "notes.txt").write_text("x")
    temp = tmp_path / "temp"  # a refused command leaves no temporary folder behind
    temp.mkdir()
    proc = subprocess.run(
        [sys.executable, str(TOOLS / tool), *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(temp)},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not list(temp.iterdir())


def test_a_tools_interrupted_run_writes_no_results(capsys):
    from types import SimpleNamespace

    from edgegan.scripting import run, stopped

    def main():
        stopped(SimpleNamespace(stopped_by="signal", step=18))
        raise AssertionError("went on after the interrupted run")

    assert run(main) == 130
    assert "interrupted: no results written" in capsys.readouterr().err
    assert stopped(SimpleNamespace(stopped_by="steps")).stopped_by == "steps"


def test_a_tools_os_error_is_one_line(capsys):
    """A results file that cannot be written (read-only folder, full disk) was a traceback
    after the whole benchmark."""
    from edgegan.errors import EdgeganError
    from edgegan.scripting import run

    def main():
        raise PermissionError(13, "Permission denied", "ro/.bench.json.1.tmp")

    assert run(main) == 2
    assert capsys.readouterr().err == "error: Permission denied: ro/.bench.json.1.tmp\n"

    def named(name):
        def main():
            raise EdgeganError(f"no such file: {name}")

        return main

    # a crafted name can neither split the one line nor drive the terminal
    assert run(named("a\nb\x1b[2J")) == 2
    assert capsys.readouterr().err == "error: no such file: a\\nb\\x1b[2J\n"


def test_gpu_check_kills_a_command_at_its_timeout_and_keeps_its_output(tmp_path):
    """`run(..., timeout=...)` waited only after the command's output ended, that is after the
    command had exited: a hung test run used the whole device call."""
    import time

    gpu_check = _tool("gpu_check")
    log = tmp_path / "log"
    # a child that keeps the output pipe open, as pytest's torchrun workers would
    code = (
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
        "'import time; time.sleep(60)']); print('started', flush=True); time.sleep(60)"
    )
    t0 = time.monotonic()
    res = gpu_check.run([sys.executable, "-c", code], log, timeout=2)
    assert time.monotonic() - t0 < 20
    assert res["timed_out"] is True and res["rc"] != 0
    assert res["tail"] == ["started"] and "started" in log.read_text()
    assert "timed_out" not in gpu_check.run([sys.executable, "-c", "pass"], log, timeout=30)


def test_bench_infer_without_onnxruntime_rows_still_reports(tmp_path, monkeypatch, capsys):
    """When the onnxruntime rows do not run (its library cannot load, say), the summary
    crashed on min() of nothing and wrote no JSON."""
    import edgegan.runtime.bench as bench_module

    real = bench_module.bench

    def without_onnxruntime(target, backends, precisions, threads=None, **kw):
        result = real(target, ["torch"], ["fp32"], **kw)  # (threads: onnxruntime's alone)
        result["results"] += [
            {"backend": "onnxruntime", "precision": p, "batch": n, "device": "cpu",
             "status": "skipped", "reason": "not loadable"}
            for p in precisions for n in kw["batch_sizes"] if "onnxruntime" in backends
        ]  # fmt: skip
        return result

    monkeypatch.setattr(bench_module, "bench", without_onnxruntime)
    out = tmp_path / "b.json"
    tool = _tool("bench_infer")
    assert tool.main(["--warmup", "0", "--iters", "1", "--no-int8", "--batch-sizes", "1",
                      "--json", str(out)]) == 0  # fmt: skip
    assert "no comparison: a row did not run" in capsys.readouterr().out
    assert json.loads(out.read_text())["target_met"] is False


def test_bench_train_measures_what_edgegan_train_runs_with_the_fast_switches():
    """The `train` variant is gpu_check's whole fast runs: the three switches and every other
    train.* item at its default (pinned batches, layout norms resolved from null), where the
    cumulative rows keep plain's host path and plain norms."""
    from edgegan.config import load_config

    bench, gpu_check = _tool("bench_train"), _tool("gpu_check")
    assert bench.VARIANTS["train"] == gpu_check.FAST and "train" in bench.ON_REQUEST
    fast = load_config("cyclegan", bench.VARIANTS["train"]).train
    default = load_config("cyclegan", []).train
    changed = {k for k, v in vars(fast).items() if getattr(default, k) != v}
    assert changed == {"amp", "channels_last", "compile"}
    assert fast.layout_norm is None and fast.pin_memory
    assert "train.layout_norm=false" in bench.VARIANTS["graphs"]
    autotune = bench.VARIANTS["autotune-ln"]
    assert autotune[-2:] == ["train.compile=max-autotune", "train.layout_norm=true"]
    assert "autotune-ln" in bench.ON_REQUEST
