"""Generated topologies: graph models, rules for fusion and sensors, attribute draws, seeds."""

from __future__ import annotations

import warnings
from pathlib import Path

import networkx as nx
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from innet.core.errors import ConfigError
from innet.core.topology import (
    Topology,
    format_summary,
    load_topology,
    node_key,
    summarize_topology,
    topology_from_dict,
    topology_to_dict,
)

CONSTANT = {"capacity": "10Mbps", "latency": "1ms"}


def generate(**generator) -> Topology:
    return topology_from_dict({"name": "g", "generator": {**CONSTANT, **generator}})


def generator_error(tmp_path: Path, generator: dict) -> ConfigError:
    path = tmp_path / "gen.yaml"
    path.write_text(yaml.safe_dump({"name": "g", "generator": generator}, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_topology(path)
    assert "\n" not in str(info.value)
    assert info.value.file == str(path)
    return info.value


def assert_valid(topology: Topology) -> None:
    graph = topology.graph
    roles = [role for _, role in graph.nodes(data="role")]
    assert roles.count("fusion") == 1
    assert topology.sensors
    assert set(topology.sensors) <= nx.node_connected_component(graph, topology.fusion)
    assert sorted(graph.nodes[s]["view"] for s in topology.sensors) == list(
        range(len(topology.sensors))
    )
    assert all(capacity > 0 for _, _, capacity in graph.edges(data="capacity"))
    assert all(latency >= 0 for _, _, latency in graph.edges(data="latency"))


# --- graph models ---------------------------------------------------------------------------


def test_grid_ids_positions_and_size():
    topology = generate(kind="grid", rows=3, cols=4, sensors="all_but_fusion")
    graph = topology.graph
    assert graph.number_of_nodes() == 12
    assert graph.number_of_edges() == 3 * 3 + 2 * 4
    assert topology.nodes[:5] == ["n0_0", "n0_1", "n0_2", "n0_3", "n1_0"]
    assert graph.has_edge("n0_0", "n0_1") and graph.has_edge("n0_0", "n1_0")
    assert graph.nodes["n0_3"]["pos"] == (3.0, 2.0)  # (col, row counted from the bottom)
    assert graph.nodes["n2_0"]["pos"] == (0.0, 0.0)
    assert_valid(topology)


def test_ring_is_a_cycle_with_positions_on_a_circle():
    topology = generate(kind="ring", n=7, sensors="all_but_fusion")
    graph = topology.graph
    assert nx.is_isomorphic(graph, nx.cycle_graph(7))
    assert graph.has_edge("n6", "n0")
    assert graph.nodes["n0"]["pos"] == pytest.approx((0.0, 1.0))
    assert all(
        abs(x * x + y * y - 1) < 1e-12 for x, y in nx.get_node_attributes(graph, "pos").values()
    )


def test_random_geometric_keeps_networkx_graph_and_positions():
    topology = generate(kind="random_geometric", n=25, radius=0.4, seed=3)
    reference = nx.random_geometric_graph(25, 0.4, seed=3)
    assert nx.is_connected(reference)  # so nothing was dropped
    expected = {frozenset((f"n{u}", f"n{v}")) for u, v in reference.edges}
    assert {frozenset(edge) for edge in topology.graph.edges} == expected
    assert topology.graph.nodes["n4"]["pos"] == tuple(reference.nodes[4]["pos"])
    assert_valid(topology)


def test_barabasi_albert_size_and_missing_positions():
    topology = generate(kind="barabasi_albert", n=30, m=2, seed=1)
    assert topology.graph.number_of_nodes() == 30
    assert topology.graph.number_of_edges() == (30 - 2) * 2
    assert all(pos is None for _, pos in topology.graph.nodes(data="pos"))
    assert_valid(topology)


def test_erdos_renyi_builds_gnp_graph():
    topology = generate(kind="erdos_renyi", n=40, p=0.3, seed=2)
    reference = nx.fast_gnp_random_graph(40, 0.3, seed=2)
    assert topology.graph.number_of_edges() == reference.number_of_edges()
    assert_valid(topology)


@pytest.mark.parametrize(
    "generator",
    [
        {"kind": "random_geometric", "n": 40, "radius": 0.25},
        {"kind": "erdos_renyi", "n": 40, "p": 0.08},
        {"kind": "barabasi_albert", "n": 40, "m": 2},
        {"kind": "grid", "rows": 5, "cols": 4},
    ],
)
def test_same_seed_same_topology_other_seed_other_attributes(generator):
    spec = {
        **generator,
        "capacity": {"dist": "loguniform", "low": "1Mbps", "high": "1Gbps"},
        "latency": {"dist": "uniform", "low": "100us", "high": "2ms"},
        "sensors": {"rule": "random", "k": 5},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a sparse random graph may be disconnected
        first = topology_from_dict({"generator": {**spec, "seed": 7}})
        again = topology_from_dict({"generator": {**spec, "seed": 7}})
        other = topology_from_dict({"generator": {**spec, "seed": 8}})
    assert topology_to_dict(first) == topology_to_dict(again)
    assert topology_to_dict(first) != topology_to_dict(other)
    assert list(first.graph.edges(data=True)) == list(again.graph.edges(data=True))


# --- fusion and sensor rules -----------------------------------------------------------------


@pytest.mark.parametrize("rule", ["max_closeness", "min_eccentricity", "max_degree"])
def test_fusion_rules_pick_the_centre_of_a_grid(rule):
    topology = generate(kind="grid", rows=3, cols=3, fusion={"rule": rule})
    assert topology.fusion == "n1_1"


def test_fusion_ties_go_to_the_lowest_id():
    assert generate(kind="ring", n=10, fusion="max_closeness").fusion == "n0"
    assert generate(kind="grid", rows=4, cols=4).fusion == "n1_1"


def test_max_degree_fusion_is_a_hub():
    topology = generate(kind="barabasi_albert", n=50, m=1, seed=4, fusion="max_degree")
    degrees = dict(topology.graph.degree)
    best = max(degrees.values())
    assert degrees[topology.fusion] == best
    assert topology.fusion == min((n for n in degrees if degrees[n] == best), key=node_key)


def test_fusion_by_id():
    assert generate(kind="ring", n=5, fusion={"id": "n3"}).fusion == "n3"


def test_leaves_rule_on_a_tree():
    topology = generate(kind="barabasi_albert", n=30, m=1, seed=0, sensors="leaves")
    graph = topology.graph
    leaves = sorted(
        (n for n in graph if graph.degree[n] == 1 and n != topology.fusion), key=node_key
    )
    assert topology.sensors == leaves
    assert {graph.nodes[n]["role"] for n in graph if n not in leaves} == {"fusion", "relay"}


def test_leaves_rule_without_leaves_takes_the_farthest_nodes():
    assert generate(kind="ring", n=6, sensors="leaves").sensors == ["n3"]
    assert generate(kind="grid", rows=3, cols=3, sensors="leaves").sensors == [
        "n0_0",
        "n0_2",
        "n2_0",
        "n2_2",
    ]


def test_farthest_rule_breaks_ties_by_id():
    topology = generate(kind="ring", n=8, sensors={"rule": "farthest", "k": 3})
    assert topology.sensors == ["n3", "n4", "n5"]


def test_random_rule_is_reproducible_and_has_its_own_seed():
    base = {"kind": "ring", "n": 30, "seed": 1}
    first = generate(**base, sensors={"rule": "random", "k": 6})
    same = generate(**base, sensors={"rule": "random", "k": 6, "seed": 1})
    other = generate(**base, sensors={"rule": "random", "k": 6, "seed": 2})
    assert len(first.sensors) == 6 and first.fusion not in first.sensors
    assert first.sensors == same.sensors
    assert first.sensors != other.sensors


def test_sensor_ids_and_views_in_node_order():
    topology = generate(kind="ring", n=12, sensors={"ids": ["n10", "n2", "n5"]})
    assert topology.sensors == ["n2", "n5", "n10"]
    assert [topology.graph.nodes[s]["view"] for s in topology.sensors] == [0, 1, 2]
    assert topology.graph.nodes["n1"]["view"] is None


# --- attribute distributions ----------------------------------------------------------------


def test_uniform_and_loguniform_draws_stay_in_range():
    topology = generate(
        kind="erdos_renyi",
        n=30,
        p=0.5,
        capacity={"dist": "loguniform", "low": "1Mbps", "high": "1Gbps"},
        latency={"dist": "uniform", "low": "100us", "high": "2ms"},
    )
    capacities = [c for _, _, c in topology.graph.edges(data="capacity")]
    latencies = [t for _, _, t in topology.graph.edges(data="latency")]
    assert all(1e6 <= c <= 1e9 for c in capacities)
    assert all(100e-6 <= t <= 2e-3 for t in latencies)
    # Log-uniform: about as many links below 31.6 Mbps (the geometric middle) as above.
    below = sum(c < 10**7.5 for c in capacities)
    assert 0.35 < below / len(capacities) < 0.65


def test_choice_and_constant_draws():
    topology = generate(
        kind="grid",
        rows=4,
        cols=4,
        capacity={"dist": "choice", "values": ["1Mbps", "1Gbps"]},
        latency="250us",
    )
    capacities = {c for _, _, c in topology.graph.edges(data="capacity")}
    assert capacities == {1e6, 1e9}
    assert {t for _, _, t in topology.graph.edges(data="latency")} == {250e-6}


def test_defaults_supply_constant_attributes_and_node_fields():
    topology = topology_from_dict(
        {
            "defaults": {
                "capacity": "5Mbps",
                "latency": "2ms",
                "compute": "1GFLOPS",
                "tx_ports": 1,
            },
            "generator": {"kind": "ring", "n": 4},
        }
    )
    graph = topology.graph
    assert {c for _, _, c in graph.edges(data="capacity")} == {5e6}
    assert {t for _, _, t in graph.edges(data="latency")} == {2e-3}
    assert {graph.nodes[n]["compute"] for n in graph} == {1e9}
    assert {graph.nodes[n]["tx_ports"] for n in graph} == {1}


# --- disconnected graphs ----------------------------------------------------------------------


def test_disconnected_graph_keeps_largest_component_and_warns():
    spec = {"kind": "erdos_renyi", "n": 60, "p": 0.03, "seed": 5}
    reference = nx.fast_gnp_random_graph(60, 0.03, seed=5)
    largest = max(len(c) for c in nx.connected_components(reference))
    assert largest < 60  # the case is disconnected
    with pytest.warns(UserWarning, match=rf"dropped {60 - largest} nodes") as record:
        topology = generate(**spec, sensors="all_but_fusion")
    assert "largest component" in str(record[0].message)
    assert topology.graph.number_of_nodes() == largest
    assert nx.is_connected(topology.graph)
    assert_valid(topology)


def test_disconnected_graph_keeps_the_component_of_a_fusion_given_by_id():
    reference = nx.fast_gnp_random_graph(60, 0.03, seed=0)
    second = sorted(nx.connected_components(reference), key=len, reverse=True)[1]
    assert len(second) == 8
    fusion = f"n{min(second)}"
    with pytest.warns(UserWarning, match=f"component of the fusion node '{fusion}'.*dropped 52"):
        topology = generate(kind="erdos_renyi", n=60, p=0.03, seed=0, fusion={"id": fusion})
    assert topology.fusion == fusion
    assert set(topology.graph.nodes) == {f"n{i}" for i in second}
    assert_valid(topology)


def test_isolated_fusion_node_leaves_no_sensor(tmp_path):
    reference = nx.fast_gnp_random_graph(60, 0.03, seed=5)
    isolated = min(n for n in reference if reference.degree[n] == 0)
    with pytest.warns(UserWarning, match="dropped 59 nodes"):
        error = generator_error(
            tmp_path,
            {
                **CONSTANT,
                "kind": "erdos_renyi",
                "n": 60,
                "p": 0.03,
                "seed": 5,
                "fusion": {"id": f"n{isolated}"},
            },
        )
    assert error.field == "generator.sensors"
    assert "only the fusion node" in error.message


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("generator", "field", "message"),
    [
        ({"kind": "hexagon", "n": 3}, "generator.kind", "unknown generator kind 'hexagon'"),
        ({"kind": "grid", "rows": 3}, "generator", "missing cols"),
        ({"kind": "ring", "n": 5, "p": 0.1}, "generator", "does not take p"),
        ({"kind": "ring", "n": 2}, "generator", "n >= 3"),
        ({"kind": "barabasi_albert", "n": 5, "m": 5}, "generator", "m < n"),
        ({"kind": "erdos_renyi", "n": 5, "p": 1.5}, "generator.p", "between 0 and 1"),
        ({"kind": "ring", "n": 5, "colour": 1}, "generator.colour", "unknown field 'colour'"),
        ({"kind": "ring", "n": 5, "capacity": "1Mbs"}, "generator.capacity", "unknown unit"),
        ({"kind": "ring", "n": 5, "capacity": 0}, "generator.capacity", "capacity must be > 0"),
        (
            {"kind": "ring", "n": 5, "capacity": {"dist": "uniform", "low": "1Mbps"}},
            "generator.capacity",
            "missing high",
        ),
        (
            {"kind": "ring", "n": 5, "latency": {"dist": "uniform", "low": "2ms", "high": "1ms"}},
            "generator.latency",
            "must be >= low",
        ),
        ({"kind": "ring", "n": 5, "fusion": "busiest"}, "generator.fusion.rule", "busiest"),
        (
            {"kind": "ring", "n": 5, "fusion": {"id": "x"}},
            "generator.fusion.id",
            "unknown node 'x'",
        ),
        ({"kind": "ring", "n": 5, "sensors": "random"}, "generator.sensors", "needs k"),
        (
            {"kind": "ring", "n": 5, "sensors": {"rule": "farthest", "k": 9}},
            "generator.sensors.k",
            "only 4 nodes",
        ),
        (
            {"kind": "ring", "n": 5, "sensors": {"ids": ["n1", "n7"]}},
            "generator.sensors.ids[1]",
            "unknown node 'n7'",
        ),
        (
            {"kind": "ring", "n": 5, "sensors": {"ids": ["n0"]}},
            "generator.sensors.ids[0]",
            "is the fusion node",
        ),
    ],
)
def test_generator_errors_point_at_the_field(tmp_path, generator, field, message):
    error = generator_error(tmp_path, {**CONSTANT, **generator})
    assert error.field == field
    assert message in error.message
    assert error.line is not None


def test_missing_capacity_names_both_places(tmp_path):
    error = generator_error(tmp_path, {"kind": "ring", "n": 5, "latency": "1ms"})
    assert error.field == "generator.capacity"
    assert "generator.capacity or defaults.capacity" in error.message
    assert error.line == 2


def test_error_line_of_a_nested_generator_field(tmp_path):
    path = tmp_path / "gen.yaml"
    path.write_text(
        "name: g\n"
        "generator:\n"
        "  kind: ring\n"
        "  n: 5\n"
        "  capacity: 1Mbps\n"
        "  latency: 1ms\n"
        "  sensors:\n"
        "    ids: [n1, n9]\n"
    )
    with pytest.raises(ConfigError) as info:
        load_topology(path)
    assert str(info.value).startswith(f"{path}:8: generator.sensors.ids[1]: unknown node 'n9'")


# --- any generated topology is valid ------------------------------------------------------------

generator_specs = st.one_of(
    st.builds(
        lambda rows, cols: {"kind": "grid", "rows": rows, "cols": cols},
        st.integers(1, 6),
        st.integers(2, 6),
    ),
    st.builds(lambda n: {"kind": "ring", "n": n}, st.integers(3, 30)),
    st.builds(
        lambda n, radius: {"kind": "random_geometric", "n": n, "radius": radius},
        st.integers(2, 40),
        st.floats(0.05, 1.0),
    ),
    st.builds(
        lambda n, p: {"kind": "erdos_renyi", "n": n, "p": p},
        st.integers(2, 40),
        st.floats(0.05, 1.0),
    ),
    st.builds(
        lambda n, m: {"kind": "barabasi_albert", "n": n, "m": min(m, n - 1)},
        st.integers(2, 40),
        st.integers(1, 4),
    ),
)


@settings(max_examples=60, deadline=None)
@given(
    generator_specs,
    st.integers(0, 2**32 - 1),
    st.sampled_from(["max_degree", "max_closeness", "min_eccentricity"]),
    st.sampled_from(["leaves", "all_but_fusion", "farthest"]),
)
def test_generated_topologies_are_valid(generator, seed, fusion_rule, sensor_rule):
    sensors = {"rule": sensor_rule, "k": 1} if sensor_rule == "farthest" else sensor_rule
    spec = {**generator, "seed": seed, "fusion": fusion_rule, "sensors": sensors}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            topology = generate(**spec)
        except ConfigError as error:
            # Only possible when the kept component is the fusion node alone.
            assert "only the fusion node" in str(error)
            return
    assert_valid(topology)
    summary = summarize_topology(topology)
    assert summary["nodes"] == topology.graph.number_of_nodes()
    assert summary["diameter_hops"] >= summary["fusion_eccentricity_hops"] >= 1
    assert format_summary(summary).count("\n") == 2
