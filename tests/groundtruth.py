"""Exact answers for the estimator tests (AIS, BDMC, local optimisation).

Every model here has a prior p(z) = N(0, I_D) and a likelihood whose marginal likelihood, optimal
fully-factorised Gaussian (FFG) and its ELBO are known exactly, either in closed form or by
deterministic quadrature in two dimensions:

* ``LinearGaussian``: p(x|z) = N(Wz + b, s^2 I). log p(x), the posterior, the optimal FFG and its
  ELBO in closed form.
* ``BernoulliDecoder2D``: a fixed random MLP decoder 2 -> H -> P Bernoulli logits. log p(x) by grid
  quadrature (trapezoid rule, spectrally accurate for smooth integrands), the optimal FFG by
  Gauss-Hermite expectations + L-BFGS with restarts.
* ``TruncatedGaussian``: p(x|z) = N(c; z, sigma^2 I) restricted to z_0 <= a (outside the
  likelihood returns -inf or nan). log p(x) in closed form via the normal CDF.

Likelihood callables follow the estimator API: ``fn(z)`` with z of shape (N, S, D) returns (N, S),
log p(x_n | z_ns) for the n-th datapoint of the batch the callable was built for. Everything is
float64 unless asked otherwise.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

LOG2PI = math.log(2.0 * math.pi)
DTYPE = torch.float64


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------

def log_mean_exp(a: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.logsumexp(a, dim=dim) - math.log(a.shape[dim])


def std_normal_logpdf(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * LOG2PI


def diag_gaussian_logpdf(z: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    return (-0.5 * (z - mean) ** 2 / var - 0.5 * torch.log(var) - 0.5 * LOG2PI).sum(-1)


def mvn_logpdf(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, cov), x and mean (N, d), cov (d, d)."""
    d = x.shape[-1]
    L = torch.linalg.cholesky(cov)
    sol = torch.linalg.solve_triangular(L, (x - mean).T, upper=False)  # (d, N)
    maha = (sol ** 2).sum(0)
    logdet = 2.0 * torch.log(torch.diagonal(L)).sum()
    return -0.5 * (maha + logdet + d * LOG2PI)


def kl_gaussians(m0, cov0, m1, cov1) -> torch.Tensor:
    """KL(N(m0, cov0) || N(m1, cov1)); means (N, d), covariances (d, d)."""
    d = m0.shape[-1]
    cov1_inv = torch.linalg.inv(cov1)
    diff = m1 - m0
    maha = torch.einsum("ni,ij,nj->n", diff, cov1_inv, diff)
    return 0.5 * (torch.trace(cov1_inv @ cov0) + maha - d
                  + torch.logdet(cov1) - torch.logdet(cov0))


def gauss_hermite_2d(n: int, dtype=DTYPE):
    """Probabilists' Gauss-Hermite rule in 2-D: nodes (n*n, 2), weights (n*n,) summing to 1,
    so that sum_k w_k f(t_k) ~= E_{t ~ N(0, I_2)}[f(t)]."""
    t, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    T0, T1 = np.meshgrid(t, t, indexing="ij")
    W = np.outer(w, w)
    nodes = torch.tensor(np.stack([T0.ravel(), T1.ravel()], -1), dtype=dtype)
    weights = torch.tensor(W.ravel(), dtype=dtype)
    return nodes, weights


def grid_2d(lim: float = 6.0, n: int = 601, dtype=DTYPE):
    """A regular n x n grid on [-lim, lim]^2: points (n*n, 2), axis (n,), log cell area."""
    axis = torch.linspace(-lim, lim, n, dtype=dtype)
    Z0, Z1 = torch.meshgrid(axis, axis, indexing="ij")
    pts = torch.stack([Z0.reshape(-1), Z1.reshape(-1)], -1)
    h = float(axis[1] - axis[0])
    return pts, axis, 2.0 * math.log(h)


def grid_log_px(log_lik_on_points, lim: float = 6.0, n: int = 601, dtype=DTYPE,
                return_log_joint: bool = False):
    """log p(x) = log sum_cells p(x|z) p(z) dA for a 2-D latent (trapezoid rule; the integrand is
    negligible at the border so the end corrections vanish).

    log_lik_on_points(pts) with pts (G, 2) returns (N, G) log p(x_n | z_g).
    """
    pts, axis, log_area = grid_2d(lim, n, dtype)
    log_joint = log_lik_on_points(pts) + std_normal_logpdf(pts)[None, :]
    log_px = torch.logsumexp(log_joint, dim=1) + log_area
    if return_log_joint:
        return log_px, log_joint, pts, axis, log_area
    return log_px


