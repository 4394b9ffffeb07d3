"""Where the topology figures draw each node, so that no link seems to pass through a node.

Nodes sit at their ``pos`` when every node has one (generated grids, rings
and geometric graphs; imported files, where ``pos`` is longitude and
latitude). When most nodes have one and a few do not (a map whose file leaves
some cities without coordinates), the map is kept and each of those few is
drawn at the mean of its placed neighbours, a little aside
(:func:`place_missing`). Otherwise a seeded force-directed layout places them. A straight
link drawn from ``u`` to ``v`` that passes over a third node ``w`` reads as
two links, ``u-w`` and ``w-v``: :func:`edges_through_nodes` finds every such
crossing (the distance from ``w`` to the segment ``u-v`` below a clearance),
and :func:`node_positions` moves each such ``w`` sideways, away from the
segment, until none is left (networks up to :data:`CHECKED_NODES_MAX` nodes;
above that nodes are drawn too small to matter). Positions are only drawing
coordinates: latencies and distances come from the topology, never from here.
Nodes drawn on top of each other are pushed apart in the same way.

>>> import networkx as nx
>>> graph = nx.Graph([("a", "c"), ("a", "b"), ("b", "c")])
>>> straight = {"a": (0.0, 0.0), "b": (1.0, 0.0), "c": (2.0, 0.0)}
>>> edges_through_nodes(graph, straight, clearance=0.1)
[(('a', 'c'), 'b')]
>>> moved = separate_nodes(graph, straight, clearance=0.1)
>>> edges_through_nodes(graph, moved, clearance=0.1), moved["a"], moved["c"]
([], (0.0, 0.0), (2.0, 0.0))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx
import numpy as np

from innet.core.topology.model import Topology, node_key

__all__ = [
    "CHECKED_NODES_MAX",
    "node_positions",
    "place_missing",
    "MAP_CLEARANCE",
    "clearance_for",
    "dense_map",
    "edges_through_nodes",
    "separate_nodes",
    "quiet_point",
    "room_around",
]

CHECKED_NODES_MAX = 300
"""Networks up to this size are checked for links drawn through nodes (and fixed)."""
MAP_CLEARANCE = 0.015
"""A dense map's clearance, as a share of the drawing's larger side (:func:`dense_map`)."""

_SPRING_NODES_MAX = 300  # networkx's spring layout up to here, the numpy one above
_FORCE_NODES_MAX = 3000  # the dense numpy layout needs n^2 memory; spectral above
_ROUNDS = 30  # at most this many rounds of each way of moving nodes
_APART = 1.6  # nodes closer than this many clearances are drawn on top of each other
_MAP_SHARE = 0.5  # from this share of nodes with a `pos`, the others are placed on that map
_ASIDE = 0.04  # a placed node sits this share of the drawing's span aside its neighbours' mean
_GOLDEN_ANGLE = np.pi * (3 - np.sqrt(5))  # successive placed nodes turn by this much

Positions = Mapping[str, tuple[float, float]]


def node_positions(topology: Topology) -> dict[str, tuple[float, float]]:
    """Where to draw each node: its ``pos`` (or a seeded layout), off the links it is not on.

    Nodes keep their ``pos`` when at least half of them have one (the others
    placed by :func:`place_missing`). Else the layout is networkx's spring
    layout (seed 0) up to 300 nodes; up to
    3,000 nodes the same Fruchterman-Reingold forces computed with dense numpy
    arrays from a spectral start (about a second for 1,000 nodes, where networkx
    takes several); above that the spectral layout alone. All are
    deterministic. Up to :data:`CHECKED_NODES_MAX` nodes, nodes that a link
    would be drawn through are moved off it (:func:`separate_nodes`).
    """
    graph = topology.graph
    given = {
        node: graph.nodes[node]["pos"]
        for node in graph.nodes
        if graph.nodes[node].get("pos") is not None
    }
    layout: Mapping[str, Any]  # positions, as tuples or numpy arrays
    if given and len(given) >= _MAP_SHARE * graph.number_of_nodes():
        layout = place_missing(
            graph, {node: (float(xy[0]), float(xy[1])) for node, xy in given.items()}
        )
    elif graph.number_of_nodes() <= _SPRING_NODES_MAX:
        layout = nx.spring_layout(graph, seed=0)
    elif graph.number_of_nodes() <= _FORCE_NODES_MAX:
        layout = _force_layout(graph)
    else:
        layout = nx.spectral_layout(graph)
    positions = {node: (float(xy[0]), float(xy[1])) for node, xy in layout.items()}
    if graph.number_of_nodes() > CHECKED_NODES_MAX:
        return positions
    # 10% to spare: moving nodes apart widens the drawing, and with it the clearance
    return separate_nodes(graph, positions, 1.1 * clearance_for(graph, positions))


def place_missing(graph: nx.Graph, given: Positions) -> dict[str, tuple[float, float]]:
    """Every node's position: ``given`` ones kept, the others near their placed neighbours.

    In node order, round after round, a node without a position that has
    placed neighbours goes to the nearest spot around their mean (rings of
    0.5 to 8 clearances, :func:`clearance_for`) where it sits on no drawn link
    and no node, and its links pass over no node; where there is no such spot,
    to the mean itself, a little aside (4% of the drawing's span, the k-th
    placed node turned by k golden angles). Nodes no placed node reaches go
    around the mean of all given positions the same way.

    >>> import networkx as nx
    >>> graph = nx.Graph([("a", "x"), ("b", "x"), ("x", "y")])
    >>> placed = place_missing(graph, {"a": (0.0, 0.0), "b": (2.0, 0.0)})
    >>> [round(value, 2) for value in placed["x"]]  # half a clearance from the mean (1, 0)
    [1.03, 0.0]
    >>> sorted(placed) == ["a", "b", "x", "y"] and placed["a"] == (0.0, 0.0)
    True
    """
    placed = {node: np.array(xy, dtype=float) for node, xy in given.items()}
    middle, step, clearance = _placing_scale(graph, placed)
    missing = [node for node in sorted(graph.nodes, key=node_key) if node not in placed]
    count = 0
    while missing:
        ready = [node for node in missing if any(n in placed for n in graph.neighbors(node))]
        for node in ready or missing[:1]:  # none ready: one goes around the map's middle
            angle = count * _GOLDEN_ANGLE
            aside = step * np.array([np.cos(angle), np.sin(angle)])
            _place_near(graph, placed, node, middle, aside, clearance)
            count += 1
        missing = [node for node in missing if node not in placed]
    return _plain(placed)


def _placing_scale(
    graph: nx.Graph, placed: dict[str, np.ndarray]
) -> tuple[np.ndarray, float, float]:
    """The middle of the placed nodes, how far aside a node goes (4% of their span) and
    the clearance (:func:`clearance_for`; that step with fewer than two placed nodes)."""
    xy = np.array(list(placed.values()), dtype=float).reshape(-1, 2)
    span = float(np.ptp(xy, axis=0).max()) if len(xy) > 1 else 0.0
    step = _ASIDE * (span or 1.0)
    clearance = clearance_for(graph, _plain(placed)) if len(xy) > 1 else step
    return (xy.mean(axis=0) if len(xy) else np.zeros(2)), step, clearance


def _place_near(
    graph: nx.Graph,
    placed: dict[str, np.ndarray],
    node: str,
    middle: np.ndarray,
    aside: np.ndarray,
    clearance: float,
) -> None:
    """Place ``node`` at the nearest clear spot around its placed neighbours' mean
    (``middle`` when it has none), else ``aside`` of that mean."""
    around = [placed[n] for n in graph.neighbors(node) if n in placed] or [middle]
    placed[node] = np.mean(around, axis=0) + aside
    drawn = graph.subgraph([*placed])
    spot = _clear_spot(drawn, {**placed, node: np.mean(around, axis=0)}, node, clearance)
    if spot is not None:
        placed[node] = spot


def quiet_point(
    graph: nx.Graph, positions: Positions, edge: tuple[str, str], avoid: tuple[float, ...] = (0.5,)
) -> tuple[float, float]:
    """The point of the drawn link ``edge`` farthest from every other link and node.

    Candidates lie between 15% and 85% of the way from ``edge[0]`` to
    ``edge[1]``, at least 12% of the way from each fraction in ``avoid`` (the
    plan arrow sits at the middle); the one whose distance to the nearest other
    link or node is largest wins, so a mark put there is not read as marking
    a crossing link.

    >>> import networkx as nx
    >>> graph = nx.Graph([("a", "b"), ("c", "d")])  # c-d crosses a-b at 30% of its length
    >>> where = {"a": (0.0, 0.0), "b": (10.0, 0.0), "c": (3.0, -1.0), "d": (3.0, 1.0)}
    >>> quiet_point(graph, where, ("a", "b"))
    (8.5, 0.0)
    """
    start = np.asarray(positions[edge[0]], dtype=float)
    end = np.asarray(positions[edge[1]], dtype=float)
    fractions = np.linspace(0.15, 0.85, 29)
    away = np.all([np.abs(fractions - a) >= 0.12 for a in avoid], axis=0) if avoid else True
    fractions = fractions[away] if np.any(away) else fractions
    points = start + fractions[:, None] * (end - start)
    best = points[int(np.argmax(room_around(graph, positions, points, edge)))]
    return float(best[0]), float(best[1])


def room_around(
    graph: nx.Graph, positions: Positions, points: np.ndarray, edge: tuple[str, str]
) -> np.ndarray:
    """Each point's distance to the nearest link other than ``edge`` or node not on it."""
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    pair = {edge[0], edge[1]}
    others = [(u, v) for u, v in graph.edges if {u, v} != pair]
    nearest = np.full(len(points), np.inf)
    if others:
        a = np.array([positions[u] for u, _ in others], dtype=float)
        b = np.array([positions[v] for _, v in others], dtype=float)
        nearest = np.minimum(nearest, _segment_distances(a, b, points).min(axis=0))
    nodes = np.array([positions[n] for n in graph.nodes if n not in pair], dtype=float)
    if len(nodes):
        gaps = np.hypot(*(points[:, None, :] - nodes[None, :, :]).transpose(2, 0, 1))
        nearest = np.minimum(nearest, gaps.min(axis=1))
    return nearest


