"""The ``finite_bank`` family: its experiments' exact identities, the bank cache, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from innet.app.cli import main
from innet.families.finite_bank.bank import bank_key, load_bank
from innet.families.finite_bank.config import BankConfig, GatingBoundConfig
from innet.families.finite_bank.gating_bound import bound_cells, make_task
from innet.families.finite_bank.report import selection_relations
from innet.families.finite_bank.selection import selection_cells


def test_selection_cells_obey_the_identities():
    rng = np.random.default_rng(0)
    losses = (rng.uniform(size=(300, 8)) < np.linspace(0.1, 0.6, 8)).astype(float)
    rows = selection_cells(losses, [0.0, 3.0, 30.0, 300.0], [10, 50], resamples=100,
                           rng=np.random.default_rng(1))  # fmt: skip
    assert len(rows) == 8
    for row in rows:
        assert row["identity_error"] < 1e-12
        assert 0.0 <= row["mi_nats"] <= math.log(8) + 1e-12
        assert row["xu_raginsky"] == pytest.approx(math.sqrt(row["mi_nats"] / (2 * row["m"])))
        assert row["mi_se"] >= 0.0 and (row["mi_se"] == 0.0) == (row["alpha"] == 0)
        assert row["union"] == pytest.approx(math.sqrt(math.log(8) / (2 * row["m"])))
        if row["alpha"] == 0:
            assert row["mi_nats"] == 0.0 and row["skl_nats"] == 0.0
            assert abs(row["gap"]) <= 3 * row["gap_se"]
    for m in (10, 50):
        mi = [row["mi_nats"] for row in rows if row["m"] == m]
        assert mi == sorted(mi)


BOUND = GatingBoundConfig(population=200, temperatures=[0.3, 3.0], sample_sizes=[10, 100],
                          resamples=30, slopes=list(np.geomspace(0.2, 50, 8)))  # fmt: skip


@pytest.fixture(scope="module")
def bound_task():
    return make_task(BOUND, seed=0)


def _bound_rows(task, alpha: float, resamples: int = 30) -> list[dict]:
    return bound_cells(task, BOUND.temperatures, BOUND.sample_sizes, alpha=alpha,
                       resamples=resamples, rng=np.random.default_rng(2),
                       heldout_rng=np.random.default_rng(3))  # fmt: skip


def test_gating_bound_terms_add_up_and_the_learned_gate_is_achievable(bound_task):
    rows = _bound_rows(bound_task, BOUND.alpha)
    for row in rows:
        assert row["bound"] == pytest.approx(row["heldout_risk"] + row["sqrt_term"])
        assert row["delta_m"] == pytest.approx(row["heldout_risk"] - row["distortion_rate"])
        # sigma = 1/2 for a loss in [0, 1]: sqrt(2 (1/2)^2 Î / m) = sqrt(Î / (2 m))
        assert row["sqrt_term"] == pytest.approx(math.sqrt(row["mi_nats"] / (2 * row["m"])))
        assert row["margin"] == pytest.approx(row["bound"] - row["expected_risk"])
        assert row["holds"] == (row["margin"] >= 0)
        assert row["xr_gap"] == pytest.approx(row["expected_risk"] - row["train_risk"])
        assert row["gibbs_slack"] >= 0.0
        assert row["achievable"]  # D(R_g) never above the risk of a real gate
    rates = {row["tau"]: row["rate_bits"] for row in rows}
    assert rates[0.3] > rates[3.0]  # a hotter gate carries fewer bits


def test_the_gating_bound_fails_for_a_choice_that_ignores_its_data(bound_task):
    """alpha = 0: Î = 0, so the bound claims E[R(W)] <= the best gate's held-out risk.

    The uniform choice's risk is the mean of the candidates' risks, well above
    the best one's, so the bound must fail in every cell, by many standard errors.
    """
    for row in _bound_rows(bound_task, 0.0):
        assert row["mi_nats"] == 0.0 and row["sqrt_term"] == 0.0
        assert not row["holds"]
        assert row["margin"] + 3 * row["margin_se"] < 0


def test_the_gating_bound_holds_for_the_empirical_risk_minimiser(bound_task):
    """alpha large: W is the empirical best (no Gibbs slack), and the bound is Xu–Raginsky's."""
    for row in _bound_rows(bound_task, 1e6, resamples=100):
        assert row["gibbs_slack"] == pytest.approx(0.0, abs=1e-6)
        assert row["margin"] + 2 * row["margin_se"] >= 0


