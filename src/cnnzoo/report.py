"""Moved to :mod:`cnnzoo.train.report` (a run's report belongs with the trainer); this name stays
so that existing imports keep working."""

from cnnzoo.train.report import write_report

__all__ = ["write_report"]
