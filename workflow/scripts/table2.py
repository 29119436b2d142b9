"""Snakemake stage: Table 2 (CSV and the paper's Markdown layout) from the per-model gaps, with
the BDMC gap that certifies each model's AIS."""
import pandas as pd

from vaegaps.io import write_csv, write_text
from vaegaps.pipeline.stage import stage
from vaegaps.tables import table2, to_markdown

with stage(snakemake):
    sm = snakemake
    frames = {tuple(key): pd.read_parquet(path) for key, path in zip(sm.params.models, sm.input.gaps, strict=True)}
    bdmc = {tuple(key): pd.read_parquet(path) for key, path in zip(sm.params.models, sm.input.bdmc, strict=True)}
    table = table2(frames, bdmc)
    write_csv(table, sm.output.csv)
    write_text(to_markdown(table), sm.output.md)
