"""q*_FFG by a damped variational Newton iteration, and the gain left at any FFG (docs/method.md §4).

The optimal FFG N(μ, diag σ²) of log p(x, z) satisfies two fixed-point equations (Bonnet's and
Price's theorems): E_q[∇ log p(x, z)] = 0 and 1/σ_i² = E_q[−∂²_i log p(x, z)]. Both expectations
come from the gradient alone: with antithetic draws z± = μ ± σ·ε, the mean of ∇ log p(x, z±)
estimates the first, and the full curvature C = E_q[−∇² log p(x, z)] comes from
−(∇(z+) − ∇(z−)) ⊗ ε / (2σ) (Stein's lemma, as a central difference); its diagonal is the second.
A control variate built on the running curvature A, (A σε) ⊗ ε/σ − A (mean zero), takes away the
noise a Gaussian posterior's correlations put in that estimate: none is left where A is exact.
The iteration moves the curvature a fraction β of the way to its estimate, the precision
λ = 1/σ² to that curvature's diagonal, and the mean by C⁻¹·E[∇]: a Newton step in the natural
parameters, with the full curvature so that a correlated posterior costs no more steps than an
uncorrelated one. β is held for the first window of steps and then decays as 1/t, which averages
the Monte Carlo noise away (Polyak-Ruppert) instead of leaving Adam's noise floor. No autograd:
one fused decoder gradient per draw (`vaegaps.likelihood.ll_and_grad`).

`gain_estimate` is the gain in L a datapoint's FFG could still make, from fresh draws: for the
mean, the Newton decrement ½ gᵀ C⁻¹ g (g the gradient, C the full curvature above, Monte Carlo
noise subtracted), exact for a Gaussian posterior; for the variances, Σ ½ (r_i − 1 − log r_i)
with r_i = σ_i² C_ii, the exact gain of the 1-D optimum of ½ log σ² − ½ σ² C_ii.
"""

from __future__ import annotations

import torch

from . import rng
from .likelihood import ll_and_grad, restrict

H_FLOOR = 0.05   # curvature estimates are floored at this fraction of the current precision
STOP_MARGIN = 0.3   # stop below 0.3 x the tolerance, so that the fresh probe (noisy too) finds it below
PROBE_ROUNDS = (2, 16)   # a remaining-gain probe with a tolerance runs 2 to 16 rounds of fresh draws
TRUST = 1.0   # a mean step moves at most TRUST·√D standard deviations of the current q
FAR = 10   # the probe stops early where its estimate is above FAR x tol by 2 standard errors


