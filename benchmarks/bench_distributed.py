"""Benchmark (d): torch.distributed runs against one process, and the transport against raw gloo.

**(i) Step time under torchrun.** The same command, ``run_sim.py --scenario
dense_vs_dijkstra --seeds 1 --set training.epochs=E --no-progress``, runs in
one process and under ``torchrun --nproc_per_node=N`` (gloo, CPU, the default
placement), each as a subprocess timed from start to exit. A whole run also
pays for fixed costs that have nothing to do with training: interpreter and
torch imports, data loading, the rendezvous, writing tables, report and
figures. So every configuration runs twice, with a short and a long number of
epochs (1 and 5 by default), and the training time is the *difference* of the
two wall times; it is divided by the difference in training steps (counted
from the ``forward`` records of the two run directories, over all variants).
The result is wall-clock milliseconds per training step, including the step's
share of the per-epoch evaluation and of the network-model timing, which grow
with the epochs too. Each wall time is the best of ``--repeats`` runs, short
and long runs interleaved. The short run's wall time is printed as well: it is
the fixed cost of a run (``startup``). The ratio is torchrun / in-process: how
much slower (> 1) the same training is with the nodes spread over N processes
that exchange latents and gradients through gloo. On a machine with fewer
cores than ranks the processes also compete for CPU, which the ratio includes.

**(ii) Transport bandwidth.** Two processes (``torch.multiprocessing``,
gloo, 127.0.0.1) move a large float32 tensor (a latent of ``rows x 1024``
values) from rank 0 to rank 1, ``--iterations`` times per size:

- *raw*: ``dist.send`` on rank 0, ``dist.recv`` into one preallocated buffer on
  rank 1, the least any transport over gloo can cost;
- *raw, fresh buffer*: the same, but rank 1 receives into a new buffer each
  time (a large allocation costs page faults on first touch);
- *transport*: a :class:`~innet.distributed.DistributedTransport` with node
  ``a`` on rank 0 and node ``b`` on rank 1, driven the way the executor drives it:
  ``expect`` (one message), ``send`` on rank 0 or ``recv`` on rank 1, ``flush``.
  It receives into a fresh buffer per message: the executor keeps a received
  latent (and its autograd graph) until the step's backward pass, so buffers
  cannot be recycled behind its back.

All are timed on the receiver, from a barrier to the last receive, best of
``--bandwidth-repeats``, interleaved; MB/s is 10^6 bytes per second. One untimed round checks that
rank 1 received exactly the tensor rank 0 sent. The ratio is transport / raw
(the aim is at least 0.5).

    python benchmarks/bench_distributed.py [--world-sizes 2 4] [--short-epochs 1]
        [--long-epochs 5] [--repeats 2] [--sizes-mb 4 16 64] [--iterations 10]
        [--bandwidth-repeats 5] [--skip-steps] [--skip-bandwidth]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from innet.core.transport import ExpectedMessage
from innet.distributed import DistributedTransport

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")  # fmt: skip
WIDTH = 1024  # latent width of the bandwidth test: a message is (rows, WIDTH) float32
MB = 1e6


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- (i) step time under torchrun ---------------------------------------------------------------


def run_command(world_size: int, epochs: int, out: Path) -> list[str]:
    """The run, in one process (``world_size`` 0) or under torchrun with ``world_size`` ranks."""
    args = ["run_sim.py", "--scenario", "dense_vs_dijkstra", "--seeds", "1",
            "--set", f"training.epochs={epochs}", "--no-progress", "--out", str(out)]  # fmt: skip
    if world_size == 0:
        return [sys.executable, *args]
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={world_size}",
                f"--master_port={free_port()}"]  # fmt: skip
    return [*launcher, *args]


def timed_run(world_size: int, epochs: int, scratch: Path) -> tuple[float, int]:
    """Wall seconds of one run and its number of training steps (over all variants)."""
    out = Path(tempfile.mkdtemp(dir=scratch)) / "run"
    env = {key: value for key, value in os.environ.items() if key not in LAUNCHER_ENV}
    env["OMP_NUM_THREADS"] = "1"
    start = time.perf_counter()
    proc = subprocess.run(run_command(world_size, epochs, out), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"run failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    records = pd.read_parquet(
        out / "exchanges.parquet", columns=["variant", "seed", "step", "phase"]
    )
    steps = records[records["phase"] == "forward"].drop_duplicates(["variant", "seed", "step"])
    return seconds, len(steps)


def step_times(world_sizes: list[int], short: int, long: int, repeats: int) -> None:
    print(f"(i) dense_vs_dijkstra, 1 seed, 3 variants: training time = wall({long} epochs) - "
          f"wall({short} epoch{'s' if short > 1 else ''}), best of {repeats}; {os.cpu_count()} "
          "cores")  # fmt: skip
    print(f"{'run':18s} {'startup s':>10s} {'steps':>6s} {'ms/step':>9s} {'vs in-process':>14s}")
    baseline = None
    with tempfile.TemporaryDirectory(prefix="bench_distributed-") as scratch:
        for world_size in [0, *world_sizes]:
            walls: dict[int, list[float]] = {short: [], long: []}
            steps: dict[int, int] = {}
            for _ in range(repeats):
                for epochs in (short, long):
                    seconds, steps[epochs] = timed_run(world_size, epochs, Path(scratch))
                    walls[epochs].append(seconds)
            training_steps = steps[long] - steps[short]
            ms_per_step = (min(walls[long]) - min(walls[short])) / training_steps * 1e3
            if baseline is None:
                baseline = ms_per_step
            name = "in-process" if world_size == 0 else f"torchrun N={world_size}"
            ratio = "1.00" if world_size == 0 else f"{ms_per_step / baseline:.2f}"
            print(f"{name:18s} {min(walls[short]):10.2f} {training_steps:6d} {ms_per_step:9.2f} "
                  f"{ratio:>14s}")  # fmt: skip


# -- (ii) transport bandwidth -------------------------------------------------------------------


def _raw_round(
    rank: int, tensor: torch.Tensor, buffer: torch.Tensor | None, iterations: int
) -> float:
    """``iterations`` sends of ``tensor``; into ``buffer``, or a new buffer each time if None."""
    dist.barrier()
    start = time.perf_counter()
    for _ in range(iterations):
        if rank == 0:
            dist.send(tensor, dst=1)
        else:
            dist.recv(torch.empty_like(tensor) if buffer is None else buffer, src=0)
    seconds = time.perf_counter() - start
    dist.barrier()
    return seconds


def _transport_round(
    rank: int, transport: DistributedTransport, tensor: torch.Tensor, iterations: int
) -> tuple[float, torch.Tensor | None]:
    message = ExpectedMessage("a", "b", "forward", "latent", tuple(tensor.shape))
    received = None
    dist.barrier()
    start = time.perf_counter()
    for _ in range(iterations):
        transport.expect([message])
        if rank == 0:
            transport.send(tensor, src="a", dst="b", phase="forward", payload="latent")
        else:
            received = transport.recv(
                src="a", dst="b", phase="forward", payload="latent", shape=message.shape
            )
        transport.flush()
    seconds = time.perf_counter() - start
    dist.barrier()
    return seconds, received


def _bandwidth_worker(
    rank: int, port: int, sizes_mb: list[float], iterations: int, repeats: int, results
) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        transport = DistributedTransport({"a": 0, "b": 1}, rank, 2, "cpu")
        for size_mb in sizes_mb:
            rows = max(1, round(size_mb * MB / (WIDTH * 4)))
            tensor = torch.randn(rows, WIDTH, generator=torch.Generator().manual_seed(rows))
            buffer = torch.empty_like(tensor)
            _raw_round(rank, tensor, buffer, 1)  # warm up; the transport also greets its peer
            _, received = _transport_round(rank, transport, tensor, 1)
            if rank == 1 and not (torch.equal(buffer, tensor) and torch.equal(received, tensor)):
                raise RuntimeError(f"{size_mb} MB: rank 1 received a different tensor")
            raw, fresh, wrapped = [], [], []
            for _ in range(repeats):
                raw.append(_raw_round(rank, tensor, buffer, iterations))
                fresh.append(_raw_round(rank, tensor, None, iterations))
                wrapped.append(_transport_round(rank, transport, tensor, iterations)[0])
            if rank == 1:
                nbytes = tensor.numel() * tensor.element_size()
                results.put((nbytes, min(raw), min(fresh), min(wrapped)))
    finally:
        dist.destroy_process_group()


def bandwidth(sizes_mb: list[float], iterations: int, repeats: int) -> None:
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.spawn(_bandwidth_worker, args=(free_port(), sizes_mb, iterations, repeats, results),
             nprocs=2, join=True)  # fmt: skip
    print(f"\n(ii) rank 0 -> rank 1 over gloo on 127.0.0.1, {iterations} messages per size, "
          f"best of {repeats}")  # fmt: skip
    print(f"{'message MB':>10s} {'raw MB/s':>10s} {'raw fresh-buffer MB/s':>22s} "
          f"{'transport MB/s':>15s} {'transport / raw':>16s}")  # fmt: skip
    while not results.empty():
        nbytes, *seconds = results.get()
        raw, fresh, wrapped = (nbytes * iterations / value / MB for value in seconds)
        print(f"{nbytes / MB:10.1f} {raw:10.0f} {fresh:22.0f} {wrapped:15.0f} "
              f"{wrapped / raw:16.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-sizes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--short-epochs", type=int, default=1)
    parser.add_argument("--long-epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="best of N timings")
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[4, 16, 64])
    parser.add_argument("--iterations", type=int, default=10, help="messages per timing")
    parser.add_argument("--bandwidth-repeats", type=int, default=5, help="best of N, for (ii)")
    parser.add_argument("--skip-steps", action="store_true", help="skip (i)")
    parser.add_argument("--skip-bandwidth", action="store_true", help="skip (ii)")
    args = parser.parse_args()
    if args.long_epochs <= args.short_epochs:
        parser.error("--long-epochs must exceed --short-epochs")
    if not args.skip_steps:
        step_times(args.world_sizes, args.short_epochs, args.long_epochs, args.repeats)
    if not args.skip_bandwidth:
        bandwidth(args.sizes_mb, args.iterations, args.bandwidth_repeats)


if __name__ == "__main__":
    main()
