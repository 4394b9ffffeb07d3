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
figures. Points run one after another in this process, spread over
``jobs`` processes (started with ``spawn``), or on any
:class:`concurrent.futures.Executor` (a Dask cluster, SLURM through submitit:
:mod:`innet.app.launchers`); the results are the same.

The sweep directory is created first, holding only its manifest
(:data:`MANIFEST_FILE`: the scenario's text, the overrides, the swept
values); each point's run directory is renamed into ``points/`` when
complete, and ``sweep.json`` is written last. A directory without
``sweep.json`` is an unfinished sweep (stopped, killed); one whose
``sweep.json`` lists ``failed`` points has their errors in
``points/<point>.failed.json`` and tables of the other points. Either way
:func:`resume_sweep` (``run_sim.py resume DIR``) runs the points that are
missing or failed and rewrites the tables: the directory an uninterrupted
sweep writes.

>>> parse_sweep_option("gate.beta=0,0.001,1e-2")
('gate.beta', [0, 0.001, 0.01])
>>> [point.values for point in sweep_points({"a": [1, 2], "b": ["x"]})]
[{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'x'}]
>>> sweep_points({"gate.beta": [0.001]})[0].overrides()
['gate.beta=0.001']
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from innet.app.progress import Progress, reporting_to
from innet.app.scenario import load_scenario
from innet.app.sweep_report import (
    FAILED_SUFFIX,
    POINTS_DIR,
    SWEEP_JSON,
    SweepPoint,
    flow_yaml,
    write_sweep_report,
)
from innet.core.config import LoadedScenario
from innet.core.errors import ConfigError, InnetError
from innet.core.yamlio import parse_yaml
from innet.families.family import plural
from innet.rundir.staging import finishing, new_run_dir, prepare_staging

__all__ = [
    "SweepWarning",
    "variant_own_values",
    "parse_sweep_option",
    "sweep_points",
    "prepare_sweep",
    "run_sweep",
    "resume_sweep",
    "is_sweep_dir",
    "refuse_unfinished_sweep",
    "read_manifest",
    "SweepFailed",
    "MANIFEST_FILE",
]

MANIFEST_FILE = "sweep-manifest.json"
"""What a sweep directory needs to be resumed: the scenario (its text), overrides and axes."""
_MANIFEST_FORMAT = 1


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
    *,
    content: dict[str, Any] | None = None,
) -> tuple[LoadedScenario, list[tuple[SweepPoint, LoadedScenario]]]:
    """Load the scenario and every point of its sweep, validating them all.

    ``options`` are ``--sweep KEY=v1,v2`` texts or a ``{KEY: [values]}``
    mapping (the Python API's); they join (and replace keys of) the file's
    ``sweep:`` block. Returns the scenario without the sweep and each point
    with its loaded scenario. An error in a point names the ``--sweep``
    option (``sweep KEY`` for a mapping) or the file's ``sweep:`` line.
    ``content``: the scenario itself, read before (a resumed sweep's), as
    :func:`~innet.app.scenario.load_scenario` takes it.
    """
    base = load_scenario(path, list(overrides), topology, content)
    axes, origin = _sweep_axes(base, options)
    points = []
    for point in sweep_points(axes):
        try:
            loaded = load_scenario(path, [*overrides, *point.overrides()], topology, content)
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


