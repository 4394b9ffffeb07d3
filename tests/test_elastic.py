"""Elastic torchrun: a rank killed mid-run, torchrun restarts the group, the run resumes.

``torchrun --max-restarts=1 ... run_sim.py ... --checkpoint-every 1``: a thread of
this test waits for the run's first checkpoint after epoch 1, then SIGKILLs rank 1
(found in ``/proc`` among torchrun's children). torchrun stops the other rank and
starts the group again (``TORCHELASTIC_RESTART_COUNT=1``); the restarted run finds
the checkpoint, continues from it and writes the same ``metrics.csv`` and
``exchanges.parquet`` as one process running the same scenario uninterrupted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from innet.rundir.checkpoint import MANIFEST_FILE, checkpoint_dir

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 300  # the whole torchrun job, restart included; longer means it hung
SCENARIO = ["--scenario", "smoke", "--seeds", "1", "--set", "training.epochs=4",
            "--set", "report.figures=false"]  # fmt: skip
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
                "TORCHELASTIC_RESTART_COUNT")  # fmt: skip


def _env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in LAUNCHER_ENV}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_pid(launcher_pid: int, rank: int) -> int | None:
    """The pid of torchrun's run_sim.py child with ``RANK=rank``, if there is one."""
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != launcher_pid:
                continue
            if b"run_sim.py" not in (entry / "cmdline").read_bytes():
                continue
            if f"RANK={rank}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def _kill_rank_after_checkpoint(launcher: subprocess.Popen, manifest: Path) -> int | None:
    """Wait for a checkpoint after epoch 1, SIGKILL rank 1; the epoch it was killed after."""
    deadline = time.monotonic() + TIMEOUT_S
    while launcher.poll() is None and time.monotonic() < deadline:
        try:
            current = json.loads(manifest.read_text())["current"]
        except (OSError, ValueError):
            current = None
        pid = _rank_pid(launcher.pid, 1)
        if current and current["epoch"] >= 1 and pid is not None:
            os.kill(pid, signal.SIGKILL)
            return current["epoch"]
        time.sleep(0.02)
    return None


def test_a_killed_rank_restarts_and_resumes_to_the_same_numbers(tmp_path: Path) -> None:
    whole, out = tmp_path / "whole", tmp_path / "elastic"
    single = subprocess.run([sys.executable, "run_sim.py", *SCENARIO, "--no-progress", "--out",
                             str(whole)],
                            cwd=ROOT, env=_env(), capture_output=True, text=True,
                            timeout=TIMEOUT_S)  # fmt: skip
    assert single.returncode == 0, single.stderr
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--max-restarts=1", f"--master_port={_free_port()}", "run_sim.py", *SCENARIO,
               "--checkpoint-every", "1", "--out", str(out)]  # fmt: skip
    launcher = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        killed = _kill_rank_after_checkpoint(launcher, checkpoint_dir(out) / MANIFEST_FILE)
        stdout, stderr = launcher.communicate(timeout=TIMEOUT_S)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    assert killed is not None, "the run ended before a rank could be killed"
    assert launcher.returncode == 0, stderr[-3000:]
    # the restarted group continued from the checkpoint (rank 0's progress lines, in a log)
    assert re.search(r"^(resumed|skipped) \w+ seed 0", stderr, re.MULTILINE), stderr[-3000:]
    assert not checkpoint_dir(out).exists()
    pd.testing.assert_frame_equal(pd.read_csv(out / "metrics.csv"),
                                  pd.read_csv(whole / "metrics.csv"))  # fmt: skip
    pd.testing.assert_frame_equal(pd.read_parquet(out / "exchanges.parquet"),
                                  pd.read_parquet(whole / "exchanges.parquet"))  # fmt: skip
