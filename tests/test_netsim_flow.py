"""The flow-level network model against closed forms and against the FIFO model.

Under ``model="flow"`` the messages crossing a link direction at once share its
capacity max-min fairly, and a routed message crosses its whole path as one
flow (latency added per hop). Each expected time below is worked out by hand
from the capacities, latencies and sizes.
"""

from __future__ import annotations

import random

import networkx as nx
import numpy as np
import pytest

from innet.core.netsim import Message, NetworkModel, max_min_rates, time_messages
from innet.core.phases import register_phase
from innet.core.topology.model import Topology

PHASE = register_phase("flow_model_test", training=True, flow="forward", routed=True).name


def _topology(edges: list[tuple[str, str, float, float]], **link) -> Topology:
    graph = nx.Graph()
    for u, v, capacity, latency in edges:
        graph.add_edge(u, v, capacity=capacity, latency=latency, **link)
    for node in graph.nodes:
        graph.nodes[node]["role"] = "relay"
    graph.nodes[edges[0][0]]["role"] = "fusion"
    return Topology("flows", graph)


def _send(src: str, dst: str, nbytes: int, after: tuple[int, ...] = ()) -> Message:
    return Message(PHASE, src, dst, nbytes, after=after)


@pytest.mark.parametrize(("n", "nbytes"), [(2, 1000), (5, 12_345), (9, 1)])
def test_n_equal_flows_on_one_link_finish_together_at_n_b_over_c(n, nbytes):
    capacity, latency = 1e7, 3e-4
    topology = _topology([("a", "b", capacity, latency)])
    frame = time_messages(topology, [_send("a", "b", nbytes)] * n, model="flow")
    assert (frame["t_start"] == 0).all()
    assert frame["t_end"].nunique() == 1  # together, to the last bit
    assert frame["t_end"].iloc[0] == pytest.approx(n * 8 * nbytes / capacity + latency, rel=1e-12)
    # the FIFO model ends the same step at the same time (the link is never idle in either)
    fifo = time_messages(topology, [_send("a", "b", nbytes)] * n, model="fifo")
    assert fifo["t_end"].max() == pytest.approx(frame["t_end"].max(), rel=1e-12)
    assert fifo["t_end"].nunique() == n


def test_parking_lot_rates_are_the_max_min_rates_by_hand():
    # chain a-b-c-d; one long flow a->d, one short flow per hop
    caps = {"ab": 1e6, "bc": 2e6, "cd": 3e6}
    paths = [["ab", "bc", "cd"], ["ab"], ["bc"], ["cd"]]
    # ab is the bottleneck of the long flow and of the first short one (1e6 / 2 each);
    # the others get what the long flow leaves: 2e6 - 0.5e6, 3e6 - 0.5e6
    assert max_min_rates(paths, caps) == [0.5e6, 0.5e6, 1.5e6, 2.5e6]


def test_parking_lot_times_follow_the_max_min_rates():
    nbytes, latency = 10_000, 1e-3
    bits = 8 * nbytes
    topology = _topology(
        [("a", "b", 1e6, latency), ("b", "c", 2e6, latency), ("c", "d", 3e6, latency)]
    )
    step = [_send("a", "d", nbytes), _send("a", "b", nbytes), _send("b", "c", nbytes),
            _send("c", "d", nbytes)]  # fmt: skip
    frame = time_messages(topology, step, model="flow")
    # the short flows on bc and cd end first, which frees nothing the others could use
    expected = [bits / 0.5e6 + 3 * latency, bits / 0.5e6 + latency,
                bits / 1.5e6 + latency, bits / 2.5e6 + latency]  # fmt: skip
    assert frame["t_end"].tolist() == pytest.approx(expected, rel=1e-12)
    assert (frame["queue_s"] == 0).all()


def test_parking_lot_with_equal_capacities_every_flow_gets_half():
    capacity, nbytes, hops = 4e6, 5_000, 4
    nodes = [f"n{i}" for i in range(hops + 1)]
    topology = _topology([(u, v, capacity, 0.0) for u, v in zip(nodes, nodes[1:], strict=False)])
    step = [_send(nodes[0], nodes[-1], nbytes)]
    step += [_send(u, v, nbytes) for u, v in zip(nodes, nodes[1:], strict=False)]
    frame = time_messages(topology, step, model="flow")
    assert frame["t_end"].tolist() == pytest.approx([2 * 8 * nbytes / capacity] * (hops + 1))


