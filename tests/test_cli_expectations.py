"""The command line as people expect it, and failures at the end of a run (issue 26).

- ``validate`` and ``plan`` take the shipped names that ``--scenario`` and
  ``--topology`` take; ``validate`` is a dry run with ``--set`` for every family;
  ``--version``; ``--backend`` without torchrun is refused; hints name the
  command the user typed; a misspelt command gets the nearest one.
- ``--list`` shows each scenario's runs (variants x seeds x points) and the
  measured time stored with it.
- A full disk, at the end or predicted at the start, and two runs given the
  same ``--out``: one line, exit status 2, nothing half-written.
- Small things: a noisy view beyond the sensors, a batch larger than the data.

Everything runs in-process on the ``smoke`` scenario at one epoch and seed,
except one real race between two processes (slow).
"""

from __future__ import annotations

import errno
import math
import os
import socket
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import yaml
from test_cli import Call, call

import innet
import innet.app.runner
import innet.rundir.staging
from innet.families.inl.trainer import InlTrainer

ROOT = Path(__file__).resolve().parent.parent
RUN_SIM = ROOT / "run_sim.py"
SCENARIOS = ROOT / "scenarios"
FAST_RUN = ["--scenario", "smoke", "--no-progress", "--seeds", "1",
            "--set", "training.epochs=1", "--set", "training.batch_size=120"]  # fmt: skip


