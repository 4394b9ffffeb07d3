"""Where a sweep's points run: this machine's processes, a Dask cluster, or SLURM.

A launcher opens a :class:`concurrent.futures.Executor` for the sweep
(:func:`launched`), or None for the sweep's own processes; every point is
submitted to it, runs in a worker and writes its own run directory
(:func:`innet.app.sweeps.run_sweep`). The launchers (``--launcher NAME``):

- ``local``: this machine, ``--jobs N`` processes (1: in this process);
- ``dask``: Dask distributed (``pip install innet[dask]``): a
  ``LocalCluster`` of ``--jobs`` worker processes, or the scheduler at
  ``--scheduler ADDRESS`` (``tcp://host:8786``), through
  ``Client.get_executor()``;
- ``submitit``: SLURM through submitit (``pip install innet[slurm]``), one
  job per point. ``--launcher-option KEY=VALUE`` (repeatable) sets its
  parameters: ``folder`` (its logs and pickles, default ``submitit-logs``;
  on a file system the nodes share), ``cluster`` (``slurm``, or ``local``
  to run the jobs as processes here, as the tests do; default: SLURM where
  there is one) and any parameter of ``AutoExecutor.update_parameters``
  (``timeout_min=60``, ``slurm_partition=gpu``, ``cpus_per_task=2``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import yaml

from innet.core.errors import InnetError
from innet.core.registry import Registry

__all__ = ["LAUNCHERS", "Launch", "Launcher", "launched", "parse_launcher_options", "JobPool"]


@dataclass(frozen=True)
class Launch:
    """What a launcher is given: how many workers, a scheduler's address, its own options."""

    jobs: int = 1
    scheduler: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


Launcher = Callable[[Launch], AbstractContextManager["Executor | None"]]
"""Opens the executor of a sweep (None: the sweep's own processes) and closes it after."""

LAUNCHERS: Registry[Launcher] = Registry("launcher")


def parse_launcher_options(texts: Sequence[str]) -> dict[str, Any]:
    """``--launcher-option KEY=VALUE`` texts as ``{KEY: value}``, each value read as YAML.

    >>> parse_launcher_options(["timeout_min=60", "slurm_partition=gpu"])
    {'timeout_min': 60, 'slurm_partition': 'gpu'}
    """
    options: dict[str, Any] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InnetError(f"--launcher-option {text}: expected KEY=VALUE, e.g. timeout_min=60")
        options[key.strip()] = yaml.safe_load(value)
    return options


@contextmanager
def launched(
    name: str, *, jobs: int = 1, scheduler: str | None = None, options: Sequence[str] = ()
) -> Iterator[Executor | None]:
    """The executor of launcher ``name`` while the block runs (None for ``local``)."""
    if name not in LAUNCHERS:
        raise InnetError(f"--launcher: {LAUNCHERS.unknown(name)}")
    launcher = LAUNCHERS.get(name)
    if scheduler is not None and name != "dask":
        raise InnetError(f"--scheduler applies to --launcher dask, not {name}")
    if options and name != "submitit":
        raise InnetError(f"--launcher-option applies to --launcher submitit, not {name}")
    with launcher(Launch(jobs, scheduler, parse_launcher_options(options))) as executor:
        yield executor


@LAUNCHERS.register("local")
@contextmanager
def _local(launch: Launch) -> Iterator[Executor | None]:
    """This machine: the sweep starts its own ``--jobs`` processes."""
    yield None


def _missing(launcher: str, extra: str) -> InnetError:
    return InnetError(f"--launcher {launcher} needs: pip install innet[{extra}]")


@LAUNCHERS.register("dask")
@contextmanager
def _dask(launch: Launch) -> Iterator[Executor | None]:
    """A Dask ``LocalCluster`` of ``jobs`` worker processes, or an existing scheduler."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise _missing("dask", "dask") from None
    if launch.scheduler is not None:
        try:
            client = Client(launch.scheduler, timeout=30)
        except (OSError, ValueError) as error:
            raise InnetError(f"--scheduler {launch.scheduler}: cannot connect ({error})") from None
        with client:
            yield client.get_executor()
        return
    cluster = LocalCluster(
        n_workers=launch.jobs,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    with cluster, Client(cluster) as client:
        yield client.get_executor()


@LAUNCHERS.register("submitit")
@contextmanager
def _submitit(launch: Launch) -> Iterator[Executor | None]:
    """submitit's ``AutoExecutor`` (SLURM, or ``cluster=local``), as an Executor."""
    try:
        import submitit
    except ImportError:
        raise _missing("submitit", "slurm") from None
    options = dict(launch.options)
    folder = str(options.pop("folder", "submitit-logs"))
    cluster = options.pop("cluster", None)
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        executor.update_parameters(**options)
    except (ValueError, TypeError, RuntimeError) as error:
        raise InnetError(f"--launcher-option: {error}") from None
    with JobPool(executor) as pool:
        yield pool


class JobPool(Executor):
    """An executor that submits each call as a job (submitit's) and waits for it in a thread."""

    def __init__(self, jobs: Any) -> None:
        self._jobs = jobs
        self._waiters = ThreadPoolExecutor(thread_name_prefix="innet-job")

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Submit ``fn(*args, **kwargs)`` as a job; the future holds its result or error."""
        job = self._jobs.submit(fn, *args, **kwargs)
        return self._waiters.submit(job.result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop waiting for new jobs (the submitted jobs run on)."""
        self._waiters.shutdown(wait=wait, cancel_futures=cancel_futures)