def clearance_for(graph: nx.Graph, positions: Positions) -> float:
    """How far a link must stay from a node it does not touch, in drawing units.

    About a node's drawn radius: 3.5% of the drawing's larger side up to 40
    nodes (large labelled markers), 0.7% above; 1.5% on a dense map
    (:func:`dense_map`), where large markers would push cities far off it.
    """
    xy = np.array(list(positions.values()), dtype=float)
    span = (float(np.ptp(xy, axis=0).max()) if len(xy) > 1 else 1.0) or 1.0
    if graph.number_of_nodes() > 40:
        return 0.007 * span
    return (MAP_CLEARANCE if dense_map(graph, positions) else 0.035) * span


def dense_map(graph: nx.Graph, positions: Positions) -> bool:
    """Whether a small network's nodes sit closer than its large markers allow.

    True when two of up to 40 nodes are within 1.6 times 3.5% of the drawing's
    larger side (e.g. Vienna and Bratislava on a map of Europe): such a network
    is drawn with small markers and labels beside them.
    """
    if graph.number_of_nodes() > 40 or len(positions) < 2:
        return False
    xy = np.array(list(positions.values()), dtype=float)
    span = float(np.ptp(xy, axis=0).max()) or 1.0
    return bool(_overlapping(positions, _APART * 0.035 * span))


