"""Renderers: every format carries the same rows and totals, well-formed for its readers."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import fields
from html.parser import HTMLParser

import pytest
import torch
from torch import Tensor, nn

from cnnzoo import summary
from cnnzoo.inspect import LayerRow, LayerTable
from cnnzoo.inspect.render import COLUMN_SETS, COLUMNS, resolve_columns


@pytest.fixture(scope="module")
def resnet18() -> LayerTable:
    return summary("resnet18", depth=2)


def test_text_has_title_rule_rows_and_totals(resnet18: LayerTable) -> None:
    lines = resnet18.to_text().splitlines()
    assert lines[0] == "resnet18 at input 224x224x3, batch 1 (float32, eval mode)"
    header, rule = lines[2], lines[3]
    assert header.split() == ["layer", "type", "output", "window", "params", "MACs", "RF"]
    assert set(rule) == {"-", " "}
    body = lines[4 : 4 + len(resnet18.rows)]
    assert [line.split()[0] for line in body][:3] == ["resnet18", "conv1", "bn1"]
    assert body[-1].split()[:2] == ["fc", "Linear"]
    assert "  layer1.0" in "\n".join(body)  # depth 2 is indented under depth 1
    text = "\n".join(lines)
    assert "Total params: 11,689,512 (trainable 11,689,512, non-trainable 0)" in text
    assert "Total MACs: 1,814,073,344 (1.814G); FLOPs: 3,628,146,688 (3.628G)" in text
    assert 'torchvision\'s "GFLOPS"' in text  # the convention, said plainly
    assert all(len(line) <= 120 for line in lines)


def test_column_sets_and_choices(resnet18: LayerTable) -> None:
    wide = resnet18.to_text(columns="wide").splitlines()[2].split()
    assert wide == [
        "layer",
        "type",
        "input",
        "output",
        "window",
        "params",
        "MACs",
        "FLOPs",
        "RF",
        "jump",
    ]
    chosen = resnet18.to_text(columns="layer,params,rf_start").splitlines()
    assert chosen[2].split() == ["layer", "params", "RF", "start"]
    assert chosen[5].split() == ["conv1", "9,408", "0x0"]
    assert [c.key for c in resolve_columns(["kernel", "stride"])] == ["kernel", "stride"]
    assert set(COLUMN_SETS["all"]) == set(COLUMNS)
    with pytest.raises(ValueError, match="unknown columns 'bogus'"):
        resnet18.to_text(columns="layer,bogus")


def test_markdown_is_a_well_formed_table(resnet18: LayerTable) -> None:
    lines = resnet18.to_markdown().splitlines()
    table_lines = [line for line in lines if line.startswith("|")]
    assert len(table_lines) == 2 + len(resnet18.rows)
    widths = {line.count(" | ") for line in table_lines if not line.startswith("|-")}
    assert widths == {6}  # seven cells in every row
    assert table_lines[1] == "|---|---|---:|---|---:|---:|---:|"
    assert table_lines[3].startswith("| `conv1` | Conv2d | 112x112x64 | 7x7 s2 p3 | 9,408 |")
    assert "- Total params: 11,689,512 (trainable 11,689,512, non-trainable 0)" in lines


def test_csv_has_raw_values_for_every_column(resnet18: LayerTable) -> None:
    records = list(csv.DictReader(io.StringIO(resnet18.to_csv())))
    assert len(records) == len(resnet18.rows)
    assert list(records[0]) == list(COLUMNS)
    conv1 = records[1]
    assert conv1["layer"] == "conv1" and conv1["params"] == "9408"
    assert conv1["output"] == "112x112x64" and conv1["kernel"] == "7x7" and conv1["groups"] == "1"
    assert conv1["macs"] == "118013952" and conv1["flops"] == "236027904"
    assert records[2]["kernel"] == ""  # bn1: not a window


def test_json_round_trips_every_field(resnet18: LayerTable) -> None:
    data = json.loads(resnet18.to_json())
    assert data == resnet18.to_dict()
    assert data["total_params"] == 11_689_512 and data["total_macs"] == 1_814_073_344
    assert data["input_size"] == [3, 224, 224] and data["macs_partial"] is False
    assert "GFLOPS" in data["convention"]
    row = data["rows"][1]
    assert set(row) == {f.name for f in fields(LayerRow)} | {"flops"}
    assert row["name"] == "conv1" and row["receptive_field"] == [7, 7] and row["kernel"] == [7, 7]
    assert len(data["rows"]) == len(resnet18.rows)  # the depth limit applies


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows = 0
        self.external: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.rows += tag == "tr"
        self.external += [v or "" for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_a_self_contained_page_with_escaped_text() -> None:
    class Odd(nn.Module):  # a name that needs escaping in HTML and LaTeX
        def __init__(self) -> None:
            super().__init__()
            self.conv_a = nn.Conv2d(1, 2, 3)

        def forward(self, x: Tensor) -> Tensor:
            return torch.flatten(self.conv_a(x), 1)

    Odd.__name__ = "Odd<&>_%"
    table = summary(Odd(), (1, 5, 5))
    page = table.to_html()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<style>" in page and "Odd&lt;&amp;&gt;_%" in page
    parser = _Html()
    parser.feed(page)
    assert parser.rows == 1 + len(table.rows) and parser.external == []
    assert "Total params: 20 (trainable 20, non-trainable 0)" in parser.text
    latex = table.to_latex()
    assert r"\begin{longtable}" in latex and r"\end{longtable}" in latex
    assert r"Odd<\&>\_\%" in latex and r"\texttt{conv\_a}" in latex
    assert latex.count(r" \\" + "\n") >= len(table.rows) + 1  # header and one line per row
