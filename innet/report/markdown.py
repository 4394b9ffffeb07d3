"""The Markdown report: the headline table, one sentence per comparison, and the details.

:func:`headline_table` renders one row per variant from the summary (the
runner prints it to the terminal as well; columns are padded so it reads as a
table there too). :func:`render_report` writes the whole ``report.md``: what
was run, the headline table, each comparison in words, how to read the
numbers, the routing plans, the busiest links (the ten busiest per variant and
one line of totals, so it stays short on a network of thousands of links), the
retransmissions on lossy links when there were any, and the figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from innet.records import FIGURES_DIR
from innet.report.figures import topology_figure_name
from innet.report.mdtable import markdown_table
from innet.report.sections import compute_section, events_section, placement_section
from innet.report.summary import reduction
from innet.report.tables import busiest_links, undirected_link_totals
from innet.units import format_duration

if TYPE_CHECKING:
    from innet.families import FamilyReport
    from innet.report.rundir import RunData

__all__ = [
    "MISSING",
    "headline_table",
    "render_report",
    "format_bytes",
    "format_seconds",
    "format_percent",
]

_BYTE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")
MISSING = "n/a"
_EDGES_INLINE = 60  # longer edge lists go into a collapsed <details> block
_EDGES_LISTED = 500  # longer ones are only in plans.json
_TOP_LINKS = 10


def headline_table(summary: dict[str, Any], family: FamilyReport | None = None) -> str:
    """One Markdown row per variant with the numbers that the comparisons are about.

    Exchange reductions are against the first variant. ``family`` (the run's
    family report; the summary's ``family`` when None) adds its own columns.
    """
    if family is None:
        from innet.families import get_family

        family = get_family(summary.get("family", "inl")).report
    names = list(summary["variants"])
    first = names[0] if names else None
    lead = [column for column in family.headline if column.before_exchange]
    tail = [column for column in family.headline if not column.before_exchange]
    headers = [
        "variant",
        "routing",
        *(column.header for column in lead),
        "training exchange / seed",
        f"exchange reduction vs {first}",
        *(column.header for column in tail),
        "sim time / epoch",
    ]
    rows = []
    for name, variant in summary["variants"].items():
        exchange = variant["train_exchange_bytes"]
        if name == first:
            exchange_reduction = "—"
        else:
            base = summary["variants"][first]["train_exchange_bytes"]
            exchange_reduction = format_percent(reduction(base, exchange))
        rows.append(
            [
                name,
                str(variant.get("routing") or MISSING),
                *(column.value(variant, name, summary) for column in lead),
                f"{format_bytes(exchange)} ({_exact_bytes(exchange)})",
                exchange_reduction,
                *(column.value(variant, name, summary) for column in tail),
                format_seconds(variant.get("sim_time_s_per_epoch")),
            ]
        )
    align = ["left", "left", *(c.align for c in lead), "right", "right",
             *(c.align for c in tail), "right"]  # fmt: skip
    return markdown_table(headers, rows, align)


def render_report(
    run: RunData,
    summary: dict[str, Any],
    link_totals: pd.DataFrame,
    figures: list[tuple[str, str]] | None,
) -> str:
    """The full ``report.md`` of a run, with figures linked relative to the run directory.

    ``figures`` are the family's figures, ``(file name, description)``, beside the
    topology figures; None when no figures were drawn.
    """
    family = run.family.report
    sections = [
        f"# innet report: {summary['scenario']}",
        _overview(run, summary),
        "## Headline\n\n" + headline_table(summary, family),
        *(section(run, summary) for section in family.sections),
        "## Plans\n\n" + _plans(run, summary),
        "## Busiest links\n\n" + _busiest_links(run, link_totals),
    ]
    if _retransmitted(summary):
        sections.append("## Retransmissions\n\n" + _retransmissions(run, summary, link_totals))
    optional = [
        events_section(run),
        placement_section(run),
        compute_section(run),
    ]
    sections.extend(section.rstrip() for section in optional if section)
    if figures is not None:
        sections.append("## Figures\n\n" + _figures(summary, figures))
    return "\n\n".join(section for section in sections if section) + "\n"


def format_bytes(nbytes: float | None) -> str:
    """Bytes in decimal units with three significant digits: ``1.23 MB``."""
    if nbytes is None:
        return MISSING
    value = float(nbytes)
    for unit in _BYTE_UNITS:
        if abs(float(f"{value:.3g}")) < 1000 or unit == _BYTE_UNITS[-1]:
            return f"{int(value)} B" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def format_seconds(seconds: float | None) -> str:
    """A duration in s, ms, µs or ns with three significant digits (``n/a`` for None)."""
    return MISSING if seconds is None else format_duration(seconds, 3).replace(" us", " µs")


def format_percent(fraction: float | None) -> str:
    """A fraction as a percentage with one decimal: ``0.704 -> 70.4%``."""
    return MISSING if fraction is None else f"{100 * fraction:.1f}%"


def _overview(run: RunData, summary: dict[str, Any]) -> str:
    graph = run.topology.graph
    roles = [role for _, role in graph.nodes(data="role")]
    counts = ", ".join(
        f"{roles.count(role):,} {role}{'s' if roles.count(role) != 1 else ''}"
        for role in ("fusion", "sensor", "relay")
        if roles.count(role)
    )
    seeds = summary["seeds"]
    epochs = sorted({variant.get("epochs", 0) for variant in summary["variants"].values()})
    epoch_text = " or ".join(str(epoch) for epoch in epochs)
    losses = [float(loss) for _, _, loss in graph.edges(data="loss") if loss]
    lossy = (
        f" {len(losses):,} of them lose messages (loss {_loss_range(losses)}); "
        "lost copies are sent again."
        if losses
        else ""
    )
    return (
        f"Scenario **{summary['scenario']}** on topology **{run.topology.name}** "
        f"({graph.number_of_nodes():,} nodes: {counts}; {graph.number_of_edges():,} links).{lossy} "
        f"Seeds: {', '.join(map(str, seeds))} ({len(seeds)} in all); "
        f"{epoch_text} epochs per seed. Variants: "
        + ", ".join(f"`{name}`" for name in summary["variants"])
        + "."
    )


def _loss_range(losses: list[float]) -> str:
    low, high = min(losses), max(losses)
    return (
        _format_probability(low)
        if low == high
        else (f"{_format_probability(low)} to {_format_probability(high)}")
    )


def _format_probability(fraction: float | None) -> str:
    """A probability as a percentage with up to three significant digits: ``0.001 -> 0.1%``."""
    return MISSING if fraction is None else f"{100 * fraction:.3g}%"


def _plans(run: RunData, summary: dict[str, Any]) -> str:
    blocks = []
    for name, variant in summary["variants"].items():
        plan = run.plans.get(name, {})
        edges = [tuple(edge) for edge in plan.get("edges", [])]
        gate = f"{variant.get('gate') or 'no'} gate" + (
            f", beta {variant['beta']:g}" if variant.get("beta") is not None else ""
        )
        header = (
            f"**{name}** ({variant.get('routing') or MISSING} routing, {gate}, fusion "
            f"`{plan.get('fusion', run.topology.fusion)}`): {variant['links_used']:,} links "
            f"carried training traffic; the plan has {len(edges):,} forward edges."
        )
        edge_text = ", ".join(f"`{src} → {dst}`" for src, dst in edges) or "(none)"
        if len(edges) > _EDGES_LISTED:
            edge_text = f"The {len(edges):,} edges are listed in `plans.json`."
        elif len(edges) > _EDGES_INLINE:
            edge_text = f"<details><summary>edges</summary>\n\n{edge_text}\n\n</details>"
        blocks.append(f"{header}\n\n{edge_text}")
    return "\n\n".join(blocks)


def _busiest_links(run: RunData, link_totals: pd.DataFrame) -> str:
    table = busiest_links(link_totals, n=_TOP_LINKS)
    if table.empty:
        return "No training traffic was recorded."
    retransmitted = bool((table["retransmitted_bytes_per_seed"] > 0).any())
    rows = [
        [
            row.variant,
            str(row.rank),
            _link_name(run, row.u, row.v),
            f"{row.messages:,}",
            format_bytes(row.nbytes_per_seed),
            format_percent(row.share),
            *([format_bytes(row.retransmitted_bytes_per_seed)] if retransmitted else []),
        ]
        for row in table.itertuples(index=False)
    ]
    headers = ["variant", "rank", "link", "messages (all seeds)", "bytes / seed", "share"]
    align = ["left", "right", "left", "right", "right", "right"]
    if retransmitted:
        headers.append("retransmitted / seed")
        align.append("right")
    intro = (
        "Training traffic per undirected link (forward latents and backward gradients, "
        f"both directions), the {_TOP_LINKS} busiest per variant:\n\n"
    )
    return intro + markdown_table(headers, rows, align) + "\n\n" + _link_totals_lines(link_totals)


def _link_totals_lines(link_totals: pd.DataFrame) -> str:
    """One line per variant: links used, their bytes, the share of the busiest ones."""
    links = undirected_link_totals(link_totals)
    lines = []
    for variant, group in links.groupby("variant", sort=False):
        used = group[group["nbytes_per_seed"] > 0]["nbytes_per_seed"]
        total = float(used.sum())
        line = (
            f"- **{variant}**: {len(used):,} link{'s' if len(used) != 1 else ''} carried "
            f"{format_bytes(total)} per seed"
        )
        if len(used) > 1 and used.max() == used.min():
            line += (
                f"; every one of them carried {format_bytes(float(used.max()))}, so the "
                "table shows the first ones in node order."
            )
        elif len(used) > 1:
            top = float(used.nlargest(_TOP_LINKS).sum())
            line += (
                f"; the {min(_TOP_LINKS, len(used))} busiest carried "
                f"{format_percent(top / total if total else None)} of it, the busiest one "
                f"{format_bytes(float(used.max()))}, the median one "
                f"{format_bytes(float(used.median()))}."
            )
        else:
            line += "."
        lines.append(line)
    return "\n".join(lines)


def _retransmitted(summary: dict[str, Any]) -> bool:
    return any(variant.get("retransmitted_bytes") for variant in summary["variants"].values())


def _retransmissions(run: RunData, summary: dict[str, Any], link_totals: pd.DataFrame) -> str:
    rows = []
    for name, variant in summary["variants"].items():
        extra = variant.get("retransmitted_bytes") or 0
        exchange = variant["train_exchange_bytes"]
        rows.append(
            [
                name,
                f"{format_bytes(extra)} ({_exact_bytes(extra)})",
                format_percent(extra / exchange if exchange else None),
                format_bytes(exchange + extra),
            ]
        )
    headers = [
        "variant",
        "retransmitted / seed",
        "vs training exchange",
        "bytes on the links / seed",
    ]
    text = (
        "Training bytes sent again because a copy was lost on a lossy link, per seed:\n\n"
        + markdown_table(headers, rows, ["left", "right", "right", "right"])
    )
    table = busiest_links(link_totals, n=_TOP_LINKS, by="retransmitted_bytes_per_seed")
    table = table[table["retransmitted_bytes_per_seed"] > 0]
    if not table.empty:
        link_rows = [
            [
                row.variant,
                str(row.rank),
                _link_name(run, row.u, row.v),
                format_bytes(row.retransmitted_bytes_per_seed),
                _format_probability(_edge_loss(run, row.u, row.v)),
            ]
            for row in table.itertuples(index=False)
        ]
        text += (
            f"\n\nThe links that sent the most again, {_TOP_LINKS} at most per variant "
            "(`links.csv` has every link):\n\n"
            + markdown_table(
                ["variant", "rank", "link", "retransmitted / seed", "loss"],
                link_rows,
                ["left", "right", "left", "right", "right"],
            )
        )
    return text


def _edge_loss(run: RunData, u: str, v: str) -> float | None:
    graph = run.topology.graph
    return float(graph.edges[u, v].get("loss") or 0.0) if graph.has_edge(u, v) else None


def _link_name(run: RunData, u: str, v: str) -> str:
    def label(node: str) -> str:
        return run.topology.label(node) if node in run.topology.graph else node

    return f"{label(u)} – {label(v)}"


def _figures(summary: dict[str, Any], figures: list[tuple[str, str]]) -> str:
    lines = [
        f"![Topology and training traffic of {name}]({FIGURES_DIR}/{topology_figure_name(name)})"
        for name in summary["variants"]
    ]
    lines.extend(f"![{description}]({FIGURES_DIR}/{file})" for file, description in figures)
    return "\n\n".join(lines)


def _exact_bytes(nbytes: float) -> str:
    return f"{nbytes:,} B" if isinstance(nbytes, int) else f"{nbytes:,.1f} B"
