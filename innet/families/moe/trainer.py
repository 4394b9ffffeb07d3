"""Training a Mixture-of-Experts layer stack whose experts live on the network's nodes.

**Where things live.** Token *sources* are the topology's sensors (or
``moe.sources``); each holds its own embedding (features → ``hidden``), one
router per layer and a classifier head, and an Adam optimiser. The experts
(``moe.experts`` per layer, two-layer MLPs with a residual connection) live on
the other nodes (:mod:`.placement`). Each training step takes
``moe.batch_size`` samples, split among the sources by the workload
(:mod:`.workloads`).

**What crosses the wire** (phases registered here, all training traffic,
routed over the capacity-aware shortest path by the network model):

- ``moe_dispatch`` (source → expert node): the tokens a source routes to an
  expert, float32 ``[tokens, hidden]``; ``moe_combine`` (back): the expert's
  outputs for them;
- ``moe_combine_grad`` (source → expert node): the gradient of the loss with
  respect to those outputs; ``moe_dispatch_grad`` (back): the gradient with
  respect to the tokens;
- ``moe_migrate`` (old node → new node): an expert's parameters when CARL
  re-places it; it leaves when its step starts and shares the links with that
  step's tokens.

Sizes depend on the routing, so messages are received with ``ANY`` rows.
Each training step is ``2 * layers`` network steps, one barrier each: the
forward exchange of each layer (dispatch, then combine once the expert has
all its tokens), then the backward exchange of each layer from the last.

**Routing** (:mod:`.routers`, :mod:`.balance`): the router's logits plus the
workload's log-popularity bias; one softmax gives the probabilities, the
selection is the router kind's (the trainer asks the variant's router, built
from the registry, and never looks at the kind), the gates are the
probabilities of the chosen experts. Balance state (biases) is global per
layer: the sources' routers are assumed to share it (its few bytes are not
sent).

**One step** (:meth:`MoeTrainer._step`), layer by layer: send the experts
re-placed after the last step, the logits, the selection, the auxiliary loss
(:meth:`~MoeTrainer._aux_loss`), then the forward exchange
(:meth:`~MoeTrainer._forward`: dispatch, each expert on all its tokens,
combine, the gated residual mix); then the loss and, from the last layer,
each backward exchange (:meth:`~MoeTrainer._backward`); then the optimiser.

**Evaluation** after each epoch runs every source's model on the whole test
split in one process (not sent over the network); the accuracy is the mean
over sources. ``purity``: for the last layer, the share of test tokens whose
expert's most frequent class is their class.

**Checkpoints.** After each epoch the checkpoints ask for, every process
saves its part (:func:`_state`): every node's weights and the optimiser's
state (each process computes every node), the router's placements and
balance state, the experts still to migrate, the data order's generator, the
rows so far and the messages its own nodes sent. A run resumed from it
(:func:`_restore`) goes on from the next epoch with the same numbers; the
epochs already done are not reported to ``on_epoch`` again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from innet.core.config import LoadedScenario
from innet.core.events import Timeline, build_timeline
from innet.core.group import Group
from innet.core.netsim import ComputeTimes, Message, NetworkModel
from innet.core.records import ExchangeLog
from innet.core.seeding import seeded_torch
from innet.core.topology.model import Topology
from innet.core.training import Checkpoints, Trainer, TrainResult
from innet.core.transport import ANY, RecordingTransport
from innet.core.yamlio import FieldError
from innet.families.moe.balance import BalanceController
from innet.families.moe.config import MoeConfig, MoeScenario, ResolvedMoeVariant
from innet.families.moe.data import load_moe_dataset
from innet.families.moe.metrics import group_loads, max_vio, skew
from innet.families.moe.phases import PHASES
from innet.families.moe.placement import initial_placement, node_groups
from innet.families.moe.routers import ROUTERS, Router
from innet.families.moe.routers.base import Migration, load, switch_loss
from innet.families.moe.workloads import expert_bias, source_shares, split_counts

__all__ = ["MoeTrainer", "balance_trace"]

Pair = tuple[int, int]
"""A source and an expert: ``(source index, expert index)``."""


class _Expert(nn.Module):
    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, width), nn.ReLU(), nn.Linear(width, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Source(nn.Module):
    def __init__(self, features: int, hidden: int, experts: int, layers: int, classes: int):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(features, hidden), nn.ReLU())
        self.routers = nn.ModuleList(nn.Linear(hidden, experts, bias=False) for _ in range(layers))
        self.head = nn.Linear(hidden, classes)

    def router(self, layer: int) -> nn.Linear:
        """The linear router of ``layer``."""
        return cast(nn.Linear, self.routers[layer])


@dataclass
class _Run:
    """One variant and seed in training: its router, networks and what the steps pass on."""

    variant: str
    seed: int
    transport: RecordingTransport
    router: Router
    nets: list[_Source]
    experts: list[list[_Expert]]
    optimiser: torch.optim.Optimizer
    x_train: torch.Tensor
    y_train: torch.Tensor
    migrations: list[Migration] = field(default_factory=list)  # sent at the next step
    step_rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Forward:
    """One layer's forward exchange, kept for its backward exchange."""

    sent: dict[Pair, torch.Tensor]  # the tokens each source sent each expert (autograd roots)
    received: dict[Pair, torch.Tensor]  # the outputs each source received (leaves)
    outputs: dict[int, tuple[torch.Tensor, torch.Tensor, list[Pair]]]  # expert: in, out, pairs


