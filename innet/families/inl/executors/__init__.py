"""Executors: the code that runs the node modules of a plan, one training step at a time.

An executor owns the node modules of the nodes its transport says this
process runs, and their optimisers. The training loop drives it through a
small protocol (:class:`Executor`): follow a new plan, run one synchronous
training step on a batch, evaluate one batch, say how many FLOPs each module
costs, hear how far training is (:meth:`Executor.set_progress`: gates that
anneal follow it). Each executor carries its name (:attr:`Executor.name`),
which the run's ``executors`` table records: the loop never asks for a class.
Every message between nodes goes through the transport it was given;
what was sent is recorded by the transport (see
:class:`~innet.core.transport.RecordingTransport`), not by the executor, and which
links fail during a step is decided by events (:class:`~innet.core.events.StepPlan`).

- :class:`~innet.families.inl.executors.per_node.PerNodeExecutor`: one module, one
  optimiser and one autograd graph per node, walked node by node.
- :class:`~innet.families.inl.executors.batched.BatchedExecutor`: the nodes of the same
  shape stacked and computed together, level by level; the same numbers
  (to float rounding), many times faster on large networks. Under torchrun
  each process computes its own nodes and sends one tensor per (phase,
  level, pair of processes) instead of one per node pair, with the same
  bits as one process (every sum a node receives in one canonical order).

:data:`EXECUTORS` names and describes the choices of ``training.executor``; ``auto`` runs a
configuration batched whenever the batched executor can
(:func:`~innet.families.inl.executors.batched.batched_unsupported` says why not: a gate or
aggregator it does not stack, a wire format other than float32), else per
node, in one process and under torchrun alike.

:data:`OPTIMIZERS` is the registry of optimisers a scenario may name.

**Checkpoints.** :meth:`Executor.state_dict` is everything an executor
carries from one epoch to the next (each node's weights and buffers,
optimiser state, random-number generators, the bookkeeping of published
codebooks, step counters); :meth:`Executor.load_state_dict` puts it back into a
fresh executor of the same (variant, seed) on the same placement, which then
goes on exactly as the one that saved it. :func:`module_state` and
:func:`load_module_state` do it for one node module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import torch

from innet.core.registry import Registry
from innet.core.seeding import node_seed
from innet.families.inl.gates import RateStats

if TYPE_CHECKING:
    from innet.core.events import StepPlan
    from innet.core.plans import Plan

__all__ = [
    "Executor",
    "EvalSums",
    "EXECUTORS",
    "OPTIMIZERS",
    "bracket_subsample",
    "load_module_state",
    "make_optimizer",
    "module_state",
]


@dataclass
class EvalSums:
    """What one process measured on evaluation batches; sums merge across batches and ranks.

    ``metric_sums`` come from the task (the fusion node's owner only);
    ``rate_sums`` are each sending node's training penalty (the gate's
    ``rate_bits``: the Gaussian gate's VIB KL) times the samples it saw;
    ``rate_stats`` what each sending node's reported rate is computed from
    (:class:`~innet.families.inl.gates.RateStats`: numpy, picklable, mergeable), fed by
    the process that runs the node.
    """

    samples: int = 0
    metric_sums: dict[str, float] = field(default_factory=dict)
    rate_sums: dict[str, float] = field(default_factory=dict)
    rate_stats: dict[str, RateStats] = field(default_factory=dict)

    def add(self, other: EvalSums) -> None:
        """Add another batch's sums (a later batch of the same evaluation)."""
        self.samples += other.samples
        _add_into(self.metric_sums, other.metric_sums)
        _add_into(self.rate_sums, other.rate_sums)
        _merge_stats(self.rate_stats, other.rate_stats)

    @staticmethod
    def merge(parts: Iterable[EvalSums]) -> EvalSums:
        """The sums of several processes that evaluated the same samples."""
        parts = list(parts)
        merged = EvalSums(samples=max(part.samples for part in parts))
        for part in parts:
            _add_into(merged.metric_sums, part.metric_sums)
            _add_into(merged.rate_sums, part.rate_sums)
            _merge_stats(merged.rate_stats, part.rate_stats)
        return merged


def _add_into(total: dict[str, float], more: dict[str, float]) -> None:
    for key, value in more.items():
        total[key] = total.get(key, 0) + value


def _merge_stats(total: dict[str, RateStats], more: dict[str, RateStats]) -> None:
    for node, stats in more.items():
        if node in total:
            total[node].merge(stats)
        else:  # a copy: merging later batches must not change the part it came from
            total[node] = RateStats(stats.kind, stats.ceiling_bits).merge(stats)


class Executor(Protocol):
    """What the training loop needs from an executor."""

    name: ClassVar[str]
    """Its name among :data:`EXECUTORS` (``per_node``, ``batched``)."""

    plan: Plan
    """The plan it currently routes along."""

    def set_progress(self, fraction: float) -> None:
        """How far training is (0 at the first epoch, 1 at the last): gates that anneal
        their temperature follow it; other executors ignore it."""
        ...

    def set_plan(self, plan: Plan) -> None:
        """Route along ``plan`` from now on (plans change when the network does)."""
        ...

    def train_step(self, index: np.ndarray, step: StepPlan) -> float | None:
        """One synchronous training step on the training samples ``index``.

        Returns the training loss when this process computed it, else None.
        """
        ...

    def evaluate_batch(self, index: np.ndarray) -> EvalSums:
        """Forward the test samples ``index`` on the current plan; no parameter changes."""
        ...

    def flops(self) -> dict[str, int]:
        """Forward FLOPs per sample of each node module this process runs."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What this process's nodes carry to the next step (live tensors: save them at once)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (:meth:`state_dict` of an executor of the same run)."""
        ...


OptimizerFactory = Callable[[Iterable[torch.nn.Parameter], float], torch.optim.Optimizer]

OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")
"""Optimisers by name, each ``(params, lr) -> optimizer``: Adam, and SGD with momentum 0.9."""


@OPTIMIZERS.register("adam")
def _adam(params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr)


@OPTIMIZERS.register("sgd")
def _sgd(params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def bracket_subsample(seed: int, n_test: int, samples: int) -> np.ndarray:
    """Which test samples feed the pairwise rate bracket: ``samples`` of them, seeded by ``seed``.

    The same for every executor and process, so the bracket is too.

    >>> int(bracket_subsample(0, 10, 4).sum()), int(bracket_subsample(0, 10, 0).sum())
    (4, 0)
    """
    keep = np.zeros(n_test, dtype=bool)
    if samples > 0 and n_test > 0:
        rng = np.random.default_rng(node_seed(seed, "", "rate-bracket"))
        keep[rng.choice(n_test, size=min(samples, n_test), replace=False)] = True
    return keep


EXECUTORS: Registry[str] = Registry("executor")
"""The choices of ``training.executor``, each with what it runs."""
EXECUTORS.register("auto", "batched whenever the batched executor can run it, else per node")
EXECUTORS.register("per_node", "one module, optimiser and autograd graph per node")
EXECUTORS.register("batched", "nodes of the same shape stacked and computed level by level")


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float
) -> torch.optim.Optimizer:
    """The optimiser called ``name`` (one of :data:`OPTIMIZERS`) over ``params``."""
    return OPTIMIZERS.get(name)(params, lr)


_COUNTERS = ("restarts", "_steps", "_publish_next")
"""Plain attributes of a discrete gate that change while it trains (buffers aside)."""


def module_state(module: torch.nn.Module) -> dict[str, Any]:
    """A node module's state: weights and buffers, its generators, its gate's counters.

    Generators and counters are keyed by submodule name (the gate: ``gate``).
    """
    generators = {
        name: sub.generator.get_state()
        for name, sub in module.named_modules()
        if isinstance(getattr(sub, "generator", None), torch.Generator)
    }
    counters = {
        name: {attr: getattr(sub, attr) for attr in _COUNTERS if hasattr(sub, attr)}
        for name, sub in module.named_modules()
        if any(hasattr(sub, attr) for attr in _COUNTERS)
    }
    return {"weights": module.state_dict(), "generators": generators, "counters": counters}


def load_module_state(module: torch.nn.Module, state: dict[str, Any]) -> None:
    """Put :func:`module_state`'s ``state`` back into ``module`` (built the same way)."""
    module.load_state_dict(state["weights"])
    subs = dict(module.named_modules())
    for name, generator_state in state["generators"].items():
        subs[name].generator.set_state(generator_state)
    for name, values in state["counters"].items():
        for attr, value in values.items():
            setattr(subs[name], attr, value)
