"""Run a scenario: every variant with every seed, then write one complete run directory.

The scenario's family prepares a trainer (the plans of each variant over the
run, the data); then, for each seed and each variant, the trainer trains
through a transport that records every message, the records are timed on the
network model (:func:`~innet.core.timing.time_run`), and the results join the
run's tables. Runs happen in one process or on every rank of a
torch.distributed job (:class:`~innet.core.group.Processes`); only the leader
writes. The run directory is assembled under a hidden temporary name and
renamed into place only when every table, the summary, the report and the
figures are written: it is complete or absent.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from innet.app.provenance import provenance
from innet.core.config import LoadedScenario
from innet.core.errors import InnetError
from innet.core.group import LocalProcesses, Processes
from innet.core.plans import Plan
from innet.core.records import ExchangeLog
from innet.core.timing import apply_node_flops, compute_seconds, node_rows, time_run
from innet.core.topology import load_topology
from innet.core.topology.model import Topology
from innet.core.transport import RecordingTransport
from innet.core.yamlio import FieldError
from innet.families import get_family
from innet.report import RunTables, write_report, write_tables
from innet.rundir.layout import PROVENANCE_FILE
from innet.rundir.staging import (
    MIN_FIGURES_BYTES,
    MIN_RUN_BYTES,
    finishing,
    new_run_dir,
    prepare_staging,
)

__all__ = [
    "run_scenario",
    "local_device",
    "configure_torch",
    "configured_torch",
    "ProcessesFactory",
]

ProcessesFactory = Callable[[Topology, Mapping[str, Plan]], Processes]
"""Builds the processes of a run once the topology and each variant's first plan are known."""