class MoeTrainer(Trainer):
    """The ``moe`` family's trainer (see the module docstring)."""

    def __init__(self, loaded: LoadedScenario, topology: Topology) -> None:
        self.scenario: MoeScenario = loaded.scenario  # type: ignore[assignment]
        self.variants: dict[str, ResolvedMoeVariant] = {v.name: v for v in loaded.variants}
        self.topology = topology
        self.sources, self.expert_nodes = _roles(loaded, self.scenario.moe, topology)
        self.groups = node_groups(topology)
        self.data: dict[int, Any] = {}
        n_train = len(self._dataset(self.scenario.seed_list[0]).y_train)
        self.batches = math.ceil(n_train / self.scenario.moe.batch_size)
        self.timelines = {name: self._timeline(name) for name in self.variants}
        balanced = [
            name
            for name, v in self.variants.items()
            if ROUTERS.get(v.router.kind).balance_controlled
        ]
        self.balance_variant = balanced[0] if balanced else None  # its run has the balance check

    def _timeline(self, name: str) -> Timeline:
        moe, variant = self.scenario.moe, self.variants[name]
        return build_timeline(
            self.topology,
            variant.routing,
            32.0 * moe.batch_size * moe.hidden,
            self.scenario.events,
            steps_per_epoch=self.steps_per_epoch(name),
            epochs=moe.epochs,
            hop_cost_s=variant.hop_cost_s,
        )

    def _dataset(self, seed: int) -> Any:
        moe = self.scenario.moe
        if seed not in self.data:
            self.data[seed] = load_moe_dataset(
                moe.dataset,
                seed=seed,
                n_samples=moe.n_samples,
                n_features=moe.n_features,
                n_classes=moe.n_classes,
                tight_features=moe.tight_features,
            )
        return self.data[seed]

    def steps_per_epoch(self, variant: str) -> int:
        return self.batches * 2 * self.scenario.moe.layers

    def epochs(self, variant: str) -> int:
        return self.scenario.moe.epochs

    def step_compute(self, messages: tuple[Message, ...]) -> ComputeTimes | None:
        """Each expert node's compute in one step, from the tokens its messages bring.

        An expert's forward pass costs ``4 * hidden * expert_hidden`` FLOPs per
        token (two linear layers, ``2 * in * out`` each), its backward pass twice
        that; a node computes at its ``compute`` FLOP/s (none: instantly). The
        network model (:mod:`innet.core.netsim`) then holds a node's ``combine``
        messages until the forward pass on its ``dispatch`` tokens is done, and
        its ``dispatch_grad`` messages until the backward pass on its
        ``combine_grad`` gradients is.
        """
        network, moe = self.scenario.network, self.scenario.moe
        if not network.compute:
            return None
        per_token, token_bytes = 4 * moe.hidden * moe.expert_hidden, 4 * moe.hidden
        seconds: dict[str, tuple[float, float]] = {}
        for m in messages:
            backward = m.phase == PHASES["combine_grad"]
            rate = self.topology.graph.nodes[m.dst].get("compute")
            if not rate or not (backward or m.phase == PHASES["dispatch"]):
                continue
            work = (m.nbytes - network.header_bytes) / token_bytes * per_token / float(rate)
            forward_s, backward_s = seconds.get(m.dst, (0.0, 0.0))
            if backward:
                seconds[m.dst] = (forward_s, backward_s + 2 * work)
            else:
                seconds[m.dst] = (forward_s + work, backward_s)
        return seconds or None

    def train(
        self,
        variant: str,
        seed: int,
        transport: RecordingTransport,
        group: Group,
        device: torch.device | str,
        on_epoch: Callable[[int], None],
        checkpoints: Checkpoints | None = None,
    ) -> TrainResult | None:
        data = self._dataset(seed)
        run = self._start(variant, seed, transport, data)
        placement = list(run.router.placements[0])
        rng = np.random.default_rng(seed)
        metrics: list[dict[str, Any]] = []
        saved = checkpoints.resume() if checkpoints is not None else None
        if saved is not None:
            metrics = _restore(run, rng, saved)
        for epoch in range(len(metrics), self.scenario.moe.epochs):
            order = torch.as_tensor(rng.permutation(len(run.y_train)))
            aux_total = self._epoch(run, order, epoch)
            metrics.append(self._epoch_metrics(run, data, epoch, aux_total))
            if checkpoints is not None and checkpoints.due(epoch):
                checkpoints.save(epoch, _state(run, rng, metrics, epoch))
            on_epoch(epoch)
        tables = {"moe_steps": run.step_rows, "moe_nodes": self._node_rows(run, placement)}
        logs = group.gather(run.transport.log)
        if logs is None:
            return None
        if variant == self.balance_variant:
            tables["moe_balance"] = [
                {"variant": variant, "seed": seed, **row}
                for row in balance_trace(self.scenario.moe.balance_check, seed)
            ]
        return TrainResult(metrics=metrics, log=ExchangeLog.merge(logs), tables=tables)

    def _start(self, variant: str, seed: int, transport: RecordingTransport, data: Any) -> _Run:
        """The router and the freshly initialised networks of a run."""
        moe = self.scenario.moe
        E, L, H = moe.experts, moe.layers, moe.hidden
        config = self.variants[variant].router
        model = NetworkModel(self.topology)
        placement = initial_placement(E, self.expert_nodes)
        router = ROUTERS.get(config.kind)(
            config, E, moe.top_k, L, self.sources, placement, self.groups, model, 4 * H
        )
        with seeded_torch(seed):
            nets = [_Source(data.n_features, H, E, L, data.n_classes) for _ in self.sources]
            experts = [[_Expert(H, moe.expert_hidden) for _ in range(E)] for _ in range(L)]
        params = [p for net in nets for p in net.parameters()]
        params += [p for layer in experts for ex in layer for p in ex.parameters()]
        return _Run(
            variant,
            seed,
            transport,
            router,
            nets,
            experts,
            optimiser=torch.optim.Adam(params, lr=moe.lr),
            x_train=torch.as_tensor(data.x_train),
            y_train=torch.as_tensor(data.y_train),
        )

    def _epoch(self, run: _Run, order: torch.Tensor, epoch: int) -> float:
        """Train one epoch (the batches in ``order``); the sum of the steps' auxiliary losses."""
        moe = self.scenario.moe
        spe = self.steps_per_epoch(run.variant)
        aux_total = 0.0
        for batch in range(self.batches):
            step = epoch * self.batches + batch
            rows = order[batch * moe.batch_size : (batch + 1) * moe.batch_size]
            counts = split_counts(
                len(rows),
                source_shares(
                    moe.workload.kind,
                    step,
                    len(self.sources),
                    hot=moe.workload.hot,
                    period=moe.workload.period,
                ),
            )
            parts = torch.split(rows, counts.tolist())
            xs, ys = [run.x_train[p] for p in parts], [run.y_train[p] for p in parts]
            aux, layer_rows = self._step(
                run, xs, ys, epoch, epoch * spe + batch * 2 * moe.layers, step
            )
            aux_total += aux
            run.step_rows += [
                {"variant": run.variant, "seed": run.seed, "epoch": epoch, "step": step, **row}
                for row in layer_rows
            ]
            run.migrations = run.router.migrations(step)
        return aux_total

    def _epoch_metrics(self, run: _Run, data: Any, epoch: int, aux_total: float) -> dict[str, Any]:
        """The metrics row of an epoch: test accuracy, loss, purity, auxiliary loss, skew."""
        accuracy, loss, purity = self._evaluate(run.router, run.nets, run.experts, data)
        last = [r for r in run.step_rows if r["step"] == (epoch + 1) * self.batches - 1]
        return {
            "epoch": epoch,
            "accuracy": accuracy,
            "loss": loss,
            "purity": purity,
            "aux_loss": aux_total / self.batches,
            "max_vio_expert": max(r["expert_max_vio"] for r in last),
            "max_vio_group": max(r["group_max_vio"] for r in last),
        }

    def _node_rows(self, run: _Run, placement: list[str]) -> list[dict[str, Any]]:
        """Every node's group and role (``source``, ``experts`` where the run started with
        an expert, ``relay``)."""
        rows = []
        for node in self.topology.graph.nodes:
            role = "source" if node in self.sources else "experts" if node in placement else "relay"
            rows.append(
                {
                    "variant": run.variant,
                    "seed": run.seed,
                    "node": node,
                    "group": self.groups[node],
                    "role": role,
                }
            )
        return rows

    # -- one training step ---------------------------------------------------------------

    def _logits(
        self,
        router: Router,
        nets: list[_Source],
        layer: int,
        tokens: list[torch.Tensor],
        previous: list[torch.Tensor] | None,
        step: int,
    ) -> list[torch.Tensor]:
        """Every source's router logits for ``layer`` (with the workload's bias)."""
        moe = self.scenario.moe
        workload = moe.workload
        popularity = expert_bias(
            workload.kind, step, moe.experts, zipf=workload.zipf, period=workload.period
        )
        bias = torch.as_tensor(popularity, dtype=torch.float32)
        routers = [net.router(layer) for net in nets]
        return [x + bias for x in router.logits(layer, routers, tokens, previous)]

    def _step(
        self,
        run: _Run,
        xs: list[torch.Tensor],
        ys: list[torch.Tensor],
        epoch: int,
        log_step: int,
        step: int,
    ) -> tuple[float, list[dict[str, Any]]]:
        """One training step: each layer's forward exchange, the loss, each layer's backward
        exchange from the last, the optimiser's step. The auxiliary loss and the step's rows."""
        L, log, router = self.scenario.moe.layers, run.transport.log, run.router
        batch = sum(len(y) for y in ys)
        tokens = [net.embed(x) for net, x in zip(run.nets, xs, strict=True)]
        aux = torch.zeros(())
        forwards: list[_Forward] = []
        rows: list[dict[str, Any]] = []
        previous = None
        for layer in range(L):
            log.begin("train", epoch, log_step + layer, batch)
            self._migrate(run, layer)
            logits = self._logits(router, run.nets, layer, tokens, previous, step)
            probs = [torch.softmax(x, dim=1) for x in logits]
            chosen = router.select(layer, logits, step)
            aux = self._aux_loss(aux, router, layer, probs, chosen, batch)
            forward, tokens = self._forward(run, layer, tokens, probs, chosen)
            log.end()
            counts = sum((load(c, router.experts) for c in chosen), np.zeros(router.experts, int))
            rows.append(self._skew_row(router, layer, counts, forward.sent))
            router.after_step(layer, counts)
            forwards.append(forward)
            previous = chosen
        losses = [
            nn.functional.cross_entropy(net.head(h), y, reduction="sum")
            for net, h, y in zip(run.nets, tokens, ys, strict=True)
        ]
        loss = sum(losses) / batch + aux
        run.optimiser.zero_grad()
        loss.backward(retain_graph=True)
        for back_step, layer in enumerate(reversed(range(L))):
            log.begin("train", epoch, log_step + L + back_step, batch)
            self._backward(run, layer, forwards[layer])
            log.end()
        run.optimiser.step()
        return float(aux.detach()), rows

    def _migrate(self, run: _Run, layer: int) -> None:
        """Send the parameters of the experts of ``layer`` re-placed after the last step."""
        experts = run.experts[layer]
        _exchange(
            run.transport,
            PHASES["migrate"],
            "expert",
            [
                (old, new, torch.cat([p.detach().reshape(-1) for p in experts[e].parameters()]))
                for moved_layer, e, old, new in run.migrations
                if moved_layer == layer
            ],
        )

    def _aux_loss(
        self,
        aux: torch.Tensor,
        router: Router,
        layer: int,
        probs: list[torch.Tensor],
        chosen: list[torch.Tensor],
        batch: int,
    ) -> torch.Tensor:
        """``aux`` plus every source's share of the layer's auxiliary loss, source by source."""
        alpha = router.config.alpha
        for s, (p, c) in enumerate(zip(probs, chosen, strict=True)):
            if len(c):
                weights = router.aux_weights(layer, s, p)
                aux = aux + alpha * switch_loss(p, c, router.experts, weights) * len(c) / batch
        return aux

    def _forward(
        self,
        run: _Run,
        layer: int,
        tokens: list[torch.Tensor],
        probs: list[torch.Tensor],
        chosen: list[torch.Tensor],
    ) -> tuple[_Forward, list[torch.Tensor]]:
        """Dispatch each source's chosen tokens to the experts' nodes, run each expert on
        all its tokens at once, combine its outputs back: the exchange and the new tokens."""
        sources, placement = self.sources, run.router.placements[layer]
        picked = {
            (s, e): rows
            for s, c in enumerate(chosen)
            for e in range(run.router.experts)
            if len(rows := (c == e).any(dim=1).nonzero().reshape(-1))
        }
        sent = {(s, e): tokens[s][rows] for (s, e), rows in picked.items()}
        dispatch = [(sources[s], placement[e], part.detach()) for (s, e), part in sent.items()]
        arrived = _exchange(run.transport, PHASES["dispatch"], "tokens", dispatch)
        got = dict(zip(sent, arrived, strict=True))
        outputs = _run_experts(run.experts[layer], got, len(sources))
        back = [pair for _, _, mine in outputs.values() for pair in mine]
        pieces: dict[Pair, torch.Tensor] = {}
        for _, out, mine in outputs.values():
            pieces.update(zip(mine, torch.split(out, [len(got[p]) for p in mine]), strict=True))
        results = _exchange(
            run.transport,
            PHASES["combine"],
            "outputs",
            [(placement[e], sources[s], pieces[(s, e)].detach()) for s, e in back],
        )
        received = {pair: r.requires_grad_() for pair, r in zip(back, results, strict=True)}
        mixed = [
            _combine(h, p, s, picked, received)
            for s, (h, p) in enumerate(zip(tokens, probs, strict=True))
        ]
        return _Forward(sent, received, outputs), mixed

    def _backward(self, run: _Run, layer: int, forward: _Forward) -> None:
        """The backward exchange of ``layer``: the gradients of the outputs to the experts'
        nodes, each expert's backward pass, the gradients of the tokens back."""
        sources, placement = self.sources, run.router.placements[layer]
        sent_back = _exchange(
            run.transport,
            PHASES["combine_grad"],
            "grad",
            [(sources[s], placement[e], _grad(leaf)) for (s, e), leaf in forward.received.items()],
        )
        grads = dict(zip(forward.received, sent_back, strict=True))
        replies: list[tuple[Pair, torch.Tensor]] = []
        for inp, out, mine in forward.outputs.values():
            out.backward(torch.cat([grads[pair] for pair in mine]))
            sizes = [len(grads[pair]) for pair in mine]
            replies += list(zip(mine, torch.split(_grad(inp), sizes), strict=True))
        returned = _exchange(
            run.transport,
            PHASES["dispatch_grad"],
            "grad",
            [(placement[e], sources[s], g) for (s, e), g in replies],
        )
        roots = [forward.sent[pair] for pair, _ in replies]
        if roots:
            torch.autograd.backward(roots, returned, retain_graph=True)

    def _skew_row(
        self, router: Router, layer: int, counts: np.ndarray, sent: dict[Pair, torch.Tensor]
    ) -> dict[str, Any]:
        """The step's skew at ``layer``: by expert and by group, and the dispatched bytes."""
        placement = router.placements[layer]
        groups = router.expert_groups(layer)
        n_groups = max(self.groups.values()) + 1
        sizes = np.bincount(groups, minlength=n_groups)
        group_counts = group_loads(counts, groups, n_groups)[sizes > 0] / sizes[sizes > 0]
        cross = sum(
            part.numel() * part.element_size()
            for (s, e), part in sent.items()
            if self.groups[self.sources[s]] != self.groups[placement[e]]
        )
        return {
            "layer": layer,
            **{f"expert_{name}": value for name, value in skew(counts).items()},
            **{f"group_{name}": value for name, value in skew(group_counts).items()},
            "cross_group_dispatch_bytes": int(cross),
            "dispatch_bytes": int(sum(p.numel() * p.element_size() for p in sent.values())),
        }

    @torch.no_grad()
    def _evaluate(
        self, router: Router, nets: list[_Source], experts: list[list[_Expert]], data: Any
    ) -> tuple[float, float, float | None]:
        """Mean test accuracy and loss over the sources' models; last layer's routing purity."""
        x, y = torch.as_tensor(data.x_test), torch.as_tensor(data.y_test)
        moe = self.scenario.moe
        accuracies, losses, purities = [], [], []
        for s, net in enumerate(nets):
            h = net.embed(x)
            previous = None
            for layer in range(moe.layers):
                logits = self._logits(
                    router,
                    [net] * len(nets),
                    layer,
                    [h if i == s else h[:0] for i in range(len(nets))],
                    previous,
                    10**9,
                )[s]
                chosen_all = router.select(
                    layer, [logits if i == s else logits[:0] for i in range(len(nets))], None
                )
                chosen = chosen_all[s]
                probs = torch.softmax(logits, dim=1)
                mixed = h.clone()
                for e in range(moe.experts):
                    picked = (chosen == e).any(dim=1).nonzero().reshape(-1)
                    if len(picked):
                        out = experts[layer][e](h[picked])
                        mixed.index_add_(0, picked, probs[picked, e : e + 1] * out)
                previous = [chosen if i == s else chosen[:0] for i in range(len(nets))]
                h = mixed
            scores = net.head(h)
            accuracies.append(float((scores.argmax(1) == y).float().mean()))
            losses.append(float(nn.functional.cross_entropy(scores, y)))
            top = chosen[:, 0].numpy()
            table = np.zeros((moe.experts, int(y.max()) + 1))
            np.add.at(table, (top, y.numpy()), 1)
            purities.append(float(table.max(axis=1).sum() / len(top)))
        return float(np.mean(accuracies)), float(np.mean(losses)), float(np.mean(purities))


