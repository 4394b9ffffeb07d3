"""``network.model`` through the command line: runs, retimes, refusals.

A finished run re-timed with ``--network-model fifo`` gives back its records
bit for bit, and with ``flow`` changes only their times. A MoE run sends the
same messages on either model; under ``flow`` every routed message (tokens to
experts that share no link with their source) still takes at least its
bottleneck's transmission time plus the latencies of its path.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pandas as pd
import pytest
import yaml

from innet.app.cli import main
from innet.families.runs import open_run

ROOT = Path(__file__).resolve().parents[1]

MOE = f"""
name: moe_models
family: moe
topology: {ROOT / "topologies" / "two_level16.yaml"}
seeds: 1
moe: {{dataset: clusters, n_samples: 300, experts: 8, top_k: 2, layers: 1, batch_size: 100,
       epochs: 1}}
variants:
  topk: {{router: {{kind: topk}}}}
"""

INL = f"""
name: inl_models
topology: {ROOT / "topologies" / "diamond.yaml"}
data: {{dataset: gaussian_mixture, n_samples: 200, n_features: 6, n_classes: 3, views: noisy}}
model: {{latent_dim: 4, hidden: 8}}
gate: {{kind: none}}
training: {{epochs: 1, batch_size: 40}}
network: {{node_flops: {{"*": 50MFLOPS}}, tx_ports: 1}}
variants:
  dense: {{routing: dense}}
seeds: 1
"""


def test_an_unknown_network_model_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["--scenario", "smoke", "--set", "network.model=fluid", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "network.model" in err[0]
    assert not out.exists()


def test_retime_refuses_an_unknown_network_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["retime", str(tmp_path), "--network-model", "fluid"])
    assert stop.value.code == 2
    assert "--network-model" in capsys.readouterr().err


def _lower_bound(graph: nx.Graph, src: str, dst: str, nbytes: int) -> float:
    """Alone on its route: the bottleneck's transmission time plus every latency."""
    weight = lambda u, v, e: e["latency"] + 8 * nbytes / e["capacity"]  # noqa: E731
    path = nx.shortest_path(graph, src, dst, weight=weight)
    hops = [graph.edges[u, v] for u, v in zip(path, path[1:], strict=False)]
    return 8 * nbytes / min(h["capacity"] for h in hops) + sum(h["latency"] for h in hops)


@pytest.mark.slow
def test_a_moe_run_on_either_model_sends_the_same_messages(tmp_path):
    (tmp_path / "moe.yaml").write_text(MOE)
    runs = {}
    for model in ("fifo", "flow"):
        out = tmp_path / model
        args = ["--scenario", str(tmp_path / "moe.yaml"), "--out", str(out), "--no-progress",
                "--set", f"network.model={model}"]  # fmt: skip
        assert main(args) == 0
        runs[model] = pd.read_parquet(out / "exchanges.parquet")
    config = yaml.safe_load((tmp_path / "flow" / "config.yaml").read_text())
    assert config["network"]["model"] == "flow"
    fifo, flow = runs["fifo"], runs["flow"]
    same = ["variant", "seed", "epoch", "step", "phase", "src", "dst", "nbytes", "attempts"]
    pd.testing.assert_frame_equal(flow[same], fifo[same])
    graph = open_run(tmp_path / "flow")[0].topology.graph
    linked = [graph.has_edge(s, d) for s, d in zip(flow["src"], flow["dst"], strict=True)]
    routed = flow[[not link for link in linked]]
    assert len(routed) > 0
    took = routed["t_end"] - routed["t_start"]
    triples = zip(routed["src"], routed["dst"], routed["nbytes"], strict=True)
    bound = pd.Series([_lower_bound(graph, s, d, int(n)) for s, d, n in triples], routed.index)
    assert (took >= bound * (1 - 1e-9)).all()
    assert not flow["t_end"].equals(fifo["t_end"])  # cut-through differs from store-and-forward


@pytest.mark.slow
def test_retime_with_the_fifo_model_gives_back_the_run_and_flow_changes_only_times(
    tmp_path, monkeypatch
):
    run = tmp_path / "run"
    (tmp_path / "inl.yaml").write_text(INL)
    assert main(["--scenario", str(tmp_path / "inl.yaml"), "--out", str(run), "--no-progress",
                 "--set", "report.figures=false"]) == 0  # fmt: skip
    original = pd.read_parquet(run / "exchanges.parquet")
    fifo, flow = tmp_path / "fifo", tmp_path / "flow"
    elsewhere = tmp_path.joinpath(*["deep"] * 40)  # too deep for the run's "../" to reach "/"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # the run's own topology is found from the run, not from here
    assert main(["retime", str(run), "--network-model", "fifo", "--out", str(fifo)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(fifo / "exchanges.parquet"), original)
    assert main(["retime", str(run), "--network-model", "flow", "--out", str(flow)]) == 0
    assert yaml.safe_load((flow / "config.yaml").read_text())["network"]["model"] == "flow"
    retimed = pd.read_parquet(flow / "exchanges.parquet")
    same = [c for c in original.columns if c not in ("t_start", "t_end", "queue_s")]
    pd.testing.assert_frame_equal(retimed[same], original[same])


@pytest.mark.slow
def test_moe_experts_compute_between_their_tokens_and_their_results(tmp_path):
    (tmp_path / "moe.yaml").write_text(MOE)
    out = tmp_path / "run"
    assert main(["--scenario", str(tmp_path / "moe.yaml"), "--out", str(out), "--no-progress",
                 "--set", 'network.node_flops={"*": 50MFLOPS}',
                 "--set", "report.figures=false"]) == 0  # fmt: skip
    moe = yaml.safe_load((out / "config.yaml").read_text())["moe"]
    per_token, token_bytes = 4 * moe["hidden"] * moe["expert_hidden"], 4 * moe["hidden"]
    frame = pd.read_parquet(out / "exchanges.parquet")
    checked = 0
    for _, rows in frame.groupby(["seed", "step"]):
        for node, tokens_in in rows[rows["phase"] == "moe_dispatch"].groupby("dst"):
            results = rows[(rows["phase"] == "moe_combine") & (rows["src"] == node)]
            # the results leave together; a routed one's queue_s also counts waits at relays
            left = (results["t_start"] - results["queue_s"]).max()
            tokens = tokens_in["nbytes"].sum() / token_bytes
            expected = tokens * per_token / 50e6  # the forward pass on every token it got
            assert left - tokens_in["t_end"].max() == pytest.approx(expected, rel=1e-9)
            checked += 1
        for node, grads in rows[rows["phase"] == "moe_combine_grad"].groupby("dst"):
            replies = rows[(rows["phase"] == "moe_dispatch_grad") & (rows["src"] == node)]
            left = (replies["t_start"] - replies["queue_s"]).max()
            expected = 2 * grads["nbytes"].sum() / token_bytes * per_token / 50e6
            assert left - grads["t_end"].max() == pytest.approx(expected, rel=1e-9)
            checked += 1
    assert checked > 10