@pytest.mark.parametrize("loss", [0.0, 0.4])
def test_one_message_on_one_idle_link_times_the_same_in_both_models(loss):
    topology = _topology([("a", "b", 3e6, 7e-4)], loss=loss)
    compute = {"a": (0.002, 0.004)}
    step = [Message("forward", "a", "b", 4321)]
    for seed in range(5):
        fifo = time_messages(topology, step, model="fifo", seed=seed, compute_s=compute)
        flow = time_messages(topology, step, model="flow", seed=seed, compute_s=compute)
        assert fifo.equals(flow)  # bit for bit, retransmissions included
    if loss:
        # k copies: t_end = t_start + (k - 1) RTO + 8 b / C + latency, RTO = 8 b / C + 2 latency
        tx, rto = 8 * 4321 / 3e6, 8 * 4321 / 3e6 + 2 * 7e-4
        draws = [time_messages(topology, step, model="flow", seed=s) for s in range(20)]
        assert max(frame["attempts"].iloc[0] for frame in draws) > 1
        for frame in draws:
            k = frame["attempts"].iloc[0]
            assert frame["t_end"].iloc[0] == pytest.approx((k - 1) * rto + tx + 7e-4, rel=1e-12)


def test_a_routed_message_crosses_its_path_as_one_flow():
    nbytes = 2_000
    topology = _topology([("a", "b", 1e6, 1e-3), ("b", "c", 4e6, 2e-3)])
    step = [_send("a", "c", nbytes)]
    flow = time_messages(topology, step, model="flow")
    fifo = time_messages(topology, step, model="fifo")
    bits = 8 * nbytes
    assert flow["t_end"].iloc[0] == pytest.approx(bits / 1e6 + 3e-3, rel=1e-12)  # no hop waits
    assert fifo["t_end"].iloc[0] == pytest.approx(bits / 1e6 + bits / 4e6 + 3e-3, rel=1e-12)


def test_a_flow_that_starts_later_gets_the_residual_capacity():
    big, small, trigger, latency = 100_000, 3_000, 1_000, 1e-3
    # the long flow a->c is held to 4 Mbit/s by b-c; a flow on a-b gets what it leaves
    topology = _topology([("a", "b", 10e6, latency), ("b", "c", 4e6, latency),
                          ("x", "a", 1e6, 0.0)])  # fmt: skip
    step = [_send("a", "c", big), _send("x", "a", trigger), _send("a", "b", small, after=(1,))]
    frame = time_messages(topology, step, model="flow")
    t1 = 8 * trigger / 1e6
    assert frame["t_start"].iloc[2] == pytest.approx(t1, rel=1e-12)
    assert frame["t_end"].iloc[2] == pytest.approx(t1 + 8 * small / 6e6 + latency, rel=1e-12)
    assert frame["t_end"].iloc[0] == pytest.approx(8 * big / 4e6 + 2 * latency, rel=1e-12)


def test_a_flow_that_joins_a_busy_link_halves_its_rate_from_then_on():
    capacity, latency = 1e6, 0.0
    first, second, trigger = 50_000, 20_000, 1_000
    topology = _topology([("a", "b", capacity, latency), ("x", "a", capacity, 0.0)])
    step = [_send("a", "b", first), _send("x", "a", trigger), _send("a", "b", second, after=(1,))]
    frame = time_messages(topology, step, model="flow")
    t1 = 8 * trigger / capacity
    left = 8 * first - capacity * t1  # bits of the first flow still to send at t1
    assert left > 8 * second
    second_done = t1 + 2 * 8 * second / capacity  # half the link each until then
    assert frame["t_end"].iloc[2] == pytest.approx(second_done, rel=1e-12)
    assert frame["t_end"].iloc[0] == pytest.approx(8 * (first + second) / capacity, rel=1e-12)


def test_a_radio_limits_the_flows_a_node_has_at_once():
    topology = _topology([("a", "b", 1e6, 1e-3), ("a", "c", 1e6, 1e-3)])
    step = [Message("forward", "a", "b", 1000), Message("forward", "a", "c", 1000)]
    flow = time_messages(topology, step, model="flow", tx_ports=1)
    fifo = time_messages(topology, step, model="fifo", tx_ports=1)
    assert flow.equals(fifo)  # one after the other, the second queued for the radio
    assert flow["queue_s"].tolist() == pytest.approx([0.0, 8e-3])
    free = time_messages(topology, step, model="flow")
    assert free["t_end"].tolist() == pytest.approx([9e-3, 9e-3])


