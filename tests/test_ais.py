"""AIS and BDMC against exact answers (tests/groundtruth.py).

Settings are named in each test; they are the cheapest that pass with a margin at a fixed seed.
Every accuracy test has a companion showing it can fail (too-short annealing is visibly biased).
"""

import math

import groundtruth as gt
import pytest
import torch

from vaegaps.ais import _log_mean_exp_se, ais, bdmc, delta_method_se


def pooled_log_ratio(log_weights, exact):
    """log of the pooled mean of the AIS weights over p(x) (unbiased for 0), and its standard
    error by the delta method: a sharp check of every additive constant in the weights."""
    r = (log_weights - exact[:, None]).flatten()
    w = torch.exp(r - r.max())
    est = torch.log(w.mean()) + r.max()
    se = w.std() / (math.sqrt(r.numel()) * w.mean())
    return float(est), float(se)


# ----------------------------------------------------------------------------------------------
# 1. linear-Gaussian model: closed-form log p(x)
# ----------------------------------------------------------------------------------------------

AIS_LG = dict(n_chains=48, n_intermediate=1000, schedule="sigmoid", leapfrog_steps=10)


def test_ais_linear_gaussian_matches_closed_form():
    """40 datapoints simulated from a D=4, X=8 linear-Gaussian model; 48 chains, 1000
    distributions, sigmoid schedule, 10 leapfrog steps: mean signed error within ±0.04 nats,
    mean absolute error <= 0.1 nats, and the pooled weights are unbiased for p(x)."""
    c = gt.linear_case()
    m, x = c["model"], c["x"]
    r = ais(m.likelihood(x), z_dim=m.D, n_points=len(x), generator=0, **AIS_LG)
    err = r.log_px - c["log_px"]
    assert torch.isfinite(r.log_px).all()
    assert abs(float(err.mean())) <= 0.04, f"mean signed error {float(err.mean()):.4f}"
    assert float(err.abs().mean()) <= 0.10, f"mean abs error {float(err.abs().mean()):.4f}"
    est, se = pooled_log_ratio(r.log_weights, c["log_px"])
    assert abs(est) <= max(0.04, 4 * se), (est, se)
    # log_px is the log-mean-exp of the returned log-weights
    torch.testing.assert_close(r.log_px, gt.log_mean_exp(r.log_weights.double(), 1).to(r.log_px.dtype))


def test_ais_too_short_is_biased_low():
    """Sensitivity: with 10 distributions AIS is a clearly loose stochastic lower bound, so the
    accuracy test above can fail."""
    c = gt.linear_case()
    m, x = c["model"], c["x"]
    r = ais(m.likelihood(x), z_dim=m.D, n_points=len(x), n_chains=16, n_intermediate=10,
            schedule="sigmoid", leapfrog_steps=10, generator=0)
    err = r.log_px - c["log_px"]
    assert float(err.mean()) < -0.5, float(err.mean())
    assert float(err.median()) < -0.3, float(err.median())


@pytest.mark.parametrize("T", [20, 50])
def test_ais_weights_unbiased_at_any_length(T):
    """AIS with kernels fixed in advance is unbiased for p(x) whatever the number of
    distributions: the pooled mean of w / p(x) over 40 datapoints x 128 chains is 1 even at
    T = 20 or 50, where log_px itself is far from exact per chain. target_accept=0 makes the
    step-size rule grow-only (0.3 -> the 0.5 clamp, the same for every chain), so the kernels
    do not depend on the chains' histories. Catches off-by-one errors between the weight
    update and the transition (measured: +0.44 nats at T=50 when each transition targets the
    next distribution instead of the current one) and a wrong leapfrog."""
    c = gt.linear_case()
    m, x = c["model"], c["x"]
    r = ais(m.likelihood(x), z_dim=m.D, n_points=len(x), n_chains=128, n_intermediate=T,
            schedule="sigmoid", leapfrog_steps=10, generator=0, step_size=0.3, target_accept=0.0)
    est, se = pooled_log_ratio(r.log_weights, c["log_px"])
    assert abs(est) <= max(0.1, 4 * se), (est, se)


