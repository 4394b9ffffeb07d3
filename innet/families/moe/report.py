"""How the ``moe`` family reports a run: accuracy, bytes on the links, cross-group bytes, skew.

**Bytes.** One definition of the bytes of routed traffic everywhere (the
headline, ``summary.json``, the topology figures, ``links.csv``): the bytes
the links carry, every hop counted. A message between linked nodes crosses
its link; one between unlinked nodes crosses every link of the path the
network model sends it over (:meth:`~innet.core.netsim.NetworkModel.route`), and
each of those links carries its bytes. So the family's ``summary.json``
gives, per variant and seed:

- ``train_exchange_bytes`` / ``_per_seed``: training bytes on links, every
  hop counted (this family's meaning of the core key; the headline's
  *training bytes on links*); ``links_used``: the links that carried any;
- ``sent_bytes_per_seed``: the same messages counted once each, end to end
  (what the nodes sent);
- ``cross_group_bytes``: training bytes of every phase (tokens, outputs, both
  gradients, re-placed experts' parameters) of messages whose two end nodes
  lie in different groups, counted once per message, from the exchange
  records; ``cross_group_migrate_bytes``: the re-placement part of it.

Also ``router``, ``lambda``, ``accuracy_mean``, ``accuracy_std`` (sample
standard deviation over seeds, null with one), ``accuracy_se``,
``accuracy_per_seed``, ``max_vio_expert`` and ``max_vio_group`` (final
training step, worst layer, mean over seeds), ``sim_time_s_per_step``
(simulated training time per training step), ``purity`` and
``equivalence_margin`` (``moe.equivalence_margin``).

**Comparisons** against the baseline (the first ``topk`` variant), from
:mod:`innet.report.stats`, the same estimators in the table, the text and
``summary.json``'s comparisons: the change of cross-group bytes is the
geometric mean of the per-seed ratios with its 95% t interval on the log
scale (:func:`~innet.report.stats.paired_log_ratio`; it cannot fall below
-100%); accuracy, the paired difference with its 95% t interval and the
equivalence test (TOST) at ``equivalence_margin``. *At equal accuracy*
means that test says ``equivalent``.

The section adds the links hop by hop (:func:`hop_loads`) and the balance
check (CARL's controller on a Zipf workload); ``cost_accuracy.png`` plots
accuracy against cross-group bytes per training step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from innet.core.netsim import NetworkModel
from innet.core.phases import training_phases
from innet.families.moe.metrics import STEP_COLUMNS
from innet.families.moe.phases import PHASES
from innet.families.moe.placement import node_groups
from innet.families.moe.routers import RouterConfig
from innet.report.family import FamilyReport, HeadlineColumn
from innet.report.figures import save_figure
from innet.report.mdtable import markdown_table
from innet.report.stats import equivalence_test, paired_difference, paired_log_ratio
from innet.report.summary import final_epoch_metrics
from innet.rundir.layout import FamilyTable

if TYPE_CHECKING:
    from innet.rundir.io import RunData

__all__ = [
    "MOE_REPORT",
    "TABLES",
    "ROLE_NAMES",
    "lambda_acceptance",
    "first_reach",
    "hop_loads",
    "hop_bytes",
    "cross_group_bytes",
]

TABLES = {
    "moe_steps": FamilyTable("moe_steps.csv", STEP_COLUMNS),
    "moe_nodes": FamilyTable("moe_nodes.csv", ("variant", "seed", "node", "group", "role")),
    "moe_balance": FamilyTable(
        "moe_balance.csv",
        ("variant", "seed", "mode", "gamma", "step", "max_vio_expert", "max_vio_group"),
    ),
}
ROLE_NAMES = {"source": "token source", "experts": "expert node", "relay": "relay"}
"""``moe_nodes.csv``'s roles in the report's words."""
FIGURE = "cost_accuracy.png"
TARGET_EXPERT, TARGET_GROUP = 0.2, 0.1


def _router(run: RunData, variant: str) -> RouterConfig:
    """The variant's resolved router (``config.yaml`` holds it whole)."""
    return RouterConfig.model_validate(run.variant_config(variant).get("router") or {})


