"""Sweeps: one scenario run at every point of a grid of settings, in one run directory.

A sweep varies settings of a scenario, each named by the dotted key of
``--set`` (``gate.beta``), over a list of values: ``--sweep gate.beta=0,0.001,0.01``
on the command line (repeatable) or a ``sweep:`` block in the scenario file::

    sweep:
      gate.beta: [0, 0.0001, 0.001, 0.01, 0.1]

Several keys make the cartesian product (the file's keys first; a key given
on the command line replaces the file's). Each *point* of the grid is the
scenario with those values set, run with every variant and seed exactly as a
plain run (:func:`innet.app.runner.run_scenario`), so seed ``k`` is paired across
points as it is across variants. Every point is loaded and validated before
anything runs: a bad key or value is one error naming ``--sweep`` or the
file's line, and nothing is written; so is a key given twice with ``--sweep``.

A variant that sets a swept key itself (``dijkstra_rate: {gate: {beta:
0.01}}`` in a ``gate.beta`` sweep) keeps its own value at every point: a
variant's override wins over the scenario's top-level value, as in a plain
run. The sweep says so (:func:`variant_own_values`): one warning line per such
variant (:class:`SweepWarning`), and that variant's rows in the sweep's tables
and figures carry its own value, not the point's.

The run directory holds one complete run directory per point
(``points/p00``, ``points/p01``, ...) and, beside them, the sweep's own tables
(:mod:`innet.app.sweep_report`): ``metrics.csv`` (every point's metrics with a
``point`` column and the swept keys as columns), ``runs.csv`` (one row per
point, variant and seed), ``sweep.csv`` (per point and variant: the mean and
95% t interval over seeds), ``sweep.json``, ``report.md`` and the trade-off
figures. Points run one after another in this process, or spread over
``jobs`` processes (started with ``spawn``); the results are the same.

>>> parse_sweep_option("gate.beta=0,0.001,1e-2")
('gate.beta', [0, 0.001, 0.01])
>>> [point.values for point in sweep_points({"a": [1, 2], "b": ["x"]})]
[{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'x'}]
>>> sweep_points({"gate.beta": [0.001]})[0].overrides()
['gate.beta=0.001']
"""

from __future__ import annotations

import itertools
import sys
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from innet.app.scenario import load_scenario
from innet.app.sweep_report import POINTS_DIR, SweepPoint, flow_yaml, write_sweep_report
from innet.core.config import LoadedScenario
from innet.core.errors import ConfigError, InnetError
from innet.rundir.staging import finishing, new_run_dir, prepare_staging

__all__ = [
    "SweepWarning",
    "variant_own_values",
    "parse_sweep_option",
    "sweep_points",
    "prepare_sweep",
    "run_sweep",
]


class SweepWarning(UserWarning):
    """A sweep runs, but not every row is what the swept values alone would say."""


def parse_sweep_option(text: str) -> tuple[str, list[Any]]:
    """``KEY=v1,v2,...`` (each value read as YAML) as ``(KEY, [values])``.

    A malformed option is a :class:`~innet.core.errors.ConfigError` naming ``--sweep``.
    """
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key or not rest.strip():
        raise ConfigError(
            "expected KEY=v1,v2,..., e.g. gate.beta=0,0.001,0.01", field=f"--sweep {text}"
        )
    values = []
    for item in rest.split(","):
        if not item.strip():
            raise ConfigError("an empty value in the list", field=f"--sweep {text}")
        values.append(_scalar(item))
    if len({repr(value) for value in values}) != len(values):
        raise ConfigError("a value is listed twice", field=f"--sweep {text}")
    return key, values


