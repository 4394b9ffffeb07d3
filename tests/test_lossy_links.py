"""Lossy links: the ``loss`` attribute of a topology, retransmissions in the network model."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from topology_files import load_error, write_file

from innet.core.events import Segment, Timeline
from innet.core.netsim import Message, MessageTiming, NetworkModel, simulate_run
from innet.core.plans import Plan
from innet.core.records import ExchangeLog
from innet.core.timing import RunTiming, time_run
from innet.core.topology import load_topology, topology_from_dict, topology_to_dict
from innet.core.topology.model import Topology

MBPS = 1e6

LOSSY_DIAMOND = """\
name: lossy
defaults: {capacity: 10Mbps, latency: 1ms, loss: 0.01}
nodes:
  - {id: f, role: fusion}
  - {id: s, role: sensor}
  - {id: r, role: relay}
links:
  - {between: [s, f], capacity: 1Mbps, loss: 0.2}
  - [s, r]
  - {between: [r, f], loss: 0}
"""


def pair(loss: float | None, capacity: float = 1 * MBPS, latency: float = 0.002) -> Topology:
    graph = nx.Graph()
    graph.add_node("s", role="sensor")
    graph.add_node("f", role="fusion")
    attrs = {} if loss is None else {"loss": loss}
    graph.add_edge("s", "f", capacity=capacity, latency=latency, **attrs)
    return Topology("pair", graph)


def chain(loss: float) -> Topology:
    graph = nx.Graph()
    graph.add_node("f", role="fusion")
    graph.add_node("r", role="relay")
    graph.add_node("s", role="sensor")
    graph.add_edge("s", "r", capacity=2 * MBPS, latency=0.001, loss=loss)
    graph.add_edge("r", "f", capacity=10 * MBPS, latency=0.005)
    return Topology("chain", graph)


def fwd(src: str, dst: str, nbytes: int) -> Message:
    return Message("forward", src, dst, nbytes)


def bwd(src: str, dst: str, nbytes: int) -> Message:
    return Message("backward", src, dst, nbytes)


CHAIN_STEP = [fwd("s", "r", 2000), fwd("r", "f", 1000), bwd("f", "r", 1000), bwd("r", "s", 2000)]


def attempts_of(model: NetworkModel, messages: list[Message], step_key) -> list[int]:
    return [t.attempts for t in model.simulate_step(messages, step_key=step_key).messages]


def key_with_attempts(model: NetworkModel, messages: list[Message], wanted: list[int]) -> int:
    """The first integer step key whose draws give ``wanted`` copies of each message."""
    for key in range(10_000):
        if attempts_of(model, messages, key) == wanted:
            return key
    raise AssertionError(f"no step key gives {wanted}")


# --- the topology attribute ----------------------------------------------------------------


def test_loss_from_links_and_defaults(tmp_path):
    graph = load_topology(write_file(tmp_path, LOSSY_DIAMOND)).graph
    assert graph.edges["s", "f"]["loss"] == 0.2
    assert graph.edges["s", "r"]["loss"] == 0.01  # from defaults
    assert "loss" not in graph.edges["r", "f"]  # loss-free links carry no attribute
    assert graph.edges["r", "f"].get("loss", 0.0) == 0.0


def test_loss_free_files_load_as_before(tmp_path):
    text = LOSSY_DIAMOND.replace(", loss: 0.01", "").replace(", loss: 0.2", "")
    graph = load_topology(write_file(tmp_path, text)).graph
    assert all("loss" not in attrs for _, _, attrs in graph.edges(data=True))


def test_loss_as_a_percentage(tmp_path):
    text = LOSSY_DIAMOND.replace("loss: 0.2", "loss: 2.5%")
    assert load_topology(write_file(tmp_path, text)).graph.edges["s", "f"]["loss"] == pytest.approx(
        0.025
    )


def test_loss_round_trips_through_topology_to_dict(tmp_path):
    topology = load_topology(write_file(tmp_path, LOSSY_DIAMOND))
    data = topology_to_dict(topology)
    losses = {tuple(link["between"]): link.get("loss") for link in data["links"]}
    assert losses == {("f", "r"): None, ("f", "s"): 0.2, ("r", "s"): 0.01}
    again = topology_from_dict(data)
    assert nx.utils.edges_equal(again.graph.edges(data=True), topology.graph.edges(data=True))


@pytest.mark.parametrize(
    ("replace", "by", "field", "line", "message"),
    [
        ("loss: 0.2", "loss: 1", "links[0].loss", 8, "loss must be >= 0 and < 1, got 1"),
        ("loss: 0.2", "loss: -0.1", "links[0].loss", 8, "loss must be >= 0 and < 1, got -0.1"),
        ("loss: 0.2", "loss: 150%", "links[0].loss", 8, "got 1.5"),
        ("loss: 0.2", "loss: lots", "links[0].loss", 8, "got 'lots'"),
        ("loss: 0.2", "loss: .nan", "links[0].loss", 8, "loss must be >= 0 and < 1"),
        ("loss: 0.01", "loss: 2", "defaults.loss", 2, "loss must be >= 0 and < 1, got 2"),
    ],
)
def test_invalid_loss_points_at_field_and_line(tmp_path, replace, by, field, line, message):
    path = write_file(tmp_path, LOSSY_DIAMOND.replace(replace, by, 1))
    error = load_error(path)
    assert (error.file, error.field, error.line) == (str(path), field, line)
    assert message in error.message


GENERATED = """\
name: ring
generator:
  kind: ring
  n: 8
  seed: 3
  capacity: {dist: loguniform, low: 1Mbps, high: 1Gbps}
  latency: 1ms
  sensors: all_but_fusion
