"""Snakemake stage: L[q] and IWAE of the encoder on the evaluation set."""
from vaegaps.evaluate import amortized_bounds, evaluation_set, run_in_chunks
from vaegaps.io import write_parquet
from vaegaps.runtime import resolve_device
from vaegaps.stage import stage
from vaegaps.vae import load_vae

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    sm = snakemake  # noqa: F821
    ev, device = sm.params.evaluation, resolve_device(sm.config["device"])
    model = load_vae(sm.input.model, device)
    index, x = evaluation_set(sm.input.data, ev["split"], ev["n_points"], device)
    n = ev["amortized"]["n_samples"]
    df = run_in_chunks(lambda i, xx: amortized_bounds(model, xx, i, n, sm.config["seed"]),
                       index, x, ev["chunk_size"], sm.params.resume)
    write_parquet(df, sm.output[0], {"estimator": "amortized", "split": ev["split"],
                                     "settings": ev["amortized"], "seed": sm.config["seed"]})