def edges_through_nodes(
    graph: nx.Graph, positions: Positions, clearance: float
) -> list[tuple[tuple[str, str], str]]:
    """Every (link, node) where the drawn link passes within ``clearance`` of a node it skips."""
    nodes = sorted(graph.nodes, key=node_key)
    if not nodes or graph.number_of_edges() == 0:
        return []
    xy = np.array([positions[node] for node in nodes], dtype=float)
    edges = list(graph.edges)
    index = {node: i for i, node in enumerate(nodes)}
    a = np.array([xy[index[u]] for u, _ in edges])
    b = np.array([xy[index[v]] for _, v in edges])
    distance = _segment_distances(a, b, xy)  # edges x nodes
    found = []
    for e, n in zip(*np.nonzero(distance < clearance), strict=True):
        u, v = edges[e]
        if nodes[n] not in (u, v):
            found.append(((u, v), nodes[n]))
    return found


def separate_nodes(
    graph: nx.Graph, positions: Positions, clearance: float
) -> dict[str, tuple[float, float]]:
    """``positions`` with every node a link passes over moved off that link.

    First, for a bounded number of rounds, each such node moves perpendicular
    to the link, to 1.5x the clearance from it (to one fixed side when it sits
    exactly on the line), and nodes closer than 1.6 clearances (drawn on top
    of each other) are pushed apart along the line joining them. Then each
    node still caught or crowded (else an end of the link over it) moves to the nearest
    spot (on rings of growing radius around it) where it is clear of every
    link and node and its own links clear of every node, one node at a time,
    so no move undoes another (at most three searches per node: a dense
    graph may keep a few). Nodes with no such problem keep their positions.
    """
    moved = {node: np.array(xy, dtype=float) for node, xy in positions.items()}
    for _ in range(_ROUNDS):
        crossings = edges_through_nodes(graph, _plain(moved), clearance)
        crowded = _overlapping(moved, _APART * clearance)
        if not crossings and not crowded:
            break
        _push_apart(moved, crowded, clearance)
        _move_off_links(moved, crossings, clearance)
    _find_clear_spots(graph, moved, clearance)
    return _plain(moved)


