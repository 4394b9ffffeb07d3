"""trace.json follows the Chrome trace event format and agrees with the exchange records.

The format checks are those of the Trace Event Format document (required
fields per phase type; complete slices nest on their thread; every async
begin has its end; every flow start has its end, both bound to a slice) and
every message slice is compared with the row of ``exchanges.parquet`` it
names, to the microsecond.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

import networkx as nx
import pandas as pd
import pytest

import innet.report.trace as trace_module
from innet.app.cli import main
from innet.core.netsim import Message, time_messages
from innet.core.topology.model import Topology
from innet.report.timeline import timeline_figure
from innet.report.trace import TraceSelection, build_trace, select_rows

REQUIRED = {"X": {"name", "ts", "dur", "pid", "tid"}, "b": {"name", "ts", "id", "cat", "pid"},
            "e": {"name", "ts", "id", "cat", "pid"}, "s": {"name", "ts", "id", "pid", "tid"},
            "f": {"name", "ts", "id", "pid", "tid"}, "C": {"name", "ts", "pid", "args"},
            "i": {"name", "ts", "s"}, "M": {"name", "pid", "args"}}  # fmt: skip


def _slices(events: list[dict]) -> dict[tuple[int, int], list[tuple[float, float]]]:
    tracks = defaultdict(list)
    for event in events:
        if event["ph"] == "X":
            tracks[(event["pid"], event["tid"])].append((event["ts"], event["ts"] + event["dur"]))
    return tracks


def check_format(trace: dict) -> None:
    """Assert that ``trace`` is a well-formed Chrome trace (JSON object format)."""
    events = trace["traceEvents"]
    json.loads(json.dumps(trace))  # plain JSON
    for event in events:
        assert REQUIRED[event["ph"]] <= set(event), event
        if "ts" in event:
            assert event["ts"] >= 0
    tracks = _slices(events)
    for spans in tracks.values():  # complete slices nest on their thread
        stack: list[float] = []
        for start, end in sorted(spans, key=lambda span: (span[0], -span[1])):
            assert end >= start
            while stack and start >= stack[-1]:
                stack.pop()
            assert not stack or end <= stack[-1], "slices overlap without nesting"
            stack.append(end)
    begins = {(e["cat"], e["id"]): e["ts"] for e in events if e["ph"] == "b"}
    ends = {(e["cat"], e["id"]): e["ts"] for e in events if e["ph"] == "e"}
    assert begins.keys() == ends.keys()
    assert all(ends[key] >= begins[key] for key in begins)
    starts = Counter(e["id"] for e in events if e["ph"] == "s")
    finishes = Counter(e["id"] for e in events if e["ph"] == "f")
    assert starts == finishes and set(starts.values()) <= {1}
    for event in events:
        if event["ph"] in "sf":  # bound to a slice enclosing it on its thread
            spans = tracks[(event["pid"], event["tid"])]
            assert any(a <= event["ts"] <= b for a, b in spans), event
    named = {e["pid"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    threads = {
        (e["pid"], e["tid"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"
    }
    assert {e["pid"] for e in events if e["ph"] == "X"} <= named
    assert set(tracks) <= threads


def check_against_records(trace: dict, exchanges: pd.DataFrame) -> int:
    """Every message slice's times are those of its row, to the microsecond; returns the count."""
    messages = [e for e in trace["traceEvents"] if e["ph"] in "Xb" and "row" in e.get("args", {})]
    ends = {(e["cat"], e["id"]): e["ts"] for e in trace["traceEvents"] if e["ph"] == "e"}
    for event in messages:
        row = exchanges.loc[event["args"]["row"]]
        end = (
            event["ts"] + event["dur"] if event["ph"] == "X" else ends[(event["cat"], event["id"])]
        )
        assert abs(event["ts"] - row["t_start"] * 1e6) < 1e-3  # within a nanosecond
        assert abs(end - row["t_end"] * 1e6) < 2e-3
        assert event["args"]["bytes"] == row["nbytes"]
        assert event["args"]["phase"] == row["phase"] and event["args"]["step"] == row["step"]
    return len(messages)


