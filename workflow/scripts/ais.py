"""Snakemake stage: AIS estimate of log p(x) on one part of the evaluation set."""
from vaegaps.evaluate import ais_estimate, evaluation_stage
from vaegaps.stage import stage

with stage(snakemake):
    sm = snakemake
    cfg, seed = sm.params.evaluation["ais"], sm.config["seed"]
    evaluation_stage(sm, "ais", cfg, lambda model, i, x: ais_estimate(model, x, i, cfg, seed))
