"""Train one variant with one seed, then time its exchanges on the network model.

:func:`train_one` builds the node modules a variant needs for every plan it
will use (plans change on events), runs the epochs through the engine (one
synchronous step per batch, an evaluation after each epoch), gathers the
exchange records from every process, and gives each record its simulated
times: each stretch between events is timed on the network as it was then.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from innet.engine import Engine, ExchangeRow
from innet.errors import InnetError
from innet.events import Timeline, build_timeline
from innet.inputs import NodeInputs
from innet.modules import NodeSpec
from innet.netsim import NetworkModel
from innet.plans import Plan
from innet.scenario import ResolvedVariant, Scenario
from innet.timing import RunTiming, compute_seconds, time_records
from innet.topology.model import Topology, node_key
from innet.transport import InProcessTransport, Transport

__all__ = ["SeedResult", "train_one", "node_specs", "variant_timeline"]


@dataclass
class SeedResult:
    """Everything one (variant, seed) produced."""

    records: list[ExchangeRow]
    metrics: list[dict[str, Any]]
    node_rates: dict[str, float]
    timing: RunTiming | None = None
    flops: dict[str, int] = field(default_factory=dict)  # forward FLOPs per sample, per node


def node_specs(
    plans: Sequence[Plan], variant: ResolvedVariant, inputs: NodeInputs
) -> dict[str, NodeSpec]:
    """The module each node needs to serve in every one of ``plans`` (plans change on events)."""
    if variant.model.aggregator == "concat" and len({_inputs_of(p) for p in plans}) > 1:
        raise InnetError(
            f"variant {variant.name}: the concat aggregator needs a fixed set of inputs per node, "
            "but events change the plan; use sum or mean"
        )
    received: dict[str, int] = {}
    fusion = plans[0].fusion
    for plan in plans:
        for node in plan.forward_order():
            received[node] = max(received.get(node, 0), len(plan.children(node)))
    return {
        node: NodeSpec(
            node=node,
            is_fusion=node == fusion,
            view_dim=inputs.view_dim(node),
            n_received=count,
            latent_dim=variant.model.latent_dim,
            hidden=variant.model.hidden,
            aggregator=variant.model.aggregator,
            gate_kind=variant.gate.kind,
            n_classes=inputs.n_classes,
            codewords=variant.gate.codewords,
            tau=variant.gate.tau,
        )
        for node, count in received.items()
    }


def _inputs_of(plan: Plan) -> frozenset[tuple[str, int]]:
    return frozenset((node, len(plan.children(node))) for node in plan.forward_order())


def variant_timeline(
    scenario: Scenario, variant: ResolvedVariant, topology: Topology, n_train: int
) -> Timeline:
    """The plans of a variant over the run, given the scenario's events."""
    return build_timeline(
        topology,
        variant.routing,
        variant.forward_message_bits(scenario.network.header_bytes),
        scenario.events,
        steps_per_epoch=math.ceil(n_train / variant.training.batch_size),
        epochs=variant.training.epochs,
    )


