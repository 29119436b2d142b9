"""Measuring a user's own VAE (vaegaps.measure, docs/method.md §11): closed-form answers on a
linear-Gaussian user model, one-line errors for models that break the protocol, every supported
likelihood, a prior other than N(0, I), an encoder outside the optimisable families, the data
formats, and the worked example in examples/ (reduced mode)."""

import math
import subprocess
import sys
import types

import groundtruth as gt
import numpy as np
import pandas as pd
import pytest
import torch
from torch import distributions as D
from torch import nn
from workflow_runner import REPO

import vaegaps
from vaegaps.errors import VaegapsError
from vaegaps.user_model import ProtocolError, UserVAE, load_data


class LinearGaussianVAE(nn.Module):
    """A user model written against the protocol only: p(z) = N(0, I), p(x|z) = N(Wz + b, s² I);
    the encoder gives the exact posterior mean and `enc_scale` times the optimal FFG variance, so
    L[q] < L[q*_FFG] by a known amount."""

    def __init__(self, lg: gt.LinearGaussian, enc_scale: float = 2.0):
        super().__init__()
        self.register_buffer("W", lg.W.clone())
        self.register_buffer("b", lg.b.clone())
        self.s = lg.s
        self.register_buffer("A", torch.linalg.solve(lg.posterior_precision(), lg.W.T / lg.s ** 2))
        self.register_buffer("logvar", math.log(enc_scale) - torch.log(torch.diagonal(lg.posterior_precision())))

    def encode(self, x):
        return (x - self.b) @ self.A.T, self.logvar.expand(len(x), -1)

    def decode(self, z):
        return D.Normal(z @ self.W.T + self.b, self.s)


LOCAL_LG = {"n_samples": 100, "lr": 1e-2, "check_every": 50, "patience": 5, "max_steps": 2000,
            "final_samples": 5000}   # the settings of tests/test_local_opt.py's closed-form test


def test_linear_gaussian_user_model_matches_closed_form():
    """40 datapoints of the D=4, X=8 linear-Gaussian model of tests/groundtruth.py through
    vaegaps.measure: AIS and log p̂ within the tolerances of tests/test_ais.py (mean signed error
    ±0.04, mean absolute ≤ 0.1 nats), L[q*_FFG] within those of tests/test_local_opt.py (mean
    absolute 0.05, mean signed 0.03), and L[q] and the amortization gap against their closed forms."""
    c = gt.linear_case()
    lg, x = c["model"], c["x"]
    model = LinearGaussianVAE(lg)
    df = vaegaps.measure(model, x, local_families=["ffg"], local=LOCAL_LG, progress=False,
                         ais={"n_chains": 32, "n_intermediate": 200})
    assert list(df["index"]) == list(range(40)) and set(df["qstar_family"]) == {"ffg"}
    for col in ("ais", "log_px"):
        err = torch.as_tensor(df[col].to_numpy(copy=True)) - c["log_px"]
        assert abs(float(err.mean())) <= 0.04 and float(err.abs().mean()) <= 0.10, (col, err)
    d = torch.as_tensor(df["elbo_local_ffg"].to_numpy(copy=True)) - c["ffg_elbo"]
    assert float(d.abs().mean()) <= 0.05 and abs(float(d.mean())) <= 0.03, d
    assert df["converged_local_ffg"].all()
    mean, logvar = model.encode(x)
    exact_q = lg.gaussian_elbo(x, mean, logvar.exp())
    e = torch.as_tensor(df["elbo_amortized"].to_numpy(copy=True)) - exact_q
    assert float(e.abs().mean()) <= 0.05 and abs(float(e.mean())) <= 0.03, e
    a = torch.as_tensor(df["amortization_gap"].to_numpy(copy=True)) - (c["ffg_elbo"] - exact_q)
    assert abs(float(a.mean())) <= 0.05, a
    assert np.allclose(df["approximation_gap"] + df["amortization_gap"], df["inference_gap"])
    row = vaegaps.summary(df).iloc[0]
    assert row["n_points"] == 40 and abs(row["approximation_gap"] - c["ffg_gap"]) <= 0.1
    assert row["amortization_gap_note"] == "" and row["frac_qstar_converged"] == 1.0


