"""Benchmark: the batched executor against the fully vectorised reference, and where its time goes.

``--reference`` trains each variant of a scenario (default ``scale_1000``;
as shipped, and with the gate set to ``none``) with the batched executor,
every message recorded as in a run, and with
:class:`~innet.testing.reference.VectorisedReference` (the same modules and weights as
one autograd graph, stacked by shape, one backward and one Adam step), from
the same initial weights on the same batches. The two alternate step by step,
so both see the same machine; it prints the median milliseconds per training
step after ``--warmup`` steps, their ratio batched / reference, the median of
the per-step ratios (``paired``: steady on a busy machine, where a slow spell
hits both sides of a step) and the largest difference of their task losses.

``--profile`` times the stages of the batched executor's training step
(forward, the weights each chunk takes, gates and their per-node noise,
records, the per-level backward calls, gradients given back to the stacks,
the optimiser) by wrapping those functions for the run (a wrapper costs about
a microsecond a call; a stage's time includes the stages inside it) and prints
the median milliseconds per step of each.

    python benchmarks/bench_reference.py --reference [--scenario scale_1000] [--steps 20]
    python benchmarks/bench_reference.py --profile [--variants dense dijkstra] [--steps 10]

``--variants`` limits either mode to some of the scenario's variants;
``--warmup`` steps (default 3) run before the timed ``--steps``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import statistics
import time
from collections import defaultdict

import numpy as np
import torch

from innet.app.runner import configure_torch
from innet.app.scenario import find_scenario, load_scenario
from innet.core.errors import InnetError
from innet.core.events import step_plan
from innet.core.records import ExchangeLog
from innet.core.topology import load_topology
from innet.core.transport import InProcessTransport, RecordingTransport
from innet.families.inl.executors.batched import BatchedExecutor
from innet.families.inl.inputs import load_inputs
from innet.families.inl.trainer import module_specs, variant_timeline
from innet.testing.reference import VectorisedReference

STAGES = [
    ("train_step", "BatchedExecutor.train_step"),
    ("  forward", "BatchedExecutor._forward"),
    ("    weights taken per chunk (_Stack.take)", "_Stack.take"),
    ("    gates (_gate)", "BatchedExecutor._gate"),
    ("      noise, one draw per node (_noise)", "BatchedExecutor._noise"),
    ("  records (_record)", "BatchedExecutor._record"),
    ("  backward (_backward)", "BatchedExecutor._backward"),
    ("    autograd (torch.autograd.backward)", "torch.autograd.backward"),
    ("    gradients into the stacks (give_back)", "_Weights.give_back"),
    ("  optimiser (StackedAdam.step)", "StackedAdam.step"),
]
"""A stage's label and the function timed for it."""


def _variants(scenario_name: str, names: list[str] | None, gates: list[str]):
    """(label, plan, specs, lr, beta, batch size) per variant and gate, and the inputs."""
    loaded = load_scenario(find_scenario(scenario_name))
    scenario = loaded.scenario
    topology = load_topology(loaded.topology_path)
    inputs = load_inputs(scenario.data, topology, seed=0)
    known = [variant.name for variant in loaded.variants]
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        raise InnetError(f"--variants: {scenario.name} has no variant {unknown[0]!r} "
                         f"(it has: {', '.join(known)})")  # fmt: skip
    cases = []
    for gate in gates:
        for variant in loaded.variants:
            if names is not None and variant.name not in names:
                continue
            if gate == "none" and variant.gate.kind == "gaussian" and variant.gate.beta > 0:
                continue  # with no rate, beta does nothing: the same as its beta = 0 variant
            plan = variant_timeline(scenario, variant, topology, inputs.n_train).segments[0].plan
            specs = module_specs([plan], variant, inputs)
            if gate == "none":
                specs = {n: dataclasses.replace(s, gate_kind="none") for n, s in specs.items()}
            label = variant.name if gate == "as shipped" else f"{variant.name}, gate none"
            training = variant.training
            cases.append((label, plan, specs, training.lr, variant.gate.beta, training.batch_size))
    return scenario, topology, inputs, cases


def _batched(plan, specs, inputs, topology, lr: float, beta: float):
    recorder = RecordingTransport(InProcessTransport(), ExchangeLog(topology.graph.nodes))
    executor = BatchedExecutor(
        plan=plan, specs=specs, seed=0, transport=recorder, views=inputs.views,
        labels=inputs.labels, lr=lr, beta=beta,
    )  # fmt: skip
    step = step_plan(plan, frozenset(), topology.sensors)

    def train(number: int, index: np.ndarray) -> float:
        recorder.log.begin("train", 0, number, len(index))
        loss = executor.train_step(index, step)
        recorder.log.end()
        return loss

    return train


