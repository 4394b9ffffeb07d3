"""A topology's links as numpy arrays, read out of the networkx graph once.

Reading 300,000 link attributes out of networkx's nested dicts takes about
as long as ten runs of scipy's compiled Dijkstra on the same graph. A
:class:`LinkTable` does that reading once, when it is first needed, so that
tree building on large graphs (:func:`innet.core.plans.dijkstra_plan` above its
scipy threshold) works on arrays only.

Nodes are numbered in node order (:func:`~innet.core.topology.order.node_key`),
so "lowest index" means "lowest id". Every link is stored once (``u``, ``v``,
``capacity``, ``latency``) and its two directions are laid out as the
structure of a CSR matrix whose rows are sorted by column: row ``i`` lists
the neighbours of node ``i`` in node order.

The table is a snapshot of the graph at the time it was built. A
:class:`~innet.core.topology.model.Topology` builds it on first use and keeps it,
which is why code that changes a network (events, per-node compute) builds a
new ``Topology`` instead of editing the graph of one in use.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import networkx as nx
import numpy as np
import scipy.sparse

from innet.core.topology.order import ordered_ids

__all__ = ["LinkTable", "link_table"]


@dataclass(frozen=True, eq=False)
class LinkTable:
    """Node ids, links and the CSR structure of a graph's adjacency.

    - ``ids``: node ids in node order, as an object array (index -> id)
    - ``index``: id -> index
    - ``u``, ``v``, ``capacity``, ``latency``: one entry per link
    - ``indptr``, ``indices``, ``row``: CSR structure of both link
      directions; slot ``k`` is the direction ``row[k] -> indices[k]``
    - ``link[k]``: the link slot ``k`` belongs to; ``slot_uv[j]`` and
      ``slot_vu[j]``: the slots of link ``j``'s directions ``u -> v`` and
      ``v -> u``
    - ``pairs[k]``: the ``(id, id)`` tuple of slot ``k``'s direction, made
      once so that each plan on a large graph need not make a hundred
      thousand tuples
    """

    ids: np.ndarray
    index: dict[str, int]
    u: np.ndarray
    v: np.ndarray
    capacity: np.ndarray
    latency: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    row: np.ndarray
    link: np.ndarray
    slot_uv: np.ndarray
    slot_vu: np.ndarray
    pairs: np.ndarray

    @property
    def node_count(self) -> int:
        return len(self.ids)

    def matrix(self, link_values: np.ndarray) -> scipy.sparse.csr_array:
        """The symmetric CSR matrix holding ``link_values[link]`` in both directions.

        Explicit zeros stay stored, so a zero value is still a link (of weight 0)
        for ``scipy.sparse.csgraph``.
        """
        shape = (self.node_count, self.node_count)
        return scipy.sparse.csr_array(
            (link_values[self.link], self.indices, self.indptr), shape=shape, copy=False
        )


def link_table(graph: nx.Graph) -> LinkTable:
    """Read ``graph``'s nodes and links (``capacity``, ``latency``) into a :class:`LinkTable`.

    >>> graph = nx.Graph()
    >>> graph.add_edge("n10", "n2", capacity=1e6, latency=0.0)
    >>> graph.add_edge("n2", "f", capacity=1e9, latency=1e-3)
    >>> table = link_table(graph)
    >>> table.ids.tolist()
    ['f', 'n2', 'n10']
    >>> table.matrix(table.capacity).toarray().tolist()[1]
    [1000000000.0, 0.0, 1000000.0]
    """
    ids = ordered_ids(graph)
    index = {node: i for i, node in enumerate(ids)}
    u, v, capacity, latency = _link_arrays(graph, index)
    count = len(ids)
    # Both directions of every link, sorted by (row, column): a CSR layout.
    row, column = np.concatenate([u, v]), np.concatenate([v, u])
    order = np.lexsort((column, row))
    row, column = row[order], column[order]
    link = np.tile(np.arange(len(u)), 2)[order]
    slot = np.empty_like(order)
    slot[order] = np.arange(len(order))  # direction (u -> v links, then v -> u links) -> slot
    # scipy's csgraph routines take 32-bit indices without a conversion when they fit.
    index_type = np.int32 if len(row) < np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(count + 1, dtype=index_type)
    np.cumsum(np.bincount(row, minlength=count), out=indptr[1:])
    ids_array = np.empty(count, dtype=object)
    ids_array[:] = ids
    directions = zip(ids_array[row].tolist(), ids_array[column].tolist(), strict=True)
    pairs = np.fromiter(directions, dtype=object, count=len(row))
    return LinkTable(
        ids=ids_array,
        index=index,
        u=u,
        v=v,
        capacity=capacity,
        latency=latency,
        indptr=indptr,
        indices=column.astype(index_type),
        row=row,
        link=link,
        slot_uv=slot[: len(u)],
        slot_vu=slot[len(u) :],
        pairs=pairs,
    )


def _link_arrays(
    graph: nx.Graph, index: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Endpoint indices, capacities and latencies of every link, in ``graph.edges`` order.

    The same walk ``graph.edges(data=True)`` does (each link once, from the
    endpoint whose adjacency comes first), without the per-link view overhead.
    """
    ends, others, links = [], [], []
    seen: set[str] = set()
    for node, neighbours in graph.adjacency():
        for neighbour, link in neighbours.items():
            if neighbour not in seen:
                ends.append(node)
                others.append(neighbour)
                links.append(link)
        seen.add(node)
    count = len(links)
    return (
        np.fromiter(map(index.__getitem__, ends), dtype=np.int64, count=count),
        np.fromiter(map(index.__getitem__, others), dtype=np.int64, count=count),
        np.fromiter(map(operator.itemgetter("capacity"), links), dtype=float, count=count),
        np.fromiter(map(operator.itemgetter("latency"), links), dtype=float, count=count),
    )
