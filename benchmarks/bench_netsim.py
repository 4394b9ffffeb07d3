"""How fast the network model times training steps, against a bare SimPy model.

Builds a random geometric graph, routes every node's latent to the fusion node
(a BFS tree by default, or every link oriented by hop distance: ``--routing
dense``), and times ``--steps`` training steps (forward latents, then gradients
back) twice:

- through :class:`innet.core.netsim.NetworkModel`, the model the simulator uses;
- through a baseline written here: the same links as ``simpy.Resource``
  transmitters and the same dependencies, written minimally, every step
  simulated afresh.

Two cases: *identical* steps (as in real training, where every step sends the
same sizes: the model's cache simulates one) and *distinct* steps (every step's
sizes differ, so the cache cannot help and the model's own overhead shows).
For each case it prints exchanges (messages timed, cache hits included) per
wall-clock second for both, how many steps each actually simulated, the ratio
netsim / baseline of exchanges per second, and the largest difference between
their step durations (0 when they agree). Each time is the fastest of
``--repeat`` runs.

A third case, *lossy*, times the identical steps with every link losing
``--loss`` of its transmissions: steps with a retransmission cannot be cached,
so it shows what losses cost the model. The bare baseline knows no losses; the
line prints the mean copies per message and how much longer the mean step took
than the loss-free one instead. From the repository root:

    PYTHONPATH=. python benchmarks/bench_netsim.py        # 50 nodes, 2000 steps, ~30 s
    PYTHONPATH=. python benchmarks/bench_netsim.py --routing dense --steps 500 --loss 0.05

``--models TOPOLOGY`` instead compares the two network models (``fifo`` and
``flow``) on a topology file: for each routing of ``--plans``, the plan's
training step (the scenario ``scale_1000``'s message size by default), with
every step's sizes different so that nothing is cached, timed ``--steps``
times with each model. ``--plans all_to_all`` times a routed all-to-all
instead (every node sends to every other at once, as MoE tokens go to
experts). It prints the wall-clock seconds per step of each, the ratio flow /
fifo, and the two models' step durations:

    PYTHONPATH=. python benchmarks/bench_netsim.py --models topologies/random_geometric1000.yaml
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import networkx as nx
import simpy

from innet.core.netsim import Message, NetworkModel
from innet.core.topology.model import Topology, node_key

LATENT_BYTES = 64 * 32 * 4  # batch 64, latent dim 32, float32
T = TypeVar("T")


def random_topology(n_nodes: int, seed: int, loss: float = 0.0) -> Topology:
    """Largest component of a random geometric graph; fusion = most central node.

    Every link loses ``loss`` of its transmissions (no ``loss`` attribute when 0).
    """
    rng = random.Random(seed)
    geometric = nx.random_geometric_graph(n_nodes, radius=0.25, seed=seed)
    component = max(nx.connected_components(geometric), key=len)
    graph = nx.Graph()
    closeness = nx.closeness_centrality(geometric.subgraph(component))
    fusion = max(sorted(component), key=lambda node: closeness[node])
    for node in sorted(component):
        graph.add_node(f"n{node}", role="fusion" if node == fusion else "sensor")
    for u, v in geometric.subgraph(component).edges:
        graph.add_edge(
            f"n{u}",
            f"n{v}",
            capacity=rng.choice([1e6, 10e6, 100e6]),
            latency=rng.uniform(1e-4, 2e-3),
            **({"loss": loss} if loss else {}),
        )
    return Topology(f"rgg{n_nodes}", graph)


def forward_edges(topology: Topology, routing: str) -> list[tuple[str, str]]:
    """(sender, receiver) pairs towards the fusion node, farthest senders first."""
    distance = nx.single_source_shortest_path_length(topology.graph, topology.fusion)

    def order(node: str) -> tuple:
        return (distance[node], node_key(node))

    edges = []
    for node in sorted(topology.graph.nodes, key=order, reverse=True):
        closer = sorted((n for n in topology.graph[node] if order(n) < order(node)), key=order)
        if routing == "tree":
            closer = [n for n in closer if distance[n] < distance[node]][:1]
        edges.extend((node, receiver) for receiver in closer)
    return edges


def training_step(edges: list[tuple[str, str]], nbytes: int) -> list[Message]:
    """Latents along ``edges``, then gradients back along them in reverse order."""
    forward = [Message("forward", src, dst, nbytes) for src, dst in edges]
    backward = [Message("backward", dst, src, nbytes) for src, dst in reversed(edges)]
    return forward + backward


def baseline_step(topology: Topology, messages: Sequence[Message]) -> float:
    """Bare SimPy: one Resource per link direction, one process per sending node."""
    env = simpy.Environment()
    graph = topology.graph
    transmitters = {(m.src, m.dst): simpy.Resource(env, capacity=1) for m in messages}
    arrivals = [env.event() for _ in messages]
    ends = [0.0] * len(messages)
    inputs: dict[tuple[str, str], list[simpy.Event]] = {}
    sends: dict[tuple[str, str], list[int]] = {}
    for index, message in enumerate(messages):
        inputs.setdefault((message.dst, message.phase), []).append(arrivals[index])
        sends.setdefault((message.src, message.phase), []).append(index)

    def transmit(index: int):
        message = messages[index]
        link = graph.edges[message.src, message.dst]
        with transmitters[(message.src, message.dst)].request() as request:
            yield request
            yield env.timeout(8 * message.nbytes / link["capacity"])
        yield env.timeout(link["latency"])
        ends[index] = env.now
        arrivals[index].succeed()

    def node(waits_for: list[simpy.Event], indices: list[int]):
        yield env.all_of(waits_for)
        for index in indices:
            env.process(transmit(index))

    for (sender, phase), indices in sends.items():
        waits_for = inputs.get((sender, phase)) or inputs.get((sender, "forward"), [])
        env.process(node(waits_for, indices))
    env.run()
    return max(ends)


def best_time(run: Callable[[], T], repeat: int) -> tuple[T, float]:
    """Result of ``run`` and its fastest wall-clock time over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return result, min(times)


