"""q*_FFG by a damped variational Newton iteration, and the gain left at any FFG (docs/method.md §4).

The optimal FFG N(μ, diag σ²) of log p(x, z) satisfies two fixed-point equations (Bonnet's and
Price's theorems): E_q[∇ log p(x, z)] = 0 and 1/σ_i² = E_q[−∂²_i log p(x, z)]. Both expectations
come from the gradient alone: with antithetic draws z± = μ ± σ·ε, the mean of ∇ log p(x, z±)
estimates the first, and −(∇_i(z+) − ∇_i(z−))·ε_i / (2σ_i) (Stein's lemma, as a central
difference) the second. The iteration moves the precision λ = 1/σ² a fraction β of the way to its
estimate and the mean by β·λ⁻¹·E[∇]: a Newton step in the natural parameters, exact in one step
for a Gaussian posterior at β = 1. β is held for the first window of steps and then decays as 1/t,
which averages the Monte Carlo noise away (Polyak-Ruppert) instead of leaving Adam's noise floor.
No autograd: one fused decoder gradient per draw (`vaegaps.likelihood.ll_and_grad`).

`gain_estimate` is the gain in L a datapoint's FFG could still make, from fresh draws: for the
mean, ½ Σ g_i² / h_i (g the gradient, h the curvature above, Monte Carlo noise subtracted); for the
variances, Σ ½ (r_i − 1 − log r_i) with r_i = σ_i² h_i, the exact gain of the 1-D optimum of
½ log σ² − ½ σ² h. It is the Newton decrement of the ELBO with a diagonal Hessian.
"""

from __future__ import annotations

import torch

from . import rng
from .likelihood import ll_and_grad, restrict

H_FLOOR = 0.05   # curvature estimates are floored at this fraction of the current precision
STOP_MARGIN = 0.3   # stop below 0.3 x the tolerance, so that the fresh probe (noisy too) finds it below
PROBE_ROUNDS = (2, 16)   # a remaining-gain probe with a tolerance runs 2 to 16 rounds of fresh draws