def test_rank_correlation_has_a_bootstrap_interval_close_to_fisher_z():
    """The bootstrap interval over cells against the Fisher z interval (Fieller et al. 1957)."""
    rng = np.random.default_rng(8)
    mi = np.sort(rng.uniform(0, 0.4, size=27))
    gap = mi / 20 + rng.normal(0, 0.004, size=27)
    cells = pd.DataFrame({"m": np.repeat([25, 100, 400], 9), "alpha": np.tile(range(9), 3),
                          "mi_nats": mi, "gap": gap, "gap_se": 0.001, "xu_raginsky": 1.0,
                          "union": 1.0, "identity_error": 0.0})  # fmt: skip
    halves = {0: cells.iloc[::2], 1: cells.iloc[1::2]}
    spearman = selection_relations(cells, experts=12, per_seed=halves)["spearman_mi_gap"]
    low, high = spearman["interval"]
    r = spearman["all_cells"]
    assert r == pytest.approx(spearmanr(mi, gap).statistic)
    assert low <= r <= high < 1.0
    z, half = math.atanh(r), 1.96 * math.sqrt(1.06 / (27 - 3))
    fisher = (math.tanh(z - half), math.tanh(z + half))
    assert low == pytest.approx(fisher[0], abs=0.15) and high == pytest.approx(fisher[1], abs=0.1)
    assert spearman["clearly_below_threshold"] == (high < 0.9)
    assert set(spearman["per_seed"]) == {"0", "1"}


@pytest.mark.slow
def test_the_bank_is_cached_and_a_changed_config_misses(tmp_path, monkeypatch):
    monkeypatch.setenv("INNET_CACHE_DIR", str(tmp_path))
    config = BankConfig(experts=8)
    first = load_bank(config)
    assert not first.from_cache
    files = list((tmp_path / "finite_bank").glob("*.pkl"))
    assert [path.stem for path in files] == [bank_key(config)]
    again = load_bank(config)
    assert again.from_cache
    np.testing.assert_array_equal(again.zero_one_losses("pool"), first.zero_one_losses("pool"))
    other = load_bank(BankConfig(experts=8, seed=1))
    assert not other.from_cache and len(list((tmp_path / "finite_bank").glob("*.pkl"))) == 2
    files[0].write_bytes(b"not a pickle")  # a damaged entry is rebuilt, not trusted
    assert not load_bank(config).from_cache and load_bank(config).from_cache
    assert not list((tmp_path / "finite_bank").glob(".*.tmp"))  # nothing half-written left


def test_mnist1d_is_generated_locally(monkeypatch):
    import mnist1d.data

    def no_network(*args, **kwargs):
        raise AssertionError("MNIST-1D tried to use the network")

    monkeypatch.setattr(mnist1d.data.requests, "get", no_network)
    from innet.families.finite_bank.datasets import DATASETS

    state = np.random.get_state()[1].copy()
    x, y = DATASETS.get("mnist1d")(seed=0, mnist1d_samples=500)
    assert x.shape == (500, 40) and set(np.unique(y)) == set(range(10))
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global state untouched


TOPOLOGY = (
    "name: star8\ndefaults: {capacity: 1Mbps, latency: 1ms}\nnodes:\n  - {id: g, role: fusion}\n"
)
TOPOLOGY += "".join(f"  - {{id: e{i}, role: sensor}}\n" for i in range(1, 9))
TOPOLOGY += "links:\n" + "".join(f"  - [g, e{i}]\n" for i in range(1, 9))

SCENARIO = """name: bank_tiny
family: finite_bank
topology: star8.yaml
seeds: 1
bank: {experts: 8}
gibbs: {alphas: [0, 10, 100], sample_sizes: [10, 40], resamples: 20}
router: {betas: [0, 0.1], steps: 4, batch_size: 16, slopes: [0.5, 2, 8, 30]}
gating_bound:
  population: 200
  temperatures: [1, 10]
  sample_sizes: [10]
  resamples: 10
  slopes: [0.3, 1, 3, 10, 30]
variants:
  router: {routing: dijkstra}
"""


