"""Run an estimator over an evaluation set and return one row per datapoint.

Every estimator keys its random numbers by the datapoint's index in its split, so the evaluation
set can be cut into chunks (resumable after a kill, or spread over cluster jobs) without changing
a single number.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from . import rng
from .ais import ais, bdmc
from .bounds import monte_carlo_bounds
from .data import load_split
from .io import write_parquet
from .local_opt import optimize_local
from .runtime import resolve_device
from .vae import VAE, load_vae

log = logging.getLogger(__name__)


def evaluation_set(data_path, split: str, n_points: int, device) -> tuple[np.ndarray, torch.Tensor]:
    """The first n_points of `split`: their indices and pixels (float, on `device`)."""
    index, x, _ = load_split(data_path, split)
    order = np.argsort(index, kind="stable")[:n_points]
    return index[order], torch.as_tensor(x[order], device=device)


def _frozen(model: VAE) -> VAE:
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def amortized_bounds(model: VAE, x: torch.Tensor, index: np.ndarray, n_samples: int, seed: int,
                     sample_chunk: int = 500) -> pd.DataFrame:
    """L[q] and IWAE-n_samples of the encoder's q(z|x)."""
    model = _frozen(model)
    idx = torch.as_tensor(index, device=x.device)
    with torch.no_grad():
        mean, logvar, h = model.encode(x)

        def noise_fn(offset, s):
            return rng.normal(seed, "amortized", idx, 0, (s, model.family.n_noise, model.z_dim),
                              offset=offset, dtype=x.dtype)

        elbo, iwae, se = monte_carlo_bounds(lambda e: model.family(mean, logvar, e, h),
                                            model.log_likelihood(x), n_samples, noise_fn, sample_chunk)
    return pd.DataFrame({"index": index, "elbo": elbo.cpu().numpy(), "iwae": iwae.cpu().numpy(),
                         "elbo_se": se.cpu().numpy()})


def local_optimum(model: VAE, x: torch.Tensor, index: np.ndarray, family: str, cfg: dict,
                  seed: int) -> pd.DataFrame:
    """L[q*] and the IWAE of q* for `family`, optimised per datapoint (PROTOCOL §4)."""
    model = _frozen(model)
    init = None
    if cfg.get("init", "prior") == "encoder":
        with torch.no_grad():
            init = model.encode(x)[:2]
    q = optimize_local(model.log_likelihood(x), model.z_dim, len(index), family=family,
                       n_samples=cfg["n_samples"], lr=cfg["lr"], check_every=cfg["check_every"],
                       patience=cfg["patience"], max_steps=cfg["max_steps"],
                       final_samples=cfg["final_samples"], generator=seed,
                       index=torch.as_tensor(index), init=init, hidden=cfg.get("flow_hidden"),
                       flow_steps=cfg.get("flow_steps", 2), stream=f"local_{family}")
    return pd.DataFrame({"index": index, "elbo": q.elbo.cpu().numpy(), "iwae": q.iwae.cpu().numpy(),
                         "elbo_se": q.elbo_se.cpu().numpy(), "steps": q.steps.cpu().numpy(),
                         "converged": q.converged.cpu().numpy()})


def _ais_settings(cfg: dict) -> dict:
    return dict(n_intermediate=cfg["n_intermediate"], schedule=cfg["schedule"],
                leapfrog_steps=cfg["leapfrog_steps"], step_size=cfg["step_size"],
                target_accept=cfg["target_accept"])


def _pilot_step_sizes(log_likelihood, z_dim, idx, cfg, seed):
    """Per-distribution step sizes tuned by a short-chain pilot run (PROTOCOL §5), or None."""
    if cfg.get("tuning", "pilot") != "pilot":
        return None
    pilot = ais(log_likelihood, z_dim, len(idx), cfg["pilot_chains"], generator=seed, index=idx,
                stream="ais_pilot", **_ais_settings(cfg))
    return pilot.step_sizes


def ais_estimate(model: VAE, x: torch.Tensor, index: np.ndarray, cfg: dict, seed: int) -> pd.DataFrame:
    """AIS from the prior: log p̂(x), its standard error across chains, and acceptance."""
    model = _frozen(model)
    idx = torch.as_tensor(index)
    lik = model.log_likelihood(x)
    frozen = _pilot_step_sizes(lik, model.z_dim, idx, cfg, seed)
    r = ais(lik, model.z_dim, len(index), cfg["n_chains"], generator=seed, index=idx,
            step_sizes=frozen, **_ais_settings(cfg))
    return pd.DataFrame({"index": index, "log_px": r.log_px.cpu().numpy(),
                         "log_px_se": r.log_px_se.cpu().numpy(),
                         "accept_rate": r.accept_rate.cpu().numpy()})


