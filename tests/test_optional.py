"""Optional dependencies fail with one line naming the package and the extra."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cnnzoo._optional import MissingExtraError, require


def test_present_module_is_returned() -> None:
    assert require("json", "reading JSON").dumps([1]) == "[1]"


def test_missing_extra_names_feature_package_and_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("matplotlib", "matplotlib.figure"):  # importing them now fails as missing
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingExtraError) as caught:
        require("matplotlib.figure", "training curves")
    message = str(caught.value)
    assert message == (
        "matplotlib is needed for training curves but is not installed "
        "(pip install 'cnnzoo[plots]')"
    )
    assert "\n" not in message


def test_unknown_optional_module_suggests_plain_pip() -> None:
    with pytest.raises(MissingExtraError, match=r"pip install no_such_pkg_cnnzoo\)$"):
        require("no_such_pkg_cnnzoo", "a feature")


def test_training_without_matplotlib_keeps_its_numbers_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnzoo.train import fit, make_config

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    config = make_config("lenet5_modern", epochs=1, batch_size=128, ema=None)
    fit(config, tmp_path / "run")
    written = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"final.json", "metrics.csv", "last.pt", "confusion.csv"} <= written
    assert not {"curves.png", "confusion.png"} & written
    assert "pip install 'cnnzoo[plots]'" in capsys.readouterr().err
