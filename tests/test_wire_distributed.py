"""Wire formats under two processes: the same bytes and the same numbers as in one.

The kite smoke run with a product-codebook discrete gate whose codeword
indices go forward (entropy-coded: messages whose size only the sender
knows; or packed) and int8 gradients backward, once in one process and once
under torchrun with two gloo processes: every exchange record (bytes
included) and every metric must match. Each sender publishes its trained
codebook every 3 steps: the copies its parents decode with cross the process
boundary.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from test_torchrun import (
    HEADER_BYTES,
    KITE,
    RECORD_KEY,
    assert_ok,
    run,
    smoke_args,
    torchrun_command,
)

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

CODEWORDS, LATENT_DIM, SYNC = 16, 4, 3  # smoke: latent_dim 4


def wire(forward: str) -> list[str]:
    return [
        "--set", "gate.kind=discrete", "--set", "gate.groups=2", "--set", "gate.tau_final=0.5",
        "--set", f"gate.codebook_sync={SYNC}",
        "--set", f"wire.forward={forward}", "--set", "wire.backward=int8",
    ]  # fmt: skip


@pytest.mark.parametrize("forward", ["entropy", "index"])
def test_index_messages_and_codebooks_match_one_process(tmp_path: Path, forward: str) -> None:
    kite = tmp_path / "kite.yaml"
    kite.write_text(KITE)
    one, two = tmp_path / "one", tmp_path / "two"
    assert_ok(run([sys.executable, "run_sim.py", *smoke_args(kite, one), *wire(forward)]))
    assert_ok(run(torchrun_command(2, *smoke_args(kite, two), *wire(forward))))
    expected = pd.read_parquet(one / "exchanges.parquet")[RECORD_KEY]
    got = pd.read_parquet(two / "exchanges.parquet")[RECORD_KEY]
    latents = expected[expected["payload"] == "latent"]
    if forward == "entropy":
        assert len(latents) > 0 and latents["nbytes"].nunique() > 1  # coder-sized messages
    # codebooks: float32 [groups, K, dim / groups] on the first step and every SYNC-th,
    # one per (sender, parent) of the step's plan
    books = expected[expected["phase"] == "codebook"]
    assert set(books["nbytes"]) == {4 * CODEWORDS * LATENT_DIM + HEADER_BYTES}
    for (variant, seed), rows in expected.groupby(["variant", "seed"]):
        train = rows[rows["phase"] == "forward"]
        links = train[train["step"] == 0][["src", "dst"]].drop_duplicates()
        sync_steps = [s for s in sorted(train["step"].unique()) if s % SYNC == 0]
        mine = books[(books["variant"] == variant) & (books["seed"] == seed)]
        assert sorted(mine["step"].unique()) == sync_steps and len(sync_steps) > 1
        assert len(mine) == len(links) * len(sync_steps)
    assert got.values.tolist() == expected.values.tolist()
    key = ["variant", "seed", "epoch"]
    metrics_one = pd.read_csv(one / "metrics.csv").sort_values(key)
    metrics_two = pd.read_csv(two / "metrics.csv").sort_values(key)
    for column in ("train_loss", "accuracy", "latent_rate_bits", "train_bytes"):
        assert metrics_two[column].to_numpy() == pytest.approx(
            metrics_one[column].to_numpy(), abs=1e-5
        ), column
    # the training exchange counts the codebooks
    train_bytes = expected[expected["phase"] != "eval"].groupby(key)["nbytes"].sum()
    assert metrics_one.set_index(key)["train_bytes"].to_dict() == train_bytes.to_dict()
    # the reported rate is the groups' summed information, within 2 x 4 bits per sender
    senders = pd.read_csv(one / "node_rates.csv").groupby(["variant", "seed"])["node"].count()
    final = metrics_one[metrics_one["epoch"] == metrics_one["epoch"].max()]
    ceilings = final.set_index(["variant", "seed"])["rate_ceiling_bits"]
    assert (ceilings == 8 * senders.reindex(ceilings.index)).all()
    assert (final["latent_rate_bits"] <= final["rate_ceiling_bits"]).all()
