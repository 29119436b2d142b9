"""A user model's Table 2 row and its refinement summary (docs/method.md §11); its per-datapoint
gaps are `vaegaps.tables.gap_table`'s, as every model's (its stage: vaegaps.pipeline.stages). No
torch here: the gaps and table stages stay cheap."""

from __future__ import annotations

import pandas as pd

from .errors import VaegapsError
from .tables import REFINEMENT_COLUMNS, diagnostics, refinement_table, summarize

SUMMARY_COLUMNS = ["log_px", "elbo_local_flow", "elbo_local_realnvp", "elbo_local_ffg", "elbo_amortized",
                   "iwae_amortized", "approximation_gap", "amortization_gap", "inference_gap",
                   "approximation_gap_ffg", "approximation_gap_flow", "approximation_gap_realnvp"]


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