def _groups(run: RunData) -> dict[str, int]:
    nodes = run.tables.get("moe_nodes")
    if nodes is None or nodes.empty:
        return node_groups(run.topology)
    return dict(zip(nodes["node"].astype(str), nodes["group"].astype(int), strict=False))


def _training(run: RunData, variant: str | None = None) -> pd.DataFrame:
    x = run.exchanges
    if variant is not None:
        x = x[x["variant"] == variant]
    return x[x["phase"].isin(training_phases())]


def cross_group_bytes(
    run: RunData, variant: str, seeds: list[int], phases: list[str] | None = None
) -> list[int]:
    """Per seed: training bytes of messages whose end nodes lie in different groups.

    Every training phase (``phases``: only those), each message counted once,
    summed from ``exchanges.parquet``.
    """
    group = _groups(run)
    x = _training(run, variant)
    if phases is not None:
        x = x[x["phase"].isin(phases)]
    cross = x["src"].astype(str).map(group) != x["dst"].astype(str).map(group)
    totals = x[cross].groupby("seed")["nbytes"].sum()
    return [int(totals.get(seed, 0)) for seed in seeds]


def hop_bytes(run: RunData, variant: str | None = None) -> pd.DataFrame:
    """Training bytes per link direction and seed, every hop of a routed message counted.

    Columns ``variant, seed, src, dst, nbytes`` (one row per link direction
    and seed). A message between linked nodes crosses that link (as on the
    network model); a routed one between unlinked nodes every link of its
    path (:meth:`~innet.core.netsim.NetworkModel.route`).
    """
    x = _training(run, variant)
    sizes = x.groupby(["variant", "seed", "src", "dst", "nbytes"], observed=True).size()
    model = NetworkModel(run.topology)
    graph = run.topology.graph
    loads: dict[tuple[str, int, str, str], int] = {}
    for (name, seed, src, dst, nbytes), count in sizes.items():
        src, dst = str(src), str(dst)
        path = [src, dst] if graph.has_edge(src, dst) else model.route(src, dst, int(nbytes))
        for u, v in zip(path, path[1:], strict=False):
            key = (str(name), int(seed), u, v)
            loads[key] = loads.get(key, 0) + int(count) * int(nbytes)
    rows = [
        {"variant": k[0], "seed": k[1], "src": k[2], "dst": k[3], "nbytes": value}
        for k, value in loads.items()
    ]
    return pd.DataFrame(rows, columns=["variant", "seed", "src", "dst", "nbytes"])


def _exact_mean(values: list[int]) -> int | float:
    """Mean of integers, as an int when it is one (as the core summary writes it)."""
    if not values:
        return 0
    total = sum(values)
    return total // len(values) if total % len(values) == 0 else total / len(values)


def _link_summary(run: RunData, variant: str, seeds: list[int]) -> dict[str, Any]:
    """Bytes on links (every hop) and sent (end to end) per seed, and the links used."""
    hops = hop_bytes(run, variant)
    on_links = hops.groupby("seed")["nbytes"].sum()
    per_seed = [int(on_links.get(seed, 0)) for seed in seeds]
    sent = _training(run, variant).groupby("seed")["nbytes"].sum()
    links = {frozenset((u, v)) for u, v in zip(hops["src"], hops["dst"], strict=True)}
    return {
        "train_exchange_bytes": _exact_mean(per_seed),
        "train_exchange_bytes_per_seed": per_seed,
        "sent_bytes_per_seed": [int(sent.get(seed, 0)) for seed in seeds],
        "links_used": len(links),
    }


