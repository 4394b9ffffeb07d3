"""Time a finished run again on another network, without training again.

The bytes of every message depend on what the nodes learned and on the plan,
not on link speeds; the simulated time depends on both. So a run can be timed
again on a topology with the *same graph* (same nodes, roles and links) but
other capacities, latencies, losses or node FLOP/s: its exchange records are
read back, the scenario's plans are rebuilt on the new topology, and if every
plan (and every plan change an event makes) is the one the run trained on,
the records go through the network model of the new topology
(:func:`~innet.core.timing.time_run`). The result is a new, complete run
directory, identical to a fresh run on the new topology except for the time
it took to make, and its ``provenance.json``, which says it is a retime and of
which run (``retime_of``: the run directory, that run's own provenance, the
topology file).

A topology that changes the graph, or changes a plan (a capacity-aware tree
can choose other links when capacities change), is refused with one line
saying what differs: the records would not be those of a run on it.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from innet.app.provenance import provenance
from innet.core.config import LoadedScenario
from innet.core.errors import InnetError
from innet.core.records import ExchangeLog
from innet.core.timing import apply_node_flops, compute_seconds, epoch_columns, time_run
from innet.core.topology import load_topology
from innet.core.topology.model import Topology
from innet.core.yamlio import FieldError
from innet.families import Family
from innet.families.runs import open_run, write_run_report
from innet.rundir.io import save_topology_json
from innet.rundir.layout import (
    CONFIG_FILE,
    EVENTS_FILE,
    EXCHANGES_CSV_FILE,
    EXCHANGES_FILE,
    METRICS_FILE,
    NODES_FILE,
    PLACEMENT_FILE,
    PLANS_FILE,
    PROVENANCE_FILE,
    STEPS_FILE,
    TOPOLOGY_FILE,
)
from innet.rundir.staging import (
    MIN_FIGURES_BYTES,
    MIN_RUN_BYTES,
    finishing,
    new_run_dir,
    prepare_staging,
)

__all__ = ["retime_run"]

_KEPT = (PLANS_FILE, EVENTS_FILE, PLACEMENT_FILE, STEPS_FILE)  # copied as they are


def retime_run(
    run_dir: str | Path,
    topology_path: str | Path | None,
    *,
    out: Path | None = None,
    network_model: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Time the run in ``run_dir`` on ``topology_path``; return the new run directory, summary.

    ``topology_path`` None: the run's own topology; ``network_model`` (``fifo`` or
    ``flow``): time with that network model instead of the run's ``network.model``.
    """
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    run_dir = Path(run_dir)
    run, family = open_run(run_dir)
    steps_path = run_dir / STEPS_FILE
    if not steps_path.is_file():
        raise InnetError(f"{steps_path}: file not found (a run made before retime existed)")
    if network_model is not None:
        run.config["network"] = {**(run.config.get("network") or {}), "model": network_model}
    if topology_path is None:  # config.yaml names it relative to the run directory
        topology_path = run_dir / run.config["topology"]
    loaded = _loaded(run_dir, run.config, family, Path(topology_path))
    try:
        topology = apply_node_flops(
            load_topology(loaded.topology_path), loaded.scenario.network.node_flops
        )
    except FieldError as error:
        raise InnetError(f"{topology_path}: {error}") from None
    _same_graph(run.topology, topology, Path(topology_path))
    trainer = family.prepare(loaded, topology)
    _same_plans(run, trainer.timelines, Path(topology_path))

    steps = pd.read_csv(steps_path)
    exchanges: list[pd.DataFrame] = []
    metrics: list[pd.DataFrame] = []
    nodes: list[pd.DataFrame] = []
    for (variant, seed), rows in run.exchanges.groupby(["variant", "seed"], sort=False):
        these = steps[(steps["variant"] == variant) & (steps["seed"] == seed)]
        log = ExchangeLog.from_frame(
            rows,
            topology.graph.nodes,
            list(these[["kind", "epoch", "step", "batch"]].itertuples(index=False, name=None)),
        )
        flops = _flops(run, variant)
        compute = (
            {batch: compute_seconds(topology, flops, batch) for batch in set(these["batch"])}
            if loaded.scenario.network.compute
            else None
        )
        timing = time_run(
            log,
            trainer.timelines[variant],
            steps_per_epoch=trainer.steps_per_epoch(variant),
            tx_ports=loaded.scenario.network.tx_ports,
            model=loaded.scenario.network.model,
            bandwidth_factor=loaded.scenario.network.bandwidth_factor,
            latency_factor=loaded.scenario.network.latency_factor,
            step_compute=trainer.step_compute,
            seed=int(seed),
            compute=compute,
        )
        exchanges.append(log.frame(variant, int(seed), timing))
        rows_metrics = run.metrics[
            (run.metrics["variant"] == variant) & (run.metrics["seed"] == seed)
        ].copy()
        core = pd.DataFrame(epoch_columns(log, timing, rows_metrics["epoch"].tolist()))
        for column in ("sim_time_s", "sim_time_cum_s"):
            rows_metrics[column] = core[column].to_numpy()
        metrics.append(rows_metrics)
        if compute is not None and variant not in {frame["variant"].iloc[0] for frame in nodes}:
            nodes.append(_node_table(run, variant, topology, compute, these))
    return _write(
        run_dir, run, family, loaded, topology, exchanges, metrics, nodes, out, (started, clock)
    )


