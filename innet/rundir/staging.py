"""Where a run directory is assembled before it is renamed into place.

A run is written under a hidden staging name beside its final directory,
``.<run>.partial-<host>-<pid>``, and renamed only when complete. A process
killed outright (SIGKILL, power loss) cannot remove its staging directory, so
every new run first removes the staging directories of this host whose process
no longer exists. Directories of other hosts (a runs folder on a shared file
system) and of live processes are left alone.

A second run given the same directory while a first one is still writing it
is refused before it trains; if both start at once, the one that finishes
second is refused when it comes to rename. A failure to write the finished
run (a full disk, a quota) is one :class:`~innet.core.errors.InnetError` too,
with the staging directory removed: :func:`finishing` wraps the writing.
Where the free space is certainly too small (:func:`check_free_space`) the
run is refused before it trains.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from innet.core.errors import InnetError

__all__ = [
    "new_run_dir",
    "staging_dir",
    "prepare_staging",
    "remove_stale_staging",
    "publish",
    "finishing",
    "check_free_space",
    "MIN_RUN_BYTES",
    "MIN_FIGURES_BYTES",
]

_STAGING = re.compile(r"^\.(?P<run>.+)\.partial-(?P<host>.+)-(?P<pid>\d+)$")

MIN_RUN_BYTES = 32_000
"""The least a run directory's tables, summary and report take (a one-epoch, one-seed
``smoke`` run without figures writes 38 kB)."""
MIN_FIGURES_BYTES = 128_000
"""The least a run's figures take (the same run's six figures are 300 kB)."""


def new_run_dir(name: str, out: Path | None) -> Path:
    """``out`` when given (absent or an empty directory), else a fresh ``runs/<name>-<stamp>``."""
    if out is not None:
        if out.exists() and not out.is_dir():
            raise InnetError(f"--out {out}: is a file, not a directory")
        if out.is_dir() and any(out.iterdir()):
            raise InnetError(f"--out {out}: directory exists and is not empty")
        writer = _live_writer(out)
        if writer is not None:
            raise InnetError(f"--out {out}: another run ({writer}) is writing this directory")
        return out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{name}-{stamp}"
    candidate, suffix = base, 2
    while candidate.exists() or _live_writer(candidate) is not None:
        candidate = base.with_name(f"{base.name}-{suffix}")
        suffix += 1
    return candidate


def staging_dir(run_dir: Path) -> Path:
    """The hidden directory this process assembles ``run_dir`` in."""
    return run_dir.with_name(f".{run_dir.name}.partial-{_host()}-{os.getpid()}")


def prepare_staging(run_dir: Path, needed: int = 0) -> Path:
    """Create (empty) the staging directory of ``run_dir``, after sweeping stale ones.

    A place that cannot be written (read-only, no permission, a file in the way)
    or that has less than ``needed`` bytes free (:func:`check_free_space`) is
    one :class:`~innet.core.errors.InnetError` naming it, and leaves nothing.
    """
    staging = staging_dir(run_dir)
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(run_dir.parent)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        probe = staging / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        reason = error.strerror or type(error).__name__
        raise InnetError(f"{run_dir}: cannot write the run directory there ({reason})") from None
    try:
        check_free_space(run_dir, needed)
    except InnetError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def publish(staging: Path, run_dir: Path) -> None:
    """Rename the complete ``staging`` directory to ``run_dir`` (replacing an empty one).

    When another run got there first (the same ``--out`` given twice at once),
    one :class:`~innet.core.errors.InnetError`; the caller removes ``staging``.
    """
    try:
        if run_dir.is_dir():
            run_dir.rmdir()  # an empty --out directory; a filled one raises ENOTEMPTY
        staging.rename(run_dir)
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise InnetError(
                f"{run_dir}: another run wrote this directory while this one ran; "
                "this run's results were not kept (give each run its own --out)"
            ) from None
        raise


@contextmanager
def finishing(staging: Path, run_dir: Path) -> Iterator[None]:
    """Write a run into ``staging``, then :func:`publish` it; on any failure remove ``staging``.

    A failure to write (``OSError``: a full disk, a quota, a file system gone
    read-only) becomes one :class:`~innet.core.errors.InnetError` naming ``run_dir``
    and the reason; anything else propagates as it is.
    """
    try:
        yield
        publish(staging, run_dir)
    except OSError as error:
        message = _write_failure(run_dir, error, _size(staging))
        shutil.rmtree(staging, ignore_errors=True)
        raise InnetError(message) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_failure(run_dir: Path, error: OSError, written: int) -> str:
    reason = error.strerror or str(error) or type(error).__name__
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += f" after {_kilobytes(written)} of the run directory"
    return f"{run_dir}: could not write the run directory ({reason}); nothing was kept"


def _size(directory: Path) -> int:
    """Bytes in the files under ``directory`` (0 if it cannot be read)."""
    try:
        return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())
    except OSError:
        return 0


def check_free_space(run_dir: Path, needed: int) -> None:
    """Refuse to start when the place ``run_dir`` goes has less than ``needed`` bytes free.

    ``needed`` is a lower bound on what the run will write (:data:`MIN_RUN_BYTES`,
    :data:`MIN_FIGURES_BYTES`), so a refusal is certain to have been a failure at
    the end; a run that passes may still fill the disk and then ends as
    :func:`finishing` says.
    """
    free = _free_bytes(run_dir.parent)
    if free is not None and free < needed:
        raise InnetError(
            f"{run_dir}: {_kilobytes(free)} free there, and a run directory takes at least "
            f"{_kilobytes(needed)}; free some space or choose another --out"
        )


def _free_bytes(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _kilobytes(count: int) -> str:
    return f"{count / 1e3:,.0f} kB" if count < 10**7 else f"{count / 1e6:,.0f} MB"


def _live_writer(run_dir: Path) -> str | None:
    """``pid N`` (or ``pid N on HOST``) of another process staging ``run_dir``, if any.

    A staging directory of another host counts (its process cannot be checked
    from here); one of this host whose process is gone does not.
    """
    if not run_dir.parent.is_dir():
        return None
    prefix = f".{run_dir.name}.partial-"
    for path in run_dir.parent.iterdir():
        match = _STAGING.match(path.name) if path.name.startswith(prefix) else None
        if not match or match["run"] != run_dir.name or not path.is_dir():
            continue
        pid, host = int(match["pid"]), match["host"]
        if host != _host():
            return f"pid {pid} on {host}"
        if pid != os.getpid() and _process_exists(pid):
            return f"pid {pid}"
    return None


def remove_stale_staging(parent: Path) -> list[Path]:
    """Remove this host's staging directories in ``parent`` whose process is gone."""
    if not parent.is_dir():
        return []
    removed = []
    for path in parent.iterdir():
        match = _STAGING.match(path.name)
        if not match or not path.is_dir() or match["host"] != _host():
            continue
        if not _process_exists(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _host() -> str:
    return socket.gethostname() or "localhost"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OverflowError:
        return False
    return True
