"""Test helpers for run directories: a run's summary as its report writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from innet.families.runs import open_run
from innet.report.summary import build_summary


def summary_of(run_dir: Path) -> dict[str, Any]:
    """The summary of a run directory (:func:`~innet.report.summary.build_summary`)."""
    run, family = open_run(run_dir)
    return build_summary(run, family.report)
