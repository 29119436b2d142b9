"""Snakemake stage: AIS estimate of log p(x) on one part of the evaluation set."""
from vaegaps.evaluate import evaluation_stage, ais_estimate
from vaegaps.stage import stage

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    sm = snakemake  # noqa: F821
    cfg, seed = sm.params.evaluation["ais"], sm.config["seed"]
    evaluation_stage(sm, "ais", cfg, lambda model, i, x: ais_estimate(model, x, i, cfg, seed))
