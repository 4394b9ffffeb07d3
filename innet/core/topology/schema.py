"""The shape of a topology file, as pydantic models.

A topology file either lists its ``nodes`` and ``links``, describes a
``generator`` that builds them, or ``import``s them from a GraphML or GML file
(:mod:`innet.core.topology.importer`). These models check everything that can be
checked one field at a time: known field names (anything else is an error),
roles, units (``10Mbps``, ``1ms``, ``2GFLOPS``, parsed by :mod:`innet.core.units`),
signs (capacity > 0, latency >= 0, 0 <= loss < 1), the choices of a generator. Checks that
need the whole graph (one fusion node, links between known nodes, sensors
that reach the fusion node) live in :mod:`innet.core.topology.load`.

Values are stored in base units: bits/s, seconds, FLOP/s; a link's ``loss``
is the probability that one transmission over it is lost (a number, or a
percentage such as ``1%``).

>>> LinkSpec.model_validate(["s", "f"]).between
('s', 'f')
>>> LinkSpec.model_validate({"between": [1, "f"], "capacity": "10Mbps"}).capacity
10000000.0
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from innet.core.units import (
    format_bitrate,
    format_duration,
    parse_bitrate,
    parse_duration,
    parse_flops,
)

__all__ = [
    "ROLES",
    "GENERATOR_KINDS",
    "FUSION_RULES",
    "SENSOR_RULES",
    "DISTRIBUTIONS",
    "KIND_PARAMETERS",
    "Defaults",
    "NodeSpec",
    "LinkSpec",
    "Distribution",
    "CapacityDistribution",
    "LatencyDistribution",
    "LossDistribution",
    "FusionRule",
    "SensorRule",
    "GeneratorSpec",
    "IMPORT_FORMATS",
    "ImportFusion",
    "ImportSensors",
    "ImportSpec",
    "TopologyFile",
]

ROLES = ("fusion", "sensor", "relay")
GENERATOR_KINDS = ("grid", "ring", "random_geometric", "erdos_renyi", "barabasi_albert")
FUSION_RULES = ("max_degree", "max_closeness", "min_eccentricity")
SENSOR_RULES = ("leaves", "all_but_fusion", "random", "farthest")
DISTRIBUTIONS = ("constant", "uniform", "loguniform", "choice")
IMPORT_FORMATS = ("graphml", "gml")

# Parameters each generator kind needs; any other of these is an error for that kind.
KIND_PARAMETERS = {
    "grid": ("rows", "cols"),
    "ring": ("n",),
    "random_geometric": ("n", "radius"),
    "erdos_renyi": ("n", "p"),
    "barabasi_albert": ("n", "m"),
}


def _one_of(options: tuple[str, ...], what: str):
    def check(value: str) -> str:
        if value not in options:
            raise ValueError(f"unknown {what} {value!r} (expected {', '.join(options)})")
        return value

    return check


def _node_id(value: Any) -> str:
    """Node ids are strings; YAML integers (``- [1, 2]``) are accepted and converted."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"a node id must be a string or an integer, got {value!r}")
    text = str(value)
    if not text.strip():
        raise ValueError("a node id must not be empty")
    return text


def _text(value: Any) -> Any:
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _positive_capacity(value: float) -> float:
    if value <= 0:
        raise ValueError(f"capacity must be > 0, got {format_bitrate(value)}")
    return value


def _non_negative_latency(value: float) -> float:
    if value < 0:
        raise ValueError(f"latency must be >= 0, got {format_duration(value)}")
    return value


def _loss_probability(value: Any) -> float:
    """A loss probability: a number with 0 <= loss < 1, or a percentage such as ``1%``."""
    given = value
    if isinstance(value, str) and value.strip().endswith("%"):
        with contextlib.suppress(ValueError):
            value = float(value.strip()[:-1]) / 100
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"loss must be a number >= 0 and < 1 (or a percentage), got {given!r}")
    value = float(value)
    if not 0 <= value < 1:  # also rejects NaN
        raise ValueError(f"loss must be >= 0 and < 1, got {value:g}")
    return value