def variant_summary(run: RunData, variant: str, seeds: list[int]) -> dict[str, Any]:
    """The family's numbers for one variant (see the module docstring)."""
    last = final_epoch_metrics(run.metrics, variant, seeds)
    accuracy = [float(a) for a in last["accuracy"]]
    std = float(np.std(accuracy, ddof=1)) if len(accuracy) > 1 else None
    steps = run.tables.get("moe_steps")
    per_seed_steps = (
        steps[steps["variant"] == variant].groupby("seed")["step"].nunique()
        if steps is not None and not steps.empty
        else pd.Series(dtype=int)
    )
    metrics = run.metrics[run.metrics["variant"] == variant]
    sim = metrics.groupby("seed")["sim_time_s"].sum()
    per_step = [float(sim[seed] / per_seed_steps[seed]) for seed in seeds if seed in per_seed_steps]
    router = _router(run, variant)
    margin = float((run.config.get("moe") or {}).get("equivalence_margin", 0.01))
    return {
        **_link_summary(run, variant, seeds),
        "router": router.kind,
        "lambda": router.lam,
        "carl_parts": {
            "balance": router.balance,
            "warm_start": router.warm_start,
            "replace_every": router.replace_every,
        }
        if router.kind == "carl"
        else None,
        "accuracy_mean": float(np.mean(accuracy)),
        "accuracy_std": std,
        "accuracy_se": std / math.sqrt(len(accuracy)) if std is not None else None,
        "accuracy_per_seed": accuracy,
        "cross_group_bytes": cross_group_bytes(run, variant, seeds),
        "cross_group_migrate_bytes": cross_group_bytes(run, variant, seeds, [PHASES["migrate"]]),
        "max_vio_expert": float(last["max_vio_expert"].mean()),
        "max_vio_group": float(last["max_vio_group"].mean()),
        "purity": float(last["purity"].mean()),
        "purity_per_seed": [float(p) for p in last["purity"]],
        "sim_time_s_per_step": float(np.mean(per_step)) if per_step else None,
        "equivalence_margin": margin,
    }


def comparison(a: str, b: str, summary_a: dict[str, Any], summary_b: dict[str, Any]) -> dict:
    """Paired comparisons of ``b`` against ``a`` (see the module docstring)."""
    accuracy = paired_difference(
        summary_a["accuracy_per_seed"], summary_b["accuracy_per_seed"], bounds=(0.0, 1.0)
    )
    differences = [
        y - x
        for x, y in zip(summary_a["accuracy_per_seed"], summary_b["accuracy_per_seed"], strict=True)
    ]
    return {
        "cross_group_bytes_ratio": paired_log_ratio(
            summary_a["cross_group_bytes"], summary_b["cross_group_bytes"]
        ).to_json(),
        "accuracy_paired_delta": accuracy.to_json(),
        "accuracy_equivalence": equivalence_test(
            differences, summary_a["equivalence_margin"]
        ).to_json(),
        "purity_paired_delta": paired_difference(
            summary_a["purity_per_seed"], summary_b["purity_per_seed"], bounds=(0.0, 1.0)
        ).to_json(),
    }


def hop_loads(run: RunData) -> pd.DataFrame:
    """Training bytes per link direction and training step, hop by hop (mean over seeds).

    From :func:`hop_bytes`. Columns: ``variant, src, dst, bytes_per_step,
    busy_s_per_step`` (``8 * bytes / capacity``) and ``inter_group`` (the link
    joins two groups).
    """
    hops = hop_bytes(run)
    steps = run.tables["moe_steps"].groupby(["variant", "seed"])["step"].nunique()
    graph = run.topology.graph
    groups = _groups(run)
    hops = hops.assign(
        share=hops["nbytes"]
        / [steps[(v, s)] for v, s in zip(hops["variant"], hops["seed"], strict=True)]
        / len(run.seeds)
    )
    loads = hops.groupby(["variant", "src", "dst"], sort=False)["share"].sum()
    rows = [
        {
            "variant": variant,
            "src": u,
            "dst": v,
            "bytes_per_step": float(value),
            "busy_s_per_step": 8 * float(value) / float(graph.edges[u, v]["capacity"]),
            "inter_group": groups[u] != groups[v],
        }
        for (variant, u, v), value in loads.items()
    ]
    return pd.DataFrame(
        rows, columns=["variant", "src", "dst", "bytes_per_step", "busy_s_per_step", "inter_group"]
    )


def _baseline(summary: dict[str, Any]) -> str | None:
    return next((n for n, v in summary["variants"].items() if v["router"] == "topk"), None)


def _against(summary: dict[str, Any], base: str, name: str) -> dict[str, Any]:
    """The comparison of ``name`` against ``base``: from ``summary`` or computed alike."""
    for entry in summary.get("comparisons", []):
        if entry["a"] == base and entry["b"] == name and "cross_group_bytes_ratio" in entry:
            return entry
    variants = summary["variants"]
    return comparison(base, name, variants[base], variants[name])


