"""The run directory's files: one name each, in one place.

A run directory holds ``config.yaml`` (the resolved scenario), ``topology.json``,
``plans.json``, ``exchanges.parquet`` (one row per message), ``metrics.csv`` (one row
per epoch), ``steps.csv``, ``nodes.csv``, ``links.csv``, ``events.json``,
``placement.json``, ``provenance.json``, ``summary.json``, ``report.md`` and
``figures/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

__all__ = [
    "CONFIG_FILE",
    "TOPOLOGY_FILE",
    "PLANS_FILE",
    "EXCHANGES_FILE",
    "EXCHANGES_CSV_FILE",
    "METRICS_FILE",
    "STEPS_FILE",
    "STEPS_COLUMNS",
    "EVENTS_FILE",
    "PLACEMENT_FILE",
    "NODES_FILE",
    "PROVENANCE_FILE",
    "LINKS_FILE",
    "SUMMARY_FILE",
    "REPORT_FILE",
    "FIGURES_DIR",
]

CONFIG_FILE = "config.yaml"
TOPOLOGY_FILE = "topology.json"
PLANS_FILE = "plans.json"
EXCHANGES_FILE = "exchanges.parquet"
EXCHANGES_CSV_FILE = "exchanges.csv"
METRICS_FILE = "metrics.csv"
STEPS_FILE = "steps.csv"
STEPS_COLUMNS = ("kind", "epoch", "step", "batch")
"""Columns of ``steps.csv`` after ``variant, seed``: every step of a run and its batch size."""
EVENTS_FILE = "events.json"
PLACEMENT_FILE = "placement.json"
NODES_FILE = "nodes.csv"
PROVENANCE_FILE = "provenance.json"
LINKS_FILE = "links.csv"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"
FIGURES_DIR = "figures"


@dataclass(frozen=True)
class FamilyTable:
    """A table a family's runs write (``FILE.csv``) with its columns.

    ``optional`` columns follow ``columns`` in the file; a run directory
    written without them (an older run, a hand-made table) reads back with
    them empty. A table that is not ``required`` reads back empty from a run
    directory without its file.
    """

    file: str
    columns: tuple[str, ...]
    optional: tuple[str, ...] = ()
    required: bool = True
