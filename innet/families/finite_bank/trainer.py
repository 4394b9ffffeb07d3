"""Training the router over the bank through the network, and the bank's experiments.

**Where things live.** The topology's fusion node is the *gate node*: it
holds the queries (the router and pool samples with their labels) and runs
the router. Expert ``k`` runs on the ``k``-th sensor node (in node order);
each expert node must be a neighbour of the gate node (a star, e.g.
``topologies/bank_star16.yaml``).

**What crosses the wire** (training traffic, in the core phases ``forward``
and ``backward``, told apart by their payloads):

- ``query`` (gate → expert, phase ``forward``): the raw features of the samples
  the gate sends to that expert, float32 ``[rows, features]``. The discrete
  gate's index of a sample is *which* expert node its query goes to; no
  index is sent beside it.
- ``answer`` (expert → gate, phase ``backward``): the expert's class
  probabilities for those samples, float32 ``[rows, classes]``, sent when its
  queries have arrived.

Step 0 of epoch 0 *profiles* the bank: every expert answers every router and
pool sample once. From the answers the gate knows the 0-1 loss ``d(x, k)`` of
every expert on every sample; the router's straight-through gradient needs
the losses of the experts it did not choose, and the accuracy–rate curve and
the selection experiment need them on the pool. Then, for each ``beta`` of
``router.betas`` (one epoch each, a fresh router each time), ``router.steps``
steps: the gate draws a batch, samples one expert per query from ``p(t|x)``,
and sends each expert its queries; the answers give the step's observed
loss.

**The router** is a linear encoder (standardised features → ``latent_dim``)
followed by innet's discrete gate (:func:`innet.families.inl.gates.make_gate`, ``K``
codewords, codeword ``k`` = expert ``k``; the codebook stays fixed, so that
no codeword is moved onto data it should not serve), trained with Adam on ``E[d(x, t)] +
beta * rate`` (the gate's batch rate in bits) through the straight-through
estimator ``onehot(t) + p - stop_gradient(p)``. After each epoch it is
evaluated on the pool as the stochastic channel ``p(t|x)``: rate ``I(X;T)``
in bits and expected 0-1 loss with its standard error over the pool.

The selection experiment (:mod:`.selection`), the accuracy–rate
curve and the gating bound (:mod:`.gating_bound`) are
computed after training, from the profiled losses and the seed, and returned
as the family's tables.

**Checkpoints.** Each epoch trains a fresh router whose randomness comes from
the seed and the epoch alone, so what carries over from one epoch to the next
is only the profiled losses, the rows so far and the exchange log: that is
what is saved after each epoch the checkpoints ask for. A resumed run does not
profile the bank again (its messages are in the saved log) and goes on from
the next beta; the epochs already done are not reported to ``on_epoch`` again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from innet.core.config import LoadedScenario
from innet.core.errors import InnetError
from innet.core.events import build_timeline
from innet.core.group import Group
from innet.core.topology.model import Topology
from innet.core.training import Checkpoints, Trainer, TrainResult
from innet.core.transport import RecordingTransport
from innet.core.yamlio import FieldError
from innet.families.finite_bank.bank import Bank, load_bank
from innet.families.finite_bank.config import (
    FiniteBankScenario,
    ResolvedBankVariant,
    RouterConfig,
)
from innet.families.finite_bank.gating_bound import bound_cells, make_task
from innet.families.finite_bank.selection import selection_cells
from innet.families.inl.gates import make_gate
from innet.info import distortion_lower_bound, mixture_mutual_information, rate_distortion_curve

__all__ = ["QUERY", "ANSWER", "FiniteBankTrainer", "expert_nodes"]

QUERY = ("forward", "query")
"""(phase, payload) of a query: gate to expert."""
ANSWER = ("backward", "answer")
"""(phase, payload) of an answer: expert to gate."""


def expert_nodes(topology: Topology, experts: int) -> tuple[str, list[str]]:
    """The gate node and the nodes of the ``experts`` experts.

    A :class:`~innet.core.yamlio.FieldError` on the scenario's ``topology`` field
    when the topology has too few sensors or one is not next to the gate node.
    """
    gate = topology.fusion
    nodes = topology.sensors[:experts]
    if len(nodes) < experts:
        raise FieldError(
            ("topology",),
            f"{topology.name}: the bank has {experts} experts but the topology only "
            f"{len(nodes)} sensor nodes to run them on",
        )
    far = [node for node in nodes if not topology.graph.has_edge(gate, node)]
    if far:
        raise FieldError(
            ("topology",),
            f"{topology.name}: expert nodes must be neighbours of the gate node {gate!r}; "
            f"not: {', '.join(far)}",
        )
    return gate, nodes


class FiniteBankTrainer(Trainer):
    """The ``finite_bank`` family's trainer (see the module docstring)."""

    def __init__(self, loaded: LoadedScenario, topology: Topology) -> None:
        self.scenario: FiniteBankScenario = loaded.scenario  # type: ignore[assignment]
        self.variants: dict[str, ResolvedBankVariant] = {v.name: v for v in loaded.variants}
        try:
            self.gate_node, self.expert_nodes = expert_nodes(topology, self.scenario.bank.experts)
        except FieldError as error:
            raise loaded.located(error) from None
        self.bank: Bank = load_bank(self.scenario.bank)
        features = self.bank.x.shape[1]
        self.timelines = {
            name: build_timeline(
                topology,
                variant.routing,
                32.0 * variant.router.batch_size * features,
                self.scenario.events,
                steps_per_epoch=variant.router.steps,
                epochs=len(variant.router.betas),
                hop_cost_s=variant.hop_cost_s,
            )
            for name, variant in self.variants.items()
        }

    def steps_per_epoch(self, variant: str) -> int:
        return self.variants[variant].router.steps

    def epochs(self, variant: str) -> int:
        return len(self.variants[variant].router.betas)

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
        if group.world_size > 1:
            raise InnetError("the finite_bank family runs in one process (not under torchrun)")
        config = self.variants[variant].router
        saved = checkpoints.resume() if checkpoints is not None else None
        if saved is None:
            losses = self._profile(transport)
            metrics: list[dict[str, Any]] = []
            router_rows: list[dict[str, Any]] = []
        else:
            transport.log = saved["log"]
            losses, metrics, router_rows = saved["losses"], saved["metrics"], saved["router_rows"]
        split = self.bank.splits
        n_router = len(split["router"])
        router_losses, pool_losses = losses[:n_router], losses[n_router:]
        x_router = self.bank.x[split["router"]]
        mean, std = x_router.mean(axis=0), x_router.std(axis=0) + 1e-8
        standardised = {
            "router": torch.tensor((x_router - mean) / std, dtype=torch.float32),
            "pool": torch.tensor((self.bank.x[split["pool"]] - mean) / std, dtype=torch.float32),
        }
        curve = rate_distortion_curve(
            np.full(len(pool_losses), 1.0 / len(pool_losses)),
            pool_losses,
            config.slopes,
            tol=1e-9,
            max_iter=20_000,
        )
        for epoch in range(len(metrics), len(config.betas)):
            beta = float(config.betas[epoch])
            encoder, gate, observed = self._fit(
                transport, config, seed, epoch, standardised["router"], router_losses
            )
            row = _evaluate(encoder, gate, standardised["pool"], pool_losses)
            row["below_curve"] = distortion_lower_bound(curve, row["rate_bits"]) - row["loss"]
            metrics.append(
                {"epoch": epoch, "beta": beta, **_metric(row), "observed_train_loss": observed}
            )
            router_rows.append(
                {"variant": variant, "seed": seed, "epoch": epoch, "beta": beta, **row}
            )
            if checkpoints is not None and checkpoints.due(epoch):
                checkpoints.save(
                    epoch,
                    {
                        "epoch": epoch,
                        "losses": losses,
                        "metrics": metrics,
                        "router_rows": router_rows,
                        "log": transport.log,
                    },
                )
            on_epoch(epoch)

        tables = self._experiments(variant, seed, pool_losses, curve)
        tables["finite_bank_router"] = router_rows
        return TrainResult(metrics=metrics, log=transport.log, tables=tables)

    def _profile(self, transport: RecordingTransport) -> np.ndarray:
        """Step 0 of epoch 0: every expert answers every router and pool sample; the 0-1
        loss of each expert (column) on each of them (row, router samples first)."""
        bank, split = self.bank, self.bank.splits
        profiled = np.concatenate([split["router"], split["pool"]])
        transport.log.begin("train", 0, 0, len(profiled))
        answers = self._dispatch(transport, {k: profiled for k in range(len(bank.experts))})
        transport.log.end()
        wrong = {k: (a.argmax(axis=1) != bank.y[profiled]) for k, a in answers.items()}
        return np.stack([wrong[k] for k in range(len(bank.experts))], axis=1).astype(float)

    def _fit(
        self,
        transport: RecordingTransport,
        config: RouterConfig,
        seed: int,
        epoch: int,
        x_router: torch.Tensor,
        router_losses: np.ndarray,
    ) -> tuple[nn.Module, nn.Module, float]:
        """Epoch ``epoch``: a fresh router (seeded by ``seed`` and ``epoch``) trained for
        ``router.steps`` steps at that epoch's beta, each step's queries sent through the
        network; the encoder, the gate and the mean observed loss."""
        bank, rows_of = self.bank, self.bank.splits["router"]
        beta = config.betas[epoch]
        torch.manual_seed(seed * 1000 + epoch)
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        encoder = nn.Linear(x_router.shape[1], config.latent_dim)
        gate = make_gate(
            "discrete",
            config.latent_dim,
            generator=generator,
            codewords=len(bank.experts),
            tau=config.tau,
            train_codebook=False,
        )
        optimiser = torch.optim.Adam([*encoder.parameters(), *gate.parameters()], lr=config.lr)
        rng = np.random.default_rng([seed, epoch])
        observed = []
        table = torch.tensor(router_losses, dtype=torch.float32)
        n_router = len(rows_of)
        for step in range(1 + epoch * config.steps, 1 + (epoch + 1) * config.steps):
            batch = rng.choice(n_router, size=min(config.batch_size, n_router), replace=False)
            gate.train()
            out = gate(encoder(x_router[batch]))
            probs = out.probs.reshape(len(batch), -1)
            index = out.index.reshape(len(batch))
            hard = nn.functional.one_hot(index, probs.shape[1]).to(probs.dtype)
            choice = hard + probs - probs.detach()
            loss = (choice * table[batch]).sum(dim=1).mean() + beta * out.rate_bits
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            rows = rows_of[batch]
            routed = {
                k: rows[index.numpy() == k]
                for k in range(len(bank.experts))
                if bool((index == k).any())
            }
            transport.log.begin("train", epoch, step, len(batch))
            got = self._dispatch(transport, routed)
            transport.log.end()
            observed.append(
                float(
                    np.mean(
                        np.concatenate(
                            [g.argmax(axis=1) != bank.y[routed[k]] for k, g in got.items()]
                        )
                    )
                )
            )
        return encoder, gate, float(np.mean(observed))

    def _dispatch(
        self, transport: RecordingTransport, routed: dict[int, np.ndarray]
    ) -> dict[int, np.ndarray]:
        """Send each expert the features of its samples; return its answers, by expert."""
        bank, gate = self.bank, self.gate_node
        features = bank.x.shape[1]
        for k, rows in routed.items():
            query = torch.tensor(bank.x[rows], dtype=torch.float32)
            transport.send(
                query, src=gate, dst=self.expert_nodes[k], phase=QUERY[0], payload=QUERY[1]
            )
        for k, rows in routed.items():
            node = self.expert_nodes[k]
            query = transport.recv(
                src=gate, dst=node, phase=QUERY[0], payload=QUERY[1], shape=(len(rows), features)
            )
            answer = torch.tensor(bank.answers(k, query.double().numpy()), dtype=torch.float32)
            transport.send(answer, src=node, dst=gate, phase=ANSWER[0], payload=ANSWER[1])
        return {
            k: transport.recv(
                src=self.expert_nodes[k],
                dst=gate,
                phase=ANSWER[0],
                payload=ANSWER[1],
                shape=(len(rows), bank.n_classes),
            ).numpy()
            for k, rows in routed.items()
        }

    def _experiments(
        self, variant: str, seed: int, pool_losses: np.ndarray, curve: Any
    ) -> dict[str, list[dict[str, Any]]]:
        """Items 4 to 6 for this seed: the family's tables."""
        gibbs, bound = self.scenario.gibbs, self.scenario.gating_bound
        selection = selection_cells(
            pool_losses,
            gibbs.alphas,
            gibbs.sample_sizes,
            resamples=gibbs.resamples,
            rng=np.random.default_rng([seed, 4]),
        )
        task = make_task(bound, seed)
        cells = bound_cells(
            task,
            bound.temperatures,
            bound.sample_sizes,
            alpha=bound.alpha,
            resamples=bound.resamples,
            rng=np.random.default_rng([seed, 6]),
            heldout_rng=np.random.default_rng([seed, 6, 1]),
        )
        tag = {"variant": variant, "seed": seed}
        expert_losses = pool_losses.mean(axis=0)
        oracle = float(pool_losses.min(axis=1).mean())
        return {
            "finite_bank_selection": [{**tag, **row} for row in selection],
            "finite_bank_curve": [
                {
                    **tag,
                    "slope": p.slope,
                    "rate_bits": p.rate,
                    "loss": p.distortion,
                    "gap_bits": p.gap,
                    "converged": p.converged,
                }
                for p in curve.points
            ],
            "finite_bank_experts": [
                {
                    **tag,
                    "expert": k,
                    "name": spec.name,
                    "node": self.expert_nodes[k],
                    "pool_loss": float(expert_losses[k]),
                    "oracle_loss": oracle,
                }
                for k, spec in enumerate(self.bank.specs)
            ],
            "finite_bank_bound": [{**tag, **row} for row in cells],
            "finite_bank_bound_curve": [
                {**tag, "slope": p.slope, "rate_bits": p.rate, "loss": p.distortion}
                for p in task.curve.points
            ],
        }


def _evaluate(
    encoder: nn.Module, gate: nn.Module, x: torch.Tensor, losses: np.ndarray
) -> dict[str, Any]:
    """The router on the pool as the channel ``p(t|x)``: rate (bits) and expected loss."""
    gate.eval()
    with torch.no_grad():
        out = gate(encoder(x))
    probs = out.probs.reshape(x.shape[0], -1).double().numpy()
    probs /= probs.sum(axis=1, keepdims=True)
    per_sample = (probs * losses).sum(axis=1)
    chosen = probs.argmax(axis=1)
    return {
        "rate_bits": mixture_mutual_information(probs),
        "loss": float(per_sample.mean()),
        "loss_se": float(per_sample.std(ddof=1) / math.sqrt(len(per_sample))),
        "argmax_loss": float(losses[np.arange(len(chosen)), chosen].mean()),
        "experts_used": int(len(np.unique(chosen))),
    }


def _metric(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in ("rate_bits", "loss", "loss_se", "argmax_loss")}
