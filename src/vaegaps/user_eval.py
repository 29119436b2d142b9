"""The gaps of your own VAE: `vaegaps.measure`, `vaegaps.certify`, `vaegaps.summary`, and the
pipeline stages of the `user_models` section (docs/method.md §11).

`measure` runs the package's estimators on a user model (vaegaps.user_model's protocol) exactly as
the pipeline does on its own models: the evaluation set in chunks of `chunk_size` datapoints, every
estimator batched over a whole chunk, random numbers keyed by (seed, stream, datapoint index). The
pipeline runs the same functions per estimator and part (vaegaps.pipeline.sources, the one stage driver of
every model source), so both give the same rows.
"""

from __future__ import annotations

import logging
import sys
import time

import pandas as pd
import torch

from .errors import VaegapsError
from .evaluate import bdmc_validation, estimate
from .tables import gap_table  # the Python API
from .user_config import estimators, measure_settings
from .user_model import N_PROBE, UserVAE, frozen, load_data, unvalidated_distributions
from .user_tables import amortization_note, refinement_summary, summary, user_table

log = logging.getLogger(__name__)


def adapter(model, x: torch.Tensor, settings: dict) -> UserVAE:
    """The user model behind the estimators' interface, checked on the first datapoints."""
    return UserVAE(model, x, likelihood=settings["likelihood"], noise_std=settings["noise_std"],
                   family=settings["family"], flow_hidden=settings["flow_hidden"],
                   realnvp_hidden=settings["realnvp_hidden"], flow_steps=settings["flow_steps"])


class _Progress:
    """A one-line progress bar on stderr (no dependency): estimator × chunk steps done."""

    def __init__(self, total: int, enabled: bool, width: int = 30):
        self.total, self.done, self.enabled, self.width = total, 0, enabled, width
        self.t0 = time.perf_counter()
        self.tty = enabled and sys.stderr.isatty()

    def step(self, label: str) -> None:
        self.done += 1
        log.info("measure: %s done (%d/%d)", label, self.done, self.total)
        if not self.enabled:
            return
        filled = self.width * self.done // self.total
        line = (f"vaegaps.measure [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} "
                f"{label} {time.perf_counter() - self.t0:.0f} s")
        sys.stderr.write(("\r" + line + ("\n" if self.done == self.total else "")) if self.tty else line + "\n")
        sys.stderr.flush()


def measure(model, data, *, seed: int = 0, progress: bool = True, **settings) -> pd.DataFrame:
    """Per-datapoint gaps of your own VAE (docs/method.md §11): one row per datapoint.

    `model`: an object with encode(x) and decode(z) (vaegaps.user_model's protocol). `data`: a
    tensor, a NumPy array, or a .npy, .npz or .parquet file (`vaegaps.user_model.load_data`).
    `settings` take the names of the config's `evaluation` keys (n_points, split, chunk_size,
    amortized, local, ais; `parts` is accepted and changes nothing, `refinement` is `refine`'s) and of a `user_models` entry
    (likelihood, noise_std, family, local_families, flow_hidden, realnvp_hidden, flow_steps,
    shape); nested ones change only the keys they name, e.g. ais={"n_intermediate": 1000}. Defaults
    (src/vaegaps/config.schema.yaml, `$defs.user_model`): the first 1000 datapoints; L[q] and
    IWAE from 5000 draws; q* for FFG and Flow (q*_FFG by variational Newton, q*_Flow by Adam in
    cosine cycles of 1000 then 250 steps; 50 draws per step, at most 10,000 steps, scored on 5000
    draws); AIS from the
    encoder's q, 16 chains × 300 distributions, sigmoid schedule, pilot-tuned step sizes.
    Certify that AIS setting on the model with `certify`; summarise with `summary`.

    Columns: as the pipeline's gaps Parquet (`vaegaps.tables.gap_frame`: index, ais, log_px,
    elbo_qstar, elbo_amortized, iwae_amortized, approximation_gap, amortization_gap, inference_gap,
    their standard errors, log_px_source, log_px_bias_bound, the IWAEs' Pareto k̂ and untrusted
    flags, ais_below_iwae, ais_below_iwae_amortized, ais_below_any_bound, negative-gap flags, elbo_local_{ffg,flow},
    converged_local_*), plus approximation_gap_{ffg,flow}, steps_local_*, accept_rate,
    encoder_family and qstar_family.

    Args:
        model: your VAE (encode, decode, optional prior).
        data: the datapoints (tensor, array or file), one per row.
        seed: root of every random draw (keyed with the datapoint index).
        progress: show a progress bar on stderr.
        **settings: evaluation and user-model settings, as above.

    Returns:
        pandas.DataFrame, one row per datapoint, with the columns above.
    """
    s = measure_settings(**settings)
    ev = s["evaluation"]
    index, x = load_data(data, ev["split"], ev["n_points"], s["shape"])
    user = adapter(model, x, s)
    x = user.prepare(x)
    names = estimators(s)
    chunks = range(0, len(index), ev["chunk_size"])
    bar = _Progress(len(names) * len(chunks), progress)
    frames: dict[str, list[pd.DataFrame]] = {n: [] for n in names}
    with frozen(user), unvalidated_distributions():
        for k, start in enumerate(chunks):
            sl = slice(start, start + ev["chunk_size"])
            for name in names:
                done = frames.get("local_ffg", [])
                ffg = done[k] if len(done) > k else None   # this chunk's q*_FFG, once fitted; estimate decides its use
                frames[name].append(estimate(name, user, index[sl], x[sl], ev, seed, user.qstar_family, ffg,
                                             refinement_key="refinement"))
                bar.step(f"{name} (chunk {k + 1}/{len(chunks)})")
    full = {n: pd.concat(f, ignore_index=True) for n, f in frames.items()}
    local = {n.removeprefix("local_"): full[n] for n in names if n.startswith("local_")}
    return gap_table(full["amortized"], local, full["ais"], user.encoder_family, user.qstar_family)


