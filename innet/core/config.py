"""Scenarios: what to run, as a YAML file validated into typed models.

A scenario names its *family* (``inl``, in-network learning, by default), a
topology, the network options, the events during training, the *variants* to
compare (each a routing plus the overrides its family allows), the seeds, and
which pairs of variants to compare. Everything else belongs to the family: the
``inl`` family adds the dataset and its views, the node model, the gate and
the training settings (:mod:`innet.families.inl.config`). ``--set a.b=value``
overrides any field before validation. The resolved scenario (with every
default filled in) is saved with each run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from innet.core.errors import ConfigError
from innet.core.placement import PLACEMENTS
from innet.core.plans import ROUTINGS
from innet.core.topology.order import node_key
from innet.core.units import parse_duration, parse_flops
from innet.core.yamlio import FieldError, LineMap, config_error_from_validation

__all__ = [
    "ScenarioBase",
    "VariantBase",
    "EventConfig",
    "EVENT_ACTIONS",
    "NetworkConfig",
    "DistributedConfig",
    "ReportConfig",
    "TrainingBase",
    "check_comparisons",
    "link_name",
    "LoadedScenario",
    "Measured",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NetworkConfig(_Strict):
    header_bytes: int = Field(default=0, ge=0)
    tx_ports: int | None = Field(default=None, gt=0)
    compute: bool = True
    # fifo: one message at a time per link direction; flow: max-min fair sharing
    model: Literal["fifo", "flow"] = "fifo"
    bandwidth_factor: float = Field(default=1.0, gt=0)  # the flow model's efficiency factors
    latency_factor: float = Field(default=1.0, gt=0)
    # FLOP/s per node, over the topology's `compute`: {"*": 2GFLOPS, r3: 50MFLOPS}
    node_flops: dict[str, str | float] = Field(default_factory=dict)

    @field_validator("node_flops")
    @classmethod
    def _parse_flops(cls, value: dict[str, str | float]) -> dict[str, str | float]:
        for node, flops in value.items():
            try:
                if parse_flops(flops) <= 0:
                    raise ValueError(f"{node}: FLOP/s must be positive, got {flops!r}")
            except ValueError as error:
                raise ValueError(f"{node}: {error}") from None
        return value


class DistributedConfig(_Strict):
    """How nodes are spread over torch.distributed ranks (used only under torchrun)."""

    placement: Annotated[str, AfterValidator(PLACEMENTS.check)] = "partition"
    map: dict[str, int] | None = None  # node -> rank, for placement: explicit
    timeout_s: float = Field(default=60.0, gt=0)


class TraceConfig(_Strict):
    """Which steps go into trace.json (innet.report.trace); None: every variant, the first seed,
    each one's first and last training step."""

    variants: list[str] | None = None
    seeds: list[int] | None = None
    steps: list[Annotated[int, Field(ge=0)]] | None = None


class ReportConfig(_Strict):
    figures: bool = True  # draw figures/*.png
    exchanges_csv: bool = False  # also write exchanges.csv (large: the Parquet file has it all)
    trace: TraceConfig | None = None  # write trace.json (Perfetto) and figures/timeline_*.png


class VariantBase(_Strict):
    """One arm of a comparison: a routing (a plan builder of :mod:`innet.core.plans`).

    A scenario family extends it with the blocks a variant may override.
    """

    routing: Annotated[str, AfterValidator(ROUTINGS.check)]
    # a per-hop term in the capacity-aware tree's link weight, in seconds (or "1ms")
    hop_cost_s: Annotated[float, BeforeValidator(parse_duration)] = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _hop_cost_for_dijkstra(self) -> VariantBase:
        if self.hop_cost_s and self.routing != "dijkstra":
            raise ValueError(f"hop_cost_s applies to the dijkstra routing, not {self.routing!r}")
        return self


EVENT_ACTIONS = ("link_down", "link_up", "node_down", "node_up", "link")
"""What an event does; exactly one per event (see :mod:`innet.core.events`)."""


