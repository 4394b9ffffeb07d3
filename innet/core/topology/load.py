"""Reading a topology file into a validated :class:`~innet.core.topology.model.Topology`.

A topology file is YAML. It lists nodes and links::

    name: diamond
    defaults: {capacity: 10Mbps, latency: 1ms}
    nodes:
      - {id: f, role: fusion}
      - {id: s, role: sensor}
      - {id: r, role: relay}
    links:
      - {between: [s, f], capacity: 1Mbps}
      - [s, r]                                  # defaults apply
      - {between: [r, f], capacity: 100Mbps, latency: 500us, loss: 0.01}

or describes a ``generator:`` instead (:mod:`innet.core.topology.generators`), or
``import``s a GraphML or GML file (:mod:`innet.core.topology.importer`; its path is
relative to the topology file). An import becomes the node and link lists a
hand-written file would have, and is checked exactly like one.

Loading happens in three stages, and the first problem found stops it with a
one-line :class:`~innet.core.errors.ConfigError` ``FILE:LINE: FIELD: MESSAGE``:

1. YAML syntax (:mod:`innet.core.yamlio`, which also records lines);
2. the shape of each field (:mod:`innet.core.topology.schema`): field names, roles,
   units, capacity > 0, latency >= 0, 0 <= loss < 1;
3. the graph as a whole (here): unique node ids, exactly one fusion node, at
   least one sensor, links between known and distinct nodes, no link given
   twice (in either orientation), a capacity and latency for every link (its
   own or from ``defaults``), every sensor connected to the fusion node.
   Relays that cannot reach the fusion node are dropped with a warning, as an
   import drops the nodes its fusion node cannot reach.

Filled in while loading: ``label`` defaults to the id, ``compute`` and
``tx_ports`` to ``defaults``, a link's ``loss`` to ``defaults.loss`` (for an
import: ``import.default_loss``, then ``defaults.loss``), else 0, and a sensor
without a ``view`` gets the smallest view index not yet taken, visiting
sensors in node order (so a file that gives no views numbers them 0, 1, ...
in node order). The topology's name defaults to the file name without its
extension. Only a lossy link has a ``loss`` edge attribute, so a loss-free
graph is exactly what it was before losses existed: read it as
``graph.edges[u, v].get("loss", 0.0)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx
from pydantic import ValidationError

from innet.core.errors import ConfigError
from innet.core.topology.generators import generate_topology
from innet.core.topology.importer import TopologyImportWarning, import_nodes_and_links
from innet.core.topology.model import Topology, loss_attribute, node_key
from innet.core.topology.schema import Defaults, NodeSpec, TopologyFile
from innet.core.yamlio import (
    FieldError,
    LineMap,
    config_error_from_validation,
    read_yaml,
)

__all__ = ["load_topology", "topology_from_dict", "topology_to_dict"]

_MAX_NAMES = 20


def load_topology(path: str | Path) -> Topology:
    """Read and validate the topology file at ``path``.

    Raises :class:`~innet.core.errors.ConfigError` (one line naming the file, the
    field and the line) for a missing file, bad YAML or invalid content.
    """
    path = Path(path)
    data, lines = read_yaml(path)
    return topology_from_dict(data, file=path, lines=lines, default_name=path.stem)


def topology_from_dict(
    data: Any,
    *,
    file: str | Path | None = None,
    lines: LineMap | None = None,
    default_name: str = "topology",
) -> Topology:
    """Validate already-parsed topology data (e.g. a ``topology:`` block of a scenario).

    ``file`` and ``lines`` serve error messages (pass ``lines.within("topology")``
    for a block nested in a larger document); an ``import:`` path is relative to
    the folder of ``file`` (the working directory without one).
    """
    spec = _validated(data, file=file, lines=lines)
    name = spec.name or default_name
    source = Path(file) if file is not None else None
    try:
        if spec.import_ is not None:
            return Topology(name=name, graph=_imported_graph(spec, source, name), source=source)
        if spec.generator is not None:
            if spec.nodes is not None or spec.links is not None:
                raise FieldError(("generator",), "give either a generator or nodes and links")
            return generate_topology(
                spec.generator, name=name, defaults=spec.defaults, source=source
            )
        graph = _graph_from_lists(spec)
    except FieldError as error:
        raise error.located(file=file, lines=lines) from None
    return Topology(name=name, graph=graph, source=source)


def _validated(data: Any, *, file: str | Path | None, lines: LineMap | None) -> TopologyFile:
    """``data`` validated as a topology file (stages 1 and 2); a located error otherwise."""
    if not isinstance(data, Mapping):
        found = "an empty document" if data is None else f"a {type(data).__name__}"
        raise ConfigError(
            f"expected a mapping with nodes and links (or a generator), found {found}",
            file=file,
            line=lines.line(()) if lines is not None else None,
        )
    try:
        return TopologyFile.model_validate(data)
    except ValidationError as error:
        raise config_error_from_validation(
            error, model=TopologyFile, file=file, lines=lines
        ) from None


def _imported_graph(spec: TopologyFile, source: Path | None, name: str) -> nx.Graph:
    """The checked graph of a file with an ``import:`` (a path relative to ``source``'s folder)."""
    assert spec.import_ is not None
    if spec.nodes is not None or spec.links is not None or spec.generator is not None:
        raise FieldError(
            ("import",), "give only one of: an import, a generator, or nodes and links"
        )
    base_dir = source.parent if source is not None else Path()
    nodes, links = import_nodes_and_links(
        spec.import_, base_dir=base_dir, defaults=spec.defaults, name=name
    )
    defaults = spec.defaults
    if spec.import_.default_loss is not None:
        defaults = defaults.model_copy(update={"loss": spec.import_.default_loss})
    imported = spec.model_copy(
        update={"nodes": nodes, "links": links, "import_": None, "defaults": defaults}
    )
    return _checked_import(imported)


def topology_to_dict(topology: Topology) -> dict[str, Any]:
    """The topology as topology-file data (nodes and links, base units), ready for YAML.

    ``topology_from_dict(topology_to_dict(t))`` rebuilds ``t``; useful to freeze
    a generated topology into a file that can be edited by hand.
    """
    nodes = []
    for node in topology.nodes:
        attrs = topology.graph.nodes[node]
        entry: dict[str, Any] = {"id": node, "role": attrs["role"]}
        for field in ("view", "compute", "tx_ports"):
            if attrs.get(field) is not None:
                entry[field] = attrs[field]
        if attrs.get("label") not in (None, node):
            entry["label"] = attrs["label"]
        if attrs.get("pos") is not None:
            entry["pos"] = [float(coordinate) for coordinate in attrs["pos"]]
        nodes.append(entry)
    links = []
    for u, v in sorted(
        (tuple(sorted(edge, key=node_key)) for edge in topology.graph.edges),
        key=lambda link: (node_key(link[0]), node_key(link[1])),
    ):
        attrs = topology.graph.edges[u, v]
        link = {
            "between": [u, v],
            "capacity": float(attrs["capacity"]),
            "latency": float(attrs["latency"]),
        }
        if attrs.get("loss"):
            link["loss"] = float(attrs["loss"])
        links.append(link)
    return {"name": topology.name, "nodes": nodes, "links": links}


def _graph_from_lists(spec: TopologyFile) -> nx.Graph:
    """The checked graph of a file that lists its nodes and links (stage 3)."""
    nodes = spec.nodes
    if not nodes:
        loc = ("nodes",) if nodes is not None else ()
        raise FieldError(loc, "no nodes: list nodes and links, or give a generator")
    index = _node_index(nodes)
    _check_roles(nodes)

    graph = nx.Graph()
    _add_nodes(graph, nodes, spec.defaults)
    _add_links(graph, spec, index)
    _check_reachability(graph, index)
    _drop_unreachable(graph, spec.name)
    return graph


def _add_nodes(graph: nx.Graph, nodes: list[NodeSpec], defaults: Defaults) -> None:
    """Add ``nodes`` to ``graph`` in node order, with their attributes or the defaults."""
    views = _views(nodes)
    for node in sorted(nodes, key=lambda spec_node: node_key(spec_node.id)):
        graph.add_node(
            node.id,
            role=node.role,
            view=views.get(node.id),
            compute=node.compute if node.compute is not None else defaults.compute,
            tx_ports=node.tx_ports if node.tx_ports is not None else defaults.tx_ports,
            label=node.label if node.label is not None else node.id,
            pos=node.pos,
        )


def _add_links(graph: nx.Graph, spec: TopologyFile, index: Mapping[str, int]) -> None:
    """Add the file's links to ``graph``: known, distinct ends, each pair once, with a
    capacity and a latency (their own or the defaults)."""
    known = _names(sorted(index, key=node_key))
    first_given: dict[frozenset[str], int] = {}
    for i, link in enumerate(spec.links or []):
        for end, node_id in enumerate(link.between):
            if node_id not in index:
                raise FieldError(
                    ("links", i, "between", end),
                    f"unknown node {node_id!r} (the nodes are {known})",
                )
        a, b = link.between
        if a == b:
            raise FieldError(("links", i, "between"), f"self-loop: a link from {a!r} to itself")
        ends = frozenset((a, b))
        if ends in first_given:
            raise FieldError(
                ("links", i, "between"),
                f"duplicate link {a}-{b} (already given as links[{first_given[ends]}])",
            )
        first_given[ends] = i
        capacity = link.capacity if link.capacity is not None else spec.defaults.capacity
        latency = link.latency if link.latency is not None else spec.defaults.latency
        for field, value in (("capacity", capacity), ("latency", latency)):
            if value is None:
                raise FieldError(
                    ("links", i, field), f"no {field}: give one here or in defaults.{field}"
                )
        loss = link.loss if link.loss is not None else spec.defaults.loss
        graph.add_edge(a, b, capacity=capacity, latency=latency, **loss_attribute(loss))


def _checked_import(spec: TopologyFile) -> nx.Graph:
    """Stage 3 for imported node and link lists; a problem is reported at ``import``.

    The lists were not written in the file, so ``nodes[3]`` would point nowhere.
    """
    try:
        return _graph_from_lists(spec)
    except FieldError as error:
        raise FieldError(("import",), f"the imported graph: {error}") from None


def _node_index(nodes: list[NodeSpec]) -> dict[str, int]:
    """Position of each node id in the list; duplicate ids are an error."""
    index: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node.id in index:
            raise FieldError(
                ("nodes", i, "id"),
                f"duplicate node id {node.id!r} (already given as nodes[{index[node.id]}])",
            )
        index[node.id] = i
    return index


def _check_roles(nodes: list[NodeSpec]) -> None:
    fusions = [i for i, node in enumerate(nodes) if node.role == "fusion"]
    if not fusions:
        raise FieldError(("nodes",), "no fusion node: exactly one node needs role: fusion")
    if len(fusions) > 1:
        ids = _names([nodes[i].id for i in fusions])
        raise FieldError(
            ("nodes", fusions[1], "role"),
            f"{len(fusions)} fusion nodes ({ids}): exactly one node may have role: fusion",
        )
    if not any(node.role == "sensor" for node in nodes):
        raise FieldError(("nodes",), "no sensor: at least one node needs role: sensor")
    for i, node in enumerate(nodes):
        if node.view is not None and node.role != "sensor":
            raise FieldError(
                ("nodes", i, "view"), f"only sensors have a view ({node.id!r} is a {node.role})"
            )


def _views(nodes: list[NodeSpec]) -> dict[str, int]:
    """View of every sensor: its own, else the smallest free index, in node order."""
    sensors = sorted(
        (node for node in nodes if node.role == "sensor"), key=lambda n: node_key(n.id)
    )
    taken = {node.view for node in sensors if node.view is not None}
    views: dict[str, int] = {}
    free = 0
    for node in sensors:
        if node.view is not None:
            views[node.id] = node.view
            continue
        while free in taken:
            free += 1
        views[node.id] = free
        taken.add(free)
    return views


def _check_reachability(graph: nx.Graph, index: Mapping[str, int]) -> None:
    fusion = next(n for n, role in graph.nodes(data="role") if role == "fusion")
    reachable = nx.node_connected_component(graph, fusion)
    stranded = sorted(
        (n for n, role in graph.nodes(data="role") if role == "sensor" and n not in reachable),
        key=node_key,
    )
    if stranded:
        plural = "s" if len(stranded) > 1 else ""
        raise FieldError(
            ("nodes", index[stranded[0]]),
            f"sensor{plural} {_names(stranded)} cannot reach the fusion node {fusion!r}",
        )


def _drop_unreachable(graph: nx.Graph, name: str | None) -> None:
    """Drop, with a warning, the relays that cannot reach the fusion node.

    They can take no part in training. An imported file's nodes cut off from
    the fusion node are dropped the same way (:mod:`innet.core.topology.importer`);
    a sensor cut off is an error in both (:func:`_check_reachability`).
    """
    fusion = next(n for n, role in graph.nodes(data="role") if role == "fusion")
    reachable = nx.node_connected_component(graph, fusion)
    cut_off = sorted((node for node in graph if node not in reachable), key=node_key)
    if cut_off:
        graph.remove_nodes_from(cut_off)
        where = f"topology {name!r}: " if name else ""
        plural = "s" if len(cut_off) > 1 else ""
        warnings.warn(
            f"{where}dropped {len(cut_off)} relay{plural} the fusion node {fusion!r} cannot "
            f"reach (they could take no part): {_names(cut_off)}",
            TopologyImportWarning,
            stacklevel=2,
        )


def _names(ids: list[str]) -> str:
    """Comma-separated ids, shortened after a few."""
    if len(ids) <= _MAX_NAMES:
        return ", ".join(ids)
    return ", ".join(ids[:_MAX_NAMES]) + f", ... ({len(ids) - _MAX_NAMES} more)"
