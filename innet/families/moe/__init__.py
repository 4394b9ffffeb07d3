"""The ``moe`` family: Mixture-of-Experts routing over the network.

Token sources on some nodes route tokens to experts on other nodes; tokens,
outputs and gradients travel as real tensors over the capacity-aware shortest
paths of the topology, and the network model times them. Routers compared:
top-k with the Switch loss, loss-free bias balancing, topology-weighted loss,
a cap on tokens leaving a group, group-limited routing, Sinkhorn, the
adaptive-clustering router and CARL (communication-aware, adaptively
balanced, with Sinkhorn warm start and re-placement). Scenario blocks:
:mod:`.config`; routers: :mod:`.routers` and :mod:`.balance`; skew:
:mod:`.workloads` and :mod:`.metrics`; where experts live: :mod:`.placement`;
training: :mod:`.trainer`; report: :mod:`.report`. See ``docs/moe.md``.
"""

from innet.core.config import LoadedScenario
from innet.core.topology.model import Topology
from innet.core.training import Trainer
from innet.families.family import Family
from innet.families.moe.config import MoeScenario, resolve_variants
from innet.families.moe.report import MOE_REPORT

__all__ = ["MOE"]


def _prepare(loaded: LoadedScenario, topology: Topology) -> Trainer:
    """The trainer, imported only when a run starts."""
    from innet.families.moe.trainer import MoeTrainer

    return MoeTrainer(loaded, topology)


MOE = Family(
    name="moe",
    scenario_model=MoeScenario,
    resolve_variants=resolve_variants,
    prepare=_prepare,
    report=MOE_REPORT,
)
