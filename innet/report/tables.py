"""Totals over the exchange records: bytes per link, per seed and per epoch.

Every row of the exchanges table is one transfer of one tensor over one link
(DESIGN.md §2). The functions here only add those rows up, so every number
they return can be checked against the raw table by hand:

- *training exchange*: the ``nbytes`` of all ``forward`` and ``backward``
  records (evaluation traffic is reported separately, never counted in it);
- a *link* is undirected: forward latents go ``src -> dst`` and the gradients
  come back ``dst -> src`` over the same link, and both count towards it.

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

import pandas as pd

from innet.topology.model import node_key

__all__ = [
    "TRAINING_PHASES",
    "link_totals",
    "training_exchange",
    "training_exchange_per_epoch",
    "links_used",
    "undirected_link_totals",
    "busiest_links",
]

TRAINING_PHASES = ("forward", "backward")


def link_totals(exchanges: pd.DataFrame) -> pd.DataFrame:
    """Messages and bytes per variant, directed link, phase and payload.

    Columns: ``variant, src, dst, phase, payload, messages, nbytes,
    nbytes_per_seed``; ``messages`` and ``nbytes`` are summed over seeds and
    ``nbytes_per_seed`` divides by the number of seeds of that variant found
    in the table. Rows are sorted by variant, then link, phase and payload.
    """
    keys = ["variant", "src", "dst", "phase", "payload"]
    columns = [*keys, "messages", "nbytes", "nbytes_per_seed"]
    if exchanges.empty:
        return pd.DataFrame(columns=columns)
    totals = (
        exchanges.groupby(keys, sort=False)
        .agg(messages=("nbytes", "size"), nbytes=("nbytes", "sum"))
        .reset_index()
    )
    seeds = exchanges.groupby("variant")["seed"].nunique()
    totals["messages"] = totals["messages"].astype("int64")
    totals["nbytes"] = totals["nbytes"].astype("int64")
    totals["nbytes_per_seed"] = totals["nbytes"] / totals["variant"].map(seeds)
    order = sorted(
        range(len(totals)),
        key=lambda i: (
            totals.at[i, "variant"],
            node_key(totals.at[i, "src"]),
            node_key(totals.at[i, "dst"]),
            totals.at[i, "phase"],
            totals.at[i, "payload"],
        ),
    )
    return totals.loc[order, columns].reset_index(drop=True)


def training_exchange(exchanges: pd.DataFrame) -> pd.Series:
    """Training exchange in bytes, indexed by ``(variant, seed)``.

    The sum of ``nbytes`` over forward and backward records. Every
    ``(variant, seed)`` present in the table appears, with 0 when it has
    evaluation records only.
    """
    training = _training_rows(exchanges)
    totals = training.groupby(["variant", "seed"])["nbytes"].sum()
    index = pd.MultiIndex.from_frame(
        exchanges[["variant", "seed"]].drop_duplicates().sort_values(["variant", "seed"])
    )
    return totals.reindex(index, fill_value=0).astype("int64").rename("train_exchange_bytes")


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
    index = pd.MultiIndex.from_frame(
        exchanges[["variant", "seed"]].drop_duplicates().sort_values(["variant", "seed"])
    )
    if training.empty:
        return pd.Series(0, index=index, dtype="int64", name="links_used")
    links = training.assign(link=_undirected(training["src"], training["dst"]))
    counts = links.groupby(["variant", "seed"])["link"].nunique()
    return counts.reindex(index, fill_value=0).astype("int64").rename("links_used")


def undirected_link_totals(link_totals: pd.DataFrame) -> pd.DataFrame:
    """Training traffic per variant and undirected link, both directions summed.

    Takes the output of :func:`link_totals`, keeps the forward and backward
    rows and returns ``variant, u, v, messages, nbytes, nbytes_per_seed``
    where ``u`` precedes ``v`` in node order.
    """
    columns = ["variant", "u", "v", "messages", "nbytes", "nbytes_per_seed"]
    training = link_totals[link_totals["phase"].isin(TRAINING_PHASES)]
    if training.empty:
        return pd.DataFrame(columns=columns)
    ends = [
        sorted(pair, key=node_key) for pair in zip(training["src"], training["dst"], strict=True)
    ]
    training = training.assign(u=[pair[0] for pair in ends], v=[pair[1] for pair in ends])
    totals = (
        training.groupby(["variant", "u", "v"], sort=False)[
            ["messages", "nbytes", "nbytes_per_seed"]
        ]
        .sum()
        .reset_index()
    )
    return totals[columns]


def busiest_links(link_totals: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` links with most training bytes per seed, for each variant.

    Columns: ``variant, rank, u, v, messages, nbytes_per_seed, share`` where
    ``share`` is the link's fraction of that variant's training exchange.
    Ties are broken by node order, so the table is deterministic.
    """
    columns = ["variant", "rank", "u", "v", "messages", "nbytes_per_seed", "share"]
    links = undirected_link_totals(link_totals)
    if links.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for variant, group in links.groupby("variant", sort=False):
        total = group["nbytes_per_seed"].sum()
        ranked = sorted(
            group.itertuples(index=False),
            key=lambda row: (-row.nbytes_per_seed, node_key(row.u), node_key(row.v)),
        )
        for rank, row in enumerate(ranked[:n], start=1):
            share = row.nbytes_per_seed / total if total > 0 else 0.0
            rows.append((variant, rank, row.u, row.v, row.messages, row.nbytes_per_seed, share))
    return pd.DataFrame(rows, columns=columns)


def _training_rows(exchanges: pd.DataFrame) -> pd.DataFrame:
    return exchanges[exchanges["phase"].isin(TRAINING_PHASES)]


def _undirected(src: pd.Series, dst: pd.Series) -> list[tuple[str, str]]:
    return [tuple(sorted(pair, key=node_key)) for pair in zip(src, dst, strict=True)]
