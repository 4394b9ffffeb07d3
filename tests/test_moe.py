"""The ``moe`` family: routers against closed forms and POT, balance, and a run through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import ot
import pandas as pd
import pytest
import torch
import yaml

from innet.app.cli import main
from innet.core.netsim import NetworkModel
from innet.core.topology.load import load_topology
from innet.families.moe.balance import BalanceController
from innet.families.moe.config import BalanceCheckConfig
from innet.families.moe.data import make_clusters
from innet.families.moe.metrics import skew
from innet.families.moe.placement import predicted_max_group_load, propose_placement
from innet.families.moe.report import first_reach, hop_loads, lambda_acceptance
from innet.families.moe.routers import ROUTERS, Router, RouterConfig
from innet.families.moe.routers.ac import ac_logits, ac_weights
from innet.families.moe.routers.base import switch_loss, topk
from innet.families.moe.routers.sinkhorn import sinkhorn
from innet.families.moe.trainer import balance_trace
from innet.families.runs import open_run

ROOT = Path(__file__).resolve().parents[1]
TWO_LEVEL = ROOT / "topologies" / "two_level16.yaml"


# -- routers -------------------------------------------------------------------------------


@pytest.mark.parametrize(("experts", "k"), [(4, 1), (16, 2)])
def test_switch_loss_is_one_at_uniform_and_e_at_collapse(experts, k):
    tokens = 8 * experts
    uniform = torch.full((tokens, experts), 1.0 / experts)
    even = (torch.arange(tokens)[:, None] + torch.arange(k)[None, :] * (experts // k)) % experts
    assert float(switch_loss(uniform, even, experts)) == pytest.approx(1.0, abs=1e-6)
    collapse = torch.zeros(tokens, experts)
    collapse[:, 0] = 1.0
    assert float(switch_loss(collapse, torch.zeros(tokens, 1, dtype=torch.long), experts)) == (
        pytest.approx(experts)
    )


def test_switch_loss_takes_the_probabilities_as_given_no_second_softmax():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    chosen = torch.tensor([[0], [1]])
    # f = (1/2, 1/2, 0), P = (0.4, 0.5, 0.1): 3 * (0.2 + 0.25)
    assert float(switch_loss(probs, chosen, 3)) == pytest.approx(3 * 0.45)
    logits = torch.randn(5, 3, requires_grad=True)
    loss = switch_loss(torch.softmax(logits, 1), topk(logits.detach(), 1), 3)
    loss.backward()  # differentiable through P only
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize(("tokens", "experts", "seed"), [(64, 8, 0), (200, 16, 1)])
def test_sinkhorn_has_uniform_marginals_and_equals_pot(tokens, experts, seed):
    scores = np.random.default_rng(seed).normal(scale=2.0, size=(tokens, experts))
    plan = sinkhorn(scores, iterations=2000, tol=1e-13)
    assert np.allclose(plan.sum(axis=0), 1 / experts, atol=1e-6, rtol=0)
    assert np.allclose(plan.sum(axis=1), 1 / tokens, atol=1e-6, rtol=0)
    reference = ot.sinkhorn(np.full(tokens, 1 / tokens), np.full(experts, 1 / experts), -scores,
                            reg=1.0, numItermax=10_000, stopThr=1e-13)  # fmt: skip
    assert np.abs(plan - reference).max() < 1e-5


def test_ac_router_with_equal_dispersion_gives_the_base_logits():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(3, 6, generator=gen)  # one cluster per expert, same spread everywhere
    tokens = torch.cat([base[e] + torch.tensor([1.0, -1.0]).repeat(3)[:, None].T.repeat(2, 1)
                        for e in range(3)])  # fmt: skip
    assigned = torch.arange(3).repeat_interleave(2)
    weights = ac_weights(tokens, assigned, 3)
    router = torch.randn(3, 6, generator=gen)
    assert torch.allclose(weights, torch.ones(3, 6))
    assert torch.allclose(ac_logits(tokens, router, weights, assigned), tokens @ router.T,
                          atol=1e-6)  # fmt: skip


def _public_acmoe_weights(x: np.ndarray, assigned: np.ndarray, experts: int) -> np.ndarray:
    """The public ACMoE code's ``compute_W_var`` (``mad=True``), written again in numpy."""
    w = np.stack([1 / (np.abs(x[assigned == k] - x[assigned == k].mean(0)).mean(0) + 1e-4)
                  for k in range(experts)])  # fmt: skip
    w = np.minimum(w, 10 * w.mean())  # clamp(max = 10 * W.mean())
    return w / w.mean(axis=0)  # W / W.mean(dim=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_ac_weights_follow_the_public_code_per_feature_across_clusters(seed):
    gen = np.random.default_rng(seed)
    experts, d = 5, 7
    assigned = np.repeat(np.arange(experts), 20)
    scale = gen.uniform(0.01, 3.0, size=(experts, d))  # dispersion per cluster and feature
    scale[0, 0] = 1e-7  # one nearly constant feature: its weight hits the clip
    x = gen.normal(size=(len(assigned), d)) * scale[assigned]
    weights = ac_weights(torch.as_tensor(x), torch.as_tensor(assigned), experts).numpy()
    reference = _public_acmoe_weights(x, assigned, experts)
    assert np.allclose(weights, reference, rtol=1e-9, atol=0)
    assert np.allclose(weights.mean(axis=0), 1.0)  # every feature averages 1 over the clusters
    raw = np.stack([1 / (np.abs(x[assigned == k] - x[assigned == k].mean(0)).mean(0) + 1e-4)
                    for k in range(experts)])  # fmt: skip
    assert raw.max() > 10 * raw.mean()  # the clip is active in this case


