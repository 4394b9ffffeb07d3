"""Reported rates: the estimators wired to the gates, the executor, the trainer, the report."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from innet.core.plans import Plan
from innet.core.records import ExchangeLog
from innet.core.transport import InProcessTransport, RecordingTransport
from innet.families.inl.executors import EvalSums
from innet.families.inl.executors.per_node import PerNodeExecutor
from innet.families.inl.gates import GateOutput, RateStats, make_gate
from innet.families.inl.gates.discrete import discrete_rate_bits
from innet.families.inl.gates.gaussian import LOGVAR_BOUND
from innet.families.inl.modules import ModuleSpec
from innet.families.inl.report import rate_reduction
from innet.families.inl.trainer import fusion_input_estimate, rate_metrics
from innet.families.inl.wire import message_bits_per_sample
from innet.info import entropy, mixture_mutual_information, mutual_information

D = 4
N_TEST = 4000
EVAL_BATCH = 512  # 4000 = 7 full batches and one of 416


def set_logvar(gate, logvar: float) -> None:  # noqa: ANN001
    """A constant log-variance ``logvar`` through the gate's tanh squashing."""
    with torch.no_grad():
        gate.logvar.weight.zero_()
        gate.logvar.bias.fill_(LOGVAR_BOUND * math.atanh(logvar / LOGVAR_BOUND))


def identity_executor(z_test: torch.Tensor, noise_std: float, mu_scale: float = 1.0,
                      wire: str = "float32", bracket: int = 256) -> PerNodeExecutor:  # fmt: skip
    """One sensor whose latent is its view ``z`` exactly, and a Gaussian gate ``T = c z + n eps``.

    The encoder ``Linear(D, 2D) -> ReLU -> Linear(2D, D)`` is set to ``relu(z) - relu(-z) = z``.
    """
    dim = z_test.shape[1]
    plan = Plan("hop", "f", (("s", "f"),))
    common = dict(latent_dim=dim, hidden=2 * dim, aggregator="sum", gate_kind="gaussian",
                  n_classes=2)  # fmt: skip
    specs = {
        "s": ModuleSpec(node="s", is_fusion=False, view_dim=dim, n_received=0, **common),
        "f": ModuleSpec(node="f", is_fusion=True, view_dim=None, n_received=1, **common),
    }
    labels = (torch.zeros(2, dtype=torch.long), torch.zeros(len(z_test), dtype=torch.long))
    recorder = RecordingTransport(InProcessTransport(), ExchangeLog(["s", "f"]))
    executor = PerNodeExecutor(
        plan=plan, specs=specs, seed=0, transport=recorder,
        views={"s": (torch.zeros(2, dim), z_test)}, labels=labels, lr=0.1,
        wire_forward=wire, bracket_samples=bracket,
    )  # fmt: skip
    module = executor.modules["s"]
    eye = torch.eye(dim)
    with torch.no_grad():
        first, _, second = module.encoder
        first.weight.copy_(torch.cat([eye, -eye]))
        first.bias.zero_()
        second.weight.copy_(torch.cat([eye, -eye], dim=1))
        second.bias.zero_()
        module.gate.mu.weight.copy_(mu_scale * eye)
        module.gate.mu.bias.zero_()
    set_logvar(module.gate, math.log((mu_scale * noise_std) ** 2))
    return executor


def evaluate(executor: PerNodeExecutor, n: int, batch: int = EVAL_BATCH) -> EvalSums:
    total = EvalSums()
    log = executor.transport.log
    for number, start in enumerate(range(0, n, batch)):
        index = np.arange(start, min(start + batch, n))
        log.begin("eval", 0, number, len(index))
        total.add(executor.evaluate_batch(index))
        log.end()
    return total


def gaussian_inputs(n: int = N_TEST, dim: int = D, s: float = 1.0, seed: int = 0) -> torch.Tensor:
    return s * torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


# --- the Gaussian gate ---------------------------------------------------------------------


