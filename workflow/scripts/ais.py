"""Snakemake stage: AIS estimate of log p(x) on the evaluation set."""
from vaegaps.evaluate import ais_estimate, evaluate_set
from vaegaps.io import write_parquet
from vaegaps.stage import stage

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    sm = snakemake  # noqa: F821
    ev, seed = sm.params.evaluation, sm.config["seed"]
    df = evaluate_set(sm.input.model, sm.input.data, ev, sm.config["device"], sm.params.resume,
                      lambda model, i, x: ais_estimate(model, x, i, ev["ais"], seed))
    write_parquet(df, sm.output[0], {"estimator": "ais", "split": ev["split"],
                                     "settings": ev["ais"], "seed": seed})
