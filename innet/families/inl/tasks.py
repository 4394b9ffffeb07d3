"""What the network learns: the loss it trains on and the metrics it is judged by.

A *task* turns the fusion node's output and the targets into a training loss
and, on evaluation batches, into sums that add up over batches and processes
(``metric_sums``); :meth:`Task.metrics` turns those sums into the per-epoch
metrics of ``metrics.csv``. The executors call the task and never name a
metric themselves, so a family can bring its own.

:data:`TASKS` holds them by name. :class:`Classification` (the ``inl`` default,
``classification``): cross-entropy, reported as
``test_loss`` (mean over test samples) and ``accuracy`` (fraction of argmax
predictions that are right).

>>> import torch
>>> task = Classification()
>>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
>>> sums = task.metric_sums(logits, torch.tensor([0, 1, 1]))
>>> task.metrics(sums, samples=3)["accuracy"]
0.6666666666666666
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from innet.core.registry import Registry

__all__ = ["TASKS", "Task", "Classification"]


class Task(Protocol):
    """The loss and metrics of a learning task."""

    metric_names: tuple[str, ...]

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch (a mean over its samples)."""
        ...

    def metric_sums(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Per-batch sums that add up over batches and processes."""
        ...

    def metrics(self, sums: dict[str, float], samples: int) -> dict[str, float]:
        """The metrics (``metric_names``) from sums over ``samples`` test samples."""
        ...


class Classification:
    """Cross-entropy training; test loss and accuracy."""

    metric_names: tuple[str, ...] = ("test_loss", "accuracy")

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    def metric_sums(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        return {
            "loss_sum": float(F.cross_entropy(output, target, reduction="sum")),
            "correct": int((output.argmax(dim=1) == target).sum()),
        }

    def metrics(self, sums: dict[str, float], samples: int) -> dict[str, float]:
        return {
            "test_loss": sums.get("loss_sum", 0.0) / samples,
            "accuracy": sums.get("correct", 0) / samples,
        }


TASKS: Registry[type[Task]] = Registry("task")
"""The tasks a family's trainer may choose, by name; ``classification`` is INL's."""
TASKS.register("classification", Classification)
