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

from innet.report.figures import (
    ACCURACY_FIGURE,
    FIGURES_DIR,
    RATE_FIGURE,
    topology_figure_name,
)
from innet.report.mdtable import markdown_table
from innet.report.sections import compute_section, events_section, placement_section
from innet.report.summary import reduction
from innet.report.tables import busiest_links, undirected_link_totals

if TYPE_CHECKING:
    from innet.report.rundir import RunData

__all__ = [
    "headline_table",
    "render_report",
    "format_bytes",
    "format_seconds",
    "format_percent",
]

_BYTE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")
_MISSING = "n/a"
_EDGES_INLINE = 60  # longer edge lists go into a collapsed <details> block
_EDGES_LISTED = 500  # longer ones are only in plans.json
_TOP_LINKS = 10


def headline_table(summary: dict[str, Any]) -> str:
    """One Markdown row per variant with the numbers that the comparisons are about.

    Exchange reductions are against the first variant; rate reductions are
    against the ``a`` of every comparison whose ``b`` is the row's variant.
    """
    names = list(summary["variants"])
    first = names[0] if names else None
    headers = [
        "variant",
        "routing",
        "accuracy (mean ± std)",
        "training exchange / seed",
        f"exchange reduction vs {first}",
        "latent rate (bits/sample)",
        "rate reduction",
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
                str(variant.get("routing") or _MISSING),
                f"{variant['accuracy_mean']:.3f} ± {variant['accuracy_std']:.3f}",
                f"{format_bytes(exchange)} ({_exact_bytes(exchange)})",
                exchange_reduction,
                _format_rate(variant.get("latent_rate_bits")),
                _rate_reductions(summary, name),
                format_seconds(variant.get("sim_time_s_per_epoch")),
            ]
        )
    align = ["left", "left", "right", "right", "right", "right", "right", "right"]
    return markdown_table(headers, rows, align)


