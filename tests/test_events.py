"""Events during training: plan repair, lost messages, cut-off sensors, and their records."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

from innet.app.cli import main
from innet.core.config import EventConfig
from innet.core.events import build_timeline, step_plan
from innet.core.plans import build_plan
from innet.core.records import ExchangeLog
from innet.core.topology.model import Topology
from innet.core.transport import InProcessTransport, RecordingTransport
from innet.core.yamlio import FieldError
from innet.families.inl.executors.per_node import PerNodeExecutor
from innet.families.inl.modules import ModuleSpec

BITS = 8 * 64 * 16 * 4


def mesh() -> Topology:
    """f <- r1 <- {s1, s2}; f <- r2 <- s3; lateral r1-r2; s2-r2 backup; s4 only via s3."""
    graph = nx.Graph()
    roles = {"f": "fusion", "r1": "relay", "r2": "relay"}
    for node in ["f", "r1", "r2", "s1", "s2", "s3", "s4"]:
        graph.add_node(node, role=roles.get(node, "sensor"), label=node)
    links = [
        ("r1", "f", 1e9), ("r2", "f", 1e7), ("r1", "r2", 1e8), ("s1", "r1", 1e8),
        ("s2", "r1", 1e8), ("s2", "r2", 1e6), ("s3", "r2", 1e8), ("s4", "s3", 1e8),
    ]  # fmt: skip
    for u, v, capacity in links:
        graph.add_edge(u, v, capacity=capacity, latency=1e-3)
    return Topology("mesh", graph)


def event(**fields) -> EventConfig:
    return EventConfig(**fields)


def timeline(events, routing="dijkstra", epochs=4, steps=10):
    return build_timeline(mesh(), routing, BITS, events, steps_per_epoch=steps, epochs=epochs)


def test_no_events_one_segment_with_the_usual_plan():
    line = timeline([])
    topology = mesh()
    assert len(line.segments) == 1 and not line.failures and not line.changes
    assert line.segments[0].plan == build_plan(topology, "dijkstra", BITS).active(topology.sensors)


def test_link_down_repairs_the_tree_and_loses_the_step_messages():
    line = timeline([event(at={"epoch": 1, "step": 3}, link_down=["r1", "f"])])
    assert [segment.first_step for segment in line.segments] == [0, 14]
    assert line.failures == {13: frozenset({frozenset({"r1", "f"})})}
    repaired = line.segments[1].plan
    without = mesh()
    without.graph.remove_edge("r1", "f")
    assert repaired == build_plan(without, "dijkstra", BITS).active(without.sensors)
    assert ("r1", "f") not in repaired.edges
    (change,) = line.changes
    assert change.step == 13 and ("r1", "f") in change.removed and change.added
    assert change.cut_off == []


def test_link_up_restores_the_original_plan_without_losses():
    line = timeline(
        [
            event(at={"epoch": 1}, link_down=["r1", "f"]),
            event(at={"epoch": 2}, link_up=["f", "r1"]),
        ]
    )
    assert line.segments[0].plan == line.segments[2].plan
    assert set(line.failures) == {10}


def test_a_sensor_behind_a_failed_link_is_cut_off():
    line = timeline([event(at={"epoch": 0, "step": 5}, link_down=["s4", "s3"])])
    assert line.changes[0].cut_off == ["s4"]
    assert "s4" not in line.segments[1].plan.forward_order()


def test_node_down_fails_all_its_links_and_node_up_brings_it_back():
    line = timeline([event(at={"epoch": 1}, node_down="r2"), event(at={"epoch": 3}, node_up="r2")])
    failed = line.failures[10]
    assert all("r2" in link for link in failed)
    middle = line.segments[1].plan
    assert "r2" not in middle.forward_order()
    assert line.changes[0].cut_off == ["s3", "s4"]  # s3 and s4 reach f only through r2
    assert line.segments[2].plan == line.segments[0].plan


def test_slowing_a_link_moves_the_tree_without_losing_anything():
    before = timeline([]).segments[0].plan
    assert ("s2", "r1") in before.edges
    line = timeline([event(at={"epoch": 1}, link=["s2", "r1"], capacity="10kbps")])
    assert not line.failures
    assert ("s2", "r2") in line.segments[1].plan.edges


def test_busiest_link_is_the_one_with_most_transmission_time():
    plan = timeline([]).segments[0].plan
    line = timeline([event(at={"epoch": 1}, link_down="busiest")])
    topology = mesh()
    slowest = min(topology.graph.edges[e]["capacity"] for e in plan.edges)
    (lost,) = line.changes[0].lost_links
    assert topology.graph.edges[tuple(lost)]["capacity"] == slowest
    assert "busiest" in line.changes[0].event


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"at": {"epoch": 9}, "link_down": ["r1", "f"]}, ("events", 0, "at", "epoch")),
        ({"at": {"epoch": 0, "step": 10}, "link_down": ["r1", "f"]}, ("events", 0, "at", "step")),
        ({"at": {"epoch": 0}, "link_down": ["s1", "f"]}, ("events", 0, "link_down")),
        ({"at": {"epoch": 0}, "node_down": "f"}, ("events", 0, "node_down")),
        ({"at": {"epoch": 0}, "node_up": "zz"}, ("events", 0, "node_up")),
    ],
)
def test_bad_events_name_their_field(fields, where):
    with pytest.raises(FieldError) as caught:
        timeline([event(**fields)])
    assert caught.value.loc == where


@pytest.mark.parametrize(
    "fields",
    [
        {"at": {"epoch": 0}},
        {"at": {"epoch": 0}, "link_down": ["a", "b"], "node_down": "a"},
        {"at": {"epoch": 0}, "link": ["a", "b"]},
        {"at": {"epoch": 0}, "node_down": "a", "capacity": "1Mbps"},
    ],
)
def test_an_event_has_exactly_one_action(fields):
    with pytest.raises(ValueError):
        EventConfig(**fields)


def make_executor(plan, topology):
    sensors = topology.sensors
    views = {s: (torch.randn(8, 2), torch.randn(4, 2)) for s in sensors}
    labels = (torch.randint(0, 2, (8,)), torch.zeros(4, dtype=torch.long))
    specs = {
        node: ModuleSpec(
            node=node,
            is_fusion=node == "f",
            view_dim=2 if node in sensors else None,
            n_received=len(plan.children(node)),
            latent_dim=3,
            hidden=4,
            aggregator="sum",
            gate_kind="none",
            n_classes=2,
        )  # fmt: skip
        for node in plan.forward_order()
    }
    transport = InProcessTransport()
    recorder = RecordingTransport(transport, ExchangeLog(topology.graph.nodes))
    executor = PerNodeExecutor(plan=plan, specs=specs, seed=0, transport=recorder, views=views,
                               labels=labels, lr=0.1, optimizer="sgd")  # fmt: skip
    return executor, recorder, transport


def test_executor_loses_messages_over_failed_links_and_keeps_the_rest_consistent():
    topology = mesh()
    plan = build_plan(topology, "dense", BITS).active(topology.sensors)
    executor, recorder, transport = make_executor(plan, topology)
    before = {name: [p.clone() for p in m.parameters()] for name, m in executor.modules.items()}
    failed = frozenset({frozenset({"s4", "s3"}), frozenset({"r1", "f"})})
    step = step_plan(plan, failed, topology.sensors)
    recorder.drop(step.lost)
    recorder.log.begin("train", 0, 0, 8)
    loss = executor.train_step(np.arange(8), step)
    recorder.log.end()
    assert loss is not None and transport.pending() == 0
    rows = recorder.log.frame("dense", 0)
    lost = rows[rows["lost"]]
    assert set(zip(lost["src"], lost["dst"], strict=True)) == {("s4", "s3"), ("r1", "f")}
    assert (lost["phase"] == "forward").all() and (lost["nbytes"] == 8 * 3 * 4).all()
    sent = rows[(rows["phase"] == "forward") & ~rows["lost"]]
    delivered = set(zip(sent["src"], sent["dst"], strict=True))
    back = rows[rows["phase"] == "backward"]
    grads = set(zip(back["dst"], back["src"], strict=True))
    assert grads == delivered  # a gradient comes back exactly over each delivered latent
    # s4's only message was lost, and s1 reaches f only through r1, whose message was
    # lost: neither learns this step; s3 reaches f through r2 and does
    for node in ("s4", "s1"):
        for old, new in zip(before[node], executor.modules[node].parameters(), strict=True):
            assert torch.equal(old, new)
    assert any(
        not torch.equal(old, new)
        for old, new in zip(before["s3"], executor.modules["s3"].parameters(), strict=True)
    )


def test_link_failure_run_records_events_losses_and_repair(tmp_path):
    out = tmp_path / "run"
    code = main(
        ["--scenario", "smoke", "--out", str(out), "--no-progress", "--seeds", "1",
         "--set", "training.epochs=2", "--set", "events=[{at: {epoch: 1}, link_down: [s, r]}]"]
    )  # fmt: skip
    assert code == 0
    events = json.loads((out / "events.json").read_text())
    assert set(events) == {"dense", "dijkstra", "dijkstra_rate"}
    assert events["dijkstra"][0]["lost_links"] == [["r", "s"]]
    exchanges = pd.read_parquet(out / "exchanges.parquet")
    metrics = pd.read_csv(out / "metrics.csv")
    lost = exchanges[exchanges["lost"]]
    assert set(zip(lost["src"], lost["dst"], strict=True)) == {("s", "r")}
    assert lost["t_start"].isna().all()
    assert metrics.groupby("variant")["lost_messages"].sum().to_dict() == {
        "dense": 1, "dijkstra": 1, "dijkstra_rate": 1,
    }  # fmt: skip
    event_step = lost["step"].iloc[0]
    after = exchanges[(exchanges["step"] > event_step) & (exchanges["phase"] != "eval")]
    assert not ((after["src"] == "s") & (after["dst"] == "r")).any()
    assert ((after["src"] == "s") & (after["dst"] == "f")).any()
    report = (out / "report.md").read_text()
    events_part = report[report.index("## Events") :]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in events_part.splitlines()
        if line.startswith("| ")
    ]
    assert any(row[0] == "dijkstra" and row[1].startswith("1/") for row in rows), rows
    assert "link_down r-s" in events_part
