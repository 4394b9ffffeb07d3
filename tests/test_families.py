"""A second scenario family plugs in without touching the runner or the core report.

The family below is defined entirely inside this test: its own config block
(``toy:``), its own trainer (sensors send a constant tensor to their parent,
the parent answers with a gradient-sized tensor) and one report section. It
runs end to end through the command line, and the core report, records and
timing work for it as they do for in-network learning.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from pydantic import Field

from innet.app.cli import main
from innet.core.config import ScenarioBase, VariantBase
from innet.core.events import build_timeline
from innet.core.training import Trainer, TrainResult
from innet.core.transport import RecordingTransport
from innet.families import FAMILIES, Family
from innet.report.family import FamilyReport

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
  - [s1, s2]
"""


class ToyConfig(ScenarioBase.__base__):  # the same strict base model as every block
    width: int = Field(4, gt=0)
    steps: int = Field(3, gt=0)
    epochs: int = Field(2, gt=0)


class ToyScenario(ScenarioBase):
    toy: ToyConfig = Field(default_factory=ToyConfig)
    variants: dict[str, VariantBase]


class ToyVariant(VariantBase):
    name: str


class ToyTrainer(Trainer):
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

    def train(self, variant, seed, transport: RecordingTransport, group, device, on_epoch):
        plan = self.timelines[variant].segments[0].plan
        width, batch = self.config.width, 2
        metrics = []
        for epoch in range(self.config.epochs):
            for step in range(self.config.steps):
                transport.log.begin("train", epoch, epoch * self.config.steps + step, batch)
                for src, dst in plan.edges:
                    transport.send(torch.ones(batch, width), src=src, dst=dst,
                                   phase="forward", payload="latent")  # fmt: skip
                    got = transport.recv(src=src, dst=dst, phase="forward", payload="latent",
                                         shape=(batch, width))  # fmt: skip
                    transport.send(got * 0, src=dst, dst=src, phase="backward", payload="grad")
                    transport.recv(src=dst, dst=src, phase="backward", payload="grad",
                                   shape=(batch, width))  # fmt: skip
                transport.log.end()
            metrics.append({"epoch": epoch, "mse": 1.0 / (epoch + 1 + seed)})
            on_epoch(epoch)
        return TrainResult(metrics=metrics, log=transport.log)


def toy_section(run, summary):
    return "## Toy section\n\nfinal mse: " + ", ".join(
        f"{name} {variant['mse_final']:.3f}" for name, variant in summary["variants"].items()
    )


TOY = Family(
    name="toy",
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
        sections=(toy_section,),
        metric_names=("mse",),
    ),
)


@pytest.fixture
def toy_family():
    FAMILIES.register(TOY.name, TOY)
    yield TOY
    FAMILIES._entries.pop("toy", None)


def test_a_family_defined_in_a_test_runs_through_the_cli(tmp_path, toy_family, capsys):
    (tmp_path / "pair3.yaml").write_text(TOPOLOGY)
    (tmp_path / "toy.yaml").write_text(
        "name: toy_run\nfamily: toy\ntopology: pair3.yaml\nseeds: 2\n"
        "toy: {width: 4, steps: 3, epochs: 2}\n"
        "variants:\n  dense: {routing: dense}\n  tree: {routing: dijkstra}\n"
    )
    out = tmp_path / "run"
    assert main(["--scenario", str(tmp_path / "toy.yaml"), "--out", str(out), "--no-progress"]) == 0
    assert "mse" not in capsys.readouterr().err
    report = (out / "report.md").read_text()
    assert "## Toy section" in report and "## Busiest links" in report and "## Plans" in report
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns) == [
        "variant", "seed", "epoch", "mse", "train_bytes", "train_bytes_cum", "sim_time_s",
        "sim_time_cum_s", "lost_messages",
    ]  # fmt: skip
    exchanges = pd.read_parquet(out / "exchanges.parquet")
    # dense uses all 3 links, the tree 2: each step one forward and one backward per link
    per_step = exchanges[exchanges.phase != "eval"].groupby(["variant", "seed", "step"]).size()
    assert set(per_step.loc["dense"]) == {6} and set(per_step.loc["tree"]) == {4}
    assert set(exchanges.nbytes) == {2 * 4 * 4}
    # simulated time from the core network model: 32 B at 1 Mbps = 256 us, + 1 ms latency
    forward = exchanges[(exchanges.phase == "forward") & (exchanges.variant == "tree")]
    assert math.isclose((forward.t_end - forward.t_start).min(), 256e-6 + 1e-3, rel_tol=1e-9)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["family"] == "toy"
    assert summary["variants"]["tree"]["mse_final"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert summary["comparisons"][0]["exchange_reduction"] == pytest.approx(1 - 4 / 6)


def test_an_unknown_family_is_one_line_naming_the_field(tmp_path, capsys):
    (tmp_path / "pair3.yaml").write_text(TOPOLOGY)
    (tmp_path / "bad.yaml").write_text(
        "name: x\ntopology: pair3.yaml\nfamily: nope\nvariants: {a: {routing: dense}}\n"
    )
    assert main(["--scenario", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "family" in err and "'nope'" in err and ":3" in err
    assert not (tmp_path / "r").exists()
