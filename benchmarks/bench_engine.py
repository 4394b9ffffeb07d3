"""Benchmark (a): step time of the in-process engine against one monolithic torch module.

Both sides train the same node modules (same seed, same initial weights) on the
same batches of the default scenario. The engine sends every latent and
gradient through the in-process transport, records each exchange and runs one
backward pass and one optimiser per node. The baseline wires the very same
modules into a single autograd graph with a single Adam optimiser. The ratio
engine / monolithic is the overhead of simulating the network in one process.

    python benchmarks/bench_engine.py [--scenario dense_vs_dijkstra] [--steps 300]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from innet.engine import Engine
from innet.inputs import load_inputs
from innet.scenario import find_scenario, load_scenario
from innet.topology import load_topology
from innet.training import node_specs, variant_timeline
from innet.transport import InProcessTransport


def build_engine(scenario, variant, plan, inputs, seed: int) -> Engine:
    return Engine(
        plan=plan,
        specs=node_specs([plan], variant, inputs),
        seed=seed,
        transport=InProcessTransport(),
        views=inputs.views,
        labels=inputs.labels,
        lr=variant.training.lr,
        optimizer=variant.training.optimizer,
        beta=variant.gate.beta,
    )


def monolithic_step(engine: Engine, optimizer: torch.optim.Optimizer, index: np.ndarray) -> float:
    """One step with all node modules in one autograd graph and one optimiser."""
    sent, rates, loss = {}, [], None
    for node in engine.order:
        module = engine.modules[node]
        received = [sent[child] for child in engine.plan.children(node)]
        if node == engine.plan.fusion:
            loss = F.cross_entropy(module.decode(received), engine.labels[0][index])
        else:
            view = engine.views[node][0][index] if node in engine.views else None
            out = module.send_forward(view, received)
            sent[node] = out.t
            rates.append(out.rate_bits)
    objective = loss + engine.beta * torch.stack(rates).sum() if engine.beta > 0 else loss
    optimizer.zero_grad(set_to_none=True)
    objective.backward()
    optimizer.step()
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="dense_vs_dijkstra")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="best of N timings")
    args = parser.parse_args()
    torch.set_num_threads(1)

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
    print(f"{'variant':16s} {'links':>5s} {'engine ms/step':>15s} {'monolithic ms/step':>19s} "
          f"{'ratio':>6s}")  # fmt: skip
    for variant in variants:
        plan = plans[variant.name]
        batch = variant.training.batch_size
        rng = np.random.default_rng(0)
        batches = [rng.choice(inputs.n_train, batch, replace=False) for _ in range(args.steps)]
        engine_times, mono_times = [], []
        for _ in range(args.repeats):
            engine = build_engine(scenario, variant, plan, inputs, seed=0)
            start = time.perf_counter()
            for step, index in enumerate(batches):
                engine.train_step(index, 0, step)
            engine_times.append(time.perf_counter() - start)

            mono = build_engine(scenario, variant, plan, inputs, seed=0)
            for module in mono.modules.values():
                module.train()
            params = [p for module in mono.modules.values() for p in module.parameters()]
            optimizer = torch.optim.Adam(params, lr=variant.training.lr)
            start = time.perf_counter()
            for index in batches:
                monolithic_step(mono, optimizer, index)
            mono_times.append(time.perf_counter() - start)
        engine_ms = 1e3 * min(engine_times) / args.steps
        mono_ms = 1e3 * min(mono_times) / args.steps
        print(f"{variant.name:16s} {len(plan.edges):5d} {engine_ms:15.3f} {mono_ms:19.3f} "
              f"{engine_ms / mono_ms:6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
