"""How a family's runs are summarised and reported, next to the core report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from innet.rundir.io import RunData
    from innet.rundir.layout import FamilyTable

__all__ = ["FamilyReport", "HeadlineColumn"]


@dataclass(frozen=True)
class HeadlineColumn:
    """A column a family adds to the headline table: its header and how to fill it."""

    header: str
    value: Callable[[dict[str, Any], str, dict[str, Any]], str]  # (variant summary, name, summary)
    align: str = "right"
    before_exchange: bool = False  # placed before the training-exchange columns


@dataclass(frozen=True)
class FamilyReport:
    """How a family's runs are summarised and reported, next to the core report."""

    variant_summary: Callable[[RunData, str, list[int]], dict[str, Any]] = (
        lambda run, variant, seeds: {}
    )
    comparison: Callable[[str, str, dict[str, Any], dict[str, Any]], dict[str, Any]] = (
        lambda a, b, summary_a, summary_b: {}
    )
    headline: tuple[HeadlineColumn, ...] = ()
    sections: tuple[Callable[[RunData, dict[str, Any]], str], ...] = ()
    figures: Callable[[RunData, Path], list[tuple[str, str]]] = lambda run, out_dir: []
    tables: dict[str, FamilyTable] = field(default_factory=dict)
    metric_names: tuple[str, ...] = ()  # the family's columns of metrics.csv
    primary_metric: str | None = None  # shown around events
    follows_plan: bool = True
    """Whether training traffic runs along the variant's plan (topology figures draw its
    arrows, the report shows each variant's routing and plan); False for families that
    send where they choose (tokens to experts)."""
    node_roles: Callable[[RunData], dict[str, str]] | None = None
    """Each node's role in the family's words (the report's overview counts them);
    None: the topology's roles (fusion, sensor, relay)."""
    exchange_label: str = "training exchange"
    """What the headline calls the training bytes of ``train_exchange_bytes``."""
    traffic_label: str = "forward latents and backward gradients"
    """What the training traffic on the links is, in the report's words."""
    tradeoff_metrics: tuple[str, ...] | None = None
    """Final-epoch metrics a sweep plots the primary metric against (the ``inl`` family's
    latent rate: the beta curve); None: every one of ``metric_names`` but the primary."""

    def tradeoffs(self) -> tuple[str, ...]:
        """The metrics a sweep plots the primary metric against (see ``tradeoff_metrics``)."""
        if self.tradeoff_metrics is not None:
            return self.tradeoff_metrics
        return tuple(name for name in self.metric_names if name != self.primary_metric)
