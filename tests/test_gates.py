"""Gates: closed-form rates, bounds, reproducible noise, and gradients."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from innet.core.errors import InnetError
from innet.families.inl.gates import GATES, make_gate
from innet.families.inl.gates.discrete import DiscreteGate, discrete_rate_bits
from innet.families.inl.gates.gaussian import LOGVAR_BOUND, GaussianGate, gaussian_kl_bits


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def inputs(batch: int = 64, dim: int = 6, seed: int = 100) -> torch.Tensor:
    return torch.randn(batch, dim, generator=generator(seed))


def codeword_indices(gate: DiscreteGate, t: torch.Tensor) -> torch.Tensor:
    """Which codeword of a one-group gate each row of ``t`` is (asserting that it is one)."""
    distances = torch.cdist(
        t.detach(), gate.codebook[0].detach(), compute_mode="donot_use_mm_for_euclid_dist"
    )
    assert torch.all(distances.min(dim=1).values == 0)
    return distances.argmin(dim=1)


# --- closed forms ----------------------------------------------------------------------


def test_gaussian_kl_matches_closed_form() -> None:
    mu = torch.tensor([[0.5, -1.0, 0.0], [2.0, 0.0, 0.3]])
    s = torch.tensor([[2.0, 0.5, 1.0], [1.0, 0.1, 3.0]])
    expected = (0.5 * (mu**2 + s**2 - 1 - torch.log(s**2)) / math.log(2)).sum(dim=1)
    torch.testing.assert_close(gaussian_kl_bits(mu, torch.log(s**2)), expected)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, s), torch.distributions.Normal(0.0, 1.0)
    )
    torch.testing.assert_close(
        gaussian_kl_bits(mu, torch.log(s**2)), reference.sum(1) / math.log(2)
    )
    # mu = 1, sigma = 1 costs half a nat; mu = 0, sigma = 2 costs (4 - 1 - ln 4) / 2 nats.
    one_sample = gaussian_kl_bits(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(4)]]))
    assert one_sample.item() == pytest.approx((0.5 + 0.5 * (3 - math.log(4))) / math.log(2))


def test_gaussian_gate_at_the_prior_has_rate_zero() -> None:
    gate = make_gate("gaussian", 6, generator=generator())
    with torch.no_grad():
        for parameter in gate.parameters():
            parameter.zero_()
    for training in (True, False):
        gate.train(training)
        assert gate(inputs()).rate_bits.item() == pytest.approx(0.0, abs=1e-7)


def test_gaussian_gate_rate_is_batch_mean_of_kl() -> None:
    gate = make_gate("gaussian", 6, generator=generator())
    z = inputs()
    expected = gaussian_kl_bits(*gate.moments(z)).mean()
    rate = gate(z).rate_bits
    assert rate.shape == () and rate.item() > 0
    torch.testing.assert_close(rate, expected)


def test_gaussian_gate_log_variance_stays_bounded() -> None:
    gate = make_gate("gaussian", 6, generator=generator())
    _, logvar = gate.moments(1e6 * inputs())
    assert logvar.abs().max().item() <= LOGVAR_BOUND
    assert torch.isfinite(gate.train()(1e6 * inputs()).t).all()


def test_discrete_rate_of_one_hot_rows_is_log2_k() -> None:
    for k in (2, 5, 16):
        assert discrete_rate_bits(torch.eye(k)).item() == pytest.approx(math.log2(k), abs=1e-6)
    assert discrete_rate_bits(torch.full((7, 4), 0.25)).item() == pytest.approx(0.0, abs=1e-7)


def test_discrete_gate_with_constant_probabilities_has_rate_zero() -> None:
    gate = make_gate("discrete", 6, generator=generator(), codewords=8).eval()
    gate.codebook.zero_()  # every codeword equally far from every latent
    assert gate(inputs()).rate_bits.item() == pytest.approx(0.0, abs=1e-6)


def test_discrete_gate_with_confident_equally_used_codewords_has_rate_log2_k() -> None:
    k = 8
    gate = make_gate("discrete", k, generator=generator(), codewords=k).eval()
    gate.codebook.copy_(10.0 * torch.eye(k).unsqueeze(0))
    z = 10.0 * torch.eye(k).repeat(5, 1)  # each latent on its own codeword, 200 away from others
    assert gate(z).rate_bits.item() == pytest.approx(3.0, abs=1e-5)


@settings(max_examples=80, deadline=None)
@given(
    batch=st.integers(1, 40),
    k=st.integers(2, 33),
    scale=st.floats(0.0, 200.0),
    seed=st.integers(0, 2**31),
)
def test_discrete_rate_between_zero_and_log2_k(batch: int, k: int, scale: float, seed: int) -> None:
    logits = scale * torch.randn(batch, k, generator=generator(seed))
    rate = discrete_rate_bits(torch.softmax(logits, dim=-1)).item()
    assert -1e-5 <= rate <= math.log2(k) + 1e-5
    assert rate <= math.log2(batch) + 1e-5  # I(index; T) <= H(index)


# --- evaluation and sampling -----------------------------------------------------------


def test_eval_mode_is_deterministic() -> None:
    z = inputs()
    gaussian = make_gate("gaussian", 6, generator=generator()).eval()
    torch.testing.assert_close(gaussian(z).t, gaussian.mu(z))
    torch.testing.assert_close(gaussian(z).t, gaussian(z).t)
    discrete = make_gate("discrete", 6, generator=generator(), codewords=16).eval()
    t = discrete(z).t
    torch.testing.assert_close(t, discrete(z).t)
    chosen = torch.cdist(z, discrete.codebook[0]).argmin(dim=1)  # the nearest codeword
    torch.testing.assert_close(t, discrete.codebook[0][chosen])


@pytest.mark.parametrize("kind", ["gaussian", "discrete"])
def test_same_generator_seed_gives_identical_messages(kind: str) -> None:
    z = inputs()
    messages = []
    for global_seed, gate_seed in ((1, 5), (2, 5), (1, 6)):
        torch.manual_seed(global_seed)  # the global random state must not matter
        gate = make_gate(kind, 6, generator=generator(gate_seed))
        messages.append(gate(z).t)
    torch.testing.assert_close(messages[0], messages[1], rtol=0, atol=0)
    assert not torch.equal(messages[0], messages[2])


def test_training_draws_fresh_noise_each_call() -> None:
    z = inputs()
    for kind in ("gaussian", "discrete"):
        gate = make_gate(kind, 6, generator=generator(), tau=5.0)
        assert not torch.equal(gate(z).t, gate(z).t)


def test_gaussian_noise_has_the_gate_variance() -> None:
    gate = make_gate("gaussian", 3, generator=generator())
    with torch.no_grad():
        gate.logvar.weight.zero_()
        gate.logvar.bias.copy_(torch.log(torch.tensor([0.25, 1.0, 4.0])))
    z = inputs(batch=20_000, dim=3)
    noise = gate(z).t - gate.mu(z)
    torch.testing.assert_close(noise.mean(0), torch.zeros(3), atol=0.05, rtol=0)
    torch.testing.assert_close(noise.var(0), torch.tensor([0.25, 1.0, 4.0]), rtol=0.05, atol=0)


def test_discrete_training_samples_hard_codewords_from_p() -> None:
    tau = 8.0
    gate = make_gate(
        "discrete", 6, generator=generator(), codewords=4, tau=tau, train_codebook=False
    )
    z = inputs(batch=1).repeat(40_000, 1)
    t = gate(z).t
    frequencies = torch.bincount(codeword_indices(gate, t), minlength=4) / len(z)
    distances = (z[0] - gate.codebook[0]).square().sum(dim=1)
    probs = torch.softmax(-distances / tau, dim=-1)
    assert probs.max() < 0.9  # a real mixture, not one codeword
    torch.testing.assert_close(frequencies, probs, atol=0.01, rtol=0)


# --- gradients -------------------------------------------------------------------------


def test_the_latent_gets_the_gradient_of_the_codeword_it_sent() -> None:
    gate = make_gate("discrete", 6, generator=generator(), codewords=8)
    target = torch.randn(64, 6, generator=generator(9))
    z = inputs().requires_grad_(True)
    t = gate(z).t
    ((t - target) ** 2).sum().backward()
    torch.testing.assert_close(z.grad, 2 * (t.detach() - target))  # straight through


def test_gradient_flows_through_the_rates() -> None:
    gaussian = make_gate("gaussian", 6, generator=generator())
    assert isinstance(gaussian, GaussianGate)
    gaussian(inputs()).rate_bits.backward()
    assert gaussian.mu.weight.grad.abs().sum() > 0
    assert gaussian.logvar.weight.grad.abs().sum() > 0
    discrete = make_gate("discrete", 6, generator=generator(), codewords=8)
    z = inputs().requires_grad_(True)
    discrete(z).rate_bits.backward()
    assert z.grad.abs().sum() > 0


def test_minimising_the_rate_lowers_it() -> None:
    gate = make_gate("discrete", 6, generator=generator(), codewords=8).eval()
    z = inputs().requires_grad_(True)
    optimiser = torch.optim.SGD([z], lr=1.0)
    before = gate(z).rate_bits.item()
    for _ in range(100):
        optimiser.zero_grad()
        gate(z).rate_bits.backward()
        optimiser.step()
    assert before > 1.0
    assert gate(z).rate_bits.item() < 0.5 * before


# --- the none gate and construction ----------------------------------------------------


def test_none_gate_passes_z_with_rate_zero() -> None:
    gate = make_gate("none", 6, generator=generator())
    z = inputs()
    out = gate(z)
    assert out.t is z
    assert out.rate_bits.shape == () and out.rate_bits.item() == 0.0
    assert list(gate.parameters()) == []


@pytest.mark.parametrize("kind", GATES.names())
def test_wire_dim_is_the_message_size(kind: str) -> None:
    gate = make_gate(kind, 5, generator=generator())
    out = gate(inputs(dim=5))
    assert gate.kind == kind
    assert out.t.shape == (64, gate.wire_dim) and gate.wire_dim == 5


def test_make_gate_rejects_bad_arguments() -> None:
    with pytest.raises(InnetError, match="unknown gate kind 'vq'.*none, gaussian, discrete"):
        make_gate("vq", 4, generator=generator())
    with pytest.raises(InnetError, match="codewords"):
        make_gate("discrete", 4, generator=generator(), codewords=1)
    with pytest.raises(InnetError, match="tau"):
        make_gate("discrete", 4, generator=generator(), tau=0.0)
    with pytest.raises(InnetError, match="tau"):
        make_gate("discrete", 4, generator=generator(), tau_final=0.0)
    with pytest.raises(InnetError, match="groups must divide the latent dimension 4, got 3"):
        make_gate("discrete", 4, generator=generator(), groups=3)
    with pytest.raises(InnetError, match="dimension"):
        make_gate("gaussian", 0, generator=generator())


# --- what the reported rates and the wire formats are computed from ------------------------


def test_gate_outputs_carry_what_rates_and_wire_formats_need() -> None:
    z = inputs()
    gaussian = make_gate("gaussian", 6, generator=generator())
    for training in (True, False):
        out = gaussian.train(training)(z)
        mu, logvar = gaussian.moments(z)
        torch.testing.assert_close(out.mu, mu)
        torch.testing.assert_close(out.sigma, torch.exp(0.5 * logvar))
    # a fixed codebook: a training step also moves the codebook after sending
    discrete = make_gate("discrete", 6, generator=generator(), codewords=8, train_codebook=False)
    for training in (True, False):
        out = discrete.train(training)(z)
        assert out.probs.shape == (64, 1, 8) and out.index.shape == (64, 1)
        torch.testing.assert_close(out.probs.sum(dim=-1), torch.ones(64, 1))
        torch.testing.assert_close(out.t, discrete.codebook[0][out.index[:, 0]], rtol=0, atol=0)
    assert make_gate("none", 6, generator=generator())(z).mu is None


def test_discrete_gate_can_keep_its_codebook_fixed() -> None:
    trained = make_gate("discrete", 6, generator=generator(), codewords=8)
    fixed = make_gate("discrete", 6, generator=generator(), codewords=8, train_codebook=False)
    start = fixed.codebook.clone()
    torch.testing.assert_close(trained.codebook, start, rtol=0, atol=0)
    for _ in range(3):
        trained(inputs())
        fixed(inputs())
    assert not torch.equal(trained.codebook, start)  # initialised from data, running means
    torch.testing.assert_close(fixed.codebook, start, rtol=0, atol=0)
    assert list(fixed.parameters()) == []
