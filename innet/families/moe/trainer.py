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
selection differs by router kind, the gates are the probabilities of the
chosen experts. Balance state (biases) is global per layer: the sources'
routers are assumed to share it (its few bytes are not sent).

**Evaluation** after each epoch runs every source's model on the whole test
split in one process (not sent over the network); the accuracy is the mean
over sources. ``purity``: for the last layer, the share of test tokens whose
expert's most frequent class is their class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from innet.core.config import LoadedScenario
from innet.core.events import build_timeline
from innet.core.group import Group
from innet.core.netsim import Message, NetworkModel
from innet.core.records import ExchangeLog
from innet.core.seeding import seeded_torch
from innet.core.topology.model import Topology
from innet.core.training import TrainResult
from innet.core.transport import ANY, RecordingTransport
from innet.core.yamlio import FieldError
from innet.families.moe.balance import BalanceController
from innet.families.moe.config import MoeScenario, ResolvedMoeVariant, RouterConfig
from innet.families.moe.data import load_moe_dataset
from innet.families.moe.metrics import group_loads, max_vio, skew
from innet.families.moe.phases import PHASES
from innet.families.moe.placement import (
    dispatch_costs,
    initial_placement,
    node_groups,
    predicted_max_group_load,
    propose_placement,
)
from innet.families.moe.routers import (
    ac_logits,
    ac_weights,
    bias_update,
    cap_remote,
    group_limited_mask,
    load,
    sinkhorn,
    switch_loss,
    topk,
)
from innet.families.moe.workloads import expert_bias, source_shares, split_counts

__all__ = ["MoeTrainer", "Router", "balance_trace"]


class Router:
    """The selection rule of one variant, with its state (biases, controller, placement)."""

    def __init__(
        self,
        config: RouterConfig,
        experts: int,
        top_k: int,
        layers: int,
        sources: list[str],
        placement: list[str],
        groups: dict[str, int],
        model: NetworkModel,
        token_bytes: int,
    ) -> None:
        self.config, self.experts, self.sources = config, experts, sources
        self.top_k = min(top_k, experts)
        self.groups, self.model, self.token_bytes = groups, model, token_bytes
        self.placements = [list(placement) for _ in range(layers)]
        self.bias = [np.zeros(experts) for _ in range(layers)]
        self.controllers = [
            BalanceController(
                experts, self.expert_groups(layer), mode=config.balance, gamma=config.gamma
            )  # fmt: skip
            for layer in range(layers)
        ]
        self.costs = [self._costs(layer) for layer in range(layers)]
        self.accumulated = [np.zeros(experts) for _ in range(layers)]

    def expert_groups(self, layer: int) -> np.ndarray:
        """The group of each expert's node."""
        return np.array([self.groups[node] for node in self.placements[layer]])

    def _costs(self, layer: int) -> np.ndarray:
        return dispatch_costs(self.model, self.sources, self.placements[layer], self.token_bytes)

    def select(
        self, layer: int, logits: list[torch.Tensor], step: int | None
    ) -> list[torch.Tensor]:
        """The chosen experts ``[T_s, k]`` of every source's tokens (``step`` None: evaluation)."""
        config, k = self.config, self.top_k
        kind = config.kind
        if kind == "sinkhorn" or (kind == "carl" and step is not None and step < config.warm_start):
            scores = [self._carl_utility(layer, s, x) if kind == "carl" else x.detach()
                      for s, x in enumerate(logits)]  # fmt: skip
            joint = torch.cat(scores)
            if joint.shape[0] == 0:
                return [torch.zeros(0, k, dtype=torch.long) for _ in logits]
            plan = torch.as_tensor(sinkhorn(joint.double().numpy()))
            return list(torch.split(topk(plan, k), [x.shape[0] for x in logits]))
        chosen = []
        for s, x in enumerate(logits):
            x = x.detach()
            if kind == "bias":
                chosen.append(topk(x + torch.as_tensor(self.bias[layer], dtype=x.dtype), k))
            elif kind == "carl":
                chosen.append(topk(self._carl_utility(layer, s, x), k))
            elif kind == "capped":
                local = self.expert_groups(layer) == self.groups[self.sources[s]]
                chosen.append(cap_remote(x, k, local, config.cap))
            elif kind == "group_limited":
                mask = group_limited_mask(torch.softmax(x, dim=1), self.expert_groups(layer),
                                          config.max_groups)  # fmt: skip
                chosen.append(topk(x + mask, k))
            else:  # topk, ta, ac (ac's logits are already transformed)
                chosen.append(topk(x, k))
        return chosen

    def _carl_utility(self, layer: int, s: int, x: torch.Tensor) -> torch.Tensor:
        cost = torch.as_tensor(self.costs[layer][s], dtype=x.dtype)
        bias = torch.as_tensor(self.controllers[layer].bias(), dtype=x.dtype)
        return x.detach() - self.config.lam * cost - bias

    def after_step(self, layer: int, counts: np.ndarray) -> None:
        """Update the balance state with the step's tokens per expert."""
        if self.config.kind == "bias":
            self.bias[layer] = bias_update(self.bias[layer], counts, self.config.bias_rate)
        if self.config.kind == "carl":
            self.controllers[layer].update(counts)
            self.accumulated[layer] += counts

    def replace(self, layer: int) -> list[tuple[int, str, str]]:
        """CARL's re-placement from the accumulated load: the moves ``(expert, old, new)``."""
        current = self.placements[layer]
        load_ = self.accumulated[layer]
        proposal = propose_placement(load_, current, self.groups)
        self.accumulated[layer] = np.zeros(self.experts)
        if predicted_max_group_load(load_, proposal, self.groups) >= predicted_max_group_load(
            load_, current, self.groups
        ):
            return []
        moves = [(e, old, new) for e, (old, new) in enumerate(zip(current, proposal, strict=True))
                 if old != new]  # fmt: skip
        self.placements[layer] = proposal
        self.costs[layer] = self._costs(layer)
        controller = self.controllers[layer]
        controller.group_of = self.expert_groups(layer)
        return moves


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