def _state(
    run: _Run, rng: np.random.Generator, metrics: list[dict[str, Any]], epoch: int
) -> dict[str, Any]:
    """What this process needs to go on after ``epoch``: every source's and expert's weights,
    the optimiser's state, the router's (placements, balance state), the experts still to
    migrate, the data order's generator, the rows so far and this process's exchange log.
    The objects themselves, to be written before training goes on."""
    return {
        "epoch": epoch,
        "nets": [net.state_dict() for net in run.nets],
        "experts": [[expert.state_dict() for expert in layer] for layer in run.experts],
        "optimiser": run.optimiser.state_dict(),
        "router": run.router.state(),
        "migrations": run.migrations,
        "rng": rng.bit_generator.state,
        "metrics": metrics,
        "step_rows": run.step_rows,
        "log": run.transport.log,
    }


def _restore(run: _Run, rng: np.random.Generator, state: dict[str, Any]) -> list[dict[str, Any]]:
    """Take up a :func:`_state` in a freshly started run; the metrics rows so far."""
    for net, saved in zip(run.nets, state["nets"], strict=True):
        net.load_state_dict(saved)
    for layer, saved_layer in zip(run.experts, state["experts"], strict=True):
        for expert, saved in zip(layer, saved_layer, strict=True):
            expert.load_state_dict(saved)
    run.optimiser.load_state_dict(state["optimiser"])
    run.router.restore(state["router"])
    run.migrations = list(state["migrations"])
    rng.bit_generator.state = state["rng"]
    run.step_rows = list(state["step_rows"])
    run.transport.log = state["log"]
    return list(state["metrics"])


