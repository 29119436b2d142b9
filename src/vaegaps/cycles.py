"""q* of a flow family: Adam in the start's standardised coordinates, in cosine cycles, stopped
when a probe cycle no longer gains (docs/method.md §4).

The flow acts on u, where z = m + s ⊙ u and (m, s) are the per-dimension mean and standard
deviation of the start q (vaegaps.whiten: the same family, written back in z at the end). A first
cycle of `cycle_steps` Adam steps warms the learning rate up over a tenth of the cycle and then
decays it to zero along a cosine; then probe cycles of `probe_steps` (the same shape at a quarter of the peak rate, Adam's moments
carried on: a probe continues the search rather than restarting it) run until one gains less
than `gain_tol` nats. Each cycle's gain is
measured on the same `gain_samples` draws before and after it (common random numbers, so the
difference of two nearby q has little noise), and a datapoint keeps the better of the two. The last
probe's gain is the datapoint's `remaining_gain`: what one more cycle found, an estimate of what is
left, and `converged` means it is below `gain_tol`. Draws are keyed by datapoint and step, and
cycles are the same for every datapoint, so results do not depend on the batch.

The steps follow the path-derivative gradient by default (`gradient: path`; families.path_sample):
z is drawn through the live parameters, but log q is that of z with q's own parameters detached,
so the gradient keeps only its path through z. Its mean is the reparametrised gradient's, and its
noise vanishes where q is the posterior, so the last steps of a cycle are not spent on noise.
Each step's draws come in antithetic pairs (ε, −ε): the noise of the gradient that is odd in ε
cancels within a pair (docs/method.md §4).
Only the steps change: every gain and the final L[q*] are the ordinary estimates of the bound.
"""

from __future__ import annotations

import logging
import math

import torch
from torch.func import functional_call

from . import rng
from .adam import adam_update
from .bounds import SAMPLE_BATCH, elbo_loss_and_grads, monte_carlo_bounds
from .families import path_sample
from .likelihood import restrict
from .whiten import fold, whiten

log = logging.getLogger(__name__)

WARMUP = 0.1        # fraction of a cycle over which the learning rate rises linearly
PROBE_LR = 0.25     # a probe cycle's peak learning rate, as a fraction of the first cycle's
MIN_STD = 1e-4      # floor of the standardising scale s (a collapsed start would divide by 0)
GRADIENTS = ("path", "reparam")   # the step's gradient estimator (evaluation.local.gradient)


def cycle_lr(step: int, length: int, peak: float, warmup: bool = True) -> float:
    """Learning rate at `step` (1-based) of a cycle of `length` steps: linear warm-up (if
    `warmup`), then cosine to zero."""
    warm = max(1, int(WARMUP * length)) if warmup else 0
    if step <= warm:
        return peak * step / warm
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, length - warm)))


class CyclesRun:
    """The outcome per datapoint: `full` (z-space parameters), steps, converged, diverged and
    remaining_gain (the last cycle's gain on the common draws, ≥ 0)."""

    def __init__(self, full, steps, converged, diverged, remaining_gain):
        self.full, self.steps, self.converged = full, steps, converged
        self.diverged, self.remaining_gain = diverged, remaining_gain


def standardiser(q, params: dict, index, seed: int, stream: str, n_samples: int, sample_batch: int = SAMPLE_BATCH):
    """(m, s) (N, D): the per-dimension mean and standard deviation of q under `params`, from
    n_samples draws keyed by datapoint."""
    z_dim = params["mean"].shape[-1]
    total = total_sq = 0
    with torch.no_grad():
        for off in range(0, n_samples, sample_batch):
            k = min(sample_batch, n_samples - off)
            eps = rng.normal(seed, stream, index, 0, (k, q.n_noise, z_dim), offset=off, dtype=params["mean"].dtype)
            z = functional_call(q, params, (eps,))[0].double()
            total, total_sq = total + z.sum(1), total_sq + z.pow(2).sum(1)
    mean = total / n_samples
    std = ((total_sq / n_samples - mean.pow(2)).clamp_min(0) * n_samples / max(1, n_samples - 1)).sqrt()
    return mean.to(params["mean"].dtype), std.clamp_min(MIN_STD).to(params["mean"].dtype)


def _refresh(params: dict, fresh: dict | None) -> dict:
    """A detached copy of the u-space `params` where, for each datapoint whose flow is still the
    fixed affine map of a fresh flow (every head weight zero: a Gaussian start), the hidden layers
    are the keyed initial ones of u space. They change nothing in q (the heads ignore them), but
    whitened z-space initial weights would be s times smaller: features nearly constant in u, from
    which the flow learns nothing."""
    out = {k: v.detach().clone() for k, v in params.items()}
    if fresh is None:
        return out
    heads = [v for k, v in out.items() if k.endswith("head.weight")]
    idle = torch.stack([h.reshape(h.shape[0], -1).abs().amax(-1) for h in heads]).amax(0) == 0
    for k, v in out.items():
        if ".hidden." in k:
            v[idle] = fresh[k][idle].to(v)
    return out


