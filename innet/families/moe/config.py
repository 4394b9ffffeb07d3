"""The scenario blocks of the ``moe`` family.

A MoE scenario adds to the blocks every scenario has (:mod:`innet.core.config`):

- ``moe``: the data, the experts and where they live, the model sizes,
  training, the skew workload, the margin of the accuracy equivalence test
  against the top-k baseline (``equivalence_margin``, a fraction: 0.01 is
  one percentage point), and the balance check (CARL's controller on a Zipf
  hot-expert workload, no training);
- ``router``: the router every variant starts from; a variant overrides any
  of its fields (``variants.NAME.router``), typically ``kind`` and ``lambda``.
  Its model, :class:`~innet.families.moe.routers.base.RouterConfig`, lives
  with the routers (its ``kind`` is checked against their registry).

A variant's ``routing`` (the plan of the core report) defaults to ``dense``:
MoE traffic goes from each source to each expert's node over the
capacity-aware shortest path, whatever the plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from innet.core.config import ScenarioBase, VariantBase, merge_variant_block
from innet.core.errors import ConfigError
from innet.core.plans import ROUTINGS
from innet.core.yamlio import LineMap
from innet.families.moe.data import MOE_DATASETS
from innet.families.moe.routers import ROUTERS, RouterConfig
from innet.families.moe.workloads import WORKLOADS

__all__ = [
    "MoeConfig",
    "WorkloadConfig",
    "BalanceCheckConfig",
    "MoeVariant",
    "MoeScenario",
    "ResolvedMoeVariant",
    "resolve_variants",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkloadConfig(_Strict):
    kind: Annotated[str, AfterValidator(WORKLOADS.check)] = "balanced"
    zipf: float = Field(default=1.2, ge=0)  # hot_experts, rotating: popularity of rank r is r^-zipf
    # hot_source, bursts: the hot source's share over the others'
    hot: float = Field(default=4.0, ge=1)
    period: int = Field(default=20, gt=0)  # rotating, bursts: steps


class BalanceCheckConfig(_Strict):
    steps: int = Field(default=200, gt=0)
    tokens: int = Field(default=8192, gt=0)
    experts: int = Field(default=16, ge=2)
    groups: int = Field(default=4, ge=1)
    zipf: float = Field(default=1.2, ge=0)
    gammas: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: [0.002, 0.005, 0.02, 0.05], min_length=1
    )


class MoeConfig(_Strict):
    dataset: Annotated[str, AfterValidator(MOE_DATASETS.check)] = "digits"
    n_samples: int = Field(default=2000, ge=20)  # clusters, mnist1d
    n_features: int = Field(default=16, gt=0)  # clusters
    n_classes: int = Field(default=4, ge=2)  # clusters
    tight_features: int = Field(default=3, ge=0)  # clusters
    experts: int = Field(default=12, ge=2)
    top_k: int = Field(default=1, ge=1)
    layers: int = Field(default=1, ge=1)
    hidden: int = Field(default=32, gt=0)  # token width
    expert_hidden: int = Field(default=64, gt=0)
    batch_size: int = Field(default=256, gt=0)  # tokens per step, over all sources
    epochs: int = Field(default=4, gt=0)
    lr: float = Field(default=0.01, gt=0)
    sources: list[str] | None = None  # default: the topology's sensors
    expert_nodes: list[str] | None = None  # default: every other node
    workload: WorkloadConfig = Field(default_factory=WorkloadConfig)
    # accuracy: TOST margin against top-k
    equivalence_margin: float = Field(default=0.01, gt=0, le=1)
    balance_check: BalanceCheckConfig = Field(default_factory=BalanceCheckConfig)


class MoeVariant(VariantBase):
    routing: Annotated[str, AfterValidator(ROUTINGS.check)] = "dense"
    router: dict[str, Any] = Field(default_factory=dict)


class MoeScenario(ScenarioBase):
    moe: MoeConfig = Field(default_factory=MoeConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    variants: dict[str, MoeVariant]  # type: ignore[assignment]  # a dict of the base's subclass


class ResolvedMoeVariant(BaseModel):
    """A variant with its ``router`` overrides merged into the scenario's block."""

    name: str
    routing: str
    hop_cost_s: float = 0.0
    router: RouterConfig


def resolve_variants(
    scenario: MoeScenario, source: Path | None = None, lines: LineMap | None = None
) -> list[ResolvedMoeVariant]:
    """Merge each variant's ``router`` overrides into the scenario's ``router`` block."""
    resolved = []
    for name, variant in scenario.variants.items():
        router = merge_variant_block(
            RouterConfig,
            scenario.router,
            variant.router,
            variant=name,
            block="router",
            source=source,
            lines=lines,
        )
        if ROUTERS.get(router.kind).needs_layer_before and scenario.moe.layers < 2:
            raise ConfigError(
                f"the {router.kind} router needs a standard router in the layer before it: "
                "moe.layers >= 2",
                file=source,
                field=f"variants.{name}.router.kind",
                line=lines.line(("variants", name)) if lines else None,
            )
        resolved.append(
            ResolvedMoeVariant(
                name=name, routing=variant.routing, hop_cost_s=variant.hop_cost_s, router=router
            )
        )
    return resolved
