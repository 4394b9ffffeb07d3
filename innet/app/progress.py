"""Progress of long work (runs, sweeps, resumed ones) with an estimate of the time left.

A :class:`Progress` counts *items* (the (variant, seed) runs of a run, the
points of a sweep spread over processes) and, for the estimate, *units* of
work (a run's epochs; a sweep's items themselves). The time left is the time
spent so far per finished unit, times the units still to do
(:func:`time_left`): every epoch of a run has about the same cost, and with
points running side by side the elapsed time already counts the overlap.
Work a resumed run or sweep skips (already done before) is counted as done
(``[5/12]``) but not as work done in this process's time.

On a terminal (``sys.stderr.isatty()``, or a notebook) it is a tqdm bar;
otherwise one line per finished item, for logs::

    [3/12] point p01 gate.beta=0.01: dijkstra seed 1: 1 epochs, 12.3 s, about 1 min 40 s left

``shown=False`` (``--no-progress``) shows neither. A sweep run in this
process opens its own :class:`Progress` and makes it the one a run reports
to (:func:`reporting_to`): :func:`run_progress` then gives the run a view
that adds the point to each line and counts the sweep's items, so the
counts and the estimate are the whole sweep's.

>>> format_duration(12.34), format_duration(100), format_duration(7500)
('12.3 s', '1 min 40 s', '2 h 5 min')
>>> time_left(elapsed=30.0, done=3, total=12)
90.0
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any

__all__ = [
    "format_duration",
    "time_left",
    "Progress",
    "PointProgress",
    "run_progress",
    "reporting_to",
    "terminal",
]


def format_duration(seconds: float) -> str:
    """``12.3 s`` under a minute, ``1 min 40 s`` under an hour, ``2 h 5 min`` beyond."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s"
    hours, rest = divmod(whole, 3600)
    return f"{hours} h {rest // 60} min"


def time_left(*, elapsed: float, done: int, total: int) -> float | None:
    """Seconds left when ``done`` of ``total`` units took ``elapsed`` seconds (None before one).

    >>> time_left(elapsed=10.0, done=0, total=4) is None
    True
    >>> time_left(elapsed=10.0, done=4, total=4)
    0.0
    """
    if done <= 0:
        return None
    return elapsed * max(total - done, 0) / done