def _loaded(
    run_dir: Path, config: dict[str, Any], family: Family, topology_path: Path
) -> LoadedScenario:
    """The run's resolved scenario, validated again, on another topology file."""
    raw = {**config, "topology": str(topology_path.resolve())}
    scenario = family.scenario_model(**raw)
    variants = family.resolve_variants(scenario, run_dir / CONFIG_FILE, None)
    return LoadedScenario(scenario, run_dir / CONFIG_FILE, topology_path.resolve(), list(variants))


def _same_graph(old: Topology, new: Topology, path: Path) -> None:
    old_graph, new_graph = old.graph, new.graph
    if set(old_graph.nodes) != set(new_graph.nodes):
        extra = sorted(set(new_graph.nodes) ^ set(old_graph.nodes))
        raise InnetError(f"{path}: not the run's graph (nodes differ: {', '.join(extra[:5])})")
    old_links = {frozenset(edge) for edge in old_graph.edges}
    new_links = {frozenset(edge) for edge in new_graph.edges}
    if old_links != new_links:
        differ = sorted("-".join(sorted(link)) for link in old_links ^ new_links)
        raise InnetError(f"{path}: not the run's graph (links differ: {', '.join(differ[:5])})")
    for node in old_graph.nodes:
        if old_graph.nodes[node].get("role") != new_graph.nodes[node].get("role"):
            raise InnetError(f"{path}: node {node!r} has another role than in the run")


def _same_plans(run: Any, timelines: dict[str, Any], path: Path) -> None:
    for variant, timeline in timelines.items():
        saved = run.plans.get(variant, {})
        edges = [list(edge) for edge in timeline.segments[0].plan.edges]
        if edges != [list(edge) for edge in saved.get("edges", [])]:
            differ = _edge_changes(saved.get("edges", []), edges)
            raise InnetError(
                f"{path}: variant {variant}'s {saved.get('routing', '')} plan would change on "
                f"this topology ({differ}), so the run's records are not those of a run on it"
            )
        changes = [change.to_json() for change in timeline.changes]
        if run.events and changes != run.events.get(variant, []):
            raise InnetError(f"{path}: variant {variant}'s plan changes at events would differ")