def all_to_all_step(topology: Topology, nbytes: int) -> list[Message]:
    """Every node sends ``nbytes`` to every other at once, routed (as MoE tokens are)."""
    from innet.core.phases import register_phase

    phase = register_phase("bench_all_to_all", training=True, flow="forward", routed=True).name
    nodes = sorted(topology.graph.nodes, key=node_key)
    return [Message(phase, a, b, nbytes, after=()) for a in nodes for b in nodes if a != b]


def compare_models(path: str, plans: Sequence[str], steps: int, nbytes: int, repeat: int) -> None:
    """Wall-clock seconds per distinct training step, fifo against flow, on ``path``."""
    from innet.core.plans import build_plan
    from innet.core.topology import load_topology

    topology = load_topology(path)
    print(
        f"topology {topology.name}: {topology.graph.number_of_nodes()} nodes, "
        f"{topology.graph.number_of_edges()} links; {steps} distinct steps, {nbytes} B messages"
    )
    print(f"{'plan':<10} {'messages':>9} {'fifo s/step':>12} {'flow s/step':>12} {'flow/fifo':>9} "
          f"{'fifo step s':>12} {'flow step s':>12}")  # fmt: skip
    for routing in plans:
        if routing == "all_to_all":
            batch = [all_to_all_step(topology, nbytes + k) for k in range(steps)]
        else:
            plan = build_plan(topology, routing, 8 * nbytes)
            batch = [training_step(list(plan.edges), nbytes + k) for k in range(steps)]
        seconds, durations = {}, {}
        for model in ("fifo", "flow"):

            def run(model: str = model, batch: list = batch) -> list[float]:
                network = NetworkModel(topology, model=model)
                return [network.simulate_step(step).duration_s for step in batch]

            durations[model], seconds[model] = best_time(run, repeat)
        print(
            f"{routing:<10} {len(batch[0]):>9} {seconds['fifo'] / steps:>12.4f} "
            f"{seconds['flow'] / steps:>12.4f} {seconds['flow'] / seconds['fifo']:>9.2f} "
            f"{durations['fifo'][0]:>12.6f} {durations['flow'][0]:>12.6f}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=50, help="nodes of the random geometric graph")
    parser.add_argument("--steps", type=int, default=2000, help="training steps per case")
    parser.add_argument("--routing", choices=["tree", "dense"], default="tree")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2, help="report the fastest of N runs")
    parser.add_argument("--loss", type=float, default=0.01, help="loss of every link, lossy case")
    parser.add_argument("--models", metavar="TOPOLOGY", help="compare fifo and flow on a file")
    parser.add_argument("--plans", default="dense,dijkstra",
                        help="routings for --models, or all_to_all")  # fmt: skip
    parser.add_argument("--nbytes", type=int, default=64 * 8 * 4, help="message size, --models")
    args = parser.parse_args(argv)
    if args.models:
        compare_models(args.models, args.plans.split(","), args.steps, args.nbytes, args.repeat)
        return

    topology = random_topology(args.nodes, args.seed)
    edges = forward_edges(topology, args.routing)
    cases = {
        "identical": [training_step(edges, LATENT_BYTES) for _ in range(args.steps)],
        "distinct": [training_step(edges, LATENT_BYTES + k) for k in range(args.steps)],
    }
    exchanges = args.steps * 2 * len(edges)
    print(
        f"topology {topology.name}: {topology.graph.number_of_nodes()} nodes, "
        f"{topology.graph.number_of_edges()} links; routing {args.routing}: {len(edges)} forward "
        f"links, {2 * len(edges)} exchanges/step; {args.steps} steps"
    )
    print(f"{'':<10} {'--------- netsim ---------':>26} {'------- bare SimPy -------':>26}")
    print(
        f"{'case':<10} {'exchanges/s':>15} {'simulated':>10} {'exchanges/s':>15} {'simulated':>10} "
        f"{'ratio':>9} {'max|dt| s':>9}"
    )
    for case, steps in cases.items():

        def run_model(steps: list[list[Message]] = steps) -> tuple[list[float], int]:
            model = NetworkModel(topology)
            durations = [model.simulate_step(step).duration_s for step in steps]
            return durations, model.unique_steps_simulated

        def run_baseline(steps: list[list[Message]] = steps) -> list[float]:
            return [baseline_step(topology, step) for step in steps]

        (model_durations, simulated), model_s = best_time(run_model, args.repeat)
        base_durations, base_s = best_time(run_baseline, args.repeat)
        gap = max(abs(a - b) for a, b in zip(model_durations, base_durations, strict=True))
        print(
            f"{case:<10} {exchanges / model_s:>15,.0f} {simulated:>10} "
            f"{exchanges / base_s:>15,.0f} {len(steps):>10} {base_s / model_s:>9.2f} {gap:>9.1e}"
        )

    lossy_topology = random_topology(args.nodes, args.seed, loss=args.loss)

    def run_lossy(steps: list[list[Message]] = cases["identical"]) -> tuple[list, int]:
        model = NetworkModel(lossy_topology, seed=args.seed)
        timings = [model.simulate_step(step, step_key=k) for k, step in enumerate(steps)]
        return timings, model.unique_steps_simulated

    (timings, simulated), lossy_s = best_time(run_lossy, args.repeat)
    copies = [message.attempts for timing in timings for message in timing.messages]
    identical_s = NetworkModel(topology).simulate_step(cases["identical"][0]).duration_s
    mean_s = sum(timing.duration_s for timing in timings) / len(timings)
    print(
        f"{'lossy':<10} {exchanges / lossy_s:>15,.0f} {simulated:>10}   loss {args.loss:g}: "
        f"{sum(copies) / len(copies):.4f} copies/message (expected {1 / (1 - args.loss):.4f}), "
        f"mean step {mean_s / identical_s:.3f} x the loss-free one"
    )


if __name__ == "__main__":
    main()