def _push_apart(
    moved: dict[str, np.ndarray], crowded: list[tuple[str, str]], clearance: float
) -> None:
    """Two nodes drawn on top of each other: apart along their line."""
    for a, b in crowded:
        gap = moved[b] - moved[a]
        distance = float(np.hypot(*gap))
        unit = gap / distance if distance > 0 else np.array([1.0, 0.0])
        push = unit * (_APART * clearance - distance) * 0.55
        moved[a], moved[b] = moved[a] - push, moved[b] + push


def _move_off_links(
    moved: dict[str, np.ndarray],
    crossings: list[tuple[tuple[str, str], str]],
    clearance: float,
) -> None:
    """Each node a link passes over: perpendicular to it, 1.5 clearances away."""
    for (u, v), node in crossings:
        start, end, point = moved[u], moved[v], moved[node]
        direction = end - start
        length = float(np.hypot(*direction)) or 1.0
        normal = np.array([-direction[1], direction[0]]) / length
        offset = float(np.dot(point - start, normal))
        side = 1.0 if offset >= 0 else -1.0
        moved[node] = point + normal * (side * 1.5 * clearance - offset)


def _find_clear_spots(graph: nx.Graph, moved: dict[str, np.ndarray], clearance: float) -> None:
    """Each node still caught or crowded (else an end of the link over it): to the nearest
    clear spot, one node at a time, at most three searches per node."""
    budget = 3 * graph.number_of_nodes()  # searches for a clear spot: bounded on dense graphs
    for _ in range(_ROUNDS):
        crossings = edges_through_nodes(graph, _plain(moved), clearance)
        crossings += [((b, b), a) for a, b in _overlapping(moved, _APART * clearance)]
        if not crossings or budget <= 0:
            break
        for (u, v), node in crossings:
            for candidate in (node, u, v):  # the node, else an end of the link
                budget -= 1
                spot = _clear_spot(graph, moved, candidate, clearance)
                if spot is not None:
                    moved[candidate] = spot
                    break