def test_ais_more_distributions_is_tighter():
    """Monotone in effort (on average): 30 < 100 < 1000 distributions in mean error."""
    c = gt.linear_case()
    m, x = c["model"], c["x"]
    errs = []
    for T in (30, 100, 1000):
        r = ais(m.likelihood(x), z_dim=m.D, n_points=len(x), n_chains=16, n_intermediate=T,
                schedule="sigmoid", leapfrog_steps=10, generator=1)
        errs.append(float((r.log_px - c["log_px"]).mean()))
    assert errs[0] < errs[1] < errs[2] + 0.02, errs


# ----------------------------------------------------------------------------------------------
# BDMC on simulated data
# ----------------------------------------------------------------------------------------------

def test_bdmc_sandwiches_exact_log_px():
    """Data simulated with its true z; 16 chains, 500 distributions: mean(lower) <= exact + 0.02,
    mean(upper) >= exact − 0.02 and mean(upper − lower) <= 0.2 nats."""
    c = gt.linear_case()
    m, x, z = c["model"], c["x"], c["z"]
    b = bdmc(m.likelihood(x), z, n_chains=16, n_intermediate=500, schedule="sigmoid",
             leapfrog_steps=10, generator=0)
    assert b.lower.shape == b.upper.shape == (len(x),)
    assert torch.isfinite(b.lower).all() and torch.isfinite(b.upper).all()
    lo = float((b.lower - c["log_px"]).mean())
    up = float((b.upper - c["log_px"]).mean())
    gap = float((b.upper - b.lower).mean())
    assert lo <= 0.02, f"forward AIS above exact by {lo:.4f}"
    assert up >= -0.02, f"reverse AIS below exact by {-up:.4f}"
    assert gap <= 0.2, f"BDMC gap {gap:.4f}"


def test_bdmc_short_run_is_a_real_sandwich():
    """Sensitivity: with 20 distributions the bounds are loose and must lie on their own sides
    of the exact value (a sign or direction error in the reverse chain fails here)."""
    c = gt.linear_case()
    m, x, z = c["model"], c["x"], c["z"]
    b = bdmc(m.likelihood(x), z, n_chains=16, n_intermediate=20, schedule="sigmoid",
             leapfrog_steps=10, generator=0)
    lo = b.lower - c["log_px"]
    up = b.upper - c["log_px"]
    assert float(lo.mean()) < -0.3 and float(up.mean()) > 0.3, (float(lo.mean()), float(up.mean()))
    assert float(lo.median()) < -0.1 and float(up.median()) > 0.1, (float(lo.median()), float(up.median()))


# ----------------------------------------------------------------------------------------------
# 2. 2-D latent Bernoulli decoder: quadrature log p(x)
# ----------------------------------------------------------------------------------------------

@pytest.mark.slow  # over 10 s
def test_ais_bernoulli_2d_matches_quadrature():
    """Non-Gaussian (banana / bimodal) posteriors; 16 chains, 2000 distributions, sigmoid,
    5 leapfrog steps: mean abs error <= 0.1, mean error within [−0.06, +0.03], unbiased pooled
    weights, and no datapoint's estimate far above the exact value."""
    c = gt.bernoulli_case()
    m, x = c["model"], c["x"]
    r = ais(m.likelihood(x), z_dim=2, n_points=len(x), n_chains=16, n_intermediate=2000,
            schedule="sigmoid", leapfrog_steps=5, generator=0)
    err = r.log_px - c["log_px"]
    assert float(err.abs().mean()) <= 0.10, f"mean abs error {float(err.abs().mean()):.4f}"
    assert -0.06 <= float(err.mean()) <= 0.03, f"mean error {float(err.mean()):.4f}"
    est, se = pooled_log_ratio(r.log_weights, c["log_px"])
    assert abs(est) <= max(0.05, 4 * se), (est, se)
    assert float(err.max()) <= 0.5


