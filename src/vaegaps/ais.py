"""Annealed importance sampling and bidirectional Monte Carlo (BDMC).

Path f_β = q^(1−β)·(p(z)p(x|z))^β from a normalised start q to the posterior, one HMC trajectory
per intermediate distribution. q is the prior (the paper's AIS: f_β = p(z)·p(x|z)^β) or any
Gaussian N(μ, AAᵀ) per datapoint, A diagonal or a Cholesky factor, e.g. built from the encoder's
q(z|x); either way log p̂ stays a stochastic lower bound. Chains live in ε = A⁻¹(z − μ), where q
is N(0, I) and the path is the prior path with log p(x|z) replaced by
r(ε) = log p(z)p(x|z)|A| − log N(ε) (docs/method.md §5).
Chains run without autograd. r and its gradient are cached at the current state, and the
leapfrog's interior positions need the gradient only, so a transition costs L gradient
evaluations of which one also computes the value (docs/method.md §8).

Shapes: N datapoints, S chains per datapoint, D latent dimensions, T distributions.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from . import rng
from .bounds import log_mean_exp
from .config import defaults
from .likelihood import (
    InputError,
    LogLikelihood,
    batches,
    check_index,
    check_int,
    check_likelihood,
    check_number,
    check_optional_int,
    ll_and_grad,
    restrict,
)

log = logging.getLogger(__name__)

# A direct call's defaults are a study's: the schema's evaluation.ais section (config.schema.yaml).
AIS_DEFAULTS = defaults("ais")
# The step-size adaptation of every run that is not frozen (a pilot run, or tuning: online): the
# factor a step size grows or shrinks by per transition, small so that one chain's luck does not
# swing it, and the range it is kept in, wide enough for every model measured (docs/method.md §5).
ADAPT_FACTOR = 0.02
STEP_SIZE_BOUNDS = (1e-4, 0.5)
# The sigmoid schedule's steepness δ: β ∝ σ(δ(2t − 1)), rescaled to [0, 1]; δ = 4 puts 24% of the
# distributions in each end tenth of the β range (a linear schedule: 10%), where steps are 14x finer
# than in the middle.
SIGMOID_DELTA = 4.0


@dataclass
class AISResult:
    """What `ais` returns, per datapoint (N) and chain (S)."""

    log_px: torch.Tensor        # (N,) log-mean-exp of the chains' log-weights
    log_weights: torch.Tensor   # (N, S)
    accept_rate: torch.Tensor   # (N,) mean HMC acceptance over chains and transitions
    log_px_se: torch.Tensor     # (N,) standard error of log_px across chains (_log_mean_exp_se)
    step_sizes: torch.Tensor    # (T-2, N) step size of each transition (geometric mean over chains)


@dataclass
class BDMCResult:
    """What `bdmc` returns: the two bounds on log p(x) of each simulated datapoint."""

    lower: torch.Tensor         # (N,) forward AIS: stochastic lower bound on log p(x)
    upper: torch.Tensor         # (N,) reverse AIS from the true z: stochastic upper bound
    forward: AISResult
    reverse_log_weights: torch.Tensor  # (N, S)
    reverse_accept_rate: torch.Tensor  # (N,)


def schedule_betas(n: int, kind: str, delta: float = SIGMOID_DELTA) -> torch.Tensor:
    """β_0 = 0 < … < β_{n-1} = 1 (float64); 'sigmoid' spends more steps near both ends."""
    check_int("n_intermediate", n, 2)
    t = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    if kind == "linear":
        return t
    if kind == "sigmoid":
        s = torch.sigmoid(delta * (2.0 * t - 1.0))
        return (s - s[0]) / (s[-1] - s[0])
    raise ValueError(f"unknown AIS schedule {kind!r}; choose 'linear' or 'sigmoid'")


class _Target:
    """r(ε) = log p(z) + log p(x|z) − log q(z) at z = μ + A·ε (Jacobian included), and ∇_ε r.

    A is a per-datapoint diagonal (std, (N, D)) or lower-triangular Cholesky factor ((N, D, D)).
    Without a start (mean None) q is the prior, ε = z and r = log p(x|z) exactly.
    """

    def __init__(self, log_likelihood: LogLikelihood, mean=None, scale=None):
        self.log_likelihood, self.mean, self.tril = log_likelihood, mean, None
        if mean is None:
            return
        self.mean = mean.unsqueeze(1)                                          # (N, 1, D)
        if scale.dim() == 3:                                                   # full covariance
            self.tril = scale
            self.log_det = torch.diagonal(scale, dim1=-2, dim2=-1).log().sum(-1, keepdim=True)
        else:
            self.std = scale.unsqueeze(1)
            self.log_det = scale.log().sum(-1, keepdim=True)                   # (N, 1)

    def z(self, eps: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            return eps
        if self.tril is not None:
            return self.mean + eps @ self.tril.transpose(-1, -2)
        return self.mean + self.std * eps

    def eps(self, z: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            return z
        if self.tril is not None:
            sol = torch.linalg.solve_triangular(self.tril, (z - self.mean).transpose(-1, -2), upper=False)
            return sol.transpose(-1, -2)
        return (z - self.mean) / self.std

    def __call__(self, eps: torch.Tensor, value: bool = True):
        z = self.z(eps)
        ll, grad = ll_and_grad(self.log_likelihood, z, value)
        if self.mean is None:
            return ll, grad
        r = None if ll is None else ll + 0.5 * (eps.pow(2).sum(-1) - z.pow(2).sum(-1)) + self.log_det
        g = grad - z
        return r, (g @ self.tril if self.tril is not None else self.std * g) + eps


def _hmc(target, z, ll, grad, beta, eps, p, log_u, n_leapfrog):
    """One HMC trajectory targeting N(ε; 0, I)·exp(β r(ε)), per chain step sizes eps (N, S, 1).

    `ll`, `grad`: r and ∇r at the current state. Returns the new state (z, ll, grad) and the
    acceptance indicator (N, S). Proposals whose energy is not finite are rejected.
    """
    def energy(z_, ll_, p_):
        return 0.5 * (z_.pow(2).sum(-1) + p_.pow(2).sum(-1)) - beta * ll_

    h0 = energy(z, ll, p)
    z_new, ll_new, g_new = z, ll, grad
    p = p - 0.5 * eps * (z - beta * grad)
    for step in range(n_leapfrog):
        z_new = z_new + eps * p
        ll_new, g_new = target(z_new, value=step == n_leapfrog - 1)
        kick = eps if step < n_leapfrog - 1 else 0.5 * eps
        p = p - kick * (z_new - beta * g_new)
    log_ratio = h0 - energy(z_new, ll_new, p)
    accept = (log_u < log_ratio) & torch.isfinite(log_ratio)
    a = accept.unsqueeze(-1)
    return (torch.where(a, z_new, z), torch.where(accept, ll_new, ll),
            torch.where(a, g_new, grad), accept)


def _anneal(target, z, betas, seed, stream, index, n_leapfrog, step_size, target_accept,
            adapt_factor, bounds, frozen):
    """Run chains from ε = z (exact samples of f_{betas[0]}) along `betas`.

    Weight update with the current state, then one HMC transition targeting the next
    distribution (none after the last). `frozen` (T-2, N) replaces step-size adaptation.
    Returns log-weights (N, S), acceptance (N,), log step sizes of the T-2 transitions (T-2, N).
    """
    n, s, _ = z.shape
    ll, grad = target(z)
    log_w = torch.zeros(n, s, dtype=torch.float64, device=z.device)
    eps = torch.full((n, s, 1), step_size, dtype=z.dtype, device=z.device)
    accepted = torch.zeros(n, s, dtype=z.dtype, device=z.device)
    log_eps = torch.empty(len(betas) - 2, n, dtype=torch.float32, device=z.device)
    n_steps = len(betas) - 1
    for t in range(1, n_steps + 1):
        log_w += (betas[t] - betas[t - 1]).item() * ll.double()
        if t == n_steps:
            break
        if frozen is not None:
            eps = frozen[t - 1].to(z)[:, None, None].expand(n, s, 1)
        p = rng.normal(seed, f"{stream}/momentum", index, t, (s, z.shape[-1]), dtype=z.dtype)
        log_u = torch.log(rng.uniform(seed, f"{stream}/accept", index, t, (s,), dtype=z.dtype))
        z, ll, grad, acc = _hmc(target, z, ll, grad, betas[t].item(), eps, p, log_u, n_leapfrog)
        accepted += acc
        log_eps[t - 1] = torch.log(eps).mean(1).squeeze(-1)
        if frozen is None:  # per chain: grow while the chain's acceptance rate is above target
            up = (accepted / t > target_accept).unsqueeze(-1)
            eps = torch.where(up, eps * (1 + adapt_factor), eps * (1 - adapt_factor)).clamp(*bounds)
        if t % max(1, n_steps // 10) == 0:
            log.info("%s: distribution %d/%d, acceptance %.3f", stream, t, n_steps, (accepted / t).mean().item())
    return log_w, accepted.mean(1) / max(1, n_steps - 1), log_eps


def ais(log_likelihood: LogLikelihood, z_dim: int, n_points: int, n_chains: int = AIS_DEFAULTS["n_chains"],
        n_intermediate: int = AIS_DEFAULTS["n_intermediate"], schedule: str = AIS_DEFAULTS["schedule"],
        leapfrog_steps: int = AIS_DEFAULTS["leapfrog_steps"],
        generator: torch.Generator | int | None = None, *, index: torch.Tensor | None = None,
        step_size: float = AIS_DEFAULTS["step_size"], target_accept: float = AIS_DEFAULTS["target_accept"],
        adapt_factor: float = ADAPT_FACTOR, step_size_bounds: tuple[float, float] = STEP_SIZE_BOUNDS,
        step_sizes: torch.Tensor | None = None,
        batch_size: int | None = None, dtype: torch.dtype | None = None, device=None,
        stream: str = "ais", init: tuple[torch.Tensor, torch.Tensor] | None = None) -> AISResult:
    """AIS estimate of log p(x) for N datapoints with S chains each.

    `init` = (mean, scale): start from N(mean, std²) per datapoint (scale = std, (N, D), e.g. the
    encoder's q(z|x)) or from N(mean, L Lᵀ) (scale = lower-triangular L, (N, D, D)) instead of
    the prior. Random numbers are keyed by (seed, datapoint `index`, distribution), so a
    datapoint's result does not depend on which others share its batch. `step_sizes`
    (T-2, N), e.g. the `step_sizes` of a pilot run, freezes the step size of each transition
    instead of adapting.

    Arguments are checked first (a ValueError naming the argument and what it accepts), and the
    likelihood once, on z of shape (N, S, D): it must return (N, S) (vaegaps.likelihood).

    Args:
        log_likelihood: z (N, S, D) -> log p(x_n | z_ns) (N, S); see vaegaps.likelihood.
        z_dim, n_points: D and N.
        n_chains: S, independent chains per datapoint (≥ 1).
        n_intermediate: T, distributions on the path, both ends included (≥ 2).
        schedule: 'sigmoid' or 'linear' spacing of the inverse temperatures.
        leapfrog_steps: leapfrog steps per HMC transition (≥ 1).
        (n_chains, n_intermediate, schedule, leapfrog_steps, step_size and target_accept default
        to the schema's evaluation.ais settings, AIS_DEFAULTS: a study's values.)
        generator: seed (int) or torch.Generator; with `index` it keys every random draw.
        index: (N,) datapoint ids for the keys (default 0..N-1).
        step_size: initial leapfrog step (> 0), adapted towards `target_accept` unless `step_sizes`.
        target_accept, adapt_factor, step_size_bounds: the step-size adaptation.
        step_sizes: (T-2, N) frozen step sizes, e.g. a pilot run's `step_sizes`.
        batch_size: datapoints per batch (memory only; results do not depend on it).
        dtype, device: of the chains (default: the likelihood's).
        stream: name of the random stream (separates independent runs with one seed).
        init: (mean, scale) of a Gaussian start; None for the prior N(0, I).

    Returns:
        AISResult: log_px (N,), log_weights (N, S), accept_rate (N,), log_px_se (N,),
        step_sizes (T-2, N).
    """
    check_int("n_chains", n_chains)
    betas = schedule_betas(n_intermediate, schedule)
    check_int("leapfrog_steps", leapfrog_steps)
    check_number("step_size", step_size)
    check_number("target_accept", target_accept, 0.0, 1.0, closed="both")
    check_number("adapt_factor", adapt_factor, 0.0, 1.0, closed="low")
    if not (isinstance(step_size_bounds, (tuple, list)) and len(step_size_bounds) == 2):
        raise ValueError(f"step_size_bounds must be a pair (low, high), got {step_size_bounds!r}")
    check_number("step_size_bounds[0]", step_size_bounds[0], 0.0, closed="low")
    check_number("step_size_bounds[1]", step_size_bounds[1], step_size_bounds[0], closed="low")
    check_optional_int("batch_size", batch_size)
    # a likelihood with its own value_and_grad (vaegaps.likelihood) needs no autograd here
    dtype, device = check_likelihood(log_likelihood, z_dim, n_points, dtype, device,
                                     autograd=getattr(log_likelihood, "value_and_grad", None) is None)
    init = _check_init(init, n_points, z_dim)
    if step_sizes is not None:
        step_sizes = torch.as_tensor(step_sizes)
        if step_sizes.shape != (n_intermediate - 2, n_points) or not bool((step_sizes > 0).all()):
            raise ValueError(f"step_sizes must be positive, of shape (n_intermediate - 2, n_points) = "
                             f"{(n_intermediate - 2, n_points)} (a pilot run's), got shape {tuple(step_sizes.shape)}")
    seed = rng.seed_from(generator)
    index = check_index(index, n_points).to(device=device, dtype=torch.int64)
    parts = []
    with torch.no_grad():
        for sl in batches(n_points, batch_size):
            z0 = rng.normal(seed, f"{stream}/init", index[sl], 0, (n_chains, z_dim), dtype=dtype)
            frozen = None if step_sizes is None else step_sizes[:, sl]
            target = _target(log_likelihood, sl, n_points, init)
            parts.append(_anneal(target, z0, betas, seed, stream,
                                 index[sl], leapfrog_steps, step_size, target_accept, adapt_factor,
                                 step_size_bounds, frozen))
    log_w, acc, log_eps = (torch.cat(x, dim=d) for x, d in zip(zip(*parts), (0, 0, 1)))
    return AISResult(log_mean_exp(log_w, -1), log_w, acc, _log_mean_exp_se(log_w), log_eps.exp())


def _target(log_likelihood, rows: slice, n: int, init) -> _Target:
    """The chains' target for datapoints `rows` (of n), from the prior or from init = (mean, scale)
    as `_check_init` returns it."""
    lik = restrict(log_likelihood, rows, n)
    if init is None:
        return _Target(lik)
    mean, scale = (t[rows] for t in init)
    return _Target(lik, mean, scale.tril() if scale.dim() == 3 else scale)


def _check_init(init, n: int, d: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """init = (mean (N, D), scale): a std (N, D) or a Cholesky factor (N, D, D), as tensors;
    checked against the N datapoints and D latent dimensions of the call."""
    if init is None:
        return None
    if not (isinstance(init, (tuple, list)) and len(init) == 2):
        raise InputError(f"init must be a pair (mean, scale), got {type(init).__name__}")
    mean, scale = (torch.as_tensor(t) for t in init)
    want = (n, d)
    if tuple(mean.shape) != want or tuple(scale.shape) not in (want, (n, d, d)):
        raise InputError(f"init must be (mean, scale) of shapes (N, D) = {want} and (N, D) = {want} (a std) or "
                         f"(N, D, D) = {(n, d, d)} (a Cholesky factor); got shapes {tuple(mean.shape)} and "
                         f"{tuple(scale.shape)}")
    diag = torch.diagonal(scale, dim1=-2, dim2=-1) if scale.dim() == 3 else scale
    if not bool((diag > 0).all()) or not bool(torch.isfinite(mean).all()):
        raise InputError("init std (or the Cholesky factor's diagonal) must be positive and mean finite")
    return mean, scale


def delta_method_se(log_w: torch.Tensor) -> torch.Tensor:
    """The delta method's standard error of log(mean w) over the last dimension: std(w) / (√S ·
    mean w), computed stably."""
    w = torch.exp(log_w - log_w.max(-1, keepdim=True).values)
    return w.std(-1) / (math.sqrt(log_w.shape[-1]) * w.mean(-1))


def _log_mean_exp_se(log_w: torch.Tensor) -> torch.Tensor:
    """Standard error of log(mean w) across the S chains: the larger of the delta method's
    and the log-normal plug-in √(expm1(var log w) / S). With a few chains the delta method alone is
    small exactly where the estimate is low: both miss the same rare large weight. The spread of
    the log-weights hardly depends on that one weight (docs/method.md §5)."""
    return torch.maximum(delta_method_se(log_w), torch.sqrt(torch.expm1(log_w.var(-1)) / log_w.shape[-1]))


def bdmc(log_likelihood: LogLikelihood, z_true: torch.Tensor, n_chains: int = AIS_DEFAULTS["n_chains"],
         n_intermediate: int = AIS_DEFAULTS["n_intermediate"], schedule: str = AIS_DEFAULTS["schedule"],
         leapfrog_steps: int = AIS_DEFAULTS["leapfrog_steps"],
         generator: torch.Generator | int | None = None, *, index: torch.Tensor | None = None,
         step_size: float = AIS_DEFAULTS["step_size"], target_accept: float = AIS_DEFAULTS["target_accept"],
         batch_size: int | None = None,
         init: tuple[torch.Tensor, torch.Tensor] | None = None, **kwargs) -> BDMCResult:
    """Forward AIS (lower bound) and reverse AIS from the exact z (upper bound) on data simulated
    from the model (Grosse et al.). The reverse chains reuse the forward run's per-distribution
    step sizes and the same start `init`, so both directions use the same kernels and path.
    `z_true` (N, D): the latents the data were simulated from; arguments are checked as in `ais`.

    Args:
        log_likelihood: z (N, S, D) -> log p(x_n | z_ns) (N, S) for the simulated x.
        z_true: (N, D) the latents each x was simulated from (an exact posterior sample).
        n_chains, n_intermediate, schedule, leapfrog_steps, generator, index, step_size,
        target_accept, batch_size, init, **kwargs: as in `ais` (the same AIS procedure).

    Returns:
        BDMCResult: lower (N,) forward AIS, upper (N,) reverse AIS; upper − lower bounds the
        estimator's error on such data. Also the forward AISResult and the reverse log-weights
        (N, S) and acceptance (N,).
    """
    if not isinstance(z_true, torch.Tensor) or z_true.dim() != 2 or 0 in z_true.shape:
        got = f"shape {tuple(z_true.shape)}" if isinstance(z_true, torch.Tensor) else type(z_true).__name__
        raise ValueError(f"z_true must be a tensor of the true latents, shape (N, D) with N, D >= 1, got {got}")
    if not bool(torch.isfinite(z_true).all()):
        raise ValueError("z_true must be finite")
    n, d = z_true.shape
    check_likelihood(log_likelihood, d, n, z_true.dtype, z_true.device, names=("z_true.shape[1]", "z_true.shape[0]"),
                     autograd=getattr(log_likelihood, "value_and_grad", None) is None)
    init = _check_init(init, n, d)
    seed = rng.seed_from(generator)
    fwd = ais(log_likelihood, d, n, n_chains, n_intermediate, schedule, leapfrog_steps, seed,
              index=index, step_size=step_size, target_accept=target_accept, batch_size=batch_size,
              dtype=z_true.dtype, device=z_true.device, init=init, **kwargs)
    index = check_index(index, n).to(z_true.device, torch.int64)
    betas = schedule_betas(n_intermediate, schedule).flip(0)
    frozen = fwd.step_sizes.flip(0)
    parts = []
    with torch.no_grad():
        for sl in batches(n, batch_size):
            target = _target(log_likelihood, sl, n, init)
            z = target.eps(z_true[sl].unsqueeze(1).expand(-1, n_chains, d)).contiguous()
            parts.append(_anneal(target, z, betas, seed, "bdmc_reverse",
                                 index[sl], leapfrog_steps, step_size, target_accept, 0.0,
                                 (0.0, math.inf), frozen[:, sl]))
    log_w = torch.cat([p[0] for p in parts])
    acc = torch.cat([p[1] for p in parts])
    # reverse weights estimate 1/p(x): −log-mean-exp is a stochastic upper bound on log p(x)
    return BDMCResult(fwd.log_px, -log_mean_exp(log_w, -1), fwd, log_w, acc)
