"""L[q*]: the best member of a variational family for each datapoint, found by optimisation.

One q per datapoint (FFG: mean and log-variance; Flow: a whole flow, biases included), all
datapoints in one batched tensor. Adam with S samples per step; every `check_every` steps a
datapoint's mean loss over the window is compared with its best so far, and that datapoint
stops after `patience` checks without improvement (PROTOCOL §4). Stopped datapoints leave the
working batch, so the rest run faster; results are keyed by datapoint index and do not depend
on the batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch.func import functional_call

from . import rng
from .likelihood import LogLikelihood, chunks, infer_dtype_device, restrict
from .bounds import log_normal_std, monte_carlo_bounds
from .families import LocalPosterior

log = logging.getLogger(__name__)


@dataclass
class LocalResult:
    elbo: torch.Tensor       # (N,) L[q*] with `final_samples` fresh samples
    iwae: torch.Tensor       # (N,) IWAE-`final_samples` of q*
    steps: torch.Tensor      # (N,) optimisation steps taken
    converged: torch.Tensor  # (N,) stopped by the patience rule (False: hit max_steps)
    elbo_se: torch.Tensor    # (N,) Monte Carlo standard error of `elbo`
    params: dict             # name -> (N, ...) final parameters of q*


def _adam(p, g, m, v, step, lr, b1=0.9, b2=0.999, eps=1e-8):
    """In-place Adam update of one tensor (elementwise, so datapoints never interact)."""
    m.mul_(b1).add_(g, alpha=1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    m_hat = m / (1 - b1**step)
    v_hat = v / (1 - b2**step)
    p.sub_(lr * m_hat / (v_hat.sqrt() + eps))


def _optimize_chunk(q, log_likelihood, index, seed, stream, n_samples, lr, check_every, patience,
                    max_steps):
    """Optimise q's per-datapoint parameters; returns final params, steps and convergence."""
    n = index.shape[0]
    full = {k: p.detach().clone() for k, p in q.named_parameters()}
    work = {k: p.clone() for k, p in full.items()}
    adam_m = {k: torch.zeros_like(p) for k, p in full.items()}
    adam_v = {k: torch.zeros_like(p) for k, p in full.items()}
    active = torch.arange(n, device=index.device)   # rows of `full` still optimised
    loglik = log_likelihood
    steps = torch.full((n,), max_steps, dtype=torch.int64)
    converged = torch.zeros(n, dtype=torch.bool)
    best = torch.full((n,), float("inf"), dtype=torch.float64, device=index.device)
    bad = torch.zeros(n, dtype=torch.int64, device=index.device)
    window = torch.zeros(n, dtype=torch.float64, device=index.device)
    z_dim, n_noise = q.mean.shape[-1], q.n_noise
    for step in range(1, max_steps + 1):
        noise = rng.normal(seed, stream, index[active], step, (n_samples, n_noise, z_dim),
                           dtype=full["mean"].dtype)
        with torch.enable_grad():
            leaves = {k: p.requires_grad_(True) for k, p in work.items()}
            z, log_q = functional_call(q, leaves, (noise,))
            loss = -(loglik(z) + log_normal_std(z) - log_q).mean(-1)   # (n_active,) −ELBO
            grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
        with torch.no_grad():
            for (k, p), g in zip(work.items(), grads):
                _adam(p.detach_(), g, adam_m[k], adam_v[k], step, lr)
            window[active] += loss.double()
            if step % check_every:
                continue
            mean_loss = window[active] / check_every
            window.zero_()
            improved = mean_loss < best[active]
            best[active] = torch.where(improved, mean_loss, best[active])
            bad[active] = torch.where(improved, 0, bad[active] + 1)
            done = bad[active] >= patience
            if step == max_steps:
                done = torch.ones_like(done)
            if step % (10 * check_every) == 0:
                log.info("%s: step %d, %d of %d datapoints still optimising, mean loss %.3f",
                         stream, step, active.numel(), n, mean_loss.mean().item())
            if not done.any():
                continue
            rows = active[done]
            for k in full:
                full[k][rows] = work[k][done]
            steps[rows.cpu()] = step
            converged[rows.cpu()] = (bad[rows] >= patience).cpu()
            keep = ~done
            active = active[keep]
            for d in (work, adam_m, adam_v):
                for k in d:
                    d[k] = d[k][keep]
            loglik = restrict(log_likelihood, active, n) if active.numel() else None
            if not active.numel():
                break
    return full, steps, converged


def optimize_local(log_likelihood: LogLikelihood, z_dim: int, n_points: int, family: str = "ffg",
                   n_samples: int = 100, lr: float = 1e-3, check_every: int = 100, patience: int = 10,
                   max_steps: int = 50000, final_samples: int = 5000,
                   generator: torch.Generator | int | None = None, *, index: torch.Tensor | None = None,
                   init: tuple[torch.Tensor, torch.Tensor] | None = None, hidden: int | None = None,
                   flow_steps: int = 2, chunk_size: int | None = None, sample_chunk: int = 500,
                   dtype: torch.dtype | None = None, device=None, stream: str = "local") -> LocalResult:
    """Fit one q of `family` ('ffg', 'flow', 'realnvp') per datapoint, initialised at the prior
    (or at `init` = (mean, logvar), e.g. the encoder's), and score it with fresh samples."""
    dtype, device = infer_dtype_device(log_likelihood, z_dim, n_points, dtype, device)
    seed = rng.seed_from(generator)
    index = (torch.arange(n_points) if index is None else torch.as_tensor(index)).to(device, torch.int64)
    results = []
    for sl in chunks(n_points, chunk_size):
        mean, logvar = (None, None) if init is None else (init[0][sl], init[1][sl])
        q = LocalPosterior(family, sl.stop - sl.start, z_dim, hidden, flow_steps, mean, logvar)
        q = q.to(device=device, dtype=dtype).init_keyed(seed, stream, index[sl])
        loglik = restrict(log_likelihood, sl, n_points)
        params, steps, converged = _optimize_chunk(q, loglik, index[sl], seed, stream, n_samples, lr,
                                                   check_every, patience, max_steps)
        with torch.no_grad():
            def noise_fn(offset, s):
                return rng.normal(seed, f"{stream}/final", index[sl], 0, (s, q.n_noise, z_dim),
                                  offset=offset, dtype=dtype)
            elbo, iwae, se = monte_carlo_bounds(lambda e: functional_call(q, params, (e,)), loglik,
                                                final_samples, noise_fn, sample_chunk)
        results.append((elbo, iwae, steps, converged, se, params))
    elbo, iwae, steps, converged, se = (torch.cat(x) for x in list(zip(*results))[:5])
    params = {k: torch.cat([r[5][k] for r in results]) for k in results[0][5]}
    return LocalResult(elbo, iwae, steps, converged, se, params)
