"""``torchrun ... run_sim.py`` end to end: same numbers, honest wire bytes, clean failures.

Every test starts real processes: ``python -m torch.distributed.run`` (torchrun)
with gloo on CPU, as a user would, from the repository root, each with a
subprocess timeout so that nothing can hang the suite.

- **Same numbers.** The smoke scenario (all three variants, one seed, one
  epoch) runs once in one process and then under torchrun with 2 ranks (the
  default placement), 3 (an explicit placement) and 4 (one node per rank),
  with the default executor (``auto``: batched, which sends one tensor per
  phase, level and pair of ranks), and with 2 ranks per node (one tensor per
  message; ``tests/test_batched_torchrun.py`` tests the batched one further).
  Diamond, the smoke topology, has only three nodes, and a rank without nodes
  is refused, so these runs use *kite*, a four-node topology written by the
  tests (two sensors, a relay, lateral links), with ``network.header_bytes=8``
  so that the per-message header is part of what is compared. Per-epoch
  losses, accuracy and latent rate agree within 1e-5; exchange records are
  identical; the headline table is printed once (rank 0 only) and equals the
  one-process table.
- **Bytes on the wire.** ``placement.json`` ``bytes_on_wire`` counts what
  torch.distributed moved: ``numel * element_size`` of each message tensor
  sent between ranks. The simulated header (``network.header_bytes``) is part
  of each record's ``nbytes`` (the network model's message size) but is not a
  tensor and never crosses a process boundary, so ``bytes_on_wire`` equals the
  sum over cross-rank records (training and evaluation) of ``nbytes -
  header_bytes``.
- **Placement.** ``one_per_rank`` with as many ranks as nodes runs and is
  recorded; with another world size it fails with one ``error:`` line from
  rank 0 alone. ``explicit`` (``--set distributed.map=...``) runs and is
  recorded.
- **Leaving.** After ``shutdown`` no gloo thread is left in a rank: a group kept
  alive past it (torch.distributed.nn.functional captured it in default arguments)
  let gloo's threads reach interpreter exit, where one could abort the rank.
- **Failures.** SIGKILL of rank 1 mid-run: torchrun exits non-zero within a
  bounded time, rank 0's own stderr (kept apart from torchrun's with
  ``--redirects 3 --log-dir``) holds exactly one ``error:`` line and no
  traceback, and neither a run directory nor a hidden ``.partial`` directory
  is left. torchrun's own stderr does carry a traceback (its
  ``ChildFailedError`` summary): that is the launcher's, so the check there is
  only that no frame of innet or run_sim.py appears in it (judged by resolved
  path, not by a folder name: the clone itself may be called ``innet``). A
  rendezvous whose peer never comes fails after ``--timeout`` with one line
  and no run directory.
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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 180  # one subprocess; a run that takes longer has hung
KILL_DEADLINE_S = 60  # torchrun must be gone this long after a rank is killed
RENDEZVOUS_DEADLINE_S = 25  # imports (a few seconds) + --timeout 2 + slack for a busy machine
HEADER_BYTES = 8

KITE = (Path(__file__).parent / "kite.yaml").read_text()  # also the stress check's
KITE_NODES = ["a", "b", "f", "r"]  # node order, as one_per_rank assigns ranks
EXPLICIT_MAP = {"f": 0, "a": 1, "r": 1, "b": 2}
METRICS = ["train_loss", "test_loss", "accuracy", "latent_rate_bits"]
RECORD_KEY = ["variant", "seed", "epoch", "step", "phase", "src", "dst", "payload", "nbytes"]
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One torchrun run of the kite smoke scenario."""

    world_size: int
    placement: str  # "" for the scenario's default (partition)
    executor: str = ""  # "" for the default (auto: batched here)

    @property
    def name(self) -> str:
        return f"N{self.world_size}-{self.placement or 'default'}" + (
            f"-{self.executor}" if self.executor else ""
        )

    def options(self) -> list[str]:
        executor = ["--set", f"training.executor={self.executor}"] if self.executor else []
        if self.placement == "explicit":
            flow = "{" + ", ".join(f"{node}: {rank}" for node, rank in EXPLICIT_MAP.items()) + "}"
            return [*executor, "--set", "distributed.placement=explicit",
                    "--set", f"distributed.map={flow}"]  # fmt: skip
        return [*executor, *(["--placement", self.placement] if self.placement else [])]