def _draw(seed, stream, index, step, mean, logvar, n_samples):
    """Antithetic draws: ε (N, S/2, D) and z = μ ± σ ε (N, S, D), keyed by datapoint and step."""
    eps = rng.normal(seed, stream, index, step, (n_samples // 2, mean.shape[-1]), dtype=mean.dtype)
    std = torch.exp(0.5 * logvar).unsqueeze(1)
    dz = std * eps
    return eps, torch.cat([mean.unsqueeze(1) + dz, mean.unsqueeze(1) - dz], 1)


def _moments(log_likelihood, seed, stream, index, step, mean, logvar, n_samples):
    """Per datapoint, per draw pair: g (N, S/2, D), the pair's mean gradient of log p(x, z), and
    h (N, S/2, D), its curvature estimate −Δ∇·ε/(2σ) − λ(ε² − 1). The last term (mean zero) is a
    control variate: it cancels the ε² noise of the estimate where the curvature equals the
    current precision λ = 1/σ², so near the optimum only the posterior's correlations add noise."""
    eps, z = _draw(seed, stream, index, step, mean, logvar, n_samples)
    _, grad = ll_and_grad(log_likelihood, z, value=False)
    grad = grad - z                                   # + ∇ log N(z; 0, I)
    half = eps.shape[1]
    plus, minus = grad[:, :half], grad[:, half:]
    std = torch.exp(0.5 * logvar).unsqueeze(1)
    h = -0.5 * (plus - minus) * eps / std - (eps.pow(2) - 1) / std.pow(2)
    return 0.5 * (plus + minus), h


def gain_estimate(log_likelihood, mean, logvar, seed: int, stream: str, index: torch.Tensor,
                  n_samples: int = 1000, tol: float | None = None) -> torch.Tensor:
    """(N,) the estimated gain in L left at the FFG (mean, logvar), from fresh antithetic draws,
    the squared-mean terms corrected for their Monte Carlo noise (never < 0), pooled over every
    draw taken. Without `tol`: one round of `n_samples` draws. With `tol`, a sequential probe:
    rounds of `n_samples` draws (at least PROBE_ROUNDS[0]) go on for the datapoints whose pooled
    estimate is within 2 standard errors of tol (the spread of the rounds' own estimates), up to
    PROBE_ROUNDS[1]: a posterior far from Gaussian makes one round's curvature noisy, and the
    probe then draws more before it calls a datapoint converged or not."""
    rounds = (1, 1) if tol is None else PROBE_ROUNDS
    n = len(index)
    sums = torch.zeros(4, n, mean.shape[-1], dtype=torch.float64, device=mean.device)   # g, g², h, h² over pairs
    per_round = torch.zeros(rounds[1], n, dtype=torch.float64, device=mean.device)
    pairs = torch.zeros(n, 1, dtype=torch.float64, device=mean.device)
    active = torch.arange(n, device=mean.device)
    with torch.no_grad():
        for k in range(rounds[1]):
            lik = restrict(log_likelihood, active, n)
            g, h = _moments(lik, seed, stream, index[active], k, mean[active], logvar[active], n_samples)
            g, h = g.double(), h.double()
            this = torch.stack([g.sum(1), g.pow(2).sum(1), h.sum(1), h.pow(2).sum(1)])
            per_round[k, active] = _pooled_gain(this, torch.full_like(pairs[active], g.shape[1]), logvar[active])
            sums[:, active] += this
            pairs[active] += g.shape[1]
            if k + 1 < rounds[0]:
                continue
            if k + 1 == rounds[1]:
                break
            est = _pooled_gain(sums[:, active], pairs[active], logvar[active])
            se = per_round[: k + 1, active].std(0) / (k + 1) ** 0.5
            active = active[(est - tol).abs() <= 2 * se]
            if not active.numel():
                break
    return _pooled_gain(sums, pairs, logvar).clamp_min(0)


def _pooled_gain(sums, pairs, logvar):
    """(N,) the gain from per-datapoint sums over `pairs` draw pairs of g, g², h, h² (see the
    module docstring): each dimension's mean and variance shares with their Monte Carlo noise
    subtracted, so unbiased and possibly < 0. Unclamped: clamp only the final total, or the
    clamped noise of D dimensions (or of rounds) adds up."""
    g, h = sums[0] / pairs, sums[2] / pairs
    g_var = (sums[1] / pairs - g.pow(2)) * pairs / (pairs - 1).clamp_min(1) / pairs
    h_var = (sums[3] / pairs - h.pow(2)) * pairs / (pairs - 1).clamp_min(1) / pairs
    h_pos = h.clamp_min(1e-6)
    r = torch.exp(logvar.double()) * h_pos
    r_var = torch.exp(2 * logvar.double()) * h_var
    return (0.5 * (g.pow(2) - g_var) / h_pos + 0.5 * (r - 1 - torch.log(r)) - 0.25 * r_var).sum(-1)


class NewtonRun:
    """The outcome of `newton_ffg` per datapoint: `full` (mean, logvar), steps, converged (the
    in-run gain test passed), diverged (non-finite parameters: they keep their start)."""

    def __init__(self, full, steps, converged, diverged):
        self.full, self.steps, self.converged, self.diverged = full, steps, converged, diverged


class _Window:
    """Sums over the current window of steps, per active datapoint: the iterates' means and the
    per-pair moments g, h (their first and second powers), to score the window's average."""

    def __init__(self, like: torch.Tensor):
        self.n, self.pairs = 0, 0
        self.mean, self.g, self.g2, self.h, self.h2 = (torch.zeros_like(like) for _ in range(5))

    def add(self, mean, g, h):
        self.n += 1
        self.pairs += g.shape[1]
        self.mean += mean
        self.g += g.sum(1)
        self.g2 += g.pow(2).sum(1)
        self.h += h.sum(1)
        self.h2 += h.pow(2).sum(1)

    def keep(self, rows):
        for k in ("mean", "g", "g2", "h", "h2"):
            setattr(self, k, getattr(self, k)[rows])

    def result(self, prec):
        """The window's average q (mean, logvar) and the gain estimated left at it: the pooled
        gradient there (exact for a quadratic log p) through the noise-corrected Newton decrement,
        and the Monte Carlo error of its precision, the pooled curvature."""
        m = self.pairs
        g, h = self.g / m, torch.maximum(self.h / m, H_FLOOR * prec)
        g_var, h_var = (self.g2 / m - g.pow(2)) / m, (self.h2 / m - (self.h / m).pow(2)) / m
        mean_gain = (0.5 * (g.pow(2) - g_var.clamp_min(0)) / h).sum(-1).clamp_min(0)
        var_gain = (0.25 * h_var.clamp_min(0) / h.pow(2)).sum(-1)
        return self.mean / self.n, -torch.log(h), (mean_gain + var_gain).double()


def newton_ffg(params: dict, log_likelihood, index, seed: int, stream: str, n_samples: int, step: float,
               window: int, max_steps: int, gain_tol: float, min_pairs: int = 0) -> NewtonRun:
    """Optimise FFG parameters {'mean', 'logvar'} (N, D) from where they are.

    Each step moves the mean by α·λ⁻¹·ĝ, α = min(step, 1/ρ), where ρ is the curvature met along the
    last step over the diagonal model's (a correlated posterior makes the diagonal Newton step
    overshoot, and an undamped one oscillates), and the precision λ a fraction β of the way to its
    estimate ĥ (β = step in the first window, then step·window/t: the precision becomes an average
    of its estimates). The iterates are scored per window: the window's average mean, with the
    window's pooled curvature as precision, is a datapoint's q*, and it stops when the gain
    estimated left there is below STOP_MARGIN·gain_tol (so that the fresh probe of
    `optimize_local` finds it below gain_tol), or at `max_steps`. A window that fails the test is
    followed by one twice as long (the average's noise halves); a window with fewer than
    `min_pairs` antithetic draw pairs in all is not tested (`optimize_local` passes half its
    probe's draws, so the in-run test is no noisier than the probe that judges its result). Draws are keyed by datapoint and
    step, and the windows are the same for every datapoint, so results do not depend on the batch."""
    n = index.shape[0]
    full = {k: params[k].detach().clone() for k in ("mean", "logvar")}
    mean, prec = full["mean"].clone(), torch.exp(-full["logvar"])
    active = torch.arange(n, device=mean.device)
    steps = torch.full((n,), max_steps, dtype=torch.int64)
    converged = torch.zeros(n, dtype=torch.bool)
    diverged = torch.zeros(n, dtype=torch.bool)
    loglik, win, win_len, win_end, prev = log_likelihood, _Window(mean), window, window, None
    s = n_samples + n_samples % 2
    with torch.no_grad():
        for t in range(1, max_steps + 1):
            g, h = _moments(loglik, seed, stream, index[active], t, mean, -torch.log(prec), s)
            win.add(mean, g, h)
            beta = step if t <= window else step * window / t
            new_prec = (1 - beta) * prec + beta * torch.maximum(h.mean(1), H_FLOOR * prec)
            g_mean = g.mean(1)
            alpha = torch.full_like(g_mean[:, :1], step)
            if prev is not None:   # the curvature met along the last step, against the diagonal's
                d, dg = mean - prev[0], g_mean - prev[1]
                rho = -(d * dg).sum(-1, keepdim=True) / (prec * d.pow(2)).sum(-1, keepdim=True).clamp_min(1e-30)
                alpha = torch.minimum(alpha, 1 / rho.clamp_min(1e-6))
            prev = (mean, g_mean)
            mean = mean + alpha * g_mean / new_prec
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
                active, mean, prec = active[keep], mean[keep], prec[keep]
                prev = (prev[0][keep], prev[1][keep])
                if not active.numel():
                    break
                loglik = restrict(log_likelihood, active, n)
                win.keep(keep)
            if out is not None:
                win = _Window(mean)
    return NewtonRun(full, steps, converged, diverged)
