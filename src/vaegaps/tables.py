"""Per-datapoint gaps and the paper's tables (docs/method.md §1, §6.2)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import VaegapsError
from .pareto import KHAT_MAX

GAP_COLUMNS = ["log_px", "elbo_local_flow", "elbo_local_ffg", "elbo_amortized",
               "approximation_gap", "amortization_gap", "inference_gap"]


def _check_same_points(frames: dict[str, pd.DataFrame]) -> np.ndarray:
    first_name, first = next(iter(frames.items()))
    for name, df in frames.items():
        if not np.array_equal(df["index"].to_numpy(), first["index"].to_numpy()):
            raise VaegapsError(f"{name} and {first_name} were computed on different datapoints; "
                               "rerun them with the same evaluation settings")
    return first["index"].to_numpy()


NEGATIVE_GAP_SE = 3.0    # a per-datapoint gap below −3 standard errors is flagged
AIS_BELOW_SE = 2.0       # AIS counts as below an IWAE beyond 2 combined standard errors
AIS_BELOW_MAX = 0.10     # above this fraction the approximation gap is only a lower bound
CONVERGED_MIN = 0.95     # below this fraction of converged q*, claims on L[q*] are inconclusive
BDMC_PASS_NATS = 0.5     # AIS is certified where its BDMC gap is below this (claims, bench (c))
# The stochastic lower bounds on log p(x) of a datapoint besides AIS: IWAE of q* and of the encoder's q
IWAE_BOUNDS = ("iwae_qstar", "iwae_amortized")


def iwae_khat(df: pd.DataFrame) -> np.ndarray:
    """An estimator frame's Pareto k̂ of its IWAE weights; NaN where not estimated (too few draws,
    or a result written before k̂ was), which counts as trusted."""
    return df["iwae_khat"].to_numpy(dtype=float) if "iwae_khat" in df else np.full(len(df), np.nan)


def _iwae_columns(name: str, df: pd.DataFrame) -> dict[str, np.ndarray]:
    """An IWAE, its standard error, its Pareto k̂ and whether k̂ says its weights are too
    heavy-tailed to trust."""
    khat = iwae_khat(df)
    return {name: df["iwae"].to_numpy(), f"{name}_se": df["iwae_se"].to_numpy(),
            f"{name}_khat": khat, f"{name}_untrusted": khat > KHAT_MAX}


def select_log_px(frame: pd.DataFrame) -> pd.DataFrame:
    """log p̂ per datapoint (docs/method.md §1): the largest of AIS and the IWAEs whose k̂ ≤ 0.7
    (ties go to AIS, then IWAE(q*)), its standard error and source, and `log_px_bias_bound`,
    √((k−1)/k · Σ se²) over the k estimates in the max: the most the max can add to the expected
    value of its best member (Samuelson's inequality; Aven 1985), so E[log p̂] ≤ log p(x) + that bound."""
    names = ["ais", *IWAE_BOUNDS]
    value = np.stack([frame[n].to_numpy(dtype=float) for n in names])
    se = np.stack([frame[f"{n}_se"].to_numpy(dtype=float) for n in names])
    eligible = np.stack([np.ones(len(frame), bool),
                         *(~frame[f"{n}_untrusted"].to_numpy(bool) for n in IWAE_BOUNDS)])
    best = np.where(eligible, value, -np.inf).argmax(0)
    cols = np.arange(len(frame))
    k = eligible.sum(0)
    bias = np.sqrt((k - 1) / k * np.where(eligible, se ** 2, 0).sum(0))
    return pd.DataFrame({"log_px": value[best, cols], "log_px_se": se[best, cols],
                         "log_px_source": np.asarray(names)[best], "log_px_bias_bound": bias},
                        index=frame.index)


def ais_below(ais, ais_se, bound, bound_se):
    """Where AIS is below a bound by more than AIS_BELOW_SE combined standard errors."""
    return ais < bound - AIS_BELOW_SE * np.hypot(ais_se, bound_se)


def gap_frame(index, ais: pd.DataFrame, q_star: pd.DataFrame, amortized: pd.DataFrame) -> pd.DataFrame:
    """The per-datapoint gap arithmetic (docs/method.md §1), the one place it is done.

    log p̂(x) per datapoint (never of averages) by `select_log_px`, with its source; every lower
    bound checked against AIS: `ais_below_iwae` (IWAE(q*), the claims' gate), `ais_below_iwae_amortized`
    (IWAE(q)) and `ais_below_any_bound`, each beyond 2 combined standard errors; approximation +
    amortization = inference exactly; gaps below −3 standard errors flagged.
    """
    a, a_se = ais["log_px"].to_numpy(), ais["log_px_se"].to_numpy()
    out = pd.DataFrame({"index": index, "ais": a, "ais_se": a_se, **_iwae_columns("iwae_qstar", q_star),
                        **_iwae_columns("iwae_amortized", amortized)})
    out = pd.concat([out, select_log_px(out)], axis=1)
    below = {n: ais_below(a, a_se, out[n], out[f"{n}_se"]) for n in IWAE_BOUNDS}
    out["ais_below_iwae"] = below["iwae_qstar"]
    out["ais_below_iwae_amortized"] = below["iwae_amortized"]
    out["ais_below_any_bound"] = np.logical_or.reduce(list(below.values()))
    if "ais_start" in ais:  # where the AIS chains started: the encoder's q or the prior
        out["ais_start"] = ais["ais_start"].to_numpy()
    out["elbo_qstar"] = q_star["elbo"].to_numpy()
    out["elbo_qstar_se"] = q_star["elbo_se"].to_numpy()
    out["qstar_converged"] = q_star["converged"].to_numpy(dtype=bool)
    out["elbo_amortized"] = amortized["elbo"].to_numpy()
    out["elbo_amortized_se"] = amortized["elbo_se"].to_numpy()
    out["approximation_gap"] = out["log_px"] - out["elbo_qstar"]
    out["approximation_gap_se"] = np.hypot(out["log_px_se"], out["elbo_qstar_se"])
    out["amortization_gap"] = out["elbo_qstar"] - out["elbo_amortized"]
    out["amortization_gap_se"] = np.hypot(out["elbo_qstar_se"], out["elbo_amortized_se"])
    out["inference_gap"] = out["log_px"] - out["elbo_amortized"]
    for gap in ("approximation_gap", "amortization_gap"):
        out[f"negative_{gap}"] = out[gap] < -NEGATIVE_GAP_SE * out[f"{gap}_se"]
    return out


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
              encoder_family: str, qstar_family: str | None, extended: bool = True,
              per_family: bool = True) -> pd.DataFrame:
    """One row per datapoint of any model, a built-in VAE, a snapshot of one or a user's
    (docs/method.md §1, §11): the estimator frames of its encoder's q (`amortized`), of q* per
    family (`local`, family -> frame) and of AIS, through `gap_frame` with q* of `qstar_family`,
    plus (`per_family`) each fitted family's L[q*] (`elbo_local_{family}`, its standard error) and
    convergence.

    `extended` adds the columns of a user model's gaps (`vaegaps.measure`): inference_gap_se,
    steps_local_* and approximation_gap_{family} (log p̂ − L[q*_family]) for every q* fitted, AIS
    acceptance, and the encoder's and q*'s family; the built-in models' gaps Parquet (README) has
    none of them, and an over-training point (`evaluate.over_training_point`, q* of its own family
    only) not the per-family columns either. Without a q* family for the encoder (a q that is not a diagonal Gaussian, none
    declared) approximation_gap and amortization_gap are NaN and iwae_qstar is the best trusted
    IWAE of the fitted q*."""
    index = _check_same_points({"amortized": amortized, **{f"local_{f}": d for f, d in local.items()}, "ais": ais})
    if qstar_family and qstar_family not in local:
        raise VaegapsError(f"the gaps of a model with q* in {qstar_family} need its local_{qstar_family} "
                           f"results; only {', '.join(local) or 'none'} were given")
    ref = local[qstar_family] if qstar_family else _best_iwae(local).assign(
        elbo=np.nan, elbo_se=np.nan, converged=False)
    out = gap_frame(index, ais, ref, amortized)
    if not qstar_family:
        out = out.drop(columns=["elbo_qstar", "elbo_qstar_se", "qstar_converged", "negative_amortization_gap"])
        out[["approximation_gap", "approximation_gap_se", "amortization_gap", "amortization_gap_se"]] = np.nan
    log_px_se = out["log_px_se"].to_numpy()
    if extended:
        out["inference_gap_se"] = np.hypot(log_px_se, out["elbo_amortized_se"])
    negative = np.zeros(len(out), dtype=bool)
    for fam, df in local.items():
        elbo, se = df["elbo"].to_numpy(), df["elbo_se"].to_numpy()
        if per_family:
            out[f"elbo_local_{fam}"] = elbo
            out[f"elbo_local_{fam}_se"] = se
            out[f"converged_local_{fam}"] = df["converged"].to_numpy(dtype=bool)
        if extended:
            out[f"steps_local_{fam}"] = df["steps"].to_numpy()
            out[f"approximation_gap_{fam}"] = out["log_px"] - elbo
            out[f"approximation_gap_{fam}_se"] = np.hypot(log_px_se, se)
            negative |= (out[f"approximation_gap_{fam}"].to_numpy()
                         < -NEGATIVE_GAP_SE * out[f"approximation_gap_{fam}_se"].to_numpy())
    if not qstar_family:
        out["negative_approximation_gap"] = negative
    if extended:
        out["accept_rate"] = ais["accept_rate"].to_numpy()
        out["encoder_family"] = encoder_family
        out["qstar_family"] = qstar_family or ""
    return out


