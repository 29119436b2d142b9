"""Variational families: FFG, the auxiliary-variable Flow (the paper's q_Flow) and a RealNVP flow.

Each family maps base parameters (mean, logvar) of shape (N, D) and standard-normal noise of
shape (N, S, n_noise, D) to samples z (N, S, D) and log q (N, S), the log-density of exactly
the sample returned. For the auxiliary flow, "log q" is log q(z_T, v_T | x) − log r(v_T | z_T, x),
so that E[log p(x, z) − log q] is its bound (docs/method.md §3).

The same classes serve both forms: *amortized* (batch=(), flow nets conditioned on encoder
features through `context`) and *local* (batch=(N,): every weight and bias has a leading
datapoint dimension; see `LocalPosterior`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from . import rng
from .bounds import LOG_2PI, log_normal_diag
from .nets import BatchedLinear, CouplingNet

# Coupling scales are sigmoid(logit + SCALE_BIAS): with zero-initialised heads a fresh flow is
# close to the identity (sigmoid(3)^2 ≈ 0.91) instead of halving z at every step.
SCALE_BIAS = 3.0
_FRESH_SIGMOID = 1 / (1 + math.exp(-SCALE_BIAS))   # a zero head's scale σ(SCALE_BIAS), in float64
FAMILIES = ("ffg", "flow", "realnvp")


def log_sigmoid(logit: torch.Tensor) -> torch.Tensor:
    """log σ(l) as l − softplus(l): never underflows to −inf (docs/method.md §8)."""
    return logit - F.softplus(logit)


def gaussian_sample(mean: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor):
    """Reparameterised draw from N(mean, diag exp(logvar)) of shape eps, with its log-density."""
    z = mean + torch.exp(0.5 * logvar) * eps
    return z, -0.5 * (eps.pow(2) + logvar + LOG_2PI).sum(-1)


def _affine(x, shift, logit):
    """x·σ(l) + shift, and log|det| = Σ log σ(l)."""
    logit = logit + SCALE_BIAS
    return x * torch.sigmoid(logit) + shift, log_sigmoid(logit).sum(-1)


def _affine_inverse(y, shift, logit):
    logit = logit + SCALE_BIAS
    return (y - shift) / torch.sigmoid(logit), log_sigmoid(logit).sum(-1)


class FFG(nn.Module):
    """Fully factorised Gaussian q(z) = N(mean, diag σ²)."""

    n_noise = 1
    bound_only = ()

    def __init__(self, z_dim: int, **_ignored):
        super().__init__()
        self.z_dim = z_dim

    def forward(self, mean, logvar, noise, context=None):
        return gaussian_sample(mean.unsqueeze(-2), logvar.unsqueeze(-2), noise[..., 0, :])

    def draw(self, mean, logvar, noise, context=None):
        """The draw of `forward` without its density: the point (z,)."""
        return (self.forward(mean, logvar, noise)[0],)

    def log_density(self, mean, logvar, z, context=None):
        return log_normal_diag(z, mean.unsqueeze(-2), logvar.unsqueeze(-2))


class AuxFlow(nn.Module):
    """Auxiliary-variable flow (docs/method.md §3), T coupling steps:

    v0 ~ q(v0|z0,x); v_t = v_{t−1}⊙σ1(z_{t−1}) + μ1(z_{t−1}); z_t = z_{t−1}⊙σ2(v_t) + μ2(v_t);
    log q(z_T, v_T|x) = log q(z0|x) + log q(v0|z0,x) − Σ_t log|det J_t|; reverse model r(v_T|z_T,x).
    """

    n_noise = 2
    bound_only = ("r_v",)   # in the bound's log q term, not in the law of the draw (path_sample)

    def __init__(self, z_dim: int, hidden: int = 200, steps: int = 2, context: int = 0,
                 batch: tuple[int, ...] = (), act: str = "elu"):
        super().__init__()
        self.z_dim = z_dim

        def net():
            return CouplingNet(z_dim, z_dim, hidden, batch, context, act)

        self.q_v0 = net()
        self.r_v = net()
        self.v_nets = nn.ModuleList(net() for _ in range(steps))
        self.z_nets = nn.ModuleList(net() for _ in range(steps))

    def fresh_scale(self) -> torch.Tensor:
        """The factor by which a fresh flow (zero heads) scales z0 and v0: σ(SCALE_BIAS)^T (float64)."""
        return torch.full((self.z_dim,), _FRESH_SIGMOID ** len(self.z_nets), dtype=torch.float64)

    def flow(self, z, v, c=None):
        """(z0, v0) → (z_T, v_T, Σ_t log|det J_t|)."""
        logdet = 0.0
        for fv, fz in zip(self.v_nets, self.z_nets):
            v, ld_v = _affine(v, *fv(z, c))
            z, ld_z = _affine(z, *fz(v, c))
            logdet = logdet + ld_v + ld_z
        return z, v, logdet

    def inverse(self, z, v, c=None):
        """(z_T, v_T) → (z0, v0, Σ_t log|det J_t|)."""
        logdet = 0.0
        for fv, fz in zip(reversed(self.v_nets), reversed(self.z_nets)):
            z, ld_z = _affine_inverse(z, *fz(v, c))
            v, ld_v = _affine_inverse(v, *fv(z, c))
            logdet = logdet + ld_v + ld_z
        return z, v, logdet

    def forward(self, mean, logvar, noise, context=None):
        z0, log_q = gaussian_sample(mean.unsqueeze(-2), logvar.unsqueeze(-2), noise[..., 0, :])
        v0, log_qv = gaussian_sample(*self.q_v0(z0, context), noise[..., 1, :])
        z, v, logdet = self.flow(z0, v0, context)
        log_r = log_normal_diag(v, *self.r_v(z, context))
        return z, log_q + log_qv - logdet - log_r

    def draw(self, mean, logvar, noise, context=None):
        """The draw of `forward` without its density: the point (z_T, v_T)."""
        z0, _ = gaussian_sample(mean.unsqueeze(-2), logvar.unsqueeze(-2), noise[..., 0, :])
        v0, _ = gaussian_sample(*self.q_v0(z0, context), noise[..., 1, :])
        z, v, _ = self.flow(z0, v0, context)
        return z, v

    def log_density(self, mean, logvar, z, v, context=None):
        """log q(z_T, v_T) − log r(v_T | z_T) at given points, by inverting the flow."""
        z0, v0, logdet = self.inverse(z, v, context)
        log_q = log_normal_diag(z0, mean.unsqueeze(-2), logvar.unsqueeze(-2))
        log_qv = log_normal_diag(v0, *self.q_v0(z0, context))
        return log_q + log_qv - logdet - log_normal_diag(v, *self.r_v(z, context))


class RealNVP(nn.Module):
    """RealNVP flow on z (no auxiliary variable): halves of z alternately shifted and scaled
    by a one-hidden-layer net of the other half."""

    n_noise = 1
    bound_only = ()

    def __init__(self, z_dim: int, hidden: int = 50, steps: int = 2, context: int = 0,
                 batch: tuple[int, ...] = (), act: str = "elu"):
        super().__init__()
        self.z_dim = z_dim
        self.split = z_dim // 2
        sizes = (self.split, z_dim - self.split)
        # step k conditions on half k % 2 and transforms the other half
        self.nets = nn.ModuleList(
            CouplingNet(sizes[k % 2], sizes[1 - k % 2], hidden, batch, context, act) for k in range(steps)
        )

    def fresh_scale(self) -> torch.Tensor:
        """The factor by which a fresh flow (zero heads) scales each coordinate of z0."""
        a = torch.ones(self.z_dim, dtype=torch.float64)
        for k in range(len(self.nets)):
            half = slice(self.split, None) if k % 2 == 0 else slice(0, self.split)
            a[half] *= _FRESH_SIGMOID
        return a

    def _halves(self, z):
        return [z[..., : self.split], z[..., self.split:]]

    def flow(self, z, c=None):
        h, logdet = self._halves(z), 0.0
        for k, net in enumerate(self.nets):
            a = k % 2
            h[1 - a], ld = _affine(h[1 - a], *net(h[a], c))
            logdet = logdet + ld
        return torch.cat(h, -1), logdet

    def inverse(self, z, c=None):
        h, logdet = self._halves(z), 0.0
        for k in reversed(range(len(self.nets))):
            a = k % 2
            h[1 - a], ld = _affine_inverse(h[1 - a], *self.nets[k](h[a], c))
            logdet = logdet + ld
        return torch.cat(h, -1), logdet

    def forward(self, mean, logvar, noise, context=None):
        z0, log_q = gaussian_sample(mean.unsqueeze(-2), logvar.unsqueeze(-2), noise[..., 0, :])
        z, logdet = self.flow(z0, context)
        return z, log_q - logdet

    def draw(self, mean, logvar, noise, context=None):
        """The draw of `forward` without its density: the point (z,)."""
        z0, _ = gaussian_sample(mean.unsqueeze(-2), logvar.unsqueeze(-2), noise[..., 0, :])
        return (self.flow(z0, context)[0],)

    def log_density(self, mean, logvar, z, context=None):
        z0, logdet = self.inverse(z, context)
        return log_normal_diag(z0, mean.unsqueeze(-2), logvar.unsqueeze(-2)) - logdet


def make_family(name: str, z_dim: int, batch: tuple[int, ...] = (), context: int = 0,
                hidden: int | None = None, steps: int = 2) -> nn.Module:
    """The family called `name` ('ffg', 'flow' = auxiliary flow, 'realnvp')."""
    if name == "ffg":
        return FFG(z_dim)
    if name == "flow":
        return AuxFlow(z_dim, hidden or 200, steps, context, batch)
    if name == "realnvp":
        return RealNVP(z_dim, hidden or 50, steps, context, batch)
    raise ValueError(f"unknown family {name!r}; choose one of {FAMILIES}")


class LocalPosterior(nn.Module):
    """One q per datapoint: free base parameters (N, D) and, for flows, per-datapoint flow nets.

    Initialised at the prior (mean 0, logvar 0) unless `mean`/`logvar` are given (e.g. from an
    encoder); `from_amortized` gives the parameters that reproduce an encoder's q exactly.
    """

    def __init__(self, family: str, n_points: int, z_dim: int, hidden: int | None = None,
                 steps: int = 2, mean: torch.Tensor | None = None, logvar: torch.Tensor | None = None):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(n_points, z_dim) if mean is None else mean.detach().clone())
        self.logvar = nn.Parameter(torch.zeros(n_points, z_dim) if logvar is None else logvar.detach().clone())
        self.family = make_family(family, z_dim, batch=(n_points,), hidden=hidden, steps=steps)

    def init_keyed(self, seed: int, stream: str, index: torch.Tensor) -> LocalPosterior:
        """Redraw the flow's random initial weights from the counter-based generator keyed by
        datapoint index, so a datapoint starts from the same q whatever batch it is in."""
        with torch.no_grad():
            for name, m in self.family.named_modules():
                if isinstance(m, BatchedLinear) and m.bound > 0:
                    u = rng.uniform(seed, f"{stream}/init/{name}", index, 0, tuple(m.weight.shape[1:]),
                                    dtype=m.weight.dtype)
                    m.weight.copy_((2 * u - 1) * m.bound)
        return self

    @staticmethod
    def from_amortized(family: nn.Module, mean: torch.Tensor, logvar: torch.Tensor,
                       context: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-datapoint parameters (named as in a LocalPosterior of the same family, widths and
        steps) under which datapoint n's local q is exactly the amortized q(z|x_n): the shared
        weights repeated, and each layer's projection of the encoder features `context` (N, F),
        a constant for a given datapoint, folded into that datapoint's bias."""
        n = mean.shape[0]
        params = {"mean": mean.detach().clone(), "logvar": logvar.detach().clone()}
        for name, m in family.named_modules():
            if not isinstance(m, BatchedLinear):
                continue
            bias = m.bias.detach().expand(n, *m.bias.shape)
            if m.context is not None:
                bias = bias + m.context(context).detach().unsqueeze(-2)
            params[f"family.{name}.weight"] = m.weight.detach().expand(n, *m.weight.shape).clone()
            params[f"family.{name}.bias"] = bias.clone()
        return params

    @staticmethod
    def gaussian_start(family: str, mean: torch.Tensor, logvar: torch.Tensor, hidden: int | None = None,
                       steps: int = 2) -> dict[str, torch.Tensor]:
        """Parameters (to overlay on a fresh local q of `family`, whose flow heads are zero) under
        which that q is exactly N(mean, diag exp(logvar)) (N, D): the base Gaussian pre-scaled by
        the fresh flow's inverse scale and, for the auxiliary flow, the reverse model set to the
        exact law of v_T, so the auxiliary term costs nothing. A flow then starts at the same
        bound as the Gaussian it is given."""
        fam = make_family(family, mean.shape[-1], hidden=hidden, steps=steps)
        if isinstance(fam, FFG):
            return {"mean": mean.detach().clone(), "logvar": logvar.detach().clone()}
        a = fam.fresh_scale().to(mean)
        params = {"mean": mean.detach() / a, "logvar": logvar.detach() - 2 * torch.log(a)}
        if isinstance(fam, AuxFlow):   # v_T = a·v0 with v0 ~ N(0, I): r(v_T) = N(0, a²)
            bias = torch.zeros(mean.shape[0], 1, 2 * mean.shape[-1], dtype=mean.dtype, device=mean.device)
            bias[..., mean.shape[-1]:] = 2 * torch.log(a)
            params["family.r_v.head.bias"] = bias
        return params

    @property
    def n_noise(self) -> int:
        return self.family.n_noise

    def forward(self, noise: torch.Tensor | None = None, *, point: bool = False, at: tuple | None = None):
        """noise (N, S, n_noise, D) → z (N, S, D), log q (N, S). The two halves of that, for
        `path_sample`: with `point`, only the draw's point ((z,), or (z_T, v_T) for the auxiliary
        flow); with `at` (such a point), only its log q, the flow inverted (no noise)."""
        if at is not None:
            return self.family.log_density(self.mean, self.logvar, *at)
        if point:
            return self.family.draw(self.mean, self.logvar, noise)
        return self.family(self.mean, self.logvar, noise)

    def in_bound_only(self, name: str) -> bool:
        """Whether parameter `name` enters only the bound's log q term, not the law of the draw
        (the auxiliary flow's reverse model r)."""
        return any(name.startswith(f"family.{m}.") for m in self.family.bound_only)


def path_sample(q: LocalPosterior, params: dict, noise: torch.Tensor):
    """z (N, S, D) and log q (N, S) of the local q under `params`, shaped for the path-derivative
    ("sticking the landing") gradient (docs/method.md §4): z is drawn through `params`, and log q
    is the density of that z under the same values with the parameters of q's law detached, so
    the gradient of log p(x, z) − log q keeps only its path through z and drops the score term
    E[∇ log q] (zero in expectation, and what makes the gradient noisy near the optimum). The
    auxiliary flow's reverse model r stays live: its gradient is no score term. The values equal
    `functional_call(q, params, (noise,))`'s up to the rounding of the flow's inverse."""
    point = functional_call(q, params, (noise,), {"point": True})
    stopped = {k: v if q.in_bound_only(k) else v.detach() for k, v in params.items()}
    return point[0], functional_call(q, stopped, (), {"at": point})
