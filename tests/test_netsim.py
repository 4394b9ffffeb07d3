"""Tests of the SimPy network model: hand-computed times, queues, radios, the cache."""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from innet.core.netsim import Message, MessageTiming, NetworkModel, StepTiming, simulate_run
from innet.core.topology.model import Topology

MBPS = 1e6


def make_topology(
    links: list[tuple[str, str, float, float]],
    *,
    roles: dict[str, str] | None = None,
    tx_ports: dict[str, int | None] | None = None,
) -> Topology:
    """Topology from (u, v, capacity bits/s, latency s) links; ``f`` is the fusion node."""
    graph = nx.Graph()
    for u, v, capacity, latency in links:
        for node in (u, v):
            if node not in graph:
                role = (roles or {}).get(node, "fusion" if node == "f" else "sensor")
                graph.add_node(node, role=role, tx_ports=(tx_ports or {}).get(node))
        graph.add_edge(u, v, capacity=capacity, latency=latency)
    return Topology("test", graph)


def hop(nbytes: int, capacity: float, latency: float) -> float:
    return 8 * nbytes / capacity + latency


def running_sum(values: list[float]) -> list[float]:
    total, out = 0.0, []
    for value in values:
        total += value
        out.append(total)
    return out


def fwd(src: str, dst: str, nbytes: int) -> Message:
    return Message("forward", src, dst, nbytes)


def bwd(src: str, dst: str, nbytes: int) -> Message:
    return Message("backward", src, dst, nbytes)


PAIR = make_topology([("s", "f", 1 * MBPS, 0.002)])
CHAIN = make_topology(
    [("s", "r", 2 * MBPS, 0.001), ("r", "f", 10 * MBPS, 0.005)], roles={"r": "relay"}
)
# s broadcasts to two parents over two different links (dense INL).
BROADCAST_LINKS = [
    ("s", "p1", 1 * MBPS, 0.001),
    ("s", "p2", 2 * MBPS, 0.003),
    ("p1", "f", 1 * MBPS, 0.0),
    ("p2", "f", 1 * MBPS, 0.0),
]
BROADCAST = [fwd("s", "p1", 1000), fwd("s", "p2", 3000)]


def test_single_message_takes_transmission_plus_latency():
    timing = NetworkModel(PAIR).simulate_step([fwd("s", "f", 1000)])
    expected = 8000 / 1e6 + 0.002
    assert timing.messages == (
        MessageTiming(t_start=0.0, t_end=pytest.approx(expected), queue_s=0.0),
    )
    assert timing.duration_s == pytest.approx(expected)


def test_same_link_direction_queues_fifo():
    timing = NetworkModel(PAIR).simulate_step([fwd("s", "f", 1000), fwd("s", "f", 500)])
    first, second = timing.messages
    first_tx = 8000 / 1e6
    assert first.queue_s == 0.0
    assert second.t_start == pytest.approx(first_tx)
    assert second.queue_s == pytest.approx(first_tx)
    assert second.t_end == pytest.approx(first_tx + 4000 / 1e6 + 0.002)
    assert timing.duration_s == pytest.approx(second.t_end)


def test_sends_follow_message_order():
    timing = NetworkModel(PAIR).simulate_step([fwd("s", "f", 500), fwd("s", "f", 1000)])
    assert timing.messages[0].t_start == 0.0
    assert timing.messages[1].queue_s == pytest.approx(4000 / 1e6)


def test_opposite_directions_do_not_queue():
    # u -> v forward is long; w's gradient (no inputs: starts at once) lets v send
    # its gradient back to u while u -> v is still transmitting.
    topology = make_topology(
        [("u", "v", 1 * MBPS, 0.001), ("v", "w", 100 * MBPS, 0.0)], roles={"w": "fusion"}
    )
    messages = [fwd("u", "v", 10_000), bwd("w", "v", 100), bwd("v", "u", 10_000)]
    forward, _, backward = NetworkModel(topology).simulate_step(messages).messages
    assert backward.t_start == pytest.approx(800 / 100e6)
    assert backward.t_start < forward.t_end - 0.001  # overlaps the forward transmission
    assert forward.queue_s == 0.0
    assert backward.queue_s == 0.0
    assert backward.t_end == pytest.approx(backward.t_start + hop(10_000, 1 * MBPS, 0.001))


