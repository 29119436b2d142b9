"""Run an estimator over an evaluation set and return one row per datapoint.

Every estimator keys its random numbers by the datapoint's index in its split, so the evaluation
set can be cut into parts (one cluster job each) and chunks (resumable after a kill) without
changing a number: `gather_parts` puts the parts back together.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from . import rng
from .ais import AISResult, ais, bdmc
from .bounds import SAMPLE_BATCH, monte_carlo_bounds
from .config import local_config, refinement_config, starts_from_qstar_ffg
from .data import load_split
from .errors import VaegapsError
from .families import LocalPosterior
from .local_opt import LR_BACKOFF, optimize_local
from .refinement import refine_curve
from .tables import gap_table
from .vae import VAE

log = logging.getLogger(__name__)

# The Gaussians standing in for a flow encoder's q(z|x), from its moments on keyed draws (not
# settings: each only starts an optimiser or AIS, whose results stay bounds whatever the start).
# ENCODER_GAUSSIAN_SAMPLES: draws for the diagonal Gaussian a flow q* starts from (per-dimension
# mean and std); MIN_ENCODER_STD keeps its log-variance finite where a dimension barely moves.
ENCODER_GAUSSIAN_SAMPLES = 256
MIN_ENCODER_STD = 1e-4
# AIS_START_SAMPLES: draws for the full-covariance Gaussian AIS starts from (a D x D covariance
# needs more than a diagonal); COV_JITTER is added to its diagonal so its Cholesky factor exists.
AIS_START_SAMPLES = 1000
COV_JITTER = 1e-5


def evaluation_set(data_path, split: str, n_points: int, device,
                   key: str = "evaluation.n_points") -> tuple[np.ndarray, torch.Tensor]:
    """The first n_points of `split`: their indices and pixels (float, on `device`). More points
    than the split holds is an error naming `key`, the setting to lower, never a smaller set."""
    index, x, _ = load_split(data_path, split)
    if n_points > len(index):
        raise VaegapsError(f"{key} is {n_points} but the {split} split of {data_path} has {len(index)} "
                           f"datapoints; lower {key} to {len(index)} or less")
    order = np.argsort(index, kind="stable")[:n_points]
    return index[order], torch.as_tensor(x[order], device=device)


def _frozen(model: VAE) -> VAE:
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def amortized_bounds(model: VAE, x: torch.Tensor, index: np.ndarray, n_samples: int, seed: int,
                     sample_batch: int = SAMPLE_BATCH) -> pd.DataFrame:
    """L[q] and IWAE-n_samples of the encoder's q(z|x), with their standard errors and the
    Pareto k̂ of the IWAE's weights (`iwae_khat`, vaegaps.pareto)."""
    model = _frozen(model)
    idx = torch.as_tensor(index, device=x.device)
    with torch.no_grad():
        mean, logvar, h = model.encode(x)

        def noise_fn(offset, s):
            return rng.normal(seed, "amortized", idx, 0, (s, model.family.n_noise, model.z_dim),
                              offset=offset, dtype=x.dtype)

        b = monte_carlo_bounds(lambda e: model.family(mean, logvar, e, h), model.log_likelihood(x),
                               n_samples, noise_fn, sample_batch, iwae_diagnostics=True)
    return pd.DataFrame({"index": index, "elbo": b.elbo.cpu().numpy(), "iwae": b.iwae.cpu().numpy(),
                         "elbo_se": b.elbo_se.cpu().numpy(), "iwae_se": b.iwae_se.cpu().numpy(),
                         "iwae_khat": b.iwae_khat.cpu().numpy()})


def _encoder_draws(model: VAE, x: torch.Tensor, index, seed: int, n_samples: int, stream: str):
    """n_samples draws (N, S, D) from the encoder's amortized q(z|x), keyed by datapoint index."""
    mean, logvar, h = model.encode(x)
    idx = torch.as_tensor(index, device=x.device)
    noise = rng.normal(seed, stream, idx, 0, (n_samples, model.family.n_noise, model.z_dim), dtype=x.dtype)
    return model.family(mean, logvar, noise, h)[0]


