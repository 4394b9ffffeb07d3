"""The batched executor with its nodes spread over processes computes and records what one does.

Two kinds of runs:

- **The executor driven directly**, in 2 and 3 gloo processes (spawned here) and,
  as a stricter-than-NCCL model, in threads over one stream per rank (the
  stand-in of ``tests/test_distributed_transport.py``; once with a third rank
  that runs no node). Each rank runs the
  batched executor on the ``mesh14`` dense plan (lateral links, several
  levels) with nodes placed round robin, a Gaussian gate, four training steps
  (one with a failed link that loses messages) and one evaluation batch. The
  same steps in one process are the reference: the merged exchange log equals
  its log record for record; each node's Gaussian noise at each step equals
  the one-process draw and the draw its own ``(seed, node)`` generator gives
  (the random-number contract); losses, parameters and evaluation sums agree
  to 1e-5. Per step, the tensors sent between ranks number exactly the
  (phase, level, sending rank, receiving rank) with traffic, levels computed
  here with networkx; their bytes are the sum, over the step's records that
  cross ranks and arrive, of ``nbytes - header_bytes`` (the simulated header
  is in every record, never on the wire; a lost message is recorded, not sent).
- **torchrun end to end** (``python -m torch.distributed.run``, gloo on CPU):
  ``smoke`` and a trimmed ``dense_vs_dijkstra``, gate ``none`` and
  ``gaussian``, 2 and 3 processes, against the one-process batched run:
  ``exchanges.parquet`` equal, metrics equal to 1e-5, ``placement.json``'s
  ``tensors_on_wire`` the expected number of bundles (levels from the records'
  own edges, by networkx) and ``bytes_on_wire`` the crossing records' bytes.
"""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch
from test_batched import N_TEST, N_TRAIN
from test_batched import _setup as _batched_setup
from test_distributed_transport import _join_job, run_processes, run_strict_threads
from test_torchrun import run, torchrun_command

from innet.core.events import step_plan
from innet.core.placement import place_nodes
from innet.core.records import ExchangeLog
from innet.core.transport import InProcessTransport, RecordingTransport
from innet.distributed import DistributedTransport, shutdown
from innet.families.inl.executors.batched import BatchedExecutor
from innet.families.inl.modules import NodeModule

pytestmark = pytest.mark.distributed

BATCH, SEED = 8, 7
HEADER = 8
STEPS = 4
FAILED_STEP = 2
_BUILDING = threading.Lock()  # ranks as threads build their executors one at a time


# -- the executor driven directly -----------------------------------------------------------------


def _setup():
    """mesh14's dense plan with Gaussian gates (``test_batched``'s setup) and its steps."""
    topology, plan, specs, views, labels = _batched_setup("dense", "gaussian", "mean", seed=3)
    failed = next(edge for edge in plan.edges if edge[0] in topology.sensors)
    steps = [
        step_plan(plan, frozenset({frozenset(failed)}) if step == FAILED_STEP else frozenset(),
                  topology.sensors)
        for step in range(STEPS)
    ]  # fmt: skip
    return topology, plan, specs, views, labels, steps


class _Watched(BatchedExecutor):
    """Keeps every Gaussian draw: ``noise[(step, node)]``."""

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - BatchedExecutor's
        super().__init__(**kwargs)
        self.step_number = 0
        self.noise: dict[tuple[int, str], np.ndarray] = {}

    def _noise(self, stack, rows, shape, dtype):  # noqa: ANN001, ANN202 - the parent's
        eps = BatchedExecutor._noise(stack, rows, shape, dtype)
        for row, value in zip(rows, eps, strict=True):
            self.noise[(self.step_number, stack.nodes[row])] = value.numpy().copy()
        return eps