@pytest.mark.parametrize(("s", "n"), [(1.0, 0.5), (2.0, 1.0), (1.0, 2.0)])
def test_gaussian_gate_rate_against_the_true_mutual_information(s: float, n: float) -> None:
    """Z ~ N(0, s² I), T = Z + n eps: I(Z;T) = (D/2) log2(1 + s²/n²), side by side.

    Gaussian inputs are where moment matching is exact: the moment-matched bound
    is within 3% of the true value (the sample covariance of 4,000 inputs; its
    relative error per dimension is about sqrt(2/4000) = 2%). The reported rate,
    the Monte Carlo information of the mixture over 256 subsampled inputs (at
    most log2 256 = 8 bits, here well below), lies in its bracket and within
    0.3 bits of the population value (finite n pulls the mixture's information
    below it as it nears log2 n).
    """
    true = D / 2 * math.log2(1 + s**2 / n**2)
    executor = identity_executor(gaussian_inputs(s=s), noise_std=n)
    estimate = evaluate(executor, N_TEST).rate_stats["s"].estimate()
    print(f"\ns={s} n={n}: true I(Z;T) {true:.4f} bits, reported {estimate.rate_bits:.4f} "
          f"± {estimate.stderr_bits:.4f}, bracket [{estimate.bracket_lower_bits:.4f}, "
          f"{estimate.bracket_upper_bits:.4f}] (n={estimate.bracket_n}), moment-matched "
          f"{estimate.moment_upper_bits:.4f}, VIB KL {estimate.vib_kl_bits:.4f}")  # fmt: skip
    assert estimate.estimator == "mixture_mc"
    assert estimate.moment_upper_bits == pytest.approx(true, rel=0.03)
    assert estimate.rate_bits == pytest.approx(true, abs=0.3)
    assert estimate.bracket_lower_bits <= estimate.rate_bits <= estimate.bracket_upper_bits
    assert 0 < estimate.stderr_bits < 0.1 and not estimate.saturated
    assert not estimate.capped and estimate.ceiling_bits == 32 * D
    assert estimate.bracket_n == 256 and not estimate.bracket_saturated
    assert estimate.bracket_lower_bits - 0.25 <= true <= estimate.bracket_upper_bits + 0.25
    # the VIB penalty is something else: KL to N(0, I) depends on s and n, not on s/n only
    kl = D / 2 * (s**2 + n**2 - 1 - math.log(n**2)) / math.log(2)
    assert estimate.vib_kl_bits == pytest.approx(kl, rel=0.05)


