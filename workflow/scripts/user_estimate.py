"""Snakemake stage: one estimator ({ustage}: amortized, local_<family> or ais) of a user model on
part {part} of {parts} of its data, in resumable chunks (docs/method.md §11)."""
from vaegaps.stage import stage
from vaegaps.user_eval import stage_estimate

with stage(snakemake):
    stage_estimate(snakemake)
