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

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
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

from innet.core.errors import ConfigError, InnetError
from innet.core.topology.order import node_key
from innet.core.units import parse_duration, parse_flops
from innet.core.yamlio import FieldError, LineMap, config_error_from_validation, read_yaml

if TYPE_CHECKING:
    from innet.families import Family

__all__ = [
    "ScenarioBase",
    "VariantBase",
    "EventConfig",
    "EVENT_ACTIONS",
    "NetworkConfig",
    "DistributedConfig",
    "ReportConfig",
    "registered",
    "check_comparisons",
    "link_name",
    "load_scenario",
    "LoadedScenario",
    "find_scenario",
    "find_topology",
    "shipped_topologies",
    "list_scenarios",
    "scenario_listing",
    "ScenarioListing",
    "Measured",
    "apply_overrides",
    "SCENARIO_DIRS",
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The shipped scenarios: innet/scenarios/ when installed from a wheel (package data, with
# innet/topologies/ beside it, see pyproject.toml), else scenarios/ in the repository (a
# checkout or an editable install). Either way a scenario's `../topologies/NAME.yaml` resolves.
_PACKAGED_SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
SHIPPED_SCENARIOS = (
    _PACKAGED_SCENARIOS if _PACKAGED_SCENARIOS.is_dir() else PROJECT_ROOT / "scenarios"
)
SCENARIO_DIRS = (Path("scenarios"), SHIPPED_SCENARIOS)
SHIPPED_TOPOLOGIES = SHIPPED_SCENARIOS.parent / "topologies"


def find_topology(name_or_path: str | Path, option: str = "--topology") -> Path:
    """A topology file given by path, else by name among the shipped ones (``geant``).

    ``option`` names where the user gave it, for the error when it is neither.
    """
    candidate = Path(name_or_path)
    if candidate.exists() or candidate.suffix in (".yaml", ".yml") and candidate.parent != Path():
        return candidate.resolve()
    for suffix in ("", ".yaml", ".yml"):
        shipped = SHIPPED_TOPOLOGIES / f"{name_or_path}{suffix}"
        if shipped.is_file():
            return shipped
    known = ", ".join(shipped_topologies())
    raise InnetError(f"{option} {name_or_path}: file not found (shipped: {known})")


def shipped_topologies() -> list[str]:
    """The names of the shipped topologies (``mesh14``, ``geant``, ...), sorted."""
    return sorted(path.stem for path in SHIPPED_TOPOLOGIES.glob("*.yaml"))


def registered(what: str, module: str, names: str) -> Callable[[str], str]:
    """A pydantic validator accepting only the names of a registry (``module.names``).

    The registry is looked up when a value is checked, so a validated field
    always agrees with the code that uses it, and a registry added to at run
    time (a test's own family, phase or routing) is honoured.
    """

    def check(value: str) -> str:
        known = getattr(importlib.import_module(module), names)
        if value not in known:
            raise ValueError(f"unknown {what} {value!r} (expected one of: {', '.join(known)})")
        return value

    return check


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NetworkConfig(_Strict):
    header_bytes: int = Field(0, ge=0)
    tx_ports: int | None = Field(None, gt=0)
    compute: bool = True
    # fifo: one message at a time per link direction; flow: max-min fair sharing
    model: Literal["fifo", "flow"] = "fifo"
    bandwidth_factor: float = Field(1.0, gt=0)  # the flow model's efficiency factors
    latency_factor: float = Field(1.0, gt=0)
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

    placement: Annotated[
        str, AfterValidator(registered("placement", "innet.distributed.placement", "STRATEGIES"))
    ] = "partition"
    map: dict[str, int] | None = None  # node -> rank, for placement: explicit
    timeout_s: float = Field(60.0, gt=0)


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

    routing: Annotated[str, AfterValidator(registered("routing", "innet.core.plans", "ROUTINGS"))]
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


class ScenarioBase(_Strict):
    """What every scenario has, whatever its family: the network, the runs and the report.

    A family (``family:``, default ``inl``) adds its own blocks and the type of
    its variants (see :mod:`innet.families`).
    """

    name: str
    description: str = ""
    family: str = "inl"
    topology: str
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    events: list[EventConfig] = Field(default_factory=list)
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
    model: type[BaseModel], base: BaseModel, overrides: dict[str, Any], *, variant: str,
    block: str, source: Path | None = None, lines: LineMap | None = None,
) -> Any:  # fmt: skip
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


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to a raw scenario mapping.

    An override of a variant the scenario does not have is refused (a typo would
    otherwise add a variant), unless it names the new variant's ``routing``.
    """
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
        variants = result.get("variants")
        new_variant = isinstance(variants, dict) and len(parts) > 2 and parts[1] not in variants
        if parts[0] == "variants" and new_variant and parts[2:] != ["routing"]:
            known = ", ".join(map(str, variants))
            raise ConfigError(
                f"unknown variant {parts[1]!r} (known: {known}; a new variant needs "
                f"--set variants.{parts[1]}.routing=...)",
                field=f"--set {item}",
            )
        for part in parts[:-1]:
            child = target.get(part)
            if child is None:
                child = target[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{part!r} is not a mapping", field=f"--set {key}")
            target = child
        target[parts[-1]] = value
    return result


def _blame_overrides(error: ConfigError, overrides: list[str]) -> ConfigError:
    """The error naming the ``--set`` option whose value it is about, if any."""
    field = error.field or ""
    for item in reversed(overrides):
        key = item.partition("=")[0].strip()
        if field == key or field.startswith((f"{key}.", f"{key}[")) or key.startswith(f"{field}."):
            return ConfigError(error.message, field=f"--set {item}")
    return error


def find_scenario(name_or_path: str) -> Path:
    """A scenario file given by path, or by name from ./scenarios or the shipped scenarios."""
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
    """(name, first line of description) of every scenario in ./scenarios and the shipped ones."""
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

    @property
    def family(self) -> Family:
        from innet.families import get_family

        return get_family(self.scenario.family)

    def located(self, error: FieldError) -> ConfigError:
        """A problem found later (e.g. in the data block) as an error naming this file's line."""
        return error.located(file=self.path, lines=self.lines)


def load_scenario(
    path: Path, overrides: list[str] | None = None, topology: str | None = None
) -> LoadedScenario:
    """Load, override and validate a scenario, resolving its topology path and variants.

    A relative ``topology`` in the file is relative to the scenario file; ``--topology``
    given on the command line is relative to the current directory, or the name of a
    shipped topology (:func:`find_topology`). The scenario's
    ``family`` (default ``inl``) says which model validates it.
    """
    from innet.families import family_names, get_family

    raw, lines = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError("a scenario must be a mapping", file=path, line=1)
    sweep = _sweep_block(raw.pop("sweep", None), path, lines)
    measured = _measured_block(raw.pop("measured", None), path, lines)
    raw = apply_overrides(raw, overrides or [])
    if topology is not None:
        raw["topology"] = str(find_topology(topology))
    name = raw.get("family", "inl")
    if name not in family_names():
        raise FieldError(
            ("family",), f"unknown family {name!r} (expected one of: {', '.join(family_names())})"
        ).located(file=path, lines=lines)
    family = get_family(name)
    try:
        scenario = family.scenario_model(**raw)
        check_comparisons(scenario, path, lines)
        variants = family.resolve_variants(scenario, path, lines)
    except ValidationError as error:
        located = config_error_from_validation(
            error, model=family.scenario_model, file=path, lines=lines
        )
        raise _blame_overrides(located, overrides or []) from None
    except ConfigError as error:
        raise _blame_overrides(error, overrides or []) from None
    topology_path = Path(scenario.topology)
    if not topology_path.is_absolute():
        topology_path = (path.parent / topology_path).resolve()
    return LoadedScenario(scenario, path, topology_path, list(variants), lines, sweep, measured)


class Measured(_Strict):
    """A scenario file's ``measured:`` block, shown by ``--list``.

    ``wall_s``: the wall-clock seconds the scenario took as shipped (``python
    run_sim.py --scenario NAME``, no options), from a fresh clone; ``machine``:
    what it ran on, in words (cores, architecture, whether it was quiet).
    """

    wall_s: float = Field(gt=0, allow_inf_nan=False)
    machine: str = Field(min_length=1)


def _measured_block(block: Any, path: Path, lines: LineMap) -> Measured | None:
    if block is None:
        return None
    """A ``measured: {wall_s, machine}`` block validated, errors naming ``measured.FIELD``."""
    try:
        return Measured.model_validate(block)
    except ValidationError as error:
        inner = config_error_from_validation(
            error, model=Measured, file=path, lines=lines.within("measured")
        )
        field = f"measured.{inner.field}" if inner.field else "measured"
        raise ConfigError(inner.message, file=path, field=field, line=inner.line) from None


@dataclass(frozen=True)
class ScenarioListing:
    """One line of ``--list``: a scenario, its runs and its measured time."""

    name: str
    description: str
    runs: tuple[int, int, int] | None  # (variants, seeds, sweep points); None if it is invalid
    measured: Measured | None
    problem: str | None = None


def scenario_listing() -> list[ScenarioListing]:
    """Every scenario of :func:`list_scenarios`, loaded to count its runs."""
    listing = []
    for name, description in list_scenarios():
        try:
            loaded = load_scenario(find_scenario(name))
        except InnetError as error:
            listing.append(ScenarioListing(name, description, None, None, str(error)))
            continue
        listing.append(ScenarioListing(name, description, loaded.runs, loaded.measured))
    return listing


def _sweep_block(block: Any, path: Path, lines: LineMap) -> dict[str, list[Any]]:
    """A scenario's ``sweep:`` block checked for shape: ``{dotted key: [values...]}``.

    Whether each key and value is valid is checked by loading every point
    (:func:`innet.app.sweeps.prepare_sweep`).
    """
    if block is None:
        return {}
    if not isinstance(block, dict) or not block:
        raise FieldError(
            ("sweep",), "expected a mapping {KEY: [v1, v2, ...]}, e.g. {gate.beta: [0, 0.01]}"
        ).located(file=path, lines=lines)
    for key, values in block.items():
        if not isinstance(key, str) or not key.strip() or "=" in key:
            raise FieldError(("sweep", str(key)), "expected a dotted key such as gate.beta"
                             ).located(file=path, lines=lines)  # fmt: skip
        if not isinstance(values, list) or not values:
            raise FieldError(("sweep", key), "expected a non-empty list of values"
                             ).located(file=path, lines=lines)  # fmt: skip
        if len({repr(value) for value in values}) != len(values):
            raise FieldError(("sweep", key), "a value is listed twice"
                             ).located(file=path, lines=lines)  # fmt: skip
    return {key: list(values) for key, values in block.items()}
