"""The command line: run a scenario, validate a topology, print a plan, rebuild a report.

``python run_sim.py [run options]`` (or ``innet``, or ``python -m innet``)
runs a scenario; the first word may instead be ``validate``, ``plan``,
``report``, ``retime``, ``trace`` or ``resume`` (a misspelt one is answered
with the nearest).
Problems with the user's input end with a one-line message on stderr and exit
status 2, never a traceback, and leave no run directory behind; messages name
the command as the user typed it.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar

from innet.core.errors import InnetError
from innet.core.placement import PLACEMENTS
from innet.families import FAMILIES
from innet.families.family import plural

if TYPE_CHECKING:
    from innet.core.config import LoadedScenario, Measured
    from innet.core.plans import Plan
    from innet.core.topology.model import Topology

__all__ = ["main"]

T = TypeVar("T")

DEFAULT_SCENARIO = "dense_vs_dijkstra"
COMMANDS = ("run", "validate", "plan", "report", "retime", "trace", "resume")


def command_name() -> str:
    """The command as the user typed it: ``run_sim.py``, ``innet`` or ``python -m innet``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if name == "__main__.py":
        return "python -m innet"
    return "run_sim.py" if name == "run_sim.py" else "innet"


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _run_parser() -> argparse.ArgumentParser:
    from innet.app.version import __version__

    parser = _OneLineParser(
        prog=command_name(),
        description="Run an in-network learning scenario and write a run directory. "
        "Other commands: validate PATH | plan TOPOLOGY | report RUN_DIR | "
        "retime RUN_DIR --topology FILE | trace RUN_DIR | resume OUT (see COMMAND --help).",
    )
    parser.add_argument(
        "--scenario",
        help=f"scenario name (see --list; the main job is {DEFAULT_SCENARIO}) or YAML path",
    )
    parser.add_argument(
        "--topology", help="topology YAML (or a shipped topology's name) instead of the scenario's"
    )
    parser.add_argument("--seeds", type=int, help="run seeds 0..N-1 instead of the scenario's")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario field, e.g. --set training.epochs=3 (repeatable)",
    )
    parser.add_argument(
        "--sweep",
        dest="sweeps",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="run the scenario at each value of KEY (dotted as --set), e.g. "
        "--sweep gate.beta=0,0.001,0.01; repeatable (the cartesian product); joins the "
        "scenario's sweep: block. One run directory for the whole sweep",
    )
    _add_launcher_options(parser)
    parser.add_argument("--out", type=Path, help="run directory (default runs/<scenario>-<time>)")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="K",
        help="save a checkpoint every K epochs (also training.checkpoint_every); a stopped run "
        "continues with `resume OUT` (see docs/checkpoints.md)",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="list the known scenarios with their runs and measured times, and exit",
    )
    parser.add_argument("--version", action="version", version=f"innet {__version__}")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="also write trace.json (open it in ui.perfetto.dev) and figures/timeline_*.png",
    )
    parser.add_argument(
        "--csv",
        action="store_true",
        help="also write exchanges.csv (the same table as exchanges.parquet, ~20x larger)",
    )
    group = parser.add_argument_group(
        "torch.distributed (under torchrun; see README)",
        "Plain `python run_sim.py` runs every node in one process.",
    )
    group.add_argument(
        "--backend",
        choices=("auto", "gloo", "nccl"),
        default="auto",
        help="process-group backend (auto: nccl on cuda, else gloo)",
    )
    group.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where tensors live (auto: cuda if available)",
    )
    group.add_argument(
        "--placement",
        choices=PLACEMENTS.names(),
        help="nodes to ranks (default: the scenario's, else partition)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="give up on a silent peer or rendezvous after this long "
        "(default: the scenario's distributed.timeout_s, 60)",
    )
    return parser


def _validate_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=f"{command_name()} validate",
        description="Check a topology or scenario (a file, or a shipped one's name) and print a "
        "summary; for a scenario, a dry run: with --set, --seeds or --topology it also prints "
        "the resolved scenario, as a run would save it.",
    )
    parser.add_argument("path", help="topology or scenario: a file, or a shipped name")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="scenarios: override a field, as for a run",
    )
    parser.add_argument("--seeds", type=int, help="scenarios: seeds 0..N-1, as for a run")
    parser.add_argument("--topology", help="scenarios: another topology file or shipped name")
    parser.add_argument(
        "--resolved", action="store_true", help="scenarios: print the resolved scenario"
    )
    return parser


