"""The refinement curve (vaegaps.refinement, docs/method.md §12) against closed forms.

On the linear-Gaussian model (tests/groundtruth.py) plain gradient steps on the FFG ELBO, with the
mean μ and log-variance ℓ as parameters, have a closed-form trajectory. With z = μ + σ⊙ε,
Λ = I + WᵀW/s² (the posterior precision) and c = Wᵀ(x − b)/s²:

* the mean's step is μ ← μ + lr·(c − Λμ − Λ(σ⊙ε̄)), linear in μ, with ε̄ independent of σ; so
  E[μ_k] = μ* + (I − lr·Λ)^k (μ_0 − μ*) exactly, μ* = Λ⁻¹c the posterior mean;
* the log-variance's expected step is ℓ_j ← ℓ_j + lr/2·(1 − Λ_jj e^{ℓ_j}): the noise-free
  trajectory is this scalar recursion, whose fixed point is q*_FFG's ℓ_j = −log Λ_jj;
* the ELBO of any FFG is closed form (`LinearGaussian.gaussian_elbo`), so the noise-free curve is.

Many copies of one datapoint (distinct indices, so independent draws) estimate expectations.
"""

import math
from pathlib import Path

import groundtruth as gt
import numpy as np
import pandas as pd
import pytest
import torch
from test_measure import LOCAL_LG, TINY, FullCovarianceEncoder, LinearGaussianVAE, Toy, X

import vaegaps
from vaegaps import rng
from vaegaps.bounds import monte_carlo_bounds
from vaegaps.errors import VaegapsError
from vaegaps.evaluate import amortized_bounds, refinement_curve
from vaegaps.likelihood import InputError
from vaegaps.refinement import refine_curve
from vaegaps.tables import fraction_closed, refinement_table
from vaegaps.vae import VAE

LR = 0.1   # lr · λ_max(Λ) ≈ 0.55 for the model below: stable, the slowest mode contracts by 0.9 a step


def _case(copies=200, z_dim=3, x_dim=6):
    m = gt.LinearGaussian(z_dim, x_dim, noise_std=1.0, seed=5, w_scale=0.8)
    _, x = m.sample(1, seed=2)
    prec = m.posterior_precision()
    mu, _ = m.posterior(x)
    # the start: a poor "encoder" q, mean off by a fixed vector, variance 4x too wide
    mean0 = mu + torch.tensor([[1.0, -0.7, 0.5]], dtype=torch.float64)
    logvar0 = math.log(4.0) - torch.log(torch.diagonal(prec))[None]
    start = {"mean": mean0.expand(copies, -1).clone(), "logvar": logvar0.expand(copies, -1).clone()}
    return m, x.expand(copies, -1).clone(), start, prec, mu


def _closed_form(m, x, prec, mu, mean0, logvar0, k, lr=LR):
    """The noise-free trajectory after k steps: (mean (1, D), logvar (1, D)), and E[mean_k]."""
    mean = mu + (torch.linalg.matrix_power(torch.eye(m.D, dtype=torch.float64) - lr * prec, k)
                 @ (mean0 - mu).T).T
    logvar = logvar0.clone()
    for _ in range(k):
        logvar = logvar + 0.5 * lr * (1.0 - torch.diagonal(prec) * torch.exp(logvar))
    return mean, logvar


def test_expected_mean_follows_the_closed_form_trajectory():
    """E[μ_k] = μ* + (I − lr·Λ)^k (μ_0 − μ*) exactly, whatever the gradient noise (8 draws per
    step): the average over 400 independent copies agrees within 4 standard errors at k = 3, 30."""
    m, x, start, prec, mu = _case(copies=400)
    for k in (3, 30):
        r = refine_curve(m.likelihood(x), start, steps=[k], optimizer="sgd", lr=LR, n_samples=8,
                         final_samples=10, generator=1)
        exact, _ = _closed_form(m, x, prec, mu, start["mean"][:1], start["logvar"][:1], k)
        got = r.params["mean"]
        se = got.std(0) / math.sqrt(len(got))
        assert (se > 0).all()
        assert ((got.mean(0) - exact[0]).abs() <= 4 * se).all(), (k, got.mean(0), exact[0], se)
        assert not torch.allclose(exact, start["mean"][:1], atol=0.05)   # it has moved


