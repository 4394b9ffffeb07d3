"""The command line end to end, as users run it: ``python run_sim.py ...``.

One real smoke run (a subprocess, module-scoped) backs the checks of the run
directory, the exchange accounting, the summary contract and ``report``.
Everything else calls :func:`innet.app.cli.main` in-process (fast), with a few
subprocess calls where the real process boundary matters (exit status, stray
output on stderr).

Contract under test (README "Usage", ``innet/app/cli.py``): problems with the
user's input end with exit status 2 and exactly one line on stderr naming the
file, the field (and, for topology files, the line), never a traceback, and no
run directory, hidden or not.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import innet.app.runner
from innet.app.cli import default_message_bits, main
from innet.app.scenario import find_scenario, load_scenario
from innet.families.inl.trainer import InlTrainer

ROOT = Path(__file__).resolve().parent.parent
RUN_SIM = ROOT / "run_sim.py"
TOPOLOGIES = ROOT / "topologies"
SMOKE = ROOT / "scenarios" / "smoke.yaml"
MESH14 = TOPOLOGIES / "mesh14.yaml"
DIAMOND = TOPOLOGIES / "diamond.yaml"

EXCHANGE_COLUMNS = [
    "variant", "seed", "epoch", "step", "phase", "src", "dst", "payload", "nbytes",
    "t_start", "t_end", "queue_s",
]  # fmt: skip
RUN_FILES = [
    "config.yaml",
    "topology.json",
    "plans.json",
    "exchanges.parquet",
    "exchanges.csv",
    "links.csv",
    "metrics.csv",
    "node_rates.csv",
    "executors.csv",
    "summary.json",
    "report.md",
    "steps.csv",
    "provenance.json",
]

# The smoke run: gaussian_mixture n_samples 300, test_fraction 0.2 -> 240 training
# samples; batch 40 -> 6 full steps per epoch; latent_dim 4 float32 values.
EPOCHS = 2
BATCH = 40
STEPS_PER_EPOCH = 240 // BATCH
SMOKE_ARGS = [
    "--scenario",
    "smoke",
    "--no-progress",
    "--csv",
    "--set",
    f"training.epochs={EPOCHS}",
    "--set",
    f"training.batch_size={BATCH}",
]


def cli_env() -> dict[str, str]:
    """Environment of a CI machine: no display, no colours, one thread, no progress bars."""
    env = dict(os.environ)
    env.update(
        MPLBACKEND="Agg",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TQDM_DISABLE="1",
        NO_COLOR="1",
        PYTHONWARNINGS="default",
        COLUMNS="200",
    )
    return env


def run_sim(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN_SIM), *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Call:
    """What one in-process ``main(argv)`` call returned and printed."""

    code: int | str | None
    out: str
    err: str


def call(capsys: pytest.CaptureFixture[str], *argv: str) -> Call:
    """``main(argv)`` in-process; argparse's ``SystemExit`` becomes the exit code."""
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return Call(code, captured.out, captured.err)


def assert_user_error(result: Call | subprocess.CompletedProcess[str], *names: str) -> str:
    """Exit 2, exactly one line on stderr naming ``names``, no traceback; return that line."""
    code = result.code if isinstance(result, Call) else result.returncode
    out, err = (
        (result.out, result.err) if isinstance(result, Call) else (result.stdout, result.stderr)
    )
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert err.endswith("\n")
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def assert_nothing_left(directory: Path, out: Path) -> None:
    """No run directory at ``out`` and no hidden staging directory beside it."""
    assert not out.exists()
    assert not [p.name for p in directory.iterdir() if p.name.startswith(".")]
    assert not list(directory.glob("*partial*"))


# --------------------------------------------------------------------------------------
# One real run, shared by the checks of the run directory (1-4, 9).