class ShiftedPriorVAE(nn.Module):
    """p(z) = N(μ, σ²I) (the model's `prior`), p(x|z) = N(Wz + b, s²I). In u = (z − μ)/σ it is
    the standard-prior model `eq` (W' = σW, b' = Wμ + b), whose answers are closed-form; the
    encoder gives the posterior mean and twice the optimal FFG variance, mapped to z."""

    def __init__(self, lg: gt.LinearGaussian, mu: torch.Tensor, sigma: float):
        super().__init__()
        self.eq = gt.LinearGaussian(lg.D, lg.X, lg.s, dtype=lg.dtype)
        self.eq.W, self.eq.b = sigma * lg.W, lg.W @ mu + lg.b
        self.inner = LinearGaussianVAE(self.eq)   # the encoder in u
        self.register_buffer("W", lg.W.clone())
        self.register_buffer("b", lg.b.clone())
        self.mu, self.sigma, self.s = mu, sigma, lg.s
        self.prior = D.Normal(mu, torch.full_like(mu, sigma))

    def encode(self, x):
        mean_u, logvar_u = self.inner.encode(x)
        return self.mu + self.sigma * mean_u, logvar_u + 2 * math.log(self.sigma)

    def decode(self, z):
        return D.Normal(z @ self.W.T + self.b, self.s)


def test_prior_other_than_standard_normal_is_exact():
    """A prior N(μ, σ²I) is folded into the likelihood: AIS and L[q] match the closed forms of
    the equivalent standard-prior model (the ELBO does not change under z = μ + σu)."""
    lg = gt.LinearGaussian(z_dim=3, x_dim=6, seed=3)
    model = ShiftedPriorVAE(lg, torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64), 1.7)
    _, x = model.eq.sample(12, seed=4)
    df = vaegaps.measure(model, x, local_families=["ffg"], progress=False, amortized={"n_samples": 2000},
                         local={"n_samples": 10, "check_every": 10, "max_steps": 20, "final_samples": 100},
                         ais={"n_chains": 16, "n_intermediate": 200})
    err = torch.as_tensor(df["ais"].to_numpy(copy=True)) - model.eq.log_px(x)
    assert abs(float(err.mean())) <= 0.04 and float(err.abs().mean()) <= 0.10, err
    mean_u, logvar_u = model.inner.encode(x)
    e = torch.as_tensor(df["elbo_amortized"].to_numpy(copy=True)) - model.eq.gaussian_elbo(x, mean_u, logvar_u.exp())
    assert float(e.abs().mean()) <= 0.05, e
    z, xs = UserVAE(model, x).simulate(2000, seed=0)   # BDMC's data: z from the model's own prior
    assert abs(float(z.mean(0).sub(model.mu).abs().max())) < 0.15 and abs(float(z.std(0).mean()) - 1.7) < 0.1


# ------------------------------------------------------------------------------------------------
# one-line errors
# ------------------------------------------------------------------------------------------------

class Toy(nn.Module):
    """A small valid model: z_dim 2 (or `z_dim`), 5 binary pixels, Bernoulli decoder."""

    def __init__(self, z_dim=2):
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.Linear(5, 2 * z_dim)
        self.dec = nn.Linear(z_dim, 5)

    def encode(self, x):
        mean, logvar = self.enc(x).chunk(2, -1)
        return mean, logvar

    def decode(self, z):
        return D.Bernoulli(logits=self.dec(z))


def _broken(z_dim=2, **methods):
    """A Toy whose methods are replaced by `methods` (functions of self and one argument)."""
    model = Toy(z_dim)
    for name, fn in methods.items():
        setattr(model, name, types.MethodType(fn, model))
    return model


def _no(name):
    """A model class without method `name`."""
    def init(self):
        nn.Module.__init__(self)
        self.enc, self.dec = nn.Linear(5, 4), nn.Linear(2, 5)

    return type("Partial", (nn.Module,), {"__init__": init, **{k: getattr(Toy, k) for k in ("encode", "decode")
                                                               if k != name}})()


X = (torch.rand(6, 5, generator=torch.Generator().manual_seed(0)) > 0.5).float()


def _no_grad(fn):
    with torch.no_grad():
        return fn()