def encoder_gaussian(model: VAE, x: torch.Tensor, index, seed: int, n_samples: int = ENCODER_GAUSSIAN_SAMPLES):
    """The diagonal Gaussian closest to the encoder's q(z|x), as (mean, logvar) per datapoint: q
    itself for an FFG encoder; for a flow encoder, the Gaussian with its q's per-dimension mean and
    variance (n_samples draws). Its base z0 would be no such proxy: the flow moves it far."""
    with torch.no_grad():
        if model.family_name == "ffg":
            mean, logvar, _ = model.encode(x)
            return mean, logvar
        z = _encoder_draws(model, x, index, seed, n_samples, "encoder_gaussian")
        return z.mean(1), 2 * torch.log(z.std(1).clamp_min(MIN_ENCODER_STD))


def encoder_start(model: VAE, x: torch.Tensor, family: str, index=None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Per-datapoint starting parameters of q*_{family} at the encoder's own q: the exact
    amortized q for the family the model was trained with (flow weights copied, encoder features
    folded into the biases); for any other family, a fresh flow (or an FFG) set to be exactly
    `encoder_gaussian`, the Gaussian closest to the encoder's q."""
    with torch.no_grad():
        if family == model.family_name and family != "ffg":
            mean, logvar, h = model.encode(x)
            return LocalPosterior.from_amortized(model.family, mean, logvar, h)
        index = torch.arange(len(x)) if index is None else index
        mean, logvar = encoder_gaussian(model, x, index, seed)
        return LocalPosterior.gaussian_start(family, mean, logvar, model.family_hidden[family],
                                             model.flow_steps)


def local_starts(model: VAE, x: torch.Tensor, index, family: str, local: dict, seed: int,
                 ffg: tuple[torch.Tensor, torch.Tensor] | None = None) -> list | None:
    """The candidate starts of q*_{family} under `local["init"]`: None (the prior), or the encoder's
    own q and, for a flow family, the optimal FFG embedded in it (the flow family contains every
    Gaussian exactly), so that L[q*] ≥ L[q] and L[q*_Flow] ≥ L[q*_FFG] up to Monte Carlo noise.
    `ffg` is q*_FFG's (mean, logvar) when already fitted (same settings and seed); else it is fitted here."""
    if local["init"] == "prior":
        return None
    starts = [encoder_start(model, x, family, index, seed)]
    if starts_from_qstar_ffg(local, family):
        if ffg is None:
            params = fit_qstar(model, x, index, "ffg", local, seed).params
            ffg = params["mean"], params["logvar"]
        starts.append(LocalPosterior.gaussian_start(family, *ffg, model.family_hidden[family], model.flow_steps))
    return starts


def fit_qstar(model: VAE, x: torch.Tensor, index: np.ndarray, family: str, local: dict, seed: int,
              ffg: tuple[torch.Tensor, torch.Tensor] | None = None):
    """q* of `family` per datapoint (docs/method.md §4), in the family the model defines (same
    widths and steps), with that family's settings from the `local` section (shared keys and
    per-family changes) and the starts `local_starts` gives. Returns the LocalResult and, per
    datapoint, whether it kept its start. A datapoint that diverged at every learning rate is an
    error, never a result. `ffg`: q*_FFG's fitted (mean, logvar), a start for a flow family."""
    model = _frozen(model)
    cfg = local_config(local, family)
    r = optimize_local(model.log_likelihood(x), model.z_dim, len(index), family=family,
                       n_samples=cfg["n_samples"], lr=cfg["lr"], check_every=cfg["check_every"],
                       patience=cfg["patience"], max_steps=cfg["max_steps"],
                       final_samples=cfg["final_samples"], generator=seed, index=torch.as_tensor(index),
                       init=local_starts(model, x, index, family, local, seed, ffg),
                       hidden=model.family_hidden[family], flow_steps=model.flow_steps,
                       restarts=cfg["restarts"], stream=f"local_{family}", method=cfg["method"],
                       newton_step=cfg["newton_step"], newton_window=cfg["newton_window"],
                       gain_tol=cfg["gain_tol"], gain_samples=cfg["gain_samples"], cycle_lr=cfg["cycle_lr"],
                       cycle_steps=cfg["cycle_steps"], probe_steps=cfg["probe_steps"],
                       gradient=cfg["gradient"])
    n_bad = int(r.diverged.sum())
    if n_bad:
        if cfg["method"] == "newton":
            raise VaegapsError(f"local ffg optimisation (newton) diverged (non-finite parameters) on {n_bad} of "
                               f"{len(index)} datapoints at newton_step {cfg['newton_step']:.3g}; lower "
                               "evaluation.local.ffg.newton_step, or set evaluation.local.ffg.method: adam")
        key = "cycle_lr" if cfg["method"] == "cycles" else "lr"
        raise VaegapsError(
            f"local {family} optimisation diverged (non-finite loss) on {n_bad} of {len(index)} datapoints "
            f"even at {key} {cfg[key] * LR_BACKOFF ** cfg['restarts']:.3g}; lower evaluation.local.{family}.{key}")
    return r


def local_optimum(model: VAE, x: torch.Tensor, index: np.ndarray, family: str, local: dict,
                  seed: int, ffg: pd.DataFrame | None = None) -> pd.DataFrame:
    """L[q*] and the IWAE of q* for `family` (see `fit_qstar`), with their standard errors and the
    IWAE's Pareto k̂ (`iwae_khat`), one row per datapoint; for FFG also
    q*'s parameters (`qstar_mean`, `qstar_logvar`). `ffg`: an FFG result of this function on these
    datapoints, whose q* a flow family then starts from instead of fitting it again."""
    start = None if ffg is None else tuple(qstar_params(ffg, index, x.device))
    r = fit_qstar(model, x, index, family, local, seed, start)
    df = pd.DataFrame({"index": index, "elbo": r.elbo.cpu().numpy(), "iwae": r.iwae.cpu().numpy(),
                       "elbo_se": r.elbo_se.cpu().numpy(), "iwae_se": r.iwae_se.cpu().numpy(),
                       "iwae_khat": r.iwae_khat.cpu().numpy(), "steps": r.steps.cpu().numpy(),
                       "converged": r.converged.cpu().numpy(), "restarts": r.restarts.cpu().numpy(),
                       "remaining_gain": r.remaining_gain.cpu().numpy()})
    if family == "ffg":
        for k in ("mean", "logvar"):
            df[f"qstar_{k}"] = list(r.params[k].detach().cpu().numpy())
    return df


def qstar_params(ffg: pd.DataFrame, index: np.ndarray, device) -> list[torch.Tensor]:
    """q*_FFG's (mean, logvar) of the datapoints `index`, from a `local_optimum` FFG frame."""
    rows = ffg.set_index("index").reindex(index)
    if rows["qstar_mean"].isna().any():
        raise VaegapsError("the q*_FFG results lack some of the datapoints of this part; delete "
                           "the local_ffg results of this model and rerun")
    return [torch.as_tensor(np.stack(rows[f"qstar_{k}"].to_numpy()), device=device) for k in ("mean", "logvar")]


def refinement_curve(model: VAE, x: torch.Tensor, index: np.ndarray, family: str, refinement: dict, seed: int,
                     key: str = "evaluation.refinement") -> pd.DataFrame:
    """The refinement curve (docs/method.md §12): the ELBO of each datapoint's copy of the
    encoder's q after every k of `refinement["steps"]` steps in `family`, the family of the
    amortization gap's q*, with its Monte Carlo standard error; one row per datapoint and k
    (`index, steps, elbo, elbo_se`). `refinement`: that family's settings
    (`vaegaps.config.refinement_config`). The start is `encoder_start`, exactly the encoder's q
    (an encoder whose q is not in `family` has no curve: an error). A datapoint whose steps turn
    non-finite is an error naming the settings under `key` to change, never a result."""
    model = _frozen(model)
    if family != model.family_name and model.family_name != "ffg":
        raise VaegapsError(f"no refinement curve: the encoder's q ({model.family_name}) cannot be copied exactly "
                           f"into the {family} family")
    start = encoder_start(model, x, family, index, seed)
    r = refine_curve(model.log_likelihood(x), start, steps=refinement["steps"], optimizer=refinement["optimizer"],
                     lr=refinement["lr"], n_samples=refinement["n_samples"],
                     final_samples=refinement["final_samples"], family=family, generator=seed,
                     index=torch.as_tensor(index), hidden=model.family_hidden[family], flow_steps=model.flow_steps,
                     stream=f"refinement_{family}")
    gone = r.diverged_at > 0
    if gone.any():
        raise VaegapsError(
            f"refinement ({refinement['optimizer']}, lr {refinement['lr']:g}) diverged (non-finite ELBO or gradient) on "
            f"{int(gone.sum())} of {len(index)} datapoints, first at step {int(r.diverged_at[gone].min())}; lower "
            f"{key}.{family}.lr, or set {key}.{family}.optimizer: adam")
    k = len(r.steps)
    return pd.DataFrame({"index": np.repeat(np.asarray(index), k), "steps": np.tile(np.asarray(r.steps), len(index)),
                         "elbo": r.elbo.reshape(-1).numpy(), "elbo_se": r.elbo_se.reshape(-1).numpy()})


def ais_start(model: VAE, x: torch.Tensor, index, init: str, seed: int, n_samples: int = AIS_START_SAMPLES):
    """The normalised density AIS starts from (`evaluation.ais.init`): None for the prior (the
    paper's AIS); for 'encoder', the encoder's own Gaussian q(z|x) (mean, std) for an FFG encoder,
    and for a flow encoder the full-covariance Gaussian with its q's mean and covariance
    (n_samples draws; mean, Cholesky factor): flow-trained posteriors are strongly correlated,
    which a diagonal start would miss. Either start keeps log p̂ a stochastic lower bound."""
    if init == "prior":
        return None
    with torch.no_grad():
        if model.family_name == "ffg":
            mean, logvar, _ = model.encode(x)
            return mean, torch.exp(0.5 * logvar)
        z = _encoder_draws(model, x, index, seed, n_samples, "ais_start")
        centred = z - z.mean(1, keepdim=True)
        cov = centred.transpose(1, 2) @ centred / (n_samples - 1)
        cov = cov + COV_JITTER * torch.eye(model.z_dim, dtype=z.dtype, device=z.device)
        return z.mean(1), torch.linalg.cholesky(cov)


def _ais_settings(cfg: dict) -> dict:
    return dict(n_intermediate=cfg["n_intermediate"], schedule=cfg["schedule"],
                leapfrog_steps=cfg["leapfrog_steps"], step_size=cfg["step_size"],
                target_accept=cfg["target_accept"])


def _pilot_step_sizes(log_likelihood, z_dim, idx, cfg, seed, init):
    """Per-distribution step sizes tuned by a short-chain pilot run (docs/method.md §5), or None."""
    if cfg["tuning"] != "pilot":
        return None
    pilot = ais(log_likelihood, z_dim, len(idx), cfg["pilot_chains"], generator=seed, index=idx,
                stream="ais_pilot", init=init, **_ais_settings(cfg))
    return pilot.step_sizes


def ais_run(model: VAE, x: torch.Tensor, index: np.ndarray, cfg: dict, seed: int) -> AISResult:
    """The pipeline's AIS procedure (`evaluation.ais` settings `cfg`): the start `cfg["init"]`
    (see `ais_start`), pilot-tuned step sizes where `cfg["tuning"]` says so, then the run."""
    model = _frozen(model)
    idx = torch.as_tensor(index)
    lik = model.log_likelihood(x)
    init = ais_start(model, x, index, cfg["init"], seed)
    frozen = _pilot_step_sizes(lik, model.z_dim, idx, cfg, seed, init)
    return ais(lik, model.z_dim, len(index), cfg["n_chains"], generator=seed, index=idx,
               step_sizes=frozen, init=init, **_ais_settings(cfg))


def ais_estimate(model: VAE, x: torch.Tensor, index: np.ndarray, cfg: dict, seed: int) -> pd.DataFrame:
    """AIS (`ais_run`): log p̂(x), its standard error across chains, and acceptance."""
    r = ais_run(model, x, index, cfg, seed)
    return pd.DataFrame({"index": index, "log_px": r.log_px.cpu().numpy(),
                         "log_px_se": r.log_px_se.cpu().numpy(),
                         "accept_rate": r.accept_rate.cpu().numpy(), "ais_start": cfg["init"]})


def estimate(estimator: str, model: VAE, index: np.ndarray, x: torch.Tensor, evaluation: dict, seed: int,
             qstar_family: str | None, ffg: pd.DataFrame | None = None,
             refinement_key: str = "evaluation.refinement") -> pd.DataFrame:
    """One estimator on one batch of datapoints of any model (a built-in VAE or a user's,
    vaegaps.pipeline.sources): 'amortized' (`amortized_bounds`), 'local_<family>' (`local_optimum`), 'ais'
    (`ais_estimate`) or 'refinement' (`refinement_curve` in `qstar_family`, the family of the
    model's q*), each with its section of the `evaluation` settings. `ffg`: q*_FFG of these
    datapoints, the start of a family that `evaluation.local` starts from it (ignored otherwise).
    `refinement_key`: where the refinement settings live, for its errors."""
    if estimator == "amortized":
        return amortized_bounds(model, x, index, evaluation["amortized"]["n_samples"], seed)
    if estimator == "ais":
        return ais_estimate(model, x, index, evaluation["ais"], seed)
    if estimator == "refinement":
        return refinement_curve(model, x, index, qstar_family,
                                refinement_config(evaluation["refinement"], qstar_family), seed, key=refinement_key)
    if not estimator.startswith("local_"):
        raise VaegapsError(f"no estimator {estimator!r}: amortized, local_<family>, ais or refinement")
    family = estimator.removeprefix("local_")
    start = ffg if starts_from_qstar_ffg(evaluation["local"], family) else None
    return local_optimum(model, x, index, family, evaluation["local"], seed, start)


def simulate(model: VAE, n: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, x) from the model: z ~ p(z), x ~ Bernoulli(sigmoid(decoder(z))), keyed like the estimators.
    A model with its own `simulate` (a user model, vaegaps.user_model) draws from its own likelihood."""
    if hasattr(model, "simulate"):
        return model.simulate(n, seed, device)
    idx = torch.arange(n, device=device)
    z = rng.normal(seed, "simulate/z", idx, 0, (model.z_dim,))
    with torch.no_grad():
        probs = torch.sigmoid(model.decoder(z.to(device)))
    u = rng.uniform(seed, "simulate/x", idx, 0, (probs.shape[-1],)).to(device)
    return z.to(device), (u < probs).to(probs.dtype)


def bdmc_validation(model: VAE, n: int, cfg: dict, seed: int, device,
                    rows: tuple[int, int] | None = None) -> pd.DataFrame:
    """Forward and reverse AIS on data simulated from the model: the gap bounds AIS's error.
    `rows` = [start, stop) runs only those of the n simulated datapoints (all by default)."""
    model = _frozen(model)
    z, x = simulate(model, n, seed, device)
    start, stop = rows if rows is not None else (0, n)
    if not 0 <= start <= stop <= n:
        raise VaegapsError(f"rows [{start}, {stop}) are not among the {n} simulated datapoints")
    lik, idx = model.log_likelihood(x[start:stop]), torch.arange(start, stop)
    # the same procedure as the estimate: its start and pilot-tuned frozen step sizes included
    init = ais_start(model, x[start:stop], idx, cfg["init"], seed)
    frozen = _pilot_step_sizes(lik, model.z_dim, idx, cfg, seed, init)
    b = bdmc(lik, z[start:stop], cfg["n_chains"], generator=seed, index=idx, step_sizes=frozen,
             init=init, **_ais_settings(cfg))
    return pd.DataFrame({"index": np.arange(start, stop), "lower": b.lower.cpu().numpy(),
                         "upper": b.upper.cpu().numpy(), "gap": (b.upper - b.lower).cpu().numpy()})


def over_training_point(model: VAE, sets: dict[str, tuple[np.ndarray, torch.Tensor]], family: str,
                        cfg: dict, seed: int) -> pd.DataFrame:
    """log p̂(x), L[q*] (of `family`) and L[q] of one model snapshot on each split in `sets`, with
    the gaps of `tables.gap_table` (without the per-family columns: q* of `family` alone)."""
    frames = []
    for split, (index, x) in sets.items():
        amortized = amortized_bounds(model, x, index, cfg["amortized"]["n_samples"], seed)
        local = local_optimum(model, x, index, family, cfg["local"], seed)
        ais_df = ais_estimate(model, x, index, cfg["ais"], seed)
        gaps = gap_table(amortized, {family: local}, ais_df, family, family, extended=False, per_family=False)
        frames.append(gaps.assign(split=split))
    return pd.concat(frames, ignore_index=True)
