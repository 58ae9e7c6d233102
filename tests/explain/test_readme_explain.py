"""The README's explain / compare / notebook example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"

pytest.importorskip("captum", reason="pip install 'cnnzoo[explain]'")


def test_explain_and_compare_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Explaining predictions, comparing models, notebooks") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    for name in ("heat", "sal", "occ"):
        assert tuple(namespace[name].shape) == (32, 32)  # type: ignore[attr-defined]
    assert namespace["mem"].optimizer == "adamw"  # type: ignore[attr-defined]
    assert len(namespace["table"].rows) == 2  # type: ignore[attr-defined]
