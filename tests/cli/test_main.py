from __future__ import annotations

import subprocess
import sys

import pytest

from cnnzoo.cli import main


def _run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cnnzoo", *args], capture_output=True, text=True, timeout=120
    )


def test_list_prints_every_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    header, rule, *rows = out.splitlines()
    assert header.split()[:4] == ["model", "family", "params", "MACs"]
    assert set(rule) <= {"-", " "}
    names = [row.split()[0] for row in rows]
    assert "resnet50" in names and "lenet5" in names and "googlenet" in names
    resnet50 = next(r for r in rows if r.split()[0] == "resnet50").split()
    assert resnet50[2:5] == ["25,557,032", "4,089,184,256", "3x224x224"]  # exact (issue 11)


def test_list_pattern_filters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "vgg1?_bn"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [r.split()[0] for r in rows] == ["vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]


def test_python_dash_m_is_the_same_command() -> None:
    result = _run_module("list", "alexnet*")
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()[2:]] == [
        "alexnet",
        "alexnet_original",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
        (["list", "a", "b"], "unrecognized arguments: b"),
    ],
)
def test_bad_usage_is_one_line_exit_2(args: list[str], message: str) -> None:
    result = _run_module(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_api_errors_become_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import cnnzoo.cli.listing as listing

    def failing(pattern: str) -> list[str]:
        raise ValueError("first line\nsecond line")

    monkeypatch.setattr(listing, "list_models", failing)
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err == "cnnzoo list: error: first line second line\n"


def test_unexpected_errors_exit_1_without_traceback_unless_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import cnnzoo.cli.listing as listing

    def broken(pattern: str) -> list[str]:
        raise KeyError("boom")

    monkeypatch.setattr(listing, "list_models", broken)
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: KeyError" in err and "--debug" in err
    with pytest.raises(KeyError):
        main(["--debug", "list"])
