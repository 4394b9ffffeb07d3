"""The run directory: the raw tables a run leaves behind, read back and reported on.

A run writes everything it measured into one directory (see the runner):
``config.yaml`` (the resolved scenario), ``topology.json`` (the graph),
``plans.json`` (who sent to whom, per variant), ``exchanges.parquet`` (one row
per transfer of one tensor over one link; an ``attempts`` column, copies sent
over a lossy link, is optional and read as 1 when absent), ``metrics.csv``
(per variant, seed and epoch), ``steps.csv`` (every step and its batch size),
``nodes.csv`` (module FLOPs and compute time per node) and the tables of the
scenario's family (:class:`~innet.rundir.layout.FamilyTable`); file names are
in :mod:`innet.rundir.layout`. A run gathers its rows in :class:`RunTables`,
whose :meth:`~RunTables.files` are those files' content in memory
(:class:`RunFiles`; :meth:`RunFiles.write` writes the directory). Nothing else
is needed to rebuild the report: :func:`load_run` reads those tables, from a
directory or from memory alike, into a :class:`RunData` (given the family's
tables, which this layer does not look up: :func:`innet.families.runs.open_run`
does), and :func:`innet.report.write.write_report` turns them into
``links.csv``, ``summary.json``, ``report.md`` and ``figures/*.png``.

Any missing or unreadable file raises :class:`~innet.core.errors.InnetError`
naming that file.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
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
    FamilyTable,
)

if TYPE_CHECKING:
    from innet.core.events import Timeline
    from innet.core.training import TrainResult

__all__ = [
    "RunData",
    "RunTables",
    "RunFiles",
    "load_run",
    "read_config",
    "read_json",
    "to_plain",
    "save_topology_json",
    "load_topology_json",
    "topology_json",
    "topology_from_json",
]

_TEXT_COLUMNS = ("variant", "phase", "src", "dst", "payload", "node")
_INT_COLUMNS = ("seed", "epoch", "step", "nbytes", "attempts", "lost_messages")


@dataclass
class RunData:
    """Everything a finished run wrote, as Python objects and DataFrames."""

    run_dir: Path | None  # None: a run kept in memory
    family_name: str  # the scenario's family, as config.yaml names it (or the default)
    config: dict[str, Any]
    topology: Topology
    plans: dict[str, dict[str, Any]]
    exchanges: pd.DataFrame
    metrics: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # the family's own tables
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # variant -> changes
    placement: dict[str, Any] | None = None  # torch.distributed runs only
    nodes: pd.DataFrame | None = None  # per-node FLOPs and compute time
    steps: pd.DataFrame | None = None  # every step and its batch size (steps.csv)

    @property
    def scenario(self) -> str:
        """The scenario name (``config["name"]``), or the directory name."""
        return str(self.config.get("name") or (self.run_dir.name if self.run_dir else ""))

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


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The ``config.yaml`` of a run directory (the resolved scenario)."""
    return _config(_Files.of(Path(run_dir)))


def load_run(
    source: str | Path | RunFiles,
    family_name: str,
    tables: Mapping[str, FamilyTable],
    metric_names: Sequence[str],
) -> RunData:
    """Read the raw tables of a run of the family ``family_name``.

    ``source`` is a run directory, or the :class:`RunFiles` of a run kept in
    memory (read exactly as if written and read back; ``run_dir`` is then None).
    ``tables`` are the family's own tables and ``metric_names`` its columns of
    ``metrics.csv`` (:class:`~innet.report.family.FamilyReport`); columns
    beyond those are kept. ``exchanges.parquet`` is preferred;
    ``exchanges.csv`` (same content) is read when the Parquet file is absent.
    """
    files = source.reader() if isinstance(source, RunFiles) else _Files.of(Path(source))
    exchanges = EXCHANGES_FILE
    if not files.has(exchanges) and files.has(EXCHANGES_CSV_FILE):
        exchanges = EXCHANGES_CSV_FILE
    optional_json = {
        name: _json(files, name) if files.has(name) else None
        for name in (EVENTS_FILE, PLACEMENT_FILE)
    }
    return RunData(
        run_dir=files.directory,
        family_name=family_name,
        config=source.config if isinstance(source, RunFiles) else _config(files),
        topology=topology_from_json(_json(files, TOPOLOGY_FILE), files.label(TOPOLOGY_FILE)),
        plans=_plans(files),
        exchanges=_read_table(
            files, exchanges, REQUIRED_EXCHANGE_COLUMNS, OPTIONAL_EXCHANGE_COLUMNS, extra=False
        ),
        metrics=_read_table(
            files,
            METRICS_FILE,
            ("variant", "seed", "epoch", *metric_names, *CORE_METRICS_COLUMNS[:-1]),
            {"lost_messages": 0},
        ),
        tables={
            name: (
                _read_table(
                    files, table.file, table.columns, dict.fromkeys(table.optional), extra=False
                )
                if table.required or files.has(table.file)
                else pd.DataFrame(columns=[*table.columns, *table.optional])
            )
            for name, table in tables.items()
        },
        events=optional_json[EVENTS_FILE] or {},
        placement=optional_json[PLACEMENT_FILE],
        nodes=pd.read_csv(files.open(NODES_FILE)) if files.has(NODES_FILE) else None,
        steps=(
            _read_table(files, STEPS_FILE, ("variant", "seed", *STEPS_COLUMNS))
            if files.has(STEPS_FILE)
            else None
        ),
    )


