"""The pipeline's stages on their own: exchange logs, the training loop, timing, phases."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

from innet.core.events import Segment, Timeline, build_timeline
from innet.core.group import LocalGroup
from innet.core.netsim import Message, NetworkModel
from innet.core.phases import register_phase
from innet.core.plans import build_plan
from innet.core.records import ExchangeLog
from innet.core.timing import epoch_columns, time_run
from innet.core.topology.model import Topology
from innet.core.transport import InProcessTransport, RecordingTransport
from innet.families.inl.config import ResolvedVariant
from innet.families.inl.executors.per_node import PerNodeExecutor
from innet.families.inl.inputs import NodeInputs
from innet.families.inl.trainer import fit, module_specs


def chain() -> Topology:
    """s -> r -> f, 1 Mbit/s and 1 ms per link."""
    graph = nx.Graph()
    for node, role in (("f", "fusion"), ("r", "relay"), ("s", "sensor")):
        graph.add_node(node, role=role)
    graph.add_edge("s", "r", capacity=1e6, latency=1e-3)
    graph.add_edge("r", "f", capacity=1e6, latency=1e-3)
    return Topology("chain", graph)


# -- exchange logs ---------------------------------------------------------------------------


def test_identical_steps_are_kept_once_and_expand_to_every_record():
    log = ExchangeLog(["s", "r", "f"])
    for step in range(100):
        log.begin("train", step // 10, step, 8)
        log.add("backward", "r", "s", "grad", 32)  # out of canonical order on purpose
        log.add("forward", "s", "r", "latent", 32)
        log.end()
    assert len(log.blocks) == 1 and len(log) == 200
    frame = log.frame("v", 3)
    assert list(frame.phase[:2]) == ["forward", "backward"]  # canonical order
    assert frame.epoch.tolist()[-1] == 9 and frame.seed.unique().tolist() == [3]
    assert log.train_bytes_per_epoch() == {epoch: 640 for epoch in range(10)}


def test_logs_of_several_processes_merge_into_the_one_process_log():
    whole, part_a, part_b = (ExchangeLog(["s", "r", "f"]) for _ in range(3))
    for log in (whole, part_a, part_b):
        log.begin("train", 0, 0, 4)
    for log, (src, dst) in ((part_a, ("s", "r")), (part_b, ("r", "f"))):
        log.add("forward", src, dst, "latent", 16)
        whole.add("forward", src, dst, "latent", 16)
    for log in (whole, part_a, part_b):
        log.end()
    merged = ExchangeLog.merge([part_b, part_a])
    assert merged.frame("v", 0).equals(whole.frame("v", 0))


def test_an_unknown_phase_is_refused_and_a_registered_one_recorded():
    log = ExchangeLog(["a", "b"])
    log.begin("train", 0, 0, 1)
    with pytest.raises(ValueError, match="unknown phase 'dispatch'"):
        log.add("dispatch", "a", "b", "tokens", 8)
    register_phase("dispatch", training=True, flow=None)
    log.add("dispatch", "a", "b", "tokens", 8)
    log.end()
    assert log.frame("v", 0).phase.tolist() == ["dispatch"]
    assert log.train_bytes_per_epoch() == {0: 8}


# -- the network model: explicit dependencies ----------------------------------------------


def test_messages_with_explicit_dependencies_wait_for_them():
    register_phase("dispatch", training=True, flow=None)
    model = NetworkModel(chain())
    hop = 8 * 1000 / 1e6 + 1e-3  # 1000 bytes over one link
    step = [
        Message("dispatch", "s", "r", 1000, after=()),
        Message("dispatch", "r", "f", 1000, after=(0,)),
        Message("dispatch", "f", "r", 1000, after=(1,)),
    ]
    timing = model.simulate_step(step)
    assert [m.t_end for m in timing.messages] == pytest.approx([hop, 2 * hop, 3 * hop])
    with pytest.raises(ValueError, match="has no flow"):
        model.simulate_step([Message("dispatch", "s", "r", 10)])
    with pytest.raises(ValueError, match="names no other message"):
        model.simulate_step([Message("dispatch", "s", "r", 10, after=(0,))])


# -- timing a log --------------------------------------------------------------------------


def test_time_run_lays_steps_back_to_back_and_times_evaluation_apart():
    topology = chain()
    plan = build_plan(topology, "dense", 1.0)
    timeline = Timeline(segments=[Segment(0, topology, plan)])
    log = ExchangeLog(topology.graph.nodes)
    for step in range(2):
        log.begin("train", 0, step, 4)
        log.add("forward", "s", "r", "latent", 1000)
        log.add("forward", "r", "f", "latent", 1000)
        log.add("backward", "f", "r", "grad", 1000)
        log.add("backward", "r", "s", "grad", 1000)
        log.end()
    log.begin("eval", 0, 0, 4)
    log.add("eval", "s", "r", "latent", 1000)
    log.end()
    timing = time_run(log, timeline, steps_per_epoch=2)
    hop = 8 * 1000 / 1e6 + 1e-3
    assert timing.epoch_train_s == {0: pytest.approx(8 * hop)}  # 2 steps of 4 hops
    frame = log.frame("v", 0)
    first = frame.index[(frame.step == 1) & (frame.src == "s") & (frame.phase == "forward")][0]
    assert timing.t_start[first] == pytest.approx(4 * hop)  # step 1 starts when step 0 ends
    assert timing.t_end[-1] == pytest.approx(8 * hop + hop)  # eval after the epoch's training
    compute = {4: {"r": (0.5, 1.0)}}
    slower = time_run(log, timeline, steps_per_epoch=2, compute=compute)
    assert slower.epoch_train_s[0] == pytest.approx(8 * hop + 2 * (0.5 + 1.0))
    columns = epoch_columns(log, timing, [0])
    assert columns == [{"train_bytes": 8000, "train_bytes_cum": 8000,
                        "sim_time_s": timing.epoch_train_s[0],
                        "sim_time_cum_s": timing.epoch_train_s[0], "lost_messages": 0}]  # fmt: skip


# -- the training loop ---------------------------------------------------------------------


def small_inputs(n_train: int = 24, n_test: int = 10) -> NodeInputs:
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 2, (n_train + n_test,), generator=generator)
    x = torch.randn(n_train + n_test, 3, generator=generator) + labels[:, None].float()
    return NodeInputs(views={"s": (x[:n_train], x[n_train:])},
                      labels=(labels[:n_train], labels[n_train:]), n_classes=2,
                      dataset="test")  # fmt: skip


def make_fit(epochs: int = 3, events=()):
    topology = chain()
    variant = ResolvedVariant.model_validate({
        "name": "v", "routing": "dense",
        "model": {"latent_dim": 2, "hidden": 4}, "gate": {"kind": "none"},
        "training": {"epochs": epochs, "batch_size": 10, "eval_batch_size": 4, "lr": 0.05},
    })  # fmt: skip
    inputs = small_inputs()
    timeline = build_timeline(topology, "dense", 1.0, list(events), steps_per_epoch=3,
                              epochs=epochs)  # fmt: skip
    recorder = RecordingTransport(InProcessTransport(), ExchangeLog(topology.graph.nodes))
    executor = PerNodeExecutor(
        plan=timeline.segments[0].plan, specs=module_specs(timeline.plans, variant, inputs),
        seed=0, transport=recorder, views=inputs.views, labels=inputs.labels, lr=0.05,
    )  # fmt: skip
    return executor, recorder, timeline, inputs, variant


def test_fit_runs_every_step_and_evaluation_and_records_them():
    executor, recorder, timeline, inputs, variant = make_fit()
    seen = []
    result = fit(executor, recorder, timeline, inputs, variant.training, seed=0,
                 group=LocalGroup(), on_epoch=seen.append)  # fmt: skip
    assert seen == [0, 1, 2]
    assert [row["epoch"] for row in result.metrics] == [0, 1, 2]
    steps = result.log.steps
    train = [s for s in steps if s[0] == "train"]
    evals = [s for s in steps if s[0] == "eval"]
    assert [s[2] for s in train] == list(range(9))  # 24 samples in batches of 10: 3 a epoch
    assert [s[3] for s in train[:3]] == [10, 10, 4]
    assert [(s[1], s[2], s[3]) for s in evals[:3]] == [(0, 0, 4), (0, 1, 4), (0, 2, 2)]
    assert len(result.log.blocks) == 4  # full and last training batch, two eval sizes
    assert all(0 <= row["accuracy"] <= 1 and math.isfinite(row["train_loss"])
               for row in result.metrics)  # fmt: skip
    assert set(result.node_rates) == {"s", "r"}
    # the same seed gives the same training; the loop really learns on this easy task
    again = fit(*make_fit()[:4], make_fit()[4].training, seed=0, group=LocalGroup())
    assert again.metrics == result.metrics
    assert result.metrics[-1]["test_loss"] < result.metrics[0]["test_loss"]


def test_fit_loses_the_messages_of_a_link_that_fails_during_a_step():
    from innet.core.config import EventConfig

    event = EventConfig.model_validate({"at": {"epoch": 1, "step": 1}, "link_down": ["r", "f"]})
    executor, recorder, timeline, inputs, variant = make_fit(events=[event])
    result = fit(executor, recorder, timeline, inputs, variant.training, seed=0,
                 group=LocalGroup())  # fmt: skip
    frame = result.log.frame("v", 0)
    lost = frame[frame.lost]
    assert lost[["step", "src", "dst"]].values.tolist() == [[4, "r", "f"]]
    after = frame[(frame.step > 4) & (frame.phase != "eval")]
    assert after.empty  # the fusion node is cut off: nothing reaches it any more
    assert result.log.lost_per_epoch() == {0: 0, 1: 1, 2: 0}
    assert math.isfinite(result.metrics[-1]["accuracy"])  # the cut-off fusion node still predicts


# -- the run directory ---------------------------------------------------------------------


def test_report_without_figures_and_metrics_read_back_whole(tmp_path):
    from innet.app.cli import main
    from innet.families.runs import open_run

    out = tmp_path / "run"
    code = main(["--scenario", "smoke", "--seeds", "1", "--set", "training.epochs=1",
                 "--set", "report.figures=false", "--out", str(out), "--no-progress"])  # fmt: skip
    assert code == 0
    assert not (out / "figures").exists()
    assert not (out / "exchanges.csv").exists()  # opt-in: --csv
    assert "![" not in (out / "report.md").read_text()
    run, _ = open_run(out)
    assert "lost_messages" in run.metrics and run.metrics["lost_messages"].dtype == np.int64
    steps = pd.read_csv(out / "steps.csv")
    assert list(steps.columns) == ["variant", "seed", "kind", "epoch", "step", "batch"]
    exchanges = run.exchanges.assign(kind=np.where(run.exchanges.phase == "eval", "eval", "train"))
    recorded = exchanges.groupby(["variant", "seed", "kind", "epoch", "step"]).size()
    assert len(steps) == len(recorded)  # every step of smoke sends something
    assert set(steps.loc[steps.kind == "train", "batch"]) == {32, 240 - 7 * 32}


@pytest.mark.slow
def test_the_smoke_scenario_learns(tmp_path):
    """Chance is 1/3: a training regression shows here, in seconds."""
    import json

    from innet.app.cli import main

    assert main(["--scenario", "smoke", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    accuracy = {name: v["accuracy_mean"] for name, v in summary["variants"].items()}
    assert accuracy["dense"] >= 0.8, accuracy
    assert min(accuracy.values()) >= 0.5, accuracy


def test_a_variant_sets_the_hop_cost_of_its_tree():
    from innet.app.scenario import find_scenario, load_scenario
    from innet.core.errors import ConfigError
    from innet.core.topology import load_topology
    from innet.families.inl.trainer import variant_timeline

    loaded = load_scenario(
        find_scenario("dense_vs_dijkstra"), ["variants.dijkstra_rate.hop_cost_s=1s"]
    )
    variants = {variant.name: variant for variant in loaded.variants}
    assert variants["dijkstra_rate"].hop_cost_s == 1.0 and variants["dijkstra"].hop_cost_s == 0
    topology = load_topology(loaded.topology_path)
    plans = {
        name: variant_timeline(loaded.scenario, variant, topology, 1437).segments[0].plan
        for name, variant in variants.items()
    }
    bits = variants["dijkstra"].forward_message_bits()
    tree = build_plan(topology, "dijkstra", bits, hop_cost_s=1.0).active(topology.sensors)
    assert plans["dijkstra_rate"] == tree
    assert plans["dijkstra_rate"].edges != plans["dijkstra"].edges  # mesh14: a shallower tree
    with pytest.raises(ConfigError, match="applies to the dijkstra routing"):
        load_scenario(find_scenario("smoke"), ["variants.dense.hop_cost_s=1ms"])
