"""The training loop of in-network learning, one node at a time.

A training step walks the plan twice. Forward, in topological order: each
node takes its view of the batch (sensors), receives the latents its children
sent, and sends its gated latent to every parent; the fusion node decodes the
class and computes the cross-entropy. Backward, in reverse order: the fusion
node backpropagates through its own module only and sends each child the
gradient with respect to the latent that child sent; every other node sums the
gradients from its parents, backpropagates ``<T, grad> + beta * rate`` through
its own module and passes gradients on to its children. Each node then steps
its own optimiser. No autograd graph spans two nodes: what crosses a link is a
detached tensor, handed to the :class:`~innet.transport.Transport`, and every
send is written down as an exchange record from the real tensor.

The engine runs only the nodes its transport owns, so the same code runs with
all nodes in one process or spread over torch.distributed ranks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from innet.modules import NodeModule, NodeSpec
from innet.plans import Plan
from innet.transport import ExpectedMessage, Transport, phase_messages

__all__ = ["Engine", "ExchangeRow", "LocalEval", "RECORD_FIELDS"]

RECORD_FIELDS = ("epoch", "step", "phase", "src", "dst", "payload", "nbytes", "lost")
ExchangeRow = tuple[int, int, str, str, str, str, int, bool]
"""One send: (epoch, step, phase, src, dst, payload, nbytes, lost)."""


@dataclass
class LocalEval:
    """What one process measured during an evaluation (merged across processes by the runner)."""

    samples: int = 0
    loss_sum: float = 0.0  # cross-entropy summed over samples (fusion owner only)
    correct: int = 0  # fusion owner only
    rate_sums: dict[str, float] = field(default_factory=dict)  # node -> rate * samples

    def merge(self, other: LocalEval) -> LocalEval:
        rates = dict(self.rate_sums)
        for node, value in other.rate_sums.items():
            rates[node] = rates.get(node, 0.0) + value
        return LocalEval(
            samples=max(self.samples, other.samples),
            loss_sum=self.loss_sum + other.loss_sum,
            correct=self.correct + other.correct,
            rate_sums=rates,
        )


class Engine:
    """Trains the node modules of one plan, exchanging every message through a transport."""

    def __init__(
        self,
        *,
        plan: Plan,
        specs: Mapping[str, NodeSpec],
        seed: int,
        transport: Transport,
        views: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
        labels: tuple[torch.Tensor, torch.Tensor],
        lr: float,
        optimizer: str = "adam",
        beta: float = 0.0,
        header_bytes: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.transport = transport
        self.beta = beta
        self.header_bytes = header_bytes
        self.modules = {
            node: NodeModule(spec, seed).to(self.device)
            for node, spec in specs.items()
            if transport.owns(node)
        }
        self.optimizers = {
            node: _make_optimizer(optimizer, module.parameters(), lr)
            for node, module in self.modules.items()
        }
        self.specs = dict(specs)
        self.views = {  # node -> (train view, test view), for the nodes of this process
            node: (train.to(self.device), test.to(self.device))
            for node, (train, test) in views.items()
            if transport.owns(node)
        }
        self.labels = (labels[0].to(self.device), labels[1].to(self.device))
        self.records: list[ExchangeRow] = []
        self._latent_dims = {node: spec.latent_dim for node, spec in self.specs.items()}
        self._sensors = frozenset(node for node, spec in self.specs.items() if spec.view_dim)
        self._step_plans: dict[frozenset, tuple[Plan, frozenset[tuple[str, str]]]] = {}
        self.set_plan(plan)

    def set_plan(self, plan: Plan) -> None:
        """Route from now on along ``plan`` (its nodes must all have a spec)."""
        missing = set(plan.forward_order()) - set(self.specs)
        if missing:
            raise ValueError(f"no module spec for nodes {sorted(missing)}")
        self.plan = plan
        self.order = plan.forward_order()
        self.local = [node for node in self.order if self.transport.owns(node)]
        # keyed by plan identity: hashing a plan's edges every phase would cost O(links)
        self._schedules: dict[tuple[str, int, int], list[ExpectedMessage]] = {}
        self._step_plans.clear()

    def step_plan(self, failed: frozenset[frozenset[str]]) -> tuple[Plan, frozenset]:
        """The plan a step really runs on when the links ``failed`` go down during it.

        Returns the delivered plan (the failed links removed, and nodes left without
        any input silent) and the forward edges whose messages are sent but lost.
        """
        if not failed:
            return self.plan, frozenset()
        if failed not in self._step_plans:
            kept = tuple(edge for edge in self.plan.edges if frozenset(edge) not in failed)
            delivered = Plan(self.plan.routing, self.plan.fusion, kept).active(self._sensors)
            senders = set(delivered.forward_order()) | (self._sensors & set(self.order))
            lost = frozenset(
                edge for edge in self.plan.edges if frozenset(edge) in failed and edge[0] in senders
            )
            self._step_plans[failed] = (delivered, lost)
        return self._step_plans[failed]

    # -- messages ---------------------------------------------------------------------------

    def _send(
        self, tensor: torch.Tensor, src: str, dst: str, phase: str, payload: str, lost: bool = False
    ) -> None:
        """Hand a tensor to the transport and record it; a lost message is recorded only."""
        wire = tensor.detach().contiguous()
        nbytes = wire.numel() * wire.element_size() + self.header_bytes
        self.records.append((self._epoch, self._step, phase, src, dst, payload, nbytes, lost))
        if not lost:
            self.transport.send(wire, src=src, dst=dst, phase=phase, payload=payload)

    def _recv(self, src: str, dst: str, phase: str, payload: str, batch: int) -> torch.Tensor:
        # a latent has the sender's width; a gradient has the width of the receiver's latent
        width = self.specs[dst if payload == "grad" else src].latent_dim
        return self.transport.recv(
            src=src, dst=dst, phase=phase, payload=payload, shape=(batch, width)
        ).to(self.device)

    def _expect(self, phase: str, batch: int, plan: Plan) -> None:
        """Announce every message of a phase to the transport, in the order they will be sent."""
        key = (phase, batch, id(plan))  # self.plan or one of self._step_plans: both outlive it
        if key not in self._schedules:
            self._schedules[key] = phase_messages(plan, phase, batch, self._latent_dims)
        self.transport.expect(self._schedules[key])

    def _view(self, node: str, split: int, index: np.ndarray) -> torch.Tensor | None:
        views = self.views.get(node)
        return views[split][index] if views is not None else None

    # -- training ---------------------------------------------------------------------------

    def train_step(
        self,
        index: np.ndarray,
        epoch: int,
        step: int,
        failed: frozenset[frozenset[str]] = frozenset(),
    ) -> float | None:
        """One synchronous step on the training samples ``index``.

        ``failed`` names links that go down during this step: messages over them are
        sent but lost (see :meth:`step_plan`). Returns the fusion node's cross-entropy
        when this process owns it and it received anything, else None.
        """
        self._epoch, self._step = epoch, step
        batch = len(index)
        plan, lost = self.step_plan(failed)
        in_plan = set(plan.forward_order())
        working = in_plan | {sender for sender, _ in lost}
        sent: dict[str, torch.Tensor] = {}
        rates: dict[str, torch.Tensor] = {}
        held: dict[str, dict[str, torch.Tensor]] = {}
        loss: torch.Tensor | None = None
        self._expect("forward", batch, plan)
        for node in self.local:
            if node not in working or (node == plan.fusion and not plan.children(node)):
                continue  # nothing to compute (e.g. every input was lost)
            module = self.modules[node]
            module.train()
            received = {
                child: self._recv(child, node, "forward", "latent", batch).requires_grad_(True)
                for child in plan.children(node)
            }
            held[node] = received
            if node == plan.fusion:
                logits = module.decode(list(received.values()))
                loss = F.cross_entropy(logits, self.labels[0][index])
                continue
            out = module.send_forward(self._view(node, 0, index), list(received.values()))
            sent[node], rates[node] = out.t, out.rate_bits
            for parent in self.plan.parents(node):
                self._send(out.t, node, parent, "forward", "latent", (node, parent) in lost)

        self._expect("backward", batch, plan)
        for node in reversed(self.local):
            if node not in held or node not in in_plan:
                continue  # computed nothing, or every message it sent was lost
            if node == plan.fusion:
                assert loss is not None
                objective = loss
            else:
                grad = sum(
                    (
                        self._recv(parent, node, "backward", "grad", batch)
                        for parent in plan.parents(node)
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
                self._send(grad_out, node, child, "backward", "grad")
            optimizer.step()
        self.transport.flush()
        return float(loss.detach()) if loss is not None else None

    # -- evaluation -------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, epoch: int, step: int, batch_size: int) -> LocalEval:
        """Forward the test split in batches; accuracy at the fusion node, rates at each sender.

        Eval records carry ``step`` = the evaluation batch index.
        """
        self._epoch = epoch
        n_test = len(self.labels[1])
        result = LocalEval(samples=n_test)
        for module in self.modules.values():
            module.eval()
        for batch_number, start in enumerate(range(0, n_test, batch_size)):
            self._step = batch_number
            index = np.arange(start, min(start + batch_size, n_test))
            batch = len(index)
            self._expect("eval", batch, self.plan)
            for node in self.local:
                module = self.modules[node]
                received = [
                    self._recv(child, node, "eval", "latent", batch)
                    for child in self.plan.children(node)
                ]
                if node == self.plan.fusion:
                    logits = module.decode(received)
                    targets = self.labels[1][index]
                    result.loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
                    result.correct += int((logits.argmax(dim=1) == targets).sum())
                    continue
                out = module.send_forward(self._view(node, 1, index), received)
                result.rate_sums[node] = (
                    result.rate_sums.get(node, 0.0) + float(out.rate_bits) * batch
                )
                for parent in self.plan.parents(node):
                    self._send(out.t, node, parent, "eval", "latent")
        self.transport.flush()
        return result

    def compute_flops(self) -> dict[str, int]:
        """Forward FLOPs per sample of each local node's module."""
        return {node: module.flops_per_sample() for node, module in self.modules.items()}


def _make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    raise ValueError(f"unknown optimizer {name!r}")