def _run_experts(
    experts: list[_Expert], got: dict[Pair, torch.Tensor], sources: int
) -> dict[int, tuple[torch.Tensor, torch.Tensor, list[Pair]]]:
    """Each expert on all the tokens it received at once: its input (a leaf), its output and
    the pairs they came from, in source order."""
    outputs = {}
    for e, expert in enumerate(experts):
        mine = [(s, e) for s in range(sources) if (s, e) in got]
        if mine:
            inp = torch.cat([got[pair] for pair in mine]).requires_grad_()
            outputs[e] = (inp, expert(inp), mine)
    return outputs


def _combine(
    tokens: torch.Tensor,
    probs: torch.Tensor,
    source: int,
    picked: dict[Pair, torch.Tensor],
    received: dict[Pair, torch.Tensor],
) -> torch.Tensor:
    """One source's tokens plus each expert's outputs weighted by the gates (residual mix)."""
    mixed = tokens
    for s, e in received:
        if s == source:
            rows = picked[(s, e)]
            mixed = mixed.index_add(0, rows, probs[rows, e : e + 1] * received[(s, e)])
    return mixed


def _grad(leaf: torch.Tensor) -> torch.Tensor:
    """The gradient a leaf received (zeros where the loss did not reach it)."""
    return leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)


def _roles(
    loaded: LoadedScenario, moe: MoeConfig, topology: Topology
) -> tuple[list[str], list[str]]:
    """The token sources (``moe.sources``, else the sensors) and the expert nodes
    (``moe.expert_nodes``, else every other node), checked against the topology."""
    sources = list(moe.sources) if moe.sources is not None else list(topology.sensors)
    if moe.expert_nodes is not None:
        expert_nodes = list(moe.expert_nodes)
    else:
        expert_nodes = [n for n in topology.graph.nodes if n not in sources]
    for field_, listed in (("sources", sources), ("expert_nodes", expert_nodes)):
        unknown = [n for n in listed if n not in topology.graph]
        if unknown or not listed:
            what = f"unknown node {unknown[0]!r}" if unknown else "no nodes"
            raise loaded.located(
                FieldError(("moe", field_), f"{what} in topology {topology.name!r}")
            )
    if set(sources) & set(expert_nodes):
        raise loaded.located(
            FieldError(("moe", "expert_nodes"), "a node cannot be a source and an expert node")
        )
    return sources, expert_nodes