def simulate(model: VAE, n: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, x) from the model: z ~ p(z), x ~ Bernoulli(sigmoid(decoder(z))), keyed like the estimators."""
    idx = torch.arange(n, device=device)
    z = rng.normal(seed, "simulate/z", idx, 0, (model.z_dim,))
    with torch.no_grad():
        probs = torch.sigmoid(model.decoder(z.to(device)))
    u = rng.uniform(seed, "simulate/x", idx, 0, (probs.shape[-1],)).to(device)
    return z.to(device), (u < probs).to(probs.dtype)


def bdmc_validation(model: VAE, n: int, cfg: dict, seed: int, device) -> pd.DataFrame:
    """Forward and reverse AIS on data simulated from the model: the gap bounds AIS's error."""
    model = _frozen(model)
    z, x = simulate(model, n, seed, device)
    b = bdmc(model.log_likelihood(x), z, cfg["n_chains"], generator=seed, **_ais_settings(cfg))
    return pd.DataFrame({"index": np.arange(n), "lower": b.lower.cpu().numpy(),
                         "upper": b.upper.cpu().numpy(), "gap": (b.upper - b.lower).cpu().numpy()})


def evaluate_set(model_path, data_path, evaluation: dict, device_name: str, resume_dir,
                 estimate: Callable[[VAE, np.ndarray, torch.Tensor], pd.DataFrame]) -> pd.DataFrame:
    """What every evaluation stage does: load the model on its device, take the evaluation set,
    and run estimate(model, index, x) over it in resumable chunks."""
    device = resolve_device(device_name)
    model = load_vae(model_path, device)
    index, x = evaluation_set(data_path, evaluation["split"], evaluation["n_points"], device)
    return run_in_chunks(lambda i, xx: estimate(model, i, xx), index, x, evaluation["chunk_size"],
                         resume_dir)


def run_in_chunks(estimate: Callable[[np.ndarray, torch.Tensor], pd.DataFrame], index: np.ndarray,
                  x: torch.Tensor, chunk_size: int, resume_dir: str | Path) -> pd.DataFrame:
    """estimate(index, x) over consecutive chunks, each saved to resume_dir as it finishes, so a
    killed job restarts at its first unfinished chunk. Chunking does not change results."""
    resume_dir = Path(resume_dir)
    parts = []
    for start in range(0, len(index), chunk_size):
        stop = min(start + chunk_size, len(index))
        part_path = resume_dir / f"chunk_{index[start]}_{index[stop - 1]}.parquet"
        if part_path.exists():
            log.info("chunk %d-%d: reusing %s", start, stop, part_path)
            parts.append(pd.read_parquet(part_path))
            continue
        part = estimate(index[start:stop], x[start:stop])
        write_parquet(part, part_path, {"partial": True})
        log.info("chunk %d-%d of %d done", start, stop, len(index))
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def over_training_point(model: VAE, sets: dict[str, tuple[np.ndarray, torch.Tensor]], family: str,
                        cfg: dict, seed: int) -> pd.DataFrame:
    """log p̂(x), L[q*] (of `family`) and L[q] of one model snapshot on each split in `sets`."""
    frames = []
    for split, (index, x) in sets.items():
        amortized = amortized_bounds(model, x, index, cfg["amortized"]["n_samples"], seed)
        local = local_optimum(model, x, index, family, cfg["local"], seed)
        ais_df = ais_estimate(model, x, index, cfg["ais"], seed)
        log_px = np.maximum(ais_df["log_px"].to_numpy(), local["iwae"].to_numpy())
        frames.append(pd.DataFrame({
            "split": split, "index": index, "ais": ais_df["log_px"].to_numpy(),
            "iwae_qstar": local["iwae"].to_numpy(), "log_px": log_px,
            "elbo_qstar": local["elbo"].to_numpy(), "elbo_amortized": amortized["elbo"].to_numpy(),
            "approximation_gap": log_px - local["elbo"].to_numpy(),
            "amortization_gap": local["elbo"].to_numpy() - amortized["elbo"].to_numpy()}))
    return pd.concat(frames, ignore_index=True)
