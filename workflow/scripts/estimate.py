"""Snakemake stage: one estimator (amortized, local_<family>, ais or refinement) on part {part} of
{parts} of the evaluation set of a model source, a built-in VAE or a user's model, in resumable
chunks (vaegaps.pipeline.sources)."""
from vaegaps.pipeline.stage import stage
from vaegaps.pipeline.stages import stage_estimate

with stage(snakemake) as job:
    stage_estimate(snakemake, job)