@pytest.mark.slow
def test_a_tiny_bank_runs_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("INNET_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "star8.yaml").write_text(TOPOLOGY)
    (tmp_path / "bank.yaml").write_text(SCENARIO)
    out = tmp_path / "run"
    assert (
        main(["--scenario", str(tmp_path / "bank.yaml"), "--out", str(out), "--no-progress"]) == 0
    )
    report = (out / "report.md").read_text()
    for title in ("generalisation gap", "Accuracy–rate curve", "finite-rate gating bound"):
        assert title in report
    assert "(item" not in report
    summary = json.loads((out / "summary.json").read_text())["variants"]["router"]
    relations = summary["selection"]["relations"]
    assert relations["gibbs_identity"]["holds"] and relations["xr_below_union"]["holds"]
    assert len(summary["selection"]["cells"]) == 6 and len(summary["gating_bound"]["cells"]) == 2
    assert summary["accuracy_rate"]["holds"]
    spearman = relations["spearman_mi_gap"]
    assert spearman["interval"] is None  # 6 cells: too few for a bootstrap interval
    assert set(spearman["per_seed"]) == {"0"}
    bound = summary["gating_bound"]
    assert bound["sigma"] == 0.5 and bound["holds_in"] == sum(c["holds"] for c in bound["cells"])
    rate0 = summary["accuracy_rate"]["curve_rate0_loss"]
    assert rate0 == pytest.approx(summary["accuracy_rate"]["best_single_expert_loss"], abs=1e-6)
    for name in ("selection", "router", "bound", "curve", "experts"):
        assert not pd.read_csv(out / f"finite_bank_{name}.csv").empty
    for figure in ("selection_vs_alpha.png", "accuracy_rate.png", "gating_bound.png"):
        assert (out / "figures" / figure).stat().st_size > 0
    # bytes from the real tensors: the profile sends every router and pool sample (64 float32
    # features) to each of the 8 experts, which answer with 10 float32 probabilities each
    exchanges = pd.read_parquet(out / "exchanges.parquet")
    profile = exchanges[exchanges.step == 0]
    profiled = 1797 - int(0.4 * 1797)
    assert profile[profile.payload == "query"].nbytes.sum() == 8 * profiled * 64 * 4
    assert profile[profile.payload == "answer"].nbytes.sum() == 8 * profiled * 10 * 4
    steps = exchanges[exchanges.step > 0]
    per_step = steps[steps.payload == "query"].groupby("step").nbytes.sum()
    assert set(per_step) == {16 * 64 * 4}  # each query of a batch goes to exactly one expert
    assert (steps.t_end > steps.t_start).all()
    assert list((tmp_path / "cache" / "finite_bank").glob("*.pkl"))


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("gibbs.alphas=[5, 1]", ("gibbs.alphas", "increasing")),
        ("bank.experts=20", ("bank.experts", "16")),
        ("bank.dataset=cifar", ("bank.dataset", "digits")),
        ("variants.router.router.steps=0", ("variants.router.router.steps",)),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys, override, words):
    (tmp_path / "star8.yaml").write_text(TOPOLOGY)
    (tmp_path / "bank.yaml").write_text(SCENARIO)
    code = main(["--scenario", str(tmp_path / "bank.yaml"), "--set", override,
                 "--out", str(tmp_path / "r")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "Traceback" not in err
    assert all(word in err for word in words), err
    assert not (tmp_path / "r").exists()


def test_a_topology_without_enough_expert_nodes_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("INNET_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "star8.yaml").write_text(TOPOLOGY)
    (tmp_path / "bank.yaml").write_text(SCENARIO.replace("experts: 8", "experts: 9"))
    assert main(["--scenario", str(tmp_path / "bank.yaml"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bank.yaml:3" in err and "9 experts" in err
    assert not (tmp_path / "cache").exists()  # refused before any expert was trained
