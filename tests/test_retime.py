"""``retime``: a finished run timed on another network equals a fresh run on that network."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from innet.app.cli import main
from innet.app.scenario import find_scenario, load_scenario
from innet.families import FAMILIES
from innet.families.runs import resolved_config

SCENARIO = """
name: retime_check
topology: {topology}
data: {{dataset: gaussian_mixture, n_samples: 200, n_features: 6, n_classes: 3, views: noisy}}
model: {{latent_dim: 4, hidden: 8}}
gate: {{kind: none}}
training: {{epochs: 2, batch_size: 40}}
network: {{node_flops: {{"*": 50MFLOPS}}}}
variants:
  dense: {{routing: dense}}
  hop: {{routing: hop}}
seeds: 1
"""

TOPOLOGY = """
name: square
defaults: {{capacity: {capacity}, latency: {latency}}}
nodes:
  - {{id: f, role: fusion}}
  - {{id: a, role: sensor}}
  - {{id: b, role: sensor}}
  - {{id: c, role: relay}}
links:
  - [a, f]
  - [b, f]
  - [a, c]
  - [b, c]
  - {{between: [c, f]{extra}}}
"""


def write(tmp_path, name, capacity="10Mbps", latency="1ms", extra=""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(TOPOLOGY.format(capacity=capacity, latency=latency, extra=extra))
    return path


@pytest.mark.slow
def test_retimed_run_equals_a_fresh_run_on_the_changed_topology(tmp_path, capsys):
    slow = write(tmp_path, "slow")
    fast = write(tmp_path, "fast", capacity="1Gbps", latency="20us", extra=", loss: 0.2")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO.format(topology="slow.yaml"))
    assert main(["--scenario", str(scenario), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    assert main(["retime", str(tmp_path / "a"), "--topology", str(fast),
                 "--out", str(tmp_path / "b")]) == 0  # fmt: skip
    assert main(["--scenario", str(scenario), "--topology", str(fast),
                 "--out", str(tmp_path / "c"), "--no-progress"]) == 0  # fmt: skip
    retimed, fresh = tmp_path / "b", tmp_path / "c"
    pd.testing.assert_frame_equal(
        pd.read_parquet(retimed / "exchanges.parquet"), pd.read_parquet(fresh / "exchanges.parquet")
    )
    assert (retimed / "metrics.csv").read_text() == (fresh / "metrics.csv").read_text()
    assert (retimed / "nodes.csv").read_text() == (fresh / "nodes.csv").read_text()
    # and the times really changed: the first run was on 100x slower links
    before = pd.read_csv(tmp_path / "a" / "metrics.csv")["sim_time_s"]
    after = pd.read_csv(retimed / "metrics.csv")["sim_time_s"]
    assert (after < before / 5).all()
    assert slow.exists()


def test_retime_refuses_a_topology_that_changes_the_plans_or_the_graph(tmp_path, capsys):
    write(tmp_path, "base")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO.format(topology="base.yaml").replace("epochs: 2", "epochs: 1"))
    assert main(["--scenario", str(scenario), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    capsys.readouterr()
    other = tmp_path / "other.yaml"
    other.write_text((tmp_path / "base.yaml").read_text().replace("  - [a, c]\n", ""))
    assert main(["retime", str(tmp_path / "a"), "--topology", str(other),
                 "--out", str(tmp_path / "b")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "links differ" in err and "a-c" in err
    assert not (tmp_path / "b").exists()
    assert main(["retime", str(tmp_path / "nowhere"), "--topology", str(other)]) == 2
    assert "not found" in capsys.readouterr().err


def test_retime_names_the_plan_edges_that_would_change_and_records_its_source(tmp_path, capsys):
    """A slow a-f makes the capacity-aware tree send a's latent through c; a uniform
    latency change keeps every plan, and the new run says which run it retimed."""
    write(tmp_path, "base")
    scenario = tmp_path / "scenario.yaml"
    text = SCENARIO.format(topology="base.yaml").replace("epochs: 2", "epochs: 1")
    scenario.write_text(text.replace("hop: {routing: hop}", "tree: {routing: dijkstra}"))
    assert main(["--scenario", str(scenario), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    capsys.readouterr()
    slow_af = tmp_path / "slow_af.yaml"
    base = (tmp_path / "base.yaml").read_text()
    slow_af.write_text(base.replace("  - [a, f]\n", "  - {between: [a, f], capacity: 1kbps}\n"))
    assert main(["retime", str(tmp_path / "a"), "--topology", str(slow_af),
                 "--out", str(tmp_path / "b")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "variant tree's dijkstra plan would change" in err
    assert "(drops a->f; adds a->c, c->f)" in err
    assert not (tmp_path / "b").exists()

    later = write(tmp_path, "later", latency="3ms")
    assert main(["retime", str(tmp_path / "a"), "--topology", str(later),
                 "--out", str(tmp_path / "c")]) == 0  # fmt: skip
    record = json.loads((tmp_path / "c" / "provenance.json").read_text())
    original = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert record["retime_of"] == {
        "run_dir": str((tmp_path / "a").resolve()),
        "topology": str(later.resolve()),
        "provenance": original,
    }
    assert record["started_utc"] >= original["started_utc"]
    times = [pd.read_csv(tmp_path / run / "metrics.csv")["sim_time_s"] for run in "ac"]
    assert (times[1] > times[0]).all()  # 3 ms instead of 1 ms per hop


@pytest.mark.parametrize("name", ["moe_routing", "finite_bank", "dense_vs_dijkstra"])
def test_the_saved_config_reads_back_as_the_same_scenario(tmp_path: Path, name: str) -> None:
    """``config.yaml`` is what retime and report read back: every field by the name users write
    (``router.lambda``, not the attribute ``lam``), and it resolves to the same variants."""
    loaded = load_scenario(find_scenario(name), [], None)
    written = resolved_config(loaded, tmp_path)
    family = FAMILIES.get(loaded.scenario.family)
    again = family.scenario_model(**{**written, "topology": str(loaded.topology_path)})
    variants = family.resolve_variants(again, tmp_path / "config.yaml", None)
    assert [v.model_dump() for v in variants] == [v.model_dump() for v in loaded.variants]