def test_efficiency_factors_scale_capacity_and_latency():
    topology = _topology([("a", "b", 1e6, 1e-3)])
    step = [Message("forward", "a", "b", 1000)]
    for model in ("fifo", "flow"):
        frame = time_messages(topology, step, model=model, bandwidth_factor=0.5, latency_factor=3.0)
        assert frame["t_end"].iloc[0] == pytest.approx(8000 / 0.5e6 + 3e-3, rel=1e-12)


def _every_flow_has_a_bottleneck(paths, caps, rates) -> bool:
    load: dict[str, float] = {}
    for path, rate in zip(paths, rates, strict=True):
        for link in path:
            load[link] = load.get(link, 0.0) + rate
    if any(load[link] > caps[link] * (1 + 1e-9) for link in load):
        return False
    for path, rate in zip(paths, rates, strict=True):
        full = [
            link for link in path
            if load[link] >= caps[link] * (1 - 1e-9)
            and all(r <= rate * (1 + 1e-9) for p, r in zip(paths, rates, strict=True) if link in p)
        ]  # fmt: skip
        if not full:
            return False
    return True


@pytest.mark.parametrize("seed", range(20))
def test_max_min_rates_give_every_flow_a_bottleneck(seed):
    # the characterisation of max-min fairness (Bertsekas & Gallager, 6.5.2), checked
    # on random instances independently of how the rates were found
    rng = random.Random(seed)
    links = [f"l{i}" for i in range(rng.randint(1, 8))]
    caps = {link: rng.choice([1.0, 2.0, 5.0, rng.uniform(0.1, 10)]) for link in links}
    paths = [rng.sample(links, rng.randint(1, len(links))) for _ in range(rng.randint(1, 12))]
    rates = max_min_rates(paths, caps)
    assert all(rate > 0 for rate in rates)
    assert _every_flow_has_a_bottleneck(paths, caps, rates)


def test_a_step_of_many_flows_matches_the_fifo_step_where_the_links_never_share():
    # a tree with one message per link direction: nothing shares, so the models agree
    topology = _topology([("f", "r", 2e6, 1e-3), ("r", "s1", 1e6, 2e-3), ("r", "s2", 5e6, 1e-4)])
    step = [Message("forward", "s1", "r", 800), Message("forward", "s2", "r", 900),
            Message("forward", "r", "f", 700), Message("backward", "f", "r", 700),
            Message("backward", "r", "s1", 800), Message("backward", "r", "s2", 900)]  # fmt: skip
    compute = {"r": (1e-3, 2e-3), "f": (5e-4, 1e-3)}
    fifo = time_messages(topology, step, model="fifo", compute_s=compute)
    flow = time_messages(topology, step, model="flow", compute_s=compute)
    assert fifo.equals(flow)


def test_bad_model_and_factors_are_refused():
    topology = _topology([("a", "b", 1e6, 1e-3)])
    with pytest.raises(ValueError, match="model must be one of fifo, flow"):
        NetworkModel(topology, model="fluid")
    with pytest.raises(ValueError, match="bandwidth_factor"):
        NetworkModel(topology, bandwidth_factor=0)
    with pytest.raises(ValueError, match="crosses no link"):
        max_min_rates([[]], {})


def test_flow_steps_are_cached_like_fifo_steps():
    model = NetworkModel(_topology([("a", "b", 1e6, 1e-3)]), model="flow")
    step = [Message("forward", "a", "b", 1000)] * 3
    first = model.simulate_step(step)
    assert model.simulate_step(step) is first
    assert (model.unique_steps_simulated, model.cache_hits) == (1, 1)


