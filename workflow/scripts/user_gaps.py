"""Snakemake stage: per-datapoint log p̂, bounds and gaps of a user model (docs/method.md §11)."""
from vaegaps.pipeline.stage import stage
from vaegaps.pipeline.stages import stage_gaps

with stage(snakemake) as job:
    stage_gaps(snakemake, job)
