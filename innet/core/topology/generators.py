"""Topologies drawn from random-graph models instead of written by hand.

A ``generator:`` block in a topology file names a networkx graph model and
rules for everything the model does not say: which node is the fusion node,
which nodes are sensors, and how link capacities and latencies are drawn.

The steps, each deterministic for a given ``seed``:

1. Build the graph with networkx: ``grid`` (``nx.grid_2d_graph``, ids
   ``n{row}_{col}``), ``ring`` (``nx.cycle_graph``), ``random_geometric``
   (``nx.random_geometric_graph``), ``erdos_renyi`` (``nx.fast_gnp_random_graph``,
   the same G(n, p) model as ``nx.erdos_renyi_graph`` in time linear in the
   number of links) or ``barabasi_albert`` (``nx.barabasi_albert_graph``); ids
   ``n0 .. n{N-1}`` except for grids. ``seed`` goes to networkx unchanged, so the
   graph is the one networkx gives for that seed. Grids, rings and random
   geometric graphs get drawing positions ``pos``.
2. If the graph is disconnected, keep one connected component and warn how
   many nodes were dropped: the component of the fusion node when it is given
   by id, otherwise the largest one (ties: the one holding the lowest id), in
   which the fusion rule then picks. Every sensor can therefore reach the
   fusion node.
3. Pick the fusion node (:class:`~innet.core.topology.schema.FusionRule`) and the
   sensors (:class:`~innet.core.topology.schema.SensorRule`); sensors get views
   ``0, 1, ...`` in node order. Ties always go to the lowest id
   (:func:`~innet.core.topology.model.node_key`).
4. Draw one capacity, one latency and one loss probability per link, visiting
   links in node order, from random streams derived from ``seed`` (independent
   of the graph's and of each other: adding ``loss`` changes no capacity).

>>> from innet.core.topology.schema import GeneratorSpec
>>> spec = GeneratorSpec(kind="ring", n=6, capacity="10Mbps", latency="1ms",
...                      sensors="all_but_fusion")
>>> topology = generate_topology(spec, name="ring6")
>>> topology.fusion, topology.sensors
('n0', ['n1', 'n2', 'n3', 'n4', 'n5'])
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import networkx as nx
import numpy as np
from scipy.sparse.csgraph import shortest_path

from innet.core.topology.model import Topology, loss_attribute, node_key
from innet.core.topology.rules import sensors_by_rule
from innet.core.topology.schema import (
    CapacityDistribution,
    Defaults,
    Distribution,
    GeneratorSpec,
    LatencyDistribution,
    LossDistribution,
)
from innet.core.yamlio import FieldError

__all__ = ["generate_topology", "generate_graph"]


def generate_topology(
    spec: GeneratorSpec,
    *,
    name: str,
    defaults: Defaults | None = None,
    source: Path | None = None,
) -> Topology:
    """Build the topology a ``generator:`` block describes (see the module docstring).

    ``defaults`` supplies capacity, latency and loss when the generator does not
    (loss then defaults to 0),
    and ``compute`` / ``tx_ports`` for every node. Problems that only show
    once the graph exists (an unknown fusion id, more sensors asked for than
    there are nodes) raise :class:`~innet.core.yamlio.FieldError` with
    a path under ``generator``.
    """
    defaults = defaults or Defaults()
    graph = generate_graph(spec)
    graph = _connected_part(graph, spec, name)
    fusion = _pick_fusion(graph, spec)
    sensors = _pick_sensors(graph, spec, fusion)
    capacity = _distribution(spec.capacity, defaults.capacity, CapacityDistribution, "capacity")
    latency = _distribution(spec.latency, defaults.latency, LatencyDistribution, "latency")
    loss = _distribution(
        spec.loss, defaults.loss if defaults.loss is not None else 0.0, LossDistribution, "loss"
    )

    # spawn(3)[:2] == spawn(2): the capacities and latencies do not depend on the loss stream
    capacity_stream, latency_stream, loss_stream = np.random.SeedSequence(spec.seed).spawn(3)
    links = sorted((tuple(sorted(edge, key=node_key)) for edge in graph.edges), key=_link_key)
    capacities = _sample(capacity, np.random.default_rng(capacity_stream), len(links))
    latencies = _sample(latency, np.random.default_rng(latency_stream), len(links))
    losses = _sample(loss, np.random.default_rng(loss_stream), len(links))

    topology_graph = nx.Graph()
    views = {sensor: view for view, sensor in enumerate(sorted(sensors, key=node_key))}
    for node in sorted(graph.nodes, key=node_key):
        pos = graph.nodes[node].get("pos")
        topology_graph.add_node(
            node,
            role="fusion" if node == fusion else "sensor" if node in views else "relay",
            view=views.get(node),
            compute=defaults.compute,
            tx_ports=defaults.tx_ports,
            label=node,
            pos=(float(pos[0]), float(pos[1])) if pos is not None else None,
        )
    for (u, v), link_capacity, link_latency, link_loss in zip(
        links, capacities, latencies, losses, strict=True
    ):
        topology_graph.add_edge(
            u, v, capacity=link_capacity, latency=link_latency, **loss_attribute(link_loss)
        )
    return Topology(name=name, graph=topology_graph, source=source)


def generate_graph(spec: GeneratorSpec) -> nx.Graph:
    """The raw networkx graph of ``spec`` (step 1): string ids, ``pos`` where known."""
    if spec.kind == "grid":
        rows = spec.rows
        assert rows is not None  # a grid takes rows and cols
        grid = nx.grid_2d_graph(rows, spec.cols)
        graph = nx.relabel_nodes(grid, {(r, c): f"n{r}_{c}" for r, c in grid.nodes})
        for r, c in grid.nodes:
            graph.nodes[f"n{r}_{c}"]["pos"] = (float(c), float(rows - 1 - r))
        return graph
    if spec.kind == "ring":
        graph = nx.cycle_graph(spec.n)
        for i in graph.nodes:  # clockwise from the top
            angle = math.pi / 2 - 2 * math.pi * i / spec.n
            graph.nodes[i]["pos"] = (math.cos(angle), math.sin(angle))
    elif spec.kind == "random_geometric":
        graph = nx.random_geometric_graph(spec.n, spec.radius, seed=spec.seed)
    elif spec.kind == "erdos_renyi":
        graph = nx.fast_gnp_random_graph(spec.n, spec.p, seed=spec.seed)
    else:
        graph = nx.barabasi_albert_graph(spec.n, spec.m, seed=spec.seed)
    return nx.relabel_nodes(graph, {i: f"n{i}" for i in graph.nodes})


def _link_key(link: tuple[str, str]) -> tuple:
    return (node_key(link[0]), node_key(link[1]))


def _connected_part(graph: nx.Graph, spec: GeneratorSpec, name: str) -> nx.Graph:
    """The graph itself if connected, else the component that will hold the fusion node."""
    fusion_id = spec.fusion.id
    if fusion_id is not None and fusion_id not in graph:
        raise FieldError(
            ("generator", "fusion", "id"),
            f"unknown node {fusion_id!r} (the generated ids are {_id_range(graph)})",
        )
    if graph.number_of_nodes() == 0 or nx.is_connected(graph):
        return graph
    components = list(nx.connected_components(graph))
    if fusion_id is not None:
        kept = next(c for c in components if fusion_id in c)
        which = f"the component of the fusion node {fusion_id!r}"
    else:
        kept = min(components, key=lambda c: (-len(c), min(node_key(n) for n in c)))
        which = "the largest component"
    dropped = graph.number_of_nodes() - len(kept)
    warnings.warn(
        f"topology {name!r}: the generated graph is disconnected; kept {which} "
        f"({len(kept)} nodes) and dropped {dropped} nodes in {len(components) - 1} "
        "other components",
        stacklevel=3,
    )
    return graph.subgraph(kept).copy()


def _pick_fusion(graph: nx.Graph, spec: GeneratorSpec) -> str:
    rule = spec.fusion
    if rule.id is not None:
        return rule.id
    if rule.rule == "max_degree":
        score = dict(graph.degree)
        return min(graph.nodes, key=lambda n: (-score[n], node_key(n)))
    if rule.rule == "max_closeness":
        score = _closeness(graph)
        return min(graph.nodes, key=lambda n: (-score[n], node_key(n)))
    score = nx.eccentricity(graph)
    return min(graph.nodes, key=lambda n: (score[n], node_key(n)))


def _closeness(graph: nx.Graph, block: int = 256) -> dict[str, float]:
    """``nx.closeness_centrality`` of a connected graph, with scipy's breadth-first searches.

    ``(n - 1) / sum of hop distances``; the searches run in C, ``block`` sources
    at a time, so a 10,000-node graph takes seconds instead of minutes.
    """
    nodes = list(graph.nodes)
    if len(nodes) < 2:
        return dict.fromkeys(nodes, 0.0)
    adjacency = nx.to_scipy_sparse_array(graph, nodelist=nodes, weight=None, format="csr")
    blocks = [range(start, min(start + block, len(nodes))) for start in range(0, len(nodes), block)]
    totals = np.concatenate(
        [shortest_path(adjacency, unweighted=True, indices=rows).sum(axis=1) for rows in blocks]
    )
    return {node: (len(nodes) - 1) / total for node, total in zip(nodes, totals, strict=True)}


def _pick_sensors(graph: nx.Graph, spec: GeneratorSpec, fusion: str) -> list[str]:
    rule = spec.sensors
    if rule.ids is not None:
        for index, sensor in enumerate(rule.ids):
            if sensor not in graph:
                raise FieldError(
                    ("generator", "sensors", "ids", index),
                    f"unknown node {sensor!r} (the kept ids are {_id_range(graph)})",
                )
            if sensor == fusion:
                raise FieldError(
                    ("generator", "sensors", "ids", index),
                    f"{sensor!r} is the fusion node and cannot also be a sensor",
                )
        return sorted(set(rule.ids), key=node_key)

    seed = rule.seed if rule.seed is not None else spec.seed
    assert rule.rule is not None  # a sensor rule gives ids or a rule
    return sensors_by_rule(
        graph, fusion, rule.rule, k=rule.k, seed=seed, where=("generator", "sensors")
    )


def _distribution(
    given: Distribution | None,
    default: float | None,
    model: type[Distribution],
    what: str,
) -> Distribution:
    if given is not None:
        return given
    if default is None:
        raise FieldError(
            ("generator", what), f"no {what}: give generator.{what} or defaults.{what}"
        )
    return model(dist="constant", value=default)


def _sample(distribution: Distribution, rng: np.random.Generator, size: int) -> list[float]:
    """``size`` draws (python floats) from ``distribution``."""
    if distribution.dist == "constant":
        values = np.full(size, distribution.value)
    elif distribution.dist == "uniform":
        low, high = _bounds(distribution)
        values = rng.uniform(low, high, size)
    elif distribution.dist == "loguniform":
        low, high = _bounds(distribution)
        values = np.clip(np.exp(rng.uniform(math.log(low), math.log(high), size)), low, high)
    else:
        values = rng.choice(np.asarray(distribution.values, dtype=float), size)
    return [float(value) for value in values]


def _bounds(distribution: Distribution) -> tuple[float, float]:
    """``(low, high)`` of a uniform or log-uniform distribution."""
    low, high = distribution.low, distribution.high
    assert low is not None and high is not None  # checked by Distribution
    return low, high


def _id_range(graph: nx.Graph) -> str:
    ids = sorted(graph.nodes, key=node_key)
    if len(ids) <= 4:
        return ", ".join(ids)
    return f"{ids[0]}, {ids[1]}, ..., {ids[-1]}"
