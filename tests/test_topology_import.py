"""Importing GraphML and GML maps: real Topology Zoo files, merges, geography, errors."""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path

import networkx as nx
import pytest
import yaml
from topology_files import load_error, write_file

from innet.core.errors import ConfigError
from innet.core.plans import dense_plan, dijkstra_plan, hop_plan, max_capacity_plan
from innet.core.topology import Topology, load_topology, topology_from_dict, topology_to_dict
from innet.core.topology.importer import (
    EARTH_RADIUS_M,
    PROPAGATION_SPEED_M_PER_S,
    TopologyImportWarning,
    geo_latency_s,
    haversine_m,
)
from innet.core.yamlio import parse_yaml

REPO = Path(__file__).resolve().parents[1]
TOPOLOGIES = REPO / "topologies"
ZOO = TOPOLOGIES / "zoo"  # shipped with the project (CC BY 4.0, see its README.md)

# What importing each file changes, read off the files: (pairs of parallel links,
# links in those pairs, isolated nodes dropped). Everything else must match the README.
CHANGES = {
    "Abilene": (0, 0, 0),
    "Nsfnet": (0, 0, 0),
    "Internet2": (0, 0, 0),
    "Arpanet19728": (0, 0, 0),
    "Geant2011": (2, 4, 1),
    "Cesnet201006": (0, 0, 0),
    "Garr201201": (12, 26, 0),
    "Uninett2011": (2, 4, 0),
}
NODE_ATTRIBUTES = {"role", "view", "compute", "tx_ports", "label", "pos"}


@pytest.fixture(scope="module")
def zoo() -> Path:
    assert sorted(path.stem for path in ZOO.glob("*.graphml")) == sorted(CHANGES)
    return ZOO


@pytest.fixture(scope="module")
def readme_counts(zoo: Path) -> dict[str, tuple[int, int]]:
    """``{stem: (nodes, links)}`` from the table in the samples' README."""
    rows = re.findall(
        r"^\| (\w+)\.graphml \| (\d+) \| (\d+) \|", (zoo / "README.md").read_text(), re.M
    )
    return {stem: (int(nodes), int(links)) for stem, nodes, links in rows}


def import_yaml(source: str, **fields: str) -> str:
    """A topology file importing ``source`` (``graphml: ...`` unless ``gml`` is given)."""
    key = "gml" if source.endswith(".gml") else "graphml"
    lines = ["name: imported", "import:", f"  {key}: {source}"]
    lines += [f"  {field}: {value}" for field, value in fields.items()]
    return "\n".join(lines) + "\n"