def test_curve_matches_closed_form_and_ends_at_the_optimal_ffg():
    """With 256 draws per step the trajectory is the noise-free one up to ~0.003 nats: the mean
    curve over 50 copies matches the closed-form ELBO of the noise-free trajectory at every k
    (k = 0 exactly the start's ELBO), and after 400 steps equals the closed-form optimal-FFG ELBO;
    no point exceeds log p(x) beyond noise."""
    m, x, start, prec, mu = _case(copies=50)
    grid = [0, 1, 2, 5, 10, 20, 50, 100, 400]
    r = refine_curve(m.likelihood(x), start, steps=grid, optimizer="sgd", lr=LR, n_samples=256,
                     final_samples=2000, generator=3)
    assert r.elbo.shape == (50, len(grid)) and r.steps == grid and (r.diverged_at == 0).all()
    mean_curve = r.elbo.mean(0)
    mc_se = r.elbo.std(0) / math.sqrt(50)
    for j, k in enumerate(grid):
        mean_k, logvar_k = _closed_form(m, x, prec, mu, start["mean"][:1], start["logvar"][:1], k)
        exact = float(m.gaussian_elbo(x[:1], mean_k, torch.exp(logvar_k))[0])
        assert abs(float(mean_curve[j]) - exact) <= 0.01 + 4 * float(mc_se[j]), (k, float(mean_curve[j]), exact)
    optimum = float(c_opt := m.optimal_ffg_elbo(x[:1])[0])
    assert abs(float(mean_curve[-1]) - optimum) <= 0.01 + 4 * float(mc_se[-1]), (float(mean_curve[-1]), c_opt)
    assert float(mean_curve[-1] - mean_curve[0]) > 1.0      # the start was well below: a real gap closed
    log_px = float(m.log_px(x[:1])[0])
    assert (r.elbo <= log_px + 4 * r.elbo_se).all()
    assert float(mean_curve.max()) < log_px


def test_adam_reaches_the_optimal_ffg_too():
    m, x, start, _, _ = _case(copies=20)
    r = refine_curve(m.likelihood(x), start, steps=[0, 300], optimizer="adam", lr=0.05, n_samples=64,
                     final_samples=2000, generator=0)
    optimum = float(m.optimal_ffg_elbo(x[:1])[0])
    assert abs(float(r.elbo[:, -1].mean()) - optimum) < 0.03
    assert float(r.elbo[:, 0].mean()) < optimum - 1.0


def test_results_do_not_depend_on_the_batch():
    """A datapoint's curve is the same alone, in batches of 3 and among all: every draw is keyed
    by (seed, stream, datapoint index, step)."""
    c = gt.linear_case(n=9)
    m, x = c["model"], c["x"]
    mu, _ = m.posterior(x)
    start = {"mean": mu + 0.5, "logvar": torch.zeros_like(mu)}
    kw = dict(steps=[0, 3, 10], optimizer="sgd", lr=0.05, n_samples=4, final_samples=50, generator=7,
              index=torch.arange(100, 109))
    full = refine_curve(m.likelihood(x), start, **kw)
    batched = refine_curve(m.likelihood(x), start, batch_size=3, sample_batch=7, **kw)
    assert torch.allclose(full.elbo, batched.elbo, rtol=0, atol=1e-10)
    assert torch.allclose(full.elbo_se, batched.elbo_se, rtol=0, atol=1e-10)
    one = refine_curve(m.likelihood(x[4:5]), {k: v[4:5] for k, v in start.items()},
                       **{**kw, "index": torch.tensor([104])})
    assert torch.allclose(one.elbo[0], full.elbo[4], rtol=0, atol=1e-10)
    other_seed = refine_curve(m.likelihood(x), start, **{**kw, "generator": 8})
    assert not torch.allclose(other_seed.elbo, full.elbo)