def refinable(user: UserVAE) -> bool:
    """Whether the encoder's q can be copied exactly into the family of its q* (the refinement
    curve's start): a diagonal-Gaussian encoder (any family), or a q of that very family."""
    return user.qstar_family is not None and user.family_name in ("ffg", user.qstar_family)


def refine(model, data, *, seed: int = 0, progress: bool = True, **settings) -> pd.DataFrame:
    """The refinement curve of your own VAE (docs/method.md §12): per datapoint and per k of
    `refinement["steps"]`, the ELBO of its copy of the encoder's q after k gradient steps in the
    family of its q* (FFG for a diagonal-Gaussian encoder, or the declared `family`), with its
    Monte Carlo standard error: columns `index, steps, elbo, elbo_se`, the rows the `user_models`
    pipeline writes to results/user/NAME/refinement.parquet.

    Settings as in `measure` (the same datapoints, chunks and seed); the steps under `refinement`
    (steps, optimizer, lr, n_samples, final_samples; defaults in the schema's
    `$defs.refinement`), e.g. refinement={"steps": [0, 10, 100], "lr": 1e-3}. With the frame of
    `measure` on the same settings, `vaegaps.refinement_summary(curve, gaps)` gives the fraction
    of the amortization gap closed at each k. An encoder whose q cannot be copied into a family
    (not a diagonal Gaussian, no family declared, or a declared one it is not an instance of) has
    no curve: a one-line error.
    """
    s = measure_settings(**settings)
    ev = s["evaluation"]
    index, x = load_data(data, ev["split"], ev["n_points"], s["shape"])
    user = adapter(model, x, s)
    if not refinable(user):
        raise VaegapsError("no refinement curve: " + (amortization_note(user.encoder_family, user.qstar_family) or
                                                      f"the encoder's q ({user.encoder_family}) cannot be copied "
                                                      f"into the declared family {user.qstar_family}"))
    x = user.prepare(x)
    chunks = range(0, len(index), ev["chunk_size"])
    bar = _Progress(len(chunks), progress)
    frames = []
    with frozen(user), unvalidated_distributions():
        for k, start in enumerate(chunks):
            sl = slice(start, start + ev["chunk_size"])
            frames.append(estimate("refinement", user, index[sl], x[sl], ev, seed, user.qstar_family,
                                   refinement_key="refinement"))
            bar.step(f"refinement (chunk {k + 1}/{len(chunks)})")
    return pd.concat(frames, ignore_index=True)


def certify(model, data, *, seed: int = 0, progress: bool = True, **settings) -> pd.DataFrame:
    """BDMC of the AIS setting `measure` uses (the same settings) on `bdmc_points` (default 100)
    datapoints simulated from the model: z from its prior, x = decode(z).sample(). Forward AIS
    bounds log p(x) from below and reverse AIS from the true z from above, so `gap` = upper −
    lower bounds the error of that AIS setting on data like the model's own (docs/method.md §5).
    `data`: the real data, for the protocol check only. One row per simulated datapoint: index,
    lower, upper, gap."""
    s = measure_settings(**settings)
    _, x = load_data(data, s["evaluation"]["split"], N_PROBE, s["shape"])
    user = adapter(model, x, s)
    bar = _Progress(1, progress)
    with frozen(user), unvalidated_distributions():
        df = bdmc_validation(user, s["bdmc_points"], s["evaluation"]["ais"], seed, user.device)
    bar.step(f"BDMC on {s['bdmc_points']} simulated datapoints")
    return df


__all__ = ["measure", "refine", "certify", "summary", "refinement_summary", "gap_table", "user_table"]
