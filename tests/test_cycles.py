"""q* of a flow family by Adam in cycles (vaegaps.cycles) against a closed-form optimum."""

import math

import pytest
import torch

from vaegaps.config import local_config
from vaegaps.errors import VaegapsError
from vaegaps.families import LocalPosterior
from vaegaps.likelihood import InputError
from vaegaps.local_opt import optimize_local


def _diagonal_case(n=6, d=3, seed=0):
    """x_d = a_d z_d + noise: the posterior is a diagonal Gaussian, which every flow family
    contains, so the optimal flow's ELBO is log p(x) (closed form)."""
    g = torch.Generator().manual_seed(seed)
    a = 0.5 + 2 * torch.rand(d, generator=g, dtype=torch.float64)
    noise = 0.3
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    x = a * z + noise * torch.randn(n, d, generator=g, dtype=torch.float64)

    def lik(zz):
        return (-0.5 * ((x.unsqueeze(1) - a * zz) / noise).pow(2) - math.log(noise) - 0.5 * math.log(2 * math.pi)).sum(-1)
    var = a.pow(2) + noise**2   # x_d ~ N(0, a_d² + noise²)
    log_px = (-0.5 * x.pow(2) / var - 0.5 * torch.log(2 * math.pi * var)).sum(-1)
    post_var = noise**2 / var                       # the exact posterior N(a x / var, noise² / var)
    return lik, log_px, (a * x / var, torch.log(post_var).expand(n, d))


@pytest.fixture(scope="module")
def from_gaussian_start():
    """gradient -> (result, log p(x)): cycles from a Gaussian start off the exact posterior by half
    a standard deviation in mean and a factor e^0.6 in variance (embedded in the flow, as the
    pipeline's starts are), with each gradient estimator, on the same draws. One torch thread, as
    the function-scoped conftest fixture gives each test (it is set up after this one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    lik, log_px, (mean, logvar) = _diagonal_case()
    g = torch.Generator().manual_seed(1)
    off = (mean + 0.5 * torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=g, dtype=mean.dtype), logvar + 0.6)
    start = LocalPosterior.gaussian_start("flow", *off, 16)
    out = {gradient: (optimize_local(lik, z_dim=3, n_points=6, family="flow", hidden=16, n_samples=50,
                                     cycle_lr=1e-2, cycle_steps=600, probe_steps=150, max_steps=3000,
                                     final_samples=4000, generator=0, dtype=torch.float64, init=start,
                                     gradient=gradient), log_px)
           for gradient in ("path", "reparam")}
    torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize("gradient", ["path", "reparam"])
def test_cycles_reach_the_exact_posterior_from_a_gaussian_start(from_gaussian_start, gradient):
    """With either gradient, cycles end within 0.02 nats of log p(x) on average, never above it
    beyond noise, every datapoint converged with a remaining gain below gain_tol."""
    r, log_px = from_gaussian_start[gradient]
    d = r.elbo - log_px
    assert float(d.mean()) >= -0.02, d
    assert float((d - 3 * r.elbo_se).max()) <= 0, d
    assert bool(r.converged.all()), r.remaining_gain
    assert float(r.remaining_gain.max()) < 0.01
    assert bool((r.steps > 600).all())   # at least one probe after the first cycle


def test_the_path_gradient_ends_at_least_as_close_to_the_optimum(from_gaussian_start):
    """Same start, settings and draws: the path gradient's q* is at least as close to log p(x)
    as the reparametrised gradient's, datapoint by datapoint within 2 combined standard errors of
    the two final estimates, and on average."""
    (path, log_px), (reparam, _) = from_gaussian_start["path"], from_gaussian_start["reparam"]
    d_path, d_reparam = path.elbo - log_px, reparam.elbo - log_px
    combined = (path.elbo_se.pow(2) + reparam.elbo_se.pow(2)).sqrt()
    assert float(d_path.mean()) >= float(d_reparam.mean()), (d_path, d_reparam)
    assert float((d_reparam - d_path - 2 * combined).max()) <= 0, (d_path, d_reparam)
    assert float(d_path.mean()) >= -0.005, d_path


def test_a_flow_stopped_far_from_its_optimum_is_not_converged():
    lik, _, _ = _diagonal_case()
    r = optimize_local(lik, z_dim=3, n_points=6, family="flow", hidden=16, n_samples=20, cycle_lr=1e-2,
                       cycle_steps=600, probe_steps=150, max_steps=30, final_samples=500, generator=0,
                       dtype=torch.float64)
    assert not bool(r.converged.any())
    assert float(r.remaining_gain.min()) > 0.01   # the one cycle run still gained
    assert bool((r.steps == 30).all())


def test_cycles_keep_the_start_q_exactly_when_given_no_steps_to_gain():
    """A Gaussian start embedded in the flow (LocalPosterior.gaussian_start) is the same q after
    standardising and back (vaegaps.whiten): with a learning rate too small to move, L[q*] is the
    start's closed-form ELBO within Monte Carlo noise."""
    noise = 0.3
    g = torch.Generator().manual_seed(0)
    a, x = 0.5 + 2 * torch.rand(3, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)

    def lik(z):
        return (-0.5 * ((x.unsqueeze(1) - a * z) / noise).pow(2) - math.log(noise) - 0.5 * math.log(2 * math.pi)).sum(-1)
    mean = 0.3 * torch.randn(6, 3, generator=g, dtype=torch.float64)
    logvar = torch.full((6, 3), -2.0, dtype=torch.float64)
    v = torch.exp(logvar)
    exact = (-0.5 * ((x - a * mean).pow(2) + a.pow(2) * v) / noise**2 - math.log(noise) - 0.5 * math.log(2 * math.pi)
             - 0.5 * (mean.pow(2) + v) + 0.5 * (1 + logvar)).sum(-1)   # E log p(x|z) + E log p(z) + H[q]
    flow = optimize_local(lik, z_dim=3, n_points=6, family="flow", hidden=16, n_samples=10, cycle_lr=1e-12,
                          cycle_steps=2, probe_steps=2, max_steps=4, final_samples=4000, generator=0,
                          dtype=torch.float64, init=LocalPosterior.gaussian_start("flow", mean, logvar, 16))
    assert float(((flow.elbo - exact).abs() / flow.elbo_se).max()) < 4, (flow.elbo - exact, flow.elbo_se)