def _plan_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=f"{command_name()} plan",
        description="Print who sends to whom under a routing, the links that carry traffic "
        "in training, the predicted exchange reduction against dense and the predicted "
        "simulated time of a training step; for a scenario, each variant's plans.",
    )
    parser.add_argument(
        "topology",
        help="topology file, or a shipped topology's name (geant); or a scenario (file or "
        "name): each variant's plans over its run, as its family makes them",
    )
    parser.add_argument("--routing", default="dijkstra", help="dense | dijkstra | hop | maxcap")
    parser.add_argument(
        "--message-bits",
        type=float,
        help="forward message size used as Dijkstra weight and for the predictions "
        "(default: the default scenario's forward message)",
    )
    parser.add_argument(
        "--hop-cost",
        default="0",
        metavar="SECONDS",
        help="dijkstra only: a price per hop added to every link's weight, in seconds or "
        "with a unit (1ms); 0 (default) is the capacity-aware tree, a large one the BFS tree",
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument(
        "--predict",
        action="store_true",
        help="with --json: add the active and silent links, the predicted exchange reduction "
        "and the predicted step time (the text output always shows them)",
    )
    return parser


def _report_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=f"{command_name()} report",
        description="Rebuild summary, report and figures of a run (or sweep) directory from "
        "its tables.",
    )
    parser.add_argument("run_dir", type=Path)
    return parser


def _resume_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=f"{command_name()} resume",
        description="Continue a run stopped after a checkpoint (--checkpoint-every), with the "
        "options it was started with; under torchrun, with the same number of processes. "
        "Given a sweep directory, run the points that are missing or failed.",
    )
    parser.add_argument("out", type=Path, help="the --out the run was given")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_launcher_options(parser)
    return parser


def _add_launcher_options(parser: argparse.ArgumentParser) -> None:
    """A sweep's ``--jobs``, ``--launcher``, ``--scheduler``, ``--launcher-option``."""
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="sweeps: run up to N points at once in separate processes (default 1)",
    )
    parser.add_argument(
        "--launcher",
        default="local",
        metavar="NAME",
        help="sweeps: where the points run: local (--jobs processes), dask (a LocalCluster "
        "of --jobs workers, or --scheduler), submitit (SLURM); default local",
    )
    parser.add_argument(
        "--scheduler", metavar="ADDRESS", help="--launcher dask: an existing Dask scheduler"
    )
    parser.add_argument(
        "--launcher-option",
        dest="launcher_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--launcher submitit: folder, cluster, or a parameter such as timeout_min=60 "
        "(repeatable)",
    )


def _cmd_resume(args: argparse.Namespace) -> int:
    """``resume OUT``: rebuild the run from its checkpoint's manifest and continue it."""
    from innet.app.scenario import load_scenario
    from innet.app.sweep_report import SWEEP_JSON
    from innet.rundir.checkpoint import checkpoint_dir, read_manifest

    out: Path = args.out
    if out.is_dir() and ((out / "points").is_dir() or (out / SWEEP_JSON).is_file()):
        return _resume_sweep(args)
    if args.jobs != 1 or args.launcher != "local" or args.scheduler or args.launcher_options:
        raise InnetError(f"--jobs and --launcher apply to a sweep directory; {out} is not one")
    folder = checkpoint_dir(out)
    if not folder.is_dir():
        raise InnetError(
            f"{out}: no checkpoint to resume ({folder} not found; a run keeps one with "
            "--checkpoint-every K)"
        )
    saved = read_manifest(folder)["args"]
    if set(saved) != set(_REBUILD):
        raise InnetError(
            f"{folder}: this checkpoint was not made by `{command_name()} --checkpoint-every`, "
            "so resume cannot rebuild its run"
        )
    run_args = _run_parser().parse_args([])
    vars(run_args).update(saved, out=out, no_progress=args.no_progress)
    loaded = load_scenario(Path(saved["scenario"]), saved["overrides"], saved["topology"])
    return _run_one(run_args, loaded, resume="yes")


def _resume_sweep(args: argparse.Namespace) -> int:
    """``resume SWEEP_DIR``: the points that are missing or failed."""
    from innet.app.launchers import launched
    from innet.app.runner import local_device
    from innet.app.sweeps import resume_sweep

    if args.jobs < 1:
        raise InnetError(f"--jobs must be at least 1, got {args.jobs}")
    with launched(
        args.launcher, jobs=args.jobs, scheduler=args.scheduler, options=args.launcher_options
    ) as executor:
        run_dir = resume_sweep(
            args.out,
            jobs=args.jobs,
            progress=not args.no_progress,
            device=local_device(),
            executor=executor,
        )
    print(f"\nrun directory: {run_dir}  (report: {run_dir / 'report.md'})")
    return 0