@dataclass
class SmokeRun:
    cwd: Path
    run_dir: Path
    proc: subprocess.CompletedProcess[str]

    @property
    def summary(self) -> dict:
        return json.loads((self.run_dir / "summary.json").read_text())

    @property
    def config(self) -> dict:
        return yaml.safe_load((self.run_dir / "config.yaml").read_text())

    @property
    def plans(self) -> dict:
        return json.loads((self.run_dir / "plans.json").read_text())

    @property
    def exchanges(self) -> pd.DataFrame:
        return pd.read_parquet(self.run_dir / "exchanges.parquet")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    """``python run_sim.py --scenario smoke --out smoke-run ...`` from a directory holding
    only the staging directory of an earlier run that was killed outright."""
    cwd = tmp_path_factory.mktemp("smoke-cwd")
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()
    stale = cwd / f".smoke-old.partial-{socket.gethostname()}-{killed.pid}"
    stale.mkdir()
    (stale / "summary.json").write_text("{")
    proc = run_sim(*SMOKE_ARGS, "--out", "smoke-run", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return SmokeRun(cwd=cwd, run_dir=cwd / "smoke-run", proc=proc)


@pytest.mark.slow
def test_run_writes_a_complete_run_directory(smoke_run: SmokeRun) -> None:
    run_dir = smoke_run.run_dir
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
        assert (run_dir / name).stat().st_size > 0, name
    figures = sorted(p.name for p in (run_dir / "figures").glob("*.png"))
    assert figures, "no figures"
    for figure in (run_dir / "figures").glob("*.png"):
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Only the run directory is left in the working directory: no runs/, no staging of
    # this run, and the killed run's staging was removed.
    assert sorted(p.name for p in smoke_run.cwd.iterdir()) == ["smoke-run"]
    assert "Traceback" not in smoke_run.proc.stderr


@pytest.mark.slow
def test_run_prints_the_headline_table(smoke_run: SmokeRun) -> None:
    out = smoke_run.proc.stdout
    table = [line for line in out.splitlines() if line.startswith("|")]
    header = table[0]
    for column in ("variant", "routing", "accuracy", "exchange", "latent rate"):
        assert column in header
    rows = {line.split("|")[1].strip(): line for line in table[2:]}
    assert set(rows) == {"dense", "dijkstra", "dijkstra_rate"}
    assert "33.3%" in rows["dijkstra"]  # 2 of the diamond's 3 links: 1 - 2/3
    assert f"run directory: {Path('smoke-run')}" in out


@pytest.mark.slow
def test_exchange_tables(smoke_run: SmokeRun) -> None:
    parquet = smoke_run.exchanges
    # the columns of docs/numbers.md first, in order; then only known additions
    assert list(parquet.columns)[: len(EXCHANGE_COLUMNS)] == EXCHANGE_COLUMNS
    assert set(parquet.columns[len(EXCHANGE_COLUMNS) :]) <= {"lost", "attempts"}
    csv = pd.read_csv(smoke_run.run_dir / "exchanges.csv")
    assert list(csv.columns) == list(parquet.columns)
    assert len(csv) == len(parquet) > 0
    pd.testing.assert_frame_equal(
        csv.astype({c: str for c in ("variant", "phase", "src", "dst", "payload")}),
        parquet.astype({c: str for c in ("variant", "phase", "src", "dst", "payload")}),
        check_dtype=False,
        check_exact=False,
        rtol=1e-12,
    )
    assert set(parquet["phase"]) == {"forward", "backward", "eval"}
    assert set(parquet["variant"]) == {"dense", "dijkstra", "dijkstra_rate"}
    assert set(parquet["seed"]) == {0, 1}
    assert (parquet["t_end"] >= parquet["t_start"]).all()
    assert (parquet["queue_s"] >= 0).all()


@pytest.mark.slow
def test_summary_totals_are_the_sums_of_the_exchange_table(smoke_run: SmokeRun) -> None:
    exchanges = smoke_run.exchanges
    summary = smoke_run.summary
    training = exchanges[exchanges["phase"].isin(["forward", "backward"])]
    per_seed = training.groupby(["variant", "seed"])["nbytes"].sum()
    assert exchanges.loc[exchanges["phase"] == "eval", "nbytes"].sum() > 0  # and not counted
    for variant, entry in summary["variants"].items():
        seeds = per_seed.loc[variant]
        assert entry["train_exchange_bytes_per_seed"] == [int(seeds[s]) for s in summary["seeds"]]
        assert entry["train_exchange_bytes"] == int(seeds.sum()) / len(summary["seeds"])


@pytest.mark.slow
def test_training_exchange_of_a_static_plan_is_exact(smoke_run: SmokeRun) -> None:
    """steps x sum over used links of (forward + backward bytes), from plans.json."""
    config, plans, summary = smoke_run.config, smoke_run.plans, smoke_run.summary
    exchanges = smoke_run.exchanges
    latent_bytes = config["model"]["latent_dim"] * 4 * BATCH
    steps = STEPS_PER_EPOCH * EPOCHS
    assert config["training"]["epochs"] == EPOCHS
    assert config["training"]["batch_size"] == BATCH
    for variant, plan in plans.items():
        edges = {tuple(edge) for edge in plan["edges"]}
        expected = steps * len(edges) * (latent_bytes + latent_bytes)
        assert summary["variants"][variant]["train_exchange_bytes"] == expected, variant
        assert summary["variants"][variant]["links_used"] == len(edges)
        rows = exchanges[(exchanges["variant"] == variant) & (exchanges["phase"] != "eval")]
        assert rows.groupby("seed")["step"].nunique().tolist() == [steps, steps]
        forward = rows[rows["phase"] == "forward"]
        backward = rows[rows["phase"] == "backward"]
        assert set(zip(forward["src"], forward["dst"], strict=True)) == edges
        assert set(zip(backward["dst"], backward["src"], strict=True)) == edges
        assert set(rows["nbytes"]) == {latent_bytes}
    # diamond: dense uses all 3 links, the Dijkstra tree 2
    assert len(plans["dense"]["edges"]) == 3
    assert len(plans["dijkstra"]["edges"]) == 2


@pytest.mark.slow
def test_summary_contract(smoke_run: SmokeRun) -> None:
    summary = smoke_run.summary
    assert summary["scenario"] == "smoke"
    assert summary["seeds"] == [0, 1]
    assert list(summary["variants"]) == ["dense", "dijkstra", "dijkstra_rate"]
    for entry in summary["variants"].values():
        for key in (
            "routing",
            "accuracy_mean",
            "accuracy_std",
            "train_exchange_bytes",
            "latent_rate_bits",
            "sim_time_s_per_epoch",
            "links_used",
        ):
            assert key in entry
        assert 0 <= entry["accuracy_mean"] <= 1
        assert entry["accuracy_std"] >= 0
        assert entry["sim_time_s_per_epoch"] > 0
    assert [v["routing"] for v in summary["variants"].values()] == ["dense", "dijkstra", "dijkstra"]
    pairs = [(c["a"], c["b"]) for c in summary["comparisons"]]
    assert pairs == [("dense", "dijkstra"), ("dijkstra", "dijkstra_rate")]
    for comparison in summary["comparisons"]:
        a = summary["variants"][comparison["a"]]
        b = summary["variants"][comparison["b"]]
        assert set(comparison) >= {"a", "b", "exchange_reduction", "rate_reduction"}
        assert comparison["exchange_reduction"] == pytest.approx(
            1 - b["train_exchange_bytes"] / a["train_exchange_bytes"], abs=1e-12
        )
        assert comparison["rate_reduction"] == pytest.approx(
            1 - b["latent_rate_bits"] / a["latent_rate_bits"], abs=1e-12
        )
        assert comparison["accuracy_delta"] == pytest.approx(
            b["accuracy_mean"] - a["accuracy_mean"], abs=1e-12
        )
    assert summary["comparisons"][0]["exchange_reduction"] == pytest.approx(1 / 3)
    # JSON without NaN/Infinity, so other tools can read it strictly.
    json.loads((smoke_run.run_dir / "summary.json").read_text(), parse_constant=pytest.fail)


@pytest.mark.slow
def test_set_overrides_land_in_config(smoke_run: SmokeRun) -> None:
    config = smoke_run.config
    assert config["training"]["epochs"] == EPOCHS  # smoke.yaml says 2 epochs, batch 32
    assert config["training"]["batch_size"] == BATCH
    for variant in config["variants"].values():
        assert variant["training"]["batch_size"] == BATCH
    assert config["seeds"] == [0, 1]
    # the topology path is relative to the run directory
    assert (smoke_run.run_dir / config["topology"]).resolve() == DIAMOND
    assert not Path(config["topology"]).is_absolute()
    # fields the run's choices do not use are left out: a Gaussian gate has no codebook
    assert "codewords" not in config["gate"] and "class_sep" in config["data"]


@pytest.mark.slow
def test_report_rebuilds_summary_report_and_figures(
    smoke_run: SmokeRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "copy"
    shutil.copytree(smoke_run.run_dir, run_dir)
    before = json.loads((run_dir / "summary.json").read_text())
    report_before = (run_dir / "report.md").read_text()
    figures_before = sorted(p.name for p in (run_dir / "figures").iterdir())
    (run_dir / "report.md").unlink()
    (run_dir / "summary.json").unlink()
    (run_dir / "links.csv").unlink()
    shutil.rmtree(run_dir / "figures")

    result = call(capsys, "report", str(run_dir))

    assert result.code == 0, result.err
    assert "dijkstra_rate" in result.out
    assert json.loads((run_dir / "summary.json").read_text()) == before
    assert (run_dir / "report.md").read_text() == report_before
    assert sorted(p.name for p in (run_dir / "figures").iterdir()) == figures_before
    assert (run_dir / "links.csv").is_file()


@pytest.mark.slow
def test_report_from_csv_only_gives_the_same_summary(
    smoke_run: SmokeRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "copy"
    shutil.copytree(smoke_run.run_dir, run_dir)
    (run_dir / "exchanges.parquet").unlink()
    result = call(capsys, "report", str(run_dir))
    assert result.code == 0, result.err
    assert json.loads((run_dir / "summary.json").read_text()) == smoke_run.summary


def test_seeds_and_overrides_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--seeds 1 and --set reach config.yaml and change what is actually sent."""
    out = tmp_path / "run"
    result = call(
        capsys,
        "--scenario",
        "smoke",
        "--no-progress",
        "--seeds",
        "1",
        "--set",
        "training.epochs=1",
        "--set",
        "training.batch_size=60",
        "--set",
        "model.latent_dim=2",
        "--set",
        "variants.dijkstra_rate.gate.beta=0.5",
        "--out",
        str(out),
    )
    assert result.code == 0, result.err
    # the run flushed denormal floats to zero while it ran, and no longer does
    assert float(torch.tensor([1e-39]) * 1.0) > 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["seeds"] == [0]
    assert config["training"]["epochs"] == 1
    assert config["model"]["latent_dim"] == 2
    assert config["variants"]["dijkstra_rate"]["gate"]["beta"] == 0.5
    assert config["variants"]["dijkstra"]["gate"]["beta"] == 0.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0]
    # 240 / 60 = 4 steps; 2 floats x 4 bytes x 60 samples per message, both directions
    assert summary["variants"]["dense"]["train_exchange_bytes"] == 4 * 3 * 2 * (2 * 4 * 60)
    assert summary["variants"]["dijkstra"]["train_exchange_bytes"] == 4 * 2 * 2 * (2 * 4 * 60)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------------
# validate, plan, --list (5, 6)


def test_list_shows_the_scenarios(tmp_path: Path) -> None:
    proc = run_sim("--list", cwd=tmp_path)
    assert proc.returncode == 0
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert "dense_vs_dijkstra" in names
    assert "smoke" in names
    assert not list(tmp_path.iterdir())


def test_validate_topology_prints_a_summary(tmp_path: Path) -> None:
    proc = run_sim("validate", str(MESH14), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "mesh14" in proc.stdout
    assert "14 nodes (fusion f, 8 sensors, 5 relays), 25 links" in proc.stdout
    assert proc.stderr == ""


def test_validate_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    result = call(capsys, "validate", str(SMOKE))
    assert result.code == 0, result.err
    assert "'smoke' is valid" in result.out
    assert "dense (dense)" in result.out
    assert "dijkstra_rate (dijkstra)" in result.out
    assert "topology diamond: 3 nodes (fusion f, 1 sensor, 1 relay), 3 links" in result.out


def plan_json(capsys: pytest.CaptureFixture[str], topology: Path, *args: str) -> dict:
    result = call(capsys, "plan", str(topology), "--json", *args)
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert set(plan) == {"routing", "fusion", "edges"}
    return plan


def edge_set(plan: dict) -> set[tuple[str, str]]:
    return {tuple(edge) for edge in plan["edges"]}


def test_plan_dense_uses_every_link(capsys: pytest.CaptureFixture[str]) -> None:
    plan = plan_json(capsys, MESH14, "--routing", "dense")
    assert plan["routing"] == "dense"
    assert plan["fusion"] == "f"
    assert len(plan["edges"]) == 25
    links = {frozenset(edge) for edge in plan["edges"]}
    assert len(links) == 25
    mesh = yaml.safe_load(MESH14.read_text())
    assert links == {frozenset(link["between"]) for link in mesh["links"]}


@pytest.mark.parametrize("routing", ["dijkstra", "hop"])
def test_plan_trees(capsys: pytest.CaptureFixture[str], routing: str) -> None:
    plan = plan_json(capsys, MESH14, "--routing", routing)
    assert plan["routing"] == routing
    assert len(plan["edges"]) == 13
    senders = [sender for sender, _ in plan["edges"]]
    nodes = {node["id"] for node in yaml.safe_load(MESH14.read_text())["nodes"]}
    assert sorted(senders) == sorted(nodes - {"f"})  # each non-fusion node: one parent
    assert "f" not in senders


def test_plan_dijkstra_differs_from_hop(capsys: pytest.CaptureFixture[str]) -> None:
    dijkstra = plan_json(capsys, MESH14, "--routing", "dijkstra")
    hop = plan_json(capsys, MESH14, "--routing", "hop")
    assert edge_set(dijkstra) != edge_set(hop)
    assert ("s1", "r1") in edge_set(dijkstra)  # the fast detour
    assert ("s1", "f") in edge_set(hop)  # the slow shortcut


def test_plan_default_is_dijkstra_and_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    result = call(capsys, "plan", str(MESH14))
    assert result.code == 0, result.err
    assert "dijkstra plan of 'mesh14'" in result.out
    assert "13 of 25 links used" in result.out
    assert "s7 -> s6" in result.out


def test_plan_message_bits_is_ignored_by_hop(capsys: pytest.CaptureFixture[str]) -> None:
    default = plan_json(capsys, MESH14, "--routing", "hop")
    for bits in ("1", "1e9"):
        assert plan_json(capsys, MESH14, "--routing", "hop", "--message-bits", bits) == default


def test_plan_uses_the_default_message_bits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A triangle whose Dijkstra tree flips at ~10 kbit: direct slow link vs fast detour."""
    topology = tmp_path / "flip.yaml"
    topology.write_text(
        textwrap.dedent(
            """\
            name: flip
            nodes:
              - {id: f, role: fusion}
              - {id: r, role: relay}
              - {id: s, role: sensor}
            links:
              - {between: [s, f], capacity: 1Mbps, latency: 0s}
              - {between: [s, r], capacity: 1Gbps, latency: 5ms}
              - {between: [r, f], capacity: 1Gbps, latency: 5ms}
            """
        )
    )
    bits = default_message_bits()
    assert bits == 64 * 16 * 32  # dense_vs_dijkstra: batch 64 x latent 16 x float32
    omitted = plan_json(capsys, topology, "--routing", "dijkstra")
    explicit = plan_json(capsys, topology, "--routing", "dijkstra", "--message-bits", str(bits))
    small = plan_json(capsys, topology, "--routing", "dijkstra", "--message-bits", "1000")
    assert omitted == explicit
    assert edge_set(omitted) == {("s", "r"), ("r", "f")}
    assert ("s", "f") in edge_set(small)
    assert ("s", "r") not in edge_set(small)


# --------------------------------------------------------------------------------------
# Invalid input (7): exit 2, one line naming file and field, no traceback, nothing left.

TOPOLOGY_HEAD = """\
name: bad
defaults: {capacity: 10Mbps, latency: 1ms}
nodes:
  - {id: f, role: fusion}
  - {id: s, role: sensor}
  - {id: r, role: relay}
links:
  - [s, f]
"""

# name -> (file text, field, line, extra words the message must contain)
BAD_TOPOLOGIES = {
    "no_fusion": (
        TOPOLOGY_HEAD.replace("role: fusion", "role: relay"),
        "nodes",
        3,
        ["fusion"],
    ),
    "two_fusions": (
        TOPOLOGY_HEAD.replace("{id: r, role: relay}", "{id: r, role: fusion}") + "  - [r, f]\n",
        "nodes[2].role",
        6,
        ["fusion"],
    ),
    "unknown_node": (TOPOLOGY_HEAD + "  - [s, x]\n", "links[1].between[1]", 9, ["'x'"]),
    "self_loop": (TOPOLOGY_HEAD + "  - [r, r]\n", "links[1].between", 9, ["self-loop"]),
    "duplicate_link": (TOPOLOGY_HEAD + "  - [f, s]\n", "links[1].between", 9, ["duplicate"]),
    "zero_capacity": (
        TOPOLOGY_HEAD + "  - {between: [r, f], capacity: 0}\n",
        "links[1].capacity",
        9,
        [],
    ),
    "negative_latency": (
        TOPOLOGY_HEAD + "  - {between: [r, f], latency: -1ms}\n",
        "links[1].latency",
        9,
        [],
    ),
    "unknown_unit": (
        TOPOLOGY_HEAD + "  - {between: [r, f], capacity: 10Mbs}\n",
        "links[1].capacity",
        9,
        ["10Mbs"],
    ),
    "stranded_sensor": (  # a sensor in the file but cut off from the fusion node is named
        TOPOLOGY_HEAD.replace(
            "  - {id: r, role: relay}\n", "  - {id: r, role: relay}\n  - {id: s9, role: sensor}\n"
        )
        + "  - [r, f]\n",
        "nodes[3]",
        7,
        ["s9", "cannot reach"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_TOPOLOGIES))
def test_run_rejects_bad_topology(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    text, field, line, words = BAD_TOPOLOGIES[case]
    topology = tmp_path / f"{case}.yaml"
    topology.write_text(text)
    out = tmp_path / "run"
    result = call(capsys, "--scenario", "smoke", "--topology", str(topology), "--out", str(out))
    message = assert_user_error(result, f"{topology}:{line}: {field}: ", *words)
    assert message.startswith("error: ")
    assert result.out == ""
    assert_nothing_left(tmp_path, out)


@pytest.mark.parametrize("case", sorted(BAD_TOPOLOGIES))
def test_validate_rejects_bad_topology(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    text, field, line, words = BAD_TOPOLOGIES[case]
    topology = tmp_path / f"{case}.yaml"
    topology.write_text(text)
    assert_user_error(call(capsys, "validate", str(topology)), f"{topology}:{line}: {field}: ")


def test_bad_topology_through_a_real_process(tmp_path: Path) -> None:
    """The same contract across the process boundary: exit status 2, stderr one line."""
    topology = tmp_path / "bad.yaml"
    topology.write_text(BAD_TOPOLOGIES["unknown_unit"][0])
    proc = run_sim("--scenario", "smoke", "--topology", "bad.yaml", "--out", "run", cwd=tmp_path)
    assert_user_error(proc, "bad.yaml:9: links[1].capacity: ")
    assert proc.stdout == ""
    assert_nothing_left(tmp_path, tmp_path / "run")


def write_scenario(tmp_path: Path, variants: list[str], comparisons: list[str] = ()) -> Path:
    """A small scenario file; ``variants`` and ``comparisons`` are lines of those blocks."""
    lines = [
        "name: custom",  # line 1
        f"topology: {DIAMOND}",
        "data: {dataset: gaussian_mixture, n_samples: 100, n_features: 4, n_classes: 2}",
        "model: {latent_dim: 2, hidden: 4}",
        "training: {epochs: 1}",
        "seeds: 1",
        "variants:",  # line 7
        *(f"  {line}" for line in variants),
    ]
    if comparisons:
        lines += ["comparisons:", *(f"  {line}" for line in comparisons)]
    path = tmp_path / "scenario.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_unknown_scenario_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    result = call(capsys, "--scenario", "no_such_scenario", "--out", str(out))
    assert_user_error(result, "no_such_scenario", "smoke")
    assert_nothing_left(tmp_path, out)


@pytest.mark.parametrize(
    ("override", "field", "words"),
    [
        ("training.epochz=3", "training.epochz", ["unknown field", "epochs"]),
        ("training.epochs=-1", "training.epochs", ["-1"]),
        ("variants.dense.routing=bogus", "variants.dense.routing", ["bogus"]),
        ("variants.dense.training.epochs=0", "variants.dense.training.epochs", []),
        ("seeds=[]", "seeds", []),
        ("comparisons=[[dense, nope]]", "comparisons[0][1]", ["nope"]),
    ],
)
def test_run_rejects_bad_override(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    override: str,
    field: str,
    words: list[str],
) -> None:
    out = tmp_path / "run"
    result = call(capsys, "--scenario", "smoke", "--set", override, "--out", str(out))
    # the error names the --set option, not a line of smoke.yaml that says something else
    assert_user_error(result, f"--set {override}: ", *words)
    assert "smoke.yaml" not in result.err
    assert_nothing_left(tmp_path, out)


def test_set_with_a_misspelt_variant_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    override = "variants.dijkstra_rat.gate.beta=0.1"
    result = call(capsys, "--scenario", "smoke", "--set", override, "--out", str(out))
    assert_user_error(
        result, f"--set {override}", "unknown variant 'dijkstra_rat'", "dijkstra_rate"
    )
    assert_nothing_left(tmp_path, out)
    # a new variant is fine when it names its routing
    loaded = load_scenario(find_scenario("smoke"), ["variants.extra.routing=hop"])
    assert [v.name for v in loaded.variants][-1] == "extra"


@pytest.mark.parametrize("argv", [["--seeds", "0"], ["--set", "training"]])
def test_run_rejects_bad_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    out = tmp_path / "run"
    assert_user_error(call(capsys, "--scenario", "smoke", *argv, "--out", str(out)), argv[0])
    assert_nothing_left(tmp_path, out)


def test_unknown_routing_in_a_scenario_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = write_scenario(tmp_path, ["dense: {routing: dense}", "bad:", "  routing: bogus"])
    out = tmp_path / "run"
    result = call(capsys, "--scenario", str(scenario), "--out", str(out))
    assert_user_error(result, f"{scenario}:10: variants.bad.routing: ", "bogus")
    assert_nothing_left(tmp_path, out)
    assert_user_error(call(capsys, "validate", str(scenario)), f"{scenario}:10: ")


def test_comparison_with_unknown_variant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = write_scenario(
        tmp_path, ["a: {routing: dense}", "b: {routing: dijkstra}"], ["- [a, b]", "- [a, c]"]
    )
    out = tmp_path / "run"
    result = call(capsys, "--scenario", str(scenario), "--out", str(out))
    assert_user_error(result, str(scenario), "comparisons", "'c'")
    assert_nothing_left(tmp_path, out)


def test_comparison_with_unknown_variant_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = write_scenario(
        tmp_path, ["a: {routing: dense}", "b: {routing: dijkstra}"], ["- [a, b]", "- [a, c]"]
    )
    result = call(capsys, "validate", str(scenario))
    assert_user_error(result, f"{scenario}:12: comparisons")


def test_out_is_a_non_empty_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = call(capsys, "--scenario", "smoke", "--out", str(out))
    assert_user_error(result, str(out), "not empty")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_validate_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    proc = run_sim("validate", str(missing), cwd=tmp_path)
    assert_user_error(proc, str(missing), "not found")


def test_plan_unknown_routing(tmp_path: Path) -> None:
    proc = run_sim("plan", str(MESH14), "--routing", "bogus", cwd=tmp_path)
    assert_user_error(proc, "routing", "'bogus'")
    assert proc.stdout == ""


@pytest.mark.parametrize("bits", ["0", "-1"])
def test_plan_rejects_non_positive_message_bits(
    capsys: pytest.CaptureFixture[str], bits: str
) -> None:
    assert_user_error(call(capsys, "plan", str(MESH14), "--message-bits", bits), "--message-bits")


def test_plan_rejects_nan_message_bits_for_every_routing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = call(capsys, "plan", str(MESH14), "--routing", "hop", "--message-bits", "nan")
    assert_user_error(result, "--message-bits")


@pytest.mark.parametrize("kind", ["empty_dir", "missing"])
def test_report_on_a_non_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    target = tmp_path / "not-a-run"
    if kind == "empty_dir":
        target.mkdir()
    result = call(capsys, "report", str(target))
    line = assert_user_error(result, str(target))
    assert ("not a run directory" if kind == "empty_dir" else "not found") in line
    assert "topologies" not in line and "config.yaml: file not found" not in line
    if kind == "empty_dir":
        assert list(target.iterdir()) == []  # nothing written into it
    else:
        assert not target.exists()


def test_data_errors_name_the_scenario_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    result = call(
        capsys,
        "--scenario",
        "smoke",
        "--no-progress",
        "--set",
        "data.dataset=idx",
        "--out",
        str(out),
    )
    assert_nothing_left(tmp_path, out)
    assert_user_error(result, "smoke.yaml", "data.path")


def test_argparse_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert_user_error(call(capsys, "--scenario", "smoke", "--seeds", "many"), "--seeds")


# --------------------------------------------------------------------------------------
# A failure in the middle of a run leaves nothing behind (8).

FAST_RUN = [
    "--scenario",
    "smoke",
    "--no-progress",
    "--seeds",
    "1",
    "--set",
    "training.epochs=1",
    "--set",
    "training.batch_size=120",
]


def test_crash_while_writing_the_report_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    staged: list[Path] = []

    def broken_write_report(run, family, run_dir: Path, summary=None) -> dict:  # noqa: ANN001
        staged.append(Path(run_dir))
        assert (Path(run_dir) / "exchanges.parquet").is_file()  # the tables were written
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(innet.app.runner, "write_report", broken_write_report)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="disk on fire"):
        main([*FAST_RUN, "--out", str(out)])
    assert staged and staged[0].parent == tmp_path
    assert not staged[0].exists()
    assert_nothing_left(tmp_path, out)


def test_interrupt_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(InlTrainer, "train", interrupted)
    out = tmp_path / "run"
    result = call(capsys, *FAST_RUN, "--out", str(out))
    assert result.code == 130
    assert result.err.strip() == "interrupted"
    assert_nothing_left(tmp_path, out)


def test_user_error_mid_run_leaves_nothing_and_keeps_an_empty_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A data problem is found only once the run has started staging its directory."""
    out = tmp_path / "run"
    out.mkdir()  # an empty --out is allowed; it must stay as it was
    result = call(capsys, *FAST_RUN, "--set", "data.snr_db=[]", "--out", str(out))
    assert_user_error(result, "data.snr_db")
    assert out.is_dir() and not list(out.iterdir())
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------------
# How a stranger starts, stops and reads a run.


def test_no_arguments_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    line = assert_user_error(call(capsys), "--scenario", "dense_vs_dijkstra", "smoke")
    assert "choose a scenario" in line
    assert list(tmp_path.iterdir()) == []  # no runs/ folder, nothing trained


@pytest.mark.parametrize("where", ["under_a_file", "is_a_file", "unreadable_place"])
def test_out_that_cannot_be_written_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    out = {
        "under_a_file": a_file / "run",
        "is_a_file": a_file,
        "unreadable_place": Path("/proc/innet-cannot-write-here"),
    }[where]
    result = call(capsys, *FAST_RUN, "--out", str(out))
    line = assert_user_error(result, str(out))
    assert ("is a file" if where == "is_a_file" else "cannot write") in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.slow
def test_sigterm_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, str(RUN_SIM), "--scenario", "dense_vs_dijkstra", "--seeds", "1",
         "--no-progress", "--out", str(out)],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".run.partial-*")):  # training has started
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "terminated"
    assert "Traceback" not in err
    assert_nothing_left(tmp_path, out)


def test_a_log_without_a_terminal_gets_one_line_per_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [arg for arg in FAST_RUN if arg != "--no-progress"]
    result = call(capsys, *argv, "--out", str(tmp_path / "run"))
    assert result.code == 0, result.err
    lines = result.err.splitlines()
    assert "\r" not in result.err
    assert len(lines) == 3, lines  # 3 variants x 1 seed
    assert lines[0].startswith("[1/3] dense seed 0: 1 epochs, accuracy ")
    assert lines[-1].startswith("[3/3] dijkstra_rate seed 0:")


@pytest.mark.slow
def test_provenance_and_schema_version(smoke_run: SmokeRun) -> None:
    import innet

    record = json.loads((smoke_run.run_dir / "provenance.json").read_text())
    assert record["innet_version"] == innet.__version__
    assert record["python"] == platform.python_version()
    assert record["torch"] == torch.__version__
    assert record["processes"] == 1 and record["wall_time_s"] > 0
    started = datetime.fromisoformat(record["started_utc"])
    assert started.utcoffset() == timedelta(0)
    assert abs((datetime.now(timezone.utc) - started).total_seconds()) < 3600
    assert record["command"][:3] == ["run_sim.py", "--scenario", "smoke"]
    assert (record["git_commit"] is None) == (record["git_dirty"] is None)
    summary = json.loads((smoke_run.run_dir / "summary.json").read_text())
    assert summary["schema_version"] == 1


def test_exchanges_csv_is_opt_in(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert call(capsys, *FAST_RUN, "--out", str(tmp_path / "a")).code == 0
    assert call(capsys, *FAST_RUN, "--csv", "--out", str(tmp_path / "b")).code == 0
    assert not (tmp_path / "a" / "exchanges.csv").exists()
    from_csv = pd.read_csv(tmp_path / "b" / "exchanges.csv")
    assert len(from_csv) == len(pd.read_parquet(tmp_path / "a" / "exchanges.parquet"))