CASES = [  # round_robin is left to tests/test_placement.py: each run here costs 15-20 s
    Case(2, ""),
    Case(2, "", "per_node"),  # auto runs batched: the per-node executor's messages one by one
    Case(3, "explicit"),
    Case(4, "one_per_rank"),
]


@dataclass
class Run:
    proc: subprocess.CompletedProcess[str]
    run_dir: Path


# -- launching ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any torchrun variables (pytest may itself run under one)."""
    env = {key: value for key, value in os.environ.items() if key not in LAUNCHER_ENV}
    env["OMP_NUM_THREADS"] = "1"  # as torchrun sets it; also silences its banner
    env.update(extra)
    return env


def torchrun_command(world_size: int, *args: str, launcher: tuple[str, ...] = ()) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={world_size}",
        f"--master_port={free_port()}", *launcher, "run_sim.py", *args,
    ]  # fmt: skip


def run(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, env=clean_env(**env), capture_output=True, text=True,
        timeout=RUN_TIMEOUT_S,
    )  # fmt: skip


def smoke_args(topology: Path | None, out: Path, *more: str) -> list[str]:
    args = ["--scenario", "smoke", "--seeds", "1", "--no-progress", "--out", str(out)]
    if topology is not None:
        args += ["--topology", str(topology), "--set", f"network.header_bytes={HEADER_BYTES}"]
    return args + ["--set", "training.epochs=1", *more]


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


def assert_nothing_left(parent: Path) -> None:
    """No run directory and no hidden ``.partial`` staging directory in ``parent``."""
    assert sorted(path.name for path in parent.iterdir()) == []


# -- the runs compared ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("topology") / "kite.yaml"
    path.write_text(KITE)
    return path


@pytest.fixture(scope="module")
def in_process(kite: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("in_process") / "run"
    proc = run([sys.executable, "run_sim.py", *smoke_args(kite, out)])
    assert_ok(proc)
    return Run(proc, out)


@pytest.fixture(scope="module")
def torchrun_runs(kite: Path, tmp_path_factory: pytest.TempPathFactory):
    """Each case's torchrun run, started on first use and shared by the tests."""
    done: dict[Case, Run] = {}

    def get(case: Case) -> Run:
        if case not in done:
            out = tmp_path_factory.mktemp(case.name) / "run"
            proc = run(torchrun_command(case.world_size, *smoke_args(kite, out), *case.options()))
            assert_ok(proc)
            done[case] = Run(proc, out)
        return done[case]

    return get


def placement_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "placement.json").read_text())


def exchanges_of(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "exchanges.parquet")


# -- same numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_metrics_match_one_process(case: Case, in_process: Run, torchrun_runs) -> None:
    key = ["variant", "seed", "epoch"]
    expected = pd.read_csv(in_process.run_dir / "metrics.csv").sort_values(key)
    got = pd.read_csv(torchrun_runs(case).run_dir / "metrics.csv").sort_values(key)
    assert sorted(expected["variant"].unique()) == ["dense", "dijkstra", "dijkstra_rate"]
    assert got[key].values.tolist() == expected[key].values.tolist()
    for column in METRICS:
        assert got[column].to_numpy() == pytest.approx(expected[column].to_numpy(), abs=1e-5), (
            column
        )
    assert got["train_bytes"].tolist() == expected["train_bytes"].tolist()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_exchange_records_match_one_process(case: Case, in_process: Run, torchrun_runs) -> None:
    expected = exchanges_of(in_process.run_dir)[RECORD_KEY]
    got = exchanges_of(torchrun_runs(case).run_dir)[RECORD_KEY]
    assert len(expected) > 0
    assert got.values.tolist() == expected.values.tolist()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_headline_table_printed_once_by_rank0(case: Case, in_process: Run, torchrun_runs) -> None:
    proc = torchrun_runs(case).proc
    expected = table_lines(in_process.proc.stdout)
    assert len(expected) == 5  # header, rule, three variants
    assert table_lines(proc.stdout) == expected
    assert table_lines(proc.stderr) == []
    assert proc.stdout.count("run directory:") == 1


