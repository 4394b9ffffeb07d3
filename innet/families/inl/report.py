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
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from innet.core.phases import training_phases
from innet.core.topology.model import node_key
from innet.families.inl.gates import BRACKET_METRICS, FUSION_METRICS, RATE_METRICS, RateEstimate
from innet.report.family import FamilyReport, HeadlineColumn
from innet.report.figures import (
    LABELLED_NODES_MAX,
    event_marks,
    metric_time_figure,
    outside_legend,
    save_figure,
    variant_styles,
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
from innet.report.stats import equivalence_test, paired_difference, paired_log_ratio
from innet.report.summary import final_epoch_metrics, mean_or_none, plain_float, reduction
from innet.report.tables import training_exchange, training_exchange_per_epoch
from innet.rundir.layout import FamilyTable

if TYPE_CHECKING:
    from innet.rundir.io import RunData

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
    wire = _block(config, "wire")
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
    *BRACKET_METRICS,
    *(column for column in RATE_METRICS if column != "latent_rate_bits"),
    *FUSION_METRICS,
)
"""Rate columns of ``metrics.csv`` beside ``latent_rate_bits`` (final epoch, mean over seeds)."""


def _rate_extras(run: RunData, variant: str, seeds: list[int]) -> dict[str, Any]:
    """The final epoch's :data:`RATE_EXTRAS`, mean over seeds; None where absent or empty.

    They are columns of the run's ``metrics.csv`` beyond the family's
    ``metric_names`` (the run-directory reader keeps them): runs written
    before these columns existed have none of them.
    """
    table = run.metrics
    extras: dict[str, Any] = dict.fromkeys(RATE_EXTRAS)
    extras.update(_rate_bracket_per_seed(pd.DataFrame()))
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
    return extras | _rate_bracket_per_seed(final.sort_values("seed"))


def _rate_bracket_per_seed(final: pd.DataFrame) -> dict[str, list[float | None]]:
    """The final epoch's bracket ends of the summed rate, seed by seed (None where absent)."""
    out: dict[str, list[float | None]] = {}
    for column in ("rate_bracket_lower_bits", "rate_bracket_upper_bits"):
        values = final[column] if column in final.columns else [None] * len(final)
        out[f"{column}_per_seed"] = [plain_float(v) if pd.notna(v) else None for v in values]
    return out


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
    paired = paired_difference(per_seed_a, per_seed_b, bounds=(0.0, 1.0))
    margin = summary_a.get("equivalence_margin")
    return {
        "accuracy_equivalence": (
            equivalence_test(paired.differences, margin).to_json() if margin else None
        ),
        **rate_reduction(summary_a, summary_b),
        "accuracy_delta": delta,
        "accuracy_paired_delta": paired.to_json(),
        "accuracy_std_a": summary_a["accuracy_std"],
        "accuracy_within_one_std": (
            abs(delta) <= summary_a["accuracy_std"] if len(per_seed_a) > 1 else None
        ),
    }


def rate_reduction(summary_a: dict, summary_b: dict) -> dict[str, Any]:
    """``b``'s rate reduction against ``a``: the point, the bracket's range, the paired interval.

    ``rate_reduction``: ``1 - mean rate(b) / mean rate(a)`` (mean point
    estimates over seeds). ``rate_reduction_range``: ``[1 - upper(b) /
    lower(a), 1 - lower(b) / upper(a)]`` from the means of the bracket ends,
    which contains the point whenever each point lies in its bracket (None
    without brackets). ``rate_reduction_paired``: :func:`paired_log_ratio` of
    the per-seed point estimates (the geometric-mean reduction and its 95%
    interval). All None, with ``rate_reduction_note`` saying why, when either
    variant's gate is ``none``: its rate is the message's size, not
    information, and a "reduction" against it would measure the gate, not a
    rate.
    """
    ungated = [s.get("gate") == "none" for s in (summary_a, summary_b)]
    if any(ungated):
        return {
            "rate_reduction": None,
            "rate_reduction_range": None,
            "rate_reduction_paired": None,
            "rate_reduction_note": "no gate: its rate is a ceiling, not information",
        }
    rate_a, rate_b = summary_a["latent_rate_bits"], summary_b["latent_rate_bits"]
    ends = [
        _mean_of_all(summary.get(f"rate_bracket_{end}_bits_per_seed") or [])
        for summary, end in (
            (summary_a, "lower"),
            (summary_a, "upper"),
            (summary_b, "lower"),
            (summary_b, "upper"),
        )
    ]
    low_a, high_a, low_b, high_b = ends
    span = None
    if None not in ends:
        span = [reduction(low_a, high_b), reduction(high_a, low_b)]
        span = None if None in span else span
    paired = paired_log_ratio(
        summary_a.get("latent_rate_bits_per_seed") or [],
        summary_b.get("latent_rate_bits_per_seed") or [],
    )
    return {
        "rate_reduction": reduction(rate_a, rate_b),
        "rate_reduction_range": span,
        "rate_reduction_paired": paired.to_json() if paired.ratio is not None else None,
        "rate_reduction_note": None,
    }


