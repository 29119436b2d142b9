"""Snakemake stage: BDMC (forward and reverse AIS at the model's AIS setting) on part {part} of
{parts} of the data simulated from a user model (docs/method.md §5, §11)."""
from vaegaps.pipeline.stage import stage
from vaegaps.pipeline.stages import stage_bdmc

with stage(snakemake) as job:
    stage_bdmc(snakemake, job)