def assert_user_error(result: Call, *names: str) -> str:
    """Exit 2, exactly one line on stderr naming ``names``, no traceback; return that line."""
    assert result.code == 2, (result.code, result.out, result.err)
    assert "Traceback" not in result.out + result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def assert_nothing_left(directory: Path, out: Path) -> None:
    """No run directory at ``out`` and no hidden staging directory beside it."""
    assert not out.exists()
    assert not [p.name for p in directory.iterdir() if ".partial-" in p.name]


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything is trained."""

    def train(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained although the run should have been refused first")

    monkeypatch.setattr(InlTrainer, "train", train)


# --------------------------------------------------------------------------------------
# Names, dry runs, version, hints


def test_validate_and_plan_take_shipped_names(capsys: pytest.CaptureFixture[str]) -> None:
    by_name = call(capsys, "validate", "smoke")
    by_path = call(capsys, "validate", str(SCENARIOS / "smoke.yaml"))
    assert by_name.code == by_path.code == 0, by_name.err
    assert "scenario 'smoke' is valid" in by_name.out
    assert by_name.out.splitlines()[1:] == by_path.out.splitlines()[1:]  # all but the path
    topology = call(capsys, "validate", "mesh14")
    assert topology.code == 0 and "topology 'mesh14' is valid" in topology.out
    plan_name = call(capsys, "plan", "mesh14", "--json")
    plan_path = call(capsys, "plan", str(ROOT / "topologies" / "mesh14.yaml"), "--json")
    assert plan_name.code == 0 and plan_name.out == plan_path.out


def test_validate_an_unknown_name_lists_both_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    line = assert_user_error(call(capsys, "validate", "smoek"), "smoek", "smoke", "mesh14")
    assert "no such file, scenario or shipped topology" in line
    assert_user_error(call(capsys, "plan", "mesh41"), "plan mesh41", "mesh14")


def resolved_block(out: str) -> dict:
    """The YAML that ``validate`` prints after ``resolved scenario``."""
    text = out.split("resolved scenario (as a run saves it in config.yaml):\n", 1)[1]
    return yaml.safe_load(textwrap.dedent(text))


def test_validate_with_set_is_a_dry_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    no_training: None,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    result = call(capsys, "validate", "smoke", "--set", "training.epochs=7", "--seeds", "1",
                  "--set", "variants.dijkstra_rate.gate.beta=0.25")  # fmt: skip
    assert result.code == 0, result.err
    config = resolved_block(result.out)
    assert config["training"]["epochs"] == 7 and config["seeds"] == [0]
    assert config["variants"]["dijkstra_rate"]["gate"]["beta"] == 0.25
    assert config["variants"]["dense"]["gate"]["beta"] == 0.0
    assert "runs: 3 variants x 1 seed = 3 runs" in result.out
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing trained
    plain = call(capsys, "validate", "smoke")
    assert "resolved scenario" not in plain.out
    assert_user_error(call(capsys, "validate", "smoke", "--set", "training.epochs=0"),
                      "--set training.epochs=0")  # fmt: skip


@pytest.mark.parametrize("name", ["moe_routing", "finite_bank", "dinl_protocol"])
def test_validate_every_family(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    raw = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
    seeds = raw.get("seeds", 5)
    seeds = seeds if isinstance(seeds, int) else len(seeds)
    result = call(capsys, "validate", name, "--resolved")
    assert result.code == 0, result.err
    assert f"family: {raw.get('family', 'inl')}" in result.out
    runs = len(raw["variants"]) * seeds
    assert f"= {runs} run{'s' * (runs != 1)}" in result.out
    assert set(resolved_block(result.out)["variants"]) == set(raw["variants"])


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    result = call(capsys, "--version")
    assert result.code == 0
    assert result.out == f"innet {innet.__version__}\n"


def test_backend_without_torchrun_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_training: None
) -> None:
    for backend in ("nccl", "gloo"):
        out = tmp_path / backend
        result = call(capsys, *FAST_RUN, "--backend", backend, "--out", str(out))
        assert_user_error(result, f"--backend {backend}", "torchrun")
        assert_nothing_left(tmp_path, out)


@pytest.mark.parametrize(
    ("argv0", "typed"),
    [("/x/run_sim.py", "run_sim.py"), ("/venv/bin/innet", "innet"),
     ("/x/innet/__main__.py", "python -m innet")],
)  # fmt: skip
def test_hints_name_the_command_typed(
    argv0: str, typed: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", [argv0])
    assert_user_error(call(capsys, "--seeds", "many"), f"(see {typed} --help)")
    assert_user_error(call(capsys, "plan"), f"(see {typed} plan --help)")
    assert_user_error(call(capsys), f"see {typed} --help")
    line = assert_user_error(call(capsys, "valdiate", "smoke"), f"`{typed} validate`")
    assert line.startswith("error: unknown command 'valdiate': did you mean")


def test_unknown_command_suggests_the_nearest(capsys: pytest.CaptureFixture[str]) -> None:
    assert_user_error(call(capsys, "retiem", "x"), "did you mean", " retime`")
    assert_user_error(call(capsys, "smoke"), "--scenario smoke")
    line = assert_user_error(call(capsys, "frobnicate"), "unknown command 'frobnicate'")
    assert "did you mean" not in line and "validate" in line


@pytest.mark.slow
def test_version_through_a_real_process(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "innet", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout == f"innet {innet.__version__}\n"
    proc = subprocess.run([sys.executable, "-m", "innet", "plam"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert proc.returncode == 2
    assert "did you mean `python -m innet plan`?" in proc.stderr


# --------------------------------------------------------------------------------------
# --list: runs and measured times


def expected_runs(raw: dict) -> int:
    seeds = raw.get("seeds", 5)
    points = math.prod(len(values) for values in (raw.get("sweep") or {}).values())
    return len(raw["variants"]) * (seeds if isinstance(seeds, int) else len(seeds)) * points


def test_list_shows_runs_and_measured_times(capsys: pytest.CaptureFixture[str]) -> None:
    result = call(capsys, "--list")
    assert result.code == 0, result.err
    lines = {line.split()[0]: line for line in result.out.splitlines() if line[:1].strip()}
    assert set(lines) == {path.stem for path in SCENARIOS.glob("*.yaml")}
    measured = 0
    for path in SCENARIOS.glob("*.yaml"):
        raw = yaml.safe_load(path.read_text())
        line = lines[path.stem]
        runs = expected_runs(raw)
        assert f"= {runs} run{'s' * (runs != 1)}" in line, line
        if "measured" in raw:
            minutes, seconds = divmod(round(raw["measured"]["wall_s"]), 60)
            took = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
            assert f"{took} on {raw['measured']['machine']}" in line, line
            measured += 1
        else:
            assert "(time not measured)" in line
    assert measured >= 1
    assert "dense_vs_dijkstra    3 variants x 5 seeds = 15 runs" in result.out
    assert "rate_costs           15 variants x 5 seeds = 75 runs" in result.out


@pytest.mark.parametrize(
    ("block", "field"),
    [("{wall_s: -3, machine: laptop}", "measured.wall_s"),
     ("{wall_s: 10}", "measured.machine"),
     ("{wall_s: 10, machine: x, when: today}", "measured.when"),
     ("45 s", "measured")],
)  # fmt: skip
def test_measured_block_is_validated(
    block: str, field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = (SCENARIOS / "smoke.yaml").read_text().splitlines(keepends=True)
    text = "".join(line for line in shipped if not line.startswith("measured:"))  # its own
    text = text.replace("\ntopology:", f"\nmeasured: {block}\ntopology:", 1)
    text = text.replace("../topologies/", f"{ROOT / 'topologies'}/")
    path = tmp_path / "timed.yaml"
    path.write_text(text)
    line_no = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("measured"))
    assert_user_error(call(capsys, "validate", str(path)), f"timed.yaml:{line_no}: {field}")


# --------------------------------------------------------------------------------------
# Failures at the end are one line


def test_full_disk_at_the_end_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_report = innet.app.runner.write_report
    reached: list[Path] = []

    def disk_fills_up(run, family, run_dir: Path, summary=None) -> dict:  # noqa: ANN001
        reached.append(Path(run_dir))
        write_report(run, family, run_dir, summary)  # part of the report, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run_dir / "report.md"))

    monkeypatch.setattr(innet.app.runner, "write_report", disk_fills_up)
    out = tmp_path / "run"
    line = assert_user_error(call(capsys, *FAST_RUN, "--out", str(out)), str(out))
    assert "No space left on device after" in line and "nothing was kept" in line
    assert reached and not reached[0].exists()  # training ran; its staging is gone
    assert_nothing_left(tmp_path, out)


@pytest.mark.slow
def test_full_disk_at_the_end_of_a_sweep_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import innet.app.sweeps

    def disk_fills_up(run_dir: Path, *args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(run_dir) / "sweep.csv"))

    monkeypatch.setattr(innet.app.sweeps, "write_sweep_report", disk_fills_up)
    out = tmp_path / "sweep"
    argv = [*FAST_RUN, "--sweep", "gate.beta=0,0.01", "--out", str(out)]
    line = assert_user_error(call(capsys, *argv), str(out))
    assert "No space left on device" in line and f"resume {out}" in line
    # the finished points stay for `resume`; without sweep.json the sweep reads as unfinished
    assert sorted(path.name for path in (out / "points").iterdir()) == ["p00", "p01"]
    assert not (out / "sweep.json").exists()


def test_too_little_free_space_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    no_training: None,
) -> None:  # fmt: skip
    real = innet.rundir.staging.shutil.disk_usage
    usage = real(tmp_path)
    fake = type(usage)(usage.total, usage.total - 50_000, 50_000)
    monkeypatch.setattr(innet.rundir.staging.shutil, "disk_usage", lambda path: fake)
    out = tmp_path / "run"
    line = assert_user_error(call(capsys, *FAST_RUN, "--out", str(out)), str(out), "50 kB free")
    assert "at least 160 kB" in line  # tables and figures
    assert_nothing_left(tmp_path, out)


def test_a_second_run_on_a_busy_out_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_training: None
) -> None:
    out = tmp_path / "run"
    other = tmp_path / f".run.partial-{socket.gethostname()}-{os.getppid()}"  # a live process
    other.mkdir()
    (other / "exchanges.parquet").write_bytes(b"being written")
    line = assert_user_error(call(capsys, *FAST_RUN, "--out", str(out)), str(out))
    assert f"another run (pid {os.getppid()}) is writing this directory" in line
    assert (other / "exchanges.parquet").read_bytes() == b"being written"
    assert not out.exists()


def test_the_run_that_finishes_second_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs started at once with one ``--out``: the other one renames first."""
    out = tmp_path / "run"
    train = InlTrainer.train

    def the_other_run_finishes(self: InlTrainer, *args: object, **kwargs: object) -> object:
        if not out.exists():
            out.mkdir()
            (out / "summary.json").write_text("{}")
        return train(self, *args, **kwargs)

    monkeypatch.setattr(InlTrainer, "train", the_other_run_finishes)
    line = assert_user_error(call(capsys, *FAST_RUN, "--out", str(out)), str(out))
    assert "another run wrote this directory while this one ran" in line
    assert [p.name for p in out.iterdir()] == ["summary.json"]  # the winner's, untouched
    assert not [p.name for p in tmp_path.iterdir() if ".partial-" in p.name]