@dataclass(frozen=True)
class _Task:
    """What a worker needs to run one point: the scenario, the point's overrides, where to write."""

    path: str
    content: dict[str, Any]
    overrides: list[str]
    topology: str | None
    out: str
    device: str


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
    executor: Executor | None = None,
) -> Path:
    """Run every point of a sweep and write its run directory; return the directory.

    The points run here one after another (``jobs=1``), in ``jobs`` processes,
    or in ``executor`` (any :class:`concurrent.futures.Executor`: a Dask
    client's, submitit's through :mod:`innet.app.launchers`); each point
    writes its own run directory, and the results are the same. A point that
    fails is recorded (``points/<point>.failed.json``), the others are kept
    and the sweep's tables written from them; then :class:`SweepFailed` names
    the failed points, and :func:`resume_sweep` runs them again.
    """
    _check_jobs(jobs)
    base, points = prepare_sweep(path, overrides, topology, options)
    run_dir = new_run_dir(f"{base.scenario.name}-sweep", out)
    manifest = {
        "format": _MANIFEST_FORMAT,
        "scenario": base.scenario.name,
        "scenario_file": str(path.resolve()),
        "scenario_text": _read_text(path),
        "overrides": list(overrides),
        "topology": _absolute_topology(topology),
        "axes": _axes_of([point for point, _ in points]),
        "device": device,
    }
    staging = prepare_staging(run_dir)
    with finishing(staging, run_dir):  # created with its manifest, then filled in place
        (staging / POINTS_DIR).mkdir()
        _write_atomic(staging / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
    return _complete(run_dir, manifest, base, points, jobs, progress, executor)


def resume_sweep(
    path: Path,
    *,
    jobs: int = 1,
    progress: bool = True,
    device: str | None = None,
    executor: Executor | None = None,
) -> Path:
    """Run the points of the sweep directory ``path`` that are missing or failed, then its tables.

    The sweep's scenario, overrides and swept values come from its manifest
    (:data:`MANIFEST_FILE`); the result is the directory an uninterrupted
    sweep writes. ``device`` defaults to the one the sweep was started with.
    """
    _check_jobs(jobs)
    manifest = read_manifest(path)
    scenario_file = Path(manifest["scenario_file"])
    content, _ = parse_yaml(manifest["scenario_text"], file=scenario_file)
    base, points = prepare_sweep(
        scenario_file,
        manifest["overrides"],
        manifest["topology"],
        manifest["axes"],
        content=content,
    )
    if device is not None:
        manifest = {**manifest, "device": device}
    return _complete(path, manifest, base, points, jobs, progress, executor)


def is_sweep_dir(path: Path) -> bool:
    """Whether ``path`` is a sweep's directory (it holds a sweep manifest)."""
    return (path / MANIFEST_FILE).is_file()


def refuse_unfinished_sweep(path: Path) -> None:
    """An unfinished sweep (a manifest, no ``sweep.json``): one line saying how to finish it."""
    if is_sweep_dir(path) and not (path / SWEEP_JSON).is_file():
        raise InnetError(
            f"{path}: an unfinished sweep (stopped before its tables were written); "
            f"finish it with `run_sim.py resume {path}`"
        )


def read_manifest(path: Path) -> dict[str, Any]:
    """A sweep directory's manifest; a missing or damaged one is one :class:`InnetError`."""
    file = path / MANIFEST_FILE
    if not path.is_dir():
        raise InnetError(f"{path}: sweep directory not found")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InnetError(f"{path}: not a sweep directory (no {MANIFEST_FILE})") from None
    except (OSError, ValueError) as error:
        raise InnetError(f"{file}: cannot read the sweep manifest ({error})") from None
    needed = {"format", "scenario_file", "scenario_text", "overrides", "topology", "axes", "device"}
    if not isinstance(manifest, dict) or not needed <= set(manifest):
        raise InnetError(f"{file}: not a sweep manifest (written by another version?)")
    if manifest["format"] != _MANIFEST_FORMAT:
        raise InnetError(
            f"{file}: sweep manifest format {manifest['format']!r}, "
            f"this version reads {_MANIFEST_FORMAT}"
        )
    return manifest


class SweepFailed(InnetError):
    """Some points of a sweep failed; the others are written, and the sweep can be resumed."""

    def __init__(self, run_dir: Path, failed: Mapping[str, str], points: Sequence[SweepPoint]):
        named = {point.name: point for point in points}
        shown = "; ".join(
            f"{name} ({named[name].describe()}): {error}" for name, error in failed.items()
        )
        super().__init__(
            f"{run_dir}: {plural(len(failed), 'point')} failed: {shown}; the other points are "
            f"written; run them again with `run_sim.py resume {run_dir}`"
        )
        self.run_dir = run_dir
        self.failed = dict(failed)


def _complete(
    run_dir: Path,
    manifest: Mapping[str, Any],
    base: LoadedScenario,
    points: list[tuple[SweepPoint, LoadedScenario]],
    jobs: int,
    progress: bool,
    executor: Executor | None,
) -> Path:
    """Run the points not yet written, then the sweep's tables (``sweep.json`` last)."""
    swept = [point for point, _ in points]
    todo = [(point, loaded) for point, loaded in points if not _written(run_dir, point)]
    (run_dir / SWEEP_JSON).unlink(missing_ok=True)  # the sweep is incomplete until rewritten
    tasks = [_task(manifest, point, run_dir) for point, _ in todo]
    skipped = (len(points) - len(todo), (len(points) - len(todo)) * _runs_of(base))
    failed = _run_points(todo, tasks, jobs, progress, executor, skipped=skipped)
    for point in swept:
        if point.name not in failed:
            _failure_file(run_dir, point).unlink(missing_ok=True)
    if len(failed) < len(swept):
        own = variant_own_values(base, list(swept[0].values))
        try:
            write_sweep_report(run_dir, base.scenario.name, swept, own, failed)
        except OSError as error:  # a full disk: the points stay, the sweep can be resumed
            reason = error.strerror or str(error) or type(error).__name__
            raise InnetError(
                f"{run_dir}: could not write the sweep's tables ({reason}); the finished "
                f"points are kept: free some space and run `run_sim.py resume {run_dir}`"
            ) from None
    if failed:
        raise SweepFailed(run_dir, failed, swept)
    return run_dir


def _written(run_dir: Path, point: SweepPoint) -> bool:
    """Whether the point's run directory is there (it is renamed into place complete)."""
    return (run_dir / POINTS_DIR / point.name).is_dir() and not _failure_file(
        run_dir, point
    ).exists()


def _failure_file(run_dir: Path, point: SweepPoint) -> Path:
    return run_dir / POINTS_DIR / f"{point.name}{FAILED_SUFFIX}"


def _task(manifest: Mapping[str, Any], point: SweepPoint, run_dir: Path) -> _Task:
    content, _ = parse_yaml(manifest["scenario_text"], file=manifest["scenario_file"])
    return _Task(
        manifest["scenario_file"],
        content,
        [*manifest["overrides"], *point.overrides()],
        manifest["topology"],
        str(run_dir / POINTS_DIR / point.name),
        manifest["device"],
    )


def _run_points(
    todo: list[tuple[SweepPoint, LoadedScenario]],
    tasks: list[_Task],
    jobs: int,
    progress: bool,
    executor: Executor | None,
    *,
    skipped: tuple[int, int],
) -> dict[str, str]:
    """Run each point's task; return ``{point: error}`` for those that failed.

    ``skipped``: the points, and their runs, written before (a resumed sweep).
    """
    if executor is None and jobs == 1:
        return _run_here(todo, tasks, progress, skipped[1])
    if executor is not None:
        return _run_in(executor, todo, tasks, progress, skipped[0])
    if not tasks:
        return {}
    with ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=get_context("spawn")) as pool:
        return _run_in(pool, todo, tasks, progress, skipped[0])