def render_report(run: RunData, summary: dict[str, Any], link_totals: pd.DataFrame) -> str:
    """The full ``report.md`` of a run, with figures linked relative to the run directory."""
    sections = [
        f"# innet report: {summary['scenario']}",
        _overview(run, summary),
        "## Headline\n\n" + headline_table(summary),
        "## Comparisons\n\n" + _comparison_sentences(summary),
        "## How to read these numbers\n\n" + _reading_guide(_retransmitted(summary)),
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
    sections.append("## Figures\n\n" + _figures(summary))
    return "\n\n".join(sections) + "\n"


def format_bytes(nbytes: float | None) -> str:
    """Bytes in decimal units with three significant digits: ``1.23 MB``."""
    if nbytes is None:
        return _MISSING
    value = float(nbytes)
    for unit in _BYTE_UNITS:
        if abs(float(f"{value:.3g}")) < 1000 or unit == _BYTE_UNITS[-1]:
            return f"{int(value)} B" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def format_seconds(seconds: float | None) -> str:
    """A duration in s, ms or µs with three significant digits."""
    if seconds is None:
        return _MISSING
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return "0 s" if seconds == 0 else f"{seconds / 1e-9:.3g} ns"


def format_percent(fraction: float | None) -> str:
    """A fraction as a percentage with one decimal: ``0.704 -> 70.4%``."""
    return _MISSING if fraction is None else f"{100 * fraction:.1f}%"


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
    return _MISSING if fraction is None else f"{100 * fraction:.3g}%"


def _comparison_sentences(summary: dict[str, Any]) -> str:
    if not summary["comparisons"]:
        return "Only one variant: nothing to compare."
    n_seeds = len(summary["seeds"])
    lines = []
    for comparison in summary["comparisons"]:
        a, b = comparison["a"], comparison["b"]
        va, vb = summary["variants"][a], summary["variants"][b]
        exchange = _change_phrase(
            "training exchange",
            comparison["exchange_reduction"],
            f"{format_bytes(vb['train_exchange_bytes'])} vs "
            f"{format_bytes(va['train_exchange_bytes'])} per seed",
            f"{a} sent no training bytes",
        )
        rate = _change_phrase(
            "latent rate",
            comparison["rate_reduction"],
            f"{_format_rate(vb['latent_rate_bits'])} vs "
            f"{_format_rate(va['latent_rate_bits'])} bits/sample",
            f"{a}'s latent rate is 0 or unknown",
        )
        within = "within" if comparison["accuracy_within_one_std"] else "not within"
        lines.append(
            f"- **{b}** against **{a}**: {exchange}; {rate}; accuracy "
            f"{vb['accuracy_mean']:.3f} vs {va['accuracy_mean']:.3f} "
            f"(difference {comparison['accuracy_delta']:+.3f}), {within} one standard "
            f"deviation of {a}'s accuracy (sample standard deviation over {n_seeds} "
            f"seed{'s' if n_seeds != 1 else ''}: {va['accuracy_std']:.3f})."
        )
    return "\n".join(lines)


def _change_phrase(quantity: str, fraction: float | None, values: str, undefined: str) -> str:
    if fraction is None:
        return f"{quantity} reduction undefined ({undefined}; {values})"
    direction = "lower" if fraction >= 0 else "higher"
    return f"{quantity} {abs(100 * fraction):.1f}% {direction} ({values})"


def _reading_guide(lossy: bool = False) -> str:
    retransmissions = (
        [
            "- **Retransmitted bytes**: on a lossy link every lost copy of a message is sent "
            "again until one gets through; `(attempts - 1) × nbytes` per message, summed over "
            "the training steps, per seed. They are extra bytes on the links, not part of the "
            "training exchange, and their time (each copy, plus a round trip before resending) "
            "is in the simulated time."
        ]
        if lossy
        else []
    )
    return "\n".join(
        [
            "- **Training exchange**: the bytes actually sent over the links during training, "
            "per seed: the sum of `nbytes` (size of the real tensor sent, plus any header) over "
            "all forward latents and backward gradients of all training steps; evaluation "
            "traffic is not counted.",
            "- **Exchange reduction** of B against A: `1 - exchange(B) / exchange(A)`.",
            "- **Latent rate**: the gate's estimate of `I(Z;T)` in bits per sample, averaged "
            "over the evaluation samples of the final epoch and summed over the nodes that "
            "send; rate reduction is `1 - rate(B) / rate(A)`.",
            "- **Simulated time**: seconds of network time from the SimPy link model "
            "(capacity, latency, queueing), never the wall-clock time of this machine.",
            "- **Accuracy**: test accuracy after the final epoch; ± is the sample standard "
            "deviation (ddof=1) over seeds.",
            "- **Links used**: distinct undirected links that carried training traffic.",
            *retransmissions,
        ]
    )


def _plans(run: RunData, summary: dict[str, Any]) -> str:
    blocks = []
    for name, variant in summary["variants"].items():
        plan = run.plans.get(name, {})
        edges = [tuple(edge) for edge in plan.get("edges", [])]
        gate = f"{variant.get('gate') or 'no'} gate" + (
            f", beta {variant['beta']:g}" if variant.get("beta") is not None else ""
        )
        header = (
            f"**{name}** ({variant.get('routing') or _MISSING} routing, {gate}, fusion "
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


def _figures(summary: dict[str, Any]) -> str:
    lines = [
        f"![Topology and training traffic of {name}]({FIGURES_DIR}/{topology_figure_name(name)})"
        for name in summary["variants"]
    ]
    lines.append(f"![Test accuracy against training bytes]({FIGURES_DIR}/{ACCURACY_FIGURE})")
    lines.append(f"![Latent rate per node]({FIGURES_DIR}/{RATE_FIGURE})")
    return "\n\n".join(lines)


def _rate_reductions(summary: dict[str, Any], name: str) -> str:
    parts = [
        f"{format_percent(comparison['rate_reduction'])} vs {comparison['a']}"
        for comparison in summary["comparisons"]
        if comparison["b"] == name
    ]
    return "; ".join(parts) or "—"


def _format_rate(bits: float | None) -> str:
    return _MISSING if bits is None else f"{bits:,.2f}"


def _exact_bytes(nbytes: float) -> str:
    return f"{nbytes:,} B" if isinstance(nbytes, int) else f"{nbytes:,.1f} B"
