"""Snakemake stage: L[q] and IWAE of the encoder on one part of the evaluation set."""
from vaegaps.evaluate import evaluation_stage, amortized_bounds
from vaegaps.stage import stage

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    sm = snakemake  # noqa: F821
    cfg, seed = sm.params.evaluation["amortized"], sm.config["seed"]
    evaluation_stage(sm, "amortized", cfg,
                     lambda model, i, x: amortized_bounds(model, x, i, cfg["n_samples"], seed))
