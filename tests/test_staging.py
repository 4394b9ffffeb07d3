"""Staging directories: named by host and process, stale ones removed by the next run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from innet.errors import InnetError
from innet.staging import new_run_dir, remove_stale_staging, staging_dir


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
