"""The fair protocol scenario: its arms, its equivalence margin and its verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

import innet
from innet.app.scenario import load_scenario
from innet.core.plans import build_plan
from innet.core.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "scenarios" / "dinl_protocol.yaml"


def test_every_arm_has_the_same_gate_and_is_repeated_without_one() -> None:
    loaded = load_scenario(PROTOCOL)
    variants = {variant.name: variant for variant in loaded.variants}
    gated = [v for v in variants.values() if v.gate.kind != "none"]
    assert {v.routing for v in gated} == {"dense", "dijkstra", "hop"}
    assert len({v.gate.model_dump_json() for v in gated}) == 1  # one gate for every arm
    for variant in gated:
        twin = variants[f"{variant.name}_none"]
        assert (twin.routing, twin.hop_cost_s) == (variant.routing, variant.hop_cost_s)
        assert twin.training == variant.training
    assert loaded.scenario.equivalence_margin == 0.02
    assert len(loaded.scenario.seed_list) >= 10 and variants["dense"].training.epochs >= 30


def test_the_depth_aware_tree_lies_between_the_capacity_aware_and_the_bfs_tree() -> None:
    loaded = load_scenario(PROTOCOL)
    topology = load_topology(ROOT / "topologies" / "mesh14.yaml")
    depth = next(v for v in loaded.variants if v.name == "depth")
    bits = depth.forward_message_bits()
    plans = {
        "dijkstra": build_plan(topology, "dijkstra", bits),
        "depth": build_plan(topology, "dijkstra", bits, hop_cost_s=depth.hop_cost_s),
        "hop": build_plan(topology, "hop", bits),
    }
    edges = {name: set(plan.edges) for name, plan in plans.items()}
    assert edges["depth"] != edges["dijkstra"] and edges["depth"] != edges["hop"]

    def deepest(plan) -> int:  # noqa: ANN001 - hops from the farthest node to the fusion node
        def hops(node: str) -> int:
            parents = plan.parents(node)
            return 0 if not parents else 1 + hops(parents[0])

        return max(hops(node) for node in plan.forward_order())

    assert deepest(plans["hop"]) <= deepest(plans["depth"]) <= deepest(plans["dijkstra"])


@pytest.mark.slow
def test_report_states_paired_differences_and_equivalence_verdicts(tmp_path: Path) -> None:
    results = innet.run(
        PROTOCOL,
        {"training.epochs": 1, "data.test_fraction": 0.5},
        seeds=2,
        out=tmp_path / "run",
        progress=False,
    )
    comparisons = results.summary["comparisons"]
    assert len(comparisons) == 7
    for comparison in comparisons:
        test = comparison["accuracy_equivalence"]
        paired = comparison["accuracy_paired_delta"]
        assert test["test"] == "TOST" and test["margin"] == 0.02 and test["n"] == 2
        assert test["verdict"] in ("equivalent", "not shown equivalent")
        # the 90% interval of TOST sits inside the 95% interval of the paired difference
        assert paired["ci_low"] <= test["ci_low"] <= test["ci_high"] <= paired["ci_high"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert report.count("equivalence within ±2.0 points (TOST") == 7
