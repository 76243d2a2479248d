"""The command line (`medimg info`, `medimg bench metrics`) and the benchmark's reference
implementations of the segmentation statistics."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from functools import partial

import numpy as np
import pytest
import torch

import medimg
import medimg.bench.conv as bench_conv
import medimg.bench.metrics as bench_metrics
from medimg.cli import build_parser, main
from medimg.ops import segmentation_stats

INFO_KEYS = ("medimg", "torch", "numpy", "python", "cpu_module_built", "cpu_isa_active", "cpu_isas_supported",
             "cuda_module_built", "cuda_devices", "torch_cuda_available", "gpus", "triton", "torch_num_threads")


# ----------------------------------------------------------------------------- info

def test_info_dict():
    data = medimg.info()
    assert isinstance(data, dict)
    for key in INFO_KEYS:
        assert key in data, key
    assert data["medimg"] == medimg.__version__
    assert data["torch"] == torch.__version__
    assert data["numpy"] == np.__version__
    assert isinstance(data["cpu_module_built"], bool)
    assert isinstance(data["cuda_module_built"], bool)
    assert isinstance(data["gpus"], list)
    assert data["torch_cuda_available"] == torch.cuda.is_available()
    assert data["torch_num_threads"] == torch.get_num_threads()
    if data["cpu_module_built"]:
        assert data["cpu_isa_active"] in data["cpu_isas_supported"]
    else:
        assert data["cpu_isa_active"] is None
    json.dumps(data)  # plain Python values only


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    for key in INFO_KEYS:
        assert key in data, key
    assert data["medimg"] == medimg.__version__
    assert data == json.loads(json.dumps(medimg.info()))


def test_info_text(capsys):
    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    by_key = {line.split()[0]: line for line in lines if line.strip()}
    for key in INFO_KEYS:
        assert key in by_key, key
    assert by_key["medimg"].split()[1] == medimg.__version__
    if not torch.cuda.is_available():
        assert by_key["gpus"].split()[1:] == ["-"]  # an empty list is shown as '-'
    with pytest.raises(json.JSONDecodeError):
        json.loads("\n".join(lines))


def test_info_text_formatting(capsys, monkeypatch):
    """Keys padded to one column; lists joined with ', '; None and '' shown as '-'."""
    monkeypatch.setattr(medimg, "info", lambda: {"a": None, "long_key": [1, "x"], "empty": "", "flag": False})
    assert main(["info"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "a         -",
        "long_key  1, x",
        "empty     -",
        "flag      False",
    ]


def test_cli_subprocess():
    result = subprocess.run([sys.executable, "-m", "medimg.cli", "info"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "medimg"
    result = subprocess.run([sys.executable, "-m", "medimg.cli", "info", "--json"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["medimg"] == medimg.__version__


@pytest.mark.parametrize("argv", [[], ["nope"], ["bench"], ["bench", "losses"], ["info", "--yaml"],
                                  ["bench", "metrics", "--min-run-time", "fast"]])
def test_bad_command_line(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: medimg" in capsys.readouterr().err


def test_parser_defaults():
    args = build_parser().parse_args(["bench", "metrics"])
    assert (args.suite, args.threads, args.min_run_time) == ("metrics", 0, 0.5)
    assert build_parser().parse_args(["info"]).json is False


# ----------------------------------------------------------------------------- bench

@pytest.fixture
def tiny_bench(monkeypatch):
    case = bench_metrics.Case("tiny 2x16x16 uint8, 3 classes", (2, 16, 16), 3, torch.uint8)
    monkeypatch.setattr(bench_metrics, "CASES", (case,))
    real = bench_metrics.copy_bandwidth
    calls = []

    def quick_bandwidth(*args, **kwargs):
        calls.append({**dict(enumerate(args)), **kwargs})
        return real(nbytes=1 << 20, device=kwargs["device"], min_run_time=0.01)

    monkeypatch.setattr(bench_metrics, "copy_bandwidth", quick_bandwidth)
    return case, calls


def test_bench_device_without_cuda_is_refused(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["bench", "metrics", "--device", "cuda"]) == 1
    assert "nothing to run on cuda" in capsys.readouterr().out
    assert main(["bench", "data", "--device", "cuda"]) == 1  # a CPU-only suite
    assert "this suite runs on cpu;" in capsys.readouterr().out


def test_bench_metrics(tiny_bench, capsys):
    case, calls = tiny_bench
    threads = torch.get_num_threads()
    try:
        assert main(["bench", "metrics", "--min-run-time", "0.01", "--threads", "1", "--device", "cpu"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert calls == [{"device": "cpu", "min_run_time": 0.01}]  # the CLI's --min-run-time reaches it
    assert "segmentation statistics on the CPU, 1 threads" in out
    assert "copy bandwidth" in out and "GB/s" in out
    assert case.name in out
    assert "medimg speed-up" in out
    rows = {line.strip().split("  ")[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert bench_metrics.MEDIMG in rows
    assert "torch.bincount (joint index)" in rows
    assert "numpy.bincount (joint index)" in rows
    assert "one-hot formula (MONAI-style)" in rows
    assert rows[bench_metrics.MEDIMG].split()[3] == "1.0x"  # medimg against itself
    for name in ("torch.bincount (joint index)", "numpy.bincount (joint index)"):
        assert rows[name].rstrip().endswith("%")  # bandwidth-bound rows report % of copy bandwidth
    for name, line in rows.items():
        if name != "implementation":
            assert re.search(r"\s\d+\.\dx(\s|$)", line), line  # every row has its speed-up


def test_bench_run_returns_table(tiny_bench):
    report = bench_metrics.run(min_run_time=0.01)
    assert report.startswith("segmentation statistics on the CPU")
    assert bench_metrics.MEDIMG in report and "torch.bincount" in report


def test_implementations_compute_the_same_statistics():
    case = bench_metrics.Case("tiny", (2, 8, 8), 4, torch.uint8)
    pred, target = case.labels()
    expected = segmentation_stats(pred, target, 4, backend="torch")
    for name, (fn, nbytes) in bench_metrics.implementations(case).items():
        result = fn()
        if name in (bench_metrics.MEDIMG, "torch.bincount (joint index)", "numpy.bincount (joint index)",
                    "one-hot formula (MONAI-style)"):
            got = torch.as_tensor(np.asarray(result)).long()
            assert torch.equal(got, expected), name
        if nbytes is not None:
            assert nbytes == pred.nbytes + target.nbytes


def test_case_labels_are_seeded_and_typed():
    case = bench_metrics.Case("c", (2, 5, 7), 5, torch.int32)
    p1, t1 = case.labels()
    p2, t2 = case.labels()
    assert torch.equal(p1, p2) and torch.equal(t1, t2)
    assert p1.dtype == torch.int32 and p1.shape == (2, 5, 7)
    assert not torch.equal(p1, t1)
    assert int(p1.min()) >= 0 and int(p1.max()) < 5
    assert len(bench_metrics.CASES) >= 1


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
@pytest.mark.parametrize("shape", [(3, 9, 11), (2, 4, 5, 6), (1, 17)])
@pytest.mark.parametrize("k", [2, 5])
def test_benchmark_references_match_segmentation_stats(k, shape, dtype):
    g = torch.Generator().manual_seed(k * 100 + len(shape))
    pred = torch.randint(0, k, shape, generator=g).to(dtype)
    target = torch.randint(0, k, shape, generator=g).to(dtype)
    if shape[0] > 1:
        pred[1] = 0  # a sample where some classes are absent
    expected = segmentation_stats(pred, target, k)
    assert torch.equal(expected, segmentation_stats(pred, target, k, backend="torch"))
    # manual count of one entry, so that the expected value is not only the library's
    c = k - 1
    assert int(expected[0, c, 0]) == int(((pred[0] == c) & (target[0] == c)).sum())
    assert int(expected[0, c, 1]) == int(((pred[0] == c) & (target[0] != c)).sum())
    assert int(expected[0, c, 2]) == int(((pred[0] != c) & (target[0] == c)).sum())

    by_torch = bench_metrics.bincount_stats_torch(pred, target, k)
    assert by_torch.dtype == torch.int64
    assert torch.equal(by_torch, expected)
    by_numpy = bench_metrics.bincount_stats_numpy(pred.numpy(), target.numpy(), k)
    assert by_numpy.shape == tuple(expected.shape)
    assert torch.equal(torch.from_numpy(by_numpy).long(), expected)
    one_hot = bench_metrics.one_hot_stats(pred, target, k)
    assert one_hot.is_floating_point()
    assert torch.equal(one_hot.long(), expected)


# ----------------------------------------------------------------------------- bench conv

@pytest.fixture
def tiny_conv_bench(monkeypatch):
    cases = (bench_conv.Case("tiny fwd 2x1->4 3x3 @8^2", 2, 1, 4, 3, 8, memory_bound=True),
             bench_conv.Case("tiny fwd+bwd 2x3->4 1x1 @6^2", 2, 3, 4, 1, 6, backward=True))
    monkeypatch.setattr(bench_conv, "CASES", cases)
    real = bench_conv.copy_bandwidth
    monkeypatch.setattr(bench_conv, "copy_bandwidth", lambda min_run_time: real(nbytes=1 << 20, min_run_time=0.01))
    return cases


def test_bench_conv(tiny_conv_bench, capsys):
    assert main(["bench", "conv", "--min-run-time", "0.01", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("conv2d (NCHW) on the CPU") and "first-touch page faults" in out
    assert all(case.name in out for case in tiny_conv_bench)
    headers = [line for line in out.splitlines() if line.startswith("  implementation")]
    assert len(headers) == 2 and all("GFLOP/s" in line and "medimg speed-up" in line for line in headers)
    cells = {}  # (case index, implementation) -> the cells right of the name column
    for line in out.splitlines():
        if not line.startswith("  "):
            index = len({key[0] for key in cells}) if line else None
        elif not line.startswith("  implementation"):
            cells[index, line[2:46].strip()] = line[46:].split()
    for index in (0, 1):
        for name in (bench_conv.MEDIMG, "F.conv2d"):
            median, _, images, gflops, speedup, *bandwidth = cells[index, name]
            assert float(median) > 0 and float(images) > 0 and float(gflops) >= 0, (index, name)
            assert re.fullmatch(r"\d+\.\dx", speedup), (index, name)
            assert len(bandwidth) == (2 if index == 0 else 0)  # GB/s and % copy bw for the memory-bound case
        assert cells[index, bench_conv.MEDIMG][4] == "1.0x"  # medimg against itself


def test_bench_conv_implementations_agree_with_f_conv2d():
    for case in (bench_conv.Case("fwd", 2, 1, 3, 3, 7), bench_conv.Case("fwd+bwd", 2, 2, 3, 3, 5, backward=True)):
        x, w, b, grad = case.tensors()
        out = torch.nn.functional.conv2d(x, w, b, padding=1)
        expected = torch.autograd.grad(out, (x, w, b), grad) if case.backward else (out,)
        impls = bench_conv.implementations(case)
        assert bench_conv.MEDIMG in impls and "F.conv2d" in impls
        for name, (fn, nbytes) in impls.items():
            result = fn()
            got = result if isinstance(result, tuple) else (torch.as_tensor(np.asarray(result)),)
            assert len(got) == len(expected), name
            for a, e in zip(got, expected, strict=True):
                torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5, msg=name)
            assert nbytes is None


def test_bench_conv_cases():
    case = bench_conv.Case("c", 4, 64, 64, 3, 256)
    assert case.flops == 2 * 4 * 64 * 256 * 256 * 64 * 9
    assert dataclasses.replace(case, backward=True).flops == 3 * case.flops
    cpu = bench_conv.make_cases()
    assert bench_conv.CASES[:len(cpu)] == cpu and len(cpu) == 10
    assert [c.backward for c in cpu[:2]] == [False, True]
    first = cpu[0]
    assert first.memory_bound and first.batch * first.out_channels * first.size**2 * 4 == 64 << 20
    assert not any(c.memory_bound for c in cpu[2:])


# ----------------------------------------------------------------------------- bench models

def test_bench_models(monkeypatch, capsys):
    import medimg.bench.models as bench_models

    small = (
        bench_models.Case("tiny CNN", partial(bench_models.cnn_step, batch=2, size=16), 2),
        bench_models.Case("tiny U-Net", partial(bench_models.unet_step, batch=1, size=32), 1),
        bench_models.Case("tiny GAN", partial(bench_models.gan_step, batch=2, size=32), 2),
        bench_models.Case("tiny sequence", partial(bench_models.sequence_step, batch=2, frames=2, size=16), 2),
    )
    monkeypatch.setattr(bench_models, "CASES", small)
    assert main(["bench", "models", "--min-run-time", "0.01", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("training step (forward + backward + Adam)")
    for case in small:
        assert case.name in out
    assert out.count('backend="medimg"') == len(small) and out.count('backend="torch"') == len(small)
