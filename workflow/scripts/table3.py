"""Snakemake stage: Table 3 (variant models) from their per-datapoint gaps."""
import pandas as pd

from vaegaps.io import write_csv
from vaegaps.pipeline.stage import stage
from vaegaps.tables import summary_table

with stage(snakemake):
    sm = snakemake
    frames = {tuple(key): pd.read_parquet(path) for key, path in zip(sm.params.models, sm.input.gaps, strict=True)}
    table = summary_table(frames, ("dataset", "variant", "trained_family"))
    write_csv(table, sm.output.csv)
