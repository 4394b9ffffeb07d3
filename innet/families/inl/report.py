"""How the ``inl`` family reports a run: accuracy, latent rates, and what they cost.

Added to the core report (bytes, simulated time, links, events, placement):

- per variant: the gate and its ``beta``, the wire formats (and, where the
  forward messages are codeword indices, the bytes of the published codebooks
  per seed, ``codebook_bytes``, and their share of the training exchange,
  ``codebook_share``, shown beside the wire formats), the final test
  accuracy (mean and sample standard deviation over seeds), the latent rate
  (bits per sample, summed over sending nodes: the Gaussian gate's
  moment-matched upper bound on ``I(Z;T)``, the discrete gate's mutual
  information over the evaluation set, the ``none`` gate's ceiling), the rate
  of each node, and beside them the VIB KL penalty (``vib_kl_bits``, the
  Gaussian gate's training term, not a rate), the bits the messages carry per
  sample (the ceiling every node's rate is capped at) and the pairwise
  bracket;
- per comparison ``(a, b)``: ``rate_reduction = 1 - rate(b) / rate(a)``,
  ``accuracy_delta = accuracy(b) - accuracy(a)`` and whether it lies within one
  standard deviation of ``a``'s accuracy;
- the headline columns for accuracy, latent rate and rate reduction, the
  comparison sentences, how to read the numbers, and two figures:
  ``accuracy_vs_bytes.png`` (test accuracy after each epoch against the
  cumulative training exchange, mean ± std over seeds) and
  ``latent_rate_per_node.png`` (the final rate of every sending node).
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from innet.families import FamilyReport, FamilyTable, HeadlineColumn
from innet.gates import RateEstimate
from innet.records import METRICS_FILE, training_phases
from innet.report.figures import (
    LABELLED_NODES_MAX,
    event_marks,
    metric_time_figure,
    save_figure,
)
from innet.report.markdown import (
    MISSING,
    comparisons_preamble,
    format_bytes,
    format_mean_std,
    format_paired,
    format_percent,
    time_comparison_lines,
)
from innet.report.stats import equivalence_test, paired_difference
from innet.report.summary import final_epoch_metrics, mean_or_none, plain_float, reduction
from innet.report.tables import training_exchange, training_exchange_per_epoch
from innet.topology.model import node_key

if TYPE_CHECKING:
    from innet.report.rundir import RunData

__all__ = ["INL_REPORT", "ACCURACY_FIGURE", "RATE_FIGURE"]

ACCURACY_FIGURE = "accuracy_vs_bytes.png"
ACCURACY_TIME_FIGURE = "accuracy_vs_time.png"
RATE_FIGURE = "latent_rate_per_node.png"
RATE_COST_FIGURE = "accuracy_vs_rate_bytes_time.png"


def variant_summary(run: RunData, variant: str, seeds: list[int]) -> dict[str, Any]:
    """The gate, accuracy and latent rate of one variant."""
    final = final_epoch_metrics(run.metrics, variant, seeds)
    accuracy = [float(value) for value in final["accuracy"]]
    rates = [float(value) for value in final["latent_rate_bits"]]
    config = run.variant_config(variant)
    gate = config.get("gate")
    wire = config.get("wire") if isinstance(config.get("wire"), dict) else {}
    return {
        "gate": gate.get("kind") if isinstance(gate, dict) else gate,
        "beta": float(gate.get("beta", 0.0)) if isinstance(gate, dict) else None,
        "wire_forward": wire.get("forward", "float32"),
        "wire_backward": wire.get("backward", "float32"),
        "accuracy_mean": statistics.fmean(accuracy),
        "accuracy_std": statistics.stdev(accuracy) if len(accuracy) > 1 else None,
        "accuracy_per_seed": accuracy,
        "latent_rate_bits": mean_or_none(rates),
        "latent_rate_bits_per_seed": rates,
        "node_rates_bits": _node_rates(run.tables["node_rates"], variant),
        "executor": _executor(run.tables["executors"], variant),
        "equivalence_margin": run.config.get("equivalence_margin"),
        **_codebook_bytes(run, variant, seeds),
        **_rate_extras(run, variant, seeds),
    }


def _executor(executors: pd.DataFrame, variant: str) -> str | None:
    """Which executor trained ``variant`` (``training.executor: auto`` chooses per variant)."""
    ran = sorted(set(executors.loc[executors["variant"] == variant, "executor"]))
    return "/".join(ran) or None  # empty for a run directory written before this table


def _codebook_bytes(run: RunData, variant: str, seeds: list[int]) -> dict[str, Any]:
    """Bytes of the published codebooks (phase ``codebook``) per seed, and their share.

    ``codebook_bytes``: mean over seeds; ``codebook_share``: their fraction of
    the training exchange (None when the variant sent no codebook).
    """
    exchanges = run.exchanges
    rows = exchanges[(exchanges["variant"] == variant) & exchanges["seed"].isin(seeds)]
    training = rows[rows["phase"].isin(training_phases())]
    books = float(training.loc[training["phase"] == "codebook", "nbytes"].sum()) / len(seeds)
    total = float(training["nbytes"].sum()) / len(seeds)
    return {
        "codebook_bytes": books,
        "codebook_share": books / total if books > 0 and total > 0 else None,
    }


RATE_EXTRAS = (
    "vib_kl_bits",
    "rate_ceiling_bits",
    "rate_capped_nodes",
    "rate_bracket_lower_bits",
    "rate_bracket_upper_bits",
    "rate_bracket_n",
    "rate_bracket_saturated_nodes",
)
"""Rate columns of ``metrics.csv`` beside ``latent_rate_bits`` (final epoch, mean over seeds)."""


def _rate_extras(run: RunData, variant: str, seeds: list[int]) -> dict[str, Any]:
    """The final epoch's :data:`RATE_EXTRAS`, mean over seeds; None where absent or empty.

    They are read from the run's ``metrics.csv`` itself: runs written before
    these columns existed have none of them, and the run-directory reader
    keeps only the columns every run has.
    """
    path = run.run_dir / METRICS_FILE
    try:
        table = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    except (OSError, ValueError, pd.errors.ParserError):
        table = pd.DataFrame()
    extras: dict[str, Any] = dict.fromkeys(RATE_EXTRAS)
    if table.empty or not {"variant", "seed", "epoch"} <= set(table.columns):
        return extras
    rows = table[(table["variant"].astype(str) == variant) & table["seed"].isin(seeds)]
    if rows.empty:
        return extras
    final = rows[rows["epoch"] == rows.groupby("seed")["epoch"].transform("max")]
    for column in RATE_EXTRAS:
        if column in final.columns:
            values = [float(v) for v in final[column] if pd.notna(v)]
            extras[column] = mean_or_none(values) if values else None
    return extras


def _node_rates(node_rates: pd.DataFrame, variant: str) -> dict[str, float | None]:
    rows = node_rates[node_rates["variant"] == variant]
    means = rows.groupby("node")["rate_bits"].mean()
    return {node: plain_float(means[node]) for node in sorted(means.index, key=node_key)}


def comparison(a: str, b: str, summary_a: dict, summary_b: dict) -> dict[str, Any]:
    """Rate reduction and accuracy difference of ``b`` against ``a``, paired over seeds.

    ``accuracy_paired_delta``: the mean of ``b - a`` per seed with its 95% t
    interval (:mod:`innet.report.stats`). ``accuracy_within_one_std`` is the
    letter's criterion, ``|delta| <= std(a)``; None with one seed (no std).
    ``accuracy_equivalence``: the TOST equivalence test of the paired
    differences against the scenario's ``equivalence_margin`` (None without one).
    """
    delta = summary_b["accuracy_mean"] - summary_a["accuracy_mean"]
    per_seed_a, per_seed_b = summary_a["accuracy_per_seed"], summary_b["accuracy_per_seed"]
    paired = paired_difference(per_seed_a, per_seed_b)
    margin = summary_a.get("equivalence_margin")
    return {
        "accuracy_equivalence": (
            equivalence_test(paired.differences, margin).to_json() if margin else None
        ),
        "rate_reduction": reduction(summary_a["latent_rate_bits"], summary_b["latent_rate_bits"]),
        "accuracy_delta": delta,
        "accuracy_paired_delta": paired.to_json(),
        "accuracy_std_a": summary_a["accuracy_std"],
        "accuracy_within_one_std": (
            abs(delta) <= summary_a["accuracy_std"] if len(per_seed_a) > 1 else None
        ),
    }


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
        within = comparison["accuracy_within_one_std"]
        criterion = (
            f"The letter's criterion (within one standard deviation of {a}'s accuracy): "
            f"{MISSING} with one seed."
            if within is None
            else f"The letter's criterion: {'within' if within else 'not within'} one standard "
            f"deviation of {a}'s accuracy (sample standard deviation over {n_seeds} seeds: "
            f"{va['accuracy_std']:.3f})."
        )
        lines.append(
            f"- **{b}** against **{a}**: {exchange}; {rate}.\n"
            f"  - accuracy {vb['accuracy_mean']:.3f} vs {va['accuracy_mean']:.3f}; paired "
            f"difference {format_paired(comparison['accuracy_paired_delta'], _signed3)}. "
            + criterion
        )
        if comparison.get("accuracy_equivalence"):
            lines.append(f"  - {_equivalence_sentence(comparison['accuracy_equivalence'])}")
        lines.extend(f"  - {line}" for line in time_comparison_lines(summary, comparison))
    return "\n".join(lines)


def _equivalence_sentence(test: dict[str, Any]) -> str:
    """One line: the TOST verdict with its margin, p-value and 90% interval."""
    margin = f"±{100 * test['margin']:.1f} points"
    if test["verdict"] is None:
        return f"equivalence within {margin}: {MISSING} (fewer than two seeds)."
    return (
        f"equivalence within {margin} (TOST, alpha {test['alpha']:g} each side): "
        f"**{test['verdict']}** (p = {test['p_value']:.3g}; {100 * test['confidence']:.0f}% "
        f"interval {_signed3(test['ci_low'])} to {_signed3(test['ci_high'])})."
    )


def _signed3(value: float) -> str:
    return f"{value:+.3f}"


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
            "per seed: the sum of `nbytes` (size of the encoded message sent in its wire "
            "format, plus any header) over all forward latents and backward gradients of all "
            "training steps; evaluation traffic is not counted.",
            "- **Exchange reduction** of B against A: `1 - exchange(B) / exchange(A)`.",
            "- **Latent rate**: an estimate of `I(Z;T)` in bits per sample over the evaluation "
            "samples of the final epoch, summed over the nodes that send. Gaussian gate: the "
            "moment-matched Gaussian upper bound of its noisy channel (the Kolchinsky–Tracey "
            "pairwise bracket on a seeded subsample is in `summary.json`); discrete gate: the "
            "exact mutual information `H(mean p) - mean H(p)` over the whole evaluation set "
            "(with m codebook groups, the sum over groups: an upper bound on the joint one); "
            "`none` gate: not finite, so the ceiling is reported. No node's rate exceeds the "
            "bits its message carries per sample (the ceiling): it is capped there. Rate "
            "reduction is `1 - rate(B) / rate(A)`.",
            "- **VIB KL**: the Gaussian gate's training penalty, `KL(N(mu, sigma²) || N(0, I))` "
            "in bits, the variational information bottleneck (VIB) bound. It also grows with "
            "the scale and offset of `mu`, which carry no information: it is not the rate.",
            "- **Simulated time**: seconds of network time from the SimPy link model "
            "(capacity, latency, queueing), never the wall-clock time of this machine.",
            "- **Accuracy**: test accuracy after the final epoch; ± is the sample standard "
            "deviation (ddof=1) over seeds (n/a with one seed).",
            "- **Links used**: distinct undirected links that carried training traffic.",
            *retransmissions,
        ]
    )


def _rate_reductions(summary: dict[str, Any], name: str) -> str:
    parts = [
        f"{format_percent(comparison['rate_reduction'])} vs {comparison['a']}"
        for comparison in summary["comparisons"]
        if comparison["b"] == name
    ]
    return "; ".join(parts) or "—"


def _format_rate(bits: float | None) -> str:
    return MISSING if bits is None else f"{bits:,.2f}"


def _format_wire(summary: dict[str, Any]) -> str:
    wire = f"{summary.get('wire_forward', 'float32')}/{summary.get('wire_backward', 'float32')}"
    share = summary.get("codebook_share")
    return wire if share is None else f"{wire} (codebooks {100 * share:.1f}%)"


def _comparisons_section(run: RunData, summary: dict[str, Any]) -> str:
    return (
        "## Comparisons\n\n"
        + (comparisons_preamble(summary) + "\n\n" if summary["comparisons"] else "")
        + _comparison_sentences(summary)
    )


def _rates_section(run: RunData, summary: dict[str, Any]) -> str:
    """Per variant: the reported rate and every estimator beside it (final epoch)."""
    header = (
        "| variant | gate | wire (fwd/bwd) | latent rate | VIB KL | pairwise bracket "
        "[lower, upper] (n) | message bits/sample | capped nodes |"
    )
    lines = [header, "|---|---|---|---:|---:|---|---:|---:|"]
    for name, v in summary["variants"].items():
        if v.get("rate_bracket_n") is not None:
            saturated = v.get("rate_bracket_saturated_nodes") or 0
            bracket = (
                f"[{_format_rate(v.get('rate_bracket_lower_bits'))}, "
                f"{_format_rate(v.get('rate_bracket_upper_bits'))}] "
                f"(n = {int(v['rate_bracket_n'])}"
                + (f"; saturated at {saturated:g} node(s)" if saturated else "")
                + ")"
            )
        else:
            bracket = MISSING
        capped = v.get("rate_capped_nodes")
        lines.append(
            f"| {name} | {v.get('gate')} | {_format_wire(v)} | "
            f"{_format_rate(v.get('latent_rate_bits'))} | {_format_rate(v.get('vib_kl_bits'))} | "
            f"{bracket} | {_format_rate(v.get('rate_ceiling_bits'))} | "
            f"{MISSING if capped is None else f'{capped:g}'} |"
        )
    return (
        "## Rates\n\n"
        "Bits per sample, summed over the sending nodes, final epoch, mean over seeds. "
        "Latent rate: Gaussian gate, the moment-matched Gaussian upper bound on `I(Z;T)`; "
        "discrete gate, the exact mutual information over the evaluation set (with m "
        "codebook groups, the sum of the groups' informations, an upper bound); `none` gate, "
        "the message's bits per sample (its `I(Z;T)` is not finite). Each node's rate is "
        "capped at the bits its message carries per sample (message bits/sample, summed); "
        "capped nodes are those at that ceiling. The VIB KL is the Gaussian gate's training "
        "penalty, not a rate. The pairwise (Kolchinsky–Tracey) bracket is computed on a "
        "seeded subsample of n test inputs and cannot exceed log2 n per node.\n\n"
        + "\n".join(lines)
    )


def _reading_section(run: RunData, summary: dict[str, Any]) -> str:
    lossy = any(v.get("retransmitted_bytes") for v in summary["variants"].values())
    return "## How to read these numbers\n\n" + _reading_guide(lossy)


def _figures(run: RunData, out_dir: Path) -> list[tuple[str, str]]:
    variants = run.variants
    save_figure(_accuracy_figure(run, variants), out_dir / ACCURACY_FIGURE)
    time_figure = metric_time_figure(run, "accuracy", "test accuracy", variants)
    save_figure(time_figure, out_dir / ACCURACY_TIME_FIGURE)
    save_figure(_rate_figure(run, variants), out_dir / RATE_FIGURE)
    figures = [
        (ACCURACY_FIGURE, "Test accuracy against training bytes"),
        (ACCURACY_TIME_FIGURE, "Test accuracy against simulated training time"),
        (RATE_FIGURE, "Latent rate per node"),
    ]
    if _rate_costs(run).wire.ne("float32/float32").any():  # what finite rate buys
        save_figure(_rate_cost_figure(run), out_dir / RATE_COST_FIGURE)
        figures.append(
            (RATE_COST_FIGURE, "Final accuracy against the latent rate, bytes sent and time")
        )
    return figures


def _rate_costs(run: RunData) -> pd.DataFrame:
    """Per variant: final accuracy, latent rate, training bytes and simulated time (seed means)."""
    metrics = run.metrics
    last = metrics[metrics["epoch"] == metrics.groupby("variant")["epoch"].transform("max")]
    final = last.groupby("variant")[["accuracy", "latent_rate_bits"]].mean()
    time = metrics.groupby(["variant", "seed"])["sim_time_s"].sum().groupby("variant").mean()
    sent = training_exchange(run.exchanges).groupby("variant").mean()
    rows = []
    for variant in run.variants:
        config = run.variant_config(variant)
        wire = config.get("wire") if isinstance(config.get("wire"), dict) else {}
        rows.append(
            {
                "variant": variant,
                "wire": f"{wire.get('forward', 'float32')}/{wire.get('backward', 'float32')}",
                "accuracy": final["accuracy"].get(variant, np.nan),
                "rate_bits": final["latent_rate_bits"].get(variant, np.nan),
                "megabytes": sent.get(variant, np.nan) / 1e6,
                "time_s": time.get(variant, np.nan),
            }
        )
    return pd.DataFrame(rows)


def _rate_cost_figure(run: RunData) -> Figure:
    """Final accuracy of each variant against its rate, its training bytes and its time."""
    costs = _rate_costs(run)
    figure = Figure(figsize=(13, 4.8), layout="constrained")
    axes = figure.subplots(1, 3, sharey=True)
    columns = (
        ("rate_bits", "latent rate, sum over senders (bits/sample)"),
        ("megabytes", "training exchange per seed (MB)"),
        ("time_s", "simulated training time per seed (s)"),
    )
    markers = "osD^v<>pP*Xh"
    for ax, (column, label) in zip(axes, columns, strict=True):
        for number, row in enumerate(costs.itertuples()):
            value = getattr(row, column)
            if np.isfinite(value) and value > 0:
                ax.scatter(value, row.accuracy, marker=markers[number % len(markers)],
                           label=f"{row.variant} ({row.wire})")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("final test accuracy (mean over seeds)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right", fontsize=8, title="variant (wire fwd/bwd)")
    figure.suptitle("What rate costs: accuracy against rate, bytes actually sent, simulated time")
    return figure


def _accuracy_figure(run: RunData, variants: list[str]) -> Figure:
    curves = _accuracy_curves(run)
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    ax = figure.add_subplot()
    for variant in variants:
        curve = curves[curves["variant"] == variant]
        if curve.empty:
            continue
        x = curve["bytes_mean"].to_numpy() / 1e6
        mean = curve["accuracy_mean"].to_numpy()
        std = curve["accuracy_std"].to_numpy()
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=variant)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        for at_bytes, description in event_marks(run, variant):
            ax.axvline(at_bytes / 1e6, color=line.get_color(), linestyle=":", linewidth=1.2)
            ax.annotate(description, (at_bytes / 1e6, 0.02), xycoords=("data", "axes fraction"),
                        rotation=90, fontsize=7, color=line.get_color(),
                        ha="right", va="bottom")  # fmt: skip
    ax.set_xlabel("cumulative training exchange per seed (MB)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Test accuracy against training bytes (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    return figure


def _accuracy_curves(run: RunData) -> pd.DataFrame:
    """Per variant and epoch: mean cumulative training bytes, accuracy mean and std."""
    metrics = run.metrics[["variant", "seed", "epoch", "accuracy"]]
    per_epoch = training_exchange_per_epoch(run.exchanges)[["variant", "seed", "epoch", "nbytes"]]
    joined = metrics.merge(per_epoch, on=["variant", "seed", "epoch"], how="left")
    joined["nbytes"] = joined["nbytes"].fillna(0)
    joined = joined.sort_values(["variant", "seed", "epoch"])
    joined["bytes_cum"] = joined.groupby(["variant", "seed"])["nbytes"].cumsum()
    curves = (
        joined.groupby(["variant", "epoch"])
        .agg(
            bytes_mean=("bytes_cum", "mean"),
            accuracy_mean=("accuracy", "mean"),
            accuracy_std=("accuracy", "std"),
        )
        .reset_index()
    )
    curves["accuracy_std"] = curves["accuracy_std"].fillna(0.0)
    return curves


def _rate_figure(run: RunData, variants: list[str]) -> Figure:
    rates = run.tables["node_rates"]
    nodes = sorted(rates["node"].unique(), key=node_key)
    if len(nodes) > LABELLED_NODES_MAX:
        return _sorted_rate_figure(run, variants)
    width_inches = float(np.clip(2.0 + 0.08 * len(nodes) * max(len(variants), 1), 6.0, 18.0))
    figure = Figure(figsize=(width_inches, 4.5), layout="constrained")
    ax = figure.add_subplot()
    if not nodes:
        ax.text(0.5, 0.5, "no node rates recorded", ha="center", va="center")
        ax.set_axis_off()
        return figure
    stats = rates.groupby(["variant", "node"])["rate_bits"].agg(["mean", "std"]).fillna(0.0)
    positions = np.arange(len(nodes))
    bar_width = 0.8 / max(len(variants), 1)
    spread = rates["seed"].nunique() >= 2
    shown: list[float] = []
    for index, variant in enumerate(variants):
        if variant not in stats.index.get_level_values("variant"):
            continue
        rows = stats.loc[variant].reindex(nodes)
        bars = ax.bar(
            positions + (index - (len(variants) - 1) / 2) * bar_width,
            rows["mean"].fillna(0.0),
            width=bar_width,
            yerr=rows["std"].fillna(0.0) if spread else None,
            capsize=2,
            label=variant,
        )
        bits = _wire_size_line(ax, run, variant, bars.patches[0].get_facecolor())
        shown.extend([*rows["mean"].dropna().tolist(), *([bits] if bits else [])])
    _log_rate_axis(ax, shown)
    graph = run.topology.graph
    labels = [run.topology.label(node) if node in graph else node for node in nodes]
    ax.set_xticks(positions, labels, rotation=90 if len(nodes) > 12 else 0)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlim(-0.6, len(nodes) - 0.4)
    ax.set_ylabel("latent rate (bits/sample, log scale)")
    ax.set_title(
        f"Latent rate per sending node (final evaluation, mean{' ± std' if spread else ''} "
        "over seeds)"
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return figure


def _message_bits(run: RunData, variant: str) -> float | None:
    """Bits per sample of one of ``variant``'s messages (its senders share the format).

    The final epoch's ``rate_ceiling_bits`` (summed over senders, mean over
    seeds) over the number of senders; None for runs without that column.
    """
    total = _rate_extras(run, variant, run.seeds)["rate_ceiling_bits"]
    rates = run.tables["node_rates"]
    rows = rates[rates["variant"] == variant]
    senders = rows.groupby("seed")["node"].nunique().mean() if not rows.empty else 0
    return float(total / senders) if total and senders else None


def _wire_size_line(ax: Any, run: RunData, variant: str, color: Any) -> float | None:
    """A dashed line at the bits per sample of ``variant``'s messages (no rate exceeds it)."""
    bits = _message_bits(run, variant)
    if bits is not None:
        ax.axhline(bits, color=color, linestyle="--", linewidth=1.2,
                   label=f"{variant}: message size, {bits:g} bits/sample")  # fmt: skip
    return bits


