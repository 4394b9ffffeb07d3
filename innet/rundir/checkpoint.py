"""Checkpoints of a run: what it needs to continue after it was stopped.

A run given ``--checkpoint-every K`` keeps, beside its run directory, a hidden
folder ``.<run>.checkpoint/`` (not inside the staging directory, which the next
run sweeps away). It holds:

- ``manifest.json``: how to rebuild the run (the command-line options that make
  the same scenario, a digest of the resolved scenario), the world size, the
  innet version, the (variant, seed)s already finished, the one in progress
  with its last saved epoch, and a SHA-256 of every other file;
- ``result-<n>.pt``: a finished (variant, seed)'s
  :class:`~innet.core.training.TrainResult` (written by the leader), so that it is
  not trained again;
- ``state-<n>-e<epoch>-r<rank>.pt``: for the (variant, seed) in progress, what
  each process saved last through :class:`~innet.core.training.Checkpoints`.

Every file is written under a temporary name in the same folder, flushed to
disk and renamed into place; the manifest is written last, so the folder always
describes a consistent moment, and files the manifest no longer names are
removed after it. :func:`open_checkpoint` refuses a damaged folder (a file
missing, truncated or altered) or one of another world size or innet version
with one :class:`~innet.core.errors.InnetError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from innet.core.errors import InnetError
from innet.core.group import Group
from innet.core.training import Checkpoints, TrainResult

__all__ = [
    "MANIFEST_FILE",
    "RunCheckpoint",
    "checkpoint_dir",
    "open_checkpoint",
    "read_manifest",
]

MANIFEST_FILE = "manifest.json"
_FORMAT = 1
_MANIFEST_KEYS = {"format", "files", "done", "current", "args", "version", "world_size"}


def checkpoint_dir(run_dir: Path) -> Path:
    """The hidden folder beside ``run_dir`` that holds its checkpoints."""
    return run_dir.with_name(f".{run_dir.name}.checkpoint")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    """``data`` into ``path``: a temporary name in the same folder, fsync, rename."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    with contextlib.suppress(OSError):  # make the rename itself durable where possible
        descriptor = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _to_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class RunCheckpoint:
    """A run's checkpoint folder, shared by every process of the run's group.

    The manifest is read and written by the leader and shared with the others
    (:meth:`~innet.core.group.Group.broadcast`); each process writes and reads its
    own state files. Methods that take part in collective calls (:meth:`record`,
    :class:`_RunCheckpoints.save`) are called on every process at the same point.
    """

    def __init__(self, directory: Path, every: int, group: Group, manifest: dict[str, Any]) -> None:
        self.directory = directory
        self.every = every
        self.group = group
        self.manifest = manifest

    @classmethod
    def create(
        cls, directory: Path, every: int, group: Group, header: dict[str, Any]
    ) -> RunCheckpoint:
        """A fresh, empty checkpoint folder (an old one there is replaced).

        ``header``: what :func:`open_checkpoint` checks and the command needs to
        rebuild the run (``version``, ``world_size``, ``args``, ``scenario_digest``).
        """
        manifest = {"format": _FORMAT, **header, "done": [], "current": None, "files": {}}
        checkpoint = cls(directory, every, group, manifest)
        if group.is_leader:
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            checkpoint._write_manifest()
        group.barrier()
        return checkpoint

    # ------------------------------------------------------------------ reading

    def finished_result(self, variant: str, seed: int) -> TrainResult | None:
        """The saved result of a finished (variant, seed) on the leader; None elsewhere."""
        if not self.group.is_leader:
            return None
        name = self._entry(variant, seed)["result"]
        result = self._load(name)
        if not isinstance(result, TrainResult):
            raise InnetError(f"{self.directory / name}: damaged checkpoint file")
        return result

    def is_finished(self, variant: str, seed: int) -> bool:
        """Whether (variant, seed) finished before the run was stopped."""
        return any(entry["run"] == [variant, seed] for entry in self.manifest["done"])

    def resumed_epoch(self, variant: str, seed: int) -> int | None:
        """The last epoch saved for (variant, seed) while it was in progress, or None."""
        current = self.manifest["current"]
        return current["epoch"] if current and current["run"] == [variant, seed] else None

    def _entry(self, variant: str, seed: int) -> dict[str, Any]:
        return next(entry for entry in self.manifest["done"] if entry["run"] == [variant, seed])

    def _load(self, name: str) -> Any:
        """A file the manifest names, checked against its digest."""
        data = (self.directory / name).read_bytes()
        if _digest(data) != self.manifest["files"].get(name):
            raise InnetError(f"{self.directory / name}: damaged checkpoint file (checksum differs)")
        return torch.load(io.BytesIO(data), weights_only=False)

    # ------------------------------------------------------------------ writing

    def for_run(self, variant: str, seed: int) -> Checkpoints:
        """The :class:`~innet.core.training.Checkpoints` of one (variant, seed)."""
        return _RunCheckpoints(self, variant, seed)

    def record(self, variant: str, seed: int, result: TrainResult | None) -> None:
        """(variant, seed) finished with ``result`` (the leader's; None elsewhere): keep it.

        Called on every process; the (variant, seed)'s state files are dropped.
        """
        name = f"result-{len(self.manifest['done'])}.pt"
        self.manifest["done"].append({"run": [variant, seed], "result": name})
        self.group.barrier()
        if self.group.is_leader:
            data = _to_bytes(result)
            _write_atomically(self.directory / name, data)
            self.manifest["files"][name] = _digest(data)
            self._set_current(None)
        self.group.barrier()

    def _save_state(self, variant: str, seed: int, epoch: int, state: dict[str, Any]) -> None:
        """Every process's ``state`` after ``epoch``, then the manifest that names them."""
        name = f"state-{len(self.manifest['done'])}-e{epoch}-r{self.group.rank}.pt"
        data = _to_bytes(state)
        _write_atomically(self.directory / name, data)
        names = self.group.gather((name, _digest(data)))
        if names is not None:
            self.manifest["files"].update(dict(names))
            self._set_current({"run": [variant, seed], "epoch": epoch, "states": dict(names)})
        self.group.barrier()

    def _set_current(self, current: dict[str, Any] | None) -> None:
        """(Leader) the run in progress is now ``current``: write the manifest, drop old files."""
        self.manifest["current"] = current
        kept = {entry["result"] for entry in self.manifest["done"]}
        kept |= {name for name, _ in (current or {}).get("states", {}).items()}
        self.manifest["files"] = {k: v for k, v in self.manifest["files"].items() if k in kept}
        self._write_manifest()
        for path in self.directory.iterdir():
            if path.name not in kept and path.name.startswith(("state-", "result-")):
                path.unlink(missing_ok=True)

    def _write_manifest(self) -> None:
        text = json.dumps(self.manifest, indent=1, sort_keys=True) + "\n"
        _write_atomically(self.directory / MANIFEST_FILE, text.encode())