def _run_here(
    todo: list[tuple[SweepPoint, LoadedScenario]], tasks: list[_Task], progress: bool, skipped: int
) -> dict[str, str]:
    """The points one after another in this process, each run's progress the sweep's."""
    failed: dict[str, str] = {}
    runs = sum(_runs_of(loaded) for _, loaded in todo)
    with Progress(runs + skipped, shown=progress, unit="run") as bar:
        bar.skip(skipped)
        for (point, loaded), task in zip(todo, tasks, strict=True):
            try:
                with reporting_to(bar, f"point {point.name} {point.describe()}"):
                    _run_loaded(loaded, Path(task.out), progress, task.device)
            except Exception as error:  # one failing point does not lose the others
                failed[point.name] = _record_failure(Path(task.out), point, error)
    return failed


def _run_in(
    executor: Executor,
    todo: list[tuple[SweepPoint, LoadedScenario]],
    tasks: list[_Task],
    progress: bool,
    skipped: int,
) -> dict[str, str]:
    """The points submitted to ``executor``; one line (or bar step) per point as it finishes."""
    failed: dict[str, str] = {}
    with Progress(len(tasks) + skipped, shown=progress, unit="point") as bar:
        bar.skip(skipped, what="points")
        futures = {
            executor.submit(_run_point, task): (point, task)
            for (point, _), task in zip(todo, tasks, strict=True)
        }
        for future in as_completed(futures):
            point, task = futures[future]
            label = f"point {point.name} {point.describe()}"
            try:
                seconds = future.result()
            except Exception as error:  # one failing point does not lose the others
                failed[point.name] = _record_failure(Path(task.out), point, error)
                bar.done(label, f"failed ({failed[point.name]})")
            else:
                bar.done(label, seconds=seconds)
    return {name: failed[name] for name in sorted(failed)}