def diagnostics(frame: pd.DataFrame) -> dict:
    """Trust figures of a per-datapoint frame: converged fractions of q*, where log p̂ came from
    and the bound on what its max adds, how often AIS fell below each IWAE beyond noise, how
    often an IWAE's weights were too heavy-tailed to trust, and the negative-gap counts."""
    out: dict = {}
    if "ais_start" in frame:
        out["ais_start"] = "/".join(sorted(set(frame["ais_start"])))
    for col in ("converged_local_ffg", "converged_local_flow", "qstar_converged"):
        if col in frame:
            out[f"frac_{col}"] = float(frame[col].mean())
    if "log_px_source" in frame:
        for src in ("ais", *IWAE_BOUNDS):
            out[f"frac_log_px_from_{src}"] = float((frame["log_px_source"] == src).mean())
    if "log_px_bias_bound" in frame:
        out["log_px_bias_bound"] = float(frame["log_px_bias_bound"].mean())
    for col in ("ais_below_iwae", "ais_below_iwae_amortized", "ais_below_any_bound",
                *(f"{n}_untrusted" for n in IWAE_BOUNDS)):
        if col in frame:
            out[f"frac_{col}"] = float(frame[col].mean())
    if "ais_below_any_bound" in frame:
        out["approximation_gap_is_lower_bound"] = out["frac_ais_below_any_bound"] > AIS_BELOW_MAX
    if "ais" in frame and "iwae_qstar" in frame:
        # the paired comparison of the two bounds: AIS should not fall below IWAE(q*) on average
        d = frame["ais"] - frame["iwae_qstar"]
        out["ais_minus_iwae"] = float(d.mean())
        out["ais_minus_iwae_se"] = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    for col in ("negative_amortization_gap", "negative_approximation_gap"):
        if col in frame:
            out[f"n_{col}"] = int(frame[col].sum())
    return out


