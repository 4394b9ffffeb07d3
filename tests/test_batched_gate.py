"""The batched executor's Gaussian gate as one autograd node: values and derivatives."""

import pytest
import torch

from innet.families.inl.gates.gaussian import (
    GaussianGateKernel,
    bound_logvar,
    bound_logvar_slope,
    gaussian_kl_bits,
)


@pytest.mark.parametrize("penalty", [[0.0, 0.0, 0.0], [0.5, 0.0, 2.0]])
def test_gaussian_gate_function_has_the_derivatives_of_its_objective(penalty):
    """The message plus each node's penalised rate, against autograd of the same objective."""
    generator = torch.Generator().manual_seed(0)
    both = (3 * torch.randn(3, 5, 8, generator=generator, dtype=torch.float64)).requires_grad_()
    eps = torch.randn(3, 5, 4, generator=generator, dtype=torch.float64)
    weights = torch.tensor(penalty, dtype=torch.float64)
    probe = torch.randn(3, 5, 4, generator=generator, dtype=torch.float64)

    def objective(x: torch.Tensor) -> torch.Tensor:
        """<t, probe>: the function's backward adds the penalised rates' gradient."""
        return (GaussianGateKernel.apply(x, eps, weights)[0] * probe).sum()

    def reference(x: torch.Tensor) -> torch.Tensor:
        """<t, probe> + sum of penalty * rate, differentiated by autograd."""
        mu, logvar = x[..., :4], bound_logvar(x[..., 4:])
        t = mu + torch.exp(0.5 * logvar) * eps
        return (t * probe).sum() + (weights * gaussian_kl_bits(mu, logvar).mean(1)).sum()

    (got,) = torch.autograd.grad(objective(both), both)
    (expected,) = torch.autograd.grad(reference(both), both)
    torch.testing.assert_close(got, expected)


def test_gaussian_gate_function_without_penalty_has_the_jacobian_of_its_message():
    """gradcheck: the backward of ``t`` alone against finite differences, in float64."""
    generator = torch.Generator().manual_seed(2)
    both = (3 * torch.randn(3, 5, 8, generator=generator, dtype=torch.float64)).requires_grad_()
    eps = torch.randn(3, 5, 4, generator=generator, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: GaussianGateKernel.apply(x, eps, None)[0], (both,))


def test_gaussian_gate_function_computes_what_the_gate_computes():
    generator = torch.Generator().manual_seed(1)
    both = 4 * torch.randn(2, 6, 10, generator=generator)
    eps = torch.randn(2, 6, 5, generator=generator)
    t, mu, logvar, sigma = GaussianGateKernel.apply(both, eps, None)
    expected_logvar = bound_logvar(both[..., 5:])
    torch.testing.assert_close(mu, both[..., :5])
    torch.testing.assert_close(logvar, expected_logvar)
    torch.testing.assert_close(sigma, torch.exp(0.5 * expected_logvar))
    torch.testing.assert_close(t, both[..., :5] + torch.exp(0.5 * expected_logvar) * eps)


def test_bound_logvar_slope_is_the_derivative_of_the_bound():
    raw = torch.linspace(-30, 30, 61, dtype=torch.float64, requires_grad=True)
    bound_logvar(raw).sum().backward()
    torch.testing.assert_close(bound_logvar_slope(bound_logvar(raw)).detach(), raw.grad)
