"""The batched executor computes what the per-node executor computes, and records the same."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from innet.app.scenario import find_scenario, find_topology
from innet.core.events import step_plan
from innet.core.plans import build_plan
from innet.core.records import ExchangeLog
from innet.core.topology.load import load_topology
from innet.core.transport import InProcessTransport, RecordingTransport
from innet.core.yamlio import read_yaml
from innet.families.inl.executors.batched import BatchedExecutor, batched_unsupported
from innet.families.inl.executors.per_node import PerNodeExecutor
from innet.families.inl.executors.stacked_optim import make_stacked_optimizer
from innet.families.inl.modules import ModuleSpec
from innet.testing.reference import monolithic_objective

N_TRAIN, N_TEST, VIEW, LATENT = 24, 10, 3, 4


def _setup(routing: str, gate: str, aggregator: str, seed: int = 5):
    topology = load_topology(find_topology("mesh14"))
    plan = build_plan(topology, routing, message_bits=1e4).active(topology.sensors)
    generator = torch.Generator().manual_seed(seed)
    views = {
        sensor: (torch.randn(N_TRAIN, VIEW, generator=generator),
                 torch.randn(N_TEST, VIEW, generator=generator))
        for sensor in topology.sensors
        if sensor in plan.forward_order()
    }  # fmt: skip
    labels = (
        torch.randint(0, 3, (N_TRAIN,), generator=generator),
        torch.randint(0, 3, (N_TEST,), generator=generator),
    )
    specs = {
        node: ModuleSpec(
            node=node, is_fusion=node == plan.fusion,
            view_dim=VIEW if node in views else None,
            n_received=len(plan.children(node)), latent_dim=LATENT, hidden=6,
            aggregator=aggregator, gate_kind=gate, n_classes=3,
        )
        for node in plan.forward_order()
    }  # fmt: skip
    return topology, plan, specs, views, labels


def _pair(routing, gate, aggregator, optimizer, beta, **kwargs):
    topology, plan, specs, views, labels = _setup(routing, gate, aggregator, **kwargs)
    engines = []
    for kind in (PerNodeExecutor, BatchedExecutor):
        recorder = RecordingTransport(InProcessTransport(), ExchangeLog(topology.graph.nodes))
        engines.append(
            kind(plan=plan, specs=specs, seed=11, transport=recorder, views=views,
                 labels=labels, lr=0.05, optimizer=optimizer, beta=beta, bracket_samples=6)
        )  # fmt: skip
    return topology, plan, engines


def _parameters(engine, node):
    if isinstance(engine, BatchedExecutor):
        return engine.node_parameters(node)
    return dict(engine.modules[node].named_parameters())


@pytest.mark.parametrize(
    ("routing", "gate", "aggregator", "optimizer", "beta"),
    [
        ("dense", "none", "sum", "adam", 0.0),
        ("dijkstra", "gaussian", "sum", "adam", 0.05),
        ("hop", "gaussian", "mean", "sgd", 0.0),
        ("dense", "gaussian", "mean", "sgd", 0.1),
    ],
)
def test_batched_equals_per_node(routing, gate, aggregator, optimizer, beta):
    topology, plan, (per_node, batched) = _pair(routing, gate, aggregator, optimizer, beta)
    rng = np.random.default_rng(0)
    # a failed link on some steps: nodes cut off skip their updates (per-row step counts)
    sensor_link = next(edge for edge in plan.edges if edge[0] in topology.sensors)
    failed = frozenset({frozenset(sensor_link)})
    for step in range(6):
        index = rng.choice(N_TRAIN, size=8, replace=False)
        this = step_plan(plan, failed if step in (2, 3) else frozenset(), topology.sensors)
        losses = []
        for engine in (per_node, batched):
            engine.transport.drop(this.lost)
            engine.transport.log.begin("train", 0, step, len(index))
            losses.append(engine.train_step(index, this))
            engine.transport.log.end()
        assert losses[0] == pytest.approx(losses[1], abs=1e-5)
    for node in plan.forward_order():
        mine, theirs = _parameters(per_node, node), _parameters(batched, node)
        assert mine.keys() == theirs.keys()
        for name in mine:
            torch.testing.assert_close(theirs[name], mine[name], atol=1e-5, rtol=1e-5)
    sums = []
    for engine in (per_node, batched):
        engine.transport.drop(frozenset())
        engine.transport.log.begin("eval", 0, 0, N_TEST)
        sums.append(engine.evaluate_batch(np.arange(N_TEST)))
        engine.transport.log.end()
    assert sums[0].metric_sums == pytest.approx(sums[1].metric_sums, abs=1e-4)
    assert sums[0].rate_sums == pytest.approx(sums[1].rate_sums, abs=1e-4)
    for node, stats in sums[0].rate_stats.items():
        mine, theirs = stats.estimate(), sums[1].rate_stats[node].estimate()
        for field in ("rate_bits", "vib_kl_bits", "bracket_lower_bits", "bracket_upper_bits"):
            assert getattr(mine, field) == pytest.approx(getattr(theirs, field), abs=1e-4)
    frames = [engine.transport.log.frame("v", 0) for engine in (per_node, batched)]
    assert frames[0].equals(frames[1])
    assert frames[0]["lost"].any()  # the failure did lose messages
    assert per_node.flops() == batched.flops()


@pytest.mark.parametrize(("gate", "beta"), [("none", 0.0), ("gaussian", 0.05)])
def test_batched_gradients_equal_one_monolithic_model(gate, beta):
    """The batched step's gradients are the same modules' gradients trained as one model.

    With the Gaussian gate both draw the same noise (each node's generator,
    first draw) and beta weighs every sender's rate (no link fails here).
    """
    topology, plan, (per_node, batched) = _pair("dense", gate, "sum", "sgd", beta)
    index = np.arange(8)
    monolithic_objective(per_node.modules, plan, per_node.views, per_node.labels[0], index,
                         beta).backward()  # fmt: skip
    expected = {
        node: {name: p.grad.clone() for name, p in module.named_parameters()}
        for node, module in per_node.modules.items()
    }
    schedule = batched._schedule(step_plan(plan, frozenset(), topology.sensors))
    logits, outs, inboxes, weights = batched._forward(schedule, index, 0, training=True)
    loss = batched.task.loss(logits, batched.labels[0][index])
    batched._backward(schedule, len(index), loss, outs, inboxes, weights)
    for node, grads in expected.items():
        got = {}
        for stack in batched.stacks[node].values():
            got.update(stack.parameters_of(node, grads=True))
        assert got.keys() == grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(got[name], grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_stacked_optimizer_follows_torch_per_row(name):
    """Rows that skip steps keep their own step counts, exactly as one optimiser per node."""
    torch.manual_seed(0)
    start = torch.randn(4, 3, 2)
    stacked = torch.nn.Parameter(start.clone())
    rows = [torch.nn.Parameter(start[i].clone()) for i in range(4)]
    reference = {"adam": lambda p: torch.optim.Adam(p, lr=0.01),
                 "sgd": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9)}[name]  # fmt: skip
    optimizers = [reference([row]) for row in rows]
    optimizer = make_stacked_optimizer(name, [stacked], rows=4, lr=0.01)
    for _ in range(50):
        grad = torch.randn(4, 3, 2)
        mask = torch.rand(4) > 0.4
        stacked.grad = grad.clone()
        optimizer.step(mask)
        for i in range(4):
            if mask[i]:
                rows[i].grad = grad[i].clone()
                optimizers[i].step()
    for i in range(4):
        torch.testing.assert_close(stacked.detach()[i], rows[i].detach(), atol=1e-6, rtol=0)


def test_unsupported_configurations_are_named():
    _, plan, specs, _, _ = _setup("dense", "discrete", "sum")
    recorder = RecordingTransport(InProcessTransport(), ExchangeLog(plan.forward_order()))
    reason = batched_unsupported(specs, optimizer="adam", wire_forward="float32",
                                 wire_backward="float32", transport=recorder)  # fmt: skip
    assert reason is not None and "discrete" in reason
    _, plan, specs, _, _ = _setup("dense", "gaussian", "sum")
    assert batched_unsupported(specs, optimizer="adam", wire_forward="float32",
                               wire_backward="float32", transport=recorder) is None  # fmt: skip
    reason = batched_unsupported(specs, optimizer="adam", wire_forward="int8",
                                 wire_backward="float32", transport=recorder)  # fmt: skip
    assert reason is not None and "int8" in reason


def _only(name: str, *variants: str) -> list[str]:
    """``--set`` options keeping only these variants of a shipped scenario, as it defines them."""
    raw, _ = read_yaml(find_scenario(name))
    kept = {variant: raw["variants"][variant] for variant in variants}
    return ["--set", f"variants={json.dumps(kept)}", "--set", "comparisons=[]"]


# Every shipped INL scenario (finite_bank and the moe_routing ones are other families, with no
# executor to choose), trimmed to seconds: the gate set to `none` (exact arithmetic up to float
# rounding) and as shipped. No figures: they cost more than the training.
SHORT = ["--seeds", "1", "--no-progress", "--set", "training.epochs=2",
         "--set", "report.figures=false"]  # fmt: skip
SCENARIOS = {
    "smoke": [],
    "dense_vs_dijkstra": ["--set", "data.test_fraction=0.5"],
    "stragglers": [],
    "link_failure": ["--set", "events=[{at: {epoch: 1, step: 2}, link_down: busiest}]"],
    "scale_1000": ["--set", "data.n_samples=320"],
    # one variant of the three and one step (per node, dense on 10,000 nodes alone takes ~15 s)
    "scale_10k": ["--set", "data.n_samples=40", "--set", "data.test_fraction=0.5",
                  "--set", "training.epochs=1", *_only("scale_10k", "dijkstra_rate")],
    # scale_100k is left out: ~50 s a run however short (generating the topology, writing
    # and reading back topology.json, the plans); training is a small part of it
    "dinl_protocol": ["--set", "data.test_fraction=0.8"],
    "beta_sweep": ["--set", "data.test_fraction=0.8", "--sweep", "gate.beta=0,0.01"],
    # the two variants batched runs (no gate, Gaussian) and three it refuses (int8 wire,
    # discrete gate, both: auto runs those per node)
    "rate_costs": ["--set", "data.test_fraction=0.8", *_only(
        "rate_costs", "dijkstra", "gauss", "int8", "disc_m4_float32", "disc_m16_b1e-1_entropy"
    )],
}  # fmt: skip
# The generated topology with its fusion node named: the node of highest closeness that the
# shipped file's rule picks, so the same network without 10,000 breadth-first searches a run.
FUSION = {"scale_10k": ("random_geometric10000", "n6222")}
# Runs with variants the batched executor refuses (a discrete gate, a wire format other than
# float32): there `auto` runs batched where it can and per node elsewhere.
MIXED = {("dinl_protocol", "as shipped"), ("rate_costs", "none"), ("rate_costs", "as shipped")}


def _topology(name: str, folder: Path) -> list[str]:
    """``--topology`` of the scenario's shipped topology with its fusion node named, if listed."""
    if name not in FUSION:
        return []
    topology, fusion = FUSION[name]
    raw, _ = read_yaml(find_topology(topology))
    raw["generator"]["fusion"] = {"id": fusion}
    path = folder / f"{topology}.yaml"
    path.write_text(json.dumps(raw))  # JSON is YAML
    return ["--topology", str(path)]


