"""The run directory: the raw tables a run leaves behind, read back and reported on.

A run writes everything it measured into one directory (see the runner):
``config.yaml`` (the resolved scenario), ``topology.json`` (the graph),
``plans.json`` (who sent to whom, per variant), ``exchanges.parquet`` (one row
per transfer of one tensor over one link; an ``attempts`` column, copies sent
over a lossy link, is optional and read as 1 when absent), ``metrics.csv``
(per variant, seed and epoch), ``steps.csv`` (every step and its batch size),
``nodes.csv`` (module FLOPs and compute time per node) and the tables of the
scenario's family (the ``inl`` family's ``node_rates.csv``: the final latent
rate of every sending node). :func:`write_tables` writes them; file names are
in :mod:`innet.core.records`. Nothing else is needed to rebuild the report:
:func:`load_run` reads those tables into a :class:`RunData`, and
:func:`write_report` turns them into ``links.csv``, ``summary.json``,
``report.md`` and ``figures/*.png`` next to them, overwriting what an earlier
call wrote.

Any missing or unreadable file raises :class:`~innet.core.errors.InnetError`
naming that file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np
import pandas as pd
import yaml

from innet.core.errors import InnetError
from innet.core.records import (
    CORE_METRICS_COLUMNS,
    OPTIONAL_EXCHANGE_COLUMNS,
    REQUIRED_EXCHANGE_COLUMNS,
)
from innet.core.timing import NODE_COLUMNS, RunTiming, epoch_columns
from innet.core.topology.model import Topology
from innet.report.summary import to_plain
from innet.rundir.layout import (
    CONFIG_FILE,
    EVENTS_FILE,
    EXCHANGES_CSV_FILE,
    EXCHANGES_FILE,
    METRICS_FILE,
    NODES_FILE,
    PLACEMENT_FILE,
    PLANS_FILE,
    STEPS_COLUMNS,
    STEPS_FILE,
    TOPOLOGY_FILE,
)

if TYPE_CHECKING:
    from innet.core.config import LoadedScenario
    from innet.core.events import Timeline
    from innet.core.training import TrainResult
    from innet.families import Family

__all__ = [
    "RunData",
    "RunTables",
    "load_run",
    "read_json",
    "resolved_config",
    "save_topology_json",
    "load_topology_json",
    "write_tables",
]

_TEXT_COLUMNS = ("variant", "phase", "src", "dst", "payload", "node")
_INT_COLUMNS = ("seed", "epoch", "step", "nbytes", "attempts", "lost_messages")


@dataclass
class RunData:
    """Everything a finished run wrote, as Python objects and DataFrames."""

    run_dir: Path
    config: dict[str, Any]
    topology: Topology
    plans: dict[str, dict[str, Any]]
    exchanges: pd.DataFrame
    metrics: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # the family's own tables
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # variant -> changes
    placement: dict[str, Any] | None = None  # torch.distributed runs only
    nodes: pd.DataFrame | None = None  # per-node FLOPs and compute time

    @property
    def family(self) -> Family:
        """The scenario family of the run (``config["family"]``, ``inl`` by default)."""
        from innet.families import get_family

        name = str(self.config.get("family") or "inl")
        try:
            return get_family(name)
        except KeyError as error:
            raise InnetError(f"{self.run_dir / CONFIG_FILE}: {error.args[0]}") from None

    @property
    def node_rates(self) -> pd.DataFrame:
        """The ``inl`` family's latent rate per sending node (``node_rates.csv``)."""
        return self.tables["node_rates"]

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
        for table in (self.metrics, self.exchanges, *self.tables.values()):
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
    if not (run_dir / CONFIG_FILE).is_file():
        raise InnetError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    exchanges_path = run_dir / EXCHANGES_FILE
    if not exchanges_path.exists() and (run_dir / EXCHANGES_CSV_FILE).exists():
        exchanges_path = run_dir / EXCHANGES_CSV_FILE
    run = RunData(
        run_dir=run_dir,
        config=_read_config(run_dir / CONFIG_FILE),
        topology=load_topology_json(run_dir / TOPOLOGY_FILE),
        plans=_read_plans(run_dir / PLANS_FILE),
        exchanges=_read_table(exchanges_path, REQUIRED_EXCHANGE_COLUMNS, OPTIONAL_EXCHANGE_COLUMNS),
        metrics=pd.DataFrame(),
        events=read_json(run_dir / EVENTS_FILE) if (run_dir / EVENTS_FILE).is_file() else {},
        placement=(
            read_json(run_dir / PLACEMENT_FILE) if (run_dir / PLACEMENT_FILE).is_file() else None
        ),
        nodes=pd.read_csv(run_dir / NODES_FILE) if (run_dir / NODES_FILE).is_file() else None,
    )
    family = run.family.report
    run.metrics = _read_table(
        run_dir / METRICS_FILE,
        ("variant", "seed", "epoch", *family.metric_names, *CORE_METRICS_COLUMNS[:-1]),
        {"lost_messages": 0},
    )
    run.tables = {
        name: (
            _read_table(run_dir / table.file, table.columns, dict.fromkeys(table.optional))
            if table.required or (run_dir / table.file).is_file()
            else pd.DataFrame(columns=[*table.columns, *table.optional])
        )
        for name, table in family.tables.items()
    }
    return run


