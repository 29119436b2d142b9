"""Snakemake stage: results/user_table.csv, one row per user model with the BDMC gap that
certifies its AIS setting (docs/method.md §11)."""
import pandas as pd

from vaegaps.io import write_csv
from vaegaps.pipeline.stage import stage
from vaegaps.user_tables import user_table

with stage(snakemake):
    sm = snakemake
    gaps = {n: pd.read_parquet(p) for n, p in zip(sm.params.names, sm.input.gaps, strict=True)}
    bdmc = {n: pd.read_parquet(p) for n, p in zip(sm.params.names, sm.input.bdmc, strict=True)}
    write_csv(user_table(gaps, bdmc), sm.output.csv)
