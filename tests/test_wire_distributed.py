"""Wire formats under two processes: the same bytes and the same numbers as in one.

The kite smoke run with a product-codebook discrete gate whose codeword
indices are entropy-coded forward (messages whose size only the sender knows)
and int8 gradients backward, once in one process and once under torchrun
with two gloo processes: every exchange record (bytes included) and every
metric must match.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from test_torchrun import KITE, RECORD_KEY, assert_ok, run, smoke_args, torchrun_command

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

WIRE = [
    "--set", "gate.kind=discrete", "--set", "gate.groups=2", "--set", "gate.tau_final=0.5",
    "--set", "wire.forward=entropy", "--set", "wire.backward=int8",
]  # fmt: skip


def test_entropy_and_int8_messages_match_one_process(tmp_path: Path) -> None:
    kite = tmp_path / "kite.yaml"
    kite.write_text(KITE)
    one, two = tmp_path / "one", tmp_path / "two"
    assert_ok(run([sys.executable, "run_sim.py", *smoke_args(kite, one), *WIRE]))
    assert_ok(run(torchrun_command(2, *smoke_args(kite, two), *WIRE)))
    expected = pd.read_parquet(one / "exchanges.parquet")[RECORD_KEY]
    got = pd.read_parquet(two / "exchanges.parquet")[RECORD_KEY]
    latents = expected[expected["payload"] == "latent"]
    assert len(latents) > 0 and latents["nbytes"].nunique() > 1  # coder-sized messages
    assert got.values.tolist() == expected.values.tolist()
    key = ["variant", "seed", "epoch"]
    metrics_one = pd.read_csv(one / "metrics.csv").sort_values(key)
    metrics_two = pd.read_csv(two / "metrics.csv").sort_values(key)
    for column in ("train_loss", "accuracy", "latent_rate_bits", "train_bytes"):
        assert metrics_two[column].to_numpy() == pytest.approx(
            metrics_one[column].to_numpy(), abs=1e-5
        ), column
    # the reported rate is the groups' summed information, within 2 x 4 bits per sender
    senders = pd.read_csv(one / "node_rates.csv").groupby(["variant", "seed"])["node"].count()
    final = metrics_one[metrics_one["epoch"] == metrics_one["epoch"].max()]
    ceilings = final.set_index(["variant", "seed"])["rate_ceiling_bits"]
    assert (ceilings == 8 * senders.reindex(ceilings.index)).all()
    assert (final["latent_rate_bits"] <= final["rate_ceiling_bits"]).all()
