"""The node modules of a plan trained as one model: the reference message passing must match.

Message passing (:mod:`innet.executors`) gives every node its own autograd
graph and sends detached tensors. Its gradients must be exactly those of the
same modules wired together as one model, where autograd flows through the
plan's edges directly. :func:`monolithic_objective` builds that one model's
objective (task loss plus ``beta`` times the rates of the sending nodes) so
that tests can compare gradients and benchmarks can compare speed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from innet.modules import NodeModule
from innet.plans import Plan
from innet.tasks import Classification, Task

__all__ = ["monolithic_objective"]


def monolithic_objective(
    modules: Mapping[str, NodeModule],
    plan: Plan,
    views: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    labels: torch.Tensor,
    index: np.ndarray,
    beta: float = 0.0,
    task: Task | None = None,
) -> torch.Tensor:
    """The training objective of ``plan``'s modules as one autograd graph, on samples ``index``.

    ``views`` are each sensor's (train, test) views, ``labels`` the training labels.
    """
    task = task or Classification()
    sent: dict[str, torch.Tensor] = {}
    rates = []
    loss = None
    for node in plan.forward_order():
        module = modules[node]
        module.train()
        received = [sent[child] for child in plan.children(node)]
        if node == plan.fusion:
            loss = task.loss(module.decode(received), labels[index])
            continue
        view = views[node][0][index] if node in views else None
        out = module.send_forward(view, received)
        sent[node] = out.t
        rates.append(out.rate_bits)
    assert loss is not None, "the plan has no fusion node with inputs"
    return loss + beta * torch.stack(rates).sum() if rates else loss