def local_device(choice: str = "auto") -> str:
    """The device of a one-process run: ``auto`` (CUDA when there is a GPU), ``cpu``, ``cuda``."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise InnetError("--device cuda: no CUDA device is available")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def configure_torch() -> None:
    """How a run sets torch: one thread, denormal floats flushed to zero.

    One thread: processes share the cores (torchrun, sweeps with ``--jobs``).
    Denormals: gradients that pass through tens of mean-aggregating levels
    (``scale_10k``) shrink below 1e-38, where the CPU computes with denormal
    numbers about 30 times slower; flushing them to zero changes no result a
    float32 run can tell apart (the smallest normal float32 is 1.2e-38).
    """
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)


@contextmanager
def configured_torch() -> Iterator[None]:
    """:func:`configure_torch` for a block, then torch as it was.

    The thread count comes back, and denormals are no longer flushed (torch's
    default; torch cannot report an earlier setting). Nothing else a run does
    needs restoring: figures are drawn on Figure objects without pyplot, the
    global torch RNG is forked around its use (:func:`innet.core.seeding.seeded_torch`),
    and no warnings filter is set (the libraries a first run imports may add
    their own, as on any import).
    """
    threads = torch.get_num_threads()
    configure_torch()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(False)


def run_scenario(
    loaded: LoadedScenario,
    *,
    out: Path | None = None,
    progress: bool = True,
    processes: ProcessesFactory | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Path | None, dict[str, Any] | None]:
    """Run every variant and seed of a scenario; return the run directory and its summary.

    ``processes`` spreads the nodes over several processes (torchrun); by default
    everything runs here. Processes other than the leader return ``(None, None)``.
    torch is set as :func:`configured_torch` says while it runs.
    """
    with configured_torch():
        return _run_scenario(loaded, out=out, progress=progress, processes=processes,
                             device=device)  # fmt: skip


def _run_scenario(
    loaded: LoadedScenario,
    *,
    out: Path | None,
    progress: bool,
    processes: ProcessesFactory | None,
    device: torch.device | str,
) -> tuple[Path | None, dict[str, Any] | None]:
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    scenario = loaded.scenario
    try:
        topology = apply_node_flops(load_topology(loaded.topology_path),
                                    scenario.network.node_flops)  # fmt: skip
    except FieldError as error:
        raise loaded.located(error) from None
    trainer = get_family(loaded.scenario.family).prepare(loaded, topology)
    first_plans = {name: timeline.segments[0].plan for name, timeline in trainer.timelines.items()}
    where = processes(topology, first_plans) if processes else LocalProcesses()
    group = where.group

    run_dir = staging = None
    problem = None
    if group.is_leader:
        try:
            run_dir = new_run_dir(scenario.name, out)
            needed = MIN_RUN_BYTES + (MIN_FIGURES_BYTES if scenario.report.figures else 0)
            staging = prepare_staging(run_dir, needed)
        except InnetError as error:
            problem = str(error)
    problem = group.broadcast(problem)
    if problem is not None:
        raise InnetError(problem)
    try:
        tables = _train_all(loaded, topology, trainer, where, progress, device)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    if staging is None:
        return None, None
    with finishing(staging, run_dir):  # a full disk here: one line, nothing kept
        tables.placement = where.placement_record()
        write_tables(staging, loaded, topology, trainer.timelines, tables)
        summary = write_report(staging)
        record = provenance(started, time.perf_counter() - clock, group.world_size)
        (staging / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return run_dir, summary


def _train_all(
    loaded: LoadedScenario,
    topology: Topology,
    trainer: Any,
    where: Processes,
    progress: bool,
    device: torch.device | str,
) -> RunTables:
    """Train and time every (variant, seed): the variant × seed loop."""
    from tqdm.auto import tqdm

    scenario, group = loaded.scenario, where.group
    names = list(trainer.timelines)
    tables = RunTables()
    total = sum(trainer.epochs(name) for name in names) * len(scenario.seed_list)
    shown = progress and group.is_leader
    # a bar on a terminal or in a notebook (tqdm.auto draws a widget there); in a log, one
    # line per finished (variant, seed)
    live = shown and (sys.stderr.isatty() or "ipykernel" in sys.modules)
    runs = len(names) * len(scenario.seed_list)
    with tqdm(total=total, unit="epoch", disable=not live, dynamic_ncols=True) as bar:
        for seed in scenario.seed_list:
            for name in names:
                bar.set_description(f"{name} seed {seed}")
                started = time.perf_counter()
                transport = where.transport(name)
                recorder = RecordingTransport(
                    transport, ExchangeLog(topology.graph.nodes), scenario.network.header_bytes
                )
                result = trainer.train(name, seed, recorder, group, device,
                                       lambda _epoch: bar.update(1))  # fmt: skip
                where.finished(name, seed, transport)
                if result is None:
                    continue
                compute = (
                    {
                        batch: compute_seconds(topology, result.flops, batch)
                        for batch in {step[3] for step in result.log.steps}
                    }
                    if scenario.network.compute
                    else None
                )
                timing = time_run(
                    result.log,
                    trainer.timelines[name],
                    steps_per_epoch=trainer.steps_per_epoch(name),
                    tx_ports=scenario.network.tx_ports,
                    model=scenario.network.model,
                    bandwidth_factor=scenario.network.bandwidth_factor,
                    latency_factor=scenario.network.latency_factor,
                    step_compute=getattr(trainer, "step_compute", None),
                    seed=seed,
                    compute=compute,
                )
                tables.add(name, seed, result, timing)
                if seed == scenario.seed_list[0]:
                    tables.nodes.extend(node_rows(name, topology, result, compute))
                if shown and not live:
                    print(_run_line(len(tables.exchanges), runs, name, seed, result,
                                    time.perf_counter() - started, loaded),
                          file=sys.stderr, flush=True)  # fmt: skip
    return tables


def _run_line(done: int, runs: int, name: str, seed: int, result: Any, seconds: float,
              loaded: LoadedScenario) -> str:  # fmt: skip
    """``[2/6] dijkstra seed 0: 10 epochs, accuracy 0.912, 12.3 s`` for logs without a terminal."""
    metric = get_family(loaded.scenario.family).report.primary_metric
    last = result.metrics[-1] if result.metrics else {}
    shown = f", {metric} {last[metric]:.3f}" if metric in last else ""
    return (
        f"[{done}/{runs}] {name} seed {seed}: {len(result.metrics)} epochs{shown}, {seconds:.1f} s"
    )
