"""The scenario blocks of the ``inl`` family: data, node model, gate, training, variants.

An INL scenario adds to the blocks every scenario has (:mod:`innet.core.config`)
the dataset and how sensors see it (``data``), the node modules (``model``),
the gate every sending node passes its latent through (``gate``), the wire
formats of its messages (``wire``, :mod:`innet.families.inl.wire`) and the training
settings (``training``). A variant names a routing and may override
``model``, ``gate``, ``wire`` and ``training``; :func:`resolve_variants`
merges those overrides into the scenario's blocks. Every choice among names (dataset,
views, aggregator, gate kind, optimiser) is checked against the registry of
the code that implements it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from innet.core.config import ScenarioBase, VariantBase, merge_variant_block, registered
from innet.core.errors import ConfigError
from innet.core.yamlio import LineMap

__all__ = [
    "DataConfig",
    "ModelConfig",
    "GateConfig",
    "WireConfig",
    "TrainingConfig",
    "InlVariant",
    "InlScenario",
    "ResolvedVariant",
    "resolve_variants",
    "tidy_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    dataset: Annotated[
        str, AfterValidator(registered("dataset", "innet.families.inl.inputs", "DATASETS"))
    ] = "digits"
    views: Annotated[
        str, AfterValidator(registered("views", "innet.families.inl.inputs", "VIEWS"))
    ] = "split"
    test_fraction: float = Field(0.2, gt=0, lt=1)
    snr_db: float | list[float] = 10.0
    n_samples: int = Field(5000, gt=0)
    n_features: int = Field(64, gt=0)
    n_classes: int = Field(10, ge=2)
    class_sep: float = Field(2.0, gt=0)
    path: str | None = None
    limit: int | None = Field(None, gt=0)


class ModelConfig(_Strict):
    latent_dim: int = Field(16, gt=0)
    hidden: int = Field(64, gt=0)
    aggregator: Annotated[
        str, AfterValidator(registered("aggregator", "innet.families.inl.modules", "AGGREGATORS"))
    ] = "sum"


class GateConfig(_Strict):
    kind: Annotated[
        str, AfterValidator(registered("gate kind", "innet.families.inl.gates", "GATE_KINDS"))
    ] = "gaussian"
    beta: float = Field(0.0, ge=0)
    # discrete gate: a product codebook of `groups` groups (dividing latent_dim) of `codewords`
    # codewords each, groups * log2(codewords) bits per sample; its temperature goes
    # geometrically from `tau` (first epoch) to `tau_final` (last epoch; null: no annealing)
    codewords: int = Field(16, ge=2)
    groups: int = Field(1, ge=1)
    tau: float = Field(1.0, gt=0)
    tau_final: float | None = Field(None, gt=0)
    # `trained`: running means, data initialisation, dead-codeword restarts; `fixed`: the
    # seeded start, kept, with a commitment loss pulling the latents to it (inl.gates)
    codebook: Literal["trained", "fixed"] = "trained"
    # with the index and entropy wire formats (codeword indices on the wire), each sender
    # publishes its codebook to its parents on its first step, to a parent new after a plan
    # change and, when trained, every `codebook_sync` training steps; see docs/protocol.md
    # for the measured trade-off behind the default of 2
    codebook_sync: int = Field(2, gt=0, strict=True)
    # Gaussian gate: inputs of the seeded subsample the pairwise (Kolchinsky-Tracey) bracket
    # is computed on after the final epoch; 0: no bracket
    bracket_samples: int = Field(256, ge=0)


class WireConfig(_Strict):
    forward: Annotated[
        str,
        AfterValidator(
            registered("forward wire format", "innet.families.inl.wire", "FORWARD_FORMATS")
        ),
    ] = "float32"
    backward: Annotated[
        str,
        AfterValidator(
            registered("backward wire format", "innet.families.inl.wire", "BACKWARD_FORMATS")
        ),
    ] = "float32"


class TrainingConfig(_Strict):
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(64, gt=0)
    eval_batch_size: int = Field(1024, gt=0)
    lr: float = Field(3e-3, gt=0)
    optimizer: Annotated[
        str, AfterValidator(registered("optimizer", "innet.families.inl.executors", "OPTIMIZERS"))
    ] = "adam"
    executor: Annotated[
        str, AfterValidator(registered("executor", "innet.families.inl.executors", "EXECUTORS"))
    ] = "auto"


class InlVariant(VariantBase):
    gate: dict[str, Any] = Field(default_factory=dict)
    wire: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)


class InlScenario(ScenarioBase):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    wire: WireConfig = Field(default_factory=WireConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    variants: dict[str, InlVariant]
    # the margin of the comparisons' equivalence tests (TOST on the paired accuracy
    # differences, innet.report.stats), as a fraction (0.02: two points); null: no test
    equivalence_margin: float | None = Field(None, gt=0, lt=1)


class ResolvedVariant(BaseModel):
    """A variant with its overrides merged into the scenario's blocks."""

    name: str
    routing: str
    hop_cost_s: float = 0.0
    model: ModelConfig
    gate: GateConfig
    training: TrainingConfig
    wire: WireConfig = Field(default_factory=WireConfig)

    def forward_message_bits(self, header_bytes: int = 0) -> int:
        """Bits of one training forward message of a full batch in the forward wire format.

        ``float32``: ``batch × latent_dim × 32``; half precision 16 bits a
        value; ``int8`` 8 bits a value plus the 32-bit scale; ``index``
        ``ceil(batch × groups × ceil(log2 K) / 8)`` bytes; ``entropy`` (whose size
        only the coder knows) is counted as the symbols it codes.
        """
        from innet.families.inl.wire import message_bits_per_sample

        batch = self.training.batch_size
        codewords = self.gate.codewords if self.gate.kind == "discrete" else None
        per_sample = message_bits_per_sample(
            self.wire.forward, self.model.latent_dim, codewords, self.gate.groups
        )
        payload = math.ceil(batch * per_sample / 8)
        if self.wire.forward == "int8" or (self.wire.forward == "entropy" and codewords is None):
            payload += 4  # the scale
        return 8 * (payload + header_bytes)


