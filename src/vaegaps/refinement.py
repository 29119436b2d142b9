"""The refinement curve: L[q] after k gradient steps on each datapoint's own copy of the encoder's q.

The amortization gap L[q*] − L[q] says how far the encoder's q(z|x) is from the best member of its
family; the curve says how much of that distance k steps of per-datapoint optimisation cover,
starting from q itself (docs/method.md §12). Each datapoint gets its own copy of q's parameters
(`LocalPosterior` form: FFG mean and log-variance; for a flow, every weight and bias), and all
datapoints take their steps together in one batched tensor:

* `sgd` (the default): plain gradient ascent on the reparametrised ELBO with a fixed learning
  rate, S = `n_samples` draws per step, the refinement of semi-amortized VAEs;
* `adam`: Adam with per-datapoint moments (`vaegaps.adam.adam_update`), the same draws.

After k steps, for every k of the grid, the ELBO of the refined q is estimated from
`final_samples` draws never used by the steps, with its Monte Carlo standard error
(`vaegaps.bounds.monte_carlo_bounds`); k = 0 scores the start itself. Every draw is keyed by
(seed, stream, datapoint index, step), so a datapoint's curve does not depend on its batch, and
the scoring draws are the same at every k (common random numbers: the curve's steps are not
blurred by scoring noise). A datapoint whose loss or gradient turns non-finite stops there: its
later points are NaN and `diverged_at` gives the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.func import functional_call

from . import rng
from .adam import adam_update
from .bounds import SAMPLE_BATCH, elbo_loss_and_grads, monte_carlo_bounds
from .families import FAMILIES, LocalPosterior
from .likelihood import (
    InputError,
    LogLikelihood,
    batches,
    check_index,
    check_int,
    check_likelihood,
    check_number,
    check_optional_int,
    restrict,
)
from .local_opt import _check_init, _overlay

OPTIMIZERS = ("sgd", "adam")


@dataclass
class RefinementCurve:
    """What `refine_curve` returns: N datapoints, K points of the steps grid."""

    steps: list[int]            # (K,) the grid: steps taken before each score
    elbo: torch.Tensor          # (N, K) float64: ELBO of the refined q after steps[j] steps
    elbo_se: torch.Tensor       # (N, K) its Monte Carlo standard error
    diverged_at: torch.Tensor   # (N,) int64: the step whose loss or gradient was non-finite; 0: none
    params: dict                # name -> (N, ...): the parameters after the last step


def check_steps(steps, name: str = "steps") -> list[int]:
    """The steps grid as a list: integers ≥ 0, strictly increasing, at least one."""
    try:
        grid = list(steps)
    except TypeError:
        raise InputError(f"{name} must be a list of step counts, got {steps!r}") from None
    if not grid:
        raise InputError(f"{name} must name at least one step count, got []")
    for k in grid:
        check_int(f"every entry of {name}", k, 0)
    if any(b <= a for a, b in zip(grid, grid[1:])):
        raise InputError(f"{name} must be strictly increasing, got {grid}")
    return [int(k) for k in grid]


def refine_curve(log_likelihood: LogLikelihood, start: dict, *, steps, optimizer: str, lr: float,
                 n_samples: int, final_samples: int, family: str = "ffg",
                 generator: torch.Generator | int | None = None, index: torch.Tensor | None = None,
                 hidden: int | None = None, flow_steps: int = 2, batch_size: int | None = None,
                 sample_batch: int = SAMPLE_BATCH, stream: str = "refinement") -> RefinementCurve:
    """ELBO of each datapoint's q after every k in `steps` refinement steps from `start`.

    Args:
        log_likelihood: z (N, S, D) -> log p(x_n | z_ns) (N, S); see vaegaps.likelihood.
        start: per-datapoint parameters of a `LocalPosterior` of `family`, each (N, ...): e.g.
            `LocalPosterior.from_amortized` (an amortized flow copied exactly) or
            {"mean": μ, "logvar": log σ²} for FFG. Parameters it leaves out (a flow family from a
            Gaussian, `LocalPosterior.gaussian_start`) take the family's keyed initial values.
        steps: the grid of step counts, increasing (e.g. [0, 1, 10, 100]); the last is the
            number of steps taken.
        optimizer: 'sgd' (x ← x + lr·∇ELBO) or 'adam'.
        lr: the learning rate (> 0).
        n_samples: reparametrised draws per step (≥ 1).
        final_samples: fresh draws for each scored ELBO (≥ 1).
        family: 'ffg', 'flow' or 'realnvp' (with `hidden` width and `flow_steps`).
        generator, index, stream: seed and datapoint keys of every draw.
        batch_size, sample_batch: datapoints per batch and scoring draws per batch (memory
            only; the results do not depend on them).

    Returns:
        RefinementCurve: steps, elbo and elbo_se (N, K), diverged_at (N,), params.
    """
    if family not in FAMILIES:
        raise InputError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    grid = check_steps(steps)
    check_number("lr", lr)
    for name, value in (("n_samples", n_samples), ("final_samples", final_samples),
                        ("flow_steps", flow_steps), ("sample_batch", sample_batch)):
        check_int(name, value)
    check_optional_int("batch_size", batch_size)
    check_optional_int("hidden", hidden)
    if not isinstance(start, dict) or not isinstance(start.get("mean"), torch.Tensor) or start["mean"].dim() != 2:
        raise InputError("start must be a dict of per-datapoint parameters with 'mean' of shape (N, D)")
    n_points, z_dim = start["mean"].shape
    dtype, device = check_likelihood(log_likelihood, z_dim, n_points)
    start = _check_init([start], LocalPosterior(family, 1, z_dim, hidden, flow_steps), n_points)[0]
    start = {k: v.to(device=device, dtype=dtype) for k, v in start.items()}
    seed = rng.seed_from(generator)
    index = check_index(index, n_points).to(device, torch.int64)
    parts = []
    for sl in batches(n_points, batch_size):
        q = LocalPosterior(family, sl.stop - sl.start, z_dim, hidden, flow_steps)
        q = q.to(device=device, dtype=dtype).init_keyed(seed, stream, index[sl])
        parts.append(_refine_batch(q, _overlay(q, start, sl), restrict(log_likelihood, sl, n_points),
                                   index[sl], seed, stream, grid, optimizer, lr, n_samples, final_samples,
                                   sample_batch))
    elbo, se, diverged_at = (torch.cat([p[i] for p in parts]) for i in range(3))
    params = {k: torch.cat([p[3][k] for p in parts]) for k in parts[0][3]}
    return RefinementCurve(grid, elbo, se, diverged_at, params)


def _refine_batch(q, params, loglik, index, seed, stream, grid, optimizer, lr, n_samples, final_samples,
                  sample_batch):
    """One batch of datapoints through the grid: (elbo (n, K), elbo_se (n, K), diverged_at, params)."""
    n, z_dim = params["mean"].shape
    dtype, dev = params["mean"].dtype, params["mean"].device
    elbo = torch.full((n, len(grid)), math.nan, dtype=torch.float64)
    se = torch.full_like(elbo, math.nan)
    diverged_at = torch.zeros(n, dtype=torch.int64)
    alive = torch.ones(n, dtype=torch.bool, device=dev)
    keys = list(params)
    moments = ([torch.zeros_like(params[k]) for k in keys], [torch.zeros_like(params[k]) for k in keys])

    def noise_fn(offset, s):   # the scoring draws: the same at every k, never a step's
        return rng.normal(seed, f"{stream}/score", index, 0, (s, q.n_noise, z_dim), offset=offset, dtype=dtype)

    def score(col):
        with torch.no_grad():
            b = monte_carlo_bounds(lambda e: functional_call(q, params, (e,)), loglik, final_samples, noise_fn,
                                   sample_batch)
        elbo[:, col], se[:, col] = b.elbo.cpu(), b.elbo_se.cpu()

    col = 0
    if grid[0] == 0:
        score(0)
        col = 1
    for step in range(1, grid[-1] + 1):
        noise = rng.normal(seed, f"{stream}/step", index, step, (n_samples, q.n_noise, z_dim), dtype=dtype)
        loss, grads = elbo_loss_and_grads(lambda p, e: functional_call(q, p, (e,)), params, loglik, noise)
        with torch.no_grad():
            bad = ~torch.isfinite(loss)
            for g in grads:
                bad |= ~torch.isfinite(g.reshape(n, -1).sum(-1))
            newly = bad & alive
            if newly.any():
                diverged_at[newly.cpu()] = step
                alive &= ~bad
                if not alive.any():
                    break
            if not bool(alive.all()):   # a datapoint that diverged takes no gradient any more
                grads = [torch.where(alive.view(-1, *[1] * (g.dim() - 1)), g, torch.zeros((), dtype=g.dtype,
                                                                                        device=g.device))
                         for g in grads]
            ps = [params[k] for k in keys]
            if optimizer == "sgd":
                torch._foreach_add_(ps, list(grads), alpha=-lr)
            else:
                adam_update(ps, list(grads), *moments, step, lr)
        if step == grid[col]:
            score(col)
            col += 1
    gone = diverged_at > 0
    if gone.any():   # no number after the step that broke
        later = torch.as_tensor(grid)[None, :] >= diverged_at[:, None]
        elbo[gone[:, None] & later] = math.nan
        se[gone[:, None] & later] = math.nan
    return elbo, se, diverged_at, {k: v.detach() for k, v in params.items()}