@pytest.mark.parametrize("bad, message", [
    (dict(optimizer="momentum"), "optimizer must be one of sgd, adam"),
    (dict(steps=[5, 1]), "steps must be strictly increasing"),
    (dict(steps=[]), "steps must name at least one"),
    (dict(steps=[0, -1]), "every entry of steps must be an integer >= 0"),
    (dict(steps=[0, 1.5]), "every entry of steps must be an integer >= 0"),
    (dict(lr=0.0), "lr must be a positive number"),
    (dict(n_samples=0), "n_samples must be an integer >= 1"),
    (dict(final_samples=None), "final_samples must be an integer >= 1"),
    (dict(family="gaussian"), "family must be one of ffg, flow, realnvp"),
])
def test_bad_settings_are_one_line_errors(bad, message):
    c = gt.linear_case(n=3)
    m, x = c["model"], c["x"]
    start = {"mean": torch.zeros(3, m.D, dtype=torch.float64), "logvar": torch.zeros(3, m.D, dtype=torch.float64)}
    kw = {**dict(steps=[0, 2], optimizer="sgd", lr=0.1, n_samples=2, final_samples=10), **bad}
    with pytest.raises(InputError) as err:
        refine_curve(m.likelihood(x), start, **kw)
    assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="start must be a dict"):
        refine_curve(m.likelihood(x), {"logvar": start["logvar"]}, steps=[1], optimizer="sgd", lr=0.1,
                     n_samples=2, final_samples=10)


def test_divergence_is_reported_never_a_number():
    """An unstable learning rate (lr·λ_max ≫ 2): each datapoint stops at the step that broke, its
    later points are NaN; the evaluation layer makes it a one-line error naming the setting."""
    c = gt.linear_case(n=4)
    m, x = c["model"], c["x"]
    start = {"mean": torch.zeros(4, m.D, dtype=torch.float64), "logvar": torch.zeros(4, m.D, dtype=torch.float64)}
    r = refine_curve(m.likelihood(x), start, steps=[0, 1, 2000], optimizer="sgd", lr=5.0, n_samples=4,
                     final_samples=20, generator=0)
    assert (r.diverged_at > 0).all()
    assert torch.isfinite(r.elbo[:, 0]).all() and torch.isnan(r.elbo[:, -1]).all()


def _vae(family, seed=0):
    torch.manual_seed(seed)
    model = VAE(20, 4, (16,), (16,), family=family, flow_hidden=8, realnvp_hidden=6).eval()
    with torch.no_grad():   # non-trivial amortized flows (fresh heads are zero)
        for p in model.family.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = (torch.rand(6, 20, generator=torch.Generator().manual_seed(seed + 1)) < 0.5).float()
    return model, x


@pytest.mark.parametrize("family", ["ffg", "flow", "realnvp"])
def test_k0_is_exactly_the_encoders_q(family):
    """For every trained family, the curve's k = 0 is the encoder's amortized q scored on the same
    draws (equal to float32 round-off), and within noise of L[q] from its own draws; then it rises."""
    model, x = _vae(family)
    index = np.arange(10, 16)
    cfg = {"steps": [0, 100], "optimizer": "sgd", "lr": 0.01, "n_samples": 8, "final_samples": 400}
    curve = refinement_curve(model, x, index, family, cfg, seed=3)
    assert list(curve.columns) == ["index", "steps", "elbo", "elbo_se"]
    assert curve["index"].tolist() == [i for i in index for _ in range(2)] and curve["steps"].tolist() == [0, 100] * 6
    k0 = curve[curve["steps"] == 0]
    idx = torch.as_tensor(index)
    with torch.no_grad():
        mean, logvar, h = model.encode(x)
        ref = monte_carlo_bounds(
            lambda e: model.family(mean, logvar, e, h), model.log_likelihood(x), 400,
            lambda o, s: rng.normal(3, f"refinement_{family}/score", idx, 0, (s, model.family.n_noise, 4), offset=o),
            500)
    assert np.allclose(k0["elbo"].to_numpy(), ref.elbo.numpy(), atol=1e-4)
    amort = amortized_bounds(model, x, index, 4000, seed=3)
    d = k0["elbo"].to_numpy() - amort["elbo"].to_numpy()
    assert (np.abs(d) <= 4 * np.hypot(k0["elbo_se"].to_numpy(), amort["elbo_se"].to_numpy())).all()
    k100 = curve[curve["steps"] == 100]["elbo"].to_numpy()
    assert k100.mean() > k0["elbo"].mean()
    with pytest.raises(VaegapsError, match=f"lower evaluation.refinement.{family}.lr, or set "
                                           f"evaluation.refinement.{family}.optimizer: adam$"):
        refinement_curve(model, x, index, family, {**cfg, "lr": 1e4}, seed=3)