def _records() -> tuple[pd.DataFrame, Topology]:
    """Two training steps on a kite, with messages that overlap on a link."""
    graph = nx.Graph()
    graph.add_edge("s1", "r", capacity=1e6, latency=5e-3)
    graph.add_edge("s2", "r", capacity=2e6, latency=1e-3)
    graph.add_edge("r", "f", capacity=1e6, latency=4e-3)
    graph.add_edge("s2", "f", capacity=5e5, latency=1e-3)
    roles = {"f": "fusion", "r": "relay", "s1": "sensor", "s2": "sensor"}
    nx.set_node_attributes(graph, roles, "role")
    topology = Topology("kite", graph)
    step = [Message("forward", "s1", "r", 400), Message("forward", "s2", "r", 300),
            Message("forward", "s2", "f", 300), Message("forward", "r", "f", 500),
            Message("forward", "r", "f", 500), Message("backward", "f", "r", 500),
            Message("backward", "f", "s2", 300), Message("backward", "r", "s1", 400),
            Message("backward", "r", "s2", 300)]  # fmt: skip
    frames, clock = [], 0.0
    for number in range(2):
        frame = time_messages(topology, step, compute_s={"r": (1e-3, 2e-3)})
        frame[["t_start", "t_end"]] += clock
        clock = frame["t_end"].max()
        frames.append(frame.assign(variant="dense", seed=0, epoch=0, step=number,
                                   payload="latent", lost=False))  # fmt: skip
    return pd.concat(frames, ignore_index=True), topology


def test_a_trace_follows_the_format_and_its_records():
    exchanges, topology = _records()
    nodes = pd.DataFrame({"variant": "dense", "node": ["r"], "forward_s": [1e-3],
                          "backward_s": [2e-3]})  # fmt: skip
    trace = build_trace(exchanges, topology, nodes=nodes)
    check_format(trace)
    assert check_against_records(trace, exchanges) == len(exchanges)
    phases = Counter(e["ph"] for e in trace["traceEvents"])
    assert phases["b"] > 0  # r -> f sends twice: the second starts before the first arrives
    assert phases["s"] > 0 and phases["C"] > 0
    compute = [e for e in trace["traceEvents"] if e.get("name", "").endswith("compute")]
    assert len(compute) == 4  # r's forward and backward compute, in each of two steps
    # r's forward compute ends when its first forward message is issued
    forward = min(e["ts"] + e["dur"] for e in compute if e["name"] == "forward compute")
    first_send = exchanges[(exchanges["src"] == "r") & (exchanges["phase"] == "forward")
                           & (exchanges["step"] == 0)]  # fmt: skip
    issued = (first_send["t_start"] - first_send["queue_s"]).min()
    assert forward == pytest.approx(issued * 1e6, abs=1e-3)


def test_bytes_in_flight_counters_return_to_zero_and_never_go_negative():
    exchanges, topology = _records()
    trace = build_trace(exchanges, topology)
    levels = defaultdict(list)
    for event in trace["traceEvents"]:
        if event["ph"] == "C":
            levels[(event["pid"], event["name"])].append(event["args"]["bytes"])
    assert levels
    for series in levels.values():
        assert min(series) >= 0 and series[-1] == 0
    peak = max(max(series) for series in levels.values())
    assert peak == 1000  # r -> f carries both 500-byte messages at once


def test_the_default_selection_is_the_first_and_last_step_of_the_first_seed():
    exchanges, _ = _records()
    more = exchanges.assign(seed=1)
    frame = pd.concat([exchanges, more, exchanges.assign(step=exchanges["step"] + 2)],
                      ignore_index=True)  # fmt: skip
    rows = select_rows(frame, TraceSelection())
    assert set(rows["seed"]) == {0} and set(rows["step"]) == {0, 3}
    assert set(select_rows(frame, TraceSelection(steps=[1]))["step"]) == {1}
    changes = {"dense": [{"step": 1, "event": "link_down r-f"}]}  # and where the plan changes
    assert set(select_rows(frame, TraceSelection(), changes)["step"]) == {0, 1, 3}