def _scalar(text: str) -> Any:
    """One value as YAML reads it, with numbers YAML 1.1 leaves as text (``1e-2``) as floats."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text.strip()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def sweep_points(axes: Mapping[str, Sequence[Any]]) -> list[SweepPoint]:
    """The cartesian product of ``{key: [values]}``, the last key varying fastest."""
    keys = list(axes)
    combos = list(itertools.product(*(axes[key] for key in keys)))
    width = max(2, len(str(len(combos) - 1)))
    return [
        SweepPoint(f"p{index:0{width}d}", dict(zip(keys, combo, strict=True)))
        for index, combo in enumerate(combos)
    ]


def prepare_sweep(
    path: Path,
    overrides: Sequence[str] = (),
    topology: str | None = None,
    options: Sequence[str] | Mapping[str, Sequence[Any]] = (),
) -> tuple[LoadedScenario, list[tuple[SweepPoint, LoadedScenario]]]:
    """Load the scenario and every point of its sweep, validating them all.

    ``options`` are ``--sweep KEY=v1,v2`` texts or a ``{KEY: [values]}``
    mapping (the Python API's); they join (and replace keys of) the file's
    ``sweep:`` block. Returns the scenario without the sweep and each point
    with its loaded scenario. An error in a point names the ``--sweep``
    option (``sweep KEY`` for a mapping) or the file's ``sweep:`` line.
    """
    base = load_scenario(path, list(overrides), topology)
    axes, origin = _sweep_axes(base, options)
    points = []
    for point in sweep_points(axes):
        try:
            loaded = load_scenario(path, [*overrides, *point.overrides()], topology)
        except ConfigError as error:
            key = next((k for k in point.values if error.field and _about(error.field, k)), None)
            if key is None:
                raise
            raise _blame(error, key, origin[key], base, point.values[key]) from None
        points.append((point, loaded))
    _warn_own_values(base, axes, origin)
    return base, points


def _sweep_axes(
    base: LoadedScenario, options: Sequence[str] | Mapping[str, Sequence[Any]]
) -> tuple[dict[str, list[Any]], dict[str, str | None]]:
    """The swept keys with their values, and where each was given (None: the file's block)."""
    given: dict[str, list[Any]] = {}
    origin: dict[str, str | None] = dict.fromkeys(base.sweep)
    if isinstance(options, Mapping):
        for key, values in options.items():
            given[key], origin[key] = _checked_values(key, values), f"sweep {key}"
    else:
        for text in options:
            key, values = parse_sweep_option(text)
            if key in given:
                raise ConfigError(
                    f"{key} is swept twice (also {origin[key]}): give one list",
                    field=f"--sweep {text}",
                )
            given[key], origin[key] = values, f"--sweep {text}"
    axes = {key: values for key, values in base.sweep.items() if key not in given} | given
    if not axes:
        raise InnetError(
            f"{base.path}: nothing to sweep (give --sweep KEY=v1,v2,... or a sweep: block)"
        )
    for key in axes:
        if key.split(".")[0] in ("seeds", "name", "family", "sweep"):
            raise _blame(
                ConfigError(f"{key.split('.')[0]!r} cannot be swept", field=key),
                key,
                origin[key],
                base,
            )
    return axes, origin


def _warn_own_values(
    base: LoadedScenario, axes: Mapping[str, Any], origin: Mapping[str, str | None]
) -> None:
    """One :class:`SweepWarning` per variant that sets a swept key itself."""
    for variant, own in variant_own_values(base, list(axes)).items():
        kept = ", ".join(f"{key}={flow_yaml(value)}" for key, value in own.items())
        swept = ", ".join(origin[key] or f"{base.path}: sweep.{key}" for key in own)
        warnings.warn(
            f"{swept}: variant {variant} sets its own {kept} and keeps it at every point "
            "(its rows are labelled with it)",
            SweepWarning,
            stacklevel=3,
        )


def variant_own_values(base: LoadedScenario, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{variant: {key: value}}``: the swept ``keys`` each variant sets itself, with its values.

    A variant's own setting wins over the scenario's top-level one, so such a
    variant runs with its own value at every point of the sweep.
    """
    own: dict[str, dict[str, Any]] = {}
    for name, variant in base.scenario.variants.items():
        settings = variant.model_dump(exclude_unset=True, by_alias=True)
        for key in keys:
            found, value = _lookup(settings, key.split("."))
            if found:
                own.setdefault(str(name), {})[key] = value
    return own


def _lookup(tree: Any, path: list[str]) -> tuple[bool, Any]:
    """``(True, value)`` at the dotted ``path`` of nested mappings, ``(False, None)`` if absent."""
    for part in path:
        if not isinstance(tree, Mapping) or part not in tree:
            return False, None
        tree = tree[part]
    return True, tree


def run_sweep(
    path: Path,
    overrides: Sequence[str] = (),
    topology: str | None = None,
    options: Sequence[str] | Mapping[str, Sequence[Any]] = (),
    *,
    out: Path | None = None,
    jobs: int = 1,
    progress: bool = True,
    device: str = "cpu",
) -> Path:
    """Run every point of a sweep and write its run directory; return the directory.

    The directory is assembled under a hidden name and renamed into place when
    complete, as a plain run's.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InnetError(f"--jobs must be a positive integer, got {jobs!r}")
    base, points = prepare_sweep(path, overrides, topology, options)
    run_dir = new_run_dir(f"{base.scenario.name}-sweep", out)
    staging = prepare_staging(run_dir)
    with finishing(staging, run_dir):  # a full disk: one line, nothing kept
        (staging / POINTS_DIR).mkdir()
        tasks = [
            (
                str(path),
                [*overrides, *point.overrides()],
                topology,
                str(staging / POINTS_DIR / point.name),
                device,
            )
            for point, _ in points
        ]
        if jobs == 1:
            for index, ((point, loaded), task) in enumerate(zip(points, tasks, strict=True)):
                _announce(progress, index, len(points), point)
                _run_loaded(loaded, Path(task[3]), progress, device)
        else:
            with ProcessPoolExecutor(
                min(jobs, len(tasks)), mp_context=get_context("spawn")
            ) as pool:
                for index, ((point, _), _done) in enumerate(
                    zip(points, pool.map(_run_point, tasks), strict=True)
                ):
                    _announce(progress, index, len(points), point, finished=True)
        write_sweep_report(
            staging,
            base.scenario.name,
            [point for point, _ in points],
            variant_own_values(base, list(points[0][0].values)),
        )
    return run_dir


def _run_point(task: tuple[str, list[str], str | None, str, str]) -> None:
    """One point in a worker process: load the scenario again and run it into ``out``."""
    path, overrides, topology, out, device = task
    loaded = load_scenario(Path(path), overrides, topology)
    _run_loaded(loaded, Path(out), False, device)


def _run_loaded(loaded: LoadedScenario, out: Path, progress: bool, device: str) -> None:
    from innet.app.runner import save_run

    save_run(loaded, out=out, progress=progress, device=device)


def _announce(
    progress: bool, index: int, total: int, point: SweepPoint, *, finished: bool = False
) -> None:
    if progress:
        state = "done" if finished else "running"
        print(
            f"[point {index + 1}/{total}] {point.describe()}: {state}", file=sys.stderr, flush=True
        )


def _about(field: str, key: str) -> bool:
    """Whether an error about ``field`` concerns the swept ``key`` (or a field under it)."""
    field = field.removeprefix("--set ").partition("=")[0]
    return field == key or field.startswith((f"{key}.", f"{key}[")) or key.startswith(f"{field}.")


def _checked_values(key: Any, values: Any) -> list[Any]:
    """The values of one key of a ``{KEY: [values]}`` sweep, checked like the file's block."""
    if not isinstance(key, str) or not key.strip() or "=" in key:
        raise ConfigError("expected a dotted key such as gate.beta", field=f"sweep {key!r}")
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ConfigError("expected a non-empty list of values", field=f"sweep {key}")
    if len({repr(value) for value in values}) != len(values):
        raise ConfigError("a value is listed twice", field=f"sweep {key}")
    return list(values)


def _blame(
    error: ConfigError, key: str, option: str | None, base: LoadedScenario, value: Any = None
) -> ConfigError:
    """The error naming the ``--sweep`` option (or API key) or the file's ``sweep:`` line."""
    shown = "" if value is None else f" (value {flow_yaml(value)})"
    if option is not None:
        return ConfigError(f"{error.message}{shown}", field=option)
    line = base.lines.line(("sweep", key)) if base.lines is not None else None
    return ConfigError(f"{error.message}{shown}", file=base.path, field=f"sweep.{key}", line=line)