def _exchange(
    transport: RecordingTransport,
    phase: str,
    payload: str,
    messages: list[tuple[str, str, torch.Tensor]],
) -> list[torch.Tensor]:
    """Send every ``(src, dst, tensor)`` of one phase; what each destination receives.

    The messages are announced in this order (their first dimension ``ANY``:
    sizes follow the routing), the owner of each source sends, and the owner of
    each destination receives. Every process computes every node (same seed,
    same numbers), so a process that does not run the destination takes its
    own copy; a process that does, the tensor that came over the wire.
    """
    if not messages:
        return []
    shapes = [(ANY, *tensor.shape[1:]) for _, _, tensor in messages]
    transport.expect(
        [
            (src, dst, phase, payload, shape)
            for (src, dst, _), shape in zip(messages, shapes, strict=True)
        ]
    )
    for src, dst, tensor in messages:
        if transport.owns(src):
            transport.send(tensor, src=src, dst=dst, phase=phase, payload=payload)
    return [
        transport.recv(src=src, dst=dst, phase=phase, payload=payload, shape=shape)
        if transport.owns(dst)
        else tensor.detach()
        for (src, dst, tensor), shape in zip(messages, shapes, strict=True)
    ]


def balance_trace(check: Any, seed: int) -> list[dict[str, Any]]:
    """CARL's controller alone on a Zipf hot-expert workload (no training, no network).

    Each step ``check.tokens`` tokens get standard normal logits plus the
    Zipf(``check.zipf``) log-popularity over ``check.experts`` experts in
    ``check.groups`` equal groups; top-1 of ``logit - bias``; the controller
    then updates. Per ``gamma`` and mode (``adaptive``, ``fixed``): expert and
    group MaxVio per step.
    """
    group_of = np.arange(check.experts) * check.groups // check.experts
    rows = []
    for mode in ("adaptive", "fixed"):
        for gamma in check.gammas:
            controller = BalanceController(check.experts, group_of, mode=mode, gamma=gamma)
            rng = np.random.default_rng([seed, 7])
            for step in range(check.steps):
                logits = rng.standard_normal((check.tokens, check.experts))
                logits += expert_bias("hot_experts", step, check.experts, zipf=check.zipf)
                counts = np.bincount(
                    np.argmax(logits - controller.bias(), axis=1), minlength=check.experts
                )
                rows.append(
                    {
                        "mode": mode,
                        "gamma": gamma,
                        "step": step,
                        "max_vio_expert": max_vio(counts),
                        "max_vio_group": max_vio(group_loads(counts, group_of, check.groups)),
                    }
                )
                controller.update(counts)
    return rows