def _trace_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=f"{command_name()} trace",
        description="Write trace.json (Chrome trace format: open it in ui.perfetto.dev or "
        "chrome://tracing) and figures/timeline_*.png from a finished run, without training "
        "again. Default: every variant, the first seed, the first and last training step.",
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--variant", action="append", help="a variant (repeat for more)")
    parser.add_argument("--seed", type=int, action="append", help="a seed (repeat for more)")
    parser.add_argument("--step", type=int, action="append", help="a training step (repeat)")
    parser.add_argument("--out", type=Path, help="trace file (default RUN_DIR/trace.json)")
    parser.add_argument("--no-figures", action="store_true", help="no timeline figures")
    return parser


def _cmd_trace(args: argparse.Namespace) -> int:
    from innet.families.runs import open_run
    from innet.report.trace import TraceSelection, write_run_trace

    if not args.run_dir.is_dir():
        raise InnetError(f"{args.run_dir}: run directory not found")
    if args.out is not None and not args.out.parent.is_dir():
        raise InnetError(f"--out: directory {args.out.parent} not found")
    selection = TraceSelection(args.variant, args.seed, args.step)
    written = write_run_trace(
        open_run(args.run_dir)[0], selection, path=args.out, figures=not args.no_figures
    )
    for path in written:
        print(path)
    print("open trace.json in https://ui.perfetto.dev (Open trace file) or chrome://tracing")
    return 0


def _retime_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=f"{command_name()} retime",
        description="Time a finished run's messages again on a network with other capacities, "
        "latencies or losses (same graph, same plans), without training again; writes a new "
        "complete run directory.",
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--topology",
        help="topology file (or a shipped topology's name) to time on (default: the run's own)",
    )
    parser.add_argument(
        "--network-model",
        choices=("fifo", "flow"),
        help="network model (default: the run's network.model)",
    )
    parser.add_argument("--out", type=Path, help="new run directory (default runs/<name>-<time>)")
    return parser


def _cmd_retime(args: argparse.Namespace) -> int:
    from innet.app.retime import retime_run
    from innet.app.scenario import find_topology
    from innet.families.runs import open_run
    from innet.report import headline_table

    topology = find_topology(args.topology, option="--topology") if args.topology else None
    run_dir, summary = retime_run(
        args.run_dir, topology, out=args.out, network_model=args.network_model
    )
    print(headline_table(summary, open_run(run_dir)[1].report))
    print(f"\nrun directory: {run_dir}  (report: {run_dir / 'report.md'})")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from innet.app.scenario import find_scenario, list_scenarios, load_scenario

    if args.list:
        _print_listing()
        return 0
    if args.scenario is None:
        known = ", ".join(name for name, _ in list_scenarios())
        raise InnetError(
            f"choose a scenario: --scenario NAME (known: {known}); "
            f"the main job is --scenario {DEFAULT_SCENARIO} (see {command_name()} --help)"
        )
    overrides = _run_overrides(args)
    from innet.distributed import is_torchrun

    _check_distributed_options(args, is_torchrun())
    path = find_scenario(args.scenario)
    loaded = load_scenario(path, overrides, args.topology)
    if args.sweeps or loaded.sweep:
        return _cmd_sweep(args, path, overrides)
    if args.jobs > 1:
        raise InnetError("--jobs applies to sweeps (give --sweep KEY=v1,v2 or a sweep: block)")
    if args.launcher != "local" or args.scheduler or args.launcher_options:
        raise InnetError("--launcher applies to sweeps (give --sweep KEY=v1,v2 or a sweep: block)")
    args.scenario = str(path.resolve())
    args.topology = str(loaded.topology_path.resolve()) if args.topology else None
    args.overrides = overrides
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0
    return _run_one(args, loaded, resume="if-present" if restarted else "no")


def _seeds_override(seeds: int | None) -> list[str]:
    """``--seeds N`` as a scenario override (none without it)."""
    if seeds is None:
        return []
    if seeds < 1:
        raise InnetError("--seeds must be at least 1")
    return [f"seeds={seeds}"]


