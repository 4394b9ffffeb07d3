"""The per-node executor computes exactly the gradients of one monolithic model."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

from innet.core.events import step_plan
from innet.core.plans import build_plan
from innet.core.records import ExchangeLog
from innet.core.topology.model import Topology
from innet.core.transport import InProcessTransport, RecordingTransport
from innet.families.inl.executors.per_node import PerNodeExecutor
from innet.families.inl.modules import ModuleSpec
from innet.testing.reference import monolithic_objective

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


def make_engine(
    routing: str, gate: str, beta: float, seed: int = 3, aggregator: str = "sum", header: int = 0
):
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
        node: ModuleSpec(
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
    recorder = RecordingTransport(transport, ExchangeLog(topology.graph.nodes), header)
    engine = PerNodeExecutor(plan=plan, specs=specs, seed=seed, transport=recorder, views=views,
                             labels=labels, lr=0.1, optimizer="sgd", beta=beta)  # fmt: skip
    return engine, transport


def train(engine: PerNodeExecutor, index: np.ndarray, step: int = 0) -> float | None:
    """One recorded training step without failures."""
    log = engine.transport.log
    log.begin("train", 0, step, len(index))
    loss = engine.train_step(index, step_plan(engine.plan, frozenset(), []))
    log.end()
    return loss


def records(engine: PerNodeExecutor) -> pd.DataFrame:
    return engine.transport.log.frame("v", 0)


def monolithic_gradients(engine: PerNodeExecutor, index: np.ndarray, beta: float) -> dict:
    """Backpropagate through all node modules as one autograd graph (no messages)."""
    monolithic_objective(engine.modules, engine.plan, engine.views, engine.labels[0], index,
                         beta).backward()  # fmt: skip
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
    train(engine, index)
    expected = monolithic_gradients(reference, index, beta)
    assert transport.pending() == 0
    for node, module in engine.modules.items():
        grads = [p.grad for p in module.parameters()]
        assert len(grads) == len(expected[node])
        for got, want in zip(grads, expected[node], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_records_are_the_real_tensors_over_every_plan_edge():
    engine, _ = make_engine("dense", "gaussian", 0.0)
    train(engine, np.arange(6))
    rows = records(engine)
    forward = set(
        zip(rows.src[rows.phase == "forward"], rows.dst[rows.phase == "forward"], strict=True)
    )
    backward = set(
        zip(rows.dst[rows.phase == "backward"], rows.src[rows.phase == "backward"], strict=True)
    )
    assert forward == backward == set(engine.plan.edges)
    assert set(rows.nbytes) == {6 * LATENT * 4}
    assert len(rows) == 2 * len(engine.plan.edges)


def test_header_bytes_are_added_to_each_message():
    engine, _ = make_engine("dijkstra", "none", 0.0, header=40)
    train(engine, np.arange(5))
    assert set(records(engine).nbytes) == {5 * LATENT * 4 + 40}


def test_evaluation_sends_only_forward_eval_latents():
    engine, transport = make_engine("dense", "gaussian", 0.0)
    log = engine.transport.log
    total = None
    for number, start in enumerate(range(0, 8, 5)):
        index = np.arange(start, min(start + 5, 8))
        log.begin("eval", 0, number, len(index))
        result = engine.evaluate_batch(index)
        log.end()
        if total is None:
            total = result
        else:
            total.add(result)
    assert set(records(engine).phase) == {"eval"}
    assert total.samples == 8
    assert 0 <= total.metric_sums["correct"] <= 8
    assert set(total.rate_sums) == {node for node, _ in engine.plan.edges}
    assert transport.pending() == 0


def test_same_seed_same_training():
    losses = []
    for _ in range(2):
        engine, _ = make_engine("dense", "gaussian", 0.1)
        losses.append([train(engine, np.arange(i, i + 4), i) for i in range(4)])
    assert losses[0] == losses[1]
    other, _ = make_engine("dense", "gaussian", 0.1, seed=4)
    assert [train(other, np.arange(i, i + 4), i) for i in range(4)] != losses[0]
