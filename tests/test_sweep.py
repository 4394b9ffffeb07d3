"""Sweeps: --sweep and the sweep: block, one run directory, innet.sweep against the CLI."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from scipy import stats

import innet
from innet.cli import main
from innet.errors import ConfigError
from innet.report.sweep import RUNS_FILE, SWEEP_FILE, SWEEP_JSON, aggregate
from innet.sweeps import parse_sweep_option, prepare_sweep, sweep_points

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def scenario() -> dict:
    """The smoke scenario as a dict, small: one epoch, two seeds, figures on."""
    raw = yaml.safe_load((ROOT / "scenarios" / "smoke.yaml").read_text())
    raw["topology"] = str(ROOT / "topologies" / "diamond.yaml")
    raw["training"]["epochs"] = 1
    raw["seeds"] = 2
    return raw


def write(tmp_path: Path, raw: dict, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_parse_sweep_option_reads_each_value_as_yaml():
    assert parse_sweep_option("gate.beta=0, 1e-3 ,0.5") == ("gate.beta", [0, 0.001, 0.5])
    assert parse_sweep_option("gate.kind=gaussian,none") == ("gate.kind", ["gaussian", "none"])
    for bad in ("gate.beta", "=1,2", "gate.beta=", "gate.beta=1,,2", "gate.beta=1,1"):
        with pytest.raises(ConfigError, match=r"^--sweep "):
            parse_sweep_option(bad)


def test_points_are_the_cartesian_product_in_order():
    points = sweep_points({"a": [1, 2, 3], "b": ["x", "y"]})
    assert [p.name for p in points] == ["p00", "p01", "p02", "p03", "p04", "p05"]
    assert [tuple(p.values.values()) for p in points] == [
        (1, "x"), (1, "y"), (2, "x"), (2, "y"), (3, "x"), (3, "y")
    ]  # fmt: skip
    assert len(sweep_points({"a": list(range(11)), "b": list(range(10))})[0].name) == 4


def test_command_line_keys_join_and_replace_the_file_block(scenario, tmp_path):
    path = write(tmp_path, {**scenario, "sweep": {"gate.beta": [0, 0.1], "training.lr": [0.1]}})
    base, points = prepare_sweep(path, [], None, ["training.lr=0.01,0.02", "model.hidden=4,6"])
    assert base.sweep == {"gate.beta": [0, 0.1], "training.lr": [0.1]}
    assert [p.values for p, _ in points][:2] == [
        {"gate.beta": 0, "training.lr": 0.01, "model.hidden": 4},
        {"gate.beta": 0, "training.lr": 0.01, "model.hidden": 6},
    ]
    assert len(points) == 2 * 2 * 2
    loaded = points[-1][1]
    assert loaded.scenario.gate.beta == 0.1 and loaded.scenario.training.lr == 0.02
    assert loaded.scenario.model.hidden == 6


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("gate.betta=0,1", r"^error: --sweep gate\.betta=0,1: .*\n$"),
        ("gate.beta=0,oops", r"^error: --sweep gate\.beta=0,oops: .*value oops.*\n$"),
        ("gate.beta", r"^error: --sweep gate\.beta: expected KEY=v1,v2"),
        ("seeds=1,2", r"^error: --sweep seeds=1,2: 'seeds' cannot be swept\n$"),
    ],
)
def test_a_bad_sweep_option_is_one_line_and_writes_nothing(
    scenario, tmp_path, capsys, option, expected
):
    path = write(tmp_path, scenario)
    out = tmp_path / "out"
    assert main(["--scenario", str(path), "--sweep", option, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert re.match(expected, err), err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_jobs_without_a_sweep_is_refused(scenario, tmp_path, capsys):
    path = write(tmp_path, scenario)
    assert main(["--scenario", str(path), "--jobs", "2", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (
        "error: --jobs applies to sweeps (give --sweep KEY=v1,v2 or a sweep: block)\n"
    )
    assert main(["--scenario", str(path), "--sweep", "gate.beta=0,1", "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_a_bad_sweep_block_names_the_file_and_line(scenario, tmp_path, capsys):
    text = yaml.safe_dump(scenario, sort_keys=False) + "sweep:\n  gate.beta: [0, oops]\n"
    path = tmp_path / "s.yaml"
    path.write_text(text)
    line = text.splitlines().index("  gate.beta: [0, oops]") + 1
    assert main(["--scenario", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}:{line}: sweep.gate.beta: ") and "oops" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()
    path.write_text(yaml.safe_dump(scenario, sort_keys=False) + "sweep: [1, 2]\n")
    assert main(["--scenario", str(path)]) == 2
    assert "sweep: expected a mapping" in capsys.readouterr().err
    with pytest.raises(
        ConfigError, match=r"^<scenario dict>: sweep gate.beta: expected a non-empty list"
    ):
        innet.sweep(scenario, {"gate.beta": []}, progress=False)


def test_aggregate_is_the_t_interval_of_the_seeds():
    runs = pd.DataFrame({
        "point": ["p0"] * 4 + ["p1"], "k": [1] * 4 + [2], "variant": ["v"] * 5,
        "seed": [0, 1, 2, 3, 0], "m": [0.5, 0.7, 0.6, 0.9, 0.4],
    })  # fmt: skip
    table = aggregate(runs, ["k"], ["m"]).set_index("point")
    values = [0.5, 0.7, 0.6, 0.9]
    low, high = stats.t.interval(0.95, 3, loc=sum(values) / 4, scale=stats.sem(values))
    assert table.loc["p0", "m_mean"] == pytest.approx(0.675)
    assert (table.loc["p0", "m_ci_low"], table.loc["p0", "m_ci_high"]) == pytest.approx((low, high))
    assert table.loc["p1", "m_mean"] == 0.4 and math.isnan(table.loc["p1", "m_ci_low"])
    assert table.loc["p1", "seeds"] == 1


@pytest.mark.slow
@pytest.mark.distributed
def test_innet_sweep_matches_the_cli_with_jobs(scenario, tmp_path, capsys):
    """The CLI spreads the points over two processes; the API runs them here: same results."""
    path = write(tmp_path, scenario)
    out = tmp_path / "cli"
    argv = ["--scenario", str(path), "--sweep", "gate.beta=0,0.05", "--jobs", "2"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    assert "sweep table" in capsys.readouterr().out
    cli = innet.load(out)
    ours = innet.sweep(scenario, {"gate.beta": [0, 0.05]}, progress=False, jobs=1)

    assert ours.run_dir is None and cli.run_dir == out
    for name in ("sweep", "runs"):
        pd.testing.assert_frame_equal(ours.tables[name], cli.tables[name])
    for name in ("metrics", "exchanges", "links", "nodes", "node_rates"):
        pd.testing.assert_frame_equal(getattr(ours, name), getattr(cli, name))
    assert ours.summary == cli.summary

    # one row per point x variant x seed, the swept key as a column
    runs = pd.read_csv(out / RUNS_FILE)
    assert len(runs) == 2 * 3 * 2 and list(runs.columns[:4]) == ["point", "gate.beta", "variant",
                                                                 "seed"]  # fmt: skip
    assert sorted(set(runs["gate.beta"])) == [0, 0.05]
    table = pd.read_csv(out / SWEEP_FILE)
    assert len(table) == 2 * 3 and set(table["seeds"]) == {2}
    # each point is a complete run with the value set; its rows are the sweep's rows
    point = innet.load(out / "points" / "p01")
    assert point.config["gate"]["beta"] == 0.05
    mine = cli.metrics[cli.metrics["point"] == "p01"].drop(columns=["point", "gate.beta"])
    pd.testing.assert_frame_equal(mine.reset_index(drop=True), point.metrics)
    # bytes in the sweep table are those of the exchange records
    dense = runs[(runs["point"] == "p01") & (runs["variant"] == "dense") & (runs["seed"] == 1)]
    sent = point.exchanges[(point.exchanges["variant"] == "dense") & (point.exchanges["seed"] == 1)]
    assert int(dense["train_exchange_bytes"].iloc[0]) == int(sent["nbytes"].sum())
    assert (out / SWEEP_JSON).is_file()
    before = {name: (out / name).read_bytes() for name in (SWEEP_FILE, RUNS_FILE, "metrics.csv")}
    assert main(["report", str(out)]) == 0  # rebuilt from the points' tables: the same
    assert {name: (out / name).read_bytes() for name in before} == before
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert "sweep_accuracy_vs_gate.beta.png" in figures
    assert "sweep_accuracy_vs_latent_rate_bits.png" in figures
    assert "sweep_accuracy_vs_train_exchange_bytes.png" in figures
    assert "sweep_accuracy_vs_sim_time_s.png" in figures