def save_topology_json(topology: Topology, path: str | Path) -> None:
    """Write a topology as JSON: its ``name``, ``source``, ``nodes`` and ``links``.

    All node attributes (role, view, compute, tx_ports, label, pos) and link
    attributes (capacity, latency, loss) are kept, in a compact form, one node
    or link per line: ``nodes`` are node-link objects (``id`` and attributes),
    without ``label`` where it is the id (``node_attributes`` lists every node
    attribute, so that :func:`load_topology_json` puts it back); ``links`` are
    rows ``[source, target, ...]`` in the order of ``link_fields`` (null where a
    link has no such attribute, e.g. ``loss`` on a lossless link). At 10,000
    nodes and 56,000 links this is 0.43 of the size of the indented node-link form.
    """
    data = nx.node_link_data(topology.graph, edges="links")
    keys = sorted({key for node in data["nodes"] for key in node if key != "id"})
    nodes = [
        {key: value for key, value in node.items() if not (key == "label" and value == node["id"])}
        for node in data["nodes"]
    ]
    fields = [
        "source",
        "target",
        *sorted({k for link in data["links"] for k in link} - {"source", "target"}),
    ]
    links = [[link.get(field) for field in fields] for link in data["links"]]
    head = {key: value for key, value in data.items() if key not in ("nodes", "links")}
    head.update(name=topology.name, node_attributes=keys, link_fields=fields,
                source=str(topology.source) if topology.source is not None else None)  # fmt: skip
    Path(path).write_text(_compact_json(head, nodes, links))


def _compact_json(head: dict[str, Any], nodes: list[Any], links: list[Any]) -> str:
    """``{...head, "nodes": [one per line], "links": [one per line]}`` as JSON text."""

    def dump(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), default=_json_default)

    def items(rows: list[Any]) -> str:
        return "[\n" + ",\n".join(dump(row) for row in rows) + "\n]"

    fields = [f"{dump(key)}:{dump(value)}" for key, value in head.items()]
    fields += [f'"nodes":{items(nodes)}', f'"links":{items(links)}']
    return "{" + ",\n".join(fields) + "}\n"


def _node_link(data: dict[str, Any]) -> dict[str, Any]:
    """The compact form of :func:`save_topology_json` back as networkx node-link data.

    Node-link data as earlier runs wrote it passes through unchanged.
    """
    fields = data.get("link_fields")
    if fields is None:
        return data
    links = [  # a link without an attribute others have: null in its row
        {field: value for field, value in zip(fields, row, strict=True) if value is not None}
        for row in data["links"]
    ]
    labelled = "label" in data.get("node_attributes", ())
    nodes = [{"label": node["id"], **node} if labelled else node for node in data["nodes"]]
    return {**data, "nodes": nodes, "links": links}