def test_a_timeline_figure_is_drawn(tmp_path: Path):
    exchanges, topology = _records()
    step = exchanges[exchanges["step"] == 1]
    origin = float(exchanges.loc[exchanges["step"] == 0, "t_end"].max())
    path = timeline_figure(step, topology, tmp_path / "timeline.png", origin=origin)
    assert path.stat().st_size > 5_000


@pytest.mark.slow
def test_a_run_with_trace_and_the_trace_command(tmp_path: Path, capsys):
    out = tmp_path / "run"
    args = ["--scenario", "smoke", "--seeds", "1", "--set", "training.epochs=1", "--trace",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    exchanges = pd.read_parquet(out / "exchanges.parquet")
    trace = json.loads((out / "trace.json").read_text())
    check_format(trace)
    assert check_against_records(trace, exchanges) > 0
    assert sorted(p.name for p in (out / "figures").glob("timeline_*.png"))
    again = tmp_path / "step2.json"
    assert main(["trace", str(out), "--step", "2", "--variant", "dense", "--out", str(again),
                 "--no-figures"]) == 0  # fmt: skip
    picked = json.loads(again.read_text())
    check_format(picked)
    rows = {e["args"]["row"] for e in picked["traceEvents"] if "row" in e.get("args", {})}
    want = exchanges[(exchanges["variant"] == "dense") & (exchanges["step"] == 2)
                     & (exchanges["seed"] == 0) & (exchanges["phase"] != "eval")]  # fmt: skip
    assert rows == set(want.index)
    capsys.readouterr()
    assert main(["trace", str(out), "--variant", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no variant 'nope'" in err[0]


def test_a_large_selection_is_written_with_a_warning_giving_its_size(tmp_path, monkeypatch, capsys):
    exchanges, topology = _records()
    run = SimpleNamespace(exchanges=exchanges, topology=topology, nodes=None, steps=None,
                          events={}, run_dir=tmp_path)  # fmt: skip
    monkeypatch.setattr(trace_module, "WARN_BYTES", 1_000)
    path = trace_module.write_trace(run)
    err = capsys.readouterr().err
    assert "keeping each variant's last training step" in err  # the default shrinks
    assert "warning: the trace of 9 messages will be about" in err and "MB" in err
    trace = json.loads(path.read_text())
    check_format(trace)
    steps = {e["args"]["step"] for e in trace["traceEvents"] if "row" in e.get("args", {})}
    assert steps == {1}
    trace_module.write_trace(run, TraceSelection(steps=[0, 1]))  # as chosen, with a warning
    assert "warning: the trace of 18 messages" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["trace.json"]  # no partial file left


def test_a_plan_change_is_a_marker_where_its_step_starts():
    exchanges, topology = _records()
    events = {
        "dense": [{"step": 1, "epoch": 0, "event": "link_down r-f", "lost_links": [["f", "r"]]}]
    }
    trace = build_trace(exchanges, topology, events=events, exchanges=exchanges)
    check_format(trace)
    (marker,) = [e for e in trace["traceEvents"] if e["ph"] == "i"]
    step0_end = exchanges.loc[exchanges["step"] == 0, "t_end"].max()
    assert marker["ts"] == pytest.approx(step0_end * 1e6, abs=1e-3)
    assert "down: f-r" in marker["name"]


def test_without_nodes_csv_compute_is_read_off_the_gap_between_inputs_and_sends():
    exchanges, topology = _records()  # r computes 1 ms forward, 2 ms backward
    trace = build_trace(exchanges, topology)
    check_format(trace)
    compute = [e for e in trace["traceEvents"] if e.get("name", "").endswith("compute")]
    durations = sorted((e["name"], round(e["dur"], 3)) for e in compute)
    assert durations == [("backward compute", 2000.0)] * 2 + [("forward compute", 1000.0)] * 2
