"""Run a scenario: every variant with every seed, in memory; then, if asked, its run directory.

The scenario's family prepares a trainer (the plans of each variant over the
run, the data); then, for each seed and each variant, the trainer trains
through a transport that records every message, the records are timed on the
network model (:func:`~innet.core.timing.time_run`), and the results join the
run's tables. Runs happen in one process or on every rank of a
torch.distributed job (:class:`~innet.core.group.Processes`).
:func:`run_scenario` returns the run in memory (on the leader);
:func:`write_run` writes it: the run directory is assembled under a hidden
temporary name and renamed into place only when every table, the summary,
the report and the figures are written, so it is complete or absent.
:func:`save_run` does both, as the command line does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch

from innet.app.progress import PointProgress, Progress, run_progress
from innet.app.provenance import provenance
from innet.app.version import __version__
from innet.core.config import LoadedScenario
from innet.core.errors import InnetError
from innet.core.group import Group, LocalProcesses, Processes
from innet.core.plans import Plan
from innet.core.records import ExchangeLog
from innet.core.timing import apply_node_flops, compute_seconds, node_rows, time_run
from innet.core.topology import load_topology
from innet.core.topology.model import Topology
from innet.core.training import Trainer, TrainResult
from innet.core.transport import RecordingTransport
from innet.core.yamlio import FieldError
from innet.families import FAMILIES, Family
from innet.families.runs import resolved_config
from innet.report.summary import build_summary
from innet.report.write import write_report
from innet.rundir.checkpoint import MANIFEST_FILE, RunCheckpoint, checkpoint_dir, open_checkpoint
from innet.rundir.io import RunData, RunFiles, RunTables, load_run
from innet.rundir.layout import PROVENANCE_FILE
from innet.rundir.staging import (
    MIN_FIGURES_BYTES,
    MIN_RUN_BYTES,
    finishing,
    new_run_dir,
    prepare_staging,
)

__all__ = [
    "FinishedRun",
    "Resume",
    "scenario_digest",
    "run_scenario",
    "write_run",
    "save_run",
    "local_device",
    "configure_torch",
    "configured_torch",
    "ProcessesFactory",
]

ProcessesFactory = Callable[[Topology, Mapping[str, Plan]], Processes]
"""Builds the processes of a run once the topology and each variant's first plan are known."""

CheckpointsFactory = Callable[[Group], RunCheckpoint | None]
"""Opens (or starts) a run's checkpoints once its group of processes exists; None: none."""


@dataclass(frozen=True)
class Resume:
    """How :func:`save_run` treats the checkpoint folder beside its run directory.

    ``mode``: ``"no"`` (a fresh run; a checkpoint left there is refused, so that it
    is not overwritten unawares), ``"yes"`` (continue from it: ``run_sim.py resume``)
    or ``"if-present"`` (continue when there is one: a run torchrun restarted).
    ``args``: what the command line needs to rebuild the same scenario, kept in the
    checkpoint's manifest.
    """

    mode: Literal["no", "yes", "if-present"] = "no"
    args: Mapping[str, Any] | None = None


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


@dataclass
class FinishedRun:
    """A run that has trained, in memory: its tables, read as a run directory would be.

    ``run`` is what :func:`~innet.rundir.io.load_run` reads from the directory
    :func:`write_run` writes (``run.run_dir`` is None), ``files`` those files'
    content, ``summary`` the report's summary.
    """

    run: RunData
    family: Family
    files: RunFiles
    summary: dict[str, Any]
    started: datetime
    clock: float  # time.perf_counter() when it started
    world_size: int


def run_scenario(
    loaded: LoadedScenario,
    *,
    progress: bool = True,
    processes: ProcessesFactory | None = None,
    device: torch.device | str = "cpu",
    on_leader: Callable[[], None] | None = None,
    checkpoints: CheckpointsFactory | None = None,
) -> FinishedRun | None:
    """Run every variant and seed of a scenario; return the run, in memory.

    ``processes`` spreads the nodes over several processes (torchrun); by default
    everything runs here. Processes other than the leader return None.
    ``on_leader`` runs on the leader before training (an
    :class:`~innet.core.errors.InnetError` it raises stops every process).
    ``checkpoints`` opens the run's checkpoints (:mod:`innet.rundir.checkpoint`):
    finished (variant, seed)s found there are not trained again, the one in
    progress continues from its saved state. torch is set as
    :func:`configured_torch` says while it runs. Nothing is written but
    checkpoints: :func:`write_run` writes the run directory.
    """
    with configured_torch():
        return _run_scenario(loaded, progress, processes, device, on_leader, checkpoints)


