"""Snakemake stage: per-datapoint gaps of one model of the study (vaegaps.tables.gap_table, as every
model's), q* of the family it was trained with."""
import pandas as pd

from vaegaps.pipeline.stage import stage
from vaegaps.tables import gap_table

with stage(snakemake) as job:
    sm = snakemake
    family = sm.wildcards.family
    read = {k: pd.read_parquet(sm.input[k]) for k in sm.input.keys() if k.startswith(("amortized", "local_", "ais"))}
    local = {k.removeprefix("local_"): df for k, df in read.items() if k.startswith("local_")}
    df = gap_table(read["amortized"], local, read["ais"], encoder_family=family, qstar_family=family, extended=False)
    job.write_parquet(df, sm.output[0], {"dataset": sm.wildcards.dataset, "variant": sm.wildcards.variant,
                                     "trained_family": family, "model_config": sm.params.cfg,
                                     "evaluation": sm.params.evaluation, "local": sm.params.local})