class _RunCheckpoints(Checkpoints):
    """One (variant, seed)'s view of a :class:`RunCheckpoint`."""

    def __init__(self, run: RunCheckpoint, variant: str, seed: int) -> None:
        self.run, self.variant, self.seed = run, variant, seed

    def resume(self) -> dict[str, Any] | None:
        current = self.run.manifest["current"]
        if not current or current["run"] != [self.variant, self.seed]:
            return None
        name = _state_name(current["states"], self.run.group.rank, self.run.directory)
        state = self.run._load(name)
        if not isinstance(state, dict):
            raise InnetError(f"{self.run.directory / name}: damaged checkpoint file")
        return state

    def due(self, epoch: int) -> bool:
        return (epoch + 1) % self.run.every == 0

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        self.run._save_state(self.variant, self.seed, epoch, state)


def _state_name(states: dict[str, str], rank: int, directory: Path) -> str:
    mine = [name for name in states if name.endswith(f"-r{rank}.pt")]
    if len(mine) != 1:
        raise InnetError(f"{directory}: no saved state of rank {rank} (another world size?)")
    return mine[0]


def open_checkpoint(
    directory: Path,
    group: Group,
    check: Callable[[dict[str, Any]], None],
    every: int,
) -> RunCheckpoint:
    """The checkpoint folder ``directory``, checked, on every process of ``group``.

    The leader reads the manifest and checks every file it names against its
    digest, and ``check`` compares the header (version, world size, scenario)
    with this run; the first problem is one :class:`~innet.core.errors.InnetError`,
    on every process. ``every``: the epochs between checkpoints from now on.
    """
    manifest, problem = None, None
    if group.is_leader:
        try:
            manifest = read_manifest(directory)
            check(manifest)
        except InnetError as error:
            problem = str(error)
    manifest, problem = group.broadcast((manifest, problem))
    if problem is not None:
        raise InnetError(problem)
    assert manifest is not None
    return RunCheckpoint(directory, every, group, manifest)


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of ``directory``, every file it names checked (one line on a problem)."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise InnetError(f"{directory}: no checkpoint there (no {MANIFEST_FILE})")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise InnetError(f"{path}: damaged checkpoint manifest") from None
    if not isinstance(manifest, dict) or not manifest.keys() >= _MANIFEST_KEYS:
        raise InnetError(f"{path}: damaged checkpoint manifest")
    if manifest["format"] != _FORMAT:
        raise InnetError(f"{path}: a checkpoint format this innet cannot read")
    for name, digest in manifest["files"].items():
        try:
            data = (directory / name).read_bytes()
        except OSError:
            raise InnetError(f"{directory / name}: checkpoint file missing") from None
        if _digest(data) != digest:
            raise InnetError(f"{directory / name}: damaged checkpoint file (checksum differs)")
    return manifest