def _mean_of_all(values: list[float | None]) -> float | None:
    """The mean, or None when there is no value or one is missing (a bracket needs every seed)."""
    present = [value for value in values if value is not None]
    if not values or len(present) < len(values):
        return None
    return mean_or_none(present)


def _block(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The block ``name`` of a variant's resolved configuration ({} when absent)."""
    block = config.get(name)
    return block if isinstance(block, dict) else {}


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
        rate = _rate_phrase(comparison, va, vb, a)
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


def _rate_phrase(comparison: dict[str, Any], va: dict, vb: dict, a: str) -> str:
    """The latent-rate part of a comparison sentence: point, bracket range, paired interval."""
    values = (
        f"{_format_rate(vb['latent_rate_bits'])} vs {_format_rate(va['latent_rate_bits'])} "
        "bits/sample"
    )
    if comparison.get("rate_reduction_note"):
        return f"no latent-rate reduction ({comparison['rate_reduction_note']}; {values})"
    phrase = _change_phrase(
        "latent rate", comparison["rate_reduction"], values, f"{a}'s latent rate is 0 or unknown"
    )
    extras = []
    if _is_span(comparison.get("rate_reduction_range")):
        low, high = comparison["rate_reduction_range"]
        extras.append(f"from the brackets' ends {_percent_span(low, high)}")
    paired = comparison.get("rate_reduction_paired")
    if paired and paired.get("reduction_ci_low") is not None:
        extras.append(
            f"paired over seeds {format_percent(paired['reduction'])}, 95% interval "
            f"{_percent_span(paired['reduction_ci_low'], paired['reduction_ci_high'])}"
        )
    return phrase + (f" [{'; '.join(extras)}]" if extras else "")


def _is_span(span: list[float] | None) -> bool:
    """A range worth showing: present and not a single point (exact estimators' brackets)."""
    return span is not None and len(span) > 0 and abs(span[1] - span[0]) > 1e-9


def _percent_span(low: float, high: float) -> str:
    return f"{format_percent(low)} to {format_percent(high)}"


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
            "- **Latent rate**: the information a node's message carries about which input "
            "was sent, in bits per sample, final epoch, summed over the nodes that send. "
            "Gaussian gate: a Monte Carlo estimate (± its standard error) of the information "
            "of the empirical mixture over a seeded subsample of n test inputs, shown with the "
            "Kolchinsky–Tracey pairwise bracket [lower, upper] of that same quantity; it "
            "cannot exceed log2 n per node, and a node within 1 bit of log2 n is *saturated* "
            "(its gate may carry more than n inputs can show). The moment-matched Gaussian "
            "value is a loose upper bound on the population `I(Z;T)`, shown for reference. "
            "Discrete gate: the exact mutual information `H(mean p) - mean H(p)` over the whole "
            "evaluation set (with m codebook groups, the sum over groups: an upper bound on the "
            "joint one). `none` gate: not finite, so the ceiling is reported. No node's rate "
            "exceeds the bits its message carries per sample (the ceiling): it is capped "
            "there. The sum over senders double counts (relays re-encode what they receive); "
            "the information reaching the fusion node is reported beside it. Rate reduction "
            "is `1 - rate(B) / rate(A)` of the point estimates, with the range the brackets' "
            "ends allow and the paired-seed interval; none is given against a variant "
            "without a gate.",
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
        f"{format_percent(comparison['rate_reduction'])}"
        + (
            f" [{_percent_span(*comparison['rate_reduction_range'])}]"
            if _is_span(comparison.get("rate_reduction_range"))
            else ""
        )
        + f" vs {comparison['a']}"
        for comparison in summary["comparisons"]
        if comparison["b"] == name and comparison.get("rate_reduction") is not None
    ]
    return "; ".join(parts) or "—"


