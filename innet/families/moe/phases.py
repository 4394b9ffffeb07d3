"""The MoE family's kinds of traffic, registered with :mod:`innet.core.records` on import.

All are training traffic and *routed*: the network model carries each message
from its source to its destination hop by hop over the capacity-aware
shortest path. ``dispatch`` (tokens to an expert) and ``combine_grad``
(gradients of its outputs) flow forward; ``combine`` (its outputs) and
``dispatch_grad`` (gradients of the tokens) flow backward; ``migrate`` (an
expert's parameters moving to another node) has no flow and leaves when its
step starts.

>>> PHASES["dispatch"]
'moe_dispatch'
"""

from __future__ import annotations

from typing import Literal

from innet.core.phases import register_phase

__all__ = ["PHASES"]

_FLOWS: tuple[tuple[str, Literal["forward", "backward"] | None], ...] = (
    ("dispatch", "forward"),
    ("combine", "backward"),
    ("combine_grad", "forward"),
    ("dispatch_grad", "backward"),
    ("migrate", None),
)

PHASES = {
    name: register_phase(f"moe_{name}", training=True, flow=flow, routed=True).name
    for name, flow in _FLOWS
}
"""Short name → registered phase name."""
