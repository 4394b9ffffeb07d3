"""Sweeps: --sweep and the sweep: block, one run directory, innet.sweep against the CLI."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml
from scipy import stats

import innet
from innet.app.cli import main
from innet.app.sweep_report import RUNS_FILE, SWEEP_FILE, SWEEP_JSON, aggregate, tradeoff_figure
from innet.app.sweeps import SweepWarning, parse_sweep_option, prepare_sweep, sweep_points
from innet.core.errors import ConfigError, InnetError

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
    with pytest.warns(SweepWarning, match=rf"^{re.escape(str(path))}: sweep\.gate\.beta: variant "
                      "dijkstra_rate sets its own gate.beta=0.01"):  # fmt: skip
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
    with pytest.warns(SweepWarning, match="variant dijkstra_rate sets its own gate.beta"):
        assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    assert "sweep table" in capsys.readouterr().out
    cli = innet.load(out)
    with pytest.warns(SweepWarning, match="variant dijkstra_rate sets its own gate.beta"):
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
    swept = runs[runs["variant"] != "dijkstra_rate"]  # which keeps its own gate.beta, 0.01
    assert sorted(set(swept["gate.beta"])) == [0, 0.05]
    assert set(runs.loc[runs["variant"] == "dijkstra_rate", "gate.beta"]) == {0.01}
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


def test_the_same_key_swept_twice_is_one_line_and_writes_nothing(scenario, tmp_path, capsys):
    path = write(tmp_path, scenario)
    out = tmp_path / "out"
    argv = ["--scenario", str(path), "--sweep", "gate.beta=0,1", "--sweep", "gate.beta=0.5"]
    assert main([*argv, "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        "error: --sweep gate.beta=0.5: gate.beta is swept twice (also --sweep gate.beta=0,1): "
        "give one list\n"
    )
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_aggregate_keeps_bounded_numbers_inside_their_range():
    # two seeds: t_{0.975, 1} = 12.706: the t intervals run past 1 and below 0
    runs = pd.DataFrame({
        "point": ["p0", "p0"], "k": [1, 1], "variant": ["v", "v"], "seed": [0, 1],
        "accuracy": [0.9, 1.0], "train_exchange_bytes": [10, 1000], "beta": [0.9, 1.0],
    })  # fmt: skip
    row = aggregate(runs, ["k"], ["accuracy", "train_exchange_bytes", "beta"]).iloc[0]
    low, high = stats.t.interval(0.95, 1, loc=0.95, scale=stats.sem([0.9, 1.0]))
    assert high > 1 and row["accuracy_ci_high"] == 1.0
    assert row["accuracy_ci_low"] == pytest.approx(low) and row["accuracy_mean"] == 0.95
    assert row["train_exchange_bytes_ci_low"] == 0.0 and row["train_exchange_bytes_mean"] == 505
    assert row["beta_ci_high"] == pytest.approx(high)  # no range declared: the t interval
    broken = runs.assign(accuracy=[0.9, 1.5])
    with pytest.raises(InnetError, match=r"^sweep\.csv: accuracy: value 1\.5 lies outside"):
        aggregate(broken, ["k"], ["accuracy"])


def _summary(x_column: str, x_values: list[float]) -> pd.DataFrame:
    """Two variants x two beta values; ``v`` keeps beta = 0.5 (its own value)."""
    return pd.DataFrame({
        "point": ["p0", "p0", "p1", "p1"], "gate.beta": [0.0, 0.5, 0.1, 0.5],
        "variant": ["u", "v", "u", "v"], "seeds": [2] * 4,
        "accuracy_mean": [0.6, 0.7, 0.65, 0.7], "accuracy_ci_low": [0.5, 0.6, 0.55, 0.6],
        "accuracy_ci_high": [0.7, 0.8, 0.75, 0.8], f"{x_column}_mean": x_values,
    })  # fmt: skip


def test_a_figure_against_a_constant_measure_is_drawn_against_the_swept_key():
    summary = _summary("train_exchange_bytes", [2000.0, 1000.0, 2000.0, 1000.0])
    figure = tradeoff_figure(summary, ["gate.beta"], "accuracy", "train_exchange_bytes")
    ax = figure.axes[0]
    assert ax.get_xlabel() == "gate.beta (as set in the scenario)"
    assert "training exchange per seed: the same at every gate.beta" in ax.get_title()
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["u (2 kB)", "v (gate.beta=0.5 at every point; 1 kB)"]
    u = ax.get_lines()[0]
    assert list(u.get_xdata()) == [0.0, 0.1] and list(u.get_ydata()) == [0.6, 0.65]


def test_a_figure_against_a_changing_measure_keeps_it_on_the_x_axis():
    summary = _summary("latent_rate_bits", [3.0, 1.0, 2.0, 1.0])
    figure = tradeoff_figure(summary, ["gate.beta"], "accuracy", "latent_rate_bits")
    ax = figure.axes[0]
    assert ax.get_xlabel() == "latent rate (bits per sample)"
    assert "the same at every" not in ax.get_title()
    assert list(ax.get_lines()[0].get_xdata()) == [2.0, 3.0]  # sorted by rate
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["u", "v (gate.beta=0.5 at every point)"]


@pytest.mark.slow
def test_a_variant_that_sets_the_swept_key_keeps_it_and_says_so(scenario, tmp_path):
    """smoke's dijkstra_rate sets gate.beta = 0.01: it runs with it at every point."""
    del scenario["variants"]["dense"]  # two variants are enough (and faster)
    scenario["comparisons"] = [["dijkstra", "dijkstra_rate"]]
    scenario["report"] = {"figures": False}  # drawn in the tests above
    path = write(tmp_path, scenario)
    out = tmp_path / "out"
    argv = ["--scenario", str(path), "--sweep", "gate.beta=0,0.01", "--out", str(out)]
    with pytest.warns(SweepWarning) as caught:
        assert main([*argv, "--no-progress"]) == 0
    (said,) = [w for w in caught if issubclass(w.category, SweepWarning)]
    line = warnings.formatwarning(said.message, said.category, said.filename, said.lineno)
    assert line == (  # as the command line prints it: one line
        "warning: --sweep gate.beta=0,0.01: variant dijkstra_rate sets its own gate.beta=0.01 "
        "and keeps it at every point (its rows are labelled with it)\n"
    )
    runs = pd.read_csv(out / RUNS_FILE)
    labels = runs.groupby(["point", "variant"])["gate.beta"].first().to_dict()
    assert labels == {
        ("p00", "dijkstra"): 0.0, ("p00", "dijkstra_rate"): 0.01,
        ("p01", "dijkstra"): 0.01, ("p01", "dijkstra_rate"): 0.01,
    }  # fmt: skip
    # the label is true: dijkstra_rate at p00 ran exactly as dijkstra at beta = 0.01 (p01)
    measured = ["accuracy", "latent_rate_bits", "train_exchange_bytes"]
    kept = runs[(runs["point"] == "p00") & (runs["variant"] == "dijkstra_rate")][measured]
    same = runs[(runs["point"] == "p01") & (runs["variant"] == "dijkstra")][measured]
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), same.reset_index(drop=True))
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics.loc[metrics["variant"] == "dijkstra_rate", "gate.beta"]) == {0.01}
    record = json.loads((out / SWEEP_JSON).read_text())
    assert record["variant_own_values"] == {"dijkstra_rate": {"gate.beta": 0.01}}
    assert "Variant dijkstra_rate sets gate.beta=0.01 itself" in (out / "report.md").read_text()
    loaded = innet.load(out)
    assert set(loaded.metrics.loc[loaded.metrics["variant"] == "dijkstra_rate", "gate.beta"]) == {
        0.01
    }
    # every interval of a bounded number lies inside its range, around its mean
    table = pd.read_csv(out / SWEEP_FILE)
    for column, (lower, upper) in {"accuracy": (0, 1), "train_loss": (0, math.inf),
                                   "latent_rate_bits": (0, math.inf),
                                   "train_exchange_bytes": (0, math.inf)}.items():  # fmt: skip
        low, mean, high = (table[f"{column}_{part}"] for part in ("ci_low", "mean", "ci_high"))
        assert ((lower <= low) & (low <= mean + 1e-12) & (mean <= high + 1e-12)).all(), column
        assert (high <= upper).all(), column
    before = {name: (out / name).read_bytes() for name in (SWEEP_FILE, RUNS_FILE, "metrics.csv")}
    assert main(["report", str(out)]) == 0  # rebuilt from sweep.json: the same labels
    assert {name: (out / name).read_bytes() for name in before} == before