# ----------------------------------------------------------------------------------------------
# 3. batching invariance, seeding
# ----------------------------------------------------------------------------------------------

def _bernoulli_100():
    m = gt.BernoulliDecoder2D(seed=0)
    _, X = m.sample(100, seed=21)
    return m, X


AIS_SMALL = dict(n_chains=4, n_intermediate=60, schedule="sigmoid", leapfrog_steps=5)


def test_ais_batching_invariance():
    """A datapoint's log_px and log_weights are the same alone (index=[k]) as among 100
    (index=arange(100)), and in a permuted batch, with the same seed (float64 likelihood)."""
    m, X = _bernoulli_100()
    full = ais(m.likelihood(X), z_dim=2, n_points=100, generator=5, index=torch.arange(100), **AIS_SMALL)
    for k in (0, 37, 99):
        idx = torch.tensor([k])
        one = ais(m.likelihood(X[idx]), z_dim=2, n_points=1, generator=5, index=idx, **AIS_SMALL)
        torch.testing.assert_close(one.log_px, full.log_px[idx], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(one.log_weights, full.log_weights[idx], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(one.accept_rate, full.accept_rate[idx], rtol=1e-5, atol=1e-5)
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(0))[:30]
    part = ais(m.likelihood(X[perm]), z_dim=2, n_points=30, generator=5, index=perm, **AIS_SMALL)
    torch.testing.assert_close(part.log_weights, full.log_weights[perm], rtol=1e-5, atol=1e-5)


def test_bdmc_batching_invariance():
    m = gt.BernoulliDecoder2D(seed=0)
    Z, X = m.sample(100, seed=21)
    full = bdmc(m.likelihood(X), Z, generator=3, index=torch.arange(100), **AIS_SMALL)
    for k in (4, 63):
        idx = torch.tensor([k])
        one = bdmc(m.likelihood(X[idx]), Z[idx], generator=3, index=idx, **AIS_SMALL)
        torch.testing.assert_close(one.lower, full.lower[idx], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(one.upper, full.upper[idx], rtol=1e-5, atol=1e-5)


def test_ais_seeding():
    """Same int seed: identical; different seeds: different; a torch.Generator is accepted and
    successive calls with it differ (one seed drawn per call)."""
    m, X = _bernoulli_100()
    X = X[:10]
    a = ais(m.likelihood(X), z_dim=2, n_points=10, generator=7, **AIS_SMALL)
    b = ais(m.likelihood(X), z_dim=2, n_points=10, generator=7, **AIS_SMALL)
    d = ais(m.likelihood(X), z_dim=2, n_points=10, generator=8, **AIS_SMALL)
    assert torch.equal(a.log_weights, b.log_weights)
    assert not torch.allclose(a.log_weights, d.log_weights)
    g = torch.Generator().manual_seed(0)
    e1 = ais(m.likelihood(X), z_dim=2, n_points=10, generator=g, **AIS_SMALL)
    e2 = ais(m.likelihood(X), z_dim=2, n_points=10, generator=g, **AIS_SMALL)
    assert not torch.allclose(e1.log_weights, e2.log_weights)
    g2 = torch.Generator().manual_seed(0)
    e3 = ais(m.likelihood(X), z_dim=2, n_points=10, generator=g2, **AIS_SMALL)
    assert torch.equal(e1.log_weights, e3.log_weights)


# ----------------------------------------------------------------------------------------------
# 5. diagnostics and non-finite likelihoods
# ----------------------------------------------------------------------------------------------

def test_ais_result_shapes_and_accept_rate():
    c = gt.linear_case()
    m, x = c["model"], c["x"][:7]
    r = ais(m.likelihood(x), z_dim=m.D, n_points=7, n_chains=5, n_intermediate=50,
            schedule="linear", leapfrog_steps=3, generator=0)
    assert r.log_px.shape == (7,) and r.log_weights.shape == (7, 5) and r.accept_rate.shape == (7,)
    assert all(isinstance(t, torch.Tensor) for t in (r.log_px, r.log_weights, r.accept_rate))
    assert ((r.accept_rate > 0) & (r.accept_rate <= 1)).all(), r.accept_rate
    assert torch.isfinite(r.log_weights).all()


def test_log_px_se_covers_the_truth_with_16_chains():
    """log-normal weights (AIS's usual picture), 16 chains: log(mean w) falls below log E[w] by 2
    of its standard errors about as often as a normal variable would, where the delta method alone,
    small exactly where the estimate is low, is more than four times too often."""
    g = torch.Generator().manual_seed(0)
    sigma, s = 1.0, 16
    log_w = sigma * torch.randn(20000, s, generator=g, dtype=torch.float64)
    est = torch.logsumexp(log_w, -1) - math.log(s)
    err = est - sigma**2 / 2                                  # log E[w] = σ²/2
    se = _log_mean_exp_se(log_w)
    delta = delta_method_se(log_w)
    assert (se >= delta).all()
    low = (err < -2 * se).double().mean().item()
    assert 0.01 < low < 0.08, low                            # a normal's is 0.023; a t with 15 df's 0.032
    assert (err < -2 * delta).double().mean().item() > 0.1   # what the delta method alone gives


@pytest.mark.parametrize("fill", [-math.inf, math.nan], ids=["-inf", "nan"])
def test_ais_rejects_non_finite_proposals(fill):
    """log p(x|z) is -inf / nan outside the ball |z| <= 5. The posteriors (sd 0.15) sit well
    inside, so the exact log p(x) is the untruncated closed form (posterior mass outside
    < 1e-100), and the prior puts < 4e-6 there, so chains do not start outside; but once the
    step size has grown, leapfrog trajectories diverge and propose far outside (counted
    below). Those proposals must be rejected: log_px finite and right."""
    c = torch.tensor([[1.0, 0.0], [0.5, 0.5], [-0.8, 0.3], [0.2, -1.0], [1.2, 0.6], [0.0, 0.0]],
                     dtype=gt.DTYPE)
    tg = gt.TruncatedGaussian(c, sigma=0.15, radius=5.0, fill=fill)
    assert tg.ball_tail_bound() < 1e-100
    f, outside = tg.likelihood(), [0]

    def counting(z):
        outside[0] += int((z.detach().norm(dim=-1) > tg.radius).sum())
        return f(z)
    r = ais(counting, z_dim=2, n_points=6, n_chains=16, n_intermediate=1000,
            schedule="sigmoid", leapfrog_steps=10, generator=0)
    assert outside[0] > 1000, "the test did not exercise non-finite proposals"
    assert torch.isfinite(r.log_px).all(), r.log_px
    assert ((r.accept_rate > 0) & (r.accept_rate <= 1)).all(), r.accept_rate
    err = r.log_px - tg.log_px()
    assert float(err.abs().mean()) <= 0.25 and abs(float(err.mean())) <= 0.15, err
    est, se = pooled_log_ratio(r.log_weights, tg.log_px())
    assert abs(est) <= max(0.15, 4 * se), (est, se)


@pytest.mark.parametrize("fill", [-math.inf, math.nan], ids=["-inf", "nan"])
def test_ais_non_finite_at_start(fill):
    """The forbidden half-plane z0 > 0.8 holds 21% of the prior, so several chains start
    there: their weights must become zero (-inf log-weight, never nan), and log_px must stay
    finite and match the closed form of the truncated target (32 chains, 500 distributions)."""
    c = torch.tensor([[1.5, 0.0], [1.0, 0.5], [2.0, -0.3], [1.2, 0.0], [0.8, 1.0], [1.6, -1.0]],
                     dtype=gt.DTYPE)
    tg = gt.TruncatedGaussian(c, sigma=1.0, a=0.8, fill=fill)
    r = ais(tg.likelihood(), z_dim=2, n_points=6, n_chains=32, n_intermediate=500,
            schedule="sigmoid", leapfrog_steps=10, generator=0)
    assert not torch.isnan(r.log_weights).any(), r.log_weights
    assert (r.log_weights == -math.inf).any(), "no chain started in the forbidden region"
    assert torch.isfinite(r.log_px).all(), r.log_px
    err = r.log_px - tg.log_px()
    assert float(err.abs().mean()) <= 0.2, err


# ----------------------------------------------------------------------------------------------
# AIS started from a Gaussian q (e.g. the encoder's) instead of the prior
# ----------------------------------------------------------------------------------------------

def _orthogonal_case():
    """Linear-Gaussian model whose W has orthogonal columns: the posterior is a diagonal Gaussian."""
    m = gt.LinearGaussian(z_dim=4, x_dim=8, seed=3)
    q, _ = torch.linalg.qr(m.W)
    m.W = q * torch.tensor([2.0, 1.0, 0.5, 3.0], dtype=q.dtype)
    z, x = m.sample(20, seed=4)
    return m, z, x


def test_ais_from_the_exact_posterior_gives_log_px_on_every_chain():
    """Started at the exact (diagonal) posterior, every intermediate distribution is the posterior
    and every chain's log-weight is exactly log p(x): checks the Jacobian, the prior and every
    constant of the start's density, whatever the kernels do."""
    m, _, x = _orthogonal_case()
    mean, cov = m.posterior(x)
    std = torch.diagonal(cov).sqrt().expand_as(mean)
    r = ais(m.likelihood(x), z_dim=4, n_points=len(x), n_chains=8, n_intermediate=10,
            leapfrog_steps=3, generator=0, init=(mean, std))
    torch.testing.assert_close(r.log_weights, m.log_px(x)[:, None].expand(-1, 8), rtol=0, atol=1e-8)


@pytest.mark.parametrize("T", [5, 30])
def test_ais_from_a_gaussian_start_is_unbiased(T):
    """From a Gaussian that is not the posterior (the optimal FFG, then shifted and widened), the
    weights are still unbiased for p(x) at any length (kernels fixed: grow-only step sizes)."""
    c = gt.linear_case()
    m, x = c["model"], c["x"]
    mean, var = m.optimal_ffg(x)
    init = (mean + 0.3, 1.5 * var.sqrt().expand_as(mean))
    r = ais(m.likelihood(x), z_dim=m.D, n_points=len(x), n_chains=128, n_intermediate=T,
            schedule="sigmoid", leapfrog_steps=10, generator=0, step_size=0.3, target_accept=0.0,
            init=init)
    est, se = pooled_log_ratio(r.log_weights, c["log_px"])
    assert abs(est) <= max(0.05, 4 * se), (est, se)


def test_ais_from_a_gaussian_start_beats_the_prior_start():
    """The start closer to the posterior needs far fewer distributions: 30 from the optimal FFG
    are within 0.15 nats of exact (measured −0.11), where 30 from the prior are 2.6 short."""
    c = gt.linear_case()
    m, x = c["model"], c["x"]
    mean, var = m.optimal_ffg(x)
    kw = dict(z_dim=m.D, n_points=len(x), n_chains=16, n_intermediate=30, schedule="sigmoid", leapfrog_steps=10,
              generator=1)
    near = ais(m.likelihood(x), init=(mean, var.sqrt().expand_as(mean)), **kw)
    prior = ais(m.likelihood(x), **kw)
    err_near = float((near.log_px - c["log_px"]).mean())
    err_prior = float((prior.log_px - c["log_px"]).mean())
    assert abs(err_near) <= 0.15 and err_prior < -1.0, (err_near, err_prior)


def test_bdmc_from_a_gaussian_start_sandwiches_exact_log_px():
    """Reverse chains start from the true z mapped into the start's coordinates: the bounds
    sandwich the exact value, tightly with 200 distributions and on their own sides with 5."""
    c = gt.linear_case()
    m, x, z = c["model"], c["x"], c["z"]
    mean, var = m.optimal_ffg(x)
    init = (mean + 0.5, 2.0 * var.sqrt().expand_as(mean))
    long = bdmc(m.likelihood(x), z, n_chains=16, n_intermediate=200, schedule="sigmoid", generator=0, init=init)
    assert float((long.lower - c["log_px"]).mean()) <= 0.02
    assert float((long.upper - c["log_px"]).mean()) >= -0.02
    assert float((long.upper - long.lower).mean()) <= 0.1
    short = bdmc(m.likelihood(x), z, n_chains=16, n_intermediate=3, schedule="sigmoid", leapfrog_steps=2, generator=0,
                 init=init)
    assert float((short.lower - c["log_px"]).mean()) < -0.05 < float((short.upper - c["log_px"]).mean())


def test_ais_init_rejects_bad_start():
    c = gt.linear_case()
    m, x = c["model"], c["x"]
    mean = torch.zeros(len(x), m.D, dtype=torch.float64)
    with pytest.raises(ValueError, match="must be positive"):
        ais(m.likelihood(x), m.D, len(x), 2, 5, init=(mean, torch.zeros_like(mean)))
    with pytest.raises(ValueError, match="shape"):
        ais(m.likelihood(x), m.D, len(x), 2, 5, init=(mean, torch.ones(len(x), m.D + 1, dtype=torch.float64)))


def test_ais_from_a_full_covariance_start():
    """A Cholesky-factor start: at the exact correlated posterior every chain's log-weight is
    log p(x); BDMC from a perturbed full-covariance start still sandwiches the exact value."""
    c = gt.linear_case()
    m, x, z = c["model"], c["x"], c["z"]
    mean, cov = m.posterior(x)
    tril = torch.linalg.cholesky(cov).expand(len(x), -1, -1)
    r = ais(m.likelihood(x), m.D, len(x), 4, 8, leapfrog_steps=3, generator=0, init=(mean, tril))
    torch.testing.assert_close(r.log_weights, m.log_px(x)[:, None].expand(-1, 4), rtol=0, atol=1e-8)
    b = bdmc(m.likelihood(x), z, n_chains=16, n_intermediate=200, schedule="sigmoid", generator=0, step_size=0.3,
             init=(mean + 0.5, 1.5 * tril))
    assert float((b.lower - c["log_px"]).mean()) <= 0.02 <= 0.02 + float((b.upper - c["log_px"]).mean())
    assert float((b.upper - b.lower).mean()) <= 0.3  # measured 0.22


def test_benchmark_baseline_is_a_correct_ais():
    """The public-code AIS that `python -m vaegaps.bench` times against is a real estimator: on
    the 2-D Bernoulli decoder it matches quadrature (linear schedule, 16 chains × 200, L = 5; its
    own schedule and step sizes make it noisier than `ais`), and too short a run of it is visibly
    biased low, so the benchmark compares like with like."""
    from vaegaps.bench import baseline_ais

    c = gt.bernoulli_case()
    m, x = c["model"], c["x"].float()

    def decoder(z):
        return m.logits(z.double()).float()

    good = baseline_ais(decoder, x, 2, n_chains=16, n_intermediate=200, leapfrog_steps=5, step_size=0.1)
    err = good.double() - c["log_px"]
    assert float(err.abs().mean()) <= 0.3, f"mean abs error {float(err.abs().mean()):.4f}"
    assert abs(float(err.mean())) <= 0.15 and float(err.max()) <= 1.0, (float(err.mean()), float(err.max()))
    short = baseline_ais(decoder, x, 2, n_chains=16, n_intermediate=5, leapfrog_steps=5, step_size=0.1)
    assert float((short.double() - c["log_px"]).mean()) < -1.0


def test_benchmark_counts_equal_transitions(monkeypatch):
    """Benchmark (b) divides each side's time by the transitions that side really makes: counted
    here (our HMC kernel calls; the baseline's decoder passes, L + 5 per transition) for the
    distribution counts `bench_ais` gives each side, they are equal and as printed."""
    from vaegaps import ais as ais_mod
    from vaegaps.bench import ais_transitions, baseline_ais, baseline_transitions

    m = gt.LinearGaussian(z_dim=2, x_dim=3)
    _, x = m.sample(2)
    transitions, leapfrog = 4, 3
    calls = {"hmc": 0, "decoder": 0}
    real_hmc = ais_mod._hmc

    def counting_hmc(*a, **k):
        calls["hmc"] += 1
        return real_hmc(*a, **k)

    monkeypatch.setattr(ais_mod, "_hmc", counting_hmc)
    ais_mod.ais(m.likelihood(x), 2, 2, 3, transitions + 2, "linear", leapfrog, 0)
    assert calls["hmc"] == ais_transitions(transitions + 2) == transitions

    def decoder(z):
        calls["decoder"] += 1
        return z.sum(-1, keepdim=True).expand(-1, 5)

    baseline_ais(decoder, torch.ones(2, 5), 2, 3, transitions + 1, leapfrog)
    assert calls["decoder"] == baseline_transitions(transitions + 1) * (leapfrog + 5)
    assert baseline_transitions(transitions + 1) == transitions


def test_benchmark_baseline_reverse_brackets_log_px():
    """Benchmark (c) certifies the public-code baseline by its own BDMC: its reverse run from the
    latents the data were simulated from is a stochastic upper bound. On a linear-Gaussian model
    (closed-form log p(x)) forward ≤ log p(x) ≤ reverse up to noise, both close at a long
    schedule, and a short schedule opens a visible gap (so the certificate can fail)."""
    from vaegaps.bench import baseline_ais

    m = gt.LinearGaussian(z_dim=3, x_dim=6, noise_std=0.7, dtype=torch.float32)
    z, x = m.sample(24)
    truth = m.log_px(x).double()

    def decoder(v):
        return v @ m.W.t() + m.b

    def log_gauss(mean, data):
        return (-0.5 * ((data - mean) / m.s).pow(2) - math.log(m.s) - 0.5 * math.log(2 * math.pi)).sum(-1)

    kw = dict(n_chains=16, leapfrog_steps=5, step_size=0.1, log_bernoulli=log_gauss)
    lower = baseline_ais(decoder, x, 3, n_intermediate=300, **kw).double()
    upper = baseline_ais(decoder, x, 3, n_intermediate=300, seed=1, z_true=z, **kw).double()
    assert float((lower - truth).mean()) <= 0.1 and float((upper - truth).mean()) >= -0.1   # within noise
    assert float((upper - lower).mean()) <= 0.3, float((upper - lower).mean())
    short_gap = (baseline_ais(decoder, x, 3, n_intermediate=3, seed=1, z_true=z, **kw)
                 - baseline_ais(decoder, x, 3, n_intermediate=3, **kw)).mean()
    assert float(short_gap) > 1.0, float(short_gap)


def test_certified_benchmark_climbs_to_the_first_certifying_schedule():
    """Benchmark (c) times each side at the cheapest schedule of its ladder whose BDMC gap is at
    most the pass mark, and says when none certifies (its ratio is then a lower bound)."""
    from vaegaps.bench_certified import climb
    from vaegaps.tables import BDMC_PASS_NATS

    gaps = {100: 2.0, 300: BDMC_PASS_NATS * 0.5, 1000: 0.01}
    seen = []

    def run(chains, dists):
        seen.append(dists)
        return dict(gap=gaps[dists], gap_se=0.1, cpu_s=dists / 100)

    row = climb(run, [(16, 100), (16, 300), (16, 1000)], log=lambda *_: None)
    assert seen == [100, 300] and row["distributions"] == 300 and row["certified"]
    row = climb(run, [(16, 100)], log=lambda *_: None)
    assert row["distributions"] == 100 and not row["certified"]