"""


def test_generator_draws_loss_without_changing_the_other_draws(tmp_path):
    plain = load_topology(write_file(tmp_path, GENERATED, "plain.yaml")).graph
    constant = load_topology(write_file(tmp_path, GENERATED + "  loss: 0.05\n", "c.yaml")).graph
    uniform_loss = "  loss: {dist: uniform, low: 0.01, high: 0.1}\n"
    uniform = load_topology(write_file(tmp_path, GENERATED + uniform_loss, "u.yaml")).graph
    for u, v, attrs in plain.edges(data=True):
        assert "loss" not in attrs
        assert (
            constant.edges[u, v]["capacity"] == uniform.edges[u, v]["capacity"] == attrs["capacity"]
        )
        assert constant.edges[u, v]["loss"] == 0.05
        assert 0.01 <= uniform.edges[u, v]["loss"] <= 0.1
    assert len({loss for _, _, loss in uniform.edges(data="loss")}) == plain.number_of_edges()
    from_defaults = load_topology(
        write_file(
            tmp_path, GENERATED.replace("name: ring", "name: ring\ndefaults: {loss: 3%}"), "d.yaml"
        )
    ).graph
    losses = [loss for _, _, loss in from_defaults.edges(data="loss")]
    assert losses == pytest.approx([0.03] * plain.number_of_edges())


@pytest.mark.parametrize(
    ("loss", "field", "message"),
    [
        ("1.0", "generator.loss", "loss must be >= 0 and < 1, got 1"),
        ("{dist: uniform, low: 0, high: 1}", "generator.loss.high", "got 1"),
        ("{dist: choice, values: [0.1, -1]}", "generator.loss.values[1]", "got -1"),
    ],
)
def test_invalid_generator_loss(tmp_path, loss, field, message):
    path = write_file(tmp_path, GENERATED + f"  loss: {loss}\n")
    error = load_error(path)
    assert (error.field, error.line) == (field, 9)
    assert message in error.message


def write_graphml(folder: Path) -> Path:
    graph = nx.Graph()
    graph.add_node("a", label="A", Latitude=52.374, Longitude=4.890)
    graph.add_node("b", label="B", Latitude=50.117, Longitude=8.683)
    graph.add_node("c", label="C", Latitude=48.853, Longitude=2.349)
    graph.add_edge("a", "b", LinkSpeedRaw=1e9)
    graph.add_edge("b", "c", LinkSpeedRaw=1e9)
    path = folder / "net.graphml"
    nx.write_graphml(graph, path)
    return path


IMPORTED = """\
name: imported
import:
  graphml: net.graphml
  fusion: {label: B}
  sensors: all_but_fusion
