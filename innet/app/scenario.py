"""Scenario files: finding, listing and loading them into a validated scenario.

``--set a.b=value`` overrides any field before validation; the scenario's
``family`` says which model validates it; the result is a
:class:`~innet.core.config.LoadedScenario` (the models are in :mod:`innet.core.config`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from innet.core.config import LoadedScenario, Measured, check_comparisons
from innet.core.errors import ConfigError, InnetError
from innet.core.yamlio import FieldError, LineMap, config_error_from_validation, read_yaml
from innet.families import DEFAULT_FAMILY, FAMILIES

__all__ = [
    "PROJECT_ROOT",
    "SCENARIO_DIRS",
    "SHIPPED_SCENARIOS",
    "SHIPPED_TOPOLOGIES",
    "ScenarioListing",
    "apply_overrides",
    "find_scenario",
    "find_topology",
    "list_scenarios",
    "load_scenario",
    "scenario_listing",
    "shipped_topologies",
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
            known = ", ".join(map(str, variants or ()))
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


def load_scenario(
    path: Path,
    overrides: list[str] | None = None,
    topology: str | None = None,
    content: dict[str, Any] | None = None,
) -> LoadedScenario:
    """Load, override and validate a scenario, resolving its topology path and variants.

    A relative ``topology`` in the file is relative to the scenario file; ``--topology``
    given on the command line is relative to the current directory, or the name of a
    shipped topology (:func:`find_topology`). The scenario's
    ``family`` (default :data:`~innet.families.DEFAULT_FAMILY`) says which model
    validates it. ``content``, when given, is the scenario itself (``path`` then only
    names it and anchors its relative paths; no file is read).
    """
    raw, lines = read_yaml(path) if content is None else (copy.deepcopy(content), LineMap({}))
    if not isinstance(raw, dict):
        raise ConfigError("a scenario must be a mapping", file=path, line=1)
    sweep = _sweep_block(raw.pop("sweep", None), path, lines)
    measured = _measured_block(raw.pop("measured", None), path, lines)
    raw = apply_overrides(raw, overrides or [])
    if topology is not None:
        raw["topology"] = str(find_topology(topology))
    name = raw.setdefault("family", DEFAULT_FAMILY)
    if name not in FAMILIES:
        raise FieldError(("family",), FAMILIES.unknown(name)).located(file=path, lines=lines)
    family = FAMILIES.get(name)
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


def _measured_block(block: Any, path: Path, lines: LineMap) -> Measured | None:
    """A ``measured: {wall_s, machine}`` block validated, errors naming ``measured.FIELD``."""
    if block is None:
        return None
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
            raise FieldError(
                ("sweep", str(key)), "expected a dotted key such as gate.beta"
            ).located(file=path, lines=lines)
        if not isinstance(values, list) or not values:
            raise FieldError(("sweep", key), "expected a non-empty list of values").located(
                file=path, lines=lines
            )
        if len({repr(value) for value in values}) != len(values):
            raise FieldError(("sweep", key), "a value is listed twice").located(
                file=path, lines=lines
            )
    return {key: list(values) for key, values in block.items()}
