"""Run one torchrun job many times on a busy CPU and count the clean exits.

A torchrun job can fail *after* rank 0 wrote its run directory when a rank
aborts while its process ends (``terminate called without an active
exception``, exit -6). That happened rarely and only on a loaded machine, so
this check loads the CPU on purpose (``--hogs`` busy-loop processes, started
here and killed at the end) and repeats the job::

    python benchmarks/stress_torchrun.py                    # 30 runs, 3 ranks, 2 hogs
    python benchmarks/stress_torchrun.py --runs 100 --nproc 2 --hogs 4 --kite

Each run is ``python -m torch.distributed.run --nproc_per_node=NPROC run_sim.py
--scenario smoke --seeds 1 --set training.epochs=1 --no-progress --out TMP``
(with ``--kite``: on the four-node topology of tests/test_torchrun.py). A run
passes when torchrun exits 0 and the run directory exists. For each failure
the script prints the exit code, the exit codes torchrun reports for its
ranks, whether a rank printed ``terminate called`` and the last lines of
stderr. Exit status: 0 when every run passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing import Process
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KITE = (ROOT / "tests" / "kite.yaml").read_text()  # the torchrun tests' topology
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")  # fmt: skip
RANK_EXIT = re.compile(r"exitcode\s*:\s*(-?\d+)")


def _hog() -> None:
    while True:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command(args: argparse.Namespace, out: Path, topology: Path | None) -> list[str]:
    command = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.nproc}",
        f"--master_port={_free_port()}", "run_sim.py", "--scenario", args.scenario,
        "--seeds", "1", "--set", f"training.epochs={args.epochs}", "--no-progress",
        "--out", str(out),
    ]  # fmt: skip
    if topology is not None:
        command += ["--topology", str(topology), "--set", "network.header_bytes=8"]
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="how many torchrun jobs (30)")
    parser.add_argument("--nproc", type=int, default=3, help="ranks per job (3)")
    parser.add_argument("--hogs", type=int, default=2, help="busy-loop processes (2)")
    parser.add_argument("--scenario", default="smoke")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--kite", action="store_true", help="the tests' four-node topology")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per job (300)")
    parser.add_argument("--tail", type=int, default=8, help="stderr lines shown per failure")
    args = parser.parse_args(argv)

    env = {key: value for key, value in os.environ.items() if key not in LAUNCHER_ENV}
    env["OMP_NUM_THREADS"] = "1"
    work = Path(tempfile.mkdtemp(prefix="innet-stress-"))
    topology = None
    if args.kite:
        topology = work / "kite.yaml"
        topology.write_text(KITE)
    hogs = [Process(target=_hog, daemon=True) for _ in range(args.hogs)]
    for hog in hogs:
        hog.start()
    failures: list[str] = []
    seconds: list[float] = []
    started = time.monotonic()
    try:
        print(
            f"{args.runs} runs: torchrun --nproc_per_node={args.nproc} run_sim.py --scenario "
            f"{args.scenario}{' (kite)' if args.kite else ''}, {args.hogs} CPU hogs, "
            f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        for index in range(args.runs):
            out = work / f"run{index}"
            start = time.monotonic()
            try:
                proc = subprocess.run(
                    _command(args, out, topology), cwd=ROOT, env=env, capture_output=True,
                    text=True, timeout=args.timeout,
                )  # fmt: skip
                code, stderr = proc.returncode, proc.stderr
            except subprocess.TimeoutExpired as expired:
                code = "timeout"
                stderr = (expired.stderr or b"").decode(errors="replace")
            seconds.append(time.monotonic() - start)
            passed = code == 0 and out.is_dir()
            if passed:
                print(f"run {index + 1:3d}: ok ({seconds[-1]:.1f} s)", flush=True)
                shutil.rmtree(out, ignore_errors=True)
                continue
            ranks = RANK_EXIT.findall(stderr)
            terminate = "terminate called" in stderr
            lines = stderr.strip().splitlines()
            shown = [line for line in lines[: -args.tail] if "terminate called" in line]
            tail = "\n".join("    " + line for line in shown + lines[-args.tail :])
            summary = (
                f"run {index + 1:3d}: FAILED exit {code}, rank exit codes {ranks or '-'}, "
                f"run directory {'written' if out.is_dir() else 'missing'}"
                f"{', terminate called' if terminate else ''} ({seconds[-1]:.1f} s)"
            )
            failures.append(summary)
            print(summary + "\n" + tail, flush=True)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        for hog in hogs:
            hog.kill()
            hog.join()
        shutil.rmtree(work, ignore_errors=True)
    done = len(seconds)
    print(
        f"\n{done - len(failures)}/{done} passed in {time.monotonic() - started:.0f} s "
        f"(median {sorted(seconds)[done // 2]:.1f} s per job)"
        if done
        else "no run finished"
    )
    for summary in failures:
        print("  " + summary)
    return 0 if done and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
