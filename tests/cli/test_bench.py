"""`cnnzoo bench`: the side-by-side table and its argument errors (no timing asserts)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cnnzoo.cli import main
from cnnzoo.inference import native_precision

pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()  # --threads changes a process-wide setting
    yield
    torch.set_num_threads(threads)


def _bench(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["bench", *args, "--iters", "2", "--warmup", "0"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_table_compares_every_runtime(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    records = tmp_path / "bench.json"
    code, out, err = _bench(
        capsys, "simple_cnn", "--batch-size", "3", "--threads", "1", "--json", str(records)
    )
    assert code == 0, err
    title, header, rule, *rows = out.splitlines()
    assert title.startswith("simple_cnn, batch 3, input 3x32x32, cpu (1 threads), 11.40M MACs")
    precision = "bf16" if native_precision(torch.bfloat16, "cpu") else "fp32"  # auto
    assert header.split() == [
        *("torch", "eager", "fp32", "torch", "optimised", precision),
        *("onnxruntime", "fp32", "onnxruntime", "int8"),
    ]
    assert set(rule) <= {"-", " "}
    table = {row[:17].strip(): row[17:].split() for row in rows if len(row[17:].split()) == 4}
    assert list(table) == [
        "images/s",
        "latency p50 (ms)",
        "latency p95 (ms)",
        "speed-up",
        "GFLOP/s",
        "share of peak",
        "rel. output error",
    ]
    assert table["speed-up"][0] == "1.00x"
    assert table["rel. output error"][0] == "-" and float(table["rel. output error"][2]) < 1e-4
    assert table["share of peak"][3] == "-"  # int8: no native peak to compare with
    for cell in table["share of peak"]:
        assert cell == "-" or 0 < int(cell.rstrip("%")) <= 100
    assert "calibrated on 4 batches of 32 random inputs (timing only)" in out
    written = json.loads(records.read_text())
    assert [(r["runtime"], r["precision"]) for r in written][2:] == [
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8"),
    ]
    for record in written:
        assert record["images_per_second"] > 0 and record["speedup"] > 0
        assert record["accuracy"] is None  # untrained: nothing to measure


def test_explicit_precision_and_other_input(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _bench(capsys, "resnet20", "--precision", "bf16", "--input", "3x48x40")
    assert code == 0, err
    assert "input 3x48x40" in out and "torch optimised bf16" in out
    emulated = native_precision(torch.bfloat16, "cpu") is False
    assert ("note: this cpu has no native bf16 arithmetic" in out) == emulated
    assert "Warning" not in err


def test_missing_onnxruntime_exits_1_with_the_install_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, out, err = _bench(capsys, "simple_cnn")
    assert code == 1 and out == ""
    assert err.strip() == (
        "cnnzoo bench: error: onnxruntime is needed for ONNX Runtime but is not installed "
        "(pip install 'cnnzoo[deploy]')"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simple_cnn", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["resnet", "--iters", "1"], "unknown model 'resnet'"),
        (["simple_cnn", "--input", "3x64x64"], "takes exactly 32x32 inputs"),
        (["simple_cnn", "--input", "3xfoo"], "cannot parse input size"),
        (["simple_cnn", "--calibration-batches", "0"], "--calibration-batches must be at least 1"),
        (["runs/nothing"], "no run, checkpoint or ONNX file at runs/nothing"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = _bench(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
