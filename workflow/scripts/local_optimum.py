"""Snakemake stage: L[q*] and IWAE of q* for one family, optimised per datapoint."""
from vaegaps.evaluate import evaluation_set, local_optimum, run_in_chunks
from vaegaps.io import write_parquet
from vaegaps.runtime import resolve_device
from vaegaps.stage import stage
from vaegaps.vae import load_vae

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    sm = snakemake  # noqa: F821
    ev, device = sm.params.evaluation, resolve_device(sm.config["device"])
    family = sm.wildcards.qfamily
    model = load_vae(sm.input.model, device)
    index, x = evaluation_set(sm.input.data, ev["split"], ev["n_points"], device)
    df = run_in_chunks(lambda i, xx: local_optimum(model, xx, i, family, ev["local"], sm.config["seed"]),
                       index, x, ev["chunk_size"], sm.params.resume)
    write_parquet(df, sm.output[0], {"estimator": f"local_{family}", "split": ev["split"],
                                     "settings": ev["local"], "seed": sm.config["seed"]})
