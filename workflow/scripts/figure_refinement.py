"""Snakemake stage: the fraction of the amortization gap closed against the refinement steps k,
one line per model with its band (docs/method.md §12).

input:  table (results/refinement.csv)
output: png, pdf
"""
import pandas as pd

from vaegaps.errors import VaegapsError
from vaegaps.figures import figure_refinement
from vaegaps.pipeline.stage import stage

NEEDED = {"dataset", "variant", "family", "steps", "fraction_closed", "fraction_closed_se"}

with stage(snakemake):
    sm = snakemake
    table = pd.read_csv(sm.input.table)
    if NEEDED - set(table.columns):
        raise VaegapsError(f"{sm.input.table} lacks columns {sorted(NEEDED - set(table.columns))}; "
                           "rerun the stage that writes it")
    figure_refinement(table, sm.output.png, sm.output.pdf)