def _positive_compute(value: float) -> float:
    if value <= 0:
        raise ValueError(f"compute must be > 0 FLOP/s, got {value:g}")
    return value


def _non_negative_view(value: int) -> int:
    if value < 0:
        raise ValueError(f"view must be >= 0, got {value}")
    return value


def _non_negative_seed(value: int) -> int:
    if value < 0:
        raise ValueError(f"seed must be >= 0, got {value}")
    return value


def _positive_radius(value: float) -> float:
    if value <= 0:
        raise ValueError(f"radius must be > 0, got {value:g}")
    return value


def _geo_or_latency(value: Any) -> Any:
    """``geo`` stays as written; anything else is read as a duration (seconds)."""
    if value == "geo":
        return value
    return _non_negative_latency(parse_duration(value))


def _probability(value: float) -> float:
    if not 0 <= value <= 1:
        raise ValueError(f"p must be between 0 and 1, got {value:g}")
    return value


def _positive_int(what: str):
    def check(value: int) -> int:
        if value < 1:
            raise ValueError(f"{what} must be >= 1, got {value}")
        return value

    return check


NodeId = Annotated[str, BeforeValidator(_node_id)]
Capacity = Annotated[float, BeforeValidator(parse_bitrate), AfterValidator(_positive_capacity)]
Latency = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_non_negative_latency)]
Compute = Annotated[float, BeforeValidator(parse_flops), AfterValidator(_positive_compute)]
TxPorts = Annotated[int, AfterValidator(_positive_int("tx_ports"))]
Loss = Annotated[float, BeforeValidator(_loss_probability)]


