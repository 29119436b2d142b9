"""Snakemake stage: one estimator (amortized, local_<family>, ais or refinement) on part {part} of
{parts} of the evaluation set of a model source, a built-in VAE or a user's model, in resumable
chunks (vaegaps.sources)."""
from vaegaps.sources import stage_estimate
from vaegaps.stage import stage

with stage(snakemake):
    stage_estimate(snakemake)
