"""The README's two-machine command, run as two launchers on this machine.

On a cluster each machine starts one ``torchrun`` with ``--nnodes=2`` and the
same ``--rdzv-endpoint`` (see docs/cluster.md). Here both launchers run on
localhost, as PyTorch's own launcher tests do: each starts one process, the
c10d rendezvous joins them into one group of two ranks, and only rank 0 writes
the run directory. The run is the main job (``dense_vs_dijkstra``: every
variant, every epoch, one seed) and must give exactly the one-process numbers:
``metrics.csv`` and ``exchanges.parquet`` equal, value for value.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 600  # both launchers together; the run takes 1-2 minutes on two busy cores
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")  # fmt: skip
MAIN_JOB = ["--scenario", "dense_vs_dijkstra", "--seeds", "1", "--no-progress"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment() -> dict[str, str]:
    """This environment without torchrun's variables (pytest may itself run under one)."""
    env = {key: value for key, value in os.environ.items() if key not in LAUNCHER_ENV}
    env["OMP_NUM_THREADS"] = "1"
    return env


def launcher(port: int, out: Path) -> list[str]:
    """One machine's command: the README's, with 127.0.0.1 as the rendezvous host."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
        "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=innet-two",
        "run_sim.py", *MAIN_JOB, "--out", str(out),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The main job in one process and under two launchers: (one process, two machines)."""
    base = tmp_path_factory.mktemp("two_launchers")
    alone, together = base / "one_process", base / "two_launchers"
    single = subprocess.run(
        [sys.executable, "run_sim.py", *MAIN_JOB, "--out", str(alone)],
        cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    port = free_port()
    procs = [
        subprocess.Popen(launcher(port, together), cwd=ROOT, env=environment(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=TIMEOUT_S))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for index, (proc, (stdout, stderr)) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0, f"launcher {index}: exit {proc.returncode}\n{stdout}\n{stderr}"
    printed = [stdout.count("run directory:") for stdout, _ in outputs]
    assert sorted(printed) == [0, 1]  # rank 0's launcher alone prints and writes
    return alone, together


def test_two_launchers_give_the_one_process_metrics(runs: tuple[Path, Path]) -> None:
    alone, together = (pd.read_csv(run / "metrics.csv") for run in runs)
    assert sorted(alone["variant"].unique()) == ["dense", "dijkstra", "dijkstra_rate"]
    assert alone["epoch"].max() + 1 == 12  # the whole main job, not one step
    pd.testing.assert_frame_equal(together, alone, check_exact=True)


def test_two_launchers_give_the_one_process_exchange_records(runs: tuple[Path, Path]) -> None:
    alone, together = (pd.read_parquet(run / "exchanges.parquet") for run in runs)
    assert len(alone) > 0
    pd.testing.assert_frame_equal(together, alone, check_exact=True)


def test_two_launchers_record_two_ranks(runs: tuple[Path, Path]) -> None:
    placement = json.loads((runs[1] / "placement.json").read_text())
    assert placement["world_size"] == 2
    assert not (runs[0] / "placement.json").exists()  # one process: nothing placed
