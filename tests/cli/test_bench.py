"""`cnnzoo bench`: the side-by-side table and its argument errors (no timing asserts)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from cnnzoo.cli import main
from cnnzoo.inference import native_precision


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()  # --threads changes a process-wide setting
    yield
    torch.set_num_threads(threads)


def _bench(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["bench", *args, "--iters", "2", "--warmup", "0"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_table_compares_eager_and_optimised(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _bench(capsys, "simple_cnn", "--batch-size", "3", "--threads", "1")
    assert code == 0, err
    title, header, rule, *rows = out.splitlines()
    assert title.startswith("simple_cnn, batch 3, input 3x32x32, cpu (1 threads), 11.40M MACs")
    assert header.split() == ["eager", "fp32", "optimised", "fp32"]
    assert set(rule) <= {"-", " "}
    labels = [row.rsplit(maxsplit=2)[0] for row in rows]
    assert labels == [
        "images/s",
        "latency p50 (ms)",
        "latency p95 (ms)",
        "GFLOP/s",
        "matmul peak GFLOP/s",
        "share of peak",
        "rel. output error",
        "speed-up",
    ]
    cells = {row.rsplit(maxsplit=2)[0]: row.split()[-2:] for row in rows}
    assert cells["speed-up"][0] == "1.00x"
    assert cells["rel. output error"][0] == "-" and float(cells["rel. output error"][1]) < 1e-5
    assert all(float(v) > 0 for v in cells["images/s"] + cells["GFLOP/s"])


def test_low_precision_and_other_input(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _bench(capsys, "resnet20", "--precision", "bf16", "--input", "3x48x40")
    assert code == 0, err
    assert "input 3x48x40" in out and "optimised bf16" in out
    emulated = native_precision(torch.bfloat16, "cpu") is False
    assert ("note: this cpu has no native bf16 arithmetic" in out) == emulated
    assert "Warning" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simple_cnn", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["resnet", "--iters", "1"], "unknown model 'resnet'"),
        (["simple_cnn", "--input", "3x64x64"], "takes exactly 32x32 inputs"),
        (["simple_cnn", "--device", "tpu"], "unknown device 'tpu'"),
        (["simple_cnn", "--input", "3xfoo"], "cannot parse input size"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = _bench(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _bench(capsys, "simple_cnn", "--device", "cuda")
    assert code == 2 and "no CUDA device is available" in err
