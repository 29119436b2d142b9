"""Snakemake stage: the refinement curve of one model (its own family) on one part of its
evaluation set: index, steps, elbo, elbo_se (docs/method.md §12)."""
from vaegaps.evaluate import evaluation_stage, refinement_curve
from vaegaps.stage import stage

with stage(snakemake):
    sm = snakemake
    cfg, seed, family = sm.params.refinement, sm.config["seed"], sm.wildcards.family   # the family's settings
    evaluation_stage(sm, "refinement", cfg, lambda model, i, x: refinement_curve(model, x, i, family, cfg, seed))
