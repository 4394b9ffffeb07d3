"""The per-node executor: every node its own module, optimiser and autograd graph.

A training step walks the plan twice. Forward, in topological order: each
node takes its view of the batch (sensors), receives the latents its children
sent, and sends its gated latent to every parent; the fusion node decodes and
computes the task's loss. Backward, in reverse order: the fusion node
backpropagates through its own module only and sends each child the gradient
with respect to the latent that child sent; every other node sums the
gradients from its parents, backpropagates ``<T, grad> + beta * rate`` through
its own module and passes gradients on to its children. Each node then steps
its own optimiser. No autograd graph spans two nodes: what crosses a link is a
detached tensor handed to the :class:`~innet.transport.Transport`.

The executor runs only the nodes its transport owns, so the same code runs
with all nodes in one process or spread over torch.distributed ranks. With
the in-process transport it computes exactly the gradients of the same modules
trained as one model (:mod:`innet.reference`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from innet.events import StepPlan
from innet.executors import EvalSums, make_optimizer
from innet.modules import ModuleSpec, NodeModule
from innet.plans import Plan
from innet.tasks import Classification, Task
from innet.transport import ExpectedMessage, Transport, phase_messages

__all__ = ["PerNodeExecutor"]


class PerNodeExecutor:
    """Trains the node modules of a plan one node at a time, through a transport."""

    def __init__(
        self,
        *,
        plan: Plan,
        specs: Mapping[str, ModuleSpec],
        seed: int,
        transport: Transport,
        views: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
        labels: tuple[torch.Tensor, torch.Tensor],
        lr: float,
        optimizer: str = "adam",
        beta: float = 0.0,
        device: torch.device | str = "cpu",
        task: Task | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.transport = transport
        self.beta = beta
        self.task = task or Classification()
        self.modules = {
            node: NodeModule(spec, seed).to(self.device)
            for node, spec in specs.items()
            if transport.owns(node)
        }
        self.optimizers = {
            node: make_optimizer(optimizer, module.parameters(), lr)
            for node, module in self.modules.items()
        }
        self.specs = dict(specs)
        self.views = {  # node -> (train view, test view), for the nodes of this process
            node: (train.to(self.device), test.to(self.device))
            for node, (train, test) in views.items()
            if transport.owns(node)
        }
        self.labels = (labels[0].to(self.device), labels[1].to(self.device))
        self._latent_dims = {node: spec.latent_dim for node, spec in self.specs.items()}
        self.set_plan(plan)

    def set_plan(self, plan: Plan) -> None:
        """Route from now on along ``plan`` (its nodes must all have a spec)."""
        missing = set(plan.forward_order()) - set(self.specs)
        if missing:
            raise ValueError(f"no module spec for nodes {sorted(missing)}")
        self.plan = plan
        self.local = [node for node in plan.forward_order() if self.transport.owns(node)]
        # keyed by plan identity: hashing a plan's edges every phase would cost O(links)
        self._schedules: dict[tuple[str, int, int], list[ExpectedMessage]] = {}

    # -- messages ---------------------------------------------------------------------------

    def _recv(self, src: str, dst: str, phase: str, payload: str, batch: int) -> torch.Tensor:
        # a latent has the sender's width; a gradient has the width of the receiver's latent
        width = self.specs[dst if payload == "grad" else src].latent_dim
        return self.transport.recv(
            src=src, dst=dst, phase=phase, payload=payload, shape=(batch, width)
        ).to(self.device)

    def _expect(self, phase: str, batch: int, plan: Plan) -> None:
        """Announce every message of a phase to the transport, in the order they will be sent."""
        key = (phase, batch, id(plan))  # plans outlive their schedules: steps keep them alive
        if key not in self._schedules:
            self._schedules[key] = phase_messages(plan, phase, batch, self._latent_dims)
        self.transport.expect(self._schedules[key])

    def _view(self, node: str, split: int, index: np.ndarray) -> torch.Tensor | None:
        views = self.views.get(node)
        return views[split][index] if views is not None else None

    # -- training ---------------------------------------------------------------------------

    def train_step(self, index: np.ndarray, step: StepPlan) -> float | None:
        """One synchronous step on the training samples ``index``, on ``step``'s plan.

        Nodes of ``step.working`` compute and send to every parent in the plan;
        what arrives is ``step.delivered`` (the transport loses the rest). Returns
        the fusion node's loss when this process owns it and it received anything.
        """
        if step.plan is not self.plan:
            raise ValueError("the step's plan is not the executor's: call set_plan first")
        batch = len(index)
        delivered = step.delivered
        in_plan = set(delivered.forward_order())
        sent: dict[str, torch.Tensor] = {}
        rates: dict[str, torch.Tensor] = {}
        held: dict[str, dict[str, torch.Tensor]] = {}
        loss: torch.Tensor | None = None
        self._expect("forward", batch, delivered)
        for node in self.local:
            if node not in step.working or (
                node == delivered.fusion and not delivered.children(node)
            ):
                continue  # nothing to compute (e.g. every input was lost)
            module = self.modules[node]
            module.train()
            received = {
                child: self._recv(child, node, "forward", "latent", batch).requires_grad_(True)
                for child in delivered.children(node)
            }
            held[node] = received
            if node == delivered.fusion:
                logits = module.decode(list(received.values()))
                loss = self.task.loss(logits, self.labels[0][index])
                continue
            out = module.send_forward(self._view(node, 0, index), list(received.values()))
            sent[node], rates[node] = out.t, out.rate_bits
            for parent in self.plan.parents(node):
                self.transport.send(out.t, src=node, dst=parent, phase="forward", payload="latent")

        self._expect("backward", batch, delivered)
        for node in reversed(self.local):
            if node not in held or node not in in_plan:
                continue  # computed nothing, or every message it sent was lost
            if node == delivered.fusion:
                assert loss is not None
                objective = loss
            else:
                grad = sum(
                    (
                        self._recv(parent, node, "backward", "grad", batch)
                        for parent in delivered.parents(node)
                    ),
                    torch.zeros_like(sent[node]),
                )
                objective = (sent[node] * grad).sum()
                if self.beta > 0:
                    objective = objective + self.beta * rates[node]
            optimizer = self.optimizers[node]
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            for child, latent in held[node].items():
                grad_out = latent.grad if latent.grad is not None else torch.zeros_like(latent)
                self.transport.send(grad_out, src=node, dst=child, phase="backward", payload="grad")
            optimizer.step()
        self.transport.flush()
        return float(loss.detach()) if loss is not None else None

    # -- evaluation -------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate_batch(self, index: np.ndarray) -> EvalSums:
        """Forward the test samples ``index``: the task's sums at the fusion, rates at senders."""
        batch = len(index)
        result = EvalSums(samples=batch)
        for module in self.modules.values():
            module.eval()
        self._expect("eval", batch, self.plan)
        for node in self.local:
            module = self.modules[node]
            received = [
                self._recv(child, node, "eval", "latent", batch)
                for child in self.plan.children(node)
            ]
            if node == self.plan.fusion:
                result.metric_sums = self.task.metric_sums(
                    module.decode(received, batch), self.labels[1][index]
                )
                continue
            out = module.send_forward(self._view(node, 1, index), received)
            result.rate_sums[node] = float(out.rate_bits) * batch
            for parent in self.plan.parents(node):
                self.transport.send(out.t, src=node, dst=parent, phase="eval", payload="latent")
        self.transport.flush()
        return result

    def flops(self) -> dict[str, int]:
        """Forward FLOPs per sample of each local node's module."""
        return {node: module.flops_per_sample() for node, module in self.modules.items()}
