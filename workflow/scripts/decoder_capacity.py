"""Snakemake stage: gaps of FFG models with 0, 2 and 4 hidden decoder layers."""
import pandas as pd

from vaegaps.io import write_csv
from vaegaps.stage import stage
from vaegaps.tables import DECODER_COLUMNS, summary_table, with_flow_approximation

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    sm = snakemake  # noqa: F821
    frames = {(sm.params.dataset, layers): with_flow_approximation(pd.read_parquet(path))
              for layers, path in zip(sm.params.layers, sm.input.gaps, strict=True)}
    table = summary_table(frames, ("dataset", "decoder_layers"), DECODER_COLUMNS)
    write_csv(table, sm.output.csv)