def _run_overrides(args: argparse.Namespace) -> list[str]:
    """The run's options as scenario overrides, each checked (``--jobs`` too)."""
    overrides = list(args.overrides)
    if args.csv:
        overrides.append("report.exchanges_csv=true")
    if args.trace:
        overrides.append("report.trace={}")
    overrides += _seeds_override(args.seeds)
    if args.checkpoint_every is not None:
        if args.checkpoint_every < 1:
            raise InnetError(f"--checkpoint-every must be at least 1, got {args.checkpoint_every}")
        overrides.append(f"training.checkpoint_every={args.checkpoint_every}")
    if args.timeout is not None:
        if not (math.isfinite(args.timeout) and args.timeout > 0):
            raise InnetError(f"--timeout must be a positive number of seconds, got {args.timeout}")
        overrides.append(f"distributed.timeout_s={args.timeout}")
    if args.jobs < 1:
        raise InnetError(f"--jobs must be at least 1, got {args.jobs}")
    return overrides


def _run_one(
    args: argparse.Namespace,
    loaded: LoadedScenario,
    resume: Literal["no", "yes", "if-present"] = "no",
) -> int:
    """A plain run (not a sweep), in this process or as one rank under torchrun.

    ``resume``: what to do with a checkpoint beside ``--out`` (:class:`~innet.app.runner.Resume`).
    """
    from innet.app.runner import Resume, local_device, save_run
    from innet.distributed import init_distributed, is_torchrun, shutdown
    from innet.report import headline_table

    ctx = None
    processes = None
    if is_torchrun():
        ctx = init_distributed(
            backend=args.backend,
            device=args.device,
            timeout_s=loaded.scenario.distributed.timeout_s,
        )
        processes = _distributed_processes(ctx, loaded, args.placement)
    finished = False
    try:
        run_dir, summary = save_run(
            loaded,
            out=args.out,
            progress=not args.no_progress,
            processes=processes,
            device=ctx.device if ctx is not None else local_device(args.device),
            resume=Resume(resume, {key: getattr(args, key) for key in _REBUILD}),
        )
        finished = True
    finally:
        shutdown(ctx, wait=finished)
    if run_dir is not None and summary is not None:
        print(headline_table(summary, FAMILIES.get(loaded.scenario.family).report))
        print(f"\nrun directory: {run_dir}  (report: {run_dir / 'report.md'})")
    return 0


_REBUILD = ("scenario", "topology", "overrides", "backend", "device", "placement")
"""The run options a checkpoint's manifest keeps: what ``resume`` needs to run the same run
(``overrides`` holds --set, --seeds, --csv, --trace, --timeout and --checkpoint-every)."""


def _print_listing() -> None:
    """``--list``: each scenario, its runs (variants x seeds x points) and its measured time."""
    import textwrap

    from innet.app.scenario import scenario_listing

    for entry in scenario_listing():
        if entry.runs is None:
            print(f"{entry.name:20s} (invalid: {entry.problem})")
            continue
        print(f"{entry.name:20s} {_runs_text(*entry.runs):34s} {_measured_text(entry.measured)}")
        for line in textwrap.wrap(entry.description, 78, max_lines=2, placeholder=" ..."):
            print(f"{'':20s} {line}")


def _runs_text(variants: int, seeds: int, points: int) -> str:
    """``3 variants x 5 seeds = 15 runs`` (``x 5 points`` for a sweep)."""
    text = f"{plural(variants, 'variant')} x {plural(seeds, 'seed')}"
    if points > 1:
        text += f" x {points} points"
    return f"{text} = {plural(variants * seeds * points, 'run')}"


def _measured_text(measured: Measured | None) -> str:
    """``8 min 11 s on 2-core x86_64`` from a scenario's ``measured:`` block, if it has one."""
    if measured is None:
        return "(time not measured)"
    minutes, seconds = divmod(round(measured.wall_s), 60)
    took = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    return f"{took} on {measured.machine}"


def _check_distributed_options(args: argparse.Namespace, under_torchrun: bool) -> None:
    """torch.distributed options without torchrun: an error, not silently ignored."""
    if under_torchrun or args.backend == "auto":
        return
    raise InnetError(
        f"--backend {args.backend} applies under torchrun only (this process runs every node "
        f"itself): start it as `torchrun --nproc_per_node=N {command_name()} ...`, or leave "
        "--backend out"
    )


