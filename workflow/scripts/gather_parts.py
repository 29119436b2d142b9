"""Snakemake stage: the parts of one evaluation stage, gathered into one per-datapoint Parquet."""
from vaegaps.io import write_parquet
from vaegaps.scatter import gather_parts
from vaegaps.stage import stage

with stage(snakemake):
    sm = snakemake
    df, meta = gather_parts(list(sm.input.parts), sm.params.get("row_keys", ("index",)))
    write_parquet(df, sm.output[0], meta)
