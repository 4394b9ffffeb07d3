"""Report sections that appear only when a run has something to say about them.

Each reads what :func:`~innet.rundir.io.load_run` loaded; none reads files.

- **Events** (``events.json``): what each event did to each variant's plan,
  the messages lost in the event step, the sensors cut off, and the accuracy
  just before the event, at the end of its epoch and at the end of the run.
- **Placement** (``placement.json``, torch.distributed runs): how many ranks,
  which rank ran which node, the links between ranks and the bytes that really
  crossed a process boundary.
- **Compute** (``nodes.csv`` with node FLOP/s): the module FLOPs of each node
  and the compute time it adds to every step; the slowest nodes are the
  stragglers of the simulated time.

Each function returns Markdown (empty when the run has nothing to show).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from innet.report.mdtable import markdown_table

if TYPE_CHECKING:
    from innet.rundir.io import RunData

__all__ = ["events_section", "placement_section", "compute_section", "event_steps"]


def event_steps(run: RunData, variant: str) -> list[tuple[int, int, str]]:
    """The (epoch, step, description) of each event of a variant (empty without events)."""
    return [
        (change["epoch"], change["step"], change["event"]) for change in run.events.get(variant, [])
    ]


def events_section(run: RunData, metric: str | None) -> str:
    """Events, plan repairs, lost messages and the family's main ``metric`` around each event."""
    events, exchanges, metrics = run.events, run.exchanges, run.metrics
    if not events:
        return ""
    if metric is None or metric not in metrics:
        metric = None
    accuracy = (
        metrics.groupby(["variant", "epoch"])[metric].mean() if metric else pd.Series(dtype=float)
    )
    last_epoch = metrics.groupby("variant")["epoch"].max()
    lost = exchanges[exchanges["lost"]] if "lost" in exchanges else exchanges.iloc[0:0]
    seeds = exchanges.groupby("variant")["seed"].nunique()
    rows = []
    for variant, changes in events.items():
        for change in changes:
            epoch, step = change["epoch"], change["step"]
            in_step = lost[(lost["variant"] == variant) & (lost["step"] == step)]
            n_seeds = max(int(seeds.get(variant, 1)), 1)
            per_seed = len(in_step) / n_seeds
            lost_bytes = in_step["nbytes"].sum() / n_seeds

            def acc(at_epoch: int, variant: str = variant) -> str:
                value = accuracy.get((variant, at_epoch))
                return "—" if value is None or pd.isna(value) else f"{value:.3f}"

            edges = [f"−{a}→{b}" for a, b in change["removed_edges"]]
            edges += [f"+{a}→{b}" for a, b in change["added_edges"]]
            rows.append(
                [
                    variant,
                    f"{epoch}/{step}",
                    change["event"],
                    f"{per_seed:g} ({lost_bytes:,.0f} B)",
                    ", ".join(edges) or "unchanged",
                    ", ".join(change["cut_off_sensors"]) or "none",
                    acc(epoch - 1),
                    acc(epoch),
                    acc(int(last_epoch.get(variant, epoch))),
                ]
            )
    header = [
        "variant",
        "epoch/step",
        "event",
        "lost messages / seed",
        "plan change",
        "sensors cut off",
        f"{metric or 'metric'} before",
        "end of epoch",
        "end of run",
    ]
    return (
        "## Events\n\n"
        "An event happens during its step: messages sent over a link that has just failed "
        "are lost (sent and counted, never delivered); from the next step on training "
        "continues on the repaired plan with the same node modules. "
        f"{(metric or 'The metric').capitalize()} is the mean over seeds at the end of the "
        "epoch before the event, of the event's epoch, and of the run.\n\n"
        + markdown_table(header, rows)
        + "\n"
    )


def placement_section(run: RunData) -> str:
    """Ranks, node placement, cross-rank links and bytes on the wire of a distributed run."""
    placement = run.placement
    if not placement:
        return ""
    rows = []
    for variant, info in placement["variants"].items():
        by_rank: dict[int, list[str]] = {}
        for node, rank in info["ranks"].items():
            by_rank.setdefault(rank, []).append(node)
        wire = info.get("bytes_on_wire", {})
        mean_wire = sum(wire.values()) / len(wire) if wire else 0
        rows.append(
            [
                variant,
                str(info["cross_rank_links"]),
                f"{mean_wire:,.0f}",
                "; ".join(f"{rank}: {', '.join(nodes)}" for rank, nodes in sorted(by_rank.items())),
            ]
        )
    return (
        f"## Placement\n\n{placement['world_size']} torch.distributed ranks "
        f"({placement['backend']}, {placement['device']}). Messages between nodes on the same "
        "rank stay in memory; the others cross a process boundary. Bytes on the wire are "
        "counted by the transport (tensor bytes handed to torch.distributed, all phases).\n\n"
        + markdown_table(
            ["variant", "cross-rank links", "bytes on the wire / seed", "ranks: nodes"],
            rows,
            ["left", "right", "right", "left"],
        )
        + "\n"
    )


def compute_section(run: RunData, n: int = 5) -> str:
    """The slowest nodes' compute time per training step."""
    if run.nodes is None:
        return ""
    nodes = run.nodes.copy()
    if nodes.empty or not nodes["compute_flops"].notna().any():
        return ""
    nodes["compute_s"] = nodes["forward_s"] + nodes["backward_s"]
    rows = []
    for variant, group in nodes.groupby("variant", sort=False):
        for _, node in group.nlargest(n, "compute_s").iterrows():
            rows.append(
                [
                    str(variant),
                    str(node["label"]),
                    str(node["role"]),
                    f"{int(node['flops_per_sample']):,}",
                    f"{node['compute_flops']:.3g}",
                    f"{1e3 * node['compute_s']:.3f}",
                ]
            )
    return (
        "## Compute\n\nNodes with a `compute` rate (FLOP/s) add compute time before each of "
        "their sends: module FLOPs per sample × batch / rate forward, twice that backward. "
        f"The {n} slowest nodes per variant (one full training batch):\n\n"
        + markdown_table(
            ["variant", "node", "role", "FLOPs / sample", "FLOP/s", "compute ms / step"],
            rows,
            ["left", "left", "left", "right", "right", "right"],
        )
        + "\n"
    )
