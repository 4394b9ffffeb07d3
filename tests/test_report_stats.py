"""Paired statistics of the report: mean paired differences with Student t intervals.

A hand-made run directory (no engine, no training) with two variants whose
per-seed final accuracies, training bytes and simulated times are chosen so
that every paired difference is known; the expected intervals are computed
here from the formula ``mean ± t_{0.975, n-1} · s / sqrt(n)`` with the t
quantile taken from a table, not from the code under test.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from run_checks import summary_of
from scipy import stats as scipy_stats

from innet.core.records import REQUIRED_EXCHANGE_COLUMNS
from innet.core.topology.model import Topology
from innet.families import FAMILIES
from innet.families.runs import write_run_report
from innet.report import headline_table
from innet.report.stats import (
    bounded_mean,
    mean_ratio,
    paired_bootstrap,
    paired_difference,
    paired_log_ratio,
    t_interval,
)
from innet.rundir.io import save_topology_json

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
    summary = summary_of(run_dir)
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
    # the time ratio on the log scale: per seed 1/4, 1/5, 1/3; geometric mean (1/60)^(1/3)
    assert comparison["sim_time_ratio"] == pytest.approx(60 ** (-1 / 3))
    logs = [math.log(1 / 4), math.log(1 / 5), math.log(1 / 3)]
    _, low, high = expected_interval(logs)
    assert comparison["sim_time_ratio_ci_low"] == pytest.approx(math.exp(low))
    assert comparison["sim_time_ratio_ci_high"] == pytest.approx(math.exp(high))
    assert comparison["sim_time_log_ratio"]["change_ci_low"] == pytest.approx(math.exp(low) - 1)
    # training exchange per seed: b/a = 500/1000, 500/1100, 700/1200
    exchange_ratio = comparison["train_exchange_log_ratio"]
    expected = math.exp(statistics.fmean([math.log(5 / 10), math.log(5 / 11), math.log(7 / 12)]))
    assert exchange_ratio["reduction"] == pytest.approx(1 - expected)
    assert exchange_ratio["reduction_ci_high"] < 1 and exchange_ratio["n"] == 3

    # the letter's criterion is kept, on a's sample standard deviation (0.05)
    assert comparison["accuracy_std_a"] == pytest.approx(statistics.stdev(ACCURACY["a"]))
    assert comparison["accuracy_within_one_std"] is True  # |0.0167| <= 0.05


def test_the_report_states_paired_seeds_and_t_intervals(tmp_path: Path) -> None:
    run_dir = write_small_run(tmp_path / "run", [0, 1, 2])
    write_run_report(run_dir)
    report = (run_dir / "report.md").read_text()
    comparisons = report.split("## Comparisons")[1].split("\n## ")[0]
    assert "Seeds are paired across variants" in comparisons
    assert "Student t interval with n − 1 degrees of freedom" in comparisons
    _, low, high = expected_interval([0.02, 0.03, 0.00])
    assert f"paired difference +0.017, 95% t interval [{low:+.3f}, {high:+.3f}]" in comparisons
    assert "The letter's criterion: within one standard deviation of a's accuracy" in comparisons
    assert "training exchange per seed: paired difference -6.4 kB, 95% t interval [" in comparisons
    assert "simulated training time: 0.255× [" in comparisons  # geometric mean of the ratios
    assert "a's (ratio per seed, geometric mean;" in comparisons


def test_one_seed_gives_no_std_and_no_interval(tmp_path: Path) -> None:
    run_dir = write_small_run(tmp_path / "run", [0])
    summary = write_run_report(run_dir)
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
    assert "0.800 ± n/a" in headline_table(summary, FAMILIES.get("inl").report)
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


# --- log-ratio, bounded and bootstrap intervals ----------------------------------------------

FAST = settings(max_examples=100, deadline=None)
positive = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@FAST
@given(st.lists(st.tuples(positive, positive), min_size=2, max_size=8))
def test_log_ratio_is_scipys_t_interval_of_the_logs(pairs: list[tuple[float, float]]) -> None:
    a, b = [x for x, _ in pairs], [y for _, y in pairs]
    logs = np.log(b) - np.log(a)
    ratio = paired_log_ratio(a, b)
    assert ratio.n == len(pairs) and ratio.excluded == 0
    assert ratio.ratio == pytest.approx(math.exp(logs.mean()), rel=1e-9)
    low, high = ratio.interval
    assert low <= ratio.ratio <= high and low > 0
    if logs.std() > 1e-9 * max(1.0, abs(logs.mean())):
        expected = scipy_stats.t.interval(
            0.95, len(logs) - 1, loc=logs.mean(), scale=scipy_stats.sem(logs)
        )
        assert (math.log(low), math.log(high)) == pytest.approx(expected, rel=1e-7, abs=1e-9)
    change_low, change_high = ratio.change_interval
    assert change_low >= -1.0 and change_low <= ratio.change <= change_high
    reduction_low, reduction_high = ratio.reduction_interval
    assert reduction_high <= 1.0 and reduction_low <= ratio.reduction <= reduction_high


def test_a_large_spread_of_ratios_never_gives_a_change_below_minus_100_percent() -> None:
    # the same numbers on the linear scale: mean change -0.33 ± 4.3 · 0.58 / sqrt(3) < -1
    ratio = paired_log_ratio([1.0, 1.0, 1.0], [0.01, 1.0, 1.0])
    linear = t_interval([0.01 - 1, 0.0, 0.0])
    assert linear[0] < -1  # what a t interval of percentage changes would claim
    assert ratio.change_interval[0] > -1
    assert ratio.reduction_interval[1] < 1
    assert ratio.ratio == pytest.approx(0.01 ** (1 / 3))


def test_log_ratio_by_hand_and_its_edge_cases() -> None:
    # b/a = 0.6 and 0.5: log ratios -0.510826, -0.693147; mean -0.601986; s = 0.128921
    ratio = paired_log_ratio([100.0, 200.0], [60.0, 100.0])
    assert ratio.ratio == pytest.approx(math.sqrt(0.3))
    half = T_975[1] * 0.128920 / math.sqrt(2)  # 1.158304
    assert ratio.interval == pytest.approx(
        (math.exp(-0.601986 - half), math.exp(-0.601986 + half)), rel=1e-5
    )
    assert ratio.per_seed == pytest.approx((0.6, 0.5))
    document = ratio.to_json()
    assert document["change"] == pytest.approx(math.sqrt(0.3) - 1)
    assert document["reduction_ci_high"] == pytest.approx(1 - ratio.interval[0])
    assert document["interval"] == "t on log ratio"
    dropped = paired_log_ratio([0.0, 2.0, None, -1.0, 4.0], [1.0, 1.0, 1.0, 1.0, 1.0])
    assert dropped.n == 2 and dropped.excluded == 2 and dropped.per_seed[0] is None
    one = paired_log_ratio([2.0], [1.0])
    assert one.ratio == pytest.approx(0.5) and one.interval is None and one.change_interval is None
    none = paired_log_ratio([0.0], [1.0])
    assert none.n == 0 and none.ratio is None and none.change is None and none.reduction is None
    with pytest.raises(ValueError):
        paired_log_ratio([1.0], [1.0, 2.0])


@FAST
@given(st.lists(unit, min_size=2, max_size=10))
def test_bounded_mean_is_the_t_interval_clipped_to_the_range(values: list[float]) -> None:
    bounded = bounded_mean(values)
    low, high = bounded.interval
    assert 0.0 <= low <= bounded.mean <= high <= 1.0
    assert bounded.mean == pytest.approx(statistics.fmean(values))
    t_low, t_high = t_interval(values)
    assert low == pytest.approx(max(0.0, min(t_low, bounded.mean)), abs=1e-12)
    assert high == pytest.approx(min(1.0, max(t_high, bounded.mean)), abs=1e-12)


def test_bounded_mean_by_hand_and_its_edge_cases() -> None:
    # the sweep point: accuracies whose t interval ran to 1.195
    accuracies = [0.78, 0.98, 1.0]
    mean, low, high = expected_interval(accuracies)
    assert high > 1
    bounded = bounded_mean(accuracies)
    assert bounded.mean == pytest.approx(mean)
    assert bounded.interval == pytest.approx((low, 1.0))
    assert bounded.to_json()["ci_high"] == 1.0
    assert bounded_mean([1.0, 1.0, 1.0]).interval == (1.0, 1.0)
    percent = bounded_mean([50.0, 100.0], lower=0.0, upper=100.0)
    assert percent.interval == (0.0, 100.0)  # 75 ± 12.7 · 25: both ends clipped
    gap = bounded_mean([0.5, None, float("nan")])
    assert gap.n == 1 and gap.mean == 0.5 and gap.std is None and gap.interval is None
    assert bounded_mean([]).mean is None
    with pytest.raises(ValueError, match="outside"):
        bounded_mean([0.5, 1.2])
    with pytest.raises(ValueError, match="lower < upper"):
        bounded_mean([0.5], lower=1.0, upper=0.0)


def exact_bootstrap_quantiles(differences: list[float]) -> list[float]:
    """The means of all n^n equally likely resamples of ``differences``, sorted."""
    n = len(differences)
    return sorted(statistics.fmean(c) for c in itertools.product(differences, repeat=n))


def test_paired_bootstrap_matches_the_exact_bootstrap_distribution() -> None:
    a = [1.0, 2.0, 3.0, 4.0]
    b = [1.0, 3.0, 5.0, 14.0]  # differences 0, 1, 2, 10
    boot = paired_bootstrap(a, b, lambda x, y: statistics.fmean(y) - statistics.fmean(x))
    assert boot.n == 4 and boot.estimate == pytest.approx(3.25) and not boot.widened
    means = exact_bootstrap_quantiles([0.0, 1.0, 2.0, 10.0])  # 256 resamples
    low, high = boot.interval
    # each end lies between the atoms of the exact distribution around its quantile
    assert means[int(0.025 * 256) - 1] <= low <= means[int(0.025 * 256) + 1]
    assert means[int(0.975 * 256) - 1] <= high <= means[int(0.975 * 256) + 1]
    again = paired_bootstrap(a, b, lambda x, y: statistics.fmean(y) - statistics.fmean(x))
    assert again == boot  # deterministic for a seed


def test_paired_bootstrap_keeps_the_estimate_inside_and_says_so() -> None:
    # all six differences distinct: a resample keeps them all with probability 6!/6^6 = 1.5%,
    # so the 97.5% percentile of "all distinct" is 0 while the estimate is 1
    a = [0.0] * 6
    b = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]

    def all_distinct(x: list[float], y: list[float]) -> float:
        differences = [v - u for u, v in zip(x, y, strict=True)]
        return float(len(set(differences)) == len(differences))

    boot = paired_bootstrap(a, b, all_distinct, n_resamples=2000)
    assert boot.estimate == 1.0 and boot.widened and boot.interval == (0.0, 1.0)
    assert boot.to_json()["widened"] is True
    one = paired_bootstrap([1.0, None], [2.0, 3.0], lambda x, y: y[0] - x[0])
    assert one.n == 1 and one.estimate == 1.0 and one.interval is None