def _plain(positions: Mapping[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    return {node: (float(xy[0]), float(xy[1])) for node, xy in positions.items()}


def _clear_spot(
    graph: nx.Graph, positions: dict[str, np.ndarray], node: str, clearance: float
) -> np.ndarray | None:
    """The nearest point around ``node`` where nothing is drawn through or onto it.

    Candidates lie on rings of 0.5 to 8 clearances, 24 directions each; the
    nearest that is clear wins; None if there is none.
    """
    others = [other for other in positions if other != node]
    xy = np.array([positions[other] for other in others], dtype=float).reshape(-1, 2)
    far = [(u, v) for u, v in graph.edges if node not in (u, v)]
    a = np.array([positions[u] for u, _ in far], dtype=float).reshape(-1, 2)
    b = np.array([positions[v] for _, v in far], dtype=float).reshape(-1, 2)
    neighbours = [other for other in graph.neighbors(node) if other != node]
    ends = np.array([positions[other] for other in neighbours], dtype=float).reshape(-1, 2)
    radii = np.arange(0.5, 8.01, 0.5) * clearance
    angles = np.linspace(0.0, 2 * np.pi, 24, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    spots = (positions[node] + radii[:, None, None] * ring[None, :, :]).reshape(-1, 2)
    clear = np.ones(len(spots), dtype=bool)
    if len(xy):
        clear &= (
            np.hypot(*(xy[None, :, :] - spots[:, None, :]).transpose(2, 0, 1)).min(axis=1)
            >= _APART * clearance
        )
    if len(a):
        clear &= _segment_distances(a, b, spots).min(axis=0) >= clearance
    if len(ends):
        clear &= _own_links_clear(spots, neighbours, ends, others, xy, clearance)
    found = np.flatnonzero(clear)
    return spots[found[0]] if found.size else None


def _own_links_clear(
    spots: np.ndarray,
    neighbours: list[str],
    ends: np.ndarray,
    others: list[str],
    xy: np.ndarray,
    clearance: float,
) -> np.ndarray:
    """For each spot: whether the node's own links from there (to ``ends``, the
    ``neighbours``' positions) pass every other node (``others`` at ``xy``) at a clearance."""
    starts = np.repeat(spots, len(ends), axis=0)
    distance = _segment_distances(starts, np.tile(ends, (len(spots), 1)), xy)
    own = np.array([[other == n for other in others] for n in neighbours])  # ends
    distance[np.tile(own, (len(spots), 1))] = np.inf
    return (distance.min(axis=1) >= clearance).reshape(len(spots), len(ends)).all(axis=1)


def _overlapping(positions: Mapping[str, Any], distance: float) -> list[tuple[str, str]]:
    """Pairs of nodes closer than ``distance`` (in node order)."""
    nodes = sorted(positions, key=node_key)
    xy = np.array([positions[node] for node in nodes], dtype=float)
    gaps = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    first, second = np.nonzero(np.triu(gaps < distance, k=1))
    return [(nodes[i], nodes[j]) for i, j in zip(first, second, strict=True)]


def _segment_distances(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance from each point to each segment ``a[i]-b[i]``: shape (segments, points)."""
    direction = b - a
    squared = np.maximum((direction**2).sum(axis=1), 1e-300)
    relative = points[None, :, :] - a[:, None, :]
    t = np.clip((relative * direction[:, None, :]).sum(axis=2) / squared[:, None], 0.0, 1.0)
    nearest = a[:, None, :] + t[:, :, None] * direction[:, None, :]
    return np.hypot(*(points[None, :, :] - nearest).transpose(2, 0, 1))


def _force_layout(graph: nx.Graph, iterations: int = 50) -> dict[str, np.ndarray]:
    """Fruchterman-Reingold on dense float32 arrays, from the spectral layout plus jitter.

    Each node is pushed away from every other with force ``k^2 / d`` and pulled
    towards its neighbours with ``d^2 / k`` (``k = 1 / sqrt(n)``); each step
    moves a node at most the current temperature, which cools linearly to 0.
    """
    nodes = sorted(graph.nodes, key=node_key)
    index = {node: i for i, node in enumerate(nodes)}
    n = len(nodes)
    adjacency = np.zeros((n, n), dtype=np.float32)
    for u, v in graph.edges:
        adjacency[index[u], index[v]] = adjacency[index[v], index[u]] = 1.0
    pos = _spectral_start(graph, nodes)
    pos = (pos - pos.min(axis=0)) / np.maximum(np.ptp(pos, axis=0), 1e-9)
    pos += np.random.default_rng(0).uniform(-0.02, 0.02, pos.shape).astype(np.float32)
    k = np.float32(1.0 / np.sqrt(n))
    temperature = 0.1
    for _ in range(iterations):
        dx = pos[:, 0, None] - pos[None, :, 0]
        dy = pos[:, 1, None] - pos[None, :, 1]
        squared = np.maximum(dx * dx + dy * dy, np.float32(1e-4))
        # force[i, j] pushes i away from j (> 0) or pulls it closer (< 0), along pos[i] - pos[j]
        force = k * k / squared - adjacency * np.sqrt(squared) / k
        displacement = pos * force.sum(axis=1)[:, None] - force @ pos
        length = np.maximum(np.linalg.norm(displacement, axis=1), np.float32(0.01))
        pos += displacement * (np.float32(temperature) / length)[:, None]
        temperature -= 0.1 / (iterations + 1)
    return dict(zip(nodes, pos, strict=True))


def _spectral_start(graph: nx.Graph, nodes: list[str]) -> np.ndarray:
    """Spectral coordinates: the Laplacian's 2nd and 3rd eigenvectors.

    networkx's sparse solver above 500 nodes; below, a dense symmetric one
    (``spectral_layout`` would use a general, much slower, eigensolver there).
    """
    if len(nodes) >= 500:
        spectral = nx.spectral_layout(graph)
        return np.array([spectral[node] for node in nodes], dtype=np.float32)
    laplacian = nx.laplacian_matrix(graph, nodelist=nodes).toarray().astype(float)
    _, vectors = np.linalg.eigh(laplacian)
    return vectors[:, 1:3].astype(np.float32)
