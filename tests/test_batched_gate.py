"""The batched executor's Gaussian gate as one autograd node: values and derivatives."""

import pytest
import torch

from innet.executors.batched import _GaussianGate
from innet.gates import bound_logvar, bound_logvar_slope, gaussian_kl_bits


@pytest.mark.parametrize("with_rate", [True, False])
def test_gaussian_gate_function_has_the_derivatives_of_its_formula(with_rate):
    """gradcheck: the written-out backward against finite differences, in float64."""
    generator = torch.Generator().manual_seed(0)
    both = (3 * torch.randn(3, 5, 8, generator=generator, dtype=torch.float64)).requires_grad_()
    eps = torch.randn(3, 5, 4, generator=generator, dtype=torch.float64)

    def t_and_rate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t, rate, *_ = _GaussianGate.apply(x, eps, with_rate)
        return t, rate

    assert torch.autograd.gradcheck(t_and_rate, (both,))


def test_gaussian_gate_function_computes_what_the_gate_computes():
    generator = torch.Generator().manual_seed(1)
    both = 4 * torch.randn(2, 6, 10, generator=generator)
    eps = torch.randn(2, 6, 5, generator=generator)
    t, rate, mu, logvar, sigma = _GaussianGate.apply(both, eps, True)
    expected_logvar = bound_logvar(both[..., 5:])
    torch.testing.assert_close(mu, both[..., :5])
    torch.testing.assert_close(logvar, expected_logvar)
    torch.testing.assert_close(t, both[..., :5] + torch.exp(0.5 * expected_logvar) * eps)
    torch.testing.assert_close(rate, gaussian_kl_bits(both[..., :5], expected_logvar).mean(1))
    assert rate.shape == (2,) and bool((rate > 0).all())
    _, no_rate, *_ = _GaussianGate.apply(both, eps, False)
    assert bool((no_rate == 0).all())


def test_bound_logvar_slope_is_the_derivative_of_the_bound():
    raw = torch.linspace(-30, 30, 61, dtype=torch.float64, requires_grad=True)
    bound_logvar(raw).sum().backward()
    torch.testing.assert_close(bound_logvar_slope(bound_logvar(raw)).detach(), raw.grad)