def test_one_radio_serialises_a_broadcast_to_two_parents():
    topology = make_topology(BROADCAST_LINKS, roles={"p1": "relay", "p2": "relay"})
    first, second = NetworkModel(topology, tx_ports=1).simulate_step(BROADCAST).messages
    assert first.t_start == 0.0
    assert second.t_start == pytest.approx(8000 / 1e6)
    assert second.queue_s == pytest.approx(8000 / 1e6)
    assert second.t_end == pytest.approx(8000 / 1e6 + hop(3000, 2 * MBPS, 0.003))


def test_unlimited_radios_send_a_broadcast_at_once():
    topology = make_topology(BROADCAST_LINKS, roles={"p1": "relay", "p2": "relay"})
    first, second = NetworkModel(topology).simulate_step(BROADCAST).messages
    assert first.t_start == second.t_start == 0.0
    assert second.t_end == pytest.approx(hop(3000, 2 * MBPS, 0.003))


@pytest.mark.parametrize(
    ("node_ports", "default_ports", "serialised"),
    [(1, None, True), (None, 1, True), (2, 1, False), (None, None, False), (None, 2, False)],
)
def test_node_tx_ports_win_over_the_default(node_ports, default_ports, serialised):
    topology = make_topology(BROADCAST_LINKS, tx_ports={"s": node_ports})
    model = NetworkModel(topology, tx_ports=default_ports)
    second = model.simulate_step(BROADCAST).messages[1]
    assert (second.t_start > 0) is serialised
    assert model.tx_ports("s") == (node_ports if node_ports is not None else default_ports)


def test_radio_is_held_during_transmission_only():
    # With one radio, the second message starts when the first has left s, not
    # when it arrives (latency 1 s would otherwise show).
    links = [("s", "p1", 1 * MBPS, 1.0), ("s", "p2", 1 * MBPS, 0.0)]
    topology = make_topology(links)
    second = NetworkModel(topology, tx_ports=1).simulate_step(BROADCAST).messages[1]
    assert second.t_start == pytest.approx(8000 / 1e6)


def test_chain_forward_then_backward_is_the_sum_of_four_hops():
    messages = [fwd("s", "r", 2000), fwd("r", "f", 1000), bwd("f", "r", 1000), bwd("r", "s", 2000)]
    timing = NetworkModel(CHAIN).simulate_step(messages)
    hops = [
        hop(2000, 2 * MBPS, 0.001),
        hop(1000, 10 * MBPS, 0.005),
        hop(1000, 10 * MBPS, 0.005),
        hop(2000, 2 * MBPS, 0.001),
    ]
    assert [t.t_end for t in timing.messages] == pytest.approx(running_sum(hops))
    assert [t.queue_s for t in timing.messages] == [0.0] * 4
    assert timing.duration_s == pytest.approx(sum(hops))


def test_relay_waits_for_its_slowest_child():
    topology = make_topology(
        [("s1", "r", 10 * MBPS, 0.001), ("s2", "r", 1 * MBPS, 0.001), ("r", "f", 5 * MBPS, 0.0)],
        roles={"r": "relay"},
    )
    messages = [fwd("s1", "r", 1000), fwd("s2", "r", 1000), fwd("r", "f", 500)]
    fast, slow, relayed = NetworkModel(topology).simulate_step(messages).messages
    assert fast.t_end < slow.t_end
    assert relayed.t_start == pytest.approx(slow.t_end)
    assert relayed.queue_s == 0.0
    assert relayed.t_end == pytest.approx(hop(1000, 1 * MBPS, 0.001) + hop(500, 5 * MBPS, 0.0))


