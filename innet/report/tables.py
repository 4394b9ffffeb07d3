"""Totals over the exchange records: bytes per link, per seed and per epoch.

Every row of the exchanges table is one transfer of one tensor over one link
(docs/numbers.md). The functions here only add those rows up, so every number
they return can be checked against the raw table by hand:

- *training exchange*: the ``nbytes`` of all ``forward`` and ``backward``
  records (evaluation traffic is reported separately, never counted in it);
- a *link* is undirected: forward latents go ``src -> dst`` and the gradients
  come back ``dst -> src`` over the same link, and both count towards it;
- *retransmitted bytes*: on a lossy link a record was sent ``attempts`` times
  (column ``attempts``; 1 when the column is absent, as in runs made before
  lossy links existed), so ``(attempts - 1) * nbytes`` bytes went over the link
  again. They are reported next to the training exchange, never in it: the
  exchange counts what the nodes sent, retransmissions what the links lost;
- *busy time* of a link direction: its transmission time, ``8 × nbytes /
  capacity`` for every copy of every training record it carried (copies sent
  again on a lossy link count, messages lost into a failed link do not: they
  take no network time), per training step (summed over seeds and steps, then
  divided by the number of training steps of all seeds);
- *step time*: the variant's simulated training time per training step
  (``sim_time_s`` of ``metrics.csv`` summed over epochs and seeds, divided by
  the same number of steps);
- *utilisation*: busy time per step / step time, the fraction of the training
  time that direction spent transmitting. A link's utilisation is that of its
  busier direction (each direction transmits on its own); the link with the
  highest one is the bottleneck, which is how :func:`busiest_links` ranks them.
  Capacities are the topology's (``topology.json``): a capacity changed by an
  event is not taken into account.

>>> import pandas as pd
>>> exchanges = pd.DataFrame({"variant": ["v", "v"], "seed": [0, 0], "epoch": [0, 0],
...     "phase": ["forward", "backward"], "src": ["s", "f"], "dst": ["f", "s"],
...     "payload": ["latent", "grad"], "nbytes": [256, 256]})
>>> int(training_exchange(exchanges)["v", 0])
512
>>> int(links_used(exchanges)["v", 0])
1
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from innet.core.netsim import NetworkModel
from innet.core.phases import get_phase, training_phases
from innet.core.topology.model import Topology, node_key

if TYPE_CHECKING:
    from innet.rundir.io import RunData

__all__ = [
    "TIME_COLUMNS",
    "link_totals",
    "link_table",
    "training_steps",
    "training_exchange",
    "training_exchange_per_epoch",
    "retransmitted_bytes",
    "links_used",
    "undirected_link_totals",
    "busiest_links",
]

_SUMMED = [
    "messages",
    "nbytes",
    "nbytes_per_seed",
    "retransmissions",
    "retransmitted_bytes",
    "retransmitted_bytes_per_seed",
]
TIME_COLUMNS = ["capacity_bps", "latency_s", "busy_s_per_step", "step_time_s", "utilisation"]
"""Columns :func:`link_totals` adds when it is given the topology (see the module docstring)."""


def link_totals(
    exchanges: pd.DataFrame,
    topology: Topology | None = None,
    *,
    train_time_s: pd.Series | None = None,
    train_steps: pd.Series | None = None,
) -> pd.DataFrame:
    """Messages and bytes per variant, directed link, phase and payload.

    Columns: ``variant, src, dst, phase, payload, messages, nbytes,
    nbytes_per_seed, retransmissions, retransmitted_bytes,
    retransmitted_bytes_per_seed``. ``messages``, ``nbytes``, ``retransmissions``
    (copies sent again) and ``retransmitted_bytes`` are summed over seeds; the
    ``_per_seed`` columns divide by the number of seeds of that variant found in
    the table. Rows are sorted by variant, then link (node order), phase and
    payload.

    With the ``topology``, the :data:`TIME_COLUMNS` follow: the link's
    ``capacity_bps`` and ``latency_s``, and for training rows the busy time per
    training step of that row's messages, the variant's step time and the
    utilisation (see the module docstring; empty for evaluation rows).
    ``train_time_s``: the simulated training time of each variant, summed over
    its seeds (without it, no step time and no utilisation); ``train_steps``:
    its training steps, summed over seeds (default: the distinct training steps
    found in ``exchanges``). :func:`link_table` fills both from a run.

    >>> import networkx as nx
    >>> graph = nx.Graph([("s", "f")])
    >>> graph.add_edge("s", "f", capacity=1e6, latency=1e-3)
    >>> exchanges = pd.DataFrame({"variant": ["v", "v"], "seed": [0, 0], "epoch": [0, 0],
    ...     "step": [0, 1], "phase": ["forward", "forward"], "src": ["s", "s"],
    ...     "dst": ["f", "f"], "payload": ["latent", "latent"], "nbytes": [250, 250]})
    >>> row = link_totals(exchanges, Topology("t", graph),
    ...                   train_time_s=pd.Series({"v": 0.008})).iloc[0]
    >>> float(row.busy_s_per_step), float(row.step_time_s), float(row.utilisation)
    (0.002, 0.004, 0.5)
    """
    keys = ["variant", "src", "dst", "phase", "payload"]
    columns = [*keys, *_SUMMED]
    if exchanges.empty:
        return pd.DataFrame(columns=columns + (TIME_COLUMNS if topology is not None else []))
    if topology is not None:
        exchanges = _per_hop(exchanges, topology)
    extra = _extra_copies(exchanges)
    totals = (
        exchanges.assign(_extra=extra, _extra_bytes=extra * exchanges["nbytes"])
        .groupby(keys, sort=False)
        .agg(
            messages=("nbytes", "size"),
            nbytes=("nbytes", "sum"),
            retransmissions=("_extra", "sum"),
            retransmitted_bytes=("_extra_bytes", "sum"),
        )
        .reset_index()
    )
    seeds = totals["variant"].map(exchanges.groupby("variant")["seed"].nunique())
    for column in ("messages", "nbytes", "retransmissions", "retransmitted_bytes"):
        totals[column] = totals[column].astype("int64")
    totals["nbytes_per_seed"] = totals["nbytes"] / seeds
    totals["retransmitted_bytes_per_seed"] = totals["retransmitted_bytes"] / seeds
    rank = _node_ranks(totals["src"], totals["dst"])
    order = totals.assign(_src=totals["src"].map(rank), _dst=totals["dst"].map(rank)).sort_values(
        ["variant", "_src", "_dst", "phase", "payload"]
    )
    totals = order[columns].reset_index(drop=True)
    if topology is None:
        return totals
    return _with_time(totals, exchanges, topology, train_time_s, train_steps)


def _per_hop(exchanges: pd.DataFrame, topology: Topology) -> pd.DataFrame:
    """``exchanges`` with each routed message between unlinked nodes as one row per hop.

    A message of a routed phase (:class:`~innet.core.records.Phase`) may join nodes
    that share no link; the network model carries it over the capacity-aware
    shortest path (:meth:`~innet.core.netsim.NetworkModel.route`), and each link on
    that path carries its bytes.
    """
    routed = [phase for phase in exchanges["phase"].unique() if get_phase(phase).routed]
    if not routed:
        return exchanges
    graph = topology.graph
    linked = [graph.has_edge(s, d) for s, d in zip(exchanges["src"], exchanges["dst"], strict=True)]
    moving = exchanges["phase"].isin(routed).to_numpy() & ~np.array(linked, dtype=bool)
    if not moving.any():
        return exchanges
    model = NetworkModel(topology)
    relayed = exchanges[moving]
    hops = [
        list(itertools.pairwise(model.route(src, dst, int(nbytes))))
        for src, dst, nbytes in zip(relayed["src"], relayed["dst"], relayed["nbytes"], strict=True)
    ]
    relayed = relayed.assign(_hop=hops).explode("_hop")
    relayed["src"] = relayed["_hop"].str[0]
    relayed["dst"] = relayed["_hop"].str[1]
    return pd.concat([exchanges[~moving], relayed.drop(columns="_hop")], ignore_index=True)


def link_table(run: RunData) -> pd.DataFrame:
    """:func:`link_totals` of a run with its time columns: what ``links.csv`` holds.

    Training time per variant from ``metrics.csv`` (``sim_time_s`` over epochs
    and seeds), training steps from ``steps.csv`` (:func:`training_steps`).
    """
    metrics = run.metrics
    train_time = metrics.groupby("variant")["sim_time_s"].sum(min_count=1)
    return link_totals(
        run.exchanges,
        run.topology,
        train_time_s=train_time,
        train_steps=training_steps(run.exchanges, run.steps),
    )


def training_steps(exchanges: pd.DataFrame, steps: pd.DataFrame | None = None) -> pd.Series:
    """Training steps per variant, summed over its seeds.

    From ``steps`` (the rows of ``steps.csv``, ``kind == "train"``) when given,
    else the distinct ``(seed, step)`` of the training records.

    >>> steps = pd.DataFrame({"variant": ["v"] * 3, "seed": [0, 0, 1],
    ...     "kind": ["train", "eval", "train"], "epoch": [0, 0, 0], "step": [0, 0, 0]})
    >>> int(training_steps(pd.DataFrame(), steps)["v"])
    2
    """
    if steps is not None and {"variant", "kind"} <= set(steps.columns):
        train = steps[steps["kind"] == "train"]
        return train.groupby("variant").size().astype("int64")
    training = _training_rows(exchanges)
    if training.empty:
        return pd.Series(dtype="int64")
    distinct = training[["variant", "seed", "step"]].drop_duplicates()
    return distinct.groupby("variant").size().astype("int64")


def _with_time(
    totals: pd.DataFrame,
    exchanges: pd.DataFrame,
    topology: Topology,
    train_time_s: pd.Series | None,
    train_steps: pd.Series | None,
) -> pd.DataFrame:
    """``totals`` with the :data:`TIME_COLUMNS` (see :func:`link_totals`)."""
    graph = topology.graph

    def attribute(name: str) -> dict[tuple[str, str], float]:
        pairs = totals[["src", "dst"]].drop_duplicates().itertuples(index=False)
        return {
            (src, dst): float(graph.edges[src, dst].get(name) or 0.0)
            if graph.has_edge(src, dst)
            else np.nan
            for src, dst in pairs
        }

    links = list(zip(totals["src"], totals["dst"], strict=True))
    capacity = attribute("capacity")
    latency = attribute("latency")
    totals = totals.assign(
        capacity_bps=[capacity[link] for link in links],
        latency_s=[latency[link] for link in links],
    )
    training = _training_rows(exchanges)
    if "lost" in training:
        training = training[~training["lost"].astype(bool)]
    keys = ["variant", "src", "dst", "phase", "payload"]
    # bits sent per (variant, link, phase, payload), then divided by the link's capacity
    sent = training.assign(_bits=8.0 * training["nbytes"] * (_extra_copies(training) + 1))
    bits = sent.groupby(keys, observed=True)["_bits"].sum()
    link_capacity = np.array(
        [
            capacity.get((src, dst), np.nan)
            for src, dst in zip(
                bits.index.get_level_values("src"), bits.index.get_level_values("dst"), strict=True
            )
        ],
        dtype=float,
    )
    busy = bits / np.where(link_capacity > 0, link_capacity, np.nan)
    if train_steps is None:
        train_steps = training_steps(exchanges)
    steps = totals["variant"].map(train_steps).astype(float)
    steps = steps.where(steps > 0)
    row_busy = pd.Series(
        busy.reindex(pd.MultiIndex.from_frame(totals[keys])).to_numpy(), index=totals.index
    )
    is_training = totals["phase"].isin(training_phases())
    busy_per_step = (row_busy / steps).where(is_training)
    if train_time_s is None:
        step_time = pd.Series(np.nan, index=totals.index)
    else:
        step_time = totals["variant"].map(train_time_s).astype(float) / steps
    utilisation = busy_per_step / step_time.where(step_time > 0)
    return totals.assign(
        busy_s_per_step=busy_per_step.astype(float),
        step_time_s=step_time.astype(float),
        utilisation=utilisation.astype(float),
    )


def training_exchange(exchanges: pd.DataFrame) -> pd.Series:
    """Training exchange in bytes, indexed by ``(variant, seed)``.

    The sum of ``nbytes`` over forward and backward records. Every
    ``(variant, seed)`` present in the table appears, with 0 when it has
    evaluation records only.
    """
    totals = _training_rows(exchanges).groupby(["variant", "seed"])["nbytes"].sum()
    return _per_variant_seed(totals, exchanges, "train_exchange_bytes")


def retransmitted_bytes(exchanges: pd.DataFrame) -> pd.Series:
    """Training bytes sent again over lossy links, indexed by ``(variant, seed)``.

    The sum of ``(attempts - 1) * nbytes`` over forward and backward records;
    0 for every ``(variant, seed)`` when the table has no ``attempts`` column.
    """
    training = _training_rows(exchanges)
    extra = training.assign(extra=_extra_copies(training) * training["nbytes"])
    totals = extra.groupby(["variant", "seed"])["extra"].sum()
    return _per_variant_seed(totals, exchanges, "retransmitted_bytes")


def training_exchange_per_epoch(exchanges: pd.DataFrame) -> pd.DataFrame:
    """Training bytes per ``variant, seed, epoch``, with the running total over epochs.

    Columns: ``variant, seed, epoch, nbytes, nbytes_cum``.
    """
    training = _training_rows(exchanges)
    per_epoch = (
        training.groupby(["variant", "seed", "epoch"])["nbytes"]
        .sum()
        .astype("int64")
        .reset_index()
        .sort_values(["variant", "seed", "epoch"])
    )
    per_epoch["nbytes_cum"] = per_epoch.groupby(["variant", "seed"])["nbytes"].cumsum()
    return per_epoch.reset_index(drop=True)


def links_used(exchanges: pd.DataFrame) -> pd.Series:
    """Number of distinct undirected links with training records, by ``(variant, seed)``."""
    training = _training_rows(exchanges)
    if training.empty:
        return _per_variant_seed(pd.Series(dtype="int64"), exchanges, "links_used")
    directed = training[["variant", "seed", "src", "dst"]].drop_duplicates()
    u, v = _undirected(directed["src"], directed["dst"])
    links = pd.DataFrame(
        {"variant": directed["variant"], "seed": directed["seed"], "u": u, "v": v}
    ).drop_duplicates()
    counts = links.groupby(["variant", "seed"]).size()
    return _per_variant_seed(counts, exchanges, "links_used")


def undirected_link_totals(link_totals: pd.DataFrame) -> pd.DataFrame:
    """Training traffic per variant and undirected link, both directions summed.

    Takes the output of :func:`link_totals`, keeps the forward and backward
    rows and returns ``variant, u, v, messages, nbytes, nbytes_per_seed,
    retransmissions, retransmitted_bytes, retransmitted_bytes_per_seed`` where
    ``u`` precedes ``v`` in node order (the retransmission columns are 0 when
    ``link_totals`` lacks them).

    When ``link_totals`` has the :data:`TIME_COLUMNS`, these follow:
    ``capacity_bps, latency_s``, then ``busy_s_per_step`` and ``utilisation`` of
    the link's busier direction (each direction's rows summed), that direction,
    ``bottleneck_src, bottleneck_dst``, and ``balanced``: whether both
    directions are equally busy (then the bottleneck direction is the one that
    carries forward traffic, or the first in node order).
    """
    timed = "utilisation" in link_totals.columns
    time_columns = [
        "capacity_bps",
        "latency_s",
        "busy_s_per_step",
        "utilisation",
        "bottleneck_src",
        "bottleneck_dst",
        "balanced",
    ]
    columns = ["variant", "u", "v", *_SUMMED, *(time_columns if timed else [])]
    training = link_totals[link_totals["phase"].isin(training_phases())]
    if training.empty:
        return pd.DataFrame(columns=columns)
    u, v = _undirected(training["src"], training["dst"])
    training = training.assign(u=u, v=v)
    for column in _SUMMED:
        if column not in training:
            training[column] = 0
    links = training.groupby(["variant", "u", "v"], sort=False)[_SUMMED].sum().reset_index()
    if not timed:
        return links[columns]
    by_direction = training.assign(forward=training["phase"] == "forward").groupby(
        ["variant", "u", "v", "src", "dst"], sort=False
    )
    directions = by_direction.agg(
        capacity_bps=("capacity_bps", "first"),
        latency_s=("latency_s", "first"),
        forward=("forward", "any"),
    )
    for column in ("busy_s_per_step", "utilisation"):  # empty (not 0) where nothing is timed
        directions[column] = by_direction[column].sum(min_count=1)
    directions = directions.reset_index()
    # the busier direction: highest busy time (so utilisation), forward traffic on ties
    busy = directions["busy_s_per_step"].fillna(-1.0)
    most = busy.groupby([directions["variant"], directions["u"], directions["v"]]).transform("max")
    directions["_busy"] = np.where(np.isclose(busy, most, rtol=1e-9, atol=0.0), most, busy)
    directions["_first"] = directions["src"] == directions["u"]
    busier = directions.sort_values(
        ["_busy", "forward", "_first"], ascending=False, kind="stable"
    ).drop_duplicates(["variant", "u", "v"])
    counts = directions.groupby(["variant", "u", "v"])["_busy"].agg(["size", "nunique"])
    balanced = ((counts["size"] == 2) & (counts["nunique"] == 1)).rename("balanced")
    busier = busier.merge(balanced.reset_index(), on=["variant", "u", "v"], how="left")
    busier = busier.rename(columns={"src": "bottleneck_src", "dst": "bottleneck_dst"})
    merged = links.merge(
        busier[["variant", "u", "v", *time_columns]], on=["variant", "u", "v"], how="left"
    )
    return merged[columns]


def busiest_links(link_totals: pd.DataFrame, n: int = 10, by: str | None = None) -> pd.DataFrame:
    """The ``n`` busiest links of each variant, by utilisation (or by bytes, or by ``by``).

    Columns: ``variant, rank, u, v, messages, nbytes_per_seed, share,
    retransmitted_bytes_per_seed`` where ``share`` is the link's fraction of that
    variant's training exchange, then the time columns of
    :func:`undirected_link_totals` when ``link_totals`` has them.

    ``by`` is any column of :func:`undirected_link_totals`. By default the
    ``utilisation`` of the link's busier direction when ``link_totals`` has it
    (the bottleneck first; ties by bytes), else ``nbytes_per_seed``;
    ``retransmitted_bytes_per_seed`` gives the links that lost the most. Ties
    are broken by node order, so the table is deterministic.
    """
    columns = [
        "variant",
        "rank",
        "u",
        "v",
        "messages",
        "nbytes_per_seed",
        "share",
        "retransmitted_bytes_per_seed",
    ]
    links = undirected_link_totals(link_totals)
    if "utilisation" in links.columns:
        columns += [
            "capacity_bps",
            "latency_s",
            "busy_s_per_step",
            "utilisation",
            "bottleneck_src",
            "bottleneck_dst",
            "balanced",
        ]
    if links.empty:
        return pd.DataFrame(columns=columns)
    if by is None:
        timed = "utilisation" in links.columns and links["utilisation"].notna().any()
        by = "utilisation" if timed else "nbytes_per_seed"
    rank = _node_ranks(links["u"], links["v"])
    links = links.assign(
        _key=-links[by].astype(float).fillna(-np.inf),
        _bytes=-links["nbytes_per_seed"].astype(float),
        _u=links["u"].map(rank),
        _v=links["v"].map(rank),
    )
    parts = []
    for _variant, group in links.groupby("variant", sort=False):
        total = group["nbytes_per_seed"].sum()
        top = group.sort_values(["_key", "_bytes", "_u", "_v"]).head(n)
        parts.append(
            top.assign(
                rank=np.arange(1, len(top) + 1),
                share=top["nbytes_per_seed"] / total if total > 0 else 0.0,
            )
        )
    return pd.concat(parts, ignore_index=True)[columns]


def _training_rows(exchanges: pd.DataFrame) -> pd.DataFrame:
    return exchanges[exchanges["phase"].isin(training_phases())]


def _per_variant_seed(totals: pd.Series, exchanges: pd.DataFrame, name: str) -> pd.Series:
    """``totals`` as int64 for every ``(variant, seed)`` of the table, 0 where it has none."""
    index = pd.MultiIndex.from_frame(
        exchanges[["variant", "seed"]].drop_duplicates().sort_values(["variant", "seed"])
    )
    return totals.reindex(index, fill_value=0).astype("int64").rename(name)


def _extra_copies(exchanges: pd.DataFrame) -> pd.Series:
    """Copies of each record sent again: ``attempts - 1`` (0 without an ``attempts`` column)."""
    if "attempts" not in exchanges:
        return pd.Series(0, index=exchanges.index, dtype="int64")
    return (exchanges["attempts"].fillna(1).astype("int64") - 1).clip(lower=0)


def _node_ranks(*columns: pd.Series) -> dict[str, int]:
    """Position of every node id found in ``columns`` in node order."""
    ids = pd.unique(pd.concat(columns, ignore_index=True))
    return {node: rank for rank, node in enumerate(sorted(ids, key=node_key))}


def _undirected(src: pd.Series, dst: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The ends of each link as ``(u, v)`` arrays, ``u`` first in node order."""
    rank = _node_ranks(src, dst)
    swap = (src.map(rank) > dst.map(rank)).to_numpy()
    u = np.where(swap, dst.to_numpy(), src.to_numpy())
    v = np.where(swap, src.to_numpy(), dst.to_numpy())
    return u, v
