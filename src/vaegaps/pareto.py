"""Pareto k̂ of importance weights: how heavy the tail of an IWAE's weights is (docs/method.md §1).

The largest M = ⌈min(S/5, 3√S)⌉ of S weights are fitted with a generalized Pareto distribution
(Vehtari, Simpson, Gelman, Yao & Gabry, "Pareto smoothed importance sampling", JMLR 2024); its
shape k̂ says how many moments the weights have: above 0.5 their variance is infinite, and above
0.7 an estimate of their mean (the IWAE) and its delta-method standard error cannot be trusted
at any practical S. The shape is the Zhang & Stephens (2009) posterior-mean estimator, shrunk
towards 0.5 by a weak prior as in Vehtari et al. Batched over datapoints in torch, so it runs
where the weights are; scipy's genpareto.fit is a per-sample maximum-likelihood fit (one Python
call per datapoint, unstable for small tails) and has no such estimator.
"""

from __future__ import annotations

import math

import torch

KHAT_MAX = 0.7          # above this k̂ the IWAE is untrusted (Vehtari et al.'s threshold)
MIN_TAIL = 5            # fewer tail draws than this (S < 25) give no k̂ (NaN)
_PRIOR_SCALE = 3.0      # Zhang & Stephens' grid: θ spread by 1/(3 · first-quartile exceedance)
_PRIOR_N, _PRIOR_K = 10.0, 0.5   # the weak prior: k̂ ← (M·k̂ + 10·0.5) / (M + 10)


def tail_size(n_samples: int) -> int:
    """M, the number of largest weights the tail is fitted to, for S = n_samples draws."""
    return math.ceil(min(0.2 * n_samples, 3.0 * math.sqrt(n_samples)))


def keep_top(top: torch.Tensor | None, log_w: torch.Tensor, n_keep: int) -> torch.Tensor:
    """The n_keep largest values along the last dimension of `top` and `log_w` together: the
    running tail of log-weights over sample batches (so S weights never sit in memory at once)."""
    both = log_w if top is None else torch.cat([top, log_w], -1)
    return both.topk(min(n_keep, both.shape[-1]), -1).values


def pareto_khat(log_w_top: torch.Tensor) -> torch.Tensor:
    """k̂ for each row of the M + 1 largest log-weights (last dimension, any order): the smallest
    is the threshold, the M above it the tail. −inf where the tail is flat (every tail weight
    equals the threshold: bounded weights), NaN where M < MIN_TAIL or a weight is NaN or +inf
    (a weight of zero, log-weight −inf, is fine)."""
    lw = log_w_top.double().sort(-1).values
    n = lw.shape[-1] - 1
    if n < MIN_TAIL:
        return torch.full(lw.shape[:-1], float("nan"), dtype=lw.dtype, device=lw.device)
    top = lw[..., -1:]
    # exceedances over the threshold in weight scale; k̂ does not depend on the weights' scale
    x = torch.exp(lw[..., 1:] - top) - torch.exp(lw[..., :1] - top)
    x_max = x[..., -1:]
    flat = x_max[..., 0] <= 0
    x = torch.where(flat[..., None], torch.ones_like(x), x)   # keep the arithmetic finite; masked below
    x_max = x[..., -1:]
    x_q = x[..., max(int(n / 4 + 0.5) - 1, 0)].unsqueeze(-1).clamp_min(1e-12 * x_max)
    m = 30 + int(math.sqrt(n))
    j = torch.arange(1, m + 1, dtype=lw.dtype, device=lw.device)
    # the grid of θ = −k/σ (all below 1/x_max, so 1 − θx > 0) and its profile log-likelihood
    theta = 1 / x_max + (1 - torch.sqrt(m / (j - 0.5))) / (_PRIOR_SCALE * x_q)       # (..., m)
    k = torch.log1p(-theta[..., :, None] * x[..., None, :]).mean(-1)                # (..., m)
    profile = n * (torch.log(-theta / k) - k - 1)
    theta_hat = (torch.softmax(profile, -1) * theta).sum(-1, keepdim=True)
    k_hat = torch.log1p(-theta_hat * x).mean(-1)
    k_hat = (n * k_hat + _PRIOR_N * _PRIOR_K) / (n + _PRIOR_N)
    k_hat = torch.where(flat, torch.full_like(k_hat, -math.inf), k_hat)
    valid = ~torch.isnan(lw).any(-1) & (lw[..., -1] < math.inf) & (lw[..., -1] > -math.inf)
    return torch.where(valid, k_hat, torch.full_like(k_hat, float("nan")))