def test_eval_messages_flow_like_forward_ones():
    messages = [Message("eval", "s", "r", 2000), Message("eval", "r", "f", 1000)]
    timing = NetworkModel(CHAIN).simulate_step(messages, {"r": (0.25, 9.0)})
    relayed_start = hop(2000, 2 * MBPS, 0.001) + 0.25  # forward compute, not backward
    assert timing.messages[1].t_start == pytest.approx(relayed_start)
    assert timing.duration_s == pytest.approx(relayed_start + hop(1000, 10 * MBPS, 0.005))


def test_a_codebook_goes_first_and_its_receiver_waits_for_it():
    # s publishes its codebook to r in the step: r forwards once codebook and latent are in
    messages = [
        Message("codebook", "s", "r", 4096),
        fwd("s", "r", 32),
        fwd("r", "f", 32),
        bwd("f", "r", 1000),
        bwd("r", "s", 1000),
    ]
    timing = NetworkModel(CHAIN).simulate_step(messages)
    book, latent, relayed = timing.messages[:3]
    assert (book.t_start, book.t_end) == (0.0, pytest.approx(hop(4096, 2 * MBPS, 0.001)))
    assert latent.t_start == pytest.approx(8 * 4096 / (2 * MBPS))  # behind it on the link
    assert latent.t_end == pytest.approx(8 * (4096 + 32) / (2 * MBPS) + 0.001)
    assert relayed.t_start == pytest.approx(latent.t_end)
    without = NetworkModel(CHAIN).simulate_step(messages[1:])
    assert timing.duration_s - without.duration_s == pytest.approx(8 * 4096 / (2 * MBPS))


def test_compute_time_adds_before_each_send():
    messages = [fwd("s", "r", 2000), fwd("r", "f", 1000), bwd("f", "r", 1000), bwd("r", "s", 2000)]
    compute = {"s": (0.1, 0.2), "r": (0.3, 0.4), "f": (0.5, 0.6)}
    timing = NetworkModel(CHAIN).simulate_step(messages, compute)
    sr, rf = hop(2000, 2 * MBPS, 0.001), hop(1000, 10 * MBPS, 0.005)
    starts = [
        0.1,  # s: forward compute
        0.1 + sr + 0.3,  # r: forward compute after s's latent arrives
        0.1 + sr + 0.3 + rf + 0.5 + 0.6,  # f: forward then backward compute
        0.1 + sr + 0.3 + rf + 0.5 + 0.6 + rf + 0.4,  # r: backward compute
    ]
    assert [t.t_start for t in timing.messages] == pytest.approx(starts)
    # The step ends when the last gradient reaches s (s's own update is not network time).
    assert timing.duration_s == pytest.approx(starts[-1] + sr)


def test_step_without_messages_lasts_its_slowest_compute():
    model = NetworkModel(CHAIN)
    assert model.simulate_step([]).duration_s == 0.0
    assert model.simulate_step([], {"s": (0.1, 0.2), "f": (0.25, 0.0)}).duration_s == pytest.approx(
        0.3
    )


def test_identical_steps_are_simulated_once():
    model = NetworkModel(CHAIN)
    messages = [fwd("s", "r", 2000), fwd("r", "f", 1000), bwd("f", "r", 1000), bwd("r", "s", 2000)]
    first = model.simulate_step(messages)
    again = model.simulate_step(tuple(messages))
    assert again == first
    assert (model.unique_steps_simulated, model.cache_hits) == (1, 1)

    model.simulate_step(messages[:1] + [fwd("r", "f", 999)] + messages[2:])
    model.simulate_step(messages, {"s": (0.1, 0.0)})
    model.simulate_step(messages, {"s": (0.1, 0.0)})
    assert (model.unique_steps_simulated, model.cache_hits) == (3, 2)


def test_cached_result_equals_a_fresh_simulation():
    messages = [fwd("s", "r", 2000), fwd("r", "f", 1000), bwd("f", "r", 1000)]
    model = NetworkModel(CHAIN)
    model.simulate_step(messages)
    assert model.simulate_step(messages) == NetworkModel(CHAIN).simulate_step(messages)