def terminal() -> bool:
    """Whether a bar can be drawn: stderr is a terminal, or this is a notebook."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


class Progress:
    """Items done out of a total, the estimate of the time left, as a bar or as log lines.

    ``items``: how many items the work has (runs, points); ``units``: how many
    units the estimate counts (epochs; default: the items). ``live`` draws a
    tqdm bar (default: :func:`terminal`); otherwise :meth:`done` writes one
    line to ``stream`` (default stderr). ``clock`` returns seconds (a test's
    fake clock; default :func:`time.perf_counter`); ``unit`` names the bar's unit.
    """

    def __init__(
        self,
        items: int,
        units: int | None = None,
        *,
        shown: bool = True,
        live: bool | None = None,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        unit: str = "epoch",
    ) -> None:
        self.items, self.units = items, items if units is None else units
        self.by_item = units is None
        self.items_done = self.units_done = self.units_skipped = 0
        self.shown = shown
        self.live = shown and (terminal() if live is None else live)
        self.stream = stream
        self.clock = clock
        self.started = clock()
        self.item_started = self.started
        self._bar: Any = None
        if self.live:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.units, unit=unit, dynamic_ncols=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the bar (if any)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def skip(self, items: int = 0, units: int = 0, *, what: str = "runs") -> None:
        """Count work done before (a resumed run or sweep): done, but not timed here.

        ``items`` whole items (said once in a log: ``resuming: 4 of 12 runs
        already done``), ``units`` (epochs) of items still to finish.
        """
        units = items if self.by_item else units
        self.items_done += items
        self.units_done += units
        self.units_skipped += units
        if self._bar is not None:  # not update(): tqdm's rate counts only work done here
            self._bar.n += units
            self._bar.refresh()
        if items:
            self.note(f"resuming: {items} of {self.items} {what} already done")

    def note(self, text: str) -> None:
        """A line for the reader (above the bar on a terminal); nothing when hidden."""
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        elif self.shown:
            self._write(text)

    def start(self, label: str) -> None:
        """An item begins: the bar shows its name; its time counts from now."""
        self.item_started = self.clock()
        if self._bar is not None:
            self._bar.set_description(label)

    def advance(self, units: int = 1) -> None:
        """Units of the current item are done (an epoch)."""
        if self.by_item:
            return
        self.units_done += units
        if self._bar is not None:
            self._bar.update(units)

    def left(self) -> float | None:
        """The estimate of the seconds left (None before the first unit done here)."""
        return time_left(
            elapsed=self.clock() - self.started,
            done=self.units_done - self.units_skipped,
            total=self.units - self.units_skipped,
        )

    def done(
        self, label: str, detail: str = "done", *, prefix: str = "", seconds: float | None = None
    ) -> str:
        """An item finished: count it and, in a log, write its line; return the line.

        ``seconds``: what it took (default: since :meth:`start`; a worker's own
        time when items run side by side).
        """
        self.items_done += 1
        if self.by_item:
            self.units_done += 1
            if self._bar is not None:
                self._bar.update(1)
        took = self.clock() - self.item_started if seconds is None else seconds
        line = self.line(label, detail, took, prefix=prefix)
        if self.shown and self._bar is None:
            self._write(line)
        return line

    def line(self, label: str, detail: str, seconds: float, *, prefix: str = "") -> str:
        """``[3/12] PREFIXLABEL: DETAIL, 12.3 s, about 1 min 40 s left``."""
        text = f"[{self.items_done}/{self.items}] {prefix}{label}: {detail}, "
        text += format_duration(seconds)
        left = self.left()
        if left is not None and self.items_done < self.items:
            text += f", about {format_duration(left)} left"
        return text

    def _write(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)


class PointProgress:
    """A run's view of its sweep's :class:`Progress`: its lines name the point."""

    def __init__(self, sweep: Progress, prefix: str) -> None:
        self.sweep, self.prefix = sweep, prefix

    def __enter__(self) -> PointProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def skip(self, items: int = 0, units: int = 0, *, what: str = "runs") -> None:
        """Runs of this point done before: the sweep's items (it does not count epochs)."""
        self.sweep.skip(items, what=what)

    def note(self, text: str) -> None:
        """A line about this point."""
        self.sweep.note(f"{self.prefix}: {text}" if self.prefix else text)

    def start(self, label: str) -> None:
        """A run of this point begins."""
        self.sweep.start(f"{self.prefix}: {label}" if self.prefix else label)

    def advance(self, units: int = 1) -> None:
        """An epoch: the sweep counts runs, so nothing to add."""

    def done(self, label: str, detail: str = "done") -> str:
        """A run of this point finished: one of the sweep's items."""
        return self.sweep.done(label, detail, prefix=f"{self.prefix}: " if self.prefix else "")


_SWEEP: ContextVar[tuple[Progress, str] | None] = ContextVar("innet_sweep_progress", default=None)


@contextmanager
def reporting_to(sweep: Progress, prefix: str) -> Iterator[None]:
    """Runs started inside report to ``sweep`` with ``prefix`` (``point p01 gate.beta=0.01``)."""
    token = _SWEEP.set((sweep, prefix))
    try:
        yield
    finally:
        _SWEEP.reset(token)


def run_progress(runs: int, epochs: int, *, shown: bool) -> Progress | PointProgress:
    """The progress of a run of ``runs`` (variant, seed) pairs and ``epochs`` epochs in all.

    Inside :func:`reporting_to` (a sweep in this process) and shown, a
    :class:`PointProgress` of the sweep's; otherwise its own :class:`Progress`.
    """
    scope = _SWEEP.get()
    if scope is not None and shown:
        return PointProgress(*scope)
    return Progress(runs, epochs, shown=shown)