def test_fraction_closed_against_a_hand_computation():
    """f = (mean L_k − mean L[q]) / (mean L[q*] − mean L[q]) with the delta-method standard error
    on paired per-datapoint values, computed here by hand for 4 datapoints."""
    lq = np.array([-10.0, -12.0, -9.0, -11.0])
    lstar = np.array([-8.0, -9.0, -8.5, -9.5])      # gaps 2, 3, 0.5, 1.5: mean 1.75
    lk = np.array([-9.0, -10.0, -8.5, -10.0])       # closed 1, 2, 0.5, 1: mean 1.125
    f, se = fraction_closed(lk, lq, lstar)
    assert f == pytest.approx(1.125 / 1.75)
    a, b = lk - lq, lstar - lq
    resid = a - (1.125 / 1.75) * b                   # [-0.2857, 0.0714, 0.1786, 0.0357]
    by_hand = math.sqrt(((resid - resid.mean()) ** 2).sum() / 3) / math.sqrt(4) / 1.75
    assert se == pytest.approx(by_hand)
    assert se == pytest.approx(0.05712, abs=1e-5)
    assert fraction_closed(lq, lq, lstar) == (0.0, 0.0)
    assert np.isnan(fraction_closed(lk, lq, lq - 1.0)[0])   # no gap to close


def test_refinement_table_is_per_k_means_with_paired_fractions():
    index = np.arange(4)
    lq = np.array([-10.0, -12.0, -9.0, -11.0])
    lstar = lq + np.array([2.0, 3.0, 0.5, 1.5])
    curve = pd.DataFrame({"index": np.repeat(index, 3), "steps": np.tile([0, 10, 100], 4),
                          "elbo": np.stack([lq, lq + 1.0, lstar], 1).reshape(-1), "elbo_se": 0.01})
    t = refinement_table(curve, pd.DataFrame({"index": index, "elbo": lq}), pd.DataFrame({"index": index, "elbo": lstar}))
    assert list(t.columns) == ["steps", "elbo", "elbo_se", "fraction_closed", "fraction_closed_se"]
    assert t["steps"].tolist() == [0, 10, 100]
    assert t["elbo"].tolist() == pytest.approx([lq.mean(), lq.mean() + 1.0, lstar.mean()])
    assert t["fraction_closed"].tolist() == pytest.approx([0.0, 1 / 1.75, 1.0])
    assert t["elbo_se"].iloc[0] == pytest.approx(lq.std(ddof=1) / 2)
    with pytest.raises(VaegapsError, match="different datapoints"):
        refinement_table(curve, pd.DataFrame({"index": index + 1, "elbo": lq}),
                         pd.DataFrame({"index": index, "elbo": lstar}))


def test_a_users_vae_gets_the_closed_form_curve():
    """vaegaps.refine on a user's linear-Gaussian VAE whose encoder gives the posterior mean and
    twice the optimal FFG variance: k = 0 is L[q] in closed form, every k follows the noise-free
    log-variance recursion ℓ ← ℓ + lr/2·(1 − Λ_jj e^ℓ) (the mean is already optimal), and
    `refinement_summary` with `measure`'s frame gives fractions from 0 to 1 within noise."""
    c = gt.linear_case(n=30)
    lg, x = c["model"], c["x"]
    model = LinearGaussianVAE(lg)
    settings = dict(local_families=["ffg"], local=LOCAL_LG, ais={"n_chains": 4, "n_intermediate": 20},
                    refinement={"steps": [0, 10, 100, 1000], "lr": 0.01, "n_samples": 64, "final_samples": 2000})
    curve = vaegaps.refine(model, x, progress=False, **settings)
    assert list(curve.columns) == ["index", "steps", "elbo", "elbo_se"] and len(curve) == 30 * 4
    mean, logvar = model.encode(x)
    prec = torch.diagonal(lg.posterior_precision())
    for k in (0, 10, 100, 1000):
        lv = logvar[:1].clone()
        for _ in range(k):
            lv = lv + 0.5 * 0.01 * (1.0 - prec * torch.exp(lv))
        exact = lg.gaussian_elbo(x, mean, torch.exp(lv).expand_as(mean)).numpy()
        got = curve[curve["steps"] == k]
        d = got["elbo"].to_numpy() - exact
        assert abs(d.mean()) <= 0.01 + 4 * got["elbo_se"].mean() / math.sqrt(30), (k, d.mean())
    gaps = vaegaps.measure(model, x, progress=False, **settings)
    table = vaegaps.refinement_summary(curve, gaps)
    assert table["steps"].tolist() == [0, 10, 100, 1000]
    f, se = table["fraction_closed"].to_numpy(), table["fraction_closed_se"].to_numpy()
    assert abs(f[0]) <= 3 * se[0] + 0.02 and abs(f[-1] - 1) <= 3 * se[-1] + 0.03 and f[1] < f[2] < f[3] + 3 * se[3]
    with pytest.raises(VaegapsError, match="refinement.steps': the step counts must be increasing"):
        vaegaps.refine(model, x, progress=False, refinement={"steps": [0, 5, 2]})