def _record_failure(out: Path, point: SweepPoint, error: BaseException) -> str:
    """Write ``points/<point>.failed.json`` (the error and its traceback); return the error line."""
    message = str(error).strip().splitlines()
    line = f"{type(error).__name__}: {message[0] if message else ''}".rstrip(": ")
    record = {
        "point": point.name,
        "values": point.values,
        "error": line,
        "traceback": "".join(traceback.format_exception(error)),
    }
    _write_atomic(
        out.with_name(f"{point.name}{FAILED_SUFFIX}"),
        json.dumps(record, indent=2, default=str) + "\n",
    )
    return line


_ONE_POINT_AT_A_TIME = threading.Lock()
"""A run sets torch's process-wide state (threads, the global random generator): a worker
process with several threads (a Dask worker's) runs its points one after another."""


def _run_point(task: _Task) -> float:
    """One point in a worker: load its scenario and run it into its directory; the seconds."""
    with _ONE_POINT_AT_A_TIME:
        started = time.perf_counter()
        loaded = load_scenario(Path(task.path), task.overrides, task.topology, content=task.content)
        _run_loaded(loaded, Path(task.out), False, task.device)
        return time.perf_counter() - started


def _run_loaded(loaded: LoadedScenario, out: Path, progress: bool, device: str) -> None:
    from innet.app.runner import Resume, save_run

    # a point stopped after a checkpoint (training.checkpoint_every) continues from it
    save_run(loaded, out=out, progress=progress, device=device, resume=Resume("if-present"))


def _runs_of(loaded: LoadedScenario) -> int:
    """The (variant, seed) runs of a point."""
    return len(loaded.scenario.variants) * len(loaded.scenario.seed_list)


def _axes_of(points: Sequence[SweepPoint]) -> dict[str, list[Any]]:
    """The swept keys with their values, in order, from the grid's points."""
    axes: dict[str, list[Any]] = {key: [] for key in points[0].values}
    for point in points:
        for key, value in point.values.items():
            if value not in axes[key]:
                axes[key].append(value)
    return axes


def _absolute_topology(topology: str | None) -> str | None:
    """``--topology`` as the sweep's manifest keeps it: a path made absolute, or a shipped name."""
    if topology is None:
        return None
    return str(Path(topology).resolve()) if Path(topology).exists() else topology


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise InnetError(f"{path}: cannot read the scenario ({error.strerror})") from None


def _write_atomic(file: Path, text: str) -> None:
    """Write ``text`` to a temporary name beside ``file`` and rename it: whole or absent."""
    partial = file.with_name(f".{file.name}.partial-{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    partial.replace(file)


def _check_jobs(jobs: int) -> None:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InnetError(f"--jobs must be a positive integer, got {jobs!r}")


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
