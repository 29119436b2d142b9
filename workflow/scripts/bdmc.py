"""Snakemake stage: BDMC (forward and reverse AIS) on part {part} of {parts} of the data simulated
from a model source: a built-in model's final weights or an over-training snapshot, or a user model
(docs/method.md §5, §11; vaegaps.pipeline.sources.run_bdmc)."""
from vaegaps.pipeline.stage import stage
from vaegaps.pipeline.stages import stage_bdmc

with stage(snakemake) as job:
    stage_bdmc(snakemake, job)
