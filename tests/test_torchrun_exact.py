"""torchrun gives the one-process numbers bit for bit: the full main job, every variant.

The main job (``dense_vs_dijkstra``, 12 epochs, dense / dijkstra / dijkstra_rate,
one seed; batched executor) under torchrun with N = 2, 3, 4 processes
(``partition`` placement, and ``round_robin`` once) must write exactly the
``metrics.csv`` and ``exchanges.parquet`` of one process: every sum a node
receives happens in one canonical order whatever the ranks
(:mod:`innet.families.inl.executors.batched`). Over twelve epochs a
difference of one rounding anywhere would grow into visibly different losses.

Each torchrun launch trains the whole job (minutes on 2 cores); the
one-process run is shared by every case.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_torchrun import ROOT, clean_env, torchrun_command

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

RUN_TIMEOUT_S = 900  # the full main job, several processes on a shared machine
ARGS = ["--scenario", "dense_vs_dijkstra", "--seeds", "1", "--no-progress"]


def _run(command: list[str]) -> None:
    proc = subprocess.run(
        command, cwd=ROOT, env=clean_env(), capture_output=True, text=True,
        timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("one") / "run"
    _run([sys.executable, "run_sim.py", *ARGS, "--out", str(out)])
    return out


@pytest.mark.parametrize(
    ("world_size", "placement"),
    [(3, "round_robin"), (4, "partition")],  # N=2: tests/test_two_launchers.py
)
def test_torchrun_main_job_is_bit_identical(one_process, world_size, placement, tmp_path):
    out = tmp_path / "run"
    _run(torchrun_command(world_size, *ARGS, "--placement", placement, "--out", str(out)))
    placed = pd.read_json(out / "placement.json", typ="series")
    assert placed["world_size"] == world_size
    metrics, expected = pd.read_csv(out / "metrics.csv"), pd.read_csv(one_process / "metrics.csv")
    assert sorted(set(expected["variant"])) == ["dense", "dijkstra", "dijkstra_rate"]
    assert len(expected) == 3 * 12
    pd.testing.assert_frame_equal(metrics, expected, check_exact=True)
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "exchanges.parquet"),
        pd.read_parquet(one_process / "exchanges.parquet"),
        check_exact=True,
    )