def drive(inner) -> dict:  # noqa: ANN001 - a Transport
    """Train STEPS steps and evaluate once on ``inner``; what this process saw, per step."""
    topology, plan, specs, views, labels, steps = _setup()
    recorder = RecordingTransport(inner, ExchangeLog(topology.graph.nodes), HEADER)
    with _BUILDING:  # modules are initialised from torch's global generator, seeded per node
        executor = _Watched(plan=plan, specs=specs, seed=SEED, transport=recorder, views=views,
                            labels=labels, lr=0.05, optimizer="adam", beta=0.01)  # fmt: skip
    rng = np.random.default_rng(0)
    counted = (
        getattr(inner, "messages_sent_cross_rank", 0),
        getattr(inner, "bytes_sent_cross_rank", 0),
    )
    tensors, nbytes, losses = [], [], []

    def count() -> None:
        nonlocal counted
        now = (
            getattr(inner, "messages_sent_cross_rank", 0),
            getattr(inner, "bytes_sent_cross_rank", 0),
        )
        tensors.append(now[0] - counted[0])
        nbytes.append(now[1] - counted[1])
        counted = now

    for number, step in enumerate(steps):
        executor.step_number = number
        recorder.drop(step.lost)
        recorder.log.begin("train", 0, number, BATCH)
        losses.append(executor.train_step(rng.choice(N_TRAIN, size=BATCH, replace=False), step))
        recorder.log.end()
        count()
    recorder.drop(frozenset())
    recorder.log.begin("eval", 0, 0, N_TEST)
    sums = executor.evaluate_batch(np.arange(N_TEST))
    recorder.log.end()
    count()
    parameters = {
        node: {name: value.detach().numpy().copy() for name, value in
               executor.node_parameters(node).items()}
        for node in executor.stacks
    }  # fmt: skip
    return {
        "log": recorder.log, "noise": executor.noise, "losses": losses, "tensors": tensors,
        "bytes": nbytes, "parameters": parameters, "metric_sums": sums.metric_sums,
        "rate_sums": sums.rate_sums,
    }  # fmt: skip


def placement(world_size: int, idle: bool = False) -> dict[str, int]:
    """Round robin over the ranks; with ``idle``, over all but the last, which runs no node."""
    topology, plan, *_ = _setup()
    return place_nodes(topology, plan, world_size - idle, "round_robin")


def _rank_worker(rank: int, world_size: int, port: int, results) -> None:  # noqa: ANN001
    try:
        context = _join_job(rank, world_size, port, 30.0)
        outcome = drive(DistributedTransport(placement(world_size), rank, world_size, "cpu"))
        shutdown(context, wait=True)
        results.put((rank, outcome))
    except BaseException:  # noqa: BLE001 - sent to the test process
        import traceback

        results.put((rank, traceback.format_exc()))


def _levels(edges: list[tuple[str, str]]) -> dict[str, int]:
    """Each node's level: the longest path into it (networkx, not the executor's numpy)."""
    graph = nx.DiGraph(edges)
    return {
        node: nx.dag_longest_path_length(graph.subgraph(nx.ancestors(graph, node) | {node}))
        for node in graph
    }


def _bundles(edges: list[tuple[str, str]], ranks: dict[str, int], backward: bool) -> int:
    """Distinct (level of the sender, sending rank, receiving rank) over edges joining ranks."""
    level = _levels(edges)
    keys = set()
    for child, parent in edges:
        if ranks[child] != ranks[parent]:
            sender, receiver = (parent, child) if backward else (child, parent)
            keys.add((level[sender], ranks[sender], ranks[receiver]))
    return len(keys)


@pytest.fixture(scope="module")
def one_process() -> dict:
    return drive(InProcessTransport())


