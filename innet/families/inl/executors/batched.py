"""The batched executor: nodes of the same shape computed together, one autograd graph per step.

The per-node executor walks the plan node by node; with thousands of nodes
the Python loop, not the arithmetic, is the cost. This executor computes the
same thing in bulk:

- **Stacks.** Each part of the node modules is stacked over the nodes that
  have it: the encoders of the sensors of one view width, the combiners, the
  gates of one kind, the fusion node's decoder. Each layer's parameters of all
  those nodes are one tensor, node ``i`` in row ``i``, and one call
  (``baddbmm``) runs them all. Every node's parameters start from exactly the
  values its own module would have (:class:`~innet.families.inl.modules.NodeModule`,
  seeded by node).
- **Levels.** A node's level is one more than its highest child's (sensors
  without children: 0). The nodes of one level depend only on lower levels, so
  a step runs level by level: the nodes of a level that share a gate kind are
  one *chunk*, in which each part is one call on its rows (sensors without
  children first, so the combiners' rows are one run); what a node receives is
  summed over its children in one canonical order (below), whatever the placement.
- **One backward.** The step's loss (the task's loss at the fusion node plus
  ``beta`` times the rate of every node whose messages arrive) is
  differentiated once, over the whole graph. This gives every node the
  gradients the per-node executor's message passing gives it (the gradient a
  node receives from its parents is the derivative of the same total).
- **One optimiser per stack** with a step count per node
  (:mod:`~innet.families.inl.executors.stacked_optim`): a node updates only on the steps
  it takes part in, as with its own optimiser.

Messages are recorded as the per-node executor sends them: one record per
(sender, receiver) of each phase, its size that of the row actually sent,
lost where the step's plan loses it (:meth:`RecordingTransport.record_many`);
each process records what its own nodes send. Messages travel as full-precision
rows (float32 both ways).

**Under torchrun** each process stacks and computes only the nodes its
transport places on it (:meth:`~innet.core.transport.Transport.rank_of`). Levels are
the plan's, the same in every process. After a process computes level ``l``,
the latents its level-``l`` nodes send to another process travel as one
tensor per (phase, level, pair of processes): its rows are the messages, in
the order of the plan's edges, which both ends derive from the plan; the
receiver copies them into a buffer with one row per edge. Gradients go back
the same way, level by level in reverse, one tensor per (level, pair of
processes); each round is one :meth:`~innet.core.transport.Transport.exchange`
(one process has none). A message sent into a failed link is recorded and not
sent. Within one process, messages stay in the autograd graph's tensors.

**The same numbers under any placement.** Floating-point addition is not
associative, so every sum a node receives is made in one canonical order,
the same on every rank and for every placement (and the order one process
always used): latents by (sender's level, sender's chunk group, edge index
in the plan's arrays), gradients from several parents by edge index. Local
and remote summands are gathered first and added slot by slot
(:class:`_Sum`), each target row at most once per ``index_add_`` call, so the
order holds on any device (no atomics on repeated rows). A torchrun job
therefore gives the one-process metrics and records bit for bit.

Schedules are computed from the plan's arrays (:attr:`~innet.core.plans.Plan.arrays`)
with numpy, once per distinct step plan.

Randomness follows the per-node contract: a Gaussian gate's noise for a step
comes from its node's own generator (seeded by ``(seed, node)``), one draw
of ``[batch, latent]`` standard normals per training step the node computes,
whichever executor runs it and however many processes share the nodes.

:func:`batched_unsupported` says why a configuration cannot run batched (the
``auto`` choice then runs it per node).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from innet.core.events import StepPlan, step_plan
from innet.core.plans import Plan
from innet.core.topology.model import node_key
from innet.core.transport import RecordingTransport, Transport
from innet.families.inl.executors import EvalSums, bracket_subsample
from innet.families.inl.executors.stacked_optim import STACKED_OPTIMIZERS, make_stacked_optimizer
from innet.families.inl.gates import GateOutput, RateStats
from innet.families.inl.gates.gaussian import GaussianGateKernel, bound_logvar, gaussian_kl_bits
from innet.families.inl.modules import ModuleSpec, NodeModule
from innet.families.inl.tasks import Classification, Task
from innet.families.inl.wire import message_bits_per_sample

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
    if any(transport.owns(node) != (transport.rank_of(node) == transport.rank) for node in specs):
        return "nodes spread over processes without a torch.distributed transport"
    return None


@dataclass(frozen=True, order=True)
class _Kind:
    """What decides a node's module shape; kinds sort in the order a level computes them.

    Within one level, nodes that send through the same gate are one chunk,
    ordered by kind: those without a combiner first, then by view width
    (nodes without a view last), so each part runs on few runs of rows.
    """

    is_fusion: bool
    gate_kind: str
    has_combiner: bool
    no_view: bool
    view_dim: int

    @staticmethod
    def of(spec: ModuleSpec) -> _Kind:
        """The kind of the module ``spec`` describes (the fusion node has a decoder, no gate)."""
        gate = "" if spec.is_fusion else spec.gate_kind
        return _Kind(
            spec.is_fusion, gate, spec.n_received > 0, spec.view_dim is None, spec.view_dim or 0
        )

    @property
    def parts(self) -> list[tuple[str, tuple]]:
        """(role, the key of its stack) of each part this kind's modules have."""
        parts: list[tuple[str, tuple]] = (
            [] if self.no_view else [("encoder", ("encoder", self.view_dim))]
        )
        if self.is_fusion:
            return [*parts, ("decoder", ("decoder",))]
        if self.has_combiner:
            parts.append(("combiner", ("combiner",)))
        if self.gate_kind != "none":
            parts.append(("gate", ("gate", self.gate_kind)))
        return parts


_SOURCES: dict[str, dict[str, str | tuple[str, ...]]] = {
    # a stack's key -> the NodeModule submodule (by its path) of each of its parts; a tuple
    # of single Linear layers on the same input becomes one layer (their outputs side by side)
    "encoder": {"encoder": "encoder"},
    "combiner": {"combiner": "combiner"},
    "decoder": {"decoder": "decoder"},
    "gate": {"gate": ("gate.mu", "gate.logvar")},
}


def _layers(module: nn.Module) -> list[nn.Module]:
    """The layers of a node module's part, in order (a Linear alone, or a Sequential of them)."""
    return list(module) if isinstance(module, nn.Sequential) else [module]


_Layer = tuple[nn.Parameter, nn.Parameter]
"""A stacked Linear layer: weight ``[nodes, out, in]`` and bias ``[nodes, out]``."""


