"""The batched executor: nodes of the same shape computed together, one autograd graph per step.

The per-node executor walks the plan node by node; with thousands of nodes
the Python loop, not the arithmetic, is the cost. This executor computes the
same thing in bulk:

- **Stacks.** Nodes whose modules have the same shape (same view width, with or
  without a combiner, the same gate; the fusion node alone) are a *stack*:
  each layer's parameters of all its nodes are one tensor, node ``i`` in row
  ``i``, and one call (``torch.func.vmap`` over ``functional_call``) runs them
  all. Every node's parameters start from exactly the values its own module
  would have (:class:`~innet.modules.NodeModule`, seeded by node).
- **Levels.** A node's level is one more than its highest child's (sensors
  without children: 0). The nodes of one level depend only on lower levels, so
  a step runs level by level, stack by stack; what a node receives is summed
  over its children with one ``index_add`` per (source chunk, level).
- **One backward.** The step's loss (the task's loss at the fusion node plus
  ``beta`` times the rate of every node whose messages arrive) is
  differentiated once, over the whole graph. This gives every node the
  gradients the per-node executor's message passing gives it (the gradient a
  node receives from its parents is the derivative of the same total).
- **One optimiser per stack** with a step count per node
  (:mod:`~innet.executors.stacked_optim`): a node updates only on the steps
  it takes part in, as with its own optimiser.

Messages are recorded as the per-node executor sends them: one record per
(sender, receiver) of each phase, its size that of the row actually sent,
lost where the step's plan loses it (:meth:`RecordingTransport.record`). The
values themselves stay in the graph: this executor needs every node in one
process (an in-process transport) and full-precision messages.

Randomness follows the per-node contract: a Gaussian gate's noise for a step
comes from its node's own generator (seeded by ``(seed, node)``), one draw
per training step the node computes, whichever executor runs it.

:func:`batched_unsupported` says why a configuration cannot run batched (the
``auto`` choice then runs it per node).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from innet.events import StepPlan, step_plan
from innet.executors import EvalSums, bracket_subsample
from innet.executors.stacked_optim import STACKED_OPTIMIZERS, make_stacked_optimizer
from innet.gates import GateOutput, RateStats, bound_logvar, gaussian_kl_bits
from innet.modules import ModuleSpec, NodeModule
from innet.plans import Plan
from innet.tasks import Classification, Task
from innet.topology.model import node_key
from innet.transport import RecordingTransport, Transport
from innet.wire import message_bits_per_sample

__all__ = ["BatchedExecutor", "batched_unsupported"]

BATCHED_GATES = ("none", "gaussian")
BATCHED_AGGREGATORS = ("sum", "mean")


def batched_unsupported(
    specs: Mapping[str, ModuleSpec],
    *,
    optimizer: str,
    wire_forward: str,
    wire_backward: str,
    transport: Transport,
) -> str | None:
    """Why the batched executor cannot run this configuration, or None when it can."""
    gates = {spec.gate_kind for spec in specs.values() if not spec.is_fusion}
    aggregators = {spec.aggregator for spec in specs.values()}
    if not gates <= set(BATCHED_GATES):
        return (
            f"gate {sorted(gates - set(BATCHED_GATES))[0]!r} (batched: {', '.join(BATCHED_GATES)})"
        )
    if not aggregators <= set(BATCHED_AGGREGATORS):
        return f"aggregator {sorted(aggregators - set(BATCHED_AGGREGATORS))[0]!r}"
    if len({spec.latent_dim for spec in specs.values()}) > 1:
        return "nodes with different latent widths"
    if optimizer not in STACKED_OPTIMIZERS:
        return f"optimizer {optimizer!r}"
    if (wire_forward, wire_backward) != ("float32", "float32"):
        return f"wire format {wire_forward}/{wire_backward} (batched: float32 both ways)"
    if not isinstance(transport, RecordingTransport) or not all(
        transport.owns(node) for node in specs
    ):
        return "nodes spread over processes (batched needs all nodes in one process)"
    return None


@dataclass(frozen=True)
class _Shape:
    """What the modules of one stack have in common."""

    is_fusion: bool
    view_dim: int | None
    has_combiner: bool
    gate_kind: str


def _layers(module: nn.Module) -> list[nn.Module]:
    """The layers of a node module's part, in order (a Linear alone, or a Sequential of them)."""
    return list(module) if isinstance(module, nn.Sequential) else [module]


