"""Progress: the estimate of the time left and the log lines, on a fake clock."""

from __future__ import annotations

import io

import pytest

from innet.app.progress import (
    PointProgress,
    Progress,
    format_duration,
    reporting_to,
    run_progress,
    time_left,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def log(items: int, units: int | None = None) -> tuple[Progress, io.StringIO, FakeClock]:
    stream, clock = io.StringIO(), FakeClock()
    return Progress(items, units, live=False, stream=stream, clock=clock), stream, clock


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.04, "0.0 s"), (12.34, "12.3 s"), (59.9, "59.9 s"), (100, "1 min 40 s"),
     (3599.4, "59 min 59 s"), (3600, "1 h 0 min"), (7500, "2 h 5 min")],
)  # fmt: skip
def test_durations_read_as_a_person_says_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_time_left_is_the_time_per_unit_done_times_the_units_left() -> None:
    assert time_left(elapsed=30.0, done=3, total=12) == 90.0
    assert time_left(elapsed=30.0, done=0, total=12) is None
    assert time_left(elapsed=30.0, done=12, total=12) == 0.0


def test_a_run_estimates_from_its_epochs_and_writes_one_line_per_run() -> None:
    bar, stream, clock = log(items=3, units=6)  # 3 (variant, seed) runs of 2 epochs
    bar.start("dense seed 0")
    clock.now += 10.0
    bar.advance()
    clock.now += 10.0
    bar.advance()
    bar.done("dense seed 0", "2 epochs, accuracy 0.900")
    bar.start("dijkstra seed 0")
    clock.now += 5.0
    bar.advance()
    # 3 epochs in 25 s: 8.33 s an epoch, 3 epochs left
    assert bar.left() == pytest.approx(25.0)
    clock.now += 5.0
    bar.advance()
    bar.done("dijkstra seed 0", "2 epochs")
    bar.start("rate seed 0")
    clock.now += 1.0
    bar.advance(2)
    bar.done("rate seed 0", "2 epochs")
    assert stream.getvalue().splitlines() == [
        "[1/3] dense seed 0: 2 epochs, accuracy 0.900, 20.0 s, about 40.0 s left",
        "[2/3] dijkstra seed 0: 2 epochs, 10.0 s, about 15.0 s left",
        "[3/3] rate seed 0: 2 epochs, 1.0 s",  # the last: nothing left to estimate
    ]


def test_a_resumed_run_counts_skipped_work_as_done_but_not_in_the_estimate() -> None:
    bar, stream, clock = log(items=4, units=40)
    bar.skip(2, 20)  # two runs finished before the stop
    bar.start("dense seed 1")
    bar.skip(0, 5)  # this run resumes after its epoch 5
    clock.now += 50.0
    bar.advance(5)
    # 5 epochs trained here in 50 s; 10 left (the 25 counted as done took no time here)
    assert bar.left() == pytest.approx(100.0)
    bar.done("dense seed 1", "10 epochs")
    assert stream.getvalue().splitlines() == [
        "resuming: 2 of 4 runs already done",
        "[3/4] dense seed 1: 10 epochs, 50.0 s, about 1 min 40 s left",
    ]


def test_points_side_by_side_report_their_own_time_and_the_sweep_estimate() -> None:
    bar, stream, clock = log(items=4)  # 4 points, counted by item
    bar.skip(1, what="points")
    clock.now += 60.0
    bar.done("point p02 gate.beta=0.01", seconds=58.0)
    bar.done("point p01 gate.beta=0.001", "failed (RuntimeError: diverged)", seconds=12.0)
    assert stream.getvalue().splitlines() == [
        "resuming: 1 of 4 points already done",
        "[2/4] point p02 gate.beta=0.01: done, 58.0 s, about 2 min 0 s left",
        "[3/4] point p01 gate.beta=0.001: failed (RuntimeError: diverged), 12.0 s, "
        "about 30.0 s left",
    ]


def test_a_run_inside_a_sweep_reports_to_the_sweep_with_its_point() -> None:
    sweep, stream, clock = log(items=4)  # 2 points x 2 runs, counted by run
    with reporting_to(sweep, "point p01 gate.beta=0.01"):
        bar = run_progress(2, 20, shown=True)
        assert isinstance(bar, PointProgress)
        bar.start("dijkstra seed 1")
        clock.now += 12.3
        bar.advance()  # epochs are the run's; the sweep counts runs
        bar.done("dijkstra seed 1", "done")
        bar.note("resumed dense seed 0 after epoch 5 of 10")
    assert isinstance(run_progress(2, 20, shown=True), Progress)  # outside the sweep: its own
    assert stream.getvalue().splitlines() == [
        "[1/4] point p01 gate.beta=0.01: dijkstra seed 1: done, 12.3 s, about 36.9 s left",
        "point p01 gate.beta=0.01: resumed dense seed 0 after epoch 5 of 10",
    ]


def test_hidden_progress_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress(2, 4, shown=False) as bar:
        bar.skip(1, 2)
        bar.start("dense seed 0")
        bar.advance(2)
        line = bar.done("dense seed 0", "2 epochs")
        bar.note("a note")
    assert line.startswith("[2/2] dense seed 0: 2 epochs, ")
    assert capsys.readouterr() == ("", "")
