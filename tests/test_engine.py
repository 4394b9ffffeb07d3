"""The engine's message passing computes exactly the gradients of one monolithic model."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from innet.engine import Engine
from innet.modules import NodeSpec
from innet.plans import build_plan
from innet.topology.model import Topology
from innet.transport import InProcessTransport

LATENT = 4


def lateral_topology() -> Topology:
    """Five nodes with a lateral link (s1-r at equal distance) and a two-hop sensor (s2)."""
    graph = nx.Graph()
    for node, role in [("f", "fusion"), ("r", "relay"), ("s1", "sensor"), ("s2", "sensor"),
                       ("s3", "sensor")]:  # fmt: skip
        graph.add_node(node, role=role, label=node)
    for u, v in [("s1", "f"), ("s1", "r"), ("s2", "r"), ("r", "f"), ("s3", "f"), ("s3", "s2")]:
        graph.add_edge(u, v, capacity=1e7, latency=1e-3)
    return Topology("lateral", graph)


def make_engine(routing: str, gate: str, beta: float, seed: int = 3, aggregator: str = "sum"):
    topology = lateral_topology()
    plan = build_plan(topology, routing, message_bits=1e4).active(topology.sensors)
    generator = torch.Generator().manual_seed(0)
    n_train = 16
    views = {
        sensor: (torch.randn(n_train, 3, generator=generator), torch.randn(8, 3))
        for sensor in topology.sensors
    }
    labels = (
        torch.randint(0, 3, (n_train,), generator=generator),
        torch.zeros(8, dtype=torch.long),
    )
    specs = {
        node: NodeSpec(
            node=node,
            is_fusion=node == plan.fusion,
            view_dim=3 if node in views else None,
            n_received=len(plan.children(node)),
            latent_dim=LATENT,
            hidden=5,
            aggregator=aggregator,
            gate_kind=gate,
            n_classes=3,
        )
        for node in plan.forward_order()
    }
    transport = InProcessTransport()
    engine = Engine(plan=plan, specs=specs, seed=seed, transport=transport, views=views,
                    labels=labels, lr=0.1, optimizer="sgd", beta=beta)  # fmt: skip
    return engine, transport


def monolithic_gradients(engine: Engine, index: np.ndarray, beta: float) -> dict[str, list]:
    """Backpropagate through all node modules as one autograd graph (no messages)."""
    sent, rates, loss = {}, [], None
    for node in engine.order:
        module = engine.modules[node]
        module.train()
        received = [sent[child] for child in engine.plan.children(node)]
        if node == engine.plan.fusion:
            loss = F.cross_entropy(module.decode(received), engine.labels[0][index])
        else:
            view = engine.views[node][0][index] if node in engine.views else None
            out = module.send_forward(view, received)
            sent[node] = out.t
            rates.append(out.rate_bits)
    (loss + beta * torch.stack(rates).sum()).backward()
    return {
        node: [p.grad.clone() for p in module.parameters()]
        for node, module in engine.modules.items()
    }


@pytest.mark.parametrize(
    ("routing", "gate", "beta", "aggregator"),
    [
        ("dense", "none", 0.0, "sum"),
        ("dense", "gaussian", 0.1, "concat"),
        ("dijkstra", "discrete", 0.05, "mean"),
        ("hop", "gaussian", 0.0, "sum"),
    ],
)
def test_message_passing_gradients_equal_monolithic(routing, gate, beta, aggregator):
    engine, transport = make_engine(routing, gate, beta, aggregator=aggregator)
    reference, _ = make_engine(routing, gate, beta, aggregator=aggregator)
    index = np.arange(8)
    engine.train_step(index, epoch=0, step=0)
    expected = monolithic_gradients(reference, index, beta)
    assert transport.pending() == 0
    for node, module in engine.modules.items():
        grads = [p.grad for p in module.parameters()]
        assert len(grads) == len(expected[node])
        for got, want in zip(grads, expected[node], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_records_are_the_real_tensors_over_every_plan_edge():
    engine, _ = make_engine("dense", "gaussian", 0.0)
    engine.train_step(np.arange(6), epoch=0, step=0)
    forward = {(src, dst) for _, _, phase, src, dst, *_ in engine.records if phase == "forward"}
    backward = {(dst, src) for _, _, phase, src, dst, *_ in engine.records if phase == "backward"}
    assert forward == backward == set(engine.plan.edges)
    assert {row[6] for row in engine.records} == {6 * LATENT * 4}
    assert len(engine.records) == 2 * len(engine.plan.edges)


def test_header_bytes_are_added_to_each_message():
    engine, _ = make_engine("dijkstra", "none", 0.0)
    engine.header_bytes = 40
    engine.train_step(np.arange(5), epoch=0, step=0)
    assert {row[6] for row in engine.records} == {5 * LATENT * 4 + 40}


def test_evaluation_sends_only_forward_eval_latents():
    engine, transport = make_engine("dense", "gaussian", 0.0)
    result = engine.evaluate(epoch=0, step=0, batch_size=5)
    phases = {row[2] for row in engine.records}
    assert phases == {"eval"}
    assert result.samples == 8
    assert 0 <= result.correct <= 8
    assert set(result.rate_sums) == {node for node, _ in engine.plan.edges}
    assert transport.pending() == 0


def test_same_seed_same_training():
    losses = []
    for _ in range(2):
        engine, _ = make_engine("dense", "gaussian", 0.1)
        losses.append([engine.train_step(np.arange(i, i + 4), 0, i) for i in range(4)])
    assert losses[0] == losses[1]
    other, _ = make_engine("dense", "gaussian", 0.1, seed=4)
    assert [other.train_step(np.arange(i, i + 4), 0, i) for i in range(4)] != losses[0]