BROKEN = {
    "no encode": (lambda: _no("encode"), "has no encode() method"),
    "no decode": (lambda: _no("decode"), "has no decode() method"),
    "encode returns one tensor": (lambda: _broken(encode=lambda self, x: self.enc(x)), "encode(x) returned"),
    "encode shapes disagree": (lambda: _broken(encode=lambda self, x: (self.enc(x)[:, :2], self.enc(x))),
                               "log-variance of shape"),
    "encode transposed": (lambda: _broken(encode=lambda self, x: tuple(t.T for t in self.enc(x).chunk(2, -1))),
                          "both must be (N, D)"),
    # D = 3, the protocol check's batch size: a (D, N) output is caught on a batch of another size
    "encode transposed, D = N": (lambda: _broken(3, encode=lambda self, x: tuple(t.T for t in self.enc(x).chunk(2, -1))),
                                 "both must be (N, D) = (4, D); it looks transposed"),
    "encode fails on the data": (lambda: _broken(encode=lambda self, x: self.enc(x.reshape(len(x), 5, 1))),
                                 "encode(x) fails"),
    "decode returns a tensor": (lambda: _broken(decode=lambda self, z: self.dec(z)), "not a torch.distributions.Distribution"),
    "decode takes 2-D z only": (lambda: _broken(decode=lambda self, z: D.Bernoulli(logits=self.dec(z.reshape(-1, 2, 1).squeeze(-1).view(z.shape[0], -1)))),
                                "decode(z) fails"),
    "log_prob flattened": (lambda: _broken(decode=lambda self, z: D.Bernoulli(logits=self.dec(z).flatten(0, 1))),
                           "log_prob(x)"),
    "decode not differentiable": (lambda: _broken(decode=lambda self, z: D.Bernoulli(logits=self.dec(z).detach())),
                                  "not differentiable"),
    "decode under torch.no_grad()": (lambda: _broken(decode=lambda self, z: _no_grad(lambda: D.Bernoulli(logits=self.dec(z)))),
                                     "not differentiable"),
    "data outside decode's support": (lambda: _broken(decode=lambda self, z: D.Uniform(
        self.dec(z) + 5, self.dec(z) + 6, validate_args=False)), "-inf for every datapoint"),
    "decode returns something else": (lambda: _broken(decode=lambda self, z: [self.dec(z)]), "not a torch.distributions"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_model_gives_one_line_error(case):
    make, words = BROKEN[case]
    with pytest.raises(ProtocolError) as err:
        vaegaps.measure(make(), X, progress=False)
    msg = str(err.value)
    assert words in msg and "\n" not in msg, msg
    assert isinstance(err.value, VaegapsError) and isinstance(err.value, ValueError)


def test_other_one_line_errors():
    with pytest.raises(ProtocolError, match="support"):                        # data outside the support
        vaegaps.measure(Toy(), X * 0.5, progress=False)
    bad_prior = Toy()
    bad_prior.prior = object()
    with pytest.raises(ProtocolError, match="prior .* needs log_prob"):
        vaegaps.measure(bad_prior, X, progress=False)
    tensor_out = _broken(decode=lambda self, z: self.dec(z))
    with pytest.raises(ProtocolError, match="needs noise_std"):
        vaegaps.measure(tensor_out, X, likelihood="normal", progress=False)
    with pytest.raises(ProtocolError, match="leave likelihood unset"):
        vaegaps.measure(Toy(), X, likelihood="bernoulli", progress=False)
    with pytest.raises(VaegapsError, match=r"vaegaps.measure setting 'ais': Additional properties .*n_chain"):
        vaegaps.measure(Toy(), X, ais={"n_chain": 3}, progress=False)
    with pytest.raises(VaegapsError, match="family"):
        vaegaps.measure(Toy(), X, family="full_covariance", progress=False)
    with pytest.raises(VaegapsError, match="shape .* does not fit"):
        vaegaps.measure(Toy(), X, shape=[2, 2], progress=False)


# ------------------------------------------------------------------------------------------------
# likelihoods, families, data
# ------------------------------------------------------------------------------------------------

class Decoder(nn.Module):
    """encode: a fixed Normal; decode: `kind` of distribution (or its raw parameters)."""

    def __init__(self, kind, out, raw=False):
        super().__init__()
        torch.manual_seed(1)
        self.kind, self.raw = kind, raw
        self.dec = nn.Linear(2, out)

    def encode(self, x):
        return D.Normal(torch.zeros(len(x), 2), torch.ones(len(x), 2))

    def decode(self, z):
        h = self.dec(z)
        if self.raw:
            return h.unflatten(-1, (4, 3)) if self.kind == "categorical" else h
        if self.kind == "bernoulli":
            return D.Bernoulli(logits=h)
        if self.kind == "continuous_bernoulli":
            return D.ContinuousBernoulli(logits=h)
        if self.kind == "normal_learned":   # mean and log-scale per pixel
            m, s = h.chunk(2, -1)
            return D.Independent(D.Normal(m, s.exp()), 1)
        if self.kind == "normal":
            return D.Normal(h, 0.3)
        return D.Categorical(logits=h.unflatten(-1, (4, 3)))     # 4 pixels, 3 levels


LIKELIHOOD_CASES = {  # kind: (decoder outputs, data)
    "bernoulli": (4, torch.tensor([[0.0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1]])),
    "continuous_bernoulli": (4, torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.2, 0.7, 0.4, 0.0], [1.0, 0.5, 0.5, 0.5]])),
    "normal": (4, torch.randn(3, 4, generator=torch.Generator().manual_seed(2))),
    "normal_learned": (8, torch.randn(3, 4, generator=torch.Generator().manual_seed(2))),
    "categorical": (12, torch.tensor([[0.0, 1, 2, 2], [2, 2, 1, 0], [1, 1, 1, 1]])),
}


