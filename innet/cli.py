"""The command line: run a scenario, validate a topology, print a plan, rebuild a report.

``python run_sim.py [run options]`` (or ``innet``) runs a scenario; the first
word may instead be ``validate``, ``plan`` or ``report``. Problems with the
user's input end with a one-line message on stderr and exit status 2, never a
traceback, and leave no run directory behind.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from innet.distributed.placement import STRATEGIES
from innet.errors import InnetError

if TYPE_CHECKING:
    from innet.topology.model import Topology

__all__ = ["main"]

DEFAULT_SCENARIO = "dense_vs_dijkstra"
COMMANDS = ("run", "validate", "plan", "report", "retime")


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _run_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="run_sim.py",
        description="Run an in-network learning scenario and write a run directory. "
        "Other commands: validate PATH | plan TOPOLOGY | report RUN_DIR | "
        "retime RUN_DIR --topology FILE (see COMMAND --help).",
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
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="sweeps: run up to N points at once in separate processes (default 1)",
    )
    parser.add_argument("--out", type=Path, help="run directory (default runs/<scenario>-<time>)")
    parser.add_argument("--list", action="store_true", help="list the known scenarios and exit")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--csv",
        action="store_true",
        help="also write exchanges.csv (the same table as exchanges.parquet, ~20x larger)",
    )
    group = parser.add_argument_group(
        "torch.distributed (under torchrun; see README)",
        "Plain `python run_sim.py` runs every node in one process.",
    )
    group.add_argument("--backend", choices=("auto", "gloo", "nccl"), default="auto",
                       help="process-group backend (auto: nccl on cuda, else gloo)")  # fmt: skip
    group.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="where tensors live (auto: cuda if available)")  # fmt: skip
    group.add_argument("--placement", choices=STRATEGIES,
                       help="nodes to ranks (default: the scenario's, else partition)")  # fmt: skip
    group.add_argument("--timeout", type=float, metavar="SECONDS",
                       help="give up on a silent peer or rendezvous after this long "
                       "(default: the scenario's distributed.timeout_s, 60)")  # fmt: skip
    return parser


def _validate_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="run_sim.py validate",
        description="Check a topology (or scenario) file and print a summary.",
    )
    parser.add_argument("path", type=Path)
    return parser


def _plan_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="run_sim.py plan",
        description="Print who sends to whom under a routing, the links that carry traffic "
        "in training, the predicted exchange reduction against dense and the predicted "
        "simulated time of a training step.",
    )
    parser.add_argument("topology", type=Path)
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
        prog="run_sim.py report",
        description="Rebuild summary, report and figures of a run (or sweep) directory from "
        "its tables.",
    )
    parser.add_argument("run_dir", type=Path)
    return parser


def _retime_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="run_sim.py retime",
        description="Time a finished run's messages again on a network with other capacities, "
        "latencies or losses (same graph, same plans), without training again; writes a new "
        "complete run directory.",
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--topology", type=Path, required=True, help="topology YAML to time on")
    parser.add_argument("--out", type=Path, help="new run directory (default runs/<name>-<time>)")
    return parser


def _cmd_retime(args: argparse.Namespace) -> int:
    from innet.report import headline_table, load_run
    from innet.retime import retime_run

    run_dir, summary = retime_run(args.run_dir, args.topology, out=args.out)
    print(headline_table(summary, load_run(run_dir).family.report))
    print(f"\nrun directory: {run_dir}  (report: {run_dir / 'report.md'})")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from innet.scenario import find_scenario, list_scenarios, load_scenario

    if args.list:
        for name, description in list_scenarios():
            print(f"{name:24s} {description}")
        return 0
    if args.scenario is None:
        known = ", ".join(name for name, _ in list_scenarios())
        raise InnetError(
            f"choose a scenario: --scenario NAME (known: {known}); "
            f"the main job is --scenario {DEFAULT_SCENARIO} (see --help)"
        )
    overrides = list(args.overrides)
    if args.csv:
        overrides.append("report.exchanges_csv=true")
    if args.seeds is not None:
        if args.seeds < 1:
            raise InnetError("--seeds must be at least 1")
        overrides.append(f"seeds={args.seeds}")
    if args.timeout is not None:
        if not (math.isfinite(args.timeout) and args.timeout > 0):
            raise InnetError(f"--timeout must be a positive number of seconds, got {args.timeout}")
        overrides.append(f"distributed.timeout_s={args.timeout}")
    if args.jobs < 1:
        raise InnetError(f"--jobs must be at least 1, got {args.jobs}")
    path = find_scenario(args.scenario)
    loaded = load_scenario(path, overrides, args.topology)
    if args.sweeps or loaded.sweep:
        return _cmd_sweep(args, path, overrides)
    if args.jobs > 1:
        raise InnetError("--jobs applies to sweeps (give --sweep KEY=v1,v2 or a sweep: block)")

    from innet.distributed import init_distributed, is_torchrun, shutdown
    from innet.report import headline_table
    from innet.runner import local_device, run_scenario

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
        run_dir, summary = run_scenario(
            loaded,
            out=args.out,
            progress=not args.no_progress,
            processes=processes,
            device=ctx.device if ctx is not None else local_device(args.device),
        )
        finished = True
    finally:
        shutdown(ctx, wait=finished)
    if run_dir is not None and summary is not None:
        print(headline_table(summary, loaded.family.report))
        print(f"\nrun directory: {run_dir}  (report: {run_dir / 'report.md'})")
    return 0


def _cmd_sweep(args: argparse.Namespace, path: Path, overrides: list[str]) -> int:
    """A sweep (``--sweep`` or the scenario's ``sweep:`` block): one run directory."""
    from innet.distributed import is_torchrun
    from innet.report.sweep import SWEEP_FILE
    from innet.runner import local_device
    from innet.sweeps import run_sweep

    if is_torchrun():
        raise InnetError("--sweep: sweeps run without torchrun (use --jobs N for processes)")
    run_dir = run_sweep(path, overrides, args.topology, args.sweeps, out=args.out,
                        jobs=args.jobs, progress=not args.no_progress,
                        device=local_device(args.device))  # fmt: skip
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
    from innet.topology import format_summary, load_topology, summarize_topology
    from innet.yamlio import read_yaml

    data, _ = read_yaml(args.path)
    if isinstance(data, dict) and "variants" in data:
        from innet.scenario import load_scenario

        loaded = load_scenario(args.path)
        print(f"{args.path}: scenario {loaded.scenario.name!r} is valid")
        print(f"  variants: {', '.join(f'{v.name} ({v.routing})' for v in loaded.variants)}")
        print(f"  seeds: {loaded.scenario.seed_list}")
        topology = load_topology(loaded.topology_path)
        from innet.inputs import load_inputs
        from innet.yamlio import FieldError

        try:
            inputs = load_inputs(loaded.scenario.data, topology, loaded.scenario.seed_list[0])
        except FieldError as error:
            raise loaded.located(error) from None
        print(f"  data: {inputs.dataset}, {inputs.n_train} training samples, "
              f"{len(inputs.views)} sensor views")  # fmt: skip
    else:
        topology = load_topology(args.path)
        print(f"{args.path}: topology {topology.name!r} is valid")
    print(format_summary(summarize_topology(topology)))
    return 0


def default_message_bits() -> int:
    """Forward message size of the default scenario's first variant."""
    from innet.scenario import find_scenario, load_scenario

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
    """
    from innet.netsim import Message, NetworkModel
    from innet.plans import build_plan, dense_plan
    from innet.topology import load_topology
    from innet.transport import phase_messages
    from innet.units import format_duration, parse_duration

    topology = load_topology(args.topology)
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
    plan = build_plan(topology, args.routing, bits, hop_cost_s=hop_cost)
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
    if args.json:
        document = plan.to_json()
        if not args.predict:  # the plan alone, as before
            print(json.dumps(document))
            return 0
        document.update(
            message_bits=bits,
            hop_cost_s=hop_cost,
            links=topology.graph.number_of_edges(),
            active_edges=[list(edge) for edge in active.edges],
            silent_edges=[list(edge) for edge in silent],
            active_links=links,
            dense_active_links=dense_links,
            exchange_reduction=reduction,
            messages_per_step=len(messages),
            message_bytes=nbytes,
            step_time_s=step_s,
        )
        print(json.dumps(document))
        return 0
    name = topology.label  # nodes by label where the topology has labels (imported cities)
    print(f"{plan.routing} plan of {topology.name!r} towards {_named(topology, plan.fusion)} "
          f"(message {bits:g} bits, hop cost {format_duration(hop_cost)}):")  # fmt: skip
    print(f"  {len(plan.edges)} of {topology.graph.number_of_edges()} links used by the plan; "
          f"{links} of them carry traffic in training, {len(silent)} silent"
          f"{_idle_senders(topology, silent)}")  # fmt: skip
    print(f"  predicted exchange reduction against dense: {reduction:.1%} ({links} of "
          f"{dense_links} active links, forward + backward; assumes every message has the "
          "same size)")  # fmt: skip
    print(f"  predicted simulated time per training step: {format_duration(step_s)} "
          f"({len(messages)} messages of {nbytes} bytes, one forward and one backward per "
          "active link; network only, no node compute)")  # fmt: skip
    for sender, receiver in plan.edges:
        note = "" if (sender, receiver) in carrying else "  (silent)"
        print(f"  {name(sender)} -> {name(receiver)}{note}")
    return 0


def _named(topology: Topology, node: str) -> str:
    """``DE (node 4)`` where the topology labels its nodes, else the id."""
    label = topology.label(node)
    return node if label == node else f"{label} (node {node})"


def _idle_senders(topology: Topology, silent: list[tuple[str, str]], shown: int = 8) -> str:
    """``: r4 has nothing to forward (no sensor upstream)`` for the senders of silent links.

    A run leaves these links silent too: such a node never computes, so it sends nothing
    (:meth:`innet.plans.Plan.active`).
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
    from innet.report import headline_table, load_run, write_report
    from innet.report.sweep import SWEEP_FILE, SWEEP_JSON, rebuild_sweep_report

    if not args.run_dir.is_dir():
        raise InnetError(f"{args.run_dir}: run directory not found")
    if (args.run_dir / SWEEP_JSON).is_file():
        rebuild_sweep_report(args.run_dir)
        print(f"sweep report rebuilt: {args.run_dir / 'report.md'} ({args.run_dir / SWEEP_FILE})")
        return 0
    summary = write_report(args.run_dir)
    print(headline_table(summary, load_run(args.run_dir).family.report))
    print(f"\nreport rebuilt: {args.run_dir / 'report.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``run_sim.py`` and the ``innet`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else "run"
    if argv and argv[0] in COMMANDS:
        argv = argv[1:]
    parsers = {
        "run": (_run_parser, _cmd_run),
        "validate": (_validate_parser, _cmd_validate),
        "plan": (_plan_parser, _cmd_plan),
        "report": (_report_parser, _cmd_report),
        "retime": (_retime_parser, _cmd_retime),
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


def _launched_as_leader() -> bool:
    """True unless torchrun started this process as a rank other than the leader."""
    from innet.group import LEADER_RANK, is_leader_rank

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
