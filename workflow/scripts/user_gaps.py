"""Snakemake stage: per-datapoint log p̂, bounds and gaps of a user model (docs/method.md §11)."""
from vaegaps.stage import stage
from vaegaps.user_tables import stage_gaps

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    stage_gaps(snakemake)  # noqa: F821
