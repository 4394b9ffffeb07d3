"""Joining (and leaving) a torch.distributed job started by ``torchrun``.

``torchrun --nproc-per-node 4 run_sim.py ...`` starts four copies of the
program and tells each one who it is through environment variables:
``RANK`` (0..WORLD_SIZE-1, this process), ``WORLD_SIZE`` (how many),
``LOCAL_RANK`` (its index on this machine, which picks its GPU) and
``MASTER_ADDR``/``MASTER_PORT`` (where rank 0 waits for the others). Joining
the job — the *rendezvous* — means connecting to that address; once every
process has arrived, they form a *process group* that can exchange tensors.

:func:`init_distributed` does this and returns a :class:`DistContext` saying
who this process is and which device and backend it uses (NCCL for GPUs,
gloo for CPUs). Without ``torchrun`` (``WORLD_SIZE`` unset) it returns None
and the simulator runs in one process. :func:`shutdown` leaves the group.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from innet.core.errors import InnetError

__all__ = ["DistContext", "DistributedError", "init_distributed", "is_torchrun", "shutdown"]

_BACKENDS = ("auto", "gloo", "nccl")


class DistributedError(InnetError):
    """torch.distributed could not start or a peer process stopped answering (one line)."""


@dataclass(frozen=True)
class DistContext:
    """Who this process is in a torch.distributed job, and what it computes on."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device


def is_torchrun() -> bool:
    """True when this process was started by ``torchrun`` (``WORLD_SIZE`` is set)."""
    return "WORLD_SIZE" in os.environ


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise DistributedError(f"torchrun environment incomplete: {name} is not set")
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"{name} must be an integer, got {value!r}") from None


def _choose_device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise DistributedError(f"unknown device {device!r} (expected auto, cpu or cuda)") from None
    if chosen.type == "cpu":
        return torch.device("cpu")
    if chosen.type != "cuda":
        raise DistributedError(f"unsupported device {device!r} (expected auto, cpu or cuda)")
    if not torch.cuda.is_available():
        raise DistributedError(f"device {device!r} requested but CUDA is not available")
    index = local_rank if chosen.index is None else chosen.index
    if index >= torch.cuda.device_count():
        raise DistributedError(
            f"LOCAL_RANK {local_rank} needs GPU {index} but only "
            f"{torch.cuda.device_count()} are visible"
        )
    return torch.device("cuda", index)


def _choose_backend(backend: str, device: torch.device) -> str:
    if backend not in _BACKENDS:
        raise DistributedError(f"unknown backend {backend!r} (expected {', '.join(_BACKENDS)})")
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise DistributedError("backend nccl needs a CUDA device (use gloo on CPU)")
    if backend == "gloo" and device.type != "cpu":
        raise DistributedError("backend gloo is used with device cpu here (use nccl on CUDA)")
    available = dist.is_nccl_available() if backend == "nccl" else dist.is_gloo_available()
    if not available:
        raise DistributedError(f"this torch build has no {backend} backend")
    return backend


def _import_world_capturing_modules() -> None:
    """Import, before the process group exists, the torch modules that would keep it alive.

    ``torch.distributed.nn.functional`` declares ``def all_reduce(..., group=group.WORLD)``
    and nine more such functions: Python evaluates the default once, at import. torch
    imports that module lazily (the first ``torch.optim`` optimizer imports
    ``torch._dynamo``, which imports it), so in a torchrun rank it used to be imported
    after ``init_process_group``, and its defaults held the default group for good:
    ``destroy_process_group()`` then could not free it, and gloo's threads (two
    ``pt_gloo_runloop`` workers, ``gloo_tcp_loop``) lived on into interpreter
    finalisation. A worker still letting go of a finished barrier (holding the previous
    gather and its tensor, whose Python object it must release) then asks for the GIL,
    Python ends the thread with ``pthread_exit`` and the unwinding through the Work's
    destructor calls ``std::terminate``: "terminate called without an active
    exception", SIGABRT, after the run was written. Imported first, the defaults are
    None, and destroying the group joins those threads while Python is still running.
    """
    with contextlib.suppress(ImportError):  # a torch without it cannot capture the group
        import torch.distributed.nn.functional  # noqa: F401


def init_distributed(
    backend: str = "auto", device: str = "auto", timeout_s: float = 60
) -> DistContext | None:
    """Join the torchrun job this process belongs to; None when not started by torchrun.

    ``backend``: ``auto`` (NCCL on CUDA, gloo on CPU), ``gloo`` or ``nccl``.
    ``device``: ``auto`` (``cuda:LOCAL_RANK`` when CUDA is available, else
    CPU), ``cpu``, ``cuda`` (``cuda:LOCAL_RANK``) or ``cuda:N``.
    ``timeout_s`` bounds the rendezvous and, afterwards, every wait for a peer.
    Failures raise :class:`DistributedError` with a one-line message.
    """
    if not is_torchrun():
        return None
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed support")
    if dist.is_initialized():
        raise DistributedError("torch.distributed is already initialised in this process")
    world_size = _env_int("WORLD_SIZE")
    rank = _env_int("RANK")
    local_rank = _env_int("LOCAL_RANK", default=0)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise DistributedError(f"torchrun environment incomplete: {name} is not set")
    if not 0 <= rank < world_size:
        raise DistributedError(f"RANK {rank} is outside 0..{world_size - 1} (WORLD_SIZE)")
    chosen_device = _choose_device(device, local_rank)
    chosen_backend = _choose_backend(backend, chosen_device)
    if chosen_device.type == "cuda":
        torch.cuda.set_device(chosen_device)
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    _import_world_capturing_modules()
    options: dict[str, Any] = {}
    if chosen_device.type == "cuda":  # binds the group to this GPU and connects NCCL eagerly
        options["device_id"] = chosen_device
    restart = _env_int("TORCHELASTIC_RESTART_COUNT", default=0)
    try:
        if restart > 0:  # torchrun restarted the group: its store still holds the last
            # attempt's addresses, so this attempt's group keeps its keys apart
            (store, _, _) = next(dist.rendezvous("env://", rank, world_size,
                                                 timeout=timedelta(seconds=timeout_s)))  # fmt: skip
            options["store"] = dist.PrefixStore(f"innet/attempt_{restart}", store)
        else:
            options["init_method"] = "env://"
        dist.init_process_group(
            chosen_backend,
            timeout=timedelta(seconds=timeout_s),
            world_size=world_size,
            rank=rank,
            **options,
        )
    except Exception as error:  # noqa: BLE001 - reported to the user as one line
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DistributedError(
            f"rank {rank} of {world_size} could not join the {chosen_backend} process group "
            f"at {where} within {timeout_s:g} s: {reason}"
        ) from error
    return DistContext(rank, world_size, local_rank, chosen_backend, chosen_device)


def shutdown(context: DistContext | None, *, wait: bool = False) -> None:
    """Leave the process group (nothing to do for None or an already closed group).

    With ``wait``, first meet every other rank at a barrier, so that no rank tears
    its connections down while rank 0 is still writing the run directory (a rank
    that leaves early can abort and make the launcher stop the others).

    Destroying the group frees the gloo backend and joins its threads, here, while
    Python still runs; that needs nothing else to hold the group (see
    :func:`_import_world_capturing_modules`): a gloo thread still alive when the
    interpreter finalises can abort the process.
    """
    if context is None or not (dist.is_available() and dist.is_initialized()):
        return
    if wait and context.world_size > 1:
        with contextlib.suppress(RuntimeError):  # a peer is gone already: nothing to wait for
            dist.barrier()
    dist.destroy_process_group()
