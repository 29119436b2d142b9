"""Snakemake stage: per-datapoint log p̂, bounds and gaps of a model source, a built-in VAE or a
user's model, from its gathered estimates (vaegaps.tables.gap_table, as every model's;
docs/method.md §1, §11)."""
from vaegaps.pipeline.stage import stage
from vaegaps.pipeline.stages import stage_gaps

with stage(snakemake) as job:
    stage_gaps(snakemake, job)
