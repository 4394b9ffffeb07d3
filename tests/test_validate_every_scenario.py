"""``validate`` and ``plan`` work on every shipped scenario, whatever its family.

Each family answers through its own hooks (:meth:`innet.families.family.Family.check`
and :meth:`~innet.families.family.Family.plans`), so the command line never
needs to know which family a scenario belongs to.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from innet.app.cli import main
from innet.app.scenario import SHIPPED_SCENARIOS
from innet.families import DEFAULT_FAMILY, FAMILIES

SCENARIOS = sorted(SHIPPED_SCENARIOS.glob("*.yaml"))
QUICK = {"dense_vs_dijkstra", "moe_routing", "finite_bank"}  # one of each family


def _params(quick: bool) -> list[Any]:
    return [pytest.param(path, id=path.stem) for path in SCENARIOS if (path.stem in QUICK) == quick]


def _validate_and_plan(path, capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: scenario" in out and "  training: " in out
    assert main(["plan", str(path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["family"] in FAMILIES
    assert document["variants"] and all(document["variants"].values())


@pytest.mark.parametrize("path", _params(quick=True))
def test_validate_and_plan_one_scenario_of_each_family(path, capsys) -> None:
    _validate_and_plan(path, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("path", _params(quick=False))
def test_validate_and_plan_every_other_shipped_scenario(path, capsys) -> None:
    _validate_and_plan(path, capsys)


def test_the_quick_scenarios_are_shipped_and_the_default_family_comes_first() -> None:
    assert {path.stem for path in SCENARIOS} >= QUICK
    assert FAMILIES.names()[0] == DEFAULT_FAMILY


def test_plan_of_a_scenario_prints_each_variants_plan(capsys) -> None:
    assert main(["plan", "dense_vs_dijkstra"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("plans of scenario 'dense_vs_dijkstra' (family inl)")
    assert "  dense: dense plan towards" in out and "  dijkstra: dijkstra plan towards" in out


def test_plan_of_a_scenario_refuses_topology_options(capsys) -> None:
    assert main(["plan", "dense_vs_dijkstra", "--routing", "hop"]) == 2
    err = capsys.readouterr().err
    assert "a scenario; --routing apply to topologies" in err


def test_a_scenario_without_family_belongs_to_the_default_family(capsys) -> None:
    scenario = (SHIPPED_SCENARIOS / "dense_vs_dijkstra.yaml").read_text()
    assert "family:" not in scenario
    assert main(["validate", "dense_vs_dijkstra"]) == 0
    assert f"  family: {DEFAULT_FAMILY}\n" in capsys.readouterr().out
