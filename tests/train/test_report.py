"""report.html: one self-contained page with the run's facts and images inlined."""

from __future__ import annotations

from pathlib import Path

from cnnzoo.train.plots import plot_curves
from cnnzoo.train.report import write_report


def test_report_is_self_contained(tmp_path: Path) -> None:
    history = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "test_loss": 0.9 / e,
            "test_accuracy": 0.5,
            "lr": 0.1,
            "seconds": 1.0,
            "train_accuracy": 0.4,
            "images_per_second": 10.0,
        }
        for e in (1, 2)
    ]
    plot_curves(tmp_path / "curves.png", history)
    final = {
        "model": "lenet5",
        "data": None,
        "test_accuracy": 0.875,
        "test_loss": 0.3,
        "best_epoch": 2,
        "best_test_accuracy": 0.875,
        "wall_seconds": 2.5,
        "per_class_accuracy": {"cat<": 0.5, "dog": 1.0},
    }
    page = write_report(tmp_path, final, {"model": "lenet5", "lr": 0.1}, history).read_text()
    assert page.count('src="data:image/png;base64,') == 1  # curves; no confusion.png here
    assert "(no confusion.png)" in page and "cat&lt;" in page and "87.50%" in page
    assert "http://" not in page.replace("http://www.w3.org", "")
    assert "Total params" in page  # the layer table
    assert page.count('<tr><td class="num">') == 2  # one line per epoch