def _check(world_size: int, outcomes: dict[int, dict], reference: dict, idle: bool = False) -> None:
    _, plan, _, _, _, steps = _setup()
    ranks = placement(world_size, idle)
    assert set(ranks.values()) == set(range(world_size - idle))
    merged = ExchangeLog.merge([outcomes[rank]["log"] for rank in range(world_size)])
    frame, expected = merged.frame("v", 0), reference["log"].frame("v", 0)
    pd.testing.assert_frame_equal(frame, expected)
    assert frame["lost"].any()  # the failed link did lose messages
    # the random-number contract: the same draws, whoever runs the node
    noise = {key: value for rank in outcomes for key, value in outcomes[rank]["noise"].items()}
    assert noise.keys() == reference["noise"].keys()
    for key, value in reference["noise"].items():
        np.testing.assert_array_equal(noise[key], value)
    fusion_rank = ranks[plan.fusion]
    for rank, outcome in outcomes.items():
        if rank != fusion_rank:
            assert outcome["losses"] == [None] * STEPS and outcome["metric_sums"] == {}
    # bit-identical: every sum a node receives happens in one canonical order on any placement
    assert outcomes[fusion_rank]["losses"] == reference["losses"]
    assert outcomes[fusion_rank]["metric_sums"] == reference["metric_sums"]
    rate_sums = {k: v for o in outcomes.values() for k, v in o["rate_sums"].items()}
    assert rate_sums == reference["rate_sums"]
    for rank, outcome in outcomes.items():
        for node, parameters in outcome["parameters"].items():
            assert ranks[node] == rank
            for name, value in parameters.items():
                np.testing.assert_array_equal(value, reference["parameters"][node][name])
    # one tensor per (phase, level, rank pair) with traffic; bytes = the records that cross
    step_records = [frame[(frame["step"] == n) & (frame["phase"] != "eval")] for n in range(STEPS)]
    step_records.append(frame[frame["phase"] == "eval"])
    delivered = [list(step.delivered.edges) for step in steps] + [list(plan.edges)]
    crossing_messages = 0
    for number, (records, edges) in enumerate(zip(step_records, delivered, strict=True)):
        expected_tensors = _bundles(edges, ranks, backward=False)
        if number < STEPS:
            expected_tensors += _bundles(edges, ranks, backward=True)
        tensors = sum(outcomes[rank]["tensors"][number] for rank in outcomes)
        assert tensors == expected_tensors, number
        across = records[(records["src"].map(ranks) != records["dst"].map(ranks))
                         & ~records["lost"]]  # fmt: skip
        sent = sum(outcomes[rank]["bytes"][number] for rank in outcomes)
        assert sent == int((across["nbytes"] - HEADER).sum()), number
        crossing_messages += len(across)
    assert sum(sum(o["tensors"]) for o in outcomes.values()) < crossing_messages  # bundled


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [2, 3])
def test_spread_over_gloo_processes_equals_one_process(world_size, one_process):
    outcomes = run_processes(_rank_worker, world_size, world_size)
    _check(world_size, outcomes, one_process)


@pytest.mark.parametrize(("world_size", "idle"), [(2, False), (3, False), (3, True)])
def test_bundles_cannot_deadlock_under_a_strict_nccl_model(
    world_size, idle, one_process, monkeypatch
):
    """Ranks as threads, one stream each, a send runs only with its receive (see StrictStreams)."""
    outcomes = run_strict_threads(
        world_size,
        monkeypatch,
        lambda rank: drive(
            DistributedTransport(placement(world_size, idle), rank, world_size, "cpu")
        ),
        timeout_s=120,
    )
    _check(world_size, outcomes, one_process, idle)  # type: ignore[arg-type]


