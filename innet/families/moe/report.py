"""How the ``moe`` family reports a run: accuracy, skew, cross-group bytes, cost against accuracy.

Added to the core report (bytes, simulated time, links):

- per variant (``summary.json``): ``router``, ``lambda``, ``accuracy_mean``,
  ``accuracy_std`` (sample standard deviation over seeds, null with one),
  ``accuracy_se``, ``cross_group_bytes`` (per seed: training ``moe_dispatch``
  bytes whose source and expert node are in different groups, from the
  exchange records), ``max_vio_expert`` and ``max_vio_group`` (final training
  step, worst layer, mean over seeds), ``sim_time_s_per_step`` (simulated
  training time per training step: the dispatch, combine and both gradient
  exchanges of every layer), ``purity``;
- a section with these, the paired change of cross-group bytes and accuracy
  against the baseline (the first ``topk`` variant), the lambda acceptance
  (largest lambda within one standard error of the baseline's accuracy), and
  the balance check (CARL's controller on a Zipf workload), and the links
  hop by hop (:func:`hop_loads`: every message laid on its path);
- ``cost_accuracy.png``: accuracy against cross-group bytes per step, one
  point per variant.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from innet.families import FamilyReport, FamilyTable, HeadlineColumn
from innet.families.moe.config import RouterConfig
from innet.families.moe.metrics import STEP_COLUMNS
from innet.families.moe.phases import PHASES
from innet.families.moe.placement import node_groups
from innet.netsim import NetworkModel
from innet.records import training_phases
from innet.report.figures import save_figure
from innet.report.mdtable import markdown_table
from innet.report.stats import paired_difference
from innet.report.summary import final_epoch_metrics

if TYPE_CHECKING:
    from innet.report.rundir import RunData

__all__ = ["MOE_REPORT", "TABLES", "lambda_acceptance", "first_reach", "hop_loads"]

TABLES = {
    "moe_steps": FamilyTable("moe_steps.csv", STEP_COLUMNS),
    "moe_nodes": FamilyTable("moe_nodes.csv", ("variant", "seed", "node", "group", "role")),
    "moe_balance": FamilyTable(
        "moe_balance.csv",
        ("variant", "seed", "mode", "gamma", "step", "max_vio_expert", "max_vio_group"),
    ),
}
FIGURE = "cost_accuracy.png"
TARGET_EXPERT, TARGET_GROUP = 0.2, 0.1


def _router(run: RunData, variant: str) -> RouterConfig:
    """The variant's resolved router (``config.yaml`` holds it whole)."""
    return RouterConfig.model_validate(run.variant_config(variant).get("router") or {})


def _cross_group_bytes(run: RunData, variant: str, seeds: list[int]) -> list[int]:
    nodes = run.tables.get("moe_nodes")
    if nodes is None or nodes.empty:
        return [0] * len(seeds)
    group = dict(zip(nodes["node"].astype(str), nodes["group"], strict=False))
    x = run.exchanges
    x = x[(x["variant"] == variant) & (x["phase"] == PHASES["dispatch"])]
    x = x[x["phase"].isin(training_phases())]
    cross = x["src"].astype(str).map(group) != x["dst"].astype(str).map(group)
    totals = x[cross].groupby("seed")["nbytes"].sum()
    return [int(totals.get(seed, 0)) for seed in seeds]


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
    return {
        "router": router.kind,
        "lambda": router.lam,
        "accuracy_mean": float(np.mean(accuracy)),
        "accuracy_std": std,
        "accuracy_se": std / math.sqrt(len(accuracy)) if std is not None else None,
        "accuracy_per_seed": accuracy,
        "cross_group_bytes": _cross_group_bytes(run, variant, seeds),
        "max_vio_expert": float(last["max_vio_expert"].mean()),
        "max_vio_group": float(last["max_vio_group"].mean()),
        "purity": float(last["purity"].mean()),
        "sim_time_s_per_step": float(np.mean(per_step)) if per_step else None,
    }