@pytest.mark.slow
def test_two_real_runs_with_one_out(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, str(RUN_SIM), *FAST_RUN, "--out", str(out)]
    first = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    second = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    results = [(p.wait(timeout=300), *p.communicate()) for p in (first, second)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    _, _, err = next(result for result in results if result[0] == 2)
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "another run" in err and str(out) in err
    for name in ("config.yaml", "exchanges.parquet", "summary.json", "report.md",
                 "provenance.json"):  # fmt: skip
        assert (out / name).is_file(), name
    assert not [p.name for p in tmp_path.iterdir() if ".partial-" in p.name]


@pytest.mark.slow
def test_a_real_full_disk(tmp_path: Path) -> None:
    """A 48 kB tmpfs (root only): room for the check before training, not for the run."""
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(tiny)],
                             capture_output=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        proc = subprocess.run(
            [sys.executable, str(RUN_SIM), *FAST_RUN, "--set", "report.figures=false",
             "--out", str(tiny / "run")],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
            env={**os.environ, "MPLBACKEND": "Agg"},
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
        assert "No space left on device" in proc.stderr
        assert list(tiny.iterdir()) == []
    finally:
        subprocess.run(["umount", str(tiny)], check=False)


# --------------------------------------------------------------------------------------
# Smaller things


def test_a_noisy_view_beyond_the_sensors_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topology = tmp_path / "two.yaml"
    topology.write_text(textwrap.dedent("""\
        name: two
        defaults: {capacity: 1Mbps, latency: 1ms}
        nodes:
          - {id: f, role: fusion}
          - {id: s, role: sensor, view: 99}
          - {id: t, role: sensor}
        links: [[s, f], [t, f]]
        """))  # fmt: skip
    noisy = ["--set", "data.views=noisy", "--topology", str(topology)]
    line = assert_user_error(call(capsys, "validate", "smoke", *noisy), "data.views")
    assert "sensor s has view 99" in line and "0..1" in line
    listed = call(capsys, "validate", "smoke", *noisy, "--set", f"data.snr_db={[5] * 100}")
    assert listed.code == 0, listed.err  # 100 SNRs: 100 views, 99 among them


def test_a_batch_larger_than_the_data_is_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.warns(UserWarning) as caught:
        result = call(capsys, "validate", "smoke", "--set", "training.batch_size=100000")
    assert result.code == 0, result.err
    assert [str(w.message) for w in caught] == [
        "training.batch_size 100000 is larger than the 240 training samples: "
        "every step trains on all of them (one step per epoch)"
    ]
    assert "training: 3 epochs of 1 step\n" in result.out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = call(capsys, "validate", "smoke", "--set", "training.batch_size=240")
    assert quiet.code == 0 and "of 1 step\n" in quiet.out


def test_a_trace_of_an_unknown_variant_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_training: None
) -> None:
    out = tmp_path / "run"
    result = call(capsys, *FAST_RUN, "--set", "report.trace={variants: [nope]}", "--out", str(out))
    line = assert_user_error(result, "report.trace", "unknown variant 'nope'")
    assert "dijkstra_rate" in line  # the variants it could have named
    assert_nothing_left(tmp_path, out)
