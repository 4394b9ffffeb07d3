"""Exchange records: one row per tensor sent over one link, and where a run keeps them.

An *exchange record* says that during one step of one (variant, seed) a
tensor of ``nbytes`` bytes went from node ``src`` to node ``dst`` in a given
*phase* (``forward``, ``backward``, ``eval``, ``codebook``, or a phase a
scenario family adds) carrying a given *payload* (``latent``, ``grad``,
``codebook``, ...). ``codebook`` is the training traffic of a discrete gate
whose messages are codeword indices: the codebook its receivers decode them
with (:mod:`innet.families.inl.wire`); it flows like ``forward``, so a node's forward
messages wait for the codebooks sent to it, and it is registered first, so
a sender's codebook comes before its latents in a step's records. ``lost`` marks a
message sent into a link that had just failed: it is counted but never
arrives. The network model later adds when each record left and arrived.

Phases are registered in :mod:`innet.core.phases`; the run directory's files are named
in :mod:`innet.rundir.layout`.

**Columnar and interned.** Training repeats the same step thousands of times:
same messages, same sizes. An :class:`ExchangeLog` keeps each distinct step's
records once, as numpy columns (a :class:`StepRecords` block), and for every
step only which block it used. Memory grows with the number of *distinct*
steps, not with steps times messages; the full table is built only when the
run directory is written (:meth:`ExchangeLog.frame`).

>>> log = ExchangeLog(["f", "s"])
>>> for step in range(3):
...     log.begin("train", 0, step, batch=8)
...     log.add("forward", "s", "f", "latent", 64)
...     log.add("backward", "f", "s", "grad", 64)
...     log.end()
>>> len(log), len(log.blocks)  # 6 records, one distinct step
(6, 1)
>>> log.train_bytes_per_epoch()
{0: 384}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from innet.core.phases import get_phase, phase_names
from innet.core.topology.order import node_key

__all__ = [
    "StepRecords",
    "ExchangeLog",
    "RecordTimes",
    "EXCHANGE_COLUMNS",
    "REQUIRED_EXCHANGE_COLUMNS",
    "OPTIONAL_EXCHANGE_COLUMNS",
    "CORE_METRICS_COLUMNS",
    "STEP_KINDS",
]

STEP_KINDS = ("train", "eval")
"""A step is a training step or one evaluation batch."""

REQUIRED_EXCHANGE_COLUMNS = (
    "variant", "seed", "epoch", "step", "phase", "src", "dst", "payload", "nbytes",
    "t_start", "t_end", "queue_s",
)  # fmt: skip
OPTIONAL_EXCHANGE_COLUMNS = {"attempts": 1, "lost": False}
"""Exchange columns that older runs lack, with the value they are read as."""
EXCHANGE_COLUMNS = (*REQUIRED_EXCHANGE_COLUMNS, *OPTIONAL_EXCHANGE_COLUMNS)

CORE_METRICS_COLUMNS = (
    "train_bytes", "train_bytes_cum", "sim_time_s", "sim_time_cum_s", "lost_messages",
)  # fmt: skip
"""Per-epoch columns every family's ``metrics.csv`` gets after its own metrics."""


# -- records --------------------------------------------------------------------------------


class RecordTimes(Protocol):
    """Simulated times of a log's records, in its record order (what
    :func:`~innet.core.timing.time_run` computes): start, end and queueing seconds
    and how many copies of each record were sent."""

    @property
    def t_start(self) -> np.ndarray: ...

    @property
    def t_end(self) -> np.ndarray: ...

    @property
    def queue_s(self) -> np.ndarray: ...

    @property
    def attempts(self) -> np.ndarray | None: ...


