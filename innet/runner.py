"""Run a scenario: every variant with every seed, then write one complete run directory.

For each seed the data are loaded once and shared by all variants, so the
variants differ only in routing and their own overrides. Each (variant, seed)
is trained and timed by :mod:`innet.training`, in one process or on every rank
of a torch.distributed job; only rank 0 writes. The run directory is assembled
under a hidden temporary name and renamed into place only when every table, the
summary, the report and the figures are written: it is complete or absent.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from innet.distributed import (
    DistContext,
    DistributedError,
    DistributedTransport,
    cross_rank_links,
    place_nodes,
)
from innet.engine import RECORD_FIELDS
from innet.errors import ConfigError, InnetError
from innet.events import Timeline
from innet.inputs import NodeInputs, load_inputs
from innet.plans import Plan
from innet.report import save_topology_json, write_report
from innet.scenario import LoadedScenario, ResolvedVariant, Scenario
from innet.staging import new_run_dir, remove_stale_staging, staging_dir
from innet.timing import compute_seconds
from innet.topology import load_topology
from innet.topology.model import Topology, node_key
from innet.training import SeedResult, train_one, variant_timeline
from innet.transport import InProcessTransport, Transport
from innet.units import parse_flops
from innet.yamlio import FieldError

__all__ = ["run_scenario", "resolved_config", "EXCHANGE_COLUMNS"]

EXCHANGE_COLUMNS = [
    "variant", "seed", "epoch", "step", "phase", "src", "dst", "payload", "nbytes",
    "t_start", "t_end", "queue_s", "attempts", "lost",
]  # fmt: skip


def resolved_config(
    scenario: Scenario, variants: list[ResolvedVariant], topology_path: Path
) -> dict[str, Any]:
    """The scenario with every default filled in, as saved with the run."""
    config = scenario.model_dump(mode="json")
    config["topology"] = str(topology_path)
    config["seeds"] = scenario.seed_list
    config["comparisons"] = [list(pair) for pair in scenario.comparisons]
    config["variants"] = {
        variant.name: variant.model_dump(mode="json", exclude={"name"}) for variant in variants
    }
    return config


class _InputCache:
    """The data of one seed at a time, loaded on first use; data problems name the scenario."""

    def __init__(self, loaded: LoadedScenario, topology: Topology) -> None:
        self._loaded, self._topology = loaded, topology
        self._seed: int | None = None
        self._inputs: NodeInputs | None = None

    def get(self, seed: int) -> NodeInputs:
        if self._seed != seed or self._inputs is None:
            try:
                self._inputs = load_inputs(self._loaded.scenario.data, self._topology, seed)
            except FieldError as error:
                raise self._loaded.located(error) from None
            self._seed = seed
        return self._inputs


def run_scenario(
    loaded: LoadedScenario,
    *,
    out: Path | None = None,
    progress: bool = True,
    ctx: DistContext | None = None,
    placement: str | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Path | None, dict[str, Any] | None]:
    """Run every variant and seed of a scenario; return the run directory and its summary.

    With ``ctx`` (a torch.distributed job) every rank trains the nodes placed on it
    and only rank 0 writes the run directory; other ranks return ``(None, None)``.
    ``placement`` overrides the scenario's ``distributed.placement``.
    """
    torch.set_num_threads(1)
    scenario, variants = loaded.scenario, loaded.variants
    topology = _with_node_flops(load_topology(loaded.topology_path), loaded)
    inputs = _InputCache(loaded, topology)
    n_train = inputs.get(scenario.seed_list[0]).n_train  # data problems show before any output
    try:
        timelines = {
            variant.name: variant_timeline(scenario, variant, topology, n_train)
            for variant in variants
        }
    except FieldError as error:
        raise loaded.located(error) from None
    plans = {name: timeline.segments[0].plan for name, timeline in timelines.items()}
    placements = _placements(loaded, topology, plans, ctx, placement) if ctx else None
    leader = ctx is None or ctx.rank == 0

    run_dir = staging = None
    problem = None
    if leader:
        try:
            run_dir = new_run_dir(scenario.name, out)
        except InnetError as error:
            problem = str(error)
    _agree(ctx, problem)
    if leader:
        assert run_dir is not None
        remove_stale_staging(run_dir.parent)
        staging = staging_dir(run_dir)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    try:
        tables = _train_all(loaded, topology, timelines, inputs, progress and leader, ctx,
                            placements, device)  # fmt: skip
        if staging is None:
            return None, None
        _write_tables(staging, loaded, topology, timelines, tables, ctx, placements)
        summary = write_report(staging)
        if run_dir.exists():
            run_dir.rmdir()  # an empty --out directory
        staging.rename(run_dir)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    return run_dir, summary


def _with_node_flops(topology: Topology, loaded: LoadedScenario) -> Topology:
    """The topology with the scenario's ``network.node_flops`` applied to node ``compute``."""
    node_flops = loaded.scenario.network.node_flops
    if not node_flops:
        return topology
    graph = topology.graph.copy()
    default = node_flops.get("*")
    for node in graph.nodes:
        if default is not None:
            graph.nodes[node]["compute"] = parse_flops(default)
    for node, flops in node_flops.items():
        if node == "*":
            continue
        if node not in graph:
            raise loaded.located(
                FieldError(("network", "node_flops", node), f"no node {node!r} in the topology")
            )
        graph.nodes[node]["compute"] = parse_flops(flops)
    return Topology(topology.name, graph, topology.source)