@pytest.mark.parametrize("family,method,match", [("flow", "newton", "q\\*_FFG only"),
                                                 ("ffg", "cycles", "flow families")])
def test_a_method_for_the_other_kind_of_family_is_one_clear_error(family, method, match):
    lik, _, _ = _diagonal_case()
    with pytest.raises(InputError, match=match):
        optimize_local(lik, z_dim=3, n_points=6, family=family, method=method)
    with pytest.raises(VaegapsError, match=match):
        local_config({"method": "auto", family: {"method": method}}, family)


def test_auto_resolves_per_family_in_the_settings():
    local = {"method": "auto", "ffg": {}, "flow": {}}
    assert local_config(local, "ffg")["method"] == "newton"
    assert local_config(local, "flow")["method"] == "cycles"
    assert local_config({"method": "auto", "flow": {"method": "adam"}}, "flow")["method"] == "adam"
    # a shared method made for one kind of family leaves the other kind at auto
    assert local_config({"method": "newton"}, "flow")["method"] == "cycles"
    assert local_config({"method": "cycles"}, "ffg")["method"] == "newton"
    assert local_config({"method": "adam"}, "flow")["method"] == "adam"


def test_every_step_draws_antithetic_pairs(monkeypatch):
    """The steps' noise is K draws and their negatives, K = n_samples / 2 rounded up."""
    from vaegaps import cycles
    seen = []
    real = cycles.elbo_loss_and_grads

    def spy(sample_q, params, loglik, noise):
        seen.append(noise.clone())
        return real(sample_q, params, loglik, noise)
    monkeypatch.setattr(cycles, "elbo_loss_and_grads", spy)
    lik, _, _ = _diagonal_case()
    optimize_local(lik, z_dim=3, n_points=6, family="flow", hidden=8, n_samples=5, cycle_steps=3, probe_steps=2,
                   max_steps=5, final_samples=10, generator=0, dtype=torch.float64)
    assert len(seen) == 5
    for noise in seen:
        assert noise.shape[1] == 6   # 5 rounded up to 3 pairs
        torch.testing.assert_close(noise[:, 3:], -noise[:, :3], rtol=0, atol=0)
        assert float(noise[:, :3].abs().min()) > 0


def test_an_antithetic_pair_gives_the_exact_mean_gradient_on_a_gaussian_posterior():
    """Why the pairs: on a Gaussian posterior, for a flow that is still affine (a Gaussian start),
    the path gradient in the base mean is linear in the noise, so every antithetic pair averages
    to the exact gradient, where independent draws scatter around it. Exact: the mean gradient of
    the ELBO of N(m, diag v) against the posterior N(μ, diag w) is (m − μ)/w (of −ELBO)."""
    from vaegaps.bounds import elbo_loss_and_grads
    from vaegaps.families import path_sample
    from vaegaps.rng import normal

    lik, _, (post_mean, post_logvar) = _diagonal_case()
    q = LocalPosterior("flow", 6, 3, 8).double()
    m, logvar = post_mean + 0.4, post_logvar + 0.3
    params = {k: v.detach().clone() for k, v in q.named_parameters()}
    params.update(LocalPosterior.gaussian_start("flow", m, logvar, 8))
    fresh = float(q.family.fresh_scale()[0])   # z = fresh · z0: the base mean is m / fresh
    exact = fresh * (m - post_mean) / torch.exp(post_logvar)
    keys = list(params)

    def mean_grad(noise):
        _, grads = elbo_loss_and_grads(lambda p, e: path_sample(q, p, e), {k: v.clone() for k, v in params.items()},
                                       lik, noise)
        return grads[keys.index("mean")]
    half = normal(0, "t", torch.arange(6), 0, (1, 2, 3), dtype=torch.float64)
    torch.testing.assert_close(mean_grad(torch.cat([half, -half], 1)), exact, rtol=1e-6, atol=1e-8)
    two = normal(0, "t", torch.arange(6), 1, (2, 2, 3), dtype=torch.float64)
    assert float((mean_grad(two) - exact).abs().max()) > 1e-2
