"""The per-datapoint gaps of a user model and its Table 2 row (docs/method.md §11): the arithmetic
shared by `vaegaps.measure` and the pipeline's user stages. No torch here: the gaps and table
stages stay cheap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import VaegapsError
from .pareto import KHAT_MAX
from .tables import NEGATIVE_GAP_SE, REFINEMENT_COLUMNS, diagnostics, gap_frame, iwae_khat, refinement_table, summarize

SUMMARY_COLUMNS = ["log_px", "elbo_local_flow", "elbo_local_realnvp", "elbo_local_ffg", "elbo_amortized",
                   "iwae_amortized", "approximation_gap", "amortization_gap", "inference_gap",
                   "approximation_gap_ffg", "approximation_gap_flow", "approximation_gap_realnvp"]


def _best_iwae(local: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per datapoint, the q* with the highest IWAE whose weights are trusted (k̂ ≤ 0.7; the highest
    of all where none is), with its standard error and k̂."""
    names = list(local)
    iwae = np.stack([local[f]["iwae"].to_numpy() for f in names])
    se = np.stack([local[f]["iwae_se"].to_numpy() for f in names])
    khat = np.stack([iwae_khat(local[f]) for f in names])
    trusted = ~(khat > KHAT_MAX)
    best = np.where(trusted | ~trusted.any(0), iwae, -np.inf).argmax(0)
    cols = np.arange(iwae.shape[1])
    return pd.DataFrame({"iwae": iwae[best, cols], "iwae_se": se[best, cols], "iwae_khat": khat[best, cols]})


def gap_table(amortized: pd.DataFrame, local: dict[str, pd.DataFrame], ais: pd.DataFrame,
              encoder_family: str, qstar_family: str | None) -> pd.DataFrame:
    """One row per datapoint of a user model, named as in the gaps Parquet of the built-in models
    (`vaegaps.tables.gap_frame`, the one place the gap arithmetic is done) where they mean the
    same, plus: approximation_gap_{family} (log p̂ − L[q*_family]) for every q* fitted,
    inference_gap_se, steps_local_*, AIS acceptance, and the encoder's and q*'s family. Without a
    q* family for the encoder (a q that is not a diagonal Gaussian, none declared)
    approximation_gap and amortization_gap are NaN, and iwae_qstar is the best trusted IWAE of the
    fitted q*."""
    index = amortized["index"].to_numpy()
    for name, df in {**{f"local_{f}": d for f, d in local.items()}, "ais": ais}.items():
        if not np.array_equal(df["index"].to_numpy(), index):
            raise VaegapsError(f"{name} and amortized were computed on different datapoints; rerun them "
                               "with the same evaluation settings")
    ref = local[qstar_family] if qstar_family else _best_iwae(local).assign(
        elbo=np.nan, elbo_se=np.nan, converged=False)
    out = gap_frame(index, ais, ref, amortized)
    if not qstar_family:
        out = out.drop(columns=["elbo_qstar", "elbo_qstar_se", "qstar_converged", "negative_amortization_gap"])
        out[["approximation_gap", "approximation_gap_se", "amortization_gap", "amortization_gap_se"]] = np.nan
    log_px_se = out["log_px_se"].to_numpy()
    out["inference_gap_se"] = np.hypot(log_px_se, out["elbo_amortized_se"])
    negative = np.zeros(len(out), dtype=bool)
    for fam, df in local.items():
        elbo, se = df["elbo"].to_numpy(), df["elbo_se"].to_numpy()
        out[f"elbo_local_{fam}"] = elbo
        out[f"elbo_local_{fam}_se"] = se
        out[f"converged_local_{fam}"] = df["converged"].to_numpy(dtype=bool)
        out[f"steps_local_{fam}"] = df["steps"].to_numpy()
        out[f"approximation_gap_{fam}"] = out["log_px"] - elbo
        out[f"approximation_gap_{fam}_se"] = np.hypot(log_px_se, se)
        negative |= out[f"approximation_gap_{fam}"].to_numpy() < -NEGATIVE_GAP_SE * out[f"approximation_gap_{fam}_se"].to_numpy()
    if not qstar_family:
        out["negative_approximation_gap"] = negative
    out["accept_rate"] = ais["accept_rate"].to_numpy()
    out["encoder_family"] = encoder_family
    out["qstar_family"] = qstar_family or ""
    return out