class _Stack:
    """The nodes of one shape: parameters stacked by layer, one optimiser, one generator each.

    A part (``encoder``, ``combiner``, ``decoder``, the Gaussian gate's ``mu`` and
    ``logvar``) is a list of layers; a Linear layer's weight ``[out, in]`` of
    every node becomes one parameter ``[nodes, out, in]``, and a call multiplies
    each node's rows by its own weight (``baddbmm``).
    """

    def __init__(
        self, shape: _Shape, nodes: list[str], modules: list[NodeModule], device: torch.device,
        optimizer: str, lr: float,
    ) -> None:  # fmt: skip
        self.shape, self.nodes = shape, nodes
        self.row = {node: row for row, node in enumerate(nodes)}
        self.flops = modules[0].flops_per_sample()
        sources = {part: part for part in ("encoder", "combiner", "decoder")}
        if shape.gate_kind == "gaussian":
            sources.update({"mu": "gate.mu", "logvar": "gate.logvar"})
        self.parts: dict[str, list[tuple[nn.Parameter, nn.Parameter] | None]] = {}
        self.names: dict[str, list[str]] = {}  # part -> the NodeModule's layer names
        flat: list[nn.Parameter] = []
        for part, path in sources.items():
            if getattr(modules[0], path.split(".")[0]) is None:
                continue
            per_node = [_layers(m.get_submodule(path)) for m in modules]
            layers: list[tuple[nn.Parameter, nn.Parameter] | None] = []
            names: list[str] = []
            for position, layer in enumerate(per_node[0]):
                if isinstance(layer, nn.ReLU):
                    layers.append(None)
                    continue
                if not isinstance(layer, nn.Linear):
                    raise TypeError(f"cannot stack a {type(layer).__name__} layer")
                weight, bias = (
                    nn.Parameter(torch.stack([getattr(m[position], name).detach()
                                              for m in per_node]).to(device))
                    for name in ("weight", "bias")
                )  # fmt: skip
                layers.append((weight, bias))
                names.append(path if len(per_node[0]) == 1 else f"{path}.{position}")
                flat.extend((weight, bias))
            self.parts[part] = layers
            self.names[part] = names
        self.generators = (
            [m.gate.generator for m in modules] if shape.gate_kind == "gaussian" else []
        )
        self.optimizer = make_stacked_optimizer(optimizer, flat, len(nodes), lr)

    def take(self, rows: torch.Tensor | slice, training: bool) -> _Weights:
        """The weights of the nodes in ``rows``, as leaves of a chunk's own autograd graph."""
        return _Weights(self, rows, training)

    def parameters_of(self, node: str) -> dict[str, torch.Tensor]:
        """``node``'s parameters, named as in its :class:`~innet.modules.NodeModule`."""
        row = self.row[node]
        named = {}
        for part, layers in self.parts.items():
            stacked = [layer for layer in layers if layer is not None]
            for name, (weight, bias) in zip(self.names[part], stacked, strict=True):
                named[f"{name}.weight"], named[f"{name}.bias"] = weight[row], bias[row]
        return named


class _Weights:
    """Some rows of a stack's weights, copied out as leaves of one chunk's autograd graph.

    Backpropagating through a chunk fills these leaves' gradients only;
    :meth:`give_back` adds them into the stack's rows, so no step touches the
    gradients of nodes it does not compute.
    """

    def __init__(self, stack: _Stack, rows: torch.Tensor | slice, training: bool) -> None:
        self.stack, self.rows = stack, rows
        self.parts = {
            part: [
                None if layer is None
                else tuple(value[rows].detach().requires_grad_(training) for value in layer)
                for layer in layers
            ]
            for part, layers in stack.parts.items()
        }  # fmt: skip

    def apply(self, part: str, x: torch.Tensor) -> torch.Tensor:
        """Each node's ``part`` on its rows of ``x`` (``[nodes, batch, in]``)."""
        for layer in self.parts[part]:
            if layer is None:
                x = torch.relu(x)
                continue
            weight, bias = layer
            x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        return x

    def give_back(self) -> None:
        """Add the gradients of these rows into the stack's parameters."""
        for part, layers in self.parts.items():
            for copied, stacked in zip(layers, self.stack.parts[part], strict=True):
                if copied is None or stacked is None:
                    continue
                for leaf, parameter in zip(copied, stacked, strict=True):
                    if leaf.grad is None:
                        continue
                    if parameter.grad is None:
                        parameter.grad = torch.zeros_like(parameter)
                    if isinstance(self.rows, slice):
                        parameter.grad[self.rows] += leaf.grad
                    else:
                        parameter.grad.index_add_(0, self.rows, leaf.grad)