def test_ac_weights_give_a_cluster_without_dispersion_the_base_router():
    x = torch.tensor([[0.0, 1.0], [1.0, 3.0], [2.0, 2.0], [4.0, 2.0], [7.0, 7.0]])
    weights = ac_weights(x, torch.tensor([0, 0, 1, 1, 2]), 4)  # expert 2: one token, 3: none
    assert torch.equal(weights[2:], torch.ones(2, 2))
    assert torch.allclose(weights[:2].mean(dim=0), torch.ones(2))


def _purity(chosen: np.ndarray, labels: np.ndarray, experts: int) -> float:
    table = np.zeros((experts, labels.max() + 1))
    np.add.at(table, (chosen, labels), 1)
    return table.max(axis=1).sum() / len(labels)


def test_ac_router_routes_tight_clusters_more_purely_than_its_base_router():
    gains = []
    for seed in range(3):
        data = make_clusters(n_samples=4000, n_features=32, n_classes=8, tight_features=4,
                             seed=seed, separation=0.5)  # fmt: skip
        x, y = torch.as_tensor(data.x_train), data.y_train
        means = torch.stack([x[torch.as_tensor(y == c)].mean(0) for c in range(8)])
        noise = torch.randn(means.shape, generator=torch.Generator().manual_seed(seed))
        router = means + noise * means.std()  # a standard router that has half learned
        previous = topk(x @ router.T, 1)[:, 0]  # the layer before: the standard router
        weights = ac_weights(x, previous, 8)
        base = _purity(previous.numpy(), y, 8)
        ac = _purity(topk(ac_logits(x, router, weights, previous), 1)[:, 0].numpy(), y, 8)
        gains.append(ac - base)
    assert min(gains) > 0, gains


# -- CARL ----------------------------------------------------------------------------------


def _router(config: RouterConfig) -> Router:
    topology = load_topology(TWO_LEVEL)
    from innet.families.moe.placement import initial_placement, node_groups

    experts = [n for n in topology.graph.nodes if n not in topology.sensors]
    placement = initial_placement(12, experts)
    kind = ROUTERS.get(config.kind)
    return kind(
        config,
        12,
        2,
        1,
        list(topology.sensors),
        placement,
        node_groups(topology),
        NetworkModel(topology),
        128,
    )