def test_clustered_latents_make_the_moment_bound_loose_not_the_reported_rate() -> None:
    """Latents in 4 tight, far-apart clusters: the entropy of the cluster label, about 2 bits.

    The information of the subsample's mixture is exactly the entropy of the
    cluster frequencies among the subsampled inputs; the moment-matched bound
    is far above it.
    """
    centres = 30.0 * torch.randn(4, D, generator=torch.Generator().manual_seed(1))
    z = centres.repeat(N_TEST // 4, 1)
    executor = identity_executor(z, noise_std=0.3)
    estimate = evaluate(executor, N_TEST).rate_stats["s"].estimate()
    kept = np.arange(N_TEST)[executor._bracket_keep] % 4  # the cluster of each kept input
    label_entropy = float(entropy(np.bincount(kept, minlength=4) / len(kept)))
    assert estimate.rate_bits == pytest.approx(label_entropy, abs=1e-4)
    assert estimate.bracket_lower_bits == pytest.approx(label_entropy, abs=1e-4)
    assert estimate.moment_upper_bits > 4 * estimate.rate_bits


def test_a_rate_above_log2_n_is_reported_saturated() -> None:
    """A near-noiseless 4-dimensional gate carries ~40 bits; 256 inputs show at most 8."""
    executor = identity_executor(gaussian_inputs(), noise_std=0.001, mu_scale=100.0)
    estimate = evaluate(executor, N_TEST).rate_stats["s"].estimate()
    assert estimate.saturated and estimate.bracket_saturated
    assert estimate.rate_bits <= math.log2(256) + 1e-12
    assert estimate.moment_upper_bits > 30
    row = rate_metrics({"s": estimate}, bracket=True)
    assert row["rate_saturated_nodes"] == 1 and row["rate_bracket_saturated_nodes"] == 1


def test_without_the_subsample_estimators_the_gaussian_rate_is_not_reported() -> None:
    """Epochs before the final one: NaN rate, so latent_rate_bits is empty, not a bound."""
    estimate = evaluate(identity_executor(gaussian_inputs(n=600), 0.5), 600).rate_stats["s"]
    early = estimate.estimate(bracket=False)
    assert early.estimator == "not_estimated" and math.isnan(early.rate_bits)
    assert early.moment_upper_bits is not None
    row = rate_metrics({"s": early}, bracket=False)
    assert row["latent_rate_bits"] is None
    assert row["rate_moment_upper_bits"] == pytest.approx(early.moment_upper_bits)


def test_reported_gaussian_rate_is_invariant_under_rescaling() -> None:
    """(mu, sigma) -> (c mu, c sigma) leaves I(Z;T) and the reported rate unchanged."""
    z = gaussian_inputs()
    reported, vib = [], []
    for c in (1.0, 0.25, 8.0):
        estimate = evaluate(identity_executor(z, 0.7, mu_scale=c), N_TEST).rate_stats["s"]
        reported.append(estimate.estimate())
        vib.append(reported[-1].vib_kl_bits)
    for other in reported[1:]:
        assert other.rate_bits == pytest.approx(reported[0].rate_bits, rel=1e-4)
        assert other.bracket_lower_bits == pytest.approx(reported[0].bracket_lower_bits, rel=1e-3)
        assert other.bracket_upper_bits == pytest.approx(reported[0].bracket_upper_bits, rel=1e-3)
    assert max(vib) > 10 * min(vib)  # the VIB KL is not invariant: it is not the rate


def test_rate_of_the_set_streams_over_batches_and_merges_across_processes() -> None:
    z = gaussian_inputs(n=1000)
    whole = evaluate(identity_executor(z, 0.5), 1000, batch=1000).rate_stats["s"].estimate()
    batched = evaluate(identity_executor(z, 0.5), 1000, batch=128)
    # another process's part: pickled on the way, merged on the leader
    part = pickle.loads(pickle.dumps(batched))
    merged = EvalSums.merge([part, EvalSums(samples=1000)])
    estimate = merged.rate_stats["s"].estimate()
    assert estimate.rate_bits == pytest.approx(whole.rate_bits, rel=1e-9)
    assert estimate.bracket_lower_bits == pytest.approx(whole.bracket_lower_bits, rel=1e-9)
    assert estimate.vib_kl_bits == pytest.approx(whole.vib_kl_bits, rel=1e-6)


# --- the discrete gate ---------------------------------------------------------------------


CHANNEL = np.array(  # p(t | x) for 4 inputs, 4 codewords
    [[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.5, 0.5]]
)
INPUT_LAW = np.array([0.4, 0.3, 0.2, 0.1])


def discrete_outputs(batches: list[np.ndarray]) -> tuple[RateStats, list[float]]:
    """What a discrete gate whose p(t|x) is CHANNEL row x outputs, fed batch by batch."""
    stats = RateStats("discrete", message_bits_per_sample("index", 4, 4))
    batch_rates = []
    for inputs in batches:
        probs = torch.tensor(CHANNEL[inputs], dtype=torch.float32).unsqueeze(1)  # one group
        out = GateOutput(
            t=torch.zeros(len(inputs), 4), rate_bits=discrete_rate_bits(probs), probs=probs
        )
        stats.update(out)
        batch_rates.append(float(out.rate_bits))
    return stats, batch_rates


def test_discrete_rate_of_the_evaluation_set_is_the_exact_mutual_information() -> None:
    # 1,000 inputs in the proportions INPUT_LAW, sorted: batches see very different mixes
    inputs = np.repeat(np.arange(4), (1000 * INPUT_LAW).astype(int))
    batches = np.array_split(inputs, 7)
    stats, batch_rates = discrete_outputs(batches)
    exact = mutual_information(INPUT_LAW[:, None] * CHANNEL)
    estimate = stats.estimate()
    print(f"\nexact I(X;T) {exact:.6f} bits; evaluation set {estimate.rate_bits:.6f}; "
          f"mean of batch rates {np.mean(batch_rates):.6f}")  # fmt: skip
    assert estimate.estimator == "batch_mi" and estimate.ceiling_bits == 2
    assert estimate.rate_bits == pytest.approx(exact, abs=1e-5)
    rows = CHANNEL[inputs]
    assert estimate.rate_bits == pytest.approx(mixture_mutual_information(rows), abs=1e-5)
    # the mean of per-batch rates is another (wrong) number: a batch of one input has rate 0
    assert abs(np.mean(batch_rates) - exact) > 0.1


# --- caps and the none gate ----------------------------------------------------------------


def test_no_reported_rate_exceeds_the_bits_the_message_carries() -> None:
    """A 1-value int8 message carries 8 bits; an almost noiseless wide gate would show more."""
    z = gaussian_inputs(n=2000, dim=1, s=1000.0)
    executor = identity_executor(z, noise_std=0.06, wire="int8", bracket=2000)
    estimate = evaluate(executor, 2000).rate_stats["s"].estimate()
    assert estimate.estimate_bits > 8  # up to log2 2000 = 11 bits from 2,000 inputs
    assert estimate.capped and estimate.rate_bits == estimate.ceiling_bits == 8
    assert estimate.bracket_upper_bits <= 8
    row = rate_metrics({"s": estimate}, bracket=True)
    assert row["latent_rate_bits"] == 8 and row["rate_capped_nodes"] == 1


def test_none_gate_reports_the_ceiling_and_says_so() -> None:
    gate = make_gate("none", 3, generator=torch.Generator())
    stats = RateStats("none", message_bits_per_sample("float16", 3)).update(gate(torch.ones(5, 3)))
    estimate = stats.estimate()
    assert estimate.estimator == "ceiling" and estimate.capped and estimate.estimate_bits is None
    assert estimate.rate_bits == 48


def test_rate_metrics_sum_over_senders() -> None:
    gauss = RateStats("gaussian", 64.0).update(
        GateOutput(
            t=torch.zeros(3, 2),
            rate_bits=torch.tensor(2.0),
            mu=torch.randn(3, 2),
            sigma=torch.ones(3, 2),
        ),  # fmt: skip
        keep=np.array([True, True, False]),
    )
    ident = RateStats("none", 64.0).update(
        GateOutput(t=torch.zeros(3, 2), rate_bits=torch.tensor(0.0))
    )
    estimates = {"a": gauss.estimate(), "b": ident.estimate()}
    row = rate_metrics(estimates, bracket=True)
    assert row["latent_rate_bits"] == pytest.approx(estimates["a"].rate_bits + 64)
    assert row["vib_kl_bits"] == pytest.approx(2.0)
    assert row["rate_ceiling_bits"] == 128 and row["rate_capped_nodes"] == 1
    assert row["rate_bracket_n"] is None  # a none gate's rate is no information: no bracket
    alone = rate_metrics({"a": estimates["a"]}, bracket=True)
    assert alone["rate_bracket_n"] == 2
    assert alone["rate_bracket_lower_bits"] <= alone["latent_rate_bits"]
    assert alone["latent_rate_bits"] <= alone["rate_bracket_upper_bits"]
    assert rate_metrics(estimates, bracket=False)["rate_bracket_lower_bits"] is None
    assert rate_metrics({"b": estimates["b"]}, bracket=False)["vib_kl_bits"] is None


# --- what reaches the fusion node ----------------------------------------------------------


def clustered_stats(centres: np.ndarray, labels: np.ndarray, seed: int) -> RateStats:
    """A Gaussian sender whose mu is its input's cluster centre (tight noise), all kept."""
    mu = torch.tensor(centres[labels], dtype=torch.float64)
    out = GateOutput(t=mu, rate_bits=torch.tensor(0.0), mu=mu, sigma=torch.full(mu.shape, 0.2))
    return RateStats("gaussian", 64.0).update(out, keep=np.ones(len(labels), dtype=bool))


def test_fusion_input_counts_shared_information_once() -> None:
    """Two senders reveal the same 4-way cluster label: 2 bits each, 4 summed, 2 jointly.

    A third sender with an independent 2-way label adds its 1 bit: the joint is 3 bits.
    """
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 32)  # 256 inputs, 8 groups: 4 clusters x 2 halves
    clusters, halves = labels // 2, labels % 2
    far = 40.0 * rng.normal(size=(4, 2))
    evaluation = EvalSums(samples=256)
    evaluation.rate_stats = {
        "a": clustered_stats(far, clusters, 1),
        "b": clustered_stats(far, clusters, 2),
        "c": clustered_stats(40.0 * rng.normal(size=(2, 2)), halves, 3),
    }
    two = Plan("dense", "f", (("a", "f"), ("b", "f")))
    joint = fusion_input_estimate(evaluation, two)
    estimates = {node: stats.estimate() for node, stats in evaluation.rate_stats.items()}
    assert sum(estimates[node].rate_bits for node in "ab") == pytest.approx(4.0, abs=1e-3)
    assert joint is not None and joint.rate_bits == pytest.approx(2.0, abs=1e-3)
    assert joint.ceiling_bits == 128
    three = Plan("dense", "f", (("a", "f"), ("b", "f"), ("c", "f")))
    assert fusion_input_estimate(evaluation, three).rate_bits == pytest.approx(3.0, abs=1e-3)
    row = rate_metrics(estimates, bracket=True, fusion_input=joint)
    assert row["fusion_input_rate_bits"] == pytest.approx(2.0, abs=1e-3)
    assert row["fusion_input_lower_bits"] <= row["fusion_input_rate_bits"]
    assert row["fusion_input_rate_bits"] <= row["fusion_input_upper_bits"]
    evaluation.rate_stats["b"] = RateStats("none", 64.0)  # a child without a gate: no estimate
    assert fusion_input_estimate(evaluation, two) is None


