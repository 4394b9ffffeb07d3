"""Tests of the report layer on a synthetic run directory (no engine, no training).

The fixture writes the raw tables a runner would write for a 4-node network,
two variants (dense and dijkstra), two seeds and two epochs; every expected
number below is recomputed from those tables by hand.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import networkx as nx
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from run_checks import summary_of

from innet.core.errors import InnetError
from innet.core.records import REQUIRED_EXCHANGE_COLUMNS
from innet.core.topology.model import Topology
from innet.families import FAMILIES
from innet.families.runs import open_run, write_run_report
from innet.report import (
    busiest_links,
    comparison_pairs,
    format_bytes,
    format_seconds,
    headline_table,
    link_totals,
    links_used,
    reduction,
    training_exchange,
)
from innet.report.figures import node_positions
from innet.report.sections import compute_section
from innet.rundir.io import load_topology_json, save_topology_json

SEEDS = (0, 1)
EPOCHS = (0, 1)
STEPS_PER_EPOCH = 2
PLANS = {
    "dense": [("r", "f"), ("s1", "f"), ("s1", "r"), ("s2", "r")],
    "dijkstra": [("r", "f"), ("s1", "f"), ("s2", "r")],
}
# accuracy[variant][seed] per epoch; latent rate per variant and seed (final epoch)
ACCURACY = {
    "dense": {0: [0.60, 0.80], 1: [0.62, 0.84]},
    "dijkstra": {0: [0.58, 0.79], 1: [0.61, 0.83]},
}
LATENT_RATE = {"dense": {0: 10.0, 1: 12.0}, "dijkstra": {0: 8.0, 1: 9.0}}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_topology() -> Topology:
    graph = nx.Graph()
    for node, role, pos in [
        ("f", "fusion", (0.0, 0.0)),
        ("r", "relay", (1.0, 0.0)),
        ("s1", "sensor", (1.0, 1.0)),
        ("s2", "sensor", (2.0, 0.0)),
    ]:
        graph.add_node(node, role=role, label=node.upper(), pos=pos, view=None)
    for u, v, capacity in [("s1", "f", 1e6), ("s1", "r", 1e7), ("s2", "r", 1e7), ("r", "f", 1e8)]:
        graph.add_edge(u, v, capacity=capacity, latency=1e-3)
    return Topology(name="diamond", graph=graph, source=Path("topologies/diamond.yaml"))


def make_exchanges() -> pd.DataFrame:
    """Forward latent and backward gradient per plan edge and step, plus eval traffic."""
    rows = []
    for variant, edges in PLANS.items():
        for seed in SEEDS:
            for epoch in EPOCHS:
                for k in range(STEPS_PER_EPOCH):
                    step = epoch * STEPS_PER_EPOCH + k
                    for index, (sender, receiver) in enumerate(edges):
                        nbytes = 128 * (index + 1) + seed  # seed-dependent sizes
                        t = step * 0.01 + index * 1e-4
                        rows.append(
                            (variant, seed, epoch, step, "forward", sender, receiver, "latent",
                             nbytes, t, t + 2e-3, 0.0)
                        )  # fmt: skip
                        rows.append(
                            (variant, seed, epoch, step, "backward", receiver, sender, "grad",
                             nbytes, t + 3e-3, t + 5e-3, 1e-4)
                        )  # fmt: skip
                for sender, receiver in edges:  # evaluation: never part of training exchange
                    rows.append(
                        (variant, seed, epoch, 0, "eval", sender, receiver, "latent",
                         10_000, 0.0, 1e-3, 0.0)
                    )  # fmt: skip
    exchanges = pd.DataFrame(rows, columns=list(REQUIRED_EXCHANGE_COLUMNS))
    return exchanges.astype({"nbytes": "int64", "seed": "int64", "epoch": "int64", "step": "int64"})


def make_metrics() -> pd.DataFrame:
    rows = []
    for variant in PLANS:
        for seed in SEEDS:
            for epoch in EPOCHS:
                rate = LATENT_RATE[variant][seed] + (1 - epoch) * 5.0
                sim_time = 0.02 + 0.001 * epoch + 0.002 * seed
                rows.append(
                    (variant, seed, epoch, 1.0, 1.1, ACCURACY[variant][seed][epoch], rate,
                     1000, 1000 * (epoch + 1), sim_time, sim_time * (epoch + 1))
                )  # fmt: skip
    columns = [
        "variant", "seed", "epoch", "train_loss", "test_loss", "accuracy", "latent_rate_bits",
        "train_bytes", "train_bytes_cum", "sim_time_s", "sim_time_cum_s",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def make_node_rates() -> pd.DataFrame:
    rows = [
        (variant, seed, node, LATENT_RATE[variant][seed] / 3 + offset)
        for variant in PLANS
        for seed in SEEDS
        for offset, node in enumerate(["r", "s1", "s2"])
    ]
    return pd.DataFrame(rows, columns=["variant", "seed", "node", "rate_bits"])


def write_run(run_dir: Path, *, config_extra: dict | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "name": "dense_vs_dijkstra",
        "seeds": list(SEEDS),
        "variants": {
            "dense": {"routing": "dense", "gate": {"kind": "gaussian", "beta": 0.0}},
            "dijkstra": {"routing": "dijkstra", "gate": {"kind": "gaussian", "beta": 0.0}},
        },
        "comparisons": [],
        **(config_extra or {}),
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    save_topology_json(make_topology(), run_dir / "topology.json")
    plans = {
        variant: {"routing": variant, "fusion": "f", "edges": [list(e) for e in edges]}
        for variant, edges in PLANS.items()
    }
    (run_dir / "plans.json").write_text(json.dumps(plans))
    exchanges = make_exchanges()
    exchanges.to_parquet(run_dir / "exchanges.parquet", index=False)
    exchanges.to_csv(run_dir / "exchanges.csv", index=False)
    make_metrics().to_csv(run_dir / "metrics.csv", index=False)
    make_node_rates().to_csv(run_dir / "node_rates.csv", index=False)
    return run_dir


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run")


def training_rows(variant: str) -> pd.DataFrame:
    exchanges = make_exchanges()
    return exchanges[
        (exchanges["variant"] == variant) & exchanges["phase"].isin(["forward", "backward"])
    ]


def test_train_exchange_bytes_equal_the_sums_of_the_exchange_records(run_dir: Path) -> None:
    summary = summary_of(run_dir)
    for variant in PLANS:
        rows = training_rows(variant)
        per_seed = [int(rows.loc[rows["seed"] == seed, "nbytes"].sum()) for seed in SEEDS]
        entry = summary["variants"][variant]
        assert entry["train_exchange_bytes_per_seed"] == per_seed
        assert Fraction(entry["train_exchange_bytes"]) == Fraction(sum(per_seed), len(SEEDS))
        assert isinstance(entry["train_exchange_bytes"], int) == (sum(per_seed) % len(SEEDS) == 0)


def test_reductions_are_one_minus_b_over_a(run_dir: Path) -> None:
    summary = summary_of(run_dir)
    dense, dijkstra = summary["variants"]["dense"], summary["variants"]["dijkstra"]
    (comparison,) = summary["comparisons"]
    exchange_a = training_rows("dense")["nbytes"].sum() / len(SEEDS)
    exchange_b = training_rows("dijkstra")["nbytes"].sum() / len(SEEDS)
    assert comparison["exchange_reduction"] == pytest.approx(1 - exchange_b / exchange_a)
    assert 0 < comparison["exchange_reduction"] < 1
    rate_a = statistics.fmean(LATENT_RATE["dense"].values())
    rate_b = statistics.fmean(LATENT_RATE["dijkstra"].values())
    assert dense["latent_rate_bits"] == pytest.approx(rate_a)  # final epoch, not the first
    assert comparison["rate_reduction"] == pytest.approx(1 - rate_b / rate_a)
    assert comparison["accuracy_delta"] == pytest.approx(
        dijkstra["accuracy_mean"] - dense["accuracy_mean"]
    )


def test_accuracy_is_final_epoch_with_sample_std(run_dir: Path) -> None:
    summary = summary_of(run_dir)
    final = [ACCURACY["dense"][seed][-1] for seed in SEEDS]
    entry = summary["variants"]["dense"]
    assert entry["accuracy_per_seed"] == final
    assert entry["accuracy_mean"] == pytest.approx(statistics.fmean(final))
    assert entry["accuracy_std"] == pytest.approx(statistics.stdev(final))  # ddof=1
    assert entry["accuracy_std"] != pytest.approx(statistics.pstdev(final))


def test_one_seed_has_no_std(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", config_extra={"seeds": [0]})
    summary = summary_of(run_dir)
    assert summary["seeds"] == [0]
    assert summary["variants"]["dense"]["accuracy_std"] is None  # null: docs/numbers.md
    # ... but no criterion is decided on it (tests/test_report_stats.py)
    assert summary["comparisons"][0]["accuracy_within_one_std"] is None


def test_within_one_std_uses_a_std(run_dir: Path) -> None:
    summary = summary_of(run_dir)
    (comparison,) = summary["comparisons"]
    std_a = summary["variants"]["dense"]["accuracy_std"]
    assert comparison["accuracy_within_one_std"] == (abs(comparison["accuracy_delta"]) <= std_a)
    assert comparison["accuracy_within_one_std"] is True  # |0.795-0.82| = 0.025 <= 0.028


def test_links_used_counts_undirected_links(run_dir: Path) -> None:
    summary = summary_of(run_dir)
    # both directions of every plan edge carry records; eval rows do not count
    assert summary["variants"]["dense"]["links_used"] == 4
    assert summary["variants"]["dijkstra"]["links_used"] == 3
    assert links_used(make_exchanges())["dense", 0] == 4


def test_comparisons_default_to_first_against_each_other() -> None:
    variants = ["dense", "dijkstra", "dijkstra_rate"]
    assert comparison_pairs({}, variants) == [
        ("dense", "dijkstra"),
        ("dense", "dijkstra_rate"),
    ]
    assert comparison_pairs({"comparisons": []}, variants)[0] == ("dense", "dijkstra")
    explicit = {"comparisons": [["dense", "dijkstra"], ["dijkstra", "dijkstra_rate"]]}
    assert comparison_pairs(explicit, variants) == [
        ("dense", "dijkstra"),
        ("dijkstra", "dijkstra_rate"),
    ]
    with pytest.raises(InnetError, match="unknown variant 'nope'"):
        comparison_pairs({"comparisons": [["dense", "nope"]]}, variants)


def test_configured_comparisons_are_used(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", config_extra={"comparisons": [["dijkstra", "dense"]]})
    (comparison,) = summary_of(run_dir)["comparisons"]
    assert (comparison["a"], comparison["b"]) == ("dijkstra", "dense")
    assert comparison["exchange_reduction"] < 0  # dense sends more than dijkstra


def test_summary_is_plain_json_with_required_keys(run_dir: Path) -> None:
    summary = summary_of(run_dir)
    reloaded = json.loads(json.dumps(summary, allow_nan=False))
    assert reloaded == summary
    assert summary["scenario"] == "dense_vs_dijkstra"
    assert summary["family"] == "inl"  # the config names none: the default family
    assert summary["seeds"] == [0, 1]
    types = {
        "routing": str,
        "accuracy_mean": float,
        "accuracy_std": float,
        "train_exchange_bytes": (int, float),
        "latent_rate_bits": float,
        "sim_time_s_per_epoch": float,
        "links_used": int,
        "gate": str,
        "beta": float,
        "accuracy_per_seed": list,
        "train_exchange_bytes_per_seed": list,
        "node_rates_bits": dict,
    }
    for entry in summary["variants"].values():
        for key, expected in types.items():
            assert isinstance(entry[key], expected), key
    assert summary["variants"]["dense"]["node_rates_bits"] == pytest.approx(
        {"r": 11 / 3, "s1": 11 / 3 + 1, "s2": 11 / 3 + 2}
    )
    metrics = make_metrics()
    assert summary["variants"]["dense"]["sim_time_s_per_epoch"] == pytest.approx(
        metrics.loc[metrics["variant"] == "dense", "sim_time_s"].mean()
    )
    for comparison in summary["comparisons"]:
        assert set(comparison) >= {
            "a", "b", "exchange_reduction", "rate_reduction", "accuracy_delta",
            "accuracy_within_one_std",
        }  # fmt: skip
        assert isinstance(comparison["accuracy_within_one_std"], bool)


def test_reduction_is_null_when_a_is_zero() -> None:
    assert reduction(0, 5) is None
    assert reduction(None, 5) is None
    assert reduction(200, 50) == pytest.approx(0.75)
    assert reduction(100, 150) == pytest.approx(-0.5)


def test_link_totals_divide_by_the_number_of_seeds() -> None:
    exchanges = make_exchanges()
    totals = link_totals(exchanges)
    row = totals[
        (totals["variant"] == "dense")
        & (totals["src"] == "s1")
        & (totals["dst"] == "f")
        & (totals["phase"] == "forward")
    ].iloc[0]
    expected = exchanges[
        (exchanges["variant"] == "dense")
        & (exchanges["src"] == "s1")
        & (exchanges["dst"] == "f")
        & (exchanges["phase"] == "forward")
    ]
    assert row["messages"] == len(expected)
    assert row["nbytes"] == expected["nbytes"].sum()
    assert row["nbytes_per_seed"] == pytest.approx(expected["nbytes"].sum() / len(SEEDS))
    assert totals["nbytes"].sum() == exchanges["nbytes"].sum()


def test_busiest_links_rank_undirected_training_traffic() -> None:
    table = busiest_links(link_totals(make_exchanges()), n=2)
    dense = table[table["variant"] == "dense"]
    assert list(dense["rank"]) == [1, 2]
    assert list(dense["nbytes_per_seed"]) == sorted(dense["nbytes_per_seed"], reverse=True)
    # the 4th plan edge (s2, r) has the largest messages; both directions are summed
    top = dense.iloc[0]
    assert (top["u"], top["v"]) == ("r", "s2")
    rows = training_rows("dense")
    on_link = rows[rows[["src", "dst"]].apply(set, axis=1) == {"r", "s2"}]
    assert top["nbytes_per_seed"] == pytest.approx(on_link["nbytes"].sum() / len(SEEDS))
    assert top["share"] == pytest.approx(on_link["nbytes"].sum() / rows["nbytes"].sum())


node_ids = st.sampled_from(["f", "r", "s1", "s2", "n10"])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.integers(0, 2),
            st.sampled_from(["forward", "backward", "eval"]),
            node_ids,
            node_ids,
            st.integers(0, 10**9),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_tables_account_for_every_training_byte(records: list[tuple]) -> None:
    exchanges = pd.DataFrame(
        [
            (variant, seed, 0, 0, phase, src, dst, "latent", nbytes, 0.0, 0.0, 0.0)
            for variant, seed, phase, src, dst, nbytes in records
        ],
        columns=list(REQUIRED_EXCHANGE_COLUMNS),
    ).astype({"nbytes": "int64"})
    training = exchanges[exchanges["phase"] != "eval"]
    per_seed = training_exchange(exchanges)
    assert int(per_seed.sum()) == int(training["nbytes"].sum())
    totals = link_totals(exchanges)
    assert int(totals["nbytes"].sum()) == int(exchanges["nbytes"].sum())
    for variant, group in exchanges.groupby("variant"):
        seeds = group["seed"].nunique()
        mine = totals[totals["variant"] == variant]
        assert mine["nbytes_per_seed"].sum() == pytest.approx(group["nbytes"].sum() / seeds)


def test_headline_table_has_one_row_per_variant(run_dir: Path) -> None:
    summary = summary_of(run_dir)
    table = headline_table(summary, FAMILIES.get("inl").report)
    lines = table.splitlines()
    assert len(lines) == 2 + len(PLANS)
    assert lines[0].startswith("| variant")
    assert "training exchange" in lines[0]
    exchange = summary["variants"]["dense"]["train_exchange_bytes"]
    assert f"{exchange:,} B" in lines[2]
    reduction_pct = f"{100 * summary['comparisons'][0]['exchange_reduction']:.1f}%"
    assert reduction_pct in lines[3]
    assert len({len(line) for line in lines}) == 1  # padded: aligned in a terminal


def test_report_has_headline_table_and_std_sentence(run_dir: Path) -> None:
    write_run_report(run_dir)
    report = (run_dir / "report.md").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert headline_table(summary, FAMILIES.get("inl").report) in report
    assert "The letter's criterion: within one standard deviation of dense's accuracy" in report
    assert "sample standard deviation over 2 seeds" in report
    assert "95% t interval" in report and "Seeds are paired across variants" in report
    assert "figures/accuracy_vs_time.png" in report
    assert "## How to read these numbers" in report
    assert "`S2 → R`" in report  # plans name nodes by label (the test topology: upper case)
    assert "![Topology and training traffic of dijkstra](figures/topology_dijkstra.png)" in report
    assert "figures/accuracy_vs_bytes.png" in report


def test_write_report_writes_valid_pngs_and_is_idempotent(run_dir: Path) -> None:
    first = write_run_report(run_dir)
    names = {
        "topology_dense.png",
        "topology_dijkstra.png",
        "accuracy_vs_bytes.png",
        "accuracy_vs_time.png",
        "latent_rate_per_node.png",
    }
    assert {path.name for path in (run_dir / "figures").iterdir()} == names
    for name in names:
        assert (run_dir / "figures" / name).read_bytes()[:8] == PNG_MAGIC
    report = (run_dir / "report.md").read_text()
    second = write_run_report(run_dir)
    assert second == first
    assert json.loads((run_dir / "summary.json").read_text()) == first
    assert (run_dir / "report.md").read_text() == report
    links = pd.read_csv(run_dir / "links.csv")
    # the columns links.csv always had come first (the time columns: test_report_time.py)
    assert list(links.columns)[:11] == [
        "variant", "src", "dst", "phase", "payload", "messages", "nbytes", "nbytes_per_seed",
        "retransmissions", "retransmitted_bytes", "retransmitted_bytes_per_seed",
    ]  # fmt: skip
    assert (links["retransmitted_bytes"] == 0).all()  # no attempts column: nothing resent
    assert links["nbytes"].sum() == make_exchanges()["nbytes"].sum()


@pytest.mark.parametrize(
    "name",
    ["config.yaml", "topology.json", "plans.json", "metrics.csv", "node_rates.csv"],
)
def test_missing_file_raises_innet_error_naming_it(run_dir: Path, name: str) -> None:
    (run_dir / name).unlink()
    with pytest.raises(InnetError, match=name.replace(".", r"\.")):
        open_run(run_dir)[0]


def test_missing_or_corrupt_exchanges_are_named(run_dir: Path) -> None:
    (run_dir / "exchanges.parquet").unlink()
    assert open_run(run_dir)[0].exchanges.equals(open_run(run_dir)[0].exchanges)  # csv fallback
    assert open_run(run_dir)[0].exchanges["nbytes"].sum() == make_exchanges()["nbytes"].sum()
    (run_dir / "exchanges.csv").unlink()
    with pytest.raises(InnetError, match=r"exchanges\.parquet"):
        open_run(run_dir)[0]
    (run_dir / "exchanges.parquet").write_bytes(b"not parquet")
    with pytest.raises(InnetError, match=r"exchanges\.parquet: cannot read"):
        open_run(run_dir)[0]


def test_missing_columns_are_named(run_dir: Path) -> None:
    make_metrics().drop(columns=["accuracy"]).to_csv(run_dir / "metrics.csv", index=False)
    with pytest.raises(InnetError, match=r"metrics\.csv: missing columns accuracy"):
        open_run(run_dir)[0]


def test_topology_json_round_trip(tmp_path: Path) -> None:
    topology = make_topology()
    topology.graph.add_node("7", role="relay", label="seven", pos=None, compute=2e9, tx_ports=1)
    topology.graph.add_edge("7", "f", capacity=5e6, latency=0.0)
    path = tmp_path / "topology.json"
    save_topology_json(topology, path)
    assert json.loads(path.read_text())["nodes"][0]["pos"] == [0.0, 0.0]
    loaded = load_topology_json(path)
    assert loaded.name == "diamond"
    assert loaded.source == Path("topologies/diamond.yaml")
    assert loaded.fusion == "f"
    assert loaded.nodes == topology.nodes
    assert dict(loaded.graph.nodes(data=True)) == dict(topology.graph.nodes(data=True))
    assert nx.utils.edges_equal(loaded.graph.edges(data=True), topology.graph.edges(data=True))
    assert loaded.graph.nodes["s1"]["pos"] == (1.0, 1.0)


def test_node_positions_fall_back_to_a_seeded_layout() -> None:
    topology = make_topology()
    assert node_positions(topology)["s2"] == (2.0, 0.0)
    topology.graph.nodes["s2"]["pos"] = None
    layout = node_positions(topology)
    assert set(layout) == set(topology.nodes)
    assert layout == node_positions(topology)  # seed=0: deterministic


def test_formatting_helpers() -> None:
    assert format_bytes(999) == "999 B"
    assert format_bytes(1_234_567) == "1.23 MB"
    assert format_bytes(999_999) == "1 MB"
    assert format_bytes(12_500) == "12.5 kB"
    assert format_seconds(0.0123) == "12.3 ms"
    assert format_seconds(2.5) == "2.5 s"
    assert format_seconds(None) == "n/a"


# --- retransmissions on lossy links ------------------------------------------------------------


def attempts_of(exchanges: pd.DataFrame) -> pd.Series:
    """Copies sent: forward latents on s1-f lost once every other step, eval never."""
    lossy = (
        (exchanges["phase"] == "forward") & (exchanges["src"] == "s1") & (exchanges["dst"] == "f")
    )
    return (
        1 + (lossy & (exchanges["step"] % 2 == 0)) + 2 * (lossy & (exchanges["step"] == 3))
    ).astype("int64")


def write_lossy_run(run_dir: Path, *, csv_only: bool = False) -> pd.DataFrame:
    write_run(run_dir)
    exchanges = make_exchanges()
    exchanges["attempts"] = attempts_of(exchanges)
    exchanges.to_csv(run_dir / "exchanges.csv", index=False)
    if csv_only:
        (run_dir / "exchanges.parquet").unlink()
    else:
        exchanges.to_parquet(run_dir / "exchanges.parquet", index=False)
    topology = make_topology()
    topology.graph.edges["s1", "f"]["loss"] = 0.25
    save_topology_json(topology, run_dir / "topology.json")
    return exchanges


def test_runs_without_attempts_read_as_one_copy_each(run_dir: Path) -> None:
    run = open_run(run_dir)[0]
    assert (run.exchanges["attempts"] == 1).all()
    assert run.exchanges["attempts"].dtype == "int64"
    summary = write_run_report(run_dir)
    assert {entry["retransmitted_bytes"] for entry in summary["variants"].values()} == {0}
    assert summary["variants"]["dense"]["retransmitted_bytes_per_seed"] == [0, 0]
    report = (run_dir / "report.md").read_text()
    assert "## Retransmissions" not in report
    assert "retransmitted / seed" not in report


@pytest.mark.parametrize("csv_only", [False, True])
def test_retransmitted_bytes_per_link_and_variant(tmp_path: Path, csv_only: bool) -> None:
    run_dir = tmp_path / "run"
    exchanges = write_lossy_run(run_dir, csv_only=csv_only)
    summary = write_run_report(run_dir)
    extra = (exchanges["attempts"] - 1) * exchanges["nbytes"]
    training = exchanges["phase"] != "eval"
    for variant in PLANS:
        mine = training & (exchanges["variant"] == variant)
        per_seed = [int(extra[mine & (exchanges["seed"] == seed)].sum()) for seed in SEEDS]
        assert per_seed[0] > 0
        entry = summary["variants"][variant]
        assert entry["retransmitted_bytes_per_seed"] == per_seed
        assert entry["retransmitted_bytes"] == pytest.approx(sum(per_seed) / len(SEEDS))
        # the training exchange is what the nodes sent, without the copies
        assert entry["train_exchange_bytes_per_seed"] == [
            int(exchanges.loc[mine & (exchanges["seed"] == seed), "nbytes"].sum()) for seed in SEEDS
        ]
    links = pd.read_csv(run_dir / "links.csv")
    assert links["retransmitted_bytes"].sum() == extra.sum()
    assert links["retransmissions"].sum() == (exchanges["attempts"] - 1).sum()
    resent = links[links["retransmitted_bytes"] > 0]
    assert set(zip(resent["src"], resent["dst"], resent["phase"], strict=True)) == {
        ("s1", "f", "forward")
    }
    row = resent[resent["variant"] == "dense"].iloc[0]
    assert row["retransmitted_bytes_per_seed"] == pytest.approx(row["retransmitted_bytes"] / 2)
    report = (run_dir / "report.md").read_text()
    assert "## Retransmissions" in report
    assert "1 of them lose messages (loss 25%)" in report
    assert "- **Retransmitted bytes**" in report
    assert format_bytes(summary["variants"]["dense"]["retransmitted_bytes"]) in report
    assert "| retransmitted / seed |" in report.replace("  ", "")
    assert "F – S1" in report  # the lossiest link, by label
    assert summary_of(run_dir) == summary


def test_lossy_links_round_trip_through_topology_json(tmp_path: Path) -> None:
    topology = make_topology()
    topology.graph.edges["s1", "r"]["loss"] = 0.05
    save_topology_json(topology, tmp_path / "topology.json")
    loaded = load_topology_json(tmp_path / "topology.json")
    assert loaded.graph.edges["s1", "r"]["loss"] == 0.05
    assert "loss" not in loaded.graph.edges["s1", "f"]


def test_busiest_links_by_retransmitted_bytes() -> None:
    exchanges = make_exchanges()
    exchanges["attempts"] = attempts_of(exchanges)
    table = busiest_links(link_totals(exchanges), n=1, by="retransmitted_bytes_per_seed")
    assert list(table["variant"]) == list(PLANS)
    assert set(zip(table["u"], table["v"], strict=True)) == {("f", "s1")}
    assert (table["retransmitted_bytes_per_seed"] > 0).all()


# --- large networks ------------------------------------------------------------------------


def write_large_run(run_dir: Path, n_nodes: int = 400) -> Topology:
    """A random geometric network without positions; dense and a BFS tree; one seed."""
    geometric = nx.random_geometric_graph(n_nodes, 0.09, seed=1)
    geometric = geometric.subgraph(max(nx.connected_components(geometric), key=len))
    graph = nx.Graph()
    fusion = min(geometric.nodes)
    for node in sorted(geometric.nodes):
        role = "fusion" if node == fusion else "sensor" if node % 7 == 0 else "relay"
        graph.add_node(f"n{node}", role=role, label=f"n{node}", pos=None, view=None)
    for u, v in geometric.edges:
        graph.add_edge(f"n{u}", f"n{v}", capacity=1e6 * (1 + (u + v) % 3), latency=1e-3)
    topology = Topology(name="rgg", graph=graph)
    tree = [(child, parent) for parent, child in nx.bfs_edges(graph, f"n{fusion}")]
    distance = nx.single_source_shortest_path_length(graph, f"n{fusion}")
    dense = [(u, v) if distance[u] >= distance[v] else (v, u) for u, v in graph.edges]
    plans = {"dense": dense, "tree": tree}
    rows = []
    for variant, edges in plans.items():
        for index, (src, dst) in enumerate(edges):
            nbytes = 100 + index % 50
            rows.append((variant, 0, 0, 0, "forward", src, dst, "latent", nbytes, 0.0, 1.0, 0.0))
            rows.append((variant, 0, 0, 0, "backward", dst, src, "grad", nbytes, 1.0, 2.0, 0.0))
    run_dir.mkdir(parents=True)
    config = {
        "name": "large",
        "seeds": [0],
        "variants": {name: {"routing": name} for name in plans},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    save_topology_json(topology, run_dir / "topology.json")
    (run_dir / "plans.json").write_text(
        json.dumps({name: {"routing": name, "edges": edges} for name, edges in plans.items()})
    )
    exchanges = pd.DataFrame(rows, columns=list(REQUIRED_EXCHANGE_COLUMNS))
    exchanges.to_parquet(run_dir / "exchanges.parquet")
    metrics = make_metrics()
    metrics = metrics[metrics["seed"] == 0].replace({"dijkstra": "tree"})
    metrics.to_csv(run_dir / "metrics.csv", index=False)
    senders = sorted({src for src, _ in dense})
    pd.DataFrame(
        [(variant, 0, node, float(i % 13)) for variant in plans for i, node in enumerate(senders)],
        columns=["variant", "seed", "node", "rate_bits"],
    ).to_csv(run_dir / "node_rates.csv", index=False)
    return topology


@pytest.fixture(scope="module")
def large_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Topology]:
    run_dir = tmp_path_factory.mktemp("large") / "run"
    return run_dir, write_large_run(run_dir)


def test_large_networks_get_a_fast_deterministic_layout(large_run: tuple[Path, Topology]) -> None:
    _, topology = large_run
    assert topology.graph.number_of_nodes() > 300  # past networkx's spring layout
    layout = node_positions(topology)
    assert set(layout) == set(topology.graph.nodes)
    assert layout == node_positions(topology)
    coordinates = list(layout.values())
    assert all(map(math.isfinite, [value for xy in coordinates for value in xy]))
    assert len(set(coordinates)) == len(coordinates)  # no two nodes on top of each other


def test_report_of_a_large_network_stays_short(large_run: tuple[Path, Topology]) -> None:
    run_dir, topology = large_run
    write_run_report(run_dir)
    report = (run_dir / "report.md").read_text()
    busiest = report.split("## Busiest links")[1].split("##")[0]
    table_rows = [line for line in busiest.splitlines() if line.startswith("| dense ")]
    assert len(table_rows) == 10
    links = topology.graph.number_of_edges()
    assert f"- **dense**: {links:,} links carried" in busiest
    assert f"- **tree**: {topology.graph.number_of_nodes() - 1:,} links carried" in busiest
    assert "the 10 busiest carried" in busiest
    assert f"The {links:,} edges are listed in `plans.json`." in report
    assert len(report) < 20_000
    for name in ("topology_dense.png", "topology_tree.png", "latent_rate_per_node.png"):
        assert (run_dir / "figures" / name).read_bytes()[:8] == PNG_MAGIC


def test_section_tables_escape_labels_with_a_bar() -> None:
    """A node label holding ``|`` stays one cell: every row has as many cells as the header."""
    nodes = pd.DataFrame(
        {
            "variant": ["dijkstra", "dijkstra"],
            "node": ["r", "s1"],
            "label": ["Paris|CDG", "Lyon"],
            "role": ["relay", "sensor"],
            "flops_per_sample": [4_000, 1_000],
            "compute_flops": [1e6, 1e9],
            "forward_s": [0.128, 3.2e-5],
            "backward_s": [0.256, 6.4e-5],
        }
    )
    section = compute_section(SimpleNamespace(nodes=nodes))
    lines = [line for line in section.splitlines() if line.startswith("|")]
    widths = {len(re.split(r"(?<!\\)\|", line)) for line in lines}
    assert len(lines) == 4 and len(widths) == 1, lines
    assert "Paris\\|CDG" in lines[2]  # the slowest node first
