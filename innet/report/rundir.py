"""The run directory: the raw tables a run leaves behind, read back and reported on.

A run writes everything it measured into one directory (see the runner):
``config.yaml`` (the resolved scenario), ``topology.json`` (the graph),
``plans.json`` (who sent to whom, per variant), ``exchanges.parquet`` (one row
per transfer of one tensor over one link; an ``attempts`` column, copies sent
over a lossy link, is optional and read as 1 when absent), ``metrics.csv`` (per variant, seed
and epoch) and ``node_rates.csv`` (the final latent rate of every sending
node). Nothing else is needed to rebuild the report: :func:`load_run` reads
those tables into a :class:`RunData`, and :func:`write_report` turns them into
``links.csv``, ``summary.json``, ``report.md`` and ``figures/*.png`` next to
them, overwriting what an earlier call wrote.

Any missing or unreadable file raises :class:`~innet.errors.InnetError`
naming that file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
import yaml

from innet.errors import InnetError
from innet.report.figures import draw_figures
from innet.report.markdown import render_report
from innet.report.summary import build_summary, to_plain
from innet.report.tables import link_totals
from innet.topology.model import Topology

__all__ = [
    "CONFIG_FILE",
    "TOPOLOGY_FILE",
    "PLANS_FILE",
    "EXCHANGES_FILE",
    "EXCHANGES_CSV_FILE",
    "METRICS_FILE",
    "NODE_RATES_FILE",
    "EXCHANGE_COLUMNS",
    "OPTIONAL_EXCHANGE_COLUMNS",
    "METRICS_COLUMNS",
    "NODE_RATES_COLUMNS",
    "RunData",
    "load_run",
    "save_topology_json",
    "load_topology_json",
    "write_report",
]

CONFIG_FILE = "config.yaml"
TOPOLOGY_FILE = "topology.json"
PLANS_FILE = "plans.json"
EXCHANGES_FILE = "exchanges.parquet"
EXCHANGES_CSV_FILE = "exchanges.csv"
METRICS_FILE = "metrics.csv"
NODE_RATES_FILE = "node_rates.csv"
# written only when the run has something to say about them
EVENTS_FILE = "events.json"
PLACEMENT_FILE = "placement.json"
NODES_FILE = "nodes.csv"

EXCHANGE_COLUMNS = (
    "variant",
    "seed",
    "epoch",
    "step",
    "phase",
    "src",
    "dst",
    "payload",
    "nbytes",
    "t_start",
    "t_end",
    "queue_s",
)
OPTIONAL_EXCHANGE_COLUMNS = {"attempts": 1, "lost": False}
"""Exchange columns that older runs lack, with the value they are read as."""
METRICS_COLUMNS = (
    "variant",
    "seed",
    "epoch",
    "train_loss",
    "test_loss",
    "accuracy",
    "latent_rate_bits",
    "train_bytes",
    "train_bytes_cum",
    "sim_time_s",
    "sim_time_cum_s",
)
NODE_RATES_COLUMNS = ("variant", "seed", "node", "rate_bits")

_TEXT_COLUMNS = ("variant", "phase", "src", "dst", "payload", "node")
_INT_COLUMNS = ("seed", "epoch", "step", "nbytes", "attempts")


@dataclass
class RunData:
    """Everything a finished run wrote, as Python objects and DataFrames."""

    run_dir: Path
    config: dict[str, Any]
    topology: Topology
    plans: dict[str, dict[str, Any]]
    exchanges: pd.DataFrame
    metrics: pd.DataFrame
    node_rates: pd.DataFrame
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # variant -> changes
    placement: dict[str, Any] | None = None  # torch.distributed runs only
    nodes: pd.DataFrame | None = None  # per-node FLOPs and compute time

    @property
    def scenario(self) -> str:
        """The scenario name (``config["name"]``), or the directory name."""
        return str(self.config.get("name") or self.run_dir.name)

    @property
    def variants(self) -> list[str]:
        """Variant names in the order the scenario lists them.

        Variants that only appear in the tables follow, in order of appearance.
        """
        names = [str(name) for name in (self.config.get("variants") or {})]
        for table in (self.metrics, self.exchanges, self.node_rates):
            names.extend(str(name) for name in table["variant"].unique())
        return list(dict.fromkeys(names))

    @property
    def seeds(self) -> list[int]:
        """The seeds of the run: ``config["seeds"]``, else those in ``metrics.csv``."""
        configured = self.config.get("seeds")
        if configured:
            return [int(seed) for seed in configured]
        return sorted(int(seed) for seed in self.metrics["seed"].unique())

    def variant_config(self, variant: str) -> dict[str, Any]:
        """The resolved configuration of one variant (empty when the scenario lacks it)."""
        entry = (self.config.get("variants") or {}).get(variant)
        return entry if isinstance(entry, dict) else {}


def load_run(run_dir: str | Path) -> RunData:
    """Read the raw tables of a run directory.

    ``exchanges.parquet`` is preferred; ``exchanges.csv`` (same content) is
    read when the Parquet file is absent.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InnetError(f"{run_dir}: run directory not found")
    exchanges_path = run_dir / EXCHANGES_FILE
    if not exchanges_path.exists() and (run_dir / EXCHANGES_CSV_FILE).exists():
        exchanges_path = run_dir / EXCHANGES_CSV_FILE
    return RunData(
        run_dir=run_dir,
        config=_read_config(run_dir / CONFIG_FILE),
        topology=load_topology_json(run_dir / TOPOLOGY_FILE),
        plans=_read_plans(run_dir / PLANS_FILE),
        exchanges=_read_table(exchanges_path, EXCHANGE_COLUMNS, OPTIONAL_EXCHANGE_COLUMNS),
        metrics=_read_table(run_dir / METRICS_FILE, METRICS_COLUMNS),
        node_rates=_read_table(run_dir / NODE_RATES_FILE, NODE_RATES_COLUMNS),
        events=_read_json(run_dir / EVENTS_FILE) if (run_dir / EVENTS_FILE).is_file() else {},
        placement=(
            _read_json(run_dir / PLACEMENT_FILE) if (run_dir / PLACEMENT_FILE).is_file() else None
        ),
        nodes=pd.read_csv(run_dir / NODES_FILE) if (run_dir / NODES_FILE).is_file() else None,
    )


