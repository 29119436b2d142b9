"""Snakemake stage: per-datapoint gaps of one model."""
import pandas as pd

from vaegaps.io import write_parquet
from vaegaps.stage import stage
from vaegaps.tables import gaps

with stage(snakemake):
    sm = snakemake
    frames = {k: pd.read_parquet(sm.input[k]) for k in ("amortized", "local_ffg", "local_flow", "ais")}
    df = gaps(**frames, trained_family=sm.wildcards.family)
    write_parquet(df, sm.output[0], {"dataset": sm.wildcards.dataset, "variant": sm.wildcards.variant,
                                     "trained_family": sm.wildcards.family, "model_config": sm.params.cfg,
                                     "evaluation": sm.params.evaluation, "local": sm.params.local})
