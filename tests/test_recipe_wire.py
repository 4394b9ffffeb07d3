"""The recipe "add a wire format", tested: a toy format registered from here runs end to end.

A wire format is one :class:`~innet.families.inl.wire.WireFormat` registered
in :data:`~innet.families.inl.wire.FORWARD_FORMATS` (and
:data:`~innet.families.inl.wire.BACKWARD_FORMATS` for gradients); nothing
else is edited. The toy format ``float64`` sends every value as a float64,
so every message is exactly twice the bytes of the same message in float32.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import innet
from innet.core.errors import ConfigError
from innet.families.inl.wire import BACKWARD_FORMATS, FORWARD_FORMATS, Codec, WireFormat

ROOT = Path(__file__).resolve().parent.parent


class Float64Format(WireFormat):
    """Values sent as float64: 8 bytes each."""

    def bits_per_value(self) -> int:
        return 64

    def announce(self, codec: Codec, batch: int) -> tuple[tuple[int, ...], torch.dtype]:
        return (batch, codec.dim), torch.float64

    def encode(
        self,
        codec: Codec,
        values: torch.Tensor,
        index: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        return values.double()

    def decode(
        self, codec: Codec, message: torch.Tensor, batch: int, codebook: torch.Tensor | None
    ) -> torch.Tensor:
        return message.float()


@pytest.fixture
def float64_format() -> Iterator[None]:
    """The toy format, registered both ways for one test and removed afterwards."""
    toy = Float64Format()
    FORWARD_FORMATS.register("float64", toy)
    BACKWARD_FORMATS.register("float64", toy)
    try:
        yield
    finally:
        FORWARD_FORMATS.unregister("float64")
        BACKWARD_FORMATS.unregister("float64")


def scenario() -> dict[str, Any]:
    return {
        "name": "recipe_wire",
        "topology": str(ROOT / "topologies" / "diamond.yaml"),
        "data": {
            "dataset": "gaussian_mixture",
            "n_samples": 120,
            "n_features": 8,
            "n_classes": 3,
            "views": "split",
        },
        "model": {"latent_dim": 4, "hidden": 8},
        "gate": {"kind": "none"},
        "training": {"epochs": 1, "batch_size": 32, "executor": "per_node"},
        "variants": {
            "single": {"routing": "dense"},
            "double": {"routing": "dense", "wire": {"forward": "float64", "backward": "float64"}},
        },
        "seeds": 1,
    }


def test_a_wire_format_registered_from_a_test_doubles_the_bytes(float64_format: None) -> None:
    exchanges = innet.run(scenario(), progress=False).exchanges
    by_variant = exchanges.groupby(["variant", "phase"])["nbytes"].sum()
    for phase in ("forward", "backward", "eval"):
        assert by_variant["single", phase] > 0
        assert by_variant["double", phase] == 2 * by_variant["single", phase]


def test_the_toy_format_is_gone_after_its_test() -> None:
    assert "float64" not in FORWARD_FORMATS and "float64" not in BACKWARD_FORMATS
    with pytest.raises(ConfigError, match="unknown forward wire format 'float64'"):
        innet.run(scenario(), progress=False)