def save_topology_json(topology: Topology, path: str | Path) -> None:
    """Write a topology as node-link JSON (``links`` key) plus its ``name`` and ``source``.

    All node attributes (role, view, compute, tx_ports, label, pos) and link
    attributes (capacity, latency) are kept; ``pos`` is written as a list.
    """
    data = nx.node_link_data(topology.graph, edges="links")
    data["name"] = topology.name
    data["source"] = str(topology.source) if topology.source is not None else None
    Path(path).write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def load_topology_json(path: str | Path) -> Topology:
    """Rebuild the :class:`Topology` that :func:`save_topology_json` wrote."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise InnetError(f"{path}: expected a node-link JSON object")
    try:
        graph = nx.node_link_graph(data, edges="links")
    except (KeyError, TypeError, nx.NetworkXError) as error:
        raise InnetError(f"{path}: not a node-link topology ({error})") from error
    graph = nx.relabel_nodes(graph, {node: str(node) for node in graph.nodes})
    for _, attrs in graph.nodes(data=True):
        if attrs.get("pos") is not None:
            attrs["pos"] = tuple(float(value) for value in attrs["pos"])
    roles = [role for _, role in graph.nodes(data="role")]
    if roles.count("fusion") != 1:
        raise InnetError(f"{path}: expected exactly one node with role 'fusion'")
    name = data.get("name") or data.get("graph", {}).get("name") or path.stem
    source = data.get("source")
    return Topology(name=str(name), graph=graph, source=Path(source) if source else None)


def write_report(run_dir: str | Path) -> dict[str, Any]:
    """Rebuild ``links.csv``, ``summary.json``, ``report.md`` and ``figures/`` of a run.

    Returns the summary (see :func:`~innet.report.summary.build_summary`).
    Running it again on the same directory gives the same files.
    """
    run = load_run(run_dir)
    totals = link_totals(run.exchanges)
    summary = build_summary(run)
    totals.to_csv(run.run_dir / "links.csv", index=False)
    (run.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    draw_figures(run, totals, run.run_dir / "figures")
    (run.run_dir / "report.md").write_text(render_report(run, summary, totals))
    return summary


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError as error:
        raise InnetError(f"{path}: file not found") from error
    except (OSError, yaml.YAMLError) as error:
        raise InnetError(f"{path}: cannot read ({_one_line(error)})") from error
    if not isinstance(config, dict):
        raise InnetError(f"{path}: expected a mapping at the top level")
    return config


def _read_plans(path: Path) -> dict[str, dict[str, Any]]:
    plans = _read_json(path)
    if not isinstance(plans, dict) or not all(isinstance(p, dict) for p in plans.values()):
        raise InnetError(f"{path}: expected {{variant: {{routing, fusion, edges}}}}")
    return {str(variant): plan for variant, plan in plans.items()}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        raise InnetError(f"{path}: file not found") from error
    except (OSError, ValueError) as error:
        raise InnetError(f"{path}: cannot read ({_one_line(error)})") from error


def _read_table(
    path: Path, columns: Iterable[str], optional: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Read a Parquet or CSV table, check its columns and normalise id/int dtypes.

    ``optional`` columns are kept when present (missing values filled with the
    given value) and added with that value when absent.
    """
    optional = dict(optional or {})
    columns = (*columns, *optional)
    text_columns = {column: str for column in _TEXT_COLUMNS if column in columns}
    missing_markers = {
        column: ["", "nan", "NaN"] for column in columns if column not in text_columns
    }
    try:
        if path.suffix == ".parquet":
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(
                path, dtype=text_columns, keep_default_na=False, na_values=missing_markers
            )
    except FileNotFoundError as error:
        raise InnetError(f"{path}: file not found") from error
    except Exception as error:  # pandas/pyarrow raise many types for a damaged file
        raise InnetError(f"{path}: cannot read ({_one_line(error)})") from error
    missing = [
        column for column in columns if column not in table.columns and column not in optional
    ]
    if missing:
        raise InnetError(f"{path}: missing columns {', '.join(missing)}")
    for column, value in optional.items():
        if column not in table.columns:
            table[column] = value
        elif isinstance(value, bool):
            table[column] = table[column].astype(str).str.lower().isin(("true", "1", "1.0"))
        else:
            table[column] = table[column].astype(object).fillna(value)
    table = table.loc[:, list(columns)].copy()
    for column in text_columns:
        table[column] = table[column].astype(str)
    for column in _INT_COLUMNS:
        if column in table.columns:
            try:
                table[column] = table[column].astype(np.int64)
            except (TypeError, ValueError) as error:
                raise InnetError(f"{path}: column {column} must hold integers") from error
    return table


def _json_default(value: Any) -> Any:
    plain = to_plain(value)
    if plain is value:
        raise TypeError(f"cannot write {type(value).__name__} to JSON")
    return plain


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 200 else text[:197] + "..."