@dataclass
class _Chunk:
    """The nodes of one stack at one level: computed in one call.

    Every computing node has a row in the step's *inbox* (``[nodes, batch,
    dim]``), where what its children send is summed; a chunk's nodes hold
    the rows ``start`` to ``start + len(nodes)``.
    """

    stack: _Stack
    nodes: list[str]
    rows: torch.Tensor | slice  # rows in the stack (a slice when they are consecutive)
    start: int  # first row in the inbox
    receives: bool  # some node of the chunk has children
    n_inputs: torch.Tensor  # per node: inputs aggregated (for the mean)
    senders: torch.Tensor  # rows (in the chunk) of each message delivered to a parent …
    receivers: torch.Tensor  # … and the parent's row in the inbox
    in_loss: torch.Tensor  # per node: 1 where its rate is in the loss (its messages arrive)
    level: int


@dataclass
class _Messages:
    """The messages of one phase: senders, receivers, and the chunk whose latent each carries.

    A latent message carries its sender's row of the chunk's output; a
    gradient message has the shape of the latent it is the gradient of (its
    receiver's).
    """

    src: list[str]
    dst: list[str]
    chunk: np.ndarray

    @classmethod
    def of(cls, pairs: list[tuple[str, str]], where: dict, by: int) -> _Messages:
        chunks = np.fromiter((where[pair[by]][0] for pair in pairs), dtype=np.int64)
        return cls([src for src, _ in pairs], [dst for _, dst in pairs], chunks)


@dataclass
class _Schedule:
    """How one step's plan runs: chunks in order, records, which nodes step."""

    step: StepPlan  # kept alive: schedules are cached by its id
    chunks: list[_Chunk]
    where: dict[str, tuple[int, int]]  # node -> (chunk, row in it)
    forward: _Messages  # every latent sent
    backward: _Messages  # every gradient sent
    stepping: dict[int, torch.Tensor]  # id(stack) -> mask of the nodes that update