@dataclass(frozen=True)
class _Files:
    """Where a run's files are read from: its directory, or their contents in memory."""

    directory: Path | None
    contents: Mapping[str, str | bytes] = field(default_factory=dict)

    @classmethod
    def of(cls, run_dir: Path) -> _Files:
        """A run directory's files (an error unless it exists and has a ``config.yaml``)."""
        if not run_dir.is_dir():
            raise InnetError(f"{run_dir}: run directory not found")
        if not (run_dir / CONFIG_FILE).is_file():
            raise InnetError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
        return cls(run_dir)

    def label(self, name: str) -> Path:
        """How errors name the file."""
        return self.directory / name if self.directory is not None else Path(name)

    def has(self, name: str) -> bool:
        """Whether the run has the file."""
        if self.directory is None:
            return name in self.contents
        return (self.directory / name).is_file()

    def open(self, name: str) -> Path | io.BytesIO | io.StringIO:
        """The file, for pandas to read."""
        if self.directory is not None:
            return self.directory / name
        content = self.contents.get(name)
        if content is None:
            raise FileNotFoundError(name)
        return io.BytesIO(content) if isinstance(content, bytes) else io.StringIO(content)

    def text(self, name: str) -> str:
        """The file's text."""
        if self.directory is not None:
            return (self.directory / name).read_text()
        content = self.contents.get(name)
        if content is None:
            raise FileNotFoundError(name)
        return content.decode() if isinstance(content, bytes) else content


def save_topology_json(topology: Topology, path: str | Path) -> None:
    """Write :func:`topology_json` of a topology to ``path``."""
    Path(path).write_text(topology_json(topology))


def topology_json(topology: Topology) -> str:
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
    head.update(
        name=topology.name,
        node_attributes=keys,
        link_fields=fields,
        source=str(topology.source) if topology.source is not None else None,
    )
    return _compact_json(head, nodes, links)


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
    return topology_from_json(read_json(Path(path)), Path(path))


def topology_from_json(data: Any, path: Path) -> Topology:
    """The :class:`Topology` of :func:`topology_json`'s data (``path`` names it in errors)."""
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
        for row, core in zip(
            result.metrics, epoch_columns(result.log, timing, epochs), strict=True
        ):
            self.metrics.append({"variant": variant, "seed": seed, **row, **core})
        for name, rows in result.tables.items():
            self.tables.setdefault(name, []).extend(rows)

    def files(
        self,
        config: dict[str, Any],
        topology: Topology,
        timelines: Mapping[str, Timeline],
        family_tables: Mapping[str, FamilyTable],
    ) -> RunFiles:
        """The run directory's raw tables (everything :func:`load_run` reads), in memory.

        ``config`` is the resolved scenario (``innet.families.runs.resolved_config``),
        ``family_tables`` the family's own tables.
        """
        files: dict[str, str | bytes] = {TOPOLOGY_FILE: topology_json(topology)}
        plans = {name: timeline.segments[0].plan.to_json() for name, timeline in timelines.items()}
        files[PLANS_FILE] = json.dumps(plans, indent=2)
        if config.get("events"):
            events = {
                name: [change.to_json() for change in timeline.changes]
                for name, timeline in timelines.items()
            }
            files[EVENTS_FILE] = json.dumps(events, indent=2)
        if self.placement is not None:
            files[PLACEMENT_FILE] = json.dumps(self.placement, indent=2)
        exchanges = pd.concat(self.exchanges, ignore_index=True)
        files[EXCHANGES_FILE] = exchanges.to_parquet(index=False)
        if (config.get("report") or {}).get("exchanges_csv"):
            files[EXCHANGES_CSV_FILE] = exchanges.to_csv(index=False)
        files[METRICS_FILE] = pd.DataFrame(self.metrics).to_csv(index=False)
        steps = pd.concat(self.steps, ignore_index=True)
        files[STEPS_FILE] = steps[["variant", "seed", *STEPS_COLUMNS]].to_csv(index=False)
        files[NODES_FILE] = pd.DataFrame(self.nodes, columns=list(NODE_COLUMNS)).to_csv(index=False)
        for name, table in family_tables.items():
            columns = [*table.columns, *table.optional]
            frame = pd.DataFrame(self.tables.get(name, []), columns=columns)
            files[table.file] = frame.to_csv(index=False)
        return RunFiles(config, files)