def test_noise_is_each_nodes_own_generator(one_process):
    """A node's k-th draw is the k-th of its module's gate generator, seeded by (seed, node)."""
    _, _, specs, *_ = _setup()
    drawn: dict[str, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for (step, node), value in sorted(one_process["noise"].items()):
        drawn[node].append((step, value))
    assert len(drawn) > 3
    for node, draws in drawn.items():
        generator = NodeModule(specs[node], SEED).gate.generator
        for _, value in draws:
            np.testing.assert_array_equal(value, torch.randn(value.shape, generator=generator))


def test_bundles_refuse_pending_announced_messages():
    transport = DistributedTransport({"a": 0, "b": 0}, 0, 2, "cpu")  # no rank to greet
    transport.expect([("a", "b", "forward", "latent", (2, 3))])
    with pytest.raises(RuntimeError, match="announced messages are still pending"):
        transport.exchange({1: torch.zeros(1, 2, 3)}, {})
    with pytest.raises(ValueError, match="to itself"):
        DistributedTransport({"a": 0}, 0, 2, "cpu").exchange({0: torch.zeros(1)}, {})


# -- torchrun end to end --------------------------------------------------------------------------

SHORT = ["--seeds", "1", "--no-progress", "--set", "training.executor=batched",
         "--set", f"network.header_bytes={HEADER}"]  # fmt: skip
TRIMMED = {
    "smoke": ["--set", "training.epochs=1"],
    "dense_vs_dijkstra": ["--set", "training.epochs=1", "--set", "training.batch_size=256",
                          "--set", "data.test_fraction=0.5"],
}  # fmt: skip


def _cli_args(name: str, gate: str, out: Path) -> list[str]:
    return ["--scenario", name, *SHORT, *TRIMMED[name], "--set", f"gate.kind={gate}",
            "--out", str(out)]  # fmt: skip


@pytest.fixture(scope="module")
def one_process_runs(tmp_path_factory: pytest.TempPathFactory):
    done: dict[tuple[str, str], Path] = {}

    def get(name: str, gate: str) -> Path:
        if (name, gate) not in done:
            out = tmp_path_factory.mktemp(f"{name}-{gate}") / "run"
            proc = run([sys.executable, "run_sim.py", *_cli_args(name, gate, out)])
            assert proc.returncode == 0, proc.stderr
            done[(name, gate)] = out
        return done[(name, gate)]

    return get


# each run is a torchrun launch (~15 s on 2 cores): three cover both scenarios, both gates
# and both world sizes
@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "gate", "world_size"),
    [("smoke", "none", 2), ("smoke", "gaussian", 3), ("dense_vs_dijkstra", "gaussian", 2)],
)
def test_torchrun_batched_equals_one_process(name, gate, world_size, one_process_runs, tmp_path):
    expected = one_process_runs(name, gate)
    out = tmp_path / "run"
    proc = run(torchrun_command(world_size, *_cli_args(name, gate, out)))
    assert proc.returncode == 0, proc.stderr
    exchanges = pd.read_parquet(out / "exchanges.parquet")
    pd.testing.assert_frame_equal(exchanges, pd.read_parquet(expected / "exchanges.parquet"))
    metrics, reference = pd.read_csv(out / "metrics.csv"), pd.read_csv(expected / "metrics.csv")
    pd.testing.assert_frame_equal(metrics, reference, check_exact=True)  # bit-identical
    recorded = pd.read_json(out / "placement.json", typ="series")
    assert recorded["world_size"] == world_size
    steps = pd.read_csv(out / "steps.csv")
    bundled = 0
    for variant, info in recorded["variants"].items():
        ranks = info["ranks"]
        mine = exchanges[exchanges["variant"] == variant]
        counts = steps[steps["variant"] == variant]["kind"].value_counts()
        train = mine[(mine["step"] == 0) & (mine["phase"] == "forward")]
        evaluation = mine[(mine["step"] == 0) & (mine["phase"] == "eval")]
        train_edges = list(zip(train["src"], train["dst"], strict=True))
        eval_edges = list(zip(evaluation["src"], evaluation["dst"], strict=True))
        tensors = counts["train"] * (
            _bundles(train_edges, ranks, backward=False) + _bundles(train_edges, ranks, True)
        ) + counts["eval"] * _bundles(eval_edges, ranks, backward=False)
        assert info["tensors_on_wire"] == {"0": tensors}, variant
        across = mine[(mine["src"].map(ranks) != mine["dst"].map(ranks)) & ~mine["lost"]]
        assert info["bytes_on_wire"] == {"0": int((across["nbytes"] - HEADER).sum())}, variant
        bundled += len(across) - tensors
    if name == "dense_vs_dijkstra":
        assert bundled > 0  # fewer tensors than node-pair messages crossed ranks
