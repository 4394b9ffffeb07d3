"""The Python API: run a scenario and get its tables as pandas DataFrames.

:func:`run` takes a shipped scenario's name, a YAML path or a dict with the
content of a scenario file, runs it through the same code as ``python
run_sim.py --scenario ...`` and returns a :class:`Results`; :func:`sweep`
runs it at every point of a grid of settings (``--sweep``) and returns the
same object with every point's rows and the aggregated table; :func:`load`
reads a finished run or sweep directory into it.

>>> import innet
>>> results = innet.run("smoke", {"training.epochs": 1}, seeds=1, progress=False)
>>> results.variants
['dense', 'dijkstra', 'dijkstra_rate']
>>> len(results.metrics)  # one row per variant, seed and epoch
3
>>> bool(results.exchanges["nbytes"].sum() > 0)  # one row per message sent
True
>>> results.run_dir is None  # nothing was written: the run is in memory (results.save(DIR))
True
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import Executor

    import pandas as pd

    from innet.app.runner import FinishedRun
    from innet.core.config import LoadedScenario
    from innet.core.errors import InnetError
    from innet.core.topology.model import Topology

__all__ = ["run", "sweep", "load", "Results"]

DICT_SOURCE = "<scenario dict>"
"""How errors name a scenario given as a dict (it has no file or lines)."""

_LINK_TEXT_COLUMNS = ("variant", "src", "dst", "phase", "payload")


class Results:
    """The tables and summary of a finished run, in memory.

    Attributes:
        summary: ``summary.json`` (the headline numbers and comparisons) as a dict.
        metrics: ``metrics.csv``: one row per variant, seed and epoch.
        exchanges: ``exchanges.parquet``: one row per message sent.
        links: ``links.csv``: per variant, link direction, phase and payload
            (``None`` if the run directory has no ``links.csv``).
        nodes: ``nodes.csv``: FLOPs and compute time per node (or ``None``).
        tables: the scenario family's own tables by name (``inl``:
            ``node_rates``); each is also an attribute, ``results.node_rates``.
        config: the resolved scenario (``config.yaml``), every default filled in.
        topology, plans, events: the graph, each variant's plan and plan changes.
        run_dir: the run directory, or ``None`` when the run was not kept.
        points: a sweep's points by name (``p00``...), each the :class:`Results`
            of that point's run; ``None`` for a plain run.

    A sweep's results (:func:`sweep`) hold every point's rows: ``metrics``,
    ``exchanges``, ``links``, ``nodes`` and the family's tables get a
    ``point`` column and one column per swept key; ``results.sweep`` is
    ``sweep.csv`` (per point and variant: means over seeds with their 95%
    t intervals), ``results.runs`` is ``runs.csv`` (one row per point,
    variant and seed), ``summary`` is ``sweep.json``; ``config``,
    ``topology``, ``plans`` and ``events`` are the first point's.

    The DataFrames are those :func:`innet.families.runs.open_run` reads from the
    run directory, so they are exactly what the directory holds (or, for a run
    kept in memory, would hold: :meth:`save` writes it).
    """

    def __init__(
        self,
        *,
        summary: dict[str, Any],
        metrics: pd.DataFrame,
        exchanges: pd.DataFrame,
        links: pd.DataFrame | None,
        nodes: pd.DataFrame | None,
        tables: dict[str, pd.DataFrame],
        config: dict[str, Any],
        topology: Topology,
        plans: dict[str, dict[str, Any]],
        events: dict[str, list[dict[str, Any]]],
        run_dir: Path | None,
        points: dict[str, Results] | None = None,
        finished: FinishedRun | None = None,
    ) -> None:
        self.summary = summary
        self.metrics = metrics
        self.exchanges = exchanges
        self.links = links
        self.nodes = nodes
        self.tables = tables
        self.config = config
        self.topology = topology
        self.plans = plans
        self.events = events
        self.run_dir = run_dir
        self.points = points
        self._finished = finished  # a run in memory, until saved

    @classmethod
    def from_finished(cls, finished: FinishedRun) -> Results:
        """A run kept in memory (:func:`innet.app.runner.run_scenario`)."""
        import io

        import pandas as pd

        from innet.report.tables import link_table

        run = finished.run
        text = link_table(run).to_csv(index=False)  # as links.csv holds it
        return cls(
            summary=finished.summary,
            metrics=run.metrics,
            exchanges=run.exchanges,
            links=pd.read_csv(io.StringIO(text), dtype=dict.fromkeys(_LINK_TEXT_COLUMNS, str)),
            nodes=run.nodes,
            tables=dict(run.tables),
            config=run.config,
            topology=run.topology,
            plans=run.plans,
            events=run.events,
            run_dir=None,
            finished=finished,
        )

    def save(self, out: str | os.PathLike[str] | None = None) -> Path:
        """Write a run kept in memory to the run directory ``out`` (absent or empty;
        default ``runs/NAME-TIME``) and return it; ``run_dir`` is then that directory."""
        from innet.app.runner import write_run
        from innet.core.errors import InnetError
        from innet.rundir.staging import (
            MIN_FIGURES_BYTES,
            MIN_RUN_BYTES,
            new_run_dir,
            prepare_staging,
        )

        if self._finished is None:
            raise InnetError(
                f"already written: {self.run_dir}" if self.run_dir else "nothing to save"
            )
        run_dir = new_run_dir(self.scenario, None if out is None else Path(out))
        figures = (self.config.get("report") or {}).get("figures", True)
        staging = prepare_staging(run_dir, MIN_RUN_BYTES + (MIN_FIGURES_BYTES if figures else 0))
        write_run(self._finished, staging, run_dir)
        self.run_dir, self._finished = run_dir, None
        return run_dir

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, *, keep: bool = True) -> Results:
        """Read a run directory.

        ``keep=False``, for a directory about to be removed, leaves ``run_dir`` as
        ``None`` and makes ``config["topology"]`` absolute (it is relative to the
        run directory in ``config.yaml``).
        """
        import pandas as pd

        from innet.app.sweep_report import SWEEP_JSON
        from innet.families.runs import open_run
        from innet.rundir.io import read_json
        from innet.rundir.layout import LINKS_FILE, SUMMARY_FILE

        if (Path(run_dir) / SWEEP_JSON).is_file():
            return cls._from_sweep_dir(Path(run_dir), keep=keep)
        from innet.app.sweeps import refuse_unfinished_sweep

        refuse_unfinished_sweep(Path(run_dir))
        directory = Path(run_dir)
        run, _ = open_run(run_dir)
        links_path = directory / LINKS_FILE
        links = None
        if links_path.is_file():
            links = pd.read_csv(links_path, dtype=dict.fromkeys(_LINK_TEXT_COLUMNS, str))
        config = run.config
        topology = config.get("topology")
        if not keep and isinstance(topology, str) and not Path(topology).is_absolute():
            # relative to a directory that is about to go: the file itself instead
            config = {**config, "topology": str((directory / topology).resolve())}
        return cls(
            summary=read_json(directory / SUMMARY_FILE),
            metrics=run.metrics,
            exchanges=run.exchanges,
            links=links,
            nodes=run.nodes,
            tables=dict(run.tables),
            config=config,
            topology=run.topology,
            plans=run.plans,
            events=run.events,
            run_dir=directory if keep else None,
        )

    @classmethod
    def _from_sweep_dir(cls, run_dir: Path, *, keep: bool) -> Results:
        """A sweep's run directory: every point's tables, tagged with the point's values."""
        import pandas as pd

        from innet.app.sweep_report import POINTS_DIR, RUNS_FILE, SWEEP_FILE, SWEEP_JSON
        from innet.rundir.io import read_json

        record = read_json(run_dir / SWEEP_JSON)
        keys = list(record["keys"])
        values = {entry["point"]: entry for entry in record["points"]}
        failed = record.get("failed") or {}
        points = {
            name: cls.from_run_dir(run_dir / POINTS_DIR / name, keep=keep)
            for name in values
            if name not in failed
        }

        def tagged(tables: dict[str, pd.DataFrame | None]) -> pd.DataFrame | None:
            present = {name: table for name, table in tables.items() if table is not None}
            if not present:
                return None
            frames = [
                table.assign(**{column: values[name][column] for column in ["point", *keys]})
                for name, table in present.items()
            ]
            joined = pd.concat(frames, ignore_index=True)
            for variant, kept in (record.get("variant_own_values") or {}).items():
                for key, value in kept.items():  # a variant that keeps its own value
                    if "variant" in joined:
                        joined[key] = joined[key].where(joined["variant"] != variant, value)
            front = ["point", *keys]
            return joined[front + [c for c in joined.columns if c not in front]]

        first = next(iter(points.values()))
        tables = {
            name: tagged({point: results.tables[name] for point, results in points.items()})
            for name in first.tables
        }
        text = {"variant": str, "point": str}
        tables["sweep"] = pd.read_csv(run_dir / SWEEP_FILE, dtype=text)
        tables["runs"] = pd.read_csv(run_dir / RUNS_FILE, dtype=text)
        return cls(
            summary=record,
            metrics=tagged({name: results.metrics for name, results in points.items()}),
            exchanges=tagged({name: results.exchanges for name, results in points.items()}),
            links=tagged({name: results.links for name, results in points.items()}),
            nodes=tagged({name: results.nodes for name, results in points.items()}),
            tables=tables,
            config=first.config,
            topology=first.topology,
            plans=first.plans,
            events=first.events,
            run_dir=run_dir if keep else None,
            points=points,
        )

    @property
    def scenario(self) -> str:
        """The scenario's name."""
        return str(self.config.get("name", ""))

    @property
    def variants(self) -> list[str]:
        """The variants, in the scenario's order."""
        return [str(name) for name in (self.config.get("variants") or {})]

    @property
    def seeds(self) -> list[int]:
        """The seeds that ran."""
        return [int(seed) for seed in self.config.get("seeds") or []]

    def __getattr__(self, name: str) -> pd.DataFrame:
        tables = self.__dict__.get("tables") or {}
        if name in tables:
            return tables[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *(self.__dict__.get("tables") or {})})

    def __repr__(self) -> str:
        where = str(self.run_dir) if self.run_dir is not None else "in memory"
        seeds = len(self.seeds)
        return (
            f"<Results {self.scenario}: {len(self.variants)} variants "
            f"({', '.join(self.variants)}) x {seeds} seed{'' if seeds == 1 else 's'}, "
            f"{len(self.metrics)} metric rows, {len(self.exchanges)} exchanges; {where}>"
        )


