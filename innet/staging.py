"""Where a run directory is assembled before it is renamed into place.

A run is written under a hidden staging name beside its final directory,
``.<run>.partial-<host>-<pid>``, and renamed only when complete. A process
killed outright (SIGKILL, power loss) cannot remove its staging directory, so
every new run first removes the staging directories of this host whose process
no longer exists. Directories of other hosts (a runs folder on a shared file
system) and of live processes are left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from pathlib import Path

from innet.errors import InnetError

_STAGING = re.compile(r"^\..+\.partial-(?P<host>.+)-(?P<pid>\d+)$")


def new_run_dir(name: str, out: Path | None) -> Path:
    """``out`` when given (absent or an empty directory), else a fresh ``runs/<name>-<stamp>``."""
    if out is not None:
        if out.exists() and not out.is_dir():
            raise InnetError(f"--out {out}: is a file, not a directory")
        if out.is_dir() and any(out.iterdir()):
            raise InnetError(f"--out {out}: directory exists and is not empty")
        return out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{name}-{stamp}"
    candidate, suffix = base, 2
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{suffix}")
        suffix += 1
    return candidate


def staging_dir(run_dir: Path) -> Path:
    """The hidden directory this process assembles ``run_dir`` in."""
    return run_dir.with_name(f".{run_dir.name}.partial-{_host()}-{os.getpid()}")


def prepare_staging(run_dir: Path) -> Path:
    """Create (empty) the staging directory of ``run_dir``, after sweeping stale ones.

    A place that cannot be written (read-only, no permission, a file in the way)
    is one :class:`~innet.errors.InnetError` naming it.
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
    return staging


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
