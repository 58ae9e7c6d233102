"""The README's Python quick start runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"


def test_python_quick_start_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python quick start") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    monkeypatch.chdir(tmp_path)  # the example writes runs/lenet5 here
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    assert namespace["logits"].shape == (2, 10)  # type: ignore[attr-defined]
    assert 0.0 < namespace["final"]["test_accuracy"] <= 1.0  # type: ignore[index]
    assert (tmp_path / "runs" / "lenet5" / "final.json").is_file()


def test_surgery_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Model surgery, inference and export") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    maps = namespace["maps"]
    assert {k: tuple(v.shape) for k, v in maps.items()} == {  # type: ignore[attr-defined]
        "c2": (1, 64, 56, 56),
        "c5": (1, 512, 7, 7),
    }
    assert (tmp_path / "resnet18.onnx").is_file()