def _spread_above_zero(rows: pd.DataFrame) -> np.ndarray:
    """Error bars of ``mean ± std`` that stop at 0 bits (a rate is never negative)."""
    mean, std = rows["mean"].fillna(0.0).to_numpy(), rows["std"].fillna(0.0).to_numpy()
    return np.vstack([np.minimum(std, mean), std])


def _format_headline_rate(v: dict[str, Any]) -> str:
    """The latent rate with its bracket, ``36.20 [31.05, 40.10]``, and saturated nodes."""
    rate = _format_rate(v.get("latent_rate_bits"))
    low, high = v.get("rate_bracket_lower_bits"), v.get("rate_bracket_upper_bits")
    if low is None or high is None or v.get("rate_bracket_n") is None:
        return rate
    saturated = v.get("rate_saturated_nodes") or 0
    whole = float(saturated).is_integer()
    count = f"{saturated:g} nodes" if whole else f"on average {saturated:.1f} nodes"
    return f"{rate} [{_format_rate(low)}, {_format_rate(high)}]" + (
        f" ({count} saturated)" if saturated else ""
    )


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
        "| variant | gate | wire (fwd/bwd) | latent rate ± s.e. | pairwise bracket "
        "[lower, upper] (n) | saturated nodes | fusion input [bracket] | moment-matched "
        "bound (loose) | VIB KL | message bits/sample | capped nodes |"
    )
    lines = [header, "|---|---|---|---:|---|---:|---|---:|---:|---:|---:|"]
    for name, v in summary["variants"].items():
        capped = v.get("rate_capped_nodes")
        lines.append(
            f"| {name} | {v.get('gate')} | {_format_wire(v)} | {_rate_with_error(v)} | "
            f"{_bracket_cell(v)} | {_count(v.get('rate_saturated_nodes'))} | "
            f"{_fusion_cell(v)} | {_format_rate(v.get('rate_moment_upper_bits'))} | "
            f"{_format_rate(v.get('vib_kl_bits'))} | "
            f"{_format_rate(v.get('rate_ceiling_bits'))} | {_count(capped)} |"
        )
    return (
        "## Rates\n\n"
        "Bits per sample, final epoch, mean over seeds. **Latent rate**: summed over the "
        "sending nodes. Gaussian gate: the Monte Carlo estimate of the information of the "
        "empirical mixture over a seeded subsample of n test inputs (± its standard error), "
        "clipped into the Kolchinsky–Tracey pairwise bracket of the same mixture (Bhattacharyya "
        "lower, KL upper; the true value lies inside). Each node's value cannot exceed log2 n; "
        "a node within 1 bit of it is *saturated*: there the number says more about n than "
        "about the gate, which may carry more. Discrete gate: the exact mutual information "
        "over the evaluation set (with m codebook groups, the sum of the groups' "
        "informations, an upper bound; its bracket's lower end is the largest group's). "
        "`none` gate: the message's bits per sample (its `I(Z;T)` is not finite). Each "
        "node's rate is capped at the bits its message carries per sample (message "
        "bits/sample, summed); capped nodes are those at that ceiling. **Fusion input**: "
        "the information in the messages reaching the fusion node taken together (one "
        "Gaussian channel of their joint, same estimators, at most log2 n): the sum over "
        "senders double counts, since relays re-encode what they receive. The "
        "**moment-matched bound** (a Gaussian of the same covariance, whole evaluation set) "
        "is an upper bound on `I(Z;T)`, loose when the latents cluster by class: shown for "
        "reference, never the headline. The VIB KL is the Gaussian gate's training penalty, "
        "not a rate.\n\n" + "\n".join(lines)
    )


def _rate_with_error(v: dict[str, Any]) -> str:
    rate, error = v.get("latent_rate_bits"), v.get("rate_stderr_bits")
    return _format_rate(rate) + ("" if error is None else f" ± {error:.2f}")