class BatchedExecutor:
    """Trains the node modules of a plan stacked by shape, level by level (see the module doc)."""

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
    ) -> None:
        reason = batched_unsupported(
            specs, optimizer=optimizer, wire_forward=wire_forward,
            wire_backward=wire_backward, transport=transport,
        )  # fmt: skip
        if reason is not None:
            raise ValueError(f"the batched executor cannot run {reason}")
        assert isinstance(transport, RecordingTransport)
        self.transport = transport
        self.device = torch.device(device)
        self.seed, self.beta = seed, beta
        self.task = task or Classification()
        self.specs = dict(specs)
        self.wire_forward = wire_forward
        first = next(iter(self.specs.values()))
        self.latent_dim, self.aggregator = first.latent_dim, first.aggregator
        self.views = {
            node: (train.to(self.device), test.to(self.device))
            for node, (train, test) in views.items()
        }
        self.labels = (labels[0].to(self.device), labels[1].to(self.device))
        by_shape: dict[_Shape, list[str]] = defaultdict(list)
        # rows in the order the first plan computes them: its chunks are then consecutive rows
        first = self._levels(step_plan(plan, frozenset(), []))
        position = {node: index for index, node in enumerate(plan.forward_order())}
        for node in sorted(
            self.specs,
            key=lambda n: (first.get(n, len(first)), position.get(n, len(position)), node_key(n)),
        ):
            spec = self.specs[node]
            gate = "" if spec.is_fusion else spec.gate_kind  # the fusion node has a decoder
            shape = _Shape(spec.is_fusion, spec.view_dim, spec.n_received > 0, gate)
            by_shape[shape].append(node)
        self.stacks: dict[str, _Stack] = {}  # node -> its stack
        for shape, nodes in by_shape.items():
            modules = [NodeModule(self.specs[node], seed) for node in nodes]
            stack = _Stack(shape, nodes, modules, self.device, optimizer, lr)
            for node in nodes:
                self.stacks[node] = stack
        self._all_stacks = list({id(s): s for s in self.stacks.values()}.values())
        self._calls = 0
        self._bracket_keep = bracket_subsample(seed, len(self.labels[1]), bracket_samples)
        self._schedules: dict[int, _Schedule] = {}
        self.set_plan(plan)

    def set_plan(self, plan: Plan) -> None:
        """Route from now on along ``plan`` (its nodes must all have a spec)."""
        missing = set(plan.forward_order()) - set(self.specs)
        if missing:
            raise ValueError(f"no module spec for nodes {sorted(missing)}")
        self.plan = plan
        self._eval_step = step_plan(plan, frozenset(), [])

    # -- scheduling -------------------------------------------------------------------------

    @staticmethod
    def _computing(step: StepPlan) -> list[str]:
        """The nodes that compute in ``step``, in forward order."""
        delivered = step.delivered
        return [
            node
            for node in step.plan.forward_order()
            if node in step.working
            and not (node == delivered.fusion and not delivered.children(node))
        ]

    def _levels(self, step: StepPlan) -> dict[str, int]:
        """Each computing node's level: one more than its highest child's (leaves: 0)."""
        level: dict[str, int] = {}
        for node in self._computing(step):  # forward order: children first
            children = step.delivered.children(node)
            level[node] = 1 + max((level[c] for c in children), default=-1)
        return level

    def _schedule(self, step: StepPlan) -> _Schedule:
        cached = self._schedules.get(id(step))
        if cached is not None:
            return cached
        plan, delivered = step.plan, step.delivered
        fusion = delivered.fusion
        computing = self._computing(step)
        level = self._levels(step)
        groups: dict[tuple[int, int], list[str]] = defaultdict(list)
        for node in computing:
            groups[(level[node], self._all_stacks.index(self.stacks[node]))].append(node)
        ordered = sorted(groups.items())
        where: dict[str, tuple[int, int]] = {}  # node -> (chunk, row in chunk)
        inbox: dict[str, int] = {}  # node -> its row in the inbox
        for number, (_, nodes) in enumerate(ordered):
            for row, node in enumerate(nodes):
                where[node] = (number, row)
                inbox[node] = len(inbox)
        in_plan = set(delivered.forward_order())
        updating = [node for node in computing if node in in_plan]
        chunks: list[_Chunk] = []
        for (level_of_chunk, stack_index), nodes in ordered:
            stack = self._all_stacks[stack_index]
            own = 1 if stack.shape.view_dim is not None else 0
            children = [len(delivered.children(node)) for node in nodes]
            n_inputs = torch.tensor([own + count for count in children], dtype=torch.float32,
                                    device=self.device).view(-1, 1, 1)  # fmt: skip
            edges = [
                (row, inbox[parent])
                for row, node in enumerate(nodes)
                for parent in delivered.parents(node)
            ]
            chunks.append(
                _Chunk(
                    stack, nodes, self._rows([stack.row[n] for n in nodes]),
                    inbox[nodes[0]], any(children), n_inputs,
                    self._index([row for row, _ in edges]),
                    self._index([parent for _, parent in edges]),
                    torch.tensor([float(n in in_plan) for n in nodes], device=self.device),
                    level_of_chunk,
                )
            )  # fmt: skip
        stepping = {}
        for stack in self._all_stacks:
            mask = torch.zeros(len(stack.nodes), dtype=torch.bool)
            for node in updating:
                if self.stacks[node] is stack:
                    mask[stack.row[node]] = True
            stepping[id(stack)] = mask
        forward = [
            (node, parent) for node in computing if node != fusion for parent in plan.parents(node)
        ]
        backward = [
            (node, child) for node in reversed(updating) for child in delivered.children(node)
        ]
        schedule = _Schedule(
            step, chunks, where, _Messages.of(forward, where, 0),
            _Messages.of(backward, where, 1), stepping,
        )  # fmt: skip
        self._schedules[id(step)] = schedule
        return schedule

    def _index(self, values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=self.device)

    def _rows(self, rows: list[int]) -> torch.Tensor | slice:
        """Rows of a stack: a slice (a view, no copy) when they are consecutive."""
        if rows == list(range(rows[0], rows[0] + len(rows))):
            return slice(rows[0], rows[0] + len(rows))
        return self._index(rows)

    # -- the forward pass -------------------------------------------------------------------

    def _forward(
        self, schedule: _Schedule, index: np.ndarray, split: int, training: bool
    ) -> tuple[
        torch.Tensor | None, list[GateOutput | None], list[torch.Tensor | None], list[_Weights]
    ]:
        """The fusion node's logits; per chunk, in order, its gate output, inbox rows and weights.

        What a chunk receives and its weights are leaves of its own autograd
        graph (as a message is for a node of the per-node executor): no graph
        spans two chunks.
        """
        batch = len(index)
        outs: list[GateOutput | None] = []
        inboxes: list[torch.Tensor | None] = []
        weights: list[_Weights] = []
        logits = None
        inbox = torch.zeros(len(schedule.where), batch, self.latent_dim, device=self.device)
        for chunk in schedule.chunks:
            stack = chunk.stack
            taken = stack.take(chunk.rows, training)
            weights.append(taken)
            held = None
            if stack.shape.view_dim is not None:
                view = torch.stack([self.views[node][split][index] for node in chunk.nodes])
                held = taken.apply("encoder", view)
            received = None
            if chunk.receives:
                received = inbox[chunk.start : chunk.start + len(chunk.nodes)].clone()
                received.requires_grad_(training)
                held = received if held is None else held + received
            inboxes.append(received)
            assert held is not None  # every computing node has a view or a child
            if self.aggregator == "mean":
                held = held / chunk.n_inputs
            if stack.shape.is_fusion:
                logits = taken.apply("decoder", held)[0]
                outs.append(None)
                continue
            latent = taken.apply("combiner", held) if "combiner" in stack.parts else held
            out = self._gate(taken, chunk, latent, training)
            if len(chunk.senders):
                inbox.index_add_(0, chunk.receivers, out.t.detach().index_select(0, chunk.senders))
            outs.append(out)
        return logits, outs, inboxes, weights

    def _gate(self, taken: _Weights, chunk: _Chunk, z: torch.Tensor, training: bool) -> GateOutput:
        """The gate of every node of ``chunk`` on its latents ``z`` (``[nodes, batch, dim]``)."""
        stack = taken.stack
        if stack.shape.gate_kind == "none":
            return GateOutput(t=z, rate_bits=z.new_zeros(len(chunk.nodes)))
        mu = taken.apply("mu", z)
        logvar = bound_logvar(taken.apply("logvar", z))
        rate = gaussian_kl_bits(mu, logvar).mean(dim=1)
        sigma = torch.exp(0.5 * logvar)
        if not training:
            return GateOutput(t=mu, rate_bits=rate, mu=mu, sigma=sigma)
        shape = mu.shape[1:]
        eps = torch.stack(
            [
                torch.randn(shape, generator=stack.generators[row], dtype=mu.dtype,
                            device=stack.generators[row].device)
                for row in (stack.row[node] for node in chunk.nodes)
            ]
        ).to(mu.device)  # fmt: skip
        return GateOutput(t=mu + sigma * eps, rate_bits=rate, mu=mu, sigma=sigma)

    def _record(
        self, messages: _Messages, outs: list[GateOutput | None], phase: str, payload: str
    ) -> None:
        """Record ``messages``, each the size of a row of the chunk output it carries."""
        row_bytes = np.array(
            [0 if out is None else out.t[0].numel() * out.t.element_size() for out in outs],
            dtype=np.int64,
        )
        self.transport.record_many(
            row_bytes[messages.chunk], src=messages.src, dst=messages.dst, phase=phase,
            payload=payload,
        )  # fmt: skip

    # -- training ---------------------------------------------------------------------------

    def train_step(self, index: np.ndarray, step: StepPlan) -> float | None:
        """One synchronous step on the training samples ``index``, on ``step``'s plan."""
        if step.plan is not self.plan:
            raise ValueError("the step's plan is not the executor's: call set_plan first")
        self._calls += 1
        schedule = self._schedule(step)
        logits, outs, inboxes, weights = self._forward(schedule, index, 0, training=True)
        self._record(schedule.forward, outs, "forward", "latent")
        loss = self.task.loss(logits, self.labels[0][index]) if logits is not None else None
        self._backward(schedule, loss, outs, inboxes, weights)
        self._record(schedule.backward, outs, "backward", "grad")
        for stack in self._all_stacks:
            mask = schedule.stepping[id(stack)]
            if bool(mask.any()):
                stack.optimizer.step(mask)
            stack.optimizer.zero_grad()
        return float(loss.detach()) if loss is not None else None

    def _backward(
        self, schedule: _Schedule, loss: torch.Tensor | None,
        outs: list[GateOutput | None], inboxes: list[torch.Tensor | None],
        weights: list[_Weights],
    ) -> None:  # fmt: skip
        """Levels in reverse order, each backpropagating what its parents sent back.

        A chunk's objective is the per-node executor's, for all its nodes at
        once: ``<T, sum of its parents' gradients> + beta * rate`` (its rate only
        where its messages arrive), or the task's loss at the fusion node. The
        gradient with respect to its inbox rows is what it sends its children.
        The chunks of one level depend on no other and share one backward call.
        """
        sent_back: torch.Tensor | None = None  # per inbox row: the gradient it is sent
        everything = list(zip(schedule.chunks, outs, inboxes, weights, strict=True))
        for _, level in itertools.groupby(reversed(everything), key=lambda item: item[0].level):
            level = list(level)
            outputs: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            for chunk, out, _, _ in level:
                if out is None:  # the fusion node
                    if loss is not None:
                        outputs.append(loss)
                        grads.append(torch.ones_like(loss))
                    continue
                grad = torch.zeros_like(out.t)
                if sent_back is not None and len(chunk.senders):
                    grad.index_add_(0, chunk.senders, sent_back.index_select(0, chunk.receivers))
                outputs.append(out.t)
                grads.append(grad)
                if self.beta > 0 and out.rate_bits.requires_grad:  # `none` gates have no rate
                    penalty = (out.rate_bits * chunk.in_loss).sum() * self.beta
                    outputs.append(penalty)
                    grads.append(torch.ones_like(penalty))
            if outputs:
                torch.autograd.backward(outputs, grads)
            for chunk, _, received, taken in level:
                taken.give_back()
                if received is None:
                    continue
                if sent_back is None:
                    sent_back = received.new_zeros(len(schedule.where), *received.shape[1:])
                if received.grad is not None:
                    sent_back[chunk.start : chunk.start + len(chunk.nodes)] = received.grad

    # -- evaluation -------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate_batch(self, index: np.ndarray) -> EvalSums:
        """Forward the test samples ``index``: the task's sums at the fusion, rates at senders."""
        batch = len(index)
        self._calls += 1
        result = EvalSums(samples=batch)
        keep = self._bracket_keep[index]
        schedule = self._schedule(self._eval_step)
        logits, outs, _, _ = self._forward(schedule, index, 1, training=False)
        if logits is None:  # the fusion node received nothing: its decoder sees zeros
            stack = self.stacks[self.plan.fusion]
            width = stack.parts["decoder"][0][0].shape[2]
            zeros = torch.zeros(1, batch, width, device=self.device)
            logits = stack.take(self._index([0]), False).apply("decoder", zeros)[0]
        result.metric_sums = self.task.metric_sums(logits, self.labels[1][index])
        for chunk, out in zip(schedule.chunks, outs, strict=True):
            if out is None:
                continue
            rates = out.rate_bits.tolist()
            for row, node in enumerate(chunk.nodes):
                result.rate_sums[node] = rates[row] * batch
                node_out = GateOutput(
                    t=out.t[row], rate_bits=out.rate_bits[row],
                    mu=None if out.mu is None else out.mu[row],
                    sigma=None if out.sigma is None else out.sigma[row],
                )  # fmt: skip
                result.rate_stats[node] = RateStats(
                    self.specs[node].gate_kind, self.message_bits_per_sample(node)
                ).update(node_out, keep)
        self._record(schedule.forward, outs, "eval", "latent")
        return result

    def message_bits_per_sample(self, node: str) -> float:
        """Bits per sample of ``node``'s forward message: no reported rate of it exceeds this."""
        return message_bits_per_sample(self.wire_forward, self.specs[node].latent_dim, None)

    def node_parameters(self, node: str) -> dict[str, torch.Tensor]:
        """``node``'s parameters, named as in its :class:`~innet.modules.NodeModule`."""
        return self.stacks[node].parameters_of(node)

    def flops(self) -> dict[str, int]:
        """Forward FLOPs per sample of each node's module."""
        return {node: stack.flops for node, stack in self.stacks.items()}