def _placements(
    loaded: LoadedScenario,
    topology: Topology,
    plans: dict[str, Plan],
    ctx: DistContext,
    strategy: str | None,
) -> dict[str, dict[str, int]]:
    """Which rank runs which node, per variant (every rank computes the same answer)."""
    config = loaded.scenario.distributed
    strategy = strategy or config.placement
    if strategy == "explicit" and config.map is None:
        raise ConfigError(
            "placement 'explicit' needs distributed.map (node: rank)",
            file=loaded.path,
            field="distributed.map",
        )
    return {
        name: place_nodes(topology, plan, ctx.world_size, strategy, explicit=config.map)
        for name, plan in plans.items()
    }


def _agree(ctx: DistContext | None, problem: str | None) -> None:
    """Share rank 0's verdict on the output directory; every rank stops on a problem."""
    if ctx is not None and ctx.world_size > 1:
        import torch.distributed as dist

        box = [problem]
        try:
            dist.broadcast_object_list(box, src=0)
        except RuntimeError as error:
            message = f"rank {ctx.rank}: could not agree on the output: {error}"
            raise DistributedError(message) from None
        problem = box[0]
    if problem is not None:
        raise InnetError(problem)


@dataclass
class _Tables:
    """What the runs produced, on the leader."""

    exchanges: list[pd.DataFrame] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    rates: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    wire_bytes: dict[str, dict[int, int]] = field(default_factory=dict)


def _train_all(
    loaded: LoadedScenario,
    topology: Topology,
    timelines: dict[str, Timeline],
    inputs: _InputCache,
    progress: bool,
    ctx: DistContext | None,
    placements: dict[str, dict[str, int]] | None,
    device: torch.device | str,
) -> _Tables:
    from tqdm import tqdm

    scenario, variants = loaded.scenario, loaded.variants
    seeds = scenario.seed_list
    total = sum(variant.training.epochs for variant in variants) * len(seeds)
    tables = _Tables()
    with tqdm(total=total, unit="epoch", disable=not progress, dynamic_ncols=True) as bar:
        for seed in seeds:
            seed_inputs = inputs.get(seed)
            for variant in variants:
                bar.set_description(f"{variant.name} seed {seed}")
                transport: Transport = InProcessTransport()
                if ctx is not None and placements is not None:
                    transport = DistributedTransport(
                        placements[variant.name], ctx.rank, ctx.world_size, ctx.device
                    )
                result = train_one(
                    scenario=scenario,
                    variant=variant,
                    timeline=timelines[variant.name],
                    topology=topology,
                    inputs=seed_inputs,
                    seed=seed,
                    transport=transport,
                    device=ctx.device if ctx is not None else device,
                    on_epoch=lambda _epoch: bar.update(1),
                )
                wire = transport.gather(getattr(transport, "bytes_sent_cross_rank", 0))
                if not transport.is_leader:
                    continue
                tables.wire_bytes.setdefault(variant.name, {})[seed] = int(sum(wire or [0]))
                tables.exchanges.append(_exchange_frame(variant.name, seed, result))
                tables.metrics.extend(result.metrics)
                if seed == seeds[0]:
                    tables.nodes.extend(
                        _node_rows(variant, topology, result.flops, scenario.network.compute)
                    )
                tables.rates.extend(
                    {"variant": variant.name, "seed": seed, "node": node, "rate_bits": rate}
                    for node, rate in result.node_rates.items()
                )
    return tables


