"""Densities and bounds: log-mean-exp, standard-normal prior, Bernoulli likelihood, ELBO, IWAE
(with its standard error and the Pareto k̂ of its weights).

All densities include their normalising constants (a missing −½·D·log 2π shifts bounds by
≈ 45.9 nats at D = 50, docs/method.md §8).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .likelihood import check_int
from .pareto import keep_top, pareto_khat, tail_size

LOG_2PI = math.log(2.0 * math.pi)
# Draws per sample batch of every Monte Carlo bound (and of the flows' standardiser): memory only,
# never results (draws are keyed by their sample offset, vaegaps.rng): the decoder then holds
# N x 500 activations whatever n_samples is (5000 by default), not N x n_samples.
SAMPLE_BATCH = 500


def log_mean_exp(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log(mean(exp(x))) along `dim`, stable: subtracts the max, divides by the count."""
    if x.shape[dim] == 0:
        raise ValueError(f"log_mean_exp of no values: dimension {dim} of shape {tuple(x.shape)} is empty "
                         "(a sample or chain count of 0?)")
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def log_normal_std(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dimension."""
    return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * LOG_2PI)


def log_normal_diag(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, diag(exp(logvar))), summed over the last dimension."""
    return -0.5 * (((z - mean) ** 2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(x | sigmoid(logits)) summed over the last dimension.

    x·l − softplus(l) equals −softplus(−l)·x − softplus(l)·(1−x) and stays finite at |l| > 100.
    logits (..., S, P) may carry a sample dimension that x (..., P) lacks: Σ_p x·l is then one
    matmul per datapoint instead of a broadcast product over every sample.
    """
    if x.dim() == logits.dim() - 1:
        return torch.matmul(logits, x.unsqueeze(-1)).squeeze(-1) - F.softplus(logits).sum(-1)
    return (x * logits - F.softplus(logits)).sum(-1)


def elbo(log_pxz: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Monte Carlo ELBO over the sample dimension (last): mean of log p(x,z) − log q."""
    return (log_pxz - log_q).mean(-1)


def iwae(log_pxz: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """IWAE-k bound with k = the sample dimension (last)."""
    return log_mean_exp(log_pxz - log_q, dim=-1)


def annealed_objective(log_px_z: torch.Tensor, log_pz: torch.Tensor, log_q: torch.Tensor,
                       lam: float) -> torch.Tensor:
    """E_q[log p(x|z) + log p(z) − λ·log q(z|x)]: entropy annealing, λ on −log q only (not KL annealing)."""
    return (log_px_z + log_pz - lam * log_q).mean(-1)


def elbo_loss_and_grads(sample_q, params: dict, log_likelihood, noise: torch.Tensor):
    """The reparametrised −ELBO of each datapoint's q, estimated on `noise`, and its gradients in
    `params` (in their order): sample_q(params, noise) -> (z (N, S, D), log q (N, S)). The
    parameters are detached again on return, so no autograd graph outlives the call."""
    with torch.enable_grad():
        leaves = {k: p.requires_grad_(True) for k, p in params.items()}
        z, log_q = sample_q(leaves, noise)
        loss = -(log_likelihood(z) + log_normal_std(z) - log_q).mean(-1)
        grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
    for p in params.values():
        p.detach_()
    return loss.detach(), grads


class MonteCarloBounds(NamedTuple):
    """Per-datapoint bounds of `monte_carlo_bounds`; the last two only with `iwae_diagnostics`."""

    elbo: torch.Tensor
    iwae: torch.Tensor
    elbo_se: torch.Tensor
    iwae_se: torch.Tensor | None = None     # delta-method standard error of `iwae`
    iwae_khat: torch.Tensor | None = None   # Pareto k̂ of the IWAE's weights (vaegaps.pareto)


def monte_carlo_bounds(sample_q, log_likelihood, n_samples: int, noise_fn, sample_batch: int = SAMPLE_BATCH,
                       iwae_diagnostics: bool = False) -> MonteCarloBounds:
    """ELBO, IWAE-n_samples and the ELBO's standard error for every datapoint, in sample batches;
    with `iwae_diagnostics`, also the IWAE's delta-method standard error and the Pareto k̂ of its
    weights, from a running tail of the largest log-weights (no per-datapoint loop).

    sample_q(noise) -> (z (N, s, D), log q (N, s)); noise_fn(offset, s) -> noise (N, s, k, D)
    must give the same numbers whether drawn at once or in batches (vaegaps.rng does), so the
    batch size changes memory, not results.
    """
    check_int("n_samples", n_samples)
    check_int("sample_batch", sample_batch)
    total = total_sq = top = None
    lse_parts, lse2_parts = [], []
    n_top = tail_size(n_samples) + 1
    for start in range(0, n_samples, sample_batch):
        s = min(sample_batch, n_samples - start)
        z, log_q = sample_q(noise_fn(start, s))
        w = (log_likelihood(z) + log_normal_std(z) - log_q).double()
        total = w.sum(-1) if total is None else total + w.sum(-1)
        total_sq = w.pow(2).sum(-1) if total_sq is None else total_sq + w.pow(2).sum(-1)
        lse_parts.append(torch.logsumexp(w, -1))
        lse2_parts.append(torch.logsumexp(2 * w, -1))
        if iwae_diagnostics:
            top = keep_top(top, w, n_top)
    mean = total / n_samples
    var = (total_sq / n_samples - mean.pow(2)).clamp_min(0) * n_samples / max(1, n_samples - 1)
    lse = torch.logsumexp(torch.stack(lse_parts, -1), -1)
    log_px = lse - math.log(n_samples)
    if not iwae_diagnostics:
        return MonteCarloBounds(mean, log_px, (var / n_samples).sqrt())
    # se of log(mean w) ≈ sd(w) / (√S·mean w): relative variance S·Σw²/(Σw)² − 1, over S − 1
    lse2 = torch.logsumexp(torch.stack(lse2_parts, -1), -1)
    rel_var = (n_samples * torch.exp(lse2 - 2 * lse) - 1).clamp_min(0) / max(1, n_samples - 1)
    return MonteCarloBounds(mean, log_px, (var / n_samples).sqrt(), rel_var.sqrt(), pareto_khat(top))