def _run_scenario(
    loaded: LoadedScenario,
    progress: bool,
    processes: ProcessesFactory | None,
    device: torch.device | str,
    on_leader: Callable[[], None] | None,
    checkpoints: CheckpointsFactory | None,
) -> FinishedRun | None:
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    scenario = loaded.scenario
    try:
        topology = apply_node_flops(
            load_topology(loaded.topology_path), scenario.network.node_flops
        )
    except FieldError as error:
        raise loaded.located(error) from None
    family = FAMILIES.get(scenario.family)
    trainer = family.prepare(loaded, topology)
    first_plans = {name: timeline.segments[0].plan for name, timeline in trainer.timelines.items()}
    where = processes(topology, first_plans) if processes else LocalProcesses()
    group = where.group
    problem = None
    if group.is_leader and on_leader is not None:
        try:
            on_leader()
        except InnetError as error:
            problem = str(error)
    problem = group.broadcast(problem)
    if problem is not None:
        raise InnetError(problem)
    saved = checkpoints(group) if checkpoints is not None else None
    tables = _train_all(loaded, family, topology, trainer, where, progress, device, saved)
    if not group.is_leader:
        return None
    tables.placement = where.placement_record()
    report = family.report
    files = tables.files(resolved_config(loaded), topology, trainer.timelines, report.tables)
    run = load_run(files, scenario.family, report.tables, report.metric_names)
    return FinishedRun(
        run, family, files, build_summary(run, report), started, clock, group.world_size
    )


