"""Training one INL variant with one seed: the epoch loop, in one sitting.

:func:`fit` drives an executor (:mod:`innet.families.inl.executors`) through the epochs:
each epoch visits the training samples in an order drawn from ``(seed,
epoch)``, one synchronous step per batch on the plan the network allows at
that step (plans change on events; a step during which a link fails loses the
messages sent over it), then evaluates the test samples batch by batch on the
network as it is at the end of the epoch. Every message goes through the
recording transport, which writes the exchange log; each process's results
are merged on the leader.

Rates (on the evaluation set; see :class:`~innet.families.inl.gates.RateStats`):
``latent_rate_bits`` is the sum over sending nodes of each node's reported
rate (the Gaussian gate's Monte Carlo estimate of the information of the
empirical mixture over a subsample of ``n`` inputs, inside its pairwise
bracket; the discrete gate's mutual information over the set; the ``none``
gate's ceiling), each capped at the bits its message carries per sample.
The Gaussian gate's subsample estimators run after the final epoch only:
on earlier epochs its rate, and so ``latent_rate_bits``, is empty.
Every epoch: ``rate_moment_upper_bits`` the sum of the Gaussian gates'
moment-matched upper bounds (loose), ``vib_kl_bits`` the sum of their VIB
penalties (the training term, not a rate), ``rate_ceiling_bits`` the sum of
the ceilings, ``rate_capped_nodes`` how many nodes were capped. After the
final epoch: the sum's standard error and bracket (``rate_stderr_bits``,
``rate_bracket_*``), the saturated nodes, and the information reaching the
fusion node (``fusion_input_*``: the joint of the messages it receives,
estimated the same way; the sum over senders double counts what relays
re-encode).

:class:`InlTrainer` is what the ``inl`` family gives the runner: the plans of
each variant over the run, and :meth:`InlTrainer.train` for one (variant, seed).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from innet.core.config import LoadedScenario
from innet.core.errors import InnetError
from innet.core.events import Timeline, build_timeline
from innet.core.group import Group
from innet.core.plans import Plan
from innet.core.records import ExchangeLog
from innet.core.topology.model import Topology
from innet.core.training import Checkpoints, Trainer, TrainResult
from innet.core.transport import RecordingTransport
from innet.core.yamlio import FieldError
from innet.families.inl.config import InlScenario, ResolvedVariant, TrainingConfig
from innet.families.inl.executors import EvalSums, Executor
from innet.families.inl.executors.batched import BatchedExecutor, batched_unsupported
from innet.families.inl.executors.per_node import PerNodeExecutor
from innet.families.inl.gates import BRACKET_METRICS, FUSION_METRICS, RateEstimate
from innet.families.inl.gates.gaussian import mixture_estimate
from innet.families.inl.inputs import NodeInputs, load_inputs
from innet.families.inl.modules import ModuleSpec
from innet.families.inl.tasks import Classification, Task

__all__ = [
    "FitResult",
    "fit",
    "fusion_input_estimate",
    "rate_metrics",
    "make_executor",
    "module_specs",
    "variant_timeline",
    "InlTrainer",
]


@dataclass
class FitResult:
    """What :func:`fit` measured, on the leader: per-epoch metrics and the final rates."""

    metrics: list[dict[str, Any]]
    node_rates: dict[str, float]  # bits per sample of each sending node, final evaluation
    log: ExchangeLog
    node_estimates: dict[str, RateEstimate] | None = None  # the same, with every estimator


@dataclass
class _Progress:
    """What the epoch loop carries from one epoch to the next, besides the executor."""

    epoch: int = 0  # the next epoch to train
    step: int = 0  # training steps so far
    metrics: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # the leader's
    estimates: dict[str, RateEstimate] = dataclasses.field(default_factory=dict)  # last epoch's


def fit(
    executor: Executor,
    recorder: RecordingTransport,
    timeline: Timeline,
    inputs: NodeInputs,
    training: TrainingConfig,
    *,
    seed: int,
    group: Group,
    task: Task | None = None,
    on_epoch: Callable[[int], None] | None = None,
    checkpoints: Checkpoints | None = None,
) -> FitResult | None:
    """Train for ``training.epochs`` epochs; the leader gets the result, others None.

    With ``checkpoints``: start from the state :meth:`Checkpoints.resume` gives,
    if any, and save this process's state after each epoch it says is due
    (:func:`_fit_state`); a resumed fit gives exactly what an uninterrupted one does.
    """
    measure = task or Classification()
    progress = _Progress()
    saved = checkpoints.resume() if checkpoints is not None else None
    if saved is not None:
        progress = _resume(saved, executor, recorder)
    step, metrics, estimates = progress.step, progress.metrics, progress.estimates
    for epoch in range(progress.epoch, training.epochs):
        executor.set_progress(epoch / max(training.epochs - 1, 1))
        order = np.random.default_rng([seed, epoch]).permutation(inputs.n_train)
        losses = []
        for start in range(0, inputs.n_train, training.batch_size):
            index = order[start : start + training.batch_size]
            loss = _train_step(executor, recorder, timeline, epoch, step, index)
            if loss is not None:
                losses.append(loss)
            step += 1
        evaluation = _evaluate(executor, recorder, timeline, epoch, step, inputs, training)
        gathered = group.gather((losses, evaluation))
        if gathered is not None:
            final = epoch == training.epochs - 1
            row, estimates = _epoch_row(gathered, executor.plan, measure, final)
            metrics.append({"epoch": epoch, **row})
        if checkpoints is not None and checkpoints.due(epoch):
            done = _Progress(epoch + 1, step, metrics, estimates)
            checkpoints.save(epoch, _fit_state(done, executor, recorder))
        if on_epoch is not None:
            on_epoch(epoch)
    logs = group.gather(recorder.log)
    if logs is None:
        return None
    rates = {node: estimate.rate_bits for node, estimate in estimates.items()}
    return FitResult(
        metrics=metrics, node_rates=rates, log=ExchangeLog.merge(logs), node_estimates=estimates
    )


def _fit_state(
    progress: _Progress, executor: Executor, recorder: RecordingTransport
) -> dict[str, Any]:
    """What a checkpoint keeps after an epoch: the last finished ``epoch``, the step
    counter, the metrics rows and rate estimates so far (the leader's), this
    process's exchange log and its executor's state (:meth:`Executor.state_dict`)."""
    return {
        "epoch": progress.epoch - 1,
        "step": progress.step,
        "metrics": progress.metrics,
        "estimates": progress.estimates,
        "log": recorder.log,
        "executor": executor.state_dict(),
    }


def _resume(state: dict[str, Any], executor: Executor, recorder: RecordingTransport) -> _Progress:
    """Put :func:`_fit_state`'s ``state`` back: the executor's and the log; the loop's progress."""
    executor.load_state_dict(state["executor"])
    recorder.log = state["log"]
    return _Progress(
        state["epoch"] + 1, state["step"], list(state["metrics"]), dict(state["estimates"])
    )


def _train_step(
    executor: Executor,
    recorder: RecordingTransport,
    timeline: Timeline,
    epoch: int,
    step: int,
    index: np.ndarray,
) -> float | None:
    """One training step on the plan of ``step``, its messages over failing links lost."""
    _follow(executor, timeline, step)
    plan = timeline.step_plan(step)
    recorder.drop(plan.lost)
    recorder.log.begin("train", epoch, step, len(index))
    loss = executor.train_step(index, plan)
    recorder.log.end()
    return loss


def _evaluate(
    executor: Executor,
    recorder: RecordingTransport,
    timeline: Timeline,
    epoch: int,
    step: int,
    inputs: NodeInputs,
    training: TrainingConfig,
) -> EvalSums:
    """This process's sums over the test samples, on the network as it is at ``step``."""
    recorder.drop(frozenset())
    _follow(executor, timeline, step)
    n_test = len(inputs.labels[1])
    evaluation = EvalSums()
    for number, start in enumerate(range(0, n_test, training.eval_batch_size)):
        index = np.arange(start, min(start + training.eval_batch_size, n_test))
        recorder.log.begin("eval", epoch, number, len(index))
        evaluation.add(executor.evaluate_batch(index))
        recorder.log.end()
    return evaluation


def _epoch_row(
    gathered: list[tuple[list[float], EvalSums]], plan: Plan, task: Task, final: bool
) -> tuple[dict[str, Any], dict[str, RateEstimate]]:
    """One epoch's metrics from every process's losses and sums; each sender's estimate."""
    losses = [value for part, _ in gathered for value in part]
    evaluation = EvalSums.merge(part for _, part in gathered)
    estimates = {  # in plan order, whichever process measured them
        node: evaluation.rate_stats[node].estimate(bracket=final)
        for node in plan.forward_order()
        if node in evaluation.rate_stats
    }
    fusion_input = fusion_input_estimate(evaluation, plan) if final else None
    row = {
        "train_loss": float(np.mean(losses)) if losses else float("nan"),
        **task.metrics(evaluation.metric_sums, evaluation.samples),
        **rate_metrics(estimates, bracket=final, fusion_input=fusion_input),
    }
    return row, estimates


def rate_metrics(
    estimates: dict[str, RateEstimate],
    *,
    bracket: bool,
    fusion_input: RateEstimate | None = None,
) -> dict[str, Any]:
    """One epoch's rate columns from each sending node's estimate (sums over senders).

    ``latent_rate_bits`` is None when a sender's rate was not estimated this
    epoch; ``rate_moment_upper_bits`` and ``vib_kl_bits`` when no sender has
    a Gaussian gate. The bracket of the sum (the sums of the ends) is None
    unless every sender has one (a ``none`` gate has no finite rate), and on
    every epoch but the final one; ``rate_stderr_bits`` is the root sum of the
    squared standard errors (independent draws per node); ``rate_bracket_n``
    is the smallest subsample of any node. ``fusion_input``: the estimate of
    the joint of the fusion node's inputs (:func:`fusion_input_estimate`).
    """
    values = list(estimates.values())
    rate = sum(e.rate_bits for e in values)
    row: dict[str, Any] = {
        "latent_rate_bits": None if math.isnan(rate) else rate,
        "rate_moment_upper_bits": _sum_or_none([e.moment_upper_bits for e in values]),
        "vib_kl_bits": _sum_or_none([e.vib_kl_bits for e in values]),
        "rate_ceiling_bits": sum(e.ceiling_bits for e in values),
        "rate_capped_nodes": sum(e.capped for e in values),
    }
    row.update(dict.fromkeys((*BRACKET_METRICS, *FUSION_METRICS)))
    bracketed = values and all(e.bracket_lower_bits is not None for e in values)
    if bracket and bracketed and row["latent_rate_bits"] is not None:
        row.update(_bracket_columns(values))
    if fusion_input is not None and not math.isnan(fusion_input.rate_bits):
        row.update(_fusion_columns(fusion_input))
    return row


def _bracket_columns(values: list[RateEstimate]) -> dict[str, Any]:
    """The bracket of the sum over senders: its ends, standard error, subsample, saturation."""
    errors = [e.stderr_bits for e in values if e.stderr_bits is not None]
    sizes = [e.bracket_n for e in values if e.bracket_n is not None]
    return {
        "rate_stderr_bits": math.sqrt(sum(x * x for x in errors)) if errors else None,
        "rate_saturated_nodes": sum(bool(e.saturated) for e in values),
        "rate_bracket_lower_bits": sum(e.bracket_lower_bits or 0.0 for e in values),
        "rate_bracket_upper_bits": sum(e.bracket_upper_bits or 0.0 for e in values),
        "rate_bracket_n": min(sizes) if sizes else None,
        "rate_bracket_saturated_nodes": sum(bool(e.bracket_saturated) for e in values),
    }


def _fusion_columns(estimate: RateEstimate) -> dict[str, Any]:
    """The ``fusion_input_*`` columns of the estimate of the fusion node's inputs."""
    return {
        "fusion_input_rate_bits": estimate.rate_bits,
        "fusion_input_stderr_bits": estimate.stderr_bits,
        "fusion_input_lower_bits": estimate.bracket_lower_bits,
        "fusion_input_upper_bits": estimate.bracket_upper_bits,
        "fusion_input_n": estimate.bracket_n,
        "fusion_input_saturated": estimate.saturated,
    }


def fusion_input_estimate(evaluation: EvalSums, plan: Plan) -> RateEstimate | None:
    """The information in the messages reaching the fusion node, taken together.

    The fusion node's inputs are the Gaussian channels of its children (their
    noises independent given the input), so their joint is one Gaussian
    channel whose ``mu`` and ``sigma`` are the children's side by side; it is
    estimated like one node's (:func:`~innet.families.inl.gates.gaussian.mixture_estimate`, the
    ceiling the sum of the children's). None unless every child has a
    Gaussian gate and the subsample.
    """
    stats = [evaluation.rate_stats.get(child) for child in plan.children(plan.fusion)]
    gaussian = [s for s in stats if s is not None and s.kind == "gaussian"]
    rows = [row for row in (s.subsample() for s in gaussian) if row is not None]
    if not rows or len(rows) != len(stats) or len({len(mu) for mu, _ in rows}) != 1:
        return None
    joint = (np.hstack([mu for mu, _ in rows]), np.hstack([sigma for _, sigma in rows]))
    return mixture_estimate(joint, sum(s.ceiling_bits for s in gaussian))


def _sum_or_none(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) if present else None


def _follow(executor: Executor, timeline: Timeline, step: int) -> None:
    plan = timeline.segment_at(step).plan
    if plan is not executor.plan:
        executor.set_plan(plan)


def module_specs(
    plans: Sequence[Plan], variant: ResolvedVariant, inputs: NodeInputs
) -> dict[str, ModuleSpec]:
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
        node: ModuleSpec(
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


def make_executor(
    variant: ResolvedVariant,
    plans: Sequence[Plan],
    inputs: NodeInputs,
    seed: int,
    transport: RecordingTransport,
    device: torch.device | str = "cpu",
) -> Executor:
    """The executor of one (variant, seed), starting on ``plans[0]``, able to serve every plan.

    ``training.executor``: ``per_node``, ``batched``, or ``auto`` (batched
    whenever it can run the variant, see :mod:`innet.families.inl.executors`).
    """
    specs = module_specs(plans, variant, inputs)
    training, wire = variant.training, variant.wire
    common: dict[str, Any] = dict(
        plan=plans[0],
        specs=specs,
        seed=seed,
        transport=transport,
        views=inputs.views,
        labels=inputs.labels,
        lr=training.lr,
        optimizer=training.optimizer,
        beta=variant.gate.beta,
        device=device,
        wire_forward=wire.forward,
        wire_backward=wire.backward,
        bracket_samples=variant.gate.bracket_samples if variant.gate.kind == "gaussian" else 0,
    )
    if training.executor != PerNodeExecutor.name:
        reason = batched_unsupported(
            specs,
            optimizer=training.optimizer,
            wire_forward=wire.forward,
            wire_backward=wire.backward,
            transport=transport,
        )
        if reason is None:
            return BatchedExecutor(**common)
        if training.executor == BatchedExecutor.name:
            raise InnetError(
                f"variant {variant.name}: training.executor=batched cannot run {reason} "
                "(use auto or per_node)"
            )
    return PerNodeExecutor(
        **common,
        gate_groups=variant.gate.groups if variant.gate.kind == "discrete" else 1,
        tau_final=variant.gate.tau_final,
        codebook_sync=variant.gate.codebook_sync,
        train_codebook=variant.gate.codebook == "trained",
    )


def _inputs_of(plan: Plan) -> frozenset[tuple[str, int]]:
    return frozenset((node, len(plan.children(node))) for node in plan.forward_order())


def variant_timeline(
    scenario: InlScenario, variant: ResolvedVariant, topology: Topology, n_train: int
) -> Timeline:
    """The plans of a variant over the run, given the scenario's events."""
    return build_timeline(
        topology,
        variant.routing,
        variant.forward_message_bits(scenario.network.header_bytes),
        scenario.events,
        steps_per_epoch=math.ceil(n_train / variant.training.batch_size),
        epochs=variant.training.epochs,
        hop_cost_s=variant.hop_cost_s,
    )


def warn_full_batches(variants: Any, n_train: int) -> None:
    """A warning where ``training.batch_size`` exceeds the training set (one step per epoch)."""
    for batch in sorted({variant.training.batch_size for variant in variants}):
        if batch > n_train:
            warnings.warn(
                f"training.batch_size {batch} is larger than the {n_train} training samples: "
                "every step trains on all of them (one step per epoch)",
                stacklevel=2,
            )


class InlTrainer(Trainer):
    """The ``inl`` family's trainer for one scenario (see :class:`~innet.families.Trainer`)."""

    def __init__(self, loaded: LoadedScenario, topology: Topology) -> None:
        self.loaded, self.topology = loaded, topology
        self.scenario: InlScenario = loaded.scenario  # type: ignore[assignment]
        self.variants: dict[str, ResolvedVariant] = {v.name: v for v in loaded.variants}
        self._seed: int | None = None
        self._inputs: NodeInputs | None = None
        n_train = self.inputs(self.scenario.seed_list[0]).n_train  # data problems show first
        warn_full_batches(self.variants.values(), n_train)
        try:
            self.timelines = {
                name: variant_timeline(self.scenario, variant, topology, n_train)
                for name, variant in self.variants.items()
            }
        except FieldError as error:
            raise loaded.located(error) from None
        self._n_train = n_train

    def inputs(self, seed: int) -> NodeInputs:
        """The data of ``seed`` (one seed cached at a time: variants of a seed share it)."""
        if self._seed != seed or self._inputs is None:
            try:
                self._inputs = load_inputs(self.scenario.data, self.topology, seed)
            except FieldError as error:
                raise self.loaded.located(error) from None
            self._seed = seed
        return self._inputs

    def steps_per_epoch(self, variant: str) -> int:
        return math.ceil(self._n_train / self.variants[variant].training.batch_size)

    def epochs(self, variant: str) -> int:
        return self.variants[variant].training.epochs

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
        config = self.variants[variant]
        inputs = self.inputs(seed)
        timeline = self.timelines[variant]
        executor = make_executor(config, timeline.plans, inputs, seed, transport, device)
        result = fit(
            executor,
            transport,
            timeline,
            inputs,
            config.training,
            seed=seed,
            group=group,
            on_epoch=on_epoch,
            checkpoints=checkpoints,
        )
        flops = group.gather(executor.flops())
        if result is None or flops is None:
            return None
        estimates = result.node_estimates or {}
        rates = [
            {
                "variant": variant,
                "seed": seed,
                "node": node,
                "rate_bits": rate,
                **(dataclasses.asdict(estimates[node]) if node in estimates else {}),
            }
            for node, rate in result.node_rates.items()
        ]
        return TrainResult(
            metrics=result.metrics,
            flops={node: value for part in flops for node, value in part.items()},
            tables={
                "node_rates": rates,
                "executors": [{"variant": variant, "seed": seed, "executor": executor.name}],
            },
            log=result.log,
        )