def load_quietly(path: Path) -> tuple[Topology, list[str]]:
    """The topology and the messages of the import warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        topology = load_topology(path)
    assert all(issubclass(w.category, TopologyImportWarning) for w in caught)
    return topology, [str(w.message) for w in caught]


def assert_points_at(error: ConfigError, path: Path, field: str, line: int) -> None:
    assert (error.file, error.field, error.line) == (str(path), field, line)
    assert str(error).startswith(f"{path}:{line}: {field}: ")


def assert_plans_build(topology: Topology) -> None:
    """Dense uses every link once; every tree has one parent per node and ends at fusion."""
    graph = topology.graph
    dense = dense_plan(topology)
    assert {frozenset(edge) for edge in dense.edges} == {frozenset(edge) for edge in graph.edges}
    for plan in (dijkstra_plan(topology, 8192.0), hop_plan(topology), max_capacity_plan(topology)):
        parent = dict(plan.edges)
        assert len(plan.edges) == len(parent) == graph.number_of_nodes() - 1
        assert all(graph.has_edge(child, above) for child, above in plan.edges)
        for node in graph:
            for _ in range(graph.number_of_nodes()):
                if node == topology.fusion:
                    break
                node = parent[node]
            assert node == topology.fusion


def two_cities_graph() -> nx.MultiGraph:
    """Amsterdam, Frankfurt, Paris (with coordinates), X (without), Lonely (isolated).

    Amsterdam-Frankfurt has two parallel links, one of 10 Gbps and one without
    a speed; Frankfurt has a self-loop.
    """
    graph = nx.MultiGraph()
    graph.add_node("Amsterdam", Latitude=52.374, Longitude=4.890)
    graph.add_node("Frankfurt", Latitude=50.117, Longitude=8.683)
    graph.add_node("Paris", Latitude=48.853, Longitude=2.349)
    graph.add_node("X")
    graph.add_node("Lonely", Latitude=0.0, Longitude=0.0)
    graph.add_edge("Amsterdam", "Frankfurt", LinkSpeedRaw=10e9)
    graph.add_edge("Amsterdam", "Frankfurt")
    graph.add_edge("Frankfurt", "Paris", LinkSpeedRaw=2.5e9)
    graph.add_edge("Paris", "X", LinkSpeedRaw=1e9)
    graph.add_edge("Frankfurt", "Frankfurt", LinkSpeedRaw=1e9)
    return graph


def write_graphml(folder: Path, graph: nx.Graph, name: str = "net.graphml") -> Path:
    """GraphML with ids n0, n1, ... and the original names as ``label``."""
    ids = {node: f"n{i}" for i, node in enumerate(graph)}
    labelled = nx.relabel_nodes(graph, ids)
    for node, new_id in ids.items():
        labelled.nodes[new_id].setdefault("label", node)
    path = folder / name
    nx.write_graphml(labelled, path)
    return path


# --- the eight Topology Zoo samples --------------------------------------------------------


def test_the_readme_table_lists_the_eight_files(readme_counts):
    assert set(readme_counts) == set(CHANGES)


@pytest.mark.parametrize("stem", sorted(CHANGES))
def test_every_zoo_file_imports(zoo, readme_counts, tmp_path, stem):
    source = os.path.relpath(zoo / f"{stem}.graphml", tmp_path)  # relative to the YAML file
    path = write_file(
        tmp_path,
        import_yaml(
            source,
            default_capacity="1Gbps",
            default_latency="1ms",
            fusion="{rule: max_degree}",
            sensors="{rule: leaves}",
        ),
    )
    topology, messages = load_quietly(path)
    graph = topology.graph

    nodes, links = readme_counts[stem]
    raw = nx.read_graphml(zoo / f"{stem}.graphml")
    assert (raw.number_of_nodes(), raw.number_of_edges()) == (nodes, links)
    pairs, in_pairs, isolated = CHANGES[stem]
    assert graph.number_of_nodes() == nodes - isolated
    assert graph.number_of_edges() == links - in_pairs + pairs
    merged = [m for m in messages if "parallel links" in m]
    dropped = [m for m in messages if "isolated" in m]
    assert len(merged) == (1 if pairs else 0) and len(dropped) == (1 if isolated else 0)
    if pairs:
        assert f"merged {in_pairs} parallel links into {pairs}" in merged[0]
    # links whose two ends sit at one place get 0 s of geo latency, and a warning naming them
    same_place = {
        frozenset((u, v))
        for u, v in raw.edges()
        if u != v
        and u in graph
        and v in graph
        and "Latitude" in raw.nodes[u]
        and (raw.nodes[u].get("Latitude"), raw.nodes[u].get("Longitude"))
        == (raw.nodes[v].get("Latitude"), raw.nodes[v].get("Longitude"))
    }
    zero = [m for m in messages if "geo latency is 0 s" in m]
    assert len(zero) == (1 if same_place else 0)
    if same_place:
        assert f"geo latency is 0 s on {len(same_place)} link" in zero[0]
    assert len(messages) == len(merged) + len(dropped) + len(zero)

    # The same attributes as a hand-written topology, ids and labels from the file.
    assert set(graph.nodes) <= set(raw.nodes)
    for node, attrs in graph.nodes(data=True):
        assert set(attrs) == NODE_ATTRIBUTES
        assert attrs["label"] == (raw.nodes[node].get("label") or node)
        has_geo = "Latitude" in raw.nodes[node] and "Longitude" in raw.nodes[node]
        assert (attrs["pos"] is not None) == has_geo
    for _, _, link in graph.edges(data=True):
        assert set(link) == {"capacity", "latency"}
        assert link["capacity"] > 0 and link["latency"] >= 0
    leaves = [n for n in topology.nodes if graph.degree[n] == 1 and n != topology.fusion]
    if leaves:
        assert topology.sensors == leaves
    else:  # none: the nodes farthest from the fusion node
        hops = nx.single_source_shortest_path_length(graph, topology.fusion)
        assert topology.sensors == [n for n in topology.nodes if hops[n] == max(hops.values())]
    assert nx.is_connected(graph)
    assert_plans_build(topology)

    # Frozen into node and link lists, it loads back identically.
    frozen = topology_from_dict(topology_to_dict(topology))
    assert nx.utils.graphs_equal(frozen.graph, graph)


def test_shipped_geant(zoo):
    topology, messages = load_quietly(TOPOLOGIES / "geant.yaml")
    graph = topology.graph
    assert topology.name == "geant"
    assert (graph.number_of_nodes(), graph.number_of_edges()) == (39, 59)
    assert topology.fusion == "4" and topology.label("4") == "DE"
    sensor_labels = [topology.label(s) for s in topology.sensors]
    assert sensor_labels == ["UA", "MD", "MT", "BY", "MK", "ME", "RS", "FI"]
    assert "14" not in graph  # TR has no link in the file
    assert graph.nodes["4"]["pos"] == (8.68333, 50.11667)
    assert graph.nodes["10"]["pos"] is None  # UA has no coordinates

    # Capacities: LinkSpeedRaw where given, the default where not; parallel links add up,
    # a link without a speed counting as the default.
    assert graph.edges["0", "34"]["capacity"] == 2.5e9  # NL-UK
    assert graph.edges["12", "20"]["capacity"] == 155e6  # BG-MK
    assert graph.edges["0", "1"]["capacity"] == 1e9  # NL-BE, no speed
    assert graph.edges["12", "13"]["capacity"] == 20e9  # BG-RO, 2 x 10 Gbps
    assert graph.edges["36", "37"]["capacity"] == 2e9  # SE-FI, 2 x no speed

    # Latencies: great-circle distance at 2e8 m/s; 1 ms where an end has no coordinates.
    nl_de = haversine_m(52.37403, 4.88969, 50.11667, 8.68333) / 2e8
    assert graph.edges["0", "4"]["latency"] == pytest.approx(nl_de, rel=1e-12)
    assert graph.edges["3", "10"]["latency"] == 1e-3  # PL-UA

    merged, isolated = messages
    assert "merged 4 parallel links into 2" in merged
    assert "12-13 (BG-RO) x2 = 20 Gbps" in merged and "36-37 (SE-FI) x2 = 2 Gbps" in merged
    assert "dropped 1 isolated node (no links): TR (id 14)" in isolated
    assert_plans_build(topology)


def test_shipped_abilene(zoo):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        topology = load_topology(TOPOLOGIES / "abilene.yaml")
    graph = topology.graph
    assert (graph.number_of_nodes(), graph.number_of_edges()) == (11, 14)
    assert topology.label(topology.fusion) == "Indianapolis"
    assert len(topology.sensors) == 10
    assert {c for _, _, c in graph.edges(data="capacity")} == {9953.28e6}
    raw = nx.read_graphml(zoo / "Abilene.graphml")
    for u, v, latency in graph.edges(data="latency"):
        a, b = raw.nodes[u], raw.nodes[v]
        expected = haversine_m(a["Latitude"], a["Longitude"], b["Latitude"], b["Longitude"]) / 2e8
        assert latency == pytest.approx(expected, rel=1e-12)
    assert_plans_build(topology)


def test_leaves_fall_back_to_the_farthest_nodes(zoo, tmp_path):
    # Abilene has no node of degree 1: the sensors are the nodes farthest from the fusion node.
    source = zoo / "Abilene.graphml"
    path = write_file(
        tmp_path, import_yaml(str(source), default_capacity="1Gbps", fusion="{label: Indianapolis}")
    )
    topology, _ = load_quietly(path)
    hops = nx.single_source_shortest_path_length(topology.graph, topology.fusion)
    assert [topology.label(s) for s in topology.sensors] == ["Seattle", "Sunnyvale", "Los Angeles"]
    assert {hops[s] for s in topology.sensors} == {max(hops.values())}


def test_ambiguous_label_in_a_real_file(zoo, tmp_path):
    source = str(zoo / "Arpanet19728.graphml")
    path = write_file(
        tmp_path, import_yaml(source, default_capacity="1Gbps", fusion="{label: BBN}")
    )
    error = load_error(path)
    assert_points_at(error, path, "import.fusion.label", 5)
    assert "label 'BBN' names 2 nodes" in error.message and "give the id instead" in error.message


# --- geography ----------------------------------------------------------------------------


def test_haversine_known_distances():
    quarter = math.pi * EARTH_RADIUS_M / 2
    assert haversine_m(0.0, 0.0, 0.0, 90.0) == pytest.approx(quarter, rel=1e-12)
    assert haversine_m(0.0, 0.0, 90.0, 123.0) == pytest.approx(quarter, rel=1e-12)
    assert haversine_m(90.0, 0.0, -90.0, 0.0) == pytest.approx(2 * quarter, rel=1e-12)
    assert haversine_m(10.0, 170.0, 10.0, -190.0) == pytest.approx(0.0, abs=1e-6)
    # Paris - London, about 343.6 km on this sphere.
    assert haversine_m(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343_556, abs=1)


@pytest.mark.parametrize(
    ("a", "b"), [((52.37, 4.89), (50.12, 8.68)), ((-33.9, 151.2), (51.5, -0.13)), ((0, 0), (0, 0))]
)
def test_haversine_agrees_with_the_chord_formula(a, b):
    def unit(lat: float, lon: float) -> tuple[float, float, float]:
        phi, lam = math.radians(lat), math.radians(lon)
        return math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)

    chord = math.dist(unit(*a), unit(*b))
    expected = 2 * EARTH_RADIUS_M * math.asin(chord / 2)
    assert haversine_m(*a, *b) == pytest.approx(expected, rel=1e-9, abs=1e-6)
    assert geo_latency_s(a, b) == pytest.approx(expected / PROPAGATION_SPEED_M_PER_S, abs=1e-15)


# --- GraphML and GML written here -----------------------------------------------------------


def test_gml_import_merges_drops_and_measures(tmp_path):
    gml = tmp_path / "net.gml"
    nx.write_gml(two_cities_graph(), gml)  # ids 0..4, label = the names above
    path = write_file(
        tmp_path,
        import_yaml(
            "net.gml",
            default_capacity="1Gbps",
            default_latency="3ms",
            fusion="{label: Frankfurt}",
            sensors="{labels: [Amsterdam, X]}",
        ),
    )
    topology, messages = load_quietly(path)
    graph = topology.graph
    assert topology.nodes == ["0", "1", "2", "3"]  # GML ids as strings; Lonely (4) dropped
    assert [topology.label(n) for n in topology.nodes] == ["Amsterdam", "Frankfurt", "Paris", "X"]
    assert topology.fusion == "1" and topology.sensors == ["0", "3"]
    assert graph.nodes["0"]["view"] == 0 and graph.nodes["3"]["view"] == 1
    assert graph.number_of_edges() == 3
    assert graph.edges["0", "1"]["capacity"] == 11e9  # 10 Gbps + a link without speed (1 Gbps)
    assert graph.edges["1", "2"]["capacity"] == 2.5e9
    amsterdam_frankfurt = haversine_m(52.374, 4.890, 50.117, 8.683) / 2e8
    assert graph.edges["0", "1"]["latency"] == pytest.approx(amsterdam_frankfurt, rel=1e-12)
    assert graph.edges["2", "3"]["latency"] == 3e-3  # X has no coordinates
    assert graph.nodes["2"]["pos"] == (2.349, 48.853)
    loops, merged, isolated = messages
    assert "dropped 1 self-loop at Frankfurt (id 1)" in loops
    assert "merged 2 parallel links into 1" in merged
    assert "0-1 (Amsterdam-Frankfurt) x2 = 11 Gbps" in merged
    assert "Lonely (id 4)" in isolated
    assert_plans_build(topology)


def test_graphml_written_by_networkx(tmp_path):
    write_graphml(tmp_path, two_cities_graph())
    path = write_file(
        tmp_path,
        import_yaml(
            "net.graphml", default_capacity="1Gbps", latency="2ms", sensors="all_but_fusion"
        ),
    )
    topology, _ = load_quietly(path)
    graph = topology.graph
    assert topology.nodes == ["n0", "n1", "n2", "n3"]
    assert topology.fusion == "n1"  # Frankfurt: max closeness, the default rule
    assert topology.sensors == ["n0", "n2", "n3"]
    assert {latency for _, _, latency in graph.edges(data="latency")} == {2e-3}


def test_capacity_attr_null_and_defaults_block(tmp_path):
    write_graphml(tmp_path, two_cities_graph())
    text = "defaults: {capacity: 100Mbps, latency: 5ms, compute: 1GFLOPS}\n" + import_yaml(
        "net.graphml", capacity_attr="null", fusion="{id: n1}"
    )
    topology, messages = load_quietly(write_file(tmp_path, text))
    graph = topology.graph
    assert graph.edges["n0", "n1"]["capacity"] == 200e6  # two links at the default
    assert graph.edges["n1", "n2"]["capacity"] == 100e6
    assert graph.edges["n2", "n3"]["latency"] == 5e-3
    assert all(compute == 1e9 for _, compute in graph.nodes(data="compute"))
    assert "a link without a speed counts as 100 Mbps" in messages[1]


def test_capacity_written_with_a_unit(tmp_path):
    graph = nx.Graph()
    graph.add_edge("f", "s", LinkSpeedRaw="10 Gbps")
    write_graphml(tmp_path, graph)
    path = write_file(tmp_path, import_yaml("net.graphml", latency="1ms", fusion="{label: f}"))
    topology, _ = load_quietly(path)
    assert topology.graph.edges["n0", "n1"]["capacity"] == 10e9


@pytest.mark.parametrize(
    ("sensors", "expected"),
    [
        ("{rule: random, k: 2, seed: 3}", None),
        ("{rule: farthest, k: 1}", ["n3"]),
        ("{ids: [n2, n0]}", ["n0", "n2"]),
    ],
)
def test_sensor_rules(tmp_path, sensors, expected):
    write_graphml(tmp_path, two_cities_graph())
    path = write_file(
        tmp_path,
        import_yaml(
            "net.graphml",
            default_capacity="1Gbps",
            default_latency="1ms",
            fusion="{id: n1}",
            sensors=sensors,
        ),
    )
    topology, _ = load_quietly(path)
    if expected is None:
        assert len(topology.sensors) == 2 and "n1" not in topology.sensors
        assert load_quietly(path)[0].sensors == topology.sensors  # same seed, same draw
    else:
        assert topology.sensors == expected


def test_path_is_relative_to_the_yaml_file_not_the_working_directory(tmp_path, monkeypatch):
    folder = tmp_path / "maps"
    folder.mkdir()
    write_graphml(folder, two_cities_graph())
    configs = tmp_path / "configs"
    configs.mkdir()
    path = write_file(
        configs, import_yaml("../maps/net.graphml", default_capacity="1Gbps", default_latency="1ms")
    )
    monkeypatch.chdir(folder)
    assert load_quietly(path)[0].graph.number_of_nodes() == 4
    # A nested block resolves against the file it was written in.
    data, lines = parse_yaml(
        "topology:\n" + "".join(f"  {x}\n" for x in path.read_text().splitlines())
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TopologyImportWarning)
        nested = topology_from_dict(data["topology"], file=configs / "s.yaml", lines=lines)
    assert nested.graph.number_of_nodes() == 4


# --- errors: file, field and line -----------------------------------------------------------


def test_missing_file_names_the_yaml_field_and_line(tmp_path):
    path = write_file(tmp_path, "# a comment\n" + import_yaml("nowhere/Net.graphml"))
    error = load_error(path)
    assert_points_at(error, path, "import.graphml", 4)
    assert "file not found: nowhere/Net.graphml" in error.message
    assert str(tmp_path / "nowhere" / "Net.graphml") in error.message


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"fusion": "{label: Atlantis}"}, "import.fusion.label", "no node has label 'Atlantis'"),
        ({"fusion": "{id: n99}"}, "import.fusion.id", "no node has id 'n99'"),
        ({"fusion": "{label: Lonely}"}, "import.fusion", "Lonely (id n4) has no links"),
        ({"default_capacity": "1 Gbit"}, "import.default_capacity", "unknown unit 'Gbit'"),
        ({"default_capacity": "-1Gbps"}, "import.default_capacity", "capacity must be > 0"),
        ({"latency": "soon"}, "import.latency", "cannot read 'soon' as a duration"),
        ({"default_latency": "-2ms"}, "import.default_latency", "latency must be >= 0"),
        ({"gml": "net.gml"}, "import", "exactly one of graphml or gml"),
        ({"colour": "blue"}, "import.colour", "unknown field 'colour'"),
        ({"fusion": "{label: X, id: n1}"}, "import.fusion", "exactly one of label, id or rule"),
        ({"sensors": "{labels: [Paris, Atlantis]}"}, "import.sensors.labels[1]", "'Atlantis'"),
        ({"sensors": "{labels: [Frankfurt]}"}, "import.sensors.labels[0]", "is the fusion"),
        ({"sensors": "{ids: [n4]}"}, "import.sensors.ids[0]", "cannot reach the fusion"),
        ({"sensors": "{rule: random, k: 9}"}, "import.sensors.k", "k=9 but only 3 nodes"),
        ({"sensors": "{rule: leaves, k: 2}"}, "import.sensors", "k is only used by"),
    ],
)
def test_invalid_import_points_at_field_and_line(tmp_path, fields, field, message):
    write_graphml(tmp_path, two_cities_graph())
    fields = {"default_capacity": "1Gbps", "default_latency": "1ms", **fields}
    fields.setdefault("fusion", "{label: Frankfurt}")
    text = import_yaml("net.graphml", **fields)
    path = write_file(tmp_path, text)
    error = load_error(path)
    # The line of the first key the field path names below `import` (the block itself if none).
    key = field.split(".")[1].split("[")[0] if "." in field else "import"
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.lstrip().startswith(key))
    assert_points_at(error, path, field, line)
    assert message in error.message


def test_ambiguous_fusion_label(tmp_path):
    graph = nx.Graph()
    graph.add_node("a", label="Hub")
    graph.add_node("b", label="Hub")
    graph.add_edges_from([("a", "b"), ("b", "c")])
    write_graphml(tmp_path, graph)
    path = write_file(
        tmp_path,
        import_yaml("net.graphml", default_capacity="1Gbps", latency="1ms", fusion="{label: Hub}"),
    )
    error = load_error(path)
    assert_points_at(error, path, "import.fusion.label", 6)
    assert "label 'Hub' names 2 nodes (ids n0, n1)" in error.message


@pytest.mark.parametrize(
    ("drop", "field", "message"),
    [
        ("default_capacity", "import.default_capacity", "1 links have no LinkSpeedRaw (e.g. n0-n1"),
        ("default_latency", "import.default_latency", "link n2-n3 (Paris-X): X (id n3) has no"),
    ],
)
def test_missing_defaults_are_named(tmp_path, drop, field, message):
    write_graphml(tmp_path, two_cities_graph())
    fields = {"default_capacity": "1Gbps", "default_latency": "1ms"}
    del fields[drop]
    path = write_file(tmp_path, import_yaml("net.graphml", **fields))
    error = load_error(path)
    assert error.field == field and error.line == 2  # not written: the import block's line
    assert message in error.message


@pytest.mark.parametrize(("value", "problem"), [("-5", "must be > 0"), ("fast", "cannot read")])
def test_bad_link_speed_in_the_file(tmp_path, value, problem):
    graph = nx.Graph()
    graph.add_edge("f", "s", LinkSpeedRaw=value)
    write_graphml(tmp_path, graph)
    path = write_file(
        tmp_path, import_yaml("net.graphml", capacity_attr="LinkSpeedRaw", latency="1ms")
    )
    error = load_error(path)
    assert_points_at(error, path, "import.capacity_attr", 4)
    assert f"link n0-n1 (f-s): LinkSpeedRaw = '{value}'" in error.message
    assert problem in error.message


def test_unreadable_and_directed_files(tmp_path):
    (tmp_path / "broken.graphml").write_text("<graphml><graph", encoding="utf-8")
    path = write_file(tmp_path, import_yaml("broken.graphml"))
    error = load_error(path)
    assert_points_at(error, path, "import.graphml", 3)
    assert "cannot read broken.graphml as GraphML" in error.message

    nx.write_gml(nx.DiGraph([("a", "b")]), tmp_path / "arcs.gml")
    path = write_file(tmp_path, import_yaml("arcs.gml"))
    error = load_error(path)
    assert_points_at(error, path, "import.gml", 3)
    assert "directed graph" in error.message


def test_import_excludes_nodes_and_generator(tmp_path):
    write_graphml(tmp_path, two_cities_graph())
    text = import_yaml("net.graphml", default_capacity="1Gbps") + "generator: {kind: ring, n: 5}\n"
    path = write_file(tmp_path, text)
    error = load_error(path)
    assert_points_at(error, path, "import", 2)
    assert "only one of" in error.message


def test_shipped_imports_are_plain_yaml():
    for name in ("geant", "abilene"):
        data = yaml.safe_load((TOPOLOGIES / f"{name}.yaml").read_text())
        assert data["name"] == name
        assert data["import"]["graphml"].startswith("zoo/")
        assert (TOPOLOGIES / data["import"]["graphml"]).is_file()