def load(run_dir: str | Path) -> Results:
    """Read a finished run directory (written by :func:`run` or the command line).

    A missing or damaged directory is an :class:`~innet.core.errors.InnetError`.
    """
    return Results.from_run_dir(run_dir)


def run(
    scenario: str | os.PathLike[str] | Mapping[str, Any],
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    *,
    seeds: int | None = None,
    topology: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Results:
    """Run a scenario (every variant with every seed) and return its :class:`Results`.

    This is ``python run_sim.py --scenario SCENARIO [--set ...] [--seeds N]
    [--topology T] [--out DIR]`` from Python: the same loading, validation and
    run (:func:`innet.app.scenario.load_scenario`, :func:`innet.app.runner.run_scenario`).

    Args:
        scenario: a shipped scenario's name (``"smoke"``), a YAML file, or a dict
            with the content of a scenario file. A relative ``topology`` in a
            dict is relative to the current directory; the dict is validated
            exactly like a file, its errors naming ``<scenario dict>``.
        overrides: ``["training.epochs=3", ...]`` (values parsed as YAML, as
            ``--set``) or ``{"training.epochs": 3, ...}`` (values as given).
        seeds: run seeds ``0..seeds-1`` instead of the scenario's.
        topology: a topology file (relative to the current directory) or a
            shipped topology's name, instead of the scenario's.
        out: the run directory to write (absent or empty). Without it nothing
            is written: the results are built in memory (``results.run_dir`` is
            ``None``) and :meth:`Results.save` writes them later.
        progress: show progress on stderr: a bar when stderr is a terminal,
            else one line per finished variant and seed.

    Problems with the input raise :class:`~innet.core.errors.InnetError` (a
    :class:`~innet.core.errors.ConfigError` for invalid content). The caller's
    torch thread count is restored afterwards (the run trains on one thread).

    >>> import innet
    >>> results = innet.run("smoke", ["training.epochs=1"], seeds=1, progress=False)
    >>> sorted(results.summary["variants"])
    ['dense', 'dijkstra', 'dijkstra_rate']
    >>> list(results.node_rates.columns)[:5]  # then how each rate was estimated
    ['variant', 'seed', 'node', 'rate_bits', 'estimate_bits']
    """

    items = _seeded(_override_strings(overrides), seeds)
    loaded = _load(scenario, items, None if topology is None else os.fspath(topology))
    from innet.app.runner import local_device, run_scenario, save_run

    device = local_device("auto")
    if out is not None:
        run_dir, _ = save_run(loaded, out=Path(out), progress=progress, device=device)
        assert run_dir is not None  # one process: the leader
        return Results.from_run_dir(run_dir)
    finished = run_scenario(loaded, progress=progress, device=device)
    assert finished is not None  # one process: the leader
    return Results.from_finished(finished)


def sweep(
    scenario: str | os.PathLike[str] | Mapping[str, Any],
    sweep: Mapping[str, Sequence[Any]] | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    *,
    seeds: int | None = None,
    topology: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    jobs: int = 1,
    progress: bool = True,
    executor: Executor | None = None,
) -> Results:
    """Run a scenario at every point of a sweep and return its :class:`Results`.

    This is ``python run_sim.py --scenario SCENARIO --sweep KEY=v1,v2 ...
    [--jobs N]`` from Python (:mod:`innet.app.sweeps`): ``sweep`` maps dotted keys
    (as in ``overrides``) to their values, the cartesian product of them all,
    joining the scenario's own ``sweep:`` block. ``jobs`` runs up to that many
    points at once in separate processes; ``executor`` (any
    :class:`concurrent.futures.Executor`: ``distributed.Client(...).get_executor()``,
    :mod:`innet.app.launchers`) runs them there instead; the results are the same.
    A point that fails leaves the others written in ``out`` and raises
    :class:`~innet.app.sweeps.SweepFailed`; ``run_sim.py resume OUT`` finishes
    it (give ``out`` to keep it). The other arguments are :func:`run`'s.
    ``results.sweep`` is the aggregated table (per point and variant: means
    over seeds and 95% t intervals), ``results.points`` each point's own results.

    >>> import innet
    >>> results = innet.sweep("smoke", {"gate.beta": [0.0, 0.01]}, {"training.epochs": 1},
    ...                       seeds=2, progress=False)
    >>> results.sweep[["point", "gate.beta", "variant", "seeds"]].head(3)
      point  gate.beta        variant  seeds
    0   p00       0.00          dense      2
    1   p00       0.00       dijkstra      2
    2   p00       0.01  dijkstra_rate      2
    >>> len(results.runs)  # 2 points x 3 variants x 2 seeds
    12
    >>> sorted(results.points)
    ['p00', 'p01']
    """
    from innet.app.scenario import find_scenario
    from innet.app.sweeps import run_sweep
    from innet.core.errors import InnetError

    items = _seeded(_override_strings(overrides), seeds)
    axes = {
        str(key): _plain(list(values)) if isinstance(values, (list, tuple)) else values
        for key, values in (sweep or {}).items()
    }
    where = None if topology is None else os.fspath(topology)

    def go(path: Path, scratch: Path) -> Results:
        target = Path(out) if out is not None else scratch / "sweep"
        from innet.app.runner import local_device

        run_dir = run_sweep(
            path,
            items,
            where,
            axes,
            out=target,
            jobs=jobs,
            progress=progress,
            device=local_device("auto"),
            executor=executor,
        )
        return Results.from_run_dir(run_dir, keep=out is not None)

    scratch = Path(tempfile.mkdtemp(prefix="innet-sweep-"))
    try:
        if isinstance(scenario, Mapping):
            with _scenario_file(scenario) as path:
                try:
                    return go(path, scratch)
                except InnetError as error:
                    raise _renamed(error, path) from None
        if isinstance(scenario, (str, os.PathLike)):
            try:
                return go(find_scenario(os.fspath(scenario)), scratch)
            except InnetError as error:
                raise _renamed(error, None) from None
        raise TypeError(f"scenario must be a name, a path or a dict, not {type(scenario).__name__}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _seeded(items: list[str], seeds: int | None) -> list[str]:
    """The overrides with ``seeds=N`` added when ``seeds`` is given (checked)."""
    from innet.core.errors import InnetError

    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise InnetError(f"seeds must be a positive integer, got {seeds!r}")
        items.append(f"seeds={seeds}")
    return items


def _override_strings(overrides: Sequence[str] | Mapping[str, Any] | None) -> list[str]:
    """``a.b=value`` strings from a list of them or a ``{"a.b": value}`` mapping."""
    import yaml

    from innet.core.errors import InnetError

    if overrides is None:
        return []
    if isinstance(overrides, str):
        raise InnetError(f"overrides must be a list of KEY=VALUE strings or a dict: {overrides!r}")
    if isinstance(overrides, Mapping):
        items = []
        for key, value in overrides.items():
            text = yaml.safe_dump([_plain(value)], default_flow_style=True, width=1_000_000)
            items.append(f"{key}={text.strip()[1:-1]}")  # the value as YAML that reads back as it
        return items
    return [str(item) for item in overrides]


def _plain(value: Any) -> Any:
    """``value`` with paths as strings, tuples as lists and NumPy scalars as Python's."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return value.item()
    return value


def _load(
    scenario: str | os.PathLike[str] | Mapping[str, Any], overrides: list[str], topology: str | None
) -> LoadedScenario:
    """Load and validate the scenario as the command line does (a dict: as it is, no file)."""
    from innet.app.scenario import find_scenario, load_scenario
    from innet.core.errors import InnetError

    if isinstance(scenario, Mapping):
        source = Path(DICT_SOURCE)  # its relative topology: relative to the current directory
        try:
            loaded = load_scenario(source, overrides, topology, content=_plain(scenario))
        except InnetError as error:
            raise _renamed(error, source) from None
        loaded.lines = None  # later errors name the dict, without lines
        return loaded
    if isinstance(scenario, (str, os.PathLike)):
        try:
            return load_scenario(find_scenario(os.fspath(scenario)), overrides, topology)
        except InnetError as error:
            raise _renamed(error, None) from None
    raise TypeError(f"scenario must be a name, a path or a dict, not {type(scenario).__name__}")


@contextmanager
def _scenario_file(scenario: Mapping[str, Any]) -> Iterator[Path]:
    """The dict as a temporary YAML file; a relative topology made relative to the cwd."""
    import yaml

    from innet.core.errors import ConfigError

    raw = _plain(scenario)
    if isinstance(raw.get("topology"), str) and not Path(raw["topology"]).is_absolute():
        raw["topology"] = str(Path.cwd() / raw["topology"])
    try:
        text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError as error:
        raise ConfigError(f"cannot be read as a scenario ({error})", file=DICT_SOURCE) from None
    with tempfile.TemporaryDirectory(prefix="innet-scenario-") as directory:
        path = Path(directory) / "scenario.yaml"
        path.write_text(text, encoding="utf-8")
        yield path


def _renamed(error: InnetError, dict_file: Path | None) -> InnetError:
    """The error in this API's words: overrides, and the dict instead of its temporary file."""
    from innet.core.errors import ConfigError, InnetError

    if isinstance(error, ConfigError):
        field, file, line = error.field, error.file, error.line
        if field and field.startswith("--set "):
            field = f"override {field.removeprefix('--set ')}"
        if dict_file is not None and file in (None, str(dict_file)):
            file, line = DICT_SOURCE, None  # lines of the temporary file mean nothing
        return ConfigError(error.message, file=file, field=field, line=line)
    if dict_file is not None and type(error) is InnetError:
        return InnetError(str(error).replace(str(dict_file), DICT_SOURCE))
    return error
