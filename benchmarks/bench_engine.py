"""Benchmark (a): step time of the in-process executors against one monolithic torch module.

All sides train the same node modules (same seed, same initial weights) on the
same batches of the default scenario. The per-node executor sends every latent
and gradient through the in-process transport, wrapped in the recording
transport that writes each exchange to the exchange log, and runs one backward
pass and one optimiser per node; the batched executor stacks the nodes of the
same shape (:mod:`innet.families.inl.executors.batched`) and records the same exchanges. The
baseline wires the very same modules into a single autograd graph
(:func:`innet.testing.reference.monolithic_objective`) with a single Adam optimiser.
The ratios executor / monolithic are the overhead of simulating the network in
one process.

    python benchmarks/bench_engine.py [--scenario dense_vs_dijkstra] [--steps 300]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from innet.app.runner import configure_torch
from innet.app.scenario import find_scenario, load_scenario
from innet.core.events import StepPlan, step_plan
from innet.core.records import ExchangeLog
from innet.core.topology import load_topology
from innet.core.transport import InProcessTransport, RecordingTransport
from innet.families.inl.executors.per_node import PerNodeExecutor
from innet.families.inl.inputs import load_inputs
from innet.families.inl.trainer import make_executor, variant_timeline
from innet.testing.reference import monolithic_objective


def build_executor(scenario, variant, plan, inputs, topology, seed: int, kind: str = "per_node"):
    """An executor (``kind``: per_node or batched) recording through an in-process transport."""
    recorder = RecordingTransport(InProcessTransport(), ExchangeLog(topology.graph.nodes),
                                  scenario.network.header_bytes)  # fmt: skip
    training = variant.training.model_copy(update={"executor": kind})
    return make_executor(variant.model_copy(update={"training": training}), [plan], inputs, seed,
                         recorder)  # fmt: skip


def executor_step(executor, step: StepPlan, number: int, index: np.ndarray):
    """One recorded training step, as the training loop runs it."""
    log = executor.transport.log
    log.begin("train", 0, number, len(index))
    executor.train_step(index, step)
    log.end()


def monolithic_step(
    executor: PerNodeExecutor, optimizer: torch.optim.Optimizer, index: np.ndarray
) -> None:
    """One step with all node modules in one autograd graph and one optimiser."""
    objective = monolithic_objective(executor.modules, executor.plan, executor.views,
                                     executor.labels[0], index, executor.beta)  # fmt: skip
    optimizer.zero_grad(set_to_none=True)
    objective.backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="dense_vs_dijkstra")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="best of N timings")
    args = parser.parse_args()
    configure_torch()  # as a run sets torch

    loaded = load_scenario(find_scenario(args.scenario))
    scenario, variants = loaded.scenario, loaded.variants
    topology = load_topology(loaded.topology_path)
    inputs = load_inputs(scenario.data, topology, seed=0)
    plans = {
        variant.name: variant_timeline(scenario, variant, topology, inputs.n_train).segments[0].plan
        for variant in variants
    }
    print(f"scenario {scenario.name}, topology {topology.name}, {args.steps} steps, best of "
          f"{args.repeats}")  # fmt: skip
    print(f"{'variant':16s} {'links':>5s} {'per-node ms':>12s} {'batched ms':>11s} "
          f"{'monolithic ms':>14s} {'per-node/mono':>14s} {'batched/mono':>13s}")  # fmt: skip
    for variant in variants:
        plan = plans[variant.name]
        batch = variant.training.batch_size
        rng = np.random.default_rng(0)
        batches = [rng.choice(inputs.n_train, batch, replace=False) for _ in range(args.steps)]
        step = step_plan(plan, frozenset(), topology.sensors)  # no failures
        times: dict[str, list[float]] = {"per_node": [], "batched": []}
        mono_times = []
        for _ in range(args.repeats):
            for kind, kind_times in times.items():
                executor = build_executor(scenario, variant, plan, inputs, topology, 0, kind)
                start = time.perf_counter()
                for number, index in enumerate(batches):
                    executor_step(executor, step, number, index)
                kind_times.append(time.perf_counter() - start)

            mono = build_executor(scenario, variant, plan, inputs, topology, seed=0)
            params = [p for module in mono.modules.values() for p in module.parameters()]
            optimizer = torch.optim.Adam(params, lr=variant.training.lr)
            start = time.perf_counter()
            for index in batches:
                monolithic_step(mono, optimizer, index)
            mono_times.append(time.perf_counter() - start)
        per_node_ms, batched_ms = (1e3 * min(t) / args.steps for t in times.values())
        mono_ms = 1e3 * min(mono_times) / args.steps
        ratios = f"{per_node_ms / mono_ms:14.2f} {batched_ms / mono_ms:13.2f}"
        print(f"{variant.name:16s} {len(plan.edges):5d} {per_node_ms:12.3f} {batched_ms:11.3f} "
              f"{mono_ms:14.3f} {ratios}")  # fmt: skip


if __name__ == "__main__":
    main()
