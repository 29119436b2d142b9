"""Snakemake stage: the per-datapoint gaps of a user model, sorted (docs/method.md §11)."""
import pandas as pd

from vaegaps.figures import save
from vaegaps.pipeline.stage import stage
from vaegaps.user_figure import figure_user_gaps

with stage(snakemake):
    sm = snakemake
    fig = figure_user_gaps(pd.read_parquet(sm.input.gaps), sm.wildcards.name)
    save(fig, sm.output.png, sm.output.pdf)