def test_config_refinement_settings_are_checked_in_one_line():
    from vaegaps.config import defaults, validate
    from vaegaps.pipeline.study import check_refinement, resolved_config

    schema = Path(__file__).resolve().parents[1] / "src" / "vaegaps" / "config.schema.yaml"
    assert defaults("evaluation")["refinement"] == {"steps": [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
                                                    "optimizer": "sgd", "lr": 1e-3, "n_samples": 50,
                                                    "final_samples": 1000}
    cfg = validate({"datasets": ["digits"], "evaluation": {"refinement": {"steps": [0, 10, 5]}}}, schema)
    with pytest.raises(VaegapsError, match=r"^config error at 'evaluation.refinement.steps': the step counts must be "
                                           r"increasing, got \[0, 10, 5\]$"):
        check_refinement(cfg)
    cfg = validate({"datasets": ["digits"], "dataset_overrides": {"digits": {"evaluation": {"refinement": {
        "steps": [3, 1]}}}}}, schema)
    with pytest.raises(VaegapsError, match="dataset_overrides.digits.evaluation.refinement.steps"):
        check_refinement(cfg)
    cfg = validate({"datasets": ["digits"], "evaluation": {"refinement": {"lr": 0.01, "flow": {"optimizer": "adam",
                                                                                           "steps": [0, 9, 3]}}}},
                   schema)
    with pytest.raises(VaegapsError, match="'evaluation.refinement.flow.steps': the step counts must be increasing"):
        check_refinement(cfg)
    resolved = resolved_config(validate({"datasets": ["digits"], "evaluation": {"refinement": {
        "lr": 0.01, "flow": {"optimizer": "adam"}}}}, schema))["evaluation"]["digits"]["refinement"]
    assert resolved["ffg"]["optimizer"] == "sgd" and resolved["flow"]["optimizer"] == "adam"
    assert resolved["ffg"]["lr"] == resolved["flow"]["lr"] == 0.01 and resolved["flow"]["n_samples"] == 50
    for bad, where in (({"optimizer": "momentum"}, "optimizer"), ({"lr": 0}, "lr"), ({"steps": [0, 0]}, "steps"),
                       ({"steps": [-1]}, "steps.0"), ({"n_samples": 0}, "n_samples")):
        with pytest.raises(VaegapsError, match=f"config error at 'evaluation.refinement.{where}'"):
            validate({"datasets": ["digits"], "evaluation": {"refinement": bad}}, schema)


def test_an_encoder_outside_the_families_has_no_curve():
    """A full-covariance encoder cannot be copied into a family, declared or not: one line saying
    why; a diagonal-Gaussian encoder in a declared flow family starts exactly at L[q]."""
    for kw in ({}, {"family": "flow"}):
        with pytest.raises(VaegapsError) as err:
            vaegaps.refine(FullCovarianceEncoder(), X, progress=False, **kw)
        assert str(err.value).startswith("no refinement curve: ") and "\n" not in str(err.value)
    curve = vaegaps.refine(Toy(), X, progress=False, family="flow", flow_hidden=8,
                           refinement={"steps": [0, 3], "n_samples": 4, "final_samples": 500})
    gaps = vaegaps.measure(Toy(), X, family="flow", **TINY)
    d = curve[curve["steps"] == 0]["elbo"].to_numpy() - gaps["elbo_amortized"].to_numpy()
    assert (np.abs(d) <= 4 * np.hypot(curve[curve["steps"] == 0]["elbo_se"].to_numpy(),
                                      gaps["elbo_amortized_se"].to_numpy())).all(), d
