"""CPU deployment on a real (one-epoch) run: exported files carry the run's preprocessing and
class names and predict as the checkpoint does; int8 through onnxruntime; every runtime benched
side by side (no timing asserts)."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnzoo._optional import MissingExtraError
from cnnzoo.data import load_dataset
from cnnzoo.deploy import (
    bench_runtimes,
    export_int8,
    load_exported,
    load_source,
    predict_exported,
    results_json,
    source_metadata,
)
from cnnzoo.export import export_model, read_metadata
from cnnzoo.inspect import summary
from cnnzoo.ort import is_quantized, require_onnxruntime
from cnnzoo.preprocessing import METADATA_KEY, Preprocessing
from cnnzoo.train.predict import predict_images

pytest.importorskip("onnxruntime")

FORMATS = [("onnx", "model.onnx"), ("torchscript", "model.pt")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cnnzoo.train import fit, make_config

    out = tmp_path_factory.mktemp("runs") / "lenet5"
    torch.set_num_threads(1)
    fit(make_config("lenet5", epochs=1), out, quiet=True)
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    test = load_dataset("digits", None, "test")
    files = []
    for index in (0, 1, 50, 200):
        file = folder / f"digit{index}.png"
        Image.fromarray(test.images[index, 0].numpy()).save(file)
        files.append(file)
    return files


def test_a_run_is_exported_at_its_trained_input_size(run_dir: Path) -> None:
    source = load_source(run_dir)
    prep = source.preprocessing
    assert prep is not None
    # the digits are 1x8x8; LeNet-5 takes exactly 32x32: the trainer resized them
    assert prep.image_size == (1, 8, 8) and prep.input_size == (1, 32, 32)
    assert source.input_size == (1, 32, 32)
    assert prep.classes == tuple(str(d) for d in range(10))
    config = json.loads((run_dir / "config.json").read_text())
    recorded = config.get("data_info") or {}
    assert list(prep.mean) == pytest.approx(recorded.get("mean", prep.mean))
    with pytest.raises(ValueError, match=r"trained on 1x32x32 inputs"):
        load_source(run_dir, (1, 64, 64))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize(("export_format", "name"), FORMATS)
def test_exported_file_carries_preprocessing_and_predicts_like_the_run(
    run_dir: Path, images: list[Path], tmp_path: Path, export_format: str, name: str
) -> None:
    source = load_source(run_dir)
    assert source.model is not None and source.preprocessing is not None
    path = tmp_path / name
    report = export_model(
        source.model,
        path,
        format=export_format,
        input_size=source.input_size,
        metadata=source_metadata(source),
    )
    assert report.input_shape == (1, 1, 32, 32)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic write
    metadata = read_metadata(path)
    assert Preprocessing.from_metadata(metadata) == source.preprocessing
    # plain keys for readers without cnnzoo
    assert json.loads(metadata["classes"]) == list(source.preprocessing.classes)
    assert json.loads(metadata["input_size"]) == [1, 32, 32]
    assert int(metadata["cnnzoo.macs_per_image"]) == summary(source.model, (1, 32, 32)).total_macs
    expected = predict_images(run_dir, images, top_k=3)
    got = predict_exported(path, images, top_k=3)
    for want, have in zip(expected, got, strict=True):
        assert [c for c, _ in have.top] == [c for c, _ in want.top]
        assert [p for _, p in have.top] == pytest.approx([p for _, p in want.top], abs=1e-4)


def test_a_file_without_cnnzoo_metadata_says_so(tmp_path: Path) -> None:
    source = load_source("lenet5")
    path = tmp_path / "bare.onnx"
    export_model(source.model, path, metadata=source_metadata(source))  # type: ignore[arg-type]
    assert METADATA_KEY not in read_metadata(path)
    with pytest.raises(ValueError, match="carries no preprocessing or class names"):
        load_exported(path)


def test_int8_is_quantised_calibrated_on_the_run_data_and_measured(
    run_dir: Path, tmp_path: Path
) -> None:
    source = load_source(run_dir)
    result = export_int8(source, tmp_path / "int8.onnx", calibration_batches_count=2)
    assert result.calibration_batches == 2 and result.test_images == 355
    assert is_quantized(result.path)
    assert set(result.accuracy) == {"fp32", "int8"}
    assert all(0 <= v <= 1 for v in result.accuracy.values())
    assert result.max_rel_error < 0.1  # int8 rounds, but it is the same function
    metadata = read_metadata(result.path)
    assert Preprocessing.from_metadata(metadata) == source.preprocessing
    assert "per-channel int8 weights" in metadata["cnnzoo.quantization"]
    # the ONNX fp32 model is the PyTorch model: its accuracy is the run's own evaluation
    final = json.loads((run_dir / "final.json").read_text())
    accuracies = [v for k, v in final.items() if "acc" in k and isinstance(v, float)]
    if accuracies:
        assert any(abs(result.accuracy["fp32"] - a) < 1e-6 for a in accuracies), final


def test_int8_of_an_untrained_model_needs_real_images(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int8 calibration needs real images"):
        export_int8(load_source("lenet5"), tmp_path / "int8.onnx")


def test_bench_measures_every_runtime_with_accuracy(run_dir: Path) -> None:
    results = bench_runtimes(
        load_source(run_dir), batch_size=4, warmup=0, iters=2, calibration_batches_count=1
    )
    assert [(r.runtime, r.precision) for r in results][::2] == [
        ("torch eager", "fp32"),
        ("onnxruntime", "fp32"),
    ]
    assert results[1].runtime == "torch optimised" and results[3].precision == "int8"
    macs = summary("lenet5", (1, 32, 32)).total_macs  # one counter: the layer table's
    for result in results:
        assert result.macs_per_image == macs
        assert result.accuracy is not None and 0 <= result.accuracy <= 1
        assert result.peak_share is None or 0 < result.peak_share <= 1
    assert results[3].peak_share is None  # no native int8 peak is measured
    assert results[0].accuracy == pytest.approx(results[2].accuracy)  # fp32 both
    records = json.loads(results_json(results))
    assert records[0]["speedup"] == 1.0
    for record in records:
        assert {"runtime", "precision", "images_per_second", "speedup", "accuracy"} <= set(record)


def test_bench_of_an_onnx_file_uses_its_metadata(run_dir: Path, tmp_path: Path) -> None:
    source = load_source(run_dir)
    path = tmp_path / "model.onnx"
    export_model(source.model, path, input_size=source.input_size, metadata=source_metadata(source))  # type: ignore[arg-type]
    file_source = load_source(path)
    assert file_source.preprocessing == source.preprocessing and file_source.model is None
    results = bench_runtimes(file_source, warmup=0, iters=1, calibration_batches_count=1)
    assert [r.label for r in results] == ["onnxruntime fp32", "onnxruntime int8"]
    assert all(r.accuracy is not None for r in results)
    int8 = export_int8(source, tmp_path / "int8.onnx", calibration_batches_count=1)
    (only,) = bench_runtimes(load_source(int8.path), warmup=0, iters=1)
    assert only.label == "onnxruntime int8" and only.accuracy == int8.accuracy["int8"]
    assert results[0].macs_per_image == summary(source.model, (1, 32, 32)).total_macs  # type: ignore[arg-type]


def test_missing_onnxruntime_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'cnnzoo\[deploy\]'"):
        require_onnxruntime()


def test_readme_reader_without_cnnzoo_runs(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = load_source(run_dir)
    export_model(source.model, tmp_path / "model.onnx", metadata=source_metadata(source))  # type: ignore[arg-type]
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("Without cnnzoo:") :]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block is not None
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(textwrap.dedent(block.group(1)), "README.md", "exec"), namespace)
    assert namespace["classes"] == [str(d) for d in range(10)]
    assert (namespace["channels"], namespace["height"], namespace["width"]) == (1, 32, 32)
    assert namespace["mean"] == pytest.approx(list(source.preprocessing.mean))  # type: ignore[union-attr]


def test_cli_predict_of_an_exported_file(
    run_dir: Path,
    images: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cnnzoo.cli import main

    source = load_source(run_dir)
    path = tmp_path / "model.onnx"
    export_model(source.model, path, input_size=source.input_size, metadata=source_metadata(source))  # type: ignore[arg-type]
    assert main(["predict", str(run_dir), *map(str, images), "--top-k", "1"]) == 0
    from_run = capsys.readouterr().out
    assert main(["predict", str(path), *map(str, images), "--top-k", "1"]) == 0
    assert capsys.readouterr().out == from_run and len(from_run.splitlines()) == len(images)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(["predict", str(path), str(images[0])]) == 1
    assert "pip install 'cnnzoo[deploy]'" in capsys.readouterr().err


def test_the_trainers_inference_record_wins_over_the_datas_statistics() -> None:
    # The review's finding: a fine-tuned run trains at the weights' size with their mean/std
    # (checkpoint["inference"], train/checkpoint.py); exports must use those, not the data's.
    imagenet_mean, imagenet_std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    checkpoint = {
        "config": {"model": "resnet18", "model_kwargs": {"num_classes": 2, "in_channels": 3}},
        "data": {"classes": ["a", "b"], "mean": [0.7, 0.5, 0.7], "std": [0.2, 0.2, 0.2]}
        | {"image_size": [3, 48, 48]},
        "inference": {
            "input_size": [3, 224, 224],
            "classes": ["a", "b"],
            "mean": imagenet_mean,
            "std": imagenet_std,
        },
    }
    prep = Preprocessing.from_checkpoint(checkpoint)
    assert list(prep.mean) == imagenet_mean and list(prep.std) == imagenet_std
    assert prep.input_size == (3, 224, 224) and prep.image_size == (3, 48, 48)
    del checkpoint["inference"]  # a format-1 checkpoint: the data's statistics, as before
    assert list(Preprocessing.from_checkpoint(checkpoint).mean) == [0.7, 0.5, 0.7]