class MoeTrainer:
    """The ``moe`` family's trainer (see the module docstring)."""

    def __init__(self, loaded: LoadedScenario, topology: Topology) -> None:
        self.scenario: MoeScenario = loaded.scenario  # type: ignore[assignment]
        self.variants: dict[str, ResolvedMoeVariant] = {v.name: v for v in loaded.variants}
        self.topology = topology
        moe = self.scenario.moe
        nodes = list(topology.graph.nodes)
        self.sources = list(moe.sources) if moe.sources is not None else list(topology.sensors)
        taken = set(self.sources)
        self.expert_nodes = (list(moe.expert_nodes) if moe.expert_nodes is not None
                             else [n for n in nodes if n not in taken])  # fmt: skip
        for field, listed in (("sources", self.sources), ("expert_nodes", self.expert_nodes)):
            unknown = [n for n in listed if n not in topology.graph]
            if unknown or not listed:
                what = f"unknown node {unknown[0]!r}" if unknown else "no nodes"
                raise loaded.located(
                    FieldError(("moe", field), f"{what} in topology {topology.name!r}")
                )
        if taken & set(self.expert_nodes):
            raise loaded.located(
                FieldError(("moe", "expert_nodes"), "a node cannot be a source and an expert node")
            )
        self.groups = node_groups(topology)
        self.data: dict[int, Any] = {}
        self._dataset(loaded_seed := self.scenario.seed_list[0])
        n_train = len(self.data[loaded_seed].y_train)
        self.batches = math.ceil(n_train / moe.batch_size)
        self.timelines = {
            name: build_timeline(
                topology,
                variant.routing,
                32.0 * moe.batch_size * moe.hidden,
                self.scenario.events,
                steps_per_epoch=self.steps_per_epoch(name),
                epochs=moe.epochs,
                hop_cost_s=variant.hop_cost_s,
            )
            for name, variant in self.variants.items()
        }
        carl = [name for name, v in self.variants.items() if v.router.kind == "carl"]
        self.balance_variant = carl[0] if carl else None

    def _dataset(self, seed: int) -> Any:
        moe = self.scenario.moe
        if seed not in self.data:
            self.data[seed] = load_moe_dataset(
                moe.dataset, seed=seed, n_samples=moe.n_samples, n_features=moe.n_features,
                n_classes=moe.n_classes, tight_features=moe.tight_features,
            )  # fmt: skip
        return self.data[seed]

    def steps_per_epoch(self, variant: str) -> int:
        return self.batches * 2 * self.scenario.moe.layers

    def epochs(self, variant: str) -> int:
        return self.scenario.moe.epochs

    def step_compute(self, messages: tuple[Message, ...]) -> dict[str, tuple[float, float]] | None:
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
    ) -> TrainResult | None:
        moe, config = self.scenario.moe, self.variants[variant].router
        data = self._dataset(seed)
        E, L, H = moe.experts, moe.layers, moe.hidden
        model = NetworkModel(self.topology)
        placement = initial_placement(E, self.expert_nodes)
        router = Router(config, E, moe.top_k, L, self.sources, placement, self.groups, model, 4 * H)
        with seeded_torch(seed):
            source_nets = [_Source(data.n_features, H, E, L, data.n_classes) for _ in self.sources]
            experts = [[_Expert(H, moe.expert_hidden) for _ in range(E)] for _ in range(L)]
        params = [p for net in source_nets for p in net.parameters()]
        params += [p for layer in experts for ex in layer for p in ex.parameters()]
        optimiser = torch.optim.Adam(params, lr=moe.lr)
        x_train = torch.as_tensor(data.x_train)
        y_train = torch.as_tensor(data.y_train)
        rng = np.random.default_rng(seed)
        metrics, step_rows = [], []
        migrations: list[tuple[int, int, str, str]] = []
        step = 0
        spe = self.steps_per_epoch(variant)
        for epoch in range(moe.epochs):
            order = torch.as_tensor(rng.permutation(len(y_train)))
            aux_total = 0.0
            for batch in range(self.batches):
                rows = order[batch * moe.batch_size : (batch + 1) * moe.batch_size]
                counts = split_counts(len(rows), source_shares(
                    moe.workload.kind, step, len(self.sources), hot=moe.workload.hot,
                    period=moe.workload.period))  # fmt: skip
                parts = torch.split(rows, counts.tolist())
                log_step = epoch * spe + batch * 2 * L
                aux, layer_rows = self._step(
                    transport, router, source_nets, experts, optimiser,
                    [x_train[p] for p in parts], [y_train[p] for p in parts],
                    epoch, log_step, step, migrations,
                )  # fmt: skip
                aux_total += aux
                for row in layer_rows:
                    step_rows.append({"variant": variant, "seed": seed, "epoch": epoch,
                                      "step": step, **row})  # fmt: skip
                if (
                    config.kind == "carl"
                    and config.replace_every
                    and ((step + 1) % config.replace_every == 0)
                ):
                    for layer in range(L):
                        for e, old, new in router.replace(layer):
                            migrations.append((layer, e, old, new))
                step += 1
            accuracy, loss, purity = self._evaluate(router, source_nets, experts, data)
            last = [r for r in step_rows if r["step"] == step - 1]
            metrics.append({
                "epoch": epoch, "accuracy": accuracy, "loss": loss, "purity": purity,
                "aux_loss": aux_total / self.batches,
                "max_vio_expert": max(r["expert_max_vio"] for r in last),
                "max_vio_group": max(r["group_max_vio"] for r in last),
            })  # fmt: skip
            on_epoch(epoch)
        tables = {
            "moe_steps": step_rows,
            "moe_nodes": [
                {
                    "variant": variant,
                    "seed": seed,
                    "node": node,
                    "group": self.groups[node],
                    "role": "source"
                    if node in self.sources
                    else ("experts" if node in placement else "relay"),  # hosts an expert
                }  # fmt: skip
                for node in self.topology.graph.nodes
            ],
        }
        logs = group.gather(transport.log)
        if logs is None:
            return None
        if variant == self.balance_variant:
            tables["moe_balance"] = [
                {"variant": variant, "seed": seed, **row}
                for row in balance_trace(self.scenario.moe.balance_check, seed)
            ]
        return TrainResult(metrics=metrics, log=ExchangeLog.merge(logs), tables=tables)

    # -- one training step ---------------------------------------------------------------

    def _logits(
        self, router: Router, nets: list[_Source], layer: int, tokens: list[torch.Tensor],
        previous: list[torch.Tensor] | None, step: int,
    ) -> list[torch.Tensor]:  # fmt: skip
        """Every source's router logits for ``layer`` (with the workload's bias)."""
        moe, config = self.scenario.moe, router.config
        bias = torch.as_tensor(expert_bias(moe.workload.kind, step, moe.experts,
                                           zipf=moe.workload.zipf, period=moe.workload.period),
                               dtype=torch.float32)  # fmt: skip
        if config.kind == "ac" and layer > 0 and previous is not None:
            joint = torch.cat(tokens).detach()
            weights = ac_weights(joint, torch.cat(previous)[:, 0], moe.experts, config.ac_clip)
            return [ac_logits(h, nets[s].routers[layer].weight, weights, previous[s][:, 0]) + bias
                    for s, h in enumerate(tokens)]  # fmt: skip
        return [nets[s].routers[layer](h) + bias for s, h in enumerate(tokens)]

    def _step(
        self, transport: RecordingTransport, router: Router, nets: list[_Source],
        experts: list[list[_Expert]], optimiser: torch.optim.Optimizer,
        xs: list[torch.Tensor], ys: list[torch.Tensor], epoch: int, log_step: int, step: int,
        migrations: list[tuple[int, int, str, str]],
    ) -> tuple[float, list[dict[str, Any]]]:  # fmt: skip
        moe, config = self.scenario.moe, router.config
        E, L = moe.experts, moe.layers
        sources = self.sources
        batch = sum(len(y) for y in ys)
        tokens = [net.embed(x) for net, x in zip(nets, xs, strict=True)]
        sent: list[dict[tuple[int, int], torch.Tensor]] = []
        received: list[dict[tuple[int, int], torch.Tensor]] = []
        outputs: list[dict[int, tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]]] = []
        aux = torch.zeros(())
        rows_out: list[dict[str, Any]] = []
        previous = None
        for layer in range(L):
            transport.log.begin("train", epoch, log_step + layer, batch)
            moving = [m for m in migrations if m[0] == layer]  # parameters of re-placed experts
            _exchange(transport, PHASES["migrate"], "expert", [
                (old, new, torch.cat([p.detach().reshape(-1)
                                      for p in experts[layer][e].parameters()]))
                for _, e, old, new in moving
            ])  # fmt: skip
            logits = self._logits(router, nets, layer, tokens, previous, step)
            probs = [torch.softmax(x, dim=1) for x in logits]
            chosen = router.select(layer, logits, step)
            placement = router.placements[layer]
            for s, (p, c) in enumerate(zip(probs, chosen, strict=True)):
                if len(c) == 0:
                    continue
                weights = None
                if config.kind == "ta":
                    cost = torch.as_tensor(router.costs[layer][s], dtype=p.dtype)
                    weights = cost / cost.mean() if cost.mean() > 0 else torch.ones_like(cost)
                    weights = weights.expand_as(p)
                aux = aux + config.alpha * switch_loss(p, c, E, weights) * len(c) / batch
            picked = {
                (s, e): rows
                for s, c in enumerate(chosen)
                for e in range(E)
                if len(rows := (c == e).any(dim=1).nonzero().reshape(-1))
            }
            layer_sent = {(s, e): tokens[s][rows] for (s, e), rows in picked.items()}
            pairs = list(layer_sent)  # source-major: the order of the dispatch messages
            got = dict(zip(pairs, _exchange(transport, PHASES["dispatch"], "tokens", [
                (sources[s], placement[e], part.detach()) for (s, e), part in layer_sent.items()
            ]), strict=True))  # fmt: skip
            layer_out = {}
            back: list[tuple[int, int]] = []
            for e in range(E):  # each expert on its node: all its tokens at once
                mine = [(s, e) for s in range(len(sources)) if (s, e) in got]
                if not mine:
                    continue
                inp = torch.cat([got[pair] for pair in mine]).requires_grad_()
                out = experts[layer][e](inp)
                layer_out[e] = (inp, out, mine)
                back += mine
            pieces = {}
            for _, out, mine in layer_out.values():
                pieces.update(zip(mine, torch.split(out, [len(got[p]) for p in mine]),
                                  strict=True))  # fmt: skip
            results = _exchange(transport, PHASES["combine"], "outputs", [
                (placement[e], sources[s], pieces[(s, e)].detach()) for s, e in back
            ])  # fmt: skip
            layer_recv = {pair: r.requires_grad_() for pair, r in zip(back, results, strict=True)}
            new_tokens = []
            for s, (h, p) in enumerate(zip(tokens, probs, strict=True)):
                mixed = h
                for e in range(E):
                    if (s, e) in layer_recv:
                        rows = picked[(s, e)]
                        mixed = mixed.index_add(0, rows, p[rows, e : e + 1] * layer_recv[(s, e)])
                new_tokens.append(mixed)
            transport.log.end()
            counts = sum(load(c, E) for c in chosen)
            rows_out.append(self._skew_row(router, layer, counts, layer_sent, placement))
            router.after_step(layer, counts)
            sent.append(layer_sent)
            received.append(layer_recv)
            outputs.append(layer_out)
            previous = chosen
            tokens = new_tokens
        migrations.clear()
        losses = [nn.functional.cross_entropy(net.head(h), y, reduction="sum")
                  for net, h, y in zip(nets, tokens, ys, strict=True)]  # fmt: skip
        loss = sum(losses) / batch + aux
        optimiser.zero_grad()
        loss.backward(retain_graph=True)
        for back_step, layer in enumerate(reversed(range(L))):
            transport.log.begin("train", epoch, log_step + L + back_step, batch)
            placement = router.placements[layer]
            order = list(received[layer])
            grads = dict(zip(order, _exchange(transport, PHASES["combine_grad"], "grad", [
                (sources[s], placement[e],
                 leaf.grad if leaf.grad is not None else torch.zeros_like(leaf))
                for (s, e), leaf in received[layer].items()
            ]), strict=True))  # fmt: skip
            replies = []
            for inp, out, mine in outputs[layer].values():
                out.backward(torch.cat([grads[pair] for pair in mine]))
                sizes = [len(grads[pair]) for pair in mine]
                replies += list(zip(mine, torch.split(inp.grad, sizes), strict=True))
            returned = _exchange(transport, PHASES["dispatch_grad"], "grad", [
                (placement[e], sources[s], g) for (s, e), g in replies
            ])  # fmt: skip
            roots = [sent[layer][pair] for pair, _ in replies]
            if roots:
                torch.autograd.backward(roots, returned, retain_graph=True)
            transport.log.end()
        optimiser.step()
        return float(aux.detach()), rows_out

    def _skew_row(
        self, router: Router, layer: int, counts: np.ndarray,
        sent: dict[tuple[int, int], torch.Tensor], placement: list[str],
    ) -> dict[str, Any]:  # fmt: skip
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
                logits = self._logits(router, [net] * len(nets), layer,
                                      [h if i == s else h[:0] for i in range(len(nets))],
                                      previous, 10**9)[s]  # fmt: skip
                chosen_all = router.select(layer, [logits if i == s else logits[:0]
                                                   for i in range(len(nets))], None)  # fmt: skip
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


def _exchange(
    transport: RecordingTransport, phase: str, payload: str,
    messages: list[tuple[str, str, torch.Tensor]],
) -> list[torch.Tensor]:  # fmt: skip
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
    transport.expect([(src, dst, phase, payload, shape)
                      for (src, dst, _), shape in zip(messages, shapes, strict=True)])  # fmt: skip
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
                counts = np.bincount(np.argmax(logits - controller.bias(), axis=1),
                                     minlength=check.experts)  # fmt: skip
                rows.append({
                    "mode": mode, "gamma": gamma, "step": step,
                    "max_vio_expert": max_vio(counts),
                    "max_vio_group": max_vio(group_loads(counts, group_of, check.groups)),
                })  # fmt: skip
                controller.update(counts)
    return rows