def write_run(finished: FinishedRun, staging: Path, run_dir: Path) -> dict[str, Any]:
    """Write a finished run's directory: tables, report, figures and provenance; its summary.

    Everything goes into ``staging`` (:func:`~innet.rundir.staging.prepare_staging`),
    renamed to ``run_dir`` once complete: the directory is complete or absent.
    """
    with finishing(staging, run_dir):  # a full disk here: one line, nothing kept
        finished.files.write(staging)
        summary = write_report(finished.run, finished.family.report, staging, finished.summary)
        seconds = time.perf_counter() - finished.clock
        record = provenance(finished.started, seconds, finished.world_size)
        (staging / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return summary


def save_run(
    loaded: LoadedScenario,
    *,
    out: Path | None = None,
    progress: bool = True,
    processes: ProcessesFactory | None = None,
    device: torch.device | str = "cpu",
    resume: Resume = Resume(),
) -> tuple[Path | None, dict[str, Any] | None]:
    """:func:`run_scenario`, then :func:`write_run` into ``out`` (default ``runs/NAME-TIME``).

    The directory is chosen, and the disk checked for room, before training.
    With ``training.checkpoint_every`` (or ``resume``), checkpoints are kept
    beside it (:func:`~innet.rundir.checkpoint.checkpoint_dir`) until the run
    directory is written. Returns the run directory and its summary;
    ``(None, None)`` on processes other than the leader.
    """
    scenario = loaded.scenario
    places: list[tuple[Path, Path]] = []  # (run_dir, staging), on the leader

    def reserve() -> None:
        run_dir = new_run_dir(scenario.name, out)
        folder = checkpoint_dir(run_dir)
        if resume.mode == "no" and folder.exists():
            raise InnetError(
                f"{run_dir}: a stopped run left checkpoints in {folder}; continue it with "
                f"`run_sim.py resume {run_dir}`, or remove that folder to start afresh"
            )
        needed = MIN_RUN_BYTES + (MIN_FIGURES_BYTES if scenario.report.figures else 0)
        places.append((run_dir, prepare_staging(run_dir, needed)))

    def open_checkpoints(group: Group) -> RunCheckpoint | None:
        folder = group.broadcast(checkpoint_dir(places[0][0]) if group.is_leader else None)
        return _checkpoints(loaded, folder, group, resume)

    try:
        finished = run_scenario(
            loaded,
            progress=progress,
            processes=processes,
            device=device,
            on_leader=reserve,
            checkpoints=open_checkpoints,
        )
    except BaseException:
        for _, staging in places:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    if finished is None:
        return None, None
    ((run_dir, staging),) = places
    summary = write_run(finished, staging, run_dir)
    shutil.rmtree(checkpoint_dir(run_dir), ignore_errors=True)  # the run is complete
    return run_dir, summary


def scenario_digest(loaded: LoadedScenario) -> str:
    """SHA-256 of the resolved scenario: the same for the same runs, whatever the options."""
    text = json.dumps(resolved_config(loaded), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _checkpoints(
    loaded: LoadedScenario, folder: Path, group: Group, resume: Resume
) -> RunCheckpoint | None:
    """The run's checkpoints: continued from ``folder`` or started there; None without."""
    every = loaded.scenario.training.checkpoint_every
    present = group.broadcast((folder / MANIFEST_FILE).is_file() if group.is_leader else None)
    if resume.mode == "yes" or (resume.mode == "if-present" and present):
        digest = scenario_digest(loaded)

        def check(manifest: dict[str, Any]) -> None:
            _check_manifest(manifest, folder, group.world_size, digest)

        return open_checkpoint(folder, group, check, every or 1)
    if every is None:
        return None
    header = {
        "version": __version__,
        "world_size": group.world_size,
        "scenario_digest": scenario_digest(loaded),
        "args": dict(resume.args or {}),
    }
    return RunCheckpoint.create(folder, every, group, header)


def _check_manifest(manifest: dict[str, Any], folder: Path, world_size: int, digest: str) -> None:
    """A checkpoint this run can continue from: same innet, world size and scenario."""
    if manifest["version"] != __version__:
        raise InnetError(
            f"{folder}: checkpoint of innet {manifest['version']}, this is innet {__version__}"
        )
    if manifest["world_size"] != world_size:
        raise InnetError(
            f"{folder}: checkpoint of a run with {manifest['world_size']} processes, this one "
            f"has {world_size}; resume with the same number of processes"
        )
    if manifest.get("scenario_digest") != digest:
        raise InnetError(f"{folder}: checkpoint of another scenario (or the scenario file changed)")


def _train_all(
    loaded: LoadedScenario,
    family: Family,
    topology: Topology,
    trainer: Trainer,
    where: Processes,
    progress: bool,
    device: torch.device | str,
    saved: RunCheckpoint | None,
) -> RunTables:
    """Train and time every (variant, seed): the variant × seed loop."""
    scenario, group = loaded.scenario, where.group
    names = list(trainer.timelines)
    tables = RunTables()
    total = sum(trainer.epochs(name) for name in names) * len(scenario.seed_list)
    runs = len(names) * len(scenario.seed_list)
    # a bar on a terminal or in a notebook; in a log, one line per finished (variant, seed)
    with run_progress(runs, total, shown=progress and group.is_leader) as bar:
        for seed in scenario.seed_list:
            for name in names:
                bar.start(f"{name} seed {seed}")
                if saved is not None and saved.is_finished(name, seed):
                    result = saved.finished_result(name, seed)
                    bar.skip(0, trainer.epochs(name))
                    bar.note(f"skipped {name} seed {seed}: finished before the run was stopped")
                else:
                    result = _train_one(
                        scenario, topology, trainer, where, device, saved, (name, seed), bar
                    )
                if result is None:
                    continue
                _add_result(scenario, topology, trainer, tables, name, seed, result)
                bar.done(f"{name} seed {seed}", _run_detail(result, family))
    return tables


def _train_one(
    scenario: Any,
    topology: Topology,
    trainer: Trainer,
    where: Processes,
    device: torch.device | str,
    saved: RunCheckpoint | None,
    run: tuple[str, int],
    bar: Progress | PointProgress,
) -> TrainResult | None:
    """Train one (variant, seed), from its checkpoint if it has one; its result on the leader."""
    name, seed = run
    if saved is not None and (epoch := saved.resumed_epoch(name, seed)) is not None:
        bar.skip(0, epoch + 1)
        bar.note(f"resumed {name} seed {seed} after epoch {epoch + 1} of {trainer.epochs(name)}")
    transport = where.transport(name)
    recorder = RecordingTransport(
        transport, ExchangeLog(topology.graph.nodes), scenario.network.header_bytes
    )
    # checkpoints only when there are: a trainer written before them still runs without
    more = {"checkpoints": saved.for_run(name, seed)} if saved is not None else {}
    result = trainer.train(
        name, seed, recorder, group := where.group, device, lambda _epoch: bar.advance(), **more
    )
    where.finished(name, seed, transport)
    if saved is not None:
        saved.record(name, seed, result if group.is_leader else None)
    return result


def _add_result(
    scenario: Any,
    topology: Topology,
    trainer: Trainer,
    tables: RunTables,
    name: str,
    seed: int,
    result: TrainResult,
) -> None:
    """Time one (variant, seed)'s messages on the network model; add it to the run's tables."""
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
        step_compute=trainer.step_compute,
        seed=seed,
        compute=compute,
    )
    tables.add(name, seed, result, timing)
    if seed == scenario.seed_list[0]:
        tables.nodes.extend(node_rows(name, topology, result.log, result.flops, compute))


def _run_detail(result: TrainResult, family: Family) -> str:
    """``10 epochs, accuracy 0.912``: a finished (variant, seed) in its progress line."""
    metric = family.report.primary_metric
    last = result.metrics[-1] if result.metrics else {}
    shown = f", {metric} {last[metric]:.3f}" if metric in last else ""
    return f"{len(result.metrics)} epochs{shown}"
