"""Write a run's report: links.csv, summary.json, report.md and figures/ from its tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from innet.report.figures import draw_figures
from innet.report.markdown import render_report
from innet.report.summary import build_summary
from innet.report.tables import link_table
from innet.rundir.io import load_run
from innet.rundir.layout import (
    FIGURES_DIR,
    LINKS_FILE,
    REPORT_FILE,
    SUMMARY_FILE,
)

__all__ = ["write_report"]


def write_report(run_dir: str | Path) -> dict[str, Any]:
    """Rebuild ``links.csv``, ``summary.json``, ``report.md`` and ``figures/`` of a run.

    Returns the summary (see :func:`~innet.report.summary.build_summary`).
    Running it again on the same directory gives the same files. The figures
    are left out when the scenario says ``report: {figures: false}``.
    """
    run = load_run(run_dir)
    totals = link_table(run)
    summary = build_summary(run)
    totals.to_csv(run.run_dir / LINKS_FILE, index=False)
    (run.run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    figures: list[tuple[str, str]] | None = None  # None: no figures drawn
    if (run.config.get("report") or {}).get("figures", True):
        out_dir = run.run_dir / FIGURES_DIR
        draw_figures(run, totals, out_dir)
        figures = run.family.report.figures(run, out_dir)
    trace = (run.config.get("report") or {}).get("trace")
    if trace is not None:
        from innet.report.trace import write_run_trace

        write_run_trace(run, trace, figures=figures is not None)
    (run.run_dir / REPORT_FILE).write_text(render_report(run, summary, totals, figures))
    return summary
