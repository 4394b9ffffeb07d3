"""``topk``: the ``k`` most probable experts, trained with the Switch/GShard auxiliary loss
(:func:`~innet.families.moe.routers.base.switch_loss`); the base router as it is."""

from __future__ import annotations

from innet.families.moe.routers.base import ROUTERS, Router

__all__ = ["TopK"]


@ROUTERS.register("topk")
class TopK(Router):
    """The base router: top-k of the logits."""
