"""`cnnzoo conv`: the formula, the value, what PyTorch does, and the paddings that fit."""

from __future__ import annotations

import pytest

from cnnzoo.cli import main


def test_the_issue_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conv", "--input", "10", "--kernel", "3", "--stride", "2", "--padding", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "output size = (W - F + 2P) / S + 1"
    assert lines[1] == "            = (10 - 3 + 2*0) / 2 + 1 = 4.5"
    assert "floors it (nn.Conv2d, pooling with ceil_mode=False) to 4" in lines[2]
    assert "ceil_mode=True rounds up to 5" in lines[4]
    assert lines[5].startswith("paddings that fit exactly: none")
    assert lines[6] == "input sizes that fit at padding 0: 9 (-> 4), 11 (-> 5)"


def test_exact_and_dilated(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conv", "--input", "227", "--kernel", "11", "--stride", "4"]) == 0
    out = capsys.readouterr().out
    assert "= (227 - 11 + 2*0) / 4 + 1 = 55" in out and "an integer: output 55" in out
    assert main(["conv", "--input", "9", "--kernel", "3", "--dilation", "2"]) == 0
    out = capsys.readouterr().out
    assert "(W - D(F - 1) - 1 + 2P) / S + 1" in out and "= 5" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "2", "--kernel", "5"], "larger than the padded input"),
        (["--input", "10", "--kernel", "3", "--stride", "0"], "stride must be an integer >= 1"),
        (["--input", "ten", "--kernel", "3"], "invalid int value: 'ten'"),
        (["--kernel", "3"], "the following arguments are required: --input"),
    ],
)
def test_bad_arguments_exit_2_in_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        raise SystemExit(main(["conv", *args]))
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
