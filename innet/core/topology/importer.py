"""Real network maps (GraphML, GML) turned into topologies.

Research networks publish their maps as graphs: the Internet Topology Zoo
ships GraphML and GML files whose nodes carry a ``label`` and
``Latitude``/``Longitude`` and whose links sometimes carry a speed
(``LinkSpeedRaw``, bits/s). An ``import:`` block in a topology file reads such
a file and says what the file does not: the roles of the nodes, and a capacity
and latency for every link::

    name: geant
    import:
      graphml: zoo/Geant2011.graphml  # relative to this YAML file
      capacity_attr: LinkSpeedRaw    # bits/s on the link, when present
      default_capacity: 1Gbps        # when it is not
      latency: geo                   # from the coordinates; or one duration, e.g. 2ms
      default_latency: 1ms           # links with an end that has no coordinates
      fusion: {label: DE}            # or {id: "4"} or {rule: max_degree | max_closeness}
      sensors: {rule: leaves}        # or all_but_fusion, {rule: random, k: 8, seed: 0},
                                     # {rule: farthest, k: 4}, {ids: [...]}, {labels: [...]}

What happens to the file, in order (each step that changes something says so
with a :class:`TopologyImportWarning`):

1. Read it with networkx (``nx.read_graphml``, ``nx.read_gml``). Node ids are
   the file's ids as strings; ``label`` is kept for reports (the id when the
   file gives none or an empty one); a node with both coordinates gets
   ``pos = (longitude, latitude)`` for drawing. A directed file is an error:
   links here are symmetric, and whether two opposite arcs are one link or
   two is for the file's author to say.
2. Drop self-loops.
3. Merge parallel links (several links between the same two nodes) into one
   whose capacity is the sum of theirs: links in parallel carry their traffic
   side by side. A link without a speed counts as ``default_capacity``, so two
   links of unknown speed merge into twice the default.
4. Drop isolated nodes (no links left), then every node the fusion node
   cannot reach. The fusion node is found first: by label (which must name
   exactly one node), by id, or by a rule applied to the largest connected
   part (ties to the lowest id).
5. Pick the sensors (views 0, 1, ... in node order): ``leaves`` are the nodes
   of degree 1 after the merge, or the ones farthest in hops from the fusion
   node when there are none.
6. Give every link its capacity and latency. ``geo`` latency is the
   great-circle (haversine) distance on a sphere of radius
   :data:`EARTH_RADIUS_M` divided by :data:`PROPAGATION_SPEED_M_PER_S`, the
   speed of light in fibre; ``default_latency`` where an end has no
   coordinates.

The result is handed over as the node and link lists a hand-written file
would have (:class:`~innet.core.topology.schema.NodeSpec`,
:class:`~innet.core.topology.schema.LinkSpec`), so it goes through exactly the same
validation and gets exactly the same attributes.

>>> round(haversine_m(0.0, 0.0, 0.0, 1.0) / 1000, 3)  # one degree along the equator, km
111.195
>>> round(geo_latency_s((52.374, 4.890), (50.117, 8.683)) * 1e3, 3)  # Amsterdam-Frankfurt, ms
1.821
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx

from innet.core.topology.model import node_key
from innet.core.topology.rules import sensors_by_rule
from innet.core.topology.schema import Defaults, ImportSpec, LinkSpec, NodeSpec
from innet.core.units import format_bitrate, parse_bitrate
from innet.core.yamlio import FieldError

__all__ = [
    "EARTH_RADIUS_M",
    "PROPAGATION_SPEED_M_PER_S",
    "TopologyImportWarning",
    "geo_latency_s",
    "haversine_m",
    "import_nodes_and_links",
    "read_network",
]

EARTH_RADIUS_M = 6_371_000.0
"""Radius of the sphere used for great-circle distances, in metres."""

PROPAGATION_SPEED_M_PER_S = 2e8
"""Speed of a signal in optical fibre (about two thirds of c), in metres per second."""

_MAX_NAMES = 10


class TopologyImportWarning(UserWarning):
    """An imported file was changed on the way in (links merged, nodes dropped)."""


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two points given in degrees.

    >>> round(haversine_m(90.0, 0.0, -90.0, 0.0) / (math.pi * EARTH_RADIUS_M), 12)  # pole to pole
    1.0
    """
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    half_dphi = (phi2 - phi1) / 2
    half_dlambda = math.radians(lon2 - lon1) / 2
    a = math.sin(half_dphi) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(half_dlambda) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def geo_latency_s(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Propagation delay in seconds between two ``(latitude, longitude)`` points."""
    return haversine_m(a[0], a[1], b[0], b[1]) / PROPAGATION_SPEED_M_PER_S


def read_network(spec: ImportSpec, base_dir: Path) -> nx.MultiGraph:
    """The file named by ``spec`` as an undirected multigraph with string node ids.

    ``base_dir`` is the folder relative paths start from (the topology file's).
    A missing or unreadable file raises :class:`~innet.core.yamlio.FieldError` at
    ``import.graphml`` (or ``import.gml``).
    """
    loc = ("import", spec.format)
    path = base_dir / spec.path
    if not path.is_file():
        what = "not a file" if path.exists() else "file not found"
        raise FieldError(loc, f"{what}: {spec.path} (looked for {path})")
    try:
        # GML: name nodes by their `id`, keeping `label` as an attribute.
        graph = nx.read_graphml(path) if spec.format == "graphml" else nx.read_gml(path, label="id")
    except (nx.NetworkXError, SyntaxError, ValueError, KeyError, TypeError, OSError) as error:
        name = "GraphML" if spec.format == "graphml" else "GML"
        raise FieldError(loc, f"cannot read {spec.path} as {name}: {error}") from None
    if graph.is_directed():
        raise FieldError(
            loc,
            f"{spec.path} is a directed graph; links are symmetric here: "
            "write it as an undirected graph",
        )
    blank = [node for node in graph if not str(node).strip()]
    if blank:
        raise FieldError(loc, f"{spec.path} has a node with a blank id ({str(blank[0])!r})")
    network = nx.MultiGraph()
    network.add_nodes_from((str(node), data) for node, data in graph.nodes(data=True))
    network.add_edges_from((str(u), str(v), data) for u, v, data in graph.edges(data=True))
    return network


def import_nodes_and_links(
    spec: ImportSpec,
    *,
    base_dir: Path,
    defaults: Defaults | None = None,
    name: str = "topology",
) -> tuple[list[NodeSpec], list[LinkSpec]]:
    """The nodes (with roles, labels, positions) and links (with capacity, latency) of an import.

    Steps 1-6 of the module docstring. ``defaults`` supplies ``capacity`` and
    ``latency`` where ``spec`` gives no ``default_capacity`` /
    ``default_latency``; ``name`` only appears in warnings. Problems raise
    :class:`~innet.core.yamlio.FieldError` with a path under ``import``.
    """
    defaults = defaults or Defaults()
    network = read_network(spec, base_dir)
    where = f"topology {name!r} ({spec.path})"
    labels = {node: _label(node, data) for node, data in network.nodes(data=True)}

    _drop_self_loops(network, labels, where)
    capacities = _merged_capacities(network, spec, defaults, labels, where)
    graph = nx.Graph()
    graph.add_nodes_from(network.nodes)
    graph.add_edges_from(capacities)
    _drop_isolated(graph, labels, where)
    fusion = _pick_fusion(graph, network, spec, labels)
    _keep_fusion_component(graph, fusion, labels, where)
    sensors = _pick_sensors(graph, network, spec, fusion, labels)

    coordinates = {node: _coordinates(node, network.nodes[node], spec) for node in graph}
    latencies = _latencies(graph, spec, defaults, coordinates, labels)
    _warn_zero_latency(graph, spec, latencies, labels, where)
    nodes = [
        NodeSpec(
            id=node,
            role="fusion" if node == fusion else "sensor" if node in sensors else "relay",
            label=labels[node],
            pos=_east_north(coordinates[node]),
        )
        for node in sorted(graph.nodes, key=node_key)
    ]
    links = [
        LinkSpec(between=(u, v), capacity=capacities[u, v], latency=latencies[u, v])
        for u, v in sorted(capacities, key=lambda link: (node_key(link[0]), node_key(link[1])))
        if u in graph and v in graph
    ]
    return nodes, links


def _label(node: str, data: Mapping[str, Any]) -> str:
    label = data.get("label")
    return str(label) if label is not None and str(label).strip() else node


def _pair_name(u: str, v: str, labels: Mapping[str, str]) -> str:
    """``12-13 (BG-RO)``: ids, then labels when they differ from the ids."""
    ids = f"{u}-{v}"
    named = f"{labels[u]}-{labels[v]}"
    return ids if named == ids else f"{ids} ({named})"


def _node_name(node: str, labels: Mapping[str, str]) -> str:
    return node if labels[node] == node else f"{labels[node]} (id {node})"


def _listing(items: Sequence[str]) -> str:
    if len(items) <= _MAX_NAMES:
        return ", ".join(items)
    return ", ".join(items[:_MAX_NAMES]) + f", ... ({len(items) - _MAX_NAMES} more)"


def _warn(message: str) -> None:
    warnings.warn(message, TopologyImportWarning, stacklevel=4)


def _drop_self_loops(network: nx.MultiGraph, labels: Mapping[str, str], where: str) -> None:
    loops = sorted({u for u, _ in nx.selfloop_edges(network)}, key=node_key)
    if not loops:
        return
    count = nx.number_of_selfloops(network)
    network.remove_edges_from(list(nx.selfloop_edges(network, keys=True)))
    names = _listing([_node_name(node, labels) for node in loops])
    _warn(f"{where}: dropped {count} self-loop{'s' if count > 1 else ''} at {names}")


def _merged_capacities(
    network: nx.MultiGraph,
    spec: ImportSpec,
    defaults: Defaults,
    labels: Mapping[str, str],
    where: str,
) -> dict[tuple[str, str], float]:
    """Capacity of each linked pair ``(u, v)`` (``u`` first in node order): sum over its links."""
    default = spec.default_capacity if spec.default_capacity is not None else defaults.capacity
    capacities: dict[tuple[str, str], float] = {}
    multiplicity: dict[tuple[str, str], int] = {}
    unknown: list[tuple[str, str]] = []
    for u, v, data in network.edges(data=True):
        pair = (u, v) if node_key(u) <= node_key(v) else (v, u)
        capacity = _link_capacity(data, spec, pair, labels)
        if capacity is None:
            unknown.append(pair)
            capacity = default
        if capacity is not None:
            capacities[pair] = capacities.get(pair, 0.0) + capacity
        multiplicity[pair] = multiplicity.get(pair, 0) + 1
    if unknown and default is None:
        attribute = f"no {spec.capacity_attr}" if spec.capacity_attr else "capacity_attr is null"
        raise FieldError(
            ("import", "default_capacity"),
            f"{len(unknown)} links have {attribute} (e.g. {_pair_name(*unknown[0], labels)}): "
            "give import.default_capacity or defaults.capacity",
        )
    _warn_parallel(multiplicity, capacities, spec, default, labels, where)
    return capacities


def _warn_parallel(
    multiplicity: Mapping[tuple[str, str], int],
    capacities: Mapping[tuple[str, str], float],
    spec: ImportSpec,
    default: float | None,
    labels: Mapping[str, str],
    where: str,
) -> None:
    """Warn about the pairs joined by several links (``multiplicity`` > 1), merged into one."""
    parallel = sorted(
        (pair for pair, count in multiplicity.items() if count > 1),
        key=lambda pair: (node_key(pair[0]), node_key(pair[1])),
    )
    if not parallel:
        return
    extra = sum(multiplicity[pair] for pair in parallel)
    names = _listing(
        [
            f"{_pair_name(*pair, labels)} x{multiplicity[pair]} = "
            f"{format_bitrate(capacities[pair])}"
            for pair in parallel
        ]
    )
    _warn(
        f"{where}: merged {extra} parallel links into {len(parallel)} "
        f"(capacities added; a link without {spec.capacity_attr or 'a speed'} counts as "
        f"{format_bitrate(default) if default is not None else 'the default'}): {names}"
    )


def _link_capacity(
    data: Mapping[str, Any],
    spec: ImportSpec,
    pair: tuple[str, str],
    labels: Mapping[str, str],
) -> float | None:
    """The link's own capacity in bits/s, or None when it gives none."""
    if spec.capacity_attr is None:
        return None
    value = data.get(spec.capacity_attr)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        capacity = parse_bitrate(value)
    except ValueError as error:
        problem = str(error)
    else:
        if capacity > 0:
            return capacity
        problem = f"capacity must be > 0, got {format_bitrate(capacity)}"
    raise FieldError(
        ("import", "capacity_attr"),
        f"link {_pair_name(*pair, labels)}: {spec.capacity_attr} = {value!r}: {problem}",
    )


def _east_north(coordinates: tuple[float, float] | None) -> tuple[float, float] | None:
    """A node's ``pos`` (x east, y north) from its (latitude, longitude), if it has them."""
    return (coordinates[1], coordinates[0]) if coordinates else None


def _drop_isolated(graph: nx.Graph, labels: Mapping[str, str], where: str) -> None:
    isolated = sorted(nx.isolates(graph), key=node_key)
    if not isolated:
        return
    graph.remove_nodes_from(isolated)
    plural = "s" if len(isolated) > 1 else ""
    names = _listing([_node_name(node, labels) for node in isolated])
    _warn(f"{where}: dropped {len(isolated)} isolated node{plural} (no links): {names}")


def _find_label(label: str, network: nx.MultiGraph, labels: Mapping[str, str], loc: tuple) -> str:
    """The one node whose label is ``label``."""
    matches = sorted((node for node in network if labels[node] == label), key=node_key)
    if len(matches) > 1:
        raise FieldError(
            loc,
            f"label {label!r} names {len(matches)} nodes (ids {', '.join(matches)}): "
            "give the id instead",
        )
    if not matches:
        known = sorted({labels[node] for node in network}, key=node_key)
        raise FieldError(loc, f"no node has label {label!r} (the labels are {_listing(known)})")
    return matches[0]


def _find_id(node: str, network: nx.MultiGraph, loc: tuple) -> str:
    if node not in network:
        ids = sorted(network, key=node_key)
        raise FieldError(loc, f"no node has id {node!r} (the ids are {_listing(ids)})")
    return node


def _pick_fusion(
    graph: nx.Graph, network: nx.MultiGraph, spec: ImportSpec, labels: Mapping[str, str]
) -> str:
    rule = spec.fusion
    if rule.label is not None or rule.id is not None:
        if rule.label is not None:
            fusion = _find_label(rule.label, network, labels, ("import", "fusion", "label"))
        else:
            assert rule.id is not None
            fusion = _find_id(rule.id, network, ("import", "fusion", "id"))
        if fusion not in graph:
            raise FieldError(
                ("import", "fusion"),
                f"the fusion node {_node_name(fusion, labels)} has no links in the file",
            )
        return fusion
    if graph.number_of_nodes() == 0:
        raise FieldError(("import",), "the file has no links: nothing to import")
    components = list(nx.connected_components(graph))
    largest = graph.subgraph(min(components, key=lambda c: (-len(c), min(map(node_key, c)))))
    if rule.rule == "max_degree":
        score = dict(largest.degree)
        return min(largest, key=lambda n: (-score[n], node_key(n)))
    if rule.rule == "max_closeness":
        score = nx.closeness_centrality(largest)
        return min(largest, key=lambda n: (-score[n], node_key(n)))
    score = nx.eccentricity(largest)
    return min(largest, key=lambda n: (score[n], node_key(n)))


def _keep_fusion_component(
    graph: nx.Graph, fusion: str, labels: Mapping[str, str], where: str
) -> None:
    component = nx.node_connected_component(graph, fusion)
    cut_off = sorted((node for node in graph if node not in component), key=node_key)
    if not cut_off:
        return
    graph.remove_nodes_from(cut_off)
    names = _listing([_node_name(node, labels) for node in cut_off])
    _warn(
        f"{where}: dropped {len(cut_off)} nodes the fusion node "
        f"{_node_name(fusion, labels)} cannot reach: {names}"
    )


def _pick_sensors(
    graph: nx.Graph,
    network: nx.MultiGraph,
    spec: ImportSpec,
    fusion: str,
    labels: Mapping[str, str],
) -> set[str]:
    rule = spec.sensors
    if rule.ids is not None or rule.labels is not None:
        field = "ids" if rule.ids is not None else "labels"
        chosen = []
        for index, given in enumerate(rule.ids if rule.ids is not None else rule.labels or []):
            loc = ("import", "sensors", field, index)
            if field == "ids":
                node = _find_id(given, network, loc)
            else:
                node = _find_label(given, network, labels, loc)
            if node == fusion:
                raise FieldError(
                    loc, f"{_node_name(node, labels)} is the fusion node and cannot be a sensor"
                )
            if node not in graph:
                raise FieldError(
                    loc, f"{_node_name(node, labels)} cannot reach the fusion node (dropped)"
                )
            chosen.append(node)
        return set(chosen)

    seed = rule.seed if rule.seed is not None else 0
    where = ("import", "sensors")
    assert rule.rule is not None  # a sensor rule gives ids, labels or a rule
    return set(sensors_by_rule(graph, fusion, rule.rule, k=rule.k, seed=seed, where=where))


def _coordinates(
    node: str, data: Mapping[str, Any], spec: ImportSpec
) -> tuple[float, float] | None:
    """``(latitude, longitude)`` in degrees, or None when the node lacks either."""
    latitude, longitude = data.get("Latitude"), data.get("Longitude")
    if latitude is None or longitude is None:
        return None
    try:
        latitude, longitude = float(latitude), float(longitude)
    except (TypeError, ValueError):
        raise FieldError(
            ("import", spec.format),
            f"node {node}: Latitude/Longitude {latitude!r}/{longitude!r} are not numbers",
        ) from None
    if not (-90 <= latitude <= 90 and math.isfinite(longitude)):
        raise FieldError(
            ("import", spec.format),
            f"node {node}: Latitude {latitude:g} is not between -90 and 90 degrees",
        )
    return latitude, longitude


def _warn_zero_latency(
    graph: nx.Graph,
    spec: ImportSpec,
    latencies: Mapping[tuple[str, str], float],
    labels: Mapping[str, str],
    where: str,
) -> None:
    """A warning naming the links whose geo latency is 0 s (both ends at one place)."""
    if spec.latency != "geo":
        return
    zero = [_pair_name(u, v, labels) for u, v in graph.edges if latencies[u, v] == 0]
    if zero:
        _warn(
            f"{where}: geo latency is 0 s on {len(zero)} link{'s' * (len(zero) != 1)} with "
            f"both ends at the same Latitude/Longitude: {_listing(zero)}"
        )


def _latencies(
    graph: nx.Graph,
    spec: ImportSpec,
    defaults: Defaults,
    coordinates: Mapping[str, tuple[float, float] | None],
    labels: Mapping[str, str],
) -> dict[tuple[str, str], float]:
    """Latency of every kept link, keyed both ways round."""
    default = spec.default_latency if spec.default_latency is not None else defaults.latency
    latencies: dict[tuple[str, str], float] = {}
    for u, v in graph.edges:
        at_u, at_v = coordinates[u], coordinates[v]
        if spec.latency != "geo":
            latency = float(spec.latency)
        elif at_u is not None and at_v is not None:
            latency = geo_latency_s(at_u, at_v)
        elif default is not None:
            latency = default
        else:
            missing = _node_name(u if coordinates[u] is None else v, labels)
            raise FieldError(
                ("import", "default_latency"),
                f"link {_pair_name(u, v, labels)}: {missing} has no Latitude/Longitude for "
                "geo latency: give import.default_latency or defaults.latency",
            )
        latencies[u, v] = latencies[v, u] = latency
    return latencies
