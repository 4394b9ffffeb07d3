"""Nodes as torch.distributed processes: the distributed transport, joining the job.

Under ``torchrun`` every process runs the same program. :func:`init_distributed`
joins the job; :func:`~innet.core.placement.place_nodes` decides which rank
runs which node (every rank computes the same answer); :class:`DistributedTransport`
carries messages between nodes on different ranks with point-to-point sends and
receives, and keeps the others in memory; :class:`ProcessGroup` gathers results on rank 0
and shares its decisions; :class:`DistributedProcesses` puts these together
for the runner. Nothing outside this package imports ``torch.distributed``. The
executors are the same as in one process: the per-node one sends each message
on its own, the batched one a bundle of messages per (phase, level, pair of
ranks) (:meth:`DistributedTransport.exchange`).
"""

from innet.distributed.context import (
    DistContext,
    DistributedError,
    init_distributed,
    is_torchrun,
    shutdown,
)
from innet.distributed.group import ProcessGroup
from innet.distributed.processes import DistributedProcesses
from innet.distributed.transport import DistributedTransport

__all__ = [
    "DistContext",
    "DistributedError",
    "DistributedProcesses",
    "DistributedTransport",
    "ProcessGroup",
    "init_distributed",
    "is_torchrun",
    "shutdown",
]