def _bracket_cell(v: dict[str, Any]) -> str:
    if v.get("rate_bracket_lower_bits") is None or v.get("rate_bracket_upper_bits") is None:
        return MISSING
    n = v.get("rate_bracket_n")
    return (
        f"[{_format_rate(v['rate_bracket_lower_bits'])}, "
        f"{_format_rate(v['rate_bracket_upper_bits'])}]" + ("" if n is None else f" (n = {int(n)})")
    )


def _fusion_cell(v: dict[str, Any]) -> str:
    rate = v.get("fusion_input_rate_bits")
    if rate is None:
        return MISSING
    low, high = v.get("fusion_input_lower_bits"), v.get("fusion_input_upper_bits")
    saturated = v.get("fusion_input_saturated")
    return f"{_format_rate(rate)} [{_format_rate(low)}, {_format_rate(high)}]" + (
        " (saturated)" if saturated and saturated >= 0.5 else ""
    )


def _count(value: float | None) -> str:
    """A count of nodes; a mean over seeds that is not whole says so (``1.2 on average``)."""
    if value is None:
        return MISSING
    return f"{value:g}" if float(value).is_integer() else f"{value:.1f} on average"


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
        wire = _block(run.variant_config(variant), "wire")
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
    styles = variant_styles(list(costs["variant"]))
    for ax, (column, label) in zip(axes, columns, strict=True):
        for row in costs.itertuples():
            value = getattr(row, column)
            if np.isfinite(value) and value > 0:
                style = styles[row.variant]
                ax.scatter(
                    value,
                    row.accuracy,
                    marker=style.marker,
                    color=style.colour,
                    label=f"{row.variant} ({row.wire})",
                )
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("final test accuracy (mean over seeds)")
    outside_legend(figure, title="variant (wire fwd/bwd)")
    figure.suptitle("What rate costs: accuracy against rate, bytes actually sent, simulated time")
    return figure


