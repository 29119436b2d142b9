"""Bounds and densities against closed forms; the counter-based RNG's invariances and moments."""

import math

import torch

from vaegaps import rng
from vaegaps.bounds import (
    annealed_objective,
    bernoulli_log_likelihood,
    elbo,
    iwae,
    log_mean_exp,
    log_normal_diag,
    log_normal_std,
)


def test_log_mean_exp_is_stable_and_divides_by_count():
    x = torch.tensor([[1000.0, 1000.0, 1000.0], [-1000.0, -1000.0, -1000.0 + math.log(4)]])
    out = log_mean_exp(x, -1)
    assert torch.allclose(out, torch.tensor([1000.0, -1000.0 + math.log(2.0)]))


def test_bernoulli_matches_definition_and_stays_finite_at_large_logits():
    l = torch.tensor([[-300.0, -150.0, 0.0, 150.0, 300.0]])
    x = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]])
    expected = -150.0 + math.log(0.5) - 300.0
    got = bernoulli_log_likelihood(l, x)
    assert torch.isfinite(got).all() and torch.allclose(got, torch.tensor([expected]))
    # the sample-dimension (matmul) path equals the broadcast path
    logits = torch.randn(3, 7, 5) * 50
    xb = (torch.rand(3, 5) > 0.5).float()
    ref = (-torch.nn.functional.softplus(-logits) * xb[:, None] - torch.nn.functional.softplus(logits) * (1 - xb[:, None])).sum(-1)
    assert torch.allclose(bernoulli_log_likelihood(logits, xb), ref, atol=1e-3)


def test_gaussian_densities_include_normalising_constant():
    z = torch.zeros(1, 50)
    assert torch.allclose(log_normal_std(z), torch.tensor([-25 * math.log(2 * math.pi)]))
    mean, logvar = torch.randn(4, 3), torch.randn(4, 3)
    z = torch.randn(4, 3)
    ref = torch.distributions.Normal(mean, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    assert torch.allclose(log_normal_diag(z, mean, logvar), ref, atol=1e-5)


def test_elbo_and_iwae_known_values():
    log_pxz = torch.tensor([[0.0, math.log(3.0)]])
    log_q = torch.zeros(1, 2)
    assert torch.allclose(elbo(log_pxz, log_q), torch.tensor([0.5 * math.log(3.0)]))
    assert torch.allclose(iwae(log_pxz, log_q), torch.tensor([math.log(2.0)]))
    # entropy annealing: λ multiplies only −log q
    out = annealed_objective(torch.tensor([[1.0]]), torch.tensor([[2.0]]), torch.tensor([[4.0]]), 0.25)
    assert torch.allclose(out, torch.tensor([2.0]))


def test_rng_is_keyed_by_datapoint_not_batch():
    idx = torch.arange(100)
    full = rng.normal(7, "s", idx, 3, (16, 5))
    alone = rng.normal(7, "s", torch.tensor([42]), 3, (16, 5))
    assert torch.equal(full[42], alone[0])
    batched = torch.cat([rng.normal(7, "s", idx, 3, (6, 5)), rng.normal(7, "s", idx, 3, (10, 5), offset=6)], 1)
    assert torch.equal(full, batched)
    # different step, stream and seed give different numbers
    assert not torch.equal(full, rng.normal(7, "s", idx, 4, (16, 5)))
    assert not torch.equal(full, rng.normal(7, "t", idx, 3, (16, 5)))
    assert not torch.equal(full, rng.normal(8, "s", idx, 3, (16, 5)))


def test_rng_moments_and_independence():
    z = rng.normal(0, "m", torch.arange(200), 0, (5000,), dtype=torch.float64)
    assert abs(z.mean().item()) < 0.005 and abs(z.var().item() - 1) < 0.01
    assert abs((z**4).mean().item() - 3) < 0.05
    assert abs((z[:-1] * z[1:]).mean().item()) < 0.01          # neighbouring datapoints
    assert abs((z[:, :-1] * z[:, 1:]).mean().item()) < 0.01    # neighbouring counters
    u = rng.uniform(0, "u", torch.arange(100), 0, (10000,), dtype=torch.float64)
    assert 0 < u.min() and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.002
    hist = torch.histc(u, bins=10, min=0, max=1) / u.numel()
    assert (hist - 0.1).abs().max() < 0.003


def test_seed_from_generator_advances():
    g = torch.Generator().manual_seed(3)
    a, b = rng.seed_from(g), rng.seed_from(g)
    assert a != b and rng.seed_from(torch.Generator().manual_seed(3)) == a
    assert rng.seed_from(5) == 5
