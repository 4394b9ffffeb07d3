"""The Markdown report: the headline table, one sentence per comparison, and the details.

:func:`headline_table` renders one row per variant from the summary (the
runner prints it to the terminal as well; columns are padded so it reads as a
table there too). :func:`render_report` writes the whole ``report.md``: what
was run, the headline table, each comparison in words, how to read the
numbers, the routing plans (for a family whose traffic follows them), the
busiest links (the ten with the highest utilisation per variant and one line
of totals, so it stays short on a network of thousands of links), the
retransmissions on lossy links when there were any, and the figures. The
family's report (:class:`~innet.report.family.FamilyReport`) brings its words: its
nodes' roles, the name of its training bytes and of its traffic.

The family's comparison sentences use :func:`comparisons_preamble` (seeds are
paired; what the intervals and the time to target are) and
:func:`time_comparison_lines` (simulated-time ratio, time to target, paired
differences of time and training exchange), so every family states them the
same way; :func:`format_paired` writes one paired difference with its interval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from innet.core.units import format_bitrate, format_duration
from innet.report.figures import node_roles, topology_figure_name
from innet.report.mdtable import markdown_table
from innet.report.sections import compute_section, events_section, placement_section
from innet.report.summary import reduction
from innet.report.tables import busiest_links, link_table, undirected_link_totals
from innet.rundir.layout import FIGURES_DIR

if TYPE_CHECKING:
    from innet.report.family import FamilyReport, HeadlineColumn
    from innet.rundir.io import RunData

__all__ = [
    "MISSING",
    "headline_table",
    "render_report",
    "format_bytes",
    "format_seconds",
    "format_percent",
    "format_mean_std",
    "format_paired",
    "comparisons_preamble",
    "time_comparison_lines",
]

_BYTE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")
MISSING = "n/a"
_EDGES_INLINE = 60  # longer edge lists go into a collapsed <details> block
_EDGES_LISTED = 500  # longer ones are only in plans.json
_TOP_LINKS = 10


def headline_table(summary: dict[str, Any], family: FamilyReport) -> str:
    """One Markdown row per variant with the numbers that the comparisons are about.

    Exchange reductions are against the first variant. ``family`` (the run's
    family report) adds its own columns,
    names the training bytes (``exchange_label``) and, when its traffic does
    not follow the plan, leaves out the routing column.
    """
    names = list(summary["variants"])
    first = names[0] if names else None
    lead = [column for column in family.headline if column.before_exchange]
    tail = [column for column in family.headline if not column.before_exchange]
    routing = family.follows_plan
    rows = [
        [
            name,
            *([str(variant.get("routing") or MISSING)] if routing else []),
            *(column.value(variant, name, summary) for column in lead),
            f"{format_bytes(variant['train_exchange_bytes'])} "
            f"({_exact_bytes(variant['train_exchange_bytes'])})",
            _exchange_reduction(summary, first, name),
            *(column.value(variant, name, summary) for column in tail),
            format_seconds(variant.get("sim_time_s_per_epoch")),
        ]
        for name, variant in summary["variants"].items()
    ]
    headers, align = _headline_columns(family, lead, tail, first)
    return markdown_table(headers, rows, align)


def _headline_columns(
    family: FamilyReport, lead: list[HeadlineColumn], tail: list[HeadlineColumn], first: str | None
) -> tuple[list[str], list[str]]:
    """The headline table's headers and their alignments."""
    routing = ["routing"] if family.follows_plan else []
    label = family.exchange_label
    reduction_label = "exchange reduction" if label == "training exchange" else "reduction"
    headers = [
        "variant",
        *routing,
        *(column.header for column in lead),
        f"{label} / seed",
        f"{reduction_label} vs {first}",
        *(column.header for column in tail),
        "sim time / epoch",
    ]
    align = [
        "left",
        *(["left"] if routing else []),
        *(c.align for c in lead),
        "right",
        "right",
        *(c.align for c in tail),
        "right",
    ]
    return headers, align


def _exchange_reduction(summary: dict[str, Any], first: str | None, name: str) -> str:
    """The reduction of a variant's training exchange against the first variant's."""
    if name == first:
        return "—"
    variants = summary["variants"]
    return format_percent(
        reduction(variants[first]["train_exchange_bytes"], variants[name]["train_exchange_bytes"])
    )