def test_a_lost_routed_flow_is_sent_again_one_path_round_trip_after_its_last_bit():
    nbytes, latencies = 1_500, (1e-3, 3e-3)
    graph_edges = [("a", "b", 1e6, latencies[0]), ("b", "c", 4e6, latencies[1])]
    topology = _topology(graph_edges, loss=0.3)
    tx, path_latency = 8 * nbytes / 1e6, sum(latencies)
    copies = []
    for seed in range(30):
        frame = time_messages(topology, [_send("a", "c", nbytes)], model="flow", seed=seed)
        k = int(frame["attempts"].iloc[0])
        copies.append(k)
        # each lost copy: its bits, then twice the path's latency; the last: bits + latency
        expected = (k - 1) * (tx + 2 * path_latency) + tx + path_latency
        assert frame["t_end"].iloc[0] == pytest.approx(expected, rel=1e-12)
    assert max(copies) > 1  # a copy is lost when either link loses it: 1 - 0.7^2 = 51%


def _water_filling(paths: list[list[tuple[str, str]]], caps: dict) -> list[float]:
    """Max-min rates the textbook way: raise every unfrozen rate until a link fills."""
    rates, frozen = [0.0] * len(paths), [False] * len(paths)
    while not all(frozen):
        slack = {}
        for link in caps:
            users = [i for i, p in enumerate(paths) if link in p and not frozen[i]]
            if users:
                used = sum(rates[i] for i, p in enumerate(paths) if link in p)
                slack[link] = ((caps[link] - used) / len(users), users)
        step = min(value for value, _ in slack.values())
        full = {link for link, (value, _) in slack.items() if value <= step * (1 + 1e-12)}
        for i in range(len(paths)):
            if not frozen[i]:
                rates[i] += step
        for link in full:
            for i in slack[link][1]:
                frozen[i] = True
    return rates


def _fluid_finish_times(paths, caps, bits) -> list[float]:
    """Every flow starts at 0; advance from one finish to the next (no SimPy)."""
    left, done, now = list(bits), [None] * len(bits), 0.0
    while any(d is None for d in done):
        active = [i for i, d in enumerate(done) if d is None]
        rates = _water_filling([paths[i] for i in active], caps)
        step = min(left[i] / r for i, r in zip(active, rates, strict=True))
        now += step
        for i, r in zip(active, rates, strict=True):
            left[i] -= r * step
            if left[i] <= 1e-9 * bits[i]:
                done[i] = now
    return done


@pytest.mark.parametrize("seed", range(8))
def test_flow_times_match_a_naive_fluid_simulation(seed):
    rng = random.Random(seed)
    graph = nx.connected_watts_strogatz_graph(7, 3, 0.5, seed=seed)
    edges = [(f"n{u}", f"n{v}", rng.choice([1e6, 2e6, 5e6]), rng.uniform(0, 1e-3))
             for u, v in graph.edges]  # fmt: skip
    topology = _topology(edges)
    nodes = sorted(topology.graph.nodes)
    step = [_send(*rng.sample(nodes, 2), rng.randint(100, 5000)) for _ in range(12)]
    frame = time_messages(topology, step, model="flow")
    network = NetworkModel(topology, model="flow")
    caps, latency, paths = {}, [], []
    for m in step:
        path = network.route(m.src, m.dst, m.nbytes) if not topology.graph.has_edge(m.src, m.dst) \
            else [m.src, m.dst]  # fmt: skip
        hops = list(zip(path, path[1:], strict=False))
        for u, v in hops:
            caps[(u, v)] = topology.graph.edges[u, v]["capacity"]
        latency.append(sum(topology.graph.edges[u, v]["latency"] for u, v in hops))
        paths.append(hops)
    finish = _fluid_finish_times(paths, caps, [8.0 * m.nbytes for m in step])
    expected = [f + lat for f, lat in zip(finish, latency, strict=True)]
    assert frame["t_end"].tolist() == pytest.approx(expected, rel=1e-9)


def test_copies_of_a_routed_flow_are_geometric_in_the_path_success_probability():
    topology = _topology([("a", "b", 1e6, 1e-3), ("b", "c", 1e6, 1e-3)], loss=0.3)
    model = NetworkModel(topology, model="flow", seed=7)
    step = [_send("a", "c", 100)]
    copies = np.array([model.simulate_step(step, step_key=k).messages[0].attempts
                       for k in range(2_000)])  # fmt: skip
    success = 0.7 * 0.7  # neither link loses the copy
    sd = np.sqrt((1 - success) / success**2 / len(copies))
    assert abs(copies.mean() - 1 / success) < 4 * sd  # deterministic draws; 4 sd of the mean