def _read_run(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, set[str]]:
    """A run directory's metrics, exchange records and executors (every sweep point's)."""
    runs = sorted((out / "points").iterdir()) if (out / "points").is_dir() else [out]
    return (
        pd.concat([pd.read_csv(run / "metrics.csv") for run in runs], ignore_index=True),
        pd.concat([pd.read_parquet(run / "exchanges.parquet") for run in runs], ignore_index=True),
        {name for run in runs for name in pd.read_csv(run / "executors.csv")["executor"]},
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "gate"),
    [(name, gate) for name in sorted(SCENARIOS) for gate in ("none", "as shipped")
     # the slowest two: `none` covers them
     if (name, gate) not in {("scale_1000", "as shipped"), ("scale_10k", "as shipped")}],
)  # fmt: skip
def test_batched_runs_equal_per_node_runs(tmp_path, name, gate):
    """Losses, accuracies and every exchange record agree to 1e-5 (float rounding)."""
    from innet.app.cli import main

    candidate = "auto" if (name, gate) in MIXED else "batched"
    topology = _topology(name, tmp_path)
    frames = {}
    for executor in ("per_node", candidate):
        out = tmp_path / executor
        gate_set = ["--set", "gate.kind=none"] if gate == "none" else []
        assert main(["--scenario", name, *topology, *SHORT, *SCENARIOS[name], *gate_set,
                     "--set", f"training.executor={executor}", "--out", str(out)]) == 0  # fmt: skip
        frames[executor] = _read_run(out)
    (metrics, exchanges, ran), (batched_metrics, batched_exchanges, batched_ran) = frames.values()
    assert ran == {"per_node"}
    # `auto` really ran batched, and per node the variants batched refuses
    assert batched_ran == ({"batched", "per_node"} if candidate == "auto" else {"batched"})
    assert len(metrics) and len(exchanges)
    pd.testing.assert_frame_equal(exchanges, batched_exchanges)
    columns = ["train_loss", "test_loss", "accuracy", "train_bytes", "sim_time_s"]
    pd.testing.assert_frame_equal(metrics[columns], batched_metrics[columns], rtol=1e-5, atol=1e-5)


