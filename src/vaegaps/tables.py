"""Per-datapoint gaps and the paper's tables (PROTOCOL §1, §6.2)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import VaegapsError

GAP_COLUMNS = ["log_px", "elbo_local_flow", "elbo_local_ffg", "elbo_amortized",
               "approximation_gap", "amortization_gap", "inference_gap"]


def _check_same_points(frames: dict[str, pd.DataFrame]) -> np.ndarray:
    first_name, first = next(iter(frames.items()))
    for name, df in frames.items():
        if not np.array_equal(df["index"].to_numpy(), first["index"].to_numpy()):
            raise VaegapsError(f"{name} and {first_name} were computed on different datapoints; "
                               "rerun the evaluation stages with the same evaluation settings")
    return first["index"].to_numpy()


def gaps(amortized: pd.DataFrame, local_ffg: pd.DataFrame, local_flow: pd.DataFrame,
         ais: pd.DataFrame, trained_family: str) -> pd.DataFrame:
    """One row per datapoint: the four estimates and the three gaps.

    log p̂(x) = max(AIS, IWAE of q*) per datapoint (never of averages); q* is of the family the
    model was trained with; approximation + amortization = inference exactly.
    """
    index = _check_same_points({"amortized": amortized, "local_ffg": local_ffg,
                                "local_flow": local_flow, "ais": ais})
    local = {"ffg": local_ffg, "flow": local_flow}
    if trained_family not in local:
        raise VaegapsError(f"Table 2 needs a model trained with ffg or flow, not {trained_family!r}")
    q_star = local[trained_family]
    out = pd.DataFrame({
        "index": index,
        "ais": ais["log_px"].to_numpy(),
        "iwae_qstar": q_star["iwae"].to_numpy(),
        "elbo_local_flow": local_flow["elbo"].to_numpy(),
        "elbo_local_ffg": local_ffg["elbo"].to_numpy(),
        "elbo_amortized": amortized["elbo"].to_numpy(),
    })
    out["log_px"] = np.maximum(out["ais"], out["iwae_qstar"])
    out["elbo_qstar"] = q_star["elbo"].to_numpy()
    out["approximation_gap"] = out["log_px"] - out["elbo_qstar"]
    out["amortization_gap"] = out["elbo_qstar"] - out["elbo_amortized"]
    out["inference_gap"] = out["log_px"] - out["elbo_amortized"]
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
    """One row per key of `frames` (named by id_columns): mean and standard error of `columns`."""
    rows = [{**dict(zip(id_columns, key)), **summarize(df, columns)} for key, df in frames.items()]
    cols = [*id_columns, "n_points"] + [x for c in columns for x in (c, f"{c}_se")]
    return pd.DataFrame(rows)[cols]


def table2(gap_frames: dict[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    """One row per (dataset, trained family) with every quantity and its standard error."""
    return summary_table(gap_frames, ("dataset", "trained_family"))


def paired_flow_minus_ffg(gap_frames: dict[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    """L[q*_Flow] − L[q*_FFG] per (dataset, trained family), its standard error taken over the
    per-datapoint differences (paired: far smaller than combining the two columns' errors)."""
    frames = {k: df.assign(flow_minus_ffg=df["elbo_local_flow"] - df["elbo_local_ffg"])
              for k, df in gap_frames.items()}
    return summary_table(frames, ("dataset", "trained_family"), ["flow_minus_ffg"])


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
                         "amortization_gap": local["elbo"].to_numpy() - amortized["elbo"].to_numpy()})


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


def to_markdown(table: pd.DataFrame, id_columns=("dataset", "trained_family"), labels=LABELS) -> str:
    """The paper's layout: rows = quantities, columns = dataset × family, "mean ± se" in nats."""
    heads = [" / ".join(str(r[c]) for c in id_columns) for _, r in table.iterrows()]
    lines = ["| quantity (nats) | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for key, label in labels.items():
        cells = [f"{r[key]:.2f} ± {r[key + '_se']:.2f}" for _, r in table.iterrows()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"n = {', '.join(str(int(n)) for n in table['n_points'])} datapoints; ± is the standard "
                 "error across datapoints.")
    return "\n".join(lines) + "\n"