def _stacked(rows: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """``rows`` (one per node, detached) stacked into one tensor on ``device``."""
    return torch.stack([row.detach() for row in rows]).to(device)


def _linear(module: nn.Module, path: str) -> nn.Linear:
    """The Linear layer at ``path`` of ``module``."""
    layer = module.get_submodule(path)
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"cannot stack a {type(layer).__name__} layer")
    return layer


def _side_by_side(
    modules: list[NodeModule], paths: tuple[str, ...], device: torch.device
) -> tuple[list[_Layer | None], list[str], list[int]]:
    """Linear layers on the same input (``paths``) of every node as one stacked layer.

    Returns the layer, the layers' names and their output widths.
    """
    side = [[_linear(m, one) for one in paths] for m in modules]
    weight = nn.Parameter(
        _stacked([torch.cat([lin.weight for lin in row]) for row in side], device)
    )
    bias = nn.Parameter(_stacked([torch.cat([lin.bias for lin in row]) for row in side], device))
    return [(weight, bias)], list(paths), [lin.out_features for lin in side[0]]


def _in_sequence(
    modules: list[NodeModule], path: str, device: torch.device
) -> tuple[list[_Layer | None], list[str]]:
    """The layers at ``path`` of every node, each Linear stacked (a ReLU: None); their names."""
    per_node = [_layers(m.get_submodule(path)) for m in modules]
    layers: list[_Layer | None] = []
    names: list[str] = []
    for position, layer in enumerate(per_node[0]):
        if isinstance(layer, nn.ReLU):
            layers.append(None)
            continue
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"cannot stack a {type(layer).__name__} layer")
        linears = [_linear(m[position], "") for m in per_node]
        weight = nn.Parameter(_stacked([lin.weight for lin in linears], device))
        layers.append((weight, nn.Parameter(_stacked([lin.bias for lin in linears], device))))
        names.append(path if len(per_node[0]) == 1 else f"{path}.{position}")
    return layers, names


def _generator(module: NodeModule) -> torch.Generator:
    """The generator of a node's (Gaussian) gate: its noise comes from it."""
    generator = getattr(module.gate, "generator", None)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{module.spec.node}: a gate without a generator cannot be stacked")
    return generator


def _grad(parameter: torch.Tensor) -> torch.Tensor:
    """A stacked parameter's gradient (a stack keeps one for each from the start)."""
    if parameter.grad is None:
        raise AssertionError("a stacked parameter without its gradient")
    return parameter.grad


