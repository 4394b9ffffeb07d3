"""Tests for the ``plan`` command: active links, predicted exchange reduction and step time."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import networkx as nx
import pandas as pd
import pytest

from innet.app.cli import main
from innet.core.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
MESH14 = ROOT / "topologies" / "mesh14.yaml"
LATENT_DIM = 16  # dense_vs_dijkstra: float32 latents of 16 values, float32 gradients


def plan_json(capsys: pytest.CaptureFixture, *args: str, topology: Path = MESH14) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an import reports the links it merges
        assert main(["plan", str(topology), "--json", "--predict", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_fields_on_mesh14(capsys: pytest.CaptureFixture) -> None:
    document = plan_json(capsys, "--routing", "dijkstra", "--message-bits", "32768")
    assert document["links"] == 25
    assert document["active_links"] == len(document["active_edges"]) == 13
    assert document["dense_active_links"] == 25
    assert document["exchange_reduction"] == pytest.approx(1 - 13 / 25)
    assert document["silent_edges"] == []
    assert document["messages_per_step"] == 26
    assert document["message_bytes"] == 4096
    assert document["step_time_s"] > 0
    dense = plan_json(capsys, "--routing", "dense", "--message-bits", "32768")
    assert dense["exchange_reduction"] == 0.0
    assert dense["step_time_s"] > document["step_time_s"]


def test_hop_cost_moves_towards_the_hop_tree(capsys: pytest.CaptureFixture) -> None:
    zero = plan_json(capsys, "--message-bits", "32768", "--hop-cost", "0")
    assert zero["edges"] == plan_json(capsys, "--message-bits", "32768")["edges"]
    assert zero["hop_cost_s"] == 0.0
    huge = plan_json(capsys, "--message-bits", "32768", "--hop-cost", "1000s")
    assert huge["hop_cost_s"] == 1000.0
    hop = plan_json(capsys, "--message-bits", "32768", "--routing", "hop")
    # Every node sends to a neighbour one hop closer to f, as in the BFS tree. Where a node has
    # several (r5, s6, s8), the BFS tree takes the lowest id, the weighted tree the faster link.
    distance = nx.single_source_shortest_path_length(load_topology(MESH14).graph, "f")
    assert all(distance[parent] == distance[child] - 1 for child, parent in huge["edges"])
    difference = {tuple(edge) for edge in huge["edges"]} ^ {tuple(edge) for edge in hop["edges"]}
    assert {child for child, _ in difference} == {"r5", "s6", "s8"}
    # The BFS tree leaves relay r4 without a sensor upstream: its link is silent.
    assert huge["silent_edges"] == [["r4", "r1"]]
    assert huge["active_links"] == 12
    assert huge["exchange_reduction"] == pytest.approx(1 - 12 / 25)


def test_json_without_predict_is_the_plan_alone(capsys: pytest.CaptureFixture) -> None:
    assert main(["plan", str(MESH14), "--json", "--hop-cost", "1s"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"routing", "fusion", "edges"}
    assert document["edges"] == plan_json(capsys, "--hop-cost", "1s")["edges"]


def test_text_output_names_active_and_silent_links(capsys: pytest.CaptureFixture) -> None:
    assert main(["plan", str(MESH14), "--hop-cost", "1s"]) == 0
    out = capsys.readouterr().out
    assert "hop cost 1 s" in out
    assert (
        "13 of 25 links used by the plan; 12 of them carry traffic in training, 1 silent: "
        "r4 has nothing to forward (no sensor upstream)" in out
    )
    assert "predicted exchange reduction against dense: 52.0%" in out
    assert "predicted simulated time per training step:" in out
    assert "r4 -> r1  (silent)" in out


def test_text_output_names_nodes_by_label(capsys: pytest.CaptureFixture) -> None:
    """GEANT's nodes are numbered in the file and labelled by country: the text uses labels."""
    geant = MESH14.parent / "geant.yaml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the import reports the links it merges
        assert main(["plan", str(geant)]) == 0
        topology = load_topology(geant)
    out = capsys.readouterr().out
    fusion = topology.fusion
    assert f"towards {topology.label(fusion)} (node {fusion})" in out
    document = plan_json(capsys, "--routing", "dijkstra", topology=geant)
    for sender, receiver in document["edges"]:
        line = f"  {topology.label(sender)} -> {topology.label(receiver)}"
        assert line in out
    silent = {topology.label(sender) for sender, _ in document["silent_edges"]}
    assert f"{len(document['silent_edges'])} silent: " in out
    assert any(name in out.split("silent: ")[1].split("\n")[0] for name in silent)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hop-cost=-1ms"], "--hop-cost must be a duration >= 0"),
        (["--hop-cost", "soon"], "--hop-cost"),
        (["--routing", "hop", "--hop-cost", "1ms"], "dijkstra routing only"),
    ],
)
def test_bad_hop_cost(capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    assert main(["plan", str(MESH14), *args]) == 2
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "dense_vs_dijkstra"
    argv = ["--scenario", "dense_vs_dijkstra", "--seeds", "1", "--set", "training.epochs=1"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["dense", "dijkstra"])
def test_active_links_are_the_links_a_run_uses(
    short_run: Path, capsys: pytest.CaptureFixture, variant: str
) -> None:
    exchanges = pd.read_parquet(short_run / "exchanges.parquet")
    training = exchanges.phase.isin(["forward", "backward"])
    train = exchanges[(exchanges.variant == variant) & training]
    used = {frozenset(pair) for pair in zip(train.src, train.dst, strict=True)}
    document = plan_json(capsys, "--routing", variant)
    assert document["active_links"] == len(used)
    assert {frozenset(edge) for edge in document["active_edges"]} == used


@pytest.mark.slow
def test_predicted_step_time_is_the_runs_simulated_time(
    short_run: Path, capsys: pytest.CaptureFixture
) -> None:
    # mesh14 gives no node a `compute` FLOP/s (nor a default), so with `network.compute` on
    # the run's time is network time only, which is what the plan command predicts.
    topology = load_topology(MESH14)
    assert all(data.get("compute") is None for _, data in topology.graph.nodes(data=True))
    steps = pd.read_csv(short_run / "steps.csv")
    train = steps[(steps.variant == "dijkstra") & (steps["kind"] == "train")]
    metrics = pd.read_csv(short_run / "metrics.csv").set_index("variant")
    sim_time_s = float(metrics.loc["dijkstra", "sim_time_s"])
    full = plan_json(capsys, "--routing", "dijkstra")
    assert full["message_bits"] == 64 * LATENT_DIM * 32
    # sim_time_s / steps is the mean step; the epoch's last batch is smaller than 64 (its
    # messages are shorter), so compare the sum of per-batch predictions, then the full step.
    predicted = 0.0
    for batch, count in train.batch.value_counts().items():
        bits = str(int(batch) * LATENT_DIM * 32)
        step = plan_json(capsys, "--routing", "dijkstra", "--message-bits", bits)
        assert step["edges"] == full["edges"]  # the tree does not change with the last batch
        predicted += count * step["step_time_s"]
    assert predicted == pytest.approx(sim_time_s, rel=1e-9)
    if train.batch.eq(64).all():
        assert full["step_time_s"] == pytest.approx(sim_time_s / len(train), rel=1e-9)
    else:
        assert full["step_time_s"] > sim_time_s / len(train)
