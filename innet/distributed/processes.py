"""A run's nodes spread over the ranks of a torch.distributed job.

:class:`DistributedProcesses` decides which rank runs which node of each
variant (:func:`~innet.core.placement.place_nodes`; every rank computes
the same answer), gives each (variant, seed) a
:class:`~innet.distributed.transport.DistributedTransport`, counts the bytes
that really crossed a process boundary (``bytes_on_wire``) and the tensors
that carried them (``tensors_on_wire``: one per message sent on its own, one
per bundle of the batched executor), and describes all of it for the run
directory's ``placement.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from innet.core.errors import ConfigError
from innet.core.group import Processes
from innet.core.placement import cross_rank_links, place_nodes
from innet.core.plans import Plan
from innet.core.topology.model import Topology
from innet.core.transport import Transport
from innet.distributed.context import DistContext
from innet.distributed.group import ProcessGroup
from innet.distributed.transport import DistributedTransport

__all__ = ["DistributedProcesses"]


class DistributedProcesses(Processes):
    """The ranks of ``context``, with each variant's nodes placed by ``strategy``.

    ``explicit`` is the scenario's ``distributed.map`` (node -> rank), needed by
    the ``explicit`` strategy; ``source`` names the scenario file in errors.
    """

    def __init__(
        self,
        context: DistContext,
        topology: Topology,
        plans: Mapping[str, Plan],
        strategy: str,
        explicit: Mapping[str, int] | None = None,
        source: Any = None,
    ) -> None:
        if strategy == "explicit" and explicit is None:
            raise ConfigError(
                "placement 'explicit' needs distributed.map (node: rank)",
                file=source,
                field="distributed.map",
            )
        self.context = context
        self.group = ProcessGroup(context)
        self.plans = dict(plans)
        self.placements = {
            name: place_nodes(topology, plan, context.world_size, strategy, explicit=explicit)
            for name, plan in plans.items()
        }
        self._sent: dict[str, dict[int, int]] = {name: {} for name in plans}
        self._tensors: dict[str, dict[int, int]] = {name: {} for name in plans}

    def transport(self, variant: str) -> Transport:
        context = self.context
        return DistributedTransport(
            self.placements[variant], context.rank, context.world_size, context.device
        )

    def finished(self, variant: str, seed: int, transport: Transport) -> None:
        assert isinstance(transport, DistributedTransport)
        counts = self.group.gather(
            (transport.bytes_sent_cross_rank, transport.messages_sent_cross_rank)
        )
        if counts is not None:
            self._sent[variant][seed] = int(sum(nbytes for nbytes, _ in counts))
            self._tensors[variant][seed] = int(sum(tensors for _, tensors in counts))

    def placement_record(self) -> dict[str, Any]:
        context = self.context
        return {
            "world_size": context.world_size,
            "backend": context.backend,
            "device": str(context.device),
            "variants": {
                name: {
                    "ranks": self.placements[name],
                    "cross_rank_links": cross_rank_links(plan.edges, self.placements[name]),
                    "bytes_on_wire": {str(seed): n for seed, n in self._sent[name].items()},
                    "tensors_on_wire": {str(seed): n for seed, n in self._tensors[name].items()},
                }
                for name, plan in self.plans.items()
            },
        }
