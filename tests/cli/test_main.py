from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

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


# --- #13: signals, pipes, OS errors, global options anywhere ---------------------------------


def test_ctrl_c_during_start_up_imports_exits_130_without_a_traceback() -> None:
    # -X importtime reports each import as it finishes: once cnnzoo._interrupt is in, torch and
    # the models are still importing, and SIGINT arrives in the middle of them
    # (SIGINT at its default in the child: a suite run as a background job of a shell without
    # job control inherits it ignored, and an ignored SIGINT is rightly left ignored)
    child = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "cnnzoo", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert child.stderr is not None
    seen = []
    for line in child.stderr:
        seen.append(line)
        if "cnnzoo._interrupt" in line:
            child.send_signal(signal.SIGINT)
            break
    rest = child.stderr.read()
    child.wait(timeout=60)
    assert child.returncode == 130, "".join(seen[-5:]) + rest
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest
    assert "cnnzoo: interrupted" in rest


def test_ctrl_c_while_running_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import cnnzoo.cli.listing as listing

    def interrupted(pattern: str) -> list[str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(listing, "list_models", interrupted)
    assert main(["list"]) == 130
    assert capsys.readouterr().err == "cnnzoo list: interrupted\n"


def test_a_closed_pipe_exits_quietly() -> None:
    # the issue: `cnnzoo conv ... | head -3` ended in "internal error: BrokenPipeError". Here
    # the reader is gone before the first write, whatever the pipe's capacity.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "cnnzoo", "list"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141  # as if killed by SIGPIPE, the Unix filter convention
    assert result.stderr == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["--debug", "list"],
        ["list", "--debug"],
        ["list", "--debug", "lenet*"],
    ],
)
def test_debug_is_accepted_anywhere(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> None:
    import cnnzoo.cli.listing as listing

    def broken(pattern: str) -> list[str]:
        raise KeyError("boom")

    monkeypatch.setattr(listing, "list_models", broken)
    with pytest.raises(KeyError):
        main(argv)


def test_arguments_after_double_dash_are_left_alone(capsys: pytest.CaptureFixture[str]) -> None:
    main(["list", "--", "--debug"])  # a pattern, not the option
    assert "no model matches '--debug'" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "/runs/x/last.pt"),
            "cnnzoo list: error: /runs/x/last.pt: No space left on device (ENOSPC)\n",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "/ro/out.png"),
            "cnnzoo list: error: /ro/out.png: Read-only file system (EROFS)\n",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/secret"),
            "cnnzoo list: error: /secret: Permission denied (EACCES)\n",
        ),
    ],
)
def test_os_errors_are_one_line_exit_1_with_the_path(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: OSError,
    line: str,
) -> None:
    import cnnzoo.cli.listing as listing

    def failing(pattern: str) -> list[str]:
        raise error

    monkeypatch.setattr(listing, "list_models", failing)
    assert main(["list"]) == 1
    assert capsys.readouterr().err == line


def test_a_checkpoint_write_on_a_full_disk_names_the_file(tmp_path: Path) -> None:
    from cnnzoo.train.checkpoint import atomic_save

    real_fdopen = os.fdopen

    def full_disk(fd: int, mode: str = "r", encoding: str | None = None) -> Any:
        real_fdopen(fd).close()
        return open("/dev/full", mode, encoding=encoding)  # every write fails with ENOSPC

    target = tmp_path / "last.pt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fdopen", full_disk)
        with pytest.raises(OSError) as info:
            atomic_save({"w": torch.zeros(1000)}, target)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_limit_flags_anywhere_reach_the_readers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.new("L", (40, 40), 10 * i).save(tmp_path / c / f"{i}.png")
    grid = tmp_path.parent / f"{tmp_path.name}-grid.png"
    args = ["data", "info", str(tmp_path), "--grid", str(grid)]
    assert main([*args, "--max-image-pixels", "1000"]) == 2
    err = capsys.readouterr().err
    assert "40x40 = 1600 pixels, over the limit of 1000" in err and err.count("\n") == 1
    assert main(["--max-image-pixels=1600", *args]) == 0
    assert "images:   1x40x40 uint8" in capsys.readouterr().out
    assert "CNNZOO_MAX_IMAGE_PIXELS" not in os.environ  # restored after the command
    assert main([*args, "--max-image-pixels", "lots"]) == 2
    assert "expected a positive integer" in capsys.readouterr().err
