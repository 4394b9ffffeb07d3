"""Paired statistics of the report: mean paired differences with Student t intervals.

A hand-made run directory (no engine, no training) with two variants whose
per-seed final accuracies, training bytes and simulated times are chosen so
that every paired difference is known; the expected intervals are computed
here from the formula ``mean ± t_{0.975, n-1} · s / sqrt(n)`` with the t
quantile taken from a table, not from the code under test.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import networkx as nx
import pandas as pd
import pytest
import yaml

from innet.records import REQUIRED_EXCHANGE_COLUMNS
from innet.report import build_summary, headline_table, load_run, save_topology_json, write_report
from innet.report.stats import mean_ratio, paired_difference, t_interval
from innet.topology.model import Topology

# two-sided 95% Student t quantiles t_{0.975, df} (any statistics table)
T_975 = {1: 12.706204736, 2: 4.302652730, 3: 3.182446305}

# final accuracy per seed; a's and b's differ by +0.02, +0.03, 0.00
ACCURACY = {"a": [0.80, 0.90, 0.85], "b": [0.82, 0.93, 0.85]}
# bytes of every message per seed, and simulated time of every epoch per seed
MESSAGE_BYTES = {"a": [1000, 1100, 1200], "b": [500, 500, 700]}
EPOCH_TIME = {"a": [2.0, 2.5, 3.0], "b": [0.5, 0.5, 1.0]}
EPOCHS = 2
STEPS_PER_EPOCH = 3


def make_topology() -> Topology:
    graph = nx.Graph()
    graph.add_node("f", role="fusion", label="f", pos=(0.0, 0.0), view=None)
    graph.add_node("s1", role="sensor", label="s1", pos=(1.0, 0.0), view=None)
    graph.add_edge("s1", "f", capacity=1e6, latency=1e-3)
    return Topology(name="pair", graph=graph)


def write_small_run(
    run_dir: Path,
    seeds: list[int],
    *,
    accuracy: dict[str, list[float]] = ACCURACY,
    message_bytes: dict[str, list[int]] = MESSAGE_BYTES,
    epoch_time: dict[str, list[float]] = EPOCH_TIME,
) -> Path:
    """Variants ``a`` and ``b`` on one link s1 - f: one latent and one gradient per step.

    The accuracy of the last epoch is ``accuracy[variant][seed]``, the first
    epoch's is 0.1 lower; every epoch of a seed takes ``epoch_time[variant][seed]``.
    """
    run_dir.mkdir(parents=True)
    variants = list(accuracy)
    config = {
        "name": "paired",
        "seeds": seeds,
        "variants": {
            v: {"routing": "dense", "gate": {"kind": "gaussian", "beta": 0.0}} for v in variants
        },  # fmt: skip
        "comparisons": [],
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    save_topology_json(make_topology(), run_dir / "topology.json")
    plans = {v: {"routing": "dense", "fusion": "f", "edges": [["s1", "f"]]} for v in variants}
    (run_dir / "plans.json").write_text(json.dumps(plans))
    rows, metrics, rates = [], [], []
    for variant in variants:
        for seed in seeds:
            nbytes = message_bytes[variant][seed]
            for epoch in range(EPOCHS):
                for k in range(STEPS_PER_EPOCH):
                    step = epoch * STEPS_PER_EPOCH + k
                    t = step * 0.1
                    rows.append((variant, seed, epoch, step, "forward", "s1", "f", "latent",
                                 nbytes, t, t + 0.01, 0.0))  # fmt: skip
                    rows.append((variant, seed, epoch, step, "backward", "f", "s1", "grad",
                                 nbytes, t + 0.02, t + 0.03, 0.0))  # fmt: skip
                final = accuracy[variant][seed]
                seconds = epoch_time[variant][seed]
                metrics.append(
                    (variant, seed, epoch, 1.0, 1.0, final - 0.1 * (EPOCHS - 1 - epoch), 5.0,
                     nbytes * 2 * STEPS_PER_EPOCH, nbytes * 2 * STEPS_PER_EPOCH * (epoch + 1),
                     seconds, seconds * (epoch + 1))
                )  # fmt: skip
            rates.append((variant, seed, "s1", 5.0))
    exchanges = pd.DataFrame(rows, columns=list(REQUIRED_EXCHANGE_COLUMNS))
    exchanges.to_parquet(run_dir / "exchanges.parquet", index=False)
    pd.DataFrame(
        metrics,
        columns=["variant", "seed", "epoch", "train_loss", "test_loss", "accuracy",
                 "latent_rate_bits", "train_bytes", "train_bytes_cum", "sim_time_s",
                 "sim_time_cum_s"],
    ).to_csv(run_dir / "metrics.csv", index=False)  # fmt: skip
    pd.DataFrame(rates, columns=["variant", "seed", "node", "rate_bits"]).to_csv(
        run_dir / "node_rates.csv", index=False
    )
    return run_dir


def expected_interval(differences: list[float]) -> tuple[float, float, float]:
    """(mean, low, high) of the 95% t interval, by the formula."""
    n = len(differences)
    mean = sum(differences) / n
    s = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    half = T_975[n - 1] * s / math.sqrt(n)
    return mean, mean - half, mean + half


def test_paired_differences_and_t_intervals_of_a_hand_made_run(tmp_path: Path) -> None:
    run_dir = write_small_run(tmp_path / "run", [0, 1, 2])
    summary = build_summary(load_run(run_dir))
    (comparison,) = summary["comparisons"]
    assert (comparison["a"], comparison["b"]) == ("a", "b")

    accuracy = comparison["accuracy_paired_delta"]
    mean, low, high = expected_interval([0.02, 0.03, 0.00])
    assert accuracy["mean"] == pytest.approx(0.05 / 3, abs=1e-12)
    assert accuracy["mean"] == pytest.approx(mean, abs=1e-12)
    assert accuracy["ci_low"] == pytest.approx(low, abs=1e-8)
    assert accuracy["ci_high"] == pytest.approx(high, abs=1e-8)
    assert accuracy["ci_low"] == pytest.approx(-0.021279164, abs=1e-8)  # worked by hand
    assert accuracy["std"] == pytest.approx(math.sqrt(21) / 300)  # deviations 1, 4, -5 / 300
    assert accuracy["n"] == 3 and accuracy["interval"] == "t" and accuracy["confidence"] == 0.95
    assert accuracy["per_seed"] == pytest.approx([0.02, 0.03, 0.00], abs=1e-12)
    # the mean paired difference is the difference of the means
    assert comparison["accuracy_delta"] == pytest.approx(accuracy["mean"], abs=1e-12)

    # training exchange: 2 messages per step, 6 steps; b - a per seed: -6000, -7200, -6000 B
    exchange = comparison["train_exchange_paired_delta_bytes"]
    differences = [
        12 * (b - a) for a, b in zip(MESSAGE_BYTES["a"], MESSAGE_BYTES["b"], strict=True)
    ]
    assert differences == [-6000, -7200, -6000]
    mean, low, high = expected_interval(differences)
    assert exchange["mean"] == pytest.approx(-6400)
    assert (exchange["ci_low"], exchange["ci_high"]) == pytest.approx((low, high))
    assert exchange["per_seed"] == differences

    # simulated time: 2 epochs each; b - a per seed: -3, -4, -4 s
    time = comparison["sim_time_paired_delta_s"]
    mean, low, high = expected_interval([-3.0, -4.0, -4.0])
    assert time["mean"] == pytest.approx(-11 / 3)
    assert (time["ci_low"], time["ci_high"]) == pytest.approx((low, high))
    assert comparison["sim_time_ratio"] == pytest.approx((0.5 / 2.0 + 0.5 / 2.5 + 1.0 / 3.0) / 3)

    # the letter's criterion is kept, on a's sample standard deviation (0.05)
    assert comparison["accuracy_std_a"] == pytest.approx(statistics.stdev(ACCURACY["a"]))
    assert comparison["accuracy_within_one_std"] is True  # |0.0167| <= 0.05


def test_the_report_states_paired_seeds_and_t_intervals(tmp_path: Path) -> None:
    run_dir = write_small_run(tmp_path / "run", [0, 1, 2])
    write_report(run_dir)
    report = (run_dir / "report.md").read_text()
    comparisons = report.split("## Comparisons")[1].split("\n## ")[0]
    assert "Seeds are paired across variants" in comparisons
    assert "Student t interval with n − 1 degrees of freedom" in comparisons
    _, low, high = expected_interval([0.02, 0.03, 0.00])
    assert f"paired difference +0.017, 95% t interval [{low:+.3f}, {high:+.3f}]" in comparisons
    assert "The letter's criterion: within one standard deviation of a's accuracy" in comparisons
    assert "training exchange per seed: paired difference -6.4 kB, 95% t interval [" in comparisons
    assert "simulated training time: 0.261× a's" in comparisons


def test_one_seed_gives_no_std_and_no_interval(tmp_path: Path) -> None:
    run_dir = write_small_run(tmp_path / "run", [0])
    summary = write_report(run_dir)
    reloaded = json.loads((run_dir / "summary.json").read_text())
    assert reloaded == summary
    (comparison,) = reloaded["comparisons"]
    assert comparison["accuracy_within_one_std"] is None
    for key in ("accuracy_paired_delta", "train_exchange_paired_delta_bytes",
                "sim_time_paired_delta_s"):  # fmt: skip
        paired = comparison[key]
        assert paired["n"] == 1
        assert paired["std"] is None and paired["ci_low"] is None and paired["ci_high"] is None
        assert paired["mean"] is not None
    assert comparison["accuracy_paired_delta"]["mean"] == pytest.approx(0.02)
    report = (run_dir / "report.md").read_text()
    assert "± 0.000" not in report
    assert "0.800 ± n/a" in headline_table(summary)
    assert "95% t interval n/a (one seed)" in report
    assert "The letter's criterion (within one standard deviation of a's accuracy): n/a" in report
    assert "not within" not in report


@pytest.mark.parametrize("n", [2, 3, 4])
def test_t_interval_matches_the_table_quantiles(n: int) -> None:
    values = [1.0, 4.0, 2.0, 7.0][:n]
    mean = sum(values) / n
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = T_975[n - 1] * s / math.sqrt(n)
    assert t_interval(values) == pytest.approx((mean - half, mean + half), rel=1e-9)


def test_paired_difference_edge_cases() -> None:
    same = paired_difference([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert same.mean == pytest.approx(1.0) and same.std == 0 and not same.varies
    assert same.interval == pytest.approx((1.0, 1.0))
    gap = paired_difference([1.0, None, 3.0], [2.0, 5.0, float("nan")])
    assert gap.n == 1 and gap.differences == (1.0, None, None) and gap.interval is None
    assert paired_difference([], []).mean is None
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0])
    assert mean_ratio([2.0, 4.0], [1.0, 1.0]) == pytest.approx(0.375)
    assert mean_ratio([0.0], [1.0]) is None
    assert mean_ratio([1.0], [None]) is None


# --- equivalence (TOST) ----------------------------------------------------------------------


def test_tost_p_value_is_the_larger_one_sided_t_test() -> None:
    from scipy.stats import ttest_1samp

    from innet.report.stats import equivalence_test

    differences = [0.012, -0.004, 0.007, 0.001, -0.009, 0.015, 0.003, 0.0, -0.002, 0.006]
    margin = 0.02
    lower = ttest_1samp(differences, -margin, alternative="greater").pvalue
    upper = ttest_1samp(differences, margin, alternative="less").pvalue
    test = equivalence_test(differences, margin)
    assert test.p_value == pytest.approx(max(lower, upper), rel=1e-9)
    assert test.verdict == "equivalent"
    low, high = test.interval
    assert -margin < low < high < margin  # the 90% interval inside the margin, the same verdict
    shifted = equivalence_test([d + 0.015 for d in differences], margin)
    assert shifted.verdict == "not shown equivalent" and shifted.interval[1] > margin
    assert equivalence_test([0.01, None], margin).verdict is None