# -- bytes on the wire ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_bytes_on_wire_are_the_cross_rank_tensors(case: Case, torchrun_runs) -> None:
    run_dir = torchrun_runs(case).run_dir
    placement = placement_of(run_dir)
    records = exchanges_of(run_dir)
    assert set(placement["variants"]) == set(records["variant"])
    for variant, recorded in placement["variants"].items():
        ranks = recorded["ranks"]
        mine = records[records["variant"] == variant]
        crossing = mine[mine["src"].map(ranks) != mine["dst"].map(ranks)]
        assert (mine["nbytes"] > HEADER_BYTES).all()
        expected = {
            str(seed): int((group["nbytes"] - HEADER_BYTES).sum())
            for seed, group in crossing.groupby("seed")
        }
        assert recorded["bytes_on_wire"] == expected, variant
        assert all(count > 0 for count in expected.values()), variant


# -- placements -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_placement_is_recorded(case: Case, torchrun_runs) -> None:
    placement = placement_of(torchrun_runs(case).run_dir)
    assert placement["world_size"] == case.world_size
    assert (placement["backend"], placement["device"]) == ("gloo", "cpu")
    for recorded in placement["variants"].values():
        ranks = recorded["ranks"]
        assert sorted(ranks) == KITE_NODES
        assert set(ranks.values()) == set(range(case.world_size))  # no idle rank here
        if case.placement == "one_per_rank":
            assert ranks == {node: rank for rank, node in enumerate(KITE_NODES)}
        elif case.placement == "explicit":
            assert ranks == EXPLICIT_MAP


def test_one_per_rank_with_the_wrong_world_size_fails(kite: Path, tmp_path: Path) -> None:
    proc = run(torchrun_command(2, *smoke_args(kite, tmp_path / "run"), "--placement",
                                "one_per_rank"))  # fmt: skip
    assert proc.returncode != 0
    lines = error_lines(proc.stderr) + error_lines(proc.stdout)
    assert len(lines) == 1, proc.stderr  # rank 0 speaks, the others stay silent
    assert "one_per_rank" in lines[0] and "4 nodes" in lines[0] and "world size is 2" in lines[0]
    assert table_lines(proc.stdout) == []
    assert_nothing_left(tmp_path)


# -- leaving the group ----------------------------------------------------------------------------

