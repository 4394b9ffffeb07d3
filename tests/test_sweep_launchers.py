"""Sweeps on executors (Dask, submitit), a failing point, and resuming a sweep directory."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import innet
from innet.app.cli import main
from innet.app.launchers import launched
from innet.app.sweep_report import RUNS_FILE, SWEEP_FILE, SWEEP_JSON
from innet.app.sweeps import MANIFEST_FILE, SweepFailed, resume_sweep, run_sweep
from innet.core.errors import InnetError
from innet.families import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("metrics.csv", RUNS_FILE, SWEEP_FILE)
SWEEP = ["training.lr=0.01,0.02"]


def small_scenario(tmp_path: Path, **changes: Any) -> Path:
    """The smoke scenario, small: one epoch, one seed, no figures."""
    raw = yaml.safe_load((ROOT / "scenarios" / "smoke.yaml").read_text())
    raw["topology"] = str(ROOT / "topologies" / "diamond.yaml")
    raw["training"]["epochs"] = 1
    raw["seeds"] = 1
    raw["report"] = {"figures": False}
    raw.update(changes)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def tables(directory: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_csv(directory / name) for name in TABLES}


def assert_same_tables(ours: Path, theirs: Path) -> None:
    for name, table in tables(ours).items():
        pd.testing.assert_frame_equal(table, tables(theirs)[name], obj=name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep with ``--jobs 1``, in this process."""
    tmp = tmp_path_factory.mktemp("reference")
    return run_sweep(small_scenario(tmp), options=SWEEP, out=tmp / "sweep", progress=False)