@dataclass(frozen=True, eq=False)
class StepRecords:
    """The records of one step, as columns sorted in canonical order.

    Canonical order: by phase (registration order), then sender and receiver
    in node order, so records made by several processes merge deterministically.
    Node, phase and payload columns hold codes into the log's tables.
    """

    phase: np.ndarray  # int16 codes into phase_names()
    src: np.ndarray  # int32 codes into ExchangeLog.nodes
    dst: np.ndarray
    payload: np.ndarray  # int16 codes into ExchangeLog.payloads
    nbytes: np.ndarray  # int64
    lost: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.nbytes)

    def digest(self) -> bytes:
        """A content key: equal for two blocks with the same records."""
        return b"|".join(
            np.ascontiguousarray(column).tobytes()
            for column in (self.phase, self.src, self.dst, self.payload, self.nbytes, self.lost)
        )

    @classmethod
    def concat(cls, blocks: Sequence[StepRecords]) -> StepRecords:
        """The records of several blocks (e.g. from several processes), in canonical order."""
        columns = [np.concatenate([getattr(b, name) for b in blocks]) for name in _COLUMNS]
        return cls._sorted(*columns)

    @classmethod
    def _sorted(cls, phase, src, dst, payload, nbytes, lost) -> StepRecords:  # noqa: ANN001
        order = np.lexsort((dst, src, phase))
        return cls(phase[order], src[order], dst[order], payload[order], nbytes[order], lost[order])


_COLUMNS = ("phase", "src", "dst", "payload", "nbytes", "lost")


@dataclass
class _Pending:
    kind: str
    epoch: int
    step: int
    batch: int
    rows: list[tuple[int, int, int, int, int, bool]] = field(default_factory=list)
    columns: list[tuple[np.ndarray, ...]] = field(default_factory=list)  # from add_many