@pytest.mark.parametrize("kind", list(LIKELIHOOD_CASES))
def test_each_likelihood_is_log_p_x_given_z(kind):
    """log p(x|z) of shape (N, S), summed over the data dimensions, equal to the distribution's own
    per-datapoint log_prob; the tensor form with `likelihood=` gives the same values."""
    out, x = LIKELIHOOD_CASES[kind]
    model = Decoder(kind, out)
    user = UserVAE(model, x)
    z = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(3))
    ll = user.log_likelihood(x)(z)
    assert ll.shape == (3, 5) and torch.isfinite(ll).all()
    for n in range(3):
        for s in range(5):
            assert torch.allclose(ll[n, s], model.decode(z[n, s]).log_prob(x[n]).sum(), atol=1e-5)
    if kind != "normal_learned":
        raw = UserVAE(Decoder(kind, out, raw=True), x, likelihood=kind, noise_std=0.3 if kind == "normal" else None)
        assert torch.allclose(raw.log_likelihood(x)(z), ll, atol=1e-6)
    zs, xs = user.simulate(4, seed=0)
    assert zs.shape == (4, 2) and xs.shape == (4, 4) and xs.is_floating_point()
    torch.testing.assert_close(user.simulate(4, seed=0)[1], xs)   # seeded: the same draws again


class FullCovarianceEncoder(Toy):
    """q(z|x) a full-covariance Gaussian: in no family the package optimises per datapoint."""

    def encode(self, x):
        mean, _ = self.enc(x).chunk(2, -1)
        tril = torch.tensor([[0.6, 0.0], [0.4, 0.5]]).expand(len(x), 2, 2)
        return D.MultivariateNormal(mean, scale_tril=tril)


TINY = dict(amortized={"n_samples": 100}, flow_hidden=8, progress=False,
            local={"n_samples": 8, "check_every": 10, "patience": 2, "max_steps": 40, "final_samples": 100},
            ais={"n_chains": 4, "n_intermediate": 20, "leapfrog_steps": 2, "pilot_chains": 2})


