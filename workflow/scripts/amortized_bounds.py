"""Snakemake stage: L[q] and IWAE of the encoder on one part of the evaluation set."""
from vaegaps.evaluate import amortized_bounds, evaluation_stage
from vaegaps.stage import stage

with stage(snakemake):
    sm = snakemake
    cfg, seed = sm.params.evaluation["amortized"], sm.config["seed"]
    evaluation_stage(sm, "amortized", cfg,
                     lambda model, i, x: amortized_bounds(model, x, i, cfg["n_samples"], seed))
