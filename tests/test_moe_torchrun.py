"""The ``moe`` family under torchrun (2 gloo processes) gives the one-process numbers.

Tokens, outputs, gradients and migrated experts whose sources and destinations
are on different ranks cross the process boundary; every metric and every
exchange record must equal the one-process run's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_torchrun import ROOT, clean_env, free_port

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

TOPOLOGY = ROOT / "topologies" / "two_level16.yaml"
SCENARIO = f"""
name: moe_parity
family: moe
topology: {TOPOLOGY}
seeds: 1
moe:
  dataset: clusters
  n_samples: 300
  experts: 12
  top_k: 2
  layers: 2
  batch_size: 120
  epochs: 1
  balance_check: {{steps: 3, tokens: 64, gammas: [0.02]}}
variants:
  carl: {{router: {{kind: carl, lambda: 1, warm_start: 1, replace_every: 1}}}}
  ac: {{router: {{kind: ac}}}}
"""
KEY = ["variant", "seed", "epoch", "step", "phase", "src", "dst", "payload", "nbytes"]


def _run(command: list[str]) -> None:
    done = subprocess.run(command, cwd=ROOT, env=clean_env(), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def test_two_processes_give_the_one_process_numbers(tmp_path):
    scenario = tmp_path / "moe.yaml"
    scenario.write_text(SCENARIO)
    args = ["run_sim.py", "--scenario", str(scenario), "--no-progress", "--out"]
    _run([sys.executable, *args, str(tmp_path / "one")])
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
          f"--master_port={free_port()}", *args, str(tmp_path / "two")])  # fmt: skip
    one, two = Path(tmp_path / "one"), Path(tmp_path / "two")
    metrics = [pd.read_csv(d / "metrics.csv") for d in (one, two)]
    pd.testing.assert_frame_equal(metrics[0], metrics[1])
    records = [pd.read_parquet(d / "exchanges.parquet").sort_values(KEY).reset_index(drop=True)
               for d in (one, two)]  # fmt: skip
    pd.testing.assert_frame_equal(records[0], records[1])
    placement = json.loads((two / "placement.json").read_text())
    for variant in ("carl", "ac"):  # messages really crossed ranks
        assert placement["variants"][variant]["bytes_on_wire"]["0"] > 0
