"""Optimisers over stacked parameters, with one step count per node.

The batched executor keeps the parameters of many nodes in one tensor per
layer, node ``i`` in row ``i``. A node steps its optimiser only when it took
part in a step (a node cut off by a failed link does not), so two rows of the
same tensor may have taken different numbers of steps. torch's optimisers keep
one step count per tensor; these keep one per row, and update only the rows
a step names. Adam and SGD are elementwise, so each row follows exactly the
trajectory the node's own ``torch.optim`` optimiser would (tested against it).

The formulas are torch's (``torch.optim.Adam`` with its defaults, and
``torch.optim.SGD`` with momentum 0.9, as in
:data:`~innet.families.inl.executors.OPTIMIZERS`).

>>> import torch
>>> w = torch.nn.Parameter(torch.ones(3, 2))
>>> optimizer = make_stacked_optimizer("adam", [w], rows=3, lr=0.1)
>>> w.grad = torch.ones(3, 2)
>>> optimizer.step(torch.tensor([True, False, True]))
>>> [round(value, 4) for value in w.detach()[:, 0].tolist()]  # rows 0 and 2 took a step
[0.9, 1.0, 0.9]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.optim.adam import adam

from innet.core.registry import Registry

__all__ = ["StackedAdam", "StackedSGD", "STACKED_OPTIMIZERS", "make_stacked_optimizer"]


StackedOptimizer = Callable[[Sequence[torch.nn.Parameter], int, float], "StackedAdam | StackedSGD"]

STACKED_OPTIMIZERS: Registry[StackedOptimizer] = Registry("stacked optimizer")
"""The stacked counterpart of each optimiser of :data:`~innet.families.inl.executors.OPTIMIZERS`,
each ``(params, rows, lr) -> optimizer``."""


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``mask`` (one flag per row) shaped to broadcast against ``like``."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


@STACKED_OPTIMIZERS.register("adam")
class StackedAdam:
    """Adam (betas 0.9, 0.999; eps 1e-8) with a step count per row of every parameter."""

    def __init__(
        self,
        params: Sequence[torch.nn.Parameter],
        rows: int,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params: list[torch.Tensor] = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.steps = torch.zeros(rows, dtype=torch.float64)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, mask: torch.Tensor) -> None:
        """Update the rows where ``mask`` is true (their gradients are in ``p.grad``)."""
        beta1, beta2 = self.betas
        if bool(mask.all()) and bool((self.steps == self.steps[0]).all()):
            # every row steps, all at the same count: torch's own Adam on the stacked tensors
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
            count = torch.tensor(float(self.steps[0]))
            adam(
                self.params,
                grads,
                self.exp_avg,
                self.exp_avg_sq,
                [],
                [count.clone() for _ in self.params],
                foreach=False,
                amsgrad=False,
                beta1=beta1,
                beta2=beta2,
                lr=self.lr,
                weight_decay=0.0,
                eps=self.eps,
                maximize=False,
            )
            self.steps = self.steps + 1
            return
        steps = torch.where(mask, self.steps + 1, self.steps)
        self.steps = steps
        safe = steps.clamp(min=1)  # rows that never stepped are not updated anyway
        step_size = self.lr / (1 - beta1**safe)
        bias2_sqrt = (1 - beta2**safe).sqrt()
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            grad = p.grad if p.grad is not None else torch.zeros_like(p)  # took no part
            keep = _rows(mask.to(p.device), p)
            m_new = m.lerp(grad, 1 - beta1)
            v_new = v.mul(beta2).addcmul(grad, grad, value=1 - beta2)
            denom = (v_new.sqrt() / _rows(bias2_sqrt, p).to(p)).add(self.eps)
            p_new = p - _rows(step_size, p).to(p) * m_new / denom
            m.copy_(torch.where(keep, m_new, m))
            v.copy_(torch.where(keep, v_new, v))
            p.copy_(torch.where(keep, p_new, p))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        """Each row's step count and the moments (live tensors)."""
        return {"steps": self.steps, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``state`` (same parameters)."""
        self.steps = state["steps"].clone()
        _copy_into(self.exp_avg, state["exp_avg"])
        _copy_into(self.exp_avg_sq, state["exp_avg_sq"])


@STACKED_OPTIMIZERS.register("sgd")
class StackedSGD:
    """SGD with momentum 0.9; per row, the momentum buffer starts at the first gradient."""

    def __init__(
        self, params: Sequence[torch.nn.Parameter], rows: int, lr: float, momentum: float = 0.9
    ) -> None:
        self.params: list[torch.Tensor] = list(params)
        self.lr, self.momentum = lr, momentum
        self.started = torch.zeros(rows, dtype=torch.bool)
        self.buffers = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, mask: torch.Tensor) -> None:
        """Update the rows where ``mask`` is true (their gradients are in ``p.grad``)."""
        for p, buf in zip(self.params, self.buffers, strict=True):
            grad = p.grad if p.grad is not None else torch.zeros_like(p)  # took no part
            keep = _rows(mask.to(p.device), p)
            started = _rows(self.started.to(p.device), p)
            buf_new = torch.where(started, buf * self.momentum + grad, grad)
            buf.copy_(torch.where(keep, buf_new, buf))
            p.copy_(torch.where(keep, p - self.lr * buf_new, p))
        self.started |= mask.cpu()

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        """Which rows have started and the momentum buffers (live tensors)."""
        return {"started": self.started, "buffers": self.buffers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``state`` (same parameters)."""
        self.started = state["started"].clone()
        _copy_into(self.buffers, state["buffers"])


def _copy_into(targets: list[torch.Tensor], values: list[torch.Tensor]) -> None:
    """Copy ``values`` into ``targets`` in place, one by one (same shapes)."""
    if len(targets) != len(values):
        raise ValueError("the saved optimiser state is of other parameters")
    for target, value in zip(targets, values, strict=True):
        target.copy_(value)


def make_stacked_optimizer(
    name: str, params: Sequence[torch.nn.Parameter], rows: int, lr: float
) -> StackedAdam | StackedSGD:
    """The stacked optimiser called ``name`` over ``params``, each with ``rows`` rows."""
    return STACKED_OPTIMIZERS.get(name)(params, rows, lr)