def test_encoder_outside_the_families_has_no_amortization_gap():
    """A full-covariance encoder: L[q] from its own draws, approximation gaps against q*_FFG and
    q*_Flow, no amortization gap, and the summary says why; declaring a family brings it back."""
    df = vaegaps.measure(FullCovarianceEncoder(), X, **TINY)
    assert df["amortization_gap"].isna().all() and df["approximation_gap"].isna().all()
    assert df[["approximation_gap_ffg", "approximation_gap_flow", "inference_gap", "elbo_amortized"]].notna().all().all()
    assert set(df["encoder_family"]) == {"other (MultivariateNormal)"} and set(df["qstar_family"]) == {""}
    row = vaegaps.summary(df).iloc[0]
    assert "no amortization gap" in row["amortization_gap_note"] and "MultivariateNormal" in row["amortization_gap_note"]
    assert np.isnan(row["amortization_gap"]) and np.isfinite(row["approximation_gap_flow"])
    again = vaegaps.measure(FullCovarianceEncoder(), X, **TINY)
    pd.testing.assert_frame_equal(df, again)                    # its draws are seeded too
    declared = vaegaps.measure(FullCovarianceEncoder(), X, family="flow", **TINY)
    assert declared["amortization_gap"].notna().all() and set(declared["qstar_family"]) == {"flow"}
    assert np.allclose(declared["elbo_local_flow"] - declared["elbo_amortized"], declared["amortization_gap"])


def test_rows_do_not_depend_on_chunking():
    """Random numbers keyed by datapoint index: chunks of 2 give the rows of one chunk of 6."""
    one = vaegaps.measure(Toy(), X, chunk_size=6, **TINY)
    three = vaegaps.measure(Toy(), X, chunk_size=2, **TINY)
    num = one.select_dtypes("number").columns
    np.testing.assert_allclose(one[num].to_numpy(float), three[num].to_numpy(float), rtol=1e-5, atol=1e-5)


class MLPDecoderVAE(Toy):
    """A user VAE whose decoder is a plain nn.Sequential MLP giving Bernoulli logits; `twist`
    makes decode(z) something else that the fused pass must not be used for."""

    def __init__(self, twist=None):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.ELU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 5))
        self.twist = twist

    def decode(self, z):
        logits = self.net(z)
        if self.twist == "shifted":
            return D.Bernoulli(logits=logits + 0.5)
        if self.twist == "probs":
            return D.Bernoulli(probs=torch.sigmoid(logits))
        return D.Independent(D.Bernoulli(logits=logits), 1)


def test_mlp_bernoulli_decoder_takes_the_fused_gradient(monkeypatch):
    """decode(z) = Bernoulli(logits=net(z)) with an MLP net is recognised and differentiated by
    the fused pass (equal to autograd); anything else, or unfrozen weights, stays on autograd; and
    measure's rows agree with the autograd path's."""
    user = UserVAE(MLPDecoderVAE(), X)
    assert user.mlp_layers is not None
    assert UserVAE(MLPDecoderVAE("shifted"), X).mlp_layers is None
    assert UserVAE(MLPDecoderVAE("probs"), X).mlp_layers is None
    assert UserVAE(Toy(), X).mlp_layers is None           # its decoder is a bare Linear: not recognised
    assert user.log_likelihood(X).fused is None            # weights still trainable: autograd
    for p in user.parameters():
        p.requires_grad_(False)
    lik = user.log_likelihood(X)
    z = torch.randn(6, 4, 2, generator=torch.Generator().manual_seed(3))
    value, grad = lik.value_and_grad(z)
    zz = z.clone().requires_grad_(True)
    ref = lik.plain(zz)
    (ref_grad,) = torch.autograd.grad(ref.sum(), zz)
    torch.testing.assert_close(value, ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)

    fused = vaegaps.measure(MLPDecoderVAE(), X, **TINY)
    monkeypatch.setattr(UserVAE, "_find_mlp_decoder", lambda self, n: None)
    plain = vaegaps.measure(MLPDecoderVAE(), X, **TINY)
    for col in ("elbo_amortized", "elbo_local_ffg", "elbo_local_flow", "ais"):
        np.testing.assert_allclose(fused[col], plain[col], atol=1e-4, err_msg=col)


class WithBatchNorm(Toy):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(5)

    def encode(self, x):
        return super().encode(self.bn(x))


def test_training_mode_gradients_and_batchnorm_statistics_are_left_alone():
    """The estimators run the model in eval mode, frozen; the user's model is left as it was."""
    model = WithBatchNorm().train()
    before = model.bn.running_mean.clone()
    vaegaps.measure(model, X, local_families=["ffg"], **TINY)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert torch.equal(model.bn.running_mean, before) and int(model.bn.num_batches_tracked) == 0