GLOO_THREADS = ("pt_gloo_runloop", "gloo_tcp_loop")  # the names gloo gives its threads
LEAVE_SCRIPT = """\
import os, sys, torch
from innet.distributed import init_distributed, shutdown

def threads():
    return sorted(open(f"/proc/self/task/{task}/comm").read().strip()
                  for task in os.listdir("/proc/self/task"))

ctx = init_distributed(backend="gloo", device="cpu", timeout_s=60)
torch.optim.Adam(torch.nn.Linear(2, 2).parameters())  # imports torch._dynamo, as training does
gathered = [None] * ctx.world_size if ctx.rank == 0 else None
torch.distributed.gather_object(ctx.rank, gathered, dst=0)
before = threads()
shutdown(ctx, wait=True)
with open(os.path.join(sys.argv[1], f"rank{ctx.rank}.txt"), "w") as out:
    out.write(f"before: {' '.join(before)}\\nafter: {' '.join(threads())}\\n")
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_shutdown_ends_the_gloo_threads(tmp_path: Path) -> None:
    """Nothing may keep the group alive past shutdown, or gloo's threads reach interpreter exit.

    A gloo thread still letting go of a finished Work while Python finalises aborts the
    rank ("terminate called without an active exception"), now and then, on a busy
    machine, after rank 0 wrote the run. The race is rare; its precondition, gloo's
    threads outliving ``shutdown``, is not (torch.distributed.nn.functional, imported
    by the first optimizer, captured the group in its default arguments).
    """
    script = tmp_path / "leave.py"
    script.write_text(LEAVE_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               f"--master_port={free_port()}", str(script), str(tmp_path)]  # fmt: skip
    proc = run(command, PYTHONPATH=str(ROOT))  # innet from this checkout, not an installed one
    assert_ok(proc)
    for rank in range(2):
        text = (tmp_path / f"rank{rank}.txt").read_text()
        before, after = (line.split(": ", 1)[1].split() for line in text.splitlines())
        assert all(name in before for name in GLOO_THREADS), text  # else the check is moot
        assert not any(name in after for name in GLOO_THREADS), f"rank {rank}: {text}"


# -- failures -------------------------------------------------------------------------------------


def _parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the name in parentheses may hold spaces


def _worker_ranks(launcher_pid: int) -> dict[int, int]:
    """rank -> pid of the run_sim.py processes torchrun started."""
    ranks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or _parent_pid(int(entry.name)) != launcher_pid:
            continue
        try:
            if b"run_sim.py" not in (entry / "cmdline").read_bytes():
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"RANK="):
                ranks[int(item[5:])] = int(entry.name)
    return ranks


def _wait_for(condition, seconds: float, what: str, launcher: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if launcher.poll() is not None:
            pytest.fail(f"torchrun ended (exit {launcher.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {seconds} s")
        time.sleep(0.1)


TRACEBACK_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line \d+', re.MULTILINE)
OWN_CODE = (ROOT / "innet", ROOT / "run_sim.py")


def innet_frames(text: str) -> list[str]:
    """The traceback frames in ``text`` that lie in this repository's code (innet, run_sim.py).

    Decided by resolved path, not by a folder name: the clone may itself live in a
    folder named ``innet``, and torchrun's own frames (site-packages, perhaps a
    virtual environment inside the clone) are allowed.
    """
    own = []
    for match in TRACEBACK_FRAME.finditer(text):
        path = Path(match["file"]).resolve()
        if any(path == code or path.is_relative_to(code) for code in OWN_CODE):
            own.append(match[0].strip())
    return own


def test_innet_frames_ignores_where_the_clone_lives() -> None:
    launcher = f'  File "{ROOT}/.venv/lib/python3/site-packages/torch/distributed/run.py", line 9'
    ours = f'  File "{ROOT}/innet/cli.py", line 7, in main\n  File "{ROOT}/run_sim.py", line 3'
    assert innet_frames(f"Traceback (most recent call last):\n{launcher}\n") == []
    assert len(innet_frames(f"Traceback (most recent call last):\n{ours}\n")) == 2


def test_killed_rank_fails_the_job_cleanly(tmp_path: Path) -> None:
    out_parent, logs = tmp_path / "out", tmp_path / "logs"
    out_parent.mkdir()
    command = torchrun_command(
        2,
        *smoke_args(None, out_parent / "run", "--set", "training.epochs=200", "--timeout", "20"),
        launcher=("--redirects", "3", "--log-dir", str(logs)),
    )
    launcher = subprocess.Popen(command, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        # rank 0 creates its hidden staging directory once every rank agreed to start training
        _wait_for(lambda: any(out_parent.iterdir()), 60, "run directory being staged", launcher)
        ranks = _worker_ranks(launcher.pid)
        assert sorted(ranks) == [0, 1]
        time.sleep(0.5)  # well inside training (200 epochs take minutes)
        os.kill(ranks[1], signal.SIGKILL)
        killed = time.monotonic()
        stdout, stderr = launcher.communicate(timeout=KILL_DEADLINE_S)
        assert time.monotonic() - killed < KILL_DEADLINE_S
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    assert launcher.returncode != 0
    rank0_stderr = next(logs.rglob("attempt_0/0/stderr.log")).read_text()
    lines = [line for line in rank0_stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), rank0_stderr
    assert "\n" not in lines[0] and len(lines[0]) < 300
    for log in logs.rglob("*.log"):
        assert "Traceback" not in log.read_text(), log
    assert innet_frames(stderr) == [], stderr  # torchrun's traceback is the launcher's own
    assert table_lines(stdout) == []
    assert_nothing_left(out_parent)


def test_rendezvous_without_peer_times_out_with_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "run_sim.py", *smoke_args(None, tmp_path / "run", "--timeout", "2")]
    start = time.monotonic()
    proc = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        env=clean_env(RANK="0", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(free_port())),
    )  # fmt: skip
    seconds = time.monotonic() - start
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "could not join" in lines[0] and "within 2 s" in lines[0]
    assert seconds < RENDEZVOUS_DEADLINE_S
    assert_nothing_left(tmp_path)
