"""Scenarios: what to run, as a YAML file validated into typed models.

A scenario names a topology, a dataset and how it is split into views, the
node model, the gate, the training settings, the network options and the
*variants* to compare (each a routing plus optional overrides of the gate,
model or training blocks), the seeds, and which pairs of variants to compare.
``--set a.b=value`` overrides any field before validation. The resolved
scenario (with every default filled in) is saved with each run.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from innet.errors import ConfigError, InnetError
from innet.events import EventConfig
from innet.units import parse_flops
from innet.yamlio import FieldError, LineMap, config_error_from_validation, read_yaml

__all__ = [
    "Scenario",
    "Variant",
    "ResolvedVariant",
    "load_scenario",
    "LoadedScenario",
    "find_scenario",
    "list_scenarios",
    "apply_overrides",
    "SCENARIO_DIRS",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCENARIO_DIRS = (Path("scenarios"), PROJECT_ROOT / "scenarios")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    dataset: Literal["digits", "gaussian_mixture", "idx"] = "digits"
    views: Literal["split", "noisy"] = "split"
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
    aggregator: Literal["sum", "mean", "concat"] = "sum"


class GateConfig(_Strict):
    kind: Literal["none", "gaussian", "discrete"] = "gaussian"
    beta: float = Field(0.0, ge=0)
    codewords: int = Field(16, ge=2)
    tau: float = Field(1.0, gt=0)


class TrainingConfig(_Strict):
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(64, gt=0)
    eval_batch_size: int = Field(1024, gt=0)
    lr: float = Field(3e-3, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"


class NetworkConfig(_Strict):
    header_bytes: int = Field(0, ge=0)
    tx_ports: int | None = Field(None, gt=0)
    compute: bool = True
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

    placement: Literal["one_per_rank", "round_robin", "partition", "explicit"] = "partition"
    map: dict[str, int] | None = None  # node -> rank, for placement: explicit
    timeout_s: float = Field(60.0, gt=0)


class ReportConfig(_Strict):
    figures: bool = True


class Variant(_Strict):
    routing: Literal["dense", "dijkstra", "hop", "maxcap"]
    gate: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)


class Scenario(_Strict):
    name: str
    description: str = ""
    topology: str
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    events: list[EventConfig] = Field(default_factory=list)
    variants: dict[str, Variant]
    seeds: int | list[int] = 5
    comparisons: list[tuple[str, str]] = Field(default_factory=list)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @field_validator("variants")
    @classmethod
    def _some_variants(cls, value: dict[str, Variant]) -> dict[str, Variant]:
        if not value:
            raise ValueError("at least one variant is needed")
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


class ResolvedVariant(BaseModel):
    """A variant with its overrides merged into the scenario's blocks."""

    name: str
    routing: str
    model: ModelConfig
    gate: GateConfig
    training: TrainingConfig

    def forward_message_bits(self, header_bytes: int = 0) -> int:
        """Bits of one training forward message (float32 latents of a full batch)."""
        return 8 * (self.training.batch_size * self.model.latent_dim * 4 + header_bytes)


def resolve_variants(
    scenario: Scenario, source: Path | None = None, lines: LineMap | None = None
) -> list[ResolvedVariant]:
    """Merge each variant's overrides into the scenario's model, gate and training blocks."""
    resolved = []
    for name, variant in scenario.variants.items():
        blocks = {}
        for block, model_type in (
            ("model", ModelConfig),
            ("gate", GateConfig),
            ("training", TrainingConfig),
        ):
            merged = {**getattr(scenario, block).model_dump(), **getattr(variant, block)}
            try:
                blocks[block] = model_type(**merged)
            except ValidationError as error:
                inner = config_error_from_validation(
                    error,
                    model=model_type,
                    file=source,
                    lines=lines.within("variants", name, block) if lines else None,
                )
                raise ConfigError(
                    inner.message,
                    file=source,
                    field=f"variants.{name}.{block}.{inner.field}",
                    line=inner.line,
                ) from None
        resolved.append(ResolvedVariant(name=name, routing=variant.routing, **blocks))
    for index, pair in enumerate(scenario.comparisons):
        for position, side in enumerate(pair):
            if side not in scenario.variants:
                raise FieldError(
                    ("comparisons", index, position),
                    f"unknown variant {side!r} (variants: {', '.join(scenario.variants)})",
                ).located(file=source, lines=lines)
    return resolved


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to a raw scenario mapping."""
    result = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("expected KEY=VALUE, e.g. training.epochs=3", field=f"--set {item}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        target = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = target.get(part)
            if child is None:
                child = target[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{part!r} is not a mapping", field=f"--set {key}")
            target = child
        target[parts[-1]] = value
    return result


def find_scenario(name_or_path: str) -> Path:
    """A scenario file given by path, or by name from ./scenarios or the project's scenarios/."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.is_file():
            raise InnetError(f"{candidate}: scenario file not found")
        return candidate
    for directory in SCENARIO_DIRS:
        for suffix in (".yaml", ".yml"):
            path = directory / f"{name_or_path}{suffix}"
            if path.is_file():
                return path
    known = ", ".join(name for name, _ in list_scenarios()) or "none"
    raise InnetError(f"unknown scenario {name_or_path!r} (known: {known})")


def list_scenarios() -> list[tuple[str, str]]:
    """(name, first line of description) of every scenario in ./scenarios and the project's."""
    found: dict[str, str] = {}
    for directory in SCENARIO_DIRS:
        for path in sorted(directory.glob("*.y*ml")) if directory.is_dir() else []:
            if path.stem in found:
                continue
            try:
                data = yaml.safe_load(path.read_text())
                description = str(data.get("description", "")) if isinstance(data, dict) else ""
            except (yaml.YAMLError, OSError):
                description = "(unreadable)"
            found[path.stem] = (description.strip().splitlines() or [""])[0]
    return sorted(found.items())


@dataclass
class LoadedScenario:
    """A validated scenario, where it came from, its topology file and its resolved variants."""

    scenario: Scenario
    path: Path
    topology_path: Path
    variants: list[ResolvedVariant]
    lines: LineMap | None = None

    def located(self, error: FieldError) -> ConfigError:
        """A problem found later (e.g. in the data block) as an error naming this file's line."""
        return error.located(file=self.path, lines=self.lines)


def load_scenario(
    path: Path, overrides: list[str] | None = None, topology: str | None = None
) -> LoadedScenario:
    """Load, override and validate a scenario, resolving its topology path and variants.

    A relative ``topology`` in the file is relative to the scenario file; ``--topology``
    given on the command line is relative to the current directory.
    """
    raw, lines = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError("a scenario must be a mapping", file=path, line=1)
    raw = apply_overrides(raw, overrides or [])
    if topology is not None:
        raw["topology"] = str(Path(topology).resolve())
    try:
        scenario = Scenario(**raw)
    except ValidationError as error:
        raise config_error_from_validation(error, model=Scenario, file=path, lines=lines) from None
    topology_path = Path(scenario.topology)
    if not topology_path.is_absolute():
        topology_path = (path.parent / topology_path).resolve()
    variants = resolve_variants(scenario, path, lines)
    return LoadedScenario(scenario, path, topology_path, variants, lines)
