"""Exact (to grid resolution) posteriors of 2-D latent models, and the densities of their
approximations on the same grid (docs/method.md §6.1, Figure 2).

In 2-D, log p(x) = log ∫ p(x|z) p(z) dz is a quadrature over a square grid of nodes; the
posterior on the grid follows. Approximations are evaluated on the same nodes: Gaussians in
closed form; the auxiliary-variable flow, whose marginal q(z) = ∫ q(z, v) dv has no closed form,
by importance sampling over v, proposing from its own reverse model r(v|z) (mixed with a widened
copy of it).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import torch

from . import rng
from .bounds import log_mean_exp, log_normal_diag, log_normal_std
from .evaluate import amortized_bounds, fit_qstar
from .families import AuxFlow, LocalPosterior, RealNVP
from .nets import BatchedLinear

log = logging.getLogger(__name__)

# Elements (rows × width) of the largest intermediate tensor per grid batch (≈ 4 MB in float32):
# batches that stay in cache. 64× larger batches gave the same numbers at 3× the time, most of it
# in the kernel paging fresh allocations in and out (measured on Figure 2's flow densities).
_BUDGET = 1 << 20
DISTRIBUTIONS = ("true", "amortized_ffg", "optimal_ffg", "optimal_flow")


def make_grid(grid_limit: float, grid_size: int, dtype=torch.float32, device=None):
    """Square grid of grid_size² nodes on [−limit, limit]²: nodes (G, 2) with z1 varying fastest,
    and the area of one cell (so Σ_g f(z_g)·area ≈ ∫ f)."""
    ticks = torch.linspace(-grid_limit, grid_limit, grid_size, dtype=torch.float64)
    z2, z1 = torch.meshgrid(ticks, ticks, indexing="ij")
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], -1).to(dtype=dtype, device=device)
    return z, (2.0 * grid_limit / (grid_size - 1)) ** 2


def _grid_batches(n_grid: int, per_node: int) -> list[slice]:
    """Slices of grid nodes so that a batch's biggest tensor has at most _BUDGET elements."""
    size = max(1, _BUDGET // max(1, per_node))
    return [slice(s, min(s + size, n_grid)) for s in range(0, n_grid, size)]


def grid_posterior(model, x: torch.Tensor, grid_limit: float, grid_size: int):
    """(z_grid (G, 2), log p(z_g|x) (N, G), log p(x) (N,)), all datapoints and nodes batched.

    The nodes are quadrature points with weight `area`, so Σ_g exp(log_post)·area = 1 exactly.
    """
    z, area = make_grid(grid_limit, grid_size, x.dtype, x.device)
    lik = model.log_likelihood(x)
    n = x.shape[0]
    with torch.no_grad():
        parts = [lik(z[sl].unsqueeze(0).expand(n, -1, -1)) + log_normal_std(z[sl])
                 for sl in _grid_batches(len(z), n * x.shape[1])]
    # float64 for the normalisation: Σ over ~10⁴ nodes
    log_joint = torch.cat(parts, -1).double()
    log_px = torch.logsumexp(log_joint, -1) + math.log(area)
    _warn_if_coarse(z, log_joint - log_px[:, None], area)
    return z, log_joint - log_px[:, None], log_px


def _warn_if_coarse(z, log_post, area):
    """The quadrature and the contours need a posterior several cells wide."""
    w = torch.exp(log_post) * area
    zz = z.double()
    sd = (w @ zz.pow(2) - (w @ zz).pow(2)).clamp_min(0).sqrt().min(-1).values
    cell = math.sqrt(area)
    if bool((sd < 1.5 * cell).any()):
        log.warning("posterior sd down to %.3g with grid spacing %.3g: raise grid_size or lower "
                    "grid_limit for resolved contours", float(sd.min()), cell)


def aux_flow_log_marginal(flow: AuxFlow, mean, logvar, z, noise, context=None,
                          widen: float = 2.0) -> torch.Tensor:
    """log q(z) = log E_m[q(z, v) / m(v|z)] by importance sampling over v, unbiased in q(z).

    The proposal m is r(v|z) (the flow's own reverse model, close to q(v|z) once trained) mixed
    half-and-half with r widened `widen`-fold: the wide half bounds the weights where q(v|z) has
    heavier tails than r, which alone gives rare huge weights and a grid mass far from 1. The
    first half of the K draws come from r, the second from the wide component (deterministic
    mixture sampling, weighted by the mixture density with the draws' shares).

    z (N, G, D); noise (N, G, K, D) standard normal; returns (N, G).
    """
    n, g, k, d = noise.shape
    r_mean, r_logvar = (t.unsqueeze(-2) for t in flow.r_v(z, context))
    scale = torch.ones(k, 1, dtype=noise.dtype, device=noise.device)
    scale[k // 2:] = widen
    v = r_mean + torch.exp(0.5 * r_logvar) * scale * noise                        # (N, G, K, D)
    log_r = log_normal_diag(v, r_mean, r_logvar)
    log_wide = log_normal_diag(v, r_mean, r_logvar + 2 * math.log(widen))
    n_r = k // 2   # mixture weights = the draws' actual shares, so odd K stays unbiased
    share_r = math.log(n_r / k) if n_r else -math.inf
    log_m = torch.logaddexp(log_r + share_r, log_wide + math.log((k - n_r) / k))
    zk = z.unsqueeze(-2).expand(n, g, k, d)
    # log_density is log q(z, v) − log r(v|z)
    lw = flow.log_density(mean, logvar, zk.reshape(n, g * k, d), v.reshape(n, g * k, d), context)
    lw = lw.reshape(n, g, k) + log_r - log_m
    # Far from q's mass the inverse flow divides by vanishing scales and overflows (inf − inf =
    # NaN downstream); such (z, v) have zero density, not an undefined one.
    lw = torch.nan_to_num(lw.double(), nan=-math.inf)
    return log_mean_exp(lw, -1)


def family_log_density(family, mean, logvar, z, context=None, *, seed=0, index=None,
                       stream="grid/v", n_v: int) -> torch.Tensor:
    """log q(z_g) (N, G) of a family's q (amortized or local) at grid nodes z (G, 2)."""
    n = mean.shape[0]
    zn = z.unsqueeze(0).expand(n, -1, -1)
    if isinstance(family, AuxFlow):
        hidden = max(m.weight.shape[-1] for m in family.modules() if isinstance(m, BatchedLinear))
        width = n * n_v * hidden
        # independent draws per node (keyed by node, so batching changes nothing): common draws
        # would give smoother contours but a systematically wrong shape and mass
        parts = []
        for sl in _grid_batches(len(z), width):
            noise = rng.normal(seed, stream, index, 0, (sl.stop - sl.start, n_v, z.shape[-1]),
                               offset=sl.start, dtype=z.dtype)
            parts.append(aux_flow_log_marginal(family, mean, logvar, zn[:, sl], noise, context))
        return torch.cat(parts, -1)
    if isinstance(family, RealNVP):
        return family.log_density(mean, logvar, zn, context).double()
    return log_normal_diag(zn, mean.unsqueeze(-2), logvar.unsqueeze(-2)).double()


def _local_q(model, family: str, params: dict) -> LocalPosterior:
    """The q* found by optimize_local, rebuilt from its per-datapoint parameters."""
    n, d = params["mean"].shape
    q = LocalPosterior(family, n, d, model.family_hidden[family], model.flow_steps)
    q.load_state_dict(params)
    return q.to(device=params["mean"].device, dtype=params["mean"].dtype)


def _long(index, name, z, density) -> pd.DataFrame:
    """Long-format rows (index, distribution, z1, z2, density) for (N, G) densities."""
    n, g = density.shape
    zc = z.double().cpu().numpy()
    return pd.DataFrame({"index": np.repeat(np.asarray(index), g), "distribution": name,
                         "z1": np.tile(zc[:, 0], n), "z2": np.tile(zc[:, 1], n),
                         "density": density.double().cpu().numpy().reshape(-1)})


def true_posterior_frame(model, x, index, grid_limit: float, grid_size: int) -> pd.DataFrame:
    """The quadrature posterior alone, as grid rows with distribution 'true'."""
    z, log_post, _ = grid_posterior(model, x, grid_limit, grid_size)
    return _long(index, "true", z, torch.exp(log_post))


def grid_densities(model, x: torch.Tensor, index, local_cfg: dict, seed: int, grid_limit: float,
                   grid_size: int, *, n_v: int, amortized_samples: int):
    """Densities on the grid (long frame) and bounds (one row per datapoint × distribution) of the
    true posterior, the amortized q, and the optimal FFG and Flow q*.

    `density` is each distribution's own normalised density at the nodes (the quadrature
    posterior for 'true'), not rescaled to the grid: `grid_mass` in the bounds frame is its
    integral over the grid, ≈ 1 when the grid holds the distribution's mass. Freezes the
    model's parameters (requires_grad off), as every evaluation stage does.
    """
    index = np.asarray(index)
    idx = torch.as_tensor(index, device=x.device)
    z, log_post, log_px = grid_posterior(model, x, grid_limit, grid_size)
    area = (2.0 * grid_limit / (grid_size - 1)) ** 2
    amort = f"amortized_{model.family_name}"
    with torch.no_grad():
        mean, logvar, h = model.encode(x)
        log_q = {"true": log_post,
                 amort: family_log_density(model.family, mean, logvar, z, h, seed=seed, index=idx,
                                           stream="grid/amortized_v", n_v=n_v)}
    amortized = amortized_bounds(model, x, index, amortized_samples, seed)
    elbos = {"true": log_px, amort: torch.tensor(amortized["elbo"].to_numpy())}
    ffg = None
    for family in ("ffg", "flow"):
        res = fit_qstar(model, x, index, family, local_cfg, seed, ffg)
        ffg = ffg or (res.params["mean"], res.params["logvar"])   # q*_Flow starts from q*_FFG too
        with torch.no_grad():
            q = _local_q(model, family, res.params)
            log_q[f"optimal_{family}"] = family_log_density(
                q.family, q.mean, q.logvar, z, seed=seed, index=idx, stream=f"grid/{family}_v", n_v=n_v)
        elbos[f"optimal_{family}"] = res.elbo
    grid = pd.concat([_long(index, k, z, torch.exp(v)) for k, v in log_q.items()], ignore_index=True)
    bounds = pd.DataFrame([
        {"index": int(i), "distribution": k, "elbo": float(elbos[k][j]), "log_px": float(log_px[j]),
         "grid_mass": float(torch.exp(log_q[k][j]).sum() * area)}
        for k in log_q for j, i in enumerate(index)])
    for row in bounds.itertuples():
        if abs(row.grid_mass - 1) > 0.05:
            log.warning("%s at datapoint %d has grid mass %.3f: widen the grid (grid_limit); for "
                        "flows, also raise n_v", row.distribution, row.index, row.grid_mass)
    return grid, bounds