def _cmd_sweep(args: argparse.Namespace, path: Path, overrides: list[str]) -> int:
    """A sweep (``--sweep`` or the scenario's ``sweep:`` block): one run directory."""
    from innet.app.launchers import launched
    from innet.app.runner import local_device
    from innet.app.sweep_report import SWEEP_FILE
    from innet.app.sweeps import run_sweep
    from innet.distributed import is_torchrun

    if is_torchrun():
        raise InnetError("--sweep: sweeps run without torchrun (use --jobs N for processes)")
    with launched(
        args.launcher, jobs=args.jobs, scheduler=args.scheduler, options=args.launcher_options
    ) as executor:
        run_dir = run_sweep(
            path,
            overrides,
            args.topology,
            args.sweeps,
            out=args.out,
            jobs=args.jobs,
            progress=not args.no_progress,
            device=local_device(args.device),
            executor=executor,
        )
    print(f"sweep table: {run_dir / SWEEP_FILE}")
    print(f"\nrun directory: {run_dir}  (report: {run_dir / 'report.md'})")
    return 0


def _distributed_processes(ctx, loaded, strategy: str | None):  # noqa: ANN001, ANN202
    """Place each variant's nodes on the ranks of ``ctx`` once the plans are known."""
    from innet.distributed import DistributedProcesses

    config = loaded.scenario.distributed
    return lambda topology, plans: DistributedProcesses(
        ctx, topology, plans, strategy or config.placement, config.map, loaded.path
    )


def _cmd_validate(args: argparse.Namespace) -> int:
    from innet.core.topology import format_summary, load_topology, summarize_topology
    from innet.core.yamlio import read_yaml

    path = _validate_target(args.path)
    data, _ = read_yaml(path)
    resolved = None
    if isinstance(data, dict) and "variants" in data:
        topology, resolved = _validate_scenario(path, args)
    else:
        if args.overrides or args.seeds is not None or args.topology or args.resolved:
            raise InnetError(
                f"{path}: a topology; --set, --seeds, --topology and --resolved apply to scenarios"
            )
        topology = load_topology(path)
        print(f"{path}: topology {topology.name!r} is valid")
    print(format_summary(summarize_topology(topology)))
    if resolved is not None:
        print("resolved scenario (as a run saves it in config.yaml):")
        print("\n".join(f"  {line}" for line in resolved.splitlines()))
    return 0


def _validate_target(text: str) -> Path:
    """A file given by path, else a shipped scenario's name, else a shipped topology's name."""
    from innet.app.scenario import find_scenario, find_topology, list_scenarios, shipped_topologies

    path = Path(text)
    if path.exists() or path.suffix.lower() in (".yaml", ".yml", ".graphml", ".xml"):
        return path  # read_yaml names a missing file
    if text in {name for name, _ in list_scenarios()}:
        return find_scenario(text)
    if text in shipped_topologies():
        return find_topology(text)
    scenarios = ", ".join(name for name, _ in list_scenarios())
    topologies = ", ".join(shipped_topologies())
    raise InnetError(
        f"{text}: no such file, scenario or shipped topology "
        f"(scenarios: {scenarios}; topologies: {topologies})"
    )


def _validate_scenario(path: Path, args: argparse.Namespace) -> tuple[Topology, str | None]:
    """Load a scenario as a run would (overrides, its family's checks); print what it runs.

    Returns its topology and, when asked for (or changed by options), the resolved scenario.
    """
    import yaml

    from innet.app.scenario import load_scenario
    from innet.families.runs import resolved_config

    overrides = [*args.overrides, *_seeds_override(args.seeds)]
    loaded = load_scenario(path, overrides, args.topology)
    print(f"{path}: scenario {loaded.scenario.name!r} is valid")
    print(f"  family: {loaded.scenario.family}")
    print(f"  variants: {', '.join(f'{v.name} ({v.routing})' for v in loaded.variants)}")
    print(f"  seeds: {loaded.scenario.seed_list}")
    print(f"  runs: {_runs_text(*loaded.runs)}")
    topology, lines = _family_answer(loaded, FAMILIES.get(loaded.scenario.family).check)
    for line in lines:
        print(f"  {line}")
    if not (args.overrides or args.seeds is not None or args.topology or args.resolved):
        return topology, None
    config = resolved_config(loaded)
    return topology, yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100)


def _family_answer(
    loaded: LoadedScenario, hook: Callable[[LoadedScenario, Topology], T]
) -> tuple[Topology, T]:
    """The scenario's topology and what its family's ``hook`` says of it (which prepares the
    family's trainer, as a run does before training); a problem names the scenario's line."""
    from innet.core.topology import load_topology
    from innet.core.yamlio import FieldError

    try:
        topology = load_topology(loaded.topology_path)
        return topology, hook(loaded, topology)
    except FieldError as error:
        raise loaded.located(error) from None


