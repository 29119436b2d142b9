"""Snakemake stage: the gaps over training, a 2×4 grid of panels (docs/method.md §6.6).

input:  summary (CSV: model, epoch, split, log_px, elbo_qstar, elbo_amortized; *_se ignored)
output: png, pdf
"""
import pandas as pd

from vaegaps.errors import VaegapsError
from vaegaps.figures import figure_gaps_over_training
from vaegaps.pipeline.stage import stage

NEEDED = {"model", "epoch", "split", "log_px", "elbo_qstar", "elbo_amortized"}

with stage(snakemake):
    sm = snakemake
    summary = pd.read_csv(sm.input.summary)
    if NEEDED - set(summary.columns):
        raise VaegapsError(f"{sm.input.summary} lacks columns {sorted(NEEDED - set(summary.columns))}; "
                           "rerun the stage that writes it")
    figure_gaps_over_training(summary, sm.output.png, sm.output.pdf)
