"""Loading topology files: the documented format, every validation error, round trips."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import networkx as nx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from topology_files import load_error, write_file

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
from innet.core.topology.importer import TopologyImportWarning
from innet.core.yamlio import format_path, parse_yaml

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"

DIAMOND = """\
name: diamond
defaults: {capacity: 10Mbps, latency: 1ms}
nodes:
  - {id: f, role: fusion}
  - {id: s, role: sensor}
  - {id: r, role: relay}
links:
  - {between: [s, f], capacity: 1Mbps}
  - [s, r]
  - {between: [r, f], capacity: 100Mbps, latency: 500us}
"""


def assert_points_at(error: ConfigError, path: Path, field: str | None, line: int | None) -> None:
    """The error names the file, the field and the line, in the documented one-line format."""
    assert error.file == str(path)
    assert error.field == field
    assert error.line == line
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(error).startswith(where + (f"{field}: " if field else ""))


# --- the documented format ---------------------------------------------------------------


def test_diamond_example_loads_exactly(tmp_path):
    topology = load_topology(write_file(tmp_path, DIAMOND))
    graph = topology.graph
    assert topology.name == "diamond"
    assert topology.source == tmp_path / "topo.yaml"
    assert topology.fusion == "f"
    assert topology.sensors == ["s"]
    assert topology.nodes == ["f", "r", "s"]
    assert {n: graph.nodes[n]["role"] for n in graph} == {
        "f": "fusion",
        "s": "sensor",
        "r": "relay",
    }
    assert graph.edges["s", "f"] == {"capacity": 1e6, "latency": 1e-3}
    assert graph.edges["s", "r"] == {"capacity": 10e6, "latency": 1e-3}
    assert graph.edges["r", "f"] == {"capacity": 100e6, "latency": 500e-6}
    assert graph.number_of_edges() == 3
    assert graph.nodes["s"] == {
        "role": "sensor",
        "view": 0,
        "compute": None,
        "tx_ports": None,
        "label": "s",
        "pos": None,
    }


def test_shipped_diamond_is_the_documented_example():
    shipped = load_topology(TOPOLOGIES / "diamond.yaml")
    data, _ = parse_yaml(DIAMOND)
    documented = topology_from_dict(data)
    assert topology_to_dict(shipped) == topology_to_dict(documented)


def test_optional_node_fields_and_defaults(tmp_path):
    text = """\
defaults: {capacity: 1Gbps, latency: 0, compute: 1GFLOPS, tx_ports: 2}
nodes:
  - {id: 0, role: fusion, label: Sink, pos: [0, 1]}
  - {id: 1, role: sensor, view: 3, compute: 2GFLOPS, tx_ports: 1}
  - {id: 2, role: sensor}
  - {id: 10, role: sensor}
