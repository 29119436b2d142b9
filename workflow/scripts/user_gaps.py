"""Snakemake stage: per-datapoint log p̂, bounds and gaps of a user model (docs/method.md §11)."""
from vaegaps.stage import stage
from vaegaps.user_tables import stage_gaps

with stage(snakemake):
    stage_gaps(snakemake)
