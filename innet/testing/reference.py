"""The node modules of a plan trained as one model: the reference message passing must match.

Message passing (:mod:`innet.families.inl.executors`) gives every node its own autograd
graph and sends detached tensors. Its gradients must be exactly those of the
same modules wired together as one model, where autograd flows through the
plan's edges directly. :func:`monolithic_objective` builds that one model's
objective (task loss plus ``beta`` times the rates of the sending nodes) from
the nodes' own modules, so that tests can compare gradients and benchmarks
can compare speed. :class:`VectorisedReference` is the same model with the
modules of one shape stacked, computed level by level in bulk: the yardstick
for the batched executor on networks of thousands of nodes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from innet.core.plans import Plan
from innet.families.inl.gates.gaussian import (
    GaussianGate,
    bound_logvar,
    gaussian_kl_bits,
    gaussian_message,
)
from innet.families.inl.modules import ModuleSpec, NodeModule
from innet.families.inl.tasks import Classification, Task

__all__ = ["monolithic_objective", "VectorisedReference"]


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


class VectorisedReference:
    """The same model as one autograd graph, computed in bulk: a yardstick for benchmarks.

    Every node of ``plan`` gets the module :class:`~innet.families.inl.modules.NodeModule`
    would build (same seed, same initial weights, same gate generator), but
    the modules of one shape (fusion or not, with or without a view and a
    combiner) live in one stack: each Linear layer of all of them is one
    parameter ``[nodes, out, in]``, rows ordered by *level* (one more than a
    node's highest child's; sensors without children: 0). A step splits each
    stacked parameter once into its levels' rows (views, no copies), runs the
    levels in order with one batched matmul per (level, shape) and layer,
    sums what each level receives with one ``index_add`` over the plan's
    edges, and differentiates the whole objective (the task's loss plus
    ``beta`` times every sender's rate, as :func:`monolithic_objective`) with
    one ``backward`` before one ``torch.optim.Adam`` step over the stacked
    parameters. Nothing is recorded, no message is formed, and the rates are
    computed only when ``beta > 0``: this is about the least a training step
    of the model costs, which the executors are measured against
    (``benchmarks/bench_reference.py``).

    A Gaussian gate's noise comes from its node's own generator, one draw per
    step (the executors' contract), so the values equal those of the
    executors and of :func:`monolithic_objective` on the same batches. Gates
    ``none`` and ``gaussian``, aggregators ``sum`` and ``mean``; the plan as
    it is (no failed links).
    """

    def __init__(
        self,
        *,
        plan: Plan,
        specs: Mapping[str, ModuleSpec],
        seed: int,
        views: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
        labels: torch.Tensor,
        lr: float,
        beta: float = 0.0,
        task: Task | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        """``views``: each sensor's (train, test) views; ``labels``: the training labels."""
        order = plan.forward_order()
        _check_supported(plan, specs)
        self.device = torch.device(device)
        self.beta = beta
        self.task = task or Classification()
        self.labels = labels.to(self.device)
        level: dict[str, int] = {}
        for node in order:  # children first
            level[node] = 1 + max((level[c] for c in plan.children(node)), default=-1)
        self.levels = level[plan.fusion] + 1
        modules = {node: NodeModule(specs[node], seed) for node in order}
        by_shape: dict[tuple, list[str]] = {}
        for node in sorted(order, key=level.__getitem__):  # stable: forward order in a level
            by_shape.setdefault(_shape(modules[node]), []).append(node)
        self.stacks = [
            _LevelStack(
                nodes, [modules[n] for n in nodes], [level[n] for n in nodes], views, self.device
            )
            for nodes in by_shape.values()
        ]
        self.where = {
            node: (stack, row) for stack in self.stacks for row, node in enumerate(stack.nodes)
        }
        inbox_row = self._place_chunks()
        self._index_sends(plan, level, inbox_row)
        self.optimizer = torch.optim.Adam(
            [p for stack in self.stacks for p in stack.parameters], lr=lr
        )

    def _place_chunks(self) -> dict[str, int]:
        """Per level, its chunks; returns each node's row in its level's inbox.

        A chunk is (stack, the level's position among the stack's levels, first
        row in the level's inbox); the inbox has a row per node of the level.
        """
        self._chunks: list[list[tuple[_LevelStack, int, int]]] = [[] for _ in range(self.levels)]
        self._sizes = [0] * self.levels
        inbox_row: dict[str, int] = {}
        for stack in self.stacks:
            for position, at in enumerate(stack.levels):
                self._chunks[at].append((stack, position, self._sizes[at]))
                for node in stack.chunk_nodes(position):
                    inbox_row[node] = self._sizes[at]
                    self._sizes[at] += 1
        return inbox_row

    def _index_sends(self, plan: Plan, level: dict[str, int], inbox_row: dict[str, int]) -> None:
        """What each chunk sends, and per level the inbox rows it arrives in.

        A chunk sends its rows of each message, sorted by the receiver's level,
        and how many go to each level; per level, the inbox rows they are added
        into, in that order.
        """
        self._sends: dict[tuple[int, int], tuple[torch.Tensor, list[int], list[int]]] = {}
        receivers: list[list[int]] = [[] for _ in range(self.levels)]
        for chunks in self._chunks:
            for stack, position, _ in chunks:
                edges = sorted(
                    (
                        (level[parent], row, inbox_row[parent])
                        for row, node in enumerate(stack.chunk_nodes(position))
                        for parent in plan.parents(node)
                    ),
                    key=lambda edge: edge[0],
                )
                if not edges:  # the fusion node
                    continue
                targets = sorted({edge[0] for edge in edges})
                for edge in edges:
                    receivers[edge[0]].append(edge[2])
                self._sends[(id(stack), position)] = (
                    torch.tensor([edge[1] for edge in edges], device=self.device),
                    targets,
                    [sum(1 for edge in edges if edge[0] == target) for target in targets],
                )
        self._receivers = [torch.tensor(rows, device=self.device) for rows in receivers]

    def objective(self, index: np.ndarray) -> torch.Tensor:
        """The training objective on the training samples ``index``, as one autograd graph."""
        return self._losses(index)[0]

    def _losses(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The objective and the task's loss in it."""
        rows = torch.as_tensor(index, device=self.device)
        weights = {id(stack): stack.split() for stack in self.stacks}
        own_views = {id(stack): stack.views(rows) for stack in self.stacks}
        arriving: list[list[torch.Tensor]] = [[] for _ in range(self.levels)]
        rates: list[torch.Tensor] = []
        logits = None
        for at, chunks in enumerate(self._chunks):
            inbox = self._inbox(at, arriving[at], len(rows))
            for stack, position, start in chunks:
                layers = weights[id(stack)]
                held = _held(stack, position, layers, own_views[id(stack)], inbox, start)
                if stack.is_fusion:
                    logits = _apply(layers, "decoder", position, held)[0]
                    continue
                t = _apply(layers, "combiner", position, held) if stack.receives else held
                if stack.gaussian:
                    t = self._gaussian_gate(stack, position, layers, t, rates)
                senders, targets, counts = self._sends[(id(stack), position)]
                pieces = t.index_select(0, senders).split(counts)
                for target, piece in zip(targets, pieces, strict=True):
                    arriving[target].append(piece)
        assert logits is not None
        loss = self.task.loss(logits, self.labels[rows])
        if rates:
            return loss + self.beta * torch.cat(rates).sum(), loss
        return loss, loss

    def _inbox(self, at: int, arriving: list[torch.Tensor], batch: int) -> torch.Tensor | None:
        """What level ``at``'s nodes receive, summed per node (None: nothing arrives there)."""
        if not arriving:
            return None
        return torch.zeros(
            self._sizes[at], batch, self.stacks[0].latent_dim, device=self.device
        ).index_add(0, self._receivers[at], torch.cat(arriving))

    def _gaussian_gate(
        self,
        stack: _LevelStack,
        position: int,
        layers: dict,
        z: torch.Tensor,
        rates: list[torch.Tensor],
    ) -> torch.Tensor:
        """The level's Gaussian gates on ``z`` (their rates added to ``rates`` when ``beta``)."""
        mu = _apply(layers, "mu", position, z)
        logvar = bound_logvar(_apply(layers, "logvar", position, z))
        if self.beta:
            rates.append(gaussian_kl_bits(mu, logvar).mean(dim=1))
        t, _ = gaussian_message(mu, logvar, stack.noise(position, mu).to(mu.device))
        return t

    def train_step(self, index: np.ndarray) -> float:
        """One step on the samples ``index``: one backward, one Adam step; the task's loss."""
        self.optimizer.zero_grad()
        objective, loss = self._losses(index)
        objective.backward()
        self.optimizer.step()
        return float(loss.detach())

    def node_parameters(self, node: str) -> dict[str, torch.Tensor]:
        """``node``'s parameters, named as in its
        :class:`~innet.families.inl.modules.NodeModule`."""
        stack, row = self.where[node]
        return {name: value[row] for name, value in stack.named().items()}

    def node_gradients(self, node: str) -> dict[str, torch.Tensor]:
        """The gradients of ``node``'s parameters from the last backward, named likewise."""
        stack, row = self.where[node]
        return {name: _grad(value)[row] for name, value in stack.named().items()}


def _check_supported(plan: Plan, specs: Mapping[str, ModuleSpec]) -> None:
    """ValueError unless every node's gate and aggregator is one the reference runs."""
    for node in plan.forward_order():
        spec = specs[node]
        if not spec.is_fusion and spec.gate_kind not in ("none", "gaussian"):
            raise ValueError(f"the vectorised reference cannot run gate {spec.gate_kind!r}")
        if spec.aggregator not in ("sum", "mean"):
            raise ValueError(f"the vectorised reference cannot run aggregator {spec.aggregator!r}")
    if not plan.children(plan.fusion):
        raise ValueError("the plan's fusion node receives nothing")


def _held(
    stack: _LevelStack,
    position: int,
    layers: dict,
    views: tuple[torch.Tensor, ...] | None,
    inbox: torch.Tensor | None,
    start: int,
) -> torch.Tensor:
    """What the level's nodes hold: their encoded views plus what they receive (or the mean)."""
    held = None
    if stack.has_view:
        assert views is not None
        held = _apply(layers, "encoder", position, views[position])
    if stack.receives:
        assert inbox is not None
        received = inbox.narrow(0, start, stack.sizes[position])
        held = received if held is None else held + received
    assert held is not None  # every node has a view or a child
    if stack.mean:
        held = held / stack.n_inputs[position]
    return held


def _grad(value: torch.Tensor) -> torch.Tensor:
    assert value.grad is not None, "no backward yet"
    return value.grad


def _gate_generator(module: NodeModule) -> torch.Generator:
    """The generator of a node's Gaussian gate."""
    assert isinstance(module.gate, GaussianGate)
    return module.gate.generator


def _shape(module: NodeModule) -> tuple[bool, int | None, bool, str]:
    spec = module.spec
    gate = "" if spec.is_fusion else spec.gate_kind
    return spec.is_fusion, spec.view_dim, module.combiner is not None, gate


_PARTS = {
    "encoder": "encoder",
    "combiner": "combiner",
    "decoder": "decoder",
    "mu": "gate.mu",
    "logvar": "gate.logvar",
}


class _LevelStack:
    """The nodes of one shape, rows ordered by level: one parameter per layer of all of them.

    The nodes of one level are consecutive rows: ``sizes[p]`` of them from
    ``starts[p]`` for the ``p``-th of the stack's ``levels``.
    """

    def __init__(
        self,
        nodes: list[str],
        modules: list[NodeModule],
        levels: list[int],
        views: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
        device: torch.device,
    ) -> None:
        first = modules[0]
        self.nodes = nodes
        self.is_fusion = first.spec.is_fusion
        self.has_view = first.encoder is not None
        self.receives = first.spec.n_received > 0
        self.mean = first.spec.aggregator == "mean"
        self.gaussian = not self.is_fusion and first.spec.gate_kind == "gaussian"
        self.latent_dim = first.spec.latent_dim
        self.levels = sorted(set(levels))
        self.sizes = [levels.count(level) for level in self.levels]
        self.starts = [sum(self.sizes[:p]) for p in range(len(self.sizes))]
        inputs = torch.tensor([m.spec.n_inputs for m in modules], dtype=torch.float32)
        self.n_inputs = inputs.to(device).view(-1, 1, 1).split(self.sizes)
        self.generators = [_gate_generator(m) for m in modules] if self.gaussian else []
        # part -> per layer: (weight, bias) positions in self.parameters, or None for a ReLU
        self.layout: dict[str, list[tuple[int, int] | None]] = {}
        self.names: list[str] = []
        self.parameters: list[nn.Parameter] = []
        for part, path in _PARTS.items():
            if getattr(first, path.split(".")[0]) is None or (
                part in ("mu", "logvar") and not self.gaussian
            ):
                continue
            self._stack_part(part, path, modules, device)
        self._views = (
            torch.stack([views[node][0] for node in nodes]).to(device) if self.has_view else None
        )

    def _stack_part(
        self, part: str, path: str, modules: list[NodeModule], device: torch.device
    ) -> None:
        """Stack the nodes' layers of ``part`` (at ``path`` in a module) into parameters."""
        layers = [_linears(m.get_submodule(path)) for m in modules]
        self.layout[part] = []
        for position, layer in enumerate(layers[0]):
            if layer is None:
                self.layout[part].append(None)
                continue
            name = path if len(layers[0]) == 1 else f"{path}.{position}"
            for field in ("weight", "bias"):
                value = torch.stack([getattr(m[position], field).detach() for m in layers])
                self.parameters.append(nn.Parameter(value.to(device)))
                self.names.append(f"{name}.{field}")
            count = len(self.parameters)
            self.layout[part].append((count - 2, count - 1))

    def chunk_nodes(self, position: int) -> list[str]:
        """The nodes of the stack's ``position``-th level."""
        return self.nodes[self.starts[position] : self.starts[position] + self.sizes[position]]

    def split(self) -> dict[str, list[list[tuple[torch.Tensor, torch.Tensor]] | None]]:
        """Per part, per layer, per level: the level's rows of the weight and bias (views)."""
        pieces = [p.split(self.sizes) for p in self.parameters]
        return {
            part: [
                None
                if layer is None
                else list(zip(pieces[layer[0]], pieces[layer[1]], strict=True))
                for layer in layers
            ]
            for part, layers in self.layout.items()
        }

    def views(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
        """Per level, its nodes' views of the samples ``rows`` (``[nodes, batch, features]``)."""
        if self._views is None:
            return None
        return self._views.index_select(1, rows).split(self.sizes)

    def noise(self, position: int, like: torch.Tensor) -> torch.Tensor:
        """One draw shaped like a row of ``like`` from each of the level's nodes' generators."""
        start = self.starts[position]
        eps = torch.empty(like.shape, dtype=like.dtype)
        for row, generator in enumerate(self.generators[start : start + self.sizes[position]]):
            torch.randn(like.shape[1:], generator=generator, dtype=like.dtype, out=eps[row])
        return eps

    def named(self) -> dict[str, nn.Parameter]:
        return dict(zip(self.names, self.parameters, strict=True))


def _linears(module: nn.Module) -> list[nn.Linear | None]:
    """A part's layers in order: its Linear layers, None for each ReLU."""
    layers = list(module) if isinstance(module, nn.Sequential) else [module]
    for layer in layers:
        if not isinstance(layer, (nn.Linear, nn.ReLU)):
            raise TypeError(f"cannot stack a {type(layer).__name__} layer")
    return [layer if isinstance(layer, nn.Linear) else None for layer in layers]


def _apply(layers: dict, part: str, position: int, x: torch.Tensor) -> torch.Tensor:
    """Each node's ``part`` (the weights of its level ``position``) on its rows of ``x``."""
    for layer in layers[part]:
        if layer is None:
            x = torch.relu(x)
            continue
        weight, bias = layer[position]
        x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
    return x