@dataclass(frozen=True)
class RunFiles:
    """A run directory's raw tables, in memory: its resolved scenario and each file's content.

    :func:`load_run` reads them as it reads a directory; :meth:`write` makes the
    directory's files.
    """

    config: dict[str, Any]
    contents: dict[str, str | bytes]

    def reader(self) -> _Files:
        """The files for :func:`load_run`."""
        return _Files(None, self.contents)

    def write(self, directory: Path) -> None:
        """Write ``config.yaml`` (its topology relative to ``directory``) and every table."""
        config = dict(self.config)
        topology = config.get("topology")
        if isinstance(topology, str):
            config["topology"] = os.path.relpath(topology, directory)
        (directory / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
        for name, content in self.contents.items():
            if isinstance(content, bytes):
                (directory / name).write_bytes(content)
            else:
                (directory / name).write_text(content)


def _config(files: _Files) -> dict[str, Any]:
    path = files.label(CONFIG_FILE)
    try:
        config = yaml.safe_load(files.text(CONFIG_FILE))
    except FileNotFoundError as error:
        raise InnetError(f"{path}: file not found") from error
    except (OSError, yaml.YAMLError) as error:
        raise InnetError(f"{path}: cannot read ({_one_line(error)})") from error
    if not isinstance(config, dict):
        raise InnetError(f"{path}: expected a mapping at the top level")
    return config


def _plans(files: _Files) -> dict[str, dict[str, Any]]:
    plans = _json(files, PLANS_FILE)
    if not isinstance(plans, dict) or not all(isinstance(p, dict) for p in plans.values()):
        raise InnetError(
            f"{files.label(PLANS_FILE)}: expected {{variant: {{routing, fusion, edges}}}}"
        )
    return {str(variant): plan for variant, plan in plans.items()}


def _json(files: _Files, name: str) -> Any:
    path = files.label(name)
    try:
        return json.loads(files.text(name))
    except FileNotFoundError as error:
        raise InnetError(f"{path}: file not found") from error
    except (OSError, ValueError) as error:
        raise InnetError(f"{path}: cannot read ({_one_line(error)})") from error


def read_json(path: Path) -> Any:
    """A JSON file's content; an :class:`~innet.core.errors.InnetError` naming it if unreadable."""
    return _json(_Files(path.parent), path.name)


def _read_table(
    files: _Files,
    name: str,
    columns: Iterable[str],
    optional: Mapping[str, Any] | None = None,
    *,
    extra: bool = True,
) -> pd.DataFrame:
    """Read a Parquet or CSV table, check its columns and normalise id/int dtypes.

    ``optional`` columns are kept when present (missing values filled with the
    given value) and added with that value when absent. Columns beyond those
    are kept (in the file's order) when ``extra``, else dropped.
    """
    path = files.label(name)
    optional = dict(optional or {})
    columns = (*columns, *optional)
    try:
        table = _read_frame(files, name, columns)
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
        table[column] = _filled(table.get(column), value)
    kept = [*table.columns] if extra else list(columns)
    return _typed(table.loc[:, kept].copy(), path)


def _read_frame(files: _Files, name: str, columns: Sequence[str]) -> pd.DataFrame:
    """The table as stored: Parquet as written; CSV with ids as text, "" and "nan" as missing."""
    if name.endswith(".parquet"):
        return pd.read_parquet(files.open(name))
    header = pd.read_csv(files.open(name), nrows=0).columns
    text = {column: str for column in _TEXT_COLUMNS if column in columns}
    markers = {column: ["", "nan", "NaN"] for column in [*columns, *header] if column not in text}
    return pd.read_csv(files.open(name), dtype=text, keep_default_na=False, na_values=markers)


def _filled(values: pd.Series | None, value: Any) -> Any:
    """An optional column's values, missing ones (or the whole column) ``value``."""
    if values is None:
        return value
    if isinstance(value, bool):
        return values.astype(str).str.lower().isin(("true", "1", "1.0"))
    return values.astype(object).fillna(value)


def _typed(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Id columns as text, count columns as int64."""
    for column in _TEXT_COLUMNS:
        if column in table.columns:
            table[column] = table[column].astype(str)
    for column in _INT_COLUMNS:
        if column in table.columns:
            try:
                table[column] = table[column].astype(np.int64)
            except (TypeError, ValueError) as error:
                raise InnetError(f"{path}: column {column} must hold integers") from error
    return table


def to_plain(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and paths to plain JSON types; NaN to None."""
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_plain(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _json_default(value: Any) -> Any:
    plain = to_plain(value)
    if plain is value:
        raise TypeError(f"cannot write {type(value).__name__} to JSON")
    return plain


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 200 else text[:197] + "..."
