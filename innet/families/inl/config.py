"""The scenario blocks of the ``inl`` family: data, node model, gate, training, variants.

An INL scenario adds to the blocks every scenario has (:mod:`innet.core.config`)
the dataset and how sensors see it (``data``: :class:`~innet.families.inl.inputs.DataConfig`,
beside its registries), the node modules (``model``), the gate every sending
node passes its latent through (``gate``), the wire formats of its messages
(``wire``, :mod:`innet.families.inl.wire`) and the training settings
(``training``). A variant names a routing and may override ``model``,
``gate``, ``wire`` and ``training``; :func:`resolve_variants` merges those
overrides into the scenario's blocks. Every choice among names (dataset,
views, aggregator, gate kind, wire format, optimiser, executor) is checked
against the registry of the code that implements it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from innet.core.config import ScenarioBase, TrainingBase, VariantBase, merge_variant_block
from innet.core.errors import ConfigError
from innet.core.yamlio import LineMap
from innet.families.inl.executors import EXECUTORS, OPTIMIZERS
from innet.families.inl.gates import GATES
from innet.families.inl.inputs import DATASETS, VIEWS, DataConfig
from innet.families.inl.modules import AGGREGATORS
from innet.families.inl.wire import (
    BACKWARD_FORMATS,
    FORWARD_FORMATS,
    forward_message_bytes,
    publishes_codebook,
)

__all__ = [
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


class ModelConfig(_Strict):
    latent_dim: int = Field(default=16, gt=0)
    hidden: int = Field(default=64, gt=0)
    aggregator: Annotated[str, AfterValidator(AGGREGATORS.check)] = "sum"


class GateConfig(_Strict):
    kind: Annotated[str, AfterValidator(GATES.check)] = "gaussian"
    beta: float = Field(default=0.0, ge=0)
    # discrete gate: a product codebook of `groups` groups (dividing latent_dim) of `codewords`
    # codewords each, groups * log2(codewords) bits per sample; its temperature goes
    # geometrically from `tau` (first epoch) to `tau_final` (last epoch; null: no annealing)
    codewords: int = Field(default=16, ge=2)
    groups: int = Field(default=1, ge=1)
    tau: float = Field(default=1.0, gt=0)
    tau_final: float | None = Field(default=None, gt=0)
    # `trained`: running means, data initialisation, dead-codeword restarts; `fixed`: the
    # seeded start, kept, with a commitment loss pulling the latents to it (inl.gates)
    codebook: Literal["trained", "fixed"] = "trained"
    # with the index and entropy wire formats (codeword indices on the wire), each sender
    # publishes its codebook to its parents on its first step, to a parent new after a plan
    # change and, when trained, every `codebook_sync` training steps; see docs/protocol.md
    # for the measured trade-off behind the default of 2
    codebook_sync: int = Field(default=2, gt=0, strict=True)
    # Gaussian gate: inputs of the seeded subsample the pairwise (Kolchinsky-Tracey) bracket
    # is computed on after the final epoch; 0: no bracket
    bracket_samples: int = Field(default=256, ge=0)


class WireConfig(_Strict):
    forward: Annotated[str, AfterValidator(FORWARD_FORMATS.check)] = "float32"
    backward: Annotated[str, AfterValidator(BACKWARD_FORMATS.check)] = "float32"


class TrainingConfig(TrainingBase):
    epochs: int = Field(default=10, gt=0)
    batch_size: int = Field(default=64, gt=0)
    eval_batch_size: int = Field(default=1024, gt=0)
    lr: float = Field(default=3e-3, gt=0)
    optimizer: Annotated[str, AfterValidator(OPTIMIZERS.check)] = "adam"
    executor: Annotated[str, AfterValidator(EXECUTORS.check)] = "auto"


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
    variants: dict[str, InlVariant]  # type: ignore[assignment]  # a dict of the base's subclass
    # the margin of the comparisons' equivalence tests (TOST on the paired accuracy
    # differences, innet.report.stats), as a fraction (0.02: two points); null: no test
    equivalence_margin: float | None = Field(default=None, gt=0, lt=1)


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
        codewords = self.gate.codewords if GATES.get(self.gate.kind).has_codebook else None
        payload = forward_message_bytes(
            self.wire.forward,
            self.training.batch_size,
            self.model.latent_dim,
            codewords,
            self.gate.groups,
        )
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
            )
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
        wire, kind = blocks["wire"].forward, blocks["gate"].kind
        if FORWARD_FORMATS.get(wire).needs_codebook and not GATES.get(kind).has_codebook:
            where = "wire" if "forward" in variant.wire else "gate"
            with_codebook = " or ".join(repr(known) for known, g in GATES.items() if g.has_codebook)
            raise ConfigError(
                f"the {wire!r} wire format sends codeword indices: it needs gate kind "
                f"{with_codebook}, not {kind!r}",
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


def tidy_config(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved INL scenario without the fields its choices do not use.

    A digits run keeps no Gaussian-mixture parameters, a Gaussian gate no codebook
    settings, and a discrete gate keeps ``codebook_sync`` only when it publishes a
    trained codebook (forward wire ``index`` or ``entropy``); validating the result
    again gives the same variants.
    """
    data = config.get("data")
    if isinstance(data, dict):
        config["data"] = _tidy_data(data)
    for block in [config, *config.get("variants", {}).values()]:
        gate, wire = block.get("gate"), block.get("wire") or {}
        if isinstance(gate, dict) and "kind" in gate:
            _tidy_gate(gate, wire.get("forward", WireConfig().forward))
    return config


def _tidy_data(data: dict[str, Any]) -> dict[str, Any]:
    """The data block without the fields of the datasets and views it does not choose."""
    unused = {
        field
        for choice, registry in (("dataset", DATASETS), ("views", VIEWS))
        for option, entry in registry.items()
        if option != data.get(choice)
        for field in entry.fields
    }
    return {key: value for key, value in data.items() if key not in unused}


def _tidy_gate(gate: dict[str, Any], wire_forward: str) -> None:
    """Drop the gate block's fields its kind does not use, and an unused ``codebook_sync``."""
    for name, kind in GATES.items():
        if name != gate["kind"]:
            for field in kind.config_fields:
                gate.pop(field, None)
    if not publishes_codebook(gate["kind"], wire_forward) or gate.get("codebook") == "fixed":
        gate.pop("codebook_sync", None)