def train_one(
    *,
    scenario: Scenario,
    variant: ResolvedVariant,
    timeline: Timeline,
    topology: Topology,
    inputs: NodeInputs,
    seed: int,
    transport: Transport | None = None,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int], None] | None = None,
) -> SeedResult:
    """Train one variant with one seed and time its exchanges on the network model."""
    transport = transport or InProcessTransport()
    engine = Engine(
        plan=timeline.segments[0].plan,
        specs=node_specs(timeline.plans, variant, inputs),
        seed=seed,
        transport=transport,
        views=inputs.views,
        labels=inputs.labels,
        lr=variant.training.lr,
        optimizer=variant.training.optimizer,
        beta=variant.gate.beta,
        header_bytes=scenario.network.header_bytes,
        device=device,
    )
    batch_size = variant.training.batch_size
    eval_batch = variant.training.eval_batch_size
    n_train, n_test = inputs.n_train, len(inputs.labels[1])
    batch_of_step: dict[tuple[str, int, int], int] = {}
    metrics: list[dict[str, Any]] = []
    evaluations = []
    step = 0
    for epoch in range(variant.training.epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n_train)
        losses = []
        for start in range(0, n_train, batch_size):
            index = order[start : start + batch_size]
            plan = timeline.segment_at(step).plan
            if plan is not engine.plan:
                engine.set_plan(plan)
            loss = engine.train_step(index, epoch, step, timeline.failures.get(step, frozenset()))
            if loss is not None:
                losses.append(loss)
            batch_of_step[("train", epoch, step)] = len(index)
            step += 1
        for number, start in enumerate(range(0, n_test, eval_batch)):
            batch_of_step[("eval", epoch, number)] = min(eval_batch, n_test - start)
        plan = timeline.segment_at(step).plan  # evaluate on the network as it is now
        if plan is not engine.plan:
            engine.set_plan(plan)
        local_eval = engine.evaluate(epoch, step, eval_batch)
        gathered = transport.gather((losses, local_eval))
        if gathered is not None:
            all_losses = [value for part, _ in gathered for value in part]
            merged = gathered[0][1]
            for _, other in gathered[1:]:
                merged = merged.merge(other)
            evaluations.append(merged)
            metrics.append(
                {
                    "variant": variant.name,
                    "seed": seed,
                    "epoch": epoch,
                    "train_loss": float(np.mean(all_losses)) if all_losses else float("nan"),
                    "test_loss": merged.loss_sum / merged.samples,
                    "accuracy": merged.correct / merged.samples,
                    "latent_rate_bits": sum(merged.rate_sums.values()) / merged.samples,
                }
            )
        if on_epoch is not None:
            on_epoch(epoch)

    gathered_records = transport.gather(engine.records)
    gathered_flops = transport.gather(engine.compute_flops())
    if gathered_records is None or gathered_flops is None:
        return SeedResult(records=[], metrics=[], node_rates={})
    records = sorted((row for part in gathered_records for row in part), key=_record_order)
    flops = {node: value for part in gathered_flops for node, value in part.items()}
    compute = (
        {size: compute_seconds(topology, flops, size) for size in set(batch_of_step.values())}
        if scenario.network.compute
        else None
    )
    steps_per_epoch = math.ceil(n_train / batch_size)
    timing = _time_run(records, timeline, scenario, batch_of_step, compute, steps_per_epoch, seed)
    train_bytes: dict[int, int] = {}
    lost_messages: dict[int, int] = {}
    for epoch, _step, phase, _src, _dst, _payload, nbytes, lost in records:
        if phase != "eval":
            train_bytes[epoch] = train_bytes.get(epoch, 0) + nbytes
            lost_messages[epoch] = lost_messages.get(epoch, 0) + int(lost)
    cumulative_bytes, cumulative_time = 0, 0.0
    for row in metrics:
        epoch = row["epoch"]
        cumulative_bytes += train_bytes.get(epoch, 0)
        cumulative_time += timing.epoch_train_s.get(epoch, 0.0)
        row.update(
            train_bytes=train_bytes.get(epoch, 0),
            train_bytes_cum=cumulative_bytes,
            sim_time_s=timing.epoch_train_s.get(epoch, 0.0),
            sim_time_cum_s=cumulative_time,
            lost_messages=lost_messages.get(epoch, 0),
        )
    final = evaluations[-1]
    return SeedResult(
        records=records,
        metrics=metrics,
        node_rates={node: value / final.samples for node, value in final.rate_sums.items()},
        timing=timing,
        flops=flops,
    )


def _time_run(
    records: list[ExchangeRow],
    timeline: Timeline,
    scenario: Scenario,
    batch_of_step: dict[tuple[str, int, int], int],
    compute: dict[int, dict[str, tuple[float, float]]] | None,
    steps_per_epoch: int,
    seed: int,
) -> RunTiming:
    """Simulated times of a run: each stretch between events on its own network.

    Lost messages went into a failed link: they take no network time and get NaN times.
    """
    t_start = np.full(len(records), np.nan)
    t_end = np.full(len(records), np.nan)
    queue_s = np.full(len(records), np.nan)
    attempts = np.ones(len(records), dtype=np.int64)
    epoch_train_s: dict[int, float] = {}
    delivered = np.array([i for i, row in enumerate(records) if not row[7]], dtype=np.int64)
    # an evaluation runs on the network as it is at the end of its epoch
    at = [
        (epoch + 1) * steps_per_epoch if phase == "eval" else step
        for epoch, step, phase, *_ in (records[i] for i in delivered.tolist())
    ]
    segment_of = timeline.segment_indices(at)
    offset = 0.0
    for segment_index, segment in enumerate(timeline.segments):
        positions = delivered[segment_of == segment_index].tolist()
        if not positions:
            continue
        model = NetworkModel(segment.topology, tx_ports=scenario.network.tx_ports, seed=seed)
        part = time_records(
            [records[i] for i in positions], model, batch_of_step=batch_of_step, compute=compute
        )
        t_start[positions] = part.t_start + offset
        t_end[positions] = part.t_end + offset
        queue_s[positions] = part.queue_s
        attempts[positions] = part.attempts
        for epoch, seconds in part.epoch_train_s.items():
            epoch_train_s[epoch] = epoch_train_s.get(epoch, 0.0) + seconds
        offset += sum(part.epoch_train_s.values())
    return RunTiming(
        t_start=t_start,
        t_end=t_end,
        queue_s=queue_s,
        epoch_train_s=epoch_train_s,
        attempts=attempts,
    )


_PHASE_RANK = {"forward": 0, "backward": 1, "eval": 2}


def _record_order(row: ExchangeRow) -> tuple:
    """A deterministic order of records, the same whichever processes made them."""
    epoch, step, phase, src, dst = row[:5]
    return (epoch, phase == "eval", step, _PHASE_RANK[phase], node_key(src), node_key(dst))