def amortization_note(encoder_family: str, qstar_family: str | None) -> str:
    """Why the amortization gap is absent (empty where it is reported)."""
    if qstar_family:
        return ""
    return (f"no amortization gap: the encoder's q ({encoder_family.removeprefix('other ').strip('()')}) is not a "
            "diagonal Gaussian and no family (ffg, flow, realnvp) containing it was declared, so L[q*] of its "
            "family is undefined; approximation gaps are against q*_FFG and q*_Flow")


def summary(frame: pd.DataFrame, bdmc: pd.DataFrame | None = None) -> pd.DataFrame:
    """The Table 2 row of a user model: mean and standard error across datapoints of every bound
    and gap (`_se` partners), the trust figures of Table 2, the BDMC gap of `certify`'s frame,
    and why the amortization gap is absent where it is."""
    cols = [c for c in SUMMARY_COLUMNS if c in frame]
    row = {**summarize(frame, cols), **diagnostics(frame)}
    if bdmc is not None:
        cert = summarize(bdmc, ["gap"])
        row.update(bdmc_gap=cert["gap"], bdmc_gap_se=cert["gap_se"], bdmc_n_points=cert["n_points"])
    enc = str(frame["encoder_family"].iloc[0]) if "encoder_family" in frame else ""
    fam = str(frame["qstar_family"].iloc[0]) if "qstar_family" in frame else ""
    row.update(encoder_family=enc, qstar_family=fam, amortization_gap_note=amortization_note(enc, fam or None))
    return pd.DataFrame([row])


def stage_gaps(sm) -> None:
    """The per-datapoint gaps of a user model from the parts of its estimates (gathered here,
    checked to share their settings as `gather_parts` does)."""
    from .io import write_parquet
    from .scatter import gather_parts

    amortized, meta = gather_parts(list(sm.input.amortized))
    by_stage: dict[str, list[str]] = {}
    for p in sm.input.local:
        by_stage.setdefault(Path(p).parent.name.removeprefix("local_"), []).append(p)
    local = {fam: gather_parts(paths)[0] for fam, paths in by_stage.items()}
    df = gap_table(amortized, local, gather_parts(list(sm.input.ais))[0], meta["encoder_family"], meta["qstar_family"])
    write_parquet(df, sm.output[0], {"name": sm.wildcards.name, "settings": sm.params.settings,
                                     "encoder_family": meta["encoder_family"], "qstar_family": meta["qstar_family"],
                                     "amortization_gap_note": amortization_note(meta["encoder_family"],
                                                                                meta["qstar_family"])})


def user_table(frames: dict[str, pd.DataFrame], bdmc: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One `summary` row per user model, named, with its BDMC gap."""
    return pd.concat([summary(df, bdmc.get(name)).assign(name=name) for name, df in frames.items()],
                     ignore_index=True).pipe(lambda t: t[["name", *[c for c in t.columns if c != "name"]]])


def refinement_summary(curve: pd.DataFrame, gaps: pd.DataFrame) -> pd.DataFrame:
    """Per k, the mean ELBO of a user model's refinement curve (`vaegaps.refine`) and the fraction
    of its amortization gap closed (`vaegaps.tables.refinement_table`), with L[q] and L[q*] from
    its gaps frame (`vaegaps.measure`, the same settings): columns steps, elbo, elbo_se,
    fraction_closed, fraction_closed_se. No rows where there is no curve (an empty `curve`)."""
    if not len(curve):
        return pd.DataFrame(columns=REFINEMENT_COLUMNS)
    if "elbo_qstar" not in gaps:
        raise VaegapsError("the gaps frame has no elbo_qstar (no amortization gap): no refinement summary")
    pick = (lambda col: gaps[["index", col]].rename(columns={col: "elbo"}))
    return refinement_table(curve, pick("elbo_amortized"), pick("elbo_qstar"))


def stage_refinement_table(sm) -> None:
    """results/user_refinement.csv: `refinement_summary` of every user model, named, with the
    family its q* and curve are in."""
    from .io import read_metadata, write_csv

    rows = []
    for name, curve, gaps in zip(sm.params.names, sm.input.curves, sm.input.gaps, strict=True):
        family = read_metadata(gaps).get("qstar_family") or ""
        rows.append(refinement_summary(pd.read_parquet(curve), pd.read_parquet(gaps)).assign(name=name, family=family))
    columns = ["name", "family", *REFINEMENT_COLUMNS]
    rows = [r[columns] for r in rows if len(r)]
    write_csv(pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns), sm.output.csv)