NODE_COLUMNS = [
    "variant", "node", "role", "label", "flops_per_sample", "compute_flops",
    "forward_s", "backward_s",
]  # fmt: skip


def _node_rows(
    variant: ResolvedVariant, topology: Topology, flops: dict[str, int], use_compute: bool
) -> list[dict[str, Any]]:
    """Per node of a variant: module FLOPs and compute seconds for one full training batch."""
    batch = variant.training.batch_size
    seconds = compute_seconds(topology, flops, batch) if use_compute else {}
    return [
        {
            "variant": variant.name,
            "node": node,
            "role": topology.graph.nodes[node].get("role"),
            "label": topology.label(node),
            "flops_per_sample": count,
            "compute_flops": topology.graph.nodes[node].get("compute"),
            "forward_s": seconds.get(node, (0.0, 0.0))[0],
            "backward_s": seconds.get(node, (0.0, 0.0))[1],
        }
        for node, count in sorted(flops.items(), key=lambda item: node_key(item[0]))
    ]


def _write_tables(
    staging: Path,
    loaded: LoadedScenario,
    topology: Topology,
    timelines: dict[str, Timeline],
    tables: _Tables,
    ctx: DistContext | None,
    placements: dict[str, dict[str, int]] | None,
) -> None:
    config = resolved_config(loaded.scenario, loaded.variants, loaded.topology_path)
    (staging / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    save_topology_json(topology, staging / "topology.json")
    plans = {name: timeline.segments[0].plan for name, timeline in timelines.items()}
    (staging / "plans.json").write_text(
        json.dumps({name: plan.to_json() for name, plan in plans.items()}, indent=2)
    )
    if loaded.scenario.events:
        events = {
            name: [change.to_json() for change in timeline.changes]
            for name, timeline in timelines.items()
        }
        (staging / "events.json").write_text(json.dumps(events, indent=2))
    if ctx is not None and placements is not None:
        placement = {
            "world_size": ctx.world_size,
            "backend": ctx.backend,
            "device": str(ctx.device),
            "variants": {
                name: {
                    "ranks": placements[name],
                    "cross_rank_links": cross_rank_links(plans[name].edges, placements[name]),
                    "bytes_on_wire": {
                        str(seed): count for seed, count in tables.wire_bytes[name].items()
                    },
                }
                for name in plans
            },
        }
        (staging / "placement.json").write_text(json.dumps(placement, indent=2))
    exchanges = pd.concat(tables.exchanges, ignore_index=True)
    exchanges.to_parquet(staging / "exchanges.parquet", index=False)
    exchanges.to_csv(staging / "exchanges.csv", index=False)
    pd.DataFrame(tables.metrics).to_csv(staging / "metrics.csv", index=False)
    pd.DataFrame(tables.nodes, columns=NODE_COLUMNS).to_csv(staging / "nodes.csv", index=False)
    pd.DataFrame(tables.rates, columns=["variant", "seed", "node", "rate_bits"]).to_csv(
        staging / "node_rates.csv", index=False
    )


def _exchange_frame(variant: str, seed: int, result: SeedResult) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(result.records, columns=list(RECORD_FIELDS))
    frame.insert(0, "seed", seed)
    frame.insert(0, "variant", variant)
    timing = result.timing
    assert timing is not None
    frame["t_start"] = timing.t_start
    frame["t_end"] = timing.t_end
    frame["queue_s"] = timing.queue_s
    frame["attempts"] = timing.attempts
    frame["nbytes"] = frame["nbytes"].astype("int64")
    return frame[EXCHANGE_COLUMNS]