def test_simulate_run_lays_steps_back_to_back():
    model = NetworkModel(CHAIN)
    short = [fwd("s", "r", 1000)]
    long = [fwd("s", "r", 1000), fwd("r", "f", 1000)]
    timings, starts = simulate_run(model, [short, long, short])
    durations = [t.duration_s for t in timings]
    assert starts == pytest.approx([0.0, durations[0], durations[0] + durations[1]])
    assert timings[2] == timings[0]
    assert (model.unique_steps_simulated, model.cache_hits) == (2, 1)


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (fwd("s", "f", 10), "no link between 's' and 'f'"),
        (fwd("s", "x", 10), "no link between 's' and 'x'"),
        (
            Message("sideways", "s", "r", 10),
            r"phase 'sideways' \(expected one of: codebook, forward, backward, eval",
        ),
        (fwd("s", "r", -1), "nbytes must be >= 0"),
    ],
)
def test_invalid_messages_are_rejected(message, match):
    with pytest.raises(ValueError, match=match):
        NetworkModel(CHAIN).simulate_step([fwd("r", "f", 10), message])


def test_invalid_compute_and_ports_are_rejected():
    with pytest.raises(ValueError, match="unknown node 'x'"):
        NetworkModel(CHAIN).simulate_step([], {"x": (1.0, 1.0)})
    with pytest.raises(ValueError, match="finite and >= 0"):
        NetworkModel(CHAIN).simulate_step([], {"s": (-1.0, 0.0)})
    with pytest.raises(ValueError, match="tx_ports must be a positive integer"):
        NetworkModel(CHAIN, tx_ports=0)


def test_messages_waiting_in_a_cycle_are_rejected():
    with pytest.raises(ValueError, match="cycle"):
        NetworkModel(CHAIN).simulate_step([fwd("s", "r", 10), fwd("r", "s", 10)])


@st.composite
def tree_steps(draw) -> tuple[Topology, list[Message], int | None]:
    """A random tree rooted at fusion ``n0``, its forward and backward messages, radios."""
    n_nodes = draw(st.integers(2, 9))
    parents = [draw(st.integers(0, child - 1)) for child in range(1, n_nodes)]
    graph = nx.Graph()
    graph.add_node("n0", role="fusion")
    for child, parent in enumerate(parents, start=1):
        graph.add_node(f"n{child}", role="sensor")
        graph.add_edge(
            f"n{child}",
            f"n{parent}",
            capacity=draw(st.sampled_from([1e5, 1e6, 1e7, 1e9])),
            latency=draw(st.sampled_from([0.0, 1e-4, 1e-3, 0.02])),
        )
    edges = [(f"n{child}", f"n{parent}") for child, parent in enumerate(parents, start=1)]
    sizes = st.integers(0, 100_000)
    forward = [fwd(child, parent, draw(sizes)) for child, parent in edges]
    backward = [bwd(parent, child, draw(sizes)) for child, parent in edges]
    messages = draw(st.permutations(forward)) + draw(st.permutations(backward))
    return Topology("tree", graph), messages, draw(st.sampled_from([None, 1, 2]))


@settings(max_examples=60, deadline=None)
@given(tree_steps())
def test_random_trees_respect_link_times_and_dependencies(case):
    topology, messages, tx_ports = case
    timing = NetworkModel(topology, tx_ports=tx_ports).simulate_step(messages)
    assert isinstance(timing, StepTiming)
    assert len(timing.messages) == len(messages)
    for message, times in zip(messages, timing.messages, strict=True):
        link = topology.graph.edges[message.src, message.dst]
        assert times.t_end - times.t_start == pytest.approx(
            hop(message.nbytes, link["capacity"], link["latency"]), abs=1e-12
        )
        assert times.queue_s >= 0
        receives_gradients = any(m.phase == "backward" and m.dst == message.src for m in messages)
        waits_on_phase = (
            "backward" if message.phase == "backward" and receives_gradients else "forward"
        )
        for incoming, incoming_times in zip(messages, timing.messages, strict=True):
            if incoming.dst == message.src and incoming.phase == waits_on_phase:
                assert times.t_start >= incoming_times.t_end - 1e-12
    assert timing.duration_s == max(t.t_end for t in timing.messages)
