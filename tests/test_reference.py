"""The vectorised reference computes what the monolithic reference and the executors compute."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from innet.events import step_plan
from innet.executors.batched import BatchedExecutor
from innet.modules import ModuleSpec, NodeModule
from innet.plans import build_plan
from innet.records import ExchangeLog
from innet.reference import VectorisedReference, monolithic_objective
from innet.scenario import find_topology
from innet.topology.load import load_topology
from innet.transport import InProcessTransport, RecordingTransport

N_TRAIN, VIEW, LATENT, SEED = 24, 3, 4, 11


def _setup(routing: str, gate: str, aggregator: str):
    """mesh14's plan, one small module per node, random views and labels (3 classes)."""
    topology = load_topology(find_topology("mesh14"))
    plan = build_plan(topology, routing, message_bits=1e4).active(topology.sensors)
    generator = torch.Generator().manual_seed(5)
    views = {
        sensor: (torch.randn(N_TRAIN, VIEW, generator=generator), torch.randn(2, VIEW))
        for sensor in topology.sensors
        if sensor in plan.forward_order()
    }
    labels = torch.randint(0, 3, (N_TRAIN,), generator=generator)
    specs = {
        node: ModuleSpec(
            node=node, is_fusion=node == plan.fusion, view_dim=VIEW if node in views else None,
            n_received=len(plan.children(node)), latent_dim=LATENT, hidden=6,
            aggregator=aggregator, gate_kind=gate, n_classes=3,
        )
        for node in plan.forward_order()
    }  # fmt: skip
    return topology, plan, specs, views, labels


CASES = [
    ("dense", "none", "sum", 0.0),
    ("dense", "gaussian", "mean", 0.1),
    ("dijkstra", "gaussian", "sum", 0.05),
    ("hop", "none", "mean", 0.0),
]


@pytest.mark.parametrize(("routing", "gate", "aggregator", "beta"), CASES)
def test_objective_and_gradients_equal_the_monolithic_reference(routing, gate, aggregator, beta):
    """Same loss, same gradient for every parameter of every node (the noise is the same)."""
    _, plan, specs, views, labels = _setup(routing, gate, aggregator)
    modules = {node: NodeModule(spec, SEED) for node, spec in specs.items()}
    model = VectorisedReference(plan=plan, specs=specs, seed=SEED, views=views, labels=labels,
                                lr=0.01, beta=beta)  # fmt: skip
    assert model.levels > 2  # several levels, several stacks: the bookkeeping is exercised
    for index in (np.arange(8), np.array([3, 17, 5, 0, 22])):  # two steps: the noise moves on
        for module in modules.values():
            module.zero_grad()
        model.optimizer.zero_grad()
        expected = monolithic_objective(modules, plan, views, labels, index, beta)
        got = model.objective(index)
        expected.backward()
        got.backward()
        assert float(got.detach()) == pytest.approx(float(expected.detach()), abs=1e-5)
        nonzero = 0
        for node, module in modules.items():
            grads = model.node_gradients(node)
            params = model.node_parameters(node)
            assert grads.keys() == dict(module.named_parameters()).keys()
            for name, parameter in module.named_parameters():
                torch.testing.assert_close(params[name], parameter.detach(), atol=0, rtol=0)
                torch.testing.assert_close(grads[name], parameter.grad, atol=1e-5, rtol=1e-5)
                nonzero += int(bool(parameter.grad.abs().sum() > 0))
        assert nonzero > len(modules)  # the gradients compared are not all zero


@pytest.mark.parametrize(("routing", "gate", "aggregator", "beta"), CASES[1:3])
def test_training_follows_the_batched_executor(routing, gate, aggregator, beta):
    """Four Adam steps: the same task losses and the same parameters as the batched executor."""
    topology, plan, specs, views, labels = _setup(routing, gate, aggregator)
    model = VectorisedReference(plan=plan, specs=specs, seed=SEED, views=views, labels=labels,
                                lr=0.05, beta=beta)  # fmt: skip
    recorder = RecordingTransport(InProcessTransport(), ExchangeLog(topology.graph.nodes))
    batched = BatchedExecutor(
        plan=plan, specs=specs, seed=SEED, transport=recorder, views=views,
        labels=(labels, labels[:2]), lr=0.05, beta=beta,
    )  # fmt: skip
    step = step_plan(plan, frozenset(), topology.sensors)
    rng = np.random.default_rng(0)
    for number in range(4):
        index = rng.choice(N_TRAIN, size=8, replace=False)
        recorder.log.begin("train", 0, number, len(index))
        expected = batched.train_step(index, step)
        recorder.log.end()
        assert model.train_step(index) == pytest.approx(expected, abs=1e-5)
    moved = 0
    for node in plan.forward_order():
        mine, theirs = model.node_parameters(node), batched.node_parameters(node)
        start = dict(NodeModule(specs[node], SEED).named_parameters())
        assert mine.keys() == theirs.keys() == start.keys()
        for name in mine:
            torch.testing.assert_close(mine[name], theirs[name], atol=1e-5, rtol=1e-5)
            moved += int(not torch.equal(mine[name], start[name].detach()))
    assert moved > 0  # training changed the parameters compared


def test_refuses_what_it_cannot_compute():
    _, plan, specs, views, labels = _setup("dense", "discrete", "sum")
    with pytest.raises(ValueError, match="gate 'discrete'"):
        VectorisedReference(plan=plan, specs=specs, seed=SEED, views=views, labels=labels, lr=0.1)
    _, plan, specs, views, labels = _setup("dense", "none", "sum")
    concat = {node: dataclasses.replace(spec, aggregator="concat") for node, spec in specs.items()}
    with pytest.raises(ValueError, match="aggregator 'concat'"):
        VectorisedReference(plan=plan, specs=concat, seed=SEED, views=views, labels=labels, lr=0.1)