@pytest.mark.slow
@pytest.mark.distributed
def test_a_dask_local_cluster_sweep_equals_jobs_1(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "dask"
    argv = ["--scenario", str(small_scenario(tmp_path)), "--sweep", SWEEP[0], "--out", str(out)]
    assert main([*argv, "--launcher", "dask", "--jobs", "2", "--no-progress"]) == 0
    assert_same_tables(out, reference)
    assert json.loads((out / SWEEP_JSON).read_text()) == json.loads(
        (reference / SWEEP_JSON).read_text()
    )


@pytest.mark.slow
def test_dask_reaches_an_existing_scheduler(reference: Path, tmp_path: Path) -> None:
    """``--scheduler ADDRESS``: a scheduler started elsewhere, here with one worker of two
    threads in this process: the points run one at a time there (torch's state is global)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        with launched("dask", scheduler=cluster.scheduler_address) as executor:
            out = run_sweep(small_scenario(tmp_path), options=SWEEP, out=tmp_path / "dask",
                            progress=False, executor=executor)  # fmt: skip
        assert cluster.scheduler.transition_counter > 0  # the points went through it
    assert_same_tables(out, reference)


@pytest.mark.slow
@pytest.mark.distributed
def test_the_submitit_local_executor_runs_a_sweep(reference: Path, tmp_path: Path) -> None:
    options = ["cluster=local", f"folder={tmp_path / 'logs'}", "timeout_min=10"]
    with launched("submitit", options=options) as executor:
        out = run_sweep(small_scenario(tmp_path), options=SWEEP, out=tmp_path / "slurm",
                        progress=False, executor=executor)  # fmt: skip
    assert_same_tables(out, reference)
    assert any((tmp_path / "logs").iterdir())  # the jobs ran through submitit


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--launcher", "slurmish"], "--launcher: unknown launcher 'slurmish'"),
        (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler applies to --launcher dask"),
        (
            ["--launcher-option", "timeout_min=5"],
            "--launcher-option applies to --launcher submitit",
        ),
        (["--launcher", "submitit", "--launcher-option", "x"], "expected KEY=VALUE"),
    ],
)
def test_bad_launcher_options_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    path = small_scenario(tmp_path)
    code = main(["--scenario", str(path), "--sweep", SWEEP[0], "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o").exists()


def test_a_missing_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if not installed
    needs = r"--launcher dask needs: pip install innet\[dask\]"
    with pytest.raises(InnetError, match=needs), launched("dask"):
        pass


FAIL_AT_LR = {"lr": None}  # the learning rate at which the toy family's training raises


class _Flaky:
    """A trainer that raises at one learning rate (the toy family's), else INL's."""

    def __init__(self, trainer: Any) -> None:
        self._trainer = trainer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trainer, name)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("diverged (a test's failing point)")


@pytest.fixture()
def flaky_family() -> Any:
    """INL, under the name ``flaky``: its training fails at ``FAIL_AT_LR["lr"]``."""
    inl = FAMILIES.get("inl")

    def prepare(loaded: Any, topology: Any) -> Any:
        trainer = inl.prepare(loaded, topology)
        return _Flaky(trainer) if loaded.scenario.training.lr == FAIL_AT_LR["lr"] else trainer

    FAMILIES.register("flaky", dataclasses.replace(inl, name="flaky", prepare=prepare))
    yield
    FAMILIES.unregister("flaky")
    FAIL_AT_LR["lr"] = None


def test_a_failing_point_keeps_the_others_and_resume_completes_it(
    flaky_family: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = small_scenario(tmp_path, family="flaky")
    whole = run_sweep(path, options=SWEEP, out=tmp_path / "whole", progress=False)

    FAIL_AT_LR["lr"] = 0.02
    with pytest.raises(SweepFailed, match="p01"):  # the API: the same error
        run_sweep(path, options=SWEEP, out=tmp_path / "api", progress=False)
    out = tmp_path / "sweep"
    code = main(["--scenario", str(path), "--sweep", SWEEP[0], "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "1 point failed: p01 (training.lr=0.02): RuntimeError: diverged" in err
    assert f"resume {out}" in err
    # the point that finished is kept, the failed one recorded with its error
    assert (out / "points" / "p00" / "metrics.csv").is_file()
    assert not (out / "points" / "p01").exists()
    failure = json.loads((out / "points" / "p01.failed.json").read_text())
    assert failure["error"] == "RuntimeError: diverged (a test's failing point)"
    assert "Traceback" in failure["traceback"]
    record = json.loads((out / SWEEP_JSON).read_text())
    assert record["failed"] == {"p01": failure["error"]}
    assert set(pd.read_csv(out / RUNS_FILE)["point"]) == {"p00"}
    assert "Point p01 failed (RuntimeError: diverged" in (out / "report.md").read_text()

    FAIL_AT_LR["lr"] = None  # fixed: resume runs only p01, and the directory is the whole one
    before = (out / "points" / "p00" / "metrics.csv").stat().st_mtime_ns
    assert main(["resume", str(out), "--no-progress"]) == 0
    assert (out / "points" / "p00" / "metrics.csv").stat().st_mtime_ns == before
    assert_same_tables(out, whole)
    for name in (SWEEP_JSON, "report.md", MANIFEST_FILE):
        theirs = (whole / name).read_text().replace(str(whole), str(out))
        assert (out / name).read_text() == theirs, name
    assert sorted(p.name for p in out.rglob("*") if "provenance" not in p.name) == sorted(
        p.name for p in whole.rglob("*") if "provenance" not in p.name
    )
    for point in ("p00", "p01"):
        for name in ("metrics.csv", "summary.json"):
            ours, theirs = (d / "points" / point / name for d in (out, whole))
            assert ours.read_bytes() == theirs.read_bytes(), (point, name)


def test_an_interrupted_sweep_resumes_the_missing_points(
    tmp_path: Path, reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sweep stopped after its first point: no sweep.json; load refuses it; resume ends it."""
    out = run_sweep(small_scenario(tmp_path), options=SWEEP, out=tmp_path / "sweep",
                    progress=False)  # fmt: skip
    shutil.rmtree(out / "points" / "p01")  # as if killed while p01 ran
    for name in (*TABLES, SWEEP_JSON, "report.md"):
        (out / name).unlink()
    with pytest.raises(InnetError, match="an unfinished sweep"):
        innet.load(out)
    assert main(["report", str(out)]) == 2
    assert capsys.readouterr().err.count("an unfinished sweep") == 1
    assert resume_sweep(out, progress=False) == out
    assert_same_tables(out, reference)
    assert innet.load(out).runs.equals(innet.load(reference).runs)


def test_resume_refuses_a_directory_that_is_not_a_sweep(tmp_path: Path) -> None:
    with pytest.raises(InnetError, match="not a sweep directory"):
        resume_sweep(tmp_path)
