"""The scenario blocks of the ``moe`` family.

A MoE scenario adds to the blocks every scenario has (:mod:`innet.core.config`):

- ``moe``: the data, the experts and where they live, the model sizes,
  training, the skew workload, the margin of the accuracy equivalence test
  against the top-k baseline (``equivalence_margin``, a fraction: 0.01 is
  one percentage point), and the balance check (CARL's controller on a Zipf
  hot-expert workload, no training);
- ``router``: the router every variant starts from; a variant overrides any
  of its fields (``variants.NAME.router``), typically ``kind`` and ``lambda``.

A variant's ``routing`` (the plan of the core report) defaults to ``dense``:
MoE traffic goes from each source to each expert's node over the
capacity-aware shortest path, whatever the plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from innet.core.config import ScenarioBase, VariantBase, merge_variant_block, registered
from innet.core.errors import ConfigError
from innet.core.yamlio import LineMap

__all__ = [
    "MoeConfig",
    "RouterConfig",
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
    kind: Annotated[
        str, AfterValidator(registered("workload", "innet.families.moe.workloads", "WORKLOADS"))
    ] = "balanced"
    zipf: float = Field(1.2, ge=0)  # hot_experts, rotating: popularity of rank r is r^-zipf
    hot: float = Field(4.0, ge=1)  # hot_source, bursts: the hot source's share over the others'
    period: int = Field(20, gt=0)  # rotating, bursts: steps


class BalanceCheckConfig(_Strict):
    steps: int = Field(200, gt=0)
    tokens: int = Field(8192, gt=0)
    experts: int = Field(16, ge=2)
    groups: int = Field(4, ge=1)
    zipf: float = Field(1.2, ge=0)
    gammas: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: [0.002, 0.005, 0.02, 0.05], min_length=1
    )


class MoeConfig(_Strict):
    dataset: Annotated[
        str, AfterValidator(registered("moe dataset", "innet.families.moe.data", "MOE_DATASETS"))
    ] = "digits"
    n_samples: int = Field(2000, ge=20)  # clusters, mnist1d
    n_features: int = Field(16, gt=0)  # clusters
    n_classes: int = Field(4, ge=2)  # clusters
    tight_features: int = Field(3, ge=0)  # clusters
    experts: int = Field(12, ge=2)
    top_k: int = Field(1, ge=1)
    layers: int = Field(1, ge=1)
    hidden: int = Field(32, gt=0)  # token width
    expert_hidden: int = Field(64, gt=0)
    batch_size: int = Field(256, gt=0)  # tokens per step, over all sources
    epochs: int = Field(4, gt=0)
    lr: float = Field(0.01, gt=0)
    sources: list[str] | None = None  # default: the topology's sensors
    expert_nodes: list[str] | None = None  # default: every other node
    workload: WorkloadConfig = Field(default_factory=WorkloadConfig)
    equivalence_margin: float = Field(0.01, gt=0, le=1)  # accuracy: TOST margin against top-k
    balance_check: BalanceCheckConfig = Field(default_factory=BalanceCheckConfig)


class RouterConfig(_Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: Annotated[
        str, AfterValidator(registered("router kind", "innet.families.moe.routers", "ROUTERS"))
    ] = "topk"
    alpha: float = Field(0.01, ge=0)  # auxiliary loss (topk, ta, and every router's reported loss)
    bias_rate: float = Field(0.001, ge=0)  # bias: u
    cap: float = Field(0.25, ge=0, le=1)  # capped: fraction of a source's tokens leaving its group
    max_groups: int = Field(1, ge=1)  # group_limited: M
    lam: float = Field(0.0, ge=0, alias="lambda")  # carl: cost weight
    balance: Annotated[
        str, AfterValidator(registered("balance", "innet.families.moe.balance", "BALANCE_MODES"))
    ] = "adaptive"
    gamma: float = Field(0.02, ge=0)  # carl: gamma0
    warm_start: int = Field(0, ge=0)  # carl: W steps of Sinkhorn selection
    replace_every: int = Field(0, ge=0)  # carl: P (0: never re-place)
    ac_clip: float = Field(10.0, gt=0)  # ac: weights clipped at ac_clip × their mean (above only)


class MoeVariant(VariantBase):
    routing: Annotated[
        str, AfterValidator(registered("routing", "innet.core.plans", "ROUTINGS"))
    ] = "dense"
    router: dict[str, Any] = Field(default_factory=dict)


class MoeScenario(ScenarioBase):
    moe: MoeConfig = Field(default_factory=MoeConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    variants: dict[str, MoeVariant]


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
            RouterConfig, scenario.router, variant.router, variant=name, block="router",
            source=source, lines=lines,
        )  # fmt: skip
        if router.kind == "ac" and scenario.moe.layers < 2:
            raise ConfigError(
                "the ac router needs a standard router in the layer before it: moe.layers >= 2",
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