# --- rate reductions in the report ---------------------------------------------------------


def summary(rates: list[float], lower: list[float], upper: list[float], gate: str = "gaussian"):  # noqa: ANN201
    return {
        "gate": gate,
        "latent_rate_bits": float(np.mean(rates)),
        "latent_rate_bits_per_seed": rates,
        "rate_bracket_lower_bits_per_seed": lower,
        "rate_bracket_upper_bits_per_seed": upper,
    }


def test_rate_reduction_lies_in_the_range_its_brackets_allow() -> None:
    a = summary([100.0, 120.0, 90.0], [80.0, 100.0, 70.0], [110.0, 130.0, 95.0])
    b = summary([50.0, 66.0, 40.0], [45.0, 60.0, 35.0], [70.0, 80.0, 60.0])
    result = rate_reduction(a, b)
    point = 1 - np.mean(b["latent_rate_bits_per_seed"]) / np.mean(a["latent_rate_bits_per_seed"])
    assert result["rate_reduction"] == pytest.approx(point)
    low, high = result["rate_reduction_range"]
    assert low == pytest.approx(1 - np.mean([70, 80, 60]) / np.mean([80, 100, 70]))
    assert high == pytest.approx(1 - np.mean([45, 60, 35]) / np.mean([110, 130, 95]))
    assert low <= result["rate_reduction"] <= high
    paired = result["rate_reduction_paired"]
    geometric = 1 - math.exp(np.mean(np.log([0.5, 0.55, 40 / 90])))
    assert paired["reduction"] == pytest.approx(geometric)
    assert paired["reduction_ci_low"] <= paired["reduction"] <= paired["reduction_ci_high"] < 1


