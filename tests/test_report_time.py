"""Time in the report: time ratio, time to target, busy time and utilisation of links.

Hand-made tables only (no engine): every expected number is worked out here
from the definitions (docs/numbers.md, innet/report/tables.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pandas as pd
import pytest
import yaml
from run_checks import summary_of

from innet.core.records import REQUIRED_EXCHANGE_COLUMNS
from innet.core.topology.model import Topology
from innet.families.runs import open_run, write_run_report
from innet.report import busiest_links
from innet.report.summary import time_to_target
from innet.report.tables import TIME_COLUMNS, link_table, link_totals, undirected_link_totals
from innet.rundir.io import save_topology_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# --- time to target and the time ratio ------------------------------------------------------

# accuracy after each of 3 epochs, per variant and seed; simulated time of every epoch
ACCURACY = {
    "fast": {0: [0.50, 0.70, 0.80], 1: [0.60, 0.75, 0.80]},
    "slow": {0: [0.60, 0.85, 0.90], 1: [0.50, 0.80, 0.90]},
}
EPOCH_TIME = {"fast": {0: 0.1, 1: 0.2}, "slow": {0: 2.0, 1: 3.0}}


def make_metrics() -> pd.DataFrame:
    rows = []
    for variant, seeds in ACCURACY.items():
        for seed, accuracies in seeds.items():
            for epoch, accuracy in enumerate(accuracies):
                seconds = EPOCH_TIME[variant][seed]
                rows.append((variant, seed, epoch, accuracy, seconds, seconds * (epoch + 1)))
    return pd.DataFrame(
        rows, columns=["variant", "seed", "epoch", "accuracy", "sim_time_s", "sim_time_cum_s"]
    )


def test_time_to_target_on_a_hand_made_metrics_table() -> None:
    target, times = time_to_target(make_metrics(), "accuracy", ["fast", "slow"], [0, 1])
    # best final mean: slow's (0.9 + 0.9) / 2 = 0.9; target 90% of it
    assert target == {
        "metric": "accuracy",
        "fraction_of_best": 0.9,
        "best_variant": "slow",
        "best_final_mean": pytest.approx(0.9),
        "target": pytest.approx(0.81),
    }
    # slow, mean over seeds per epoch: 0.55, 0.825, 0.9: reached after epoch 1, at the mean
    # cumulative time (2 * 2.0 + 2 * 3.0) / 2 = 5 s; seed 0 after epoch 1 (4 s), seed 1 after
    # epoch 2 (0.8 < 0.81 after epoch 1; 9 s)
    assert times["slow"] == (pytest.approx(5.0), [pytest.approx(4.0), pytest.approx(9.0)])
    # fast never reaches 0.81 (0.8 at best)
    assert times["fast"] == (None, [None, None])
    assert time_to_target(make_metrics(), None, ["fast"], [0]) == (None, {})
    assert time_to_target(make_metrics(), "mse", ["fast"], [0]) == (None, {})


def write_time_run(run_dir: Path) -> Path:
    """``make_metrics`` as a run directory: one link s - f, one step per epoch."""
    run_dir.mkdir(parents=True)
    config = {
        "name": "timed",
        "seeds": [0, 1],
        "variants": {v: {"routing": "dense", "gate": {"kind": "gaussian"}} for v in ACCURACY},
        "comparisons": [["fast", "slow"]],
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    graph = nx.Graph()
    graph.add_node("f", role="fusion", label="f", pos=(0.0, 0.0), view=None)
    graph.add_node("s", role="sensor", label="s", pos=(1.0, 0.0), view=None)
    graph.add_edge("s", "f", capacity=1e6, latency=1e-3)
    save_topology_json(Topology(name="pair", graph=graph), run_dir / "topology.json")
    plans = {v: {"routing": "dense", "fusion": "f", "edges": [["s", "f"]]} for v in ACCURACY}
    (run_dir / "plans.json").write_text(json.dumps(plans))
    exchanges = pd.DataFrame(
        [(variant, seed, epoch, epoch, "forward", "s", "f", "latent", 1000, 0.0, 0.01, 0.0)
         for variant in ACCURACY for seed in (0, 1) for epoch in range(3)],
        columns=list(REQUIRED_EXCHANGE_COLUMNS),
    )  # fmt: skip
    exchanges.to_parquet(run_dir / "exchanges.parquet", index=False)
    metrics = make_metrics().assign(train_loss=1.0, test_loss=1.0, latent_rate_bits=1.0)
    metrics = metrics.assign(train_bytes=1000, train_bytes_cum=1000 * (metrics["epoch"] + 1))
    metrics.to_csv(run_dir / "metrics.csv", index=False)
    pd.DataFrame(
        [(v, seed, "s", 1.0) for v in ACCURACY for seed in (0, 1)],
        columns=["variant", "seed", "node", "rate_bits"],
    ).to_csv(run_dir / "node_rates.csv", index=False)
    return run_dir


def test_time_ratio_and_time_to_target_in_summary_and_report(tmp_path: Path) -> None:
    run_dir = write_time_run(tmp_path / "run")
    summary = write_run_report(run_dir)
    assert summary["time_to_target"]["target"] == pytest.approx(0.81)
    fast, slow = summary["variants"]["fast"], summary["variants"]["slow"]
    assert fast["sim_time_s_per_seed"] == pytest.approx([0.3, 0.6])
    assert slow["sim_time_s_per_seed"] == pytest.approx([6.0, 9.0])
    assert fast["time_to_target_s"] is None and fast["time_to_target_s_per_seed"] == [None, None]
    assert slow["time_to_target_s"] == pytest.approx(5.0)
    (comparison,) = summary["comparisons"]
    # slow / fast per seed: 6 / 0.3 = 20 and 9 / 0.6 = 15; their geometric mean
    assert comparison["sim_time_ratio"] == pytest.approx(300**0.5)
    assert comparison["sim_time_paired_delta_s"]["mean"] == pytest.approx((5.7 + 8.4) / 2)
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    report = (run_dir / "report.md").read_text()
    assert "simulated training time: 17.3× [" in report
    assert "time to accuracy 0.810: 5 s (slow) vs not reached (fast)." in report
    assert "first reaches 0.810, 90% of the best final mean accuracy (slow's 0.900)" in report
    assert "![Test accuracy against simulated training time](figures/accuracy_vs_time.png)" in (
        report
    )
    assert (run_dir / "figures" / "accuracy_vs_time.png").read_bytes()[:8] == PNG_MAGIC


# --- busy time, utilisation and the bottleneck ----------------------------------------------

STEPS = 4  # training steps per seed
SEEDS = (0, 1)
STEP_TIME = 0.02  # simulated training seconds per step


def bottleneck_run(run_dir: Path) -> Path:
    """A small slow link (s1 - f, 1 Mbps, 1,000 B messages) and a big fast one (s2 - f).

    s2 - f carries 10× the bytes of s1 - f at 100× the capacity, so it leads by
    bytes and s1 - f by utilisation.
    """
    run_dir.mkdir(parents=True)
    config = {"name": "links", "seeds": list(SEEDS), "variants": {"v": {"routing": "dense"}}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    graph = nx.Graph()
    for node, role in (("f", "fusion"), ("s1", "sensor"), ("s2", "sensor")):
        graph.add_node(node, role=role, label=node.upper(), pos=(len(node), 0.0), view=None)
    graph.add_edge("s1", "f", capacity=1e6, latency=5e-3)
    graph.add_edge("s2", "f", capacity=1e8, latency=1e-4)
    save_topology_json(Topology(name="star", graph=graph), run_dir / "topology.json")
    (run_dir / "plans.json").write_text(
        json.dumps({"v": {"routing": "dense", "fusion": "f", "edges": [["s1", "f"], ["s2", "f"]]}})
    )
    rows = []
    for seed in SEEDS:
        for step in range(STEPS):
            for sensor, nbytes in (("s1", 1000), ("s2", 10_000)):
                rows.append(("v", seed, step // 2, step, "forward", sensor, "f", "latent",
                             nbytes, 0.0, 0.0, 0.0))  # fmt: skip
                rows.append(("v", seed, step // 2, step, "backward", "f", sensor, "grad",
                             nbytes, 0.0, 0.0, 0.0))  # fmt: skip
            rows.append(("v", seed, 0, 0, "eval", "s2", "f", "latent", 99_999, 0.0, 0.0, 0.0))
    pd.DataFrame(rows, columns=list(REQUIRED_EXCHANGE_COLUMNS)).to_parquet(
        run_dir / "exchanges.parquet", index=False
    )
    # two epochs of two steps: STEP_TIME per step
    metrics = pd.DataFrame(
        [("v", seed, epoch, 1.0, 1.0, 0.5, 1.0, 0, 0, 2 * STEP_TIME, 2 * STEP_TIME * (epoch + 1))
         for seed in SEEDS for epoch in (0, 1)],
        columns=["variant", "seed", "epoch", "train_loss", "test_loss", "accuracy",
                 "latent_rate_bits", "train_bytes", "train_bytes_cum", "sim_time_s",
                 "sim_time_cum_s"],
    )  # fmt: skip
    metrics.to_csv(run_dir / "metrics.csv", index=False)
    pd.DataFrame(
        [("v", seed, node, 1.0) for seed in SEEDS for node in ("s1", "s2")],
        columns=["variant", "seed", "node", "rate_bits"],
    ).to_csv(run_dir / "node_rates.csv", index=False)
    return run_dir


def test_utilisation_is_busy_time_over_step_time(tmp_path: Path) -> None:
    table = link_table(open_run(bottleneck_run(tmp_path / "run"))[0])
    assert list(table.columns[-len(TIME_COLUMNS) :]) == TIME_COLUMNS
    row = table[(table["src"] == "s1") & (table["phase"] == "forward")].iloc[0]
    # one 1,000 B message per step: 8,000 bits at 1 Mbps
    assert row["capacity_bps"] == 1e6 and row["latency_s"] == 5e-3
    assert row["busy_s_per_step"] == pytest.approx(8 * 1000 / 1e6)
    assert row["step_time_s"] == pytest.approx(STEP_TIME)
    assert row["utilisation"] == pytest.approx(0.008 / 0.02)  # 40%
    fast = table[(table["src"] == "s2") & (table["phase"] == "forward")].iloc[0]
    assert fast["utilisation"] == pytest.approx(8 * 10_000 / 1e8 / STEP_TIME)  # 4%
    # gradients come back over the other direction, just as busy
    back = table[(table["dst"] == "s1") & (table["phase"] == "backward")].iloc[0]
    assert back["utilisation"] == pytest.approx(0.4)
    # evaluation traffic is not part of a training step
    evaluation = table[table["phase"] == "eval"].iloc[0]
    assert pd.isna(evaluation["busy_s_per_step"]) and pd.isna(evaluation["utilisation"])
    assert evaluation["capacity_bps"] == 1e8


def test_retransmitted_copies_keep_the_link_busy(tmp_path: Path) -> None:
    run = open_run(bottleneck_run(tmp_path / "run"))[0]
    exchanges = run.exchanges.copy()
    slow_forward = (exchanges["src"] == "s1") & (exchanges["phase"] == "forward")
    exchanges["attempts"] = 1 + (slow_forward & (exchanges["step"] == 0)).astype("int64")
    exchanges["lost"] = slow_forward & (exchanges["step"] == 3)  # lost: no network time
    table = link_totals(
        exchanges, run.topology, train_time_s=pd.Series({"v": 2 * STEPS * STEP_TIME})
    )
    row = table[(table["src"] == "s1") & (table["phase"] == "forward")].iloc[0]
    # per seed: steps 0 (2 copies), 1, 2 (1 copy each), 3 (lost): 4 copies in 4 steps
    assert row["busy_s_per_step"] == pytest.approx(4 * 0.008 / 4)


def test_busiest_links_rank_by_utilisation_not_bytes(tmp_path: Path) -> None:
    run_dir = bottleneck_run(tmp_path / "run")
    table = link_table(open_run(run_dir)[0])
    by_bytes = busiest_links(table, by="nbytes_per_seed")
    by_utilisation = busiest_links(table)  # the default
    assert list(zip(by_bytes["u"], by_bytes["v"], strict=True)) == [("f", "s2"), ("f", "s1")]
    assert list(zip(by_utilisation["u"], by_utilisation["v"], strict=True)) == [
        ("f", "s1"),
        ("f", "s2"),
    ]
    top = by_utilisation.iloc[0]
    assert top["utilisation"] == pytest.approx(0.4) and top["busy_s_per_step"] == 0.008
    assert top["balanced"]  # latents one way, gradients of the same size the other
    links = undirected_link_totals(table)
    assert set(links["bottleneck_src"]) == {"s1", "s2"}  # forward direction on ties
    write_run_report(run_dir)
    busiest = (run_dir / "report.md").read_text().split("## Busiest links")[1].split("\n## ")[0]
    rows = [line for line in busiest.splitlines() if line.startswith("| v ")]
    assert "F – S1" in rows[0] and "1 Mbps" in rows[0] and "40.0%" in rows[0]
    assert "F – S2" in rows[1] and "100 Mbps" in rows[1] and "4.0%" in rows[1]
    assert "simulated training time per step 20 ms; bottleneck F – S1 (1 Mbps) at 40.0%" in (
        busiest
    )


def test_an_unbalanced_link_names_its_busier_direction(tmp_path: Path) -> None:
    run = open_run(bottleneck_run(tmp_path / "run"))[0]
    exchanges = run.exchanges
    exchanges = exchanges[~((exchanges["dst"] == "s1") & (exchanges["phase"] == "backward"))]
    exchanges = pd.concat(
        [exchanges, exchanges[(exchanges["src"] == "s1")].assign(src="f", dst="s1",
                                                                  phase="backward", nbytes=3000)]
    )  # fmt: skip
    table = link_totals(exchanges, run.topology, train_time_s=pd.Series({"v": 0.16}))
    link = undirected_link_totals(table).set_index(["u", "v"]).loc[("f", "s1")]
    assert (link["bottleneck_src"], link["bottleneck_dst"]) == ("f", "s1")
    assert not link["balanced"]
    assert link["utilisation"] == pytest.approx(8 * 3000 / 1e6 / STEP_TIME)


def test_links_csv_without_a_topology_keeps_its_columns() -> None:
    exchanges = pd.DataFrame(
        [("v", 0, 0, 0, "forward", "s", "f", "latent", 10, 0.0, 0.0, 0.0)],
        columns=list(REQUIRED_EXCHANGE_COLUMNS),
    )
    assert not set(TIME_COLUMNS) & set(link_totals(exchanges).columns)
    assert "utilisation" not in busiest_links(link_totals(exchanges)).columns


def test_links_csv_carries_capacity_latency_busy_time_and_utilisation(tmp_path: Path) -> None:
    run_dir = bottleneck_run(tmp_path / "run")
    write_run_report(run_dir)
    links = pd.read_csv(run_dir / "links.csv")
    assert list(links.columns[-len(TIME_COLUMNS) :]) == TIME_COLUMNS
    assert links["utilisation"].max() == pytest.approx(0.4)


def test_a_flat_accuracy_reaches_the_target_after_the_first_epoch(tmp_path: Path) -> None:
    summary = summary_of(bottleneck_run(tmp_path / "run"))  # 0.5 in every epoch
    assert summary["time_to_target"]["target"] == pytest.approx(0.45)
    assert summary["variants"]["v"]["time_to_target_s"] == pytest.approx(2 * STEP_TIME)
    assert summary["comparisons"] == []
