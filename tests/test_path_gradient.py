"""The path-derivative gradient of the flow families (families.path_sample, docs/method.md §4)
against ground truth: its mean is the reparametrised gradient's, and at the exact posterior it is
zero for every single draw."""

import math

import pytest
import torch
from torch.func import functional_call

from vaegaps.bounds import elbo_loss_and_grads
from vaegaps.families import LocalPosterior, path_sample

DT = torch.float64


def _reparam(q):
    return lambda p, e: functional_call(q, p, (e,))


def _path(q):
    return lambda p, e: path_sample(q, p, e)


def _linear_gaussian(d, seed=0):
    """x = W z + noise, W (3, d) dense: a correlated Gaussian posterior, which no flow here holds
    exactly, so a random flow is far from the optimum."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, d, generator=g, dtype=DT)
    x = torch.randn(3, generator=g, dtype=DT)

    def lik(z):   # (N, S, d) -> (N, S)
        return -0.5 * ((x - z @ w.T) / 0.5).pow(2).sum(-1)
    return lik


@pytest.mark.parametrize("family,d", [("flow", 3), ("realnvp", 2)])
def test_path_gradient_has_the_reparametrised_gradients_mean(family, d):
    """One random flow repeated on 400 rows, each row 50 draws of its own: 400 independent
    estimates of each gradient, both on the same draws. Their per-row difference (the score term,
    zero in expectation) has mean zero within 5 standard errors in every parameter, while the
    reparametrised gradient itself is far from zero, the auxiliary flow's reverse model included
    (so a path gradient that also detached r would fail here)."""
    rows, lik = 400, _linear_gaussian(d)
    q = LocalPosterior(family, rows, d, hidden=4).to(DT)
    g = torch.Generator().manual_seed(1)   # every parameter drawn here (none from torch's global stream)
    params = {k: (0.4 * torch.randn(v[:1].shape, generator=g, dtype=DT)).expand_as(v).clone()
              for k, v in q.named_parameters()}
    noise = torch.randn(rows, 50, q.n_noise, d, generator=g, dtype=DT)
    loss_r, grad_r = elbo_loss_and_grads(_reparam(q), params, lik, noise)
    loss_p, grad_p = elbo_loss_and_grads(_path(q), params, lik, noise)
    torch.testing.assert_close(loss_p, loss_r)   # the same values: only the gradient differs
    worst, signal = 0.0, {}
    for name, a, b in zip(params, grad_r, grad_p):
        diff = (b - a).reshape(rows, -1)
        se = diff.std(0) / math.sqrt(rows)
        worst = max(worst, float(((diff.mean(0)).abs() / se.clamp_min(1e-12)).max()))
        ref = a.reshape(rows, -1)
        signal[name] = float((ref.mean(0).abs() / (ref.std(0) / math.sqrt(rows)).clamp_min(1e-12)).max())
    assert worst < 5, worst
    assert signal["mean"] > 10 and signal["logvar"] > 10, signal
    if family == "flow":
        assert max(v for k, v in signal.items() if ".r_v." in k) > 10, signal


def _diagonal_posterior(n, d, seed=0):
    """x_d = a_d z_d + noise: the exact posterior is a diagonal Gaussian (closed form)."""
    g = torch.Generator().manual_seed(seed)
    a = 0.5 + 2 * torch.rand(d, generator=g, dtype=DT)
    x = torch.randn(n, d, generator=g, dtype=DT)

    def lik(z):
        return (-0.5 * ((x.unsqueeze(1) - a * z) / 0.3).pow(2) - math.log(0.3) - 0.5 * math.log(2 * math.pi)).sum(-1)
    var = a.pow(2) + 0.09
    log_px = (-0.5 * x.pow(2) / var - 0.5 * torch.log(2 * math.pi * var)).sum(-1)
    return lik, log_px, a * x / var, torch.log(0.09 / var).expand(n, d)


@pytest.mark.parametrize("family", ["flow", "realnvp"])
def test_path_gradient_is_zero_for_every_draw_at_the_exact_posterior(family):
    """A fresh flow (zero heads) set to the exact diagonal posterior (LocalPosterior.gaussian_start,
    the auxiliary flow's reverse model exact): log p(x, z) − log q is log p(x) at every draw, so
    the path gradient of every parameter that shapes q's draw is zero for each single draw (one
    draw per datapoint, 64 datapoints), while the reparametrised one is not: its score term is
    zero only on average."""
    n, d = 64, 4
    lik, log_px, mean, logvar = _diagonal_posterior(n, d)
    q = LocalPosterior(family, n, d, hidden=6).to(DT).init_keyed(0, "t", torch.arange(n))
    params = {k: v.detach().clone() for k, v in q.named_parameters()}
    params |= LocalPosterior.gaussian_start(family, mean, logvar, hidden=6)
    noise = torch.randn(n, 1, q.n_noise, d, generator=torch.Generator().manual_seed(2), dtype=DT)
    loss_p, grad_p = elbo_loss_and_grads(_path(q), params, lik, noise)
    loss_r, grad_r = elbo_loss_and_grads(_reparam(q), params, lik, noise)
    torch.testing.assert_close(-loss_p, log_px, rtol=0, atol=1e-9)   # every draw's bound is log p(x)
    torch.testing.assert_close(-loss_r, log_px, rtol=0, atol=1e-9)
    for name, gp in zip(params, grad_p):
        if q.in_bound_only(name):   # r's own gradient is the score of r, not a path term
            continue
        assert float(gp.abs().max()) < 1e-9, (name, float(gp.abs().max()))
    base = {name: float(gr.abs().max()) for name, gr in zip(params, grad_r) if name in ("mean", "logvar")}
    assert min(base.values()) > 0.1, base