def summarize(gap_frame: pd.DataFrame, columns=GAP_COLUMNS) -> dict[str, float]:
    """Mean and standard error across datapoints of each column (`_se` partners)."""
    n = len(gap_frame)
    row: dict[str, float] = {"n_points": n}
    for c in columns:
        v = gap_frame[c].to_numpy(dtype=float)
        row[c] = float(v.mean())
        row[f"{c}_se"] = float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return row


def summary_table(frames: dict[tuple, pd.DataFrame], id_columns: tuple[str, ...],
                  columns=GAP_COLUMNS) -> pd.DataFrame:
    """One row per key of `frames` (named by id_columns): mean and standard error of `columns`,
    then the frames' trust figures (`diagnostics`)."""
    rows = [{**dict(zip(id_columns, key)), **summarize(df, columns), **diagnostics(df)}
            for key, df in frames.items()]
    cols = [*id_columns, "n_points"] + [x for c in columns for x in (c, f"{c}_se")]
    extra = [c for c in dict.fromkeys(k for r in rows for k in r) if c not in cols]
    return pd.DataFrame(rows)[cols + extra]


def table2(gap_frames: dict[tuple[str, str], pd.DataFrame],
           bdmc_frames: dict[tuple[str, str], pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per (dataset, trained family) with every quantity and its standard error, and,
    given each model's BDMC frame, the BDMC gap that certifies its AIS setting."""
    table = summary_table(gap_frames, ("dataset", "trained_family"))
    if bdmc_frames:
        certs = [summarize(bdmc_frames[key], ["gap"]) for key in gap_frames]
        table["bdmc_gap"] = [c["gap"] for c in certs]
        table["bdmc_gap_se"] = [c["gap_se"] for c in certs]
        table["bdmc_n_points"] = [c["n_points"] for c in certs]
    return table


def with_flow_approximation(gap_frame: pd.DataFrame) -> pd.DataFrame:
    """Adds log p̂ − L[q*_Flow]: the approximation gap the Flow family would leave."""
    return gap_frame.assign(approximation_gap_flow=gap_frame["log_px"] - gap_frame["elbo_local_flow"])


DECODER_COLUMNS = ["log_px", "elbo_local_flow", "elbo_local_ffg", "elbo_amortized", "approximation_gap",
                   "approximation_gap_flow", "amortization_gap", "inference_gap"]


def amortization_frame(amortized: pd.DataFrame, local: pd.DataFrame) -> pd.DataFrame:
    """Per datapoint L[q], L[q*] of the same family and the amortization gap between them."""
    index = _check_same_points({"amortized": amortized, "local": local})
    return pd.DataFrame({"index": index, "elbo_amortized": amortized["elbo"].to_numpy(),
                         "elbo_qstar": local["elbo"].to_numpy(),
                         "amortization_gap": local["elbo"].to_numpy() - amortized["elbo"].to_numpy(),
                         "qstar_converged": local["converged"].to_numpy(dtype=bool)})


def long_frame(frames: dict[tuple, pd.DataFrame], id_columns: tuple[str, ...]) -> pd.DataFrame:
    """Per-datapoint frames stacked into one, each row carrying its key as `id_columns`."""
    return pd.concat([df.assign(**dict(zip(id_columns, key)))[[*id_columns, *df.columns]]
                      for key, df in frames.items()], ignore_index=True)


AMORTIZATION_COLUMNS = ["elbo_amortized", "elbo_qstar", "amortization_gap"]
OVER_TRAINING_COLUMNS = ["log_px", "elbo_qstar", "elbo_amortized", "approximation_gap", "amortization_gap"]


def over_training_summary(frames: dict[tuple[str, str, int], pd.DataFrame]) -> pd.DataFrame:
    """Rows per (dataset, model, epoch, split) from per-datapoint frames that carry a `split` column."""
    split_frames = {(*key, split): df[df["split"] == split]
                    for key, df in frames.items() for split in ("train", "valid")}
    table = summary_table(split_frames, ("dataset", "model", "epoch", "split"), OVER_TRAINING_COLUMNS)
    return table.sort_values(["dataset", "model", "split", "epoch"], ignore_index=True)


LABELS = {
    "log_px": "log p̂(x)",
    "elbo_local_flow": "L[q*_Flow]",
    "elbo_local_ffg": "L[q*_FFG]",
    "elbo_amortized": "L[q]",
    "approximation_gap": "Approximation gap",
    "amortization_gap": "Amortization gap",
    "inference_gap": "Inference gap",
}


TRUST_LABELS = {
    "frac_converged_local_ffg": "q*_FFG converged",
    "frac_converged_local_flow": "q*_Flow converged",
    "frac_log_px_from_ais": "log p̂ from AIS",
    "frac_log_px_from_iwae_amortized": "log p̂ from IWAE(q)",
    "frac_ais_below_iwae": "AIS below IWAE(q*)",
    "frac_ais_below_iwae_amortized": "AIS below IWAE(q)",
    "frac_ais_below_any_bound": "AIS below any IWAE",
    "frac_iwae_qstar_untrusted": "IWAE(q*) untrusted (k̂ > 0.7)",
    "frac_iwae_amortized_untrusted": "IWAE(q) untrusted (k̂ > 0.7)",
}


def to_markdown(table: pd.DataFrame, id_columns=("dataset", "trained_family"), labels=LABELS) -> str:
    """The paper's layout: rows = quantities, columns = dataset × family, "mean ± se" in nats."""
    heads = [" / ".join(str(r[c]) for c in id_columns) for _, r in table.iterrows()]
    lines = ["| quantity (nats) | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for key, label in labels.items():
        cells = [f"{r[key]:.2f} ± {r[key + '_se']:.2f}" for _, r in table.iterrows()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for key, label in TRUST_LABELS.items():
        if key in table:
            lines.append(f"| {label} | " + " | ".join(f"{v:.0%}" for v in table[key]) + " |")
    if "ais_minus_iwae" in table:
        cells = [f"{r['ais_minus_iwae']:.2f} ± {r['ais_minus_iwae_se']:.2f}" for _, r in table.iterrows()]
        lines.append("| AIS − IWAE(q*), paired | " + " | ".join(cells) + " |")
    if "log_px_bias_bound" in table:
        lines.append("| most the max adds to log p̂ (mean bound) | "
                     + " | ".join(f"{v:.2f}" for v in table["log_px_bias_bound"]) + " |")
    if "bdmc_gap" in table:
        cells = [f"{r['bdmc_gap']:.2f} ± {r['bdmc_gap_se']:.2f} (n = {int(r['bdmc_n_points'])})" for _, r in table.iterrows()]
        lines.append("| BDMC gap of this AIS, simulated data | " + " | ".join(cells) + " |")
    if "ais_start" in table:
        lines.append("| AIS chains start from | " + " | ".join(table["ais_start"]) + " |")
    lines.append("")
    lines.append(f"n = {', '.join(str(int(n)) for n in table['n_points'])} datapoints; ± is the standard "
                 "error across datapoints.")
    if "approximation_gap_is_lower_bound" in table and table["approximation_gap_is_lower_bound"].any():
        lines.append(f"Where AIS fell below an IWAE beyond noise on more than {AIS_BELOW_MAX:.0%} of the "
                     "datapoints, log p̂ is mostly an IWAE and the approximation gap only a lower bound.")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# the refinement curve (docs/method.md §12)
# ------------------------------------------------------------------------------------------------

REFINEMENT_COLUMNS = ["steps", "elbo", "elbo_se", "fraction_closed", "fraction_closed_se"]


def fraction_closed(elbo_k, elbo_amortized, elbo_qstar) -> tuple[float, float]:
    """The fraction of the amortization gap that k refinement steps close, as a ratio of means
    over the same datapoints: f = (mean L_k − mean L[q]) / (mean L[q*] − mean L[q]), and its
    delta-method standard error on the paired per-datapoint values a = L_k − L[q],
    b = L[q*] − L[q]: sd(a − f·b) / (√n · mean b). NaN where there is no gap to close
    (mean b ≤ 0); the standard error NaN under 2 datapoints."""
    a = np.asarray(elbo_k, dtype=float) - np.asarray(elbo_amortized, dtype=float)
    b = np.asarray(elbo_qstar, dtype=float) - np.asarray(elbo_amortized, dtype=float)
    if not len(a) == len(b) > 0:
        raise VaegapsError(f"fraction_closed needs the same datapoints on each side, got {len(a)} and {len(b)}")
    gap = b.mean()
    if not gap > 0:
        return float("nan"), float("nan")
    f = a.mean() / gap
    if len(a) < 2:
        return float(f), float("nan")
    return float(f), float((a - f * b).std(ddof=1) / (np.sqrt(len(a)) * gap))


def refinement_table(curve: pd.DataFrame, amortized: pd.DataFrame, qstar: pd.DataFrame) -> pd.DataFrame:
    """One row per step count k of a per-datapoint refinement curve (`index, steps, elbo, ...`):
    the mean ELBO after k steps with its standard error across datapoints, and the fraction of
    the amortization gap closed (`fraction_closed`), with L[q] from `amortized` and L[q*] (the
    encoder's own family) from `qstar`, both per datapoint (`index, elbo`)."""
    ref = _check_same_points({"amortized": amortized, "q*": qstar})
    rows = []
    for k, df in curve.groupby("steps", sort=True):
        index = df["index"].to_numpy()
        if not np.array_equal(np.sort(index), np.sort(ref)):
            raise VaegapsError(f"the refinement curve at k = {k} and the amortized bounds were computed on "
                               "different datapoints; rerun them with the same evaluation settings")
        df = df.set_index("index").loc[ref]
        lk = df["elbo"].to_numpy(dtype=float)
        f, f_se = fraction_closed(lk, amortized["elbo"].to_numpy(), qstar["elbo"].to_numpy())
        n = len(lk)
        rows.append({"steps": int(k), "elbo": float(lk.mean()),
                     "elbo_se": float(lk.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
                     "fraction_closed": f, "fraction_closed_se": f_se})
    return pd.DataFrame(rows, columns=REFINEMENT_COLUMNS)
