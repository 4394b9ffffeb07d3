"""Checkpoint and resume: a stopped run continues to the files an uninterrupted run writes.

The infrastructure is tested with a toy family defined here, whose trainer keeps a
counter and a torch generator (so a resume that lost either gives other numbers);
the main job is killed with SIGKILL at a (seeded) random epoch and resumed.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from pydantic import Field

from innet.app.cli import main
from innet.core.config import ScenarioBase, VariantBase
from innet.core.events import build_timeline
from innet.core.training import Trainer, TrainResult
from innet.families import FAMILIES, Family
from innet.report.family import FamilyReport
from innet.rundir.checkpoint import MANIFEST_FILE, checkpoint_dir

REPO = Path(__file__).resolve().parents[1]
COMPARED = ("metrics.csv", "exchanges.parquet", "summary.json")

TOPOLOGY = """
name: pair3
defaults: {capacity: 1Mbps, latency: 1ms}
nodes:
  - {id: f, role: fusion}
  - {id: s1, role: sensor}
  - {id: s2, role: sensor}
links:
  - [s1, f]
  - [s2, f]
"""


class ToyConfig(ScenarioBase.__base__):  # the same strict base model as every block
    steps: int = Field(2, gt=0)
    epochs: int = Field(4, gt=0)


class ToyScenario(ScenarioBase):
    toy: ToyConfig = Field(default_factory=ToyConfig)
    variants: dict[str, VariantBase]


class ToyVariant(VariantBase):
    name: str


STOP: dict[str, object] = {}
"""``{"run": (variant, seed), "after": epoch}``: interrupt the toy run there (as Ctrl-C)."""
RESUMED: list[tuple[str, int, int]] = []


class ToyTrainer(Trainer):
    """Sends random tensors; its metric depends on a counter and a torch generator."""

    def __init__(self, loaded, topology):
        self.config = loaded.scenario.toy
        self.timelines = {
            v.name: build_timeline(topology, v.routing, 1e3, [], steps_per_epoch=self.config.steps,
                                   epochs=self.config.epochs)
            for v in loaded.variants
        }  # fmt: skip

    def steps_per_epoch(self, variant):
        return self.config.steps

    def epochs(self, variant):
        return self.config.epochs

    def train(self, variant, seed, transport, group, device, on_epoch, checkpoints=None):
        plan = self.timelines[variant].segments[0].plan
        generator = torch.Generator().manual_seed(seed)
        counter, metrics, first = 0, [], 0
        state = checkpoints.resume() if checkpoints is not None else None
        if state is not None:
            generator.set_state(state["rng"])
            counter, metrics, transport.log = state["counter"], state["metrics"], state["log"]
            first = state["epoch"] + 1
            RESUMED.append((variant, seed, state["epoch"]))
        for epoch in range(first, self.config.epochs):
            for step in range(self.config.steps):
                transport.log.begin("train", epoch, epoch * self.config.steps + step, 2)
                for src, dst in plan.edges:
                    width = 1 + int(torch.randint(4, (1,), generator=generator))
                    transport.send(torch.ones(2, width), src=src, dst=dst, phase="forward",
                                   payload="latent")  # fmt: skip
                    transport.recv(src=src, dst=dst, phase="forward", payload="latent",
                                   shape=(2, width))  # fmt: skip
                    counter += 1
                transport.log.end()
            mse = float(torch.rand((), generator=generator)) + counter
            metrics.append({"epoch": epoch, "mse": mse})
            if checkpoints is not None and checkpoints.due(epoch):
                state = {"epoch": epoch, "counter": counter, "log": transport.log,
                         "rng": generator.get_state(), "metrics": metrics}  # fmt: skip
                checkpoints.save(epoch, state)
            on_epoch(epoch)
            if STOP.get("run") == (variant, seed) and STOP.get("after") == epoch:
                raise KeyboardInterrupt
        return TrainResult(metrics=metrics, log=transport.log)


TOY = Family(
    name="toy_ckpt",
    scenario_model=ToyScenario,
    resolve_variants=lambda scenario, source, lines: [
        ToyVariant(name=name, **variant.model_dump()) for name, variant in scenario.variants.items()
    ],
    prepare=ToyTrainer,
    report=FamilyReport(
        variant_summary=lambda run, variant, seeds: {
            "mse_final": float(
                run.metrics[run.metrics.variant == variant].groupby("seed")["mse"].last().mean()
            )
        },
        metric_names=("mse",),
    ),
)


@pytest.fixture
def toy(tmp_path):
    """The toy family registered, and a toy scenario file: 2 variants x 2 seeds x 4 epochs."""
    FAMILIES.register(TOY.name, TOY)
    STOP.clear()
    RESUMED.clear()
    (tmp_path / "pair3.yaml").write_text(TOPOLOGY)
    scenario = tmp_path / "toy.yaml"
    scenario.write_text(
        "name: toy_run\nfamily: toy_ckpt\ntopology: pair3.yaml\nseeds: 2\n"
        "report: {figures: false}\n"
        "variants:\n  dense: {routing: dense}\n  tree: {routing: dijkstra}\n"
    )
    yield scenario
    FAMILIES._entries.pop(TOY.name, None)
    STOP.clear()


def _run(scenario: Path, out: Path, *options: str) -> int:
    return main(["--scenario", str(scenario), "--out", str(out), "--no-progress", *options])


def _same_files(got: Path, want: Path) -> None:
    for name in COMPARED:
        if name == "summary.json":
            assert json.loads((got / name).read_text()) == json.loads((want / name).read_text())
        assert (got / name).read_bytes() == (want / name).read_bytes(), name


def _stopped_toy_run(scenario: Path, out: Path) -> None:
    """The toy run interrupted after tree seed 0's epoch 1: dense seed 0 finished."""
    STOP.update(run=("tree", 0), after=1)
    assert _run(scenario, out, "--checkpoint-every", "1") == 130
    STOP.clear()
    assert not out.exists()
    assert (checkpoint_dir(out) / MANIFEST_FILE).is_file()