def render_report(
    run: RunData,
    family: FamilyReport,
    summary: dict[str, Any],
    link_totals: pd.DataFrame,
    figures: list[tuple[str, str]] | None,
) -> str:
    """The full ``report.md`` of a run, with figures linked relative to the run directory.

    ``figures`` are the family's figures, ``(file name, description)``, beside the
    topology figures; None when no figures were drawn.
    """
    if "utilisation" not in link_totals.columns:  # bytes only: add capacities and times
        link_totals = link_table(run)
    sections = [
        f"# innet report: {summary['scenario']}",
        _overview(run, family, summary),
        "## Headline\n\n" + headline_table(summary, family),
        *(section(run, summary) for section in family.sections),
        "## Plans\n\n" + _plans(run, summary) if family.follows_plan else "",
        "## Busiest links\n\n" + _busiest_links(run, link_totals, family.traffic_label),
    ]
    if _retransmitted(summary):
        sections.append("## Retransmissions\n\n" + _retransmissions(run, summary, link_totals))
    optional = [
        events_section(run, family.primary_metric),
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


def format_mean_std(mean: float | None, std: float | None, n: int, digits: int = 3) -> str:
    """``mean ± std``; the std is ``n/a`` with fewer than two seeds (there is none).

    >>> format_mean_std(0.8, 0.02, 3), format_mean_std(0.8, 0.0, 1)
    ('0.800 ± 0.020', '0.800 ± n/a')
    """
    if mean is None:
        return MISSING
    spread = f"{std:.{digits}f}" if std is not None and n >= 2 else MISSING
    return f"{mean:.{digits}f} ± {spread}"


def format_paired(paired: dict[str, Any] | None, fmt: Callable[[float], str]) -> str:
    """A paired difference (``PairedDifference.to_json()``) and its 95% t interval, in words.

    >>> paired = {"mean": -0.02, "std": 0.01, "n": 3, "ci_low": -0.045, "ci_high": 0.005,
    ...           "confidence": 0.95}
    >>> format_paired(paired, lambda x: f"{x:+.3f}")
    '-0.020, 95% t interval [-0.045, +0.005]'
    >>> format_paired({"mean": 0.1, "n": 1, "ci_low": None, "ci_high": None},
    ...               lambda x: f"{x:+.3f}")
    '+0.100, 95% t interval n/a (one seed)'
    """
    if not paired or paired.get("mean") is None:
        return MISSING
    level = f"{100 * paired.get('confidence', 0.95):g}%"
    if paired.get("ci_low") is None or paired.get("ci_high") is None:
        seeds = "one seed" if paired.get("n") == 1 else f"{paired.get('n')} seeds"
        return f"{fmt(paired['mean'])}, {level} t interval {MISSING} ({seeds})"
    return (
        f"{fmt(paired['mean'])}, {level} t interval "
        f"[{fmt(paired['ci_low'])}, {fmt(paired['ci_high'])}]"
    )


def comparisons_preamble(summary: dict[str, Any]) -> str:
    """What the comparison lines mean: paired seeds, t intervals, the time to target."""
    n = len(summary["seeds"])
    averaged = f"per seed (B − A) and averaged over the {n} seeds" if n != 1 else "(B − A)"
    text = (
        "Seeds are paired across variants: seed k gives every variant the same data split, "
        "and each node's initial weights come from a stream seeded by (k, node id), so they "
        "are the same wherever a node's module has the same shape. Each difference is taken "
        f"{averaged}; the 95% interval is a Student t interval with n − 1 degrees of freedom"
        + (" (none with one seed: n/a)." if n < 2 else ".")
        + " The simulated-time ratio is the geometric mean over seeds of B's simulated "
        "training time divided by A's, with the 95% t interval of the log ratios, "
        "exponentiated."
    )
    target = summary.get("time_to_target")
    if target:
        text += (
            f" Time to {target['metric']}: the simulated training time until the {target['metric']}"
            f" (mean over seeds, measured after each epoch) first reaches "
            f"{target['target']:.3f}, {100 * target['fraction_of_best']:g}% of the best final "
            f"mean {target['metric']} ({target['best_variant']}'s "
            f"{target['best_final_mean']:.3f}); “not reached” when it never does."
        )
    return text


def time_comparison_lines(summary: dict[str, Any], comparison: dict[str, Any]) -> list[str]:
    """Sub-bullets of one comparison: simulated time, time to target, training exchange."""
    a, b = comparison["a"], comparison["b"]
    va, vb = summary["variants"][a], summary["variants"][b]
    ratio = comparison.get("sim_time_ratio")
    ratio_text = MISSING if ratio is None else f"{ratio:.3g}×"
    low, high = comparison.get("sim_time_ratio_ci_low"), comparison.get("sim_time_ratio_ci_high")
    if low is not None and high is not None and f"{low:.3g}" != f"{high:.3g}":
        ratio_text += f" [{low:.3g}×, {high:.3g}×]"  # 95% interval, log scale
    lines = [
        f"simulated training time: {ratio_text} {a}'s (ratio per seed, geometric mean; "
        f"{format_seconds(vb.get('sim_time_s_total'))} vs "
        f"{format_seconds(va.get('sim_time_s_total'))} per seed); paired difference "
        + _paired_or_constant(comparison.get("sim_time_paired_delta_s"), _signed_seconds)
        + "."
    ]
    target = summary.get("time_to_target")
    if target:

        def reached(variant: dict[str, Any]) -> str:
            seconds = variant.get("time_to_target_s")
            return "not reached" if seconds is None else format_seconds(seconds)

        lines.append(
            f"time to {target['metric']} {target['target']:.3f}: {reached(vb)} ({b}) vs "
            f"{reached(va)} ({a})."
        )
    exchange = comparison.get("train_exchange_paired_delta_bytes") or {}
    if exchange.get("mean") is not None:
        text = _paired_or_constant(exchange, _signed_bytes)
        lines.append(f"training exchange per seed: paired difference {text}.")
    return lines


def _paired_or_constant(paired: dict[str, Any] | None, fmt: Callable[[float], str]) -> str:
    """:func:`format_paired`, or the one difference when every seed has the same."""
    if paired and paired.get("mean") is not None and paired.get("std") == 0:
        return f"{fmt(paired['mean'])}, the same in every seed"
    return format_paired(paired, fmt)


def _signed_seconds(seconds: float) -> str:
    return ("-" if seconds < 0 else "+") + format_seconds(abs(seconds))


def _signed_bytes(nbytes: float) -> str:
    return ("-" if nbytes < 0 else "+") + format_bytes(abs(nbytes))


def _overview(run: RunData, family: FamilyReport, summary: dict[str, Any]) -> str:
    graph = run.topology.graph
    roles = list(node_roles(run, family).values())
    order = list(dict.fromkeys(["fusion", "sensor", *roles]))  # INL's roles in their usual order
    counts = ", ".join(
        f"{roles.count(role):,} {role}{'s' if roles.count(role) != 1 else ''}"
        for role in order
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
            f"`{_node_name(run, plan.get('fusion', run.topology.fusion))}`): "
            f"{variant['links_used']:,} links carried training traffic; the plan has "
            f"{len(edges):,} forward edges."
        )
        edge_text = ", ".join(f"`{_link_name(run, src, dst, arrow=True)}`" for src, dst in edges)
        edge_text = edge_text or "(none)"
        if len(edges) > _EDGES_LISTED:
            edge_text = f"The {len(edges):,} edges are listed in `plans.json`."
        elif len(edges) > _EDGES_INLINE:
            edge_text = f"<details><summary>edges</summary>\n\n{edge_text}\n\n</details>"
        blocks.append(f"{header}\n\n{edge_text}")
    return "\n\n".join(blocks)


def _busiest_links(
    run: RunData, link_totals: pd.DataFrame, traffic: str = "forward latents and backward gradients"
) -> str:
    table = busiest_links(link_totals, n=_TOP_LINKS)
    if table.empty:
        return "No training traffic was recorded."
    timed = "utilisation" in table.columns and table["utilisation"].notna().any()
    retransmitted = bool((table["retransmitted_bytes_per_seed"] > 0).any())
    rows = []
    for row in table.itertuples(index=False):
        cells = [row.variant, str(row.rank), _link_name(run, row.u, row.v)]
        if timed:
            cells += [
                _format_capacity(row.capacity_bps),
                _format_optional_seconds(row.latency_s),
                "both"
                if row.balanced
                else _link_name(run, row.bottleneck_src, row.bottleneck_dst, arrow=True),
                _format_optional_seconds(row.busy_s_per_step),
                _format_fraction(row.utilisation),
            ]
        cells += [f"{row.messages:,}", format_bytes(row.nbytes_per_seed), format_percent(row.share)]
        if retransmitted:
            cells.append(format_bytes(row.retransmitted_bytes_per_seed))
        rows.append(cells)
    headers = ["variant", "rank", "link"]
    align = ["left", "right", "left"]
    if timed:
        headers += ["capacity", "latency", "busier direction", "busy / step", "utilisation"]
        align += ["right", "right", "left", "right", "right"]
    headers += ["messages (all seeds)", "bytes / seed", "share"]
    align += ["right", "right", "right"]
    if retransmitted:
        headers.append("retransmitted / seed")
        align.append("right")
    if timed:
        intro = (
            f"Training traffic per undirected link ({traffic}), "
            f"the {_TOP_LINKS} with the highest utilisation per variant: the bottlenecks first. "
            "Each direction of a link transmits on its own; *busy / step* is the transmission "
            "time of its busier direction (*both*: the two are equally busy) per training "
            "step (8 × bytes / capacity for every copy sent, summed over the step's messages, "
            "mean over steps and seeds), and "
            "*utilisation* is that busy time divided by the variant's simulated training time "
            "per step. Bytes and share count both directions. `links.csv` has every link "
            "direction.\n\n"
        )
    else:
        intro = (
            f"Training traffic per undirected link ({traffic}, "
            f"both directions), the {_TOP_LINKS} busiest per variant:\n\n"
        )
    return (
        intro
        + markdown_table(headers, rows, align)
        + "\n\n"
        + _link_totals_lines(run, link_totals, timed)
    )


def _link_totals_lines(run: RunData, link_totals: pd.DataFrame, timed: bool) -> str:
    """One line per variant: links used, their bytes, step time and the bottleneck."""
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
            line += f"; every one of them carried {format_bytes(float(used.max()))}"
            if not timed:
                line += ", so the table shows the first ones in node order"
        elif len(used) > 1:
            top = float(used.nlargest(_TOP_LINKS).sum())
            line += (
                f"; the {min(_TOP_LINKS, len(used))} busiest carried "
                f"{format_percent(top / total if total else None)} of it, the busiest one "
                f"{format_bytes(float(used.max()))}, the median one "
                f"{format_bytes(float(used.median()))}"
            )
        if timed:
            line += _bottleneck_text(run, link_totals, group, variant)
        lines.append(line + ".")
    return "\n".join(lines)


def _bottleneck_text(
    run: RunData, link_totals: pd.DataFrame, group: pd.DataFrame, variant: str
) -> str:
    step_times = link_totals.loc[link_totals["variant"] == variant, "step_time_s"].dropna()
    if step_times.empty or group["utilisation"].isna().all():
        return ""
    top = group.loc[group["utilisation"].idxmax()]
    ties = int((group["utilisation"] >= top["utilisation"] * (1 - 1e-9)).sum())
    link = _link_name(run, top["u"], top["v"])
    return (
        f"; simulated training time per step {format_seconds(float(step_times.iloc[0]))}; "
        f"bottleneck {link} ({_format_capacity(top['capacity_bps'])}) at "
        f"{_format_fraction(top['utilisation'])} utilisation"
        + (f", as busy as {ties - 1} other link{'s' if ties > 2 else ''}" if ties > 1 else "")
    )


def _format_capacity(bits_per_second: float | None) -> str:
    if bits_per_second is None or pd.isna(bits_per_second):
        return MISSING
    return format_bitrate(float(bits_per_second), 3)


def _format_optional_seconds(seconds: float | None) -> str:
    return MISSING if seconds is None or pd.isna(seconds) else format_seconds(float(seconds))


def _format_fraction(fraction: float | None) -> str:
    return MISSING if fraction is None or pd.isna(fraction) else format_percent(float(fraction))


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


def _node_name(run: RunData, node: str) -> str:
    """A node by its label where the topology gives one (a city), else by its id."""
    return run.topology.label(node) if node in run.topology.graph else node


def _link_name(run: RunData, u: str, v: str, arrow: bool = False) -> str:
    return f"{_node_name(run, u)} {'→' if arrow else '–'} {_node_name(run, v)}"


def _figures(summary: dict[str, Any], figures: list[tuple[str, str]]) -> str:
    lines = [
        f"![Topology and training traffic of {name}]({FIGURES_DIR}/{topology_figure_name(name)})"
        for name in summary["variants"]
    ]
    lines.extend(f"![{description}]({FIGURES_DIR}/{file})" for file, description in figures)
    return "\n\n".join(lines)


def _exact_bytes(nbytes: float) -> str:
    return f"{nbytes:,} B" if isinstance(nbytes, int) else f"{nbytes:,.1f} B"