def _edge_changes(old: list[list[str]], new: list[list[str]], shown: int = 4) -> str:
    """``drops a->c; adds a->f``: the plan edges that differ (an order change if none)."""
    before = {tuple(edge) for edge in old}
    after = {tuple(edge) for edge in new}

    def listing(edges: set[tuple[str, ...]]) -> str:
        names = sorted("->".join(edge) for edge in edges)
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        return ", ".join(names[:shown]) + more

    parts = []
    if before - after:
        parts.append(f"drops {listing(before - after)}")
    if after - before:
        parts.append(f"adds {listing(after - before)}")
    return "; ".join(parts) or "the same edges in another order"


def _flops(run: Any, variant: str) -> dict[str, int]:
    if run.nodes is None:
        return {}
    rows = run.nodes[run.nodes["variant"] == variant]
    return {
        str(node): int(flops)
        for node, flops in zip(rows["node"], rows["flops_per_sample"], strict=True)
    }


def _node_table(run: Any, variant: str, topology: Topology, compute: dict, steps) -> pd.DataFrame:  # noqa: ANN001
    rows = run.nodes[run.nodes["variant"] == variant].copy()
    batch = int(steps.loc[steps["kind"] == "train", "batch"].iloc[0])
    seconds = compute.get(batch, {})
    rows["compute_flops"] = [topology.graph.nodes[str(n)].get("compute") for n in rows["node"]]
    rows["forward_s"] = [seconds.get(str(n), (0.0, 0.0))[0] for n in rows["node"]]
    rows["backward_s"] = [seconds.get(str(n), (0.0, 0.0))[1] for n in rows["node"]]
    return rows


def _write(source, run, family, loaded, topology, exchanges, metrics, nodes, out, start):  # noqa: ANN001, ANN202
    started, clock = start
    run_dir = new_run_dir(loaded.scenario.name, out)
    needed = MIN_RUN_BYTES + MIN_FIGURES_BYTES * loaded.scenario.report.figures
    staging = prepare_staging(run_dir, needed)
    with finishing(staging, run_dir):  # a full disk: one line, nothing kept
        config = dict(run.config, topology=str(loaded.topology_path))
        (staging / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
        save_topology_json(topology, staging / TOPOLOGY_FILE)
        for name in _KEPT:
            if (source / name).is_file():
                shutil.copyfile(source / name, staging / name)
        for table in family.report.tables.values():
            shutil.copyfile(source / table.file, staging / table.file)
        frame = pd.concat(exchanges, ignore_index=True)
        frame.to_parquet(staging / EXCHANGES_FILE, index=False)
        if loaded.scenario.report.exchanges_csv:
            frame.to_csv(staging / EXCHANGES_CSV_FILE, index=False)
        metrics_path = source / METRICS_FILE
        original = pd.read_csv(metrics_path)
        retimed = pd.concat(metrics, ignore_index=True)
        for column in ("sim_time_s", "sim_time_cum_s"):
            original[column] = retimed[column].to_numpy()
        original.to_csv(staging / METRICS_FILE, index=False)
        if nodes:
            pd.concat(nodes, ignore_index=True).to_csv(staging / NODES_FILE, index=False)
        elif (source / NODES_FILE).is_file():
            shutil.copyfile(source / NODES_FILE, staging / NODES_FILE)
        summary = write_run_report(staging)
        record = provenance(started, time.perf_counter() - clock)
        record["retime_of"] = _retime_of(source, loaded.topology_path)
        (staging / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return run_dir, summary


def _retime_of(run_dir: Path, topology_path: Path) -> dict[str, Any]:
    """Where a retimed run's records come from, for its ``provenance.json``.

    The run directory it retimed, that run's own provenance (None if it had
    none) and the topology file it was timed on.
    """
    original = run_dir / PROVENANCE_FILE
    try:
        before = json.loads(original.read_text()) if original.is_file() else None
    except (OSError, ValueError):
        before = None
    return {
        "run_dir": str(run_dir.resolve()),
        "topology": str(topology_path),
        "provenance": before,
    }
