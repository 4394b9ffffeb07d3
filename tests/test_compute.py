"""Heterogeneous compute: node FLOP/s add compute time, and the report names the stragglers."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from innet.app.cli import main

SMOKE = ["--scenario", "smoke", "--seeds", "1", "--no-progress", "--set", "training.epochs=1"]


def run(tmp_path, name, *more):
    out = tmp_path / name
    assert main([*SMOKE, "--out", str(out), *more]) == 0
    return out


@pytest.mark.slow
def test_a_slow_relay_shows_in_simulated_time_nodes_csv_and_report(tmp_path):
    plain = run(tmp_path, "plain")
    slow = run(tmp_path, "slow", "--set", 'network.node_flops={"*": 1GFLOPS, r: 1MFLOPS}')
    nodes = pd.read_csv(slow / "nodes.csv").set_index(["variant", "node"])
    relay = nodes.loc[("dijkstra", "r")]
    assert relay["compute_flops"] == 1e6
    batch = 32  # smoke's training batch
    assert relay["forward_s"] == pytest.approx(relay["flops_per_sample"] * batch / 1e6)
    assert relay["backward_s"] == pytest.approx(2 * relay["forward_s"])
    times = {
        out.name: json.loads((out / "summary.json").read_text())["variants"]["dijkstra"][
            "sim_time_s_per_epoch"
        ]
        for out in (plain, slow)
    }
    assert times["slow"] > times["plain"] + relay["forward_s"] + relay["backward_s"]
    report = (slow / "report.md").read_text()
    compute = report[report.index("## Compute") :]
    first_row = [line for line in compute.splitlines() if line.startswith("| dijkstra")][0]
    assert [cell.strip() for cell in first_row.strip("|").split("|")][1] == "r"  # the straggler
    assert "## Compute" not in (plain / "report.md").read_text()


def test_node_flops_for_an_unknown_node_names_the_field(tmp_path, capsys):
    code = main([*SMOKE, "--out", str(tmp_path / "x"), "--set", "network.node_flops={zz: 1GFLOPS}"])
    assert code == 2
    error = capsys.readouterr().err
    assert "network.node_flops.zz" in error and "no node 'zz'" in error
    assert not (tmp_path / "x").exists()
