"""A run's report.html: config, curves, confusion matrix, per-class accuracy, the model's layer
table and timing, in one self-contained file (images inlined as data URIs, no network)."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 0.8em; overflow: auto; font-size: 0.85em; }
""".strip()


def _image(path: Path) -> str:
    if not path.is_file():
        return f"<p>(no {html.escape(path.name)})</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _pairs(rows: Sequence[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{cells}</table>"


def write_report(
    out_dir: str | Path,
    final: dict[str, Any],
    config: dict[str, Any],
    history: Sequence[dict[str, Any]],
    *,
    input_size: Sequence[int] | None = None,
) -> Path:
    """Write ``out_dir/report.html`` from a finished run's facts and the images beside it."""
    out = Path(out_dir)
    per_class = final.get("per_class_accuracy", {})
    class_rows = "".join(
        f'<tr><td>{html.escape(str(c))}</td><td class="num">{a:.2%}</td></tr>'
        for c, a in per_class.items()
    )
    epochs = "".join(
        "<tr>"
        + "".join(f'<td class="num">{html.escape(_short(row.get(k)))}</td>' for k in _EPOCH)
        + "</tr>"
        for row in history
    )
    model_table = ""
    try:
        from cnnzoo.inspect import summary

        kwargs = dict(config.get("model_kwargs") or {})
        table = summary(final["model"], input_size, **kwargs)
        model_table = f"<pre>{html.escape(table.to_text())}</pre>"
    except (ValueError, KeyError, TypeError) as error:  # a report never fails a finished run
        model_table = f"<p>(no layer table: {html.escape(str(error))})</p>"
    timing = [
        ("wall seconds", final.get("wall_seconds")),
        ("images per second", _short(final.get("images_per_second"))),
        ("epochs", final.get("epochs")),
        ("steps", final.get("steps")),
    ]
    results = [
        ("test accuracy", f"{final.get('test_accuracy', float('nan')):.2%}"),
        ("test loss", _short(final.get("test_loss"))),
        ("best epoch", final.get("best_epoch")),
        ("best test accuracy", f"{final.get('best_test_accuracy', float('nan')):.2%}"),
    ]
    confusion = _image(out / "confusion.png")
    config_text = html.escape(json.dumps(config, indent=2, default=str))
    title = html.escape(f"cnnzoo run: {final.get('model')} on {final.get('data') or 'digits'}")
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>\n{_STYLE}\n</style>\n</head>\n<body>\n"
        f"<h1>{title}</h1>\n"
        f'<section id="results"><h2>Results</h2>{_pairs(results)}</section>\n'
        f'<section id="timing"><h2>Timing</h2>{_pairs(timing)}</section>\n'
        f'<section id="curves"><h2>Curves</h2>{_image(out / "curves.png")}</section>\n'
        f'<section id="confusion"><h2>Confusion matrix</h2>{confusion}</section>\n'
        f'<section id="per-class"><h2>Per-class accuracy</h2><table><tr><th>class</th>'
        f"<th>accuracy</th></tr>{class_rows}</table></section>\n"
        f'<section id="epochs"><h2>Epochs</h2><table><tr>'
        + "".join(f"<th>{k}</th>" for k in _EPOCH)
        + f"</tr>{epochs}</table></section>\n"
        f'<section id="config"><h2>Config</h2><pre>{config_text}</pre></section>\n'
        f'<section id="model"><h2>Model</h2>{model_table}</section>\n'
        "</body>\n</html>\n"
    )
    from cnnzoo.train.checkpoint import atomic_write_text

    path = out / "report.html"
    atomic_write_text(page, path)
    return path


_EPOCH = ("epoch", "train_loss", "test_loss", "test_accuracy", "lr", "seconds")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
