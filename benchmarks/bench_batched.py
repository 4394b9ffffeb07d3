"""Benchmark (f): the batched executor against the per-node executor, and its growth with size.

Part 1 trains the variants of a scenario (default ``scale_1000``) with both
executors from the same initial weights on the same batches, every message
recorded as in a run, alternating step by step (so load from other work hits
both alike), and prints the median milliseconds per training step, the
ratio per-node / batched of the medians and the median of the per-step
(paired) ratios.

Part 2 (``--scaling``) generates random geometric networks of 100 to 100,000
nodes (mean degree about 11, 64 sensors, the fusion node of highest degree),
builds the Dijkstra tree (and the dense plan up to ``--dense-max`` nodes) and
prints the batched executor's time per step against the node count; with
``--plot FILE`` it draws the table on log-log axes.

Part 3 (``--processes N``) does part 1 with the nodes spread over N gloo
processes on this machine (``torch.multiprocessing``, 127.0.0.1), placed as
a run places them (``partition``; ``--placement`` for another strategy), each executor on a
:class:`~innet.distributed.DistributedTransport`: milliseconds per training
step (wall clock, from a barrier before the first timed step to one after the
last, after one warm-up step) and tensors sent between processes per step,
summed over the processes (per node: one per node-pair message that crosses;
batched: one per phase, level and pair of processes with traffic), with the
ratios per-node / batched.

    python benchmarks/bench_batched.py [--scenario scale_1000] [--steps 20]
    python benchmarks/bench_batched.py --scaling --sizes 100 1000 10000 100000 --plot scaling.png
    python benchmarks/bench_batched.py --processes 2 [--placement partition] [--steps 5]
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from innet.app.runner import configure_torch
from innet.app.scenario import find_scenario, load_scenario
from innet.core.events import step_plan
from innet.core.placement import place_nodes
from innet.core.plans import build_plan
from innet.core.records import ExchangeLog
from innet.core.topology import load_topology
from innet.core.topology.generators import generate_topology
from innet.core.topology.schema import GeneratorSpec
from innet.core.transport import InProcessTransport, RecordingTransport
from innet.distributed import DistributedTransport
from innet.families.inl.executors.batched import BatchedExecutor
from innet.families.inl.executors.per_node import PerNodeExecutor
from innet.families.inl.inputs import DataConfig, load_inputs
from innet.families.inl.modules import ModuleSpec
from innet.families.inl.trainer import module_specs, variant_timeline


def time_steps(
    kind, plan, specs, inputs, topology, batches, lr: float, beta: float, transport=None
) -> float:
    """Milliseconds per recorded training step of executor ``kind`` (after one warm-up step).

    ``transport``: where the nodes live (default: all in this process); with a
    torch.distributed one, every process times from a barrier to a barrier.
    """
    inner = InProcessTransport() if transport is None else transport
    recorder = RecordingTransport(inner, ExchangeLog(topology.graph.nodes))
    executor = kind(plan=plan, specs=specs, seed=0, transport=recorder, views=inputs.views,
                    labels=inputs.labels, lr=lr, beta=beta)  # fmt: skip
    step = step_plan(plan, frozenset(), topology.sensors)
    log = recorder.log
    for number, index in enumerate(batches):
        if number == 1:
            if transport is not None:
                dist.barrier()
            start = time.perf_counter()
        log.begin("train", 0, number, len(index))
        executor.train_step(index, step)
        log.end()
    if transport is not None:
        dist.barrier()
    return 1e3 * (time.perf_counter() - start) / (len(batches) - 1)


def stepper(kind, plan, specs, inputs, topology, lr: float, beta: float):
    """A function running one recorded training step of executor ``kind``; it returns seconds."""
    recorder = RecordingTransport(InProcessTransport(), ExchangeLog(topology.graph.nodes))
    executor = kind(plan=plan, specs=specs, seed=0, transport=recorder, views=inputs.views,
                    labels=inputs.labels, lr=lr, beta=beta)  # fmt: skip
    step = step_plan(plan, frozenset(), topology.sensors)

    def run(number: int, index: np.ndarray) -> float:
        start = time.perf_counter()
        recorder.log.begin("train", 0, number, len(index))
        executor.train_step(index, step)
        recorder.log.end()
        return time.perf_counter() - start

    return run


def compare(scenario_name: str, steps: int) -> None:
    """Part 1: both executors on the same batches, alternating step by step (paired)."""
    loaded = load_scenario(find_scenario(scenario_name))
    scenario = loaded.scenario
    topology = load_topology(loaded.topology_path)
    inputs = load_inputs(scenario.data, topology, seed=0)
    print(f"scenario {scenario.name}: {len(topology.graph)} nodes; medians over {steps} steps "
          "after one warm-up step, the two executors alternating step by step")  # fmt: skip
    print(f"{'variant':16s} {'links':>6s} {'per-node ms/step':>17s} {'batched ms/step':>16s} "
          f"{'ratio':>6s} {'paired':>7s} {'paired min-max':>15s}")  # fmt: skip
    for variant in loaded.variants:
        plan = variant_timeline(scenario, variant, topology, inputs.n_train).segments[0].plan
        specs = module_specs([plan], variant, inputs)
        rng = np.random.default_rng(0)
        size = variant.training.batch_size
        args = (plan, specs, inputs, topology, variant.training.lr, variant.gate.beta)
        per_node, batched = stepper(PerNodeExecutor, *args), stepper(BatchedExecutor, *args)
        times: list[tuple[float, float]] = []
        for number in range(steps + 1):
            index = rng.choice(inputs.n_train, size, replace=False)
            pair = (per_node(number, index), batched(number, index))
            if number:
                times.append(pair)
        slow, fast = (1e3 * statistics.median(t) for t in zip(*times, strict=True))
        ratios = [a / b for a, b in times]
        print(f"{variant.name:16s} {len(plan.edges):6d} {slow:17.1f} {fast:16.1f} "
              f"{slow / fast:6.2f} {statistics.median(ratios):7.2f} "
              f"{min(ratios):7.2f}-{max(ratios):<7.2f}")  # fmt: skip


def spread(scenario_name: str, steps: int, processes: int, strategy: str) -> None:
    """Part 3: both executors with the nodes spread over ``processes`` gloo processes."""
    port = _free_port()
    mp.spawn(_spread_rank, args=(processes, port, scenario_name, steps, strategy),
             nprocs=processes)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spread_rank(
    rank: int, processes: int, port: int, scenario_name: str, steps: int, strategy: str
) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    configure_torch()  # as a run sets torch
    dist.init_process_group("gloo", rank=rank, world_size=processes)
    loaded = load_scenario(find_scenario(scenario_name))
    scenario = loaded.scenario
    topology = load_topology(loaded.topology_path)
    inputs = load_inputs(scenario.data, topology, seed=0)
    if rank == 0:
        print(
            f"scenario {scenario.name}: {len(topology.graph)} nodes, {processes} processes "
            f"(gloo, placement {strategy}), {steps} timed steps per executor"
        )
        print(f"{'variant':16s} {'links':>6s} {'across':>6s} {'per-node ms/step':>17s} "
              f"{'batched ms/step':>16s} {'ratio':>6s} {'per-node tensors/step':>22s} "
              f"{'batched tensors/step':>21s} {'ratio':>7s}")  # fmt: skip
    for variant in loaded.variants:
        plan = variant_timeline(scenario, variant, topology, inputs.n_train).segments[0].plan
        placement = place_nodes(topology, plan, processes, strategy)
        across = sum(placement[s] != placement[d] for s, d in plan.edges)
        specs = module_specs([plan], variant, inputs)
        rng = np.random.default_rng(0)
        size = variant.training.batch_size
        batches = [rng.choice(inputs.n_train, size, replace=False) for _ in range(steps + 1)]
        measured = []
        for kind in (PerNodeExecutor, BatchedExecutor):
            transport = DistributedTransport(placement, rank, processes, "cpu")
            ms = time_steps(kind, plan, specs, inputs, topology, batches, variant.training.lr,
                            variant.gate.beta, transport)  # fmt: skip
            tensors = torch.tensor([transport.messages_sent_cross_rank])
            dist.all_reduce(tensors)  # every step sends the same: warm-up included
            measured.append((ms, int(tensors) / len(batches)))
        if rank == 0:
            (per_node, per_node_tensors), (batched, batched_tensors) = measured
            fewer = f"{per_node_tensors / batched_tensors:7.1f}" if batched_tensors else "      —"
            print(f"{variant.name:16s} {len(plan.edges):6d} {across:6d} {per_node:17.1f} "
                  f"{batched:16.1f} {per_node / batched:6.2f} {per_node_tensors:22.1f} "
                  f"{batched_tensors:21.1f} {fewer}")  # fmt: skip
    dist.destroy_process_group()


def scaling(sizes: list[int], steps: int, dense_max: int, plot: str | None) -> None:
    data = DataConfig(dataset="gaussian_mixture", n_samples=4000, n_features=64, n_classes=10,
                      class_sep=4.0, views="split")  # fmt: skip
    print(f"{'nodes':>7s} {'routing':8s} {'links':>7s} {'plan s':>7s} {'ms/step':>8s}")
    rows = []
    for n in sizes:
        spec = GeneratorSpec(
            kind="random_geometric", n=n, radius=math.sqrt(11.3 / (math.pi * n)), seed=0,
            capacity="50Mbps", latency="1ms", fusion={"rule": "max_degree"},
            sensors={"rule": "random", "k": 64, "seed": 0},
        )  # fmt: skip
        topology = generate_topology(spec, name=f"rg{n}")
        inputs = load_inputs(data, topology, seed=0)
        for routing in ("dijkstra", "dense"):
            if routing == "dense" and n > dense_max:
                continue
            start = time.perf_counter()
            plan = build_plan(topology, routing, message_bits=64 * 8 * 32).active(topology.sensors)
            plan_s = time.perf_counter() - start
            specs = _specs(plan, inputs)
            rng = np.random.default_rng(0)
            batches = [rng.choice(inputs.n_train, 64, replace=False) for _ in range(steps + 1)]
            ms = time_steps(BatchedExecutor, plan, specs, inputs, topology, batches, 0.01, 0.0)
            rows.append((len(topology.graph), routing, len(plan.edges), plan_s, ms))
            print(f"{rows[-1][0]:7d} {routing:8s} {len(plan.edges):7d} {plan_s:7.2f} {ms:8.1f}")
    if plot:
        _plot(rows, plot)


def _specs(plan, inputs) -> dict[str, ModuleSpec]:
    """Modules as ``scale_1000``'s: latent 8, hidden 32, mean aggregator, Gaussian gate."""
    return {
        node: ModuleSpec(
            node=node, is_fusion=node == plan.fusion, view_dim=inputs.view_dim(node),
            n_received=len(plan.children(node)), latent_dim=8, hidden=32, aggregator="mean",
            gate_kind="gaussian", n_classes=inputs.n_classes,
        )
        for node in plan.forward_order()
    }  # fmt: skip


def _plot(rows, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 4), layout="constrained")
    for routing, marker in (("dijkstra", "o"), ("dense", "s")):
        points = [(nodes, ms) for nodes, r, _, _, ms in rows if r == routing]
        if points:
            axes.loglog(*zip(*points, strict=True), marker=marker, label=routing)
    axes.set_xlabel("nodes in the network")
    axes.set_ylabel("batched executor, ms per training step")
    axes.set_title("Step time against network size (64 sensors)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="scale_1000")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--scaling", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000, 100000])
    parser.add_argument("--dense-max", type=int, default=10000)
    parser.add_argument("--plot", default=None)
    parser.add_argument("--processes", type=int, default=0)
    parser.add_argument("--placement", default="partition", choices=("partition", "round_robin"))
    args = parser.parse_args()
    configure_torch()  # as a run sets torch
    if args.processes:
        spread(args.scenario, args.steps, args.processes, args.placement)
    elif args.scaling:
        scaling(args.sizes, args.steps, args.dense_max, args.plot)
    else:
        compare(args.scenario, args.steps)


if __name__ == "__main__":
    main()
