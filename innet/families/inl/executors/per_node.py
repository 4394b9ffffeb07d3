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
detached tensor handed to the :class:`~innet.core.transport.Transport`.

Every message is encoded in its wire format before it is sent and decoded
after it is received (:mod:`innet.families.inl.wire`): the transport carries (and
records the bytes of) the encoded tensor, and the receiver trains on the
values it decoded. A node that sends to several parents encodes its latent
once. The sender backpropagates the gradient it gets through its own,
unquantised latent (the straight-through estimator for the quantisation).
Stochastic rounding draws from a generator seeded by ``(seed, node, step,
phase)``. With ``float32`` both ways (the default) the message is the
tensor itself.

Discrete gates are built here with the scenario's product-codebook groups,
temperature schedule (:meth:`PerNodeExecutor.set_progress` anneals them) and
codebook (trained, or fixed at its seeded start: then its commitment loss is
added to the node's objective).

**Published codebooks.** When a discrete gate's messages are codeword
indices (the ``index`` and ``entropy`` wire formats), each receiver decodes
them with its own copy of the sender's codebook, the last one the sender
sent it over their link. The sender *publishes* (its working codebook becomes
the one it quantises against, :class:`~innet.families.inl.gates.discrete.DiscreteGate`) on the
first training step it computes (right after the codebook's data
initialisation) and, when the codebook is trained, on every training step
whose number is a multiple of ``codebook_sync``; it then sends the published
codebook, float32 ``[m, K, D / m]``, to each parent in the step's plan, in
the ``codebook`` phase (payload ``codebook``), before that step's latent.
On any other step it sends it to the parents that do not hold its current
codebook: a parent new after a plan change, or one whose copy was lost with
a failed link. Evaluation quantises
against the last published codebook and sends none, except to a parent that
does not hold it (a plan that changed right before the evaluation): that copy
is evaluation traffic (phase ``eval``, payload ``codebook``). Who holds which
codebook is bookkept from the plans alone, identically in every process, so
under torchrun every process announces the same messages.

Evaluation also feeds each sending node's :class:`~innet.families.inl.gates.RateStats`,
from which the reported rates are computed over the whole evaluation set.

The executor runs only the nodes its transport owns, so the same code runs
with all nodes in one process or spread over torch.distributed ranks. With
the in-process transport it computes exactly the gradients of the same modules
trained as one model (:mod:`innet.testing.reference`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from innet.core.events import StepPlan
from innet.core.plans import Plan
from innet.core.seeding import node_generator
from innet.core.transport import ExpectedMessage, Transport, phase_messages
from innet.families.inl.executors import (
    EvalSums,
    bracket_subsample,
    load_module_state,
    make_optimizer,
    module_state,
)
from innet.families.inl.gates import GateOutput, RateStats, make_gate
from innet.families.inl.gates.discrete import DiscreteGate
from innet.families.inl.modules import ModuleSpec, NodeModule
from innet.families.inl.tasks import Classification, Task
from innet.families.inl.wire import Codec, make_codec, message_bits_per_sample, publishes_codebook

__all__ = ["PerNodeExecutor"]


@dataclass
class _Forward:
    """What a training step's forward phase leaves for its backward phase, per node."""

    sent: dict[str, torch.Tensor] = field(default_factory=dict)  # the latent it sent
    rates: dict[str, torch.Tensor] = field(default_factory=dict)  # its gate's rate
    commitments: dict[str, torch.Tensor] = field(default_factory=dict)  # discrete gates'
    held: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # child -> received
    loss: torch.Tensor | None = None  # the task's loss, at the fusion node


class PerNodeExecutor:
    """Trains the node modules of a plan one node at a time, through a transport."""

    name: ClassVar[str] = "per_node"

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
        wire_forward: str = "float32",
        wire_backward: str = "float32",
        bracket_samples: int = 0,
        gate_groups: int = 1,
        tau_final: float | None = None,
        codebook_sync: int = 2,
        train_codebook: bool = True,
    ) -> None:
        self.device = torch.device(device)
        self.transport = transport
        self.beta = beta
        self.seed = seed
        self.task = task or Classification()
        _check_sync(codebook_sync)
        self.gate_groups, self.tau_final = gate_groups, tau_final
        self.wire_forward, self.wire_backward = wire_forward, wire_backward
        self.codebook_sync, self.train_codebook = codebook_sync, train_codebook
        # senders whose messages are codeword indices: they publish their codebooks
        self._publishers = {
            node
            for node, spec in specs.items()
            if not spec.is_fusion and publishes_codebook(spec.gate_kind, wire_forward)
        }
        self.modules = {
            node: self._with_gate(NodeModule(spec, seed), spec).to(self.device)
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
        # wire formats: one forward codec per sending node (index formats: its codebook's
        # shape), one backward codec per gradient width
        self._forward_codecs = {
            node: self._forward_codec(spec)
            for node, spec in self.specs.items()
            if not spec.is_fusion
        }
        self._backward_codecs: dict[int, Codec] = {}
        # published codebooks: each publisher's version (0: never published), the version
        # each (sender, receiver) link delivered last (every process keeps the same books),
        # and the copies this process's receivers hold
        self._versions = dict.fromkeys(sorted(self._publishers), 0)
        self._held: dict[tuple[str, str], int] = {}
        self._copies: dict[tuple[str, str], torch.Tensor] = {}
        self._train_steps = 0
        self._calls = 0  # train steps and evaluation batches so far: seeds stochastic rounding
        self._bracket_keep = bracket_subsample(seed, len(self.labels[1]), bracket_samples)
        self.set_plan(plan)

    def _forward_codec(self, spec: ModuleSpec) -> Codec:
        """The codec of ``spec``'s node's latents (index formats: its codebook's shape)."""
        publishes = spec.node in self._publishers
        return make_codec(
            self.wire_forward,
            spec.latent_dim,
            codewords=spec.codewords if publishes else None,
            groups=self.gate_groups if publishes else 1,
        )

    def _with_gate(self, module: NodeModule, spec: ModuleSpec) -> NodeModule:
        """``module`` with its discrete gate built with this executor's gate settings.

        Drawn from the same generator as :class:`~innet.families.inl.modules.NodeModule`'s
        gate, so with one group, no annealing and float messages it is that very gate.
        """
        if module.gate is not None and spec.gate_kind == "discrete":
            module.gate = make_gate(
                "discrete",
                spec.latent_dim,
                generator=node_generator(self.seed, spec.node, "gate"),
                codewords=spec.codewords,
                tau=spec.tau,
                groups=self.gate_groups,
                tau_final=self.tau_final,
                train_codebook=self.train_codebook,
                publishes=spec.node in self._publishers,
            )
        return module

    def set_progress(self, fraction: float) -> None:
        """Tell the gates how far training is (0 at the start, 1 at the end): anneals ``tau``."""
        for module in self.modules.values():
            if isinstance(module.gate, DiscreteGate):
                module.gate.set_progress(fraction)

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

    def _codec(self, src: str, dst: str, payload: str) -> Codec:
        """The codec of a message: the sender's forward codec, or the backward one."""
        if payload != "grad":
            return self._forward_codecs[src]
        # a gradient has the width of the latent its receiver sent
        width = self._latent_dims[dst]
        if width not in self._backward_codecs:
            self._backward_codecs[width] = make_codec(self.wire_backward, width)
        return self._backward_codecs[width]

    def _recv(self, src: str, dst: str, phase: str, payload: str, batch: int) -> torch.Tensor:
        codec = self._codec(src, dst, payload)
        shape, dtype = codec.announce(batch)
        message = self.transport.recv(
            src=src, dst=dst, phase=phase, payload=payload, shape=shape, dtype=dtype
        )
        if not codec.sends_indices:
            return codec.decode(message.to(self.device), batch)
        copy = self._copies.get((src, dst))
        if copy is None:
            raise RuntimeError(f"{dst} got codeword indices from {src} but holds no codebook of it")
        return codec.decode(message, batch, copy).to(self.device)

    def _recv_latent(
        self, src: str, dst: str, phase: str, batch: int, codebooks: dict[str, list[str]]
    ) -> torch.Tensor:
        """The latent ``src`` sent ``dst``, after the codebook it sent first, if any."""
        if dst in codebooks.get(src, ()):
            self._copies[(src, dst)] = (
                self.transport.recv(
                    src=src,
                    dst=dst,
                    phase=_codebook_phase(phase),
                    payload="codebook",
                    shape=self._codebook_shape(src),
                    dtype=torch.float32,
                )
                .cpu()
                .clone()
            )
        return self._recv(src, dst, phase, "latent", batch)

    def _codebook_shape(self, node: str) -> tuple[int, int, int]:
        """``[m, K, D / m]``: the shape of ``node``'s codebook."""
        spec = self.specs[node]
        return (self.gate_groups, spec.codewords, spec.latent_dim // self.gate_groups)

    def _codebooks_due(self, step: StepPlan | None) -> tuple[dict, dict]:
        """Who sends its codebook to whom now, and who of them receives it; books the delivery.

        ``step``: a training step (its computing publishers publish on the
        first step they compute and, trained, on every ``codebook_sync``-th step), or
        None for an evaluation batch on the current plan (nobody publishes).
        A publisher sends its codebook to every parent in the plan that does
        not hold its current version. Returns ``(sent, delivered)``, both
        ``{sender: [parents]}``: the messages sent (some may be lost on a
        failing link) and those that arrive.
        """
        if step is not None:
            self._publish(step)
        plan = self.plan if step is None else step.plan
        delivered_plan = self.plan if step is None else step.delivered
        sent: dict[str, list[str]] = {}
        arrived: dict[str, list[str]] = {}
        for node in plan.forward_order():
            if node not in self._publishers or (step is not None and node not in step.working):
                continue
            version = self._versions[node]
            parents = [p for p in plan.parents(node) if self._held.get((node, p)) != version]
            if not parents:
                continue
            sent[node] = parents
            reached = set(delivered_plan.parents(node))
            arrived[node] = [p for p in parents if p in reached]
            for parent in arrived[node]:
                self._held[(node, parent)] = version
        return sent, arrived

    def _publish(self, step: StepPlan) -> None:
        """The publishers computing in ``step`` publish a new codebook version where due:
        on the first step they compute and, trained, on every ``codebook_sync``-th step."""
        sync = self.train_codebook and self._train_steps % self.codebook_sync == 0
        for node in step.plan.forward_order():
            if node not in self._publishers or node not in step.working:
                continue
            if sync or self._versions[node] == 0:
                self._versions[node] += 1
                if node in self.modules:
                    gate = self.modules[node].gate
                    assert isinstance(gate, DiscreteGate)
                    gate.request_publish()

    def _announce_forward(
        self, phase: str, batch: int, plan: Plan, codebooks: dict[str, list[str]]
    ) -> None:
        """Announce a forward (or eval) phase: each sender's codebooks, then its latents."""
        if not codebooks:
            self._expect(phase, batch, plan)
            return
        schedule: list[ExpectedMessage] = []
        for message in self._messages(phase, batch, plan):
            for parent in codebooks.pop(message.src, ()):
                schedule.append(
                    ExpectedMessage(
                        message.src,
                        parent,
                        _codebook_phase(phase),
                        "codebook",
                        self._codebook_shape(message.src),
                        torch.float32,
                    )
                )
            schedule.append(message)
        self.transport.expect(schedule)

    def _encode(
        self,
        values: torch.Tensor,
        src: str,
        dst: str,
        phase: str,
        payload: str,
        index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``values`` in the message's wire format (``dst``: ``*`` for a latent sent to all)."""
        codec = self._codec(src, dst, payload)
        if codec.identity:
            return values
        generator = node_generator(self.seed, src, f"wire:{phase}:{self._calls}:{dst}")
        return codec.encode(values, index=index, generator=generator)

    def _expect(self, phase: str, batch: int, plan: Plan) -> None:
        """Announce every message of a phase to the transport, in the order they will be sent."""
        self.transport.expect(self._messages(phase, batch, plan))

    def _messages(self, phase: str, batch: int, plan: Plan) -> list[ExpectedMessage]:
        """The messages of a phase in the order they will be sent (kept per phase and plan)."""
        key = (phase, batch, id(plan))  # plans outlive their schedules: steps keep them alive
        if key not in self._schedules:
            schedule = []
            for message in phase_messages(plan, phase, batch, self._latent_dims):
                shape, dtype = self._codec(message.src, message.dst, message.payload).announce(
                    batch
                )
                schedule.append(message._replace(shape=shape, dtype=dtype))
            self._schedules[key] = schedule
        return self._schedules[key]

    def _send_latent(
        self, node: str, out: GateOutput, phase: str, codebooks: dict[str, list[str]]
    ) -> None:
        """Send ``node``'s codebook where due, then encode its latent once for every parent."""
        parents = self.plan.parents(node)
        if not parents:
            return
        if codebooks.get(node):
            gate = self.modules[node].gate
            published = gate.published if isinstance(gate, DiscreteGate) else None
            assert isinstance(published, torch.Tensor)  # a publisher's gate has published
            codebook = published.detach().float().contiguous()
            for parent in codebooks[node]:
                self.transport.send(
                    codebook, src=node, dst=parent, phase=_codebook_phase(phase), payload="codebook"
                )
        # every parent gets the same message: the forward codec is the sender's
        message = self._encode(out.t, node, "*", phase, "latent", index=out.index)
        for parent in parents:
            self.transport.send(message, src=node, dst=parent, phase=phase, payload="latent")

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
        self._calls += 1
        codebooks, arriving = self._codebooks_due(step) if self._publishers else ({}, {})
        self._train_steps += 1
        self._announce_forward("forward", batch, step.delivered, dict(arriving))
        forward = self._train_forward(index, step, codebooks, arriving)
        self._expect("backward", batch, step.delivered)
        self._train_backward(forward, step.delivered, batch)
        self.transport.flush()
        return float(forward.loss.detach()) if forward.loss is not None else None

    def _train_forward(
        self,
        index: np.ndarray,
        step: StepPlan,
        codebooks: dict[str, list[str]],
        arriving: dict[str, list[str]],
    ) -> _Forward:
        """The forward phase: each computing node of this process receives, computes, sends."""
        batch, delivered = len(index), step.delivered
        forward = _Forward()
        for node in self.local:
            if node not in step.working or (
                node == delivered.fusion and not delivered.children(node)
            ):
                continue  # nothing to compute (e.g. every input was lost)
            module = self.modules[node]
            module.train()
            received = {
                child: self._recv_latent(child, node, "forward", batch, arriving).requires_grad_(
                    True
                )
                for child in delivered.children(node)
            }
            forward.held[node] = received
            if node == delivered.fusion:
                logits = module.decode(list(received.values()))
                forward.loss = self.task.loss(logits, self.labels[0][index])
                continue
            out = module.send_forward(self._view(node, 0, index), list(received.values()))
            forward.sent[node], forward.rates[node] = out.t, out.rate_bits
            if out.commitment is not None:
                forward.commitments[node] = out.commitment
            self._send_latent(node, out, "forward", codebooks)
        return forward

    def _train_backward(self, forward: _Forward, delivered: Plan, batch: int) -> None:
        """The backward phase, in reverse order: each node backpropagates its objective,
        sends its children their gradients and steps its optimiser."""
        in_plan = set(delivered.forward_order())
        for node in reversed(self.local):
            if node not in forward.held or node not in in_plan:
                continue  # computed nothing, or every message it sent was lost
            if node == delivered.fusion:
                assert forward.loss is not None
                objective = forward.loss
            else:
                objective = self._objective(node, forward, delivered, batch)
            optimizer = self.optimizers[node]
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            for child, latent in forward.held[node].items():
                grad_out = latent.grad if latent.grad is not None else torch.zeros_like(latent)
                message = self._encode(grad_out, node, child, "backward", "grad")
                self.transport.send(message, src=node, dst=child, phase="backward", payload="grad")
            optimizer.step()

    def _objective(self, node: str, forward: _Forward, delivered: Plan, batch: int) -> torch.Tensor:
        """``<T, sum of the parents' gradients> + beta * rate`` (+ the commitment loss)."""
        grad = torch.zeros_like(forward.sent[node])
        for parent in delivered.parents(node):
            grad = grad + self._recv(parent, node, "backward", "grad", batch)
        objective = (forward.sent[node] * grad).sum()
        if self.beta > 0:
            objective = objective + self.beta * forward.rates[node]
        if node in forward.commitments:
            objective = objective + forward.commitments[node]
        return objective

    # -- evaluation -------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate_batch(self, index: np.ndarray) -> EvalSums:
        """Forward the test samples ``index``: the task's sums at the fusion, rates at senders."""
        batch = len(index)
        self._calls += 1
        result = EvalSums(samples=batch)
        keep = self._bracket_keep[index]
        for module in self.modules.values():
            module.eval()
        codebooks, arriving = self._codebooks_due(None) if self._publishers else ({}, {})
        self._announce_forward("eval", batch, self.plan, dict(arriving))
        for node in self.local:
            module = self.modules[node]
            received = [
                self._recv_latent(child, node, "eval", batch, arriving)
                for child in self.plan.children(node)
            ]
            if node == self.plan.fusion:
                result.metric_sums = self.task.metric_sums(
                    module.decode(received, batch), self.labels[1][index]
                )
                continue
            out = module.send_forward(self._view(node, 1, index), received)
            result.rate_sums[node] = float(out.rate_bits) * batch
            result.rate_stats[node] = RateStats(
                self.specs[node].gate_kind, self.message_bits_per_sample(node)
            ).update(out, keep)
            self._send_latent(node, out, "eval", codebooks)
        self.transport.flush()
        return result

    def message_bits_per_sample(self, node: str) -> float:
        """Bits per sample of ``node``'s forward message: no reported rate of it exceeds this."""
        spec = self.specs[node]
        codewords = spec.codewords if spec.gate_kind == "discrete" else None
        return message_bits_per_sample(
            self.wire_forward, spec.latent_dim, codewords, self.gate_groups
        )

    def flops(self) -> dict[str, int]:
        """Forward FLOPs per sample of each local node's module."""
        return {node: module.flops_per_sample() for node, module in self.modules.items()}

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """This process's nodes' modules (weights, buffers, generators, gate counters) and
        optimisers, the codebook bookkeeping and the step counters (live tensors)."""
        return {
            "modules": {node: module_state(module) for node, module in self.modules.items()},
            "optimizers": {node: opt.state_dict() for node, opt in self.optimizers.items()},
            "versions": dict(self._versions),
            "held": dict(self._held),
            "copies": dict(self._copies),
            "train_steps": self._train_steps,
            "calls": self._calls,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``state`` (same variant, seed and placement)."""
        if set(state["modules"]) != set(self.modules):
            raise ValueError("the saved state is of other nodes than this process runs")
        for node, module in self.modules.items():
            load_module_state(module, state["modules"][node])
            self.optimizers[node].load_state_dict(state["optimizers"][node])
        self._versions = dict(state["versions"])
        self._held = dict(state["held"])
        self._copies = dict(state["copies"])
        self._train_steps, self._calls = state["train_steps"], state["calls"]


def _check_sync(codebook_sync: object) -> None:
    """``codebook_sync`` must be a positive integer (not a bool)."""
    if isinstance(codebook_sync, bool) or not isinstance(codebook_sync, int) or codebook_sync <= 0:
        raise ValueError(f"codebook_sync must be a positive integer, got {codebook_sync!r}")


def _codebook_phase(phase: str) -> str:
    """The phase of a codebook sent in a ``forward`` (training) or ``eval`` phase."""
    return "codebook" if phase == "forward" else phase