def hop_loads(run: RunData) -> pd.DataFrame:
    """Training bytes per link direction and training step, hop by hop (mean over seeds).

    Every routed record is laid on the path the network model sends it over
    (:meth:`~innet.netsim.NetworkModel.route`), so each link it crosses carries
    its bytes. Columns: ``variant, src, dst, bytes_per_step, busy_s_per_step``
    (``8 * bytes / capacity``) and ``inter_group`` (the link joins two groups).
    """
    x = run.exchanges[run.exchanges["phase"].isin(list(PHASES.values()))]
    steps = run.tables["moe_steps"].groupby(["variant", "seed"])["step"].nunique()
    model = NetworkModel(run.topology)
    graph = run.topology.graph
    groups = node_groups(run.topology)
    sizes = x.groupby(["variant", "seed", "src", "dst", "nbytes"], observed=True).size()
    loads: dict[tuple[str, str, str], float] = {}
    for (variant, seed, src, dst, nbytes), count in sizes.items():
        path = model.route(str(src), str(dst), int(nbytes))
        share = count * int(nbytes) / steps[(variant, seed)] / len(run.seeds)
        for u, v in zip(path, path[1:], strict=False):
            loads[(variant, u, v)] = loads.get((variant, u, v), 0.0) + share
    rows = [
        {
            "variant": variant,
            "src": u,
            "dst": v,
            "bytes_per_step": value,
            "busy_s_per_step": 8 * value / float(graph.edges[u, v]["capacity"]),
            "inter_group": groups[u] != groups[v],
        }  # fmt: skip
        for (variant, u, v), value in loads.items()
    ]
    return pd.DataFrame(rows, columns=["variant", "src", "dst", "bytes_per_step",
                                       "busy_s_per_step", "inter_group"])  # fmt: skip


def _baseline(summary: dict[str, Any]) -> str | None:
    return next((n for n, v in summary["variants"].items() if v["router"] == "topk"), None)