_OVERRIDABLE = (
    ("model", ModelConfig),
    ("gate", GateConfig),
    ("wire", WireConfig),
    ("training", TrainingConfig),
)


def resolve_variants(
    scenario: InlScenario, source: Path | None = None, lines: LineMap | None = None
) -> list[ResolvedVariant]:
    """Merge each variant's overrides into the scenario's model, gate and training blocks."""
    resolved = []
    for name, variant in scenario.variants.items():
        blocks = {
            block: merge_variant_block(
                model_type,
                getattr(scenario, block),
                getattr(variant, block),
                variant=name,
                block=block,
                source=source,
                lines=lines,
            )  # fmt: skip
            for block, model_type in _OVERRIDABLE
        }
        if blocks["model"].latent_dim % blocks["gate"].groups:
            raise ConfigError(
                f"gate.groups ({blocks['gate'].groups}) must divide model.latent_dim "
                f"({blocks['model'].latent_dim})",
                file=source,
                field=f"variants.{name}.gate.groups",
                line=lines.line(("variants", name)) if lines else None,
            )
        if blocks["wire"].forward == "index" and blocks["gate"].kind != "discrete":
            where = "wire" if "forward" in variant.wire else "gate"
            raise ConfigError(
                f"the 'index' wire format sends codeword indices: it needs gate kind "
                f"'discrete', not {blocks['gate'].kind!r}",
                file=source,
                field=f"variants.{name}.{where}",
                line=lines.line(("variants", name)) if lines else None,
            )
        resolved.append(
            ResolvedVariant(
                name=name, routing=variant.routing, hop_cost_s=variant.hop_cost_s, **blocks
            )
        )
    return resolved


_DATA_FIELDS = {  # the data fields each choice uses; the others are left out of config.yaml
    "dataset": {
        "digits": (),
        "gaussian_mixture": ("n_samples", "n_features", "n_classes", "class_sep"),
        "idx": ("path", "limit"),
    },
    "views": {"split": (), "noisy": ("snr_db",)},
}
_GATE_FIELDS = {
    "discrete": ("codewords", "groups", "tau", "tau_final", "codebook", "codebook_sync"),
    "gaussian": ("bracket_samples",),
}


def tidy_config(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved INL scenario without the fields its choices do not use.

    A digits run keeps no Gaussian-mixture parameters, a Gaussian gate no codebook
    settings, and a discrete gate keeps ``codebook_sync`` only when it publishes a
    trained codebook (forward wire ``index`` or ``entropy``); validating the result
    again gives the same variants.
    """
    data = config.get("data")
    if isinstance(data, dict):
        unused = {
            name
            for choice, fields in _DATA_FIELDS.items()
            for option, names in fields.items()
            if option != data.get(choice)
            for name in names
        }
        config["data"] = {key: value for key, value in data.items() if key not in unused}
    from innet.families.inl.wire import (
        publishes_codebook,  # imported late: the wire codecs load torch
    )

    blocks = [config] + list(config.get("variants", {}).values())
    for block in blocks:
        gate, wire = block.get("gate"), block.get("wire") or {}
        if isinstance(gate, dict) and "kind" in gate:
            for kind, names in _GATE_FIELDS.items():
                if gate["kind"] != kind:
                    for name in names:
                        gate.pop(name, None)
            forward = wire.get("forward", WireConfig().forward)
            if not publishes_codebook(gate["kind"], forward) or gate.get("codebook") == "fixed":
                gate.pop("codebook_sync", None)
    return config
