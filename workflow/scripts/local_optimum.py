"""Snakemake stage: L[q*] and IWAE of q* for one family, optimised per datapoint."""
from vaegaps.evaluate import evaluate_set, local_optimum
from vaegaps.io import write_parquet
from vaegaps.stage import stage

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    sm = snakemake  # noqa: F821
    ev, seed, family = sm.params.evaluation, sm.config["seed"], sm.wildcards.qfamily
    df = evaluate_set(sm.input.model, sm.input.data, ev, sm.config["device"], sm.params.resume,
                      lambda model, i, x: local_optimum(model, x, i, family, ev["local"], seed))
    write_parquet(df, sm.output[0], {"estimator": f"local_{family}", "split": ev["split"],
                                     "settings": ev["local"], "seed": seed})
