"""Pareto k̂ of importance weights (vaegaps.pareto): known tail shapes recovered, light tails
below 0.5, and the IWAE of a proposal narrower than its target flagged where IS theory says."""

import math

import pytest
import torch

from vaegaps import rng
from vaegaps.bounds import log_normal_diag, monte_carlo_bounds
from vaegaps.pareto import KHAT_MAX, keep_top, pareto_khat, tail_size

S = 5000


def _tail(log_w):
    return log_w.topk(tail_size(log_w.shape[-1]) + 1, -1).values


@pytest.mark.parametrize("xi", [0.3, 0.7, 1.0])
def test_pareto_shape_is_recovered(xi):
    """Weights U^(−ξ) have a Pareto tail of shape ξ exactly: k̂ over 200 rows of 5000 draws
    averages ξ within 0.05 (the weak prior pulls it ≤ 0.01 towards 0.5), each row within 0.4."""
    u = torch.rand(200, S, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    k = pareto_khat(_tail(-xi * torch.log(u)))
    assert abs(float(k.mean()) - xi) < 0.05, float(k.mean())
    assert float((k - xi).abs().max()) < 0.4


@pytest.mark.parametrize("name", ["exponential", "lognormal", "uniform"])
def test_light_tailed_weights_stay_below_one_half(name):
    """Weights with every moment (exponential: shape 0, log-normal σ = 0.5, uniform: −1) give
    k̂ < 0.5 on every one of 200 datapoints."""
    g = torch.Generator().manual_seed(2)
    u = torch.rand(200, S, generator=g, dtype=torch.float64)
    log_w = {"exponential": torch.log(-torch.log(u)), "lognormal": 0.5 * torch.randn(200, S, generator=g,
             dtype=torch.float64), "uniform": torch.log(u)}[name]
    k = pareto_khat(_tail(log_w))
    assert bool((k < 0.5).all()), float(k.max())
    if name == "uniform":
        assert float(k.mean()) < -0.5


def test_khat_is_invariant_to_scale_and_order_and_says_when_it_cannot_judge():
    lw = torch.randn(5, 300, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2
    top = _tail(lw)
    k = pareto_khat(top)
    torch.testing.assert_close(pareto_khat(top + 123.4), k)            # p(x)'s scale does not matter
    torch.testing.assert_close(pareto_khat(top.flip(-1)), k)          # nor the order of the tail
    assert torch.isneginf(pareto_khat(torch.zeros(2, 40))).all()     # equal weights: no tail at all
    assert torch.isnan(pareto_khat(torch.randn(2, 4))).all()          # 3 tail draws: too few to judge
    bad = top.clone()
    bad[0, 0] = float("nan")
    assert torch.isnan(pareto_khat(bad)[0]) and torch.isfinite(pareto_khat(bad)[1:]).all()


def test_running_tail_over_batches_is_the_tail_of_all():
    lw = torch.randn(7, 1234, generator=torch.Generator().manual_seed(4))
    top = None
    for start in range(0, 1234, 100):
        top = keep_top(top, lw[:, start:start + 100], tail_size(1234) + 1)
    torch.testing.assert_close(top.sort(-1).values, _tail(lw).sort(-1).values)


def _gaussian_iwae(var, sample_batch=500, n=64):
    """IWAE-5000 of q = N(0, var·I) for the target N(0, I) in 3-D (log p(x) = 0): the weights'
    tail shape is ξ = 1 − var for var < 1 (w ∝ exp(½(1/var − 1)|z|²)) and bounded for var ≥ 1."""
    idx = torch.arange(n)
    sd = math.sqrt(var)

    def sample_q(e):
        z = sd * e[..., 0, :]
        return z, log_normal_diag(z, torch.zeros_like(z), torch.full_like(z, math.log(var)))

    return monte_carlo_bounds(sample_q, lambda z: torch.zeros(z.shape[:-1], dtype=z.dtype), S,
                              lambda o, s: rng.normal(0, "pareto_test", idx, 0, (s, 1, 3), offset=o,
                                                      dtype=torch.float64), sample_batch, iwae_diagnostics=True)


def test_iwae_of_a_too_narrow_proposal_is_flagged_and_a_wide_one_is_not():
    """A proposal of variance 0.1 (ξ = 0.9) is flagged on most datapoints, one of variance 2
    (bounded weights) on none; the mean k̂ is the theoretical ξ; k̂ does not depend on the sample
    batch."""
    narrow, wide = _gaussian_iwae(0.1), _gaussian_iwae(2.0)
    assert float((narrow.iwae_khat > KHAT_MAX).double().mean()) > 0.8, narrow.iwae_khat
    assert abs(float(narrow.iwae_khat.mean()) - 0.9) < 0.05                   # ξ = 1 − 0.1
    assert abs(float(_gaussian_iwae(0.5).iwae_khat.mean()) - 0.5) < 0.05     # ξ = 1 − 0.5
    assert bool((wide.iwae_khat < 0.5).all()), wide.iwae_khat
    assert float(wide.iwae.abs().max()) < 0.05                       # the trusted IWAE is right
    assert float(narrow.iwae.mean()) < -0.1                           # the flagged one falls short
    torch.testing.assert_close(_gaussian_iwae(0.1, sample_batch=333).iwae_khat, narrow.iwae_khat)
