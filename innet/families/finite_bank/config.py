"""The scenario blocks of the ``finite_bank`` family.

A finite-bank scenario adds to the blocks every scenario has
(:mod:`innet.core.config`):

- ``bank``: the data set the experts are trained on and how many experts
  (``K``, 8 to 16) the bank holds;
- ``gibbs``: the Gibbs selection experiment: the strengths
  ``alphas``, the training-set sizes ``sample_sizes`` and the number of
  resampled training sets per cell;
- ``router``: the discrete gate trained as a router over the bank:
  the rate penalties ``betas`` (one epoch of the run per beta), its
  temperature, steps, batch size and learning rate, and the slopes of the
  Blahut–Arimoto curve it is compared with;
- ``gating_bound``: the synthetic Gaussian-mixture task of the finite-rate
  gating bound.

A variant names a routing (the plan of the expert nodes around the gate node)
and may override ``router`` fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from innet.core.config import ScenarioBase, VariantBase, merge_variant_block
from innet.core.yamlio import LineMap
from innet.families.finite_bank.datasets import DATASETS

__all__ = [
    "BankConfig",
    "GibbsConfig",
    "RouterConfig",
    "GatingBoundConfig",
    "FiniteBankVariant",
    "FiniteBankScenario",
    "ResolvedBankVariant",
    "resolve_variants",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _ascending(values: list[float]) -> list[float]:
    if sorted(set(values)) != list(values):
        raise ValueError(f"must be distinct and in increasing order, got {values}")
    return values


Ascending = AfterValidator(_ascending)


class BankConfig(_Strict):
    dataset: Annotated[str, AfterValidator(DATASETS.check)] = "digits"
    experts: int = Field(default=12, ge=8, le=16)
    # MNIST-1D: how many samples make_dataset makes
    mnist1d_samples: int = Field(default=4000, ge=500)
    seed: int = Field(default=0, ge=0)  # the data split and the experts' training


class GibbsConfig(_Strict):
    alphas: Annotated[list[Annotated[float, Field(ge=0)]], Ascending] = Field(min_length=2)
    sample_sizes: Annotated[list[Annotated[int, Field(gt=0)]], Ascending] = Field(min_length=1)
    resamples: int = Field(default=200, ge=2)


class RouterConfig(_Strict):
    betas: Annotated[list[Annotated[float, Field(ge=0)]], Ascending] = Field(min_length=1)
    latent_dim: int = Field(default=8, gt=0)
    tau: float = Field(default=1.0, gt=0)
    steps: int = Field(default=150, gt=0)
    batch_size: int = Field(default=64, gt=0)
    lr: float = Field(default=0.03, gt=0)
    slopes: Annotated[list[Annotated[float, Field(gt=0)]], Ascending] = Field(min_length=2)


class GatingBoundConfig(_Strict):
    experts: int = Field(default=8, ge=2)
    candidates: int = Field(default=12, ge=2)  # gates W is chosen among
    separation: float = Field(default=2.5, gt=0)  # radius of the circle the experts' centres lie on
    population: int = Field(default=3000, ge=100)
    alpha: float = Field(default=100.0, ge=0)
    temperatures: Annotated[list[Annotated[float, Field(gt=0)]], Ascending] = Field(min_length=1)
    sample_sizes: Annotated[list[Annotated[int, Field(gt=0)]], Ascending] = Field(min_length=1)
    resamples: int = Field(default=200, ge=2)
    slopes: Annotated[list[Annotated[float, Field(gt=0)]], Ascending] = Field(min_length=2)


class FiniteBankVariant(VariantBase):
    router: dict[str, Any] = Field(default_factory=dict)


class FiniteBankScenario(ScenarioBase):
    bank: BankConfig = Field(default_factory=BankConfig)
    gibbs: GibbsConfig
    router: RouterConfig
    gating_bound: GatingBoundConfig
    variants: dict[str, FiniteBankVariant]  # type: ignore[assignment]  # a dict of the base's subclass


class ResolvedBankVariant(BaseModel):
    """A variant with its ``router`` overrides merged into the scenario's block."""

    name: str
    routing: str
    hop_cost_s: float = 0.0
    router: RouterConfig


def resolve_variants(
    scenario: FiniteBankScenario, source: Path | None = None, lines: LineMap | None = None
) -> list[ResolvedBankVariant]:
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
        resolved.append(
            ResolvedBankVariant(
                name=name, routing=variant.routing, hop_cost_s=variant.hop_cost_s, router=router
            )
        )
    return resolved