def test_an_interrupted_run_resumes_to_the_same_files(toy, tmp_path, capsys):
    assert _run(toy, tmp_path / "whole") == 0
    out = tmp_path / "stopped"
    _stopped_toy_run(toy, out)
    capsys.readouterr()
    assert main(["resume", str(out)]) == 0
    err = capsys.readouterr().err
    assert "skipped dense seed 0: finished before the run was stopped" in err
    assert "resumed tree seed 0 after epoch 2 of 4" in err
    assert RESUMED == [("tree", 0, 1)]  # the toy's own state came back through resume()
    _same_files(out, tmp_path / "whole")
    assert not checkpoint_dir(out).exists()  # removed once the run is complete


def test_checkpoints_every_k_epochs_keep_only_the_last_state(toy, tmp_path):
    out = tmp_path / "stopped"
    STOP.update(run=("dense", 1), after=2)
    assert _run(toy, out, "--set", "training.checkpoint_every=2") == 130
    manifest = json.loads((checkpoint_dir(out) / MANIFEST_FILE).read_text())
    assert [entry["run"] for entry in manifest["done"]] == [["dense", 0], ["tree", 0]]
    assert manifest["current"]["run"] == ["dense", 1] and manifest["current"]["epoch"] == 1
    names = sorted(path.name for path in checkpoint_dir(out).iterdir())
    assert names == ["manifest.json", "result-0.pt", "result-1.pt", "state-2-e1-r0.pt"]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_checkpoint_is_refused_with_one_line(toy, tmp_path, capsys, damage):
    out = tmp_path / "stopped"
    _stopped_toy_run(toy, out)
    folder = checkpoint_dir(out)
    target = folder / ("state-1-e1-r0.pt" if damage == "truncate" else "result-0.pt")
    data = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    else:
        target.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    capsys.readouterr()
    assert main(["resume", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and target.name in err and "damaged" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("change", "said"),
    [("world_size", "2 processes"), ("version", "innet 0.0.0"), ("scenario", "another scenario")],
)
def test_a_checkpoint_of_another_run_is_refused(toy, tmp_path, capsys, change, said):
    out = tmp_path / "stopped"
    _stopped_toy_run(toy, out)
    path = checkpoint_dir(out) / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    if change == "scenario":
        toy.write_text(toy.read_text().replace("seeds: 2", "seeds: 3"))
    else:
        manifest[change] = 2 if change == "world_size" else "0.0.0"
        path.write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["resume", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and said in err
    assert not out.exists()


def test_resume_without_a_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["resume", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no checkpoint to resume" in err


def test_a_fresh_run_does_not_overwrite_a_checkpoint_left_there(toy, tmp_path, capsys):
    out = tmp_path / "stopped"
    _stopped_toy_run(toy, out)
    capsys.readouterr()
    assert _run(toy, out, "--checkpoint-every", "1") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "resume" in err
    assert json.loads((checkpoint_dir(out) / MANIFEST_FILE).read_text())["current"]


def test_checkpoint_every_is_checked_and_kept_out_of_config(toy, tmp_path, capsys):
    assert _run(toy, tmp_path / "bad", "--checkpoint-every", "0") == 2
    assert "--checkpoint-every" in capsys.readouterr().err
    assert _run(toy, tmp_path / "ok", "--checkpoint-every", "3") == 0
    assert "checkpoint" not in (tmp_path / "ok" / "config.yaml").read_text()


MAIN_JOB = ["--scenario", "dense_vs_dijkstra", "--seeds", "1", "--set", "training.epochs=6",
            "--set", "report.figures=false"]  # fmt: skip


def _wait_and_kill(process: subprocess.Popen, manifest: Path, run: list, epoch: int) -> None:
    """SIGKILL ``process`` once its checkpoint shows ``run`` saved after ``epoch``."""
    while process.poll() is None:
        try:
            current = json.loads(manifest.read_text())["current"]
        except (OSError, ValueError):
            current = None
        if current and current["run"] == run and current["epoch"] >= epoch:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()


@pytest.mark.slow
def test_the_main_job_killed_at_a_random_epoch_resumes_to_identical_files(tmp_path):
    command = [sys.executable, str(REPO / "run_sim.py")]
    whole, out = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([*command, *MAIN_JOB, "--no-progress", "--out", str(whole)],
                   check=True, capture_output=True, cwd=tmp_path)  # fmt: skip
    choice = random.Random(22)
    run, epoch = [choice.choice(["dense", "dijkstra"]), 0], choice.randrange(5)
    process = subprocess.Popen([*command, *MAIN_JOB, "--checkpoint-every", "1", "--no-progress",
                                "--out", str(out)], cwd=tmp_path,
                               stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)  # fmt: skip
    _wait_and_kill(process, checkpoint_dir(out) / MANIFEST_FILE, run, epoch)
    assert process.returncode == -signal.SIGKILL and not out.exists()
    resumed = subprocess.run([*command, "resume", str(out)], capture_output=True, text=True,
                             cwd=tmp_path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {run[0]} seed 0 after epoch" in resumed.stderr
    _same_files(out, whole)
    pd.testing.assert_frame_equal(pd.read_csv(out / "metrics.csv"),
                                  pd.read_csv(whole / "metrics.csv"))  # fmt: skip