class _Strict(BaseModel):
    """Unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Strict):
    """Values used where a link or node does not give its own."""

    capacity: Capacity | None = None
    latency: Latency | None = None
    loss: Loss | None = None
    compute: Compute | None = None
    tx_ports: TxPorts | None = None


class NodeSpec(_Strict):
    """One node: ``{id: s1, role: sensor, view: 0, compute: 2GFLOPS, pos: [0, 1]}``."""

    id: NodeId
    role: Annotated[str, AfterValidator(_one_of(ROLES, "role"))]
    view: Annotated[int, AfterValidator(_non_negative_view)] | None = None
    compute: Compute | None = None
    tx_ports: TxPorts | None = None
    label: Annotated[str, BeforeValidator(_text)] | None = None
    pos: tuple[float, float] | None = None


class LinkSpec(_Strict):
    """One link: ``{between: [s, f], capacity: 1Mbps, loss: 0.01}`` or the shorthand ``[s, f]``.

    ``loss`` (default 0) is the probability that one transmission over the link
    is lost, in either direction; the network model retransmits until a copy
    gets through (:mod:`innet.core.netsim`).
    """

    between: tuple[NodeId, NodeId]
    capacity: Capacity | None = None
    latency: Latency | None = None
    loss: Loss | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"between": data} if isinstance(data, (list, tuple)) else data

    @field_validator("between", mode="before")
    @classmethod
    def _two_ends(cls, between: Any) -> Any:
        if isinstance(between, (list, tuple)) and len(between) != 2:
            raise ValueError(f"a link joins exactly two nodes, got {len(between)}")
        return between


def _check_takes(what: str, needed: Sequence[str], missing: list[str], extra: list[str]) -> None:
    """``ValueError`` when parameters are ``missing`` or ``extra`` (given but not taken):
    ``"WHAT takes NEEDED; missing ...; does not take ..."``."""
    if missing or extra:
        raise ValueError(
            f"{what} takes {' and '.join(needed)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; does not take {', '.join(extra)}" if extra else "")
        )


class Distribution(_Strict):
    """How a generator draws one link attribute: a constant, uniform, log-uniform or a choice.

    Written as a plain value (``10Mbps``: every link gets it) or as a mapping
    ``{dist: uniform, low: 1Mbps, high: 100Mbps}``, ``{dist: loguniform, low, high}``,
    ``{dist: choice, values: [1Mbps, 100Mbps]}`` (equal probabilities).
    """

    # Parses and checks a plain value; set by each subclass.
    parse_constant: ClassVar[Callable[[Any], float]]

    dist: Annotated[str, AfterValidator(_one_of(DISTRIBUTIONS, "dist"))]
    value: float | None = None
    low: float | None = None
    high: float | None = None
    values: list[float] | None = None

    @model_validator(mode="before")
    @classmethod
    def _constant(cls, data: Any) -> Any:
        if isinstance(data, (str, int, float)) and not isinstance(data, bool):
            return {"dist": "constant", "value": cls.parse_constant(data)}
        return data

    @model_validator(mode="after")
    def _parameters(self) -> Distribution:
        needed = {
            "constant": ("value",),
            "uniform": ("low", "high"),
            "loguniform": ("low", "high"),
            "choice": ("values",),
        }[self.dist]
        given = [
            name for name in ("value", "low", "high", "values") if getattr(self, name) is not None
        ]
        missing = [name for name in needed if name not in given]
        extra = [name for name in given if name not in needed]
        _check_takes(f"dist {self.dist}", needed, missing, extra)
        self._check_ranges()
        return self

    def _check_ranges(self) -> None:
        if self.low is not None and self.high is not None and self.high < self.low:
            raise ValueError(f"high ({self.high:g}) must be >= low ({self.low:g})")
        if self.dist == "loguniform" and self.low is not None and self.low <= 0:
            raise ValueError("loguniform needs low > 0")
        if self.values is not None and not self.values:
            raise ValueError("choice needs at least one value")


class CapacityDistribution(Distribution):
    """Link capacities of a generated topology (bits/s)."""

    parse_constant: ClassVar[Callable[[Any], float]] = staticmethod(
        lambda value: _positive_capacity(parse_bitrate(value))
    )
    value: Capacity | None = None
    low: Capacity | None = None
    high: Capacity | None = None
    values: list[Capacity] | None = None


class LatencyDistribution(Distribution):
    """Link latencies of a generated topology (seconds)."""

    parse_constant: ClassVar[Callable[[Any], float]] = staticmethod(
        lambda value: _non_negative_latency(parse_duration(value))
    )
    value: Latency | None = None
    low: Latency | None = None
    high: Latency | None = None
    values: list[Latency] | None = None


class LossDistribution(Distribution):
    """Link loss probabilities of a generated topology (each >= 0 and < 1)."""

    parse_constant: ClassVar[Callable[[Any], float]] = staticmethod(_loss_probability)
    value: Loss | None = None
    low: Loss | None = None
    high: Loss | None = None
    values: list[Loss] | None = None


class FusionRule(_Strict):
    """Which generated node is the fusion node: ``{rule: max_closeness}`` or ``{id: n0}``.

    Rules pick the best node by degree, closeness centrality or (smallest)
    eccentricity; ties go to the lowest id. A plain string is a rule name.
    """

    rule: Annotated[str, AfterValidator(_one_of(FUSION_RULES, "fusion rule"))] | None = None
    id: NodeId | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain_rule(cls, data: Any) -> Any:
        return {"rule": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _exactly_one(self) -> FusionRule:
        if (self.rule is None) == (self.id is None):
            raise ValueError("give exactly one of rule or id")
        return self


def _check_rule_parameters(rule: str | None, k: int | None, seed: int | None) -> None:
    """``k`` goes with the random and farthest sensor rules, ``seed`` with random only."""
    needs_k = rule in ("random", "farthest")
    if needs_k and k is None:
        raise ValueError(f"sensor rule {rule} needs k")
    if not needs_k and k is not None:
        raise ValueError("k is only used by the random and farthest rules")
    if seed is not None and rule != "random":
        raise ValueError("seed is only used by the random rule")


class SensorRule(_Strict):
    """Which generated nodes are sensors.

    - ``leaves``: nodes of degree 1 (except the fusion node); if there are
      none, the nodes farthest (in hops) from the fusion node.
    - ``all_but_fusion``: every other node.
    - ``random`` with ``k`` (and an optional ``seed``, default the generator's):
      ``k`` nodes drawn uniformly among the others.
    - ``farthest`` with ``k``: the ``k`` nodes farthest in hops from the fusion
      node, ties to the lowest id.
    - ``{ids: [...]}``: exactly these.

    A plain string is a rule name.
    """

    rule: Annotated[str, AfterValidator(_one_of(SENSOR_RULES, "sensor rule"))] | None = None
    k: Annotated[int, AfterValidator(_positive_int("k"))] | None = None
    seed: Annotated[int, AfterValidator(_non_negative_seed)] | None = None
    ids: list[NodeId] | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain_rule(cls, data: Any) -> Any:
        return {"rule": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _parameters(self) -> SensorRule:
        if (self.rule is None) == (self.ids is None):
            raise ValueError("give exactly one of rule or ids")
        if self.ids is not None and not self.ids:
            raise ValueError("ids must name at least one node")
        _check_rule_parameters(self.rule, self.k, self.seed)
        return self


class GeneratorSpec(_Strict):
    """A generated topology: a networkx random-graph model plus attribute rules.

    ``kind`` picks the model and the parameters it needs: ``grid`` (rows,
    cols), ``ring`` (n), ``random_geometric`` (n, radius), ``erdos_renyi``
    (n, p), ``barabasi_albert`` (n, m). ``seed`` makes the graph and every
    drawn attribute reproducible. ``capacity``, ``latency`` and ``loss`` fall
    back to ``defaults`` when left out (``loss`` then to 0).
    """

    kind: Annotated[str, AfterValidator(_one_of(GENERATOR_KINDS, "generator kind"))]
    seed: Annotated[int, AfterValidator(_non_negative_seed)] = 0
    rows: Annotated[int, AfterValidator(_positive_int("rows"))] | None = None
    cols: Annotated[int, AfterValidator(_positive_int("cols"))] | None = None
    n: Annotated[int, AfterValidator(_positive_int("n"))] | None = None
    radius: Annotated[float, AfterValidator(_positive_radius)] | None = None
    p: Annotated[float, AfterValidator(_probability)] | None = None
    m: Annotated[int, AfterValidator(_positive_int("m"))] | None = None
    capacity: CapacityDistribution | None = None
    latency: LatencyDistribution | None = None
    loss: LossDistribution | None = None
    fusion: FusionRule = FusionRule(rule="max_closeness")
    sensors: SensorRule = SensorRule(rule="leaves")

    @model_validator(mode="after")
    def _kind_parameters(self) -> GeneratorSpec:
        needed = KIND_PARAMETERS[self.kind]
        every = {name for names in KIND_PARAMETERS.values() for name in names}
        missing = [name for name in needed if getattr(self, name) is None]
        extra = sorted(name for name in every - set(needed) if getattr(self, name) is not None)
        _check_takes(f"kind {self.kind}", needed, missing, extra)
        if self.kind == "ring" and self.n is not None and self.n < 3:
            raise ValueError(f"a ring needs n >= 3, got {self.n}")
        if (
            self.kind == "barabasi_albert"
            and self.m is not None
            and self.n is not None
            and self.m >= self.n
        ):
            raise ValueError(f"barabasi_albert needs m < n, got m={self.m}, n={self.n}")
        return self


class ImportFusion(_Strict):
    """Which imported node is the fusion node: ``{label: DE}``, ``{id: "4"}`` or ``{rule: ...}``.

    ``label`` must name exactly one node (labels in real files repeat: then
    give the ``id``). Rules are those of :class:`FusionRule`, picked within
    the largest connected part of the graph. A plain string is a rule name.
    """

    label: Annotated[str, BeforeValidator(_text)] | None = None
    id: NodeId | None = None
    rule: Annotated[str, AfterValidator(_one_of(FUSION_RULES, "fusion rule"))] | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain_rule(cls, data: Any) -> Any:
        return {"rule": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _exactly_one(self) -> ImportFusion:
        if sum(value is not None for value in (self.label, self.id, self.rule)) != 1:
            raise ValueError("give exactly one of label, id or rule")
        return self


class ImportSensors(_Strict):
    """Which imported nodes are sensors: a rule, ``{ids: [...]}`` or ``{labels: [...]}``.

    The rules are those of :class:`SensorRule` (``leaves``, ``all_but_fusion``,
    ``random`` with ``k`` and an optional ``seed``, default 0, ``farthest``
    with ``k``); they work on the graph
    after parallel links are merged. Each label must name exactly one node.
    A plain string is a rule name.
    """

    rule: Annotated[str, AfterValidator(_one_of(SENSOR_RULES, "sensor rule"))] | None = None
    k: Annotated[int, AfterValidator(_positive_int("k"))] | None = None
    seed: Annotated[int, AfterValidator(_non_negative_seed)] | None = None
    ids: list[NodeId] | None = None
    labels: list[Annotated[str, BeforeValidator(_text)]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain_rule(cls, data: Any) -> Any:
        return {"rule": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _parameters(self) -> ImportSensors:
        if sum(value is not None for value in (self.rule, self.ids, self.labels)) != 1:
            raise ValueError("give exactly one of rule, ids or labels")
        for name in ("ids", "labels"):
            if getattr(self, name) == []:
                raise ValueError(f"{name} must name at least one node")
        _check_rule_parameters(self.rule, self.k, self.seed)
        return self


class ImportSpec(_Strict):
    """An ``import:`` block: a GraphML or GML file and how to read links and roles from it.

    Exactly one of ``graphml`` and ``gml``, a path relative to the topology
    file. ``capacity_attr`` names the link attribute holding bits/s (the
    Topology Zoo's ``LinkSpeedRaw`` by default; null ignores link speeds);
    ``default_capacity`` serves links without one. ``latency`` is ``geo``
    (great-circle distance between the nodes' ``Latitude``/``Longitude`` at
    2e8 m/s) or one duration for every link; ``default_latency`` serves links
    with an end that has no coordinates. ``default_loss`` is the loss
    probability of every imported link. All three defaults fall back to the
    file's ``defaults`` block (``loss`` then to 0).
    """

    graphml: str | None = None
    gml: str | None = None
    capacity_attr: str | None = "LinkSpeedRaw"
    default_capacity: Capacity | None = None
    latency: Annotated[float | str, BeforeValidator(_geo_or_latency)] = "geo"
    default_latency: Latency | None = None
    default_loss: Loss | None = None
    fusion: ImportFusion = ImportFusion(rule="max_closeness")
    sensors: ImportSensors = ImportSensors(rule="leaves")

    @model_validator(mode="after")
    def _one_file(self) -> ImportSpec:
        if (self.graphml is None) == (self.gml is None):
            raise ValueError("give exactly one of graphml or gml (a path to the file)")
        return self

    @property
    def format(self) -> str:
        """``graphml`` or ``gml``."""
        return "graphml" if self.graphml is not None else "gml"

    @property
    def path(self) -> str:
        """The file as written (relative to the topology file unless absolute)."""
        path = self.graphml if self.graphml is not None else self.gml
        assert path is not None  # exactly one of them is given
        return path


class TopologyFile(_Strict):
    """A whole topology file: ``nodes`` and ``links``, a ``generator``, or an ``import``.

    ``import`` is a Python keyword, so the field is ``import_`` in code and
    ``import`` in the file.
    """

    name: Annotated[str, BeforeValidator(_text)] | None = None
    description: str | None = None
    defaults: Defaults = Defaults()
    nodes: list[NodeSpec] | None = None
    links: list[LinkSpec] | None = None
    generator: GeneratorSpec | None = None
    import_: ImportSpec | None = Field(default=None, alias="import")