class EventTime(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epoch: int = Field(ge=0)
    step: int = Field(0, ge=0)


class EventConfig(BaseModel):
    """One event of a scenario's ``events:`` list."""

    model_config = ConfigDict(extra="forbid")
    at: EventTime
    link_down: tuple[str, str] | Literal["busiest"] | None = None
    link_up: tuple[str, str] | None = None
    node_down: str | None = None
    node_up: str | None = None
    link: tuple[str, str] | None = None
    capacity: str | float | None = None
    latency: str | float | None = None

    @model_validator(mode="after")
    def _one_action(self) -> EventConfig:
        given = [name for name in EVENT_ACTIONS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"an event needs exactly one of {', '.join(EVENT_ACTIONS)}")
        if self.link is not None and self.capacity is None and self.latency is None:
            raise ValueError("a `link:` event needs capacity and/or latency")
        if self.link is None and (self.capacity is not None or self.latency is not None):
            raise ValueError("capacity/latency belong to a `link: [a, b]` event")
        return self

    def describe(self, resolved_link: frozenset[str] | None = None) -> str:
        """A short human description, e.g. ``link_down r1-f``."""
        if self.link_down is not None:
            pair = resolved_link or frozenset(self.link_down)
            suffix = " (busiest)" if self.link_down == "busiest" else ""
            return f"link_down {link_name(pair)}{suffix}"
        if self.link_up is not None:
            return f"link_up {link_name(frozenset(self.link_up))}"
        if self.node_down is not None:
            return f"node_down {self.node_down}"
        if self.node_up is not None:
            return f"node_up {self.node_up}"
        assert self.link is not None
        changes = []
        if self.capacity is not None:
            changes.append(f"capacity {self.capacity}")
        if self.latency is not None:
            changes.append(f"latency {self.latency}")
        return f"link {link_name(frozenset(self.link))}: {', '.join(changes)}"


def link_name(link: frozenset[str]) -> str:
    return "-".join(sorted(link, key=node_key))


class TrainingBase(_Strict):
    """The ``training:`` settings every family has (a family's own block extends it).

    ``checkpoint_every``: save a checkpoint every K epochs (``--checkpoint-every``;
    see docs/checkpoints.md); None: no checkpoints. It says how a run is carried
    out, not what it computes, so the resolved scenario (``config.yaml``) leaves
    it out: a run with checkpoints and one without save the same scenario.
    """

    checkpoint_every: int | None = Field(default=None, gt=0, exclude=True)


class ScenarioBase(_Strict):
    """What every scenario has, whatever its family: the network, the runs and the report.

    A family (``family:``; the loader fills in :data:`innet.families.DEFAULT_FAMILY`
    when a scenario names none) adds its own blocks and the type of its variants
    (see :mod:`innet.families`).
    """

    name: str
    description: str = ""
    family: str
    topology: str
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    events: list[EventConfig] = Field(default_factory=list)
    training: TrainingBase = Field(default_factory=TrainingBase)
    variants: dict[str, VariantBase]
    seeds: int | list[int] = 5
    comparisons: list[tuple[str, str]] = Field(default_factory=list)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @field_validator("variants")
    @classmethod
    def _some_variants(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("at least one variant is needed")
        return value

    @field_validator("variants")
    @classmethod
    def _checkpoints_per_scenario(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, variant in value.items():
            if "checkpoint_every" in (getattr(variant, "training", None) or {}):
                raise ValueError(
                    f"{name}: training.checkpoint_every is set for the whole scenario, "
                    "not per variant"
                )
        return value

    @field_validator("seeds")
    @classmethod
    def _positive_seeds(cls, value: int | list[int]) -> int | list[int]:
        if isinstance(value, int) and value < 1:
            raise ValueError("seeds must be a positive count or a list of seeds")
        if isinstance(value, list) and not value:
            raise ValueError("the list of seeds is empty")
        return value

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


def merge_variant_block(
    model: type[BaseModel],
    base: BaseModel,
    overrides: dict[str, Any],
    *,
    variant: str,
    block: str,
    source: Path | None = None,
    lines: LineMap | None = None,
) -> Any:
    """A scenario block (``base``) with one variant's ``overrides`` of it, validated.

    Errors name ``variants.VARIANT.BLOCK.FIELD`` and the variant's line in ``source``.
    """
    try:
        return model(**{**base.model_dump(by_alias=True), **overrides})
    except ValidationError as error:
        inner = config_error_from_validation(
            error,
            model=model,
            file=source,
            lines=lines.within("variants", variant, block) if lines else None,
        )
        raise ConfigError(
            inner.message,
            file=source,
            field=f"variants.{variant}.{block}.{inner.field}",
            line=inner.line,
        ) from None


def check_comparisons(
    scenario: ScenarioBase, source: Path | None = None, lines: LineMap | None = None
) -> None:
    """Every side of every comparison, and every variant ``report.trace`` selects, names a
    variant (one located error otherwise)."""
    for index, pair in enumerate(scenario.comparisons):
        for position, side in enumerate(pair):
            if side not in scenario.variants:
                raise FieldError(
                    ("comparisons", index, position),
                    f"unknown variant {side!r} (variants: {', '.join(scenario.variants)})",
                ).located(file=source, lines=lines)
    trace = scenario.report.trace
    for index, name in enumerate((trace.variants or []) if trace is not None else []):
        if name not in scenario.variants:
            raise FieldError(
                ("report", "trace", "variants", index),
                f"unknown variant {name!r} (variants: {', '.join(scenario.variants)})",
            ).located(file=source, lines=lines)


@dataclass
class LoadedScenario:
    """A validated scenario, where it came from, its topology file and its resolved variants.

    ``variants`` are the family's resolved variants (each has a ``name`` and a
    ``routing``), in the order the scenario lists them.
    """

    scenario: ScenarioBase
    path: Path
    topology_path: Path
    variants: list[Any]
    lines: LineMap | None = None
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    """The file's ``sweep:`` block, ``{dotted key: [values]}`` (see :mod:`innet.app.sweeps`)."""
    measured: Measured | None = None
    """The file's ``measured:`` block: how long the scenario as shipped took, and where."""

    @property
    def runs(self) -> tuple[int, int, int]:
        """(variants, seeds, sweep points): the trainings a run of this scenario makes."""
        points = 1
        for values in self.sweep.values():
            points *= len(values)
        return len(self.variants), len(self.scenario.seed_list), points

    def located(self, error: FieldError) -> ConfigError:
        """A problem found later (e.g. in the data block) as an error naming this file's line."""
        return error.located(file=self.path, lines=self.lines)


class Measured(_Strict):
    """A scenario file's ``measured:`` block, shown by ``--list``.

    ``wall_s``: the wall-clock seconds the scenario took as shipped (``python
    run_sim.py --scenario NAME``, no options), from a fresh clone; ``machine``:
    what it ran on, in words (cores, architecture, whether it was quiet).
    """

    wall_s: float = Field(gt=0, allow_inf_nan=False)
    machine: str = Field(min_length=1)
