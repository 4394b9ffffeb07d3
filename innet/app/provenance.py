"""Where a run came from: which innet, which code, which libraries, when and how long.

Every run directory keeps a ``provenance.json`` so that a number in a paper
can be traced back to the code that made it: innet's version, the git commit
of the checkout it ran from (with ``git_dirty`` when it had uncommitted
changes; both ``null`` outside a git checkout), the Python, PyTorch and NumPy
versions, the platform, the command line, the number of processes, when the
run started (UTC) and how long it took on the wall clock of this machine
(``wall_time_s``, the only wall-clock time innet reports: it says what the run
cost you, never what the network would take).
"""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from innet.app.version import __version__

__all__ = ["provenance", "git_state"]

_CHECKOUT = Path(__file__).resolve().parents[2]


def git_state(directory: Path = _CHECKOUT) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout at ``directory``; (None, None) when there is none."""
    if not (directory / ".git").exists():
        return None, None
    try:
        commit = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status.strip())


def provenance(started: datetime, wall_time_s: float, processes: int = 1) -> dict[str, Any]:
    """The provenance record of a run that started at ``started`` (aware, UTC)."""
    commit, dirty = git_state()
    return {
        "innet_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "processes": processes,
        "started_utc": started.astimezone(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(wall_time_s, 3),
    }
