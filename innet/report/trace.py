"""A run's network timeline as a trace for Perfetto and chrome://tracing.

:func:`build_trace` turns a selection of a finished run's exchange records into
the Chrome trace event format (a JSON object with ``traceEvents``), which
https://ui.perfetto.dev and chrome://tracing open as they are:

- one *process* per node of every selected (variant, seed), named by the
  node's label; in it one *track* (thread) for the node's compute and one per
  link direction it sends on (``→ r3``; ``→ f (routed)`` for a routed message
  to a node it shares no link with);
- each message is a slice on its sender's track, from its simulated
  ``t_start`` to its ``t_end`` (``ts`` and ``dur`` in microseconds of
  simulated time, rounded to the nanosecond), with its variant, seed, epoch,
  step, phase, payload, bytes, queueing delay, attempts and its row in
  ``exchanges.parquet`` in ``args``. A message that overlaps the previous one
  on its track without nesting in it (the next message on a link may start
  before the last one has arrived) is an *async* slice instead, so that
  nothing is hidden;
- compute slices (forward and backward, from ``nodes.csv`` scaled to the
  step's batch) end when the node's first message of that side leaves; a
  node without a compute time there gets the span from its last input to its
  first send, where the network model puts its compute;
- flow arrows into every message (and compute slice) from the input it
  waited for last, the one that let it leave: for phases with a flow, the
  last-arriving input of the same side of the sender (a node's backward sends
  wait for its backward inputs, or, at the fusion node, for its forward
  inputs); for phases that name their own dependencies, the last message into
  the sender that had arrived when it left;
- one counter per link direction, the bytes in flight on it (sent, not yet
  arrived), and global markers for the plan changes (links down or up) of
  events.

Times are those of ``exchanges.parquet``: absolute simulated seconds of the
variant's clock, so the slices of one step line up with its rows.
"""

from __future__ import annotations

import json
import os
import sys
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from innet.core.errors import InnetError
from innet.core.phases import get_phase
from innet.core.topology.model import Topology, node_key

if TYPE_CHECKING:
    from innet.rundir.io import RunData

__all__ = [
    "TRACE_FILE",
    "WARN_BYTES",
    "TraceSelection",
    "select_rows",
    "build_trace",
    "draw_timelines",
    "write_trace",
    "write_run_trace",
]

TRACE_FILE = "trace.json"
WARN_BYTES = 200_000_000
"""A selection whose trace would be larger than this is written with a warning."""

_BYTES_PER_MESSAGE = 800  # about what one message costs in the JSON (slice, arrows, counters)


@dataclass(frozen=True)
class TraceSelection:
    """Which steps go into a trace; ``None``: the default.

    Default: every variant, the run's first seed, and the first and last
    training step of each (variant, seed), and those where its plan changes.
    ``steps`` are training step numbers (the ``step`` column of
    ``exchanges.parquet`` for training phases).
    """

    variants: Sequence[str] | None = None
    seeds: Sequence[int] | None = None
    steps: Sequence[int] | None = None


def select_rows(
    exchanges: pd.DataFrame,
    selection: TraceSelection,
    events: dict[str, list[dict[str, Any]]] | None = None,
    *,
    last_only: bool = False,
) -> pd.DataFrame:
    """The training records of the selected (variant, seed, step)s, lost ones left out.

    Without chosen steps, the steps where a variant's plan changes (``events``,
    as in ``events.json``) are selected too; ``last_only``: only the last
    training step instead (the default selection of a very large run).

    Raises :class:`~innet.core.errors.InnetError` naming the variant, seed or step
    that the run does not have.
    """
    kinds = {name: get_phase(name).training for name in exchanges["phase"].unique()}
    training = exchanges["phase"].map(kinds).astype(bool)
    rows = exchanges[training & ~exchanges["lost"].astype(bool)]
    known_variants = list(dict.fromkeys(exchanges["variant"]))
    variants = list(selection.variants or known_variants)
    _check_known("variant", variants, known_variants)
    known_seeds = sorted({int(seed) for seed in exchanges["seed"]})
    seeds = list(selection.seeds) if selection.seeds else known_seeds[:1]
    _check_known("seed", seeds, known_seeds)
    parts = []
    for variant in variants:
        for seed in seeds:
            mine = rows[(rows["variant"] == variant) & (rows["seed"] == seed)]
            steps = _steps(mine, selection.steps, variant, seed)
            if last_only and selection.steps is None:
                steps = steps[-1:]
            elif selection.steps is None and events:
                changed = {int(change["step"]) for change in events.get(variant, [])}
                steps = sorted(set(steps) | (changed & set(mine["step"].tolist())))
            parts.append(mine[mine["step"].isin(steps)])
    return pd.concat(parts) if parts else rows.iloc[:0]