def _log_rate_axis(ax: Any, values: list[float]) -> None:
    """A log rate axis from below the smallest positive value to above the largest."""
    array = np.asarray(values, dtype=float)
    positive = array[np.isfinite(array) & (array > 0)]
    if positive.size:
        ax.set_yscale("log")  # rates below a millionth of the largest are not shown
        ax.set_ylim(max(positive.min() / 2, positive.max() * 1e-6), positive.max() * 2)


def _sorted_rate_figure(run: RunData, variants: list[str]) -> Figure:
    """Many nodes: each variant's node rates (mean over seeds) sorted from the highest."""
    means = run.tables["node_rates"].groupby(["variant", "node"])["rate_bits"].mean()
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    ax = figure.add_subplot()
    shown: list[float] = []
    for variant in variants:
        if variant not in means.index.get_level_values("variant"):
            continue
        values = np.sort(means.loc[variant].to_numpy())[::-1]
        ranks = np.arange(1, len(values) + 1)
        (line,) = ax.plot(
            ranks, values, drawstyle="steps-mid", label=f"{variant} ({len(values):,} nodes)"
        )
        bits = _wire_size_line(ax, run, variant, line.get_color())
        shown.extend([*values.tolist(), *([bits] if bits else [])])
    _log_rate_axis(ax, shown)
    ax.set_xlabel("sending nodes, from the highest rate to the lowest")
    ax.set_ylabel("latent rate (bits/sample, log scale)")
    ax.set_title("Latent rate per sending node, sorted (final evaluation, mean over seeds)")
    ax.set_xlim(left=0.5)
    ax.grid(alpha=0.3)
    ax.legend()
    return figure