def test_data_formats(tmp_path):
    """Tensor, array, .npy, .npz and Parquet (a pixels column with split and index) give the same
    datapoints, keyed by their index."""
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", x=x)
    df = pd.DataFrame({"split": ["valid"] * 6 + ["train"] * 6, "index": [*range(6), *range(5, -1, -1)],
                       "pixels": [list(r) for r in np.concatenate([x + 100, x[::-1]])]})
    df.to_parquet(tmp_path / "x.parquet")
    for data in (torch.as_tensor(x), x, tmp_path / "x.npy", str(tmp_path / "x.npz"), tmp_path / "x.parquet"):
        index, got = load_data(data, "train", 4, shape=[2, 2])
        assert list(index) == [0, 1, 2, 3] and got.shape == (4, 2, 2), data
        np.testing.assert_array_equal(got.reshape(4, 4).numpy(), x[:4])
    with pytest.raises(VaegapsError, match="no rows of split 'test'"):
        load_data(tmp_path / "x.parquet", "test")
    with pytest.raises(VaegapsError, match="does not exist"):
        load_data(tmp_path / "missing.npy")


def test_import_vaegaps_does_not_import_torch():
    code = "import sys, vaegaps; assert 'torch' not in sys.modules; vaegaps.measure; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_worked_example_runs_in_reduced_mode(tmp_path, capsys):
    """examples/digits_categorical: train briefly, then vaegaps.measure and vaegaps.certify from
    Python, in reduced mode (the scripts' own main(), in this process). Its pipeline config is
    checked in tests/workflow/test_user_pipeline.py; the pipeline path itself runs there too."""
    import runpy

    ex = REPO / "examples" / "digits_categorical"
    sys.path.insert(0, str(ex))
    try:
        for script in ("train.py", "measure.py"):
            runpy.run_path(str(ex / script), run_name="example")["main"](["--quick", "--out", str(tmp_path)])
    finally:
        sys.path.remove(str(ex))
        sys.modules.pop("model", None)
    gaps = pd.read_csv(tmp_path / "gaps.csv")
    assert len(gaps) == 6 and gaps[["log_px", "elbo_amortized", "amortization_gap"]].notna().all().all()
    out = capsys.readouterr().out
    assert "Table 2 row" in out and "bdmc_gap" in out


def test_user_gaps_check_ais_against_every_bound():
    """The user path (`gap_table`, what `measure` returns): AIS below IWAE(q) beyond noise is
    flagged per datapoint and counted by `summary`; without a declared q* family the reference
    IWAE is the best *trusted* one of the fitted q*, and an untrusted IWAE is never log p̂."""
    from vaegaps.tables import gap_table

    n = 10
    lp = np.linspace(-50, -40, n)
    ais = pd.DataFrame({"index": range(n), "log_px": lp, "log_px_se": 0.1, "accept_rate": 0.7})
    local = {f: pd.DataFrame({"index": range(n), "elbo": lp - 2, "elbo_se": 0.1, "iwae": lp - 0.1, "iwae_se": 0.1,
                              "iwae_khat": 0.3, "converged": True, "steps": 100}) for f in ("ffg", "flow")}
    amortized = pd.DataFrame({"index": range(n), "elbo": lp - 5, "elbo_se": 0.1, "iwae": lp - 1, "iwae_se": 0.1,
                              "iwae_khat": 0.4})
    amortized.loc[[1, 4, 7], "iwae"] = lp[[1, 4, 7]] + 1.4
    df = gap_table(amortized, local, ais, "ffg", "ffg")
    assert df.index[df["ais_below_iwae_amortized"]].tolist() == [1, 4, 7] and not df["ais_below_iwae"].any()
    assert df["ais_below_any_bound"].sum() == 3 and (df.loc[[1, 4, 7], "log_px_source"] == "iwae_amortized").all()
    assert np.allclose(df["inference_gap_se"], np.hypot(df["log_px_se"], df["elbo_amortized_se"]))
    row = vaegaps.summary(df).iloc[0]
    assert row["frac_ais_below_any_bound"] == pytest.approx(0.3) and row["approximation_gap_is_lower_bound"]
    # no q* family: q*_Flow's IWAE is higher but untrusted, so q*_FFG's is the reference
    local["flow"]["iwae"], local["flow"]["iwae_khat"] = lp + 3, 0.9
    other = gap_table(amortized, local, ais, "other (X)", None)
    assert np.allclose(other["iwae_qstar"], lp - 0.1) and (other["iwae_qstar_khat"] == 0.3).all()