class ExchangeLog:
    """The exchange records of one (variant, seed), one interned block per distinct step.

    ``nodes`` are every node that may send or receive; their order is the node
    order (so sorting by code sorts by node). Steps are written with
    :meth:`begin`, :meth:`add` and :meth:`end`; ``steps`` lists, per step,
    ``(kind, epoch, step, batch, block)``: ``kind`` is ``train`` or ``eval``,
    ``step`` the global training step (or the evaluation batch number),
    ``batch`` the number of samples, ``block`` an index into ``blocks``.
    """

    def __init__(self, nodes: Iterable[str], payloads: Sequence[str] = ("latent", "grad")) -> None:
        self.nodes: list[str] = sorted(nodes, key=node_key)
        self._node_code = {node: code for code, node in enumerate(self.nodes)}
        self.payloads: list[str] = list(payloads)
        self._payload_code = {payload: code for code, payload in enumerate(self.payloads)}
        self._phase_code = {name: code for code, name in enumerate(phase_names())}
        self.blocks: list[StepRecords] = []
        self._interned: dict[bytes, int] = {}
        self.steps: list[tuple[str, int, int, int, int]] = []
        self._pending: _Pending | None = None

    # -- writing ----------------------------------------------------------------------------

    def begin(self, kind: str, epoch: int, step: int, batch: int) -> None:
        """Start recording a step (``kind``: ``train`` or ``eval``)."""
        if kind not in STEP_KINDS:
            raise ValueError(f"unknown step kind {kind!r} (expected train or eval)")
        if self._pending is not None:
            raise RuntimeError("begin() called before the previous step ended")
        self._pending = _Pending(kind, int(epoch), int(step), int(batch))

    def add(
        self, phase: str, src: str, dst: str, payload: str, nbytes: int, lost: bool = False
    ) -> None:
        """Record one message of the current step."""
        if self._pending is None:
            raise RuntimeError("add() outside a step: call begin() first")
        if payload not in self._payload_code:
            self._payload_code[payload] = len(self.payloads)
            self.payloads.append(payload)
        try:
            phase_code = self._phase_code[phase]
        except KeyError:
            get_phase(phase)  # raises, naming the known phases
            self._phase_code = {name: code for code, name in enumerate(phase_names())}
            phase_code = self._phase_code[phase]
        self._pending.rows.append(
            (
                phase_code,
                self._node_code[src],
                self._node_code[dst],
                self._payload_code[payload],
                int(nbytes),
                bool(lost),
            )
        )

    def add_many(
        self,
        phase: str,
        src: Sequence[str],
        dst: Sequence[str],
        payload: str,
        nbytes: np.ndarray,
        lost: np.ndarray,
    ) -> None:
        """Record several messages of one phase and payload at once (as :meth:`add` does each)."""
        if self._pending is None:
            raise RuntimeError("add_many() outside a step: call begin() first")
        count = len(src)
        phase_code = self._phase_code.get(phase)
        if phase_code is None:
            get_phase(phase)  # raises, naming the known phases
            self._phase_code = {name: code for code, name in enumerate(phase_names())}
            phase_code = self._phase_code[phase]
        code = self._node_code
        self._pending.columns.append(
            (
                np.full(count, phase_code, dtype=np.int16),
                np.fromiter((code[node] for node in src), dtype=np.int32, count=count),
                np.fromiter((code[node] for node in dst), dtype=np.int32, count=count),
                np.full(count, self._code_payload(payload), dtype=np.int16),
                np.asarray(nbytes, dtype=np.int64),
                np.asarray(lost, dtype=bool),
            )
        )

    def end(self) -> None:
        """Finish the current step: intern its records and append it to ``steps``."""
        pending, self._pending = self._pending, None
        if pending is None:
            raise RuntimeError("end() without begin()")
        rows = pending.rows
        columns = [
            np.concatenate(
                [np.array([r[i] for r in rows], dtype=dtype)]
                + [part[i] for part in pending.columns]
            )
            for i, dtype in enumerate((np.int16, np.int32, np.int32, np.int16, np.int64, bool))
        ]
        block = StepRecords._sorted(*columns)
        self.steps.append(
            (pending.kind, pending.epoch, pending.step, pending.batch, self._intern(block))
        )

    def _intern(self, block: StepRecords) -> int:
        key = block.digest()
        index = self._interned.get(key)
        if index is None:
            index = self._interned[key] = len(self.blocks)
            self.blocks.append(block)
        return index

    # -- combining --------------------------------------------------------------------------

    @classmethod
    def merge(cls, logs: Sequence[ExchangeLog]) -> ExchangeLog:
        """One log from the logs of several processes that ran the same steps.

        Each process recorded the messages its own nodes sent; the merged step
        holds all of them in canonical order.
        """
        first = logs[0]
        if len(logs) == 1:
            return first
        for other in logs[1:]:
            if [s[:4] for s in other.steps] != [s[:4] for s in first.steps]:
                raise ValueError("the processes recorded different steps")
            if other.nodes != first.nodes:
                raise ValueError("the processes' logs name different nodes")
        merged = cls(first.nodes, first.payloads)
        codes = [np.array([merged._code_payload(p) for p in log.payloads] or [0]) for log in logs]
        for position, step in enumerate(first.steps):
            parts = []
            for log, payload_codes in zip(logs, codes, strict=True):
                block = log.blocks[log.steps[position][4]]
                parts.append(
                    StepRecords(
                        block.phase,
                        block.src,
                        block.dst,
                        payload_codes[block.payload],
                        block.nbytes,
                        block.lost,
                    )
                )
            merged.steps.append((*step[:4], merged._intern(StepRecords.concat(parts))))
        return merged

    def _code_payload(self, payload: str) -> int:
        if payload not in self._payload_code:
            self._payload_code[payload] = len(self.payloads)
            self.payloads.append(payload)
        return self._payload_code[payload]

    # -- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(len(self.blocks[step[4]]) for step in self.steps)

    def step_sizes(self) -> np.ndarray:
        """Number of records of each step, in ``steps`` order."""
        sizes = np.array([len(block) for block in self.blocks], dtype=np.int64)
        return sizes[[step[4] for step in self.steps]] if self.steps else sizes[:0]

    def train_bytes_per_epoch(self) -> dict[int, int]:
        """Training exchange per epoch: the bytes of every training-phase record."""
        training = np.array([get_phase(name).training for name in phase_names()])
        per_block = [int(b.nbytes[training[b.phase]].sum()) for b in self.blocks]
        totals: dict[int, int] = {}
        for _kind, epoch, _step, _batch, block in self.steps:
            totals[epoch] = totals.get(epoch, 0) + per_block[block]
        return totals

    def lost_per_epoch(self) -> dict[int, int]:
        """Messages sent into a failed link, per epoch."""
        per_block = [int(block.lost.sum()) for block in self.blocks]
        totals: dict[int, int] = {}
        for _kind, epoch, _step, _batch, block in self.steps:
            totals[epoch] = totals.get(epoch, 0) + per_block[block]
        return totals

    def frame(self, variant: str, seed: int, timing: RecordTimes | None = None) -> pd.DataFrame:
        """The full exchanges table of this log (columns :data:`EXCHANGE_COLUMNS`); without
        ``timing``, the time columns are NaN and every record was sent once."""
        index = [step[4] for step in self.steps]
        sizes = self.step_sizes()

        def column(name: str) -> np.ndarray:
            if not index:  # a log without steps: an empty table with the usual columns
                return np.array([], dtype=bool if name == "lost" else np.int64)
            return np.concatenate([getattr(self.blocks[i], name) for i in index])

        names = np.array(phase_names(), dtype=object)
        nodes = np.array(self.nodes, dtype=object)
        payloads = np.array(self.payloads, dtype=object)
        total = int(sizes.sum())
        frame = pd.DataFrame(
            {
                "variant": np.full(total, variant, dtype=object),
                "seed": np.full(total, seed, dtype=np.int64),
                "epoch": np.repeat([s[1] for s in self.steps], sizes).astype(np.int64),
                "step": np.repeat([s[2] for s in self.steps], sizes).astype(np.int64),
                "phase": names[column("phase").astype(np.int64)],
                "src": nodes[column("src").astype(np.int64)],
                "dst": nodes[column("dst").astype(np.int64)],
                "payload": payloads[column("payload").astype(np.int64)],
                "nbytes": column("nbytes").astype(np.int64),
            }
        )
        if timing is None:
            for name in ("t_start", "t_end", "queue_s"):
                frame[name] = np.nan
            frame["attempts"] = np.ones(total, dtype=np.int64)
        else:
            frame["t_start"] = timing.t_start
            frame["t_end"] = timing.t_end
            frame["queue_s"] = timing.queue_s
            frame["attempts"] = timing.attempts
        frame["lost"] = column("lost").astype(bool)
        return frame[list(EXCHANGE_COLUMNS)]

    @classmethod
    def from_frame(
        cls,
        exchanges: pd.DataFrame,
        nodes: Iterable[str],
        steps: Sequence[tuple[str, int, int, int]] | None = None,
    ) -> ExchangeLog:
        """Rebuild the log of one (variant, seed) from its rows of an exchanges table.

        ``steps`` lists every step as ``(kind, epoch, step, batch)`` in order (a run
        keeps them in :data:`STEPS_FILE`); without it, the steps that have records,
        in the table's order, with batch size 0.
        """
        log = cls(nodes)
        kinds = np.where(exchanges["phase"].to_numpy() == "eval", "eval", "train")
        keys = list(
            zip(
                kinds.tolist(), exchanges["epoch"].tolist(), exchanges["step"].tolist(), strict=True
            )
        )
        lost = exchanges["lost"].tolist() if "lost" in exchanges else [False] * len(keys)
        rows: dict[tuple, list[list]] = {}
        columns = zip(
            keys,
            exchanges["phase"],
            exchanges["src"],
            exchanges["dst"],
            exchanges["payload"],
            exchanges["nbytes"],
            lost,
            strict=True,
        )
        for key, *row in columns:
            rows.setdefault(key, []).append(row)
        if steps is None:
            steps = [(kind, epoch, step, 0) for kind, epoch, step in rows]
        for kind, epoch, step, batch in steps:
            log.begin(str(kind), int(epoch), int(step), int(batch))
            for phase, src, dst, payload, nbytes, was_lost in rows.get((kind, epoch, step), []):
                log.add(str(phase), str(src), str(dst), str(payload), int(nbytes), bool(was_lost))
            log.end()
        return log