def test_batched_refuses_what_it_cannot_run_with_one_line(tmp_path, capsys):
    from innet.app.cli import main

    code = main(["--scenario", "smoke", *SHORT, "--set", "gate.kind=discrete",
                 "--set", "training.executor=batched", "--out", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "training.executor=batched cannot run gate 'discrete'" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_nodes_spread_over_torch_distributed_ranks_run_batched():
    """``auto`` picks the batched executor under torchrun too: it sends bundles between ranks."""
    from innet.distributed import DistributedTransport

    _, plan, specs, _, _ = _setup("dense", "gaussian", "sum")
    placement = {node: index % 2 for index, node in enumerate(plan.forward_order())}
    spread = RecordingTransport(DistributedTransport(placement, 0, 2, "cpu"),
                                ExchangeLog(plan.forward_order()))  # fmt: skip
    assert not all(spread.owns(node) for node in specs)
    assert batched_unsupported(specs, optimizer="adam", wire_forward="float32",
                               wire_backward="float32", transport=spread) is None  # fmt: skip

    class Elsewhere(InProcessTransport):
        def owns(self, node: str) -> bool:
            return node == plan.fusion

    reason = batched_unsupported(
        specs, optimizer="adam", wire_forward="float32", wire_backward="float32",
        transport=RecordingTransport(Elsewhere(), ExchangeLog(plan.forward_order())),
    )  # fmt: skip
    assert reason is not None and "torch.distributed" in reason
