"""Benchmark (f): the batched executor against the per-node executor, and its growth with size.

Part 1 trains the variants of a scenario (default ``scale_1000``) with both
executors from the same initial weights on the same batches, every message
recorded as in a run, and prints milliseconds per training step and the
ratio per-node / batched.

Part 2 (``--scaling``) generates random geometric networks of 100 to 100,000
nodes (mean degree about 11, 64 sensors, the fusion node of highest degree),
builds the Dijkstra tree (and the dense plan up to ``--dense-max`` nodes) and
prints the batched executor's time per step against the node count; with
``--plot FILE`` it draws the table on log-log axes.

    python benchmarks/bench_batched.py [--scenario scale_1000] [--steps 20]
    python benchmarks/bench_batched.py --scaling --sizes 100 1000 10000 100000 --plot scaling.png
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from innet.events import step_plan
from innet.executors.batched import BatchedExecutor
from innet.executors.per_node import PerNodeExecutor
from innet.families.inl.config import DataConfig
from innet.families.inl.trainer import module_specs, variant_timeline
from innet.inputs import load_inputs
from innet.modules import ModuleSpec
from innet.plans import build_plan
from innet.records import ExchangeLog
from innet.scenario import find_scenario, load_scenario
from innet.topology import load_topology
from innet.topology.generators import generate_topology
from innet.topology.schema import GeneratorSpec
from innet.transport import InProcessTransport, RecordingTransport


def time_steps(kind, plan, specs, inputs, topology, batches, lr: float, beta: float) -> float:
    """Milliseconds per recorded training step of executor ``kind`` (after one warm-up step)."""
    recorder = RecordingTransport(InProcessTransport(), ExchangeLog(topology.graph.nodes))
    executor = kind(plan=plan, specs=specs, seed=0, transport=recorder, views=inputs.views,
                    labels=inputs.labels, lr=lr, beta=beta)  # fmt: skip
    step = step_plan(plan, frozenset(), topology.sensors)
    log = recorder.log
    for number, index in enumerate(batches):
        if number == 1:
            start = time.perf_counter()
        log.begin("train", 0, number, len(index))
        executor.train_step(index, step)
        log.end()
    return 1e3 * (time.perf_counter() - start) / (len(batches) - 1)


def compare(scenario_name: str, steps: int) -> None:
    loaded = load_scenario(find_scenario(scenario_name))
    scenario = loaded.scenario
    topology = load_topology(loaded.topology_path)
    inputs = load_inputs(scenario.data, topology, seed=0)
    print(f"scenario {scenario.name}: {len(topology.graph)} nodes, {steps} steps per executor")
    print(f"{'variant':16s} {'links':>6s} {'per-node ms/step':>17s} {'batched ms/step':>16s} "
          f"{'ratio':>6s}")  # fmt: skip
    for variant in loaded.variants:
        plan = variant_timeline(scenario, variant, topology, inputs.n_train).segments[0].plan
        specs = module_specs([plan], variant, inputs)
        rng = np.random.default_rng(0)
        size = variant.training.batch_size
        batches = [rng.choice(inputs.n_train, size, replace=False) for _ in range(steps + 1)]
        args = (plan, specs, inputs, topology, batches, variant.training.lr, variant.gate.beta)
        per_node = time_steps(PerNodeExecutor, *args)
        batched = time_steps(BatchedExecutor, *args)
        print(f"{variant.name:16s} {len(plan.edges):6d} {per_node:17.1f} {batched:16.1f} "
              f"{per_node / batched:6.2f}")  # fmt: skip


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
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.scaling:
        scaling(args.sizes, args.steps, args.dense_max, args.plot)
    else:
        compare(args.scenario, args.steps)


if __name__ == "__main__":
    main()