def lambda_acceptance(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The largest-lambda CARL variant within one standard error of the baseline's accuracy.

    With its paired fall of cross-group bytes against the baseline (a fraction
    of the baseline's). None without a baseline or a CARL variant with lambda > 0.
    """
    base_name = _baseline(summary)
    if base_name is None:
        return None
    base = summary["variants"][base_name]
    se = base["accuracy_se"] or 0.0
    carl = sorted(
        ((v["lambda"], n) for n, v in summary["variants"].items()
         if v["router"] == "carl" and v["lambda"] > 0),
        reverse=True,
    )  # fmt: skip
    for lam, name in carl:
        entry = summary["variants"][name]
        if entry["accuracy_mean"] >= base["accuracy_mean"] - se:
            a, b = base["cross_group_bytes"], entry["cross_group_bytes"]
            falls = [1 - y / x if x else None for x, y in zip(a, b, strict=True)]
            known = [f for f in falls if f is not None]
            return {
                "baseline": base_name,
                "variant": name,
                "lambda": lam,
                "cross_group_fall": float(np.mean(known)) if known else None,
                "cross_group_fall_per_seed": falls,
                "accuracy_delta": paired_difference(
                    base["accuracy_per_seed"], entry["accuracy_per_seed"]
                ).to_json(),
            }
    return None


def first_reach(balance: pd.DataFrame) -> pd.DataFrame:
    """Per (mode, gamma) and seed: the first step with expert MaxVio <= 0.2 and group <= 0.1.

    Also the final values and the smallest expert MaxVio reached. ``reached``
    is -1 when never.
    """
    rows = []
    for (mode, gamma, seed), trace in balance.groupby(["mode", "gamma", "seed"], sort=False):
        ok = trace[(trace.max_vio_expert <= TARGET_EXPERT) & (trace.max_vio_group <= TARGET_GROUP)]
        rows.append({
            "mode": mode, "gamma": gamma, "seed": seed,
            "reached": int(ok["step"].min()) if len(ok) else -1,
            "final_expert": float(trace.max_vio_expert.iloc[-1]),
            "final_group": float(trace.max_vio_group.iloc[-1]),
        })  # fmt: skip
    return pd.DataFrame(rows)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def section(run: RunData, summary: dict[str, Any]) -> str:
    """The MoE section of ``report.md``."""
    variants = summary["variants"]
    base = _baseline(summary)
    rows = []
    for name, v in variants.items():
        change = "n/a"
        if base is not None and name != base:
            d = paired_difference(variants[base]["cross_group_bytes"], v["cross_group_bytes"])
            base_mean = np.mean(variants[base]["cross_group_bytes"])
            if d.mean is not None and base_mean > 0:
                ci = d.to_json()
                low, high = ci["ci_low"], ci["ci_high"]
                interval = (f" [{100 * low / base_mean:+.0f}, {100 * high / base_mean:+.0f}]"
                            if low is not None else "")  # fmt: skip
                change = f"{100 * d.mean / base_mean:+.1f}%{interval}"
        accuracy = f"{v['accuracy_mean']:.3f}" + (
            f" ± {v['accuracy_std']:.3f}" if v["accuracy_std"] is not None else " (n/a)"
        )
        rows.append([
            name, v["router"], f"{v['lambda']:g}", accuracy,
            f"{np.mean(v['cross_group_bytes']) / 1e6:.2f}", change,
            _fmt(v["max_vio_expert"], 2), _fmt(v["max_vio_group"], 2),
            _fmt(v["sim_time_s_per_step"] and 1e3 * v["sim_time_s_per_step"], 2),
            _fmt(v["purity"], 3),
        ])  # fmt: skip
    text = [
        "## Mixture of experts",
        "",
        "Accuracy: final test accuracy, mean ± sample std over seeds. Cross-group bytes: "
        "training dispatch bytes between a source and an expert node in different groups, "
        f"per seed (mean shown), and their paired change against `{base}` (mean, 95% t "
        "interval, as % of the baseline's). MaxVio: final training step, worst layer. "
        "Simulated time per training step (all exchanges of every layer), network model.",
        "",
        markdown_table(
            [
                "variant",
                "router",
                "lambda",
                "accuracy",
                "cross-group MB",
                "vs baseline",
                "MaxVio expert",
                "MaxVio group",
                "ms / step",
                "purity",
            ],
            rows,
            [
                "left",
                "left",
                "right",
                "right",
                "right",
                "right",
                "right",
                "right",
                "right",
                "right",
            ],
        ),  # fmt: skip
    ]
    accepted = lambda_acceptance(summary)
    if accepted is not None:
        fall = accepted["cross_group_fall"]
        text += [
            "",
            f"Largest lambda within one standard error of `{accepted['baseline']}`'s accuracy: "
            f"{accepted['lambda']:g} (`{accepted['variant']}`); cross-group bytes fall by "
            f"{'n/a' if fall is None else f'{100 * fall:.1f}%'} (mean of the per-seed falls).",
        ]
    links = hop_loads(run)
    if not links.empty:
        link_rows = []
        for name in variants:
            mine = links[links["variant"] == name]
            if mine.empty:
                continue
            top = mine.loc[mine["busy_s_per_step"].idxmax()]
            link_rows.append([
                name, f"{top.src} → {top.dst}", f"{1e3 * top.busy_s_per_step:.2f}",
                f"{mine[mine.inter_group].bytes_per_step.sum() / 1e3:.1f}",
                f"{mine.bytes_per_step.sum() / 1e3:.1f}",
            ])  # fmt: skip
        text += [
            "",
            "### Links, hop by hop",
            "",
            "Every MoE message laid on the path the network model sends it over: the "
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
            ),  # fmt: skip
        ]
    balance = run.tables.get("moe_balance")
    if balance is not None and not balance.empty:
        reach = first_reach(balance)
        table = reach.groupby(["mode", "gamma"], sort=False).agg(
            reached=("reached", lambda s: ", ".join(str(v) if v >= 0 else "never" for v in s)),
            final_expert=("final_expert", "mean"),
            final_group=("final_group", "mean"),
        )
        text += [
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
            ),  # fmt: skip
        ]
    return "\n".join(text)


def figures(run: RunData, out_dir: Path) -> list[tuple[str, str]]:
    """``cost_accuracy.png``: accuracy against cross-group bytes per training step."""
    from innet.report.summary import build_summary

    summary = build_summary(run)
    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = figure.subplots()
    markers = dict(zip(sorted({v["router"] for v in summary["variants"].values()}),
                       "osD^v<>p*h", strict=False))  # fmt: skip
    colours = colormaps["tab20"]
    for index, (name, v) in enumerate(summary["variants"].items()):
        steps = run.tables["moe_steps"]
        n_steps = steps[steps.variant == name].groupby("seed")["step"].nunique().mean()
        x = np.mean(v["cross_group_bytes"]) / n_steps / 1e3
        y = v["accuracy_mean"]
        ax.errorbar(x, y, yerr=v["accuracy_std"] or 0, marker=markers[v["router"]],
                    capsize=3, linestyle="none", color=colours(index % 20),
                    label=f"{name} ({v['router']})")  # fmt: skip
    ax.set_xlabel("cross-group dispatch per training step (kB)")
    ax.set_ylabel("test accuracy (fraction)")
    ax.set_title("Cost against accuracy (mean ± std over seeds)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    save_figure(figure, out_dir / FIGURE)
    return [(FIGURE, "Accuracy against cross-group dispatch bytes per training step")]


MOE_REPORT = FamilyReport(
    variant_summary=variant_summary,
    headline=(
        HeadlineColumn(
            "accuracy", lambda v, n, s: f"{v['accuracy_mean']:.3f}", before_exchange=True
        ),
        HeadlineColumn(
            "MaxVio E/G", lambda v, n, s: f"{v['max_vio_expert']:.2f}/{v['max_vio_group']:.2f}"
        ),
    ),  # fmt: skip
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
    ),  # fmt: skip
    primary_metric="accuracy",
    tradeoff_metrics=("max_vio_expert",),
    follows_plan=False,
)
