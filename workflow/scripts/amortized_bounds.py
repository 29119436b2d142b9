"""Snakemake stage: L[q] and IWAE of the encoder on the evaluation set."""
from vaegaps.evaluate import amortized_bounds, evaluate_set
from vaegaps.io import write_parquet
from vaegaps.stage import stage

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    sm = snakemake  # noqa: F821
    ev, seed = sm.params.evaluation, sm.config["seed"]
    n = ev["amortized"]["n_samples"]
    df = evaluate_set(sm.input.model, sm.input.data, ev, sm.config["device"], sm.params.resume,
                      lambda model, i, x: amortized_bounds(model, x, i, n, seed))
    write_parquet(df, sm.output[0], {"estimator": "amortized", "split": ev["split"],
                                     "settings": ev["amortized"], "seed": seed})
