"""Snakemake stage: L[q*] and IWAE of q* for one family, optimised per datapoint, on one part.
A flow family starts from q*_FFG of the same part (input `ffg`) instead of fitting it again."""
import pandas as pd

from vaegaps.evaluate import evaluation_stage, local_optimum
from vaegaps.stage import stage

with stage(snakemake):
    sm = snakemake
    cfg, seed, family = sm.params.evaluation["local"], sm.config["seed"], sm.wildcards.qfamily
    ffg = pd.read_parquet(sm.input.ffg) if sm.input.get("ffg") else None
    # new q*_FFG results must not resume from chunks fitted on the old ones
    starts = {"ffg_start": sm.input.ffg} if ffg is not None else None
    evaluation_stage(sm, f"local_{family}", sm.params.local,
                     lambda model, i, x: local_optimum(model, x, i, family, cfg, seed, ffg), starts)