def reference(scenario_name: str, names: list[str] | None, steps: int, warmup: int) -> None:
    scenario, topology, inputs, cases = _variants(scenario_name, names, ["as shipped", "none"])
    print(f"scenario {scenario.name}: {len(topology.graph)} nodes; median of {steps} steps "
          f"after {warmup} warm-up steps, the two alternating step by step")  # fmt: skip
    print(f"{'variant':22s} {'nodes':>5s} {'links':>5s} {'levels':>6s} {'reference ms':>12s} "
          f"{'batched ms':>10s} {'ratio':>8s} {'paired':>8s} {'max |loss diff|':>15s}")  # fmt: skip
    for label, plan, specs, lr, beta, size in cases:
        model = VectorisedReference(plan=plan, specs=specs, seed=0, views=inputs.views,
                                    labels=inputs.labels[0], lr=lr, beta=beta)  # fmt: skip
        batched = _batched(plan, specs, inputs, topology, lr, beta)
        rng = np.random.default_rng(0)
        times: dict[str, list[float]] = {"reference": [], "batched": []}
        differences = []
        for number in range(warmup + steps):
            index = rng.choice(inputs.n_train, size, replace=False)
            start = time.perf_counter()
            mine = model.train_step(index)
            middle = time.perf_counter()
            theirs = batched(number, index)
            end = time.perf_counter()
            differences.append(abs(mine - theirs))
            if number >= warmup:
                times["reference"].append(middle - start)
                times["batched"].append(end - middle)
        ref_ms, batched_ms = (1e3 * statistics.median(t) for t in times.values())
        paired = statistics.median(b / r for r, b in zip(*times.values(), strict=True))
        print(f"{label:22s} {len(plan.forward_order()):5d} {len(plan.edges):5d} "
              f"{model.levels:6d} {ref_ms:12.1f} {batched_ms:10.1f} {batched_ms / ref_ms:8.2f} "
              f"{paired:8.2f} {max(differences):15.1e}")  # fmt: skip


def profile(scenario_name: str, names: list[str] | None, steps: int, warmup: int) -> None:
    from innet.families.inl.executors import batched as module
    from innet.families.inl.executors import stacked_optim

    owners = {"BatchedExecutor": module.BatchedExecutor, "_Stack": module._Stack,
              "_Weights": module._Weights, "torch.autograd": torch.autograd,
              "StackedAdam": stacked_optim.StackedAdam}  # fmt: skip
    spent: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    restore = []
    for label, name in STAGES:
        owner_name, attribute = name.rsplit(".", 1)
        owner = owners[owner_name]
        original = inspect.getattr_static(owner, attribute)
        restore.append((owner, attribute, original))
        setattr(owner, attribute, _timed(original, label, spent, calls))
    try:
        scenario, topology, inputs, cases = _variants(scenario_name, names, ["as shipped"])
        for label, plan, specs, lr, beta, size in cases:
            batched = _batched(plan, specs, inputs, topology, lr, beta)
            rng = np.random.default_rng(0)
            per_step: dict[str, list[float]] = defaultdict(list)
            for number in range(warmup + steps):  # the first step builds the schedule
                spent.clear()
                calls.clear()
                batched(number, rng.choice(inputs.n_train, size, replace=False))
                for stage, seconds in spent.items():
                    if number >= warmup:
                        per_step[stage].append(seconds)
            print(f"\n{scenario.name} {label}: {len(plan.forward_order())} nodes, "
                  f"{len(plan.edges)} links; median ms per step over {steps} steps")  # fmt: skip
            for stage, _ in STAGES:
                if stage in per_step:
                    median = 1e3 * statistics.median(per_step[stage])
                    print(f"  {stage:44s} {median:7.1f} ms {calls[stage]:5d} calls")
    finally:
        for owner, attribute, original in restore:
            setattr(owner, attribute, original)


def _timed(original, label: str, spent: dict[str, float], calls: dict[str, int]):
    """``original`` (a function or a staticmethod) adding its time to ``spent[label]``."""
    function = original.__func__ if isinstance(original, staticmethod) else original

    @functools.wraps(function)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - start
            calls[label] += 1

    return staticmethod(timed) if isinstance(original, staticmethod) else timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--reference", action="store_true", help="time batched against reference")
    mode.add_argument("--profile", action="store_true", help="profile the batched step")
    parser.add_argument("--scenario", default="scale_1000")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--variants", nargs="+", default=None, help="default: every variant")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")
    configure_torch()  # as a run sets torch
    try:
        if args.reference:
            reference(args.scenario, args.variants, args.steps, args.warmup)
        else:
            profile(args.scenario, args.variants, args.steps, args.warmup)
    except (InnetError, ValueError) as error:  # the scenario named, or what it asks for
        parser.error(str(error))


if __name__ == "__main__":
    main()