def _check_known(what: str, wanted: Iterable[Any], known: Sequence[Any]) -> None:
    for value in wanted:
        if value not in known:
            shown = ", ".join(str(k) for k in known)
            raise InnetError(f"trace: the run has no {what} {value!r} (it has: {shown})")


def _steps(rows: pd.DataFrame, wanted: Sequence[int] | None, variant: str, seed: int) -> list:
    steps = sorted(set(rows["step"].tolist()))
    if wanted is None:
        return sorted({steps[0], steps[-1]}) if steps else []
    missing = [step for step in wanted if step not in set(steps)]
    if missing:
        last = steps[-1] if steps else "none"
        raise InnetError(
            f"trace: {variant} seed {seed} has no training step {missing[0]} (steps 0 to {last})"
        )
    return list(wanted)


def _us(seconds: float) -> float:
    """Simulated seconds as trace microseconds, rounded to the nanosecond."""
    return round(float(seconds) * 1e6, 3)


@dataclass
class _Track:
    pid: int
    tid: int
    last_end: float = -np.inf  # end of the last complete slice on it


@dataclass
class _Builder:
    topology: Topology
    events: list[dict[str, Any]] = field(default_factory=list)
    tracks: dict[tuple[int, str], _Track] = field(default_factory=dict)
    next_id: int = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def process(self, pid: int, name: str) -> None:
        self.events.append(_meta(pid, 0, "process_name", {"name": name}))
        self.events.append(_meta(pid, 0, "process_sort_index", {"sort_index": pid}))

    def track(self, pid: int, name: str) -> _Track:
        track = self.tracks.get((pid, name))
        if track is None:
            tid = sum(1 for key in self.tracks if key[0] == pid)
            track = self.tracks[(pid, name)] = _Track(pid, tid)
            self.events.append(_meta(pid, tid, "thread_name", {"name": name}))
            self.events.append(_meta(pid, tid, "thread_sort_index", {"sort_index": tid}))
        return track

    def slice(self, track: _Track, name: str, ts: float, end: float, args: dict) -> bool:
        """A slice on ``track``; async when it would overlap the last one. True: complete."""
        base = {"name": name, "cat": "network", "pid": track.pid, "tid": track.tid, "args": args}
        if ts >= track.last_end:
            self.events.append({**base, "ph": "X", "ts": ts, "dur": round(end - ts, 3)})
            track.last_end = end
            return True
        ident = self.new_id()
        self.events.append({**base, "ph": "b", "ts": ts, "id": ident, "cat": "overlapping"})
        self.events.append({**base, "ph": "e", "ts": end, "id": ident, "cat": "overlapping"})
        return False

    def arrow(self, source: tuple[_Track, float], target: tuple[_Track, float]) -> None:
        ident = self.new_id()
        (s_track, s_ts), (t_track, t_ts) = source, target
        common = {"name": "enables", "cat": "dependency", "id": ident}
        self.events.append(
            {**common, "ph": "s", "pid": s_track.pid, "tid": s_track.tid, "ts": s_ts}
        )
        self.events.append(
            {**common, "ph": "f", "bp": "e", "pid": t_track.pid, "tid": t_track.tid, "ts": t_ts}
        )