def _lambda_sweep(summary: dict[str, Any]) -> list[tuple[float, str]]:
    """CARL variants with lambda > 0, largest lambda first: the cost term alone if any.

    The lambda sweep is the CARL variants without balancing, warm start or
    re-placement; without such variants, every CARL variant.
    """
    carl = [
        (v["lambda"], n, v.get("carl_parts") or {})
        for n, v in summary["variants"].items()
        if v["router"] == "carl" and v["lambda"] > 0
    ]
    alone = [
        (lam, n)
        for lam, n, parts in carl
        if parts.get("balance") == "off"
        and not parts.get("warm_start")
        and not parts.get("replace_every")
    ]
    return sorted(alone or [(lam, n) for lam, n, _ in carl], key=lambda pair: -pair[0])


def lambda_acceptance(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The largest lambda of the sweep whose accuracy is equivalent (TOST) to the baseline's.

    With its change of cross-group bytes against the baseline (geometric mean
    ratio, log-scale interval; the table's estimator). ``variant`` is None when
    no CARL variant with lambda > 0 is shown equivalent; None without a
    baseline or such a variant. The sweep: :func:`_lambda_sweep`.
    """
    base_name = _baseline(summary)
    if base_name is None:
        return None
    carl = _lambda_sweep(summary)
    if not carl:
        return None
    margin = summary["variants"][base_name]["equivalence_margin"]
    for lam, name in carl:
        entry = _against(summary, base_name, name)
        if entry["accuracy_equivalence"]["verdict"] == "equivalent":
            return {
                "baseline": base_name,
                "variant": name,
                "lambda": lam,
                "margin": margin,
                "cross_group_bytes_ratio": entry["cross_group_bytes_ratio"],
                "accuracy_equivalence": entry["accuracy_equivalence"],
            }
    return {"baseline": base_name, "variant": None, "lambda": None, "margin": margin}


def first_reach(balance: pd.DataFrame) -> pd.DataFrame:
    """Per (mode, gamma) and seed: the first step with expert MaxVio <= 0.2 and group <= 0.1.

    Also the final values and the smallest expert MaxVio reached. ``reached``
    is -1 when never.
    """
    rows = []
    for (mode, gamma, seed), trace in balance.groupby(["mode", "gamma", "seed"], sort=False):
        ok = trace[(trace.max_vio_expert <= TARGET_EXPERT) & (trace.max_vio_group <= TARGET_GROUP)]
        rows.append(
            {
                "mode": mode,
                "gamma": gamma,
                "seed": seed,
                "reached": int(ok["step"].min()) if len(ok) else -1,
                "final_expert": float(trace.max_vio_expert.iloc[-1]),
                "final_group": float(trace.max_vio_group.iloc[-1]),
            }
        )
    return pd.DataFrame(rows)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _change(ratio: dict[str, Any]) -> str:
    """A paired log ratio as a percentage change with its interval (or why there is none)."""
    if ratio.get("excluded"):
        return f"n/a ({ratio['excluded']} seed(s) with 0 bytes)"
    if ratio.get("change") is None:
        return "n/a"
    text = f"{100 * ratio['change']:+.1f}%"
    if ratio.get("change_ci_low") is not None:
        text += f" [{100 * ratio['change_ci_low']:+.1f}, {100 * ratio['change_ci_high']:+.1f}]"
    return text


def _delta(paired: dict[str, Any], digits: int = 3) -> str:
    if paired.get("mean") is None:
        return "n/a"
    text = f"{paired['mean']:+.{digits}f}"
    if paired.get("ci_low") is not None:
        text += f" [{paired['ci_low']:+.{digits}f}, {paired['ci_high']:+.{digits}f}]"
    return text


def _verdict(test: dict[str, Any]) -> str:
    return {"equivalent": "equivalent", "not shown equivalent": "not shown"}.get(
        test.get("verdict") or "", "n/a"
    )


def _row(name: str, v: dict[str, Any], entry: dict[str, Any] | None) -> list[str]:
    accuracy = f"{v['accuracy_mean']:.3f}" + (
        f" ± {v['accuracy_std']:.3f}" if v["accuracy_std"] is not None else " (n/a)"
    )
    cross, migrate = np.mean(v["cross_group_bytes"]), np.mean(v["cross_group_migrate_bytes"])
    return [
        name,
        v["router"],
        f"{v['lambda']:g}",
        accuracy,
        "—" if entry is None else _delta(entry["accuracy_paired_delta"]),
        "—" if entry is None else _verdict(entry["accuracy_equivalence"]),
        f"{v['train_exchange_bytes'] / 1e6:.2f}",
        f"{cross / 1e6:.3f}" + (f" ({migrate / 1e6:.3f})" if migrate else ""),
        "—" if entry is None else _change(entry["cross_group_bytes_ratio"]),
        f"{_fmt(v['max_vio_expert'], 2)}/{_fmt(v['max_vio_group'], 2)}",
        _fmt(v["sim_time_s_per_step"] and 1e3 * v["sim_time_s_per_step"], 2),
        _fmt(v["purity"], 3),
    ]


_HEADERS = [
    "variant", "router", "lambda", "accuracy", "Δ accuracy vs baseline", "equal accuracy (TOST)",
    "MB on links / seed", "cross-group MB / seed (migration)", "cross-group vs baseline",
    "MaxVio E/G", "ms / step", "purity",
]  # fmt: skip
_ALIGN = ["left", "left", *["right"] * 10]


def _main_table(summary: dict[str, Any], base: str | None) -> list[str]:
    variants = summary["variants"]
    rows = [
        _row(name, v, None if base is None or name == base else _against(summary, base, name))
        for name, v in variants.items()
    ]
    margin = next(iter(variants.values()))["equivalence_margin"] if variants else 0.01
    return [
        "## Mixture of experts",
        "",
        "Accuracy: final test accuracy, mean ± sample std over seeds; against "
        f"`{base}` the paired difference with its 95% t interval, and the equivalence test "
        f"(TOST, margin ±{margin:g} set by `moe.equivalence_margin`: *equivalent* when the "
        "90% t interval lies inside it). MB on links: training bytes the links carried, every "
        "hop of a routed message counted (the headline's bytes). Cross-group: training bytes "
        "of every phase (tokens, outputs, both gradients, re-placed experts' parameters; the "
        "parameters in brackets) of messages between nodes of different groups, each message "
        "once; its change against the baseline is the geometric mean of the per-seed ratios "
        "with a 95% t interval on the log scale (never below -100%). MaxVio: final training "
        "step, worst layer, expert/group. Simulated time per training step (network model).",
        "",
        markdown_table(_HEADERS, rows, _ALIGN),
    ]


def _direction(paired: dict[str, Any]) -> str:
    """Which way a paired difference goes, by its 95% interval."""
    if paired.get("ci_low") is None:
        return "undecided"
    if paired["ci_low"] > 0:
        return "higher"
    return "lower" if paired["ci_high"] < 0 else "undecided"


def _larger_lambdas(summary: dict[str, Any], accepted: dict[str, Any]) -> str:
    """Why each lambda of the sweep above the accepted one is not at equal accuracy."""
    larger = [
        name
        for lam, name in _lambda_sweep(summary)
        if accepted["lambda"] is None or lam > accepted["lambda"]
    ]
    if not larger:
        return ""
    parts = []
    for name in larger:
        paired = _against(summary, accepted["baseline"], name)["accuracy_paired_delta"]
        parts.append(f"`{name}` {_delta(paired)} ({_direction(paired)})")
    return (
        " Larger lambdas, not shown equivalent, with their paired accuracy difference "
        f"(95% t interval; higher, lower or undecided): {', '.join(parts)}."
    )


def _acceptance_lines(summary: dict[str, Any]) -> list[str]:
    accepted = lambda_acceptance(summary)
    if accepted is None:
        return []
    if accepted["variant"] is None:
        return [
            "",
            f"No CARL variant with lambda > 0 is shown equivalent in accuracy to "
            f"`{accepted['baseline']}` (TOST, margin ±{accepted['margin']:g})."
            + _larger_lambdas(summary, accepted),
        ]
    test = accepted["accuracy_equivalence"]
    p_value = "p < 0.001" if test["p_value"] < 0.001 else f"p = {test['p_value']:.3f}"
    return [
        "",
        f"Largest lambda at equal accuracy to `{accepted['baseline']}` (TOST, margin "
        f"±{accepted['margin']:g}, {p_value}): {accepted['lambda']:g} "
        f"(`{accepted['variant']}`); its cross-group bytes change by "
        f"{_change(accepted['cross_group_bytes_ratio'])} (geometric mean of the per-seed "
        "ratios, 95% t interval on the log scale, as in the table)."
        + _larger_lambdas(summary, accepted),
    ]


_BYTE_KINDS = (
    ("train_exchange_bytes_per_seed", "training bytes on links (every hop)"),
    ("sent_bytes_per_seed", "training bytes sent (each message once)"),
)


def _carl_bytes_lines(summary: dict[str, Any], base: str | None) -> list[str]:
    """Whether CARL's training bytes lie above the baseline's (mean over seeds), from the data."""
    variants = summary["variants"]
    carl = [name for name, v in variants.items() if v["router"] == "carl"]
    if base is None or not carl:
        return []
    lines = []
    for key, what in _BYTE_KINDS:
        base_bytes = np.mean(variants[base][key])
        above = [n for n in carl if np.mean(variants[n][key]) > base_bytes]
        if len(above) == len(carl):
            verdict = f"every CARL variant's are above `{base}`'s"
        elif not above:
            verdict = f"no CARL variant's are above `{base}`'s"
        else:
            verdict = f"above `{base}`'s for {', '.join(f'`{n}`' for n in above)} only"
        changes = ", ".join(
            f"`{n}` {_change(paired_log_ratio(variants[base][key], variants[n][key]).to_json())}"
            for n in carl
        )
        lines.append(f"- {what.capitalize()}: {verdict} (mean over seeds; change {changes}).")
    return ["", "CARL's total training bytes against the baseline:", "", *lines]


def _ac_lines(summary: dict[str, Any], base: str | None) -> list[str]:
    """The adaptive-clustering router against the baseline: purity and accuracy."""
    variants = summary["variants"]
    lines = []
    for name, v in variants.items():
        if v["router"] != "ac" or base is None:
            continue
        entry = _against(summary, base, name)
        lines.append(
            f"`{name}` (adaptive clustering) against `{base}`: purity "
            f"{_delta(entry['purity_paired_delta'])}, accuracy "
            f"{_delta(entry['accuracy_paired_delta'])} (paired, 95% t interval; equal accuracy: "
            f"{_verdict(entry['accuracy_equivalence'])}), over {len(summary['seeds'])} seeds."
        )
    return ["", *lines] if lines else []


def _links_lines(run: RunData, variants: dict[str, Any]) -> list[str]:
    links = hop_loads(run)
    if links.empty:
        return []
    link_rows = []
    for name in variants:
        mine = links[links["variant"] == name]
        if mine.empty:
            continue
        top = mine.loc[mine["busy_s_per_step"].idxmax()]
        link_rows.append(
            [
                name,
                f"{top.src} → {top.dst}",
                f"{1e3 * top.busy_s_per_step:.2f}",
                f"{mine[mine.inter_group].bytes_per_step.sum() / 1e3:.1f}",
                f"{mine.bytes_per_step.sum() / 1e3:.1f}",
            ]
        )
    return [
        "",
        "### Links, hop by hop",
        "",
        "Every MoE message laid on the links the network model sends it over: the "
        "busiest link direction (transmission time per training step), and the bytes per "
        "training step on links between groups and on all links (every hop counted).",
        "",
        markdown_table(
            [
                "variant",
                "busiest link",
                "busy ms / step",
                "inter-group kB / step",
                "all links kB / step",
            ],
            link_rows,
            ["left", "left", "right", "right", "right"],
        ),
    ]


def _balance_lines(run: RunData) -> list[str]:
    balance = run.tables.get("moe_balance")
    if balance is None or balance.empty:
        return []
    reach = first_reach(balance)
    table = reach.groupby(["mode", "gamma"], sort=False).agg(
        reached=("reached", lambda s: ", ".join(str(v) if v >= 0 else "never" for v in s)),
        final_expert=("final_expert", "mean"),
        final_group=("final_group", "mean"),
    )
    return [
        "",
        "### Balance check",
        "",
        "CARL's controller alone on a Zipf hot-expert workload (see `docs/moe.md`): the "
        f"first step with expert MaxVio <= {TARGET_EXPERT} and group MaxVio <= "
        f"{TARGET_GROUP} (per seed), and the final MaxVio (mean over seeds).",
        "",
        markdown_table(
            ["controller", "gamma0", "first step reaching both", "final expert", "final group"],
            [
                [mode, f"{gamma:g}", r.reached, f"{r.final_expert:.3f}", f"{r.final_group:.3f}"]
                for (mode, gamma), r in table.iterrows()
            ],
            ["left", "right", "right", "right", "right"],
        ),
    ]


def section(run: RunData, summary: dict[str, Any]) -> str:
    """The MoE section of ``report.md``."""
    base = _baseline(summary)
    text = [
        *_main_table(summary, base),
        *_acceptance_lines(summary),
        *_carl_bytes_lines(summary, base),
        *_ac_lines(summary, base),
        *_links_lines(run, summary["variants"]),
        *_balance_lines(run),
    ]
    return "\n".join(text)


def node_roles(run: RunData) -> dict[str, str]:
    """Each node's role in this family's words: token source, expert node or relay."""
    nodes = run.tables.get("moe_nodes")
    if nodes is None or nodes.empty:
        return {}
    first = nodes.drop_duplicates("node")
    return {
        str(n): ROLE_NAMES.get(str(r), str(r))
        for n, r in zip(first["node"], first["role"], strict=True)
    }


def figures(run: RunData, out_dir: Path) -> list[tuple[str, str]]:
    """``cost_accuracy.png``: accuracy against cross-group bytes per training step."""
    from innet.report.summary import build_summary

    summary = build_summary(run, MOE_REPORT)
    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = figure.subplots()
    markers = dict(
        zip(sorted({v["router"] for v in summary["variants"].values()}), "osD^v<>p*h", strict=False)
    )
    colours = colormaps["tab20"]
    for index, (name, v) in enumerate(summary["variants"].items()):
        steps = run.tables["moe_steps"]
        n_steps = steps[steps.variant == name].groupby("seed")["step"].nunique().mean()
        x = np.mean(v["cross_group_bytes"]) / n_steps / 1e3
        y = v["accuracy_mean"]
        ax.errorbar(
            x,
            y,
            yerr=v["accuracy_std"] or 0,
            marker=markers[v["router"]],
            capsize=3,
            linestyle="none",
            color=colours(index % 20),
            label=f"{name} ({v['router']})",
        )
    ax.set_xlabel("cross-group training bytes per training step (kB, every phase)")
    ax.set_ylabel("test accuracy (fraction)")
    ax.set_title("Cost against accuracy (mean ± std over seeds)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    save_figure(figure, out_dir / FIGURE)
    return [(FIGURE, "Accuracy against cross-group training bytes per training step")]


MOE_REPORT = FamilyReport(
    variant_summary=variant_summary,
    comparison=comparison,
    headline=(
        HeadlineColumn(
            "accuracy", lambda v, n, s: f"{v['accuracy_mean']:.3f}", before_exchange=True
        ),
        HeadlineColumn(
            "cross-group / seed",
            lambda v, n, s: f"{np.mean(v['cross_group_bytes']) / 1e6:.3g} MB",
        ),
        HeadlineColumn(
            "MaxVio E/G", lambda v, n, s: f"{v['max_vio_expert']:.2f}/{v['max_vio_group']:.2f}"
        ),
    ),
    sections=(section,),
    figures=figures,
    tables=TABLES,
    metric_names=(
        "accuracy",
        "loss",
        "purity",
        "aux_loss",
        "max_vio_expert",
        "max_vio_group",
    ),
    primary_metric="accuracy",
    tradeoff_metrics=("max_vio_expert",),
    follows_plan=False,
    node_roles=node_roles,
    exchange_label="training bytes on links",
    traffic_label=(
        "tokens, expert outputs, both gradients and re-placed experts' parameters, each "
        "message counted on every link it crosses"
    ),
)
