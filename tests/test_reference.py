"""The vectorised reference computes what the monolithic reference and the executors compute."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_batched import N_TRAIN, _setup

from innet.core.events import step_plan
from innet.core.records import ExchangeLog
from innet.core.transport import InProcessTransport, RecordingTransport
from innet.families.inl.executors.batched import BatchedExecutor
from innet.families.inl.modules import NodeModule
from innet.testing.reference import VectorisedReference, monolithic_objective

SEED = 11


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
    model = VectorisedReference(plan=plan, specs=specs, seed=SEED, views=views, labels=labels[0],
                                lr=0.01, beta=beta)  # fmt: skip
    assert model.levels > 2  # several levels, several stacks: the bookkeeping is exercised
    for index in (np.arange(8), np.array([3, 17, 5, 0, 22])):  # two steps: the noise moves on
        for module in modules.values():
            module.zero_grad()
        model.optimizer.zero_grad()
        expected = monolithic_objective(modules, plan, views, labels[0], index, beta)
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
    model = VectorisedReference(plan=plan, specs=specs, seed=SEED, views=views, labels=labels[0],
                                lr=0.05, beta=beta)  # fmt: skip
    recorder = RecordingTransport(InProcessTransport(), ExchangeLog(topology.graph.nodes))
    batched = BatchedExecutor(
        plan=plan, specs=specs, seed=SEED, transport=recorder, views=views,
        labels=labels, lr=0.05, beta=beta,
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
    _, plan, specs, views, (labels, _) = _setup("dense", "discrete", "sum")
    with pytest.raises(ValueError, match="gate 'discrete'"):
        VectorisedReference(plan=plan, specs=specs, seed=SEED, views=views, labels=labels, lr=0.1)
    _, plan, specs, views, (labels, _) = _setup("dense", "none", "sum")
    concat = {node: dataclasses.replace(spec, aggregator="concat") for node, spec in specs.items()}
    with pytest.raises(ValueError, match="aggregator 'concat'"):
        VectorisedReference(plan=plan, specs=concat, seed=SEED, views=views, labels=labels, lr=0.1)
