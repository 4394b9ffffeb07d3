"""Reported rates: the estimators wired to the gates, the executor, the trainer and the cap."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from innet.executors import EvalSums
from innet.executors.per_node import PerNodeExecutor
from innet.families.inl.trainer import rate_metrics
from innet.gates import LOGVAR_BOUND, GateOutput, RateStats, discrete_rate_bits, make_gate
from innet.info import mixture_mutual_information, mutual_information
from innet.modules import ModuleSpec
from innet.plans import Plan
from innet.records import ExchangeLog
from innet.transport import InProcessTransport, RecordingTransport
from innet.wire import message_bits_per_sample

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

    Tolerance: 3% of the true value (the sample covariance of 4,000 inputs;
    its relative error per dimension is about sqrt(2/4000) = 2%). The pairwise
    bracket (256 inputs, under log2 256 = 8 bits) brackets it within 0.25 bits.
    """
    true = D / 2 * math.log2(1 + s**2 / n**2)
    executor = identity_executor(gaussian_inputs(s=s), noise_std=n)
    estimate = evaluate(executor, N_TEST).rate_stats["s"].estimate()
    print(f"\ns={s} n={n}: true I(Z;T) {true:.4f} bits, reported {estimate.rate_bits:.4f}, "
          f"bracket [{estimate.bracket_lower_bits:.4f}, {estimate.bracket_upper_bits:.4f}] "
          f"(n={estimate.bracket_n}), VIB KL {estimate.vib_kl_bits:.4f}")  # fmt: skip
    assert estimate.estimator == "gaussian_upper_bound"
    assert estimate.rate_bits == pytest.approx(true, rel=0.03)
    assert not estimate.capped and estimate.ceiling_bits == 32 * D
    assert estimate.bracket_n == 256 and not estimate.bracket_saturated
    assert estimate.bracket_lower_bits - 0.25 <= true <= estimate.bracket_upper_bits + 0.25
    # the VIB penalty is something else: KL to N(0, I) depends on s and n, not on s/n only
    kl = D / 2 * (s**2 + n**2 - 1 - math.log(n**2)) / math.log(2)
    assert estimate.vib_kl_bits == pytest.approx(kl, rel=0.05)


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
    executor = identity_executor(z, noise_std=0.06, wire="int8")
    estimate = evaluate(executor, 2000).rate_stats["s"].estimate()
    assert estimate.estimate_bits > 8
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
    assert row["rate_bracket_n"] == 2
    assert rate_metrics(estimates, bracket=False)["rate_bracket_lower_bits"] is None
    assert rate_metrics({"b": estimates["b"]}, bracket=False)["vib_kl_bits"] is None
