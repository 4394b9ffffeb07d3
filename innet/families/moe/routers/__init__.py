"""Routers: which experts each token goes to, and with what gate weight.

Every router kind is one module here, a subclass of :class:`~.base.Router`
registered in :data:`~.base.ROUTERS` under its ``router.kind`` (importing
this package registers them all); the trainer builds a variant's router
with ``ROUTERS.get(config.kind)(config, ...)`` and calls its methods, whatever
its kind. Adding a router is one new module (and a line below to import it):

- ``topk`` (:mod:`.topk`): the ``k`` most probable experts, Switch/GShard loss;
- ``bias`` (:mod:`.bias`): loss-free balancing by a bias moved against the load;
- ``ta`` (:mod:`.ta`): topology-weighted auxiliary loss (TA-MoE style);
- ``capped`` (:mod:`.capped`): a cap on the tokens leaving a source's group;
- ``group_limited`` (:mod:`.group_limited`): each token's experts in at most ``M`` groups;
- ``sinkhorn`` (:mod:`.sinkhorn`): balanced assignment by Sinkhorn;
- ``carl`` (:mod:`.carl`): communication-aware utilities, adaptive balance, Sinkhorn
  warm start and periodic re-placement;
- ``ac`` (:mod:`.ac`): the adaptive-clustering router.

The shared pieces (top-k, the load count, the Switch loss, the ``router``
block of a scenario) are in :mod:`.base`.
"""

from innet.families.moe.routers import (  # noqa: F401  (each registers its router kind)
    ac,
    bias,
    capped,
    carl,
    group_limited,
    sinkhorn,
    ta,
    topk,
)
from innet.families.moe.routers.base import ROUTERS, Router, RouterConfig

__all__ = ["ROUTERS", "Router", "RouterConfig"]