RATE_DETAILS = tuple(
    field.name for field in dataclasses.fields(RateEstimate) if field.name != "rate_bits"
)
"""``node_rates.csv``'s columns after the reported rate: how it was estimated
(:class:`~innet.gates.RateEstimate`: estimator, estimate before the cap, ceiling,
capped, VIB KL, the pairwise bracket and its subsample)."""


INL_REPORT = FamilyReport(
    variant_summary=variant_summary,
    comparison=comparison,
    headline=(
        HeadlineColumn(
            "accuracy (mean ± std)",
            lambda v, name, s: format_mean_std(
                v["accuracy_mean"], v["accuracy_std"], len(s["seeds"])
            ),
            before_exchange=True,
        ),
        HeadlineColumn(
            "latent rate (bits/sample)", lambda v, name, s: _format_rate(v.get("latent_rate_bits"))
        ),
        HeadlineColumn(
            "VIB KL (bits/sample)", lambda v, name, s: _format_rate(v.get("vib_kl_bits"))
        ),
        HeadlineColumn("wire (fwd/bwd)", lambda v, name, s: _format_wire(v), align="left"),
        HeadlineColumn("rate reduction", lambda v, name, s: _rate_reductions(s, name)),
    ),
    sections=(_comparisons_section, _rates_section, _reading_section),
    figures=_figures,
    tables={
        "node_rates": FamilyTable(
            "node_rates.csv", ("variant", "seed", "node", "rate_bits"), RATE_DETAILS
        ),
        # older run directories have none
        "executors": FamilyTable("executors.csv", ("variant", "seed", "executor"), required=False),
    },
    metric_names=("train_loss", "test_loss", "accuracy", "latent_rate_bits"),
    primary_metric="accuracy",
    tradeoff_metrics=("latent_rate_bits",),
)
