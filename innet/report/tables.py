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
  exchange counts what the nodes sent, retransmissions what the links lost.

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

import numpy as np
import pandas as pd

from innet.topology.model import node_key

__all__ = [
    "TRAINING_PHASES",
    "link_totals",
    "training_exchange",
    "training_exchange_per_epoch",
    "retransmitted_bytes",
    "links_used",
    "undirected_link_totals",
    "busiest_links",
]

TRAINING_PHASES = ("forward", "backward")

_SUMMED = ["messages", "nbytes", "nbytes_per_seed", "retransmissions", "retransmitted_bytes",
           "retransmitted_bytes_per_seed"]  # fmt: skip


def link_totals(exchanges: pd.DataFrame) -> pd.DataFrame:
    """Messages and bytes per variant, directed link, phase and payload.

    Columns: ``variant, src, dst, phase, payload, messages, nbytes,
    nbytes_per_seed, retransmissions, retransmitted_bytes,
    retransmitted_bytes_per_seed``. ``messages``, ``nbytes``, ``retransmissions``
    (copies sent again) and ``retransmitted_bytes`` are summed over seeds; the
    ``_per_seed`` columns divide by the number of seeds of that variant found in
    the table. Rows are sorted by variant, then link (node order), phase and
    payload.
    """
    keys = ["variant", "src", "dst", "phase", "payload"]
    columns = [*keys, *_SUMMED]
    if exchanges.empty:
        return pd.DataFrame(columns=columns)
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
    return order[columns].reset_index(drop=True)


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
    """
    columns = ["variant", "u", "v", *_SUMMED]
    training = link_totals[link_totals["phase"].isin(TRAINING_PHASES)]
    if training.empty:
        return pd.DataFrame(columns=columns)
    u, v = _undirected(training["src"], training["dst"])
    training = training.assign(u=u, v=v)
    for column in _SUMMED:
        if column not in training:
            training[column] = 0
    return training.groupby(["variant", "u", "v"], sort=False)[_SUMMED].sum().reset_index()[columns]


def busiest_links(
    link_totals: pd.DataFrame, n: int = 10, by: str = "nbytes_per_seed"
) -> pd.DataFrame:
    """The ``n`` links with most training bytes per seed (or most ``by``), for each variant.

    Columns: ``variant, rank, u, v, messages, nbytes_per_seed, share,
    retransmitted_bytes_per_seed`` where ``share`` is the link's fraction of that
    variant's training exchange. ``by`` is any column of
    :func:`undirected_link_totals` (``retransmitted_bytes_per_seed``: the links
    that lost the most). Ties are broken by node order, so the table is
    deterministic.
    """
    columns = ["variant", "rank", "u", "v", "messages", "nbytes_per_seed", "share",
               "retransmitted_bytes_per_seed"]  # fmt: skip
    links = undirected_link_totals(link_totals)
    if links.empty:
        return pd.DataFrame(columns=columns)
    rank = _node_ranks(links["u"], links["v"])
    links = links.assign(
        _key=-links[by].astype(float), _u=links["u"].map(rank), _v=links["v"].map(rank)
    )
    parts = []
    for _variant, group in links.groupby("variant", sort=False):
        total = group["nbytes_per_seed"].sum()
        top = group.sort_values(["_key", "_u", "_v"]).head(n)
        parts.append(
            top.assign(
                rank=np.arange(1, len(top) + 1),
                share=top["nbytes_per_seed"] / total if total > 0 else 0.0,
            )
        )
    return pd.concat(parts, ignore_index=True)[columns]


def _training_rows(exchanges: pd.DataFrame) -> pd.DataFrame:
    return exchanges[exchanges["phase"].isin(TRAINING_PHASES)]


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