def adam_cycles(q, start: dict, log_likelihood, index, seed: int, stream: str, n_samples: int, lr: float,
                cycle_steps: int, probe_steps: int, max_steps: int, gain_tol: float, gain_samples: int,
                std_samples: int, sample_batch: int = SAMPLE_BATCH, fresh: dict | None = None, *,
                gradient: str) -> CyclesRun:
    """Optimise the per-datapoint flow parameters `start` (z space, LocalPosterior names) of q.
    `fresh`: q's keyed initial parameters of these datapoints (see `_refresh`). `gradient`: 'path'
    (the path-derivative gradient, families.path_sample) or 'reparam' (the reparametrised one)."""
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {', '.join(GRADIENTS)}, got {gradient!r}")
    n, dev = index.shape[0], start["mean"].device
    m, s = standardiser(q, start, index, seed, f"{stream}/standardise", std_samples, sample_batch)
    m_all, s_all = m, s
    work = _refresh(whiten(start, q.family, m, s), fresh)
    u_start = {k: v.clone() for k, v in work.items()}
    full = {k: v.clone() for k, v in work.items()}
    active = torch.arange(n, device=dev)
    steps = torch.full((n,), max_steps, dtype=torch.int64)
    converged = torch.zeros(n, dtype=torch.bool)
    diverged = torch.zeros(n, dtype=torch.bool)
    gain_left = torch.full((n,), math.nan, dtype=torch.float64)
    loglik, t, cycle = log_likelihood, 0, 0
    z_dim, n_noise = start["mean"].shape[-1], q.n_noise
    pairs = (n_samples + 1) // 2   # the steps' draws come in antithetic pairs: n_samples rounded up to even

    def in_z(u, log_qu):   # u-space draws and log q, written in z on the active rows' (m, s)
        return m.unsqueeze(1) + s.unsqueeze(1) * u, log_qu - torch.log(s).sum(-1, keepdim=True)

    def sample(params, noise):   # the z-space q of u-space `params`
        return in_z(*functional_call(q, params, (noise,)))

    def step_sample(params, noise):   # the same z and log q, shaped for the chosen gradient
        return sample(params, noise) if gradient == "reparam" else in_z(*path_sample(q, params, noise))

    def common_elbo(params):
        with torch.no_grad():
            return monte_carlo_bounds(
                lambda e: sample(params, e), loglik, gain_samples,
                lambda off, k: rng.normal(seed, f"{stream}/probe", index[active], 0, (k, n_noise, z_dim),
                                          offset=off, dtype=m.dtype), sample_batch).elbo

    def leave(done, converged_rows, keep_params, step):
        nonlocal active, loglik, m, s, work, before, l_before, adam_m, adam_v
        rows = active[done]
        for k in full:
            full[k][rows] = keep_params[k][done]
        steps[rows.cpu()] = step
        converged[rows.cpu()] = converged_rows[done].cpu()
        keep = ~done
        active, m, s = active[keep], m[keep], s[keep]
        work, before = {k: v[keep] for k, v in work.items()}, {k: v[keep] for k, v in before.items()}
        adam_m, adam_v = {k: v[keep] for k, v in adam_m.items()}, {k: v[keep] for k, v in adam_v.items()}
        l_before = l_before[keep]
        if active.numel():
            loglik = restrict(log_likelihood, active, n)

    adam_m = {k: torch.zeros_like(v) for k, v in work.items()}   # kept across cycles: a probe
    adam_v = {k: torch.zeros_like(v) for k, v in work.items()}   # continues, it does not restart
    l_before = common_elbo(work)
    while active.numel():
        length, peak = (cycle_steps, lr) if cycle == 0 else (probe_steps, lr * PROBE_LR)
        length = min(length, max_steps - t)
        before = {k: v.clone() for k, v in work.items()}
        for j in range(1, length + 1):
            noise = rng.antithetic(rng.normal(seed, stream, index[active], t + j, (pairs, n_noise, z_dim), dtype=m.dtype))
            loss, grads = elbo_loss_and_grads(step_sample, work, loglik, noise)
            with torch.no_grad():
                blown = ~torch.isfinite(loss)
                for g in grads:
                    blown |= ~torch.isfinite(g.reshape(g.shape[0], -1).sum(-1))
                if blown.any():   # out at once, at its start (the caller restarts it at a lower rate)
                    diverged[active[blown].cpu()] = True
                    leave(blown, torch.zeros_like(blown), {k: v[active] for k, v in u_start.items()}, t + j)
                    grads = [g[~blown] for g in grads]
                    if not active.numel():
                        break
                keys = list(work)
                adam_update([work[k] for k in keys], list(grads), [adam_m[k] for k in keys],
                            [adam_v[k] for k in keys], t + j, cycle_lr(j, length, peak))
        t += length
        if not active.numel():
            break
        l_after = common_elbo(work)
        gain = l_after - l_before
        better = gain >= 0
        for k in work:   # keep the better of before and after, judged on the common draws
            work[k] = torch.where(better.view(-1, *[1] * (work[k].dim() - 1)), work[k], before[k])
        l_before = torch.maximum(l_after, l_before)
        gain_left[active.cpu()] = gain.clamp_min(0).cpu().double()
        log.info("%s: cycle %d (step %d), %d of %d datapoints, mean gain %.4f", stream, cycle, t,
                 active.numel(), n, gain.mean().item())
        done = (gain < gain_tol) if cycle > 0 else torch.zeros_like(better)
        if t >= max_steps:
            done = torch.ones_like(better)
        if done.any():
            leave(done, gain < gain_tol, work, t)
        cycle += 1
    return CyclesRun(fold(full, q.family, m_all, s_all), steps, converged, diverged, gain_left)