links: [[1, 0], [2, 0], [10, 2]]
"""
    topology = load_topology(write_file(tmp_path, text, "ints.yaml"))
    nodes = topology.graph.nodes
    assert topology.name == "ints"  # the file name without extension
    assert topology.nodes == ["0", "1", "2", "10"]
    assert nodes["0"]["label"] == "Sink" and topology.label("0") == "Sink"
    assert nodes["0"]["pos"] == (0.0, 1.0)
    assert nodes["1"]["compute"] == 2e9 and nodes["1"]["tx_ports"] == 1
    assert nodes["2"]["compute"] == 1e9 and nodes["2"]["tx_ports"] == 2
    # Sensors without a view take the smallest free index, in node order.
    assert [nodes[n]["view"] for n in ("1", "2", "10")] == [3, 0, 1]
    assert topology.graph.edges["10", "2"] == {"capacity": 1e9, "latency": 0.0}


# --- validation errors: file, field and line -----------------------------------------------


@pytest.mark.parametrize(
    ("replace", "by", "field", "line", "message"),
    [
        ("role: fusion", "role: relay", "nodes", 3, "no fusion node"),
        (
            "{id: r, role: relay}",
            "{id: r, role: fusion}",
            "nodes[2].role",
            6,
            "2 fusion nodes (f, r)",
        ),
        ("role: sensor", "role: relay", "nodes", 3, "no sensor"),
        ("role: relay", "role: router", "nodes[2].role", 6, "unknown role 'router'"),
        ("- [s, r]", "- [s, x]", "links[1].between[1]", 9, "unknown node 'x'"),
        ("- [s, r]", "- [s, s]", "links[1].between", 9, "self-loop"),
        ("capacity: 1Mbps}", "capacity: 0}", "links[0].capacity", 8, "capacity must be > 0"),
        ("capacity: 100Mbps", "capacity: -5Mbps", "links[2].capacity", 10, "got -5 Mbps"),
        ("latency: 500us", "latency: -1ms", "links[2].latency", 10, "latency must be >= 0"),
        ("capacity: 100Mbps", "capacity: 100Mbs", "links[2].capacity", 10, "unknown unit 'Mbs'"),
        ("latency: 1ms", "latency: 1 sec", "defaults.latency", 2, "unknown unit 'sec'"),
        ("{id: r, role: relay}", "{id: s, role: relay}", "nodes[2].id", 6, "duplicate node id 's'"),
        ("- [s, r]", "- [s, r, f]", "links[1].between", 9, "exactly two nodes, got 3"),
        ("capacity: 10Mbps, ", "", "links[1].capacity", 9, "no capacity"),
        ("{id: r, role: relay}", "{id: r, role: relay, view: 1}", "nodes[2].view", 6, "sensors"),
        ("name: diamond", "name: diamond\nname: again", "name", 2, "duplicate key 'name'"),
    ],
)
def test_invalid_content_points_at_field_and_line(tmp_path, replace, by, field, line, message):
    assert replace in DIAMOND
    path = write_file(tmp_path, DIAMOND.replace(replace, by, 1))
    error = load_error(path)
    assert_points_at(error, path, field, line)
    assert message in error.message


@pytest.mark.parametrize(
    ("extra_link", "first"),
    [("[s, f]", "links[0]"), ("[f, s]", "links[0]"), ("{between: [f, r]}", "links[2]")],
)
def test_duplicate_link_in_either_orientation(tmp_path, extra_link, first):
    path = write_file(tmp_path, DIAMOND + f"  - {extra_link}\n")
    error = load_error(path)
    assert_points_at(error, path, "links[3].between", 11)
    assert "duplicate link" in error.message
    assert f"already given as {first}" in error.message


def test_unknown_field_names_the_accepted_ones(tmp_path):
    extra_field = DIAMOND.replace("{id: r, role: relay}", "{id: r, role: relay, x: 1}")
    path = write_file(tmp_path, extra_field)
    error = load_error(path)
    assert_points_at(error, path, "nodes[2].x", 6)
    assert "unknown field 'x'" in error.message
    assert "id, role, view, compute, tx_ports, label, pos" in error.message


def test_unknown_top_level_field(tmp_path):
    path = write_file(tmp_path, DIAMOND + "colour: blue\n")
    error = load_error(path)
    assert_points_at(error, path, "colour", 11)
    assert "unknown field 'colour'" in error.message and "generator" in error.message


def test_unreachable_sensors_are_named_in_node_order(tmp_path):
    text = DIAMOND.replace(
        "nodes:\n", "nodes:\n  - {id: s10, role: sensor}\n  - {id: s2, role: sensor}\n"
    )
    path = write_file(tmp_path, text)
    error = load_error(path)
    # The first stranded sensor in node order is s2 (nodes[1], line 5).
    assert_points_at(error, path, "nodes[1]", 5)
    assert error.message == "sensors s2, s10 cannot reach the fusion node 'f'"


def test_only_the_first_problem_in_file_order_is_reported(tmp_path):
    text = DIAMOND.replace("latency: 500us", "latency: 5 hours").replace(
        "{id: r, role: relay}", "{id: r, role: relay, view: x}"
    )
    path = write_file(tmp_path, text)
    error = load_error(path)
    assert_points_at(error, path, "nodes[2].view", 6)
    assert error.message.endswith("(and 1 more problem)")


def test_unparseable_yaml_reports_the_line(tmp_path):
    path = write_file(tmp_path, DIAMOND.replace("- [s, r]", "- [s, r", 1))
    error = load_error(path)
    assert error.file == str(path)
    assert error.line == 10  # where the parser noticed
    assert "invalid YAML" in error.message
    assert "started at line 9" in error.message


def test_tab_indentation_is_a_yaml_error(tmp_path):
    path = write_file(tmp_path, DIAMOND.replace("  - [s, r]", "\t- [s, r]"))
    error = load_error(path)
    assert error.line == 9
    assert "invalid YAML" in str(error)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.yaml"
    error = load_error(path)
    assert str(error) == f"{path}: file not found"


@pytest.mark.parametrize(
    ("text", "found"), [("", "an empty document"), ("- a\n- b\n", "a list"), ("7\n", "a int")]
)
def test_document_must_be_a_mapping(tmp_path, text, found):
    path = write_file(tmp_path, text)
    error = load_error(path)
    assert error.file == str(path)
    assert found in error.message


def test_nodes_and_generator_are_exclusive(tmp_path):
    path = write_file(tmp_path, DIAMOND + "generator: {kind: ring, n: 5}\n")
    error = load_error(path)
    assert_points_at(error, path, "generator", 11)


def test_topology_from_dict_with_nested_line_map():
    text = "scenario: x\ntopology:\n" + "".join(f"  {line}\n" for line in DIAMOND.splitlines())
    data, lines = parse_yaml(text.replace("role: relay", "role: hub"))
    with pytest.raises(ConfigError) as info:
        topology_from_dict(data["topology"], file="scenario.yaml", lines=lines.within("topology"))
    assert str(info.value).startswith("scenario.yaml:8: nodes[2].role: unknown role 'hub'")


def test_format_path():
    assert format_path(("links", 2, "capacity")) == "links[2].capacity"
    assert format_path(("nodes", 0)) == "nodes[0]"
    assert format_path(()) == ""


def test_summary_of_the_diamond(tmp_path):
    summary = summarize_topology(load_topology(write_file(tmp_path, DIAMOND)))
    assert summary == {
        "name": "diamond",
        "nodes": 3,
        "nodes_by_role": {"fusion": 1, "sensor": 1, "relay": 1},
        "fusion": "f",
        "links": 3,
        "diameter_hops": 1,
        "diameter_exact": True,
        "fusion_eccentricity_hops": 1,
        "capacity_min_bps": 1e6,
        "capacity_max_bps": 100e6,
        "latency_min_s": 500e-6,
        "latency_max_s": 1e-3,
    }
    assert format_summary(summary) == (
        "topology diamond: 3 nodes (fusion f, 1 sensor, 1 relay), 3 links\n"
        "diameter 1 hop; fusion eccentricity 1 hop\n"
        "capacity 1 Mbps .. 100 Mbps; latency 500 us .. 1 ms"
    )


# --- round trips ---------------------------------------------------------------------------

node_ids = st.one_of(
    st.integers(min_value=0, max_value=10_000),
    st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,6}", fullmatch=True),
)
capacities = st.floats(min_value=1.0, max_value=1e12)
latencies = st.floats(min_value=0.0, max_value=10.0)
# Printable text; PyYAML itself does not round-trip some control characters (e.g. U+0085).
LABEL_CHARACTERS = st.characters(categories=("L", "N", "P", "S"), include_characters=" ")


@st.composite
def topology_documents(draw) -> tuple[dict, dict]:
    """A valid topology document and what loading it must give (ids as str, base units)."""
    ids = draw(st.lists(node_ids, min_size=2, max_size=10, unique_by=str))
    names = [str(node) for node in ids]
    fusion = draw(st.integers(min_value=0, max_value=len(ids) - 1))
    others = [i for i in range(len(ids)) if i != fusion]
    sensors = set(draw(st.lists(st.sampled_from(others), min_size=1, unique=True)))

    # A random spanning tree (so every sensor reaches the fusion node) plus extra links.
    order = draw(st.permutations(range(len(ids))))
    pairs = {
        frozenset((order[i], order[draw(st.integers(0, i - 1))])) for i in range(1, len(order))
    }
    for a, b in draw(st.lists(st.tuples(*[st.sampled_from(range(len(ids)))] * 2), max_size=8)):
        if a != b:
            pairs.add(frozenset((a, b)))

    default_capacity = draw(capacities)
    default_latency = draw(latencies)
    links, expected_links = [], {}
    for pair in sorted(pairs, key=sorted):
        a, b = draw(st.permutations(sorted(pair)))
        entry: dict = {"between": [ids[a], ids[b]]}
        capacity, latency = default_capacity, default_latency
        if draw(st.booleans()):
            mbps = draw(st.floats(min_value=1e-3, max_value=1e5))
            entry["capacity"], capacity = f"{mbps!r} Mbps", mbps * 1e6
        if draw(st.booleans()):
            entry["latency"] = latency = draw(latencies)
        loss = 0.0
        if draw(st.booleans()):
            entry["loss"] = loss = draw(st.floats(min_value=0.0, max_value=0.999))
        links.append(entry if len(entry) > 1 or draw(st.booleans()) else entry["between"])
        expected_links[frozenset((names[a], names[b]))] = (capacity, latency, loss)

    nodes, expected_nodes = [], {}
    for i, node in enumerate(ids):
        role = "fusion" if i == fusion else "sensor" if i in sensors else "relay"
        entry = {"id": node, "role": role}
        if role == "sensor" and draw(st.booleans()):
            entry["view"] = draw(st.integers(0, 20))
        if draw(st.booleans()):
            entry["pos"] = [draw(st.floats(-10, 10)), draw(st.floats(-10, 10))]
        if draw(st.booleans()):
            entry["label"] = draw(st.text(alphabet=LABEL_CHARACTERS, max_size=8))
        nodes.append(entry)
        expected_nodes[names[i]] = entry
    document = {
        "name": draw(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)),
        "defaults": {"capacity": default_capacity, "latency": f"{default_latency * 1e3!r}ms"},
        "nodes": draw(st.permutations(nodes)),
        "links": links,
    }
    return document, {"nodes": expected_nodes, "links": expected_links}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topology_documents())
def test_random_valid_topologies_load_back(case):
    document, expected = case
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "random.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        topology = load_topology(path)
    graph = topology.graph
    assert topology.name == document["name"]
    assert set(graph.nodes) == set(expected["nodes"])
    for node, entry in expected["nodes"].items():
        attrs = graph.nodes[node]
        assert attrs["role"] == entry["role"]
        assert attrs["label"] == entry.get("label", node)
        assert attrs["pos"] == (tuple(entry["pos"]) if "pos" in entry else None)
        if "view" in entry:
            assert attrs["view"] == entry["view"]
        assert (attrs["view"] is not None) == (entry["role"] == "sensor")
    assert {frozenset(edge) for edge in graph.edges} == set(expected["links"])
    for (u, v), (capacity, latency, loss) in (
        ((tuple(pair)), values) for pair, values in expected["links"].items()
    ):
        assert graph.edges[u, v]["capacity"] == pytest.approx(capacity, rel=1e-12)
        assert graph.edges[u, v]["latency"] == pytest.approx(latency, rel=1e-12, abs=1e-15)
        assert graph.edges[u, v].get("loss", 0.0) == loss
        assert ("loss" in graph.edges[u, v]) == (loss > 0)  # loss-free links carry none
    again = topology_from_dict(topology_to_dict(topology))
    assert nx.utils.edges_equal(again.graph.edges(data=True), graph.edges(data=True))


def test_topology_to_dict_round_trips_through_yaml(tmp_path):
    original = load_topology(TOPOLOGIES / "mesh14.yaml")
    assert all("loss" not in link for link in topology_to_dict(original)["links"])
    original.graph.edges[next(iter(original.graph.edges))]["loss"] = 0.125
    path = write_file(tmp_path, yaml.safe_dump(topology_to_dict(original)))
    again = load_topology(path)
    assert nx.utils.graphs_equal(original.graph, again.graph)
    assert topology_to_dict(again) == topology_to_dict(original)
    assert sum("loss" in link for link in topology_to_dict(again)["links"]) == 1


# --- shipped topologies --------------------------------------------------------------------

SHIPPED = sorted(TOPOLOGIES.glob("*.yaml"))


def test_the_documented_topologies_are_shipped():
    names = {path.stem for path in SHIPPED}
    documented = {"diamond", "mesh14", "ring12", "grid4x4", "random_geometric30"}
    assert documented | {"random_geometric1000", "geant", "abilene"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_every_shipped_topology_loads_without_warnings(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # An import reports what it changed in the file (merged links, dropped nodes), by design.
        warnings.simplefilter("ignore", TopologyImportWarning)
        topology = load_topology(path)
    assert isinstance(topology, Topology)
    assert topology.name == path.stem
    graph = topology.graph
    reachable = nx.node_connected_component(graph, topology.fusion)
    assert set(topology.sensors) <= reachable
    assert sorted(graph.nodes[s]["view"] for s in topology.sensors) == list(
        range(len(topology.sensors))
    )
    assert format_summary(summarize_topology(topology)).startswith(f"topology {path.stem}:")


def _trees(topology: Topology, message_bits: float) -> tuple[dict, dict]:
    """Parents in the capacity-aware Dijkstra tree and in the hop-count BFS tree."""
    graph = topology.graph
    weights = {
        (u, v): data["latency"] + message_bits / data["capacity"]
        for u, v, data in graph.edges(data=True)
    }
    nx.set_edge_attributes(graph, weights, "weight")
    predecessors, _ = nx.dijkstra_predecessor_and_distance(graph, topology.fusion)
    hops = nx.single_source_shortest_path_length(graph, topology.fusion)
    dijkstra, bfs = {}, {}
    for node in topology.nodes:
        if node == topology.fusion:
            continue
        dijkstra[node] = min(predecessors[node], key=node_key)
        closer = [m for m in graph[node] if hops[m] == hops[node] - 1]
        bfs[node] = min(closer, key=node_key)
    return dijkstra, bfs


def test_mesh14_is_designed_for_routing_to_matter():
    topology = load_topology(TOPOLOGIES / "mesh14.yaml")
    graph = topology.graph
    assert topology.fusion == "f"
    assert topology.sensors == [f"s{i}" for i in range(1, 9)]
    assert [graph.nodes[s]["view"] for s in topology.sensors] == list(range(8))
    assert sum(role == "relay" for _, role in graph.nodes(data="role")) == 5
    assert 22 <= graph.number_of_edges() <= 26
    capacities = [c for _, _, c in graph.edges(data="capacity")]
    latencies = [t for _, _, t in graph.edges(data="latency")]
    assert (min(capacities), max(capacities)) == (1e6, 1e9)
    assert (min(latencies), max(latencies)) == (100e-6, 5e-3)
    assert all(graph.nodes[n]["pos"] is not None for n in graph)

    dijkstra, bfs = _trees(topology, message_bits=64 * 16 * 32)
    differing = {node for node in dijkstra if dijkstra[node] != bfs[node]}
    assert len(differing & set(topology.sensors)) >= 5
    # Lateral links (equal hop distance) exist, so dense INL uses more links than a tree.
    hops = nx.single_source_shortest_path_length(graph, "f")
    lateral = [(u, v) for u, v in graph.edges if hops[u] == hops[v]]
    assert len(lateral) >= 3
    assert graph.number_of_edges() - (graph.number_of_nodes() - 1) >= 10


# --- parts the fusion node cannot reach: as an import treats them -------------------------

CUT_OFF_RELAYS = """\
name: islands
defaults: {capacity: 1Mbps, latency: 1ms}
nodes:
  - {id: f, role: fusion}
  - {id: s, role: sensor}
  - {id: r10, role: relay}
  - {id: r2, role: relay}
