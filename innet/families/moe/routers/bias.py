"""``bias``: loss-free balancing, top-k of ``logits + b`` where
``b_i += u * sign(mean load - load_i)`` after each step (:func:`bias_update`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from innet.families.moe.routers.base import ROUTERS, Router, topk

__all__ = ["BiasRouter", "bias_update"]


@ROUTERS.register("bias")
class BiasRouter(Router):
    """Top-k of the logits plus a per-layer bias that moves against the load."""

    state_fields = (*Router.state_fields, "bias")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bias = [np.zeros(self.experts) for _ in self.placements]

    def choose(self, layer: int, source: int, scores: torch.Tensor) -> torch.Tensor:
        return topk(scores + torch.as_tensor(self.bias[layer], dtype=scores.dtype), self.top_k)

    def after_step(self, layer: int, counts: np.ndarray) -> None:
        self.bias[layer] = bias_update(self.bias[layer], counts, self.config.bias_rate)


def bias_update(bias: np.ndarray, counts: np.ndarray, rate: float) -> np.ndarray:
    """Loss-free balancing: ``b_i + rate * sign(mean load - load_i)``.

    >>> bias_update(np.zeros(3), np.array([5, 1, 3]), 0.1).tolist()
    [-0.1, 0.1, 0.0]
    """
    return bias + rate * np.sign(counts.mean() - counts)