@pytest.mark.parametrize("kind", ROUTERS.names())
def test_every_registered_router_picks_k_distinct_experts_per_token(kind):
    router = _router(RouterConfig(kind=kind, warm_start=1))
    logits = [torch.randn(30, 12, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    assert type(router) is ROUTERS.get(kind)
    for step in (0, 5, None):  # warm start, after it, evaluation
        for chosen in router.select(0, logits, step):
            assert chosen.shape == (30, 2) and int(chosen.min()) >= 0 and int(chosen.max()) < 12
            assert (chosen[:, 0] != chosen[:, 1]).all()


def test_an_unknown_router_kind_is_refused_with_the_registered_names():
    with pytest.raises(ValueError, match="unknown router kind 'nope'.*topk"):
        RouterConfig(kind="nope")


def test_carl_at_lambda_zero_routes_exactly_like_the_baseline():
    logits = [torch.randn(50, 12, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    base = _router(RouterConfig(kind="topk")).select(0, logits, step=0)
    carl = _router(RouterConfig(kind="carl", balance="off")).select(0, logits, step=0)
    assert all(torch.equal(a, b) for a, b in zip(base, carl, strict=True))


def test_carl_dispatch_cost_does_not_increase_with_lambda():
    logits = [torch.randn(200, 12, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    spent = []
    for lam in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0):
        router = _router(RouterConfig(kind="carl", balance="off", **{"lambda": lam}))
        chosen = router.select(0, logits, step=0)
        spent.append(sum(router.costs[0][s][c].sum() for s, c in enumerate(chosen)))
    assert all(b <= a + 1e-12 for a, b in zip(spent, spent[1:], strict=False)), spent
    assert spent[-1] < 0.5 * spent[0]


def test_adaptive_balance_reaches_both_targets_on_zipf_within_200_steps():
    check = BalanceCheckConfig(gammas=[0.002, 0.02])
    frame = pd.DataFrame(balance_trace(check, seed=0)).assign(seed=0)
    reach = first_reach(frame).set_index(["mode", "gamma"])["reached"]
    assert 0 <= reach[("adaptive", 0.002)] < 200 and 0 <= reach[("adaptive", 0.02)] < 200
    assert reach[("fixed", 0.002)] == -1  # a small fixed coefficient does not get there
    assert reach[("adaptive", 0.02)] < reach[("fixed", 0.02)]


def test_the_controller_moves_against_the_skew():
    controller = BalanceController(4, np.array([0, 0, 1, 1]), mode="adaptive", gamma=0.1)
    controller.update(np.array([10, 2, 2, 2]))
    assert controller.bias().argmax() == 0 and controller.group_bias[0] > 0


def test_replacement_is_adopted_only_when_the_max_group_load_falls():
    groups = {"a": 0, "b": 0, "c": 1, "d": 1}
    load = np.array([5.0, 5.0, 1.0, 1.0])
    proposal = propose_placement(load, ["a", "b", "c", "d"], groups)
    assert predicted_max_group_load(load, proposal, groups) == 6.0 < 10.0
    assert sorted(proposal) == ["a", "b", "c", "d"]  # the same slots
    balanced = ["a", "c", "b", "d"]
    assert propose_placement(load, balanced, groups) == balanced  # nothing better: no move


def test_skew_metrics_against_closed_forms():
    loads = np.array([1.0, 2.0, 3.0, 6.0])
    m = skew(loads)
    assert m["max_vio"] == pytest.approx(1.0) and m["max_mean"] == pytest.approx(2.0)
    assert m["cv"] == pytest.approx(np.std(loads) / 3.0)
    mean_abs = np.abs(loads[:, None] - loads[None, :]).mean()
    assert m["gini"] == pytest.approx(mean_abs / (2 * loads.mean()))


# -- the report's comparisons ---------------------------------------------------------------


def _variant(router: str, lam: float, accuracy: list[float], cross: list[int], **parts) -> dict:
    return {
        "router": router, "lambda": lam, "accuracy_per_seed": accuracy,
        "cross_group_bytes": cross, "train_exchange_bytes_per_seed": cross,
        "purity_per_seed": accuracy, "equivalence_margin": 0.01,
        "carl_parts": {"balance": "off", "warm_start": 0, "replace_every": 0, **parts}
        if router == "carl" else None,
    }  # fmt: skip


def test_lambda_acceptance_is_the_largest_lambda_shown_equivalent_its_change_above_minus_100():
    base = [0.80, 0.85, 0.90, 0.82]
    summary = {"variants": {
        "topk": _variant("topk", 0, base, [1000, 1000, 1000, 1000]),
        # lambda 4: far cheaper, but 3 points less accurate: not equivalent
        "carl_l4": _variant("carl", 4, [a - 0.03 for a in base], [1, 2, 1, 3]),
        # lambda 2: within +-0.002 of the baseline in every seed: equivalent at 0.01
        "carl_l2": _variant("carl", 2, [a + d for a, d in
                                        zip(base, [0.002, -0.001, 0.0, 0.001], strict=True)],
                            [5, 600, 30, 8]),
        # balancing at lambda 8 is not part of the sweep
        "carl_l8_balance": _variant("carl", 8, base, [1, 1, 1, 1], balance="adaptive"),
    }}  # fmt: skip
    accepted = lambda_acceptance(summary)
    assert accepted["variant"] == "carl_l2" and accepted["lambda"] == 2
    assert accepted["accuracy_equivalence"]["verdict"] == "equivalent"
    ratio = accepted["cross_group_bytes_ratio"]
    # a t interval on the differences crosses -100% here; the log-ratio interval cannot
    differences = np.array([5, 600, 30, 8]) / 1000 - 1
    t_low = differences.mean() - 3.182446 * differences.std(ddof=1) / 2
    assert t_low < -1 < ratio["change_ci_low"] <= ratio["change"] <= ratio["change_ci_high"]
    assert ratio["change"] == pytest.approx(np.exp(np.log([5, 600, 30, 8]).mean()) / 1000 - 1)
    summary["variants"]["carl_l2"]["accuracy_per_seed"] = [a - 0.02 for a in base]
    assert lambda_acceptance(summary)["variant"] is None  # none equivalent: said so


# -- end to end ----------------------------------------------------------------------------

SCENARIO = """
name: moe_tiny
family: moe
topology: {topology}
seeds: {seeds}
moe:
  dataset: clusters
  n_samples: 400
  experts: 12
  top_k: 2
  layers: 2
  batch_size: 128
  epochs: 1
  balance_check: {{steps: 5, tokens: 256, gammas: [0.02]}}
variants:
  topk: {{router: {{kind: topk}}}}
  carl: {{router: {{kind: carl, lambda: 2, warm_start: 1, replace_every: 1}}}}
"""


def _shipped_variants(*names: str) -> dict:
    """Variants of the shipped ``moe_routing`` scenario, as written there."""
    shipped = yaml.safe_load((ROOT / "scenarios" / "moe_routing.yaml").read_text())
    return {name: shipped["variants"][name] for name in names}


def _hops_by_hand(exchanges: pd.DataFrame, graph) -> pd.Series:
    """Training bytes per (variant, seed), every hop: linked pairs direct, others routed."""

    def hops(src: str, dst: str, nbytes: int) -> int:
        if graph.has_edge(src, dst):
            return 1
        weight = lambda u, v, e: e["latency"] + 8 * nbytes / e["capacity"]  # noqa: E731
        return len(nx.shortest_path(graph, src, dst, weight=weight)) - 1

    x = exchanges[exchanges.phase.str.startswith("moe_")]
    counted = [n * hops(s, d, n) for s, d, n in zip(x.src, x.dst, x.nbytes, strict=True)]
    return x.assign(on_links=counted).groupby(["variant", "seed"]).on_links.sum()


@pytest.mark.slow
def test_a_moe_run_through_the_cli_reports_every_summary_field(tmp_path):
    topology = TWO_LEVEL
    text = SCENARIO.format(topology=topology, seeds=2)
    scenario = yaml.safe_load(text)
    scenario["variants"].update(_shipped_variants("carl_l0"))  # lambda 0, as shipped
    (tmp_path / "moe.yaml").write_text(yaml.safe_dump(scenario))
    out = tmp_path / "run"
    assert main(["--scenario", str(tmp_path / "moe.yaml"), "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    exchanges = pd.read_parquet(out / "exchanges.parquet")
    nodes = pd.read_csv(out / "moe_nodes.csv")
    steps = pd.read_csv(out / "moe_steps.csv")
    links = pd.read_csv(out / "links.csv")
    group = dict(zip(nodes.node, nodes.group, strict=False))
    graph = load_topology(TWO_LEVEL).graph
    on_links = _hops_by_hand(exchanges, graph)
    for name, variant in summary["variants"].items():
        for field in ("accuracy_mean", "accuracy_std", "cross_group_bytes", "max_vio_expert",
                      "max_vio_group", "sim_time_s_per_step"):  # fmt: skip
            assert variant[field] is not None, (name, field)
        # cross-group bytes: a hand count over every phase, migration included
        rows = exchanges[exchanges.variant == name]
        cross = rows[rows.src.map(group) != rows.dst.map(group)]
        assert set(cross.phase) <= {"moe_dispatch", "moe_combine", "moe_combine_grad",
                                    "moe_dispatch_grad", "moe_migrate"}  # fmt: skip
        assert variant["cross_group_bytes"] == cross.groupby("seed").nbytes.sum().tolist()
        migrate = cross[cross.phase == "moe_migrate"].groupby("seed").nbytes.sum()
        assert variant["cross_group_migrate_bytes"] == [int(migrate.get(s, 0)) for s in (0, 1)]
        # the step table counts the dispatch part from the tensors in the trainer
        dispatch = cross[cross.phase == "moe_dispatch"].groupby("seed").nbytes.sum().tolist()
        mine = steps[steps.variant == name].groupby("seed").cross_group_dispatch_bytes.sum()
        assert mine.tolist() == dispatch
        # bytes on links, every hop: by hand, in summary.json and in links.csv (the figures)
        assert variant["train_exchange_bytes_per_seed"] == on_links[name].tolist()
        table = links[(links.variant == name) & (links.phase != "eval")]
        assert table.nbytes.sum() == sum(variant["train_exchange_bytes_per_seed"])
        assert variant["sent_bytes_per_seed"] == rows.groupby("seed").nbytes.sum().tolist()
    assert summary["variants"]["carl"]["cross_group_migrate_bytes"] != [0, 0]  # it was counted
    # lambda 0 routes exactly as top-k: the same messages, bytes, times and metrics
    key = ["seed", "epoch", "step", "phase", "src", "dst", "payload", "nbytes", "t_start", "t_end"]
    pair = [exchanges[exchanges.variant == v][key].reset_index(drop=True)
            for v in ("topk", "carl_l0")]  # fmt: skip
    pd.testing.assert_frame_equal(pair[0], pair[1])
    metrics = pd.read_csv(out / "metrics.csv").drop(columns="variant")
    pd.testing.assert_frame_equal(
        metrics[pd.read_csv(out / "metrics.csv").variant == "topk"].reset_index(drop=True),
        metrics[pd.read_csv(out / "metrics.csv").variant == "carl_l0"].reset_index(drop=True),
    )
    # every token message: hidden (32) float32 columns; outputs and gradients mirror it
    x = exchanges[exchanges.variant == "topk"]
    assert (x[x.phase == "moe_dispatch"].nbytes % (32 * 4) == 0).all()
    for there, back in (("moe_dispatch", "moe_combine"), ("moe_combine_grad", "moe_dispatch_grad")):
        assert x[x.phase == there].nbytes.sum() == x[x.phase == back].nbytes.sum()
    migrate = exchanges[(exchanges.variant == "carl") & (exchanges.phase == "moe_migrate")]
    expert_params = 32 * 64 + 64 + 64 * 32 + 32
    assert (migrate.nbytes == 4 * expert_params).all()
    assert (x.t_end > x.t_start).all()  # timed by the network model
    # laid hop by hop on the model's paths, the links between groups carry each cross-group
    # token four times (tokens, outputs and both gradients), one inter-group link each way
    hop = hop_loads(open_run(out)[0])
    inter = hop[(hop.variant == "topk") & hop.inter_group].bytes_per_step.sum()
    n_steps = steps[steps.variant == "topk"].groupby("seed").step.nunique().mean()
    expected = np.mean(summary["variants"]["topk"]["cross_group_bytes"]) / n_steps
    assert inter == pytest.approx(expected)
    assert (out / "figures" / "cost_accuracy.png").is_file()
    report = (out / "report.md").read_text()
    assert "## Mixture of experts" in report
    # the report speaks the family's language: no plans, no routing, no fusion node
    assert "## Plans" not in report and "| routing |" not in report and "fusion" not in report
    assert "4 token sources, 12 expert nodes" in report
    assert "| training bytes on links / seed |" in report.replace("  ", "")


def test_the_ac_router_without_a_layer_before_is_one_line_exit_2(tmp_path, capsys):
    topology = TWO_LEVEL
    text = SCENARIO.format(topology=topology, seeds=1).replace("layers: 2", "layers: 1")
    (tmp_path / "moe.yaml").write_text(text.replace("kind: topk", "kind: ac"))
    assert main(["--scenario", str(tmp_path / "moe.yaml"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "variants.topk.router.kind" in err and "layers" in err