def default_message_bits() -> int:
    """Forward message size of the default scenario's first variant."""
    from innet.app.scenario import find_scenario, load_scenario

    loaded = load_scenario(find_scenario(DEFAULT_SCENARIO))
    return loaded.variants[0].forward_message_bits(loaded.scenario.network.header_bytes)


def _cmd_plan(args: argparse.Namespace) -> int:
    """The plan, its active part, and what it predicts for training.

    Predictions assume every forward and backward message of a step has the
    same size, ``message_bits`` (float32 both ways with the same batch), so the
    exchange reduction against dense is ``1 - active links / dense active links``
    and a step sends one forward and one backward message per active link. The
    step time is the network model's (no node compute, the topology's own
    ``tx_ports``): a run adds compute time on nodes with a ``compute`` attribute.

    Given a scenario instead of a topology, each variant's plans over the run,
    as its family makes them (:meth:`~innet.families.family.Family.plans`).
    """
    from innet.app.scenario import find_topology
    from innet.core.plans import build_plan
    from innet.core.topology import load_topology

    scenario = _plan_scenario_path(args.topology)
    if scenario is not None:
        return _plan_scenario(scenario, args)
    topology = load_topology(find_topology(args.topology, option="plan"))
    bits, hop_cost = _plan_options(args)
    plan = build_plan(topology, args.routing, bits, hop_cost_s=hop_cost)
    prediction = _Prediction.of(topology, plan, bits)
    if args.json:
        document = plan.to_json()
        if args.predict:  # else the plan alone, as before
            document.update(message_bits=bits, hop_cost_s=hop_cost, **prediction.to_json())
        print(json.dumps(document))
        return 0
    _print_plan(topology, plan, bits, hop_cost, prediction)
    return 0


def _plan_options(args: argparse.Namespace) -> tuple[float, float]:
    """``--message-bits`` (default: the default scenario's) and ``--hop-cost``, checked."""
    from innet.core.units import parse_duration

    bits = args.message_bits if args.message_bits is not None else default_message_bits()
    if not (math.isfinite(bits) and bits > 0):
        raise InnetError(f"--message-bits must be a positive number, got {bits}")
    try:
        hop_cost = parse_duration(args.hop_cost)
    except ValueError as error:
        raise InnetError(f"--hop-cost: {error}") from None
    if not (math.isfinite(hop_cost) and hop_cost >= 0):
        raise InnetError(f"--hop-cost must be a duration >= 0, got {args.hop_cost}")
    if hop_cost and args.routing != "dijkstra":
        raise InnetError(f"--hop-cost applies to the dijkstra routing only, not {args.routing!r}")
    return bits, hop_cost


@dataclass(frozen=True)
class _Prediction:
    """What a plan predicts for one training step (see :func:`_cmd_plan`)."""

    links: int  # the topology's links
    active: Plan  # the part of the plan that carries traffic
    silent: list[tuple[str, str]]
    active_links: int
    dense_active_links: int
    exchange_reduction: float
    messages: int
    message_bytes: int
    step_time_s: float

    @classmethod
    def of(cls, topology: Topology, plan: Plan, bits: float) -> _Prediction:
        from innet.core.netsim import Message, NetworkModel
        from innet.core.plans import dense_plan
        from innet.core.transport import phase_messages

        sensors = topology.sensors
        active = plan.active(sensors)
        carrying = set(active.edges)
        silent = [edge for edge in plan.edges if edge not in carrying]
        dense_links = len({frozenset(edge) for edge in dense_plan(topology).active(sensors).edges})
        links = len({frozenset(edge) for edge in active.edges})
        reduction = 1 - links / dense_links if dense_links else 0.0
        nbytes = math.ceil(bits / 8)
        ones = dict.fromkeys(active.forward_order(), 1)
        messages = [
            Message(m.phase, m.src, m.dst, nbytes)
            for phase in ("forward", "backward")
            for m in phase_messages(active, phase, 1, ones)
        ]
        step_s = NetworkModel(topology).simulate_step(messages).duration_s if messages else 0.0
        return cls(
            topology.graph.number_of_edges(),
            active,
            silent,
            links,
            dense_links,
            reduction,
            len(messages),
            nbytes,
            step_s,
        )

    def to_json(self) -> dict[str, Any]:
        """The ``--json --predict`` fields."""
        return {
            "links": self.links,
            "active_edges": [list(edge) for edge in self.active.edges],
            "silent_edges": [list(edge) for edge in self.silent],
            "active_links": self.active_links,
            "dense_active_links": self.dense_active_links,
            "exchange_reduction": self.exchange_reduction,
            "messages_per_step": self.messages,
            "message_bytes": self.message_bytes,
            "step_time_s": self.step_time_s,
        }