class _Stack:
    """One part of the modules of every node that has it: parameters stacked, one optimiser.

    A stack holds the encoders of the sensors of one view width, or the
    combiners, or one gate kind's gates, or the fusion node's decoder. Each of
    its parts is a list of layers; a Linear layer's weight ``[out, in]`` of
    every node becomes one parameter ``[nodes, out, in]``, and a call
    multiplies each node's rows by its own weight (``baddbmm``). The Gaussian
    gate's ``mu`` and ``logvar`` layers read the same latent: they are one
    layer, ``[nodes, 2 dim, dim]``, computed in one call. An encoder stack
    holds its sensors' views, a Gaussian gate stack each node's generator.
    """

    def __init__(
        self,
        key: tuple,
        nodes: list[str],
        modules: list[NodeModule],
        device: torch.device,
        optimizer: str,
        lr: float,
        views: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    ) -> None:
        self.key, self.nodes = key, nodes
        self.row = {node: row for row, node in enumerate(nodes)}
        self.parts: dict[str, list[_Layer | None]] = {}
        self.names: dict[str, list[str]] = {}  # part -> the NodeModule's layer names
        self.widths: dict[str, list[int]] = {}  # a part of layers side by side: their outputs
        for part, path in _SOURCES[key[0]].items():
            if isinstance(path, tuple):
                self.parts[part], self.names[part], self.widths[part] = _side_by_side(
                    modules, path, device
                )
            else:
                self.parts[part], self.names[part] = _in_sequence(modules, path, device)
        flat = [
            value for layers in self.parts.values() for layer in layers for value in layer or ()
        ]
        self.flat = flat  # every stacked parameter, in a fixed order
        self.generators = [_generator(m) for m in modules] if key[0] == "gate" else []
        # each sensor's view (train, test), node i in row i: a chunk takes its rows at once
        self.views = (
            (
                _stacked([views[node][0] for node in nodes], device),
                _stacked([views[node][1] for node in nodes], device),
            )
            if key[0] == "encoder"
            else None
        )
        self.optimizer = make_stacked_optimizer(optimizer, flat, len(nodes), lr)
        for parameter in flat:  # kept, zeroed after each step: taken rows' gradients view them
            parameter.grad = torch.zeros_like(parameter)
        self._taken: dict[tuple[int, int], _Weights] = {}
        # per (rows, shape, dtype) a step draws noise for: the buffer, its rows' views and
        # generators
        self.noise: dict[tuple, tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Generator]]]]
        self.noise = {}

    def state_dict(self) -> dict[str, Any]:
        """Its nodes, parameters, optimiser state and generators' states (live tensors)."""
        return {
            "nodes": self.nodes,
            "parameters": [parameter.detach() for parameter in self.flat],
            "optimizer": self.optimizer.state_dict(),
            "generators": [generator.get_state() for generator in self.generators],
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``state`` (the same nodes, in the same rows)."""
        if state["nodes"] != self.nodes or len(state["parameters"]) != len(self.flat):
            raise ValueError(f"the saved state of stack {self.key} is of other nodes")
        for parameter, value in zip(self.flat, state["parameters"], strict=True):
            parameter.copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        for generator, value in zip(self.generators, state["generators"], strict=True):
            generator.set_state(value)

    def take(self, rows: torch.Tensor | slice, training: bool) -> _Weights:
        """The weights of the nodes in ``rows``, as leaves of a chunk's own autograd graph.

        Consecutive rows taken for training are taken once and kept: their
        leaves are views of the stacked parameters (which the optimiser updates
        in place), their gradients views of the stack's gradients.
        """
        if not (training and isinstance(rows, slice)):
            return _Weights(self, rows, training)
        taken = self._taken.get((rows.start, rows.stop))
        if taken is None:
            taken = self._taken[(rows.start, rows.stop)] = _Weights(self, rows, training)
        return taken

    def zero_grad(self) -> None:
        """Zero the stack's gradients in place (the views taken rows accumulate into stay valid)."""
        for layers in self.parts.values():
            for layer in layers:
                for parameter in layer or ():
                    _grad(parameter).zero_()

    def parameters_of(self, node: str, grads: bool = False) -> dict[str, torch.Tensor]:
        """``node``'s parameters here (or their gradients), named as in its NodeModule."""
        row = self.row[node]
        named = {}
        for part, layers in self.parts.items():
            stacked = [
                tuple(_grad(value) if grads else value for value in layer)
                for layer in layers
                if layer is not None
            ]
            if part in self.widths:  # layers side by side: each its slice of the outputs
                (weight, bias), at = stacked[0], 0
                for name, width in zip(self.names[part], self.widths[part], strict=True):
                    named[f"{name}.weight"] = weight[row, at : at + width]
                    named[f"{name}.bias"] = bias[row, at : at + width]
                    at += width
                continue
            for name, (weight, bias) in zip(self.names[part], stacked, strict=True):
                named[f"{name}.weight"], named[f"{name}.bias"] = weight[row], bias[row]
        return named


def _ready(value: torch.Tensor, bias: bool) -> torch.Tensor:
    """Stacked weight rows ``[nodes, out, in]`` as ``baddbmm`` takes them (a view, no copy).

    A weight becomes ``[nodes, in, out]`` (transposed), a bias ``[nodes, 1, out]``:
    taken once, so no step transposes them again (nor differentiates a transpose).
    """
    return value.unsqueeze(1) if bias else value.transpose(1, 2)


def _unready(value: torch.Tensor, bias: bool) -> torch.Tensor:
    """The inverse of :func:`_ready`: a leaf's gradient in the stack's layout."""
    return value.squeeze(1) if bias else value.transpose(1, 2)


class _Weights:
    """Some rows of a stack's weights, copied out as leaves of one chunk's autograd graph.

    Backpropagating through a chunk fills these leaves' gradients only, so no
    step touches the gradients of nodes it does not compute. For consecutive
    rows (a slice) each leaf's gradient is a view of the stack's gradient rows
    and backward adds into it directly; otherwise :meth:`give_back` adds them.
    """

    def __init__(self, stack: _Stack, rows: torch.Tensor | slice, training: bool) -> None:
        self.stack, self.rows = stack, rows
        self.parts = {
            part: [
                None
                if layer is None
                else tuple(
                    _ready(value[rows].detach(), bias).requires_grad_(training)
                    for value, bias in zip(layer, (False, True), strict=True)
                )
                for layer in layers
            ]
            for part, layers in stack.parts.items()
        }
        self.direct = training and isinstance(rows, slice)
        if self.direct:
            for part, layers in self.parts.items():
                for copied, stacked in zip(layers, stack.parts[part], strict=True):
                    for bias, (leaf, parameter) in enumerate(
                        zip(copied or (), stacked or (), strict=True)
                    ):
                        leaf.grad = _ready(_grad(parameter)[rows], bool(bias))

    def apply(self, part: str, x: torch.Tensor) -> torch.Tensor:
        """Each node's ``part`` on its rows of ``x`` (``[nodes, batch, in]``)."""
        for layer in self.parts[part]:
            if layer is None:
                x = torch.relu(x)
                continue
            weight, bias = layer  # ready: [nodes, in, out] and [nodes, 1, out]
            x = torch.baddbmm(bias, x, weight)
        return x

    def give_back(self) -> None:
        """Add the gradients of these rows into the stack's parameters (slices: already there)."""
        if self.direct:
            return
        for part, layers in self.parts.items():
            for copied, stacked in zip(layers, self.stack.parts[part], strict=True):
                if copied is None or stacked is None:
                    continue
                for bias, (leaf, parameter) in enumerate(zip(copied, stacked, strict=True)):
                    if leaf.grad is None:
                        continue
                    grad = _unready(leaf.grad, bool(bias))
                    if isinstance(self.rows, slice):
                        _grad(parameter)[self.rows] += grad
                    else:
                        _grad(parameter).index_add_(0, self.rows, grad)


@dataclass
class _Use:
    """A run of a chunk's rows, ``a`` to ``b``, that one stack computes in one call."""

    stack: _Stack
    a: int
    b: int
    rows: torch.Tensor | slice  # their rows in the stack (a slice when they are consecutive)
    stack_rows: list[int]  # the same rows, for the generators


@dataclass
class _Chunk:
    """The nodes of one level of this process that share a gate kind (or the fusion node).

    Every node this process computes has a row in the step's *inbox* (``[nodes,
    batch, dim]``), where what its children send is summed in one canonical
    order (:class:`_Sum`), and in the *outbox*, what it sends; a chunk's nodes hold the rows
    ``start`` to ``start + len(nodes)``. Each part runs on its runs of rows
    (usually one run, a single call).
    """

    nodes: list[str]
    uses: dict[str, list[_Use]]  # role (encoder, combiner, gate, decoder) -> its runs
    gate_kind: str
    start: int  # first row in the inbox
    receives: bool  # some node of the chunk has children
    n_inputs: torch.Tensor  # per node: inputs aggregated (for the mean)
    penalty: torch.Tensor | None  # per node: beta where its messages arrive (None: beta = 0)
    level: int
    grad_sum: _Sum | None = None  # backward: the gradients its nodes' parents send, summed


@dataclass
class _Sum:
    """Messages added into rows of a target in one canonical order, whatever the placement.

    The summands are ``cat(local.index_select(0, local_rows),
    remote.index_select(0, remote_rows))``: rows of a tensor of this process
    (the outbox forward, the gradients sent back backward) and rows of the
    buffer of messages that came from other processes, one row per edge.
    ``slots[j]`` adds every target row's ``j``-th summand (its summands sorted
    by the canonical key of their edge), so each target row is
    ``((0 + m_0) + m_1) + ...`` in that order, a target row at most once per
    call (deterministic on any device).
    """

    local_rows: torch.Tensor
    remote_rows: torch.Tensor
    slots: list[tuple[torch.Tensor, torch.Tensor]]  # (target rows, summand rows) per position

    def add_into(
        self, target: torch.Tensor, local: torch.Tensor, remote: torch.Tensor | None
    ) -> None:
        """Add every target row's summands into ``target``, in the canonical order."""
        parts = []
        if len(self.local_rows):
            parts.append(local.index_select(0, self.local_rows))
        if len(self.remote_rows):
            assert remote is not None
            parts.append(remote.index_select(0, self.remote_rows))
        if not parts:
            return
        summands = parts[0] if len(parts) == 1 else torch.cat(parts)
        for rows, which in self.slots:
            target.index_add_(0, rows, summands.index_select(0, which))


@dataclass
class _Round:
    """The bundles of one phase at one level: per other process, the rows of its messages.

    ``sends[peer]``: the local row (outbox forward, gradients backward) each
    message to ``peer`` is taken from; ``receives[peer]``: the local row each
    message from ``peer`` is added into. Rows follow the plan's edge order.
    """

    sends: dict[int, torch.Tensor] = field(default_factory=dict)
    receives: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass
class _Messages:
    """The messages one phase records: senders, receivers, the chunk each message's row is in."""

    src: list[str]
    dst: list[str]
    chunk: np.ndarray


@dataclass
class _Schedule:
    """How one step's plan runs in this process: chunks by level, bundles, records, updates."""

    step: StepPlan  # kept alive: schedules are cached by its id
    chunks: list[_Chunk]
    levels: list[tuple[int, list[int]]]  # (level, its chunks), every level with work, ascending
    rows: int  # inbox rows: the nodes this process computes
    forward_rounds: dict[int, _Round]  # by the senders' level
    backward_rounds: dict[int, _Round]  # by the senders' (the parents') level
    forward: _Messages  # every latent this process sends (lost ones too)
    backward: _Messages  # every gradient it sends
    stepping: dict[int, torch.Tensor]  # id(stack) -> mask of the nodes that update
    forward_sums: dict[int, _Sum]  # by the senders' level: what local receivers get, summed
    inbound: int  # rows of the buffer of latents from other processes (one per edge)
    outbound: int  # rows of the buffer of gradients from other processes (one per edge)


@dataclass
class _PlanIndex:
    """Per node of a plan (by :attr:`~innet.core.plans.PlanArrays` index): rank, kind, name."""

    plan: Plan  # kept alive: cached by its id
    rank: np.ndarray
    kind: np.ndarray  # index into the executor's sorted kinds; -1 on another process
    names: np.ndarray  # object array of node ids
    group: np.ndarray  # every node's chunk group (gate kind), numbered the same on every rank


def _rows_of(x: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """Rows ``a`` to ``b`` of ``x`` (``x`` itself when they are all of it)."""
    return x if a == 0 and b == len(x) else x[a:b]


def _by_runs(
    count: int,
    uses: list[_Use],
    inside: Callable[[_Use], torch.Tensor],
    outside: Callable[[int, int], torch.Tensor],
) -> torch.Tensor:
    """``count`` rows: each use's rows from ``inside(use)``, the rows between from ``outside``."""
    pieces: list[torch.Tensor] = []
    at = 0
    for use in uses:
        if use.a > at:
            pieces.append(outside(at, use.a))
        pieces.append(inside(use))
        at = use.b
    if at < count:
        pieces.append(outside(at, count))
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


def _global_groups(specs: dict[str, ModuleSpec]) -> dict[str, int]:
    """Each node's chunk group (fusion flag, gate kind), numbered over every node of ``specs``.

    Not only this process's nodes: the canonical order of the messages a node
    receives (:class:`_Sum`) must be the same on every rank.
    """
    kinds = {node: _Kind.of(spec) for node, spec in specs.items()}
    groups = sorted({(kind.is_fusion, kind.gate_kind) for kind in kinds.values()})
    return {node: groups.index((kind.is_fusion, kind.gate_kind)) for node, kind in kinds.items()}


def _groups(keys: np.ndarray, *columns: np.ndarray) -> list[tuple[int, list[np.ndarray]]]:
    """``columns`` split by ``keys`` (stable: each group keeps the given order), keys ascending."""
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    cuts = np.flatnonzero(np.diff(keys)) + 1
    starts = np.concatenate([[0], cuts]).astype(np.int64)
    ends = np.concatenate([cuts, [len(keys)]]).astype(np.int64)
    return [
        (int(keys[a]), [column[order[a:b]] for column in columns])
        for a, b in zip(starts, ends, strict=True)
        if b > a
    ]


def _delivered_arrays(
    step: StepPlan,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A step's delivered edges ``src -> dst`` and levels, by the plan's node numbers, and
    which nodes work and which are in the delivered plan."""
    plan, delivered = step.plan, step.delivered
    arrays = plan.arrays
    count = len(arrays.nodes)
    if delivered is plan:  # no failure: every node works, every edge delivers
        everyone = np.ones(count, dtype=bool)
        return arrays.src, arrays.dst, arrays.level, everyone, everyone
    position = arrays.position
    inner = delivered.arrays
    to_plan = np.fromiter(
        (position[node] for node in inner.nodes), dtype=np.int64, count=len(inner.nodes)
    )
    level = np.zeros(count, dtype=np.int64)
    level[to_plan] = inner.level
    in_delivered = np.zeros(count, dtype=bool)
    in_delivered[to_plan] = True
    working = np.zeros(count, dtype=bool)
    working[[position[node] for node in step.working]] = True
    return to_plan[inner.src], to_plan[inner.dst], level, working, in_delivered


def _chunk_groups(kinds: list[_Kind]) -> np.ndarray:
    """Per kind, the number of the first kind of its chunk group (same fusion flag, gate kind)."""
    first: dict[tuple[bool, str], int] = {}
    for number, kind in enumerate(kinds):
        first.setdefault((kind.is_fusion, kind.gate_kind), number)
    return np.array([first[(kind.is_fusion, kind.gate_kind)] for kind in kinds], dtype=np.int64)


def _first_order(kind_of: Mapping[str, _Kind], plan: Plan) -> list[str]:
    """The nodes of ``kind_of`` in the order ``plan`` computes them (level, kind, position;
    nodes not in it last): the stacks' rows, so the first plan's chunks take slices."""
    arrays = plan.arrays
    last = len(arrays.nodes)

    def order(node: str) -> tuple:
        at = arrays.position.get(node, last)
        level = int(arrays.level[at]) if node in arrays.position else last
        return (level, kind_of[node], at, node_key(node))

    return sorted(kind_of, key=order)


class BatchedExecutor:
    """Trains the node modules of a plan stacked by shape, level by level (see the module doc)."""

    name: ClassVar[str] = "batched"

    def __init__(
        self,
        *,
        plan: Plan,
        specs: Mapping[str, ModuleSpec],
        seed: int,
        transport: RecordingTransport,
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
            specs,
            optimizer=optimizer,
            wire_forward=wire_forward,
            wire_backward=wire_backward,
            transport=transport,
        )
        if reason is not None:
            raise ValueError(f"the batched executor cannot run {reason}")
        self.transport = transport
        self.rank = transport.rank
        self.device = torch.device(device)
        self.seed, self.beta = seed, beta
        self.task = task or Classification()
        self.specs = dict(specs)
        self.wire_forward = wire_forward
        first = next(iter(self.specs.values()))
        self.latent_dim, self.aggregator = first.latent_dim, first.aggregator
        self.labels = (labels[0].to(self.device), labels[1].to(self.device))
        kind_of = {
            node: _Kind.of(spec) for node, spec in self.specs.items() if transport.owns(node)
        }
        self._kinds = sorted(set(kind_of.values()))
        self._global_group = _global_groups(self.specs)
        self._kind_number = {kind: number for number, kind in enumerate(self._kinds)}
        self._group_of = _chunk_groups(self._kinds)
        modules = {node: NodeModule(self.specs[node], seed) for node in _first_order(kind_of, plan)}
        by_key: dict[tuple, list[str]] = {}  # a stack's key -> its nodes, in row order
        for node in modules:
            for _, key in kind_of[node].parts:
                by_key.setdefault(key, []).append(node)
        self._flops = {node: module.flops_per_sample() for node, module in modules.items()}
        self._all_stacks = [
            _Stack(key, nodes, [modules[node] for node in nodes], self.device, optimizer, lr, views)
            for key, nodes in by_key.items()
        ]
        by_stack_key = {stack.key: stack for stack in self._all_stacks}
        # node -> role -> the stack of that part (this process's nodes)
        self.stacks: dict[str, dict[str, _Stack]] = {
            node: {role: by_stack_key[key] for role, key in kind.parts}
            for node, kind in kind_of.items()
        }
        self._bracket_keep = bracket_subsample(seed, len(self.labels[1]), bracket_samples)
        self._schedules: dict[int, _Schedule] = {}
        self._indexes: dict[int, _PlanIndex] = {}
        self.set_plan(plan)

    def set_progress(self, fraction: float) -> None:
        """Nothing anneals here (the gates it stacks have no temperature)."""

    def set_plan(self, plan: Plan) -> None:
        """Route from now on along ``plan`` (its nodes must all have a spec)."""
        missing = set(plan.arrays.nodes) - set(self.specs)
        if missing:
            raise ValueError(f"no module spec for nodes {sorted(missing)}")
        self.plan = plan
        self._eval_step = step_plan(plan, frozenset(), [])

    # -- scheduling -------------------------------------------------------------------------

    def _index(self, plan: Plan) -> _PlanIndex:
        """Rank and kind of every node of ``plan`` (once per plan)."""
        cached = self._indexes.get(id(plan))
        if cached is not None:
            return cached
        nodes = plan.arrays.nodes
        count = len(nodes)
        rank_of = self.transport.rank_of
        rank = np.fromiter((rank_of(node) for node in nodes), dtype=np.int64, count=count)
        kind = np.full(count, -1, dtype=np.int64)
        for i, node in enumerate(nodes):
            if node in self.stacks:
                kind[i] = self._kind_number[_Kind.of(self.specs[node])]
        names = np.empty(count, dtype=object)
        names[:] = nodes
        group = np.fromiter(
            (self._global_group[node] for node in nodes), dtype=np.int64, count=count
        )
        index = _PlanIndex(plan, rank, kind, names, group)
        self._indexes[id(plan)] = index
        return index

    def _schedule(self, step: StepPlan) -> _Schedule:
        cached = self._schedules.get(id(step))
        if cached is not None:
            return cached
        arrays, where = step.plan.arrays, self._index(step.plan)
        count = len(arrays.nodes)
        src, dst, level, working, in_delivered = _delivered_arrays(step)
        fusion = count - 1  # forward order ends with the fusion node
        children = np.bincount(dst, minlength=count)
        computing = working.copy()
        computing[fusion] &= bool(children[fusion])  # nothing arrives: nothing to decode
        local = computing & (where.rank == self.rank)
        mine = np.flatnonzero(local)
        order = mine[np.lexsort((mine, where.kind[mine], level[mine]))]
        row_of = np.full(count, -1, dtype=np.int64)
        row_of[order] = np.arange(len(order))
        # chunks: runs of one (level, gate kind or the fusion) in `order`
        key = level[order] * len(self._kinds) + self._group_of[where.kind[order]]
        cuts = np.flatnonzero(np.diff(key)) + 1
        starts = np.concatenate([[0], cuts]).astype(np.int64)
        ends = np.concatenate([cuts, [len(order)]]).astype(np.int64)
        bounds = [(int(a), int(b)) for a, b in zip(starts, ends, strict=True) if b > a]
        chunk_of_row = np.repeat(np.arange(len(bounds)), [b - a for a, b in bounds])
        chunks: list[_Chunk] = []
        for a, b in bounds:
            members = order[a:b]
            names = where.names[members].tolist()
            own = np.array([not self._kinds[k].no_view for k in where.kind[members]], np.int64)
            chunks.append(
                _Chunk(
                    names,
                    self._uses(names),
                    self._kinds[int(where.kind[members[0]])].gate_kind,
                    a,
                    bool(children[members].any()),
                    self._tensor(own + children[members], torch.float32).view(-1, 1, 1),
                    self._tensor(in_delivered[members] * self.beta, torch.float32)
                    if self.beta > 0
                    else None,
                    int(level[members[0]]),
                )
            )
        levels: dict[int, list[int]] = {}
        for number, chunk in enumerate(chunks):
            levels.setdefault(chunk.level, []).append(number)
        # messages from other processes wait in buffers, one row per edge (edge order)
        across = where.rank[src] != where.rank[dst]
        incoming = across & (where.rank[dst] == self.rank)
        outgoing = across & (where.rank[src] == self.rank)
        in_pos = np.full(len(src), -1, dtype=np.int64)
        in_pos[incoming] = np.arange(int(incoming.sum()))
        out_pos = np.full(len(src), -1, dtype=np.int64)
        out_pos[outgoing] = np.arange(int(outgoing.sum()))
        forward_rounds, backward_rounds = self._rounds(
            where.rank, src, dst, level, row_of, in_pos, out_pos
        )
        # forward: per senders' level, every latent a local receiver gets, summed in the
        # canonical order (sender's group, then edge order), wherever its sender runs
        into = np.flatnonzero(local[dst])
        forward_sums = {
            int(at): self._sum(
                row_of[dst[edges]],
                local[src[edges]],
                row_of[src[edges]],
                in_pos[edges],
                (edges, where.group[src[edges]]),
            )
            for at, (edges,) in _groups(level[src[into]], into)
        }
        # backward: per chunk, every gradient its nodes get from their parents, in edge order
        back = np.flatnonzero(local[src])
        for number, (edges,) in _groups(chunk_of_row[row_of[src[back]]], back):
            chunk = chunks[number]
            chunk.grad_sum = self._sum(
                row_of[src[edges]] - chunk.start,
                local[dst[edges]],
                row_of[dst[edges]],
                out_pos[edges],
                (edges,),
            )
        for rounds in (forward_rounds, backward_rounds):
            for at in rounds:
                levels.setdefault(at, [])
        # records: every latent a local computing node sends to its parents in the plan (lost
        # ones too), every gradient a local node sends back along a delivered edge
        sending = local[arrays.src]
        returning = local[dst]
        forward = _Messages(
            where.names[arrays.src[sending]].tolist(),
            where.names[arrays.dst[sending]].tolist(),
            chunk_of_row[row_of[arrays.src[sending]]],
        )
        backward = _Messages(
            where.names[dst[returning]].tolist(),
            where.names[src[returning]].tolist(),
            chunk_of_row[row_of[dst[returning]]],
        )
        stepping = self._stepping(where.names[local & in_delivered])
        schedule = _Schedule(
            step,
            chunks,
            sorted(levels.items()),
            len(order),
            forward_rounds,
            backward_rounds,
            forward,
            backward,
            stepping,
            forward_sums,
            int(incoming.sum()),
            int(outgoing.sum()),
        )
        self._schedules[id(step)] = schedule
        return schedule

    def _stepping(self, nodes: np.ndarray) -> dict[int, torch.Tensor]:
        """Per stack (by id), the mask of its rows that update: those of ``nodes``."""
        stepping = {
            id(stack): torch.zeros(len(stack.nodes), dtype=torch.bool) for stack in self._all_stacks
        }
        for node in nodes:
            for stack in self.stacks[node].values():
                stepping[id(stack)][stack.row[node]] = True
        return stepping

    def _sum(
        self,
        targets: np.ndarray,
        is_local: np.ndarray,
        local_rows: np.ndarray,
        remote_rows: np.ndarray,
        keys: tuple[np.ndarray, ...],
    ) -> _Sum:
        """A :class:`_Sum` of messages into ``targets``, each target's in the order of ``keys``.

        Message ``i`` is row ``local_rows[i]`` of the local source where
        ``is_local[i]``, else row ``remote_rows[i]`` of the buffer of messages
        from other processes. ``keys``: least significant first (np.lexsort);
        the target comes first, then the keys.
        """
        n_local = int(is_local.sum())
        summand = np.empty(len(targets), dtype=np.int64)
        summand[is_local] = np.arange(n_local)
        summand[~is_local] = n_local + np.arange(len(targets) - n_local)
        order = np.lexsort((*keys, targets))
        sorted_targets = targets[order]
        starts = np.flatnonzero(np.r_[True, np.diff(sorted_targets) != 0])
        position = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        slots = [
            (
                self._tensor(sorted_targets[position == j]),
                self._tensor(summand[order][position == j]),
            )
            for j in range(int(position.max()) + 1 if len(position) else 0)
        ]
        return _Sum(self._tensor(local_rows[is_local]), self._tensor(remote_rows[~is_local]), slots)

    def _rounds(
        self,
        rank: np.ndarray,
        src: np.ndarray,
        dst: np.ndarray,
        level: np.ndarray,
        row_of: np.ndarray,
        in_pos: np.ndarray,
        out_pos: np.ndarray,
    ) -> tuple[dict[int, _Round], dict[int, _Round]]:
        """The bundles of the delivered edges ``src -> dst`` that join two processes.

        Forward, one per (sender's level, pair of processes); backward, one per
        (parent's level, pair). Every process greets the pairs that exchange any.
        """
        forward: dict[int, _Round] = {}
        backward: dict[int, _Round] = {}
        across = rank[src] != rank[dst]
        pairs = np.unique(np.stack([rank[src[across]], rank[dst[across]]], axis=1), axis=0)
        self.transport.connect([(int(a), int(b)) for a, b in pairs])  # same in every process
        width = self.transport.world_size
        outgoing = across & (rank[src] == self.rank)  # this process holds the sender
        incoming = across & (rank[dst] == self.rank)  # … the receiver
        for rounds, edges, rows_of, level_at, peer_at, sends in (
            (forward, outgoing, row_of[src], src, dst, True),  # latents from the senders' rows
            (forward, incoming, in_pos, src, src, False),  # … into the inbound buffer's rows
            (backward, incoming, row_of[dst], dst, src, True),  # gradients from the parents' rows
            (backward, outgoing, out_pos, dst, dst, False),  # … into the outbound buffer's rows
        ):
            keys = level[level_at[edges]] * width + rank[peer_at[edges]]
            for key, (rows,) in _groups(keys, rows_of[edges]):
                round_ = rounds.setdefault(key // width, _Round())
                (round_.sends if sends else round_.receives)[key % width] = self._tensor(rows)
        return forward, backward

    def _tensor(self, values: np.ndarray, dtype: torch.dtype = torch.long) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values), dtype=dtype, device=self.device)

    def _uses(self, nodes: list[str]) -> dict[str, list[_Use]]:
        """Per role, the runs of ``nodes`` (a chunk, in order) that one stack computes."""
        uses: dict[str, list[_Use]] = {}
        for role in ("encoder", "combiner", "gate", "decoder"):
            runs: list[tuple[_Stack, int, list[int]]] = []  # stack, first node, stack rows
            for at, node in enumerate(nodes):
                stack = self.stacks[node].get(role)
                if stack is None:
                    continue
                last = runs[-1] if runs else None
                if last is not None and last[0] is stack and last[1] + len(last[2]) == at:
                    last[2].append(stack.row[node])
                else:
                    runs.append((stack, at, [stack.row[node]]))
            if runs:
                uses[role] = [
                    _Use(stack, a, a + len(rows), self._rows(rows), rows) for stack, a, rows in runs
                ]
        return uses

    def _rows(self, rows: list[int]) -> torch.Tensor | slice:
        """Rows of a stack: a slice (a view, no copy) when they are consecutive."""
        if rows == list(range(rows[0], rows[0] + len(rows))):
            return slice(rows[0], rows[0] + len(rows))
        return self._tensor(np.array(rows))

    def _exchange(
        self, round_: _Round | None, source: torch.Tensor, target: torch.Tensor, what: str
    ) -> None:
        """Send the rows of ``source`` a round names; copy the rows received into ``target``.

        ``target`` is a buffer with one row per edge from another process:
        nothing is summed here (sums happen in canonical order, :class:`_Sum`).
        """
        if round_ is None:
            return
        sends = {peer: source.index_select(0, rows) for peer, rows in round_.sends.items()}
        shapes = {
            peer: ((len(rows), *target.shape[1:]), target.dtype)
            for peer, rows in round_.receives.items()
        }
        received = self.transport.exchange(sends, shapes, what=what)
        for peer, rows in round_.receives.items():
            target.index_copy_(0, rows, received[peer].to(self.device))

    # -- the forward pass -------------------------------------------------------------------

    def _forward(
        self, schedule: _Schedule, index: np.ndarray, split: int, training: bool
    ) -> tuple[
        torch.Tensor | None,
        list[GateOutput | None],
        list[torch.Tensor | None],
        list[list[_Weights]],
    ]:
        """The fusion node's logits; per chunk, in order, its gate output, inbox rows and weights.

        What a chunk receives and its weights are leaves of its own autograd
        graph (as a message is for a node of the per-node executor): no graph
        spans two chunks. The logits are None unless this process computes the
        fusion node.
        """
        batch = len(index)
        phase = "forward" if training else "eval"
        outs: list[GateOutput | None] = [None] * len(schedule.chunks)
        inboxes: list[torch.Tensor | None] = [None] * len(schedule.chunks)
        weights: list[list[_Weights]] = [[] for _ in schedule.chunks]
        logits = None
        inbox = torch.zeros(schedule.rows, batch, self.latent_dim, device=self.device)
        outbox = torch.zeros_like(inbox)  # what each local node sends
        inbound = torch.zeros(schedule.inbound, batch, self.latent_dim, device=self.device)
        rows = torch.as_tensor(index, device=self.device)

        def take(use: _Use, into: list[_Weights]) -> _Weights:
            taken = use.stack.take(use.rows, training)
            into.append(taken)
            return taken

        for level, numbers in schedule.levels:
            for number in numbers:
                chunk = schedule.chunks[number]
                run = partial(take, into=weights[number])
                received = None
                if chunk.receives:
                    received = inbox[chunk.start : chunk.start + len(chunk.nodes)]
                    if "encoder" not in chunk.uses and self.aggregator != "mean":
                        # held as it is, the first layer keeps it for backward: a copy, as
                        # later levels add into the inbox
                        received = received.clone()
                    received.requires_grad_(training)
                inboxes[number] = received
                held = self._hold(chunk, received, split, rows, run)
                if self.aggregator == "mean":
                    held = held / chunk.n_inputs
                if "decoder" in chunk.uses:
                    logits = run(chunk.uses["decoder"][0]).apply("decoder", held)[0]
                    continue
                latent = _by_runs(
                    len(held),
                    chunk.uses.get("combiner", []),
                    partial(self._combine, held=held, run=run),
                    partial(_rows_of, held),
                )
                out = self._gate(chunk, latent, training, run)
                outbox[chunk.start : chunk.start + len(chunk.nodes)] = out.t.detach()
                outs[number] = out
            self._exchange(schedule.forward_rounds.get(level), outbox, inbound, f"{phase} {level}")
            # every latent of this level's senders, local or not, summed in canonical order
            summed = schedule.forward_sums.get(level)
            if summed is not None:
                summed.add_into(inbox, outbox, inbound)
        return logits, outs, inboxes, weights

    @staticmethod
    def _hold(
        chunk: _Chunk,
        received: torch.Tensor | None,
        split: int,
        rows: torch.Tensor,
        run: Callable[[_Use], _Weights],
    ) -> torch.Tensor:
        """What each node of ``chunk`` holds: its own encoding (sensors) plus what it received."""

        def encoded(use: _Use) -> torch.Tensor:
            assert use.stack.views is not None  # an encoder stack holds its sensors' views
            views = use.stack.views[split][use.rows].index_select(1, rows)
            own = run(use).apply("encoder", views)
            return own if received is None else own + _rows_of(received, use.a, use.b)

        def only_received(a: int, b: int) -> torch.Tensor:
            assert received is not None  # every computing node has a view or a child
            return _rows_of(received, a, b)

        return _by_runs(len(chunk.nodes), chunk.uses.get("encoder", []), encoded, only_received)

    @staticmethod
    def _combine(use: _Use, held: torch.Tensor, run: Callable[[_Use], _Weights]) -> torch.Tensor:
        """The combiners of ``use``'s nodes on what they hold."""
        return run(use).apply("combiner", _rows_of(held, use.a, use.b))

    def _gate(
        self, chunk: _Chunk, z: torch.Tensor, training: bool, run: Callable[[_Use], _Weights]
    ) -> GateOutput:
        """The gate of every node of ``chunk`` on its latents ``z`` (``[nodes, batch, dim]``)."""
        if chunk.gate_kind == "none":
            return GateOutput(t=z, rate_bits=z.new_zeros(len(chunk.nodes)))
        (use,) = chunk.uses["gate"]  # a chunk's nodes share one gate kind: one stack
        if use.a or use.b != len(chunk.nodes):
            raise AssertionError("a chunk's gates are one run")
        both = run(use).apply("gate", z)  # mu and the raw log-variance side by side
        if not training:
            mu, logvar = both[..., : z.shape[-1]], bound_logvar(both[..., z.shape[-1] :])
            rate = gaussian_kl_bits(mu, logvar).mean(dim=1)
            return GateOutput(t=mu, rate_bits=rate, mu=mu, sigma=torch.exp(0.5 * logvar))
        eps = self._noise(use.stack, use.stack_rows, tuple(z.shape[1:]), z.dtype).to(z.device)
        # the rate enters training only through the penalty's gradient
        t, mu, _, sigma = GaussianGateKernel.apply(both, eps, chunk.penalty)
        return GateOutput(t=t, rate_bits=z.new_zeros(len(chunk.nodes)), mu=mu, sigma=sigma)

    @staticmethod
    def _noise(
        stack: _Stack, rows: list[int], shape: tuple[int, ...], dtype: torch.dtype
    ) -> torch.Tensor:
        """One draw of standard normals of ``shape`` from each node's own generator, stacked.

        The random-number contract: a node's ``k``-th draw is the ``k``-th
        ``shape`` draw of the generator seeded by ``(seed, node)``, whichever
        executor and however many processes run it.
        """
        key = (tuple(rows), shape, dtype)
        buffer = stack.noise.get(key)
        if buffer is None:  # drawn into again each step: the last step's backward is done
            eps = torch.empty(
                (len(rows), *shape), dtype=dtype, device=stack.generators[rows[0]].device
            )
            buffer = stack.noise[key] = (
                eps,
                [(eps[n], stack.generators[row]) for n, row in enumerate(rows)],
            )
        for view, generator in buffer[1]:  # what torch.randn(shape, out=view) draws
            view.normal_(generator=generator)
        return buffer[0]

    def _record(self, messages: _Messages, row_bytes: np.ndarray, phase: str, payload: str) -> None:
        """Record ``messages``, each the size of a row of the chunk output it carries."""
        if not len(messages.src):
            return
        self.transport.record_many(
            row_bytes[messages.chunk],
            src=messages.src,
            dst=messages.dst,
            phase=phase,
            payload=payload,
        )

    @staticmethod
    def _row_bytes(outs: list[GateOutput | None]) -> np.ndarray:
        """Per chunk, the bytes of one row of the latent it sends (``numel * element_size``)."""
        return np.array(
            [0 if out is None else out.t[0].numel() * out.t.element_size() for out in outs],
            dtype=np.int64,
        )

    # -- training ---------------------------------------------------------------------------

    def train_step(self, index: np.ndarray, step: StepPlan) -> float | None:
        """One synchronous step on the training samples ``index``, on ``step``'s plan."""
        if step.plan is not self.plan:
            raise ValueError("the step's plan is not the executor's: call set_plan first")
        schedule = self._schedule(step)
        logits, outs, inboxes, weights = self._forward(schedule, index, 0, training=True)
        self._record(schedule.forward, self._row_bytes(outs), "forward", "latent")
        loss = self.task.loss(logits, self.labels[0][index]) if logits is not None else None
        sent_back = self._backward(schedule, len(index), loss, outs, inboxes, weights)
        # every gradient message is one row of `sent_back`
        row = sent_back[0].numel() * sent_back.element_size() if len(sent_back) else 0
        self._record(
            schedule.backward,
            np.full(len(schedule.chunks), row, dtype=np.int64),
            "backward",
            "grad",
        )
        for stack in self._all_stacks:
            mask = schedule.stepping[id(stack)]
            if bool(mask.any()):
                stack.optimizer.step(mask)
            stack.zero_grad()
        self.transport.flush()
        return float(loss.detach()) if loss is not None else None

    def _backward(
        self,
        schedule: _Schedule,
        batch: int,
        loss: torch.Tensor | None,
        outs: list[GateOutput | None],
        inboxes: list[torch.Tensor | None],
        weights: list[list[_Weights]],
    ) -> torch.Tensor:
        """Levels in reverse order, each backpropagating what its parents sent back.

        A chunk's objective is the per-node executor's, for all its nodes at
        once: ``<T, sum of its parents' gradients> + beta * rate`` (its rate only
        where its messages arrive; the Gaussian gate adds the rate's gradient
        itself, :class:`GaussianGateKernel`), or the task's loss at the fusion node. The
        gradient with respect to its inbox rows is what it sends its children.
        The chunks of one level depend on no other and share one backward call.
        Returns, per inbox row, the gradient it sent back.
        """
        sent_back = torch.zeros(schedule.rows, batch, self.latent_dim, device=self.device)
        arrived = torch.zeros(schedule.outbound, batch, self.latent_dim, device=self.device)
        for level, numbers in reversed(schedule.levels):
            outputs: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            for number in numbers:
                chunk, out = schedule.chunks[number], outs[number]
                if out is None:  # the fusion node
                    if loss is not None:
                        outputs.append(loss)
                        grads.append(torch.ones_like(loss))
                    continue
                grad = torch.zeros_like(out.t)
                if chunk.grad_sum is not None:  # its parents' gradients, in canonical order
                    chunk.grad_sum.add_into(grad, sent_back, arrived)
                outputs.append(out.t)
                grads.append(grad)
            if outputs:
                torch.autograd.backward(outputs, grads)
            for number in numbers:
                chunk, received = schedule.chunks[number], inboxes[number]
                for taken in weights[number]:
                    taken.give_back()
                if received is not None and received.grad is not None:
                    sent_back[chunk.start : chunk.start + len(chunk.nodes)] = received.grad
            self._exchange(
                schedule.backward_rounds.get(level), sent_back, arrived, f"backward {level}"
            )
        return sent_back

    # -- evaluation -------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate_batch(self, index: np.ndarray) -> EvalSums:
        """Forward the test samples ``index``: the task's sums at the fusion, rates at senders."""
        batch = len(index)
        result = EvalSums(samples=batch)
        keep = self._bracket_keep[index]
        schedule = self._schedule(self._eval_step)
        logits, outs, _, _ = self._forward(schedule, index, 1, training=False)
        fusion = self.plan.fusion
        if logits is None and fusion in self.stacks:  # it received nothing: decodes zeros
            stack = self.stacks[fusion]["decoder"]
            first = stack.parts["decoder"][0]
            assert first is not None  # a decoder starts with a Linear layer
            width = first[0].shape[2]
            zeros = torch.zeros(1, batch, width, device=self.device)
            logits = stack.take(self._tensor(np.array([stack.row[fusion]])), False).apply(
                "decoder", zeros
            )[0]
        if logits is not None:
            result.metric_sums = self.task.metric_sums(logits, self.labels[1][index])
        for chunk, out in zip(schedule.chunks, outs, strict=True):
            if out is None:
                continue
            rates = out.rate_bits.tolist()
            for row, node in enumerate(chunk.nodes):
                result.rate_sums[node] = rates[row] * batch
                node_out = GateOutput(
                    t=out.t[row],
                    rate_bits=out.rate_bits[row],
                    mu=None if out.mu is None else out.mu[row],
                    sigma=None if out.sigma is None else out.sigma[row],
                )
                result.rate_stats[node] = RateStats(
                    self.specs[node].gate_kind, self.message_bits_per_sample(node)
                ).update(node_out, keep)
        self._record(schedule.forward, self._row_bytes(outs), "eval", "latent")
        self.transport.flush()
        return result

    def message_bits_per_sample(self, node: str) -> float:
        """Bits per sample of ``node``'s forward message: no reported rate of it exceeds this."""
        return message_bits_per_sample(self.wire_forward, self.specs[node].latent_dim, None)

    def node_parameters(self, node: str) -> dict[str, torch.Tensor]:
        """``node``'s parameters, named as in its
        :class:`~innet.families.inl.modules.NodeModule`."""
        return {
            name: value
            for stack in self.stacks[node].values()
            for name, value in stack.parameters_of(node).items()
        }

    def flops(self) -> dict[str, int]:
        """Forward FLOPs per sample of each module this process runs."""
        return dict(self._flops)

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Every stack's parameters, optimiser state and generators (live tensors).

        Nothing else carries over between steps: schedules are derived from the plans.
        """
        return {"stacks": [stack.state_dict() for stack in self._all_stacks]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``state`` (same variant, seed and placement)."""
        if len(state["stacks"]) != len(self._all_stacks):
            raise ValueError("the saved state is of other stacks than this process runs")
        for stack, saved in zip(self._all_stacks, state["stacks"], strict=True):
            stack.load_state_dict(saved)
