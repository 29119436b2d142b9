"""Snakemake stage: the parts of one evaluation stage, gathered into one per-datapoint Parquet."""
from vaegaps.pipeline.scatter import gather_parts
from vaegaps.pipeline.stage import stage

with stage(snakemake) as job:
    sm = snakemake
    df, meta = gather_parts(list(sm.input.parts), sm.params.get("row_keys", ("index",)))
    job.write_parquet(df, sm.output[0], meta)
