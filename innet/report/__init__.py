"""Reports of a run: tables, a JSON summary, a Markdown report and figures.

Everything here reads the raw tables of a run directory (see
:mod:`innet.rundir.io`) and adds them up; nothing is measured again, so
:func:`~innet.report.write.write_report` rebuilds the same report from a
finished run (:func:`innet.families.runs.write_run_report` from its directory).

- :mod:`~innet.report.tables`: bytes (and bytes retransmitted on lossy links)
  per link, per seed and per epoch;
- :mod:`~innet.report.summary`: the headline numbers and the comparisons;
- :mod:`~innet.report.markdown`: the headline table and ``report.md``;
- :mod:`~innet.report.figures`: the topology figures, with nodes placed by
  :mod:`~innet.report.layout` (no link drawn through a node it does not touch);
- :mod:`~innet.app.sweep_report`: the tables, report and trade-off figures of a
  sweep (:mod:`innet.app.sweeps`);
- :mod:`~innet.rundir.io`: writing and reading the run directory.

The scenario's family adds its own summary fields, sections, figures and
tables (:class:`~innet.report.family.FamilyReport`), given to these functions
by the caller: nothing here looks a family up.
"""

from innet.report.figures import draw_figures, topology_figure_name
from innet.report.markdown import (
    format_bytes,
    format_percent,
    format_seconds,
    headline_table,
    render_report,
)
from innet.report.summary import build_summary, comparison_pairs, reduction
from innet.report.tables import (
    busiest_links,
    link_totals,
    links_used,
    retransmitted_bytes,
    training_exchange,
    training_exchange_per_epoch,
    undirected_link_totals,
)
from innet.report.write import write_report

__all__ = [
    "write_report",
    "link_totals",
    "training_exchange",
    "training_exchange_per_epoch",
    "links_used",
    "retransmitted_bytes",
    "undirected_link_totals",
    "busiest_links",
    "build_summary",
    "comparison_pairs",
    "reduction",
    "headline_table",
    "render_report",
    "format_bytes",
    "format_seconds",
    "format_percent",
    "draw_figures",
    "topology_figure_name",
]
