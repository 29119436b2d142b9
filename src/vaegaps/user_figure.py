"""The figure of a user model (docs/method.md §11): its per-datapoint gaps, sorted."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .figures import GAP_COLORS, _style, plt

FLOW_COLOR = "#029E73"   # seaborn "colorblind" green: q*_Flow beside the approximation blue


def figure_user_gaps(frame: pd.DataFrame, name: str = ""):
    """Datapoints sorted by inference gap. With an amortization gap: the approximation and
    amortization gaps stacked per datapoint (their sum is the inference gap). Without one (the
    encoder's family unknown): the approximation gaps against q*_FFG and q*_Flow, and the
    inference gap. Returns the matplotlib figure."""
    _style()
    df = frame.sort_values("inference_gap", kind="stable").reset_index(drop=True)
    rank = np.arange(len(df))
    fig, ax = plt.subplots(figsize=(max(5.0, min(12.0, 0.08 * len(df) + 4)), 3.6))
    edge = {"linewidth": 0.0 if len(df) > 40 else 0.5, "edgecolor": "white"}
    if df["amortization_gap"].notna().all():
        fam = str(df["qstar_family"].iloc[0]) if "qstar_family" in df else "ffg"
        approx = df["approximation_gap"].to_numpy()
        ax.bar(rank, approx, width=1.0, color=GAP_COLORS["approximation"], **edge,
               label=f"approximation gap  log p̂ − L[q*_{fam}]")
        ax.bar(rank, df["amortization_gap"].to_numpy(), bottom=approx, width=1.0, **edge,
               color=GAP_COLORS["amortization"], label=f"amortization gap  L[q*_{fam}] − L[q]")
    else:
        ax.plot(rank, df["inference_gap"], color="black", lw=1.2, label="inference gap  log p̂ − L[q]")
        for fam, color in (("ffg", GAP_COLORS["approximation"]), ("flow", FLOW_COLOR), ("realnvp", "#CC78BC")):
            if f"approximation_gap_{fam}" in df:
                ax.plot(rank, df[f"approximation_gap_{fam}"], color=color, lw=1.2, marker=".", ms=3,
                        label=f"approximation gap vs q*_{fam}")
        ax.text(0.01, 0.97, "no amortization gap: the encoder's family is unknown", transform=ax.transAxes,
                va="top", fontsize=8)
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set(xlabel="datapoint (sorted by inference gap)", ylabel="nats", xlim=(-0.5, len(df) - 0.5),
           title=f"{name}: per-datapoint gaps, n = {len(df)}" if name else f"per-datapoint gaps, n = {len(df)}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.2), ncol=2, frameon=False)
    return fig