def test_one_gap_function_for_builtin_and_user_models():
    """A built-in model's gaps (`extended=False`, the gaps Parquet of the README) are columns of a
    user model's from the same frames, equal and in the same order; a q* family
    without its frame is a one-line error, not a KeyError."""
    from vaegaps.tables import gap_table

    n = 6
    lp = np.linspace(-50, -40, n)
    ais = pd.DataFrame({"index": range(n), "log_px": lp, "log_px_se": 0.1, "accept_rate": 0.7, "ais_start": "prior"})
    local = {f: pd.DataFrame({"index": range(n), "elbo": lp - d, "elbo_se": 0.1, "iwae": lp - 0.1, "iwae_se": 0.1,
                              "iwae_khat": 0.3, "converged": True, "steps": 100}) for f, d in (("ffg", 2), ("flow", 1))}
    amortized = pd.DataFrame({"index": range(n), "elbo": lp - 5, "elbo_se": 0.1, "iwae": lp - 1, "iwae_se": 0.1})
    builtin = gap_table(amortized, local, ais, "flow", "flow", extended=False)
    user = gap_table(amortized, local, ais, "flow", "flow")
    assert [c for c in user.columns if c in builtin.columns] == list(builtin.columns)   # in the same order
    pd.testing.assert_frame_equal(builtin, user[list(builtin.columns)])
    extras = set(user.columns) - set(builtin.columns)
    assert extras == {"inference_gap_se", "steps_local_ffg", "steps_local_flow", "approximation_gap_ffg",
                      "approximation_gap_ffg_se", "approximation_gap_flow", "approximation_gap_flow_se",
                      "accept_rate", "encoder_family", "qstar_family"}
    assert np.allclose(builtin["amortization_gap"], 4.0) and np.allclose(builtin["elbo_local_ffg"], lp - 2)
    with pytest.raises(VaegapsError, match="need its local_realnvp results; only ffg, flow"):
        gap_table(amortized, local, ais, "realnvp", "realnvp", extended=False)
    with pytest.raises(VaegapsError, match="different datapoints"):
        gap_table(amortized, {**local, "ffg": local["ffg"].iloc[::-1]}, ais, "flow", "flow")
    # an over-training point (q* of its own family alone): gap_frame's columns, nothing per family
    from vaegaps.tables import gap_frame
    point = gap_table(amortized, {"ffg": local["ffg"]}, ais, "ffg", "ffg", extended=False, per_family=False)
    pd.testing.assert_frame_equal(point, gap_frame(np.arange(n), ais, local["ffg"], amortized))
    assert not any(c.startswith(("elbo_local_", "converged_local_")) for c in point.columns)


def test_measure_flags_the_iwae_of_a_too_narrow_encoder():
    """An encoder with a twentieth of the optimal FFG variance: the IWAE of its q has weights too
    heavy-tailed to trust (k̂ > 0.7) on most datapoints, and log p̂ never comes from it there;
    one four times as wide covers the posterior (bounded weights, k̂ < 0.5) and is trusted."""
    lg = gt.LinearGaussian(z_dim=4, x_dim=8, seed=0)
    _, x = lg.sample(16, seed=2)
    kw = dict(local_families=["ffg"], progress=False, amortized={"n_samples": 2000},
              local={"n_samples": 10, "check_every": 10, "max_steps": 20, "final_samples": 500},
              ais={"n_chains": 8, "n_intermediate": 50})
    narrow = vaegaps.measure(LinearGaussianVAE(lg, enc_scale=0.05), x, **kw)
    wide = vaegaps.measure(LinearGaussianVAE(lg, enc_scale=4.0), x, **kw)
    assert narrow["iwae_amortized_untrusted"].mean() > 0.5, narrow["iwae_amortized_khat"]
    assert not (narrow["iwae_amortized_untrusted"] & (narrow["log_px_source"] == "iwae_amortized")).any()
    assert (wide["iwae_amortized_khat"] < 0.5).all() and not wide["iwae_amortized_untrusted"].any()
    assert vaegaps.summary(narrow).iloc[0]["frac_iwae_amortized_untrusted"] > 0.5