def _accuracy_figure(run: RunData, variants: list[str]) -> Figure:
    curves = _accuracy_curves(run)
    styles = variant_styles(variants)
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    ax = figure.add_subplot()
    for variant in variants:
        curve = curves[curves["variant"] == variant]
        if curve.empty:
            continue
        x = curve["bytes_mean"].to_numpy() / 1e6
        mean = curve["accuracy_mean"].to_numpy()
        std = curve["accuracy_std"].to_numpy()
        (line,) = ax.plot(x, mean, markersize=4, label=variant, **styles[variant].line())
        band = (np.clip(mean - std, 0.0, 1.0), np.clip(mean + std, 0.0, 1.0))  # accuracy's range
        ax.fill_between(x, *band, color=line.get_color(), alpha=0.2)
        for at_bytes, description in event_marks(run, variant):
            ax.axvline(at_bytes / 1e6, color=line.get_color(), linestyle=":", linewidth=1.2)
            ax.annotate(
                description,
                (at_bytes / 1e6, 0.02),
                xycoords=("data", "axes fraction"),
                rotation=90,
                fontsize=7,
                color=line.get_color(),
                ha="right",
                va="bottom",
            )
    ax.set_xlabel("cumulative training exchange per seed (MB)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Test accuracy against training bytes (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    outside_legend(figure)
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
    width_inches = float(np.clip(4.0 + 0.08 * len(nodes) * max(len(variants), 1), 8.0, 20.0))
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
    styles = variant_styles(variants)
    for index, variant in enumerate(variants):
        if variant not in stats.index.get_level_values("variant"):
            continue
        rows = stats.loc[variant].reindex(nodes)
        bars = ax.bar(
            positions + (index - (len(variants) - 1) / 2) * bar_width,
            rows["mean"].fillna(0.0),
            width=bar_width,
            yerr=_spread_above_zero(rows) if spread else None,
            capsize=2,
            label=_rate_label(run, variant),
            **styles[variant].bar(),
        )
        bits = _wire_size_line(ax, run, variant, bars.patches[0].get_facecolor())
        shown.extend([*rows["mean"].dropna().tolist(), *([bits] if bits else [])])
    shown.extend(_saturation_line(ax, rates))
    _log_rate_axis(ax, shown)
    graph = run.topology.graph
    labels = [run.topology.label(node) if node in graph else node for node in nodes]
    ax.set_xticks(positions, labels, rotation=90 if len(nodes) > 12 else 0)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlim(-0.6, len(nodes) - 0.4)
    ax.set_ylabel("latent rate (bits/sample, log scale)")
    ax.set_title(
        f"Latent rate per sending node\n(final evaluation, mean{' ± std' if spread else ''} "
        "over seeds)"
    )
    ax.grid(axis="y", alpha=0.3)
    _rate_legend(figure, ax)
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
        ax.axhline(
            bits, color=color, linestyle="--", linewidth=1.2, label=f"_{variant}: message size"
        )  # in the variant's entry
    return bits


def _rate_label(run: RunData, variant: str) -> str:
    """The variant's legend entry: its name and the size of its messages."""
    bits = _message_bits(run, variant)
    return f"{variant} ({bits:g}-bit messages)" if bits is not None else variant


def _saturation_line(ax: Any, rates: pd.DataFrame) -> list[float]:
    """A dotted line at ``log2 n``, the most a rate estimated on ``n`` inputs can show.

    Drawn when some node's rate was estimated on a subsample (the Gaussian
    gate's ``bracket_n``); returns the heights drawn, for the axis limits.
    """
    if "bracket_n" not in rates or "estimator" not in rates:
        return []
    sizes = rates.loc[rates["estimator"] == "mixture_mc", "bracket_n"].dropna().unique()
    heights = []
    for n in sorted(int(size) for size in sizes if size > 1):
        height = math.log2(n)
        label = f"log2 n = {height:.3g} bits: the most\nn = {n} test inputs can show"
        ax.axhline(height, color="black", linestyle=":", linewidth=1.2, label=label)
        heights.append(height)
    return heights


def _rate_legend(figure: Figure, ax: Any) -> None:
    """The variants beside the axes, and one entry for the dashed message-size lines."""
    handles, labels = ax.get_legend_handles_labels()
    if any(line.get_linestyle() == "--" for line in ax.lines):
        handles.append(Line2D([], [], color="#555555", linestyle="--", linewidth=1.2))
        labels.append("message size (bits/sample),\nin the variant's colour")
    outside_legend(figure, handles, labels)


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
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    ax = figure.add_subplot()
    shown: list[float] = []
    styles = variant_styles(variants)
    for variant in variants:
        if variant not in means.index.get_level_values("variant"):
            continue
        values = np.sort(means.loc[variant].to_numpy())[::-1]
        ranks = np.arange(1, len(values) + 1)
        style = styles[variant]
        (line,) = ax.plot(
            ranks,
            values,
            drawstyle="steps-mid",
            color=style.colour,
            linestyle=style.linestyle,
            label=f"{_rate_label(run, variant)}, {len(values):,} nodes",
        )
        bits = _wire_size_line(ax, run, variant, line.get_color())
        shown.extend([*values.tolist(), *([bits] if bits else [])])
    shown.extend(_saturation_line(ax, run.tables["node_rates"]))
    _log_rate_axis(ax, shown)
    ax.set_xlabel("sending nodes, from the highest rate to the lowest")
    ax.set_ylabel("latent rate (bits/sample, log scale)")
    ax.set_title("Latent rate per sending node, sorted\n(final evaluation, mean over seeds)")
    ax.set_xlim(left=0.5)
    ax.grid(alpha=0.3)
    _rate_legend(figure, ax)
    return figure


RATE_DETAILS = tuple(
    field.name for field in dataclasses.fields(RateEstimate) if field.name != "rate_bits"
)
"""``node_rates.csv``'s columns after the reported rate: how it was estimated
(:class:`~innet.families.inl.gates.RateEstimate`: estimator, estimate before the clip and cap,
ceiling, capped, standard error, saturation, the moment-matched bound, VIB KL,
the pairwise bracket and its subsample)."""


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
            "latent rate [bracket] (bits/sample)", lambda v, name, s: _format_headline_rate(v)
        ),
        HeadlineColumn(
            "VIB KL (bits/sample)", lambda v, name, s: _format_rate(v.get("vib_kl_bits"))
        ),
        HeadlineColumn("wire (fwd/bwd)", lambda v, name, s: _format_wire(v), align="left"),
        HeadlineColumn(
            "rate reduction [bracket range]", lambda v, name, s: _rate_reductions(s, name)
        ),
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
