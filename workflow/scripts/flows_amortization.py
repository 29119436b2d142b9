"""Snakemake stage: frozen decoder, new encoders: L[q], L[q*] and the amortization gap."""
import pandas as pd

from vaegaps.config import split_ref
from vaegaps.io import write_csv
from vaegaps.pipeline.stage import stage
from vaegaps.tables import AMORTIZATION_COLUMNS, amortization_frame, long_frame, summary_table

with stage(snakemake) as job:
    sm = snakemake
    frames = {}
    for (name, ref), amortized, local in zip(sm.params.encoders.items(), sm.input.amortized, sm.input.local,
                                          strict=True):
        key = (sm.params.dataset, name, split_ref(ref)[1])
        frames[key] = amortization_frame(pd.read_parquet(amortized), pd.read_parquet(local))
    job.write_parquet(long_frame(frames, ("dataset", "encoder", "family")), sm.output.per_datapoint,
                  {"encoders": sm.params.encoders, "evaluation": sm.params.evaluation})
    table = summary_table(frames, ("dataset", "encoder", "family"), AMORTIZATION_COLUMNS)
    write_csv(table, sm.output.csv)