"""


def test_import_default_loss_then_defaults_loss(tmp_path):
    write_graphml(tmp_path)
    graph = load_topology(write_file(tmp_path, IMPORTED + "  default_loss: 0.02\n")).graph
    assert {loss for _, _, loss in graph.edges(data="loss")} == {0.02}
    text = IMPORTED.replace("name: imported", "name: imported\ndefaults: {loss: 0.1}")
    assert {
        loss for _, _, loss in load_topology(write_file(tmp_path, text)).graph.edges(data="loss")
    } == {0.1}
    imported = load_topology(write_file(tmp_path, IMPORTED)).graph
    assert all("loss" not in attrs for *_, attrs in imported.edges(data=True))


def test_invalid_import_default_loss(tmp_path):
    write_graphml(tmp_path)
    path = write_file(tmp_path, IMPORTED + "  default_loss: 1\n")
    error = load_error(path)
    assert (error.field, error.line) == ("import.default_loss", 6)
    assert "loss must be >= 0 and < 1" in error.message


# --- the network model ---------------------------------------------------------------------


def test_zero_loss_times_exactly_as_a_loss_free_link():
    plain = NetworkModel(chain(0.0))
    for model in (plain, NetworkModel(chain(0.0), seed=7)):
        assert not model.lossy
    reference = NetworkModel(pair(None)).simulate_step([fwd("s", "f", 1000)])
    assert (
        NetworkModel(pair(0.0), seed=3).simulate_step(
            [fwd("s", "f", 1000)], step_key=("train", 0, 5)
        )
        == reference
    )
    assert reference.messages[0] == MessageTiming(
        t_start=0.0, t_end=pytest.approx(8000 / 1e6 + 0.002), queue_s=0.0, attempts=1
    )
    first = plain.simulate_step(CHAIN_STEP, step_key=1)
    assert plain.simulate_step(CHAIN_STEP, step_key=2) == first  # keys do not matter
    assert (plain.unique_steps_simulated, plain.cache_hits) == (1, 1)


@pytest.mark.parametrize("loss", [0.05, 0.3, 0.6])
def test_mean_attempts_is_one_over_one_minus_loss(loss):
    n = 10_000
    step = [fwd("s", "f", 0)] * n  # empty messages: the statistics, without the queueing time
    timing = NetworkModel(pair(loss), seed=11).simulate_step(step, step_key=0)
    attempts = np.array([t.attempts for t in timing.messages])
    expected = 1 / (1 - loss)
    standard_error = np.sqrt(loss) / (1 - loss) / np.sqrt(n)
    assert attempts.mean() == pytest.approx(expected, abs=5 * standard_error)
    assert (attempts == 1).mean() == pytest.approx(1 - loss, abs=0.02)
    assert attempts.min() == 1


def test_each_lost_copy_costs_a_retransmission_timeout():
    model = NetworkModel(pair(0.5, capacity=1 * MBPS, latency=0.002), seed=0)
    message = [fwd("s", "f", 1000)]
    transmission, latency = 8000 / 1e6, 0.002
    timeout = transmission + 2 * latency
    seen = set()
    for key in range(64):
        (timing,) = model.simulate_step(message, step_key=key).messages
        k = timing.attempts
        seen.add(k)
        assert timing.t_start == 0.0 and timing.queue_s == 0.0
        assert timing.t_end == pytest.approx((k - 1) * timeout + transmission + latency)
    assert {1, 2, 3} <= seen


def test_the_link_serves_others_while_a_lost_copy_times_out():
    # 8 ms per copy, 10 ms latency: the first message's lost copy ends at 8 ms and
    # times out at 28 ms; meanwhile the second message is sent from 8 ms to 16 ms.
    model = NetworkModel(pair(0.5, capacity=1 * MBPS, latency=0.010), seed=1)
    step = [fwd("s", "f", 1000), fwd("s", "f", 1000)]
    key = key_with_attempts(model, step, [2, 1])
    first, second = model.simulate_step(step, step_key=key).messages
    assert (first.t_start, first.attempts) == (0.0, 2)
    assert second.t_start == pytest.approx(0.008) and second.queue_s == pytest.approx(0.008)
    assert second.t_end == pytest.approx(0.008 + 0.008 + 0.010)
    assert first.t_end == pytest.approx(0.028 + 0.008 + 0.010)


def test_a_retransmission_queues_behind_messages_that_asked_first():
    # The second copy of message 0 asks for the link at 8 + 2 * 1 = 10 ms, while
    # messages 1 and 2 hold it until 24 ms: it goes out after them.
    model = NetworkModel(pair(0.5, capacity=1 * MBPS, latency=0.001), seed=2)
    step = [fwd("s", "f", 1000)] * 3
    key = key_with_attempts(model, step, [2, 1, 1])
    first, _, third = model.simulate_step(step, step_key=key).messages
    assert third.t_end == pytest.approx(0.024 + 0.001)
    assert first.t_end == pytest.approx(0.024 + 0.008 + 0.001)


def test_a_radio_is_free_while_a_lost_copy_times_out():
    graph = nx.Graph()
    for node, role in (("f", "fusion"), ("p", "relay"), ("s", "sensor")):
        graph.add_node(node, role=role, tx_ports=1 if node == "s" else None)
    graph.add_edge("s", "p", capacity=1 * MBPS, latency=0.010, loss=0.5)
    graph.add_edge("s", "f", capacity=1 * MBPS, latency=0.0)
    model = NetworkModel(Topology("broadcast", graph), seed=0)
    step = [fwd("s", "p", 1000), fwd("s", "f", 1000)]
    key = key_with_attempts(model, step, [2, 1])
    lossy, clean = model.simulate_step(step, step_key=key).messages
    assert clean.t_start == pytest.approx(0.008)  # after the first copy, not the timeout
    assert lossy.t_end == pytest.approx(0.008 + 0.020 + 0.008 + 0.010)


def test_same_seed_and_key_reproduce_other_seeds_or_keys_do_not():
    step = [fwd("s", "f", 100)] * 200
    draws = {
        (seed, key): attempts_of(NetworkModel(pair(0.3), seed=seed), step, key)
        for seed in (0, 1)
        for key in (("train", 0, 0), ("train", 0, 1), ("eval", 0, 0))
    }
    assert draws[0, ("train", 0, 0)] == attempts_of(
        NetworkModel(pair(0.3), seed=0), step, ("train", 0, 0)
    )
    assert len({tuple(value) for value in draws.values()}) == len(draws)
    model = NetworkModel(pair(0.3), seed=0)
    model.simulate_step(step, step_key="warm-up")  # earlier steps do not shift the draws
    assert attempts_of(model, step, ("train", 0, 1)) == draws[0, ("train", 0, 1)]
    numpy_key = ("train", np.int64(0), np.int32(1))  # e.g. read back from a DataFrame
    assert attempts_of(model, step, numpy_key) == draws[0, ("train", 0, 1)]


def test_lossy_steps_are_simulated_every_time_loss_free_ones_are_cached():
    model = NetworkModel(chain(0.5), seed=0)
    plain_step = [fwd("r", "f", 1000), bwd("f", "r", 1000)]  # never crosses the lossy link
    for key in range(5):
        model.simulate_step(plain_step, step_key=key)
    assert (model.unique_steps_simulated, model.cache_hits) == (1, 4)
    patterns = [attempts_of(model, CHAIN_STEP, key) for key in range(20)]
    retransmitting = sum(max(pattern) > 1 for pattern in patterns)
    clean = len(patterns) - retransmitting
    assert retransmitting and clean  # both kinds occur with loss 0.5 on 2 of 4 messages
    # a step whose draws are all 1 is the loss-free step: simulated once, then cached
    assert model.unique_steps_simulated == 1 + retransmitting + 1
    assert model.cache_hits == 4 + clean - 1
    assert len(model._cache) == 2  # nothing kept for the steps with retransmissions


def test_steps_without_a_key_are_numbered_by_the_model():
    steps = [[fwd("s", "f", 1000)] * 10] * 6
    timings, starts = simulate_run(NetworkModel(pair(0.4), seed=5), steps)
    again, _ = simulate_run(NetworkModel(pair(0.4), seed=5), steps)
    assert timings == again
    assert len({tuple(t.attempts for t in timing.messages) for timing in timings}) > 1
    unkeyed = NetworkModel(pair(0.4), seed=5)
    assert [unkeyed.simulate_step(step) for step in steps] == timings  # key k = k-th lossy step
    assert starts[1] == pytest.approx(timings[0].duration_s)


@pytest.mark.parametrize(
    ("loss", "match"), [(1.0, "loss must be >= 0 and < 1"), (-0.5, "got -0.5")]
)
def test_the_model_rejects_invalid_losses(loss, match):
    with pytest.raises(ValueError, match=match):
        NetworkModel(pair(loss))


def test_the_model_rejects_a_non_integer_seed():
    with pytest.raises(ValueError, match="seed must be an integer"):
        NetworkModel(pair(0.1), seed=1.5)


# --- timing a run --------------------------------------------------------------------------


CHAIN_PLAN = Plan("dijkstra", "f", (("s", "r"), ("r", "f")))


def run_log(steps: int) -> ExchangeLog:
    """``steps`` training steps of one epoch over the chain, then one evaluation batch."""
    log = ExchangeLog(["f", "r", "s"])
    for step in range(steps):
        log.begin("train", 0, step, 8)
        log.add("forward", "s", "r", "latent", 2000)
        log.add("forward", "r", "f", "latent", 1000)
        log.add("backward", "f", "r", "grad", 1000)
        log.add("backward", "r", "s", "grad", 2000)
        log.end()
    log.begin("eval", 0, 0, 8)
    log.add("eval", "s", "r", "latent", 5000)
    log.add("eval", "r", "f", "latent", 5000)
    log.end()
    return log


def time_chain(log: ExchangeLog, loss: float, seed: int) -> RunTiming:
    """Time ``log`` on the chain with ``loss`` on its s-r link (a single-segment timeline)."""
    timeline = Timeline(segments=[Segment(0, chain(loss), CHAIN_PLAN)])
    train_steps = sum(kind == "train" for kind, *_ in log.steps)
    return time_run(log, timeline, steps_per_epoch=train_steps, seed=seed)


def test_time_run_reports_attempts_and_is_reproducible():
    log = run_log(40)
    rows = log.frame("chain", 0)
    timing = time_chain(log, 0.3, seed=4)
    assert timing.attempts.dtype == np.int64 and len(timing.attempts) == len(rows) == len(log)
    on_lossy = np.array(
        [{src, dst} == {"s", "r"} for src, dst in zip(rows["src"], rows["dst"], strict=True)]
    )
    assert on_lossy.any() and not on_lossy.all()
    assert (timing.attempts[~on_lossy] == 1).all()
    assert timing.attempts[on_lossy].max() > 1
    again = time_chain(log, 0.3, seed=4)
    for name in ("t_start", "t_end", "queue_s", "attempts"):
        np.testing.assert_array_equal(getattr(timing, name), getattr(again, name))
    assert timing.epoch_train_s == again.epoch_train_s
    other = time_chain(log, 0.3, seed=5)
    assert not np.array_equal(timing.attempts, other.attempts)
    loss_free = time_chain(log, 0.0, seed=4)
    assert (loss_free.attempts == 1).all()
    assert timing.epoch_train_s[0] > loss_free.epoch_train_s[0]  # retransmissions take time
    timed = log.frame("chain", 0, timing)  # the times line up with the rows of the table
    np.testing.assert_array_equal(timed["attempts"].to_numpy(), timing.attempts)


def test_a_step_is_timed_the_same_whatever_else_the_run_holds():
    """Draws depend on (seed, step key) only: a longer run leaves earlier steps alone."""
    short = time_chain(run_log(10), 0.3, seed=4)
    long = time_chain(run_log(30), 0.3, seed=4)
    assert short.attempts[:40].max() > 1  # the shared steps do retransmit
    np.testing.assert_array_equal(short.attempts[:40], long.attempts[:40])


def test_run_timing_attempts_default_to_ones():
    timing = RunTiming(
        t_start=np.zeros(3), t_end=np.ones(3), queue_s=np.zeros(3), epoch_train_s={0: 1.0}
    )
    np.testing.assert_array_equal(timing.attempts, [1, 1, 1])
    with pytest.raises(ValueError, match="attempts has 2 entries for 3 records"):
        RunTiming(np.zeros(3), np.ones(3), np.zeros(3), {}, attempts=np.ones(2))