def _print_plan(
    topology: Topology, plan: Plan, bits: float, hop_cost: float, prediction: _Prediction
) -> None:
    """The plan, its links and its predictions as text."""
    from innet.core.units import format_duration

    p = prediction
    name = topology.label  # nodes by label where the topology has labels (imported cities)
    print(
        f"{plan.routing} plan of {topology.name!r} towards {_named(topology, plan.fusion)} "
        f"(message {bits:g} bits, hop cost {format_duration(hop_cost)}):"
    )
    print(
        f"  {len(plan.edges)} of {p.links} links used by the plan; "
        f"{p.active_links} of them carry traffic in training, {len(p.silent)} silent"
        f"{_idle_senders(topology, p.silent)}"
    )
    print(
        f"  predicted exchange reduction against dense: {p.exchange_reduction:.1%} "
        f"({p.active_links} of {p.dense_active_links} active links, forward + backward; "
        "assumes every message has the same size)"
    )
    print(
        f"  predicted simulated time per training step: {format_duration(p.step_time_s)} "
        f"({p.messages} messages of {p.message_bytes} bytes, one forward and one backward "
        "per active link; network only, no node compute)"
    )
    carrying = set(p.active.edges)
    for sender, receiver in plan.edges:
        note = "" if (sender, receiver) in carrying else "  (silent)"
        print(f"  {name(sender)} -> {name(receiver)}{note}")


def _plan_scenario_path(text: str) -> Path | None:
    """The scenario file ``plan`` was given (a file with ``variants:``, or a shipped
    scenario's name that is no shipped topology's), else None: a topology."""
    from innet.app.scenario import find_scenario, list_scenarios, shipped_topologies
    from innet.core.yamlio import read_yaml

    path = Path(text)
    if path.is_file():
        if path.suffix.lower() not in (".yaml", ".yml"):
            return None
        data, _ = read_yaml(path)
        return path if isinstance(data, dict) and "variants" in data else None
    if text in shipped_topologies() or text not in {name for name, _ in list_scenarios()}:
        return None
    return find_scenario(text)


def _plan_scenario(path: Path, args: argparse.Namespace) -> int:
    """``plan SCENARIO``: every variant's plans over the run, as its family makes them."""
    from innet.app.scenario import load_scenario

    given = [
        option
        for option, value, default in (
            ("--routing", args.routing, "dijkstra"),
            ("--message-bits", args.message_bits, None),
            ("--hop-cost", args.hop_cost, "0"),
            ("--predict", args.predict, False),
        )
        if value != default
    ]
    if given:
        raise InnetError(
            f"{path}: a scenario; {', '.join(given)} apply to topologies "
            "(a scenario's variants choose their own plans)"
        )
    loaded = load_scenario(path)
    topology, timelines = _family_answer(loaded, FAMILIES.get(loaded.scenario.family).plans)
    if args.json:
        variants = {
            variant: [
                {"first_step": segment.first_step, **segment.plan.to_json()}
                for segment in timeline.segments
            ]
            for variant, timeline in timelines.items()
        }
        print(
            json.dumps(
                {
                    "scenario": loaded.scenario.name,
                    "family": loaded.scenario.family,
                    "topology": topology.name,
                    "variants": variants,
                }
            )
        )
        return 0
    print(
        f"plans of scenario {loaded.scenario.name!r} (family {loaded.scenario.family}) on "
        f"{topology.name!r}:"
    )
    name = topology.label
    for variant, timeline in timelines.items():
        for segment in timeline.segments:
            plan = segment.plan
            print(
                f"  {variant}: {plan.routing} plan towards {_named(topology, plan.fusion)} "
                f"from step {segment.first_step}, {len(plan.edges)} links"
            )
            for sender, receiver in plan.edges:
                print(f"    {name(sender)} -> {name(receiver)}")
    return 0


def _named(topology: Topology, node: str) -> str:
    """``DE (node 4)`` where the topology labels its nodes, else the id."""
    label = topology.label(node)
    return node if label == node else f"{label} (node {node})"


def _idle_senders(topology: Topology, silent: list[tuple[str, str]], shown: int = 8) -> str:
    """``: r4 has nothing to forward (no sensor upstream)`` for the senders of silent links.

    A run leaves these links silent too: such a node never computes, so it sends nothing
    (:meth:`innet.core.plans.Plan.active`).
    """
    senders = list(dict.fromkeys(topology.label(sender) for sender, _ in silent))
    if not senders:
        return ""
    names = ", ".join(senders[:shown]) + (
        f" and {len(senders) - shown} more" if len(senders) > shown else ""
    )
    verb = "has" if len(senders) == 1 else "have"
    return f": {names} {verb} nothing to forward (no sensor upstream)"


