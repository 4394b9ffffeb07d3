"""Write a run's report: links.csv, summary.json, report.md and figures/ from its tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from innet.report.figures import draw_figures
from innet.report.markdown import render_report
from innet.report.summary import build_summary
from innet.report.tables import link_table
from innet.rundir.layout import (
    FIGURES_DIR,
    LINKS_FILE,
    REPORT_FILE,
    SUMMARY_FILE,
)

if TYPE_CHECKING:
    from innet.report.family import FamilyReport
    from innet.rundir.io import RunData

__all__ = ["write_report"]


def write_report(
    run: RunData, family: FamilyReport, directory: Path, summary: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``links.csv``, ``summary.json``, ``report.md`` and ``figures/`` of a loaded run.

    ``run`` is :func:`~innet.rundir.io.load_run`'s, ``family`` the report of its
    family; the files go into ``directory``, replacing earlier ones. Returns
    the summary (see :func:`~innet.report.summary.build_summary`). Running it
    again on the same directory gives the same files. The figures are left
    out when the scenario says ``report: {figures: false}``. ``summary``: the
    run's summary when it is already built.
    """
    totals = link_table(run)
    summary = build_summary(run, family) if summary is None else summary
    totals.to_csv(directory / LINKS_FILE, index=False)
    (directory / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    figures: list[tuple[str, str]] | None = None  # None: no figures drawn
    if (run.config.get("report") or {}).get("figures", True):
        out_dir = directory / FIGURES_DIR
        draw_figures(run, family, link_totals=totals, out_dir=out_dir)
        figures = family.figures(run, out_dir)
    trace = (run.config.get("report") or {}).get("trace")
    if trace is not None:
        from innet.report.trace import TRACE_FILE, write_run_trace

        write_run_trace(run, trace, path=directory / TRACE_FILE, figures=figures is not None)
    (directory / REPORT_FILE).write_text(render_report(run, family, summary, totals, figures))
    return summary