def load_topology_json(path: str | Path) -> Topology:
    """Rebuild the :class:`Topology` that :func:`save_topology_json` wrote."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise InnetError(f"{path}: expected a node-link JSON object")
    try:
        graph = nx.node_link_graph(_node_link(data), edges="links")
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


def resolved_config(loaded: LoadedScenario, run_dir: Path | None = None) -> dict[str, Any]:
    """The scenario with every default filled in, as saved with the run.

    Fields that the scenario's choices do not use are left out (the family's
    ``tidy_config``); the topology path is relative to ``run_dir`` when given.
    """
    scenario = loaded.scenario
    config = scenario.model_dump(mode="json", by_alias=True)
    topology = loaded.topology_path
    config["topology"] = os.path.relpath(topology, run_dir) if run_dir else str(topology)
    config["seeds"] = scenario.seed_list
    config["comparisons"] = [list(pair) for pair in scenario.comparisons]
    config["variants"] = {
        variant.name: variant.model_dump(mode="json", by_alias=True, exclude={"name"})
        for variant in loaded.variants
    }
    from innet.families import get_family  # moves out: the report engineer

    return get_family(loaded.scenario.family).tidy_config(config)


@dataclass
class RunTables:
    """What a run's (variant, seed)s produced, gathered on the leader before writing."""

    exchanges: list[pd.DataFrame] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    steps: list[pd.DataFrame] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    placement: dict[str, Any] | None = None

    def add(self, variant: str, seed: int, result: TrainResult, timing: RunTiming) -> None:
        """One (variant, seed): its exchange records with their times, and its metrics."""
        self.exchanges.append(result.log.frame(variant, seed, timing))
        steps = pd.DataFrame(result.log.steps, columns=list(STEPS_COLUMNS) + ["block"])
        self.steps.append(steps.drop(columns="block").assign(variant=variant, seed=seed))
        epochs = [row["epoch"] for row in result.metrics]
        for row, core in zip(result.metrics, epoch_columns(result.log, timing, epochs),
                             strict=True):  # fmt: skip
            self.metrics.append({"variant": variant, "seed": seed, **row, **core})
        for name, rows in result.tables.items():
            self.tables.setdefault(name, []).extend(rows)


def write_tables(
    directory: Path,
    loaded: LoadedScenario,
    topology: Topology,
    timelines: dict[str, Timeline],
    tables: RunTables,
) -> None:
    """Write a run's raw tables (everything :func:`load_run` reads) into ``directory``."""
    config = resolved_config(loaded, directory)
    (directory / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    save_topology_json(topology, directory / TOPOLOGY_FILE)
    plans = {name: timeline.segments[0].plan.to_json() for name, timeline in timelines.items()}
    (directory / PLANS_FILE).write_text(json.dumps(plans, indent=2))
    if loaded.scenario.events:
        events = {
            name: [change.to_json() for change in timeline.changes]
            for name, timeline in timelines.items()
        }
        (directory / EVENTS_FILE).write_text(json.dumps(events, indent=2))
    if tables.placement is not None:
        (directory / PLACEMENT_FILE).write_text(json.dumps(tables.placement, indent=2))
    exchanges = pd.concat(tables.exchanges, ignore_index=True)
    exchanges.to_parquet(directory / EXCHANGES_FILE, index=False)
    if loaded.scenario.report.exchanges_csv:
        exchanges.to_csv(directory / EXCHANGES_CSV_FILE, index=False)
    pd.DataFrame(tables.metrics).to_csv(directory / METRICS_FILE, index=False)
    steps = pd.concat(tables.steps, ignore_index=True)
    steps[["variant", "seed", *STEPS_COLUMNS]].to_csv(directory / STEPS_FILE, index=False)
    pd.DataFrame(tables.nodes, columns=list(NODE_COLUMNS)).to_csv(
        directory / NODES_FILE, index=False
    )
    from innet.families import get_family  # moves out: the report engineer

    for name, table in get_family(loaded.scenario.family).report.tables.items():
        rows = tables.tables.get(name, [])
        columns = [*table.columns, *table.optional]
        pd.DataFrame(rows, columns=columns).to_csv(directory / table.file, index=False)


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
    plans = read_json(path)
    if not isinstance(plans, dict) or not all(isinstance(p, dict) for p in plans.values()):
        raise InnetError(f"{path}: expected {{variant: {{routing, fusion, edges}}}}")
    return {str(variant): plan for variant, plan in plans.items()}


def read_json(path: Path) -> Any:
    """A JSON file's content; an :class:`~innet.core.errors.InnetError` naming it if unreadable."""
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
