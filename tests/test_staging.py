"""Staging directories: named by host and process, stale ones removed by the next run."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from innet.core.errors import InnetError
from innet.rundir.staging import (
    MIN_FIGURES_BYTES,
    MIN_RUN_BYTES,
    check_free_space,
    finishing,
    new_run_dir,
    publish,
    remove_stale_staging,
    staging_dir,
)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def make_dir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir()
    (path / "exchanges.parquet").write_bytes(b"half written")
    return path


def test_staging_dir_is_hidden_beside_the_run_and_names_this_process(tmp_path: Path) -> None:
    staging = staging_dir(tmp_path / "runs" / "demo-1")
    assert staging.parent == tmp_path / "runs"
    assert staging.name.startswith(".demo-1.partial-")
    assert staging.name.endswith(f"-{os.getpid()}")
    assert socket.gethostname() in staging.name


def test_stale_staging_of_a_dead_process_is_removed(tmp_path: Path) -> None:
    host = socket.gethostname()
    stale = make_dir(tmp_path, f".demo-1.partial-{host}-{dead_pid()}")
    live = make_dir(tmp_path, f".demo-2.partial-{host}-{os.getppid()}")
    other_host = make_dir(tmp_path, f".demo-3.partial-not-{host}-{dead_pid()}")
    finished = make_dir(tmp_path, "demo-4")
    visible = make_dir(tmp_path, f"demo-5.partial-{host}-{dead_pid()}")  # not hidden: not ours

    assert remove_stale_staging(tmp_path) == [stale]
    assert not stale.exists()
    for kept in (live, other_host, finished, visible):
        assert kept.is_dir(), kept


def test_sweeping_a_missing_folder_does_nothing(tmp_path: Path) -> None:
    assert remove_stale_staging(tmp_path / "runs") == []


def test_new_run_dir_refuses_a_non_empty_out(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert new_run_dir("demo", tmp_path / "out") == tmp_path / "out"
    (tmp_path / "out" / "x").write_text("")
    with pytest.raises(InnetError, match="not empty"):
        new_run_dir("demo", tmp_path / "out")


def test_new_run_dir_never_reuses_an_existing_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = new_run_dir("demo", None)
    first.mkdir(parents=True)
    second = new_run_dir("demo", None)
    assert second != first
    assert second.parent == first.parent == Path("runs")
    assert second.name.startswith(first.name)


def test_a_live_writer_of_the_same_out_is_refused_and_a_dead_one_is_not(tmp_path: Path) -> None:
    host = socket.gethostname()
    out = tmp_path / "run"
    dead = make_dir(tmp_path, f".run.partial-{host}-{dead_pid()}")
    assert new_run_dir("demo", out) == out  # a killed run's leftovers do not block
    make_dir(tmp_path, f".run-2.partial-{host}-{os.getppid()}")  # another name: no matter
    assert new_run_dir("demo", out) == out
    make_dir(tmp_path, f".run.partial-elsewhere-{os.getppid()}")
    with pytest.raises(InnetError, match=f"another run \\(pid {os.getppid()} on elsewhere\\)"):
        new_run_dir("demo", out)
    assert dead.is_dir()  # new_run_dir only looks; prepare_staging sweeps


def test_default_names_skip_a_name_being_written(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = new_run_dir("demo", None)
    first.parent.mkdir(parents=True)
    make_dir(first.parent, f".{first.name}.partial-{socket.gethostname()}-{os.getppid()}")
    second = new_run_dir("demo", None)
    assert second != first and second.name.startswith(first.name)


def test_publish_replaces_an_empty_out_and_refuses_a_filled_one(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    staging = make_dir(tmp_path, ".run.partial-here-1")
    publish(staging, out)
    assert (out / "exchanges.parquet").read_bytes() == b"half written" and not staging.exists()
    again = make_dir(tmp_path, ".run.partial-here-2")
    with pytest.raises(InnetError, match="another run wrote this directory"):
        publish(again, out)
    assert again.is_dir() and sorted(p.name for p in out.iterdir()) == ["exchanges.parquet"]


@pytest.mark.parametrize("errno_", [errno.ENOSPC, errno.EROFS])
def test_finishing_turns_a_write_failure_into_one_error(tmp_path: Path, errno_: int) -> None:
    out = tmp_path / "run"
    staging = make_dir(tmp_path, ".run.partial-here-1")
    with pytest.raises(InnetError) as caught, finishing(staging, out):
        (staging / "more").write_bytes(b"x" * 2000)
        raise OSError(errno_, os.strerror(errno_))
    message = str(caught.value)
    assert message.startswith(f"{out}: could not write the run directory ({os.strerror(errno_)}")
    assert ("after 2 kB of the run directory" in message) == (errno_ == errno.ENOSPC)
    assert not staging.exists() and not out.exists()
    with pytest.raises(KeyError), finishing(make_dir(tmp_path, ".run.partial-here-2"), out):
        raise KeyError("not a write failure: as it is")
    assert not (tmp_path / ".run.partial-here-2").exists()


def test_free_space_check_is_a_lower_bound(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    check_free_space(tmp_path / "run", min(free, MIN_RUN_BYTES + MIN_FIGURES_BYTES))
    with pytest.raises(InnetError, match="free there, and a run directory takes at least"):
        check_free_space(tmp_path / "run", free + 10**12)
