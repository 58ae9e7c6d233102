"""Optional dependencies fail with one line naming the package and the extra."""

from __future__ import annotations

import sys

import pytest

from cnnzoo._optional import MissingExtraError, require


def test_present_module_is_returned() -> None:
    assert require("json", "reading JSON").dumps([1]) == "[1]"


def test_missing_extra_names_feature_package_and_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import of it now fails as missing
    with pytest.raises(MissingExtraError) as caught:
        require("matplotlib.figure", "training curves")
    message = str(caught.value)
    assert message == (
        "training curves needs matplotlib, which is not installed (pip install 'cnnzoo[plots]')"
    )
    assert "\n" not in message


def test_unknown_optional_module_suggests_plain_pip() -> None:
    with pytest.raises(MissingExtraError, match=r"pip install no_such_pkg_cnnzoo\)$"):
        require("no_such_pkg_cnnzoo", "a feature")