def test_no_rate_reduction_against_a_variant_without_a_gate() -> None:
    gated = summary([10.0, 12.0], [8.0, 9.0], [11.0, 13.0])
    ceiling = summary([512.0, 512.0], [512.0, 512.0], [512.0, 512.0], gate="none")
    for a, b in ((ceiling, gated), (gated, ceiling)):
        result = rate_reduction(a, b)
        assert result["rate_reduction"] is None and result["rate_reduction_range"] is None
        assert "no gate" in result["rate_reduction_note"]


def test_the_rate_figure_marks_log2_n_where_rates_were_estimated_on_n_inputs() -> None:
    """The dotted line at log2 n shows where a node's estimate saturates; none without one."""
    import pandas as pd
    from matplotlib.figure import Figure

    from innet.families.inl.report import _saturation_line

    rates = pd.DataFrame({"estimator": ["mixture_mc", "mixture_mc", "batch_mi"],
                          "bracket_n": [256, 256, 1]})  # fmt: skip
    ax = Figure().add_subplot()
    assert _saturation_line(ax, rates) == [8.0]
    (line,) = ax.lines
    assert line.get_ydata()[0] == 8.0 and "n = 256" in line.get_label()
    discrete_only = rates[rates["estimator"] == "batch_mi"]
    assert _saturation_line(Figure().add_subplot(), discrete_only) == []
