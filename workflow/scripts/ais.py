"""Snakemake stage: AIS estimate of log p(x) on the evaluation set."""
from vaegaps.evaluate import ais_estimate, evaluation_set, run_in_chunks
from vaegaps.io import write_parquet
from vaegaps.runtime import resolve_device
from vaegaps.stage import stage
from vaegaps.vae import load_vae

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    sm = snakemake  # noqa: F821
    ev, device = sm.params.evaluation, resolve_device(sm.config["device"])
    model = load_vae(sm.input.model, device)
    index, x = evaluation_set(sm.input.data, ev["split"], ev["n_points"], device)
    df = run_in_chunks(lambda i, xx: ais_estimate(model, xx, i, ev["ais"], sm.config["seed"]),
                       index, x, ev["chunk_size"], sm.params.resume)
    write_parquet(df, sm.output[0], {"estimator": "ais", "split": ev["split"],
                                     "settings": ev["ais"], "seed": sm.config["seed"]})