def _meta(pid: int, tid: int, name: str, args: dict) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": pid, "tid": tid, "args": args}


def build_trace(
    rows: pd.DataFrame,
    topology: Topology,
    *,
    nodes: pd.DataFrame | None = None,
    steps: pd.DataFrame | None = None,
    events: dict[str, list[dict[str, Any]]] | None = None,
    exchanges: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The Chrome trace of the exchange records ``rows`` (index: rows of ``exchanges.parquet``).

    ``nodes`` (``nodes.csv``) and ``steps`` (``steps.csv``) add compute slices;
    ``events`` (``events.json``) and the whole ``exchanges`` add plan-change markers.
    """
    builder = _Builder(topology)
    order = sorted(topology.graph.nodes, key=node_key)
    index = {node: i for i, node in enumerate(order)}
    runs = list(dict.fromkeys(zip(rows["variant"], rows["seed"], strict=True)))
    for number, (variant, seed) in enumerate(runs):
        mine = rows[(rows["variant"] == variant) & (rows["seed"] == seed)]
        base = 1 + number * len(order)
        suffix = f" · {variant} seed {seed}" if len(runs) > 1 else ""
        for node in order:
            builder.process(base + index[node], f"{topology.label(node)}{suffix}")
        pid = {node: base + index[node] for node in order}
        compute = _compute_table(nodes, variant)
        for step, step_rows in mine.groupby("step", sort=True):
            batch = _batch(steps, variant, seed, int(step))
            _add_step(builder, step_rows, pid, compute, batch)
        if events and exchanges is not None:
            _add_markers(builder, exchanges, events.get(variant, []), variant, seed, mine)
    return {
        "traceEvents": builder.events,
        "displayTimeUnit": "ms",
        "otherData": {"source": "innet", "time": "simulated network time"},
    }


def _compute_table(nodes: pd.DataFrame | None, variant: str) -> dict[str, tuple[float, float]]:
    if nodes is None or "forward_s" not in nodes:
        return {}
    mine = nodes[nodes["variant"] == variant]
    return {
        str(node): (float(f), float(b))
        for node, f, b in zip(mine["node"], mine["forward_s"], mine["backward_s"], strict=True)
        if f > 0 or b > 0
    }


def _batch(steps: pd.DataFrame | None, variant: str, seed: int, step: int) -> float:
    """This step's batch over the full training batch (what ``nodes.csv`` is for)."""
    if steps is None:
        return 1.0
    train = steps[
        (steps["variant"] == variant) & (steps["seed"] == seed) & (steps["kind"] == "train")
    ]
    if train.empty:
        return 1.0
    this = train.loc[train["step"] == step, "batch"]
    full = float(train["batch"].iloc[0])
    return float(this.iloc[0]) / full if len(this) and full else 1.0


def _track_name(builder: _Builder, src: str, dst: str) -> str:
    routed = "" if builder.topology.graph.has_edge(src, dst) else " (routed)"
    return f"→ {builder.topology.label(dst)}{routed}"


def _add_step(
    builder: _Builder,
    step_rows: pd.DataFrame,
    pid: dict[str, int],
    compute: dict[str, tuple[float, float]],
    batch: float,
) -> None:
    rows = step_rows.sort_values(["t_start", "t_end"], kind="stable")
    placed: dict[Any, tuple[_Track, float, bool]] = {}
    for row in rows.itertuples():
        track = builder.track(pid[row.src], _track_name(builder, row.src, row.dst))
        ts, end = _us(row.t_start), _us(row.t_end)
        args = {
            "variant": row.variant,
            "seed": int(row.seed),
            "epoch": int(row.epoch),
            "step": int(row.step),
            "phase": row.phase,
            "payload": row.payload,
            "bytes": int(row.nbytes),
            "queue_s": float(row.queue_s),
            "attempts": int(row.attempts),
            "row": int(row.Index),
        }
        complete = builder.slice(track, f"{row.phase} {row.payload}", ts, end, args)
        placed[row.Index] = (track, ts, complete)
    compute_slices = _add_compute(builder, rows, pid, compute, batch)
    _add_arrows(builder, rows, placed, compute_slices)
    _add_counters(builder, rows, pid)


def _side(phase: str) -> str | None:
    return get_phase(phase).flow


def _compute_spans(
    rows: pd.DataFrame, compute: dict[str, tuple[float, float]], batch: float
) -> list[tuple[str, str, float, float]]:
    """(node, forward|backward, start, end) of the compute before each side's first send.

    The compute of a side ends when its messages are issued (``t_start -
    queue_s``, the latest of them); the fusion node, where backpropagation starts, computes forward
    and backward before its first gradient leaves.
    """
    if rows.empty:
        return []
    sides = rows["phase"].map(_side)
    issued = rows["t_start"] - rows["queue_s"]
    receives_backward = set(rows.loc[sides == "backward", "dst"])
    arrived = rows.groupby([rows["dst"], sides])["t_end"].max()
    spans = []
    # a side's messages all leave together; a routed message's queue_s also counts
    # its waits at relays, so t_start - queue_s may fall before: take the latest
    for (node, side), when in issued.groupby([rows["src"], sides]).max().items():
        if node not in compute:
            spans += _gap_span(node, side, float(when), arrived)
            continue
        forward_s, backward_s = (t * batch for t in compute[node])
        parts = [("forward", forward_s)]
        if side == "backward":
            parts = [("backward", backward_s)]
            if node not in receives_backward:  # backpropagation starts here
                parts = [("forward", forward_s), ("backward", backward_s)]
        start = float(when) - sum(seconds for _, seconds in parts)
        for name, seconds in parts:
            if seconds > 0:
                spans.append((node, name, start, start + seconds))
            start += seconds
    return sorted(spans, key=lambda span: (span[2], node_key(span[0])))


def _gap_span(
    node: str, side: str | None, issued: float, arrived: pd.Series
) -> list[tuple[str, str, float, float]]:
    """Compute read off the records: from the node's last input to its first send.

    For a node whose compute time ``nodes.csv`` does not give (e.g. a MoE
    expert, computing on the tokens it received): the network model lets a
    side's messages leave its compute time after their inputs have arrived.
    """
    if side is None:
        return []
    trigger = (node, side)
    if side == "backward" and trigger not in arrived:
        trigger = (node, "forward")  # backpropagation starts here
    if trigger not in arrived or issued - float(arrived[trigger]) <= 1e-12:
        return []
    name = "forward" if trigger[1] == "forward" and side == "forward" else "backward"
    if trigger[1] != side:
        name = "forward+backward"
    return [(node, name, float(arrived[trigger]), issued)]


def _add_compute(
    builder: _Builder,
    rows: pd.DataFrame,
    pid: dict[str, int],
    compute: dict[str, tuple[float, float]],
    batch: float,
) -> dict[tuple[str, str], tuple[_Track, float]]:
    """Forward and backward compute slices ending when each side's first message leaves."""
    out: dict[tuple[str, str], tuple[_Track, float]] = {}
    for node, name, start, end in _compute_spans(rows, compute, batch):
        track = builder.track(pid[node], "compute")
        if builder.slice(track, f"{name} compute", _us(start), _us(end), {"seconds": end - start}):
            out[(node, name)] = (track, _us(start))
    return out


def _trigger(
    row: Any,
    side: str | None,
    last: dict[tuple[str, str | None], Any],
    arrivals: dict[str, list[tuple[float, Any]]],
) -> Any:
    """The input message ``row``'s sender waited for last (None: none)."""
    if side == "forward":
        return last.get((row.src, "forward"))
    if side == "backward":
        return last.get((row.src, "backward"), last.get((row.src, "forward")))
    before = arrivals.get(row.src, [])  # the last message into the sender before it left
    position = bisect_right(before, row.t_start - row.queue_s + 1e-12, key=lambda pair: pair[0])
    return before[position - 1][1] if position else None


def _add_arrows(
    builder: _Builder,
    rows: pd.DataFrame,
    placed: dict[Any, tuple[_Track, float, bool]],
    compute_slices: dict[tuple[str, str], tuple[_Track, float]],
) -> None:
    """An arrow into each message and compute slice from the input it waited for last."""
    sides = rows["phase"].map(_side)
    ends = dict(zip(rows.index, rows["t_end"], strict=True))
    last: dict[tuple[str, str | None], Any] = {}  # (receiver, side) -> its last input
    arrivals: dict[str, list[tuple[float, Any]]] = {}  # receiver -> (t_end, row), sorted
    for index, dst, side in zip(rows.index, rows["dst"], sides, strict=True):
        if (dst, side) not in last or ends[index] > ends[last[(dst, side)]]:
            last[(dst, side)] = index
        arrivals.setdefault(dst, []).append((ends[index], index))
    for values in arrivals.values():
        values.sort(key=lambda pair: pair[0])

    def link(source: Any, target: tuple[_Track, float]) -> None:
        if source is not None and placed[source][2]:
            builder.arrow(placed[source][:2], target)

    for row, side in zip(rows.itertuples(), sides, strict=True):
        target = placed[row.Index]
        if target[2]:
            link(_trigger(row, side, last, arrivals), target[:2])
    for (node, name), work in compute_slices.items():
        side = "backward" if name == "backward" and (node, "backward") in last else "forward"
        link(last.get((node, side)), work)


def _add_counters(builder: _Builder, rows: pd.DataFrame, pid: dict[str, int]) -> None:
    for (src, dst), mine in rows.groupby(["src", "dst"], sort=False):
        changes: dict[float, int] = {}
        for ts, end, nbytes in zip(mine["t_start"], mine["t_end"], mine["nbytes"], strict=True):
            changes[_us(ts)] = changes.get(_us(ts), 0) + int(nbytes)
            changes[_us(end)] = changes.get(_us(end), 0) - int(nbytes)
        name = f"bytes in flight {_track_name(builder, src, dst)}"
        level = 0
        for ts in sorted(changes):
            level += changes[ts]
            builder.events.append(
                {"name": name, "ph": "C", "pid": pid[src], "ts": ts, "args": {"bytes": level}}
            )


def _add_markers(
    builder: _Builder,
    exchanges: pd.DataFrame,
    changes: list[dict[str, Any]],
    variant: str,
    seed: int,
    mine: pd.DataFrame,
) -> None:
    """Global markers at the start of each selected step where the plan changes."""
    wanted = set(mine["step"].tolist())
    run = exchanges[(exchanges["variant"] == variant) & (exchanges["seed"] == seed)]
    for change in changes:
        step = int(change.get("step", -1))
        if step not in wanted:
            continue
        before = run.loc[run["step"] == step - 1, "t_end"]
        at = float(before.max()) if len(before) and step > 0 else 0.0
        lost = ", ".join("-".join(link) for link in change.get("lost_links", []))
        name = f"plan change: {change.get('event', '')}" + (f" (down: {lost})" if lost else "")
        builder.events.append(
            {
                "name": name,
                "ph": "i",
                "s": "g",
                "pid": 0,
                "tid": 0,
                "ts": _us(at),
                "args": {"variant": variant, **change},
            }
        )


def write_trace(
    run: RunData,
    selection: TraceSelection | None = None,
    path: str | Path | None = None,
) -> Path:
    """Write the trace of ``selection`` of a loaded run (:func:`~innet.families.runs.open_run`).

    Default ``path``: ``trace.json`` in the run directory. The file is written
    whole or not at all. A default selection estimated above :data:`WARN_BYTES`
    keeps only each variant's last training step; a selection still above it is
    written with a warning on stderr that gives its size.
    """
    selection = selection or TraceSelection()
    rows = select_rows(run.exchanges, selection, run.events)
    estimate = len(rows) * _BYTES_PER_MESSAGE
    if selection.steps is None and estimate > WARN_BYTES:
        rows = select_rows(run.exchanges, selection, run.events, last_only=True)
        print(
            f"trace: the first and last steps would make about {estimate / 1e6:,.0f} MB; "
            "keeping each variant's last training step (choose others with --step)",
            file=sys.stderr,
        )
        estimate = len(rows) * _BYTES_PER_MESSAGE
    if estimate > WARN_BYTES:
        print(
            f"warning: the trace of {len(rows):,} messages will be about "
            f"{estimate / 1e6:,.0f} MB; choose fewer variants, seeds or steps",
            file=sys.stderr,
        )
    trace = build_trace(
        rows,
        run.topology,
        nodes=run.nodes,
        steps=run.steps,
        events=run.events,
        exchanges=run.exchanges,
    )
    if path is None:
        if run.run_dir is None:
            raise InnetError("a run kept in memory: give the trace file's path")
        path = run.run_dir / TRACE_FILE
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        with partial.open("w") as handle:
            json.dump(trace, handle, separators=(",", ":"))
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def _selection(config: dict[str, Any] | TraceSelection | None) -> TraceSelection:
    if isinstance(config, TraceSelection):
        return config
    config = config or {}
    return TraceSelection(config.get("variants"), config.get("seeds"), config.get("steps"))


def write_run_trace(
    run: RunData,
    config: dict[str, Any] | TraceSelection | None = None,
    *,
    path: str | Path | None = None,
    figures: bool = True,
) -> list[Path]:
    """``trace.json`` of a run's selection and, with ``figures``, its timeline figures.

    ``config`` is the scenario's ``report.trace`` block (``variants``, ``seeds``,
    ``steps``). The figures, one per variant (its first selected seed's last
    selected step), go to ``figures/timeline_<variant>.png`` next to the trace.
    Returns the files written.
    """
    selection = _selection(config)
    trace = write_trace(run, selection, path)
    written = [trace]
    if figures:
        written += draw_timelines(run, selection, trace.parent / "figures")
    return written


def _step_origin(exchanges: pd.DataFrame, variant: str, seed: int, step: int) -> float:
    """When a training step started: when the one before it ended (0 for the first)."""
    if step == 0:
        return 0.0
    before = exchanges[
        (exchanges["variant"] == variant)
        & (exchanges["seed"] == seed)
        & (exchanges["step"] == step - 1)
    ]
    training = before["phase"].map(lambda name: get_phase(name).training).astype(bool)
    ends = before.loc[training, "t_end"].dropna()
    return float(ends.max()) if len(ends) else 0.0


def draw_timelines(run: RunData, selection: TraceSelection, out_dir: Path) -> list[Path]:
    """``timeline_<variant>.png`` per selected variant: the Gantt chart of one step."""
    from innet.report.timeline import timeline_figure

    rows = select_rows(run.exchanges, selection)
    steps = run.steps
    written = []
    for variant, mine in rows.groupby("variant", sort=False):
        seed = int(mine["seed"].iloc[0])
        mine = mine[mine["seed"] == seed]
        step = int(mine["step"].max())
        one = mine[mine["step"] == step]
        spans = _compute_spans(
            one, _compute_table(run.nodes, str(variant)), _batch(steps, str(variant), seed, step)
        )
        compute = pd.DataFrame(spans, columns=["node", "name", "start", "end"])
        title = f"{variant}, seed {seed}, training step {step}"
        path = out_dir / f"timeline_{variant}.png"
        origin = _step_origin(run.exchanges, str(variant), seed, step)
        written.append(
            timeline_figure(one, run.topology, path, origin=origin, compute=compute, title=title)
        )
    return written