def _cmd_report(args: argparse.Namespace) -> int:
    from innet.app.sweep_report import SWEEP_FILE, SWEEP_JSON, rebuild_sweep_report
    from innet.app.sweeps import refuse_unfinished_sweep
    from innet.families.runs import open_run, write_run_report
    from innet.report import headline_table

    if not args.run_dir.is_dir():
        raise InnetError(f"{args.run_dir}: run directory not found")
    refuse_unfinished_sweep(args.run_dir)
    if (args.run_dir / SWEEP_JSON).is_file():
        rebuild_sweep_report(args.run_dir)
        print(f"sweep report rebuilt: {args.run_dir / 'report.md'} ({args.run_dir / SWEEP_FILE})")
        return 0
    summary = write_run_report(args.run_dir)
    print(headline_table(summary, open_run(args.run_dir)[1].report))
    print(f"\nreport rebuilt: {args.run_dir / 'report.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``run_sim.py`` and the ``innet`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        print(f"error: {_unknown_command(argv[0])}", file=sys.stderr)
        return 2
    command = argv[0] if argv and argv[0] in COMMANDS else "run"
    if argv and argv[0] in COMMANDS:
        argv = argv[1:]
    parsers = {
        "run": (_run_parser, _cmd_run),
        "validate": (_validate_parser, _cmd_validate),
        "plan": (_plan_parser, _cmd_plan),
        "report": (_report_parser, _cmd_report),
        "retime": (_retime_parser, _cmd_retime),
        "trace": (_trace_parser, _cmd_trace),
        "resume": (_resume_parser, _cmd_resume),
    }
    make_parser, handler = parsers[command]
    args = make_parser().parse_args(argv)
    leader = _launched_as_leader()  # under torchrun only the leader speaks
    warnings.formatwarning = _one_line_warning
    if not leader:
        warnings.simplefilter("ignore")
    under_torchrun = "WORLD_SIZE" in os.environ
    signal.signal(signal.SIGTERM, _stopped_by_launcher if under_torchrun else _terminated)
    try:
        return _handle(handler, args, leader)
    finally:  # the command has answered: a SIGTERM while Python shuts down just ends it
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _handle(
    handler: Callable[[argparse.Namespace], int], args: argparse.Namespace, leader: bool
) -> int:
    """Run the command; the user's problems, interrupts and a closed pipe as exit statuses."""
    try:
        return handler(args)
    except InnetError as error:
        if leader:
            print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if leader:
            print("interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except BrokenPipeError:  # e.g. `run_sim.py ... | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _unknown_command(word: str) -> str:
    """``unknown command 'valdiate' (did you mean validate? ...)``, the nearest command first."""
    from innet.app.scenario import list_scenarios

    name = command_name()
    near = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.6)
    if near:
        hint = f"did you mean `{name} {near[0]}`?"
    elif word in {scenario for scenario, _ in list_scenarios()} or word.endswith((".yaml", ".yml")):
        hint = f"did you mean `{name} --scenario {word}`?"
    else:
        hint = f"see `{name} --help`"
    return f"unknown command {word!r}: {hint} (commands: {', '.join(COMMANDS)})"


def _launched_as_leader() -> bool:
    """True unless torchrun started this process as a rank other than the leader."""
    from innet.core.group import LEADER_RANK, is_leader_rank

    rank = os.environ.get("RANK", str(LEADER_RANK))
    return is_leader_rank(int(rank)) if rank.strip().isdigit() else True


class _Terminated(BaseException):
    """SIGTERM arrived (``timeout``, SLURM, ``docker stop``, systemd): unwind like Ctrl-C."""


def _terminated(signum: int, frame: object) -> None:
    """Stop as on Ctrl-C: the run directory being written is removed on the way out."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup
    raise _Terminated


def _stopped_by_launcher(signum: int, frame: object) -> None:
    """torchrun stops the other ranks with SIGTERM when one fails: unwind and clean up."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise InnetError("stopped by the launcher (another rank failed or the job was cancelled)")


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    """Warnings (a merged parallel link, a dropped node...) as one line, without source."""
    return f"warning: {message}\n"


if __name__ == "__main__":
    sys.exit(main())