links:
  - [s, f]
  - [r2, r10]
"""


def test_relays_the_fusion_node_cannot_reach_are_dropped_with_a_warning(tmp_path):
    with pytest.warns(TopologyImportWarning) as caught:
        topology = load_topology(write_file(tmp_path, CUT_OFF_RELAYS))
    assert [str(w.message) for w in caught] == [
        "topology 'islands': dropped 2 relays the fusion node 'f' cannot reach "
        "(they could take no part): r2, r10"
    ]
    assert sorted(topology.graph.nodes) == ["f", "s"]
    assert nx.is_connected(topology.graph)
    # the same two islands as GraphML: the import drops them with the same kind of warning
    graph = nx.Graph()
    graph.add_edges_from([("f", "s"), ("r2", "r10")])
    nx.write_graphml(graph, tmp_path / "islands.graphml")
    imported = write_file(
        tmp_path,
        "name: islands\nimport: {graphml: islands.graphml, latency: 1ms, default_capacity: "
        "1Mbps, fusion: {id: f}, sensors: {ids: [s]}}\n",
        "imported.yaml",
    )
    with pytest.warns(TopologyImportWarning, match="dropped 2 nodes the fusion node"):
        assert sorted(load_topology(imported).graph.nodes) == ["f", "s"]


def test_a_sensor_cut_off_is_an_error_in_both(tmp_path):
    text = CUT_OFF_RELAYS.replace("{id: r2, role: relay}", "{id: r2, role: sensor}")
    assert "sensor r2 cannot reach the fusion node" in str(load_error(write_file(tmp_path, text)))
    graph = nx.Graph()
    graph.add_edges_from([("f", "s"), ("r2", "r10")])
    nx.write_graphml(graph, tmp_path / "islands.graphml")
    imported = write_file(
        tmp_path,
        "name: islands\nimport: {graphml: islands.graphml, latency: 1ms, default_capacity: "
        "1Mbps, fusion: {id: f}, sensors: {ids: [s, r2]}}\n",
        "imported.yaml",
    )
    assert "r2 cannot reach the fusion node" in str(load_error(imported))


def test_geo_latency_of_zero_is_a_warning(tmp_path):
    graph = nx.Graph()
    graph.add_node("f", Latitude=52.0, Longitude=4.0)
    graph.add_node("s", Latitude=52.0, Longitude=4.0)  # the same place, as two Kdl sites
    graph.add_node("t", Latitude=50.0, Longitude=8.0)
    graph.add_edges_from([("f", "s"), ("f", "t")])
    nx.write_graphml(graph, tmp_path / "sites.graphml")
    path = write_file(
        tmp_path,
        "name: sites\nimport: {graphml: sites.graphml, latency: geo, default_capacity: 1Gbps, "
        "fusion: {id: f}, sensors: {ids: [s, t]}}\n",
    )
    with pytest.warns(TopologyImportWarning) as caught:
        topology = load_topology(path)
    assert [str(w.message) for w in caught] == [
        "topology 'sites' (sites.graphml): geo latency is 0 s on 1 link with both ends at "
        "the same Latitude/Longitude: f-s"
    ]
    assert topology.graph.edges["f", "s"]["latency"] == 0
    assert topology.graph.edges["f", "t"]["latency"] > 0
