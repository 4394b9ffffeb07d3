"""The torch.distributed transport delivers every message intact, in order, without deadlock.

Most tests start 2, 3 or 4 gloo processes on this machine (CPU only) and, in
each, drive a :class:`DistributedTransport` the way the executor does: announce
a phase with ``expect``, walk the local nodes in plan order receiving from
children and sending to parents (the reverse for the backward pass), then
``flush``. Every message is a tensor filled with a number that encodes
``(src, dst, phase, step)``, so a message delivered to the wrong receive
shows up as a wrong number, even when shapes agree.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import socket
import threading
import time
import traceback
from collections import defaultdict, deque
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pytest
import torch

from innet.core.events import step_plan
from innet.core.placement import place_nodes
from innet.core.plans import Plan, dense_plan, hop_plan
from innet.core.topology.model import Topology, node_key
from innet.core.transport import InProcessTransport, phase_messages
from innet.distributed import (
    DistributedError,
    DistributedTransport,
    init_distributed,
    is_torchrun,
    shutdown,
)
from innet.distributed.context import DistContext
from innet.distributed.group import ProcessGroup
from innet.families.inl.executors.per_node import PerNodeExecutor
from innet.families.inl.modules import ModuleSpec

pytestmark = pytest.mark.distributed

PROCESS_TIMEOUT_S = 30.0  # a wait on a peer that never answers fails after this
RUN_DEADLINE_S = 90.0  # a run that has not finished by then is killed and fails
TRAIN_STEPS = 2
TRAIN_BATCH = 3
EVAL_BATCHES = (3, 2)
PHASE_CODE = {"forward": 1, "backward": 2, "eval": 3}


# -- scenarios: a plan, a placement and latent sizes, the same in every process -------------


@dataclass(frozen=True)
class Scenario:
    name: str
    plan: Plan
    placement: dict[str, int]
    dims: dict[str, int]


def _topology(graph: nx.Graph, fusion: str) -> Topology:
    graph = nx.relabel_nodes(graph, {node: f"n{node}" for node in graph})
    for node in graph:
        graph.nodes[node]["role"] = "fusion" if node == fusion else "relay"
    nx.set_edge_attributes(graph, 1e6, "capacity")
    nx.set_edge_attributes(graph, 1e-3, "latency")
    return Topology("test", graph)


def _grid(rows: int, columns: int) -> nx.Graph:
    return nx.convert_node_labels_to_integers(nx.grid_2d_graph(rows, columns), ordering="sorted")


def _random_connected(n_nodes: int, seed: int) -> nx.Graph:
    """A random tree plus random extra links: connected, with many lateral links."""
    rng = np.random.default_rng(seed)
    graph = nx.Graph()
    graph.add_nodes_from(range(n_nodes))
    for node in range(1, n_nodes):
        graph.add_edge(node, int(rng.integers(node)))
    for _ in range(n_nodes):
        u, v = rng.integers(n_nodes, size=2)
        if u != v:
            graph.add_edge(int(u), int(v))
    return graph


def build_scenarios(world_size: int) -> list[Scenario]:
    """Dense DAGs with lateral links, trees, one crowded rank, and crossed messages."""
    scenarios = []
    grid = _topology(_grid(3, 4), "n0")
    for strategy in ("round_robin", "partition"):
        plan = dense_plan(grid)
        scenarios.append(
            Scenario(
                f"grid_dense_{strategy}",
                plan,
                place_nodes(grid, plan, world_size, strategy),
                {node: 2 + int(node[1:]) % 3 for node in grid.nodes},
            )
        )
    tree = _topology(nx.balanced_tree(2, 3), "n0")
    scenarios.append(
        Scenario(
            "tree_round_robin",
            hop_plan(tree),
            place_nodes(tree, None, world_size, "round_robin"),
            {node: 3 for node in tree.nodes},
        )
    )
    small = _topology(_grid(3, 3), "n4")
    crowded = {node: 0 for node in small.nodes}
    for rank, node in enumerate(small.nodes[-(world_size - 1) :] if world_size > 1 else [], 1):
        crowded[node] = rank
    scenarios.append(
        Scenario("crowded_rank0", dense_plan(small), crowded, {n: 2 for n in small.nodes})
    )
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        graph = _topology(_random_connected(9, seed), f"n{seed}")
        placement = {node: int(rng.integers(world_size)) for node in graph.nodes}
        dims = {node: int(rng.integers(2, 4)) for node in graph.nodes}
        scenarios.append(Scenario(f"random_dense_{seed}", dense_plan(graph), placement, dims))
    scenarios.append(crossed_scenario(world_size))
    return scenarios


def crossed_scenario(world_size: int) -> Scenario:
    """Rank 0 runs a1 before a2, rank 1 runs b1 before b2, and the links cross: a1->b2, a2->b1.

    Rank 0 sends a1->b2 first but rank 1 receives a2->b1 first; all messages
    have the same shape. Backward, the gradients cross the same way.
    """
    plan = Plan("crossed", "f", (("a1", "b2"), ("a2", "b1"), ("b1", "f"), ("b2", "f")))
    assert plan.forward_order() == ["a1", "a2", "b1", "b2", "f"]
    placement = {"a1": 0, "a2": 0, "b1": 1, "b2": 1, "f": min(2, world_size - 1)}
    return Scenario("crossed", plan, placement, {node: 4 for node in placement})


# -- driving the transport like the executor -------------------------------------------------


def message_value(scenario: Scenario, src: str, dst: str, phase: str, step: int) -> float:
    order = sorted(scenario.placement, key=node_key)
    index = {node: i for i, node in enumerate(order)}
    return float(step * 100_000 + PHASE_CODE[phase] * 10_000 + index[src] * 100 + index[dst])


def run_phase(
    transport: DistributedTransport, scenario: Scenario, phase: str, batch: int, step: int
) -> tuple[int, list[str]]:
    """One phase in executor order; returns (messages received, problems seen)."""
    plan, dims = scenario.plan, scenario.dims
    transport.expect(phase_messages(plan, phase, batch, dims))
    local = [node for node in plan.forward_order() if transport.owns(node)]
    received, problems = 0, []

    def receive(src: str, dst: str, payload: str, width: int) -> None:
        nonlocal received
        shape = (batch, width)
        tensor = transport.recv(src=src, dst=dst, phase=phase, payload=payload, shape=shape)
        want = message_value(scenario, src, dst, phase, step)
        if tuple(tensor.shape) != shape or not torch.all(tensor == want):
            problems.append(
                f"{phase} {src}->{dst}: got {tensor.flatten()[:1].tolist()}, want {want}"
            )
        received += 1

    def send(src: str, dst: str, payload: str, width: int) -> None:
        value = message_value(scenario, src, dst, phase, step)
        tensor = torch.full((batch, width), value)
        transport.send(tensor, src=src, dst=dst, phase=phase, payload=payload)

    if phase == "backward":
        for node in reversed(local):
            for parent in plan.parents(node):
                receive(parent, node, "grad", dims[node])
            for child in plan.children(node):
                send(node, child, "grad", dims[child])
    else:
        for node in local:
            for child in plan.children(node):
                receive(child, node, "latent", dims[child])
            for parent in plan.parents(node):
                send(node, parent, "latent", dims[node])
    return received, problems


def run_scenario(scenario: Scenario, rank: int, world_size: int) -> dict:
    transport = DistributedTransport(scenario.placement, rank, world_size, torch.device("cpu"))
    received, problems = 0, []
    for step in range(TRAIN_STEPS):
        for phase in ("forward", "backward"):
            count, seen = run_phase(transport, scenario, phase, TRAIN_BATCH, step)
            received, problems = received + count, problems + seen
        transport.flush()
    for batch_number, batch in enumerate(EVAL_BATCHES):
        count, seen = run_phase(transport, scenario, "eval", batch, batch_number)
        received, problems = received + count, problems + seen
    transport.flush()
    return {
        "received": received,
        "problems": problems,
        "bytes": transport.bytes_sent_cross_rank,
        "messages": transport.messages_sent_cross_rank,
        "by_link": dict(transport.cross_rank_bytes_by_link),
        "pending": transport.pending(),
    }


def all_phases(scenario: Scenario):
    """Every message of a run of :func:`run_scenario`, in order."""
    for _ in range(TRAIN_STEPS):
        yield from phase_messages(scenario.plan, "forward", TRAIN_BATCH, scenario.dims)
        yield from phase_messages(scenario.plan, "backward", TRAIN_BATCH, scenario.dims)
    for batch in EVAL_BATCHES:
        yield from phase_messages(scenario.plan, "eval", batch, scenario.dims)


# -- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _join_job(rank: int, world_size: int, port: int, timeout_s: float):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world_size),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    return init_distributed(backend="gloo", device="cpu", timeout_s=timeout_s)


def _scenario_worker(rank: int, world_size: int, port: int, results: multiprocessing.Queue) -> None:
    try:
        context = _join_job(rank, world_size, port, PROCESS_TIMEOUT_S)
        outcome = {s.name: run_scenario(s, rank, world_size) for s in build_scenarios(world_size)}
        group = ProcessGroup(context)
        outcome["gather"] = group.gather({"rank": rank, "square": rank * rank})
        outcome["leader"] = group.is_leader
        shutdown(context)
        results.put((rank, outcome))
    except BaseException:  # noqa: BLE001 - sent to the test process
        results.put((rank, traceback.format_exc()))


def _dying_peer_worker(rank: int, world_size: int, port: int, results: multiprocessing.Queue):
    try:
        _join_job(rank, world_size, port, PROCESS_TIMEOUT_S)
        transport = DistributedTransport({"a": 0, "b": 1}, rank, world_size, "cpu")
        transport.expect([("b", "a", "forward", "latent", (2, 3))])
        if rank == 1:
            time.sleep(0.2)
            os._exit(7)  # dies without sending
        start = time.monotonic()
        try:
            transport.recv(src="b", dst="a", phase="forward", payload="latent", shape=(2, 3))
            results.put((rank, "no error"))
        except DistributedError as error:
            results.put((rank, {"error": str(error), "seconds": time.monotonic() - start}))
    except BaseException:  # noqa: BLE001 - sent to the test process
        results.put((rank, traceback.format_exc()))
    results.close()
    results.join_thread()  # the result is on its way before this process ends
    os._exit(0)  # skip the group's teardown, which would wait for the dead peer


def run_processes(target, world_size: int, expected_results: int) -> dict[int, object]:
    """Start ``world_size`` spawned processes running ``target``; collect their results."""
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    port = free_port()
    processes = [
        spawn.Process(target=target, args=(rank, world_size, port, results), daemon=True)
        for rank in range(world_size)
    ]
    for process in processes:
        process.start()
    collected: dict[int, object] = {}
    deadline = time.monotonic() + RUN_DEADLINE_S
    try:
        while len(collected) < expected_results:
            if time.monotonic() > deadline:
                pytest.fail(f"processes did not finish within {RUN_DEADLINE_S} s: {collected}")
            try:
                rank, outcome = results.get(timeout=0.5)
            except queue.Empty:
                if all(p.exitcode is not None for p in processes):
                    time.sleep(1.0)  # let a last result arrive
                    if results.empty():
                        codes = [p.exitcode for p in processes]
                        pytest.fail(f"processes ended (exit codes {codes}) with results missing")
                continue
            if isinstance(outcome, str) and "Traceback" in outcome:
                pytest.fail(f"rank {rank} failed:\n{outcome}")
            collected[rank] = outcome
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    return collected


@pytest.fixture(scope="module", params=[2, 3, 4], ids=lambda w: f"world{w}")
def job(request) -> tuple[int, dict[int, dict]]:
    world_size = request.param
    return world_size, run_processes(_scenario_worker, world_size, world_size)


# -- tests across processes ------------------------------------------------------------------


def test_every_message_arrives_intact(job):
    world_size, outcomes = job
    for scenario in build_scenarios(world_size):
        problems = [p for rank in outcomes for p in outcomes[rank][scenario.name]["problems"]]
        assert problems == [], scenario.name
        received = sum(outcomes[rank][scenario.name]["received"] for rank in outcomes)
        assert received == sum(1 for _ in all_phases(scenario)), scenario.name
        assert all(outcomes[rank][scenario.name]["pending"] == 0 for rank in outcomes)


def test_scenarios_cross_ranks(job):
    """The scenarios really exercise the network: cross-rank and same-rank messages both occur."""
    world_size, _ = job
    for scenario in build_scenarios(world_size):
        if scenario.name.startswith("random"):
            continue
        ranks = [(scenario.placement[s], scenario.placement[d]) for s, d in scenario.plan.edges]
        assert any(a != b for a, b in ranks), scenario.name
    crowded = next(s for s in build_scenarios(world_size) if s.name == "crowded_rank0")
    same = sum(crowded.placement[s] == crowded.placement[d] == 0 for s, d in crowded.plan.edges)
    assert same >= 5


def test_crossed_messages_match_in_canonical_order(job):
    _, outcomes = job
    assert outcomes[0]["crossed"]["problems"] == []
    assert outcomes[1]["crossed"]["problems"] == []
    assert outcomes[1]["crossed"]["received"] > 0


def test_cross_rank_bytes_are_counted_exactly(job):
    world_size, outcomes = job
    for scenario in build_scenarios(world_size):
        want_bytes = defaultdict(int)
        want_links: dict[int, dict] = defaultdict(lambda: defaultdict(int))
        want_messages = defaultdict(int)
        for message in all_phases(scenario):
            src_rank = scenario.placement[message.src]
            if src_rank != scenario.placement[message.dst]:
                nbytes = int(np.prod(message.shape)) * 4
                want_bytes[src_rank] += nbytes
                want_messages[src_rank] += 1
                want_links[src_rank][(message.src, message.dst)] += nbytes
        for rank, outcome in outcomes.items():
            result = outcome[scenario.name]
            assert result["bytes"] == want_bytes[rank], (scenario.name, rank)
            assert result["messages"] == want_messages[rank], (scenario.name, rank)
            assert result["by_link"] == dict(want_links[rank]), (scenario.name, rank)


def test_gather_collects_on_the_leader(job):
    world_size, outcomes = job
    assert outcomes[0]["gather"] == [{"rank": r, "square": r * r} for r in range(world_size)]
    assert all(outcomes[rank]["gather"] is None for rank in range(1, world_size))
    assert [outcomes[rank]["leader"] for rank in range(world_size)] == [True] + [False] * (
        world_size - 1
    )


def test_dead_peer_raises_instead_of_hanging():
    outcomes = run_processes(_dying_peer_worker, 2, expected_results=1)
    outcome = outcomes[0]
    assert isinstance(outcome, dict), outcome
    assert "from rank 1 failed" in outcome["error"]
    assert outcome["seconds"] < PROCESS_TIMEOUT_S


# -- tests in this process -------------------------------------------------------------------


def _local_transport() -> tuple[DistributedTransport, Plan]:
    plan = Plan("dense", "f", (("a", "b"), ("a", "f"), ("b", "f")))
    return DistributedTransport({"a": 0, "b": 0, "f": 0}, 0, 1, "cpu"), plan


def test_single_rank_needs_no_process_group():
    transport, plan = _local_transport()
    scenario = Scenario("local", plan, transport.placement, {"a": 2, "b": 3, "f": 2})
    for phase in ("forward", "backward"):
        received, problems = run_phase(transport, scenario, phase, 4, step=0)
        assert problems == [] and received == 3
    transport.flush()
    assert transport.pending() == 0
    assert transport.bytes_sent_cross_rank == 0
    group = ProcessGroup(DistContext(0, 1, 0, "gloo", torch.device("cpu")))
    assert group.gather("x") == ["x"] and group.broadcast("y") == "y" and group.is_leader
    group.barrier()  # one rank: returns without a process group


def test_send_out_of_canonical_order_is_refused():
    transport, plan = _local_transport()
    transport.expect(phase_messages(plan, "forward", 2, {"a": 2, "b": 2}))
    with pytest.raises(RuntimeError, match="out of canonical order; the next announced send is"):
        transport.send(torch.zeros(2, 2), src="a", dst="f", phase="forward", payload="latent")


def test_unannounced_and_misshapen_messages_are_refused():
    transport, plan = _local_transport()
    with pytest.raises(RuntimeError, match="not announced"):
        transport.send(torch.zeros(2, 2), src="a", dst="b", phase="forward", payload="latent")
    transport.expect(phase_messages(plan, "forward", 2, {"a": 2, "b": 2}))
    with pytest.raises(RuntimeError, match=r"announced as \(2, 2\)"):
        transport.send(torch.zeros(2, 5), src="a", dst="b", phase="forward", payload="latent")


def test_flush_reports_messages_left_over():
    transport, plan = _local_transport()
    transport.expect(phase_messages(plan, "forward", 2, {"a": 2, "b": 2}))
    transport.send(torch.zeros(2, 2), src="a", dst="b", phase="forward", payload="latent")
    with pytest.raises(RuntimeError, match="3 announced messages not exchanged"):
        transport.flush()


def test_unplaced_node_is_reported():
    transport, _ = _local_transport()
    with pytest.raises(RuntimeError, match="'z' has no rank"):
        transport.owns("z")
    with pytest.raises(ValueError, match="outside 0..0"):
        DistributedTransport({"a": 1}, 0, 1, "cpu")


def test_not_under_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not is_torchrun()
    assert init_distributed() is None


def test_failed_rendezvous_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))  # nobody listens there
    with pytest.raises(DistributedError, match="could not join the gloo process group") as info:
        init_distributed(backend="gloo", device="cpu", timeout_s=1)
    assert "\n" not in str(info.value)


def test_incomplete_torchrun_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(DistributedError, match="RANK is not set"):
        init_distributed(device="cpu")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    with pytest.raises(DistributedError, match="backend nccl needs a CUDA device"):
        init_distributed(backend="nccl", device="cpu")


# -- a stricter model of NCCL: one stream per rank, sends wait for their receive --------------


class _StrictOp:
    def __init__(self, kind: str, rank: int, peer: int, tensors: list[torch.Tensor]) -> None:
        self.kind, self.rank, self.peer, self.tensors = kind, rank, peer, tensors
        self.done = False

    def matches(self, other: _StrictOp) -> bool:
        kinds = {self.kind, other.kind}
        return (
            self.peer == other.rank
            and other.peer == self.rank
            and kinds
            in (
                {"send", "recv"},
                {"group"},
            )
        )


class _StrictWork:
    def __init__(self, streams: StrictStreams, op: _StrictOp) -> None:
        self.streams, self.op = streams, op

    def wait(self) -> bool:
        with self.streams.condition:
            if not self.streams.condition.wait_for(lambda: self.op.done, timeout=5.0):
                raise RuntimeError(f"deadlock: rank {self.op.rank} {self.op.kind} never ran")
        return True


class StrictStreams:
    """Stands in for ``torch.distributed`` with stricter rules than NCCL.

    Each rank has ONE stream for all its peers; an operation runs only when
    it is at the head of its stream, and a send runs only together with the
    matching receive at the head of the peer's stream (no buffering). A
    grouped exchange (``batch_isend_irecv``) runs together with the peer's.
    Anything that would hang on NCCL hangs here, and is reported.
    """

    def __init__(self, world_size: int) -> None:
        self.condition = threading.Condition()
        self.streams: list[deque[_StrictOp]] = [deque() for _ in range(world_size)]
        self.local = threading.local()
        self._barrier = threading.Barrier(world_size)
        self.errors: list[str] = []

    def P2POp(self, op, tensor, peer, group=None):  # noqa: N802 - mirrors torch.distributed
        return op, tensor, peer

    def isend(self, tensor, dst, group=None):
        return self._enqueue(_StrictOp("send", self.local.rank, dst, [tensor]))

    def irecv(self, tensor, src, group=None):
        return self._enqueue(_StrictOp("recv", self.local.rank, src, [tensor]))

    def batch_isend_irecv(self, ops):
        (peer,) = {peer for _, _, peer in ops}
        sends = [t for op, t, _ in ops if op == self.isend]
        recvs = [t for op, t, _ in ops if op == self.irecv]
        return [self._enqueue(_StrictOp("group", self.local.rank, peer, sends + recvs))]

    def barrier(self, group=None):
        self._barrier.wait(timeout=5.0)

    def _enqueue(self, op: _StrictOp) -> _StrictWork:
        with self.condition:
            self.streams[op.rank].append(op)
            self._progress()
        return _StrictWork(self, op)

    def _progress(self) -> None:
        moved = True
        while moved:
            moved = False
            for stream in self.streams:
                if not stream:
                    continue
                head = stream[0]
                other_stream = self.streams[head.peer]
                if other_stream and head.matches(other_stream[0]):
                    self._run(head, other_stream.popleft())
                    stream.popleft()
                    moved = True
        self.condition.notify_all()

    def _run(self, first: _StrictOp, second: _StrictOp) -> None:
        if first.kind == "group":  # [send, recv] on both sides
            pairs = [(first.tensors[0], second.tensors[1]), (second.tensors[0], first.tensors[1])]
        else:
            send, recv = (first, second) if first.kind == "send" else (second, first)
            pairs = [(send.tensors[0], recv.tensors[0])]
        for source, target in pairs:
            if source.shape != target.shape:
                self.errors.append(f"size mismatch {tuple(source.shape)} -> {tuple(target.shape)}")
            else:
                target.copy_(source)
        first.done = second.done = True


def run_strict_threads(world_size: int, monkeypatch, work, timeout_s: float = 60) -> dict:
    """Ranks as threads under :class:`StrictStreams`: ``work(rank)`` per rank, their outcomes.

    A rank whose work raises reports ``"Type: message"``; the caller's checks see it.
    Asserts that every thread finished and that the streams saw no error.
    """
    import innet.distributed.transport as transport_module

    streams = StrictStreams(world_size)
    monkeypatch.setattr(transport_module, "dist", streams)
    outcomes: dict[int, object] = {}

    def rank_main(rank: int) -> None:
        streams.local.rank = rank
        try:
            outcomes[rank] = work(rank)
        except Exception as error:  # noqa: BLE001 - reported below
            outcomes[rank] = f"{type(error).__name__}: {error}"

    threads = [threading.Thread(target=rank_main, args=(rank,)) for rank in range(world_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout_s)
    assert not any(thread.is_alive() for thread in threads)
    assert all(isinstance(outcome, dict) for outcome in outcomes.values()), outcomes
    assert streams.errors == []
    return outcomes


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_no_deadlock_with_one_strict_stream_per_rank(world_size, monkeypatch):
    """Every scenario also runs under the stricter-than-NCCL stand-in, ranks as threads."""
    outcomes = run_strict_threads(
        world_size,
        monkeypatch,
        lambda rank: {
            s.name: run_scenario(s, rank, world_size) for s in build_scenarios(world_size)
        },
    )
    for scenario in build_scenarios(world_size):
        assert [p for o in outcomes.values() for p in o[scenario.name]["problems"]] == []
        received = sum(o[scenario.name]["received"] for o in outcomes.values())
        assert received == sum(1 for _ in all_phases(scenario))


# -- the canonical order is the executor's sending order ---------------------------------------


class _RecordingTransport(InProcessTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple] = []

    def send(self, tensor, *, src, dst, phase, payload):
        self.sent.append((src, dst, phase, payload, tuple(tensor.shape)))
        super().send(tensor, src=src, dst=dst, phase=phase, payload=payload)


def test_phase_messages_is_the_order_the_executor_sends_in():
    top = _topology(_random_connected(8, seed=3), "n2")
    plan = dense_plan(top)
    sensors = [node for node in plan.forward_order() if not plan.children(node)]
    views = {node: (torch.randn(6, 2), torch.randn(5, 2)) for node in sensors}
    labels = (torch.randint(0, 2, (6,)), torch.randint(0, 2, (5,)))
    specs = {
        node: ModuleSpec(
            node=node,
            is_fusion=node == plan.fusion,
            view_dim=2 if node in views else None,
            n_received=len(plan.children(node)),
            latent_dim=3,
            hidden=4,
            aggregator="sum",
            gate_kind="gaussian",
            n_classes=2,
        )  # fmt: skip
        for node in plan.forward_order()
    }
    transport = _RecordingTransport()
    executor = PerNodeExecutor(plan=plan, specs=specs, seed=0, transport=transport, views=views,
                               labels=labels, lr=0.1)  # fmt: skip
    executor.train_step(np.arange(4), step_plan(plan, frozenset(), sensors))
    for index in (np.arange(0, 3), np.arange(3, 5)):  # the 5 test samples in batches of 3
        executor.evaluate_batch(index)
    dims = {node: 3 for node in specs}
    want = [
        *phase_messages(plan, "forward", 4, dims),
        *phase_messages(plan, "backward", 4, dims),
        *phase_messages(plan, "eval", 3, dims),
        *phase_messages(plan, "eval", 2, dims),
    ]
    assert transport.sent == [tuple(message[:5]) for message in want]


# -- bundles: one tensor per round and pair of ranks ------------------------------------------

BUNDLE_ROUNDS = 3


def _active(number: int, rank: int) -> bool:
    """Whether ``rank`` exchanges in round ``number`` (ranks with nothing to exchange skip it)."""
    return (number + rank) % 3 != 0


def _bundle_rounds(rank: int, world_size: int, transport: DistributedTransport) -> dict:
    """Each round, every active rank sends ``rank + 1`` rows to every other active rank.

    Every value encodes (round, sender, receiver).
    """
    problems = []
    for number in range(BUNDLE_ROUNDS):
        if not _active(number, rank):
            continue
        peers = [peer for peer in range(world_size) if peer != rank and _active(number, peer)]
        sends = {peer: torch.full((rank + 1, 2), float(number * 100 + rank * 10 + peer))
                 for peer in peers}  # fmt: skip
        shapes = {peer: ((peer + 1, 2), torch.float32) for peer in peers}
        got = transport.exchange(sends, shapes, what=f"round {number}")
        for peer, tensor in got.items():
            if tuple(tensor.shape) != (peer + 1, 2) or not torch.all(
                tensor == number * 100 + peer * 10 + rank
            ):
                problems.append(f"round {number} {peer}->{rank}: {tensor.flatten()[:1].tolist()}")
    transport.flush()
    return {"problems": problems, "bytes": transport.bytes_sent_cross_rank,
            "tensors": transport.messages_sent_cross_rank}  # fmt: skip


def _expected_bundles(world_size: int) -> tuple[dict[int, int], dict[int, int]]:
    nbytes, tensors = defaultdict(int), defaultdict(int)
    for number in range(BUNDLE_ROUNDS):
        for src in range(world_size):
            for dst in range(world_size):
                if src != dst and _active(number, src) and _active(number, dst):
                    nbytes[src] += (src + 1) * 2 * 4
                    tensors[src] += 1
    return nbytes, tensors


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_bundles_arrive_intact_under_a_strict_stream_per_rank(world_size, monkeypatch):
    placement = {f"n{rank}": rank for rank in range(world_size)}

    def work(rank: int) -> dict:
        transport = DistributedTransport(placement, rank, world_size, "cpu")
        transport.connect([(a, b) for a in range(world_size) for b in range(a)])
        return _bundle_rounds(rank, world_size, transport)

    outcomes = run_strict_threads(world_size, monkeypatch, work)
    nbytes, tensors = _expected_bundles(world_size)
    for rank, outcome in outcomes.items():
        assert outcome["problems"] == []
        assert (outcome["bytes"], outcome["tensors"]) == (nbytes[rank], tensors[rank])
    assert sum(tensors.values()) > 0
