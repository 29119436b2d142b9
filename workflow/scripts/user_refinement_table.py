"""Snakemake stage: results/user_refinement.csv, the refinement curve of every user model per k
with the fraction of its amortization gap closed (docs/method.md §12)."""
from vaegaps.pipeline.stage import stage
from vaegaps.pipeline.stages import stage_refinement_table

with stage(snakemake) as job:
    stage_refinement_table(snakemake, job)
