"""Phases: the kinds of traffic a run records.

**Phases** are a small registry. Each phase says whether its bytes count
towards the *training exchange* and how its messages flow through a node in
the network model: ``forward`` (a node sends once all its forward inputs have
arrived), ``backward`` (once all its backward inputs have arrived), or
``None`` (the family gives each message's dependencies explicitly). Families
register their own phases with :func:`register_phase`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from innet.core.registry import Registry

__all__ = [
    "Phase",
    "Flow",
    "register_phase",
    "get_phase",
    "phase_names",
    "training_phases",
]

Flow = Literal["forward", "backward"]


@dataclass(frozen=True)
class Phase:
    """A kind of traffic: whether it is training traffic and how it flows through a node.

    ``routed``: its messages may join nodes that share no link; the network model
    carries them hop by hop over the capacity-aware shortest path.
    """

    name: str
    training: bool
    flow: Flow | None
    routed: bool = False


_PHASES: Registry[Phase] = Registry("phase")


def register_phase(name: str, *, training: bool, flow: Flow | None, routed: bool = False) -> Phase:
    """Add a phase to the vocabulary (idempotent for an identical definition)."""
    phase = Phase(name, training, flow, routed)
    if name in _PHASES and _PHASES.get(name) != phase:
        raise ValueError(f"phase {name!r} is already registered as {_PHASES.get(name)}")
    return _PHASES.register(name, phase)


def get_phase(name: str) -> Phase:
    """The registered phase called ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in _PHASES:
        raise ValueError(_PHASES.unknown(name))
    return _PHASES.get(name)


def phase_names() -> tuple[str, ...]:
    """Every registered phase, in registration order (the order records are sorted in)."""
    return _PHASES.names()


def training_phases() -> tuple[str, ...]:
    """The phases whose bytes make up the training exchange."""
    return tuple(name for name, phase in _PHASES.items() if phase.training)


# a sender's codebook (codeword-index wire formats) goes before its latents: first in a step
register_phase("codebook", training=True, flow="forward")
register_phase("forward", training=True, flow="forward")
register_phase("backward", training=True, flow="backward")
register_phase("eval", training=False, flow="forward")