def _draw(seed, stream, index, step, mean, logvar, n_samples):
    """Antithetic draws: ε (N, S/2, D) and z = μ ± σ ε (N, S, D), keyed by datapoint and step."""
    eps = rng.normal(seed, stream, index, step, (n_samples // 2, mean.shape[-1]), dtype=mean.dtype)
    return eps, mean.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * rng.antithetic(eps)


class Moments:
    """Sums over draw pairs, per datapoint, of g (N, D), the pair's mean gradient of log p(x, z);
    gg (N, D, D), its outer product (for g's Monte Carlo noise); c (N, D, D), the pair's
    curvature estimate, the symmetrised −Δ∇ ⊗ ε/(2σ) − ((A σε) ⊗ ε/σ − A) (Stein's lemma as a
    central difference; the last term, mean zero, is a control variate that cancels the noise
    where the curvature equals A, `_moments`'s `cv`); and h2 (N, D), its diagonal squared.
    `pairs` counts them (a tensor (N, 1) once pooled over rounds that differ per datapoint)."""

    def __init__(self, g, gg, c, h2, pairs):
        self.g, self.gg, self.c, self.h2, self.pairs = g, gg, c, h2, pairs

    @classmethod
    def zeros(cls, n, d, dtype, device):
        z = dict(dtype=dtype, device=device)
        return cls(torch.zeros(n, d, **z), torch.zeros(n, d, d, **z), torch.zeros(n, d, d, **z),
                   torch.zeros(n, d, **z), torch.zeros(n, 1, **z))

    def add(self, other: Moments, rows=slice(None)):
        for k in ("g", "gg", "c", "h2"):
            getattr(self, k)[rows] += getattr(other, k).to(getattr(self, k).dtype)
        self.pairs[rows] += other.pairs

    def rows(self, rows) -> Moments:
        return Moments(*(getattr(self, k)[rows] for k in ("g", "gg", "c", "h2", "pairs")))

    def keep(self, rows):
        for k in ("g", "gg", "c", "h2", "pairs"):
            setattr(self, k, getattr(self, k)[rows])


def _moments(log_likelihood, seed, stream, index, step, mean, logvar, n_samples, cv=None) -> Moments:
    """The per-pair sums (`Moments`) over n_samples/2 antithetic pairs at the FFG (mean, logvar).
    `cv` (N, D, D): the curvature the control variate assumes (default diag(1/σ²), the current
    precision), drawn independently of these pairs: the closer it is to the true curvature, the
    less a Gaussian posterior's correlations add to the estimate's noise (none where equal)."""
    eps, z = _draw(seed, stream, index, step, mean, logvar, n_samples)
    _, grad = ll_and_grad(log_likelihood, z, value=False)
    grad = grad - z                                   # + ∇ log N(z; 0, I)
    half = eps.shape[1]
    plus, minus = grad[:, :half], grad[:, half:]
    std = torch.exp(0.5 * logvar).unsqueeze(1)
    u = eps / std
    if cv is None:
        cv = torch.diag_embed(torch.exp(-logvar))
        a_s = u                                       # diag(1/σ²) (σ ε)
    else:
        a_s = torch.einsum("nij,npj->npi", cv, std * eps)
    g = 0.5 * (plus + minus)
    e = 0.5 * (plus - minus) + a_s
    c = -torch.einsum("npi,npj->nij", e, u)
    c = 0.5 * (c + c.transpose(-1, -2)) + half * cv
    h = -e * u + torch.diagonal(cv, dim1=-2, dim2=-1).unsqueeze(1)   # c's diagonal, per pair
    return Moments(g.sum(1), torch.einsum("npi,npj->nij", g, g), c, h.pow(2).sum(1), half)


def _shrunk(c: torch.Tensor, pairs) -> torch.Tensor:
    """The curvature c (N, D, D) with its off-diagonal part scaled by pairs / (pairs + D): an
    average of few draw pairs estimates the D² entries far less well than the D on the diagonal
    (shrinkage toward the diagonal, which is all the variances' fixed point uses)."""
    d = c.shape[-1]
    w = torch.as_tensor(pairs, dtype=c.dtype, device=c.device)
    w = (w / (w + d)).reshape(-1, 1, 1) if w.dim() else w / (w + d)
    return w * c + (1 - w) * torch.diag_embed(torch.diagonal(c, dim1=-2, dim2=-1))


def _floored(c: torch.Tensor, floor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The symmetric c (N, D, D) with its eigenvalues raised to at least `floor` (N, 1), and its
    inverse: a Monte Carlo curvature can have small or negative eigenvalues that a Newton step
    would divide by."""
    e, v = torch.linalg.eigh(c)
    e = torch.maximum(e, floor)
    vt = v.transpose(-1, -2)
    return (v * e.unsqueeze(-2)) @ vt, (v / e.unsqueeze(-2)) @ vt


def _pooled_curvature(m: Moments) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D, D) the curvature of the pooled sums `m`, shrunk and floored as a Newton step's, and
    its inverse."""
    c = m.c / m.pairs.reshape(-1, 1, 1)
    h = torch.diagonal(c, dim1=-2, dim2=-1).clamp_min(1e-6)
    return _floored(_shrunk(c, m.pairs.reshape(-1)), H_FLOOR * h.min(-1, keepdim=True).values)


def _gain(m: Moments, logvar, plugin: bool = False) -> torch.Tensor:
    """(N,) the gain left at the FFG (mean, logvar) from the pooled sums `m`: for the mean the
    Newton decrement ½ ḡᵀ C⁻¹ ḡ of the full curvature C, less its Monte Carlo noise
    ½ tr(C⁻¹ Cov ḡ); for each variance the exact 1-D gain ½ (r − 1 − log r), r = σ² C_ii, less
    ¼ Var(r) (its noise, to second order). Unbiased to that order and possibly < 0: clamp only a
    final total, or the clamped noise of D dimensions (or of rounds) adds up. With `plugin`, σ² is
    1/C_ii itself (r = 1): what the variances lose is then the noise of that estimate, + ¼ Var(r)."""
    n = m.pairs.reshape(-1, 1)
    g, c = m.g / n, m.c / n.unsqueeze(-1)
    cov_g = (m.gg / n.unsqueeze(-1) - g.unsqueeze(-1) * g.unsqueeze(-2)) / (n - 1).clamp_min(1).unsqueeze(-1)
    h = torch.diagonal(c, dim1=-2, dim2=-1)
    h_var = ((m.h2 / n - h.pow(2)) / (n - 1).clamp_min(1)).clamp_min(0)
    inv = _pooled_curvature(m)[1]
    mean_gain = 0.5 * ((inv @ g.unsqueeze(-1)).squeeze(-1) * g).sum(-1) - 0.5 * (inv * cov_g).sum((-1, -2))
    r = torch.exp(logvar.to(h.dtype)) * h.clamp_min(1e-6)
    r_var = torch.exp(2 * logvar.to(h.dtype)) * h_var
    if plugin:
        return mean_gain.clamp_min(0) + (0.25 * r_var).sum(-1)
    return mean_gain + (0.5 * (r - 1 - torch.log(r)) - 0.25 * r_var).sum(-1)


def gain_estimate(log_likelihood, mean, logvar, seed: int, stream: str, index: torch.Tensor,
                  n_samples: int = 1000, tol: float | None = None) -> torch.Tensor:
    """(N,) the estimated gain in L left at the FFG (mean, logvar) (`_gain`), from fresh antithetic
    draws, pooled over every draw taken, never < 0. Without `tol`: one round of `n_samples` draws.
    With `tol`, a sequential probe: rounds of `n_samples` draws (at least PROBE_ROUNDS[0], at most
    PROBE_ROUNDS[1]) go on for each datapoint until its pooled estimate is below tol by 2 standard
    errors (the spread of the rounds' own estimates) or above FAR × tol by as much. A posterior far
    from Gaussian makes a few draws' estimate biased upward (heavy-tailed curvature, through the
    inverse), not only noisy, so an estimate just above tol is never taken as final early."""
    rounds = (1, 1) if tol is None else PROBE_ROUNDS
    n, d = len(index), mean.shape[-1]
    total = Moments.zeros(n, d, torch.float64, mean.device)
    per_round = torch.zeros(rounds[1], n, dtype=torch.float64, device=mean.device)
    active = torch.arange(n, device=mean.device)
    with torch.no_grad():
        for k in range(rounds[1]):
            lik = restrict(log_likelihood, active, n)
            m = _moments(lik, seed, stream, index[active], k, mean[active], logvar[active], n_samples,
                         None if k == 0 else _pooled_curvature(total.rows(active))[0].to(mean.dtype))
            m = Moments(m.g.double(), m.gg.double(), m.c.double(), m.h2.double(),
                        torch.full((len(active), 1), float(m.pairs), dtype=torch.float64, device=mean.device))
            per_round[k, active] = _gain(m, logvar[active])
            total.add(m, active)
            if k + 1 < rounds[0]:
                continue
            if k + 1 == rounds[1]:
                break
            est = _gain(total.rows(active), logvar[active])
            se = per_round[: k + 1, active].std(0) / (k + 1) ** 0.5
            active = active[(est + 2 * se >= tol) & (est - 2 * se <= FAR * tol)]
            if not active.numel():
                break
    return _gain(total, logvar).clamp_min(0)


class NewtonRun:
    """The outcome of `newton_ffg` per datapoint: `full` (mean, logvar), steps, converged (the
    in-run gain test passed), diverged (non-finite parameters: they keep their start)."""

    def __init__(self, full, steps, converged, diverged):
        self.full, self.steps, self.converged, self.diverged = full, steps, converged, diverged


class _Window:
    """Sums over the current window of steps, per active datapoint: the iterates' means and the
    per-pair moments (`Moments`), to score the window's average."""

    def __init__(self, like: torch.Tensor):
        self.n, self.mean = 0, torch.zeros_like(like)
        self.sums = Moments.zeros(*like.shape, like.dtype, like.device)

    def add(self, mean, m: Moments):
        self.n += 1
        self.mean += mean
        self.sums.add(m)

    def keep(self, rows):
        self.mean = self.mean[rows]
        self.sums.keep(rows)

    @property
    def pairs(self) -> int:
        return int(self.sums.pairs[0]) if len(self.sums.pairs) else 0

    def result(self, prec):
        """The window's average q (mean, logvar) and the gain estimated left at it: the pooled
        gradient there (exact for a quadratic log p) through the noise-corrected Newton decrement,
        the window's pooled curvature (its diagonal floored at H_FLOOR·λ) as precision."""
        m = self.sums
        h = torch.maximum(torch.diagonal(m.c, dim1=-2, dim2=-1) / m.pairs, H_FLOOR * prec)
        return self.mean / self.n, -torch.log(h), _gain(m, -torch.log(h), plugin=True).double()


def newton_ffg(params: dict, log_likelihood, index, seed: int, stream: str, n_samples: int, step: float,
               window: int, max_steps: int, gain_tol: float, min_pairs: int = 0) -> NewtonRun:
    """Optimise FFG parameters {'mean', 'logvar'} (N, D) from where they are.

    Each step estimates the curvature Ĉ with the control variate of the last step's C (`_moments`),
    moves C a fraction β of the way to Ĉ (β = step in the first window, then step·window/t: C
    becomes an average of its estimates, its off-diagonal part shrunk by the draw pairs in that
    average, `_shrunk`), the precision λ to C's diagonal, and the mean by α·C⁻¹·ĝ, α = min(step,
    1/ρ), where ρ is the curvature met along the last step over C's (log p is not quadratic, and
    an undamped step can oscillate), cut to at most TRUST·√D standard deviations. The iterates are
    scored per window: the window's average mean, with the window's pooled curvature as precision,
    is a datapoint's q*, and it stops when the gain estimated left there is below
    STOP_MARGIN·gain_tol (so that the fresh probe of `optimize_local` finds it below gain_tol), or
    at `max_steps`. A window that fails the test is followed by one twice as long (the average's
    noise halves); a window with fewer than `min_pairs` antithetic draw pairs in all is not tested
    (`optimize_local` passes half its probe's draws, so the in-run test is no noisier than the
    probe that judges its result). Draws are keyed by datapoint and step, and the windows are the
    same for every datapoint, so results do not depend on the batch."""
    n, d = index.shape[0], params["mean"].shape[-1]
    full = {k: params[k].detach().clone() for k in ("mean", "logvar")}
    mean, prec = full["mean"].clone(), torch.exp(-full["logvar"])
    curv = torch.diag_embed(prec)   # the running curvature; its diagonal is the precision
    weight = torch.zeros((), dtype=torch.float64)   # the running average's Σ weights²: 1/draw pairs in it
    active = torch.arange(n, device=mean.device)
    steps = torch.full((n,), max_steps, dtype=torch.int64)
    converged = torch.zeros(n, dtype=torch.bool)
    diverged = torch.zeros(n, dtype=torch.bool)
    loglik, win, win_len, win_end, prev = log_likelihood, _Window(mean), window, window, None
    s = n_samples + n_samples % 2
    with torch.no_grad():
        for t in range(1, max_steps + 1):
            m = _moments(loglik, seed, stream, index[active], t, mean, -torch.log(prec), s,
                         None if prev is None else prev[2])
            win.add(mean, m)
            beta = step if t <= window else step * window / t
            c_new = m.c / m.pairs
            h = torch.diagonal(c_new, dim1=-2, dim2=-1)
            c_new = c_new + torch.diag_embed(torch.maximum(h, H_FLOOR * prec) - h)
            curv = (1 - beta) * curv + beta * c_new
            weight = (1 - beta) ** 2 * weight + beta**2 / m.pairs
            new_prec = torch.diagonal(curv, dim1=-2, dim2=-1).clone()
            model_c, inv = _floored(_shrunk(curv, float(1 / weight)), H_FLOOR * new_prec.min(-1, keepdim=True).values)
            g_mean = m.g / m.pairs
            alpha = torch.full_like(g_mean[:, :1], step)
            if prev is not None:   # the curvature met along the last step, against the model's
                dm, dg = mean - prev[0], g_mean - prev[1]
                model = (dm * (prev[2] @ dm.unsqueeze(-1)).squeeze(-1)).sum(-1, keepdim=True)
                rho = -(dm * dg).sum(-1, keepdim=True) / model.clamp_min(1e-30)
                alpha = torch.minimum(alpha, 1 / rho.clamp_min(1e-6))
            prev = (mean, g_mean, model_c)
            move = alpha * (inv @ g_mean.unsqueeze(-1)).squeeze(-1)
            reach = (move.pow(2) * new_prec).sum(-1, keepdim=True).sqrt()   # the step in units of σ
            mean = mean + move * (TRUST * d**0.5 / reach.clamp_min(1e-30)).clamp_max(1)
            prec = new_prec
            bad = ~(torch.isfinite(mean).all(-1) & torch.isfinite(prec).all(-1) & (prec > 0).all(-1))
            stop = torch.zeros_like(bad)
            out = None
            if t == win_end or t == max_steps:
                out = win.result(prec)
                # the first window is the approach, not yet an average; and a window with fewer draw
                # pairs than `min_pairs` is too noisy to trust (its chance lows stop points early)
                if t > window and win.pairs >= min_pairs:
                    stop = (out[2] < STOP_MARGIN * gain_tol) & ~bad
                win_len *= 1 if t == window else 2
                win_end = t + win_len
            done = bad | stop
            if t == max_steps:
                done[:] = True
            if done.any():
                ok = done & ~bad   # (only at a window's end, where `out` exists)
                if ok.any():
                    full["mean"][active[ok]] = out[0][ok]
                    full["logvar"][active[ok]] = out[1][ok]
                steps[active[done].cpu()] = t
                converged[active[stop].cpu()] = True
                diverged[active[bad].cpu()] = True
                keep = ~done
                active, mean, prec, curv = active[keep], mean[keep], prec[keep], curv[keep]
                prev = tuple(p[keep] for p in prev)
                if not active.numel():
                    break
                loglik = restrict(log_likelihood, active, n)
                win.keep(keep)
            if out is not None:
                win = _Window(mean)
    return NewtonRun(full, steps, converged, diverged)