def indexed(fn_factory, X: torch.Tensor, index: torch.Tensor):
    """Likelihood for the datapoints X[index] (so the n-th row of z scores X[index[n]])."""
    return fn_factory(X[index])


# ----------------------------------------------------------------------------------------------
# linear-Gaussian model
# ----------------------------------------------------------------------------------------------

class LinearGaussian:
    """p(z) = N(0, I_D), p(x|z) = N(W z + b, s^2 I_X)."""

    def __init__(self, z_dim: int = 4, x_dim: int = 8, noise_std: float = 1.0, seed: int = 0,
                 w_scale: float = 1.0, dtype=DTYPE):
        g = torch.Generator().manual_seed(seed)
        self.D, self.X, self.s, self.dtype = z_dim, x_dim, float(noise_std), dtype
        self.W = (w_scale * torch.randn(x_dim, z_dim, generator=g, dtype=dtype))
        self.b = torch.randn(x_dim, generator=g, dtype=dtype)

    # --- sampling and densities -------------------------------------------------------------
    def sample(self, n: int, seed: int = 1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.D, generator=g, dtype=self.dtype)
        x = z @ self.W.T + self.b + self.s * torch.randn(n, self.X, generator=g, dtype=self.dtype)
        return z, x

    def log_lik(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x (N, X), z (N, S, D) -> (N, S)."""
        mean = z @ self.W.T + self.b
        r = (x[:, None, :] - mean) / self.s
        return -0.5 * (r * r).sum(-1) - self.X * (math.log(self.s) + 0.5 * LOG2PI)

    def likelihood(self, x: torch.Tensor):
        x = x.detach()

        def fn(z):
            assert z.dim() == 3 and z.shape[0] in (1, x.shape[0]) and z.shape[2] == self.D, z.shape
            return self.log_lik(x, z.to(self.dtype))
        return fn

    def log_joint(self, x, z):
        return self.log_lik(x, z) + std_normal_logpdf(z)

    # --- exact answers ------------------------------------------------------------------------
    def marginal_cov(self) -> torch.Tensor:
        return self.W @ self.W.T + self.s ** 2 * torch.eye(self.X, dtype=self.dtype)

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        return mvn_logpdf(x, self.b.expand_as(x), self.marginal_cov())

    def posterior_precision(self) -> torch.Tensor:
        return torch.eye(self.D, dtype=self.dtype) + self.W.T @ self.W / self.s ** 2

    def posterior(self, x: torch.Tensor):
        """Mean (N, D) and covariance (D, D) of p(z|x)."""
        prec = self.posterior_precision()
        cov = torch.linalg.inv(prec)
        mean = ((x - self.b) @ self.W / self.s ** 2) @ cov  # cov symmetric
        return mean, cov

    def optimal_ffg(self, x: torch.Tensor):
        """argmax over diagonal Gaussians of the ELBO: mean = posterior mean,
        variance = 1 / diag(posterior precision). Returns mean (N, D), var (D,)."""
        mean, _ = self.posterior(x)
        var = 1.0 / torch.diagonal(self.posterior_precision())
        return mean, var

    def ffg_gap(self) -> float:
        """KL(q*_FFG || p(z|x)) = 0.5 (sum log diag Lambda - log det Lambda), the same for every x."""
        prec = self.posterior_precision()
        return float(0.5 * (torch.log(torch.diagonal(prec)).sum() - torch.logdet(prec)))

    def optimal_ffg_elbo(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.optimal_ffg(x)
        _, cov = self.posterior(x)
        kl = kl_gaussians(mean, torch.diag(var), self.posterior(x)[0], cov)
        return self.log_px(x) - kl

    def gaussian_elbo(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """Closed-form ELBO of q = N(mean, diag var); mean (N, D), var (N, D) or (D,)."""
        var = var.expand_as(mean)
        resid = x - mean @ self.W.T - self.b
        tr = (var[:, None, :] * self.W[None] ** 2).sum((-1, -2))  # tr(W diag(v) W^T)
        e_lik = (-0.5 * ((resid ** 2).sum(-1) + tr) / self.s ** 2
                 - self.X * (math.log(self.s) + 0.5 * LOG2PI))
        e_prior = -0.5 * ((mean ** 2).sum(-1) + var.sum(-1)) - 0.5 * self.D * LOG2PI
        entropy = 0.5 * torch.log(var).sum(-1) + 0.5 * self.D * (1.0 + LOG2PI)
        return e_lik + e_prior + entropy


# ----------------------------------------------------------------------------------------------
# 2-D latent, Bernoulli MLP decoder
# ----------------------------------------------------------------------------------------------

class BernoulliDecoder2D:
    """p(z) = N(0, I_2); logits = W2 act(W1 z + b1) + b2; p(x|z) = prod Bernoulli(logits).

    The default scales give posteriors of very different shapes: some near-Gaussian, some
    banana-shaped or multimodal (checked in test_groundtruth.py).
    """

    def __init__(self, hidden: int = 24, x_dim: int = 24, seed: int = 0, w1_scale: float = 2.5,
                 b1_scale: float = 1.0, w2_scale: float = 2.0, act: str = "tanh", dtype=DTYPE):
        g = torch.Generator().manual_seed(seed)
        self.H, self.P, self.dtype = hidden, x_dim, dtype
        self.W1 = w1_scale * torch.randn(hidden, 2, generator=g, dtype=dtype)
        self.b1 = b1_scale * torch.randn(hidden, generator=g, dtype=dtype)
        self.W2 = w2_scale * torch.randn(x_dim, hidden, generator=g, dtype=dtype)
        self.b2 = 0.5 * torch.randn(x_dim, generator=g, dtype=dtype)
        self.act = {"tanh": torch.tanh, "elu": F.elu}[act]

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        dt = z.dtype
        h = self.act(z @ self.W1.T.to(dt) + self.b1.to(dt))
        return h @ self.W2.T.to(dt) + self.b2.to(dt)

    def log_lik(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x (N, P) binary, z (N, S, 2) -> (N, S)."""
        l = self.logits(z)
        x = x.to(l.dtype)[:, None, :]
        return (-F.softplus(-l) * x - F.softplus(l) * (1.0 - x)).sum(-1)

    def likelihood(self, x: torch.Tensor):
        x = x.detach()

        def fn(z):
            assert z.dim() == 3 and z.shape[0] in (1, x.shape[0]) and z.shape[2] == 2, z.shape
            return self.log_lik(x, z.to(self.dtype))
        return fn

    def log_lik_on_points(self, x: torch.Tensor, pts: torch.Tensor, batch: int = 65536):
        """x (N, P), pts (G, 2) -> (N, G) by matrix products (no N x G x P tensor)."""
        out = []
        xd = x.to(pts.dtype)
        for i in range(0, pts.shape[0], batch):
            l = self.logits(pts[i:i + batch])  # (g, P)
            out.append(xd @ (-F.softplus(-l)).T + (1.0 - xd) @ (-F.softplus(l)).T)
        return torch.cat(out, 1)

    def sample(self, n: int, seed: int = 1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, 2, generator=g, dtype=self.dtype)
        p = torch.sigmoid(self.logits(z))
        x = (torch.rand(n, self.P, generator=g, dtype=self.dtype) < p).to(self.dtype)
        return z, x

    # --- exact answers ------------------------------------------------------------------------
    def log_px(self, x: torch.Tensor, lim: float = 6.0, n: int = 601) -> torch.Tensor:
        return grid_log_px(lambda pts: self.log_lik_on_points(x, pts), lim, n, self.dtype)

    def grid_posterior(self, x: torch.Tensor, lim: float = 6.0, n: int = 601):
        """Posterior probabilities of the grid cells (N, n, n) (sum to 1), plus the axis."""
        log_px, log_joint, pts, axis, log_area = grid_log_px(
            lambda p: self.log_lik_on_points(x, p), lim, n, self.dtype, return_log_joint=True)
        probs = torch.exp(log_joint - log_px[:, None] + log_area)
        return probs.reshape(-1, n, n), axis, log_px

    def posterior_moments(self, x: torch.Tensor, lim: float = 6.0, n: int = 601):
        probs, axis, _ = self.grid_posterior(x, lim, n)
        Z0, Z1 = torch.meshgrid(axis, axis, indexing="ij")
        m0 = (probs * Z0).sum((1, 2))
        m1 = (probs * Z1).sum((1, 2))
        c00 = (probs * (Z0 - m0[:, None, None]) ** 2).sum((1, 2))
        c11 = (probs * (Z1 - m1[:, None, None]) ** 2).sum((1, 2))
        c01 = (probs * (Z0 - m0[:, None, None]) * (Z1 - m1[:, None, None])).sum((1, 2))
        return torch.stack([m0, m1], -1), torch.stack([c00, c01, c11], -1)

    def n_modes(self, x: torch.Tensor, lim: float = 6.0, n: int = 241, rel: float = 1e-3):
        """Number of strict local maxima of the grid posterior holding density >= rel * max."""
        probs, _, _ = self.grid_posterior(x, lim, n)
        p = probs
        pad = F.pad(p[:, None], (1, 1, 1, 1), value=-1.0)[:, 0]
        is_max = torch.ones_like(p, dtype=torch.bool)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if di == 0 and dj == 0:
                    continue
                nb = pad[:, 1 + di:1 + di + n, 1 + dj:1 + dj + n]
                is_max &= p > nb
        big = p >= rel * p.amax((1, 2), keepdim=True)
        return (is_max & big).sum((1, 2))

    def gaussian_elbo_gh(self, x, mean, logvar, n_gh: int = 24) -> torch.Tensor:
        return gaussian_elbo_gh(lambda z: self.log_lik(x, z), mean, logvar, n_gh)

    def local_modes(self, x: torch.Tensor, k: int = 2, lim: float = 6.0, n: int = 121):
        """Up to k highest local maxima of each grid posterior, (N, k, 2) (repeats the global mode
        where there are fewer)."""
        probs, axis, _ = self.grid_posterior(x, lim, n)
        pad = F.pad(probs[:, None], (1, 1, 1, 1), value=-1.0)[:, 0]
        is_max = torch.ones_like(probs, dtype=torch.bool)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if di or dj:
                    is_max &= probs >= pad[:, 1 + di:1 + di + n, 1 + dj:1 + dj + n]
        score = torch.where(is_max, probs, torch.zeros_like(probs)).reshape(len(x), -1)
        top = score.topk(k, dim=1)
        flat = torch.where(top.values > 0, top.indices, top.indices[:, :1])
        return torch.stack([axis[flat // n], axis[flat % n]], -1)

    def optimal_ffg(self, x: torch.Tensor, n_gh: int = 24, n_modes: int = 2):
        """Best FFG, started at the grid posterior's mean and highest local modes (see
        `optimal_ffg_2d`). Returns elbo (N,), mean (N, 2), logvar (N, 2)."""
        post_mean, post_cov = self.posterior_moments(x, n=241)
        modes = self.local_modes(x, n_modes)
        mm_lv = torch.log(post_cov[:, [0, 2]].clamp_min(1e-6))
        starts = [(post_mean, mm_lv)]
        for i in range(n_modes):
            starts += [(modes[:, i], mm_lv - 1.0)]
        return optimal_ffg_2d(lambda z: self.log_lik(x, z), starts, n_gh)


def gaussian_elbo_gh(log_lik, mean: torch.Tensor, logvar: torch.Tensor, n_gh: int = 24):
    """ELBO of q = N(mean, diag exp(logvar)) in 2-D, prior N(0, I): E_q[log p(x|z)] by a
    tensor-product Gauss-Hermite rule, the prior and entropy terms in closed form.
    log_lik(z (N, K, 2)) -> (N, K)."""
    nodes, w = gauss_hermite_2d(n_gh, mean.dtype)
    z = mean[:, None, :] + torch.exp(0.5 * logvar)[:, None, :] * nodes[None]
    e_lik = (log_lik(z) * w).sum(-1)
    e_prior = -0.5 * ((mean ** 2).sum(-1) + torch.exp(logvar).sum(-1)) - LOG2PI
    entropy = 0.5 * logvar.sum(-1) + (1.0 + LOG2PI)
    return e_lik + e_prior + entropy


def optimal_ffg_2d(log_lik, starts, n_gh: int = 24, iters: int = 150):
    """argmax of the (deterministic, Gauss-Hermite) ELBO over 2-D diagonal Gaussians by L-BFGS
    from each (mean (N, 2), logvar (N, 2)) start; the best per datapoint.
    Returns elbo (N,), mean (N, 2), logvar (N, 2)."""
    best = best_m = best_lv = None
    for m0, lv0 in starts:
        m = m0.detach().clone().requires_grad_(True)
        lv = lv0.detach().clone().requires_grad_(True)
        opt = torch.optim.LBFGS([m, lv], lr=1.0, max_iter=iters, tolerance_grad=1e-9,
                                tolerance_change=1e-13, history_size=30,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = -gaussian_elbo_gh(log_lik, m, lv, n_gh).sum()
            loss.backward()
            return loss
        opt.step(closure)
        with torch.no_grad():
            e = gaussian_elbo_gh(log_lik, m, lv, n_gh)
            e = torch.where(torch.isfinite(e), e, torch.full_like(e, -math.inf))
            if best is None:
                best, best_m, best_lv = e, m.detach().clone(), lv.detach().clone()
                continue
            better = e > best
            best = torch.where(better, e, best)
            best_m = torch.where(better[:, None], m, best_m)
            best_lv = torch.where(better[:, None], lv, best_lv)
    return best, best_m, best_lv


# ----------------------------------------------------------------------------------------------
# Gaussian likelihood with a forbidden half-plane (non-finite values there)
# ----------------------------------------------------------------------------------------------

@dataclass
class TruncatedGaussian:
    """log p(x_n|z) = log N(c_n; z, sigma^2 I) where z is allowed, and `fill` (-inf or nan)
    where it is not: z_0 > a (a half-plane) or |z| > radius (outside a ball).

    p(x_n) = N(c_n; 0, (1 + sigma^2) I) * P(allowed) under the untruncated posterior
    N(m_n, sd^2 I), m_n = c_n / (1 + sigma^2), sd^2 = sigma^2 / (1 + sigma^2). For the half-plane
    P = Phi((a - m_n0) / sd); the ball is only used with radius - |m_n| > 8 sd, where
    1 - P < 1e-12 (checked by `ball_tail_bound`) and is neglected.
    """

    c: torch.Tensor  # (N, D)
    sigma: float
    a: float = math.inf
    fill: float = -math.inf
    radius: float = math.inf

    def allowed(self, z: torch.Tensor) -> torch.Tensor:
        return (z[..., 0] <= self.a) & (z.norm(dim=-1) <= self.radius)

    def likelihood(self, c: torch.Tensor | None = None):
        c = self.c if c is None else c

        def fn(z):
            assert z.dim() == 3 and z.shape[0] in (1, c.shape[0]), z.shape
            z = z.to(DTYPE)
            cc = c.to(DTYPE)[:, None, :]
            ll = (-0.5 * ((cc - z) / self.sigma) ** 2 - math.log(self.sigma) - 0.5 * LOG2PI).sum(-1)
            return torch.where(self.allowed(z), ll, torch.full_like(ll, self.fill))
        return fn

    def posterior(self):
        v = 1.0 + self.sigma ** 2
        return self.c.to(DTYPE) / v, math.sqrt(self.sigma ** 2 / v)

    def ball_tail_bound(self) -> float:
        """An upper bound on the untruncated posterior mass outside the ball (chi-square tail
        of |z - m| > radius - |m|, by the Chernoff bound)."""
        m, sd = self.posterior()
        D = m.shape[1]
        r = float((self.radius - m.norm(dim=1).max()) / sd)
        if r <= math.sqrt(D):
            return 1.0
        # P(chi2_D > r^2) <= (r^2/D)^(D/2) exp((D - r^2)/2)
        return math.exp(0.5 * D * math.log(r * r / D) + 0.5 * (D - r * r))

    def log_px(self) -> torch.Tensor:
        c = self.c.to(DTYPE)
        D = c.shape[1]
        v = 1.0 + self.sigma ** 2
        log_norm = -0.5 * (c * c).sum(-1) / v - 0.5 * D * (LOG2PI + math.log(v))
        if math.isinf(self.a):
            return log_norm
        m, sd = self.posterior()
        return log_norm + torch.special.log_ndtr((self.a - m[:, 0]) / sd)


# ----------------------------------------------------------------------------------------------
# shared, cached test problems (computed once per pytest session)
# ----------------------------------------------------------------------------------------------

@functools.cache
def linear_case(n: int = 40, z_dim: int = 4, x_dim: int = 8, noise_std: float = 1.0,
                model_seed: int = 0, data_seed: int = 1):
    """A linear-Gaussian model with n datapoints simulated from it, and the exact answers."""
    model = LinearGaussian(z_dim, x_dim, noise_std, model_seed)
    z, x = model.sample(n, data_seed)
    return dict(model=model, z=z, x=x, log_px=model.log_px(x),
                ffg_elbo=model.optimal_ffg_elbo(x), ffg_gap=model.ffg_gap())


@functools.cache
def bernoulli_case(n: int = 40, model_seed: int = 0, data_seed: int = 1, n_gh: int = 16):
    """The 2-D Bernoulli-decoder model with n datapoints simulated from it; quadrature log p(x),
    the optimal FFG (ELBO, mean, logvar), the FFG gap and the number of posterior modes."""
    model = BernoulliDecoder2D(seed=model_seed)
    z, x = model.sample(n, data_seed)
    log_px = model.log_px(x)
    elbo, mean, logvar = model.optimal_ffg(x, n_gh=n_gh)
    n_modes = model.n_modes(x)
    return dict(model=model, z=z, x=x, log_px=log_px, ffg_elbo=elbo, ffg_mean=mean,
                ffg_logvar=logvar, ffg_gap=log_px - elbo, n_modes=n_modes)
